/* dial.c - see dial.h. */
#include "dial.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "cluster_map.h"
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

/* A cluster's first seed that answers, with every seed's reason in err
 * when none does. */
static redisContext *dialSeed(const rsgRedisUrl *u, char *err, size_t errlen) {
    size_t used = 0;
    err[0] = '\0';
    for (int i = 0; i < u->nseeds; i++) {
        char where[300], why[768];
        snprintf(where, sizeof(where), "cluster node %s:%d", u->seeds[i].host, u->seeds[i].port);
        dialTarget d = {u->seeds[i].host, u->seeds[i].port, NULL, u->tls,
                        u->user,          u->password,      0,    where};
        redisContext *c = dial(&d, why, sizeof(why));
        if (c) return c;
        int n = snprintf(err + used, errlen - used, "%s%s", used ? "; " : "", why);
        if (n > 0) used += (size_t)n < errlen - used ? (size_t)n : errlen - used - 1;
    }
    return NULL;
}

redisContext *rsgDialMaster(const rsgRedisUrl *u, char *err, size_t errlen) {
    char where[512], host[256];
    if (u->cluster) return dialSeed(u, err, errlen);
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

/* ---- A session: one server, or a cluster routed by key slot ---- */

#define DIAL_HOPS 5 /* redirections one command may follow, as cluster.c */

typedef struct dialNode {
    char *host;
    int port;
    redisContext *c; /* NULL until first needed, or after a loss */
} dialNode;

struct rsgDialer {
    const rsgRedisUrl *u;
    redisContext *one; /* not a cluster: the master's connection */
    rsgClusterMap map; /* a cluster: the last map learnt */
    dialNode *nodes;   /* a cluster: connections by address */
    int nnodes;
};

/* The session's connection to host:port, dialled when it has none.
 * Returns it, or NULL with a reason in err. */
static redisContext *nodeConn(rsgDialer *d, const char *host, int port, char *err, size_t errlen) {
    dialNode *n = NULL;
    for (int i = 0; i < d->nnodes && !n; i++)
        if (d->nodes[i].port == port && strcmp(d->nodes[i].host, host) == 0) n = &d->nodes[i];
    if (!n) {
        dialNode *grown = realloc(d->nodes, sizeof(*grown) * (size_t)(d->nnodes + 1));
        char *h = strdup(host);
        if (!grown || !h) {
            if (grown) d->nodes = grown;
            free(h);
            snprintf(err, errlen, "out of memory");
            return NULL;
        }
        d->nodes = grown;
        n = &d->nodes[d->nnodes++];
        *n = (dialNode){h, port, NULL};
    }
    if (!n->c) {
        char where[300];
        snprintf(where, sizeof(where), "cluster node %s:%d", host, port);
        dialTarget t = {host, port, NULL, d->u->tls, d->u->user, d->u->password, 0, where};
        n->c = dial(&t, err, errlen);
    }
    return n->c;
}

/* Forgets the connection c after a loss: the next command dials again. */
static void dropConn(rsgDialer *d, redisContext *c) {
    for (int i = 0; i < d->nnodes; i++)
        if (d->nodes[i].c == c) d->nodes[i].c = NULL;
    redisFree(c);
}

/* Learns the map from host:port. Returns 0, or -1 with a reason in err. */
static int learnMap(rsgDialer *d, const char *host, int port, char *err, size_t errlen) {
    char why[512];
    redisContext *c = nodeConn(d, host, port, err, errlen);
    if (!c) return -1;
    const char *argv[] = {"CLUSTER", "SLOTS"};
    redisReply *r = rsgDialCall(c, 2, argv, NULL, why, sizeof(why));
    if (!r) {
        snprintf(err, errlen, "%s:%d: %s", host, port, why);
        if (c->err) dropConn(d, c);
        return -1;
    }
    rsgClusterMap m;
    int rc = rsgClusterMapFromSlots(&m, r, host, why, sizeof(why));
    freeReplyObject(r);
    if (rc != 0) {
        snprintf(err, errlen, "%s:%d: %s", host, port, why);
        return -1;
    }
    rsgClusterMapFree(&d->map);
    d->map = m;
    return 0;
}

rsgDialer *rsgDialOpen(const rsgRedisUrl *u, char *err, size_t errlen) {
    rsgDialer *d = calloc(1, sizeof(*d));
    if (!d) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    d->u = u;
    for (int s = 0; s < RSG_CLUSTER_SLOTS; s++)
        d->map.owner[s] = -1;
    if (!u->cluster) {
        if ((d->one = rsgDialMaster(u, err, errlen))) return d;
        free(d);
        return NULL;
    }
    /* Each seed in turn, as the run's router does; every reason is kept. */
    size_t used = 0;
    err[0] = '\0';
    for (int i = 0; i < u->nseeds; i++) {
        char why[768];
        if (learnMap(d, u->seeds[i].host, u->seeds[i].port, why, sizeof(why)) == 0) return d;
        int n = snprintf(err + used, errlen - used, "%s%s",
                         used ? "; " : "no seed of the cluster told its slot map: ", why);
        if (n > 0) used += (size_t)n < errlen - used ? (size_t)n : errlen - used - 1;
    }
    rsgDialClose(d);
    return NULL;
}

redisReply *rsgDialerCall(rsgDialer *d, int argc, const char **argv, const size_t *lens, char *err,
                          size_t errlen) {
    if (d->one) return rsgDialCall(d->one, argc, argv, lens, err, errlen);
    char *cmd = NULL;
    long long len = redisFormatCommandArgv(&cmd, argc, argv, lens);
    if (len < 0 || !cmd) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    int slot = rsgClusterCommandSlot(cmd, (size_t)len);
    redisFreeCommand(cmd);
    /* A keyless command goes to any master: the first one of the map. */
    int k = slot >= 0 ? rsgClusterMapOwner(&d->map, slot) : -1;
    for (int i = 0; slot < 0 && k < 0 && i < d->map.nnodes; i++)
        if (d->map.nodes[i].master) k = i;
    if (k < 0) {
        snprintf(err, errlen, "%s: no master of the cluster serves slot %d", argv[0], slot);
        return NULL;
    }
    char host[256];
    int port = d->map.nodes[k].port, asking = 0;
    snprintf(host, sizeof(host), "%s", d->map.nodes[k].host);
    for (int hops = 0;; hops++) {
        redisContext *c = nodeConn(d, host, port, err, errlen);
        if (!c) return NULL;
        if (asking) {
            const char *a[] = {"ASKING"};
            redisReply *ok = rsgDialCall(c, 1, a, NULL, err, errlen);
            if (!ok) return NULL;
            freeReplyObject(ok);
        }
        redisReply *r = redisCommandArgv(c, argc, argv, lens);
        if (!r) {
            snprintf(err, errlen, "%s at %s:%d: %s", argv[0], host, port,
                     c->errstr[0] ? c->errstr : "connection lost");
            dropConn(d, c);
            return NULL;
        }
        rsgClusterRedirect to;
        if (r->type != REDIS_REPLY_ERROR) return r;
        if (hops >= DIAL_HOPS || !rsgClusterParseRedirect(r->str, r->len, &to)) {
            snprintf(err, errlen, "%s", r->str);
            freeReplyObject(r);
            return NULL;
        }
        freeReplyObject(r);
        if (to.host[0]) snprintf(host, sizeof(host), "%s", to.host);
        port = to.port;
        asking = to.ask;
        /* Moved for good: learn the map there for the next commands. A map
         * that cannot be learnt leaves the old one; this command follows
         * the redirection all the same. */
        if (!to.ask) {
            char why[512];
            learnMap(d, host, port, why, sizeof(why));
        }
    }
}

void rsgDialClose(rsgDialer *d) {
    if (!d) return;
    if (d->one) redisFree(d->one);
    for (int i = 0; i < d->nnodes; i++) {
        if (d->nodes[i].c) redisFree(d->nodes[i].c);
        free(d->nodes[i].host);
    }
    free(d->nodes);
    rsgClusterMapFree(&d->map);
    free(d);
}
