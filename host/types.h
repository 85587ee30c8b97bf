/* types.h - the plain data the host's modules pass among themselves: byte
 * strings, messages on their way to Lua, and the script's source settings.
 * Only types live here, no functions, so that a module can speak of a
 * message or of the source configuration without pulling in the module that
 * makes it (lua_bridge.h fills rsgSourceConfig and takes rsgMsg; source.h
 * reads the one and makes the other). */
#ifndef RSG_TYPES_H
#define RSG_TYPES_H

#include <stddef.h>

/* A byte string that is not NUL-terminated and not owned. */
typedef struct rsgStr {
    const char *p;
    size_t len;
} rsgStr;

/* One message as it goes to Lua. */
typedef struct rsgMsg {
    rsgStr stream;    /* stream (or list) name */
    rsgStr id;        /* message id (or, for lists, the item itself) */
    const rsgStr *fv; /* field/value pairs: fv[2i] name, fv[2i+1] value; for a
                         list item fv[0] is the item converted for Lua */
    int nfields;      /* number of pairs; -1 for a list item (no data table) */
} rsgMsg;

/* What a source reads. lua_bridge.c's readSource sets it once from the
 * script's normalized source.kind; source.c maps it to the kind's table of
 * functions (rsgSourceTypeOf), and nothing else looks at it. */
typedef enum rsgSourceKind {
    RSG_SOURCE_GROUP,   /* a consumer group: XREADGROUP, XACK */
    RSG_SOURCE_STREAMS, /* plain streams: XREAD from a cursor, checkpoints */
    RSG_SOURCE_LISTS    /* lists: pops, or moves into processing lists */
} rsgSourceKind;

/* The script's `source` table, as normalized by lua/rsghost/script.lua. */
typedef struct rsgSourceConfig {
    rsgSourceKind kind;         /* what is read: see rsgSourceKind */
    int nstreams;               /* streams (or lists) to read */
    char **streams;             /* their names */
    char **starts;              /* start ids (group creation / XREAD), NULL for lists */
    char *group;                /* consumer group, NULL unless kind is group */
    long count;                 /* max messages per read, 0 = as many as room allows */
    long block_ms;              /* XREADGROUP BLOCK, 0 = forever */
    int replay_pending;         /* re-read our own pending entries first */
    int convert;                /* decode field names and values */
    char *encoding;             /* source encoding for convert */
    long max_in_flight;         /* bound on unacknowledged messages held */
    size_t max_in_flight_bytes; /* and on their bytes, 0 = none */
    long read_chunk;            /* reads without source.count ask for at most this */
    double heartbeat_interval;  /* seconds, 0 = heartbeats off */
    double claim_timeout;       /* seconds, 0 = never claim */
    char *heartbeat_channel;    /* pub/sub channel, NULL when heartbeats are off */
    char *checkpoint;           /* hash key for XREAD checkpoints, or NULL */
    int reliable;               /* lists: use a processing list */
    char *dead_letter;          /* groups: the dead-letter stream, or NULL (none) */
    long dead_letter_maxlen;    /* XADD MAXLEN ~ of that stream, 0 = no trimming */
    long max_deliveries;        /* more deliveries than this: dead-lettered (0 = no limit;
                                   applied by pipeline.lua, kept here for --check) */
    int cluster;                /* --redis is a Redis Cluster: a group reads per slot
                                   (source_cluster.c); set by app.c, not the script */
} rsgSourceConfig;

#endif
