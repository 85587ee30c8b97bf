/* source_lists.c - Redis lists as a source (the library's from_redis_lists).
 *
 * Plain: BLMPOP (BLPOP before Redis 7) across all lists; an item is gone
 * from Redis once popped, so a crash loses what was in flight.
 *
 * Reliable (source.reliable): items are moved atomically into a processing
 * list per source list and consumer, rsghost:processing:<consumer>:<list>,
 * and removed from it only after their batch's sinks succeeded. On start,
 * whatever a crashed run left there goes through the pipeline first: each
 * leftover is rotated from the head to the tail as it is read, so the items
 * still in flight and those not yet replayed never mix. One list blocks in
 * BLMOVE; several are polled (every 50 ms while all are empty), since no
 * Redis command blocks on several lists and moves.
 *
 * On a Redis Cluster (slot_readers.h) one BLMPOP cannot name lists of
 * different slots: the lists are read in slot groups, each group's pop (or
 * move, or BLMOVE for a group of one list) on a connection of its own to
 * its slot's master, and each reliable group polls on its own. A
 * processing list must share its source list's slot, for the atomic move
 * (rsgSourceClusterCheck refuses any other name at start): a list with a
 * hash tag, "{jobs}:a", has its processing list
 * "rsghost:processing:c1:{jobs}:a" in its slot. Replaying leftovers,
 * counting them and removing done items are single-key commands, routed by
 * the reader router (s->conn) and the ack queue's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "rules.h"
#include "slot_readers.h"
#include "source_kind.h"

#define POLL_MS 50

/* Move up to ARGV[1] items from each KEYS[2i-1] to KEYS[2i], atomically;
 * returns one array of moved items per source list. */
static const char *moveScript =
    "local n, out = tonumber(ARGV[1]), {}\n"
    "for i = 1, #KEYS, 2 do\n"
    "  local got = {}\n"
    "  for j = 1, n do\n"
    "    local v = redis.call('LMOVE', KEYS[i], KEYS[i + 1], 'LEFT', 'RIGHT')\n"
    "    if not v then break end\n"
    "    got[#got + 1] = v\n"
    "  end\n"
    "  out[#out + 1] = got\n"
    "end\n"
    "return out\n";

/* Rotate up to ARGV[1] items from the head of KEYS[1] to its tail; returns
 * them. Replays leftovers without mixing them with items in flight. */
static const char *rotateScript =
    "local out = {}\n"
    "for i = 1, tonumber(ARGV[1]) do\n"
    "  local v = redis.call('LMOVE', KEYS[1], KEYS[1], 'LEFT', 'RIGHT')\n"
    "  if not v then break end\n"
    "  out[i] = v\n"
    "end\n"
    "return out\n";

/* Remove one occurrence of each ARGV from KEYS[1]. Items in flight sit near
 * the head, where LREM starts looking. */
static const char *removeScript =
    "for i = 1, #ARGV do redis.call('LREM', KEYS[1], 1, ARGV[i]) end\n"
    "return #ARGV\n";

/* The lists' own state (s->state). */
typedef struct listsState {
    char **proc;                /* per list: its processing list (reliable), else NULL */
    long *replay_left;          /* per list: items still to replay (reliable) */
    int replay_list;            /* list being replayed */
    int leftovers_done;         /* processing lists were looked at, at start */
    int recheck;                /* after a reconnect: look at them again once idle */
    int use_blpop;              /* the server has no BLMPOP (Redis < 7) */
    uv_timer_t poll;            /* waits between polls of several lists; data = the source */
    int poll_open;              /* poll was initialised and not yet closed */
    rsgSlotReaders readers;     /* on a cluster: the slot groups' live reads */
    rsgSourcePhase begin_phase; /* on a cluster: where reading begins once they connect */
} listsState;

void rsgSourceListsProcessing(char *buf, size_t len, const char *consumer, const char *list) {
    snprintf(buf, len, "rsghost:processing:%s:%s", consumer, list);
}

static int listsInit(rsgSource *s) {
    int n = s->cfg->nstreams;
    listsState *l = calloc(1, sizeof(*l));
    if (!(s->state = l)) return -1;
    if (s->cfg->cluster && rsgSlotReadersInit(&l->readers, s, "list") != 0) return -1;
    if (!s->cfg->reliable) return 0;
    l->proc = calloc((size_t)n, sizeof(char *));
    l->replay_left = calloc((size_t)n, sizeof(long));
    if (!l->proc || !l->replay_left) return -1;
    for (int i = 0; i < n; i++) {
        size_t len = strlen(s->consumer) + strlen(s->cfg->streams[i]) + 32;
        if (!(l->proc[i] = malloc(len))) return -1;
        rsgSourceListsProcessing(l->proc[i], len, s->consumer, s->cfg->streams[i]);
    }
    return 0;
}

/* The poll timer was closed by listsStop (or the loop's backstop) before
 * this runs: the loop has ended. */
static void listsFree(rsgSource *s) {
    listsState *l = s->state;
    if (!l) return;
    if (l->proc)
        for (int i = 0; i < s->cfg->nstreams; i++)
            free(l->proc[i]);
    free(l->proc);
    free(l->replay_left);
    rsgSlotReadersFree(&l->readers);
    free(l);
    s->state = NULL;
}

static void onPoll(uv_timer_t *t) {
    rsgSource *s = t->data;
    s->reading = 0;
    rsgSourceKick(s);
}

static void listsStop(rsgSource *s) {
    listsState *l = s->state;
    rsgSlotReadersStop(&l->readers);
    if (l->poll_open) {
        l->poll_open = 0;
        uv_close((uv_handle_t *)&l->poll, NULL);
    }
}

/* ---- Setup ---- */

static void countLeftovers(rsgSource *s);

static void groupsReady(rsgSource *s) {
    rsgSourceBegin(s, ((listsState *)s->state)->begin_phase);
}

/* Setup is done: on one server reading starts at once; on a cluster once
 * every slot group's connection is (again) ready. */
static void begin(rsgSource *s, rsgSourcePhase phase) {
    listsState *l = s->state;
    if (!s->cfg->cluster) {
        rsgSourceBegin(s, phase);
        return;
    }
    l->begin_phase = phase;
    rsgSlotReadersConnect(&l->readers, groupsReady);
}

static void onLeftover(redisAsyncContext *ac, void *r, void *privdata) {
    (void)ac;
    int i;
    rsgSource *s = rsgSourceKeyOf(privdata, &i);
    listsState *l = s->state;
    redisReply *reply = r;
    if (!reply || s->stopped) return;
    l->replay_left[i] = reply->type == REDIS_REPLY_INTEGER ? (long)reply->integer : 0;
    if (--s->setup_left > 0) return;
    long total = 0;
    for (int k = 0; k < s->cfg->nstreams; k++)
        total += l->replay_left[k];
    if (total == 0) {
        l->recheck = 0;
        begin(s, RSG_SRC_LIVE);
        return;
    }
    rsgInfo("%ld item(s) left in processing lists%s: processing them first", total,
            l->recheck ? " after a lost connection" : " by an earlier run");
    l->recheck = 0;
    l->replay_list = 0;
    while (l->replay_left[l->replay_list] == 0)
        l->replay_list++;
    begin(s, RSG_SRC_REPLAY);
}

static void listsSettled(rsgSource *s);

static void listsSetup(rsgSource *s) {
    listsState *l = s->state;
    if (!l->poll_open) {
        uv_timer_init(s->conn->loop, &l->poll);
        l->poll.data = s;
        l->poll_open = 1;
    }
    if (!s->cfg->reliable) {
        begin(s, RSG_SRC_LIVE);
        return;
    }
    if (l->leftovers_done) {
        /* A reconnect: a move whose reply was lost left items in the
         * processing lists that this run never saw. Once everything in
         * flight has left (and its removal reached Redis), whatever is still
         * there is such an item: look again then (listsSettled). */
        l->recheck = 1;
        listsSettled(s);
        return;
    }
    l->leftovers_done = 1;
    if (!s->cfg->replay_pending) {
        begin(s, RSG_SRC_LIVE);
        return;
    }
    countLeftovers(s);
}

/* After a reconnect (recheck): once nothing is in flight and every removal
 * reached Redis, counts the processing lists again. */
static void listsSettled(rsgSource *s) {
    listsState *l = s->state;
    if (!l->recheck || s->stopped || s->phase != RSG_SRC_SETUP || s->setup_left) return;
    if (s->in_flight > 0 || !rsgAckIdle(s->ack) || !s->conn->ready) return;
    countLeftovers(s);
}

/* LLEN of every processing list; onLeftover decides what to replay. Each
 * LLEN names its list in its privdata: on a cluster the replies of
 * different masters come back in any order. */
static void countLeftovers(rsgSource *s) {
    listsState *l = s->state;
    s->setup_left = s->cfg->nstreams;
    for (int i = 0; i < s->cfg->nstreams; i++) {
        const char *argv[] = {"LLEN", l->proc[i]};
        if (rsgConnCommand(s->conn, onLeftover, rsgSourceKeyRef(s, i), 2, argv, NULL) != 0) return;
    }
}

/* ---- Reading ---- */

/* Adds the items of one list (an array reply) to s->msgs. */
static void collectItems(rsgSource *s, int li, const redisReply *items, int *n) {
    listsState *l = s->state;
    const char *list = s->cfg->streams[li];
    for (size_t j = 0; j < items->elements; j++) {
        const redisReply *it = items->element[j];
        if (it->type != REDIS_REPLY_STRING) continue;
        rsgMsg *m = &s->msgs[*n];
        rsgStr *item = &s->fv[*n];
        m->stream = (rsgStr){list, strlen(list)};
        m->id = (rsgStr){it->str, it->len};
        m->fv = item;
        m->nfields = -1;
        char err[160];
        if (!s->cfg->convert) {
            *item = m->id;
        } else if (rsgDecode(&s->dec, it->str, it->len, &item->p, &item->len, err, sizeof(err)) !=
                   0) {
            const char *dead = s->hooks.dead_letter ? s->cfg->dead_letter : NULL;
            char line[1024];
            rsgError("%s",
                     rsgBadItemLine(line, sizeof(line), list, s->cfg->reliable ? l->proc[li] : NULL,
                                    it->str, it->len, err, dead));
            if (dead) {
                char what[200];
                rsgBadItemWhat(what, sizeof(what), err);
                s->hooks.dead_letter(s->hooks.ud, m->stream, m->id, 1,
                                     (rsgStr){what, strlen(what)});
            }
            continue;
        }
        (*n)++;
    }
}

static int prepare(rsgSource *s, size_t n) {
    if (rsgSourceReserve(s, n, n) != 0) {
        rsgSourceFatal(s, "out of memory reading list items");
        return -1;
    }
    rsgDecoderReset(&s->dec);
    return 0;
}

static int checkError(rsgSource *s, const redisReply *reply, const char *what) {
    if (reply->type != REDIS_REPLY_ERROR) return 0;
    rsgSourceReadError(s, what, reply->str);
    return -1;
}

static void onReplayed(redisAsyncContext *ac, void *r, void *privdata) {
    (void)ac;
    rsgSource *s = privdata;
    listsState *l = s->state;
    redisReply *reply = r;
    s->reading = 0;
    if (!reply || s->stopped || checkError(s, reply, "replaying a processing list")) return;
    int li = l->replay_list, n = 0;
    size_t got = reply->type == REDIS_REPLY_ARRAY ? reply->elements : 0;
    if (prepare(s, got) != 0) return;
    if (got) collectItems(s, li, reply, &n);
    l->replay_left[li] = got ? l->replay_left[li] - (long)got : 0;
    if (l->replay_left[li] <= 0) {
        l->replay_left[li] = 0;
        while (l->replay_list < s->cfg->nstreams && l->replay_left[l->replay_list] == 0)
            l->replay_list++;
        if (l->replay_list == s->cfg->nstreams) s->phase = RSG_SRC_LIVE;
    }
    rsgSourceDeliver(s, n, 1);
}

static void onBlocked(redisAsyncContext *ac, void *r, void *privdata);

/* Items a move script's reply holds. */
static size_t movedCount(const redisReply *reply) {
    size_t total = 0;
    if (reply->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i < reply->elements; i++)
            if (reply->element[i]->type == REDIS_REPLY_ARRAY) total += reply->element[i]->elements;
    return total;
}

/* Adds a move script's items (total of them) to s->msgs: its i-th array
 * is of list keys[i] (all lists when keys is NULL). Returns 0, or -1 when
 * the source was stopped (out of memory). */
static int collectMoved(rsgSource *s, const redisReply *reply, size_t total, const int *keys,
                        int *n) {
    if (prepare(s, total) != 0) return -1;
    for (size_t i = 0; i < reply->elements && (int)i < s->cfg->nstreams; i++)
        if (reply->element[i]->type == REDIS_REPLY_ARRAY)
            collectItems(s, keys ? keys[i] : (int)i, reply->element[i], n);
    return 0;
}

/* Adds the item (a string reply) of a BLMOVE from list li to s->msgs.
 * Returns 0, or -1 when the source was stopped. */
static int collectOne(rsgSource *s, int li, redisReply *reply, int *n) {
    if (reply->type != REDIS_REPLY_STRING) return 0;
    redisReply *items[1] = {reply};
    redisReply arr = {0};
    arr.type = REDIS_REPLY_ARRAY;
    arr.elements = 1;
    arr.element = items;
    if (prepare(s, 1) != 0) return -1;
    collectItems(s, li, &arr, n);
    return 0;
}

/* Adds what a BLMPOP ([list, [items...]]) or BLPOP ([list, item]) reply
 * holds to s->msgs; nil (a timeout) adds nothing. Returns 0, or -1 when
 * the source was stopped. */
static int collectPopped(rsgSource *s, redisReply *reply, int *n) {
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING)
        return 0;
    int li = rsgSourceIndex(s, reply->element[0]->str, reply->element[0]->len);
    redisReply *items = reply->element[1];
    if (li < 0) return 0;
    if (items->type == REDIS_REPLY_STRING) return collectOne(s, li, items, n); /* BLPOP */
    if (items->type != REDIS_REPLY_ARRAY) return 0;
    if (prepare(s, items->elements) != 0) return -1;
    collectItems(s, li, items, n);
    return 0;
}

static void onMoved(redisAsyncContext *ac, void *r, void *privdata) {
    (void)ac;
    rsgSource *s = privdata;
    listsState *l = s->state;
    redisReply *reply = r;
    if (!reply || s->stopped) {
        s->reading = 0;
        return;
    }
    if (checkError(s, reply, "moving list items")) return;
    size_t total = movedCount(reply);
    if (total == 0) {
        /* All empty: block on the one list, or wait a little and poll again. */
        if (s->cfg->nstreams == 1) {
            char timeout[32];
            snprintf(timeout, sizeof(timeout), "%.3f", (double)s->cfg->block_ms / 1000.0);
            const char *argv[] = {"BLMOVE", s->cfg->streams[0], l->proc[0], "LEFT", "RIGHT",
                                  timeout};
            if (rsgConnCommand(s->conn, onBlocked, s, 6, argv, NULL) != 0) s->reading = 0;
        } else {
            uv_timer_start(&l->poll, onPoll, POLL_MS, 0);
        }
        return;
    }
    s->reading = 0;
    int n = 0;
    if (collectMoved(s, reply, total, NULL, &n) != 0) return;
    rsgSourceDeliver(s, n, 1);
}

static void onBlocked(redisAsyncContext *ac, void *r, void *privdata) {
    (void)ac;
    rsgSource *s = privdata;
    redisReply *reply = r;
    s->reading = 0;
    if (!reply || s->stopped || checkError(s, reply, "BLMOVE")) return;
    int n = 0;
    if (collectOne(s, 0, reply, &n) != 0) return;
    rsgSourceDeliver(s, n, 1);
}

/* BLMPOP replies [list, [items...]], BLPOP [list, item]; nil on timeout. */
static void onPopped(redisAsyncContext *ac, void *r, void *privdata) {
    (void)ac;
    rsgSource *s = privdata;
    listsState *l = s->state;
    redisReply *reply = r;
    s->reading = 0;
    if (!reply || s->stopped) return;
    if (reply->type == REDIS_REPLY_ERROR && !l->use_blpop &&
        strstr(reply->str, "unknown command")) {
        l->use_blpop = 1; /* Redis before 7.0: one item per read */
        rsgSourceKick(s);
        return;
    }
    if (checkError(s, reply, l->use_blpop ? "BLPOP" : "BLMPOP")) return;
    int n = 0;
    if (collectPopped(s, reply, &n) != 0) return;
    /* Pops do not depend on the last reply: ask again before Lua works. */
    rsgSourceDeliver(s, n, 1);
}

/* ---- Reading on a cluster: one read per slot group ---- */

/* What a group's read was. */
typedef enum { READ_POP, READ_MOVE, READ_BLMOVE } groupReadKind;

static void onGroupBlocked(redisAsyncContext *ac, void *r, void *privdata);

static void groupWaited(rsgSlotReader *g) {
    rsgSourceKick(g->rs->s);
}

/* A group's read came back with reply: an error, or items to deliver. */
static void onGroupRead(void *r, void *privdata, groupReadKind kind) {
    static const char *what[] = {"BLMPOP", "moving list items", "BLMOVE"};
    rsgSlotReader *g = rsgSlotReaderOf(privdata);
    redisReply *reply = r;
    if (!g) return; /* a dropped connection's read */
    rsgSource *s = g->rs->s;
    listsState *l = s->state;
    if (!reply || s->stopped || rsgSlotReaderRedirected(g, reply)) return;
    if (reply->type == REDIS_REPLY_ERROR && !l->use_blpop &&
        strstr(reply->str, "unknown command")) {
        l->use_blpop = 1; /* Redis before 7.0: one item per read */
        rsgSourceKick(s);
        return;
    }
    if (checkError(s, reply, kind == READ_POP && l->use_blpop ? "BLPOP" : what[kind])) return;
    int n = 0;
    if (kind == READ_MOVE) {
        size_t total = movedCount(reply);
        if (total == 0) {
            /* All of the group's lists are empty: block on its one list, or
             * wait a little and poll again. */
            if (g->nkeys == 1) {
                char timeout[32];
                int li = g->keys[0];
                snprintf(timeout, sizeof(timeout), "%.3f", (double)s->cfg->block_ms / 1000.0);
                const char *argv[] = {"BLMOVE", s->cfg->streams[li], l->proc[li], "LEFT", "RIGHT",
                                      timeout};
                rsgSlotReaderSend(g, onGroupBlocked, 1, 6, argv);
            } else {
                rsgSlotReaderWait(g, POLL_MS, groupWaited);
            }
            return;
        }
        if (collectMoved(s, reply, total, g->keys, &n) != 0) return;
    } else if (kind == READ_BLMOVE) {
        if (collectOne(s, g->keys[0], reply, &n) != 0) return;
    } else if (collectPopped(s, reply, &n) != 0) {
        return;
    }
    rsgSourceDeliver(s, n, 1);
}

static void onGroupPopped(redisAsyncContext *ac, void *r, void *privdata) {
    (void)ac;
    onGroupRead(r, privdata, READ_POP);
}

static void onGroupMoved(redisAsyncContext *ac, void *r, void *privdata) {
    (void)ac;
    onGroupRead(r, privdata, READ_MOVE);
}

static void onGroupBlocked(redisAsyncContext *ac, void *r, void *privdata) {
    (void)ac;
    onGroupRead(r, privdata, READ_BLMOVE);
}

/* Sends g's next read: a pop over its lists, or (reliable) the move of up
 * to count items from each into its processing list. */
static void groupRead(rsgSlotReader *g, long count) {
    rsgSource *s = g->rs->s;
    listsState *l = s->state;
    const rsgSourceConfig *cfg = s->cfg;
    char countbuf[24], timeout[32], nkeys[16];
    snprintf(countbuf, sizeof(countbuf), "%ld", count);
    snprintf(timeout, sizeof(timeout), "%.3f", (double)cfg->block_ms / 1000.0);
    const char **argv = malloc(sizeof(char *) * (size_t)(8 + 2 * g->nkeys));
    if (!argv) return;
    int argc = 0;
    if (cfg->reliable) {
        snprintf(nkeys, sizeof(nkeys), "%d", 2 * g->nkeys);
        argv[argc++] = "EVAL";
        argv[argc++] = moveScript;
        argv[argc++] = nkeys;
        for (int j = 0; j < g->nkeys; j++) {
            argv[argc++] = cfg->streams[g->keys[j]];
            argv[argc++] = l->proc[g->keys[j]];
        }
        argv[argc++] = countbuf;
        rsgSlotReaderSend(g, onGroupMoved, count * g->nkeys, argc, argv);
    } else if (l->use_blpop) {
        argv[argc++] = "BLPOP";
        for (int j = 0; j < g->nkeys; j++)
            argv[argc++] = cfg->streams[g->keys[j]];
        argv[argc++] = timeout;
        rsgSlotReaderSend(g, onGroupPopped, 1, argc, argv);
    } else {
        snprintf(nkeys, sizeof(nkeys), "%d", g->nkeys);
        argv[argc++] = "BLMPOP";
        argv[argc++] = timeout;
        argv[argc++] = nkeys;
        for (int j = 0; j < g->nkeys; j++)
            argv[argc++] = cfg->streams[g->keys[j]];
        argv[argc++] = "LEFT";
        argv[argc++] = "COUNT";
        argv[argc++] = countbuf;
        rsgSlotReaderSend(g, onGroupPopped, count, argc, argv);
    }
    free(argv);
}

/* Live reads on a cluster: every idle group reads, each with its share of
 * the room (sized once per round, as source_cluster.c does). */
static void clusterRead(rsgSource *s) {
    listsState *l = s->state;
    long count = rsgSourceReadCount(s, s->cfg->reliable ? s->cfg->nstreams : l->readers.n);
    if (count < 1) return;
    for (int k = 0; k < l->readers.n; k++)
        if (rsgSlotReaderIdle(&l->readers.r[k])) groupRead(&l->readers.r[k], count);
}

static void listsRead(rsgSource *s) {
    listsState *l = s->state;
    const rsgSourceConfig *cfg = s->cfg;
    int nl = cfg->nstreams;
    char count[24], timeout[32];
    snprintf(timeout, sizeof(timeout), "%.3f", (double)cfg->block_ms / 1000.0);
    const char *stackv[72];
    int max = 8 + 2 * nl;
    const char **argv = max <= 72 ? stackv : malloc(sizeof(char *) * (size_t)max);
    if (!argv) return;
    int argc = 0, sent = -1;
    if (s->phase != RSG_SRC_REPLAY && cfg->cluster) {
        clusterRead(s);
    } else if (s->phase == RSG_SRC_REPLAY) {
        long c = rsgSourceReadCount(s, 1);
        if (c > l->replay_left[l->replay_list]) c = l->replay_left[l->replay_list];
        snprintf(count, sizeof(count), "%ld", c);
        const char *v[] = {"EVAL", rotateScript, "1", l->proc[l->replay_list], count};
        sent = c > 0 ? rsgConnCommand(s->conn, onReplayed, s, 5, v, NULL) : -1;
    } else if (cfg->reliable) {
        long c = rsgSourceReadCount(s, nl);
        snprintf(count, sizeof(count), "%ld", c);
        char nkeys[16];
        snprintf(nkeys, sizeof(nkeys), "%d", 2 * nl);
        argv[argc++] = "EVAL";
        argv[argc++] = moveScript;
        argv[argc++] = nkeys;
        for (int i = 0; i < nl; i++) {
            argv[argc++] = cfg->streams[i];
            argv[argc++] = l->proc[i];
        }
        argv[argc++] = count;
        sent = c > 0 ? rsgConnCommand(s->conn, onMoved, s, argc, argv, NULL) : -1;
    } else {
        long c = rsgSourceReadCount(s, 1);
        snprintf(count, sizeof(count), "%ld", c);
        char nkeys[16];
        snprintf(nkeys, sizeof(nkeys), "%d", nl);
        if (l->use_blpop) {
            argv[argc++] = "BLPOP";
            for (int i = 0; i < nl; i++)
                argv[argc++] = cfg->streams[i];
            argv[argc++] = timeout;
        } else {
            argv[argc++] = "BLMPOP";
            argv[argc++] = timeout;
            argv[argc++] = nkeys;
            for (int i = 0; i < nl; i++)
                argv[argc++] = cfg->streams[i];
            argv[argc++] = "LEFT";
            argv[argc++] = "COUNT";
            argv[argc++] = count;
        }
        sent = c > 0 ? rsgConnCommand(s->conn, onPopped, s, argc, argv, NULL) : -1;
    }
    if (sent == 0) s->reading = 1;
    if (argv != stackv) free(argv);
}

static void listsAck(rsgSource *s, rsgStr list, int n, const rsgStr *items) {
    listsState *l = s->state;
    if (!s->cfg->reliable) return; /* popped items are gone from Redis already */
    int li = rsgSourceIndex(s, list.p, list.len);
    if (li < 0) return;
    int argc = n + 4;
    const char **argv = malloc(sizeof(char *) * (size_t)argc);
    size_t *lens = malloc(sizeof(size_t) * (size_t)argc);
    int ok = argv && lens;
    if (ok) {
        argv[0] = "EVAL", lens[0] = 4;
        argv[1] = removeScript, lens[1] = strlen(removeScript);
        argv[2] = "1", lens[2] = 1;
        argv[3] = l->proc[li], lens[3] = strlen(l->proc[li]);
        for (int i = 0; i < n; i++)
            argv[i + 4] = items[i].p, lens[i + 4] = items[i].len;
        ok = rsgAckPush(s->ack, argc, argv, lens, n) == 0;
    }
    if (ok) rsgDebug("removing %d item(s) from %s", n, l->proc[li]);
    free(argv);
    free(lens);
    if (!ok) rsgError("out of memory queueing acks: %d item(s) stay in %s", n, l->proc[li]);
}

/* A reliable list's item leaves its processing list in the dead-letter
 * script itself; a plain list's item is gone from Redis already. */
static void listsDeadLetter(rsgSource *s, rsgDeadLetter *d) {
    listsState *l = s->state;
    int li = rsgSourceIndex(s, d->origin.p, d->origin.len);
    if (s->cfg->reliable && li >= 0) d->proc = l->proc[li];
}

const rsgSourceType rsgSourceLists = {
    .name = "lists",
    .key_type = "list",
    .init = listsInit,
    .setup = listsSetup,
    .read = listsRead,
    .ack = listsAck,
    .dead_letter = listsDeadLetter,
    .settled = listsSettled,
    .stop = listsStop,
    .free = listsFree,
};
