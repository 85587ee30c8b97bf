/* source.c - see source.h. */
#include "source.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

int rsgSourceInit(rsgSource *s, rsgConn *conn, const rsgSourceConfig *cfg, const char *consumer,
                  const rsgSourceHooks *hooks, char *err, size_t errlen) {
    memset(s, 0, sizeof(*s));
    s->conn = conn;
    s->cfg = cfg;
    s->consumer = consumer;
    s->hooks = *hooks;
    if (rsgDecoderInit(&s->dec, cfg->encoding, err, errlen) != 0) return -1;
    s->cursor = calloc((size_t)cfg->nstreams, sizeof(char *));
    if (!s->cursor) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    /* "0": from the start of our pending entries. Without replay there is no
     * history to read until we have seen something ourselves. */
    if (cfg->replay_pending)
        for (int i = 0; i < cfg->nstreams; i++)
            s->cursor[i] = strdup("0");
    return 0;
}

static void setCursor(rsgSource *s, int i, const char *id, size_t len) {
    free(s->cursor[i]);
    s->cursor[i] = strndup(id, len);
}

static int streamIndex(const rsgSource *s, const char *name, size_t len) {
    for (int i = 0; i < s->cfg->nstreams; i++)
        if (strlen(s->cfg->streams[i]) == len && memcmp(s->cfg->streams[i], name, len) == 0)
            return i;
    return -1;
}

static void startPhaseAfterSetup(rsgSource *s) {
    int any = 0;
    for (int i = 0; i < s->cfg->nstreams; i++)
        any |= s->cursor[i] != NULL;
    s->phase = any ? RSG_SRC_REPLAY : RSG_SRC_LIVE;
    rsgSourceKick(s);
}

static void onGroupCreated(redisAsyncContext *ac, void *r, void *privdata) {
    (void)ac;
    rsgSource *s = privdata;
    redisReply *reply = r;
    if (!reply) return; /* connection lost: setup runs again on reconnect */
    if (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "BUSYGROUP", 9) != 0) {
        char msg[512];
        snprintf(msg, sizeof(msg), "cannot create consumer group '%s': %s", s->cfg->group,
                 reply->str);
        s->hooks.fatal(s->hooks.ud, msg);
        return;
    }
    if (--s->setup_left == 0) startPhaseAfterSetup(s);
}

void rsgSourceOnReady(rsgSource *s) {
    s->reading = 0;
    s->phase = RSG_SRC_SETUP;
    s->setup_left = s->cfg->nstreams;
    for (int i = 0; i < s->cfg->nstreams; i++) {
        const char *argv[] = {"XGROUP",      "CREATE",          s->cfg->streams[i],
                              s->cfg->group, s->cfg->starts[i], "MKSTREAM"};
        if (rsgConnCommand(s->conn, onGroupCreated, s, 6, argv, NULL) != 0) return;
    }
}

/* Grows the scratch arrays to hold n messages and nfv strings. */
static int reserve(rsgSource *s, size_t n, size_t nfv) {
    if (n > s->msgs_cap) {
        size_t cap = s->msgs_cap ? s->msgs_cap * 2 : 1024;
        while (cap < n)
            cap *= 2;
        rsgMsg *m = realloc(s->msgs, cap * sizeof(*m));
        if (!m) return -1;
        s->msgs = m;
        s->msgs_cap = cap;
    }
    if (nfv > s->fv_cap) {
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

/* Checks the reply's shape: [[stream, [[id, [f, v, ...] | nil], ...]], ...]. */
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

/* Turns one entry into a message. Returns 1 if it goes to Lua, 0 if it was
 * handled here (deleted entry acked, invalid bytes left pending). */
static int convertEntry(rsgSource *s, const redisReply *stream, const redisReply *e, rsgMsg *m,
                        rsgStr *fv) {
    const redisReply *id = e->element[0], *fields = e->element[1];
    m->stream = (rsgStr){stream->str, stream->len};
    m->id = (rsgStr){id->str, id->len};
    m->fv = fv;
    if (fields->type != REDIS_REPLY_ARRAY) {
        /* A pending entry that was XDEL'd or trimmed away: nothing is left to
         * process, and leaving it pending would replay it forever. */
        rsgWarn("message %.*s %.*s was deleted from the stream while pending; acknowledging it",
                (int)stream->len, stream->str, (int)id->len, id->str);
        s->hooks.ack_one(s->hooks.ud, m->stream, m->id);
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
            if (k % 2) {
                const redisReply *name = fields->element[k - 1];
                rsgError("message %.*s %.*s left pending: the value of field '%.*s' is %s",
                         (int)stream->len, stream->str, (int)id->len, id->str, (int)name->len,
                         name->str, err);
            } else {
                rsgError("message %.*s %.*s left pending: field name #%zu is %s", (int)stream->len,
                         stream->str, (int)id->len, id->str, k / 2 + 1, err);
            }
            s->invalid++;
            return 0;
        }
    }
    return 1;
}

/* Converts the entries of one stream into s->msgs[*n...], advancing *n and
 * *fvused. The scratch arrays must have room (see reserve). */
static void collect(rsgSource *s, const redisReply *stream, const redisReply *list, int *n,
                    size_t *fvused) {
    for (size_t j = 0; j < list->elements; j++) {
        rsgMsg *m = &s->msgs[*n];
        if (convertEntry(s, stream, list->element[j], m, s->fv + *fvused)) {
            *fvused += (size_t)m->nfields * 2;
            (*n)++;
        }
    }
}

int rsgSourceFeedClaimed(rsgSource *s, const char *stream, const redisReply *entries) {
    if (entries->type != REDIS_REPLY_ARRAY) return 0;
    size_t strings = 0, count = 0;
    for (size_t j = 0; j < entries->elements; j++) {
        const redisReply *e = entries->element[j];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
            e->element[0]->type != REDIS_REPLY_STRING)
            continue;
        if (e->element[1]->type == REDIS_REPLY_ARRAY) strings += e->element[1]->elements;
        count++;
    }
    if (count != entries->elements) return -1;
    if (reserve(s, count, strings) != 0) return -1;
    rsgDecoderReset(&s->dec);
    redisReply name = {0};
    name.type = REDIS_REPLY_STRING;
    name.str = (char *)stream;
    name.len = strlen(stream);
    int n = 0;
    size_t fvused = 0;
    collect(s, &name, entries, &n, &fvused);
    s->in_flight += n;
    if (n && s->hooks.deliver(s->hooks.ud, s->msgs, n) != 0) {
        s->hooks.fatal(s->hooks.ud, "the pipeline failed");
        return -1;
    }
    return n;
}

static void onRead(redisAsyncContext *ac, void *r, void *privdata) {
    (void)ac;
    rsgSource *s = privdata;
    redisReply *reply = r;
    s->reading = 0;
    if (!reply || s->stopped) return; /* lost: OnReady resumes; stopped: pending stays */
    if (reply->type == REDIS_REPLY_ERROR) {
        if (strncmp(reply->str, "NOGROUP", 7) == 0) {
            /* The stream or group vanished (deleted, or Redis restarted
             * empty): create it again and carry on. */
            rsgWarn("consumer group '%s' is gone (%s); creating it again", s->cfg->group,
                    reply->str);
            rsgSourceOnReady(s);
            return;
        }
        char msg[512];
        snprintf(msg, sizeof(msg), "XREADGROUP failed: %s", reply->str);
        s->hooks.fatal(s->hooks.ud, msg);
        return;
    }
    if (reply->type == REDIS_REPLY_NIL) { /* BLOCK timed out with nothing new */
        rsgSourceKick(s);
        return;
    }
    size_t entries, strings;
    if (!wellFormed(reply, &entries, &strings)) {
        s->hooks.fatal(s->hooks.ud, "XREADGROUP returned a reply of unexpected shape");
        return;
    }
    if (reserve(s, entries, strings) != 0) {
        s->hooks.fatal(s->hooks.ud, "out of memory reading messages");
        return;
    }
    rsgDecoderReset(&s->dec);
    int n = 0;
    size_t fvused = 0;
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *st = reply->element[i];
        const redisReply *list = st->element[1];
        collect(s, st->element[0], list, &n, &fvused);
        int si = streamIndex(s, st->element[0]->str, st->element[0]->len);
        if (list->elements && si >= 0) {
            const redisReply *last = list->element[list->elements - 1]->element[0];
            setCursor(s, si, last->str, last->len);
        }
    }
    if (s->phase == RSG_SRC_REPLAY) {
        s->replayed += n;
        if (entries == 0) {
            if (s->replayed) rsgInfo("replayed %ld pending message(s)", s->replayed);
            s->replayed = 0;
            s->phase = RSG_SRC_LIVE;
        }
    }
    s->in_flight += n;
    /* Ask for the next batch before Lua works on this one. */
    rsgSourceKick(s);
    if (n && s->hooks.deliver(s->hooks.ud, s->msgs, n) != 0)
        s->hooks.fatal(s->hooks.ud, "the pipeline failed");
}

void rsgSourceKick(rsgSource *s) {
    const rsgSourceConfig *cfg = s->cfg;
    if (s->reading || s->stopped || s->paused || !s->conn->ready || s->phase == RSG_SRC_SETUP)
        return;
    long room = cfg->max_in_flight - s->in_flight;
    if (room <= 0) return;
    int ns = 0;
    for (int i = 0; i < cfg->nstreams; i++)
        if (s->phase == RSG_SRC_LIVE || s->cursor[i]) ns++;
    /* COUNT bounds each stream, so share the room among them. */
    long count = room / ns;
    if (count < 1) return;
    if (cfg->count > 0 && cfg->count < count) count = cfg->count;

    char countbuf[24], blockbuf[24];
    snprintf(countbuf, sizeof(countbuf), "%ld", count);
    snprintf(blockbuf, sizeof(blockbuf), "%ld", cfg->block_ms);
    int max = 9 + 2 * cfg->nstreams;
    const char *stackv[64];
    const char **argv = max <= 64 ? stackv : malloc(sizeof(char *) * (size_t)max);
    if (!argv) return;
    int argc = 0;
    argv[argc++] = "XREADGROUP";
    argv[argc++] = "GROUP";
    argv[argc++] = cfg->group;
    argv[argc++] = s->consumer;
    argv[argc++] = "COUNT";
    argv[argc++] = countbuf;
    if (s->phase == RSG_SRC_LIVE) {
        argv[argc++] = "BLOCK";
        argv[argc++] = blockbuf;
    }
    argv[argc++] = "STREAMS";
    for (int i = 0; i < cfg->nstreams; i++)
        if (s->phase == RSG_SRC_LIVE || s->cursor[i]) argv[argc++] = cfg->streams[i];
    for (int i = 0; i < cfg->nstreams; i++) {
        if (s->phase == RSG_SRC_LIVE)
            argv[argc++] = ">";
        else if (s->cursor[i])
            argv[argc++] = s->cursor[i];
    }
    if (rsgConnCommand(s->conn, onRead, s, argc, argv, NULL) == 0) s->reading = 1;
    if (argv != stackv) free(argv);
}

void rsgSourceRelease(rsgSource *s, long n) {
    s->in_flight -= n;
    if (s->in_flight < 0) s->in_flight = 0;
    rsgSourceKick(s);
}

long rsgSourceRoom(const rsgSource *s) {
    long room = s->cfg->max_in_flight - s->in_flight;
    return room > 0 ? room : 0;
}

void rsgSourcePause(rsgSource *s, int flag) {
    s->paused = flag;
    rsgSourceKick(s);
}

void rsgSourceStop(rsgSource *s) {
    s->stopped = 1;
}

void rsgSourceFree(rsgSource *s) {
    if (s->cursor)
        for (int i = 0; i < s->cfg->nstreams; i++)
            free(s->cursor[i]);
    free(s->cursor);
    free(s->msgs);
    free(s->fv);
    rsgDecoderFree(&s->dec);
    memset(s, 0, sizeof(*s));
}
