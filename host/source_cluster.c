/* source_cluster.c - a consumer group on a Redis Cluster.
 *
 * Redis refuses a multi-key command over keys of different slots
 * (CROSSSLOT), so one XREADGROUP cannot read every stream. The streams are
 * put in slot groups, one per slot (streams sharing a hash tag, such as
 * "{orders}:eu" and "{orders}:us", share one); each group has its own
 * connection to the master serving its slot, on which it sits in its own
 * blocking XREADGROUP. N slot groups cost N connections, whatever the
 * number of nodes: a blocked connection carries nothing else, and two
 * blocking reads on one connection would wait for each other.
 *
 * Everything that is not a blocking read - TYPE, XGROUP CREATE, XACK -
 * goes through s->conn and the ack queue's connection, both routers
 * (cluster.h) that send each command to its key's master and follow
 * MOVED and ASK. Any trouble on a slot group's connection (lost, MOVED,
 * ASK) makes the reader router learn the map again; when it is ready it
 * sets the source up again (rsgSourceOnReady), and each group then
 * replays this consumer's pending entries after the last id it saw, as a
 * group source does after a reconnect (from the start after a failover:
 * rsgSourceRewind), and reads on from the slot's master, wherever it is.
 *
 * Delivery counts, as a group source has them: before a group's replay
 * read, one XPENDING per stream of the group over the same range goes on
 * the group's connection (replies come in order, so they are there when
 * the read's reply is); the read adds one to each. Live reads carry none. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "cluster_map.h"
#include "log.h"
#include "source_kind.h"

typedef struct slotGroup slotGroup;

/* XPENDING of one stream for the replay read in flight: ids and counts in
 * id order, copied (a reply lives only during its callback). */
typedef struct pendingCounts {
    slotGroup *g;        /* back pointer: privdata of the XPENDING */
    rsgPendingCounts pc; /* what it said */
} pendingCounts;

/* One connection of a slot group, allocated per (re)connection: a closing
 * one frees itself from its close callback while the next one starts. */
typedef struct groupConn {
    rsgConn conn;    /* first: callbacks find the groupConn by a cast */
    rsgRedisUrl url; /* the slot's master, with the router's credentials */
    slotGroup *g;    /* NULL once the group let go of it */
} groupConn;

struct slotGroup {
    rsgSource *s;
    int slot;            /* the slot every stream of the group hashes to */
    int *streams;        /* indexes into cfg->streams */
    int nstreams;        /* how many */
    groupConn *gc;       /* the current connection, or NULL */
    int busy;            /* a read in flight on gc */
    long asked;          /* what it may bring (counted in s->requested) */
    int replaying;       /* reading our pending entries after the cursors */
    long replayed;       /* entries replayed, for the log */
    pendingCounts *pend; /* per stream of the group (same order as streams) */
};

/* XPENDING stream group IDLE 0 (cursor + count consumer. A failed reply
 * leaves no counts: those entries go to Lua as at their first delivery. */
static void onPending(redisAsyncContext *ac, void *r, void *privdata) {
    (void)ac;
    pendingCounts *p = privdata;
    redisReply *reply = r;
    rsgPendingClear(&p->pc);
    if (reply) rsgPendingTake(&p->pc, reply);
}

typedef struct clusterState {
    slotGroup *groups; /* one per distinct slot, in the order streams were given */
    int ngroups;
    int waiting; /* setup: group connections not ready yet */
} clusterState;

static void groupConnClosed(rsgConn *c) {
    groupConn *gc = (groupConn *)c;
    rsgUrlFree(&gc->url);
    free(gc);
}

/* Lets go of g's connection: it closes and frees itself. */
static void dropGroupConn(slotGroup *g) {
    groupConn *gc = g->gc;
    if (!gc) return;
    g->gc = NULL;
    g->busy = 0;
    g->s->requested -= g->asked;
    g->asked = 0;
    gc->g = NULL;
    rsgConnClose(&gc->conn);
}

static int clusterInit(rsgSource *s) {
    clusterState *st;
    const rsgSourceConfig *cfg = s->cfg;
    if (!(s->state = st = calloc(1, sizeof(*st)))) return -1;
    if (!(st->groups = calloc((size_t)cfg->nstreams, sizeof(slotGroup)))) return -1;
    for (int i = 0; i < cfg->nstreams; i++) {
        int slot = rsgClusterKeySlot(cfg->streams[i], strlen(cfg->streams[i]));
        slotGroup *g = NULL;
        for (int k = 0; k < st->ngroups && !g; k++)
            if (st->groups[k].slot == slot) g = &st->groups[k];
        if (!g) {
            g = &st->groups[st->ngroups++];
            *g = (slotGroup){.s = s, .slot = slot};
            if (!(g->streams = calloc((size_t)cfg->nstreams, sizeof(int)))) return -1;
            if (!(g->pend = calloc((size_t)cfg->nstreams, sizeof(pendingCounts)))) return -1;
        }
        g->pend[g->nstreams].g = g;
        g->streams[g->nstreams++] = i;
    }
    if (cfg->replay_pending)
        for (int i = 0; i < cfg->nstreams; i++)
            if (!(s->cursor[i] = strdup("0"))) return -1;
    rsgInfo("%d stream(s) in %d slot group(s): one blocking read (and connection) each",
            cfg->nstreams, st->ngroups);
    return 0;
}

static void clusterFree(rsgSource *s) {
    clusterState *st = s->state;
    if (st && st->groups)
        for (int k = 0; k < st->ngroups; k++) {
            slotGroup *g = &st->groups[k];
            for (int j = 0; g->pend && j < g->nstreams; j++)
                rsgPendingClear(&g->pend[j].pc);
            free(g->pend);
            free(g->streams);
        }
    if (st) free(st->groups);
    free(st);
    s->state = NULL;
}

/* Every group's connection is ready: each replays what it has cursors
 * for, then reads live. */
static void beginReading(rsgSource *s) {
    clusterState *st = s->state;
    int any = 0;
    for (int k = 0; k < st->ngroups; k++) {
        slotGroup *g = &st->groups[k];
        g->replaying = 0;
        for (int j = 0; j < g->nstreams; j++)
            g->replaying |= s->cursor[g->streams[j]] != NULL;
        any |= g->replaying;
    }
    rsgSourceBegin(s, any ? RSG_SRC_REPLAY : RSG_SRC_LIVE);
}

static void onGroupConnReady(rsgConn *c) {
    groupConn *gc = (groupConn *)c;
    slotGroup *g = gc->g;
    if (!g || g->s->stopped) return;
    rsgSource *s = g->s;
    clusterState *st = s->state;
    if (s->phase == RSG_SRC_SETUP) {
        if (--st->waiting == 0) beginReading(s);
    } else {
        rsgSourceKick(s);
    }
}

/* A slot group's connection went: the map may have changed under it (a
 * failover). The router learns it again and sets everything up anew. */
static void onGroupConnLost(rsgConn *c) {
    groupConn *gc = (groupConn *)c;
    if (!gc->g || gc->g->s->stopped) return;
    rsgClusterRefresh(gc->g->s->conn);
}

static void onGroupConnFatal(rsgConn *c, const char *reason) {
    groupConn *gc = (groupConn *)c;
    if (!gc->g || gc->g->s->stopped) return;
    rsgSourceFatal(gc->g->s, "%s", reason);
}

/* Opens a new connection for g to its slot's master (the old one, if any,
 * closes: a read blocked on it can no longer be told apart from a new one;
 * what it was given is replayed after the cursors). Returns 0, or -1 when
 * no master serves the slot. */
static int connectGroup(rsgSource *s, slotGroup *g) {
    rsgRedisUrl u;
    dropGroupConn(g);
    if (rsgClusterNodeUrl(s->conn, g->slot, &u) != 0) return -1;
    groupConn *gc = calloc(1, sizeof(*gc));
    if (!gc) {
        rsgUrlFree(&u);
        return -1;
    }
    gc->url = u;
    gc->g = g;
    gc->conn.data = gc;
    gc->conn.on_ready = onGroupConnReady;
    gc->conn.on_lost = onGroupConnLost;
    gc->conn.on_fatal = onGroupConnFatal;
    gc->conn.on_closed = groupConnClosed;
    gc->conn.client_name = s->conn->client_name;
    g->gc = gc;
    rsgConnStart(&gc->conn, s->conn->loop, &gc->url, "slot reader");
    return 0;
}

static void connectGroups(rsgSource *s) {
    clusterState *st = s->state;
    st->waiting = st->ngroups;
    for (int k = 0; k < st->ngroups; k++) {
        if (connectGroup(s, &st->groups[k]) != 0) {
            rsgWarn("no master serves slot %d (stream '%s') yet; waiting for the cluster",
                    st->groups[k].slot, s->cfg->streams[st->groups[k].streams[0]]);
            rsgClusterRefresh(s->conn);
            return;
        }
    }
}

static void onGroupCreated(redisAsyncContext *ac, void *r, void *privdata) {
    (void)ac;
    rsgSource *s = privdata;
    redisReply *reply = r;
    if (!reply || s->stopped) return; /* lost: setup runs again when the router is back */
    if (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "BUSYGROUP", 9) != 0) {
        rsgSourceFatal(s, "cannot create consumer group '%s': %s", s->cfg->group, reply->str);
        return;
    }
    if (--s->setup_left == 0) connectGroups(s);
}

static void clusterSetup(rsgSource *s) {
    s->setup_left = s->cfg->nstreams;
    for (int i = 0; i < s->cfg->nstreams; i++) {
        const char *argv[] = {"XGROUP",      "CREATE",          s->cfg->streams[i],
                              s->cfg->group, s->cfg->starts[i], "MKSTREAM"};
        if (rsgConnCommand(s->conn, onGroupCreated, s, 6, argv, NULL) != 0) return;
    }
}

static void onRead(redisAsyncContext *ac, void *r, void *privdata) {
    groupConn *gc = privdata;
    slotGroup *g = gc->g;
    redisReply *reply = r;
    (void)ac;
    if (!g || g->gc != gc) return; /* an old connection's read */
    rsgSource *s = g->s;
    g->busy = 0;
    s->requested -= g->asked;
    g->asked = 0;
    if (!reply || s->stopped) return; /* lost: the router sets up again */
    if (reply->type == REDIS_REPLY_ERROR) {
        rsgClusterRedirect d;
        if (rsgClusterParseRedirect(reply->str, reply->len, &d) ||
            strncmp(reply->str, "CLUSTERDOWN", 11) == 0 ||
            strncmp(reply->str, "UNBLOCKED", 9) == 0 || strncmp(reply->str, "READONLY", 8) == 0) {
            /* The slot moved, or its master became a replica. */
            rsgInfo("slot %d (stream '%s'): %s", g->slot, s->cfg->streams[g->streams[0]],
                    reply->str);
            dropGroupConn(g);
            rsgClusterRefresh(s->conn);
            return;
        }
        if (strncmp(reply->str, "NOGROUP", 7) == 0) {
            rsgWarn("consumer group '%s' is gone (%s); creating it again", s->cfg->group,
                    reply->str);
            rsgSourceOnReady(s);
            return;
        }
    }
    size_t entries;
    if (rsgSourceBeginRead(s, reply, "XREADGROUP", &entries) != 0) return;
    int n = 0;
    size_t fvused = 0;
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *stream = reply->element[i];
        const redisReply *list = stream->element[1];
        int si = rsgSourceIndex(s, stream->element[0]->str, stream->element[0]->len);
        long *counts = NULL;
        if (g->replaying && si >= 0 && list->elements &&
            (counts = malloc(sizeof(long) * list->elements)))
            for (int j = 0; j < g->nstreams; j++)
                if (g->streams[j] == si) rsgPendingReplayCounts(&g->pend[j].pc, list, counts);
        rsgSourceCollect(s, stream->element[0], list, &n, &fvused, counts);
        free(counts);
        if (list->elements && si >= 0) {
            const redisReply *last = list->element[list->elements - 1]->element[0];
            rsgSourceSetCursor(s, si, last->str, last->len);
        }
    }
    if (g->replaying) {
        g->replayed += n;
        if (entries == 0) {
            if (g->replayed)
                rsgInfo("replayed %ld pending message(s) of slot %d", g->replayed, g->slot);
            g->replayed = 0;
            g->replaying = 0;
            clusterState *st = s->state;
            int any = 0;
            for (int k = 0; k < st->ngroups; k++)
                any |= st->groups[k].replaying;
            if (!any) s->phase = RSG_SRC_LIVE;
        }
    }
    rsgSourceDeliver(s, n, 1);
}

/* Sends g's next read, of count per stream. */
static void readGroup(rsgSource *s, slotGroup *g, long count) {
    const rsgSourceConfig *cfg = s->cfg;
    int keys = 0;
    for (int j = 0; j < g->nstreams; j++)
        if (!g->replaying || s->cursor[g->streams[j]]) keys++;
    if (keys == 0) {
        g->replaying = 0;
        return;
    }
    char countbuf[24], blockbuf[24];
    snprintf(countbuf, sizeof(countbuf), "%ld", count);
    snprintf(blockbuf, sizeof(blockbuf), "%ld", cfg->block_ms);
    int max = 9 + 2 * g->nstreams, argc = 0;
    const char **argv = malloc(sizeof(char *) * (size_t)max);
    if (!argv) return;
    argv[argc++] = "XREADGROUP";
    argv[argc++] = "GROUP";
    argv[argc++] = cfg->group;
    argv[argc++] = s->consumer;
    argv[argc++] = "COUNT";
    argv[argc++] = countbuf;
    if (!g->replaying) {
        argv[argc++] = "BLOCK";
        argv[argc++] = blockbuf;
    }
    argv[argc++] = "STREAMS";
    for (int j = 0; j < g->nstreams; j++)
        if (!g->replaying || s->cursor[g->streams[j]]) argv[argc++] = cfg->streams[g->streams[j]];
    for (int j = 0; j < g->nstreams; j++)
        if (!g->replaying)
            argv[argc++] = ">";
        else if (s->cursor[g->streams[j]])
            argv[argc++] = s->cursor[g->streams[j]];
    if (g->replaying) {
        /* The delivery counts of what this replay read will return. */
        for (int j = 0; j < g->nstreams; j++) {
            const char *cursor = s->cursor[g->streams[j]];
            if (!cursor) continue;
            char start[160];
            snprintf(start, sizeof(start), "(%s", cursor);
            const char *pargv[] = {"XPENDING", cfg->streams[g->streams[j]],
                                   cfg->group, "IDLE",
                                   "0",        start,
                                   "+",        countbuf,
                                   s->consumer};
            rsgConnCommand(&g->gc->conn, onPending, &g->pend[j], 9, pargv, NULL);
        }
    }
    if (rsgConnCommand(&g->gc->conn, onRead, g->gc, argc, argv, NULL) == 0) {
        g->busy = 1;
        g->asked = count * keys;
        s->requested += g->asked;
        rsgConnFlush(&g->gc->conn);
    }
    free(argv);
}

/* The core calls this when a read may go out (s->reading stays 0: each
 * group keeps its own read in flight, so one blocked group never holds
 * back the others): every idle group with a ready connection reads. */
static void clusterRead(rsgSource *s) {
    clusterState *st = s->state;
    /* The room is shared among every stream, as one read over all of them
     * would share it (and, before any message size is known, one message
     * per stream): sized once for this round, so each idle group gets its
     * streams' share and a group blocked on an empty stream holds only its
     * own. */
    long count = rsgSourceReadCount(s, s->cfg->nstreams);
    if (count < 1) return;
    for (int k = 0; k < st->ngroups; k++) {
        slotGroup *g = &st->groups[k];
        if (g->busy || !g->gc || !g->gc->conn.ready) continue;
        readGroup(s, g, count);
    }
}

/* A slot changed master: replay every pending entry of ours from the
 * start, as the acks the old master took may be missing on the new one. */
static void clusterRewind(rsgSource *s) {
    rsgInfo("a slot changed master: replaying all pending messages of this consumer, as acks "
            "the old master took may be missing");
    for (int i = 0; i < s->cfg->nstreams; i++)
        rsgSourceSetCursor(s, i, "0", 1);
}

static void clusterStop(rsgSource *s) {
    clusterState *st = s->state;
    for (int k = 0; st && k < st->ngroups; k++)
        dropGroupConn(&st->groups[k]);
}

const rsgSourceType rsgSourceClusterGroup = {
    .name = "group",
    .key_type = "stream",
    .keeps_pending = 1,
    .consumer_pending = 1,
    .init = clusterInit,
    .setup = clusterSetup,
    .read = clusterRead,
    .ack = rsgSourceXack,
    .rewind = clusterRewind,
    .stop = clusterStop,
    .free = clusterFree,
};

int rsgSourceClusterCheck(const rsgSourceConfig *cfg, const char *consumer, char *err,
                          size_t errlen) {
    const char *noun = rsgSourceTypeOf(cfg->kind)->key_type;
    if (cfg->dead_letter) {
        /* The dead letter and the ack are one script: on a cluster its keys
         * must share a slot, so that one node runs it atomically. */
        int dl = rsgClusterKeySlot(cfg->dead_letter, strlen(cfg->dead_letter));
        for (int i = 0; i < cfg->nstreams; i++) {
            int slot = rsgClusterKeySlot(cfg->streams[i], strlen(cfg->streams[i]));
            if (slot == dl) continue;
            snprintf(err, errlen,
                     "source.dead_letter: on a Redis Cluster the dead-letter stream must be in "
                     "the same slot as every source %s, so that dead-lettering and the ack "
                     "stay one atomic script; '%s' (slot %d) and '%s' (slot %d) are not: give "
                     "them one hash tag, e.g. '{%s}' and '{%s}:dead'",
                     noun, cfg->dead_letter, dl, cfg->streams[i], slot, cfg->streams[i],
                     cfg->streams[i]);
            return -1;
        }
    }
    if (cfg->kind == RSG_SOURCE_LISTS && cfg->reliable) {
        /* The move into the processing list is one script over both keys. */
        for (int i = 0; i < cfg->nstreams; i++) {
            char proc[1024];
            const char *list = cfg->streams[i];
            rsgSourceListsProcessing(proc, sizeof(proc), consumer, list);
            int a = rsgClusterKeySlot(list, strlen(list)),
                b = rsgClusterKeySlot(proc, strlen(proc));
            if (a == b) continue;
            snprintf(err, errlen,
                     "source.reliable: on a Redis Cluster a list and its processing list '%s' "
                     "must be in one slot, so that moving an item stays atomic; '%s' (slot %d) "
                     "and it (slot %d) are not: give the list a hash tag, e.g. '{%s}'%s",
                     proc, list, a, b, list,
                     strchr(consumer, '{') ? ", and no '{' in the consumer name" : "");
            return -1;
        }
    }
    return 0;
}
