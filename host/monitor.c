/* monitor.c - see monitor.h. */
#include "monitor.h"

#include <stdlib.h>
#include <string.h>

struct rsgMonitorReq {
    rsgMonitor *mon;
    int stream; /* index into metrics->streams */
};

int rsgMonitorListen(rsgMonitor *mon, const char *hostport, char *err, size_t errlen) {
    memset(mon, 0, sizeof(*mon));
    return rsgHttpListen(&mon->http, hostport, err, errlen);
}

const char *rsgMonitorWhere(const rsgMonitor *mon) {
    return mon->http.where;
}

/* Sets a reply of fixed text (copied). */
static void text(rsgHttpReply *r, int status, const char *s) {
    r->status = status;
    r->body = strdup(s);
    r->len = r->body ? strlen(r->body) : 0;
}

static void onHttp(void *ud, const char *path, rsgHttpReply *r) {
    rsgMonitor *mon = ud;
    if (strcmp(path, "/metrics") == 0) {
        if (mon->hooks.collect) mon->hooks.collect(mon->hooks.ud, mon->metrics);
        rsgBuf b = {0};
        if (rsgMetricsRender(mon->metrics, &b) != 0) {
            rsgBufFree(&b);
            text(r, 500, "out of memory\n");
            return;
        }
        r->type = "text/plain; version=0.0.4; charset=utf-8";
        r->body = b.p;
        r->len = b.len;
    } else if (strcmp(path, "/livez") == 0) {
        /* Answered from the loop itself: that it answers is the proof. */
        text(r, 200, "ok\n");
    } else if (strcmp(path, "/readyz") == 0) {
        char why[256] = "not ready";
        if (mon->hooks.ready(mon->hooks.ud, why, sizeof(why))) {
            text(r, 200, "ready\n");
        } else {
            size_t l = strlen(why);
            if (l + 1 < sizeof(why)) why[l] = '\n', why[l + 1] = '\0';
            text(r, 503, why);
        }
    } else {
        text(r, 404, "not found: try /metrics, /livez or /readyz\n");
    }
}

/* The integer value of field `key` in a flat [k, v, k, v...] reply (the
 * host speaks RESP2, on hiredis 0.14 and 1.x alike), or -1 when absent or not an integer
 * (XINFO GROUPS gives a nil lag when Redis cannot tell it). */
static long long field(const redisReply *r, const char *key) {
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *k = r->element[i], *v = r->element[i + 1];
        if (k->type != REDIS_REPLY_STRING && k->type != REDIS_REPLY_STATUS) continue;
        if (strcmp(k->str, key) != 0) continue;
        return v->type == REDIS_REPLY_INTEGER ? v->integer : -1;
    }
    return -1;
}

/* The entry of group `name` in an XINFO GROUPS reply, or NULL. */
static const redisReply *findGroup(const redisReply *r, const char *name) {
    if (r->type != REDIS_REPLY_ARRAY) return NULL;
    for (size_t g = 0; g < r->elements; g++) {
        const redisReply *e = r->element[g];
        if (e->type != REDIS_REPLY_ARRAY) continue;
        for (size_t i = 0; i + 1 < e->elements; i += 2) {
            const redisReply *k = e->element[i], *v = e->element[i + 1];
            if (k->type == REDIS_REPLY_STRING && strcmp(k->str, "name") == 0 &&
                v->type == REDIS_REPLY_STRING && strcmp(v->str, name) == 0)
                return e;
        }
    }
    return NULL;
}

static void onGroups(redisAsyncContext *ac, void *rep, void *privdata) {
    (void)ac;
    rsgMonitorReq *q = privdata;
    rsgMonitor *mon = q->mon;
    mon->outstanding--;
    rsgStreamMetrics *s = &mon->metrics->streams[q->stream];
    const redisReply *r = rep;
    /* Lost with the connection: keep the last values until the next round. */
    if (!r) return;
    const redisReply *g = findGroup(r, mon->group);
    s->known = g != NULL; /* an error reply (no such key) lands here too */
    if (!g) return;
    long long pending = field(g, "pending"), lag = field(g, "lag");
    s->pending = pending < 0 ? 0 : pending;
    s->lag_known = lag >= 0;
    s->lag = lag < 0 ? 0 : lag;
}

static void onRefresh(uv_timer_t *t) {
    rsgMonitor *mon = t->data;
    if (mon->outstanding > 0 || !mon->cmds->ready) return; /* the last round, or no Redis */
    for (int i = 0; i < mon->metrics->nstreams; i++) {
        const char *argv[] = {"XINFO", "GROUPS", mon->metrics->streams[i].name};
        if (rsgConnCommand(mon->cmds, onGroups, &mon->reqs[i], 3, argv, NULL) == 0)
            mon->outstanding++;
    }
}

int rsgMonitorStart(rsgMonitor *mon, uv_loop_t *loop, rsgMetrics *m, rsgConn *cmds,
                    const char *group, const rsgMonitorHooks *hooks, char *err, size_t errlen) {
    mon->metrics = m;
    mon->cmds = cmds;
    mon->group = group;
    mon->hooks = *hooks;
    if (group && m->nstreams > 0) {
        mon->reqs = calloc((size_t)m->nstreams, sizeof(*mon->reqs));
        if (!mon->reqs) {
            snprintf(err, errlen, "out of memory starting --metrics");
            return -1;
        }
        for (int i = 0; i < m->nstreams; i++)
            mon->reqs[i] = (rsgMonitorReq){mon, i};
    }
    if (rsgHttpStart(&mon->http, loop, onHttp, mon, err, errlen) != 0) return -1;
    if (mon->reqs) {
        uv_timer_init(loop, &mon->refresh);
        mon->refresh.data = mon;
        mon->refresh_open = 1;
        /* The first round soon after start, when the group has been made. */
        uv_timer_start(&mon->refresh, onRefresh, 1000, RSG_MONITOR_REFRESH_MS);
    }
    return 0;
}

void rsgMonitorClose(rsgMonitor *mon) {
    rsgHttpClose(&mon->http);
    if (mon->refresh_open) {
        mon->refresh_open = 0;
        uv_close((uv_handle_t *)&mon->refresh, NULL);
    }
}

void rsgMonitorFree(rsgMonitor *mon) {
    rsgHttpFree(&mon->http);
    free(mon->reqs);
    mon->reqs = NULL;
}
