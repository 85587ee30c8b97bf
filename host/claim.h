/* claim.h - finding dead peers in the group and taking over their messages.
 *
 * Every heartbeat interval a claim round runs on the command connection:
 *   1. XINFO CONSUMERS on every stream: who is in the group, holding what.
 *   2. For every other consumer, is it alive? A consumer is alive if
 *      - it is registered (rsghost:consumers:<group>) as one that keeps a
 *        liveness key, and its key (rsghost:alive:<group>:<name>) exists;
 *        the key's TTL is claim_timeout, refreshed by its heart, so a
 *        consumer started after a peer died knows at once that it is dead;
 *      - or, not registered (a streamz_redis peer, say): its heartbeat was
 *        heard on the channel within claim_timeout, or it was first seen by
 *        us less than claim_timeout ago (presumed alive from that moment).
 *   3. For each dead consumer: claim its pending messages with one server-
 *      side script per stream (XPENDING for that consumer with an IDLE
 *      filter, then XCLAIM with the same min-idle). The script is atomic, and
 *      the min-idle makes a message another claimer has just taken (its idle
 *      time reset) be left alone. Claimed messages go through our pipeline,
 *      bounded by max_in_flight like read ones.
 *      A dead consumer whose pending list is empty is removed from the group
 *      (XGROUP DELCONSUMER inside a script that first checks, atomically, that
 *      it holds nothing: deleting a consumer drops its pending entries).
 * A round that claimed or removed anything logs one line (info) with its
 * duration from its first XINFO to its last reply, and when it knew who is
 * dead; a round that did nothing logs the same at debug level. */
#ifndef RSG_CLAIM_H
#define RSG_CLAIM_H

#include <stdint.h>
#include <uv.h>

#include "conn.h"
#include "source.h"

typedef struct rsgPeer {
    char *name;           /* consumer name */
    uint64_t first_seen;  /* ms, loop time when we first saw it */
    uint64_t last_heard;  /* ms, loop time of its last heartbeat, 0 = never */
    long pending;         /* pending entries, all streams, this round */
    long *stream_pending; /* per stream, this round (NULL: out of memory, unknown) */
    int in_group;         /* listed by XINFO CONSUMERS this round */
    int registered;       /* keeps a liveness key (rsghost) */
    int has_key;          /* its liveness key exists */
} rsgPeer;

typedef struct rsgClaim {
    uv_loop_t *loop;
    rsgConn *cmds;     /* XINFO, EXISTS, EVAL go here */
    rsgConn sub;       /* our own: SUBSCRIBE to the heartbeat channel */
    rsgSource *source; /* claimed messages are fed through it */
    const rsgSourceConfig *cfg;
    const char *consumer; /* us */
    char *registry_key;
    uv_timer_t timer; /* one round per heartbeat interval */
    rsgPeer *peers;
    int npeers, cap;
    int busy;        /* a round is running */
    int outstanding; /* replies the current step still waits for */
    int stopped;
    long claimed;                 /* messages taken over, for logs and tests */
    uint64_t round_start;         /* ns (uv_hrtime) the current round sent its first XINFO */
    uint64_t round_judged;        /* ns the current round knew who is dead */
    int round_peers;              /* other consumers in the group, this round */
    int round_dead;               /* of them dead, this round */
    int round_from;               /* dead consumers claimed from, this round */
    int round_removed;            /* dead consumers removed, this round */
    long round_claimed;           /* messages claimed, this round */
    uint64_t self_heard;          /* ms, loop time our own heartbeat was last heard, 0 = never */
    int leaving;                  /* rsgClaimLeave: replies still expected */
    int left;                     /* rsgClaimLeave: streams we were removed from */
    void (*leave_done)(void *ud); /* rsgClaimLeave's callback */
    void *leave_ud;
} rsgClaim;

/* Starts listening for heartbeats and running rounds. Returns 0 or -1. */
int rsgClaimStart(rsgClaim *c, uv_loop_t *loop, rsgConn *cmds, rsgSource *source,
                  const rsgRedisUrl *url, const char *consumer);

/* A consumer with a generated name that stops cleanly leaves the group:
 * its name will never come back, and peers would otherwise see a stranger
 * until they judge it dead. On every stream, XGROUP DELCONSUMER inside the
 * script that first checks, atomically, that it holds nothing (a message
 * still pending keeps the consumer, so that peers claim it); then its entry
 * in the registry and its liveness key go. done(ud) is called once every
 * reply came (or the connection was lost). Returns 0, or -1 when nothing
 * could be sent (done is then not called). */
int rsgClaimLeave(rsgClaim *c, void (*done)(void *ud), void *ud);

/* Stops the rounds and closes the subscription and the timer. */
void rsgClaimStop(rsgClaim *c);

/* Frees the peer table (after the loop ended). */
void rsgClaimFree(rsgClaim *c);

#endif
