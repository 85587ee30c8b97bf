/* app.c - see app.h. */
#include "app.h"

#include <errno.h>
#include <stddef.h>
#include <signal.h>
#include <sys/wait.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ack.h"
#include "arena.h"
#include "claim.h"
#include "conn.h"
#include "file_out.h"
#include "heart.h"
#include "http_client.h"
#include "log.h"
#include "lua_bridge.h"
#include "metrics.h"
#include "monitor.h"
#include "notify.h"
#include "paths.h"
#include "pg.h"
#include "redrive.h"
#include "sentinel.h"
#include "source.h"
#include "status.h"
#include "tls.h"
#include "url.h"

typedef struct rsgApp {
    uv_loop_t loop;
    const rsgOptions *opts;
    rsgRedisUrl url;           /* parsed --redis */
    const char *consumer;      /* our consumer name */
    rsgLua lua;                /* the Lua state and pipeline */
    rsgSourceConfig src;       /* the script's source settings */
    const rsgSourceType *type; /* the source's kind: its name and rules */
    rsgConn reader;            /* XREADGROUP only */
    rsgConn cmds;              /* acks, claims, the script's commands */
    rsgReplyArena arena;       /* the reader's replies (arena.h) */
    rsgSource source;          /* the group reader */
    rsgAck ack;                /* acks waiting for confirmation */
    rsgHostOps ops;            /* what Lua may ask of us */
    rsgHttpClient http;        /* the sinks' HTTP requests (rsghost.http) */
    rsgPg pg;                  /* the sinks' PostgreSQL connections (rsghost.pg) */
    uv_timer_t timer;          /* the pipeline's batch/retry timer */
    uv_signal_t sigint, sigterm;
    uv_signal_t sighup;    /* reopen the file sinks' files (log rotation) */
    rsgFiles files;        /* the file sinks' files (file_out.h) */
    uv_timer_t stop_timer; /* --stop-timeout: started by the first stop */
    rsgNotify notify;      /* systemd's READY/STATUS/STOPPING/WATCHDOG */
    int reading;           /* reading started once (READY=1 was sent) */
    rsgClaim claim;        /* dead peers' messages (heartbeats on) */
    pid_t heart_pid;       /* the heart process, 0 when heartbeats are off */
    int lifeline_fd;       /* our end of the socket pair shared with it */
    uv_poll_t lifeline;    /* EOF on it: the heart died */
    char generated[256];   /* consumer name made up when none was given */
    int stopping;          /* a stop was requested */
    int finished;          /* the pipeline flushed everything after stop */
    int closing;           /* handles are being closed */
    int leaving;           /* 1: leaving the group (generated name), 2: done */
    int begun;             /* the script's init was started */
    int script_ready;      /* the script's init returned: reading may start */
    int name_owned;        /* no heart, or the heart took the consumer name (heart.h) */
    int exit_code;

    /* Sentinel URLs: tells every connection here when the master moves. */
    rsgSentinelWatch watch;

    rsgMetrics metrics; /* counted always; shown with --metrics */
    rsgMonitor monitor; /* --metrics: the HTTP endpoint (monitor.h) */
} rsgApp;

static void shutdownNow(rsgApp *app, int code);
static void unblockStops(void);
static void beginStop(rsgApp *app, int code);

/* ---- Host ops: what the Lua pipeline calls ---- */

static void onScriptReply(redisAsyncContext *ac, void *r, void *privdata) {
    rsgConn *c = ac->data;
    rsgApp *app = c->data;
    rsgLuaReply(&app->lua, (int)(intptr_t)privdata, r);
}

static int opSend(void *ud, int argc, const char **argv, const size_t *lens, int cbref) {
    rsgApp *app = ud;
    return rsgConnCommand(&app->cmds, onScriptReply, (void *)(intptr_t)cbref, argc, argv, lens);
}

static void onHttpDone(void *ud, const rsgHttpClientResult *res) {
    rsgApp *app = ((rsgApp **)ud)[0];
    int cbref = (int)(intptr_t)((void **)ud)[1];
    free(ud);
    rsgLuaHttpDone(&app->lua, cbref, res);
}

/* The callback's context: the app and the Lua callback's reference. */
static void *doneContext(rsgApp *app, int cbref) {
    void **ctx = malloc(2 * sizeof(void *));
    if (ctx) {
        ctx[0] = app;
        ctx[1] = (void *)(intptr_t)cbref;
    }
    return ctx;
}

static int opHttp(void *ud, const rsgHttpClientRequest *req, int cbref, char *err, size_t errlen) {
    rsgApp *app = ud;
    void *ctx = doneContext(app, cbref);
    if (!ctx) {
        snprintf(err, errlen, "out of memory starting an HTTP request");
        return -1;
    }
    if (rsgHttpClientStart(&app->http, req, onHttpDone, ctx, err, errlen) != 0) {
        free(ctx);
        return -1;
    }
    return 0;
}

static int opPgOpen(void *ud, const char *conninfo) {
    rsgApp *app = ud;
    return rsgPgOpen(&app->pg, conninfo);
}

static void onPgDone(void *ud, const PGresult *res, const char *err, const char *sqlstate) {
    rsgApp *app = ((rsgApp **)ud)[0];
    int cbref = (int)(intptr_t)((void **)ud)[1];
    free(ud);
    rsgLuaPgDone(&app->lua, cbref, res, err, sqlstate);
}

static int opPgQuery(void *ud, int id, const char *sql, int n, const char *const *params,
                     const int *lens, int cbref, char *err, size_t errlen) {
    rsgApp *app = ud;
    void *ctx = doneContext(app, cbref);
    if (!ctx) {
        snprintf(err, errlen, "out of memory queueing a postgresql query");
        return -1;
    }
    /* On failure done was not called: ctx is still ours. */
    if (rsgPgQuery(&app->pg, id, sql, n, params, lens, onPgDone, ctx, err, errlen) != 0) {
        free(ctx);
        return -1;
    }
    return 0;
}

static void opAck(void *ud, rsgStr stream, int n, const rsgStr *ids) {
    rsgApp *app = ud;
    rsgSourceAck(&app->source, stream, n, ids);
}

static void opAbandon(void *ud, rsgStr stream, int n, const rsgStr *ids) {
    rsgApp *app = ud;
    rsgSourceAbandon(&app->source, stream, n, ids);
}

static void opDeadLetter(void *ud, rsgStr stream, rsgStr id, long deliveries, rsgStr err) {
    rsgApp *app = ud;
    if (!app->src.dead_letter) {
        /* script.lua makes this impossible; never ack what was not kept. */
        rsgError("internal: dead-letter without source.dead_letter: message %.*s stays pending",
                 (int)id.len, id.p);
        return;
    }
    app->metrics.dead_lettered++;
    rsgSourceDeadLetter(&app->source, &app->cmds, stream, id, deliveries, err);
}

static void opRelease(void *ud, long n) {
    rsgApp *app = ud;
    rsgSourceRelease(&app->source, n);
}

static void onFileDone(void *ud, int cbref, const char *err) {
    rsgApp *app = ud;
    rsgLuaDone(&app->lua, cbref, err);
}

static int opFileAppend(void *ud, const char *path, const char *data, size_t len, int fsync,
                        int cbref) {
    rsgApp *app = ud;
    return rsgFilesAppend(&app->files, path, data, len, fsync, cbref);
}

static void onTimer(uv_timer_t *t) {
    rsgApp *app = t->data;
    if (rsgLuaTick(&app->lua) != 0) shutdownNow(app, 1);
}

static void opSetTimer(void *ud, double delay) {
    rsgApp *app = ud;
    if (delay < 0) {
        uv_timer_stop(&app->timer);
        return;
    }
    /* Round up: firing early would find nothing due and re-arm. */
    uint64_t ms = (uint64_t)(delay * 1000.0 + 0.999);
    uv_timer_start(&app->timer, onTimer, ms, 0);
}

static void opPause(void *ud, int flag) {
    rsgApp *app = ud;
    rsgSourcePause(&app->source, flag);
}

/* The reader is connected and the script's init returned: read. The first
 * time, systemd hears READY=1. */
static void startReading(rsgApp *app) {
    rsgSourceOnReady(&app->source);
    if (!app->reading) {
        app->reading = 1;
        rsgNotifyReady(&app->notify);
    }
}

/* The script's init returned: the reader may start (now, or once it is
 * connected). */
static void opReady(void *ud) {
    rsgApp *app = ud;
    app->script_ready = 1;
    if (app->reader.ready && !app->stopping && app->name_owned) startReading(app);
}

static void maybeFinish(rsgApp *app);

static void onLeft(void *ud) {
    rsgApp *app = ud;
    app->leaving = 2;
    maybeFinish(app);
}

static void maybeFinish(rsgApp *app) {
    if (!app->stopping || !app->finished || app->closing) return;
    if (!rsgAckIdle(&app->ack)) return;
    /* A clean stop under a generated name leaves the group first: the name
     * never comes back (rsgClaimLeave keeps it if anything is pending). */
    if (app->leaving == 0 && app->exit_code == 0 && !app->opts->consumer && app->heart_pid &&
        app->src.group) {
        app->leaving = 1;
        if (rsgClaimLeave(&app->claim, onLeft, app) == 0) return;
        app->leaving = 2;
    }
    if (app->leaving == 1) return;
    /* "cleanly" only for a stop that was asked for; acks counted where the
     * source has them (plain streams and lists keep none). */
    if (app->ack.acked)
        rsgInfo("stopped%s: %ld message(s) acknowledged", app->exit_code ? "" : " cleanly",
                app->ack.acked);
    else
        rsgInfo("stopped%s", app->exit_code ? "" : " cleanly");
    shutdownNow(app, app->exit_code);
}

static void opFinished(void *ud, long unsunk) {
    rsgApp *app = ud;
    app->finished = 1;
    /* The pipeline logged what it gave up on; the exit status says it too. */
    if (unsunk > 0) app->exit_code = 1;
    if (!rsgAckIdle(&app->ack))
        rsgInfo("waiting for redis to confirm %ld ack command(s)", rsgAckPending(&app->ack));
    maybeFinish(app);
}

static void onAckIdle(void *ud) {
    rsgApp *app = ud;
    rsgSourceAckIdle(&app->source);
    maybeFinish(app);
}

/* ---- Source hooks ---- */

static int srcDeliver(void *ud, const rsgMsg *msgs, int n, const long *deliveries) {
    rsgApp *app = ud;
    app->metrics.read += (uint64_t)n;
    return rsgLuaFeed(&app->lua, msgs, n, deliveries);
}

static void srcFatal(void *ud, const char *reason) {
    rsgApp *app = ud;
    rsgError("%s", reason);
    shutdownNow(app, 1);
}

/* ---- Connections ---- */

static void onReaderReady(rsgConn *c) {
    rsgApp *app = c->data;
    if (c->moved) rsgSourceRewind(&app->source);
    if (!app->stopping && app->script_ready && app->name_owned) startReading(app);
}

static void onCmdsReady(rsgConn *c) {
    rsgApp *app = c->data;
    rsgAckResume(&app->ack);
    /* The script's init may need Redis: it runs once the command
     * connection is first up, and nothing is read before it returned. */
    if (!app->begun && !app->stopping) {
        app->begun = 1;
        if (rsgLuaBegin(&app->lua) != 0) shutdownNow(app, 1);
    }
}

/* A failover moved the master: every connection of this process goes there
 * (the heart process watches for itself). Reconnecting replays our pending
 * entries and resends the acks whose replies were lost. */
static void onMasterMoved(void *ud, const char *host, int port) {
    rsgApp *app = ud;
    rsgConnMasterMoved(&app->reader, host, port);
    rsgConnMasterMoved(&app->cmds, host, port);
    if (app->claim.loop) rsgConnMasterMoved(&app->claim.sub, host, port);
}

static void onConnFatal(rsgConn *c, const char *reason) {
    rsgApp *app = c->data;
    rsgError("%s", reason);
    shutdownNow(app, 1);
}

/* ---- Signals and shutdown ---- */

static void onSignal(uv_signal_t *h, int signum) {
    rsgApp *app = h->data;
    if (app->stopping) {
        rsgWarn("second %s: exiting now; unacknowledged messages stay pending in redis",
                strsignal(signum));
        /* Nothing to save: Redis holds every unacknowledged message. */
        _exit(128 + signum);
    }
    rsgInfo("%s: stopping; flushing the partial batch (send it again to exit at once)",
            strsignal(signum));
    beginStop(app, 0);
}

/* SIGHUP, as logrotate's postrotate sends it: every file a file sink writes
 * is reopened before its next append. Only state changes here. */
static void onHangup(uv_signal_t *h, int signum) {
    rsgApp *app = h->data;
    (void)signum;
    rsgInfo("SIGHUP: files are reopened before their next write");
    rsgFilesReopen(&app->files);
}

/* The heart holds our consumer name: reading and claiming may start. Before,
 * another live process may be using the name, and reading with it would
 * take that process's pending entries (heart.h). */
static void onNameOwned(rsgApp *app) {
    if (app->name_owned || app->stopping) return;
    app->name_owned = 1;
    if (rsgClaimStart(&app->claim, &app->loop, &app->cmds, &app->source, &app->url,
                      app->consumer) != 0) {
        shutdownNow(app, 1);
        return;
    }
    if (app->reader.ready && app->script_ready) startReading(app);
}

static void onLifeline(uv_poll_t *p, int status, int events) {
    rsgApp *app = p->data;
    (void)events;
    char buf[16];
    ssize_t n = status < 0 ? 0 : read(app->lifeline_fd, buf, sizeof(buf));
    if (n > 0 && memchr(buf, 'N', (size_t)n)) onNameOwned(app);
    if (n > 0 || (n < 0 && errno == EAGAIN)) return;
    uv_poll_stop(p);
    int st = 0;
    char how[64] = "";
    if (waitpid(app->heart_pid, &st, 0) == app->heart_pid) {
        if (WIFSIGNALED(st))
            snprintf(how, sizeof(how), " (killed by signal %d)", WTERMSIG(st));
        else
            snprintf(how, sizeof(how), " (exit status %d)", WEXITSTATUS(st));
    }
    app->heart_pid = 0;
    if (app->stopping) {
        rsgWarn("heart process ended%s while stopping", how);
        return;
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == RSG_HEART_NAME_IN_USE) {
        rsgError("consumer name '%s' is in use by another live process (see above); stopping",
                 app->consumer);
        beginStop(app, 1);
        return;
    }
    /* Without a heart our peers will take us for dead and claim our
     * messages: stop reading, finish what is in hand, and exit non-zero. */
    rsgError("heart process died%s; heartbeats stopped, so this consumer stops", how);
    beginStop(app, 1);
}

/* --stop-timeout passed and the stop has not finished: a sink that hangs,
 * or Redis gone with acks unconfirmed. Waiting longer only ends in SIGKILL
 * from systemd or Kubernetes; exiting now says so in the log and leaves
 * what was not acknowledged where Redis keeps it. */
static void onStopTimeout(uv_timer_t *t) {
    rsgApp *app = t->data;
    const char *fate =
        app->src.group      ? "they stay pending in redis and are replayed at the next start"
        : app->src.reliable ? "they stay in the processing lists and are replayed at the next start"
        : app->src.kind == RSG_SOURCE_STREAMS
            ? "plain streams keep no pending list: a checkpoint stays before them"
            : "popped items of plain lists are lost";
    rsgError("stop timeout: not flushed after %gs (--stop-timeout); giving up with %ld message(s) "
             "in the pipeline and %ld ack command(s) unconfirmed; %s",
             app->opts->stop_timeout, app->source.in_flight, rsgAckPending(&app->ack), fate);
    shutdownNow(app, 1);
}

/* The STATUS= line systemd shows (systemctl status): a few counts. */
static void describeStatus(void *ud, char *buf, size_t len) {
    rsgApp *app = ud;
    snprintf(buf, len, "%s; %ld acked, %ld in flight%s",
             app->stopping  ? "stopping"
             : app->reading ? (app->reader.ready ? "reading" : "reconnecting")
                            : "starting",
             app->ack.acked, app->source.in_flight, app->heart_pid ? ", heartbeats on" : "");
}

/* The first stop request, from a signal or from the heart dying: stop
 * reading, flush, ack, exit with `code` (1 if it takes longer than
 * --stop-timeout). */
static void beginStop(rsgApp *app, int code) {
    if (app->stopping) return;
    app->stopping = 1;
    app->exit_code = code;
    char status[256];
    describeStatus(app, status, sizeof(status));
    rsgNotifyStopping(&app->notify, status);
    uv_timer_start(&app->stop_timer, onStopTimeout, (uint64_t)(app->opts->stop_timeout * 1000), 0);
    rsgSourceStop(&app->source);
    rsgConnClose(&app->reader);
    rsgClaimStop(&app->claim);
    if (rsgLuaStop(&app->lua) != 0) shutdownNow(app, 1);
}

static void closeHandle(uv_handle_t *h) {
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

/* Closes everything; uv_run returns when the last handle is closed. */
static void shutdownNow(rsgApp *app, int code) {
    if (app->closing) return;
    app->closing = 1;
    app->exit_code = code;
    rsgSourceStop(&app->source);
    rsgClaimStop(&app->claim);
    rsgConnClose(&app->reader);
    rsgConnClose(&app->cmds);
    rsgSentinelWatchStop(&app->watch);
    rsgMonitorClose(&app->monitor);
    rsgHttpClientClose(&app->http);
    rsgPgClose(&app->pg);
    if (app->heart_pid) closeHandle((uv_handle_t *)&app->lifeline);
    closeHandle((uv_handle_t *)&app->timer);
    closeHandle((uv_handle_t *)&app->stop_timer);
    rsgNotifyClose(&app->notify);
    closeHandle((uv_handle_t *)&app->sigint);
    closeHandle((uv_handle_t *)&app->sigterm);
    closeHandle((uv_handle_t *)&app->sighup);
}

static void walkClose(uv_handle_t *h, void *arg) {
    (void)arg;
    closeHandle(h);
}

static void unblockStops(void) {
    sigset_t stops;
    sigemptyset(&stops);
    sigaddset(&stops, SIGINT);
    sigaddset(&stops, SIGTERM);
    sigprocmask(SIG_UNBLOCK, &stops, NULL);
}

/* host-pid-random: unique across hosts, restarts and pid reuse. */
static void generateName(char *buf, size_t len) {
    char host[128] = "rsghost";
    gethostname(host, sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    unsigned char rnd[4] = {0};
    if (uv_random(NULL, NULL, rnd, sizeof(rnd), 0, NULL) != 0) {
        uint64_t t = uv_hrtime();
        memcpy(rnd, &t, sizeof(rnd));
    }
    snprintf(buf, len, "%s-%d-%02x%02x%02x%02x", host, (int)getpid(), rnd[0], rnd[1], rnd[2],
             rnd[3]);
}

static void logStart(rsgApp *app) {
    char where[256], streams[512] = "";
    rsgUrlFormat(&app->url, where, sizeof(where));
    for (int i = 0; i < app->src.nstreams; i++) {
        size_t l = strlen(streams);
        snprintf(streams + l, sizeof(streams) - l, "%s%s", i ? ", " : "", app->src.streams[i]);
    }
    if (app->src.group)
        rsgInfo("consumer '%s' of group '%s' reading %s from %s", app->consumer, app->src.group,
                streams, where);
    else
        rsgInfo("reading %ss %s from %s%s", app->type->key_type, streams, where,
                app->src.reliable ? " (reliable: through processing lists)" : "");
    if (app->heart_pid)
        rsgInfo("heartbeats every %gs on channel '%s' (heart pid %d); peers silent for %gs are "
                "claimed",
                app->src.heartbeat_interval, app->src.heartbeat_channel, (int)app->heart_pid,
                app->src.claim_timeout);
}

/* Checks the TLS options against the URL and loads their files, before
 * the heart is forked: both processes then share the settings. Returns 0, or
 * -1 with a reason in err (a usage error: nothing has touched Redis). */
static int setUpTls(rsgApp *app, char *err, size_t errlen) {
    const rsgOptions *o = app->opts;
    static const struct {
        const char *option, *env;
        size_t offset;
    } opts[] = {
        {"--tls-ca-cert", "RSGHOST_TLS_CA_CERT", offsetof(rsgOptions, tls_ca_cert)},
        {"--tls-cert", "RSGHOST_TLS_CERT", offsetof(rsgOptions, tls_cert)},
        {"--tls-key", "RSGHOST_TLS_KEY", offsetof(rsgOptions, tls_key)},
        {"--tls-server-name", "RSGHOST_TLS_SERVER_NAME", offsetof(rsgOptions, tls_server_name)},
    };
    if (!app->url.tls) {
        /* A setting that cannot take effect is an error, not silence: the
         * user believes the connection is encrypted or authenticated. */
        for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
            if (!*(const char *const *)((const char *)o + opts[i].offset)) continue;
            char where[256];
            rsgUrlFormat(&app->url, where, sizeof(where));
            snprintf(err, errlen,
                     "%s (or %s) applies only to TLS, but --redis is %s: use a rediss:// URL, or "
                     "drop the option",
                     opts[i].option, opts[i].env, where);
            return -1;
        }
        return 0;
    }
    rsgTlsConfig cfg = {o->tls_ca_cert, o->tls_cert, o->tls_key, o->tls_server_name};
    return rsgTlsInit(&cfg, err, errlen);
}

/* --check: the one line that says the script loaded, and what it reads. */
static void printCheck(const rsgApp *app) {
    char dead[512] = "";
    if (app->src.dead_letter) {
        int len = snprintf(dead, sizeof(dead), ", dead letters to '%s'", app->src.dead_letter);
        if (app->src.max_deliveries > 0 && len > 0 && (size_t)len < sizeof(dead))
            snprintf(dead + len, sizeof(dead) - (size_t)len, " after %ld deliveries",
                     app->src.max_deliveries);
    }
    printf("%s: ok (%s source%s%s, %d %s(s), max_in_flight %ld%s)\n", app->opts->script,
           app->type->name, app->src.group ? ", group " : "", app->src.group ? app->src.group : "",
           app->src.nstreams, app->type->key_type, app->src.max_in_flight, dead);
}

/* No consumer name was given: a name that changes at every start strands
 * what the last run held, unless peers claim it (heartbeats). Returns 0, or
 * -1 having said why on stderr (a usage error). */
static int checkGeneratedName(const rsgApp *app) {
    if (app->type->consumer_pending && app->src.heartbeat_interval <= 0) {
        fprintf(stderr, "rsghost: missing CONSUMER-NAME: a generated name needs "
                        "source.heartbeat_interval, so that peers can claim its messages "
                        "once it is gone\n");
        return -1;
    }
    if (app->src.reliable) {
        fprintf(stderr, "rsghost: missing CONSUMER-NAME: source.reliable keeps in-flight "
                        "items in processing lists named after the consumer, so the name "
                        "must stay the same across restarts\n");
        return -1;
    }
    if (app->type->consumer_pending)
        rsgInfo("no consumer name given: using the generated name '%s'", app->consumer);
    return 0;
}

/* Forks the heart when heartbeats are on, before the loop exists: a child
 * must not share the loop's descriptors or libuv's signal plumbing. Returns
 * 0 (also when heartbeats are off), or -1 having said why on stderr. */
static int spawnHeart(rsgApp *app) {
    char err[1024];
    if (app->src.heartbeat_interval <= 0) return 0;
    rsgHeartConfig hc = {&app->url,
                         app->src.group,
                         app->consumer,
                         app->src.heartbeat_channel,
                         app->src.heartbeat_interval,
                         app->src.claim_timeout};
    app->heart_pid = rsgHeartSpawn(&hc, &app->lifeline_fd, err, sizeof(err));
    if (app->heart_pid < 0) {
        fprintf(stderr, "rsghost: cannot start the heart process: %s\n", err);
        app->heart_pid = 0;
        return -1;
    }
    return 0;
}

/* The loop's own handles: the pipeline timer, the stop signals and, with a
 * heart, the lifeline to it. */
static void startHandles(rsgApp *app) {
    uv_timer_init(&app->loop, &app->timer);
    app->timer.data = app;
    uv_timer_init(&app->loop, &app->stop_timer);
    app->stop_timer.data = app;
    uv_signal_init(&app->loop, &app->sigint);
    uv_signal_init(&app->loop, &app->sigterm);
    app->sigint.data = app->sigterm.data = app;
    uv_signal_start(&app->sigint, onSignal, SIGINT);
    uv_signal_start(&app->sigterm, onSignal, SIGTERM);
    uv_signal_init(&app->loop, &app->sighup);
    app->sighup.data = app;
    uv_signal_start(&app->sighup, onHangup, SIGHUP);
    signal(SIGPIPE, SIG_IGN);
    char err[256];
    /* An unusable NOTIFY_SOCKET is systemd's setup, not ours to fail on:
     * the unit will say it timed out waiting for READY=1. */
    if (rsgNotifyStart(&app->notify, &app->loop, 5.0, describeStatus, app, err, sizeof(err)) != 0)
        rsgWarn("systemd notification off: %s", err);
    unblockStops(); /* main.c blocked them; one that came meanwhile is handled now */

    if (app->heart_pid > 0) {
        uv_poll_init(&app->loop, &app->lifeline, app->lifeline_fd);
        app->lifeline.data = app;
        uv_poll_start(&app->lifeline, UV_READABLE | UV_DISCONNECT, onLifeline);
    }
}

/* ---- --metrics ---- */

/* Copies what the host counts for its own use into the metrics. */
static void monitorCollect(void *ud, rsgMetrics *m) {
    rsgApp *app = ud;
    m->acked = (uint64_t)app->ack.acked;
    m->claimed = (uint64_t)app->claim.claimed;
    m->in_flight = app->source.in_flight;
    m->reconnects = app->reader.reconnects + app->cmds.reconnects;
    m->heartbeat_age = -1;
    if (app->heart_pid && app->claim.self_heard)
        m->heartbeat_age = (double)(uv_now(&app->loop) - app->claim.self_heard) / 1000.0;
}

/* /readyz: reading, on a live connection, with the group made. */
static int monitorReady(void *ud, char *why, size_t len) {
    rsgApp *app = ud;
    if (app->stopping)
        snprintf(why, len, "stopping");
    else if (!app->reader.ready)
        snprintf(why, len, "not connected to redis (%s)",
                 app->reader.was_ready ? "reconnecting" : "connecting");
    else if (!app->script_ready)
        snprintf(why, len, "waiting for the script's init");
    else if (app->source.phase == RSG_SRC_SETUP)
        snprintf(why, len, "setting up the %s", app->src.group ? "group" : "source");
    else
        return 1;
    return 0;
}

/* Serves --metrics on the loop (the socket was bound in rsgAppRun).
 * Returns 0, or -1 having said why. */
static int startMonitor(rsgApp *app) {
    char err[512];
    rsgMonitorHooks hooks = {monitorCollect, monitorReady, app};
    if (rsgMonitorStart(&app->monitor, &app->loop, &app->metrics, &app->cmds, app->src.group,
                        &hooks, err, sizeof(err)) != 0) {
        rsgError("%s", err);
        return -1;
    }
    rsgInfo("metrics on http://%s/metrics (and /livez, /readyz)", rsgMonitorWhere(&app->monitor));
    return 0;
}

/* Starts the connections (and the Sentinel watch, and claiming with a
 * heart); everything else follows from their callbacks. */
static void startConnections(rsgApp *app) {
    app->reader.data = app->cmds.data = app;
    app->reader.arena = &app->arena;
    app->reader.on_ready = onReaderReady;
    app->cmds.on_ready = onCmdsReady;
    app->reader.on_fatal = app->cmds.on_fatal = onConnFatal;
    if (app->url.nsentinels)
        rsgSentinelWatchStart(&app->watch, &app->loop, &app->url, onMasterMoved, app);
    rsgConnStart(&app->cmds, &app->loop, &app->url, "commands");
    rsgConnStart(&app->reader, &app->loop, &app->url, "reader");
    /* With a heart, reading and claiming wait for the name (onNameOwned). */
    app->name_owned = app->heart_pid <= 0;
}

/* Runs the loop until every handle is closed, then frees what lived on it.
 * Returns the exit status the run decided. */
static int runLoop(rsgApp *app) {
    uv_run(&app->loop, UV_RUN_DEFAULT);
    /* Backstop: anything still open is closed and the loop drained, so
     * uv_loop_close succeeds (libuv's own tests insist on this). */
    uv_walk(&app->loop, walkClose, NULL);
    uv_run(&app->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&app->loop) != 0) rsgWarn("event loop closed with handles still open");
    rsgSourceFree(&app->source);
    rsgAckFree(&app->ack);
    rsgArenaFree(&app->arena);
    rsgClaimFree(&app->claim);
    rsgFilesFree(&app->files);
    return app->exit_code;
}

int rsgAppRun(const rsgOptions *opts) {
    rsgApp app;
    char err[1024], luadir[4096];
    memset(&app, 0, sizeof(app));
    app.opts = opts;
    int code = 2;

    if (rsgUrlParse(opts->redis_url, &app.url, err, sizeof(err)) != 0) {
        fprintf(stderr, "rsghost: %s\n", err);
        return 2;
    }
    if (setUpTls(&app, err, sizeof(err)) != 0) {
        fprintf(stderr, "rsghost: %s\n", err);
        rsgUrlFree(&app.url);
        return 2;
    }
    if (rsgFindLuaDir(luadir, sizeof(luadir), err, sizeof(err)) != 0 ||
        rsgLuaInit(&app.lua, luadir, err, sizeof(err)) != 0) {
        fprintf(stderr, "rsghost: %s\n", err);
        goto out;
    }
    /* A generated name is made before loading: scripts see rsghost.consumer. */
    app.consumer = opts->consumer;
    if (!app.consumer) {
        generateName(app.generated, sizeof(app.generated));
        app.consumer = app.generated;
    }
    if (rsgLuaLoadScript(&app.lua, opts->script, app.consumer, &app.src, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        goto out;
    }
    app.type = rsgSourceTypeOf(app.src.kind);
    if (app.url.cluster) {
        /* redis+cluster:// (cluster.h, source_cluster.c): what it cannot do
         * yet is refused here rather than done wrong. */
        app.src.cluster = 1;
        if (rsgSourceClusterCheck(&app.src, app.consumer, err, sizeof(err)) != 0) {
            fprintf(stderr, "%s: %s\n", opts->script, err);
            goto out;
        }
    }
    if (opts->command != RSG_CMD_RUN) {
        /* dead-letters, redrive, status: the script loaded and checked as for a run;
         * what it says about its source is all they need. */
        code = opts->command == RSG_CMD_STATUS ? rsgStatusMain(opts, &app.url, &app.src)
                                               : rsgRedriveMain(opts, &app.url, &app.src);
        goto out;
    }
    if (opts->check) {
        printCheck(&app);
        code = 0;
        goto out;
    }
    /* Structured log records name the consumer and group (the heart's too). */
    rsgLogSetContext(app.consumer, app.src.group);
    if (!opts->consumer && checkGeneratedName(&app) != 0) goto out;
    if (spawnHeart(&app) != 0) goto out;

    code = 1;
    /* Counted always (plain integers); the group's streams only have lag. */
    if (rsgMetricsInit(&app.metrics, rsgLuaSinkCount(&app.lua),
                       app.src.group ? app.src.nstreams : 0, app.src.streams) != 0) {
        fprintf(stderr, "rsghost: out of memory\n");
        goto out;
    }
    /* Bound before the loop and before any connection: a port in use
     * stops the start before anything is read. */
    if (opts->metrics && rsgMonitorListen(&app.monitor, opts->metrics, err, sizeof(err)) != 0) {
        fprintf(stderr, "rsghost: %s\n", err);
        goto out;
    }
    if (uv_loop_init(&app.loop) != 0) {
        fprintf(stderr, "rsghost: cannot create the event loop\n");
        goto out;
    }
    /* The pipeline counts its own events only for --metrics. */
    app.ops =
        (rsgHostOps){&app,         opSend,     opAck,        opAbandon,
                     opDeadLetter, opRelease,  opSetTimer,   opPause,
                     opReady,      opFinished, opFileAppend, opts->metrics ? &app.metrics : NULL,
                     opHttp,       opPgOpen,   opPgQuery};
    rsgFilesInit(&app.files, &app.loop, onFileDone, &app);
    rsgHttpClientInit(&app.http, &app.loop);
    rsgPgInit(&app.pg, &app.loop);
    rsgSourceHooks hooks = {srcDeliver, srcFatal, app.src.dead_letter ? opDeadLetter : NULL, &app};
    if (rsgSourceInit(&app.source, &app.reader, &app.ack, &app.src, app.consumer, &hooks, err,
                      sizeof(err)) != 0 ||
        rsgLuaStart(&app.lua, &app.ops, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s: %s\n", opts->script, err);
        code = 2;
        rsgSourceFree(&app.source); /* nothing on the loop yet */
        uv_loop_close(&app.loop);
        goto out;
    }
    rsgAckInit(&app.ack, &app.cmds);
    app.ack.on_idle = onAckIdle;
    app.ack.ud = &app;

    if (opts->metrics && startMonitor(&app) != 0) {
        rsgSourceFree(&app.source); /* nothing else on the loop yet */
        uv_loop_close(&app.loop);
        goto out;
    }
    startHandles(&app);
    logStart(&app);
    startConnections(&app);

    code = runLoop(&app);
out:
    if (app.heart_pid > 0) {
        /* Closing our end tells the heart to stop; reap it. */
        close(app.lifeline_fd);
        waitpid(app.heart_pid, NULL, 0);
    }
    rsgMonitorFree(&app.monitor); /* the socket, when the loop never ran */
    rsgMetricsFree(&app.metrics);
    rsgLuaClose(&app.lua);
    rsgSourceConfigFree(&app.src);
    rsgUrlFree(&app.url);
    return code;
}
