/* Unit tests of metrics.c and http.c's address handling: what a scraper
 * reads (cumulative buckets, escaped labels) and what --metrics accepts. */
#include "http.h"
#include "metrics.h"
#include "test.h"

/* The line of text that starts with prefix, up to its newline, or "". */
static const char *line(const char *text, const char *prefix, char *buf, size_t len) {
    const char *p = text;
    buf[0] = '\0';
    while (p && *p) {
        if (strncmp(p, prefix, strlen(prefix)) == 0) {
            const char *e = strchr(p, '\n');
            size_t n = e ? (size_t)(e - p) : strlen(p);
            if (n >= len) n = len - 1;
            memcpy(buf, p, n);
            buf[n] = '\0';
            return buf;
        }
        p = strchr(p, '\n');
        if (p) p++;
    }
    return buf;
}

static void histogramBucketsAreCumulative(void) {
    char s0[] = "s";
    char *streams[] = {s0};
    rsgMetrics m;
    CHECK(rsgMetricsInit(&m, 2, 1, streams) == 0);
    rsgHistogramObserve(&m.sinks[1].duration, 0.0005); /* first bucket */
    rsgHistogramObserve(&m.sinks[1].duration, 0.001);  /* le is inclusive */
    rsgHistogramObserve(&m.sinks[1].duration, 0.2);
    rsgHistogramObserve(&m.sinks[1].duration, 1000); /* only +Inf */
    rsgHistogramObserveN(&m.ack_latency, 0.5, 10);
    rsgBuf b = {0};
    CHECK(rsgMetricsRender(&m, &b) == 0);
    char buf[256];
    CHECK_STR(line(b.p, "rsghost_sink_duration_seconds_bucket{sink=\"2\",le=\"0.001\"}", buf,
                   sizeof(buf)),
              "rsghost_sink_duration_seconds_bucket{sink=\"2\",le=\"0.001\"} 2");
    CHECK_STR(
        line(b.p, "rsghost_sink_duration_seconds_bucket{sink=\"2\",le=\"0.25\"}", buf, sizeof(buf)),
        "rsghost_sink_duration_seconds_bucket{sink=\"2\",le=\"0.25\"} 3");
    CHECK_STR(
        line(b.p, "rsghost_sink_duration_seconds_bucket{sink=\"2\",le=\"60\"}", buf, sizeof(buf)),
        "rsghost_sink_duration_seconds_bucket{sink=\"2\",le=\"60\"} 3");
    CHECK_STR(
        line(b.p, "rsghost_sink_duration_seconds_bucket{sink=\"2\",le=\"+Inf\"}", buf, sizeof(buf)),
        "rsghost_sink_duration_seconds_bucket{sink=\"2\",le=\"+Inf\"} 4");
    CHECK_STR(line(b.p, "rsghost_sink_duration_seconds_count{sink=\"2\"}", buf, sizeof(buf)),
              "rsghost_sink_duration_seconds_count{sink=\"2\"} 4");
    CHECK_STR(line(b.p, "rsghost_sink_duration_seconds_count{sink=\"1\"}", buf, sizeof(buf)),
              "rsghost_sink_duration_seconds_count{sink=\"1\"} 0");
    CHECK_STR(line(b.p, "rsghost_read_to_ack_seconds_count", buf, sizeof(buf)),
              "rsghost_read_to_ack_seconds_count 10");
    CHECK_STR(line(b.p, "rsghost_read_to_ack_seconds_sum", buf, sizeof(buf)),
              "rsghost_read_to_ack_seconds_sum 5");
    /* Not refreshed yet: no lag or pending series, rather than a false 0. */
    CHECK(strstr(b.p, "rsghost_group_pending{") == NULL);
    CHECK(strstr(b.p, "process_cpu_seconds_total ") != NULL);
    rsgBufFree(&b);
    rsgMetricsFree(&m);
}

static void escapesStreamNames(void) {
    char s0[] = "a\"b\\c\nd";
    char *streams[] = {s0};
    rsgMetrics m;
    CHECK(rsgMetricsInit(&m, 0, 1, streams) == 0);
    m.streams[0].known = 1;
    m.streams[0].pending = 7;
    rsgBuf b = {0};
    CHECK(rsgMetricsRender(&m, &b) == 0);
    char buf[256];
    CHECK_STR(line(b.p, "rsghost_group_pending{", buf, sizeof(buf)),
              "rsghost_group_pending{stream=\"a\\\"b\\\\c\\nd\"} 7");
    /* No lag reported by Redis: no lag series. */
    CHECK(strstr(b.p, "rsghost_group_lag{") == NULL);
    rsgBufFree(&b);
    rsgMetricsFree(&m);
}

static void mapsFlushReasons(void) {
    CHECK(rsgMetricsFlushReason("size") == RSG_FLUSH_SIZE);
    CHECK(rsgMetricsFlushReason("timeout") == RSG_FLUSH_TIMEOUT);
    CHECK(rsgMetricsFlushReason("end of read") == RSG_FLUSH_END_OF_READ);
    CHECK(rsgMetricsFlushReason("stop") == RSG_FLUSH_STOP);
    CHECK(rsgMetricsFlushReason("other") == -1);
}

static void listensOnWhatItIsGiven(void) {
    rsgHttp h;
    char err[256];
    CHECK(rsgHttpListen(&h, "127.0.0.1:0", err, sizeof(err)) == 0);
    CHECK(strncmp(h.where, "127.0.0.1:", 10) == 0 && strcmp(h.where, "127.0.0.1:0") != 0);
    /* The same port again: in use, and said so. */
    rsgHttp again;
    CHECK(rsgHttpListen(&again, h.where, err, sizeof(err)) == -1);
    CHECK(strstr(err, "Address already in use") != NULL);
    rsgHttpFree(&h);
    const char *bad[] = {"9100", "127.0.0.1", "127.0.0.1:", "::1:9100", "host:port", "[::1]"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK(rsgHttpListen(&h, bad[i], err, sizeof(err)) == -1);
        CHECK(strstr(err, "expected HOST:PORT") != NULL);
    }
}

int main(void) {
    histogramBucketsAreCumulative();
    escapesStreamNames();
    mapsFlushReasons();
    listensOnWhatItIsGiven();
    TEST_DONE();
}
