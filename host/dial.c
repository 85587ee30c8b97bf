/* dial.c - see dial.h. */
#include "dial.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "tls.h"

redisReply *rsgDialCall(redisContext *c, int argc, const char **argv, const size_t *lens, char *err,
                        size_t errlen) {
    redisReply *r = redisCommandArgv(c, argc, argv, lens);
    if (!r) {
        snprintf(err, errlen, "%s: %s", argv[0], c->errstr[0] ? c->errstr : "connection lost");
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "%s", r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

/* Where to connect, and as whom: the master of a URL, or one sentinel. */
typedef struct dialTarget {
    const char *host;     /* TCP host, NULL with path */
    int port;             /* TCP port */
    const char *path;     /* unix socket, or NULL */
    int tls;              /* TLS on the connection */
    const char *user;     /* AUTH user, or NULL */
    const char *password; /* AUTH password, or NULL: no AUTH */
    int db;               /* SELECT db when not 0 */
    const char *where;    /* its name in error messages (no password) */
} dialTarget;

/* Connects to d, with TLS, AUTH and SELECT as it says. Returns the
 * connection, or NULL with a reason in err. */
static redisContext *dial(const dialTarget *d, char *err, size_t errlen) {
    char why[512];
    struct timeval tv = {10, 0};
    redisContext *c = d->path ? redisConnectUnixWithTimeout(d->path, tv)
                              : redisConnectWithTimeout(d->host, d->port, tv);
    if (!c) {
        snprintf(err, errlen, "cannot connect to %s: out of memory", d->where);
        return NULL;
    }
    if (c->err) {
        snprintf(err, errlen, "cannot connect to %s: %s", d->where, c->errstr);
        goto fail;
    }
    if (d->tls && rsgTlsAttach(c, d->host, why, sizeof(why)) != 0) {
        /* The handshake ran inside rsgTlsAttach (a blocking context): the
         * line rsgTlsFailure writes says which certificate was refused and
         * what to do, as a run's log does; otherwise hiredis's reason. */
        char line[512];
        if (rsgTlsFailure(c, d->where, line, sizeof(line)) != RSG_TLS_NONE)
            snprintf(err, errlen, "%s", line);
        else
            snprintf(err, errlen, "cannot connect to %s: %s", d->where, why);
        goto fail;
    }
    if (d->password) {
        const char *argv[3] = {"AUTH", d->user ? d->user : d->password, d->password};
        redisReply *r = rsgDialCall(c, d->user ? 3 : 2, argv, NULL, why, sizeof(why));
        if (!r) {
            snprintf(err, errlen, "AUTH at %s failed: %s", d->where, why);
            goto fail;
        }
        freeReplyObject(r);
    }
    if (d->db) {
        char db[16];
        snprintf(db, sizeof(db), "%d", d->db);
        const char *argv[2] = {"SELECT", db};
        redisReply *r = rsgDialCall(c, 2, argv, NULL, why, sizeof(why));
        if (!r) {
            snprintf(err, errlen, "SELECT %s at %s failed: %s", db, d->where, why);
            goto fail;
        }
        freeReplyObject(r);
    }
    return c;
fail:
    redisFree(c);
    return NULL;
}

/* Asks u's sentinels, in order, where the master is, as sentinel.c does
 * for a run (their own credentials, TLS with rediss+sentinel://). Returns 0
 * with the master's address in host (hostlen bytes) and *port, or -1 with
 * every sentinel's reason in err. */
static int askSentinels(const rsgRedisUrl *u, char *host, size_t hostlen, int *port, char *err,
                        size_t errlen) {
    size_t used = 0;
    err[0] = '\0';
    for (int i = 0; i < u->nsentinels; i++) {
        char where[300], why[768];
        snprintf(where, sizeof(where), "sentinel %s:%d", u->sentinels[i].host,
                 u->sentinels[i].port);
        dialTarget d = {u->sentinels[i].host, u->sentinels[i].port, NULL, u->tls,
                        u->sentinel_user,     u->sentinel_password, 0,    where};
        redisContext *c = dial(&d, why, sizeof(why));
        if (c) {
            const char *argv[3] = {"SENTINEL", "get-master-addr-by-name", u->master};
            redisReply *r = rsgDialCall(c, 3, argv, NULL, why, sizeof(why));
            if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                r->element[0]->type == REDIS_REPLY_STRING &&
                r->element[1]->type == REDIS_REPLY_STRING) {
                snprintf(host, hostlen, "%s", r->element[0]->str);
                *port = atoi(r->element[1]->str);
                freeReplyObject(r);
                redisFree(c);
                return 0;
            }
            if (r) {
                snprintf(why, sizeof(why), "%s does not know master '%s'", where, u->master);
                freeReplyObject(r);
            }
            redisFree(c);
        }
        int n = snprintf(err + used, errlen - used, "%s%s", used ? "; " : "", why);
        if (n > 0) used += (size_t)n < errlen - used ? (size_t)n : errlen - used - 1;
    }
    return -1;
}

redisContext *rsgDialMaster(const rsgRedisUrl *u, char *err, size_t errlen) {
    char where[512], host[256];
    rsgUrlFormat(u, where, sizeof(where));
    dialTarget d = {u->host, u->port, u->path, u->tls, u->user, u->password, u->db, where};
    if (u->nsentinels) {
        char why[1024];
        if (askSentinels(u, host, sizeof(host), &d.port, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "no sentinel of %s told where master '%s' is: %s", where,
                     u->master, why);
            return NULL;
        }
        d.host = host;
        size_t l = strlen(where);
        snprintf(where + l, sizeof(where) - l, " (master at %s:%d)", host, d.port);
    }
    return dial(&d, err, errlen);
}
