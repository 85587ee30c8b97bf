/* redrive.c - see redrive.h. */
#include "redrive.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "dial.h"
#include "print.h"

/* KEYS[1] the dead-letter stream, KEYS[2] the entry's original stream or
 * list (read by the client first, declared here so the script names every
 * key it touches); ARGV[1] the entry id. The entry is read again inside the
 * script, so what is re-added is what is deleted. Fields 1-14 are the
 * rsghost: header dead_letter.c writes; the message's own fields follow (a
 * list's item as field `item`, pushed back with RPUSH). Returns the new id,
 * or "pushed" for a list. unpack() takes up to LuaJIT's C stack limit, as
 * in dead_letter.c: a message of more than ~3990 fields cannot be moved (an
 * error, the entry stays). */
static const char *redriveScript =
    "local e = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])[1]\n"
    "if not e then return redis.error_reply('ERR the dead letter is gone') end\n"
    "local f = e[2]\n"
    "local list = f[1] == 'rsghost:list'\n"
    "if not (list or f[1] == 'rsghost:stream') or f[2] ~= KEYS[2]\n"
    "    or f[13] ~= 'rsghost:failed_at' then\n"
    "  return redis.error_reply('ERR not an rsghost dead letter of this stream or list')\n"
    "end\n"
    "if #f < 16 then\n"
    "  return redis.error_reply('ERR it holds no fields: the message was gone when it was '\n"
    "    .. 'dead-lettered')\n"
    "end\n"
    "local id = 'pushed'\n"
    "if list then\n"
    "  redis.call('RPUSH', KEYS[2], f[16])\n"
    "else\n"
    "  local a = {'XADD', KEYS[2], '*'}\n"
    "  for i = 15, #f do a[#a+1] = f[i] end\n"
    "  id = redis.call(unpack(a))\n"
    "end\n"
    "redis.call('XDEL', KEYS[1], ARGV[1])\n"
    "return id\n";

/* The rsghost: header of one dead-letter entry, pointing into its reply. */
typedef struct deadHead {
    rsgStr entry;                        /* the entry's own id */
    int list;                            /* from a list (rsghost:list), not a stream */
    rsgStr stream, id, group, consumer;  /* where the message came from */
    rsgStr deliveries, error, failed_at; /* why it was dead-lettered */
} deadHead;

/* Fills h from e, one element of an XRANGE reply. Returns 0, or -1 when e
 * is not an entry dead_letter.c wrote (its header names, in order). */
static int readHead(const redisReply *e, deadHead *h) {
    static const char *names[] = {"rsghost:stream",   "rsghost:id",         "rsghost:group",
                                  "rsghost:consumer", "rsghost:deliveries", "rsghost:error",
                                  "rsghost:failed_at"};
    rsgStr *slots[] = {&h->stream,     &h->id,    &h->group,    &h->consumer,
                       &h->deliveries, &h->error, &h->failed_at};
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2) return -1;
    const redisReply *id = e->element[0], *f = e->element[1];
    if (id->type != REDIS_REPLY_STRING || f->type != REDIS_REPLY_ARRAY || f->elements < 14)
        return -1;
    h->entry = (rsgStr){id->str, id->len};
    const redisReply *first = f->element[0];
    h->list = first->type == REDIS_REPLY_STRING && first->len == 12 &&
              memcmp(first->str, "rsghost:list", 12) == 0;
    for (size_t i = 0; i < 7; i++) {
        const redisReply *n = f->element[2 * i], *v = f->element[2 * i + 1];
        const char *want = i == 0 && h->list ? "rsghost:list" : names[i];
        if (n->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
            n->len != strlen(want) || memcmp(n->str, want, n->len) != 0)
            return -1;
        *slots[i] = (rsgStr){v->str, v->len};
    }
    return 0;
}

/* A number field as a JSON number when it is one (it always is when
 * dead_letter.c wrote it), else as a string. */
static void putJsonNumber(FILE *out, rsgStr s) {
    size_t i = 0;
    while (i < s.len && s.p[i] >= '0' && s.p[i] <= '9')
        i++;
    if (s.len > 0 && i == s.len && s.len < 19)
        fwrite(s.p, 1, s.len, out);
    else
        rsgPrintJsonString(out, s);
}

/* XRANGE of the dead-letter stream: the count oldest entries, or all.
 * Returns the reply (an array), or NULL with a reason in err. */
static redisReply *readEntries(rsgDialer *c, const char *key, long count, char *err,
                               size_t errlen) {
    char n[24];
    snprintf(n, sizeof(n), "%ld", count);
    const char *argv[6] = {"XRANGE", key, "-", "+", "COUNT", n};
    return rsgDialerCall(c, count > 0 ? 6 : 4, argv, NULL, err, errlen);
}

/* rsghost dead-letters: a table, or one JSON object per line. Returns the
 * exit status. */
static int listDeadLetters(rsgDialer *c, const rsgOptions *opts, const char *key) {
    char err[1024];
    redisReply *r = readEntries(c, key, opts->count, err, sizeof(err));
    if (!r) {
        fprintf(stderr, "rsghost: reading dead letters from '%s': %s\n", key, err);
        return 1;
    }
    deadHead *heads = calloc(r->elements ? r->elements : 1, sizeof(*heads));
    if (!heads) {
        freeReplyObject(r);
        fprintf(stderr, "rsghost: out of memory\n");
        return 1;
    }
    size_t n = 0, w[4] = {5, 6, 2, 10}; /* ENTRY, STREAM, ID, DELIVERIES */
    for (size_t i = 0; i < r->elements; i++) {
        deadHead *h = &heads[n];
        if (readHead(r->element[i], h) != 0) {
            const redisReply *id =
                r->element[i]->type == REDIS_REPLY_ARRAY && r->element[i]->elements > 0
                    ? r->element[i]->element[0]
                    : NULL;
            fprintf(stderr, "rsghost: skipping entry %s of '%s': not an rsghost dead letter\n",
                    id && id->type == REDIS_REPLY_STRING ? id->str : "?", key);
            continue;
        }
        rsgStr cols[4] = {h->entry, h->stream, h->id, h->deliveries};
        for (int k = 0; k < 4; k++) {
            size_t cw = rsgPrintVisible(NULL, cols[k]);
            if (cw > w[k]) w[k] = cw;
        }
        n++;
    }
    if (!opts->json)
        printf("%-*s  %-*s  %-*s  %-*s  %s\n", (int)w[0], "ENTRY", (int)w[1], "STREAM", (int)w[2],
               "ID", (int)w[3], "DELIVERIES", "ERROR");
    for (size_t i = 0; i < n; i++) {
        const deadHead *h = &heads[i];
        if (opts->json) {
            rsgStr names[] = {{"entry", 5},    {h->list ? "list" : "stream", h->list ? 4 : 6},
                              {"id", 2},       {"group", 5},
                              {"consumer", 8}, {"deliveries", 10},
                              {"error", 5},    {"failed_at", 9}};
            rsgStr vals[] = {h->entry,    h->stream,     h->id,    h->group,
                             h->consumer, h->deliveries, h->error, h->failed_at};
            for (int k = 0; k < 8; k++) {
                fputs(k ? "," : "{", stdout);
                rsgPrintJsonString(stdout, names[k]);
                fputc(':', stdout);
                if (k == 5 || k == 7)
                    putJsonNumber(stdout, vals[k]);
                else
                    rsgPrintJsonString(stdout, vals[k]);
            }
            fputs("}\n", stdout);
            continue;
        }
        rsgStr cols[4] = {h->entry, h->stream, h->id, h->deliveries};
        for (int k = 0; k < 4; k++) {
            size_t cw = rsgPrintVisible(stdout, cols[k]);
            printf("%*s  ", (int)(w[k] - cw), "");
        }
        rsgPrintVisible(stdout, h->error);
        putchar('\n');
    }
    if (n == 0 && !opts->json) fprintf(stderr, "rsghost: no dead letters in '%s'\n", key);
    free(heads);
    freeReplyObject(r);
    return 0;
}

/* Moves entry id of the dead-letter stream key back to its stream and
 * prints "ENTRY -> STREAM NEW-ID". Returns 0, or -1 having said why on
 * stderr (the entry stays where it was). */
static int moveOne(rsgDialer *c, const char *key, const char *id) {
    char err[1024];
    const char *rargv[4] = {"XRANGE", key, id, id};
    redisReply *r = rsgDialerCall(c, 4, rargv, NULL, err, sizeof(err));
    if (!r) {
        fprintf(stderr, "rsghost: reading dead letter %s of '%s': %s\n", id, key, err);
        return -1;
    }
    deadHead h;
    if (r->elements == 0 || readHead(r->element[0], &h) != 0) {
        fprintf(stderr, "rsghost: %s: dead letter %s not found in '%s'\n",
                r->elements ? "not an rsghost dead letter" : "no such entry", id, key);
        freeReplyObject(r);
        return -1;
    }
    const char *argv[6] = {"EVAL", redriveScript, "2", key, h.stream.p, id};
    size_t lens[6];
    for (int i = 0; i < 6; i++)
        lens[i] = strlen(argv[i]);
    lens[4] = h.stream.len;
    redisReply *m = rsgDialerCall(c, 6, argv, lens, err, sizeof(err));
    if (!m || m->type != REDIS_REPLY_STRING) {
        fprintf(stderr,
                "rsghost: moving dead letter %s of '%s' back to '%.*s' failed, it stays: %s\n", id,
                key, (int)h.stream.len, h.stream.p, m ? "unexpected reply" : err);
        if (m) freeReplyObject(m);
        freeReplyObject(r);
        return -1;
    }
    printf("%s -> ", id);
    rsgPrintVisible(stdout, h.stream);
    printf(" %s\n", m->str);
    fflush(stdout);
    freeReplyObject(m);
    freeReplyObject(r);
    return 0;
}

/* rsghost redrive: the named entries, or the --count oldest, or all.
 * Returns the exit status. */
static int redrive(rsgDialer *c, const rsgOptions *opts, const char *key) {
    long moved = 0, failed = 0;
    if (opts->nids) {
        for (int i = 0; i < opts->nids; i++)
            moveOne(c, key, opts->ids[i]) == 0 ? moved++ : failed++;
    } else {
        char err[1024];
        redisReply *r = readEntries(c, key, opts->count, err, sizeof(err));
        if (!r) {
            fprintf(stderr, "rsghost: reading dead letters from '%s': %s\n", key, err);
            return 1;
        }
        for (size_t i = 0; i < r->elements; i++) {
            const redisReply *e = r->element[i];
            if (e->type != REDIS_REPLY_ARRAY || e->elements < 1 ||
                e->element[0]->type != REDIS_REPLY_STRING)
                continue;
            moveOne(c, key, e->element[0]->str) == 0 ? moved++ : failed++;
        }
        freeReplyObject(r);
    }
    fprintf(stderr, "rsghost: moved %ld dead letter(s) from '%s'%s", moved, key,
            failed ? "" : "\n");
    if (failed) fprintf(stderr, "; %ld could not be moved (above)\n", failed);
    return failed ? 1 : 0;
}

int rsgRedriveMain(const rsgOptions *opts, const rsgRedisUrl *url, const rsgSourceConfig *src) {
    const char *what = opts->command == RSG_CMD_REDRIVE ? "redrive" : "dead-letters";
    if (!src->dead_letter) {
        fprintf(stderr,
                "rsghost: %s: %s has no source.dead_letter, so there are no dead letters to %s\n",
                what, opts->script, opts->command == RSG_CMD_REDRIVE ? "move" : "list");
        return 2;
    }
    char err[1024];
    rsgDialer *c = rsgDialOpen(url, err, sizeof(err));
    if (!c) {
        fprintf(stderr, "rsghost: %s\n", err);
        return 1;
    }
    int code = opts->command == RSG_CMD_REDRIVE ? redrive(c, opts, src->dead_letter)
                                                : listDeadLetters(c, opts, src->dead_letter);
    rsgDialClose(c);
    return code;
}
