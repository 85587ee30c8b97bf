/* metrics.h - the numbers /metrics shows, and their Prometheus text form.
 *
 * One rsgMetrics per process holds every counter. The rest of the host adds
 * to plain integers here (no locks: everything runs on the one loop thread;
 * no allocation: the per-sink and per-stream arrays are made once, at
 * start). Counts the host keeps anyway for its own use (acks confirmed,
 * messages claimed, messages in flight) are copied in just before a scrape
 * rather than counted twice.
 *
 * Histograms have fixed buckets (RSG_METRICS_BUCKETS), so observing one
 * value is a short scan of a constant array. Lua-side events (preprocess
 * drops and failures, batches flushed, sink runs, acked batches) come
 * through lua_bridge.c once per read or per batch, never per message.
 *
 * Names follow Prometheus' conventions: prefix rsghost_, base units
 * (seconds, bytes), _total on counters, labels only of bounded cardinality
 * (stream, sink index, reason). */
#ifndef RSG_METRICS_H
#define RSG_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* Upper bounds of the histogram buckets, in seconds (+Inf is implied). */
#define RSG_METRICS_BUCKETS 15

typedef struct rsgHistogram {
    uint64_t counts[RSG_METRICS_BUCKETS + 1]; /* per bucket, not cumulative; last = +Inf */
    double sum;                               /* of the values observed */
    uint64_t count;                           /* values observed */
} rsgHistogram;

/* Why the pipeline closed a batch (pipeline.lua's enqueue reasons). */
typedef enum {
    RSG_FLUSH_SIZE,
    RSG_FLUSH_TIMEOUT,
    RSG_FLUSH_END_OF_READ, /* batch.timeout = 0: each read goes out together */
    RSG_FLUSH_STOP,
    RSG_FLUSH_REASONS
} rsgFlushReason;

/* One sink of the script (label sink="1", "2", ... as in the logs). */
typedef struct rsgSinkMetrics {
    uint64_t calls;        /* runs of the sink on a batch (retries included) */
    uint64_t errors;       /* runs that raised */
    rsgHistogram duration; /* seconds per run, from start to return or raise */
} rsgSinkMetrics;

/* One stream of the group, from XINFO GROUPS (monitor.c refreshes it). */
typedef struct rsgStreamMetrics {
    const char *name;  /* the stream; owned by the source config */
    int known;         /* the group was found on it at the last refresh */
    int lag_known;     /* Redis reported a lag (it may not: Redis < 7, or a deleted entry) */
    long long lag;     /* entries not yet delivered to the group */
    long long pending; /* delivered to the group, not yet acknowledged */
} rsgStreamMetrics;

typedef struct rsgMetrics {
    /* Counted by the host as things happen. */
    uint64_t read;                       /* messages handed to the pipeline */
    uint64_t dropped;                    /* preprocess returned nil */
    uint64_t failed;                     /* preprocess raised */
    uint64_t dead_lettered;              /* sent to source.dead_letter */
    uint64_t flushed[RSG_FLUSH_REASONS]; /* batches closed, by reason */
    rsgHistogram ack_latency;            /* seconds from a batch's first read to its ack */
    rsgSinkMetrics *sinks;               /* nsinks of them */
    int nsinks;
    rsgStreamMetrics *streams; /* nstreams of them (groups only, else 0) */
    int nstreams;
    /* Copied in before each scrape (rsgMetricsRender's caller). */
    uint64_t acked;       /* acks Redis confirmed */
    uint64_t claimed;     /* messages taken over from dead consumers */
    long in_flight;       /* messages in the pipeline, not yet released */
    uint64_t reconnects;  /* connections remade after a loss */
    double heartbeat_age; /* seconds since our own heartbeat was last heard; < 0: none */
} rsgMetrics;

/* Sets m up for nsinks sinks and nstreams streams (names borrowed, not
 * copied). Returns 0, or -1 out of memory (m is then empty but safe to
 * use and free). */
int rsgMetricsInit(rsgMetrics *m, int nsinks, int nstreams, char *const *streams);

/* Frees the arrays. */
void rsgMetricsFree(rsgMetrics *m);

/* Adds one value (seconds) to h. */
void rsgHistogramObserve(rsgHistogram *h, double v);

/* Adds n values of v at once (a batch whose messages share a latency). */
void rsgHistogramObserveN(rsgHistogram *h, double v, uint64_t n);

/* The flush reason for pipeline.lua's word, or -1. */
int rsgMetricsFlushReason(const char *word);

/* A growing text buffer. */
typedef struct rsgBuf {
    char *p;
    size_t len, cap;
    int oom; /* an append failed: the text is incomplete */
} rsgBuf;

/* Appends m in the Prometheus text exposition format (version 0.0.4),
 * followed by the standard process_* metrics read from /proc/self.
 * Returns 0, or -1 out of memory (out->oom set). */
int rsgMetricsRender(const rsgMetrics *m, rsgBuf *out);

void rsgBufFree(rsgBuf *b);

#endif
