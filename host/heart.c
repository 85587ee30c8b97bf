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
    uv_timer_t retry;   /* the next try to take the name while another holds it */
    char *alive_key;
    char *registry_key;
    char *owner_key;    /* rsghost:owner:<group>:<consumer>, holding owner */
    char owner[320];    /* "host:pid:nonce" of this process */
    char ttl_ms[24];    /* the liveness key's TTL: claim_timeout */
    char owner_ms[24];  /* the owner key's TTL: two heartbeat intervals */
    int fd;             /* our end of the socket pair: 'N' tells main the name is ours */
    int owned;          /* the owner key holds our value: beats may go out */
    int asking;         /* an ownership script is in flight */
    unsigned long seq;  /* beats so far: the owner key's value changes at each */
    char held[400];     /* the owner key's value when another held it, "" none */
    uint64_t last_seen; /* uv_now of the last own heartbeat heard */
    int stopped;        /* stop() ran: everything is closing */
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

char *rsgHeartOwnerKey(const char *group, const char *consumer) {
    size_t n = strlen(group) + strlen(consumer) + 32;
    char *k = malloc(n);
    if (k) snprintf(k, n, "rsghost:owner:%s:%s", group, consumer);
    return k;
}

char *rsgHeartRegistryKey(const char *group) {
    size_t n = strlen(group) + 32;
    char *k = malloc(n);
    if (k) snprintf(k, n, "rsghost:consumers:%s", group);
    return k;
}

static void stop(rsgHeart *h, int code) {
    if (h->stopped) return; /* closing the connections calls back with NULL */
    h->stopped = 1;
    h->exit_code = code;
    rsgConnClose(&h->pub);
    rsgConnClose(&h->sub);
    rsgSentinelWatchStop(&h->watch);
    if (!uv_is_closing((uv_handle_t *)&h->beat)) uv_close((uv_handle_t *)&h->beat, NULL);
    if (!uv_is_closing((uv_handle_t *)&h->retry)) uv_close((uv_handle_t *)&h->retry, NULL);
    if (!uv_is_closing((uv_handle_t *)&h->lifeline)) uv_close((uv_handle_t *)&h->lifeline, NULL);
}

static void ignoreReply(redisAsyncContext *ac, void *r, void *privdata) {
    (void)ac, (void)privdata;
    redisReply *reply = r;
    if (reply && reply->type == REDIS_REPLY_ERROR)
        rsgWarn("heartbeat command failed: %s", reply->str);
}

/* Takes or keeps the consumer name, atomically: the owner key is set to
 * "<our value>:<beat number>" if it is free (never set, or expired: its
 * owner died) or already ours, and its TTL renewed. Returns 1, or { the
 * other owner's value, its PTTL }. The beat number makes a live owner's
 * value change at every renewal: seeing it change proves the owner alive
 * with no timing involved. KEYS[1] owner key; ARGV: our value, TTL ms, beat. */
static const char *ownScript = "local v = redis.call('GET', KEYS[1])\n"
                               "local me = ARGV[1] .. ':'\n"
                               "if v == false or string.sub(v, 1, #me) == me then\n"
                               "  redis.call('SET', KEYS[1], me .. ARGV[3], 'PX', ARGV[2])\n"
                               "  return 1\n"
                               "end\n"
                               "return {v, redis.call('PTTL', KEYS[1])}\n";

static void beat(rsgHeart *h);
static void askOwnership(rsgHeart *h);

/* "host:pid:nonce" as a reader wants it: "pid P on host H". */
static void describeOwner(const char *v, size_t len, char *out, size_t outlen) {
    const char *c1 = memchr(v, ':', len);
    const char *c2 = c1 ? memchr(c1 + 1, ':', len - (size_t)(c1 + 1 - v)) : NULL;
    if (!c2)
        snprintf(out, outlen, "'%.*s'", (int)len, v);
    else
        snprintf(out, outlen, "pid %.*s on host %.*s", (int)(c2 - c1 - 1), c1 + 1, (int)(c1 - v),
                 v);
}

static void onRetry(uv_timer_t *t) {
    askOwnership(t->data);
}

static void onOwnership(redisAsyncContext *ac, void *r, void *privdata) {
    (void)ac;
    rsgHeart *h = privdata;
    redisReply *reply = r;
    h->asking = 0;
    if (!reply || h->stopped) return; /* lost: asked again when reconnected */
    if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 1) {
        if (h->owned) return;
        h->owned = 1;
        h->held[0] = '\0';
        h->last_seen = uv_now(&h->loop); /* the watchdog counts from now */
        /* Main reads nothing before this byte: the name is ours alone. */
        if (write(h->fd, "N", 1) != 1)
            rsgWarn("heart: cannot tell the main process: %s", strerror(errno));
        beat(h);
        const char *reg[] = {"HSET", h->registry_key, h->cfg->consumer, "1"};
        rsgConnCommand(&h->pub, ignoreReply, NULL, 4, reg, NULL);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_INTEGER) {
        rsgWarn("heart: taking the consumer name failed: %s",
                reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
        uv_timer_start(&h->retry, onRetry, (uint64_t)(h->cfg->interval * 1000.0 + 0.5), 0);
        return;
    }
    char who[400];
    const redisReply *v = reply->element[0];
    describeOwner(v->str, v->len, who, sizeof(who));
    long long pttl = reply->element[1]->integer;
    /* Alive: its key was renewed since we last looked (its value changed),
     * so its heart beats. Dead (kill -9): the key runs out within two of its
     * heartbeat intervals, and we take it. */
    int renewed = h->held[0] && (strlen(h->held) != v->len || memcmp(h->held, v->str, v->len));
    if (h->owned || renewed) {
        rsgError("consumer name '%s' of group '%s' is in use by a live process: %s (its heart "
                 "keeps the key %s). Two processes with one name share one pending list and "
                 "do the same work twice: give each process its own name, or leave "
                 "CONSUMER-NAME out to generate one",
                 h->cfg->consumer, h->cfg->group, who, h->owner_key);
        stop(h, RSG_HEART_NAME_IN_USE);
        return;
    }
    if (!h->held[0])
        rsgInfo("consumer name '%s' is held by %s: waiting up to %.1fs for its key to run out "
                "(a process killed without a clean stop) or to see it renewed (a live one)",
                h->cfg->consumer, who, (double)(pttl > 0 ? pttl : 0) / 1000.0);
    snprintf(h->held, sizeof(h->held), "%.*s", (int)v->len, v->str);
    /* Look again when it runs out, or at the latest after half our own
     * interval: a live owner renews it within one of its intervals. */
    uint64_t wait = pttl > 0 ? (uint64_t)pttl + 1 : 1;
    uint64_t half = (uint64_t)(h->cfg->interval * 500.0) + 1;
    uv_timer_start(&h->retry, onRetry, wait < half ? wait : half, 0);
}

static void askOwnership(rsgHeart *h) {
    if (!h->pub.ready || h->asking || h->stopped) return;
    char seq[24];
    snprintf(seq, sizeof(seq), "%lu", ++h->seq);
    const char *argv[] = {"EVAL", ownScript, "1", h->owner_key, h->owner, h->owner_ms, seq};
    if (rsgConnCommand(&h->pub, onOwnership, h, 7, argv, NULL) == 0) h->asking = 1;
}

static void beat(rsgHeart *h) {
    if (!h->pub.ready || !h->owned) return;
    const rsgHeartConfig *cfg = h->cfg;
    char now[24];
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    snprintf(now, sizeof(now), "%lld", (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000);
    const char *pub[] = {"PUBLISH", cfg->channel, cfg->consumer};
    const char *set[] = {"SET", h->alive_key, now, "PX", h->ttl_ms};
    askOwnership(h); /* renews the name; finding it taken stops us */
    rsgConnCommand(&h->pub, ignoreReply, NULL, 5, set, NULL);
    rsgConnCommand(&h->pub, ignoreReply, NULL, 3, pub, NULL);
}

static void onBeat(uv_timer_t *t) {
    rsgHeart *h = t->data;
    if (!h->owned) return; /* still waiting for the name: nothing to watch */
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
    h->asking = 0; /* a script lost with the old connection */
    if (!h->owned) {
        askOwnership(h); /* beats and the registry follow once the name is ours */
        return;
    }
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

/* Frees the name if it is still ours. KEYS[1] owner key; ARGV[1] our value. */
static const char *releaseScript = "local me = ARGV[1] .. ':'\n"
                                   "local v = redis.call('GET', KEYS[1])\n"
                                   "if v and string.sub(v, 1, #me) == me then\n"
                                   "  return redis.call('DEL', KEYS[1])\n"
                                   "end\n"
                                   "return 0\n";

static void onReleased(redisAsyncContext *ac, void *r, void *privdata) {
    (void)ac, (void)r;
    stop(privdata, 0);
}

static void onReleaseTimeout(uv_timer_t *t) {
    stop(t->data, 0);
}

static void onLifeline(uv_poll_t *p, int status, int events) {
    rsgHeart *h = p->data;
    (void)events;
    char buf[16];
    uv_os_fd_t fd = -1;
    ssize_t n =
        status < 0 || uv_fileno((uv_handle_t *)p, &fd) != 0 ? 0 : read(fd, buf, sizeof(buf));
    if (n > 0 || (n < 0 && errno == EAGAIN)) return;
    /* The main process is gone: so is the consumer we beat for. Its name is
     * free at once, so that a planned restart need not wait for the owner
     * key to run out; Redis gets a second to say so (main waits for us). */
    rsgDebug("main process gone; heart stopping");
    uv_poll_stop(p);
    uv_timer_stop(&h->beat);
    uv_timer_stop(&h->retry);
    const char *argv[] = {"EVAL", releaseScript, "1", h->owner_key, h->owner};
    if (!h->owned || rsgConnCommand(&h->pub, onReleased, h, 5, argv, NULL) != 0) {
        stop(h, 0);
        return;
    }
    uv_timer_start(&h->retry, onReleaseTimeout, 1000, 0);
}

static int runHeart(const rsgHeartConfig *cfg, int fd) {
    rsgHeart h;
    memset(&h, 0, sizeof(h));
    h.cfg = cfg;
    h.alive_key = rsgHeartAliveKey(cfg->group, cfg->consumer);
    h.registry_key = rsgHeartRegistryKey(cfg->group);
    h.owner_key = rsgHeartOwnerKey(cfg->group, cfg->consumer);
    h.fd = fd;
    snprintf(h.ttl_ms, sizeof(h.ttl_ms), "%lld", (long long)(cfg->claim_timeout * 1000.0 + 0.5));
    long long owner_ms = (long long)(cfg->interval * 2000.0 + 0.5);
    snprintf(h.owner_ms, sizeof(h.owner_ms), "%lld", owner_ms > 0 ? owner_ms : 1);
    char host[256] = "unknown";
    gethostname(host, sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    unsigned char rnd[4] = {0};
    if (uv_random(NULL, NULL, rnd, sizeof(rnd), 0, NULL) != 0) {
        uint64_t t = uv_hrtime();
        memcpy(rnd, &t, sizeof(rnd));
    }
    /* The main process's pid: the one in its log lines and in ps. */
    snprintf(h.owner, sizeof(h.owner), "%s:%d:%02x%02x%02x%02x", host, (int)getppid(), rnd[0],
             rnd[1], rnd[2], rnd[3]);
    /* Without these the heart cannot beat: exit at once, and the main
     * process, which sees the lifeline close, stops with it. */
    if (!h.alive_key || !h.registry_key || !h.owner_key || uv_loop_init(&h.loop) != 0) {
        rsgError("heart: out of memory or no event loop; stopping");
        free(h.alive_key);
        free(h.registry_key);
        free(h.owner_key);
        return 1;
    }
    h.last_seen = uv_now(&h.loop); /* connecting gets the same grace as silence */
    uv_timer_init(&h.loop, &h.beat);
    h.beat.data = &h;
    uint64_t every = (uint64_t)(cfg->interval * 1000.0 + 0.5);
    if (every == 0) every = 1;
    uv_timer_start(&h.beat, onBeat, every, every);
    uv_timer_init(&h.loop, &h.retry);
    h.retry.data = &h;
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
    free(h.owner_key);
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
