/* conn.c - see conn.h. */
#include "conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "arena.h"
#include "cluster.h"
#include "log.h"
#include "sentinel.h"
#include "tls.h"

#define CONNECT_TIMEOUT_MS 5000
#define BACKOFF_MIN_MS     100
#define BACKOFF_MAX_MS     5000

static void doConnect(rsgConn *c);
static void connectNext(rsgConn *c);

/* ---- hiredis on libuv ----
 *
 * Our own event adapter rather than hiredis 0.14's adapters/libuv.h, which
 * returns early when libuv reports a poll error: libuv then stops the handle,
 * hiredis never hears that the socket died, and a connection that Redis reset
 * while it had our data unread hangs forever (and a refused connect waits
 * out the connect timeout). On an error we let hiredis read (and write, if
 * it wanted to), so it meets the error itself and disconnects. */

typedef struct uvEvents {
    redisAsyncContext *ac; /* NULL once hiredis cleaned up */
    uv_poll_t poll;
    int events; /* UV_READABLE | UV_WRITABLE wanted by hiredis */
} uvEvents;

static void uvOnPoll(uv_poll_t *h, int status, int events) {
    uvEvents *e = h->data;
    if (status < 0) events = UV_READABLE | e->events;
    if (e->ac && (events & UV_READABLE)) redisAsyncHandleRead(e->ac);
    if (e->ac && (events & UV_WRITABLE)) redisAsyncHandleWrite(e->ac);
}

static void uvUpdate(uvEvents *e, int add, int del) {
    e->events = (e->events | add) & ~del;
    if (e->events)
        uv_poll_start(&e->poll, e->events, uvOnPoll);
    else
        uv_poll_stop(&e->poll);
}

static void uvAddRead(void *p) {
    uvUpdate(p, UV_READABLE, 0);
}
static void uvDelRead(void *p) {
    uvUpdate(p, 0, UV_READABLE);
}
static void uvAddWrite(void *p) {
    uvUpdate(p, UV_WRITABLE, 0);
}
static void uvDelWrite(void *p) {
    uvUpdate(p, 0, UV_WRITABLE);
}

static void uvOnClose(uv_handle_t *h) {
    free(h->data);
}

static void uvCleanup(void *p) {
    uvEvents *e = p;
    e->ac = NULL;
    uv_close((uv_handle_t *)&e->poll, uvOnClose);
}

/* Attaches ac to the loop. Returns 0, or -1 (nothing attached). */
static int uvAttach(redisAsyncContext *ac, uv_loop_t *loop) {
    if (ac->ev.data) return -1;
    uvEvents *e = calloc(1, sizeof(*e));
    if (!e) return -1;
    if (uv_poll_init(loop, &e->poll, ac->c.fd) != 0) {
        free(e);
        return -1;
    }
    e->ac = ac;
    e->poll.data = e;
    ac->ev.data = e;
    ac->ev.addRead = uvAddRead;
    ac->ev.delRead = uvDelRead;
    ac->ev.addWrite = uvAddWrite;
    ac->ev.delWrite = uvDelWrite;
    ac->ev.cleanup = uvCleanup;
    return 0;
}

int rsgConnAttach(redisAsyncContext *ac, uv_loop_t *loop) {
    return uvAttach(ac, loop);
}

static void retryTimer(uv_timer_t *t);

/* Where c connects, for log lines: the URL (its password masked), or for
 * Sentinel the master's address as the sentinels gave it. */
static void describe(const rsgConn *c, char *buf, size_t len) {
    if (c->url->nsentinels)
        snprintf(buf, len, "%.160s:%d (master '%.60s')", c->host, c->port, c->url->master);
    else
        rsgUrlFormat(c->url, buf, len);
}

static void scheduleRetry(rsgConn *c) {
    if (c->closing) return;
    uint64_t delay = BACKOFF_MIN_MS;
    for (unsigned i = 0; i < c->attempt && delay < BACKOFF_MAX_MS; i++)
        delay *= 2;
    if (delay > BACKOFF_MAX_MS) delay = BACKOFF_MAX_MS;
    c->attempt++;
    rsgInfo("redis %s: retrying in %.1fs", c->name, (double)delay / 1000.0);
    uv_timer_start(&c->timer, retryTimer, delay, 0);
}

/* Fires for both the backoff delay and the connect timeout. */
static void retryTimer(uv_timer_t *t) {
    rsgConn *c = t->data;
    if (c->ac) {
        /* Still not connected when the connect timeout fired: give up on this
         * attempt. Freeing an unconnected context calls no callback. */
        char where[256];
        describe(c, where, sizeof(where));
        rsgWarn("redis %s: connecting to %s timed out", c->name, where);
        redisAsyncContext *ac = c->ac;
        c->ac = NULL;
        redisAsyncFree(ac);
        scheduleRetry(c);
        return;
    }
    connectNext(c);
}

/* Drops c's connection on purpose, at once: hiredis gives the pending
 * callbacks NULL replies and the disconnect callback retries (after the
 * backoff unless fresh_backoff). Inside one of c's reply callbacks hiredis
 * frees the context when the callback returns. */
static void dropConn(rsgConn *c, int fresh_backoff) {
    if (c->closing || !c->ac) return;
    if (fresh_backoff) c->attempt = 0;
    redisAsyncContext *ac = c->ac;
    if (!(ac->c.flags & REDIS_CONNECTED)) {
        /* Still connecting: freeing it calls no callback, so retry here. */
        c->ac = NULL;
        uv_timer_stop(&c->timer);
        redisAsyncFree(ac);
        scheduleRetry(c);
        return;
    }
    c->dropping = 1;
    redisAsyncFree(ac);
}

static void fatal(rsgConn *c, const char *reason) {
    if (c->on_fatal) c->on_fatal(c, reason);
}

/* Reports the fatal reason doConnect kept in fatal_why. */
static void fatalTimer(uv_timer_t *t) {
    rsgConn *c = t->data;
    fatal(c, c->fatal_why);
}

static void onHandshakeReply(redisAsyncContext *ac, void *r, void *privdata) {
    rsgConn *c = ac->data;
    redisReply *reply = r;
    const char *step = privdata;
    if (!c || c->ac != ac || c->dropping) return;
    if (!reply) return; /* lost during the handshake: the disconnect callback retries */
    if (strcmp(step, "ROLE") == 0 && reply->type != REDIS_REPLY_ERROR) {
        const char *role = reply->type == REDIS_REPLY_ARRAY && reply->elements > 0 &&
                                   reply->element[0]->type == REDIS_REPLY_STRING
                               ? reply->element[0]->str
                               : "?";
        if (strcmp(role, "master") != 0) {
            /* The sentinels' answer is already stale (a failover is under
             * way): writes here would fail. Ask again after the backoff. */
            char where[256];
            describe(c, where, sizeof(where));
            rsgWarn("redis %s: %s is a %s, not the master; asking the sentinels again", c->name,
                    where, role);
            dropConn(c, 0);
            return;
        }
    }
    if (reply->type == REDIS_REPLY_ERROR &&
        (strncmp(reply->str, "LOADING", 7) == 0 || strncmp(reply->str, "BUSY ", 5) == 0 ||
         strncmp(reply->str, "MASTERDOWN", 10) == 0 || strncmp(reply->str, "TRYAGAIN", 8) == 0)) {
        /* Redis is up but not ready (loading its data, running a long
         * script...): not our fault and not fatal. Drop and retry. */
        rsgWarn("redis %s: not ready yet: %s", c->name, reply->str);
        redisAsyncDisconnect(ac);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        char msg[512];
        if (strncmp(reply->str, "NOAUTH", 6) == 0)
            snprintf(msg, sizeof(msg),
                     "redis requires a password (%s); give it in the URL: "
                     "redis://:PASSWORD@host:port",
                     reply->str);
        else
            snprintf(msg, sizeof(msg), "redis %s failed: %s", step, reply->str);
        c->closing = 1; /* fatal: do not loop on a wrong password */
        uv_timer_stop(&c->timer);
        fatal(c, msg);
        return;
    }
    if (--c->handshake_left > 0) return;
    uv_timer_stop(&c->timer); /* the connect timeout */
    c->ready = 1;
    c->attempt = 0;
    /* A different server than last time: whatever the old one took but had
     * not replicated (acks above all) may be missing here. */
    c->moved = c->was_ready &&
               (strcmp(c->ready_host, c->host) != 0 || c->ready_port != c->port || c->failed_over);
    c->failed_over = 0;
    snprintf(c->ready_host, sizeof(c->ready_host), "%s", c->host);
    c->ready_port = c->port;
    char where[256];
    describe(c, where, sizeof(where));
    if (c->was_ready) {
        c->reconnects++;
        rsgInfo("redis %s: reconnected to %s", c->name, where);
    } else
        rsgDebug("redis %s: connected to %s", c->name, where);
    c->was_ready = 1;
    if (c->on_ready) c->on_ready(c);
}

static void onConnect(const redisAsyncContext *ac, int status) {
    rsgConn *c = ac->data;
    if (!c || c->ac != ac) return;
    if (status != REDIS_OK) {
        uv_timer_stop(&c->timer);
        char where[256];
        describe(c, where, sizeof(where));
        /* Log the first failure as a warning, then quieter: a redis that is
         * down for minutes should not flood the log. */
        rsgLog(c->attempt == 0 || c->attempt % 10 == 0 ? RSG_LOG_WARN : RSG_LOG_DEBUG,
               "redis %s: cannot connect to %s: %s", c->name, where, ac->errstr);
        c->ac = NULL; /* hiredis frees the context after this callback */
        scheduleRetry(c);
        return;
    }
    /* The handshake was queued right after connect; its replies decide.
     * The connect timeout keeps running until they are in: a server that
     * accepts but never answers (a stopped process: the kernel still
     * completes the TCP handshake) must not hold the attempt forever. */
}

static void onDisconnect(const redisAsyncContext *ac, int status) {
    rsgConn *c = ac->data;
    if (!c || c->ac != ac) return;
    int wasReady = c->ready;
    c->ac = NULL;
    c->ready = 0;
    c->dropping = 0;
    if (c->closing) return;
    char where[256], why[512] = "";
    describe(c, where, sizeof(where));
    /* hiredis reports a failed TLS handshake as strerror(errno); ask what
     * really happened. A refused certificate is fatal like a wrong password. */
    if (c->url->tls && rsgTlsFailure(&ac->c, where, why, sizeof(why)) == RSG_TLS_FATAL) {
        c->closing = 1;
        fatal(c, why);
        return;
    }
    if (why[0])
        rsgWarn("redis %s: %s", c->name, why);
    else
        rsgWarn("redis %s: connection to %s lost%s%s", c->name, where,
                status == REDIS_OK ? "" : ": ",
                status == REDIS_OK ? "" : (ac->errstr[0] ? ac->errstr : "closed by the server"));
    if (wasReady && c->on_lost) c->on_lost(c);
    scheduleRetry(c);
}

/* The sentinels answered (host set) or could not (why set). */
static void onMasterFound(void *ud, const char *host, int port, const char *why) {
    rsgConn *c = ud;
    c->query = NULL;
    if (c->closing) return;
    if (!host) {
        rsgLog(c->attempt == 0 || c->attempt % 10 == 0 ? RSG_LOG_WARN : RSG_LOG_DEBUG,
               "redis %s: no sentinel told where master '%s' is: %s", c->name, c->url->master, why);
        scheduleRetry(c);
        return;
    }
    snprintf(c->host, sizeof(c->host), "%s", host);
    c->port = port;
    rsgInfo("redis %s: master '%s' is at %s:%d", c->name, c->url->master, c->host, c->port);
    doConnect(c);
}

/* Starts the next attempt: with Sentinel, first asks where the master is
 * (it may have moved since the last attempt); else connects to the URL. */
static void connectNext(rsgConn *c) {
    if (!c->url->nsentinels) {
        doConnect(c);
        return;
    }
    c->query = rsgSentinelAsk(c->loop, c->url, onMasterFound, c);
    if (!c->query) {
        rsgError("redis %s: out of memory asking the sentinels", c->name);
        scheduleRetry(c);
    }
}

/* Connects to c->host:c->port (or the URL's unix socket) and queues the
 * handshake. Trouble becomes a retry. */
static void doConnect(rsgConn *c) {
    redisAsyncContext *ac =
        c->url->path ? redisAsyncConnectUnix(c->url->path) : redisAsyncConnect(c->host, c->port);
    char where[256];
    describe(c, where, sizeof(where));
    if (!ac || ac->err) {
        rsgWarn("redis %s: cannot connect to %s: %s", c->name, where,
                ac ? ac->errstr : "out of memory");
        if (ac) redisAsyncFree(ac);
        scheduleRetry(c);
        return;
    }
    char why[512];
    if (c->url->tls && rsgTlsAttach(&ac->c, c->host, why, sizeof(why)) != 0) {
        /* On loopback the whole handshake can run, and fail, in here. A
         * refused certificate is fatal; anything else (refused connect, a
         * file replaced since start) may pass on the next attempt. */
        int fatalNow =
            rsgTlsFailure(&ac->c, where, c->fatal_why, sizeof(c->fatal_why)) == RSG_TLS_FATAL;
        redisAsyncFree(ac);
        if (fatalNow) {
            /* Told from the loop, not from inside rsgConnStart, whose
             * caller may not have started its other connections yet. */
            c->closing = 1;
            uv_timer_start(&c->timer, fatalTimer, 0, 0);
            return;
        }
        /* As quiet as a refused plain connect (onConnect). */
        rsgLog(c->attempt == 0 || c->attempt % 10 == 0 ? RSG_LOG_WARN : RSG_LOG_DEBUG,
               "redis %s: cannot connect to %s: %s", c->name, where, why);
        scheduleRetry(c);
        return;
    }
    ac->data = c;
    if (c->arena) {
        ac->c.reader->fn = &rsgArenaReplyFunctions;
        ac->c.reader->privdata = c->arena;
        ac->c.reader->maxbuf = 0; /* keep the read buffer: every read is large */
    }
    if (uvAttach(ac, c->loop) != 0) {
        rsgError("redis %s: cannot attach to the event loop", c->name);
        redisAsyncFree(ac);
        scheduleRetry(c);
        return;
    }
    c->ac = ac;
    redisAsyncSetConnectCallback(ac, onConnect);
    redisAsyncSetDisconnectCallback(ac, onDisconnect);

    /* hiredis queues these until the socket is writable. */
    const rsgRedisUrl *u = c->url;
    c->handshake_left = 0;
    if (u->password) {
        const char *argv[3] = {"AUTH", u->user ? u->user : u->password, u->password};
        int argc = u->user ? 3 : 2;
        redisAsyncCommandArgv(ac, onHandshakeReply, (void *)"AUTH", argc, argv, NULL);
        c->handshake_left++;
    }
    if (u->db != 0) {
        char db[16];
        snprintf(db, sizeof(db), "%d", u->db);
        const char *argv[2] = {"SELECT", db};
        redisAsyncCommandArgv(ac, onHandshakeReply, (void *)"SELECT", 2, argv, NULL);
        c->handshake_left++;
    }
    if (c->client_name) {
        const char *argv[3] = {"CLIENT", "SETNAME", c->client_name};
        redisAsyncCommandArgv(ac, onHandshakeReply, (void *)"CLIENT SETNAME", 3, argv, NULL);
        c->handshake_left++;
    }
    if (u->nsentinels) {
        /* The sentinels' answer may be stale: check before calling it ready. */
        const char *argv[1] = {"ROLE"};
        redisAsyncCommandArgv(ac, onHandshakeReply, (void *)"ROLE", 1, argv, NULL);
        c->handshake_left++;
    }
    const char *ping[1] = {"PING"};
    redisAsyncCommandArgv(ac, onHandshakeReply, (void *)"PING", 1, ping, NULL);
    c->handshake_left++;
    uv_timer_start(&c->timer, retryTimer, CONNECT_TIMEOUT_MS, 0);
}

void rsgConnStart(rsgConn *c, uv_loop_t *loop, const rsgRedisUrl *url, const char *name) {
    c->loop = loop;
    c->url = url;
    c->name = name;
    c->ac = NULL;
    c->ready = c->closing = c->was_ready = c->dropping = 0;
    c->attempt = 0;
    c->query = NULL;
    c->host[0] = '\0';
    c->port = url->port;
    if (url->host) snprintf(c->host, sizeof(c->host), "%s", url->host);
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    c->timer_open = 1;
    c->cluster = NULL;
    if (url->cluster) {
        rsgClusterStart(c);
        return;
    }
    connectNext(c);
}

/* ---- Commands, and the replies that say the master moved ----
 *
 * Each command's callback is wrapped, so that a reply saying we are on a
 * replica (-READONLY for a write; -UNBLOCKED for a blocked read when the
 * master was turned into a replica) drops the connection and reaches the
 * caller as the NULL of a lost connection. With Sentinel the reconnect asks
 * where the master went. With a plain URL it connects to the same address,
 * which a failover may have moved (a DNS name, a virtual IP): while it still
 * leads to a replica, each try's first write fails again, and the backoff
 * grows with the consecutive READONLY replies instead of starting over.
 * The cost is one small malloc per command, beside hiredis' own
 * allocations for it. */

typedef struct cmdWrap {
    rsgConn *c;
    redisCallbackFn *fn; /* the caller's, may be NULL */
    void *privdata;
} cmdWrap;

/* -UNBLOCKED also ends a blocked read whose stream or group was deleted
 * ("the stream key no longer exists"): that one is the reader's to handle,
 * not a sign of a replica. */
static int saysReplica(const redisReply *r) {
    return r && r->type == REDIS_REPLY_ERROR &&
           (strncmp(r->str, "READONLY", 8) == 0 ||
            (strncmp(r->str, "UNBLOCKED", 9) == 0 && !strstr(r->str, "no longer exists")));
}

static void onWrappedReply(redisAsyncContext *ac, void *r, void *privdata) {
    cmdWrap *w = privdata;
    rsgConn *c = w->c;
    if (saysReplica(r)) {
        if (c->ac == ac && !c->dropping) {
            char where[256];
            describe(c, where, sizeof(where));
            rsgWarn("redis %s: %s answered '%s': no longer the master; reconnecting", c->name,
                    where, ((redisReply *)r)->str);
            /* Whatever server we reach next may lack writes the old master
             * had not replicated: the owner replays as after a failover. */
            c->failed_over = 1;
            if (c->url->nsentinels) {
                dropConn(c, 1);
            } else {
                c->attempt = c->readonly++;
                dropConn(c, 0);
            }
        }
        r = NULL;
    } else if (r && ((redisReply *)r)->type != REDIS_REPLY_ERROR) {
        c->readonly = 0;
    }
    if (w->fn) w->fn(ac, r, w->privdata);
    free(w);
}

/* A subscription's callback runs for every message, so it cannot own a
 * wrapper freed after one reply; pub/sub works on replicas anyway. */
static int isSubscribe(const char *cmd) {
    return strcasecmp(cmd, "SUBSCRIBE") == 0 || strcasecmp(cmd, "PSUBSCRIBE") == 0 ||
           strcasecmp(cmd, "SSUBSCRIBE") == 0;
}

/* The wrapper for fn, or NULL when memory ran out (then the command goes unwrapped: only the
 * reconnect on a replica's error is lost). */
static cmdWrap *wrap(rsgConn *c, redisCallbackFn *fn, void *privdata) {
    cmdWrap *w = malloc(sizeof(*w));
    if (w) *w = (cmdWrap){c, fn, privdata};
    return w;
}

int rsgConnCommand(rsgConn *c, redisCallbackFn *fn, void *privdata, int argc, const char **argv,
                   const size_t *argvlen) {
    if (c->cluster) return rsgClusterCommand(c, fn, privdata, argc, argv, argvlen);
    if (!c->ready || !c->ac || c->dropping) return -1;
    cmdWrap *w = argc > 0 && !isSubscribe(argv[0]) ? wrap(c, fn, privdata) : NULL;
    if (!w)
        return redisAsyncCommandArgv(c->ac, fn, privdata, argc, argv, argvlen) == REDIS_OK ? 0 : -1;
    if (redisAsyncCommandArgv(c->ac, onWrappedReply, w, argc, argv, argvlen) == REDIS_OK) return 0;
    free(w);
    return -1;
}

/* Whether a command in RESP ("*N\r\n$L\r\nNAME\r\n...") is a subscription:
 * the cluster router passes SUBSCRIBE on formatted. */
static int formattedIsSubscribe(const char *cmd, size_t len) {
    const char *end = cmd + len, *p = memchr(cmd, '\n', len);
    if (!p || ++p >= end || *p != '$') return 0;
    long n = strtol(p + 1, NULL, 10);
    const char *name = memchr(p, '\n', (size_t)(end - p));
    if (!name || n <= 0 || n >= 16 || ++name + n > end) return 0;
    char buf[16];
    memcpy(buf, name, (size_t)n);
    buf[n] = '\0';
    return isSubscribe(buf);
}

int rsgConnFormatted(rsgConn *c, redisCallbackFn *fn, void *privdata, const char *cmd, size_t len) {
    if (c->cluster) return rsgClusterFormatted(c, fn, privdata, cmd, len);
    if (!c->ready || !c->ac || c->dropping) return -1;
    cmdWrap *w = formattedIsSubscribe(cmd, len) ? NULL : wrap(c, fn, privdata);
    if (!w) return redisAsyncFormattedCommand(c->ac, fn, privdata, cmd, len) == REDIS_OK ? 0 : -1;
    if (redisAsyncFormattedCommand(c->ac, onWrappedReply, w, cmd, len) == REDIS_OK) return 0;
    free(w);
    return -1;
}

void rsgConnMasterMoved(rsgConn *c, const char *host, int port) {
    if (c->closing || !c->url->nsentinels) return;
    if (c->ac && !c->dropping && strcmp(c->host, host) == 0 && c->port == port) return;
    c->attempt = 0;
    if (c->ac) {
        dropConn(c, 1);
        return;
    }
    /* Waiting out a backoff: go now. A query under way may still bring the
     * old address; the ROLE check catches that. */
    if (!c->query && c->timer_open) {
        uv_timer_stop(&c->timer);
        connectNext(c);
    }
}

void rsgConnFlush(rsgConn *c) {
    if (c->cluster) {
        rsgClusterFlush(c);
        return;
    }
    if (!c->ready || !c->ac || c->dropping) return;
    int done = 0;
    /* The async layer keeps its write event armed: it finds nothing left
     * to write and disarms it. */
    redisBufferWrite(&c->ac->c, &done);
}

static void onTimerClosed(uv_handle_t *h) {
    rsgConn *c = h->data;
    c->timer_open = 0;
    if (c->on_closed) c->on_closed(c);
}

void rsgConnClose(rsgConn *c) {
    if (c->closing && !c->timer_open) return;
    c->closing = 1;
    c->ready = 0;
    rsgClusterClose(c);
    if (c->query) {
        rsgSentinelCancel(c->query);
        c->query = NULL;
    }
    if (c->ac) {
        redisAsyncContext *ac = c->ac;
        /* Keep c->ac set while freeing so callbacks see it is ours; the
         * disconnect callback sees closing and does nothing. */
        redisAsyncFree(ac);
        c->ac = NULL;
    }
    if (c->timer_open && !uv_is_closing((uv_handle_t *)&c->timer)) {
        uv_timer_stop(&c->timer);
        uv_close((uv_handle_t *)&c->timer, onTimerClosed);
    }
}
