/* pg.h - PostgreSQL connections on the host's libuv loop, for the script's
 * sinks (rsghost.pg).
 *
 * libpq's asynchronous API (PQconnectStart/PQconnectPoll, PQsendQueryParams,
 * PQconsumeInput/PQisBusy/PQgetResult) with a uv_poll on PQsocket, so a slow
 * query never blocks reads, acks or claims. A connection runs one query at a
 * time (libpq's rule); the others wait in its queue. It connects on its
 * first query, and after a failure or a loss on the next query: a lost
 * connection fails the query under way and everything queued (the sink
 * raises and its retry reconnects), it never retries by itself. */
#ifndef RSG_PG_H
#define RSG_PG_H

#include <libpq-fe.h>
#include <uv.h>

typedef struct rsgPgConn rsgPgConn;

/* A query's end: res on success (PGRES_TUPLES_OK or PGRES_COMMAND_OK, valid
 * during the call), else err with sqlstate (the server's SQLSTATE, or NULL
 * when the connection failed or was lost: no server verdict). */
typedef void rsgPgDone(void *ud, const PGresult *res, const char *err, const char *sqlstate);

typedef struct rsgPg {
    uv_loop_t *loop;   /* where the connections' polls live */
    rsgPgConn **conns; /* by id - 1 */
    int nconns;        /* entries in conns */
    int closed;        /* rsgPgClose ran: no new queries */
} rsgPg;

/* Prepares an empty set of connections on loop. */
void rsgPgInit(rsgPg *pg, uv_loop_t *loop);

/* A new connection for conninfo (copied), not yet connected. Returns its id
 * (>= 1), or -1 out of memory. */
int rsgPgOpen(rsgPg *pg, const char *conninfo);

/* Queues sql with n text parameters (NULL: SQL NULL; all copied) on
 * connection id. done follows later, from the loop; from inside this
 * call unless the connection cannot even be started. Returns 0, or -1
 * with err (unknown id, out of memory, closed). */
int rsgPgQuery(rsgPg *pg, int id, const char *sql, int n, const char *const *params,
               const int *lens, rsgPgDone *done, void *ud, char *err, size_t errlen);

/* Fails every query waiting (done gets an error) and closes every
 * connection; the loop frees their handles. */
void rsgPgClose(rsgPg *pg);

#endif
