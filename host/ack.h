/* ack.h - commands that must reach Redis eventually: XACK and its kin.
 *
 * An ack that is lost with the connection is not lost: it is kept and sent
 * again once the connection is back (XACK is idempotent). The host waits for
 * this queue to drain before a clean exit. Acks go out as one command per
 * stream per batch, so the queue holds few, large entries. */
#ifndef RSG_ACK_H
#define RSG_ACK_H

#include <stddef.h>

#include "conn.h"

typedef struct rsgAckEntry rsgAckEntry;

typedef struct rsgAck {
    rsgConn *conn;      /* where acks are sent: the command connection */
    rsgAckEntry *queue; /* waiting to be (re)sent, oldest first */
    rsgAckEntry *queue_tail;
    rsgAckEntry *retry; /* lost with the connection: resent first */
    rsgAckEntry *retry_tail;
    long in_flight;            /* entries sent, reply not yet seen */
    long acked;                /* ids confirmed by Redis, for the final log line */
    void (*on_idle)(void *ud); /* queue empty and nothing in flight */
    void *ud;
} rsgAck;

/* Prepares an empty queue that sends on conn (which must outlive it). */
void rsgAckInit(rsgAck *a, rsgConn *conn);

/* Queues argv (copied at once) and sends it if the connection is ready.
 * nids is how many messages it confirms. Returns 0, or -1 out of memory. */
int rsgAckPush(rsgAck *a, int argc, const char **argv, const size_t *lens, long nids);

/* Sends whatever waits; call when the connection becomes ready again. */
void rsgAckResume(rsgAck *a);

/* 1 when nothing waits and nothing is in flight. */
int rsgAckIdle(const rsgAck *a);

/* Number of entries waiting or in flight. */
long rsgAckPending(const rsgAck *a);

/* Frees what still waits (at exit, after the loop stopped). */
void rsgAckFree(rsgAck *a);

#endif
