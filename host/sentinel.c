/* sentinel.c - see sentinel.h. */
#include "sentinel.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "log.h"
#include "tls.h"

/* A sentinel answers from memory: one that has not answered in this time is
 * stuck or unreachable, and the next one may know. */
#define ASK_TIMEOUT_MS   2000
#define WATCH_TIMEOUT_MS 3000
#define WATCH_RETRY_MS   500

/* Connects to sentinel i of url and queues AUTH with the sentinels'
 * credentials when there are any (auth gets its reply). Returns the context
 * attached to loop with data set, or NULL with the reason in why. */
static redisAsyncContext *openSentinel(uv_loop_t *loop, const rsgRedisUrl *url, int i, void *data,
                                       redisConnectCallback *on_connect,
                                       redisDisconnectCallback *on_disconnect,
                                       redisCallbackFn *auth, char *why, size_t whylen) {
    const rsgAddr *s = &url->sentinels[i];
    redisAsyncContext *ac = redisAsyncConnect(s->host, s->port);
    if (!ac || ac->err) {
        snprintf(why, whylen, "%s", ac ? ac->errstr : "out of memory");
        if (ac) redisAsyncFree(ac);
        return NULL;
    }
    /* rediss+sentinel://: the sentinels speak TLS as the master does. */
    if (url->tls && rsgTlsAttach(&ac->c, s->host, why, whylen) != 0) {
        redisAsyncFree(ac);
        return NULL;
    }
    if (rsgConnAttach(ac, loop) != 0) {
        snprintf(why, whylen, "cannot attach to the event loop");
        redisAsyncFree(ac);
        return NULL;
    }
    ac->data = data;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    if (url->sentinel_password) {
        const char *argv[3] = {"AUTH", url->sentinel_user, url->sentinel_password};
        int argc = 3;
        if (!url->sentinel_user) argv[1] = url->sentinel_password, argc = 2;
        redisAsyncCommandArgv(ac, auth, NULL, argc, argv, NULL);
    }
    return ac;
}

/* ---- The query ---- */

struct rsgSentinelQuery {
    uv_loop_t *loop;
    const rsgRedisUrl *url;
    rsgSentinelAnswer *cb;
    void *ud;
    int next;              /* the sentinel asked now */
    redisAsyncContext *ac; /* its connection, NULL between sentinels */
    int done;              /* answered or cancelled: late callbacks do nothing */
    uv_timer_t timer;      /* per-sentinel timeout; its close frees the query */
    char why[512];         /* each sentinel's reason, for a query that fails */
};

static void askNext(rsgSentinelQuery *q);

static void onQueryClosed(uv_handle_t *h) {
    free(h->data);
}

/* Records why sentinel q->next gave no answer. */
static void note(rsgSentinelQuery *q, const char *reason) {
    const rsgAddr *s = &q->url->sentinels[q->next];
    size_t l = strlen(q->why);
    snprintf(q->why + l, sizeof(q->why) - l, "%s%s:%d: %s", l ? "; " : "", s->host, s->port,
             reason);
}

/* Gives up on the sentinel asked now and asks the next one. Safe inside a
 * callback of its connection: hiredis frees it when the callback returns,
 * and the callbacks that the freeing runs see q->ac no longer matches. */
static void skip(rsgSentinelQuery *q, const char *reason) {
    note(q, reason);
    uv_timer_stop(&q->timer);
    redisAsyncContext *ac = q->ac;
    q->ac = NULL;
    if (ac) redisAsyncFree(ac);
    q->next++;
    askNext(q);
}

/* Calls cb once and lets the query go. */
static void finish(rsgSentinelQuery *q, const char *host, int port) {
    q->done = 1;
    redisAsyncContext *ac = q->ac;
    q->ac = NULL;
    if (ac) redisAsyncFree(ac);
    uv_timer_stop(&q->timer);
    uv_close((uv_handle_t *)&q->timer, onQueryClosed);
    q->cb(q->ud, host, port, host ? NULL : q->why);
}

static void onQueryAuth(redisAsyncContext *ac, void *r, void *privdata) {
    rsgSentinelQuery *q = ac->data;
    redisReply *reply = r;
    (void)privdata;
    if (q->done || q->ac != ac || !reply) return;
    if (reply->type == REDIS_REPLY_ERROR) {
        char msg[256];
        snprintf(msg, sizeof(msg), "AUTH failed: %s", reply->str);
        skip(q, msg);
    }
}

static void onQueryReply(redisAsyncContext *ac, void *r, void *privdata) {
    rsgSentinelQuery *q = ac->data;
    redisReply *reply = r;
    (void)privdata;
    if (q->done || q->ac != ac || !reply) return; /* NULL: the disconnect moves on */
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
        reply->element[0]->type == REDIS_REPLY_STRING &&
        reply->element[1]->type == REDIS_REPLY_STRING) {
        char host[256];
        snprintf(host, sizeof(host), "%s", reply->element[0]->str);
        int port = atoi(reply->element[1]->str);
        if (port > 0 && port < 65536) {
            finish(q, host, port);
            return;
        }
    }
    char msg[256];
    if (reply->type == REDIS_REPLY_ERROR)
        snprintf(msg, sizeof(msg), "%s", reply->str);
    else if (reply->type == REDIS_REPLY_NIL)
        snprintf(msg, sizeof(msg), "does not know master '%s'", q->url->master);
    else
        snprintf(msg, sizeof(msg), "unexpected reply to SENTINEL get-master-addr-by-name");
    skip(q, msg);
}

static void onQueryConnect(const redisAsyncContext *ac, int status) {
    rsgSentinelQuery *q = ac->data;
    if (q->done || q->ac != ac || status == REDIS_OK) return;
    /* hiredis frees the context after this callback. */
    q->ac = NULL;
    skip(q, ac->errstr[0] ? ac->errstr : "cannot connect");
}

static void onQueryDisconnect(const redisAsyncContext *ac, int status) {
    rsgSentinelQuery *q = ac->data;
    (void)status;
    if (q->done || q->ac != ac) return;
    q->ac = NULL;
    skip(q, ac->errstr[0] ? ac->errstr : "connection closed");
}

static void onQueryTimeout(uv_timer_t *t) {
    rsgSentinelQuery *q = t->data;
    if (q->done) return;
    if (q->next < 0) { /* the deferred start (see rsgSentinelAsk) */
        q->next = 0;
        askNext(q);
        return;
    }
    skip(q, "no answer in time");
}

/* Asks sentinel q->next, or reports failure when none is left. */
static void askNext(rsgSentinelQuery *q) {
    while (q->next < q->url->nsentinels) {
        char why[256];
        q->ac = openSentinel(q->loop, q->url, q->next, q, onQueryConnect, onQueryDisconnect,
                             onQueryAuth, why, sizeof(why));
        if (!q->ac) {
            note(q, why);
            q->next++;
            continue;
        }
        const char *argv[3] = {"SENTINEL", "get-master-addr-by-name", q->url->master};
        redisAsyncCommandArgv(q->ac, onQueryReply, NULL, 3, argv, NULL);
        uv_timer_start(&q->timer, onQueryTimeout, ASK_TIMEOUT_MS, 0);
        return;
    }
    finish(q, NULL, 0);
}

rsgSentinelQuery *rsgSentinelAsk(uv_loop_t *loop, const rsgRedisUrl *url, rsgSentinelAnswer *cb,
                                 void *ud) {
    rsgSentinelQuery *q = calloc(1, sizeof(*q));
    if (!q) return NULL;
    q->loop = loop;
    q->url = url;
    q->cb = cb;
    q->ud = ud;
    q->next = -1;
    uv_timer_init(loop, &q->timer);
    q->timer.data = q;
    /* Start on the next turn of the loop: cb must never run inside this
     * call, even when every sentinel fails at once. */
    uv_timer_start(&q->timer, onQueryTimeout, 0, 0);
    return q;
}

void rsgSentinelCancel(rsgSentinelQuery *q) {
    if (!q || q->done) return;
    q->done = 1;
    redisAsyncContext *ac = q->ac;
    q->ac = NULL;
    if (ac) redisAsyncFree(ac);
    uv_timer_stop(&q->timer);
    uv_close((uv_handle_t *)&q->timer, onQueryClosed);
}

/* ---- The watcher ---- */

static void watchConnect(rsgSentinelWatch *w);

static void watchTimer(uv_timer_t *t);

/* Drops the sentinel we listen to (if any) and tries the next one soon. */
static void watchNext(rsgSentinelWatch *w, const char *why) {
    if (w->stopped) return;
    const rsgAddr *s = &w->url->sentinels[w->index];
    rsgLog(w->subscribed ? RSG_LOG_WARN : RSG_LOG_DEBUG,
           "sentinel %s:%d: %s watching master '%s' (%s); trying the next sentinel", s->host,
           s->port, w->subscribed ? "stopped" : "cannot start", w->url->master, why);
    redisAsyncContext *ac = w->ac;
    w->ac = NULL;
    w->subscribed = 0;
    if (ac) redisAsyncFree(ac);
    w->index = (w->index + 1) % w->url->nsentinels;
    uv_timer_start(&w->timer, watchTimer, WATCH_RETRY_MS, 0);
}

/* Fires as the connect timeout and as the pause before the next sentinel. */
static void watchTimer(uv_timer_t *t) {
    rsgSentinelWatch *w = t->data;
    if (w->stopped) return;
    if (w->ac) {
        watchNext(w, "no answer in time");
        return;
    }
    watchConnect(w);
}

static void onWatchAuth(redisAsyncContext *ac, void *r, void *privdata) {
    rsgSentinelWatch *w = ac->data;
    redisReply *reply = r;
    (void)privdata;
    if (w->stopped || w->ac != ac || !reply) return;
    if (reply->type == REDIS_REPLY_ERROR) {
        char msg[256];
        snprintf(msg, sizeof(msg), "AUTH failed: %s", reply->str);
        watchNext(w, msg);
    }
}

/* Subscription confirmations and +switch-master messages:
 * "NAME OLD-IP OLD-PORT NEW-IP NEW-PORT". */
static void onWatchMessage(redisAsyncContext *ac, void *r, void *privdata) {
    rsgSentinelWatch *w = ac->data;
    redisReply *reply = r;
    (void)privdata;
    if (w->stopped || w->ac != ac || !reply) return;
    if (reply->type == REDIS_REPLY_ERROR) {
        char msg[256];
        snprintf(msg, sizeof(msg), "SUBSCRIBE failed: %s", reply->str);
        watchNext(w, msg);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING)
        return;
    const rsgAddr *s = &w->url->sentinels[w->index];
    if (strcmp(reply->element[0]->str, "subscribe") == 0) {
        uv_timer_stop(&w->timer);
        w->subscribed = 1;
        rsgDebug("sentinel %s:%d: watching master '%s' for failovers", s->host, s->port,
                 w->url->master);
        return;
    }
    redisReply *payload = reply->element[2];
    if (strcmp(reply->element[0]->str, "message") != 0 || payload->type != REDIS_REPLY_STRING)
        return;
    char name[256], oldhost[256], newhost[256];
    int oldport, newport;
    if (sscanf(payload->str, "%255s %255s %d %255s %d", name, oldhost, &oldport, newhost,
               &newport) != 5 ||
        strcmp(name, w->url->master) != 0)
        return;
    rsgInfo("sentinel %s:%d: master '%s' moved from %s:%d to %s:%d", s->host, s->port, name,
            oldhost, oldport, newhost, newport);
    w->on_move(w->ud, newhost, newport);
}

static void onWatchConnect(const redisAsyncContext *ac, int status) {
    rsgSentinelWatch *w = ac->data;
    if (w->stopped || w->ac != ac || status == REDIS_OK) return;
    w->ac = NULL; /* hiredis frees it after this callback */
    watchNext(w, ac->errstr[0] ? ac->errstr : "cannot connect");
}

static void onWatchDisconnect(const redisAsyncContext *ac, int status) {
    rsgSentinelWatch *w = ac->data;
    (void)status;
    if (w->stopped || w->ac != ac) return;
    w->ac = NULL;
    watchNext(w, ac->errstr[0] ? ac->errstr : "connection closed");
}

static void watchConnect(rsgSentinelWatch *w) {
    char why[256];
    w->ac = openSentinel(w->loop, w->url, w->index, w, onWatchConnect, onWatchDisconnect,
                         onWatchAuth, why, sizeof(why));
    if (!w->ac) {
        watchNext(w, why);
        return;
    }
    const char *argv[2] = {"SUBSCRIBE", "+switch-master"};
    redisAsyncCommandArgv(w->ac, onWatchMessage, NULL, 2, argv, NULL);
    uv_timer_start(&w->timer, watchTimer, WATCH_TIMEOUT_MS, 0);
}

void rsgSentinelWatchStart(rsgSentinelWatch *w, uv_loop_t *loop, const rsgRedisUrl *url,
                           rsgSentinelSwitch *on_move, void *ud) {
    memset(w, 0, sizeof(*w));
    w->loop = loop;
    w->url = url;
    w->on_move = on_move;
    w->ud = ud;
    uv_timer_init(loop, &w->timer);
    w->timer.data = w;
    watchConnect(w);
}

void rsgSentinelWatchStop(rsgSentinelWatch *w) {
    if (w->stopped || !w->loop) return;
    w->stopped = 1;
    redisAsyncContext *ac = w->ac;
    w->ac = NULL;
    if (ac) redisAsyncFree(ac);
    uv_timer_stop(&w->timer);
    uv_close((uv_handle_t *)&w->timer, NULL);
}
