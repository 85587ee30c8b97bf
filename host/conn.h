/* conn.h - one hiredis async connection on the libuv loop that keeps itself up.
 *
 * A connection authenticates (AUTH), selects its database (SELECT) and PINGs
 * before it calls itself ready, so a wrong password or a protected server is
 * found at once, before any real work is sent. When the server goes away the
 * pending callbacks get NULL replies (hiredis does that), on_lost fires, and
 * the connection retries with capped exponential backoff until it is ready
 * again (on_ready fires once more). Authentication failures are fatal: they
 * do not heal by waiting.
 *
 * With a redis+sentinel:// URL every attempt first asks the sentinels where
 * the master is (sentinel.h), and the handshake also checks ROLE: a server
 * that is not the master is dropped and the sentinels asked again. A reply
 * of -READONLY or -UNBLOCKED to any command means a failover left us on a
 * replica: the connection is dropped and remade, and the command's callback
 * gets the NULL reply of a lost connection, so callers resend as they do
 * after any loss instead of failing for good.
 *
 * With a redis+cluster:// URL the connection is a router over one
 * connection per master (cluster.h): the same functions, the same events. */
#ifndef RSG_CONN_H
#define RSG_CONN_H

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <uv.h>

#include "url.h"

struct rsgSentinelQuery;
typedef struct rsgConn rsgConn;
typedef void rsgConnEvent(rsgConn *c);
typedef void rsgConnFatal(rsgConn *c, const char *reason);

struct rsgConn {
    uv_loop_t *loop;             /* the loop it lives on */
    const rsgRedisUrl *url;      /* where to connect; owned by the caller */
    const char *name;            /* role in log lines: "reader", "commands", ... */
    const char *client_name;     /* CLIENT SETNAME value or NULL */
    redisAsyncContext *ac;       /* NULL while disconnected */
    int ready;                   /* handshake done: commands may be sent */
    int closing;                 /* rsgConnClose was called: never reconnect */
    int was_ready;               /* has been ready before: the next ready is a reconnect */
    unsigned attempt;            /* consecutive failures, drives the backoff */
    int handshake_left;          /* handshake replies still expected */
    uv_timer_t timer;            /* reconnect backoff, and the connect timeout */
    int timer_open;              /* timer initialised and not yet closed */
    rsgConnEvent *on_ready;      /* handshake done (first time and after reconnects) */
    rsgConnEvent *on_lost;       /* was ready, now gone (NULL replies already delivered) */
    rsgConnFatal *on_fatal;      /* cannot ever work (bad password...) */
    rsgConnEvent *on_closed;     /* rsgConnClose finished: handles closed */
    void *data;                  /* the owner's */
    struct rsgReplyArena *arena; /* replies built in this arena, or NULL (see arena.h) */
    char fatal_why[512];         /* a fatal reason found inside doConnect, told from the timer */

    /* Where the attempts go: the URL's host and port, or with Sentinel the
     * master's address as the sentinels last gave it. */
    char host[256];
    int port;
    struct rsgSentinelQuery *query; /* asking the sentinels now, or NULL */
    int dropping;                   /* dropped on purpose, not yet gone: refuse commands */
    int moved;            /* this ready is on another server than the last one (a failover) */
    char ready_host[256]; /* where the last handshake succeeded */
    int ready_port;
    unsigned long reconnects;   /* handshakes done after a loss (--metrics) */
    int failed_over;            /* dropped for -READONLY: the next ready counts as moved */
    unsigned readonly;          /* consecutive -READONLY drops: the backoff of a plain URL */
    struct rsgCluster *cluster; /* redis+cluster: the router's state (cluster.h), else NULL */
    int fail_fast; /* a cluster router: a command for a slot whose master cannot be reached gets
                      a CLUSTERDOWN error reply instead of waiting for it (set before start) */
};

/* Sets the connection up and starts connecting. The callbacks and data must be
 * filled by the caller beforehand. Never fails: trouble becomes retries. */
void rsgConnStart(rsgConn *c, uv_loop_t *loop, const rsgRedisUrl *url, const char *name);

/* Sends a command given as argv. Returns 0, or -1 when the connection is not
 * ready (fn is then not called). fn is always called exactly once otherwise,
 * with a NULL reply if the connection is lost first. */
int rsgConnCommand(rsgConn *c, redisCallbackFn *fn, void *privdata, int argc, const char **argv,
                   const size_t *argvlen);

/* Sends a command already in RESP form (see redisFormatCommandArgv).
 * Same contract as rsgConnCommand. */
int rsgConnFormatted(rsgConn *c, redisCallbackFn *fn, void *privdata, const char *cmd, size_t len);

/* Writes what hiredis has buffered now, rather than when the loop turns
 * again. Safe inside a reply callback (hiredis 1.x forbids
 * redisAsyncHandleWrite there); a write error surfaces as a disconnect on
 * the next turn of the loop. */
void rsgConnFlush(rsgConn *c);

/* Sentinel URLs: a sentinel announced that the master moved to host:port.
 * Unless already connected there, the connection is dropped (on_lost fires
 * if it was ready) and remade at once, without backoff. Does nothing for
 * other URLs or after rsgConnClose. */
void rsgConnMasterMoved(rsgConn *c, const char *host, int port);

/* Attaches a hiredis async context to the loop through rsghost's own libuv
 * adapter (see conn.c for why not hiredis's). Returns 0, or -1 with nothing
 * attached. For other modules' short-lived contexts (sentinel.c). */
int rsgConnAttach(redisAsyncContext *ac, uv_loop_t *loop);

/* Drops the connection at once (pending callbacks get NULL replies) and stops
 * reconnecting; on_closed fires when the timer handle is closed. */
void rsgConnClose(rsgConn *c);

#endif
