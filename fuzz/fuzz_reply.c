/* fuzz_reply.c - from the bytes Redis sends to the messages Lua sees.
 *
 * Any RESP goes through the hiredis reader into the host's reply arena
 * (host/arena.c), exactly as on the reader connection, and every reply is
 * then taken three ways: as a stream read (rsgSourceBeginRead and
 * rsgSourceCollect, what XREADGROUP and XREAD replies go through), as
 * claimed entries (rsgSourceFeedClaimed, with and without delivery
 * counts), and as a script command's reply (rsghost.hiredis.reply_at, what
 * rsghost.redis.call returns). Messages reach Lua through the real
 * hand-over (lua/rsghost/handover.lua) into a stand-in pipeline.
 *
 * Input: byte 0 holds the source settings (bit 0: convert, bits 1-2: the
 * encoding, bit 3: a preprocess that wants each message's field list,
 * bit 4: source.dead_letter set); byte 1 where the rest is cut in two, so
 * that a reply may arrive in pieces as it does from a socket; the rest is
 * RESP.
 *
 * Invariants: every entry of a well-formed read is accounted for: handed
 * to Lua, acknowledged (deleted while pending), dead-lettered or abandoned
 * (bad bytes, with or without source.dead_letter), never lost; with
 * convert on, every field string Lua gets is valid UTF-8; Lua sees the
 * very bytes of the C structs (their lengths add up to the same total);
 * after every message is released, nothing is counted in
 * flight, messages or bytes. */
#include <hiredis/hiredis.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <string.h>

#include "arena.h"
#include "conn.h"
#include "encoding.h"
#include "fuzz.h"
#include "log.h"
#include "source_kind.h"

/* ---- A source with no connection: the kind's hooks only count ---- */

static long acked, abandoned; /* entries the kind was told about */
static long deadLettered;     /* entries sent to the dead-letter stream */
static long delivered;        /* messages handed to Lua */
static int fatal;             /* the source gave up on a reply */

static void countAck(rsgSource *s, rsgStr key, int n, const rsgStr *ids) {
    (void)s, (void)key, (void)ids;
    acked += n;
}

static void countAbandon(rsgSource *s, rsgStr key, int n, const rsgStr *ids) {
    (void)s, (void)key, (void)ids;
    abandoned += n;
}

static void nothing(rsgSource *s) {
    (void)s;
}

static const rsgSourceType fuzzKind = {
    .name = "group",
    .key_type = "stream",
    .keeps_pending = 1,
    .read = nothing,
    .ack = countAck,
    .abandon = countAbandon,
    .free = nothing,
};

#define NENC 4

/* rsgSourceConfig holds writable strings (the host's are strdup'ed). */
static char nameA[] = "a", nameB[] = "b", start0[] = "0", groupName[] = "g", deadKey[] = "dead";
static char *streamNames[] = {nameA, nameB};
static char *starts[] = {start0, start0};
static char encodingNames[4][16] = {"utf-8", "latin-1", "utf-16", "shift_jis"};
static rsgSourceConfig cfgs[NENC];
static rsgSource sources[NENC];
static rsgConn offline; /* never ready: a source sends nothing */
static lua_State *L;
static int feedRef, replyAtRef, wantsInfo;

/* ---- Lua: the real hand-over into a pipeline that checks what it gets ---- */

static const char *const luaSide =
    "local handover = require 'rsghost.handover'\n"
    "local hiredis = require 'rsghost.hiredis'\n"
    "local function feed(p, flat, n, deliveries, fields)\n"
    "  local total = 0\n"
    "  for i = 0, n - 1 do\n"
    "    local stream, id, data = flat[3 * i + 1], flat[3 * i + 2], flat[3 * i + 3]\n"
    "    assert(type(stream) == 'string' and type(id) == 'string' and type(data) == 'table')\n"
    "    total = total + #stream + #id\n"
    "    if fields then\n"
    "      for _, f in ipairs(fields[i + 1]) do total = total + #f[1] + #f[2] end\n"
    "    end\n"
    "  end\n"
    "  if deliveries then assert(#deliveries == n) end\n"
    "  if fields then assert(#fields == n) end\n"
    "  p.total = total\n"
    "end\n"
    "local plain = { feed = feed }\n"
    "local info = { feed = feed, wants_info = true }\n"
    "local feeders = { [false] = handover.feeder(plain), [true] = handover.feeder(info) }\n"
    "return function(wants, ptr, n, dptr)\n"
    "  local p = wants and info or plain\n"
    "  p.total = nil\n"
    "  feeders[wants](ptr, n, dptr)\n"
    "  return p.total\n"
    "end, hiredis.reply_at\n";

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    rsgLogSetLevel((rsgLogLevel)(RSG_LOG_ERROR + 1)); /* quiet: bad bytes are expected */
    L = luaL_newstate();
    FUZZ_CHECK(L != NULL);
    luaL_openlibs(L);
    lua_getglobal(L, "package");
    lua_pushstring(L, RSG_FUZZ_LUA_DIR "/?.lua");
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);
    if (luaL_loadstring(L, luaSide) != 0 || lua_pcall(L, 0, 2, 0) != 0) {
        fprintf(stderr, "fuzz_reply: %s\n", lua_tostring(L, -1));
        abort();
    }
    replyAtRef = luaL_ref(L, LUA_REGISTRYINDEX);
    feedRef = luaL_ref(L, LUA_REGISTRYINDEX);
    for (size_t e = 0; e < NENC; e++) {
        rsgSourceConfig *c = &cfgs[e];
        c->kind = RSG_SOURCE_GROUP;
        c->nstreams = 2;
        c->streams = streamNames;
        c->starts = starts;
        c->group = groupName;
        c->encoding = encodingNames[e];
        c->max_in_flight = 1 << 20;
        c->max_in_flight_bytes = 64 << 20;
        c->read_chunk = 1000;
        rsgSource *s = &sources[e];
        s->type = &fuzzKind;
        s->conn = &offline;
        s->cfg = c;
        s->consumer = "fuzz";
        s->cursor = calloc(2, sizeof(char *));
        char err[128];
        FUZZ_CHECK(s->cursor && rsgDecoderInit(&s->dec, c->encoding, err, sizeof(err)) == 0);
    }
    return 0;
}

/* hooks.deliver: the C side's checks, then the hand-over into Lua. */
static int deliver(void *ud, const rsgMsg *msgs, int n, const long *deliveries) {
    rsgSource *s = ud;
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        const rsgMsg *m = &msgs[i];
        FUZZ_CHECK(m->nfields >= 0);
        total += m->stream.len + m->id.len;
        for (int k = 0; k < 2 * m->nfields; k++) {
            const rsgStr *f = &m->fv[k];
            if (s->cfg->convert) FUZZ_CHECK(rsgUtf8Check(f->p, f->len) == f->len);
            total += f->len;
        }
    }
    delivered += n;
    lua_rawgeti(L, LUA_REGISTRYINDEX, feedRef);
    lua_pushboolean(L, wantsInfo);
    lua_pushlightuserdata(L, (void *)msgs);
    lua_pushinteger(L, n);
    if (deliveries)
        lua_pushlightuserdata(L, (void *)deliveries);
    else
        lua_pushnil(L);
    if (lua_pcall(L, 4, 1, 0) != 0) {
        fprintf(stderr, "fuzz_reply: the hand-over failed: %s\n", lua_tostring(L, -1));
        abort();
    }
    if (wantsInfo) FUZZ_CHECK((size_t)lua_tonumber(L, -1) == total);
    lua_pop(L, 1);
    return 0;
}

/* hooks.dead_letter (with source.dead_letter): bytes that do not convert. */
static void deadLetterHook(void *ud, rsgStr key, rsgStr id, long deliveries, rsgStr err) {
    (void)ud, (void)key, (void)id;
    FUZZ_CHECK(deliveries >= 1 && err.len > 0 && memchr(err.p, '\0', err.len) == NULL);
    deadLettered++;
}

static void fatalHook(void *ud, const char *reason) {
    (void)ud, (void)reason;
    fatal = 1;
}

/* Releases everything delivered, as the pipeline does once sunk: the
 * source must then count nothing in flight. */
static void releaseAll(rsgSource *s) {
    rsgSourceRelease(s, s->in_flight);
    FUZZ_CHECK(s->in_flight == 0 && s->in_flight_bytes == 0);
}

/* The reply as XREADGROUP's: group onRead's steps, the odd streams with
 * delivery counts as in a replay. */
static void asRead(rsgSource *s, const redisReply *reply) {
    size_t entries;
    acked = abandoned = delivered = deadLettered = 0;
    fatal = 0;
    if (rsgSourceBeginRead(s, reply, "XREADGROUP", &entries) != 0) {
        FUZZ_CHECK(delivered == 0);
        return;
    }
    int n = 0;
    size_t fvused = 0;
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *st = reply->element[i], *list = st->element[1];
        long *counts = NULL;
        if (i % 2 && list->elements) {
            counts = malloc(sizeof(long) * list->elements);
            FUZZ_CHECK(counts != NULL);
            for (size_t j = 0; j < list->elements; j++)
                counts[j] = (long)(j + 2);
        }
        rsgSourceCollect(s, st->element[0], list, &n, &fvused, counts);
        free(counts);
    }
    rsgSourceDeliver(s, n, 0);
    FUZZ_CHECK(!fatal);
    FUZZ_CHECK(delivered + acked + abandoned + deadLettered == (long)entries);
    releaseAll(s);
}

/* The reply as an XCLAIM's, with or without delivery counts (claim.c's:
 * one per entry; a counts array of another length is not fed). */
static void asClaimed(rsgSource *s, const redisReply *entries, const redisReply *counts) {
    acked = abandoned = delivered = deadLettered = 0;
    fatal = 0;
    long *cnt = NULL;
    if (counts) {
        if (entries->type != REDIS_REPLY_ARRAY || counts->type != REDIS_REPLY_ARRAY ||
            counts->elements != entries->elements || entries->elements == 0)
            return;
        cnt = malloc(sizeof(long) * entries->elements);
        FUZZ_CHECK(cnt != NULL);
        for (size_t j = 0; j < entries->elements; j++)
            cnt[j] = counts->element[j]->type == REDIS_REPLY_INTEGER
                         ? (long)counts->element[j]->integer
                         : 1;
    }
    int n = rsgSourceFeedClaimed(s, "a", entries, cnt);
    free(cnt);
    FUZZ_CHECK(n >= -1);
    if (n >= 0) {
        FUZZ_CHECK(n == delivered && !fatal);
        if (entries->type == REDIS_REPLY_ARRAY)
            FUZZ_CHECK(delivered + acked + abandoned + deadLettered == (long)entries->elements);
    }
    releaseAll(s);
}

/* The reply as a script's command reply: converts, or names what it
 * cannot convert; never raises. */
static void asCommandReply(const redisReply *reply) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, replyAtRef);
    lua_pushlightuserdata(L, (void *)reply);
    if (lua_pcall(L, 1, 2, 0) != 0) {
        /* Only a reply nested past Lua's stack could fail here. */
        const char *err = lua_tostring(L, -1);
        FUZZ_CHECK(err && strstr(err, "stack overflow"));
        lua_pop(L, 1);
        return;
    }
    lua_pop(L, 2);
}

/* Aggregates declared larger than this are not fuzzed: Redis is trusted to
 * send only what it holds, and a declared billion elements would only
 * measure malloc. */
#define MAX_AGGREGATE 100000

static int tooLarge(const uint8_t *p, size_t len) {
    for (size_t i = 0; i < len; i++) {
        if (i > 0 && p[i - 1] != '\n') continue;
        if (p[i] != '*' && p[i] != '%' && p[i] != '~' && p[i] != '>') continue;
        long v = 0;
        for (size_t k = i + 1; k < len && p[k] >= '0' && p[k] <= '9' && v <= MAX_AGGREGATE; k++)
            v = v * 10 + (p[k] - '0');
        if (v > MAX_AGGREGATE) return 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2 || tooLarge(data + 2, size - 2)) return 0;
    rsgSource *s = &sources[(data[0] >> 1) % NENC];
    ((rsgSourceConfig *)s->cfg)->convert = data[0] & 1;
    wantsInfo = (data[0] >> 3) & 1;
    int dead = (data[0] >> 4) & 1;
    ((rsgSourceConfig *)s->cfg)->dead_letter = dead ? deadKey : NULL;
    s->hooks = (rsgSourceHooks){.deliver = deliver,
                                .fatal = fatalHook,
                                .dead_letter = dead ? deadLetterHook : NULL,
                                .ud = s};
    const char *resp = (const char *)data + 2;
    size_t len = size - 2, cut = len * data[1] / 256;

    rsgReplyArena arena = {0};
    redisReader *r = redisReaderCreateWithFunctions(&rsgArenaReplyFunctions);
    FUZZ_CHECK(r != NULL);
    r->privdata = &arena;
    r->maxbuf = 0;
    int ok = redisReaderFeed(r, resp, cut) == REDIS_OK;
    for (int piece = 0; ok && piece < 2; piece++) {
        if (piece == 1) ok = redisReaderFeed(r, resp + cut, len - cut) == REDIS_OK;
        void *reply = NULL;
        while (ok && (ok = redisReaderGetReply(r, &reply) == REDIS_OK) && reply) {
            const redisReply *rep = reply;
            asRead(s, rep);
            asClaimed(s, rep, NULL);
            if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2)
                asClaimed(s, rep->element[0], rep->element[1]);
            asCommandReply(rep);
            r->fn->freeObject(reply); /* the arena's, as hiredis async does */
        }
    }
    redisReaderFree(r);
    rsgArenaFree(&arena);
    lua_gc(L, LUA_GCSTEP, 0);
    return 0;
}
