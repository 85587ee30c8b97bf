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
 * Common to all: before reading, every key is checked to be of the right
 * type (a clear error instead of WRONGTYPE later); memory is bounded by
 * max_in_flight, reads ask for no more than the room left; where a read's
 * arguments do not depend on the previous reply, the next read is sent
 * before the current one goes to Lua, so Redis works while Lua does. */
#ifndef RSG_SOURCE_H
#define RSG_SOURCE_H

#include "ack.h"
#include "conn.h"
#include "encoding.h"
#include "types.h"

typedef enum { RSG_SRC_SETUP, RSG_SRC_REPLAY, RSG_SRC_LIVE } rsgSourcePhase;
typedef enum { RSG_KIND_GROUP, RSG_KIND_STREAMS, RSG_KIND_LISTS } rsgSourceKindId;

typedef struct rsgSource rsgSource;

/* One read's share of the bytes in flight (source.c). */
typedef struct rsgReadBytes {
    long count;   /* its messages still in flight */
    size_t bytes; /* their bytes */
} rsgReadBytes;
typedef struct rsgTracker rsgTracker;

typedef struct rsgSourceHooks {
    /* n valid messages, in read order; returns 0, or -1 to stop the host. */
    int (*deliver)(void *ud, const rsgMsg *msgs, int n);
    /* Something no retry can mend (e.g. the key is not a stream). */
    void (*fatal)(void *ud, const char *reason);
    void *ud;
} rsgSourceHooks;

struct rsgSource {
    rsgConn *conn;              /* the reader connection */
    rsgAck *ack;                /* where acknowledgements are queued */
    const rsgSourceConfig *cfg; /* streams or lists, group, count, block... */
    const char *consumer;       /* our consumer name */
    rsgSourceKindId kind;
    rsgSourceHooks hooks;
    rsgDecoder dec; /* source.encoding -> UTF-8 */
    rsgSourcePhase phase;
    int reading;            /* reads in flight (up to 2 for a group's live reads) */
    long requested;         /* messages those reads may still bring */
    long asked[2];          /* what each read in flight may bring, oldest first */
    int paused;             /* the pipeline asked us to wait */
    int stopped;            /* shutting down: read no more */
    int setup_left;         /* setup replies outstanding */
    long in_flight;         /* messages handed to Lua, not yet released */
    size_t in_flight_bytes; /* their bytes (source.c: bytes in flight) */
    double avg_bytes;       /* average message size seen, 0 before any */
    rsgReadBytes *reads;    /* FIFO of reads still in flight */
    size_t reads_cap, reads_head, nreads;
    long replayed; /* pending entries re-read, for the log */
    char **cursor; /* per stream: last id seen (NULL = none yet) */
    rsgMsg *msgs;  /* scratch for one read */
    size_t msgs_cap;
    rsgStr *fv; /* scratch field/value pairs */
    size_t fv_cap;
    /* plain streams */
    rsgTracker *trackers; /* per stream, with a checkpoint: ids in flight */
    /* lists */
    char **proc;         /* per list: its processing list (reliable) */
    long *replay_left;   /* per list: items still to replay (reliable) */
    int replay_list;     /* list being replayed */
    int leftovers_done;  /* processing lists were looked at, at start */
    int recheck;         /* after a reconnect: look at them again once idle */
    char wrongtype[256]; /* a read's WRONGTYPE error, while keys are re-checked */
    int use_blpop;       /* the server has no BLMPOP (Redis < 7) */
    uv_timer_t poll;     /* waits between polls of several lists */
    int poll_open;
};

/* Prepares the source. Returns 0, or -1 with err (unknown encoding...). */
int rsgSourceInit(rsgSource *s, rsgConn *conn, rsgAck *ack, const rsgSourceConfig *cfg,
                  const char *consumer, const rsgSourceHooks *hooks, char *err, size_t errlen);

/* The reader connection is (again) ready: check keys, set up, read. */
void rsgSourceOnReady(rsgSource *s);

/* Reads if there is room, no read in flight, not paused or stopped. */
void rsgSourceKick(rsgSource *s);

/* These messages fully left the pipeline: acknowledge them (per kind). */
void rsgSourceAck(rsgSource *s, rsgStr stream, int n, const rsgStr *ids);

/* These messages were given up on (preprocess failed). Only plain streams
 * care: their checkpoint may move past them. */
void rsgSourceAbandon(rsgSource *s, rsgStr stream, int n, const rsgStr *ids);

/* The ack queue drained (lists wait for that after a reconnect). */
void rsgSourceAckIdle(rsgSource *s);

/* n messages left the pipeline: room for more. */
void rsgSourceRelease(rsgSource *s, long n);

/* Room left under max_in_flight. */
long rsgSourceRoom(const rsgSource *s);

void rsgSourcePause(rsgSource *s, int flag);

/* Feeds entries claimed from a dead peer (an XCLAIM reply: [[id, [f, v...]]...])
 * through the same checks as read ones. Returns how many went to the
 * pipeline, or -1 on a malformed reply or a pipeline failure. */
int rsgSourceFeedClaimed(rsgSource *s, const char *stream, const redisReply *entries);

/* Reads no more (the caller closes the connection to abort a blocked read)
 * and closes the source's own handles. */
/* The reader reconnected to another server (a failover): a group source
 * replays all of this consumer's pending entries from the start, not only
 * those after the last id seen, since the acks the old master took may not
 * have been replicated. Entries still in the pipeline may then be
 * delivered twice (at least once, never lost). Other sources: nothing. */
void rsgSourceRewind(rsgSource *s);

void rsgSourceStop(rsgSource *s);

void rsgSourceFree(rsgSource *s);

#endif
