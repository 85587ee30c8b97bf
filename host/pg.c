/* pg.c - see pg.h. */
#include "pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct pgQuery {
    struct pgQuery *next;
    char *sql;
    int n;         /* parameters */
    char **params; /* NULL entries are SQL NULLs; the others point into text */
    int *lens;
    char *text; /* every parameter's bytes, each NUL-terminated: one allocation */
    rsgPgDone *done;
    void *ud;
} pgQuery;

typedef enum { PG_DOWN, PG_CONNECTING, PG_IDLE, PG_BUSY } pgState;

/* A poll handle lives on its own: a reconnect may get a new socket while the
 * old handle is still closing. */
typedef struct pgPoll {
    uv_poll_t poll;
    rsgPgConn *c; /* NULL once closing */
} pgPoll;

struct rsgPgConn {
    rsgPg *pg;
    char *conninfo;
    PGconn *conn; /* NULL while down */
    pgPoll *poll; /* the watch on PQsocket, NULL while down */
    int fd;       /* the socket poll watches */
    pgState state;
    pgQuery *head, *tail; /* head is the query under way when BUSY */
    PGresult *result;     /* the running query's result so far */
    int flushing;         /* PQflush still has bytes to send */
};

static void freeQuery(pgQuery *q) {
    free(q->text);
    free(q->params);
    free(q->lens);
    free(q->sql);
    free(q);
}

static void freePoll(uv_handle_t *h) {
    free(h->data);
}

static void stopPoll(rsgPgConn *c) {
    if (!c->poll) return;
    c->poll->c = NULL;
    uv_poll_stop(&c->poll->poll);
    uv_close((uv_handle_t *)&c->poll->poll, freePoll);
    c->poll = NULL;
}

static void onPoll(uv_poll_t *h, int status, int events);

/* Watches the connection's current socket for events (it may have changed
 * during PQconnectPoll). Returns 0, or -1 when libuv refuses it. */
static int watch(rsgPgConn *c, int events) {
    int fd = PQsocket(c->conn);
    if (c->poll && c->fd != fd) stopPoll(c);
    if (!c->poll) {
        pgPoll *p = calloc(1, sizeof(*p));
        if (!p) return -1;
        if (uv_poll_init_socket(c->pg->loop, &p->poll, fd) != 0) {
            free(p);
            return -1;
        }
        p->poll.data = p;
        p->c = c;
        c->poll = p;
        c->fd = fd;
    }
    return uv_poll_start(&c->poll->poll, events, onPoll) == 0 ? 0 : -1;
}

/* The connection is gone: fail the query under way and every queued one
 * with why (sqlstate NULL: the server gave no verdict). */
static void down(rsgPgConn *c, const char *why) {
    char msg[1024];
    snprintf(msg, sizeof(msg), "%s", why);
    /* libpq's messages end with a newline; the log line should not. */
    size_t len = strlen(msg);
    while (len && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
        msg[--len] = '\0';
    stopPoll(c);
    if (c->conn) PQfinish(c->conn);
    c->conn = NULL;
    if (c->result) PQclear(c->result);
    c->result = NULL;
    c->state = PG_DOWN;
    c->flushing = 0;
    /* Detached first: a done that queues again starts a fresh queue. */
    pgQuery *q = c->head;
    c->head = c->tail = NULL;
    while (q) {
        pgQuery *next = q->next;
        q->done(q->ud, NULL, msg, NULL);
        freeQuery(q);
        q = next;
    }
}

static void lost(rsgPgConn *c, const char *what) {
    char why[1024];
    snprintf(why, sizeof(why), "%s: %s", what, c->conn ? PQerrorMessage(c->conn) : "");
    down(c, why);
}

static void kick(rsgPgConn *c);

/* Starts connecting; queries wait until it is up. */
static void connectStart(rsgPgConn *c) {
    c->conn = PQconnectStart(c->conninfo);
    if (!c->conn) return down(c, "connection to postgresql failed: out of memory");
    if (PQstatus(c->conn) == CONNECTION_BAD) return lost(c, "connection to postgresql failed");
    c->state = PG_CONNECTING;
    /* libpq's rule: before the first PQconnectPoll, wait as if it had said
     * PGRES_POLLING_WRITING. */
    if (watch(c, UV_WRITABLE) != 0)
        lost(c, "connection to postgresql failed: cannot watch its socket");
}

static void connectStep(rsgPgConn *c) {
    switch (PQconnectPoll(c->conn)) {
        case PGRES_POLLING_READING:
            if (watch(c, UV_READABLE) != 0) lost(c, "connection to postgresql failed");
            return;
        case PGRES_POLLING_WRITING:
            if (watch(c, UV_WRITABLE) != 0) lost(c, "connection to postgresql failed");
            return;
        case PGRES_POLLING_OK:
            /* Nonblocking: PQsendQueryParams never waits for the socket;
             * PQflush finishes a large query as the socket drains. */
            PQsetnonblocking(c->conn, 1);
            c->state = PG_IDLE;
            /* Watching an idle connection finds a server that went away. */
            if (watch(c, UV_READABLE) != 0) return lost(c, "connection to postgresql failed");
            return kick(c);
        default:
            return lost(c, "connection to postgresql failed");
    }
}

/* The query under way has all its results: tell its owner, run the next. */
static void queryDone(rsgPgConn *c) {
    pgQuery *q = c->head;
    c->head = q->next;
    if (!c->head) c->tail = NULL;
    PGresult *res = c->result;
    c->result = NULL;
    c->state = PG_IDLE;
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK || st == PGRES_EMPTY_QUERY) {
        q->done(q->ud, res, NULL, NULL);
    } else if (res && st == PGRES_FATAL_ERROR) {
        char msg[1024];
        const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
        snprintf(msg, sizeof(msg), "%s", primary ? primary : PQresultErrorMessage(res));
        q->done(q->ud, NULL, msg, PQresultErrorField(res, PG_DIAG_SQLSTATE));
    } else {
        char msg[256];
        snprintf(msg, sizeof(msg),
                 "unsupported result from postgresql (%s): COPY and other "
                 "streaming statements cannot be run through rsghost.pg",
                 PQresStatus(st));
        q->done(q->ud, NULL, msg, NULL);
    }
    if (res) PQclear(res);
    freeQuery(q);
}

/* Reads what arrived; completes the query under way once libpq has it all. */
static void readResults(rsgPgConn *c) {
    if (!PQconsumeInput(c->conn)) return lost(c, "connection to postgresql lost");
    while (c->state == PG_BUSY && !PQisBusy(c->conn)) {
        PGresult *r = PQgetResult(c->conn);
        if (!r) {
            queryDone(c);
            if (c->state == PG_IDLE) kick(c);
            return;
        }
        /* Several statements give several results: keep the first error,
         * else the last result. */
        if (c->result && PQresultStatus(c->result) == PGRES_FATAL_ERROR) {
            PQclear(r);
        } else {
            if (c->result) PQclear(c->result);
            c->result = r;
        }
    }
    if (c->state == PG_IDLE) {
        /* Notices and the like: nothing to do. A server that closed the
         * connection shows as an error on the next query. */
        PGresult *r;
        while (!PQisBusy(c->conn) && (r = PQgetResult(c->conn)))
            PQclear(r);
    }
}

static void onPoll(uv_poll_t *h, int status, int events) {
    pgPoll *p = h->data;
    rsgPgConn *c = p->c;
    if (!c) return;
    if (c->state == PG_CONNECTING) return connectStep(c);
    if (status < 0) return lost(c, "connection to postgresql lost");
    if ((events & UV_WRITABLE) && c->flushing) {
        int r = PQflush(c->conn);
        if (r < 0) return lost(c, "connection to postgresql lost");
        c->flushing = r == 1;
        if (watch(c, c->flushing ? UV_READABLE | UV_WRITABLE : UV_READABLE) != 0)
            return lost(c, "connection to postgresql lost");
    }
    if (events & UV_READABLE) {
        readResults(c);
        /* An idle connection that reads EOF is gone: say so now, so the next
         * query reconnects instead of failing. */
        if (c->state == PG_IDLE && PQstatus(c->conn) == CONNECTION_BAD)
            lost(c, "connection to postgresql lost");
    }
}

/* Sends the next queued query when the connection can take it, or starts
 * connecting. */
static void kick(rsgPgConn *c) {
    if (!c->head) return;
    if (c->state == PG_DOWN) return connectStart(c);
    if (c->state != PG_IDLE) return;
    pgQuery *q = c->head;
    if (!PQsendQueryParams(c->conn, q->sql, q->n, NULL, (const char *const *)q->params, q->lens,
                           NULL, 0))
        return lost(c, "connection to postgresql lost");
    c->state = PG_BUSY;
    int r = PQflush(c->conn);
    if (r < 0) return lost(c, "connection to postgresql lost");
    c->flushing = r == 1;
    if (watch(c, c->flushing ? UV_READABLE | UV_WRITABLE : UV_READABLE) != 0)
        lost(c, "connection to postgresql lost");
}

void rsgPgInit(rsgPg *pg, uv_loop_t *loop) {
    memset(pg, 0, sizeof(*pg));
    pg->loop = loop;
}

int rsgPgOpen(rsgPg *pg, const char *conninfo) {
    rsgPgConn **conns = realloc(pg->conns, sizeof(*conns) * (size_t)(pg->nconns + 1));
    if (!conns) return -1;
    pg->conns = conns;
    rsgPgConn *c = calloc(1, sizeof(*c));
    if (!c || !(c->conninfo = strdup(conninfo))) {
        free(c);
        return -1;
    }
    c->pg = pg;
    c->state = PG_DOWN;
    conns[pg->nconns++] = c;
    return pg->nconns;
}

int rsgPgQuery(rsgPg *pg, int id, const char *sql, int n, const char *const *params,
               const int *lens, rsgPgDone *done, void *ud, char *err, size_t errlen) {
    if (pg->closed) {
        snprintf(err, errlen, "rsghost is stopping: no new postgresql queries");
        return -1;
    }
    if (id < 1 || id > pg->nconns) {
        snprintf(err, errlen, "no postgresql connection %d", id);
        return -1;
    }
    rsgPgConn *c = pg->conns[id - 1];
    pgQuery *q = calloc(1, sizeof(*q));
    if (!q) goto oom;
    q->done = done;
    q->ud = ud;
    q->sql = strdup(sql);
    q->params = calloc((size_t)(n ? n : 1), sizeof(char *));
    q->lens = calloc((size_t)(n ? n : 1), sizeof(int));
    if (!q->sql || !q->params || !q->lens) goto oom;
    /* A batch's INSERT has thousands of parameters: one copy of them all. */
    size_t total = 1;
    for (int i = 0; i < n; i++)
        if (params[i]) total += (size_t)lens[i] + 1;
    q->text = malloc(total);
    if (!q->text) goto oom;
    char *p = q->text;
    for (int i = 0; i < n; i++) {
        if (!params[i]) continue;
        memcpy(p, params[i], (size_t)lens[i]);
        p[lens[i]] = '\0';
        q->params[i] = p;
        q->lens[i] = lens[i];
        p += (size_t)lens[i] + 1;
    }
    q->n = n;
    if (c->tail)
        c->tail->next = q;
    else
        c->head = q;
    c->tail = q;
    kick(c);
    return 0;
oom:
    if (q) freeQuery(q);
    snprintf(err, errlen, "out of memory queueing a postgresql query");
    return -1;
}

void rsgPgClose(rsgPg *pg) {
    if (pg->closed) return;
    pg->closed = 1;
    for (int i = 0; i < pg->nconns; i++) {
        rsgPgConn *c = pg->conns[i];
        down(c, "rsghost is stopping: the query was abandoned");
        free(c->conninfo);
        free(c);
    }
    free(pg->conns);
    pg->conns = NULL;
    pg->nconns = 0;
}
