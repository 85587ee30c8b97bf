/* source_streams.c - plain streams without a group: XREAD from a cursor.
 *
 * There is no pending list: what a crash interrupts is gone unless the
 * script names a checkpoint hash (source.checkpoint). Then, after each batch
 * left the pipeline, the host stores per stream the last id such that it and
 * every id before it have left the pipeline (sunk, dropped, or given up on),
 * and a restart resumes after it. Acks do not come in id order (a dropped
 * message is acked while earlier ones wait in a batch), so each stream keeps
 * a FIFO of the ids in flight with a done flag; the checkpoint is the last of
 * the leading run of done ids.
 *
 * On a Redis Cluster (slot_readers.h) one XREAD cannot name streams of
 * different slots: the streams of each slot are read together, each slot
 * group in its own blocking XREAD on a connection of its own to its slot's
 * master, from the same cursors. The checkpoint hash is one key: reading
 * it at start and every HSET go through the routers (the reader's and the
 * ack queue's) to its slot's master, wherever the streams are. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "slot_readers.h"
#include "source_kind.h"

#define ID_MAX 48 /* "18446744073709551615-18446744073709551615" fits */

typedef struct trackEntry {
    char id[ID_MAX];
    unsigned char len;
    unsigned char done;
} trackEntry;

typedef struct tracker {
    trackEntry *ring; /* ids in flight, in read order */
    size_t cap, head, count;
} tracker;

/* The plain streams' own state (s->state). */
typedef struct streamsState {
    tracker *trackers;      /* per stream, with a checkpoint: ids in flight; else NULL */
    rsgSlotReaders readers; /* on a cluster: the slot groups' reads */
    int *idx;               /* scratch: the streams a read may name (rsgSourcePlanRead) */
} streamsState;

static int streamsInit(rsgSource *s) {
    streamsState *st = calloc(1, sizeof(*st));
    if (!(s->state = st)) return -1;
    if (s->cfg->cluster && rsgSlotReadersInit(&st->readers, s, "stream") != 0) return -1;
    if (!(st->idx = calloc((size_t)s->cfg->nstreams, sizeof(int)))) return -1;
    if (!s->cfg->checkpoint) return 0;
    st->trackers = calloc((size_t)s->cfg->nstreams, sizeof(tracker));
    return st->trackers ? 0 : -1;
}

static void streamsFree(rsgSource *s) {
    streamsState *st = s->state;
    if (!st) return;
    if (st->trackers)
        for (int i = 0; i < s->cfg->nstreams; i++)
            free(st->trackers[i].ring);
    free(st->trackers);
    free(st->idx);
    rsgSlotReadersFree(&st->readers);
    free(st);
    s->state = NULL;
}

static int trackPush(tracker *t, const char *id, size_t len) {
    if (len >= ID_MAX) return -1;
    if (t->count == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 1024;
        trackEntry *r = malloc(cap * sizeof(*r));
        if (!r) return -1;
        for (size_t i = 0; i < t->count; i++)
            r[i] = t->ring[(t->head + i) % t->cap];
        free(t->ring);
        t->ring = r;
        t->cap = cap;
        t->head = 0;
    }
    trackEntry *e = &t->ring[(t->head + t->count) % t->cap];
    memcpy(e->id, id, len);
    e->len = (unsigned char)len;
    e->done = 0;
    t->count++;
    return 0;
}

/* ---- Setup: where each stream starts ---- */

static void groupsReady(rsgSource *s) {
    rsgSourceBegin(s, RSG_SRC_LIVE);
}

/* Every cursor is known: on one server reading starts at once; on a
 * cluster once every slot group's connection is (again) ready. */
static void begin(rsgSource *s) {
    streamsState *st = s->state;
    if (s->cfg->cluster)
        rsgSlotReadersConnect(&st->readers, groupsReady);
    else
        rsgSourceBegin(s, RSG_SRC_LIVE);
}

static void onLastId(redisAsyncContext *ac, void *r, void *privdata) {
    (void)ac;
    int i;
    rsgSource *s = rsgSourceKeyOf(privdata, &i);
    redisReply *reply = r;
    if (!reply || s->stopped || s->cursor[i]) return;
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements > 0 &&
        reply->element[0]->type == REDIS_REPLY_ARRAY && reply->element[0]->elements > 0) {
        const redisReply *id = reply->element[0]->element[0];
        rsgSourceSetCursor(s, i, id->str, id->len);
    } else {
        rsgSourceSetCursor(s, i, "0-0", 3); /* empty or missing stream: from its start */
    }
    if (--s->setup_left == 0) begin(s);
}

/* Streams still without a cursor start at their configured id; "$" is made
 * concrete now (the last id), since every later XREAD must name a cursor. */
static void resolveStarts(rsgSource *s) {
    s->setup_left = 0;
    for (int i = 0; i < s->cfg->nstreams; i++) {
        if (s->cursor[i]) continue;
        if (strcmp(s->cfg->starts[i], "$") != 0) {
            s->cursor[i] = strdup(s->cfg->starts[i]);
            continue;
        }
        s->setup_left++;
    }
    if (s->setup_left == 0) {
        begin(s);
        return;
    }
    for (int i = 0; i < s->cfg->nstreams; i++) {
        if (s->cursor[i]) continue;
        /* Its privdata names the stream: on a cluster the replies of
         * different masters come back in any order. */
        const char *argv[] = {"XREVRANGE", s->cfg->streams[i], "+", "-", "COUNT", "1"};
        if (rsgConnCommand(s->conn, onLastId, rsgSourceKeyRef(s, i), 6, argv, NULL) != 0) return;
    }
}

static void onCheckpoint(redisAsyncContext *ac, void *r, void *privdata) {
    (void)ac;
    rsgSource *s = privdata;
    redisReply *reply = r;
    if (!reply || s->stopped) return;
    if (reply->type == REDIS_REPLY_ERROR) {
        rsgSourceFatal(s, "cannot read checkpoint hash '%s': %s", s->cfg->checkpoint, reply->str);
        return;
    }
    int resumed = 0;
    for (size_t k = 0; reply->type == REDIS_REPLY_ARRAY && k + 1 < reply->elements; k += 2) {
        const redisReply *f = reply->element[k], *v = reply->element[k + 1];
        int i = rsgSourceIndex(s, f->str, f->len);
        if (i < 0 || s->cursor[i]) continue;
        rsgSourceSetCursor(s, i, v->str, v->len);
        rsgInfo("stream '%s': resuming after checkpoint %s", s->cfg->streams[i], s->cursor[i]);
        resumed++;
    }
    (void)resumed;
    resolveStarts(s);
}

static void streamsSetup(rsgSource *s) {
    /* After a reconnect the cursors are where we were: nothing to resolve. */
    int have = 1;
    for (int i = 0; i < s->cfg->nstreams; i++)
        have &= s->cursor[i] != NULL;
    if (have) {
        begin(s);
        return;
    }
    if (s->cfg->checkpoint) {
        const char *argv[] = {"HGETALL", s->cfg->checkpoint};
        rsgConnCommand(s->conn, onCheckpoint, s, 2, argv, NULL);
        return;
    }
    resolveStarts(s);
}

/* ---- Reading ---- */

/* Takes an XREAD reply's entries, tracks them, moves the cursors and
 * delivers them. */
static void took(rsgSource *s, const redisReply *reply) {
    tracker *trackers = ((streamsState *)s->state)->trackers;
    size_t entries;
    if (rsgSourceBeginRead(s, reply, "XREAD", &entries) != 0) return;
    int n = 0;
    size_t fvused = 0;
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *st = reply->element[i], *list = st->element[1];
        int si = rsgSourceIndex(s, st->element[0]->str, st->element[0]->len);
        if (si < 0 || list->elements == 0) continue;
        /* Track before converting: a message skipped for bad bytes is marked
         * done at once, and must be found. */
        if (trackers)
            for (size_t j = 0; j < list->elements; j++) {
                const redisReply *id = list->element[j]->element[0];
                if (trackPush(&trackers[si], id->str, id->len) != 0) {
                    rsgSourceFatal(s, "out of memory tracking the checkpoint");
                    return;
                }
            }
        rsgSourceCollect(s, st->element[0], list, &n, &fvused, NULL);
        const redisReply *last = list->element[list->elements - 1]->element[0];
        rsgSourceSetCursor(s, si, last->str, last->len);
    }
    rsgSourceDeliver(s, n, 1);
}

static void onRead(redisAsyncContext *ac, void *r, void *privdata) {
    (void)ac;
    rsgSource *s = privdata;
    redisReply *reply = r;
    s->reading = 0;
    if (!reply || s->stopped) return;
    took(s, reply);
}

/* A slot group's XREAD (on a cluster). */
static void onGroupRead(redisAsyncContext *ac, void *r, void *privdata) {
    (void)ac;
    rsgSlotReader *g = rsgSlotReaderOf(privdata);
    redisReply *reply = r;
    if (!g) return; /* a dropped connection's read: its cursors did not move */
    rsgSource *s = g->rs->s;
    if (!reply || s->stopped || rsgSlotReaderRedirected(g, reply)) return;
    took(s, reply);
}

/* XREAD COUNT count [BLOCK ms] STREAMS over the n streams keys[] (indexes
 * into cfg->streams) from their cursors: on g's connection, or s->conn. */
static void sendRead(rsgSource *s, rsgSlotReader *g, long count, int block, int n,
                     const int *keys) {
    const rsgSourceConfig *cfg = s->cfg;
    char countbuf[24], blockbuf[24];
    snprintf(countbuf, sizeof(countbuf), "%ld", count);
    snprintf(blockbuf, sizeof(blockbuf), "%ld", cfg->block_ms);
    int max = 6 + 2 * n;
    const char *stackv[64];
    const char **argv = max <= 64 ? stackv : malloc(sizeof(char *) * (size_t)max);
    if (!argv) return;
    int argc = 0;
    argv[argc++] = "XREAD";
    argv[argc++] = "COUNT";
    argv[argc++] = countbuf;
    if (block) {
        argv[argc++] = "BLOCK";
        argv[argc++] = blockbuf;
    }
    argv[argc++] = "STREAMS";
    for (int i = 0; i < n; i++)
        argv[argc++] = cfg->streams[keys[i]];
    for (int i = 0; i < n; i++)
        argv[argc++] = s->cursor[keys[i]];
    if (g)
        rsgSlotReaderSend(g, onGroupRead, count * n, argc, argv);
    else if (rsgConnCommand(s->conn, onRead, s, argc, argv, NULL) == 0)
        s->reading = 1;
    if (argv != stackv) free(argv);
}

static void streamsRead(rsgSource *s) {
    streamsState *st = s->state;
    if (!s->cfg->cluster) {
        /* Every stream, or a window of them in turn (rules.c's read sizing). */
        int n = s->cfg->nstreams, block;
        long count;
        for (int i = 0; i < n; i++)
            st->idx[i] = i;
        int keys = rsgSourcePlanRead(s, st->idx, n, 1, &count, &block);
        if (keys > 0) sendRead(s, NULL, count, block, keys, st->idx);
        return;
    }
    /* On a cluster each idle slot group takes its share of the room, as one
     * read over all of them would share it. */
    long count = rsgSourceReadCount(s, s->cfg->nstreams);
    if (count < 1) return;
    for (int k = 0; k < st->readers.n; k++) {
        rsgSlotReader *g = &st->readers.r[k];
        if (rsgSlotReaderIdle(g)) sendRead(s, g, count, 1, g->nkeys, g->keys);
    }
}

/* ---- Checkpoints ---- */

/* Sunk, dropped or given up on (ack and abandon alike): these ids have left
 * the pipeline, and the checkpoint moves past every leading one that has. */
static void streamsAck(rsgSource *s, rsgStr stream, int n, const rsgStr *ids) {
    streamsState *st = s->state;
    if (!st->trackers) return;
    int si = rsgSourceIndex(s, stream.p, stream.len);
    if (si < 0) return;
    tracker *t = &st->trackers[si];
    /* Ids of one call come in read order: keep scanning from the last hit. */
    size_t pos = 0;
    for (int k = 0; k < n; k++) {
        size_t tries = 0;
        for (; tries < t->count; tries++, pos = (pos + 1) % t->count) {
            trackEntry *e = &t->ring[(t->head + pos) % t->cap];
            if (!e->done && e->len == ids[k].len && memcmp(e->id, ids[k].p, ids[k].len) == 0) {
                e->done = 1;
                break;
            }
        }
    }
    char last[ID_MAX];
    size_t lastlen = 0;
    while (t->count && t->ring[t->head].done) {
        trackEntry *e = &t->ring[t->head];
        memcpy(last, e->id, e->len);
        lastlen = e->len;
        t->head = (t->head + 1) % t->cap;
        t->count--;
    }
    if (!lastlen) return;
    const char *argv[] = {"HSET", s->cfg->checkpoint, s->cfg->streams[si], last};
    size_t lens[] = {4, strlen(s->cfg->checkpoint), strlen(s->cfg->streams[si]), lastlen};
    if (rsgAckPush(s->ack, 4, argv, lens, 0) != 0)
        rsgError("out of memory queueing a checkpoint; a restart may repeat some messages");
    else
        rsgDebug("checkpoint of stream '%s' moves to %.*s", s->cfg->streams[si], (int)lastlen,
                 last);
}

/* A dead letter's script reply is in: the message has left the pipeline. */
static void deadLettered(void *ud, rsgStr stream, rsgStr id) {
    streamsAck(ud, stream, 1, &id);
}

/* Plain streams keep nothing pending: the script copies the entry, and the
 * checkpoint moves past it only once the copy is stored. */
static void streamsDeadLetter(rsgSource *s, rsgDeadLetter *d) {
    d->done = deadLettered;
    d->ud = s;
}

static void streamsStop(rsgSource *s) {
    rsgSlotReadersStop(&((streamsState *)s->state)->readers);
}

const rsgSourceType rsgSourceStreams = {
    .name = "streams",
    .key_type = "stream",
    .keeps_pending = 0,
    .init = streamsInit,
    .setup = streamsSetup,
    .read = streamsRead,
    .ack = streamsAck,
    .abandon = streamsAck,
    .dead_letter = streamsDeadLetter,
    .stop = streamsStop,
    .free = streamsFree,
};
