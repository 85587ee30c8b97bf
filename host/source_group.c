/* source_group.c - a consumer group: XGROUP CREATE, replay, XREADGROUP, XACK.
 *
 *   SETUP   create the group on every stream (MKSTREAM; BUSYGROUP is fine)
 *   REPLAY  read our own pending entries (id 0, then after the last one seen)
 *           until none are left: what a crash left unacknowledged
 *   LIVE    read new entries (">"), blocking up to block_ms
 * After a reconnect it goes through SETUP and REPLAY again, replaying only
 * after the last id it saw on each stream, so entries Redis delivered into a
 * read whose reply was lost are not stranded, and nothing in flight is read
 * twice. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "source_kind.h"

/* The group's own state (s->state). */
typedef struct groupState {
    long asked[2]; /* what each read in flight may bring, oldest first */
    long replayed; /* pending entries re-read, for the log */
} groupState;

/* Groups: "0" is the start of our pending entries. Without replay there is
 * no history to read until we have seen something ourselves. */
static int groupInit(rsgSource *s) {
    if (!(s->state = calloc(1, sizeof(groupState)))) return -1;
    if (s->cfg->replay_pending)
        for (int i = 0; i < s->cfg->nstreams; i++)
            if (!(s->cursor[i] = strdup("0"))) return -1;
    return 0;
}

static void groupFree(rsgSource *s) {
    free(s->state);
    s->state = NULL;
}

static void startPhaseAfterSetup(rsgSource *s) {
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

static void groupSetup(rsgSource *s) {
    s->setup_left = s->cfg->nstreams;
    for (int i = 0; i < s->cfg->nstreams; i++) {
        const char *argv[] = {"XGROUP",      "CREATE",          s->cfg->streams[i],
                              s->cfg->group, s->cfg->starts[i], "MKSTREAM"};
        if (rsgConnCommand(s->conn, onGroupCreated, s, 6, argv, NULL) != 0) return;
    }
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
    if (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "NOGROUP", 7) == 0) {
        /* The stream or group vanished (deleted, or Redis restarted
         * empty): create it again and carry on. */
        rsgWarn("consumer group '%s' is gone (%s); creating it again", s->cfg->group, reply->str);
        rsgSourceOnReady(s);
        return;
    }
    size_t entries;
    if (rsgSourceBeginRead(s, reply, "XREADGROUP", &entries) != 0) return;
    int n = 0;
    size_t fvused = 0;
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *st = reply->element[i];
        const redisReply *list = st->element[1];
        rsgSourceCollect(s, st->element[0], list, &n, &fvused);
        int si = rsgSourceIndex(s, st->element[0]->str, st->element[0]->len);
        if (list->elements && si >= 0) {
            const redisReply *last = list->element[list->elements - 1]->element[0];
            rsgSourceSetCursor(s, si, last->str, last->len);
        }
    }
    if (s->phase == RSG_SRC_REPLAY) {
        g->replayed += n;
        if (entries == 0) {
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
    int live = s->phase == RSG_SRC_LIVE, keys = 0;
    for (int i = 0; i < cfg->nstreams; i++)
        if (live || s->cursor[i]) keys++;
    long count = rsgSourceReadCount(s, keys);
    if (count < 1) return;

    char countbuf[24], blockbuf[24];
    snprintf(countbuf, sizeof(countbuf), "%ld", count);
    snprintf(blockbuf, sizeof(blockbuf), "%ld", cfg->block_ms);
    int max = 9 + 2 * cfg->nstreams;
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
    if (live) {
        argv[argc++] = "BLOCK";
        argv[argc++] = blockbuf;
    }
    argv[argc++] = "STREAMS";
    for (int i = 0; i < cfg->nstreams; i++)
        if (live || s->cursor[i]) argv[argc++] = cfg->streams[i];
    for (int i = 0; i < cfg->nstreams; i++)
        if (live)
            argv[argc++] = ">";
        else if (s->cursor[i])
            argv[argc++] = s->cursor[i];
    if (rsgConnCommand(s->conn, onRead, s, argc, argv, NULL) == 0) {
        ((groupState *)s->state)->asked[s->reading++] = count * keys;
        s->requested += count * keys;
    }
    if (argv != stackv) free(argv);
}

static void groupAck(rsgSource *s, rsgStr stream, int n, const rsgStr *ids) {
    const char *sargv[259];
    size_t slens[259];
    int argc = n + 3;
    const char **argv = argc <= 259 ? sargv : malloc(sizeof(char *) * (size_t)argc);
    size_t *lens = argc <= 259 ? slens : malloc(sizeof(size_t) * (size_t)argc);
    int ok = argv && lens;
    if (ok) {
        argv[0] = "XACK", lens[0] = 4;
        argv[1] = stream.p, lens[1] = stream.len;
        argv[2] = s->cfg->group, lens[2] = strlen(s->cfg->group);
        for (int i = 0; i < n; i++)
            argv[i + 3] = ids[i].p, lens[i + 3] = ids[i].len;
        ok = rsgAckPush(s->ack, argc, argv, lens, n) == 0;
    }
    if (ok) rsgDebug("acking %d message(s) of stream '%.*s'", n, (int)stream.len, stream.p);
    if (argv != sargv) free(argv);
    if (lens != slens) free(lens);
    if (!ok) rsgError("out of memory queueing acks: %d message(s) stay pending", n);
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
    .ack = groupAck,
    .rewind = groupRewind,
    .free = groupFree,
};
