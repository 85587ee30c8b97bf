/* source.c - see source.h: the parts common to every kind of source. */
#include "source.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "rules.h"
#include "source_kind.h"

static void bytesRead(rsgSource *s, const rsgMsg *msgs, int n);

const rsgSourceType *rsgSourceTypeOf(rsgSourceKind kind) {
    static const rsgSourceType *const types[] = {
        [RSG_SOURCE_GROUP] = &rsgSourceGroup,
        [RSG_SOURCE_STREAMS] = &rsgSourceStreams,
        [RSG_SOURCE_LISTS] = &rsgSourceLists,
    };
    if ((unsigned)kind >= sizeof(types) / sizeof(types[0])) return &rsgSourceGroup;
    return types[kind];
}

int rsgSourceInit(rsgSource *s, rsgConn *conn, rsgAck *ack, const rsgSourceConfig *cfg,
                  const char *consumer, const rsgSourceHooks *hooks, char *err, size_t errlen) {
    memset(s, 0, sizeof(*s));
    s->conn = conn;
    s->ack = ack;
    s->consumer = consumer;
    s->hooks = *hooks;
    s->type = cfg->cluster && cfg->kind == RSG_SOURCE_GROUP ? &rsgSourceClusterGroup
                                                            : rsgSourceTypeOf(cfg->kind);
    if (rsgDecoderInit(&s->dec, cfg->encoding, err, errlen) != 0) return -1;
    s->cfg = cfg; /* from here on rsgSourceFree cleans up */
    s->cursor = calloc((size_t)cfg->nstreams, sizeof(char *));
    s->keyrefs = calloc((size_t)cfg->nstreams + 1, sizeof(rsgKeyRef));
    if (!s->cursor || !s->keyrefs) goto oom;
    for (int i = 0; i <= cfg->nstreams; i++)
        s->keyrefs[i] = (rsgKeyRef){s, i};
    if (s->type->init(s) != 0) goto oom;
    return 0;
oom:
    rsgSourceFree(s);
    snprintf(err, errlen, "out of memory");
    return -1;
}

void rsgSourceFatal(rsgSource *s, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    s->hooks.fatal(s->hooks.ud, msg);
}

void rsgSourceSetCursor(rsgSource *s, int i, const char *id, size_t len) {
    char *copy = strndup(id, len);
    /* Out of memory: keep the old cursor. A group then re-reads a little
     * (pending entries are idempotent to replay); never lose our place. */
    if (!copy) {
        rsgError("out of memory keeping the read position of '%s'", s->cfg->streams[i]);
        return;
    }
    free(s->cursor[i]);
    s->cursor[i] = copy;
}

void rsgSourceXack(rsgSource *s, rsgStr stream, int n, const rsgStr *ids) {
    const char *sargv[259];
    size_t slens[259];
    int argc = n + 3;
    const char **argv = argc <= 259 ? sargv : malloc(sizeof(char *) * (size_t)argc);
    size_t *lens = argc <= 259 ? slens : malloc(sizeof(size_t) * (size_t)argc);
    int ok = argv && lens;
    if (ok) {
        argv[0] = "XACK", lens[0] = 4;
        argv[1] = stream.p, lens[1] = stream.len;
        argv[2] = s->cfg->group, lens[2] = strlen(s->cfg->group);
        for (int i = 0; i < n; i++)
            argv[i + 3] = ids[i].p, lens[i + 3] = ids[i].len;
        ok = rsgAckPush(s->ack, argc, argv, lens, n) == 0;
    }
    if (ok) rsgDebug("acking %d message(s) of stream '%.*s'", n, (int)stream.len, stream.p);
    if (argv != sargv) free(argv);
    if (lens != slens) free(lens);
    if (!ok) rsgError("out of memory queueing acks: %d message(s) stay pending", n);
}

void rsgPendingClear(rsgPendingCounts *p) {
    for (size_t i = 0; i < p->n; i++)
        free(p->ids[i]);
    free(p->ids);
    free(p->counts);
    p->ids = NULL;
    p->counts = NULL;
    p->n = 0;
}

void rsgPendingTake(rsgPendingCounts *p, const redisReply *reply) {
    rsgPendingClear(p);
    size_t n = reply->elements;
    if (reply->type != REDIS_REPLY_ARRAY || n == 0) return;
    p->ids = calloc(n, sizeof(char *));
    p->counts = calloc(n, sizeof(long));
    if (!p->ids || !p->counts) {
        rsgPendingClear(p);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const redisReply *e = reply->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 4 ||
            e->element[0]->type != REDIS_REPLY_STRING || e->element[3]->type != REDIS_REPLY_INTEGER)
            break;
        if (!(p->ids[i] = strndup(e->element[0]->str, e->element[0]->len))) break;
        p->counts[i] = (long)e->element[3]->integer;
        p->n = i + 1;
    }
}

void rsgPendingReplayCounts(const rsgPendingCounts *p, const redisReply *list, long *counts) {
    size_t k = 0;
    for (size_t j = 0; j < list->elements; j++) {
        const redisReply *id = list->element[j]->element[0];
        counts[j] = 1;
        for (size_t q = k; q < p->n; q++)
            if (strlen(p->ids[q]) == id->len && memcmp(p->ids[q], id->str, id->len) == 0) {
                counts[j] = p->counts[q] + 1;
                k = q + 1;
                break;
            }
    }
}

void *rsgSourceKeyRef(rsgSource *s, int i) {
    return &s->keyrefs[i];
}

rsgSource *rsgSourceKeyOf(void *privdata, int *i) {
    rsgKeyRef *k = privdata;
    *i = k->i;
    return k->s;
}

int rsgSourceIndex(const rsgSource *s, const char *name, size_t len) {
    for (int i = 0; i < s->cfg->nstreams; i++)
        if (strlen(s->cfg->streams[i]) == len && memcmp(s->cfg->streams[i], name, len) == 0)
            return i;
    return -1;
}

/* ---- Setup: every key must be of the kind the source reads ---- */

/* Keys checked at setup: the source's, then the dead-letter stream's. */
static int checkedKeys(const rsgSource *s) {
    return s->cfg->nstreams + (s->cfg->dead_letter != NULL);
}

static void onType(redisAsyncContext *ac, void *r, void *privdata) {
    (void)ac;
    int i;
    rsgSource *s = rsgSourceKeyOf(privdata, &i);
    redisReply *reply = r;
    if (!reply || s->stopped) return; /* lost: setup runs again on reconnect */
    const char *want = s->type->key_type;
    if (i == s->cfg->nstreams) { /* the dead-letter stream */
        if (reply->type == REDIS_REPLY_STATUS && strcmp(reply->str, "none") != 0 &&
            strcmp(reply->str, "stream") != 0) {
            rsgSourceFatal(s,
                           "source.dead_letter: key '%s' holds a %s, not a stream (WRONGTYPE); "
                           "nothing was read",
                           s->cfg->dead_letter, reply->str);
            return;
        }
    } else if (reply->type == REDIS_REPLY_STATUS && strcmp(reply->str, "none") != 0 &&
               strcmp(reply->str, want) != 0) {
        rsgSourceFatal(s, "source.%ss: key '%s' holds a %s, not a %s (WRONGTYPE); nothing was read",
                       want, s->cfg->streams[i], reply->str, want);
        return;
    }
    if (--s->setup_left > 0) return;
    if (s->wrongtype[0]) {
        /* Every key has the right type now: the error came from elsewhere
         * (a processing list, or a key that changed back). */
        rsgSourceFatal(s, "%s", s->wrongtype);
        return;
    }
    s->type->setup(s);
}

void rsgSourceOnReady(rsgSource *s) {
    if (s->stopped) return;
    s->reading = 0;
    /* s->requested stays: each read gives back what it asked exactly once,
     * when its reply (NULL on a lost connection) comes or its connection is
     * dropped, and a slot group's read, on a connection of its own, may
     * still be in flight now. Zeroing it here made those give it back a
     * second time: requested went below 0 for good, and while no message
     * size was known yet the byte bound (bytesRoom) then left no room at
     * all, so a cluster source whose reader connection to one master was
     * lost before its first message never read again. */
    s->phase = RSG_SRC_SETUP;
    /* Each TYPE names its key in its privdata: on a cluster the replies of
     * different masters come back in any order. */
    s->setup_left = checkedKeys(s);
    for (int i = 0; i < checkedKeys(s); i++) {
        const char *argv[] = {"TYPE",
                              i < s->cfg->nstreams ? s->cfg->streams[i] : s->cfg->dead_letter};
        if (rsgConnCommand(s->conn, onType, rsgSourceKeyRef(s, i), 2, argv, NULL) != 0) return;
    }
}

/* ---- Turning replies into messages ---- */

int rsgSourceReserve(rsgSource *s, size_t n, size_t nfv) {
    if (n > s->msgs_cap) {
        size_t cap = s->msgs_cap ? s->msgs_cap * 2 : 1024;
        while (cap < n)
            cap *= 2;
        rsgMsg *m = realloc(s->msgs, cap * sizeof(*m));
        if (!m) return -1;
        s->msgs = m;
        long *d = realloc(s->deliv, cap * sizeof(*d));
        if (!d) return -1;
        s->deliv = d;
        s->msgs_cap = cap;
    }
    /* Always an array, even for a read of deleted entries only: the
     * collect steps point into it (s->fv + used), which NULL may not be. */
    if (nfv > s->fv_cap || !s->fv) {
        size_t cap = s->fv_cap ? s->fv_cap * 2 : 8192;
        while (cap < nfv)
            cap *= 2;
        rsgStr *f = realloc(s->fv, cap * sizeof(*f));
        if (!f) return -1;
        s->fv = f;
        s->fv_cap = cap;
    }
    return 0;
}

/* Checks a stream read reply: [[stream, [[id, [f, v, ...] | nil], ...]], ...],
 * counting entries and field strings. 1 if well formed. */
static int wellFormed(const redisReply *r, size_t *entries, size_t *strings) {
    *entries = *strings = 0;
    if (r->type != REDIS_REPLY_ARRAY) return 0;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *st = r->element[i];
        if (st->type != REDIS_REPLY_ARRAY || st->elements != 2 ||
            st->element[0]->type != REDIS_REPLY_STRING || st->element[1]->type != REDIS_REPLY_ARRAY)
            return 0;
        const redisReply *list = st->element[1];
        for (size_t j = 0; j < list->elements; j++) {
            const redisReply *e = list->element[j];
            if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
                e->element[0]->type != REDIS_REPLY_STRING)
                return 0;
            if (e->element[1]->type == REDIS_REPLY_ARRAY) *strings += e->element[1]->elements;
            (*entries)++;
        }
    }
    return 1;
}

/* Turns one entry, at its deliveries-th delivery, into a message. Returns 1
 * if it goes to Lua, 0 if it was handled here (deleted entry acked, invalid
 * bytes dead-lettered or left pending). */
static int convertEntry(rsgSource *s, const redisReply *stream, const redisReply *e, rsgMsg *m,
                        rsgStr *fv, long deliveries) {
    const redisReply *id = e->element[0], *fields = e->element[1];
    m->stream = (rsgStr){stream->str, stream->len};
    m->id = (rsgStr){id->str, id->len};
    m->fv = fv;
    if (fields->type != REDIS_REPLY_ARRAY) {
        /* A pending entry that was XDEL'd or trimmed away: nothing is left to
         * process, and leaving it pending would replay it forever. */
        rsgWarn("message %.*s %.*s was deleted from the stream while pending; acknowledging it",
                (int)stream->len, stream->str, (int)id->len, id->str);
        rsgSourceAck(s, m->stream, 1, &m->id);
        return 0;
    }
    m->nfields = (int)(fields->elements / 2);
    for (size_t k = 0; k < (size_t)m->nfields * 2; k++) {
        const redisReply *x = fields->element[k];
        if (!s->cfg->convert) {
            fv[k] = (rsgStr){x->str, x->len};
            continue;
        }
        char err[160];
        if (rsgDecode(&s->dec, x->str, x->len, &fv[k].p, &fv[k].len, err, sizeof(err)) != 0) {
            const redisReply *name = k % 2 ? fields->element[k - 1] : NULL;
            const char *nm = name ? name->str : "";
            size_t nlen = name ? name->len : 0;
            const char *dead = s->hooks.dead_letter ? s->cfg->dead_letter : NULL;
            char line[1024];
            rsgLogField ev[3] = {{"stream", stream->str, stream->len},
                                 {"id", id->str, id->len},
                                 {"error", err, strlen(err)}};
            rsgLogFields(RSG_LOG_ERROR, ev, 3, "%s",
                         rsgBadFieldLine(line, sizeof(line), stream->str, stream->len, id->str,
                                         id->len, k, nm, nlen, err, s->type->keeps_pending, dead));
            if (dead) {
                char what[512];
                rsgBadFieldWhat(what, sizeof(what), k, nm, nlen, err);
                s->hooks.dead_letter(s->hooks.ud, m->stream, m->id, deliveries,
                                     (rsgStr){what, strlen(what)});
            } else {
                rsgSourceAbandon(s, m->stream, 1, &m->id);
            }
            return 0;
        }
    }
    return 1;
}

void rsgSourceReadError(rsgSource *s, const char *cmd, const char *err) {
    snprintf(s->wrongtype, sizeof(s->wrongtype), "%s failed: %s", cmd, err);
    if (strncmp(err, "WRONGTYPE", 9) == 0 && s->conn->ready) {
        rsgSourceOnReady(s); /* the TYPE checks name the key, or report this */
        return;
    }
    rsgSourceFatal(s, "%s", s->wrongtype);
}

int rsgSourceBeginRead(rsgSource *s, const redisReply *reply, const char *cmd, size_t *entries) {
    size_t strings;
    if (reply->type == REDIS_REPLY_ERROR) {
        rsgSourceReadError(s, cmd, reply->str);
        return -1;
    }
    /* Nothing new (a BLOCK that timed out, or a window with nothing): one
     * more empty window towards an idle wait (rsgSourcePlanRead); after a
     * wait, a new turn of windows. */
    if (reply->type == REDIS_REPLY_NIL) {
        s->win_empty = s->win_wait ? 0 : s->win_empty + 1;
        rsgSourceKick(s);
        return -1;
    }
    if (!wellFormed(reply, entries, &strings)) {
        rsgSourceFatal(s, "%s returned a reply of unexpected shape", cmd);
        return -1;
    }
    s->win_empty = *entries || s->win_wait ? 0 : s->win_empty + 1;
    if (rsgSourceReserve(s, *entries, strings) != 0) {
        rsgSourceFatal(s, "out of memory reading messages");
        return -1;
    }
    rsgDecoderReset(&s->dec);
    s->counted = 0;
    return 0;
}

void rsgSourceCollect(rsgSource *s, const redisReply *stream, const redisReply *list, int *n,
                      size_t *fvused, const long *counts) {
    if (counts && !s->counted) {
        /* The first counts of this read: messages of the streams collected
         * before, without counts, are at their first delivery. */
        for (int i = 0; i < *n; i++)
            s->deliv[i] = 1;
        s->counted = 1;
    }
    for (size_t j = 0; j < list->elements; j++) {
        rsgMsg *m = &s->msgs[*n];
        long d = counts ? counts[j] : 1;
        if (convertEntry(s, stream, list->element[j], m, s->fv + *fvused, d)) {
            if (s->counted) s->deliv[*n] = d;
            *fvused += (size_t)m->nfields * 2;
            (*n)++;
        }
    }
}

void rsgSourceDeliver(rsgSource *s, int n, int kick) {
    s->in_flight += n;
    if (n) bytesRead(s, s->msgs, n);
    if (n && rsgLogEnabled(RSG_LOG_DEBUG))
        rsgDebug("%s %d message(s); %ld in flight (%zu bytes)",
                 !kick                        ? "took over"
                 : s->phase == RSG_SRC_REPLAY ? "replayed"
                                              : "read",
                 n, s->in_flight, s->in_flight_bytes);
    if (kick) {
        rsgSourceKick(s);
        /* hiredis only buffers the command until the loop turns again; write
         * it now, so Redis works on the next read while Lua runs. */
        if (s->reading) rsgConnFlush(s->conn);
    }
    const long *deliv = s->counted ? s->deliv : NULL;
    s->counted = 0;
    if (n && s->hooks.deliver(s->hooks.ud, s->msgs, n, deliv) != 0)
        s->hooks.fatal(s->hooks.ud, "the pipeline failed");
}

int rsgSourceFeedClaimed(rsgSource *s, const char *stream, const redisReply *entries,
                         const long *counts) {
    if (entries->type != REDIS_REPLY_ARRAY) return 0;
    size_t strings = 0;
    for (size_t j = 0; j < entries->elements; j++) {
        const redisReply *e = entries->element[j];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
            e->element[0]->type != REDIS_REPLY_STRING)
            return -1;
        if (e->element[1]->type == REDIS_REPLY_ARRAY) strings += e->element[1]->elements;
    }
    if (rsgSourceReserve(s, entries->elements, strings) != 0) return -1;
    rsgDecoderReset(&s->dec);
    s->counted = 0;
    redisReply name = {0};
    name.type = REDIS_REPLY_STRING;
    name.str = (char *)stream;
    name.len = strlen(stream);
    int n = 0;
    size_t fvused = 0;
    rsgSourceCollect(s, &name, entries, &n, &fvused, counts);
    rsgSourceDeliver(s, n, 0);
    return n;
}

/* ---- Bytes in flight ----
 *
 * Redis bounds a read by a count of messages, never by bytes, so the byte
 * bound (source.max_in_flight_bytes) works from what reads brought. Each
 * read's bytes go into a FIFO; a release of n messages takes them from the
 * oldest reads at each read's own average size, and a read's last message
 * takes what is left of it, so the total comes back to exactly 0. Messages
 * leave the pipeline nearly in read order, so this tracks the bytes held
 * closely. Reads are sized with the average message size seen so far;
 * before any is known, a read asks for one message per key. */

/* The bytes of a message as it is held: id and converted fields. */
static size_t msgBytes(const rsgMsg *m) {
    size_t b = m->id.len;
    if (m->nfields < 0) return b + (m->fv ? m->fv[0].len : 0);
    for (int k = 0; k < 2 * m->nfields; k++)
        b += m->fv[k].len;
    return b;
}

static void bytesRead(rsgSource *s, const rsgMsg *msgs, int n) {
    size_t bytes = 0;
    for (int i = 0; i < n; i++)
        bytes += msgBytes(&msgs[i]);
    double avg = (double)bytes / n;
    s->avg_bytes = s->avg_bytes > 0 ? 0.75 * s->avg_bytes + 0.25 * avg : avg;
    s->in_flight_bytes += bytes;
    if (s->nreads == s->reads_cap) {
        size_t cap = s->reads_cap ? s->reads_cap * 2 : 64;
        rsgReadBytes *r = malloc(cap * sizeof(*r));
        if (!r) {
            /* Without the FIFO the count stays right and the bytes high:
             * reads pause a little more, nothing is lost. */
            return;
        }
        for (size_t i = 0; i < s->nreads; i++)
            r[i] = s->reads[(s->reads_head + i) % s->reads_cap];
        free(s->reads);
        s->reads = r;
        s->reads_cap = cap;
        s->reads_head = 0;
    }
    s->reads[(s->reads_head + s->nreads++) % s->reads_cap] = (rsgReadBytes){n, bytes};
}

static void bytesReleased(rsgSource *s, long n) {
    while (n > 0 && s->nreads > 0) {
        rsgReadBytes *r = &s->reads[s->reads_head];
        long take = n < r->count ? n : r->count;
        size_t b = take == r->count ? r->bytes : (size_t)((double)r->bytes / r->count * take);
        r->count -= take;
        r->bytes -= b;
        s->in_flight_bytes -= b < s->in_flight_bytes ? b : s->in_flight_bytes;
        n -= take;
        if (r->count == 0) {
            s->reads_head = (s->reads_head + 1) % s->reads_cap;
            s->nreads--;
        }
    }
    if (s->in_flight == 0) s->in_flight_bytes = 0;
}

/* How many more messages the byte bound leaves room for (LONG_MAX without
 * a bound); those already asked for count at the average size. Before any
 * size is known, a read asks for one message per key; other takers of room
 * (claims) assume the size at which both bounds meet (prior). */
static long bytesRoom(const rsgSource *s, int keys, int prior) {
    size_t max = s->cfg->max_in_flight_bytes;
    if (max == 0) return LONG_MAX;
    double avg = s->avg_bytes;
    if (avg <= 0) {
        if (!prior) return s->in_flight + s->requested == 0 ? keys : 0;
        avg = (double)max / (double)s->cfg->max_in_flight;
    }
    double left = (double)max - (double)s->in_flight_bytes - avg * (double)s->requested;
    long room = left > 0 ? (long)(left / avg) : 0;
    /* One message per key always fits when nothing is held, however large:
     * a message bigger than the bound must still go through. */
    if (room < keys && s->in_flight + s->requested == 0) room = keys;
    return room;
}

/* ---- Flow ---- */

/* What max_in_flight and the byte bound still leave for a read of keys. */
static long roomFor(const rsgSource *s, int keys) {
    long room = s->cfg->max_in_flight - s->in_flight - s->requested;
    long byBytes = bytesRoom(s, keys, 0);
    return byBytes < room ? byBytes : room;
}

long rsgSourceReadCount(const rsgSource *s, int keys) {
    /* The rule itself is rules.c's, which the test kit runs too. */
    return rsgReadShare(roomFor(s, keys), keys, s->cfg->count, s->cfg->read_chunk);
}

/* Reverses idx[a..b). */
static void reverse(int *idx, int a, int b) {
    for (b--; a < b; a++, b--) {
        int t = idx[a];
        idx[a] = idx[b];
        idx[b] = t;
    }
}

int rsgSourcePlanRead(rsgSource *s, int *idx, int n, int live, long *count, int *block) {
    const rsgSourceConfig *cfg = s->cfg;
    long room = roomFor(s, n);
    s->win_wait = 0;
    *block = live;
    if (cfg->max_in_flight_bytes && s->avg_bytes <= 0) {
        /* No size known yet: one message a key (bytesRoom), to learn it. */
        *count = room > 0 ? 1 : 0;
        return *count ? n : 0;
    }
    /* The rules are rules.c's, which the test kit runs too. */
    *count = rsgReadCount(room, n, cfg->count, cfg->read_chunk);
    if (*count < 1) return 0;
    int w = rsgReadKeys(room, n, cfg->count, cfg->read_chunk);
    if (w >= n) {
        s->win_empty = 0;
        return n;
    }
    if (live && s->win_empty >= (n + w - 1) / w) {
        /* A whole turn of windows found nothing: wait on every key. */
        *count = rsgWaitCount(room, n, cfg->count, cfg->read_chunk);
        s->win_wait = 1;
        return n;
    }
    /* The next window, in turn: rotate idx[] left by the start (three
     * reversals), so the window is idx[0..w). */
    int start = s->win_next % n;
    reverse(idx, 0, start);
    reverse(idx, start, n);
    reverse(idx, 0, n);
    s->win_next = start + w;
    *block = 0;
    return w;
}

void rsgSourceBegin(rsgSource *s, rsgSourcePhase phase) {
    s->phase = phase;
    rsgSourceKick(s);
}

void rsgSourceKick(rsgSource *s) {
    if (s->reading || s->stopped || s->paused || !s->conn->ready || s->phase == RSG_SRC_SETUP)
        return;
    if (s->in_flight >= s->cfg->max_in_flight) return;
    s->type->read(s);
}

void rsgSourceAck(rsgSource *s, rsgStr stream, int n, const rsgStr *ids) {
    s->type->ack(s, stream, n, ids);
}

void rsgSourceAbandon(rsgSource *s, rsgStr stream, int n, const rsgStr *ids) {
    if (s->type->abandon) s->type->abandon(s, stream, n, ids);
}

int rsgSourceDeadLetter(rsgSource *s, rsgConn *cmds, rsgStr key, rsgStr id, long deliveries,
                        rsgStr err) {
    rsgDeadLetter d = {.origin = key, .id = id, .deliveries = deliveries, .err = err};
    if (s->type->dead_letter) s->type->dead_letter(s, &d);
    return rsgDeadLetterSend(cmds, s->cfg, s->consumer, &d);
}

void rsgSourceRelease(rsgSource *s, long n) {
    s->in_flight -= n;
    if (s->in_flight < 0) s->in_flight = 0;
    bytesReleased(s, n);
    if (s->type->settled) s->type->settled(s);
    rsgSourceKick(s);
}

void rsgSourceAckIdle(rsgSource *s) {
    if (s->type->settled) s->type->settled(s);
}

long rsgSourceRoom(const rsgSource *s) {
    long room = s->cfg->max_in_flight - s->in_flight;
    long byBytes = bytesRoom(s, 1, 1);
    if (byBytes < room) room = byBytes;
    return room > 0 ? room : 0;
}

void rsgSourcePause(rsgSource *s, int flag) {
    s->paused = flag;
    rsgSourceKick(s);
}

void rsgSourceRewind(rsgSource *s) {
    if (s->type->rewind) s->type->rewind(s);
}

void rsgSourceStop(rsgSource *s) {
    if (s->stopped || !s->type) return; /* stopped, or never initialised */
    s->stopped = 1;
    if (s->type->stop) s->type->stop(s);
}

void rsgSourceFree(rsgSource *s) {
    if (!s->cfg) return;
    s->type->free(s);
    if (s->cursor)
        for (int i = 0; i < s->cfg->nstreams; i++)
            free(s->cursor[i]);
    free(s->cursor);
    free(s->keyrefs);
    free(s->msgs);
    free(s->deliv);
    free(s->fv);
    free(s->reads);
    rsgDecoderFree(&s->dec);
    memset(s, 0, sizeof(*s));
}
