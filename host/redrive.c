/* redrive.c - see redrive.h. */
#include "redrive.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "tls.h"

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

/* Writes s for a terminal: control bytes as \n, \t or \xNN, the rest as
 * is (UTF-8 stays readable). Returns the number of columns written, counting
 * each byte as one. With out NULL only counts. */
static size_t putVisible(FILE *out, rsgStr s) {
    size_t w = 0;
    for (size_t i = 0; i < s.len; i++) {
        unsigned char ch = (unsigned char)s.p[i];
        char buf[8];
        if (ch == '\n')
            strcpy(buf, "\\n");
        else if (ch == '\t')
            strcpy(buf, "\\t");
        else if (ch < 0x20 || ch == 0x7f)
            snprintf(buf, sizeof(buf), "\\x%02x", ch);
        else {
            buf[0] = (char)ch;
            buf[1] = '\0';
        }
        if (out) fputs(buf, out);
        w += strlen(buf);
    }
    return w;
}

/* Writes s as a JSON string: quote, backslash and control bytes escaped;
 * other bytes as they are (so bytes that are not UTF-8 stay so). */
static void putJsonString(FILE *out, rsgStr s) {
    fputc('"', out);
    for (size_t i = 0; i < s.len; i++) {
        unsigned char ch = (unsigned char)s.p[i];
        if (ch == '"' || ch == '\\')
            fprintf(out, "\\%c", ch);
        else if (ch == '\n')
            fputs("\\n", out);
        else if (ch < 0x20)
            fprintf(out, "\\u%04x", ch);
        else
            fputc(ch, out);
    }
    fputc('"', out);
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
        putJsonString(out, s);
}

/* Sends one command. Returns its reply, or NULL with the reason in err
 * (a connection error or an error reply, which is freed). */
static redisReply *call(redisContext *c, int argc, const char **argv, const size_t *lens, char *err,
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
        redisReply *r = call(c, d->user ? 3 : 2, argv, NULL, why, sizeof(why));
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
        redisReply *r = call(c, 2, argv, NULL, why, sizeof(why));
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
            redisReply *r = call(c, 3, argv, NULL, why, sizeof(why));
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

/* Connects to url's master (asking the sentinels first for a Sentinel
 * URL). Returns the connection, or NULL with a reason in err. */
static redisContext *connectTo(const rsgRedisUrl *u, char *err, size_t errlen) {
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

/* XRANGE of the dead-letter stream: the count oldest entries, or all.
 * Returns the reply (an array), or NULL with a reason in err. */
static redisReply *readEntries(redisContext *c, const char *key, long count, char *err,
                               size_t errlen) {
    char n[24];
    snprintf(n, sizeof(n), "%ld", count);
    const char *argv[6] = {"XRANGE", key, "-", "+", "COUNT", n};
    return call(c, count > 0 ? 6 : 4, argv, NULL, err, errlen);
}

/* rsghost dead-letters: a table, or one JSON object per line. Returns the
 * exit status. */
static int listDeadLetters(redisContext *c, const rsgOptions *opts, const char *key) {
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
            size_t cw = putVisible(NULL, cols[k]);
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
                putJsonString(stdout, names[k]);
                fputc(':', stdout);
                if (k == 5 || k == 7)
                    putJsonNumber(stdout, vals[k]);
                else
                    putJsonString(stdout, vals[k]);
            }
            fputs("}\n", stdout);
            continue;
        }
        rsgStr cols[4] = {h->entry, h->stream, h->id, h->deliveries};
        for (int k = 0; k < 4; k++) {
            size_t cw = putVisible(stdout, cols[k]);
            printf("%*s  ", (int)(w[k] - cw), "");
        }
        putVisible(stdout, h->error);
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
static int moveOne(redisContext *c, const char *key, const char *id) {
    char err[1024];
    const char *rargv[4] = {"XRANGE", key, id, id};
    redisReply *r = call(c, 4, rargv, NULL, err, sizeof(err));
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
    redisReply *m = call(c, 6, argv, lens, err, sizeof(err));
    if (!m || m->type != REDIS_REPLY_STRING) {
        fprintf(stderr,
                "rsghost: moving dead letter %s of '%s' back to '%.*s' failed, it stays: %s\n", id,
                key, (int)h.stream.len, h.stream.p, m ? "unexpected reply" : err);
        if (m) freeReplyObject(m);
        freeReplyObject(r);
        return -1;
    }
    printf("%s -> ", id);
    putVisible(stdout, h.stream);
    printf(" %s\n", m->str);
    fflush(stdout);
    freeReplyObject(m);
    freeReplyObject(r);
    return 0;
}

/* rsghost redrive: the named entries, or the --count oldest, or all.
 * Returns the exit status. */
static int redrive(redisContext *c, const rsgOptions *opts, const char *key) {
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
    redisContext *c = connectTo(url, err, sizeof(err));
    if (!c) {
        fprintf(stderr, "rsghost: %s\n", err);
        return 1;
    }
    int code = opts->command == RSG_CMD_REDRIVE ? redrive(c, opts, src->dead_letter)
                                                : listDeadLetters(c, opts, src->dead_letter);
    redisFree(c);
    return code;
}
