/* metrics.c - see metrics.h. */
#include "metrics.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* Sink runs and read-to-ack times both span a millisecond (a sink that
 * does nothing) to a minute (a sink retried through an outage). */
static const double bounds[RSG_METRICS_BUCKETS] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};

static const char *const reasons[RSG_FLUSH_REASONS] = {"size", "timeout", "end_of_read", "stop"};

int rsgMetricsInit(rsgMetrics *m, int nsinks, int nstreams, char *const *streams) {
    memset(m, 0, sizeof(*m));
    if (nsinks > 0 && !(m->sinks = calloc((size_t)nsinks, sizeof(*m->sinks)))) return -1;
    m->nsinks = nsinks;
    if (nstreams > 0) {
        if (!(m->streams = calloc((size_t)nstreams, sizeof(*m->streams)))) {
            rsgMetricsFree(m);
            return -1;
        }
        for (int i = 0; i < nstreams; i++)
            m->streams[i].name = streams[i];
        m->nstreams = nstreams;
    }
    m->heartbeat_age = -1;
    return 0;
}

void rsgMetricsFree(rsgMetrics *m) {
    free(m->sinks);
    free(m->streams);
    m->sinks = NULL;
    m->streams = NULL;
    m->nsinks = m->nstreams = 0;
}

void rsgHistogramObserveN(rsgHistogram *h, double v, uint64_t n) {
    int i = 0;
    while (i < RSG_METRICS_BUCKETS && v > bounds[i])
        i++;
    h->counts[i] += n;
    h->sum += v * (double)n;
    h->count += n;
}

void rsgHistogramObserve(rsgHistogram *h, double v) {
    rsgHistogramObserveN(h, v, 1);
}

int rsgMetricsFlushReason(const char *word) {
    /* pipeline.lua says "end of read"; the label has no spaces. */
    if (strcmp(word, "end of read") == 0) return RSG_FLUSH_END_OF_READ;
    for (int i = 0; i < RSG_FLUSH_REASONS; i++)
        if (strcmp(word, reasons[i]) == 0) return i;
    return -1;
}

/* ---- Text ---- */

static void put(rsgBuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(rsgBuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->len;
        int n = vsnprintf(b->p ? b->p + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->len <= (size_t)n)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

/* Appends s as a label value: backslash, double quote and newline escaped,
 * as the exposition format asks. */
static void putLabel(rsgBuf *b, const char *s) {
    for (; *s; s++) {
        if (*s == '\\')
            put(b, "\\\\");
        else if (*s == '"')
            put(b, "\\\"");
        else if (*s == '\n')
            put(b, "\\n");
        else
            put(b, "%c", *s);
    }
}

static void header(rsgBuf *b, const char *name, const char *type, const char *help) {
    put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void counter(rsgBuf *b, const char *name, const char *help, uint64_t v) {
    header(b, name, "counter", help);
    put(b, "%s %llu\n", name, (unsigned long long)v);
}

static void gauge(rsgBuf *b, const char *name, const char *help, double v) {
    header(b, name, "gauge", help);
    put(b, "%s %.17g\n", name, v);
}

/* One histogram's series; label is `key="value",` or "" (no labels). */
static void histogram(rsgBuf *b, const char *name, const char *label, const rsgHistogram *h) {
    uint64_t cum = 0;
    for (int i = 0; i < RSG_METRICS_BUCKETS; i++) {
        cum += h->counts[i];
        put(b, "%s_bucket{%sle=\"%g\"} %llu\n", name, label, bounds[i], (unsigned long long)cum);
    }
    put(b, "%s_bucket{%sle=\"+Inf\"} %llu\n", name, label, (unsigned long long)h->count);
    /* _sum and _count carry the label without the trailing comma. */
    size_t ll = strlen(label);
    int lw = ll ? (int)ll - 1 : 0;
    put(b, "%s_sum%s%.*s%s %.17g\n", name, ll ? "{" : "", lw, label, ll ? "}" : "", h->sum);
    put(b, "%s_count%s%.*s%s %llu\n", name, ll ? "{" : "", lw, label, ll ? "}" : "",
        (unsigned long long)h->count);
}

/* ---- process_* (Linux: /proc/self) ---- */

/* Seconds since the epoch at which the machine booted, or 0. */
static double bootTime(void) {
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return 0;
    char line[256];
    double t = 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "btime %lf", &t) == 1) break;
    fclose(f);
    return t;
}

static long openFds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n - 1; /* the directory stream's own descriptor */
}

/* The standard process metrics of the Prometheus client libraries, from
 * /proc/self/stat: fields 14-15 (utime, stime), 22 (starttime), 23 (vsize),
 * 24 (rss), counted after the ")" that ends the command name. */
static void processMetrics(rsgBuf *b) {
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f) return;
    char buf[1024];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p) return;
    unsigned long long utime, stime, start, vsize;
    long long rss;
    /* After ")": state (3), then fields 4..13 skipped, 14 utime ... */
    if (sscanf(p + 1,
               " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d "
               "%llu %llu %lld",
               &utime, &stime, &start, &vsize, &rss) != 5)
        return;
    double tick = (double)sysconf(_SC_CLK_TCK);
    long page = sysconf(_SC_PAGESIZE);
    if (tick <= 0) tick = 100;
    header(b, "process_cpu_seconds_total", "counter",
           "Total user and system CPU time spent in seconds.");
    put(b, "process_cpu_seconds_total %.17g\n", (double)(utime + stime) / tick);
    gauge(b, "process_resident_memory_bytes", "Resident memory size in bytes.",
          (double)rss * (double)page);
    gauge(b, "process_virtual_memory_bytes", "Virtual memory size in bytes.", (double)vsize);
    double boot = bootTime();
    if (boot > 0)
        gauge(b, "process_start_time_seconds",
              "Start time of the process since unix epoch in seconds.",
              boot + (double)start / tick);
    long fds = openFds();
    if (fds >= 0) gauge(b, "process_open_fds", "Number of open file descriptors.", (double)fds);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        gauge(b, "process_max_fds", "Maximum number of open file descriptors.",
              (double)rl.rlim_cur);
}

int rsgMetricsRender(const rsgMetrics *m, rsgBuf *b) {
    counter(b, "rsghost_messages_read_total",
            "Messages handed to the pipeline (read, replayed or claimed).", m->read);
    counter(
        b, "rsghost_messages_acked_total",
        "Messages whose XACK Redis confirmed (consumer groups; dead letters are counted apart).",
        m->acked);
    counter(b, "rsghost_messages_dropped_total", "Messages preprocess returned nil for.",
            m->dropped);
    counter(b, "rsghost_messages_failed_total", "Messages preprocess raised an error on.",
            m->failed);
    counter(b, "rsghost_messages_dead_lettered_total",
            "Messages sent to the dead-letter stream (source.dead_letter).", m->dead_lettered);
    counter(b, "rsghost_messages_claimed_total", "Messages claimed from dead consumers.",
            m->claimed);
    gauge(b, "rsghost_messages_in_flight", "Messages in the pipeline, not yet acked or dropped.",
          (double)m->in_flight);
    counter(b, "rsghost_redis_reconnects_total", "Redis connections remade after a loss.",
            m->reconnects);

    header(b, "rsghost_batches_flushed_total", "counter", "Batches closed, by why they closed.");
    for (int i = 0; i < RSG_FLUSH_REASONS; i++)
        put(b, "rsghost_batches_flushed_total{reason=\"%s\"} %llu\n", reasons[i],
            (unsigned long long)m->flushed[i]);

    if (m->nsinks > 0) {
        header(b, "rsghost_sink_calls_total", "counter",
               "Runs of each sink on a batch, retries included.");
        for (int i = 0; i < m->nsinks; i++)
            put(b, "rsghost_sink_calls_total{sink=\"%d\"} %llu\n", i + 1,
                (unsigned long long)m->sinks[i].calls);
        header(b, "rsghost_sink_errors_total", "counter", "Runs of each sink that raised.");
        for (int i = 0; i < m->nsinks; i++)
            put(b, "rsghost_sink_errors_total{sink=\"%d\"} %llu\n", i + 1,
                (unsigned long long)m->sinks[i].errors);
        header(b, "rsghost_sink_duration_seconds", "histogram",
               "Time of each sink run on a batch, in seconds.");
        for (int i = 0; i < m->nsinks; i++) {
            char label[32];
            snprintf(label, sizeof(label), "sink=\"%d\",", i + 1);
            histogram(b, "rsghost_sink_duration_seconds", label, &m->sinks[i].duration);
        }
    }
    header(b, "rsghost_read_to_ack_seconds", "histogram",
           "Time from reading a batch's first message to acknowledging the batch, in seconds.");
    histogram(b, "rsghost_read_to_ack_seconds", "", &m->ack_latency);

    if (m->heartbeat_age >= 0)
        gauge(b, "rsghost_heartbeat_age_seconds",
              "Seconds since this consumer's own heartbeat was last heard on its channel.",
              m->heartbeat_age);

    int known = 0, lag = 0;
    for (int i = 0; i < m->nstreams; i++) {
        known += m->streams[i].known;
        lag += m->streams[i].known && m->streams[i].lag_known;
    }
    if (lag) {
        header(b, "rsghost_group_lag", "gauge",
               "Entries of the stream not yet delivered to the group (XINFO GROUPS).");
        for (int i = 0; i < m->nstreams; i++) {
            const rsgStreamMetrics *s = &m->streams[i];
            if (!s->known || !s->lag_known) continue;
            put(b, "rsghost_group_lag{stream=\"");
            putLabel(b, s->name);
            put(b, "\"} %lld\n", s->lag);
        }
    }
    if (known) {
        header(b, "rsghost_group_pending", "gauge",
               "Entries delivered to the group and not yet acknowledged (XINFO GROUPS).");
        for (int i = 0; i < m->nstreams; i++) {
            const rsgStreamMetrics *s = &m->streams[i];
            if (!s->known) continue;
            put(b, "rsghost_group_pending{stream=\"");
            putLabel(b, s->name);
            put(b, "\"} %lld\n", s->pending);
        }
    }
    processMetrics(b);
    return b->oom ? -1 : 0;
}

void rsgBufFree(rsgBuf *b) {
    free(b->p);
    memset(b, 0, sizeof(*b));
}
