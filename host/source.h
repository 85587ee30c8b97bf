/* source.h - the consumer-group reader: XGROUP CREATE, replay, XREADGROUP.
 *
 * Owns the reader connection's traffic, which may sit in XREADGROUP BLOCK and
 * so carries nothing else. Life of a source:
 *   SETUP   create the group on every stream (MKSTREAM; BUSYGROUP is fine)
 *   REPLAY  read our own pending entries (id 0, then after the last one seen)
 *           until none are left: what a crash left unacknowledged
 *   LIVE    read new entries (">"), blocking up to block_ms
 * After a reconnect it goes through SETUP and REPLAY again, replaying only
 * after the last id it saw on each stream, so entries Redis delivered into a
 * read whose reply was lost are not stranded, and nothing in flight is read
 * twice.
 *
 * Memory is bounded: a read asks for at most the room left under
 * max_in_flight (COUNT applies per stream, so it is divided among them), and
 * no read is issued while there is no room. The next read is sent before the
 * current one is handed to Lua, so Redis works while Lua does. */
#ifndef RSG_SOURCE_H
#define RSG_SOURCE_H

#include "conn.h"
#include "encoding.h"
#include "lua_bridge.h"

typedef enum { RSG_SRC_SETUP, RSG_SRC_REPLAY, RSG_SRC_LIVE } rsgSourcePhase;

typedef struct rsgSource rsgSource;

typedef struct rsgSourceHooks {
    /* n valid messages, in read order; returns 0, or -1 to stop the host. */
    int (*deliver)(void *ud, const rsgMsg *msgs, int n);
    /* Acknowledge one id at once (an entry deleted from the stream while
     * pending: there is nothing left to process). */
    void (*ack_one)(void *ud, rsgStr stream, rsgStr id);
    /* Something no retry can mend (e.g. the key is not a stream). */
    void (*fatal)(void *ud, const char *reason);
    void *ud;
} rsgSourceHooks;

struct rsgSource {
    rsgConn *conn;              /* the reader connection */
    const rsgSourceConfig *cfg; /* streams, group, count, block... */
    const char *consumer;       /* our consumer name */
    rsgSourceHooks hooks;
    rsgDecoder dec; /* source.encoding -> UTF-8 */
    rsgSourcePhase phase;
    int reading;    /* an XREADGROUP is in flight */
    int paused;     /* the pipeline asked us to wait */
    int stopped;    /* shutting down: read no more */
    int setup_left; /* XGROUP CREATE replies outstanding */
    long in_flight; /* messages handed to Lua, not yet released */
    long replayed;  /* pending entries re-read, for the log */
    long invalid;   /* messages left pending for bad bytes */
    char **cursor;  /* per stream: last id seen, NULL = none */
    rsgMsg *msgs;   /* scratch for one read */
    size_t msgs_cap;
    rsgStr *fv; /* scratch field/value pairs */
    size_t fv_cap;
};

/* Prepares the source. Returns 0, or -1 with err (unknown encoding...). */
int rsgSourceInit(rsgSource *s, rsgConn *conn, const rsgSourceConfig *cfg, const char *consumer,
                  const rsgSourceHooks *hooks, char *err, size_t errlen);

/* The reader connection is (again) ready: set the group up and read. */
void rsgSourceOnReady(rsgSource *s);

/* Reads if there is room, no read in flight, not paused or stopped. */
void rsgSourceKick(rsgSource *s);

/* n messages left the pipeline: room for more. */
void rsgSourceRelease(rsgSource *s, long n);

void rsgSourcePause(rsgSource *s, int flag);

/* Feeds entries claimed from a dead peer (an XCLAIM reply: [[id, [f, v...]]...])
 * through the same checks as read ones. Returns how many went to the
 * pipeline, or -1 on a malformed reply or a pipeline failure. */
int rsgSourceFeedClaimed(rsgSource *s, const char *stream, const redisReply *entries);

/* Room left under max_in_flight. */
long rsgSourceRoom(const rsgSource *s);

/* Reads no more (the caller closes the connection to abort a blocked read). */
void rsgSourceStop(rsgSource *s);

void rsgSourceFree(rsgSource *s);

#endif
