/* cluster.c - see cluster.h. */
#include "cluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cluster_map.h"
#include "log.h"
#include "types.h"

#define MAX_HOPS 5 /* redirections one command may follow */

/* While a master cannot be reached the map is asked for this often: the
 * cluster may fail it over, and its slots then have a master again. */
#define DOWN_REFRESH_TICKS 4

typedef struct rsgCluster rsgCluster;
typedef struct request request;

/* One node's connection. The rsgConn comes first: its callbacks get the
 * rsgConn and find the node by a cast. conn.data is the router's data, so a
 * reply callback that looks at ac->data->data finds what it would behind a
 * single connection. */
typedef struct clusterNode {
    rsgConn conn;
    rsgCluster *cl;
    rsgRedisUrl url; /* the router's URL with this node's host and port */
    int master;      /* a master of the current map */
    int probe;       /* opened only to ask a seed for the map */
    int subscribed;  /* carries a subscription: no other command may go on it */
    int closed;      /* rsgConnClose called */
    int unreachable; /* logged as unreachable, not ready since */
    request *parked; /* commands waiting for this master to be ready, in order */
    request *parked_tail;
} clusterNode;

struct rsgCluster {
    rsgConn *router;     /* the rsgConn this routes for */
    rsgClusterMap map;   /* the last map learnt */
    int have_map;        /* map holds a map */
    clusterNode **nodes; /* node connections, open or closing */
    int nnodes;          /* how many in nodes[] */
    int asking;          /* a CLUSTER SLOTS is in flight */
    int seed_next;       /* the seed a probe asks next */
    int ticks;           /* refresh ticks since the last map */
    int changed;         /* a slot changed master since the router was last ready */
    int closing;         /* rsgClusterClose was called */
    request *failed;     /* fail_fast commands whose error reply is due (next tick) */
    request *failed_tail;
    /* What the callbacks of requests answered here, not by a node, get as
     * their context: only its data is set (the router), so that a callback
     * looking at ac->data->data finds the owner's data, as on a node. */
    redisAsyncContext stand_in;
};

struct request {
    rsgCluster *cl;
    redisCallbackFn *fn; /* the caller's, may be NULL */
    void *privdata;
    char *cmd; /* RESP form, owned */
    size_t len;
    int hops;      /* redirections followed */
    int slot;      /* the slot it routes by, -1: none */
    request *next; /* in a node's parked list or the failed list */
};

static void askMap(rsgCluster *cl);

static void requestFree(request *q) {
    free(q->cmd);
    free(q);
}

static void requestAppend(request **head, request **tail, request *q) {
    q->next = NULL;
    if (*tail)
        (*tail)->next = q;
    else
        *head = q;
    *tail = q;
}

/* Gives every request of the list the NULL reply of a lost connection (the
 * caller resends, as after any loss) and frees them. The list is detached
 * first: a callback may send again. */
static void requestsLost(rsgCluster *cl, request **head, request **tail) {
    request *q = *head;
    *head = *tail = NULL;
    while (q) {
        request *next = q->next;
        if (q->fn) q->fn(&cl->stand_in, NULL, q->privdata);
        requestFree(q);
        q = next;
    }
}

/* ---- Node connections ---- */

static rsgCluster *clusterOf(rsgConn *c) {
    return ((clusterNode *)c)->cl;
}

static clusterNode *findNode(rsgCluster *cl, const char *host, int port) {
    for (int i = 0; i < cl->nnodes; i++) {
        clusterNode *n = cl->nodes[i];
        if (!n->closed && n->url.port == port && strcmp(n->url.host, host) == 0) return n;
    }
    return NULL;
}

/* The connection of the master serving slot, or NULL. */
static clusterNode *ownerNode(rsgCluster *cl, int slot) {
    int i = cl->have_map ? rsgClusterMapOwner(&cl->map, slot) : -1;
    if (i < 0) return NULL;
    return findNode(cl, cl->map.nodes[i].host, cl->map.nodes[i].port);
}

/* A master whose connection failed at least once since it was last ready
 * (refused, reset, or a handshake that timed out: a stopped process). */
static int nodeDown(const clusterNode *n) {
    return !n->conn.ready && n->conn.attempt > 0;
}

/* 1 when at least one master is ready and every other one is either ready
 * or down: the router does not wait for a master it cannot reach (its
 * slots wait, the others work), only for those still connecting. */
static int mastersSettled(rsgCluster *cl) {
    int any = 0;
    for (int i = 0; i < cl->nnodes; i++) {
        clusterNode *n = cl->nodes[i];
        if (n->closed || !n->master) continue;
        if (!n->conn.ready && !nodeDown(n)) return 0;
        any |= n->conn.ready;
    }
    return any;
}

/* The slots of master n as "a-b c-d" (at most len bytes), for the log. */
static void slotRanges(const rsgCluster *cl, const clusterNode *n, char *buf, size_t len) {
    int k = rsgClusterMapFind(&cl->map, n->url.host, n->url.port);
    size_t used = 0;
    buf[0] = '\0';
    for (int s = 0; k >= 0 && s < RSG_CLUSTER_SLOTS && used + 1 < len; s++) {
        if (cl->map.owner[s] != k || (s > 0 && cl->map.owner[s - 1] == k)) continue;
        int e = s;
        while (e + 1 < RSG_CLUSTER_SLOTS && cl->map.owner[e + 1] == k)
            e++;
        int w = snprintf(buf + used, len - used, "%s%d-%d", used ? " " : "", s, e);
        if (w < 0 || (size_t)w >= len - used) break;
        used += (size_t)w;
    }
}

/* Logs each master that is down, once until it is ready again. Returns how
 * many are down. */
static int logUnreachable(rsgCluster *cl) {
    int down = 0;
    for (int i = 0; i < cl->nnodes; i++) {
        clusterNode *n = cl->nodes[i];
        if (n->closed || !n->master || !nodeDown(n)) continue;
        down++;
        if (n->unreachable) continue;
        n->unreachable = 1;
        char slots[128];
        slotRanges(cl, n, slots, sizeof(slots));
        rsgWarn("redis %s: cannot reach master %s:%d (slots %s): what is in its slots waits "
                "until it is back or the cluster fails it over",
                cl->router->name, n->url.host, n->url.port, slots);
    }
    return down;
}

static void onTick(uv_timer_t *t);

static void routerReady(rsgCluster *cl) {
    rsgConn *c = cl->router;
    if (c->ready || cl->closing || !cl->have_map || !mastersSettled(cl)) return;
    /* With a master down the tick goes on: it asks the map now and then,
     * in case the cluster fails that master over. */
    if (logUnreachable(cl) == 0 && !cl->failed) uv_timer_stop(&c->timer);
    c->ready = 1;
    c->moved = c->was_ready && cl->changed;
    cl->changed = 0;
    int masters = rsgClusterMasters(c);
    if (c->was_ready) {
        c->reconnects++;
        rsgInfo("redis %s: cluster ready again (%d masters)", c->name, masters);
    } else {
        rsgInfo("redis %s: cluster of %d masters, %d slots served", c->name, masters,
                cl->map.covered);
    }
    c->was_ready = 1;
    if (c->on_ready) c->on_ready(c);
}

/* Gives the fail_fast commands due their error reply: on a tick, never
 * inside the rsgConnCommand that routed them. */
static void deliverFailed(rsgCluster *cl) {
    request *q = cl->failed;
    cl->failed = cl->failed_tail = NULL;
    while (q) {
        request *next = q->next;
        char msg[128];
        snprintf(msg, sizeof(msg), "CLUSTERDOWN the master of slot %d cannot be reached", q->slot);
        redisReply err = {.type = REDIS_REPLY_ERROR, .str = msg, .len = strlen(msg)};
        if (q->fn) q->fn(&cl->stand_in, cl->closing ? NULL : &err, q->privdata);
        requestFree(q);
        q = next;
    }
}

static void onTick(uv_timer_t *t) {
    rsgConn *c = t->data;
    rsgCluster *cl = c->cluster;
    if (!cl || cl->closing) return;
    if (cl->failed) deliverFailed(cl);
    if (!c->ready) {
        cl->ticks++;
        askMap(cl);
        return;
    }
    int down = 0;
    for (int i = 0; i < cl->nnodes; i++)
        down += !cl->nodes[i]->closed && cl->nodes[i]->master && nodeDown(cl->nodes[i]);
    if (!down) {
        uv_timer_stop(&c->timer);
        return;
    }
    if (++cl->ticks % DOWN_REFRESH_TICKS == 0) askMap(cl);
}

/* The router is no longer ready: tell the owner, and learn the map again
 * until it is. */
static void routerLost(rsgCluster *cl) {
    rsgConn *c = cl->router;
    if (cl->closing) return;
    int was = c->ready;
    c->ready = 0;
    if (!uv_is_active((uv_handle_t *)&c->timer))
        uv_timer_start(&c->timer, onTick, 0, RSG_CLUSTER_REFRESH_MS);
    if (was && c->on_lost) c->on_lost(c);
}

static int sendTo(clusterNode *n, request *q, int asking);

static void onNodeReady(rsgConn *nc) {
    clusterNode *n = (clusterNode *)nc;
    rsgCluster *cl = n->cl;
    if (cl->closing) return;
    if (n->unreachable) {
        n->unreachable = 0;
        rsgInfo("redis %s: master %s:%d can be reached again", cl->router->name, n->url.host,
                n->url.port);
    }
    /* What waited for this master goes out now, in the order it came. */
    request *q = n->parked;
    n->parked = n->parked_tail = NULL;
    while (q) {
        request *next = q->next;
        if (sendTo(n, q, 0) != 0) {
            if (q->fn) q->fn(&cl->stand_in, NULL, q->privdata);
            requestFree(q);
        }
        q = next;
    }
    if (n->probe || !cl->have_map) askMap(cl);
    routerReady(cl);
}

static void onNodeLost(rsgConn *nc) {
    clusterNode *n = (clusterNode *)nc;
    n->subscribed = 0; /* the owner subscribes again when the router is back */
    if (n->master) routerLost(n->cl);
}

static void onNodeFatal(rsgConn *nc, const char *reason) {
    rsgCluster *cl = clusterOf(nc);
    if (cl->closing) return;
    if (cl->router->on_fatal) cl->router->on_fatal(cl->router, reason);
}

static void onNodeClosed(rsgConn *nc) {
    clusterNode *n = (clusterNode *)nc;
    rsgCluster *cl = n->cl;
    for (int i = 0; i < cl->nnodes; i++)
        if (cl->nodes[i] == n) {
            cl->nodes[i] = cl->nodes[--cl->nnodes];
            break;
        }
    rsgUrlFree(&n->url);
    free(n);
    if (cl->closing && cl->nnodes == 0) {
        rsgClusterMapFree(&cl->map);
        free(cl->nodes);
        free(cl);
    }
}

static void closeNode(clusterNode *n) {
    if (n->closed) return;
    n->closed = 1;
    n->master = 0;
    rsgConnClose(&n->conn);
    /* No longer a master (or shutting down): what waited for it is lost. */
    requestsLost(n->cl, &n->parked, &n->parked_tail);
}

/* Copies the router's URL for host:port into *u. Returns 0 or -1. */
static int nodeUrl(const rsgRedisUrl *from, const char *host, int port, rsgRedisUrl *u) {
    memset(u, 0, sizeof(*u));
    u->port = port;
    u->tls = from->tls;
    if (!(u->host = strdup(host))) return -1;
    if (from->user && !(u->user = strdup(from->user))) goto oom;
    if (from->password && !(u->password = strdup(from->password))) goto oom;
    return 0;
oom:
    rsgUrlFree(u);
    return -1;
}

/* Opens a connection to host:port. Returns it, or NULL out of memory. */
static clusterNode *openNode(rsgCluster *cl, const char *host, int port, int probe) {
    rsgConn *r = cl->router;
    clusterNode **grown = realloc(cl->nodes, sizeof(*grown) * (size_t)(cl->nnodes + 1));
    if (!grown) return NULL;
    cl->nodes = grown;
    clusterNode *n = calloc(1, sizeof(*n));
    if (!n) return NULL;
    if (nodeUrl(r->url, host, port, &n->url) != 0) {
        free(n);
        return NULL;
    }
    n->cl = cl;
    n->probe = probe;
    n->conn.data = r->data;
    n->conn.client_name = r->client_name;
    n->conn.on_ready = onNodeReady;
    n->conn.on_lost = onNodeLost;
    n->conn.on_fatal = onNodeFatal;
    n->conn.on_closed = onNodeClosed;
    cl->nodes[cl->nnodes++] = n;
    rsgConnStart(&n->conn, r->loop, &n->url, r->name);
    return n;
}

/* ---- The map ---- */

/* Makes the node connections follow map m (which the cluster takes). */
static void applyMap(rsgCluster *cl, rsgClusterMap *m) {
    if (cl->have_map) {
        for (int s = 0; s < RSG_CLUSTER_SLOTS && !cl->changed; s++) {
            int a = cl->map.owner[s], b = m->owner[s];
            if ((a < 0) != (b < 0))
                cl->changed = 1;
            else if (a >= 0 && (cl->map.nodes[a].port != m->nodes[b].port ||
                                strcmp(cl->map.nodes[a].host, m->nodes[b].host) != 0))
                cl->changed = 1;
        }
        rsgClusterMapFree(&cl->map);
    }
    cl->map = *m;
    cl->have_map = 1;
    cl->ticks = 0;
    /* Every master gets a connection; every other one goes, probes too. */
    for (int i = 0; i < cl->nnodes; i++) {
        clusterNode *n = cl->nodes[i];
        if (n->closed) continue;
        int k = rsgClusterMapFind(&cl->map, n->url.host, n->url.port);
        n->master = k >= 0 && cl->map.nodes[k].master;
        if (n->master) n->probe = 0;
    }
    for (int k = 0; k < cl->map.nnodes; k++) {
        const rsgClusterNode *x = &cl->map.nodes[k];
        if (!x->master || findNode(cl, x->host, x->port)) continue;
        clusterNode *n = openNode(cl, x->host, x->port, 0);
        if (n)
            n->master = 1;
        else
            rsgError("redis %s: out of memory connecting to %s:%d", cl->router->name, x->host,
                     x->port);
    }
    for (int i = cl->nnodes - 1; i >= 0; i--)
        if (!cl->nodes[i]->master && !cl->nodes[i]->closed) closeNode(cl->nodes[i]);
}

static void onSlots(redisAsyncContext *ac, void *r, void *privdata) {
    clusterNode *n = privdata;
    rsgCluster *cl = n->cl;
    redisReply *reply = r;
    (void)ac;
    cl->asking = 0;
    if (cl->closing || !reply) return; /* lost: the next tick asks again */
    rsgClusterMap m;
    char err[256];
    if (rsgClusterMapFromSlots(&m, reply, n->url.host, err, sizeof(err)) != 0) {
        if (reply->type == REDIS_REPLY_ERROR && strstr(reply->str, "cluster support disabled")) {
            char msg[512];
            snprintf(msg, sizeof(msg),
                     "redis %s: %s:%d is not a cluster node (%s): use redis:// for a single "
                     "server",
                     cl->router->name, n->url.host, n->url.port, reply->str);
            cl->router->closing = 1;
            if (cl->router->on_fatal) cl->router->on_fatal(cl->router, msg);
            return;
        }
        rsgWarn("redis %s: %s:%d: %s", cl->router->name, n->url.host, n->url.port, err);
        return;
    }
    if (m.covered == 0) {
        rsgWarn("redis %s: %s:%d serves no slots yet", cl->router->name, n->url.host, n->url.port);
        rsgClusterMapFree(&m);
        return;
    }
    applyMap(cl, &m);
    /* Learnt while ready (a master was down): a slot that changed master
     * is set up anew, as after any failover. */
    if (cl->router->ready && cl->changed) routerLost(cl);
    routerReady(cl);
}

/* Asks a ready node for CLUSTER SLOTS. With none ready, probes the seeds:
 * the first at once, then one more every other tick (a dead seed must not
 * hold up the start for long, and a slow one keeps its chance), each seed
 * by at most one connection; probes keep retrying until a map arrives. */
static void askMap(rsgCluster *cl) {
    if (cl->closing || cl->asking) return;
    int probes = 0;
    for (int i = 0; i < cl->nnodes; i++) {
        clusterNode *n = cl->nodes[i];
        if (n->closed) continue;
        probes += n->probe;
        if (!n->conn.ready || n->subscribed) continue;
        const char *argv[] = {"CLUSTER", "SLOTS"};
        if (rsgConnCommand(&n->conn, onSlots, n, 2, argv, NULL) == 0) {
            cl->asking = 1;
            return;
        }
    }
    if (probes && cl->ticks % 2) return;
    const rsgRedisUrl *u = cl->router->url;
    for (int k = 0; k < u->nseeds; k++) {
        const rsgAddr *seed = &u->seeds[(cl->seed_next + k) % u->nseeds];
        if (findNode(cl, seed->host, seed->port)) continue;
        cl->seed_next = (cl->seed_next + k + 1) % u->nseeds;
        if (!openNode(cl, seed->host, seed->port, 1))
            rsgError("redis %s: out of memory connecting to %s:%d", cl->router->name, seed->host,
                     seed->port);
        return;
    }
}

void rsgClusterStart(rsgConn *c) {
    rsgCluster *cl = calloc(1, sizeof(*cl));
    if (!cl) {
        rsgError("redis %s: out of memory", c->name);
        return;
    }
    for (int s = 0; s < RSG_CLUSTER_SLOTS; s++)
        cl->map.owner[s] = -1;
    cl->router = c;
    cl->stand_in.data = c;
    c->cluster = cl;
    routerLost(cl); /* not ready yet: the tick asks the seeds */
}

void rsgClusterRefresh(rsgConn *c) {
    rsgCluster *cl = c->cluster;
    if (!cl || cl->closing || !c->ready) return;
    rsgInfo("redis %s: the slot map changed; learning it again", c->name);
    routerLost(cl);
}

/* ---- Commands ---- */

static void onRequestReply(redisAsyncContext *ac, void *r, void *privdata) {
    request *q = privdata;
    rsgCluster *cl = q->cl;
    redisReply *reply = r;
    if (reply && reply->type == REDIS_REPLY_ERROR && !cl->closing) {
        rsgClusterRedirect d;
        clusterNode *from = ac ? (clusterNode *)ac->data : NULL;
        if (rsgClusterParseRedirect(reply->str, reply->len, &d) && q->hops < MAX_HOPS) {
            q->hops++;
            if (!d.host[0] && from) snprintf(d.host, sizeof(d.host), "%s", from->url.host);
            clusterNode *to = findNode(cl, d.host, d.port);
            if (!d.ask) {
                /* Moved for good: the map is stale. */
                rsgDebug("redis %s: slot %d moved to %s:%d", cl->router->name, d.slot, d.host,
                         d.port);
                cl->changed = 1;
                if (to && to->master && to->conn.ready && sendTo(to, q, 0) == 0) {
                    askMap(cl);
                    return;
                }
            } else if (to && to->master && to->conn.ready && sendTo(to, q, 1) == 0) {
                return;
            }
            /* A node we are not connected to: as if the connection was
             * lost; the caller resends once the router is ready again. */
            reply = NULL;
            routerLost(cl);
        } else if (strncmp(reply->str, "CLUSTERDOWN", 11) == 0 ||
                   strncmp(reply->str, "TRYAGAIN", 8) == 0) {
            rsgWarn("redis %s: %s; retrying once the cluster is whole", cl->router->name,
                    reply->str);
            reply = NULL;
            routerLost(cl);
        }
    }
    if (q->fn) q->fn(ac, reply, q->privdata);
    requestFree(q);
}

static int sendTo(clusterNode *n, request *q, int asking) {
    if (asking) {
        const char *argv[] = {"ASKING"};
        if (rsgConnCommand(&n->conn, NULL, NULL, 1, argv, NULL) != 0) return -1;
    }
    return rsgConnFormatted(&n->conn, onRequestReply, q, q->cmd, q->len);
}

/* Routes cmd (taken: freed here on failure). */
static int route(rsgConn *c, redisCallbackFn *fn, void *privdata, char *cmd, size_t len) {
    rsgCluster *cl = c->cluster;
    if (!cl || !c->ready) {
        free(cmd);
        return -1;
    }
    if (rsgClusterCommandIs(cmd, len, "SUBSCRIBE") || rsgClusterCommandIs(cmd, len, "PSUBSCRIBE")) {
        /* A cluster delivers a PUBLISH to every node, so one master's
         * connection is enough. It then carries nothing else, and the
         * caller's callback runs for every message: no request wraps it.
         * The same connection again when it still has the subscription. */
        clusterNode *n = NULL;
        for (int i = 0; i < cl->nnodes; i++) {
            clusterNode *x = cl->nodes[i];
            if (!x->master || !x->conn.ready || x->closed) continue;
            if (!n || (x->subscribed && !n->subscribed)) n = x;
        }
        int rc = n ? rsgConnFormatted(&n->conn, fn, privdata, cmd, len) : -1;
        if (rc == 0) n->subscribed = 1;
        free(cmd);
        return rc;
    }
    int slot = rsgClusterCommandSlot(cmd, len);
    clusterNode *n = NULL;
    if (slot >= 0) {
        n = ownerNode(cl, slot);
    } else {
        for (int i = 0; i < cl->nnodes && !n; i++)
            if (cl->nodes[i]->master && cl->nodes[i]->conn.ready && !cl->nodes[i]->subscribed)
                n = cl->nodes[i];
    }
    request *q = malloc(sizeof(*q));
    if (!n || n->subscribed || !q || (!n->conn.ready && slot < 0)) {
        /* A slot no master serves (a failover under way): not ready. */
        free(q);
        free(cmd);
        if (n == NULL && slot >= 0) routerLost(cl);
        return -1;
    }
    *q = (request){cl, fn, privdata, cmd, len, 0, slot, NULL};
    if (!n->conn.ready) {
        /* Its master cannot be reached (or is reconnecting): the command
         * waits for it, or with fail_fast gets an error on the next tick. */
        if (c->fail_fast && nodeDown(n)) {
            requestAppend(&cl->failed, &cl->failed_tail, q);
            uv_timer_start(&c->timer, onTick, 0, RSG_CLUSTER_REFRESH_MS);
        } else {
            requestAppend(&n->parked, &n->parked_tail, q);
        }
        return 0;
    }
    if (sendTo(n, q, 0) != 0) {
        requestFree(q);
        return -1;
    }
    return 0;
}

int rsgClusterCommand(rsgConn *c, redisCallbackFn *fn, void *privdata, int argc, const char **argv,
                      const size_t *argvlen) {
    char *fmt = NULL;
    long long len = redisFormatCommandArgv(&fmt, argc, argv, argvlen);
    if (len < 0 || !fmt) return -1;
    char *cmd = malloc((size_t)len + 1);
    if (cmd) {
        memcpy(cmd, fmt, (size_t)len);
        cmd[len] = '\0'; /* hiredis 0.14 reads a SUBSCRIBE's channels with strchr */
    }
    redisFreeCommand(fmt);
    if (!cmd) return -1;
    return route(c, fn, privdata, cmd, (size_t)len);
}

int rsgClusterFormatted(rsgConn *c, redisCallbackFn *fn, void *privdata, const char *cmd,
                        size_t len) {
    char *copy = malloc(len + 1);
    if (!copy) return -1;
    memcpy(copy, cmd, len);
    copy[len] = '\0'; /* as in rsgClusterCommand */
    return route(c, fn, privdata, copy, len);
}

void rsgClusterFlush(rsgConn *c) {
    rsgCluster *cl = c->cluster;
    if (!cl) return;
    for (int i = 0; i < cl->nnodes; i++)
        rsgConnFlush(&cl->nodes[i]->conn);
}

void rsgClusterClose(rsgConn *c) {
    rsgCluster *cl = c->cluster;
    if (!cl) return;
    c->cluster = NULL;
    cl->closing = 1;
    deliverFailed(cl);
    if (cl->nnodes == 0) {
        rsgClusterMapFree(&cl->map);
        free(cl->nodes);
        free(cl);
        return;
    }
    /* Closing a node may free it (and, with the last one, cl) from its
     * close callback, which runs on a later turn of the loop: safe here. */
    for (int i = 0; i < cl->nnodes; i++)
        closeNode(cl->nodes[i]);
}

int rsgClusterNodeUrl(const rsgConn *c, int slot, rsgRedisUrl *out) {
    rsgCluster *cl = c->cluster;
    int i = cl && cl->have_map ? rsgClusterMapOwner(&cl->map, slot) : -1;
    if (i < 0) return -1;
    return nodeUrl(c->url, cl->map.nodes[i].host, cl->map.nodes[i].port, out);
}

int rsgClusterSlotReady(const rsgConn *c, int slot) {
    rsgCluster *cl = c->cluster;
    clusterNode *n = cl ? ownerNode(cl, slot) : NULL;
    return n && n->conn.ready;
}

int rsgClusterMasters(const rsgConn *c) {
    rsgCluster *cl = c->cluster;
    int n = 0;
    if (!cl || !cl->have_map) return 0;
    for (int i = 0; i < cl->map.nnodes; i++)
        n += cl->map.nodes[i].master;
    return n;
}
