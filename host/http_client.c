/* http_client.c - see http_client.h. */
#include "http_client.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A growing byte buffer for a body or the header block. */
typedef struct buf {
    char *p;
    size_t len, cap;
} buf;

struct rsgHttpClientTransfer {
    rsgHttpClient *h;           /* the client it belongs to */
    CURL *easy;                 /* curl's handle for it */
    struct curl_slist *headers; /* the request's header lines */
    buf body;                   /* the answer's body */
    buf head;                   /* the last response's header lines */
    rsgHttpClientDone *done;    /* told once, then the transfer is freed */
    void *ud;
    char errbuf[CURL_ERROR_SIZE];       /* curl's detailed reason */
    rsgHttpClientTransfer *prev, *next; /* in h->transfers */
};

/* One socket curl asked us to watch; freed in its poll's close callback. */
typedef struct sockWatch {
    uv_poll_t poll;
    curl_socket_t fd;
    rsgHttpClient *h;
} sockWatch;

static int bufAdd(buf *b, const char *p, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) return -1;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static size_t onBody(char *p, size_t size, size_t n, void *ud) {
    rsgHttpClientTransfer *t = ud;
    /* Returning less than given makes curl fail the transfer (out of memory). */
    return bufAdd(&t->body, p, size * n) == 0 ? size * n : 0;
}

/* Header lines arrive one per call. A new status line starts a new response
 * (after a 100 Continue, say): only the last response's lines are kept. */
static size_t onHeader(char *p, size_t size, size_t n, void *ud) {
    rsgHttpClientTransfer *t = ud;
    size_t len = size * n;
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) t->head.len = 0;
    return bufAdd(&t->head, p, len) == 0 ? len : 0;
}

/* Takes t off h->transfers (once; a second call does nothing). */
static void unlink_(rsgHttpClientTransfer *t) {
    rsgHttpClient *h = t->h;
    if (t->prev)
        t->prev->next = t->next;
    else if (h->transfers == t)
        h->transfers = t->next;
    if (t->next) t->next->prev = t->prev;
    t->prev = t->next = NULL;
}

static void freeTransfer(rsgHttpClientTransfer *t) {
    rsgHttpClient *h = t->h;
    unlink_(t);
    if (t->easy) {
        if (h->multi) curl_multi_remove_handle(h->multi, t->easy);
        curl_easy_cleanup(t->easy);
    }
    curl_slist_free_all(t->headers);
    free(t->body.p);
    free(t->head.p);
    free(t);
}

/* Tells the transfer's owner how it ended, then frees it. */
static void finish(rsgHttpClientTransfer *t, CURLcode code) {
    rsgHttpClientResult res;
    memset(&res, 0, sizeof(res));
    if (code == CURLE_OK) {
        curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &res.status);
        res.body = t->body.p ? t->body.p : "";
        res.body_len = t->body.len;
        res.headers = t->head.p ? t->head.p : "";
        res.headers_len = t->head.len;
    } else {
        res.error = t->errbuf[0] ? t->errbuf : curl_easy_strerror(code);
        res.unreachable = code == CURLE_COULDNT_CONNECT || code == CURLE_COULDNT_RESOLVE_HOST ||
                          code == CURLE_COULDNT_RESOLVE_PROXY;
    }
    /* Unlinked first: done may start new requests or close h, and a close
     * must not tell this transfer's owner a second time. */
    unlink_(t);
    t->done(t->ud, &res);
    freeTransfer(t);
}

/* Hands finished transfers to their owners. */
static void checkDone(rsgHttpClient *h) {
    CURLMsg *msg;
    int left;
    while (h->multi && (msg = curl_multi_info_read(h->multi, &left))) {
        if (msg->msg != CURLMSG_DONE) continue;
        rsgHttpClientTransfer *t = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
        finish(t, msg->data.result);
    }
}

static void onPoll(uv_poll_t *poll, int status, int events) {
    sockWatch *w = poll->data;
    rsgHttpClient *h = w->h;
    int flags = 0;
    if (status < 0) flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
    int running;
    curl_multi_socket_action(h->multi, w->fd, flags, &running);
    checkDone(h);
}

static void onTimer(uv_timer_t *timer) {
    rsgHttpClient *h = timer->data;
    int running;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    checkDone(h);
}

static void freeWatch(uv_handle_t *handle) {
    free(handle->data);
}

/* CURLMOPT_SOCKETFUNCTION: watch s for what curl waits on, or stop. */
static int onSocket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp) {
    (void)easy;
    rsgHttpClient *h = userp;
    sockWatch *w = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (w) {
            uv_poll_stop(&w->poll);
            uv_close((uv_handle_t *)&w->poll, freeWatch);
            curl_multi_assign(h->multi, s, NULL);
        }
        return 0;
    }
    if (!w) {
        w = calloc(1, sizeof(*w));
        if (!w) return -1;
        w->fd = s;
        w->h = h;
        if (uv_poll_init_socket(h->loop, &w->poll, s) != 0) {
            free(w);
            return -1;
        }
        w->poll.data = w;
        curl_multi_assign(h->multi, s, w);
    }
    int events = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) events |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) events |= UV_WRITABLE;
    uv_poll_start(&w->poll, events, onPoll);
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: wake curl after timeout_ms (-1: never). */
static int onTimeout(CURLM *multi, long timeout_ms, void *userp) {
    (void)multi;
    rsgHttpClient *h = userp;
    if (timeout_ms < 0)
        uv_timer_stop(h->timer);
    else
        uv_timer_start(h->timer, onTimer, (uint64_t)timeout_ms, 0);
    return 0;
}

void rsgHttpClientInit(rsgHttpClient *h, uv_loop_t *loop) {
    memset(h, 0, sizeof(*h));
    h->loop = loop;
}

/* The multi handle and its timer, on first use. Returns 0 or -1. */
static int openMulti(rsgHttpClient *h, char *err, size_t errlen) {
    if (h->multi) return 0;
    /* Not thread-safe, and the host has one thread: once, here. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, errlen, "cannot initialise libcurl");
        return -1;
    }
    h->timer = malloc(sizeof(*h->timer));
    CURLM *multi = curl_multi_init();
    if (!h->timer || !multi) {
        free(h->timer);
        h->timer = NULL;
        if (multi) curl_multi_cleanup(multi);
        snprintf(err, errlen, "out of memory starting an HTTP request");
        return -1;
    }
    uv_timer_init(h->loop, h->timer);
    h->timer->data = h;
    curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, onSocket);
    curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, onTimeout);
    curl_multi_setopt(multi, CURLMOPT_TIMERDATA, h);
    h->multi = multi;
    return 0;
}

int rsgHttpClientStart(rsgHttpClient *h, const rsgHttpClientRequest *req, rsgHttpClientDone *done,
                       void *ud, char *err, size_t errlen) {
    if (h->closed) {
        snprintf(err, errlen, "rsghost is stopping: no new HTTP requests");
        return -1;
    }
    if (openMulti(h, err, errlen) != 0) return -1;
    rsgHttpClientTransfer *t = calloc(1, sizeof(*t));
    if (!t || !(t->easy = curl_easy_init())) {
        free(t);
        snprintf(err, errlen, "out of memory starting an HTTP request");
        return -1;
    }
    t->h = h;
    t->done = done;
    t->ud = ud;
    t->next = h->transfers;
    if (t->next) t->next->prev = t;
    h->transfers = t;
    CURL *e = t->easy;
    CURLcode rc = CURLE_OK;
    /* curl's "Expect: 100-continue" before a large body would wait up to a
     * second for servers that never send 100; the body goes at once. */
    t->headers = curl_slist_append(NULL, "Expect:");
    for (int i = 0; i < req->nheaders && t->headers; i++)
        t->headers = curl_slist_append(t->headers, req->headers[i]);
    if (!t->headers) {
        snprintf(err, errlen, "out of memory starting an HTTP request");
        goto err;
    }
    rc |= curl_easy_setopt(e, CURLOPT_URL, req->url);
    rc |= curl_easy_setopt(e, CURLOPT_PRIVATE, t);
    rc |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf);
    rc |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    rc |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, onBody);
    rc |= curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
    rc |= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, onHeader);
    rc |= curl_easy_setopt(e, CURLOPT_HEADERDATA, t);
    rc |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
    rc |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    if (req->body) {
        rc |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        rc |= curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, req->body);
    }
    if (strcmp(req->method, "HEAD") == 0)
        rc |= curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    else if (strcmp(req->method, "GET") != 0 || req->body)
        rc |= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
    if (req->timeout > 0)
        rc |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(req->timeout * 1000 + 0.5));
    if (rc != CURLE_OK) {
        snprintf(err, errlen, "cannot set up the HTTP request (libcurl lacks an option)");
        goto err;
    }
    CURLMcode mc = curl_multi_add_handle(h->multi, e);
    if (mc != CURLM_OK) {
        snprintf(err, errlen, "cannot start the HTTP request: %s", curl_multi_strerror(mc));
        goto err;
    }
    return 0;
err:
    curl_easy_cleanup(t->easy);
    t->easy = NULL;
    freeTransfer(t);
    return -1;
}

static void freeTimer(uv_handle_t *handle) {
    free(handle);
}

void rsgHttpClientClose(rsgHttpClient *h) {
    if (h->closed) return;
    h->closed = 1;
    while (h->transfers) {
        rsgHttpClientTransfer *t = h->transfers;
        snprintf(t->errbuf, sizeof(t->errbuf), "rsghost is stopping: the request was abandoned");
        finish(t, CURLE_ABORTED_BY_CALLBACK);
    }
    if (h->multi) {
        /* Closes curl's kept connections: their watches get CURL_POLL_REMOVE. */
        curl_multi_cleanup(h->multi);
        h->multi = NULL;
        uv_close((uv_handle_t *)h->timer, freeTimer);
        h->timer = NULL;
        curl_global_cleanup();
    }
}
