/* Unit tests of http_client.c and pg.c on a real libuv loop: an answer from
 * a server on the same loop arrives with its status, body and headers; a
 * request or a query still waiting when the client closes is told so, once;
 * and the loop closes cleanly afterwards (every handle closed and freed). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "http_client.h"
#include "pg.h"
#include "test.h"

/* A server on the loop that answers every connection with one fixed response. */
typedef struct {
    uv_tcp_t tcp;
    int port;
} server;

static const char RESPONSE[] = "HTTP/1.1 201 Created\r\nContent-Length: 2\r\nX-A: b\r\n"
                               "Connection: close\r\n\r\nhi";

static void freeHandle(uv_handle_t *h) {
    free(h);
}

static void onWritten(uv_write_t *w, int status) {
    (void)status;
    /* Closing right after the write: curl reads the whole answer first. */
    uv_close((uv_handle_t *)w->handle, freeHandle);
    free(w);
}

static void onAlloc(uv_handle_t *h, size_t size, uv_buf_t *buf) {
    (void)h;
    buf->base = malloc(size);
    buf->len = size;
}

static void onRead(uv_stream_t *client, ssize_t n, const uv_buf_t *buf) {
    free(buf->base);
    if (n < 0) {
        uv_close((uv_handle_t *)client, freeHandle);
        return;
    }
    /* The request ends with an empty line; answering on its first bytes is
     * enough for this client, which sends it in one piece. */
    if (n > 0) {
        uv_read_stop(client);
        uv_write_t *w = malloc(sizeof(*w));
        uv_buf_t out = uv_buf_init((char *)RESPONSE, sizeof(RESPONSE) - 1);
        uv_write(w, client, &out, 1, onWritten);
    }
}

static void onConnection(uv_stream_t *s, int status) {
    if (status < 0) return;
    uv_tcp_t *client = malloc(sizeof(*client));
    uv_tcp_init(s->loop, client);
    if (uv_accept(s, (uv_stream_t *)client) == 0)
        uv_read_start((uv_stream_t *)client, onAlloc, onRead);
    else
        uv_close((uv_handle_t *)client, freeHandle);
}

static int serverStart(server *s, uv_loop_t *loop) {
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", 0, &addr);
    uv_tcp_init(loop, &s->tcp);
    if (uv_tcp_bind(&s->tcp, (const struct sockaddr *)&addr, 0) != 0) return -1;
    if (uv_listen((uv_stream_t *)&s->tcp, 16, onConnection) != 0) return -1;
    int len = sizeof(addr);
    uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&addr, &len);
    s->port = ntohs(addr.sin_port);
    return 0;
}

/* A listening socket nobody accepts on: the kernel completes connections, so
 * a client connects, sends, and waits for ever. Returns the fd; *port set. */
static int silentListener(int *port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, len) != 0 || listen(fd, 16) != 0) return -1;
    getsockname(fd, (struct sockaddr *)&addr, &len);
    *port = ntohs(addr.sin_port);
    return fd;
}

typedef struct {
    int calls;
    long status;
    char body[64];
    char headers[512];
    char error[256];
    rsgHttpClient *close_after; /* closes this client from the callback */
    server *srv;                /* closes this server from the callback */
} httpSeen;

static void onHttp(void *ud, const rsgHttpClientResult *res) {
    httpSeen *s = ud;
    s->calls++;
    s->status = res->status;
    if (res->error) snprintf(s->error, sizeof(s->error), "%s", res->error);
    if (res->body) snprintf(s->body, sizeof(s->body), "%.*s", (int)res->body_len, res->body);
    if (res->headers)
        snprintf(s->headers, sizeof(s->headers), "%.*s", (int)res->headers_len, res->headers);
    if (s->close_after) rsgHttpClientClose(s->close_after);
    if (s->srv) uv_close((uv_handle_t *)&s->srv->tcp, NULL);
}

static void httpAnswer(void) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    server srv;
    CHECK(serverStart(&srv, &loop) == 0);
    rsgHttpClient h;
    rsgHttpClientInit(&h, &loop);
    char url[64], err[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", srv.port);
    const char *headers[] = {"X-Test: 1"};
    rsgHttpClientRequest req = {"POST", url, "body", 4, headers, 1, 10};
    httpSeen seen = {0};
    seen.close_after = &h;
    seen.srv = &srv;
    CHECK(rsgHttpClientStart(&h, &req, onHttp, &seen, err, sizeof(err)) == 0);
    CHECK(seen.calls == 0); /* never from inside the call */
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(seen.calls == 1);
    CHECK(seen.status == 201);
    CHECK_STR(seen.body, "hi");
    CHECK(strstr(seen.headers, "X-A: b\r\n") != NULL);
    CHECK(seen.error[0] == '\0');
    CHECK(uv_loop_close(&loop) == 0);
}

static void httpAbortedAtClose(void) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    int port;
    int fd = silentListener(&port);
    CHECK(fd >= 0);
    rsgHttpClient h;
    rsgHttpClientInit(&h, &loop);
    char url[64], err[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port);
    rsgHttpClientRequest req = {"GET", url, NULL, 0, NULL, 0, 0};
    httpSeen seen = {0};
    CHECK(rsgHttpClientStart(&h, &req, onHttp, &seen, err, sizeof(err)) == 0);
    /* Let it connect and send; the server never answers. */
    for (int i = 0; i < 20; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    CHECK(seen.calls == 0);
    rsgHttpClientClose(&h);
    CHECK(seen.calls == 1);
    CHECK(seen.status == 0);
    CHECK(strstr(seen.error, "stopping") != NULL);
    CHECK(rsgHttpClientStart(&h, &req, onHttp, &seen, err, sizeof(err)) == -1);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop) == 0);
    close(fd);
}

static void httpRefused(void) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    int port;
    int fd = silentListener(&port);
    close(fd); /* nothing listens there now */
    rsgHttpClient h;
    rsgHttpClientInit(&h, &loop);
    char url[64], err[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port);
    rsgHttpClientRequest req = {"GET", url, NULL, 0, NULL, 0, 5};
    httpSeen seen = {0};
    seen.close_after = &h;
    CHECK(rsgHttpClientStart(&h, &req, onHttp, &seen, err, sizeof(err)) == 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(seen.calls == 1);
    CHECK(seen.status == 0);
    CHECK(seen.error[0] != '\0');
    CHECK(uv_loop_close(&loop) == 0);
}

typedef struct {
    int calls;
    char error[256];
    int had_state;
} pgSeen;

static void onPg(void *ud, const PGresult *res, const char *err, const char *sqlstate) {
    pgSeen *s = ud;
    s->calls++;
    CHECK(res == NULL);
    if (err) snprintf(s->error, sizeof(s->error), "%s", err);
    s->had_state = sqlstate != NULL;
}

static void pgAbortedAtClose(void) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    int port;
    int fd = silentListener(&port);
    CHECK(fd >= 0);
    rsgPg pg;
    rsgPgInit(&pg, &loop);
    char conninfo[128], err[256];
    snprintf(conninfo, sizeof(conninfo), "host=127.0.0.1 port=%d dbname=x user=y", port);
    int id = rsgPgOpen(&pg, conninfo);
    CHECK(id == 1);
    pgSeen a = {0}, b = {0};
    const char *params[] = {"1", NULL};
    const int lens[] = {1, 0};
    CHECK(rsgPgQuery(&pg, id, "SELECT $1, $2", 2, params, lens, onPg, &a, err, sizeof(err)) == 0);
    CHECK(rsgPgQuery(&pg, id, "SELECT 1", 0, NULL, NULL, onPg, &b, err, sizeof(err)) == 0);
    CHECK(rsgPgQuery(&pg, 2, "SELECT 1", 0, NULL, NULL, onPg, &b, err, sizeof(err)) == -1);
    for (int i = 0; i < 20; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    CHECK(a.calls == 0 && b.calls == 0); /* still connecting: the server never answers */
    rsgPgClose(&pg);
    CHECK(a.calls == 1 && b.calls == 1);
    CHECK(strstr(a.error, "stopping") != NULL);
    CHECK(!a.had_state);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop) == 0);
    close(fd);
}

static void pgRefused(void) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    int port;
    int fd = silentListener(&port);
    close(fd);
    rsgPg pg;
    rsgPgInit(&pg, &loop);
    char conninfo[128], err[256];
    snprintf(conninfo, sizeof(conninfo), "host=127.0.0.1 port=%d dbname=x user=y", port);
    int id = rsgPgOpen(&pg, conninfo);
    pgSeen a = {0};
    CHECK(rsgPgQuery(&pg, id, "SELECT 1", 0, NULL, NULL, onPg, &a, err, sizeof(err)) == 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(a.calls == 1);
    CHECK(strstr(a.error, "connection to postgresql failed") == a.error);
    rsgPgClose(&pg);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop) == 0);
}

int main(void) {
    httpAnswer();
    httpAbortedAtClose();
    httpRefused();
    pgAbortedAtClose();
    pgRefused();
    TEST_DONE();
}
