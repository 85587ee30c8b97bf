/* source_cluster.c - a consumer group on a Redis Cluster.
 *
 * Redis refuses a multi-key command over keys of different slots
 * (CROSSSLOT), so one XREADGROUP cannot read every stream. The streams are
 * put in slot groups, one per slot (streams sharing a hash tag, such as
 * "{orders}:eu" and "{orders}:us", share one); each group has its own
 * connection to the master serving its slot (slot_readers.h), on which it
 * sits in its own blocking XREADGROUP. N slot groups cost N connections,
 * whatever the number of nodes: a blocked connection carries nothing else,
 * and two blocking reads on one connection would wait for each other.
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
#include "slot_readers.h"
#include "source_kind.h"

/* What the group kind keeps per slot group, beside its reader. */
typedef struct groupExtra {
    int replaying;          /* reading our pending entries after the cursors */
    long replayed;          /* entries replayed, for the log */
    rsgPendingCounts *pend; /* per stream of the group (same order as its keys) */
} groupExtra;

typedef struct clusterState {
    rsgSlotReaders readers; /* one per distinct slot, in the order streams were given */
    groupExtra *ex;         /* ex[k] goes with readers.r[k] */
} clusterState;

static groupExtra *extraOf(rsgSource *s, const rsgSlotReader *g) {
    clusterState *st = s->state;
    return &st->ex[g - st->readers.r];
}

/* XPENDING stream group IDLE 0 (cursor + count consumer. A failed reply
 * leaves no counts: those entries go to Lua as at their first delivery. */
static void onPending(redisAsyncContext *ac, void *r, void *privdata) {
    (void)ac;
    rsgPendingCounts *pc = privdata;
    redisReply *reply = r;
    rsgPendingClear(pc);
    if (reply) rsgPendingTake(pc, reply);
}

static int clusterInit(rsgSource *s) {
    clusterState *st;
    const rsgSourceConfig *cfg = s->cfg;
    if (!(s->state = st = calloc(1, sizeof(*st)))) return -1;
    if (rsgSlotReadersInit(&st->readers, s, "stream") != 0) return -1;
    if (!(st->ex = calloc((size_t)st->readers.n, sizeof(groupExtra)))) return -1;
    for (int k = 0; k < st->readers.n; k++)
        if (!(st->ex[k].pend = calloc((size_t)st->readers.r[k].nkeys, sizeof(rsgPendingCounts))))
            return -1;
    if (cfg->replay_pending)
        for (int i = 0; i < cfg->nstreams; i++)
            if (!(s->cursor[i] = strdup("0"))) return -1;
    return 0;
}

static void clusterFree(rsgSource *s) {
    clusterState *st = s->state;
    if (!st) return;
    for (int k = 0; st->ex && k < st->readers.n; k++) {
        for (int j = 0; st->ex[k].pend && j < st->readers.r[k].nkeys; j++)
            rsgPendingClear(&st->ex[k].pend[j]);
        free(st->ex[k].pend);
    }
    free(st->ex);
    rsgSlotReadersFree(&st->readers);
    free(st);
    s->state = NULL;
}

/* Every group's connection is ready: each replays what it has cursors
 * for, then reads live. */
static void beginReading(rsgSource *s) {
    clusterState *st = s->state;
    int any = 0;
    for (int k = 0; k < st->readers.n; k++) {
        const rsgSlotReader *g = &st->readers.r[k];
        groupExtra *x = &st->ex[k];
        x->replaying = 0;
        for (int j = 0; j < g->nkeys; j++)
            x->replaying |= s->cursor[g->keys[j]] != NULL;
        any |= x->replaying;
    }
    rsgSourceBegin(s, any ? RSG_SRC_REPLAY : RSG_SRC_LIVE);
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
    if (--s->setup_left == 0)
        rsgSlotReadersConnect(&((clusterState *)s->state)->readers, beginReading);
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
    (void)ac;
    rsgSlotReader *g = rsgSlotReaderOf(privdata);
    redisReply *reply = r;
    if (!g) return; /* an old connection's read */
    rsgSource *s = g->rs->s;
    groupExtra *x = extraOf(s, g);
    if (!reply || s->stopped) return;              /* lost: the router sets up again */
    if (rsgSlotReaderRedirected(g, reply)) return; /* the slot moved, or its master went */
    if (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "NOGROUP", 7) == 0) {
        rsgWarn("consumer group '%s' is gone (%s); creating it again", s->cfg->group, reply->str);
        rsgSourceOnReady(s);
        return;
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
        if (x->replaying && si >= 0 && list->elements &&
            (counts = malloc(sizeof(long) * list->elements)))
            for (int j = 0; j < g->nkeys; j++)
                if (g->keys[j] == si) rsgPendingReplayCounts(&x->pend[j], list, counts);
        rsgSourceCollect(s, stream->element[0], list, &n, &fvused, counts);
        free(counts);
        if (list->elements && si >= 0) {
            const redisReply *last = list->element[list->elements - 1]->element[0];
            rsgSourceSetCursor(s, si, last->str, last->len);
        }
    }
    if (x->replaying) {
        x->replayed += n;
        if (entries == 0) {
            if (x->replayed)
                rsgInfo("replayed %ld pending message(s) of slot %d", x->replayed, g->slot);
            x->replayed = 0;
            x->replaying = 0;
            clusterState *st = s->state;
            int any = 0;
            for (int k = 0; k < st->readers.n; k++)
                any |= st->ex[k].replaying;
            if (!any) s->phase = RSG_SRC_LIVE;
        }
    }
    rsgSourceDeliver(s, n, 1);
}

/* Sends g's next read, of count per stream. */
static void readGroup(rsgSource *s, rsgSlotReader *g, long count) {
    const rsgSourceConfig *cfg = s->cfg;
    groupExtra *x = extraOf(s, g);
    int keys = 0;
    for (int j = 0; j < g->nkeys; j++)
        if (!x->replaying || s->cursor[g->keys[j]]) keys++;
    if (keys == 0) {
        x->replaying = 0;
        return;
    }
    char countbuf[24], blockbuf[24];
    snprintf(countbuf, sizeof(countbuf), "%ld", count);
    snprintf(blockbuf, sizeof(blockbuf), "%ld", cfg->block_ms);
    int max = 9 + 2 * g->nkeys, argc = 0;
    const char **argv = malloc(sizeof(char *) * (size_t)max);
    if (!argv) return;
    argv[argc++] = "XREADGROUP";
    argv[argc++] = "GROUP";
    argv[argc++] = cfg->group;
    argv[argc++] = s->consumer;
    argv[argc++] = "COUNT";
    argv[argc++] = countbuf;
    if (!x->replaying) {
        argv[argc++] = "BLOCK";
        argv[argc++] = blockbuf;
    }
    argv[argc++] = "STREAMS";
    for (int j = 0; j < g->nkeys; j++)
        if (!x->replaying || s->cursor[g->keys[j]]) argv[argc++] = cfg->streams[g->keys[j]];
    for (int j = 0; j < g->nkeys; j++)
        if (!x->replaying)
            argv[argc++] = ">";
        else if (s->cursor[g->keys[j]])
            argv[argc++] = s->cursor[g->keys[j]];
    if (x->replaying) {
        /* The delivery counts of what this replay read will return. */
        for (int j = 0; j < g->nkeys; j++) {
            const char *cursor = s->cursor[g->keys[j]];
            if (!cursor) continue;
            char start[160];
            snprintf(start, sizeof(start), "(%s", cursor);
            const char *pargv[] = {
                "XPENDING", cfg->streams[g->keys[j]], cfg->group, "IDLE", "0", start, "+", countbuf,
                s->consumer};
            rsgSlotReaderCommand(g, onPending, &x->pend[j], 9, pargv);
        }
    }
    rsgSlotReaderSend(g, onRead, count * keys, argc, argv);
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
    for (int k = 0; k < st->readers.n; k++)
        if (rsgSlotReaderIdle(&st->readers.r[k])) readGroup(s, &st->readers.r[k], count);
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
    if (st) rsgSlotReadersStop(&st->readers);
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
