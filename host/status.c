/* status.c - see status.h. */
#include "status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "dial.h"
#include "heart.h"
#include "print.h"

/* One stream of the source, and the group on it. */
typedef struct streamRow {
    const char *name;  /* the stream's key (src owns it) */
    int exists;        /* the key exists */
    long long length;  /* XLEN */
    int has_group;     /* the group exists on it */
    long long pending; /* the group's pending entries */
    char last_id[64];  /* last-delivered-id */
    char lag[24];      /* entries not yet delivered; "" when Redis cannot say */
} streamRow;

/* One consumer of the group, over all streams. */
typedef struct consumerRow {
    char *name;
    long long pending;  /* pending entries, all streams */
    long long idle_ms;  /* the least idle time over the streams */
    int registered;     /* in rsghost:consumers:<group>: keeps a liveness key */
    long long key_ttl;  /* PTTL of its liveness key: -2 none, -1 no expiry */
    int heard;          /* its heartbeat came on the channel while we listened */
    const char *state;  /* alive, dead, silent or unknown */
    char evidence[128]; /* why we say so */
} consumerRow;

/* Everything one refresh shows. */
typedef struct snapshot {
    streamRow *streams;
    int nstreams;
    consumerRow *cons;
    int ncons, cap;
    long long dead; /* entries in source.dead_letter, -1 when there is none */
} snapshot;

/* Frees what s holds and empties it (safe on a half-filled one). */
static void freeSnapshot(snapshot *s) {
    for (int i = 0; i < s->ncons; i++)
        free(s->cons[i].name);
    free(s->cons);
    free(s->streams);
    memset(s, 0, sizeof(*s));
}

/* The consumer named n (len bytes), added when new. NULL when out of
 * memory. */
static consumerRow *consumer(snapshot *s, const char *n, size_t len) {
    for (int i = 0; i < s->ncons; i++)
        if (strlen(s->cons[i].name) == len && memcmp(s->cons[i].name, n, len) == 0)
            return &s->cons[i];
    if (s->ncons == s->cap) {
        int cap = s->cap ? 2 * s->cap : 16;
        consumerRow *m = realloc(s->cons, (size_t)cap * sizeof(*m));
        if (!m) return NULL;
        s->cons = m;
        s->cap = cap;
    }
    consumerRow *c = &s->cons[s->ncons];
    memset(c, 0, sizeof(*c));
    c->name = strndup(n, len);
    if (!c->name) return NULL;
    c->idle_ms = -1;
    c->key_ttl = -2;
    s->ncons++;
    return c;
}

/* The value of field name in a flat RESP2 map (XINFO's replies), or NULL. */
static const redisReply *field(const redisReply *map, const char *name) {
    if (!map || map->type != REDIS_REPLY_ARRAY) return NULL;
    for (size_t i = 0; i + 1 < map->elements; i += 2) {
        const redisReply *k = map->element[i];
        if (k->type == REDIS_REPLY_STRING && strcmp(k->str, name) == 0) return map->element[i + 1];
    }
    return NULL;
}

/* An integer field (or its string form; Redis 7 sends lag as an integer or
 * nil). Returns 0 with *out, or -1. */
static int intField(const redisReply *map, const char *name, long long *out) {
    const redisReply *v = field(map, name);
    if (v && v->type == REDIS_REPLY_INTEGER) {
        *out = v->integer;
        return 0;
    }
    if (v && v->type == REDIS_REPLY_STRING) {
        *out = strtoll(v->str, NULL, 10);
        return 0;
    }
    return -1;
}

/* XINFO GROUPS and XINFO CONSUMERS of one stream into s. Returns 0, or -1
 * with a reason in err. A stream or group that does not exist is not an
 * error: it shows as such. */
static int readStream(rsgDialer *c, const char *group, streamRow *row, snapshot *s, char *err,
                      size_t errlen) {
    const char *xlen[] = {"XLEN", row->name};
    const char *type[] = {"TYPE", row->name};
    redisReply *r = rsgDialerCall(c, 2, type, NULL, err, errlen);
    if (!r) return -1;
    row->exists = r->type == REDIS_REPLY_STATUS && strcmp(r->str, "stream") == 0;
    int other = r->type == REDIS_REPLY_STATUS && strcmp(r->str, "none") != 0 && !row->exists;
    freeReplyObject(r);
    if (other) {
        snprintf(err, errlen, "key '%s' is not a stream", row->name);
        return -1;
    }
    if (!row->exists) return 0;
    if (!(r = rsgDialerCall(c, 2, xlen, NULL, err, errlen))) return -1;
    row->length = r->integer;
    freeReplyObject(r);

    const char *groups[] = {"XINFO", "GROUPS", row->name};
    if (!(r = rsgDialerCall(c, 3, groups, NULL, err, errlen))) return -1;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *g = r->element[i], *name = field(g, "name");
        if (!name || name->type != REDIS_REPLY_STRING || strcmp(name->str, group) != 0) continue;
        row->has_group = 1;
        intField(g, "pending", &row->pending);
        const redisReply *last = field(g, "last-delivered-id");
        if (last && last->type == REDIS_REPLY_STRING)
            snprintf(row->last_id, sizeof(row->last_id), "%s", last->str);
        long long lag;
        if (intField(g, "lag", &lag) == 0) snprintf(row->lag, sizeof(row->lag), "%lld", lag);
    }
    freeReplyObject(r);
    if (!row->has_group) return 0;

    const char *cons[] = {"XINFO", "CONSUMERS", row->name, group};
    if (!(r = rsgDialerCall(c, 4, cons, NULL, err, errlen))) return -1;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *name = field(r->element[i], "name");
        if (!name || name->type != REDIS_REPLY_STRING) continue;
        consumerRow *cr = consumer(s, name->str, name->len);
        if (!cr) {
            freeReplyObject(r);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        long long pending = 0, idle = -1;
        intField(r->element[i], "pending", &pending);
        intField(r->element[i], "idle", &idle);
        cr->pending += pending;
        if (idle >= 0 && (cr->idle_ms < 0 || idle < cr->idle_ms)) cr->idle_ms = idle;
    }
    freeReplyObject(r);
    return 0;
}

/* Which consumers keep a liveness key, and their keys' PTTL. Returns 0, or
 * -1 with a reason in err. */
static int readLiveness(rsgDialer *c, const char *group, snapshot *s, char *err, size_t errlen) {
    char *reg = rsgHeartRegistryKey(group);
    if (!reg) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    const char *hkeys[] = {"HKEYS", reg};
    redisReply *r = rsgDialerCall(c, 2, hkeys, NULL, err, errlen);
    free(reg);
    if (!r) return -1;
    for (size_t i = 0; i < r->elements; i++)
        for (int k = 0; k < s->ncons; k++)
            if (r->element[i]->type == REDIS_REPLY_STRING &&
                strcmp(r->element[i]->str, s->cons[k].name) == 0)
                s->cons[k].registered = 1;
    freeReplyObject(r);
    for (int k = 0; k < s->ncons; k++) {
        char *key = rsgHeartAliveKey(group, s->cons[k].name);
        if (!key) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        const char *pttl[] = {"PTTL", key};
        r = rsgDialerCall(c, 2, pttl, NULL, err, errlen);
        free(key);
        if (!r) return -1;
        s->cons[k].key_ttl = r->type == REDIS_REPLY_INTEGER ? r->integer : -2;
        freeReplyObject(r);
    }
    return 0;
}

/* One snapshot of src's group. Returns 0, or -1 with a reason in err. */
static int gather(rsgDialer *c, const rsgSourceConfig *src, snapshot *s, char *err, size_t errlen) {
    memset(s, 0, sizeof(*s));
    s->dead = -1;
    s->streams = calloc((size_t)src->nstreams, sizeof(*s->streams));
    if (!s->streams) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->nstreams = src->nstreams;
    for (int i = 0; i < src->nstreams; i++) {
        s->streams[i].name = src->streams[i];
        if (readStream(c, src->group, &s->streams[i], s, err, errlen) != 0) return -1;
    }
    if (readLiveness(c, src->group, s, err, errlen) != 0) return -1;
    if (src->dead_letter) {
        const char *xlen[] = {"XLEN", src->dead_letter};
        redisReply *r = rsgDialerCall(c, 2, xlen, NULL, err, errlen);
        if (!r) return -1;
        s->dead = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
        freeReplyObject(r);
    }
    return 0;
}

/* Whether some consumer can only be judged by hearing its heartbeats. */
static int needsListening(const rsgSourceConfig *src, const snapshot *s) {
    if (src->heartbeat_interval <= 0 || !src->heartbeat_channel) return 0;
    for (int i = 0; i < s->ncons; i++)
        if (!s->cons[i].registered) return 1;
    return 0;
}

/* Monotonic seconds, for the listening window and --watch. */
static double nowSeconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Listens on the heartbeat channel for `seconds` and marks the consumers
 * heard. A connection of its own: a subscribed one can do nothing else, and
 * a read that times out leaves a hiredis context unusable. Returns 0, or -1
 * with a reason in err (the consumers heard so far stay marked). */
static int listenHeartbeats(const rsgRedisUrl *url, const char *channel, double seconds,
                            snapshot *s, char *err, size_t errlen) {
    redisContext *c = rsgDialMaster(url, err, errlen);
    if (!c) return -1;
    const char *sub[] = {"SUBSCRIBE", channel};
    if (redisAppendCommandArgv(c, 2, sub, NULL) != REDIS_OK) {
        snprintf(err, errlen, "SUBSCRIBE: %s", c->errstr);
        redisFree(c);
        return -1;
    }
    double deadline = nowSeconds() + seconds;
    for (;;) {
        double left = deadline - nowSeconds();
        if (left <= 0) break;
        struct timeval tv = {(time_t)left, (suseconds_t)((left - (double)(time_t)left) * 1e6)};
        redisSetTimeout(c, tv);
        void *rep = NULL;
        if (redisGetReply(c, &rep) != REDIS_OK) break; /* the timeout, or a loss */
        redisReply *r = rep;
        /* ["message", channel, payload]: the payload is the bare name. */
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
            r->element[0]->type == REDIS_REPLY_STRING &&
            strcmp(r->element[0]->str, "message") == 0 &&
            r->element[2]->type == REDIS_REPLY_STRING) {
            for (int i = 0; i < s->ncons; i++)
                if (strlen(s->cons[i].name) == r->element[2]->len &&
                    memcmp(s->cons[i].name, r->element[2]->str, r->element[2]->len) == 0)
                    s->cons[i].heard = 1;
        }
        freeReplyObject(r);
    }
    redisFree(c);
    return 0;
}

/* Says of each consumer whether it is alive, and why (status.h). */
static void judge(const rsgSourceConfig *src, snapshot *s) {
    double ct = src->claim_timeout;
    for (int i = 0; i < s->ncons; i++) {
        consumerRow *c = &s->cons[i];
        if (c->registered && c->key_ttl >= 0 && ct > 0) {
            double age = ct - (double)c->key_ttl / 1000.0;
            c->state = "alive";
            snprintf(c->evidence, sizeof(c->evidence), "liveness key, heartbeat %.1fs ago",
                     age < 0 ? 0 : age);
        } else if (c->registered && c->key_ttl != -2) {
            c->state = "alive";
            snprintf(c->evidence, sizeof(c->evidence), "liveness key");
        } else if (c->registered) {
            c->state = "dead";
            snprintf(c->evidence, sizeof(c->evidence), "liveness key gone: its heart stopped");
        } else if (c->heard) {
            c->state = "alive";
            snprintf(c->evidence, sizeof(c->evidence), "heartbeat heard, no liveness key");
        } else if (ct > 0 && c->idle_ms >= 0 && (double)c->idle_ms < ct * 1000) {
            c->state = "alive";
            snprintf(c->evidence, sizeof(c->evidence),
                     "no heartbeat heard; seen by redis %.1fs ago", (double)c->idle_ms / 1000.0);
        } else if (ct > 0) {
            c->state = "silent";
            snprintf(c->evidence, sizeof(c->evidence),
                     "no heartbeat heard, no liveness key; peers claim what it holds");
        } else {
            c->state = "unknown";
            snprintf(c->evidence, sizeof(c->evidence), "the script has no heartbeats");
        }
    }
}

/* A C string as an rsgStr, for print.h. */
static rsgStr str(const char *s) {
    return (rsgStr){s, strlen(s)};
}

/* One snapshot as one JSON object on one line (status.h). */
static void printJson(const rsgSourceConfig *src, const snapshot *s) {
    fputs("{\"group\":", stdout);
    rsgPrintJsonString(stdout, str(src->group));
    fputs(",\"streams\":[", stdout);
    for (int i = 0; i < s->nstreams; i++) {
        const streamRow *r = &s->streams[i];
        fputs(i ? ",{\"stream\":" : "{\"stream\":", stdout);
        rsgPrintJsonString(stdout, str(r->name));
        printf(",\"exists\":%s,\"length\":%lld,\"group_exists\":%s", r->exists ? "true" : "false",
               r->length, r->has_group ? "true" : "false");
        if (r->has_group) {
            printf(",\"pending\":%lld,\"last_delivered_id\":", r->pending);
            rsgPrintJsonString(stdout, str(r->last_id));
            printf(",\"lag\":%s", r->lag[0] ? r->lag : "null");
        }
        fputc('}', stdout);
    }
    fputs("],\"consumers\":[", stdout);
    for (int i = 0; i < s->ncons; i++) {
        const consumerRow *c = &s->cons[i];
        fputs(i ? ",{\"name\":" : "{\"name\":", stdout);
        rsgPrintJsonString(stdout, str(c->name));
        fputs(",\"state\":", stdout);
        rsgPrintJsonString(stdout, str(c->state));
        printf(",\"pending\":%lld,\"idle_ms\":%lld,\"liveness_key\":%s,\"heartbeat_heard\":%s,"
               "\"evidence\":",
               c->pending, c->idle_ms, c->registered ? "true" : "false",
               c->heard ? "true" : "false");
        rsgPrintJsonString(stdout, str(c->evidence));
        fputc('}', stdout);
    }
    fputs("]", stdout);
    if (s->dead >= 0) {
        fputs(",\"dead_letters\":{\"stream\":", stdout);
        rsgPrintJsonString(stdout, str(src->dead_letter));
        printf(",\"count\":%lld}", s->dead);
    }
    fputs("}\n", stdout);
}

/* Pads to width w after writing a cell of cw columns. */
static void pad(size_t cw, size_t w) {
    printf("%*s  ", (int)(w > cw ? w - cw : 0), "");
}

/* One snapshot as tables for a terminal; names shown with control bytes
 * escaped (print.h). */
static void printTable(const rsgSourceConfig *src, const snapshot *s) {
    printf("group '");
    rsgPrintVisible(stdout, str(src->group));
    if (src->heartbeat_interval > 0)
        printf("' (heartbeats every %gs, claim_timeout %gs)\n\n", src->heartbeat_interval,
               src->claim_timeout);
    else
        printf("' (no heartbeats)\n\n");
    size_t w = 6;
    for (int i = 0; i < s->nstreams; i++) {
        size_t cw = rsgPrintVisible(NULL, str(s->streams[i].name));
        if (cw > w) w = cw;
    }
    printf("%-*s  %8s  %8s  %8s  %s\n", (int)w, "STREAM", "LENGTH", "LAG", "PENDING",
           "LAST-DELIVERED");
    for (int i = 0; i < s->nstreams; i++) {
        const streamRow *r = &s->streams[i];
        pad(rsgPrintVisible(stdout, str(r->name)), w);
        if (!r->exists)
            printf("%8s  (no such stream)\n", "-");
        else if (!r->has_group)
            printf("%8lld  (the group does not exist on it)\n", r->length);
        else
            printf("%8lld  %8s  %8lld  %s\n", r->length, r->lag[0] ? r->lag : "?", r->pending,
                   r->last_id);
    }
    putchar('\n');
    if (s->ncons == 0) {
        printf("no consumers\n");
    } else {
        w = 8;
        for (int i = 0; i < s->ncons; i++) {
            size_t cw = rsgPrintVisible(NULL, str(s->cons[i].name));
            if (cw > w) w = cw;
        }
        printf("%-*s  %-7s  %8s  %9s  %s\n", (int)w, "CONSUMER", "STATE", "PENDING", "IDLE", "WHY");
        for (int i = 0; i < s->ncons; i++) {
            const consumerRow *c = &s->cons[i];
            pad(rsgPrintVisible(stdout, str(c->name)), w);
            printf("%-7s  %8lld  %8.1fs  %s\n", c->state, c->pending,
                   c->idle_ms < 0 ? 0.0 : (double)c->idle_ms / 1000.0, c->evidence);
        }
    }
    if (s->dead >= 0) {
        printf("\ndead letters: %lld in '", s->dead);
        rsgPrintVisible(stdout, str(src->dead_letter));
        printf("'\n");
    }
}

/* One refresh: gather, listen when needed (for `listen_for` seconds),
 * judge, print. *c is the connection, dialled again when lost. Returns 0,
 * or -1 having said why on stderr. */
static int refresh(rsgDialer **c, const rsgOptions *opts, const rsgRedisUrl *url,
                   const rsgSourceConfig *src, double listen_for) {
    char err[1024];
    snapshot s;
    if (!*c && !(*c = rsgDialOpen(url, err, sizeof(err)))) {
        fprintf(stderr, "rsghost: %s\n", err);
        return -1;
    }
    if (gather(*c, src, &s, err, sizeof(err)) != 0) {
        fprintf(stderr, "rsghost: status of group '%s': %s\n", src->group, err);
        freeSnapshot(&s);
        rsgDialClose(*c);
        *c = NULL;
        return -1;
    }
    if (needsListening(src, &s) &&
        listenHeartbeats(url, src->heartbeat_channel, listen_for, &s, err, sizeof(err)) != 0)
        fprintf(stderr, "rsghost: not listening for heartbeats: %s\n", err);
    judge(src, &s);
    if (opts->watch > 0 && !opts->json && isatty(STDOUT_FILENO))
        fputs("\033[H\033[2J", stdout); /* in place: home, clear */
    if (opts->json)
        printJson(src, &s);
    else
        printTable(src, &s);
    fflush(stdout);
    freeSnapshot(&s);
    return 0;
}

int rsgStatusMain(const rsgOptions *opts, const rsgRedisUrl *url, const rsgSourceConfig *src) {
    if (!src->group) {
        fprintf(stderr,
                "rsghost: status: %s reads without a consumer group, so there is no group "
                "to show\n",
                opts->script);
        return 2;
    }
    rsgDialer *c = NULL;
    /* Long enough to hear every consumer beat twice, no longer than peers
     * wait before they call one dead. */
    double window = 2 * src->heartbeat_interval;
    if (src->claim_timeout > 0 && window > src->claim_timeout) window = src->claim_timeout;
    int code = 0;
    if (opts->watch <= 0) {
        code = refresh(&c, opts, url, src, window) == 0 ? 0 : 1;
    } else {
        for (;;) {
            double t0 = nowSeconds();
            /* Between refreshes: listening is the wait. */
            refresh(&c, opts, url, src, opts->watch);
            double left = opts->watch - (nowSeconds() - t0);
            if (left > 0) usleep((useconds_t)(left * 1e6));
        }
    }
    rsgDialClose(c);
    return code;
}
