/* supervisor.c - see supervisor.h. */
#define _GNU_SOURCE
#include "supervisor.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>
#include <uv.h>

#include "log.h"

/* A worker that dies sooner than this after its start "died young": it
 * counts toward giving up, and its restart backs off. */
#define YOUNG_MS       5000
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 10000

typedef struct worker {
    struct master *m;
    int index;         /* 1..N */
    char name[256];    /* consumer name, "" for a generated one */
    char **argv;       /* its command line (rsgOptionsWorkerArgv) */
    uv_process_t proc; /* valid while running */
    uv_timer_t restart;
    int running;
    uint64_t started_ms; /* uv_now at its start */
    int quick;           /* deaths in a row that came young */
    uint64_t backoff_ms;
} worker;

typedef struct master {
    uv_loop_t *loop;
    const rsgOptions *opts;
    worker *w;
    int n;
    int stopping; /* a stop was asked (or the master gave up) */
    int failed;   /* some worker did not stop cleanly, or the master gave up */
    int usage;    /* a worker reported a usage or script error (exit 2) */
    int stops;    /* stop signals seen */
    uv_signal_t sigterm, sigint, sighup;
    char **env; /* the workers' environment */
} master;

static const char *label(const worker *w) {
    return w->name[0] ? w->name : "(generated name)";
}

static void onExit(uv_process_t *p, int64_t status, int sig);
static void died(worker *w, int64_t status, int sig);

static void startWorker(worker *w) {
    master *m = w->m;
    uv_process_options_t po;
    memset(&po, 0, sizeof(po));
    uv_stdio_container_t stdio[3] = {{.flags = UV_IGNORE},
                                     {.flags = UV_INHERIT_FD, .data.fd = 1},
                                     {.flags = UV_INHERIT_FD, .data.fd = 2}};
    po.file = w->argv[0];
    po.args = w->argv;
    po.env = m->env;
    po.exit_cb = onExit;
    po.stdio = stdio;
    po.stdio_count = 3;
    w->proc.data = w;
    int rc = uv_spawn(m->loop, &w->proc, &po);
    w->started_ms = uv_now(m->loop);
    if (rc != 0) {
        /* exec failed (the binary moved?): as good as dying young. */
        rsgError("cannot start worker %d %s: %s", w->index, label(w), uv_strerror(rc));
        uv_close((uv_handle_t *)&w->proc, NULL);
        died(w, 1, 0);
        return;
    }
    w->running = 1;
    rsgInfo("worker %d %s started (pid %d)", w->index, label(w), w->proc.pid);
}

static void onRestart(uv_timer_t *t) {
    worker *w = t->data;
    if (!w->m->stopping) startWorker(w);
}

static int anyRunning(const master *m) {
    for (int i = 0; i < m->n; i++)
        if (m->w[i].running) return 1;
    return 0;
}

static void signalAll(master *m, int sig) {
    for (int i = 0; i < m->n; i++)
        if (m->w[i].running) uv_process_kill(&m->w[i].proc, sig);
}

/* Stops every worker and, once none runs, the loop. */
static void stopAll(master *m) {
    if (!m->stopping) {
        m->stopping = 1;
        for (int i = 0; i < m->n; i++)
            uv_timer_stop(&m->w[i].restart);
    }
    signalAll(m, SIGTERM);
    if (!anyRunning(m)) uv_stop(m->loop);
}

static void onExit(uv_process_t *p, int64_t status, int sig) {
    worker *w = p->data;
    uv_close((uv_handle_t *)p, NULL);
    w->running = 0;
    died(w, status, sig);
}

/* Worker w is gone: restart it, or give up, or, stopping, count it. */
static void died(worker *w, int64_t status, int sig) {
    master *m = w->m;
    uint64_t lived = uv_now(m->loop) - w->started_ms;
    char how[64];
    if (sig)
        snprintf(how, sizeof(how), "was killed by signal %d", sig);
    else
        snprintf(how, sizeof(how), "exited with status %d", (int)status);
    if (m->stopping) {
        if (sig || status != 0) m->failed = 1;
        rsgLog(sig || status ? RSG_LOG_WARN : RSG_LOG_INFO, "worker %d %s %s", w->index, label(w),
               how);
        if (!anyRunning(m)) uv_stop(m->loop);
        return;
    }
    if (!sig && status == 2) {
        /* A usage or script error: the same command fails the same way. */
        rsgError("worker %d %s %s (a usage or script error, see above): stopping all workers",
                 w->index, label(w), how);
        m->usage = 1;
        m->failed = 1;
        stopAll(m);
        return;
    }
    if (lived < YOUNG_MS) {
        w->quick++;
        w->backoff_ms = w->backoff_ms ? w->backoff_ms * 2 : BACKOFF_MIN_MS;
        if (w->backoff_ms > BACKOFF_MAX_MS) w->backoff_ms = BACKOFF_MAX_MS;
    } else {
        w->quick = 0;
        w->backoff_ms = BACKOFF_MIN_MS;
    }
    if (w->quick >= RSG_SUPERVISE_MAX_QUICK) {
        rsgError("worker %d %s %s, its %d%s start in a row to fail within %d s: giving up, "
                 "stopping all workers",
                 w->index, label(w), how, w->quick, w->quick == 1 ? "st" : "th", YOUNG_MS / 1000);
        m->failed = 1;
        stopAll(m);
        return;
    }
    rsgWarn("worker %d %s %s after %.1f s; starting it again in %.1f s", w->index, label(w), how,
            (double)lived / 1000.0, (double)w->backoff_ms / 1000.0);
    uv_timer_start(&w->restart, onRestart, w->backoff_ms, 0);
}

static void onStopSignal(uv_signal_t *h, int sig) {
    master *m = h->data;
    m->stops++;
    if (m->stops == 1)
        rsgInfo("%s: stopping %d worker(s) (send it again to make them exit at once)",
                strsignal(sig), m->n);
    else
        rsgInfo("%s again: passing it on", strsignal(sig));
    stopAll(m);
}

static void onHangup(uv_signal_t *h, int sig) {
    (void)sig;
    signalAll(h->data, SIGHUP);
}

/* The workers' environment: ours, with the URL (never on a command line)
 * and the master's pid (rsgSupervisedInit). */
static char **workerEnv(const rsgOptions *opts) {
    extern char **environ;
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + 3, sizeof(char *));
    if (!env) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "RSGHOST_REDIS_URL=", 18) != 0 &&
            strncmp(environ[i], "RSGHOST_SUPERVISOR_PID=", 23) != 0 &&
            strncmp(environ[i], "RSGHOST_WORKERS=", 16) != 0)
            env[k++] = environ[i];
    size_t ulen = strlen(opts->redis_url) + 20;
    char *url = malloc(ulen);
    char *pid = malloc(48);
    if (!url || !pid) {
        free(url);
        free(pid);
        free(env);
        return NULL;
    }
    snprintf(url, ulen, "RSGHOST_REDIS_URL=%s", opts->redis_url);
    snprintf(pid, 48, "RSGHOST_SUPERVISOR_PID=%ld", (long)getpid());
    env[k++] = url;
    env[k++] = pid;
    return env;
}

static void freeEnv(char **env) {
    if (!env) return;
    size_t n = 0;
    while (env[n])
        n++;
    /* The last two are ours (workerEnv); the rest belong to environ. */
    if (n >= 2) {
        memset(env[n - 2], 0, strlen(env[n - 2])); /* the password */
        free(env[n - 2]);
        free(env[n - 1]);
    }
    free(env);
}

/* --metrics HOST:PORT for worker `index` (1-based): one endpoint per worker,
 * on PORT+index-1, so that a scrape job lists them all and no two workers
 * fight over one port; PORT 0 stays 0 (each worker takes a free port and
 * logs it). Rewrites argv's "--metrics=..." in place. Returns 0, or -1 with
 * the reason logged (a port past 65535, out of memory). */
static int metricsPortOf(char **argv, int index) {
    for (char **a = argv; *a; a++) {
        if (strncmp(*a, "--metrics=", 10) != 0) continue;
        const char *colon = strrchr(*a, ':');
        char *end;
        long port = colon ? strtol(colon + 1, &end, 10) : -1;
        if (!colon || *end || port <= 0) return 0; /* 0, or invalid: the worker says so */
        if (port + index - 1 > 65535) {
            rsgError("--metrics %s: worker %d would need port %ld", *a + 10, index,
                     port + index - 1);
            return -1;
        }
        size_t len = (size_t)(colon - *a) + 8;
        char *s = malloc(len);
        if (!s) return -1;
        snprintf(s, len, "%.*s:%ld", (int)(colon - *a), *a, port + index - 1);
        free(*a);
        *a = s;
        return 0;
    }
    return 0;
}

int rsgSupervise(const rsgOptions *opts, const char *exe) {
    master m;
    memset(&m, 0, sizeof(m));
    m.loop = uv_default_loop();
    m.opts = opts;
    m.n = opts->workers;
    rsgLogSetName("rsghost-master");
    char path[4096];
    /* Workers run this very binary, wherever the shell found it. */
    ssize_t len = readlink("/proc/self/exe", path, sizeof(path) - 1);
    if (len > 0)
        path[len] = '\0';
    else
        snprintf(path, sizeof(path), "%s", exe);
    m.env = workerEnv(opts);
    m.w = calloc((size_t)m.n, sizeof(worker));
    if (!m.env || !m.w) {
        rsgError("out of memory starting %d workers", m.n);
        freeEnv(m.env);
        free(m.w);
        return 1;
    }
    int rc = 0;
    for (int i = 0; i < m.n && rc == 0; i++) {
        worker *w = &m.w[i];
        w->m = &m;
        w->index = i + 1;
        if (opts->consumer) snprintf(w->name, sizeof(w->name), "%s-%d", opts->consumer, i + 1);
        w->argv = rsgOptionsWorkerArgv(opts, path, opts->consumer ? w->name : NULL);
        uv_timer_init(m.loop, &w->restart);
        w->restart.data = w;
        if (!w->argv || (opts->metrics && metricsPortOf(w->argv, w->index) != 0)) rc = 1;
    }
    if (rc == 0) {
        uv_signal_init(m.loop, &m.sigterm);
        uv_signal_init(m.loop, &m.sigint);
        uv_signal_init(m.loop, &m.sighup);
        m.sigterm.data = m.sigint.data = m.sighup.data = &m;
        uv_signal_start(&m.sigterm, onStopSignal, SIGTERM);
        uv_signal_start(&m.sigint, onStopSignal, SIGINT);
        uv_signal_start(&m.sighup, onHangup, SIGHUP);
        /* main.c blocked the stop signals until handlers were in place. */
        sigset_t stops;
        sigemptyset(&stops);
        sigaddset(&stops, SIGINT);
        sigaddset(&stops, SIGTERM);
        sigprocmask(SIG_UNBLOCK, &stops, NULL);
        rsgInfo("supervising %d worker(s) of %s%s%s", m.n, opts->script,
                opts->consumer ? " as " : " with generated names",
                opts->consumer ? opts->consumer : "");
        for (int i = 0; i < m.n; i++)
            startWorker(&m.w[i]);
        uv_run(m.loop, UV_RUN_DEFAULT);
        rc = m.usage ? 2 : m.failed ? 1 : 0;
        if (rc == 0)
            rsgInfo("every worker stopped cleanly");
        else
            rsgError("stopped: %s", m.usage   ? "a worker reported a usage or script error"
                                    : m.stops ? "some worker did not stop cleanly"
                                              : "gave up restarting a failing worker");
        uv_close((uv_handle_t *)&m.sigterm, NULL);
        uv_close((uv_handle_t *)&m.sigint, NULL);
        uv_close((uv_handle_t *)&m.sighup, NULL);
    } else {
        rsgError("out of memory starting %d workers", m.n);
    }
    for (int i = 0; i < m.n; i++) {
        if (m.w[i].m) uv_close((uv_handle_t *)&m.w[i].restart, NULL);
        rsgOptionsFreeArgv(m.w[i].argv);
    }
    uv_run(m.loop, UV_RUN_NOWAIT); /* let the closes finish */
    free(m.w);
    freeEnv(m.env);
    return rc;
}

void rsgSupervisedInit(void) {
    const char *v = getenv("RSGHOST_SUPERVISOR_PID");
    if (!v || !*v) return;
    long mpid = strtol(v, NULL, 10);
    /* SIGTERM: the clean stop, flushing the partial batch. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    /* The master may have died before the request took effect. */
    if (getppid() != (pid_t)mpid) {
        fprintf(stderr, "rsghost: the master (pid %ld) is gone: not starting\n", mpid);
        exit(1);
    }
    unsetenv("RSGHOST_SUPERVISOR_PID"); /* not inherited by the heart */
}
