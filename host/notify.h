/* notify.h - telling systemd how the consumer is doing (Type=notify), without
 * linking libsystemd: the protocol is one datagram per message to the unix
 * socket named by $NOTIFY_SOCKET (sd_notify(3); a name starting with '@' is
 * in the abstract namespace).
 *
 *   READY=1     once the consumer reads (rsgNotifyReady)
 *   STATUS=...  a short count line, refreshed every few seconds
 *   STOPPING=1  when a stop begins
 *   WATCHDOG=1  every WATCHDOG_USEC/2 while the loop turns, when the unit has
 *               WatchdogSec= (and WATCHDOG_PID, if set, is us)
 *
 * The watchdog pings come from a timer on the main loop itself, not from a
 * thread: a Lua script stuck in an endless loop stops them, and systemd
 * restarts the unit. Without $NOTIFY_SOCKET everything here does nothing. */
#ifndef RSG_NOTIFY_H
#define RSG_NOTIFY_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <uv.h>

/* Writes the STATUS= text (without "STATUS=") into buf, len bytes. */
typedef void (*rsgNotifyStatusFn)(void *ud, char *buf, size_t len);

typedef struct rsgNotify {
    int fd;                     /* our datagram socket, -1 when not under systemd */
    struct sockaddr_un addr;    /* $NOTIFY_SOCKET */
    socklen_t addrlen;          /* of addr: abstract names count exactly */
    uv_timer_t watchdog;        /* WATCHDOG=1, when watchdog_ms */
    uv_timer_t status;          /* STATUS= refresh */
    uint64_t watchdog_ms;       /* ping interval: half of WATCHDOG_USEC, 0 = none */
    int timers;                 /* the timers were initialised (to close) */
    rsgNotifyStatusFn describe; /* the STATUS= line */
    void *ud;                   /* describe's argument */
} rsgNotify;

/* Reads $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID and, under systemd,
 * opens the socket and starts the timers on loop (STATUS= every
 * status_seconds from describe). Returns 0, also when not under systemd (n
 * is then inert), or -1 with a reason in err when $NOTIFY_SOCKET is set but
 * unusable (the unit would wait for READY=1 in vain). */
int rsgNotifyStart(rsgNotify *n, uv_loop_t *loop, double status_seconds, rsgNotifyStatusFn describe,
                   void *ud, char *err, size_t errlen);

/* READY=1 with the current STATUS= line. */
void rsgNotifyReady(rsgNotify *n);

/* STOPPING=1 with status as the STATUS= line. Later STATUS= refreshes stop;
 * the watchdog pings go on while the stop flushes. */
void rsgNotifyStopping(rsgNotify *n, const char *status);

/* Closes the timers (on the loop) and the socket. Safe on an inert n and
 * when called twice. */
void rsgNotifyClose(rsgNotify *n);

#endif
