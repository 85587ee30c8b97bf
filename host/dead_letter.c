/* dead_letter.c - see dead_letter.h. */
#include "dead_letter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

/* KEYS[1] the dead-letter stream, KEYS[2] the message's stream or list,
 * KEYS[3] (reliable lists only) its processing list. ARGV: how it leaves
 * ('ack' a group, 'copy' plain streams, 'item' lists), group ('' without),
 * id or item, consumer, deliveries, error, failed_at ms, maxlen (0: no
 * trimming). Returns 1 when the message was taken out (XACK's or LREM's
 * count: 0 when it was no longer there). unpack() takes up to LuaJIT's C
 * stack limit (about 8000 values): a message of more than ~3990 fields
 * fails here and stays where it was, logged. */
static const char *deadLetterScript =
    "local how = ARGV[1]\n"
    "local item = how == 'item'\n"
    "local a = {'XADD', KEYS[1]}\n"
    "if ARGV[8] ~= '0' then a[#a+1] = 'MAXLEN'; a[#a+1] = '~'; a[#a+1] = ARGV[8] end\n"
    "local h = {'*', item and 'rsghost:list' or 'rsghost:stream', KEYS[2],\n"
    "  'rsghost:id', item and '' or ARGV[3], 'rsghost:group', ARGV[2],\n"
    "  'rsghost:consumer', ARGV[4], 'rsghost:deliveries', ARGV[5], 'rsghost:error', ARGV[6],\n"
    "  'rsghost:failed_at', ARGV[7]}\n"
    "for i = 1, #h do a[#a+1] = h[i] end\n"
    "if item then\n"
    "  a[#a+1] = 'item'; a[#a+1] = ARGV[3]\n"
    "else\n"
    "  local e = redis.call('XRANGE', KEYS[2], ARGV[3], ARGV[3])\n"
    "  if e[1] then local f = e[1][2]; for i = 1, #f do a[#a+1] = f[i] end end\n"
    "end\n"
    "redis.call(unpack(a))\n"
    "if how == 'ack' then return redis.call('XACK', KEYS[2], ARGV[2], ARGV[3]) end\n"
    "if KEYS[3] then return redis.call('LREM', KEYS[3], 1, ARGV[3]) end\n"
    "return 1\n";

/* What the reply's log line names, and what runs after. */
typedef struct deadReq {
    char *key;          /* the dead-letter stream */
    rsgStr origin, id;  /* owned copies */
    rsgSourceKind kind; /* where a failure leaves the message */
    int reliable;       /* lists: kept in a processing list */
    void (*done)(void *ud, rsgStr origin, rsgStr id);
    void *ud;
} deadReq;

static void freeReq(deadReq *r) {
    free(r->key);
    free((char *)r->origin.p);
    free((char *)r->id.p);
    free(r);
}

static char *copyStr(rsgStr s, rsgStr *out) {
    char *p = malloc(s.len + 1);
    if (p) {
        memcpy(p, s.p, s.len);
        p[s.len] = '\0';
        *out = (rsgStr){p, s.len};
    }
    return p;
}

/* Where a message whose dead-lettering failed is, in words for the log. */
static const char *whereLeft(const deadReq *r) {
    switch (r->kind) {
        case RSG_SOURCE_GROUP:
            return "it stays pending";
        case RSG_SOURCE_STREAMS:
            return "the checkpoint stays before it, so a restart reads it again";
        default:
            return r->reliable ? "it stays in its processing list"
                               : "the item is lost (a plain list keeps nothing once popped)";
    }
}

/* A message's name in the log: "message ID of stream 'S'" or "item of list 'L'". */
static void describe(const deadReq *r, char *buf, size_t len) {
    if (r->kind == RSG_SOURCE_LISTS) {
        int shown = r->id.len > 200 ? 200 : (int)r->id.len;
        snprintf(buf, len, "item '%.*s%s' of list '%s'", shown, r->id.p,
                 r->id.len > 200 ? "..." : "", r->origin.p);
    } else {
        snprintf(buf, len, "message %s of stream '%s'", r->id.p, r->origin.p);
    }
}

static void onDeadLettered(redisAsyncContext *ac, void *rep, void *privdata) {
    (void)ac;
    deadReq *r = privdata;
    redisReply *reply = rep;
    char what[512];
    describe(r, what, sizeof(what));
    if (!reply)
        rsgWarn("the connection was lost while dead-lettering %s: it is either where it was "
                "(%s) or in '%s'",
                what, whereLeft(r), r->key);
    else if (reply->type == REDIS_REPLY_ERROR) {
        rsgLogField ev[3] = {{"stream", r->origin.p, r->origin.len},
                             {"id", r->id.p, r->id.len},
                             {"error", reply->str, reply->len}};
        rsgLogFields(RSG_LOG_ERROR, ev, 3, "dead-lettering %s to '%s' failed, %s: %s", what, r->key,
                     whereLeft(r), reply->str);
    } else {
        rsgDebug("%s dead-lettered to '%s'", what, r->key);
        if (r->done) r->done(r->ud, r->origin, r->id);
    }
    freeReq(r);
}

static const char *howOf(rsgSourceKind kind) {
    switch (kind) {
        case RSG_SOURCE_GROUP:
            return "ack";
        case RSG_SOURCE_STREAMS:
            return "copy";
        default:
            return "item";
    }
}

int rsgDeadLetterSend(rsgConn *cmds, const rsgSourceConfig *cfg, const char *consumer,
                      const rsgDeadLetter *d) {
    deadReq *r = calloc(1, sizeof(*r));
    if (r) {
        r->kind = cfg->kind;
        r->reliable = d->proc != NULL;
        r->done = d->done;
        r->ud = d->ud;
        r->key = strdup(cfg->dead_letter);
    }
    if (!r || !r->key || !copyStr(d->origin, &r->origin) || !copyStr(d->id, &r->id)) {
        if (r) freeReq(r);
        rsgError("out of memory dead-lettering a message of '%.*s': it stays where it was",
                 (int)d->origin.len, d->origin.p);
        return -1;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char dbuf[24], tbuf[24], mbuf[24];
    snprintf(dbuf, sizeof(dbuf), "%ld", d->deliveries);
    snprintf(tbuf, sizeof(tbuf), "%lld",
             (long long)ts.tv_sec * 1000 + (long long)(ts.tv_nsec / 1000000));
    snprintf(mbuf, sizeof(mbuf), "%ld", cfg->dead_letter_maxlen);
    int nkeys = d->proc ? 3 : 2;
    const char *argv[15] = {"EVAL", deadLetterScript, nkeys == 3 ? "3" : "2", cfg->dead_letter,
                            r->origin.p};
    size_t lens[15] = {0};
    int argc = 5;
    if (d->proc) argv[argc++] = d->proc;
    const char *args[] = {howOf(cfg->kind),
                          cfg->group ? cfg->group : "",
                          r->id.p,
                          consumer,
                          dbuf,
                          d->err.p,
                          tbuf,
                          mbuf};
    for (int i = 0; i < 8; i++)
        argv[argc++] = args[i];
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    lens[4] = r->origin.len;
    lens[argc - 6] = r->id.len;
    lens[argc - 3] = d->err.len;
    if (rsgConnCommand(cmds, onDeadLettered, r, argc, argv, lens) != 0) {
        char what[512];
        describe(r, what, sizeof(what));
        rsgError("cannot dead-letter %s (not connected to redis): %s", what, whereLeft(r));
        freeReq(r);
        return -1;
    }
    return 0;
}
