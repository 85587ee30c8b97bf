/* http.c - see http.h. */
#include "http.h"

#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Splits "HOST:PORT" ("[v6]:PORT", ":PORT") into host (NULL = any) and port.
 * Returns 0, or -1 when there is no ":PORT". */
static int splitHostPort(const char *s, char *host, size_t hostlen, char *port, size_t portlen) {
    const char *colon = strrchr(s, ':');
    if (!colon || !colon[1]) return -1;
    const char *h = s;
    size_t hl = (size_t)(colon - s);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    } else if (memchr(h, ':', hl)) {
        return -1; /* a bare IPv6 address: its port is ambiguous */
    }
    if (hl >= hostlen || strlen(colon + 1) >= portlen) return -1;
    memcpy(host, h, hl);
    host[hl] = '\0';
    snprintf(port, portlen, "%s", colon + 1);
    for (const char *p = port; *p; p++)
        if (*p < '0' || *p > '9') return -1;
    return 0;
}

int rsgHttpListen(rsgHttp *h, const char *hostport, char *err, size_t errlen) {
    memset(h, 0, sizeof(*h));
    h->fd = -1;
    char host[256], port[16];
    if (splitHostPort(hostport, host, sizeof(host), port, sizeof(port)) != 0) {
        snprintf(err, errlen,
                 "--metrics '%s': expected HOST:PORT (e.g. 127.0.0.1:9100, [::1]:9100 or :9100)",
                 hostport);
        return -1;
    }
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "--metrics %s: %s", hostport, gai_strerror(rc));
        return -1;
    }
    /* The first address that binds; the error of the first one otherwise
     * (a port in use fails on every address alike). */
    int first_errno = 0;
    const char *first_step = NULL;
    for (struct addrinfo *ai = res; ai && h->fd < 0; ai = ai->ai_next) {
        int fd =
            socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        const char *step = "socket";
        if (fd >= 0) {
            /* A restart can bind while the last run's connections sit in
             * TIME_WAIT; a port someone listens on still fails. */
            int one = 1;
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
            step = "bind";
            if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
                step = "listen";
                if (listen(fd, 64) == 0) {
                    h->fd = fd;
                    h->bound = 1;
                    break;
                }
            }
        }
        if (!first_step) first_errno = errno, first_step = step;
        if (fd >= 0) close(fd);
    }
    freeaddrinfo(res);
    if (h->fd < 0) {
        snprintf(err, errlen, "--metrics %s: cannot %s: %s%s", hostport,
                 first_step ? first_step : "resolve", strerror(first_errno),
                 first_errno == EADDRINUSE ? " (another process listens there)" : "");
        return -1;
    }
    /* Where we are, with a port 0 resolved: the log says it. */
    struct sockaddr_storage sa;
    memset(&sa, 0, sizeof(sa));
    socklen_t salen = sizeof(sa);
    char nhost[NI_MAXHOST] = "?", nport[NI_MAXSERV] = "?";
    if (getsockname(h->fd, (struct sockaddr *)&sa, &salen) == 0)
        getnameinfo((struct sockaddr *)&sa, salen, nhost, sizeof(nhost), nport, sizeof(nport),
                    NI_NUMERICHOST | NI_NUMERICSERV);
    snprintf(h->where, sizeof(h->where), "%s%s%s:%s", sa.ss_family == AF_INET6 ? "[" : "", nhost,
             sa.ss_family == AF_INET6 ? "]" : "", nport);
    return 0;
}

/* Answers one request. MHD calls this once with the headers and again
 * (for a body, more times); a GET has none, so the first call only marks
 * the connection and the second answers. */
static enum MHD_Result onRequest(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls) {
    (void)version, (void)upload;
    rsgHttp *h = cls;
    static int marker;
    if (*con_cls != &marker) {
        *con_cls = &marker;
        return MHD_YES;
    }
    if (*upload_size) {
        *upload_size = 0; /* a body nobody asked for: ignored */
        return MHD_YES;
    }
    rsgHttpReply r = {200, "text/plain; charset=utf-8", NULL, 0};
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
        r.status = MHD_HTTP_METHOD_NOT_ALLOWED;
        r.body = strdup("only GET and HEAD\n");
        r.len = r.body ? strlen(r.body) : 0;
    } else {
        h->handler(h->ud, url, &r);
    }
    struct MHD_Response *resp =
        MHD_create_response_from_buffer_with_free_callback(r.len, r.body, free);
    if (!resp) {
        free(r.body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r.type);
    if (r.status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result ok = MHD_queue_response(conn, (unsigned)r.status, resp);
    MHD_destroy_response(resp);
    return ok;
}

static void onTimer(uv_timer_t *t);

/* After every MHD_run: when MHD next needs to run without an event (a
 * connection that timed out, or work ready that epoll's edge will not
 * report again: MHD then asks for 0 ms). */
static void rearm(rsgHttp *h) {
    MHD_UNSIGNED_LONG_LONG ms;
    if (MHD_get_timeout(h->daemon, &ms) == MHD_YES)
        uv_timer_start(&h->timer, onTimer, (uint64_t)ms, 0);
    else
        uv_timer_stop(&h->timer);
}

static void onTimer(uv_timer_t *t) {
    rsgHttp *h = t->data;
    MHD_run(h->daemon);
    rearm(h);
}

static void onPoll(uv_poll_t *p, int status, int events) {
    (void)status, (void)events;
    rsgHttp *h = p->data;
    MHD_run(h->daemon);
    rearm(h);
}

int rsgHttpStart(rsgHttp *h, uv_loop_t *loop, rsgHttpHandler *handler, void *ud, char *err,
                 size_t errlen) {
    h->handler = handler;
    h->ud = ud;
    /* No thread (no MHD_USE_INTERNAL_POLLING_THREAD): MHD_run on our loop.
     * A scraper or a probe needs few connections and no slow clients. */
    h->daemon =
        MHD_start_daemon(MHD_USE_EPOLL, 0, NULL, NULL, onRequest, h, MHD_OPTION_LISTEN_SOCKET,
                         h->fd, MHD_OPTION_CONNECTION_LIMIT, (unsigned)32,
                         MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_END);
    if (!h->daemon) {
        snprintf(err, errlen, "--metrics %s: cannot start the HTTP server (libmicrohttpd)",
                 h->where);
        close(h->fd);
        h->fd = -1;
        return -1;
    }
    h->fd = -1; /* the daemon's now: MHD_stop_daemon closes it */
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    if (!info || uv_poll_init(loop, &h->poll, info->epoll_fd) != 0) {
        snprintf(err, errlen, "--metrics %s: libmicrohttpd gave no epoll descriptor", h->where);
        MHD_stop_daemon(h->daemon);
        h->daemon = NULL;
        return -1;
    }
    uv_timer_init(loop, &h->timer);
    h->poll.data = h->timer.data = h;
    h->started = 1;
    uv_poll_start(&h->poll, UV_READABLE, onPoll);
    rearm(h);
    return 0;
}

void rsgHttpClose(rsgHttp *h) {
    if (!h->started) return;
    h->started = 0;
    /* libuv: a poll handle is closed before its descriptor (rsgHttpFree). */
    if (!uv_is_closing((uv_handle_t *)&h->poll)) uv_close((uv_handle_t *)&h->poll, NULL);
    if (!uv_is_closing((uv_handle_t *)&h->timer)) uv_close((uv_handle_t *)&h->timer, NULL);
}

void rsgHttpFree(rsgHttp *h) {
    if (!h->bound) return;
    if (h->daemon) MHD_stop_daemon(h->daemon);
    h->daemon = NULL;
    if (h->fd >= 0) close(h->fd);
    h->fd = -1;
}
