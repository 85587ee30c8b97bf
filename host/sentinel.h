/* sentinel.h - Redis Sentinel: where the master is, and when it moves.
 *
 * A query asks the sentinels of a redis+sentinel:// URL, in the URL's order,
 * `SENTINEL get-master-addr-by-name MASTER` until one answers (a sentinel
 * that is down, slow, refuses our credentials or does not know the master is
 * skipped). It runs on the caller's libuv loop through hiredis async, so it
 * never blocks the loop.
 *
 * A watcher subscribes to `+switch-master` on one sentinel and reports when
 * the master it cares about moves: a failover the connections could not see
 * otherwise (the old master may stay up as a replica, still answering
 * reads). If its sentinel goes away it subscribes on the next one. One
 * watcher per process is enough: it tells every connection of the process.
 *
 * Both use the sentinels' own credentials (sentinel_user/sentinel_password),
 * never the master's, and log no password. */
#ifndef RSG_SENTINEL_H
#define RSG_SENTINEL_H

#include <hiredis/async.h>
#include <uv.h>

#include "url.h"

/* The outcome of a query: host and port of the master, or host == NULL and
 * why no sentinel could tell (every sentinel's reason, for the log). */
typedef void rsgSentinelAnswer(void *ud, const char *host, int port, const char *why);

typedef struct rsgSentinelQuery rsgSentinelQuery;

/* Starts asking the sentinels of url where its master is. cb is called
 * exactly once, later (never from inside this call), unless the query is
 * cancelled first; after cb the query is gone and must not be cancelled.
 * Returns NULL when out of memory (cb is then never called). url must
 * outlive the query. */
rsgSentinelQuery *rsgSentinelAsk(uv_loop_t *loop, const rsgRedisUrl *url, rsgSentinelAnswer *cb,
                                 void *ud);

/* Abandons a query that has not answered yet: cb is never called. Its
 * memory is released once the loop has closed its timer. */
void rsgSentinelCancel(rsgSentinelQuery *q);

/* The master moved to host:port (a sentinel announced +switch-master). */
typedef void rsgSentinelSwitch(void *ud, const char *host, int port);

typedef struct rsgSentinelWatch {
    uv_loop_t *loop;            /* the loop it lives on */
    const rsgRedisUrl *url;     /* the sentinels and the master's name; the caller's */
    rsgSentinelSwitch *on_move; /* called for each +switch-master of our master */
    void *ud;                   /* passed to on_move */
    redisAsyncContext *ac;      /* the sentinel we listen to, NULL between attempts */
    int index;                  /* which sentinel of url->sentinels */
    int subscribed;             /* the sentinel confirmed the subscription */
    int stopped;                /* rsgSentinelWatchStop was called */
    uv_timer_t timer;           /* connect timeout, then the pause before the next sentinel */
} rsgSentinelWatch;

/* Starts watching for +switch-master of url->master. Never fails: a sentinel
 * that cannot be reached is retried, moving on to the next one. */
void rsgSentinelWatchStart(rsgSentinelWatch *w, uv_loop_t *loop, const rsgRedisUrl *url,
                           rsgSentinelSwitch *on_move, void *ud);

/* Drops the subscription and closes the timer (the loop finishes closing
 * it); on_move is not called again. Safe to call twice, or on a watcher
 * that was never started if it was zeroed. */
void rsgSentinelWatchStop(rsgSentinelWatch *w);

#endif
