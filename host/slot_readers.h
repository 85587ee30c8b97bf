/* slot_readers.h - the blocking readers of a source on a Redis Cluster.
 *
 * Redis refuses a multi-key command over keys of different slots
 * (CROSSSLOT), and a connection sitting in a blocking read carries nothing
 * else, so a source's keys are read in slot groups: the keys of one slot
 * (keys sharing a hash tag, "{orders}:eu" and "{orders}:us", share one)
 * are read together, on one connection of their own to that slot's
 * master, in their own blocking read. N slot groups cost N connections,
 * whatever the number of nodes.
 *
 * This module owns those connections for the kinds that read on a cluster
 * (source_cluster.c, source_streams.c, source_lists.c): it groups the keys, opens each
 * group's connection to the master rsgClusterNodeUrl names, and when one
 * is lost or its read is redirected (the map changed under it) it drops it
 * and asks the router (s->conn) to learn the map again; the router's ready
 * sets the source up anew (rsgSourceOnReady), which connects the groups
 * again. What a kind reads, and what a reply means, stays the kind's.
 *
 * A group's read is counted in s->requested, not s->reading: each group
 * keeps its own read in flight, so one blocked on an empty key never holds
 * back the others. */
#ifndef RSG_SLOT_READERS_H
#define RSG_SLOT_READERS_H

#include "source.h"

typedef struct rsgSlotReaders rsgSlotReaders;

/* One slot group. */
typedef struct rsgSlotReader {
    rsgSlotReaders *rs;                      /* the set it belongs to */
    int slot;                                /* the slot every key of the group hashes to */
    int *keys;                               /* indexes into the source's keys (cfg->streams) */
    int nkeys;                               /* how many */
    int busy;                                /* a read in flight, or a wait (rsgSlotReaderWait) */
    long asked;                              /* what that read may bring, counted in s->requested */
    struct readerConn *rc;                   /* the current connection, or NULL */
    uv_timer_t wait;                         /* rsgSlotReaderWait's timer */
    int wait_open;                           /* wait initialised and not yet closed */
    void (*waited)(struct rsgSlotReader *g); /* called when the wait ends */
} rsgSlotReader;

struct rsgSlotReaders {
    rsgSource *s;
    rsgSlotReader *r;            /* one per distinct slot, in the order keys were given */
    int n;                       /* how many */
    int waiting;                 /* connections not ready yet since rsgSlotReadersConnect */
    void (*ready)(rsgSource *s); /* every connection is ready (once per connect) */
};

/* Groups s->cfg->streams (streams or lists: `noun` in the log line) by slot.
 * Returns 0, or -1 out of memory (rsgSlotReadersFree cleans up). */
int rsgSlotReadersInit(rsgSlotReaders *rs, rsgSource *s, const char *noun);

/* (Re)opens every group's connection; ready(s) once all are ready. A
 * connection that comes back later kicks the source. With no master for a
 * slot, the router learns the map again (and setup runs again). */
void rsgSlotReadersConnect(rsgSlotReaders *rs, void (*ready)(rsgSource *s));

/* 1 when g may send a read: connected, ready, not busy. */
int rsgSlotReaderIdle(const rsgSlotReader *g);

/* Sends a read on g's connection and writes it out: fn gets privdata that
 * rsgSlotReaderOf turns back into g. `asked` is what it may bring. Returns
 * 0, or -1 (nothing sent). */
int rsgSlotReaderSend(rsgSlotReader *g, redisCallbackFn *fn, long asked, int argc,
                      const char **argv);

/* Sends a command that is not a read on g's connection, ahead of the next
 * read (replies come in order: the group kind's XPENDING before a replay
 * read). Returns 0, or -1 (nothing sent). */
int rsgSlotReaderCommand(rsgSlotReader *g, redisCallbackFn *fn, void *privdata, int argc,
                         const char **argv);

/* In a read's callback: the group whose read it was, with its read marked
 * done (busy and asked cleared), or NULL when the connection it went on was
 * dropped since (the read was replayed or forgotten). */
rsgSlotReader *rsgSlotReaderOf(void *privdata);

/* A read's reply was an error that says the slot moved or its master is
 * no more (MOVED, ASK, CLUSTERDOWN, UNBLOCKED, READONLY): drops g's
 * connection, has the map learnt again and returns 1. Otherwise 0. */
int rsgSlotReaderRedirected(rsgSlotReader *g, const redisReply *reply);

/* Keeps g busy for ms, then calls g->waited (a kind that polls). */
void rsgSlotReaderWait(rsgSlotReader *g, uint64_t ms, void (*waited)(rsgSlotReader *g));

/* Drops every connection and timer (shutting down). */
void rsgSlotReadersStop(rsgSlotReaders *rs);

/* Frees the groups, once the loop has closed their handles. Safe on a
 * zeroed set. */
void rsgSlotReadersFree(rsgSlotReaders *rs);

#endif
