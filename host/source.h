/* source.h - where messages come from: a consumer group, plain streams, or
 * lists. One rsgSource reads on its own connection (which may sit in a
 * blocking read and so carries nothing else), converts what it reads, hands
 * each read to the pipeline in one call, and knows what "acknowledge" means
 * for its kind:
 *
 *   group    XREADGROUP; ack = XACK (source_group.c)
 *   streams  XREAD from a cursor; ack = advance the checkpoint, if any,
 *            past every id that has left the pipeline (source_streams.c)
 *   lists    BLMPOP, or with `reliable` an atomic move into a per-consumer
 *            processing list; ack = remove from it (source_lists.c)
 *
 * Each kind is one table of functions (rsgSourceType) in its own file, with
 * its own state; source.c, the core, picks the table once from the config's
 * kind and does what is common through source_kind.h's services.
 *
 * Common to all: before reading, every key is checked to be of the right
 * type (a clear error instead of WRONGTYPE later); memory is bounded by
 * max_in_flight, reads ask for no more than the room left; where a read's
 * arguments do not depend on the previous reply, the next read is sent
 * before the current one goes to Lua, so Redis works while Lua does. */
#ifndef RSG_SOURCE_H
#define RSG_SOURCE_H

#include "ack.h"
#include "conn.h"
#include "dead_letter.h"
#include "encoding.h"
#include "types.h"

typedef enum { RSG_SRC_SETUP, RSG_SRC_REPLAY, RSG_SRC_LIVE } rsgSourcePhase;

typedef struct rsgSource rsgSource;

/* One kind of source as a table of functions (Redis ae.c's aeApi*, Fluent
 * Bit's input plugins): the core (source.c) picks the table once, in
 * rsgSourceInit, and calls into the kind only through it. A kind keeps its
 * own state in s->state (allocated by init, freed by free) and uses only the
 * core services of source_kind.h. NULL hooks do nothing. */
typedef struct rsgSourceType {
    const char *name;     /* "group", "streams", "lists": --check and logs */
    const char *key_type; /* what TYPE must say of every key ("stream", "list");
                             also the noun for the keys in messages */
    int keeps_pending;    /* an entry whose bytes do not convert stays pending in Redis
                             (a group), rather than being skipped (rules.c's words) */
    int consumer_pending; /* Redis keeps what a consumer holds under its name:
                             a generated name needs heartbeats to be claimed */
    /* Allocates s->state; s->cfg, s->consumer and the cursors are set.
     * Returns 0, or -1 out of memory (free is then called). */
    int (*init)(rsgSource *s);
    /* Every key was checked to be of key_type, on a connection that is (again)
     * ready, phase SETUP: set up, then rsgSourceBegin. Runs after each
     * reconnect. */
    void (*setup)(rsgSource *s);
    /* Sends one read, sized by rsgSourceReadCount, and counts it in
     * s->reading; sends nothing when there is no room. Called by
     * rsgSourceKick only when a read may go out. */
    void (*read)(rsgSource *s);
    /* These messages of key left the pipeline: acknowledge them. */
    void (*ack)(rsgSource *s, rsgStr key, int n, const rsgStr *ids);
    /* These were given up on (preprocess failed, bytes did not convert). */
    void (*abandon)(rsgSource *s, rsgStr key, int n, const rsgStr *ids);
    /* A message of d->origin goes to the dead-letter stream: say how it
     * leaves this kind's source (d->proc, d->done; see dead_letter.h). */
    void (*dead_letter)(rsgSource *s, rsgDeadLetter *d);
    /* Messages left the pipeline, or the ack queue drained: a kind that
     * waits for things to settle looks again. */
    void (*settled)(rsgSource *s);
    /* The reader reconnected to another server (rsgSourceRewind). */
    void (*rewind)(rsgSource *s);
    /* Shutting down: close the kind's own handles (s->stopped is set). */
    void (*stop)(rsgSource *s);
    /* Frees s->state (which may be NULL, or half built by a failed init);
     * the loop no longer runs. */
    void (*free)(rsgSource *s);
} rsgSourceType;

/* The table for a kind: the one place the kind is looked at. Never NULL. */
const rsgSourceType *rsgSourceTypeOf(rsgSourceKind kind);

typedef struct rsgSourceHooks {
    /* n valid messages, in read order; deliveries NULL (all at their first
     * delivery) or Redis's times-delivered of each. Returns 0, or -1 to stop
     * the host. */
    int (*deliver)(void *ud, const rsgMsg *msgs, int n, const long *deliveries);
    /* Something no retry can mend (e.g. the key is not a stream). */
    void (*fatal)(void *ud, const char *reason);
    /* With source.dead_letter: a message that cannot go to Lua (its bytes
     * do not convert) goes to the dead-letter stream with err
     * (rsgSourceDeadLetter on the command connection). */
    void (*dead_letter)(void *ud, rsgStr key, rsgStr id, long deliveries, rsgStr err);
    void *ud;
} rsgSourceHooks;

/* A command's privdata that names one key of a source (rsgSourceKeyRef). */
typedef struct rsgKeyRef {
    rsgSource *s; /* the source */
    int i;        /* its key: an index into cfg->streams, nstreams for the dead-letter stream */
} rsgKeyRef;

/* One read's share of the bytes in flight (source.c). */
typedef struct rsgReadBytes {
    long count;   /* its messages still in flight */
    size_t bytes; /* their bytes */
} rsgReadBytes;

/* The core's state. Kinds read cfg, conn, ack, consumer, stopped,
 * in_flight, msgs, fv and dec; they write reading (their reads in flight),
 * requested (a kind with more than one read in flight), setup_left (their
 * own setup steps), cursor (directly or through rsgSourceSetCursor) and
 * phase (rsgSourceBegin, or LIVE when a replay ends). The rest is the
 * core's. */
struct rsgSource {
    const rsgSourceType *type;  /* the kind, picked once by rsgSourceInit */
    void *state;                /* the kind's own, owned by type->init/free */
    rsgConn *conn;              /* the reader connection */
    rsgAck *ack;                /* where acknowledgements are queued */
    const rsgSourceConfig *cfg; /* streams or lists, group, count, block... */
    const char *consumer;       /* our consumer name */
    rsgSourceHooks hooks;
    rsgDecoder dec; /* source.encoding -> UTF-8 */
    rsgSourcePhase phase;
    int reading;            /* reads in flight (up to 2 for a group's live reads) */
    long requested;         /* messages those reads may still bring */
    int paused;             /* the pipeline asked us to wait */
    int stopped;            /* shutting down: read no more */
    int setup_left;         /* setup replies outstanding */
    long in_flight;         /* messages handed to Lua, not yet released */
    size_t in_flight_bytes; /* their bytes (source.c: bytes in flight) */
    double avg_bytes;       /* average message size seen, 0 before any */
    rsgReadBytes *reads;    /* FIFO of reads still in flight */
    size_t reads_cap, reads_head, nreads;
    char **cursor;      /* per key: last id seen (NULL = none yet) */
    rsgKeyRef *keyrefs; /* per key and the dead-letter stream: privdata naming it */
    int win_next;       /* rsgSourcePlanRead: where the next window starts */
    int win_empty;      /* reads of windows in a row that found nothing */
    int win_wait;       /* the read in flight is an idle wait on every key */
    rsgMsg *msgs;       /* scratch for one read */
    long *deliv;        /* scratch: times-delivered of msgs[i], when counted */
    int counted;        /* deliv holds this read's counts (rsgSourceCollect with counts) */
    size_t msgs_cap;
    rsgStr *fv; /* scratch field/value pairs */
    size_t fv_cap;
    char wrongtype[256]; /* a read's WRONGTYPE error, while keys are re-checked */
};

/* Prepares the source for cfg's kind; nothing is sent before
 * rsgSourceOnReady. Returns 0, or -1 with err (unknown encoding, out of
 * memory), having freed what it made. */
int rsgSourceInit(rsgSource *s, rsgConn *conn, rsgAck *ack, const rsgSourceConfig *cfg,
                  const char *consumer, const rsgSourceHooks *hooks, char *err, size_t errlen);

/* The reader connection is (again) ready: check keys, set up, read. */
void rsgSourceOnReady(rsgSource *s);

/* Reads if there is room, no read in flight, not paused or stopped. */
void rsgSourceKick(rsgSource *s);

/* These messages fully left the pipeline: acknowledge them (per kind). */
void rsgSourceAck(rsgSource *s, rsgStr stream, int n, const rsgStr *ids);

/* These messages were given up on (preprocess failed). The kind decides
 * what that means (type->abandon): plain streams move their checkpoint past
 * them, the others leave them where they are. */
void rsgSourceAbandon(rsgSource *s, rsgStr stream, int n, const rsgStr *ids);

/* One message goes to source.dead_letter, sent on cmds (the command
 * connection): appended there with err and taken out of the source in one
 * server-side script, as its kind requires (dead_letter.h). Returns 0, or
 * -1 when it could not be sent (logged; the message stays where it was). */
int rsgSourceDeadLetter(rsgSource *s, rsgConn *cmds, rsgStr key, rsgStr id, long deliveries,
                        rsgStr err);

/* The ack queue drained (type->settled: lists wait for that after a
 * reconnect). */
void rsgSourceAckIdle(rsgSource *s);

/* n messages left the pipeline: room for more (type->settled, then a read
 * if one may go out). */
void rsgSourceRelease(rsgSource *s, long n);

/* Room left under max_in_flight and max_in_flight_bytes, for takers other
 * than reads (claims). */
long rsgSourceRoom(const rsgSource *s);

/* Stops reading while flag is 1 (the pipeline waits on a failed batch);
 * 0 resumes at once. */
void rsgSourcePause(rsgSource *s, int flag);

/* Feeds entries claimed from a dead peer (an XCLAIM reply: [[id, [f, v...]]...])
 * through the same checks as read ones. counts: NULL, or counts[j] entry
 * j's times-delivered. Returns how many went to the pipeline, or -1 on a
 * malformed reply or a pipeline failure. */
int rsgSourceFeedClaimed(rsgSource *s, const char *stream, const redisReply *entries,
                         const long *counts);

/* The reader reconnected to another server (a failover): a group source
 * replays all of this consumer's pending entries from the start, not only
 * those after the last id seen, since the acks the old master took may not
 * have been replicated. Entries still in the pipeline may then be
 * delivered twice (at least once, never lost). Other sources: nothing.
 * Call before rsgSourceOnReady. */
void rsgSourceRewind(rsgSource *s);

/* What a source on a Redis Cluster cannot do: a dead-letter stream must be
 * in the slot of every source key, and a reliable list's processing list
 * (named for consumer) in its list's slot, so that their scripts run on
 * one node atomically. Returns 0, or -1 with the reason in err (a usage
 * error, before anything touches Redis). source_cluster.c. */
int rsgSourceClusterCheck(const rsgSourceConfig *cfg, const char *consumer, char *err,
                          size_t errlen);

/* The name of consumer's processing list for a reliable list into buf
 * (source_lists.c): rsghost:processing:CONSUMER:LIST. */
void rsgSourceListsProcessing(char *buf, size_t len, const char *consumer, const char *list);

/* Reads no more (the caller closes the connection to abort a blocked read)
 * and closes the source's own handles. May be called more than once. */
void rsgSourceStop(rsgSource *s);

/* Frees everything rsgSourceInit made, once the loop has closed the
 * source's handles; a source that was never initialised is left alone. */
void rsgSourceFree(rsgSource *s);

#endif
