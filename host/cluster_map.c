/* cluster_map.c - see cluster_map.h. */
#include "cluster_map.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Bit by bit rather than by table: keys are short and routing happens once
 * per command, not per byte of payload, so 256 constants buy nothing. */
unsigned rsgClusterCrc16(const char *buf, size_t len) {
    unsigned crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (unsigned)(unsigned char)buf[i] << 8;
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? ((crc << 1) ^ 0x1021) : (crc << 1);
        crc &= 0xffff;
    }
    return crc;
}

int rsgClusterKeySlot(const char *key, size_t len) {
    /* The tag is between the first '{' and the first '}' after it; "{}"
     * (empty) or an unclosed '{' means the whole key, as Redis's keyHashSlot. */
    const char *open = memchr(key, '{', len);
    if (open) {
        size_t from = (size_t)(open - key) + 1;
        const char *close = memchr(key + from, '}', len - from);
        if (close && close > key + from)
            return (int)(rsgClusterCrc16(key + from, (size_t)(close - key) - from) &
                         (RSG_CLUSTER_SLOTS - 1));
    }
    return (int)(rsgClusterCrc16(key, len) & (RSG_CLUSTER_SLOTS - 1));
}

/* ---- The map ---- */

static int mapFail(rsgClusterMap *m, char *err, size_t errlen, const char *why) {
    rsgClusterMapFree(m);
    snprintf(err, errlen, "%s", why);
    return -1;
}

static void mapReset(rsgClusterMap *m) {
    memset(m, 0, sizeof(*m));
    for (int i = 0; i < RSG_CLUSTER_SLOTS; i++)
        m->owner[i] = -1;
}

int rsgClusterMapFind(const rsgClusterMap *m, const char *host, int port) {
    for (int i = 0; i < m->nnodes; i++)
        if (m->nodes[i].port == port && strcmp(m->nodes[i].host, host) == 0) return i;
    return -1;
}

/* Adds (or finds) a node; host NULL or empty or "?" is asked_host. Returns
 * its index, or -1 out of memory. A node seen first as a replica and then
 * as a master (a reply caught mid-failover) becomes a master. */
static int addNode(rsgClusterMap *m, const char *host, size_t hlen, int port, const char *id,
                   size_t idlen, int master, int of, const char *asked_host) {
    char hbuf[256];
    if (!host || hlen == 0 || (hlen == 1 && host[0] == '?')) {
        host = asked_host;
        hlen = strlen(asked_host);
    }
    if (hlen >= sizeof(hbuf)) hlen = sizeof(hbuf) - 1;
    memcpy(hbuf, host, hlen);
    hbuf[hlen] = '\0';
    int i = rsgClusterMapFind(m, hbuf, port);
    if (i >= 0) {
        if (master && !m->nodes[i].master) {
            m->nodes[i].master = 1;
            m->nodes[i].of = -1;
        }
        return i;
    }
    rsgClusterNode *n = realloc(m->nodes, sizeof(*n) * (size_t)(m->nnodes + 1));
    if (!n) return -1;
    m->nodes = n;
    rsgClusterNode *x = &n[m->nnodes];
    *x = (rsgClusterNode){
        .host = strdup(hbuf), .port = port, .master = master, .of = master ? -1 : of};
    if (!x->host) return -1;
    if (id && idlen && !(x->id = strndup(id, idlen))) {
        free(x->host);
        return -1;
    }
    return m->nnodes++;
}

/* Gives slots [from, to] to master node i. Returns 0, or -1 when the range
 * is out of bounds. */
static int ownSlots(rsgClusterMap *m, long long from, long long to, int i) {
    if (from < 0 || to >= RSG_CLUSTER_SLOTS || from > to) return -1;
    for (long long s = from; s <= to; s++) {
        if (m->owner[s] < 0) m->covered++;
        m->owner[s] = (short)i;
    }
    return 0;
}

/* [host, port, id?, ...] of CLUSTER SLOTS: 1 when the shape is right. */
static int slotsNodeShape(const redisReply *n) {
    return n->type == REDIS_REPLY_ARRAY && n->elements >= 2 &&
           n->element[0]->type == REDIS_REPLY_STRING &&
           n->element[1]->type == REDIS_REPLY_INTEGER && n->element[1]->integer > 0 &&
           n->element[1]->integer <= 65535;
}

int rsgClusterMapFromSlots(rsgClusterMap *m, const redisReply *r, const char *asked_host, char *err,
                           size_t errlen) {
    mapReset(m);
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "CLUSTER SLOTS failed: %s", r->str);
        return -1;
    }
    if (r->type != REDIS_REPLY_ARRAY) return mapFail(m, err, errlen, "CLUSTER SLOTS: not an array");
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER)
            return mapFail(m, err, errlen, "CLUSTER SLOTS: malformed slot range");
        int master = -1;
        for (size_t k = 2; k < e->elements; k++) {
            const redisReply *n = e->element[k];
            if (!slotsNodeShape(n)) return mapFail(m, err, errlen, "CLUSTER SLOTS: malformed node");
            const redisReply *id = n->elements >= 3 && n->element[2]->type == REDIS_REPLY_STRING
                                       ? n->element[2]
                                       : NULL;
            int x = addNode(m, n->element[0]->str, n->element[0]->len, (int)n->element[1]->integer,
                            id ? id->str : NULL, id ? id->len : 0, k == 2, master, asked_host);
            if (x < 0) return mapFail(m, err, errlen, "out of memory");
            if (k == 2) master = x;
        }
        if (ownSlots(m, e->element[0]->integer, e->element[1]->integer, master) != 0)
            return mapFail(m, err, errlen, "CLUSTER SLOTS: slot out of range");
    }
    return 0;
}

/* The value of name in a flat [name, value, ...] array, or NULL. */
static const redisReply *field(const redisReply *a, const char *name) {
    size_t nlen = strlen(name);
    for (size_t i = 0; i + 1 < a->elements; i += 2) {
        const redisReply *k = a->element[i];
        if (k->type == REDIS_REPLY_STRING && k->len == nlen && memcmp(k->str, name, nlen) == 0)
            return a->element[i + 1];
    }
    return NULL;
}

static int isStr(const redisReply *r, const char *s) {
    return r && r->type == REDIS_REPLY_STRING && r->len == strlen(s) &&
           memcmp(r->str, s, r->len) == 0;
}

int rsgClusterMapFromShards(rsgClusterMap *m, const redisReply *r, const char *asked_host,
                            char *err, size_t errlen) {
    mapReset(m);
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "CLUSTER SHARDS failed: %s", r->str);
        return -1;
    }
    if (r->type != REDIS_REPLY_ARRAY)
        return mapFail(m, err, errlen, "CLUSTER SHARDS: not an array");
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *sh = r->element[i];
        if (sh->type != REDIS_REPLY_ARRAY)
            return mapFail(m, err, errlen, "CLUSTER SHARDS: malformed shard");
        const redisReply *slots = field(sh, "slots"), *nodes = field(sh, "nodes");
        if (!slots || !nodes || slots->type != REDIS_REPLY_ARRAY ||
            nodes->type != REDIS_REPLY_ARRAY || slots->elements % 2)
            return mapFail(m, err, errlen, "CLUSTER SHARDS: malformed shard");
        /* The master first, so its replicas can point at it. */
        int master = -1;
        for (int pass = 0; pass < 2; pass++) {
            for (size_t k = 0; k < nodes->elements; k++) {
                const redisReply *n = nodes->element[k];
                if (n->type != REDIS_REPLY_ARRAY)
                    return mapFail(m, err, errlen, "CLUSTER SHARDS: malformed node");
                int is_master = isStr(field(n, "role"), "master");
                if (is_master != (pass == 0) || isStr(field(n, "health"), "fail")) continue;
                const redisReply *port = field(n, "port"), *id = field(n, "id");
                const redisReply *host = field(n, "endpoint");
                if (!host || host->type != REDIS_REPLY_STRING || host->len == 0 || isStr(host, "?"))
                    host = field(n, "ip");
                if (!port || port->type != REDIS_REPLY_INTEGER || port->integer <= 0 ||
                    port->integer > 65535 || (host && host->type != REDIS_REPLY_STRING))
                    return mapFail(m, err, errlen, "CLUSTER SHARDS: malformed node");
                int x =
                    addNode(m, host ? host->str : NULL, host ? host->len : 0, (int)port->integer,
                            id && id->type == REDIS_REPLY_STRING ? id->str : NULL,
                            id && id->type == REDIS_REPLY_STRING ? id->len : 0, is_master, master,
                            asked_host);
                if (x < 0) return mapFail(m, err, errlen, "out of memory");
                if (is_master && master < 0) master = x;
            }
        }
        if (slots->elements && master < 0)
            return mapFail(m, err, errlen, "CLUSTER SHARDS: a shard with slots has no master");
        for (size_t k = 0; k < slots->elements; k += 2) {
            const redisReply *a = slots->element[k], *b = slots->element[k + 1];
            if (a->type != REDIS_REPLY_INTEGER || b->type != REDIS_REPLY_INTEGER ||
                ownSlots(m, a->integer, b->integer, master) != 0)
                return mapFail(m, err, errlen, "CLUSTER SHARDS: slot out of range");
        }
    }
    return 0;
}

int rsgClusterMapOwner(const rsgClusterMap *m, int slot) {
    if (slot < 0 || slot >= RSG_CLUSTER_SLOTS) return -1;
    return m->owner[slot];
}

void rsgClusterMapFree(rsgClusterMap *m) {
    for (int i = 0; i < m->nnodes; i++) {
        free(m->nodes[i].host);
        free(m->nodes[i].id);
    }
    free(m->nodes);
    mapReset(m);
}

/* ---- Which key routes a command ---- */

/* A view of one argument inside a RESP command. */
typedef struct argView {
    const char *p;
    size_t len;
} argView;

/* Up to max arguments of a RESP command, as views into cmd. Returns how
 * many, or -1 when cmd is not a RESP array of bulk strings. */
static int respArgs(const char *cmd, size_t len, argView *args, int max, int *argc) {
    const char *p = cmd, *end = cmd + len;
    if (p >= end || *p != '*') return -1;
    long n = strtol(p + 1, NULL, 10);
    if (!(p = memchr(p, '\n', (size_t)(end - p)))) return -1;
    p++;
    int got = 0;
    for (long i = 0; i < n && got < max; i++) {
        if (p >= end || *p != '$') return -1;
        long l = strtol(p + 1, NULL, 10);
        if (!(p = memchr(p, '\n', (size_t)(end - p)))) return -1;
        p++;
        if (l < 0 || p + l + 2 > end) return -1;
        args[got++] = (argView){p, (size_t)l};
        p += l + 2;
    }
    *argc = (int)n;
    return got;
}

static int argIs(argView a, const char *s) {
    return a.len == strlen(s) && strncasecmp(a.p, s, a.len) == 0;
}

int rsgClusterCommandSlot(const char *cmd, size_t len) {
    argView a[64];
    int argc = 0;
    int n = respArgs(cmd, len, a, 64, &argc);
    if (n < 1) return -1;
    static const char *const keyless[] = {
        "PING",   "ECHO",    "INFO",   "CLUSTER",  "SCRIPT",   "FUNCTION", "TIME",     "DBSIZE",
        "CLIENT", "COMMAND", "CONFIG", "PUBLISH",  "SPUBLISH", "ASKING",   "READONLY", "AUTH",
        "HELLO",  "SELECT",  "WAIT",   "LASTSAVE", "MULTI",    "EXEC",     "DISCARD",  "ROLE"};
    for (size_t i = 0; i < sizeof(keyless) / sizeof(keyless[0]); i++)
        if (argIs(a[0], keyless[i])) return -1;
    argView key = {NULL, 0};
    if (argIs(a[0], "EVAL") || argIs(a[0], "EVALSHA") || argIs(a[0], "EVAL_RO") ||
        argIs(a[0], "EVALSHA_RO") || argIs(a[0], "FCALL") || argIs(a[0], "FCALL_RO")) {
        if (n >= 4 && strtol(a[2].p, NULL, 10) > 0) key = a[3];
    } else if (argIs(a[0], "XREAD") || argIs(a[0], "XREADGROUP")) {
        for (int i = 1; i + 1 < n; i++)
            if (argIs(a[i], "STREAMS")) {
                key = a[i + 1];
                break;
            }
    } else if (argIs(a[0], "XGROUP") || argIs(a[0], "XINFO") || argIs(a[0], "OBJECT") ||
               argIs(a[0], "MEMORY")) {
        if (n >= 3) key = a[2];
    } else if (n >= 2) {
        key = a[1];
    }
    return key.p ? rsgClusterKeySlot(key.p, key.len) : -1;
}

int rsgClusterCommandIs(const char *cmd, size_t len, const char *name) {
    argView a[1];
    int argc = 0;
    return respArgs(cmd, len, a, 1, &argc) == 1 && argIs(a[0], name);
}

/* ---- Redirections ---- */

int rsgClusterParseRedirect(const char *err, size_t len, rsgClusterRedirect *out) {
    int ask;
    size_t i;
    if (len > 6 && memcmp(err, "MOVED ", 6) == 0)
        ask = 0, i = 6;
    else if (len > 4 && memcmp(err, "ASK ", 4) == 0)
        ask = 1, i = 4;
    else
        return 0;
    long slot = 0;
    size_t digits = 0;
    for (; i < len && err[i] >= '0' && err[i] <= '9' && digits < 6; i++, digits++)
        slot = slot * 10 + (err[i] - '0');
    if (digits == 0 || slot >= RSG_CLUSTER_SLOTS || i >= len || err[i] != ' ') return 0;
    const char *addr = err + i + 1;
    size_t alen = len - i - 1;
    /* The port follows the last ':': "::1:6381" is host ::1. */
    const char *colon = NULL;
    for (size_t k = 0; k < alen; k++)
        if (addr[k] == ':') colon = addr + k;
    if (!colon) return 0;
    long port = 0;
    size_t plen = alen - (size_t)(colon - addr) - 1;
    if (plen == 0 || plen > 5) return 0;
    for (size_t k = 0; k < plen; k++) {
        char c = colon[1 + k];
        if (c < '0' || c > '9') return 0;
        port = port * 10 + (c - '0');
    }
    if (port < 1 || port > 65535) return 0;
    size_t hlen = (size_t)(colon - addr);
    const char *host = addr;
    if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') host++, hlen -= 2;
    if (hlen >= sizeof(out->host)) return 0;
    out->ask = ask;
    out->slot = (int)slot;
    memcpy(out->host, host, hlen);
    out->host[hlen] = '\0';
    out->port = (int)port;
    return 1;
}
