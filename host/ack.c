/* ack.c - see ack.h. */
#include "ack.h"

#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* Entries whose reply was lost go to a retry list that is resent before the
 * queue, so acks and checkpoints reach Redis in the order they were made
 * (a checkpoint must not move back). */
struct rsgAckEntry {
    rsgAckEntry *next; /* queue link */
    rsgAck *owner;     /* for the reply callback */
    char *cmd;         /* RESP form, ready to resend */
    size_t len;
    long nids; /* messages this entry confirms */
};

void rsgAckInit(rsgAck *a, rsgConn *conn) {
    memset(a, 0, sizeof(*a));
    a->conn = conn;
}

static void append(rsgAckEntry **head, rsgAckEntry **tail, rsgAckEntry *e) {
    e->next = NULL;
    if (*tail)
        (*tail)->next = e;
    else
        *head = e;
    *tail = e;
}

static void enqueue(rsgAck *a, rsgAckEntry *e) {
    append(&a->queue, &a->queue_tail, e);
}

static void freeEntry(rsgAckEntry *e) {
    redisFreeCommand(e->cmd);
    free(e);
}

static void checkIdle(rsgAck *a) {
    if (rsgAckIdle(a) && a->on_idle) a->on_idle(a->ud);
}

static void onReply(redisAsyncContext *ac, void *r, void *privdata) {
    (void)ac;
    rsgAckEntry *e = privdata;
    rsgAck *a = e->owner;
    redisReply *reply = r;
    a->in_flight--;
    if (!reply) {
        /* Lost with the connection: it may or may not have been applied, and
         * acking twice is harmless, so send it again after reconnecting. */
        append(&a->retry, &a->retry_tail, e);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        /* E.g. NOGROUP after someone destroyed the group: retrying cannot
         * help, and the messages stay pending in Redis, which is safe. */
        rsgError("acknowledging %ld message(s) failed: %s", e->nids, reply->str);
    } else {
        a->acked += e->nids;
    }
    freeEntry(e);
    checkIdle(a);
}

void rsgAckResume(rsgAck *a) {
    if (a->retry && a->conn->ready) {
        /* Lost ones first: they were made before anything in the queue. */
        a->retry_tail->next = a->queue;
        if (!a->queue) a->queue_tail = a->retry_tail;
        a->queue = a->retry;
        a->retry = a->retry_tail = NULL;
    }
    while (a->queue && a->conn->ready) {
        rsgAckEntry *e = a->queue;
        if (rsgConnFormatted(a->conn, onReply, e, e->cmd, e->len) != 0) break;
        a->queue = e->next;
        if (!a->queue) a->queue_tail = NULL;
        a->in_flight++;
    }
}

int rsgAckPush(rsgAck *a, int argc, const char **argv, const size_t *lens, long nids) {
    rsgAckEntry *e = calloc(1, sizeof(*e));
    if (!e) return -1;
    long long len = redisFormatCommandArgv(&e->cmd, argc, argv, lens);
    if (len < 0) {
        free(e);
        return -1;
    }
    e->len = (size_t)len;
    e->owner = a;
    e->nids = nids;
    enqueue(a, e);
    rsgAckResume(a);
    return 0;
}

int rsgAckIdle(const rsgAck *a) {
    return a->queue == NULL && a->retry == NULL && a->in_flight == 0;
}

long rsgAckPending(const rsgAck *a) {
    long n = a->in_flight;
    for (rsgAckEntry *e = a->queue; e; e = e->next)
        n++;
    return n;
}

void rsgAckFree(rsgAck *a) {
    if (a->retry) {
        a->retry_tail->next = a->queue;
        a->queue = a->retry;
        a->retry = a->retry_tail = NULL;
    }
    while (a->queue) {
        rsgAckEntry *e = a->queue;
        a->queue = e->next;
        freeEntry(e);
    }
    a->queue_tail = NULL;
}
