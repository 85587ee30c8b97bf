/* http_client.h - HTTP requests on the host's libuv loop, for the script's
 * sinks (rsghost.http.request).
 *
 * libcurl's multi-socket interface: curl says which sockets to watch
 * (CURLMOPT_SOCKETFUNCTION) and when to wake it (CURLMOPT_TIMERFUNCTION);
 * a uv_poll per socket and one uv_timer do the waiting, so a slow server
 * never blocks reads, acks or claims. TLS verifies against the system's CA
 * store (Debian's libcurl is built with /etc/ssl/certs/ca-certificates.crt).
 * The multi handle is made on the first request: a host whose script never
 * speaks HTTP opens nothing. */
#ifndef RSG_HTTP_CLIENT_H
#define RSG_HTTP_CLIENT_H

#include <stddef.h>
#include <uv.h>

typedef struct rsgHttpClientTransfer rsgHttpClientTransfer;

typedef struct rsgHttpClientRequest {
    const char *method;         /* "GET", "POST", ... */
    const char *url;            /* http:// or https:// */
    const char *body;           /* NULL: none */
    size_t body_len;            /* bytes of body */
    const char *const *headers; /* "Name: value" lines */
    int nheaders;               /* entries in headers */
    double timeout;             /* seconds for the whole request; <= 0: none */
} rsgHttpClientRequest;

typedef struct rsgHttpClientResult {
    long status;         /* the answer's status, 0 when none came */
    const char *body;    /* the answer's body (valid during the callback) */
    size_t body_len;     /* bytes of body */
    const char *headers; /* the last response's header lines, CRLF-separated */
    size_t headers_len;  /* bytes of headers */
    const char *error;   /* NULL, or why no answer came */
    int unreachable;     /* no connection to the server could be made */
} rsgHttpClientResult;

/* Called once per request, with the answer or the reason there is none. */
typedef void rsgHttpClientDone(void *ud, const rsgHttpClientResult *res);

typedef struct rsgHttpClient {
    uv_loop_t *loop;                  /* where the sockets and the timer live */
    void *multi;                      /* CURLM *, NULL until the first request */
    uv_timer_t *timer;                /* curl's timeout; freed in its close callback */
    rsgHttpClientTransfer *transfers; /* requests under way (a list, to abort at close) */
    int closed;                       /* rsgHttpClientClose ran: no new requests */
} rsgHttpClient;

/* Prepares an idle client on loop; opens nothing yet. */
void rsgHttpClientInit(rsgHttpClient *h, uv_loop_t *loop);

/* Starts req (its strings are copied). done(ud, res) follows later, from the
 * loop, never from inside this call. Returns 0, or -1 with err when the
 * request cannot be started (bad method or options, out of memory, closed). */
int rsgHttpClientStart(rsgHttpClient *h, const rsgHttpClientRequest *req, rsgHttpClientDone *done,
                       void *ud, char *err, size_t errlen);

/* Aborts every request under way (each done gets an error) and closes the
 * client's handles; the loop frees them. */
void rsgHttpClientClose(rsgHttpClient *h);

#endif
