/* heart.c - see heart.h. */
#include "heart.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "conn.h"
#include "log.h"
#include "sentinel.h"

typedef struct rsgHeart {
    const rsgHeartConfig *cfg;
    uv_loop_t loop;
    rsgConn pub;        /* PUBLISH, SET, HSET */
    rsgConn sub;        /* SUBSCRIBE: our own heartbeats coming back */
    uv_timer_t beat;    /* every interval */
    uv_poll_t lifeline; /* our end of the socket pair */
    char *alive_key;
    char *registry_key;
    char ttl_ms[24];
    uint64_t last_seen; /* uv_now of the last own heartbeat heard */
    int exit_code;

    /* Sentinel URLs: moves both connections when the master moves. */
    rsgSentinelWatch watch;
} rsgHeart;

char *rsgHeartAliveKey(const char *group, const char *consumer) {
    size_t n = strlen(group) + strlen(consumer) + 32;
    char *k = malloc(n);
    if (k) snprintf(k, n, "rsghost:alive:%s:%s", group, consumer);
    return k;
}

char *rsgHeartRegistryKey(const char *group) {
    size_t n = strlen(group) + 32;
    char *k = malloc(n);
    if (k) snprintf(k, n, "rsghost:consumers:%s", group);
    return k;
}

static void stop(rsgHeart *h, int code) {
    h->exit_code = code;
    rsgConnClose(&h->pub);
    rsgConnClose(&h->sub);
    rsgSentinelWatchStop(&h->watch);
    if (!uv_is_closing((uv_handle_t *)&h->beat)) uv_close((uv_handle_t *)&h->beat, NULL);
    if (!uv_is_closing((uv_handle_t *)&h->lifeline)) uv_close((uv_handle_t *)&h->lifeline, NULL);
}

static void ignoreReply(redisAsyncContext *ac, void *r, void *privdata) {
    (void)ac, (void)privdata;
    redisReply *reply = r;
    if (reply && reply->type == REDIS_REPLY_ERROR)
        rsgWarn("heartbeat command failed: %s", reply->str);
}

static void beat(rsgHeart *h) {
    if (!h->pub.ready) return;
    const rsgHeartConfig *cfg = h->cfg;
    char now[24];
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    snprintf(now, sizeof(now), "%lld", (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000);
    const char *pub[] = {"PUBLISH", cfg->channel, cfg->consumer};
    const char *set[] = {"SET", h->alive_key, now, "PX", h->ttl_ms};
    rsgConnCommand(&h->pub, ignoreReply, NULL, 5, set, NULL);
    rsgConnCommand(&h->pub, ignoreReply, NULL, 3, pub, NULL);
}

static void onBeat(uv_timer_t *t) {
    rsgHeart *h = t->data;
    uint64_t silent = uv_now(&h->loop) - h->last_seen;
    if ((double)silent >= h->cfg->claim_timeout * 1000.0) {
        rsgError("own heartbeats not seen on channel '%s' for %.1fs (claim_timeout %gs): peers "
                 "will take this consumer for dead; stopping",
                 h->cfg->channel, (double)silent / 1000.0, h->cfg->claim_timeout);
        stop(h, 3);
        return;
    }
    beat(h);
}

static void onPubReady(rsgConn *c) {
    rsgHeart *h = c->data;
    /* The liveness key first: a registered consumer without one is dead. */
    beat(h);
    const char *reg[] = {"HSET", h->registry_key, h->cfg->consumer, "1"};
    rsgConnCommand(&h->pub, ignoreReply, NULL, 4, reg, NULL);
}

static void onMessage(redisAsyncContext *ac, void *r, void *privdata) {
    (void)ac;
    rsgHeart *h = privdata;
    redisReply *reply = r;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3) return;
    redisReply *kind = reply->element[0], *payload = reply->element[2];
    if (kind->type != REDIS_REPLY_STRING || strcmp(kind->str, "message") != 0) return;
    if (payload->type == REDIS_REPLY_STRING && strcmp(payload->str, h->cfg->consumer) == 0)
        h->last_seen = uv_now(&h->loop);
}

static void onSubReady(rsgConn *c) {
    rsgHeart *h = c->data;
    const char *sub[] = {"SUBSCRIBE", h->cfg->channel};
    rsgConnCommand(&h->sub, onMessage, h, 2, sub, NULL);
}

/* A failover moved the master: beat there at once, so that the gap stays
 * well inside claim_timeout and peers never take us for dead. */
static void onMasterMoved(void *ud, const char *host, int port) {
    rsgHeart *h = ud;
    rsgConnMasterMoved(&h->pub, host, port);
    rsgConnMasterMoved(&h->sub, host, port);
}

static void onFatal(rsgConn *c, const char *reason) {
    rsgHeart *h = c->data;
    rsgError("%s", reason);
    stop(h, 1);
}

static void onLifeline(uv_poll_t *p, int status, int events) {
    rsgHeart *h = p->data;
    (void)events;
    char buf[16];
    uv_os_fd_t fd = -1;
    ssize_t n =
        status < 0 || uv_fileno((uv_handle_t *)p, &fd) != 0 ? 0 : read(fd, buf, sizeof(buf));
    if (n > 0 || (n < 0 && errno == EAGAIN)) return;
    /* The main process is gone: so is the consumer we beat for. */
    rsgDebug("main process gone; heart stopping");
    stop(h, 0);
}

static int runHeart(const rsgHeartConfig *cfg, int fd) {
    rsgHeart h;
    memset(&h, 0, sizeof(h));
    h.cfg = cfg;
    h.alive_key = rsgHeartAliveKey(cfg->group, cfg->consumer);
    h.registry_key = rsgHeartRegistryKey(cfg->group);
    snprintf(h.ttl_ms, sizeof(h.ttl_ms), "%lld", (long long)(cfg->claim_timeout * 1000.0 + 0.5));
    /* Without these the heart cannot beat: exit at once, and the main
     * process, which sees the lifeline close, stops with it. */
    if (!h.alive_key || !h.registry_key || uv_loop_init(&h.loop) != 0) {
        rsgError("heart: out of memory or no event loop; stopping");
        free(h.alive_key);
        free(h.registry_key);
        return 1;
    }
    h.last_seen = uv_now(&h.loop); /* connecting gets the same grace as silence */
    uv_timer_init(&h.loop, &h.beat);
    h.beat.data = &h;
    uint64_t every = (uint64_t)(cfg->interval * 1000.0 + 0.5);
    if (every == 0) every = 1;
    uv_timer_start(&h.beat, onBeat, every, every);
    if (uv_poll_init(&h.loop, &h.lifeline, fd) != 0) {
        rsgError("heart: cannot watch the main process; stopping");
        return 1;
    }
    h.lifeline.data = &h;
    uv_poll_start(&h.lifeline, UV_READABLE | UV_DISCONNECT, onLifeline);
    h.pub.data = h.sub.data = &h;
    h.pub.on_ready = onPubReady;
    h.sub.on_ready = onSubReady;
    h.pub.on_fatal = h.sub.on_fatal = onFatal;
    if (cfg->url->nsentinels) rsgSentinelWatchStart(&h.watch, &h.loop, cfg->url, onMasterMoved, &h);
    rsgConnStart(&h.pub, &h.loop, cfg->url, "heart");
    rsgConnStart(&h.sub, &h.loop, cfg->url, "heart-watch");
    uv_run(&h.loop, UV_RUN_DEFAULT);
    uv_loop_close(&h.loop);
    free(h.alive_key);
    free(h.registry_key);
    return h.exit_code;
}

pid_t rsgHeartSpawn(const rsgHeartConfig *cfg, int *lifeline, char *err, size_t errlen) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        snprintf(err, errlen, "socketpair: %s", strerror(errno));
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, errlen, "fork: %s", strerror(errno));
        close(sv[0]);
        close(sv[1]);
        return -1;
    }
    if (pid == 0) {
        close(sv[0]);
        /* Die with the parent; if it died before prctl took effect, go now. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(0);
        /* Ctrl-C reaches the whole process group: the main process flushes
         * and exits, and we must keep beating until it has. */
        signal(SIGINT, SIG_IGN);
        signal(SIGTERM, SIG_DFL);
        sigset_t stops; /* main.c blocked these until its loop is ready */
        sigemptyset(&stops);
        sigaddset(&stops, SIGTERM);
        sigprocmask(SIG_UNBLOCK, &stops, NULL);
        signal(SIGPIPE, SIG_IGN);
        rsgLogSetName("rsghost-heart");
        _exit(runHeart(cfg, sv[1]));
    }
    close(sv[1]);
    *lifeline = sv[0];
    return pid;
}
