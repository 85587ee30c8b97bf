/* notify.c - see notify.h. */
#include "notify.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Sends one datagram. A failure is not worth stopping for: systemd may be
 * restarting, and the next message says the same again. */
static void sendMsg(rsgNotify *n, const char *msg) {
    if (n->fd < 0) return;
    ssize_t w;
    do {
        w = sendto(n->fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&n->addr, n->addrlen);
    } while (w < 0 && errno == EINTR);
}

/* Sends prefix followed by the STATUS= line describe writes. */
static void sendStatus(rsgNotify *n, const char *prefix) {
    char line[256], msg[320];
    line[0] = '\0';
    if (n->describe) n->describe(n->ud, line, sizeof(line));
    snprintf(msg, sizeof(msg), "%sSTATUS=%s", prefix, line);
    sendMsg(n, msg);
}

/* The loop turned: tell systemd we live. */
static void onWatchdog(uv_timer_t *t) {
    sendMsg(t->data, "WATCHDOG=1");
}

/* Refreshes the STATUS= line. */
static void onStatus(uv_timer_t *t) {
    sendStatus(t->data, "");
}

/* The watchdog interval asked for, in ms (half the timeout, as sd_notify(3)
 * advises), or 0: no WATCHDOG_USEC, or it is meant for another process. */
static uint64_t watchdogInterval(void) {
    const char *usec = getenv("WATCHDOG_USEC");
    const char *pid = getenv("WATCHDOG_PID");
    if (!usec || !*usec) return 0;
    if (pid && *pid && strtol(pid, NULL, 10) != (long)getpid()) return 0;
    unsigned long long us = strtoull(usec, NULL, 10);
    if (us == 0) return 0;
    uint64_t ms = us / 2000;
    return ms ? ms : 1;
}

int rsgNotifyStart(rsgNotify *n, uv_loop_t *loop, double status_seconds, rsgNotifyStatusFn describe,
                   void *ud, char *err, size_t errlen) {
    memset(n, 0, sizeof(*n));
    n->fd = -1;
    n->describe = describe;
    n->ud = ud;
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path) return 0;
    size_t len = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || len >= sizeof(n->addr.sun_path)) {
        snprintf(err, errlen, "NOTIFY_SOCKET '%s' is not a unix socket path or @name", path);
        return -1;
    }
    n->addr.sun_family = AF_UNIX;
    memcpy(n->addr.sun_path, path, len);
    if (path[0] == '@') n->addr.sun_path[0] = '\0'; /* abstract: no NUL at the end */
    n->addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (path[0] == '/'));
    n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (n->fd < 0) {
        snprintf(err, errlen, "cannot open a socket for NOTIFY_SOCKET: %s", strerror(errno));
        return -1;
    }
    n->watchdog_ms = watchdogInterval();
    uv_timer_init(loop, &n->watchdog);
    uv_timer_init(loop, &n->status);
    n->watchdog.data = n->status.data = n;
    n->timers = 1;
    if (n->watchdog_ms) uv_timer_start(&n->watchdog, onWatchdog, n->watchdog_ms, n->watchdog_ms);
    uint64_t ms = (uint64_t)(status_seconds * 1000);
    if (ms) uv_timer_start(&n->status, onStatus, ms, ms);
    return 0;
}

void rsgNotifyReady(rsgNotify *n) {
    sendStatus(n, "READY=1\n");
}

void rsgNotifyStopping(rsgNotify *n, const char *status) {
    if (n->fd < 0) return;
    uv_timer_stop(&n->status);
    char msg[320];
    snprintf(msg, sizeof(msg), "STOPPING=1\nSTATUS=%s", status);
    sendMsg(n, msg);
}

void rsgNotifyClose(rsgNotify *n) {
    if (n->timers) {
        if (!uv_is_closing((uv_handle_t *)&n->watchdog))
            uv_close((uv_handle_t *)&n->watchdog, NULL);
        if (!uv_is_closing((uv_handle_t *)&n->status)) uv_close((uv_handle_t *)&n->status, NULL);
    }
    if (n->fd >= 0) close(n->fd);
    n->fd = -1;
}
