/* monitor.h - --metrics HOST:PORT: /metrics, /livez and /readyz on the loop.
 *
 *   /metrics  the Prometheus text format of rsgMetrics (metrics.h), with the
 *             host's own counts copied in first (hooks.collect)
 *   /livez    200 whenever the loop answers at all: a loop stuck in a script
 *             answers nothing, and the probe's timeout says so
 *   /readyz   200 once hooks.ready says so (the group exists, the reader is
 *             connected), 503 with the reason otherwise
 *
 * For a consumer group, the group's lag and pending count per stream come
 * from XINFO GROUPS on the command connection every RSG_MONITOR_REFRESH_MS,
 * never per message, and only when --metrics is on. */
#ifndef RSG_MONITOR_H
#define RSG_MONITOR_H

#include <stddef.h>
#include <uv.h>

#include "conn.h"
#include "http.h"
#include "metrics.h"

#define RSG_MONITOR_REFRESH_MS 5000

typedef struct rsgMonitorHooks {
    /* Copies the host's own counts (acks, claims, in flight...) into m. */
    void (*collect)(void *ud, rsgMetrics *m);
    /* Returns 1 when ready, else 0 with a one-line reason in why. */
    int (*ready)(void *ud, char *why, size_t len);
    void *ud;
} rsgMonitorHooks;

typedef struct rsgMonitorReq rsgMonitorReq;

typedef struct rsgMonitor {
    rsgHttp http;        /* the endpoint */
    rsgMetrics *metrics; /* what /metrics shows; owned by the caller */
    rsgConn *cmds;       /* XINFO GROUPS goes here */
    const char *group;   /* the consumer group, or NULL: nothing to refresh */
    uv_timer_t refresh;  /* XINFO GROUPS rounds */
    int refresh_open;    /* refresh initialised, not yet closed */
    int outstanding;     /* XINFO replies the current round awaits */
    rsgMonitorReq *reqs; /* one per stream: which stream a reply is for */
    rsgMonitorHooks hooks;
} rsgMonitor;

/* Binds HOST:PORT before the loop exists (http.h). Returns 0, or -1 with err. */
int rsgMonitorListen(rsgMonitor *mon, const char *hostport, char *err, size_t errlen);

/* Serves on loop; m's streams are refreshed from XINFO GROUPS of group (NULL:
 * none) over cmds. Returns 0, or -1 with err. */
int rsgMonitorStart(rsgMonitor *mon, uv_loop_t *loop, rsgMetrics *m, rsgConn *cmds,
                    const char *group, const rsgMonitorHooks *hooks, char *err, size_t errlen);

/* HOST:PORT as bound (for the log). */
const char *rsgMonitorWhere(const rsgMonitor *mon);

/* Stops serving and refreshing: closes the loop handles. */
void rsgMonitorClose(rsgMonitor *mon);

/* After the loop ended: frees the server. Safe on a zeroed rsgMonitor. */
void rsgMonitorFree(rsgMonitor *mon);

#endif
