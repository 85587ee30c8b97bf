/* slot_readers.c - see slot_readers.h. */
#include "slot_readers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "cluster_map.h"
#include "log.h"
#include "source_kind.h"

/* One connection of a group, allocated per (re)connection: a dropped one
 * frees itself from its close callback while the next one starts. */
typedef struct readerConn {
    rsgConn conn;     /* first: callbacks find the readerConn by a cast */
    rsgRedisUrl url;  /* the slot's master, with the router's credentials */
    rsgSlotReader *g; /* NULL once the group let go of it */
} readerConn;

static void readerConnClosed(rsgConn *c) {
    readerConn *rc = (readerConn *)c;
    rsgUrlFree(&rc->url);
    free(rc);
}

/* Lets go of g's connection (it closes and frees itself) and its read. */
static void dropConn(rsgSlotReader *g) {
    readerConn *rc = g->rc;
    if (g->wait_open) uv_timer_stop(&g->wait);
    g->busy = 0;
    g->rs->s->requested -= g->asked;
    g->asked = 0;
    if (!rc) return;
    g->rc = NULL;
    rc->g = NULL;
    rsgConnClose(&rc->conn);
}

int rsgSlotReadersInit(rsgSlotReaders *rs, rsgSource *s, const char *noun) {
    const rsgSourceConfig *cfg = s->cfg;
    memset(rs, 0, sizeof(*rs));
    rs->s = s;
    if (!(rs->r = calloc((size_t)cfg->nstreams, sizeof(rsgSlotReader)))) return -1;
    for (int i = 0; i < cfg->nstreams; i++) {
        int slot = rsgClusterKeySlot(cfg->streams[i], strlen(cfg->streams[i]));
        rsgSlotReader *g = NULL;
        for (int k = 0; k < rs->n && !g; k++)
            if (rs->r[k].slot == slot) g = &rs->r[k];
        if (!g) {
            g = &rs->r[rs->n++];
            *g = (rsgSlotReader){.rs = rs, .slot = slot};
            if (!(g->keys = calloc((size_t)cfg->nstreams, sizeof(int)))) return -1;
        }
        g->keys[g->nkeys++] = i;
    }
    rsgInfo("%d %s(s) in %d slot group(s): one blocking read (and connection) each", cfg->nstreams,
            noun, rs->n);
    return 0;
}

static void onConnReady(rsgConn *c) {
    readerConn *rc = (readerConn *)c;
    rsgSlotReader *g = rc->g;
    if (!g || g->rs->s->stopped) return;
    rsgSlotReaders *rs = g->rs;
    if (rs->waiting > 0 && --rs->waiting == 0 && rs->ready)
        rs->ready(rs->s);
    else if (rs->waiting == 0)
        rsgSourceKick(rs->s);
}

/* A group's connection went: the map may have changed under it (a
 * failover). The router learns it again and the source is set up anew. */
static void onConnLost(rsgConn *c) {
    readerConn *rc = (readerConn *)c;
    if (!rc->g || rc->g->rs->s->stopped) return;
    rsgClusterRefresh(rc->g->rs->s->conn);
}

static void onConnFatal(rsgConn *c, const char *reason) {
    readerConn *rc = (readerConn *)c;
    if (!rc->g || rc->g->rs->s->stopped) return;
    rsgSourceFatal(rc->g->rs->s, "%s", reason);
}

/* Opens a new connection for g to its slot's master. Returns 0, or -1
 * when no master serves the slot (or out of memory). */
static int connectOne(rsgSlotReader *g) {
    rsgSource *s = g->rs->s;
    rsgRedisUrl u;
    dropConn(g);
    if (rsgClusterNodeUrl(s->conn, g->slot, &u) != 0) return -1;
    readerConn *rc = calloc(1, sizeof(*rc));
    if (!rc) {
        rsgUrlFree(&u);
        return -1;
    }
    rc->url = u;
    rc->g = g;
    rc->conn.data = rc;
    rc->conn.on_ready = onConnReady;
    rc->conn.on_lost = onConnLost;
    rc->conn.on_fatal = onConnFatal;
    rc->conn.on_closed = readerConnClosed;
    rc->conn.client_name = s->conn->client_name;
    g->rc = rc;
    rsgConnStart(&rc->conn, s->conn->loop, &rc->url, "slot reader");
    return 0;
}

void rsgSlotReadersConnect(rsgSlotReaders *rs, void (*ready)(rsgSource *s)) {
    rs->ready = ready;
    rs->waiting = rs->n;
    for (int k = 0; k < rs->n; k++) {
        if (connectOne(&rs->r[k]) != 0) {
            const rsgSlotReader *g = &rs->r[k];
            rsgWarn("no master serves slot %d ('%s') yet; waiting for the cluster", g->slot,
                    rs->s->cfg->streams[g->keys[0]]);
            rsgClusterRefresh(rs->s->conn);
            return;
        }
    }
}

int rsgSlotReaderIdle(const rsgSlotReader *g) {
    return !g->busy && g->rc && g->rc->conn.ready;
}

int rsgSlotReaderSend(rsgSlotReader *g, redisCallbackFn *fn, long asked, int argc,
                      const char **argv) {
    if (!g->rc || rsgConnCommand(&g->rc->conn, fn, g->rc, argc, argv, NULL) != 0) return -1;
    g->busy = 1;
    g->asked = asked;
    g->rs->s->requested += asked;
    rsgConnFlush(&g->rc->conn);
    return 0;
}

int rsgSlotReaderCommand(rsgSlotReader *g, redisCallbackFn *fn, void *privdata, int argc,
                         const char **argv) {
    if (!g->rc) return -1;
    return rsgConnCommand(&g->rc->conn, fn, privdata, argc, argv, NULL);
}

rsgSlotReader *rsgSlotReaderOf(void *privdata) {
    readerConn *rc = privdata;
    rsgSlotReader *g = rc->g;
    if (!g || g->rc != rc) return NULL;
    g->busy = 0;
    g->rs->s->requested -= g->asked;
    g->asked = 0;
    return g;
}

int rsgSlotReaderRedirected(rsgSlotReader *g, const redisReply *reply) {
    rsgClusterRedirect d;
    if (reply->type != REDIS_REPLY_ERROR) return 0;
    if (!rsgClusterParseRedirect(reply->str, reply->len, &d) &&
        strncmp(reply->str, "CLUSTERDOWN", 11) != 0 && strncmp(reply->str, "UNBLOCKED", 9) != 0 &&
        strncmp(reply->str, "READONLY", 8) != 0)
        return 0;
    rsgSource *s = g->rs->s;
    rsgInfo("slot %d ('%s'): %s", g->slot, s->cfg->streams[g->keys[0]], reply->str);
    dropConn(g);
    rsgClusterRefresh(s->conn);
    return 1;
}

static void onWait(uv_timer_t *t) {
    rsgSlotReader *g = t->data;
    g->busy = 0;
    if (g->waited && !g->rs->s->stopped) g->waited(g);
}

void rsgSlotReaderWait(rsgSlotReader *g, uint64_t ms, void (*waited)(rsgSlotReader *g)) {
    if (!g->wait_open) {
        uv_timer_init(g->rs->s->conn->loop, &g->wait);
        g->wait.data = g;
        g->wait_open = 1;
    }
    g->busy = 1;
    g->waited = waited;
    uv_timer_start(&g->wait, onWait, ms, 0);
}

void rsgSlotReadersStop(rsgSlotReaders *rs) {
    for (int k = 0; k < rs->n; k++) {
        rsgSlotReader *g = &rs->r[k];
        dropConn(g);
        if (g->wait_open) {
            g->wait_open = 0;
            uv_close((uv_handle_t *)&g->wait, NULL);
        }
    }
}

void rsgSlotReadersFree(rsgSlotReaders *rs) {
    for (int k = 0; rs->r && k < rs->n; k++)
        free(rs->r[k].keys);
    free(rs->r);
    rs->r = NULL;
    rs->n = 0;
}
