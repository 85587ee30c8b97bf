/* claim.c - see claim.h. */
#include "claim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "heart.h"
#include "log.h"

/* A dead consumer's messages are claimed in two commands: XPENDING for its
 * ids idle for at least claim_timeout (with their delivery counts), then
 * XCLAIM of those ids with the same min-idle. They need not be atomic: XCLAIM
 * checks each id's idle time again, so an id that another claimer (or the
 * consumer itself, back from the dead) touched in between is left alone, as
 * a script would have left it. A script that did both cost Redis about twice
 * the time per message (its XCLAIM reply went into Lua tables and back out),
 * which made a round claiming max_in_flight messages miss 100 ms. */

/* One XCLAIM names at most this many ids: a claim of thousands would hold
 * Redis, and every other client of it, for tens of milliseconds. */
#define RSG_CLAIM_CHUNK 1000

/* Atomically: remove the consumer only if it holds no pending entry.
 * Returns -1 when it does. KEYS[1] stream; ARGV: group, consumer. */
static const char *deleteScript =
    "local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])\n"
    "if #p > 0 then return -1 end\n"
    "return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])\n";

/* Context of one request of a round. */
typedef struct claimReq {
    rsgClaim *c;
    int peer;     /* index into c->peers */
    int stream;   /* index into cfg->streams */
    int what;     /* for liveness: 0 EXISTS key, 1 HEXISTS registry */
    size_t nids;  /* XCLAIM: ids it names */
    char **ids;   /* XCLAIM: those ids, in the order sent (the reply's order) */
    long *counts; /* XCLAIM: each id's times-delivered once claimed */
} claimReq;

static void act(rsgClaim *c);
static void finishRound(rsgClaim *c);

static uint64_t ctMs(const rsgClaim *c) {
    return (uint64_t)(c->cfg->claim_timeout * 1000.0 + 0.5);
}

static int findPeer(rsgClaim *c, const char *name, size_t len, int create) {
    for (int i = 0; i < c->npeers; i++)
        if (strlen(c->peers[i].name) == len && memcmp(c->peers[i].name, name, len) == 0) return i;
    if (!create) return -1;
    if (c->npeers == c->cap) {
        int cap = c->cap ? c->cap * 2 : 16;
        rsgPeer *p = realloc(c->peers, sizeof(*p) * (size_t)cap);
        if (!p) return -1;
        c->peers = p;
        c->cap = cap;
    }
    rsgPeer *p = &c->peers[c->npeers];
    memset(p, 0, sizeof(*p));
    /* Out of memory: not tracked this round (it is seen again next round). */
    if (!(p->name = strndup(name, len))) return -1;
    /* Which streams it holds something on: the round asks XPENDING of those
     * only (out of memory: of every stream). */
    p->stream_pending = calloc((size_t)c->cfg->nstreams, sizeof(long));
    /* A consumer first seen is presumed alive from this moment. */
    p->first_seen = uv_now(c->loop);
    return c->npeers++;
}

static claimReq *req(rsgClaim *c, int peer, int stream, int what) {
    claimReq *r = malloc(sizeof(*r));
    if (r) *r = (claimReq){c, peer, stream, what, 0, NULL, NULL};
    return r;
}

static void reqFree(claimReq *r) {
    if (!r) return;
    for (size_t i = 0; i < r->nids; i++)
        free(r->ids[i]);
    free(r->ids);
    free(r->counts);
    free(r);
}

/* Sends argv (lens: NULL for C strings) on the command connection for this
 * round; counts the reply. r is freed when it cannot be sent. */
static void sendReqLen(rsgClaim *c, redisCallbackFn *fn, claimReq *r, int argc, const char **argv,
                       const size_t *lens) {
    if (!r) return;
    if (rsgConnCommand(c->cmds, fn, r, argc, argv, lens) != 0) {
        reqFree(r);
        return;
    }
    c->outstanding++;
}

static void sendReq(rsgClaim *c, redisCallbackFn *fn, claimReq *r, int argc, const char **argv) {
    sendReqLen(c, fn, r, argc, argv, NULL);
}

/* One reply of the current step arrived (or failed): next step when all did. */
static void stepDone(rsgClaim *c, void (*next)(rsgClaim *)) {
    if (--c->outstanding > 0) return;
    if (c->stopped || !c->busy) return;
    next(c);
}

static long replyField(const redisReply *r, const char *key) {
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *k = r->element[i], *v = r->element[i + 1];
        if (k->type == REDIS_REPLY_STRING && strcmp(k->str, key) == 0)
            return v->type == REDIS_REPLY_INTEGER ? (long)v->integer : -1;
    }
    return -1;
}

static void checkLiveness(rsgClaim *c);

static void onInfo(redisAsyncContext *ac, void *rep, void *privdata) {
    (void)ac;
    claimReq *r = privdata;
    rsgClaim *c = r->c;
    int stream = r->stream;
    redisReply *reply = rep;
    free(r);
    if (!reply) c->busy = 0; /* lost: the round is abandoned */
    if (reply && reply->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < reply->elements; i++) {
            const redisReply *e = reply->element[i];
            if (e->type != REDIS_REPLY_ARRAY || e->elements < 2) continue;
            const redisReply *name = e->element[1];
            if (name->type != REDIS_REPLY_STRING || strcmp(name->str, c->consumer) == 0) continue;
            int p = findPeer(c, name->str, name->len, 1);
            if (p < 0) continue;
            long pending = replyField(e, "pending"), idle = replyField(e, "idle");
            c->peers[p].in_group = 1;
            if (pending > 0) c->peers[p].pending += pending;
            if (pending > 0 && c->peers[p].stream_pending)
                c->peers[p].stream_pending[stream] = pending;
            /* A consumer that talked to Redis within claim_timeout is alive,
             * whatever its heartbeats say (one without heartbeats, say). */
            uint64_t now = uv_now(c->loop);
            if (idle >= 0 && (uint64_t)idle < ctMs(c) && (uint64_t)idle <= now &&
                now - (uint64_t)idle > c->peers[p].last_heard)
                c->peers[p].last_heard = now - (uint64_t)idle; /* when it was last active */
        }
    }
    stepDone(c, checkLiveness);
}

static void onLiveness(redisAsyncContext *ac, void *rep, void *privdata) {
    (void)ac;
    claimReq *r = privdata;
    rsgClaim *c = r->c;
    redisReply *reply = rep;
    if (!reply) c->busy = 0;
    if (reply && reply->type == REDIS_REPLY_INTEGER && r->peer < c->npeers) {
        if (r->what == 0)
            c->peers[r->peer].has_key = reply->integer > 0;
        else
            c->peers[r->peer].registered = reply->integer > 0;
    }
    free(r);
    stepDone(c, act);
}

static void checkLiveness(rsgClaim *c) {
    for (int i = 0; i < c->npeers; i++) {
        rsgPeer *p = &c->peers[i];
        if (!p->in_group) continue;
        char *key = rsgHeartAliveKey(c->cfg->group, p->name);
        if (!key) continue;
        const char *exists[] = {"EXISTS", key};
        const char *hexists[] = {"HEXISTS", c->registry_key, p->name};
        sendReq(c, onLiveness, req(c, i, 0, 0), 2, exists);
        sendReq(c, onLiveness, req(c, i, 0, 1), 3, hexists);
        free(key);
    }
    if (c->outstanding == 0) act(c);
}

/* Alive: its liveness key exists, or it was heard (heartbeat or activity)
 * within claim_timeout. Otherwise dead if it is known to keep a key (an
 * rsghost peer whose key expired); a peer that keeps none is presumed alive
 * for claim_timeout from when we first saw it. */
static int isDead(const rsgClaim *c, const rsgPeer *p, uint64_t now) {
    uint64_t ct = ctMs(c);
    if (p->has_key) return 0;
    if (p->last_heard && now - p->last_heard < ct) return 0;
    if (p->registered) return 1;
    return now - p->first_seen >= ct;
}

/* Feeds an XCLAIM reply to the pipeline with each entry's times-delivered
 * (for source.max_deliveries), which XCLAIM does not tell: the count
 * XPENDING gave for that id, plus the delivery XCLAIM adds. XCLAIM answers in
 * the order of the ids it was given and leaves out those it did not claim
 * (touched meanwhile, or deleted from the stream), so the ids are matched in
 * one pass. Returns rsgSourceFeedClaimed's result, -1 on a reply of another
 * shape or out of memory. */
static int feedClaimed(rsgClaim *c, const claimReq *r, const redisReply *reply) {
    if (reply->type != REDIS_REPLY_ARRAY) return -1;
    size_t m = reply->elements;
    if (m == 0) return 0;
    long *counts = malloc(m * sizeof(*counts));
    if (!counts) return -1;
    size_t k = 0;
    for (size_t j = 0; j < m; j++) {
        const redisReply *e = reply->element[j];
        counts[j] = 1;
        /* Another shape: rsgSourceFeedClaimed refuses the reply. */
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 1 ||
            e->element[0]->type != REDIS_REPLY_STRING)
            continue;
        const redisReply *id = e->element[0];
        for (size_t q = k; q < r->nids; q++)
            if (strlen(r->ids[q]) == id->len && memcmp(r->ids[q], id->str, id->len) == 0) {
                counts[j] = r->counts[q];
                k = q + 1;
                break;
            }
    }
    int n = rsgSourceFeedClaimed(c->source, c->cfg->streams[r->stream], reply, counts);
    free(counts);
    return n;
}

static void onClaimed(redisAsyncContext *ac, void *rep, void *privdata) {
    (void)ac;
    claimReq *r = privdata;
    rsgClaim *c = r->c;
    redisReply *reply = rep;
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        rsgError("claiming messages of consumer '%s' failed: %s", c->peers[r->peer].name,
                 reply->str);
    } else if (reply && !c->stopped) {
        const char *stream = c->cfg->streams[r->stream];
        int n = feedClaimed(c, r, reply);
        if (n < 0)
            rsgError("claiming from consumer '%s': the XCLAIM reply is malformed",
                     c->peers[r->peer].name);
        if (n > 0) {
            c->claimed += n;
            c->round_claimed += n;
            rsgInfo("claimed %d message(s) of dead consumer '%s' on stream '%s'", n,
                    c->peers[r->peer].name, stream);
        }
    }
    reqFree(r);
    stepDone(c, finishRound);
}

/* Sends the XCLAIMs of the ids an XPENDING reply listed, RSG_CLAIM_CHUNK at
 * a time; each request keeps its ids and their delivery counts for
 * feedClaimed. An entry of another shape is skipped (its message stays with
 * the dead consumer until a later round). Out of memory: the chunk is not
 * sent, and is claimed by a later round. */
static void sendClaims(rsgClaim *c, int peer, int stream, const redisReply *pending) {
    const rsgSourceConfig *cfg = c->cfg;
    char minIdle[24];
    snprintf(minIdle, sizeof(minIdle), "%llu", (unsigned long long)ctMs(c));
    const char **argv = malloc((RSG_CLAIM_CHUNK + 5) * sizeof(*argv));
    size_t *lens = malloc((RSG_CLAIM_CHUNK + 5) * sizeof(*lens));
    if (!argv || !lens) goto done;
    argv[0] = "XCLAIM", argv[1] = cfg->streams[stream], argv[2] = cfg->group;
    argv[3] = c->consumer, argv[4] = minIdle;
    for (int a = 0; a < 5; a++)
        lens[a] = strlen(argv[a]);
    for (size_t from = 0; from < pending->elements; from += RSG_CLAIM_CHUNK) {
        size_t n = pending->elements - from;
        if (n > RSG_CLAIM_CHUNK) n = RSG_CLAIM_CHUNK;
        claimReq *r = req(c, peer, stream, 0);
        if (!r) break;
        r->ids = calloc(n, sizeof(*r->ids));
        r->counts = calloc(n, sizeof(*r->counts));
        if (!r->ids || !r->counts) {
            reqFree(r);
            break;
        }
        for (size_t i = from; i < from + n; i++) {
            const redisReply *e = pending->element[i];
            if (e->type != REDIS_REPLY_ARRAY || e->elements < 4 ||
                e->element[0]->type != REDIS_REPLY_STRING ||
                e->element[3]->type != REDIS_REPLY_INTEGER)
                continue;
            char *id = strndup(e->element[0]->str, e->element[0]->len);
            if (!id) continue;
            r->ids[r->nids] = id;
            r->counts[r->nids] = (long)e->element[3]->integer + 1;
            argv[5 + r->nids] = id;
            lens[5 + r->nids] = e->element[0]->len;
            r->nids++;
        }
        if (r->nids == 0) {
            reqFree(r);
            continue;
        }
        sendReqLen(c, onClaimed, r, (int)(5 + r->nids), argv, lens);
    }
done:
    free(argv);
    free(lens);
}

static void onPending(redisAsyncContext *ac, void *rep, void *privdata) {
    (void)ac;
    claimReq *r = privdata;
    rsgClaim *c = r->c;
    redisReply *reply = rep;
    if (reply && reply->type == REDIS_REPLY_ERROR)
        rsgError("claiming messages of consumer '%s' failed: %s", c->peers[r->peer].name,
                 reply->str);
    else if (reply && reply->type == REDIS_REPLY_ARRAY && !c->stopped)
        sendClaims(c, r->peer, r->stream, reply);
    reqFree(r);
    stepDone(c, finishRound);
}

static void onDeleted(redisAsyncContext *ac, void *rep, void *privdata) {
    (void)ac;
    claimReq *r = privdata;
    rsgClaim *c = r->c;
    redisReply *reply = rep;
    if (reply && reply->type == REDIS_REPLY_ERROR)
        rsgWarn("removing consumer '%s' failed: %s", c->peers[r->peer].name, reply->str);
    free(r);
    stepDone(c, finishRound);
}

static void ignoreReply(redisAsyncContext *ac, void *rep, void *privdata) {
    (void)ac, (void)rep, (void)privdata;
}

static void act(rsgClaim *c) {
    uint64_t now = uv_now(c->loop);
    const rsgSourceConfig *cfg = c->cfg;
    char minIdle[24], count[24];
    snprintf(minIdle, sizeof(minIdle), "%llu", (unsigned long long)ctMs(c));
    c->round_judged = uv_hrtime();
    for (int i = 0; i < c->npeers; i++) {
        c->round_peers += c->peers[i].in_group;
        c->round_dead += c->peers[i].in_group && isDead(c, &c->peers[i], now);
    }
    /* The room under max_in_flight is shared by every claim of the round:
     * claimed messages count in flight only once they are fed, so each
     * claim takes its share off here, or a round over many dead consumers
     * would take max_in_flight from each of them. */
    long room = rsgSourceRoom(c->source);
    for (int i = 0; i < c->npeers; i++) {
        rsgPeer *p = &c->peers[i];
        if (!p->in_group || !isDead(c, p, now)) continue;
        if (p->pending > 0) {
            /* The room is shared by the streams it holds something on (all,
             * when that is unknown): with many streams, XPENDING of the
             * empty ones would cost a command each and thin every share. */
            int holding = 0;
            for (int s = 0; s < cfg->nstreams; s++)
                holding += !p->stream_pending || p->stream_pending[s] > 0;
            long share = room / (holding ? holding : 1);
            if (share <= 0) continue; /* the next round, when there is room */
            room -= p->pending < share * holding ? p->pending : share * holding;
            snprintf(count, sizeof(count), "%ld", share);
            c->round_from++;
            rsgInfo("consumer '%s' looks dead (no heartbeat for claim_timeout %gs); claiming "
                    "its %ld pending message(s)",
                    p->name, cfg->claim_timeout, p->pending);
            for (int s = 0; s < cfg->nstreams; s++) {
                if (p->stream_pending && p->stream_pending[s] <= 0) continue;
                const char *argv[] = {"XPENDING", cfg->streams[s], cfg->group, "IDLE", minIdle, "-",
                                      "+",        count,           p->name};
                sendReq(c, onPending, req(c, i, s, 0), 9, argv);
            }
        } else {
            rsgInfo("removing dead consumer '%s' from group '%s' (it holds no pending message)",
                    p->name, cfg->group);
            for (int s = 0; s < cfg->nstreams; s++) {
                const char *argv[] = {"EVAL",          deleteScript, "1",
                                      cfg->streams[s], cfg->group,   p->name};
                sendReq(c, onDeleted, req(c, i, s, 0), 6, argv);
            }
            const char *hdel[] = {"HDEL", c->registry_key, p->name};
            rsgConnCommand(c->cmds, ignoreReply, NULL, 3, hdel, NULL);
            p->in_group = 0; /* forget it at the end of the round */
            c->round_removed++;
        }
    }
    if (c->outstanding == 0) finishRound(c);
}

/* One line per round: what it found and did, and how long it took. Its time
 * runs from the first XINFO to the last claim's reply, claimed messages fed
 * to the pipeline; "dead known" is when the liveness checks were done, so
 * the rest is the claiming. The time of a round that acts is the time a
 * dead peer's messages wait once a round looks at them. */
static void logRound(rsgClaim *c) {
    uint64_t end = uv_hrtime();
    int acted = c->round_from > 0 || c->round_removed > 0;
    if (!acted && !rsgLogEnabled(RSG_LOG_DEBUG)) return;
    double ms = (double)(end - c->round_start) / 1e6;
    double judged = c->round_judged ? (double)(c->round_judged - c->round_start) / 1e6 : ms;
    rsgLog(acted ? RSG_LOG_INFO : RSG_LOG_DEBUG,
           "claim round: %d other consumer(s) in group '%s', %d dead; "
           "%ld message(s) claimed from %d, %d removed; %.1f ms (dead known after %.1f ms)",
           c->round_peers, c->cfg->group, c->round_dead, c->round_claimed, c->round_from,
           c->round_removed, ms, judged);
}

static void finishRound(rsgClaim *c) {
    logRound(c);
    /* Forget consumers no longer in the group (removed, or deleted by
     * someone else); keep those we only heard on the channel. */
    int j = 0;
    for (int i = 0; i < c->npeers; i++) {
        rsgPeer *p = &c->peers[i];
        if (!p->in_group && !p->last_heard) {
            free(p->name);
            free(p->stream_pending);
            continue;
        }
        c->peers[j++] = *p;
    }
    c->npeers = j;
    c->busy = 0;
}

static void onRound(uv_timer_t *t) {
    rsgClaim *c = t->data;
    if (c->busy || c->stopped || !c->cmds->ready) return;
    c->busy = 1;
    c->outstanding = 0;
    c->round_start = uv_hrtime();
    c->round_judged = 0;
    c->round_peers = c->round_dead = c->round_from = c->round_removed = 0;
    c->round_claimed = 0;
    for (int i = 0; i < c->npeers; i++) {
        c->peers[i].in_group = 0;
        c->peers[i].pending = 0;
        if (c->peers[i].stream_pending)
            memset(c->peers[i].stream_pending, 0, sizeof(long) * (size_t)c->cfg->nstreams);
        c->peers[i].has_key = c->peers[i].registered = 0;
    }
    for (int s = 0; s < c->cfg->nstreams; s++) {
        const char *argv[] = {"XINFO", "CONSUMERS", c->cfg->streams[s], c->cfg->group};
        sendReq(c, onInfo, req(c, -1, s, 0), 4, argv);
    }
    if (c->outstanding == 0) c->busy = 0;
}

static void onHeartbeat(redisAsyncContext *ac, void *rep, void *privdata) {
    (void)ac;
    rsgClaim *c = privdata;
    redisReply *reply = rep;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3) return;
    const redisReply *kind = reply->element[0], *payload = reply->element[2];
    if (kind->type != REDIS_REPLY_STRING || strcmp(kind->str, "message") != 0) return;
    if (payload->type != REDIS_REPLY_STRING) return;
    /* Our own heartbeat coming back proves the heart and the channel work:
     * its age is a metric. */
    if (payload->len == strlen(c->consumer) && memcmp(payload->str, c->consumer, payload->len) == 0)
        c->self_heard = uv_now(c->loop);
    int p = findPeer(c, payload->str, payload->len, 1);
    if (p >= 0) c->peers[p].last_heard = uv_now(c->loop);
}

static void onSubReady(rsgConn *conn) {
    rsgClaim *c = conn->data;
    const char *argv[] = {"SUBSCRIBE", c->cfg->heartbeat_channel};
    rsgConnCommand(&c->sub, onHeartbeat, c, 2, argv, NULL);
}

int rsgClaimStart(rsgClaim *c, uv_loop_t *loop, rsgConn *cmds, rsgSource *source,
                  const rsgRedisUrl *url, const char *consumer) {
    memset(c, 0, sizeof(*c));
    c->loop = loop;
    c->cmds = cmds;
    c->source = source;
    c->cfg = source->cfg;
    c->consumer = consumer;
    c->registry_key = rsgHeartRegistryKey(c->cfg->group);
    if (!c->registry_key) return -1;
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    uint64_t every = (uint64_t)(c->cfg->heartbeat_interval * 1000.0 + 0.5);
    if (every < 10) every = 10;
    uv_timer_start(&c->timer, onRound, every, every);
    c->sub.data = c;
    c->sub.on_ready = onSubReady;
    rsgConnStart(&c->sub, loop, url, "heartbeats");
    return 0;
}

static void onLeft(redisAsyncContext *ac, void *rep, void *privdata) {
    (void)ac;
    rsgClaim *c = privdata;
    redisReply *reply = rep;
    if (reply && reply->type == REDIS_REPLY_ERROR)
        rsgWarn("leaving consumer group '%s' failed: %s", c->cfg->group, reply->str);
    else if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer >= 0)
        c->left++;
    if (--c->leaving > 0) return;
    if (c->left == c->cfg->nstreams)
        rsgInfo("consumer '%s' left group '%s' (generated name, nothing pending)", c->consumer,
                c->cfg->group);
    c->leave_done(c->leave_ud);
}

int rsgClaimLeave(rsgClaim *c, void (*done)(void *ud), void *ud) {
    const rsgSourceConfig *cfg = c->cfg;
    if (!cfg || !c->cmds->ready) return -1;
    char *alive = rsgHeartAliveKey(cfg->group, c->consumer);
    if (!alive) return -1;
    c->leave_done = done;
    c->leave_ud = ud;
    c->leaving = c->left = 0;
    for (int s = 0; s < cfg->nstreams; s++) {
        const char *argv[] = {"EVAL", deleteScript, "1", cfg->streams[s], cfg->group, c->consumer};
        if (rsgConnCommand(c->cmds, onLeft, c, 6, argv, NULL) == 0) c->leaving++;
    }
    /* The heart may set its key once more before it ends; it then expires. */
    const char *hdel[] = {"HDEL", c->registry_key, c->consumer};
    const char *del[] = {"DEL", alive};
    rsgConnCommand(c->cmds, ignoreReply, NULL, 3, hdel, NULL);
    rsgConnCommand(c->cmds, ignoreReply, NULL, 2, del, NULL);
    free(alive);
    return c->leaving > 0 ? 0 : -1;
}

void rsgClaimStop(rsgClaim *c) {
    if (c->stopped || !c->loop) return;
    c->stopped = 1;
    rsgConnClose(&c->sub);
    if (!uv_is_closing((uv_handle_t *)&c->timer)) uv_close((uv_handle_t *)&c->timer, NULL);
}

void rsgClaimFree(rsgClaim *c) {
    for (int i = 0; i < c->npeers; i++) {
        free(c->peers[i].name);
        free(c->peers[i].stream_pending);
    }
    free(c->peers);
    free(c->registry_key);
    c->peers = NULL;
    c->npeers = c->cap = 0;
}
