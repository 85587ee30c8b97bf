/* http.h - a small HTTP server on the host's libuv loop (libmicrohttpd).
 *
 * libmicrohttpd runs in its "external event loop" mode with epoll: it makes
 * no thread, and all its sockets sit behind one epoll descriptor, which is
 * readable whenever any of them has work. One uv_poll on that descriptor and
 * one uv_timer for MHD_get_timeout drive it (MHD_run), so every request is
 * answered on the loop thread, between two other callbacks, and may read
 * host state freely. (libmicrohttpd's manual: "Implementing external
 * select"; its epoll descriptor cascades into another event loop.)
 *
 * The listening socket is ours (rsgHttpListen), made before the loop exists:
 * a port in use is then a plain bind error, told before anything is read,
 * and MHD takes it over through MHD_OPTION_LISTEN_SOCKET. */
#ifndef RSG_HTTP_H
#define RSG_HTTP_H

#include <stddef.h>
#include <uv.h>

struct MHD_Daemon;

/* What a handler answers. body is malloc'd (taken over), or NULL for none. */
typedef struct rsgHttpReply {
    int status;       /* HTTP status, 200 unless set */
    const char *type; /* Content-Type, text/plain unless set */
    char *body;
    size_t len;
} rsgHttpReply;

/* Called on the loop thread for each GET or HEAD request of path. */
typedef void rsgHttpHandler(void *ud, const char *path, rsgHttpReply *out);

typedef struct rsgHttp {
    int bound;                 /* rsgHttpListen succeeded: rsgHttpFree has work */
    int fd;                    /* the listening socket until MHD owns it, else -1 */
    char where[300];           /* HOST:PORT actually bound (port 0 resolved) */
    struct MHD_Daemon *daemon; /* owns the socket and the connections */
    uv_poll_t poll;            /* on MHD's epoll descriptor */
    uv_timer_t timer;          /* MHD_get_timeout: idle connections, ready work */
    int started;               /* poll and timer were initialised */
    rsgHttpHandler *handler;
    void *ud;
} rsgHttp;

/* Binds and listens on HOST:PORT (HOST a name or an address, [v6] in
 * brackets; empty for every interface; PORT 0 for any free port). Needs no
 * loop. Returns 0, or -1 with a reason in err (a port in use names the
 * address and says so). */
int rsgHttpListen(rsgHttp *h, const char *hostport, char *err, size_t errlen);

/* Serves on the loop: handler answers every GET/HEAD. Returns 0, or -1 with
 * err (the socket is then closed). */
int rsgHttpStart(rsgHttp *h, uv_loop_t *loop, rsgHttpHandler *handler, void *ud, char *err,
                 size_t errlen);

/* Stops serving: closes the loop handles (the loop may then end). */
void rsgHttpClose(rsgHttp *h);

/* Once the loop has ended: stops the daemon, closes the sockets. Safe on a
 * zeroed rsgHttp, and on one that never started. */
void rsgHttpFree(rsgHttp *h);

#endif
