/* dead_letter.c - see dead_letter.h. */
#include "dead_letter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

/* KEYS[1] dead-letter stream, KEYS[2] the message's stream; ARGV: group, id,
 * consumer, deliveries, error, failed_at ms, maxlen (0: no trimming).
 * Returns XACK's count (0: it was no longer pending). unpack() takes up to
 * LuaJIT's C stack limit (about 8000 values): a message of more than ~3990
 * fields fails here and stays pending, logged. */
static const char *deadLetterScript =
    "local e = redis.call('XRANGE', KEYS[2], ARGV[2], ARGV[2])\n"
    "local a = {'XADD', KEYS[1]}\n"
    "if ARGV[7] ~= '0' then a[#a+1] = 'MAXLEN'; a[#a+1] = '~'; a[#a+1] = ARGV[7] end\n"
    "local h = {'*', 'rsghost:stream', KEYS[2], 'rsghost:id', ARGV[2], 'rsghost:group', ARGV[1],\n"
    "  'rsghost:consumer', ARGV[3], 'rsghost:deliveries', ARGV[4], 'rsghost:error', ARGV[5],\n"
    "  'rsghost:failed_at', ARGV[6]}\n"
    "for i = 1, #h do a[#a+1] = h[i] end\n"
    "if e[1] then local f = e[1][2]; for i = 1, #f do a[#a+1] = f[i] end end\n"
    "redis.call(unpack(a))\n"
    "return redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])\n";

/* What the reply's log line names. */
typedef struct deadReq {
    char *key;    /* the dead-letter stream */
    char *stream; /* the message's stream */
    char *id;     /* its id */
} deadReq;

static void freeReq(deadReq *r) {
    free(r->key);
    free(r->stream);
    free(r->id);
    free(r);
}

static void onDeadLettered(redisAsyncContext *ac, void *rep, void *privdata) {
    (void)ac;
    deadReq *r = privdata;
    redisReply *reply = rep;
    if (!reply)
        rsgWarn("the connection was lost while dead-lettering message %s of stream '%s': it is "
                "either still pending (replayed at the next start) or in '%s' and acked",
                r->id, r->stream, r->key);
    else if (reply->type == REDIS_REPLY_ERROR) {
        rsgLogField ev[3] = {{"stream", r->stream, strlen(r->stream)},
                             {"id", r->id, strlen(r->id)},
                             {"error", reply->str, reply->len}};
        rsgLogFields(
            RSG_LOG_ERROR, ev, 3,
            "dead-lettering message %s of stream '%s' to '%s' failed, it stays pending: %s", r->id,
            r->stream, r->key, reply->str);
    } else
        rsgDebug("message %s of stream '%s' dead-lettered to '%s'", r->id, r->stream, r->key);
    freeReq(r);
}

int rsgDeadLetterSend(rsgConn *cmds, const rsgSourceConfig *cfg, const char *consumer,
                      rsgStr stream, rsgStr id, long deliveries, rsgStr err) {
    deadReq *r = calloc(1, sizeof(*r));
    if (r) {
        r->key = strdup(cfg->dead_letter);
        r->stream = strndup(stream.p, stream.len);
        r->id = strndup(id.p, id.len);
    }
    if (!r || !r->key || !r->stream || !r->id) {
        if (r) freeReq(r);
        rsgError("out of memory dead-lettering message %.*s of stream '%.*s': it stays pending",
                 (int)id.len, id.p, (int)stream.len, stream.p);
        return -1;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char dbuf[24], tbuf[24], mbuf[24];
    snprintf(dbuf, sizeof(dbuf), "%ld", deliveries);
    snprintf(tbuf, sizeof(tbuf), "%lld",
             (long long)ts.tv_sec * 1000 + (long long)(ts.tv_nsec / 1000000));
    snprintf(mbuf, sizeof(mbuf), "%ld", cfg->dead_letter_maxlen);
    const char *argv[] = {"EVAL",   deadLetterScript,
                          "2",      cfg->dead_letter,
                          stream.p, cfg->group,
                          id.p,     consumer,
                          dbuf,     err.p,
                          tbuf,     mbuf};
    size_t lens[12];
    for (int i = 0; i < 12; i++)
        lens[i] = strlen(argv[i]);
    lens[4] = stream.len;
    lens[6] = id.len;
    lens[9] = err.len;
    if (rsgConnCommand(cmds, onDeadLettered, r, 12, argv, lens) != 0) {
        rsgError("cannot dead-letter message %s of stream '%s' (not connected to redis): it stays "
                 "pending",
                 r->id, r->stream);
        freeReq(r);
        return -1;
    }
    return 0;
}
