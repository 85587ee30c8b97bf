/* source_group.c - a consumer group: XGROUP CREATE, replay, XREADGROUP, XACK.
 *
 *   SETUP   create the group on every stream (MKSTREAM; BUSYGROUP is fine)
 *   REPLAY  read our own pending entries (id 0, then after the last one seen)
 *           until none are left: what a crash left unacknowledged
 *   LIVE    read new entries (">"), blocking up to block_ms
 * After a reconnect it goes through SETUP and REPLAY again, replaying only
 * after the last id it saw on each stream, so entries Redis delivered into a
 * read whose reply was lost are not stranded, and nothing in flight is read
 * twice.
 *
 * Delivery counts: a live read's entries are at their first delivery, and
 * go to Lua without counts (the hot path costs nothing). Before each replay
 * read, one XPENDING per stream over the same range (pipelined on the reader
 * connection, whose replies come in order) gives the times-delivered of the
 * entries that read will return; the read adds one to each. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "source_kind.h"

/* XPENDING of one stream for the replay read in flight: ids and counts in
 * id order, copied (a reply lives only during its callback). */
typedef struct pendingCounts {
    rsgSource *s;        /* back pointer: privdata of the XPENDING */
    int stream;          /* index into cfg->streams */
    rsgPendingCounts pc; /* what it said */
} pendingCounts;

/* The group's own state (s->state). */
typedef struct groupState {
    long asked[2];       /* what each read in flight may bring, oldest first */
    long replayed;       /* pending entries re-read, for the log */
    pendingCounts *pend; /* per stream, for the replay read in flight */
    int set_up;          /* the group was set up once in this run */
    char **seen;         /* per stream, the last id a live read brought, or NULL */
    char *drained;       /* per stream: its replay is over (no more pending after the cursor) */
    int *idx;            /* scratch: the streams a read may name (rsgSourcePlanRead) */
    long replay_count;   /* COUNT of the replay read in flight */
} groupState;

/* Groups: "0" is the start of our pending entries. Without replay there is
 * no history to read until we have seen something ourselves. */
static int groupInit(rsgSource *s) {
    groupState *g;
    if (!(s->state = g = calloc(1, sizeof(groupState)))) return -1;
    if (!(g->pend = calloc((size_t)s->cfg->nstreams, sizeof(*g->pend)))) return -1;
    if (!(g->seen = calloc((size_t)s->cfg->nstreams, sizeof(char *)))) return -1;
    if (!(g->drained = calloc((size_t)s->cfg->nstreams, 1))) return -1;
    if (!(g->idx = calloc((size_t)s->cfg->nstreams, sizeof(int)))) return -1;
    for (int i = 0; i < s->cfg->nstreams; i++)
        g->pend[i] = (pendingCounts){.s = s, .stream = i};
    if (s->cfg->replay_pending)
        for (int i = 0; i < s->cfg->nstreams; i++)
            if (!(s->cursor[i] = strdup("0"))) return -1;
    return 0;
}

static void groupFree(rsgSource *s) {
    groupState *g = s->state;
    if (g && g->pend) {
        for (int i = 0; i < s->cfg->nstreams; i++)
            rsgPendingClear(&g->pend[i].pc);
        free(g->pend);
    }
    if (g && g->seen) {
        for (int i = 0; i < s->cfg->nstreams; i++)
            free(g->seen[i]);
        free(g->seen);
    }
    if (g) {
        free(g->drained);
        free(g->idx);
    }
    free(s->state);
    s->state = NULL;
}

static void startPhaseAfterSetup(rsgSource *s) {
    groupState *g = s->state;
    g->set_up = 1;
    memset(g->drained, 0, (size_t)s->cfg->nstreams);
    int any = 0;
    for (int i = 0; i < s->cfg->nstreams; i++)
        any |= s->cursor[i] != NULL;
    rsgSourceBegin(s, any ? RSG_SRC_REPLAY : RSG_SRC_LIVE);
}

static void onGroupCreated(redisAsyncContext *ac, void *r, void *privdata) {
    (void)ac;
    rsgSource *s = privdata;
    redisReply *reply = r;
    if (!reply || s->stopped) return; /* lost: setup runs again on reconnect */
    if (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "BUSYGROUP", 9) != 0) {
        rsgSourceFatal(s, "cannot create consumer group '%s': %s", s->cfg->group, reply->str);
        return;
    }
    if (--s->setup_left == 0) startPhaseAfterSetup(s);
}

/* Setting up again mid-run (after a reconnect, or NOGROUP on a read), as one
 * script per stream. The group is there: 2. The stream is gone (deleted, or
 * Redis came back empty): it holds nothing old, so it is created again with
 * the group at the start id: 1. The stream is there without the group, and
 * every entry in it is newer than the last one this consumer read (Redis lost
 * its data or the stream was deleted, and a producer wrote it again before we
 * noticed): the same, 3. Otherwise the stream still holds what we processed
 * and the group was destroyed (XGROUP DESTROY): creating it at "0" would
 * silently process the whole stream again, at "$" skip what came meanwhile,
 * and only the user knows where it stood: 0, reported. Without a last id
 * (nothing read live yet) we cannot tell: 0. KEYS[1] stream; ARGV: group,
 * start id, the last id read ("" none). */
static const char *resetupScript =
    "if redis.call('EXISTS', KEYS[1]) == 0 then\n"
    "  redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[1], ARGV[2], 'MKSTREAM')\n"
    "  return 1\n"
    "end\n"
    "for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do\n"
    "  if g[2] == ARGV[1] then return 2 end\n"
    "end\n"
    "if ARGV[3] == '' or #redis.call('XRANGE', KEYS[1], '-', ARGV[3], 'COUNT', 1) > 0 then\n"
    "  return 0\n"
    "end\n"
    "redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[1], ARGV[2])\n"
    "return 3\n";

static void onGroupChecked(redisAsyncContext *ac, void *r, void *privdata) {
    (void)ac;
    rsgSource *s = privdata;
    redisReply *reply = r;
    if (!reply || s->stopped) return; /* lost: setup runs again on reconnect */
    /* Replies come in order: this one is for the first stream not yet counted. */
    const char *stream = s->cfg->streams[s->cfg->nstreams - s->setup_left];
    if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 0) {
        rsgSourceFatal(s,
                       "consumer group '%s' of stream '%s' is gone (XGROUP DESTROY?) while this "
                       "consumer was running, and the stream still holds what it read: stopping "
                       "rather than creating it again, which would read the stream again from "
                       "'%s' or skip what came meanwhile. Create it where it stood (XGROUP CREATE "
                       "%s %s <last processed id>) and start again",
                       s->cfg->group, stream, s->cfg->starts[s->cfg->nstreams - s->setup_left],
                       stream, s->cfg->group);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        rsgSourceFatal(s, "cannot check consumer group '%s' of stream '%s': %s", s->cfg->group,
                       stream, reply->str);
        return;
    }
    if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 1)
        rsgWarn("stream '%s' is gone (deleted, or redis lost its data): created it again with "
                "consumer group '%s' at '%s'",
                stream, s->cfg->group, s->cfg->starts[s->cfg->nstreams - s->setup_left]);
    if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 3)
        rsgWarn("stream '%s' was written again from scratch (deleted, or redis lost its data): "
                "none of its entries is one this consumer read; created consumer group '%s' "
                "again at '%s'",
                stream, s->cfg->group, s->cfg->starts[s->cfg->nstreams - s->setup_left]);
    if (--s->setup_left == 0) startPhaseAfterSetup(s);
}

static void groupSetup(rsgSource *s) {
    groupState *g = s->state;
    s->setup_left = s->cfg->nstreams;
    for (int i = 0; i < s->cfg->nstreams; i++) {
        const char *argv[] = {"XGROUP",      "CREATE",          s->cfg->streams[i],
                              s->cfg->group, s->cfg->starts[i], "MKSTREAM"};
        const char *check[] = {"EVAL",
                               resetupScript,
                               "1",
                               s->cfg->streams[i],
                               s->cfg->group,
                               s->cfg->starts[i],
                               g->seen[i] ? g->seen[i] : ""};
        if (g->set_up ? rsgConnCommand(s->conn, onGroupChecked, s, 7, check, NULL)
                      : rsgConnCommand(s->conn, onGroupCreated, s, 6, argv, NULL))
            return;
    }
}

/* XPENDING stream group IDLE 0 (cursor + count consumer: [[id, consumer,
 * idle, count]...]), sent just before a replay read. A failed reply leaves
 * no counts: those entries then go to Lua as at their first delivery. */
static void onPending(redisAsyncContext *ac, void *r, void *privdata) {
    (void)ac;
    pendingCounts *p = privdata;
    redisReply *reply = r;
    rsgPendingClear(&p->pc);
    if (!reply || p->s->stopped) return;
    if (reply->type == REDIS_REPLY_ERROR)
        rsgWarn("XPENDING of stream '%s' failed (%s): its replayed messages' delivery counts "
                "are unknown",
                p->s->cfg->streams[p->stream], reply->str);
    else
        rsgPendingTake(&p->pc, reply);
}

static void onRead(redisAsyncContext *ac, void *r, void *privdata) {
    (void)ac;
    rsgSource *s = privdata;
    groupState *g = s->state;
    redisReply *reply = r;
    if (s->reading > 0) {
        /* Replies come in order: this is the oldest read in flight. */
        s->reading--;
        s->requested -= g->asked[0];
        g->asked[0] = g->asked[1];
    }
    if (!reply || s->stopped) return; /* lost: OnReady resumes; stopped: pending stays */
    /* Redis 7 ends a blocked read on a deleted stream with -UNBLOCKED ... no
     * longer exists, a read of a missing stream or group with -NOGROUP. */
    if (reply->type == REDIS_REPLY_ERROR &&
        (strncmp(reply->str, "NOGROUP", 7) == 0 ||
         (strncmp(reply->str, "UNBLOCKED", 9) == 0 && strstr(reply->str, "no longer exists")))) {
        /* The stream or group vanished: setting up again finds out which,
         * and stops rather than re-read a stream from its start. */
        rsgWarn("reading consumer group '%s' failed (%s): checking its streams", s->cfg->group,
                reply->str);
        rsgSourceOnReady(s);
        return;
    }
    size_t entries;
    if (rsgSourceBeginRead(s, reply, "XREADGROUP", &entries) != 0) return;
    int n = 0;
    size_t fvused = 0;
    int replay = s->phase == RSG_SRC_REPLAY;
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *st = reply->element[i];
        const redisReply *list = st->element[1];
        int si = rsgSourceIndex(s, st->element[0]->str, st->element[0]->len);
        long *counts = NULL;
        if (replay && si >= 0 && list->elements && (counts = malloc(sizeof(long) * list->elements)))
            rsgPendingReplayCounts(&g->pend[si].pc, list, counts);
        rsgSourceCollect(s, st->element[0], list, &n, &fvused, counts);
        free(counts);
        /* A replay read names each stream with its cursor and gets it back
         * with what is pending after it: fewer than asked, and that stream's
         * replay is over. */
        if (replay && si >= 0 && (long)list->elements < g->replay_count) g->drained[si] = 1;
        if (list->elements && si >= 0) {
            const redisReply *last = list->element[list->elements - 1]->element[0];
            rsgSourceSetCursor(s, si, last->str, last->len);
            char *copy = replay ? NULL : strndup(last->str, last->len);
            if (copy) { /* out of memory: the older one still tells */
                free(g->seen[si]);
                g->seen[si] = copy;
            }
        }
    }
    if (replay) {
        g->replayed += n;
        int left = 0;
        for (int i = 0; i < s->cfg->nstreams && !left; i++)
            left = s->cursor[i] && !g->drained[i];
        if (!left) {
            if (g->replayed) rsgInfo("replayed %ld pending message(s)", g->replayed);
            g->replayed = 0;
            s->phase = RSG_SRC_LIVE;
        }
    }
    /* The next read goes out before Lua works on this one. */
    rsgSourceDeliver(s, n, 1);
}

static void groupRead(rsgSource *s) {
    const rsgSourceConfig *cfg = s->cfg;
    groupState *g = s->state;
    int live = s->phase == RSG_SRC_LIVE, n = 0, block;
    for (int i = 0; i < cfg->nstreams; i++)
        if (live || (s->cursor[i] && !g->drained[i])) g->idx[n++] = i;
    long count;
    int keys = rsgSourcePlanRead(s, g->idx, n, live, &count, &block);
    if (keys < 1) return;

    char countbuf[24], blockbuf[24];
    snprintf(countbuf, sizeof(countbuf), "%ld", count);
    snprintf(blockbuf, sizeof(blockbuf), "%ld", cfg->block_ms);
    int max = 9 + 2 * keys;
    const char *stackv[64];
    const char **argv = max <= 64 ? stackv : malloc(sizeof(char *) * (size_t)max);
    if (!argv) return;
    int argc = 0;
    argv[argc++] = "XREADGROUP";
    argv[argc++] = "GROUP";
    argv[argc++] = cfg->group;
    argv[argc++] = s->consumer;
    argv[argc++] = "COUNT";
    argv[argc++] = countbuf;
    if (block) {
        argv[argc++] = "BLOCK";
        argv[argc++] = blockbuf;
    }
    argv[argc++] = "STREAMS";
    for (int k = 0; k < keys; k++)
        argv[argc++] = cfg->streams[g->idx[k]];
    for (int k = 0; k < keys; k++)
        argv[argc++] = live ? ">" : s->cursor[g->idx[k]];
    if (!live) {
        /* The delivery counts of what this replay read will return. */
        g->replay_count = count;
        for (int k = 0; k < keys; k++) {
            int i = g->idx[k];
            char start[160];
            snprintf(start, sizeof(start), "(%s", s->cursor[i]);
            const char *pargv[] = {"XPENDING", cfg->streams[i], cfg->group, "IDLE", "0", start,
                                   "+",        countbuf,        s->consumer};
            rsgConnCommand(s->conn, onPending, &g->pend[i], 9, pargv, NULL);
        }
    }
    if (rsgConnCommand(s->conn, onRead, s, argc, argv, NULL) == 0) {
        g->asked[s->reading++] = count * keys;
        s->requested += count * keys;
    }
    if (argv != stackv) free(argv);
}

/* A failover: replay every pending entry of ours from the start. */
static void groupRewind(rsgSource *s) {
    rsgInfo("the master changed: replaying all pending messages of this consumer, as acks the "
            "old master took may be missing");
    for (int i = 0; i < s->cfg->nstreams; i++)
        rsgSourceSetCursor(s, i, "0", 1);
}

const rsgSourceType rsgSourceGroup = {
    .name = "group",
    .key_type = "stream",
    .keeps_pending = 1,
    .consumer_pending = 1,
    .init = groupInit,
    .setup = groupSetup,
    .read = groupRead,
    .ack = rsgSourceXack,
    .rewind = groupRewind,
    .free = groupFree,
};
