/* lua_bridge.c - see lua_bridge.h. */
#include "lua_bridge.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "log.h"

/* Message handler for every pcall: appends a traceback to string errors so a
 * failure inside the pipeline says where it came from. */
static int traceback(lua_State *L) {
    const char *msg = lua_tostring(L, 1);
    if (!msg) msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* Calls the function below nargs arguments on the stack, with the traceback
 * handler. Returns 0, or -1 with the error logged and popped. */
static int pcallLogged(rsgLua *lua, int nargs, const char *what) {
    lua_State *L = lua->L;
    int base = lua_gettop(L) - nargs;
    lua_rawgeti(L, LUA_REGISTRYINDEX, lua->traceback_ref);
    lua_insert(L, base);
    int rc = lua_pcall(L, nargs, 0, base);
    lua_remove(L, base);
    if (rc != 0) {
        rsgError("internal error in %s: %s", what, lua_tostring(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    return 0;
}

static rsgLua *self(lua_State *L) {
    return lua_touserdata(L, lua_upvalueindex(1));
}

/* host.now() -> monotonic seconds. */
static int hostNow(lua_State *L) {
    lua_pushnumber(L, (double)uv_hrtime() / 1e9);
    return 1;
}

/* host.log(level, msg) */
static int hostLog(lua_State *L) {
    rsgLogLevel level = RSG_LOG_INFO;
    const char *name = luaL_optstring(L, 1, "info");
    if (rsgLogParseLevel(name, &level) != 0) level = RSG_LOG_INFO;
    size_t len;
    const char *msg = luaL_checklstring(L, 2, &len);
    rsgLog(level, "%.*s", (int)len, msg);
    return 0;
}

/* host.send(argv, cb) */
static int hostSend(lua_State *L) {
    rsgLua *lua = self(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    int argc = (int)lua_objlen(L, 1);
    if (argc < 1) return luaL_error(L, "redis command needs at least a name");
    const char *sargv[16];
    size_t slens[16];
    const char **argv = argc <= 16 ? sargv : malloc(sizeof(*argv) * (size_t)argc);
    size_t *lens = argc <= 16 ? slens : malloc(sizeof(*lens) * (size_t)argc);
    if (!argv || !lens) return luaL_error(L, "out of memory");
    for (int i = 0; i < argc; i++) {
        lua_rawgeti(L, 1, i + 1);
        int t = lua_type(L, -1);
        if (t != LUA_TSTRING && t != LUA_TNUMBER) {
            if (argv != sargv) free(argv), free(lens);
            return luaL_error(L, "redis command argument #%d is a %s (strings and numbers only)",
                              i + 1, lua_typename(L, t));
        }
        /* Strings stay alive: they are held by the argv table on the stack. */
        argv[i] = lua_tolstring(L, -1, &lens[i]);
        lua_pop(L, 1);
    }
    lua_pushvalue(L, 2);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    int rc = lua->ops->send(lua->ops->ud, argc, argv, lens, ref);
    if (argv != sargv) free(argv), free(lens);
    if (rc != 0) {
        /* Answer at once: the pipeline handles callbacks made inside send. */
        lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
        luaL_unref(L, LUA_REGISTRYINDEX, ref);
        lua_pushnil(L);
        lua_pushliteral(L, "not connected to redis (reconnecting)");
        lua_call(L, 2, 0);
    }
    return 0;
}

/* host.file_append({ path =, data =, fsync = }, cb): cb(true) once data is
 * appended (and fsync'd), cb(nil, err) if that failed. */
static int hostFileAppend(lua_State *L) {
    rsgLua *lua = self(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_getfield(L, 1, "path");
    lua_getfield(L, 1, "data");
    lua_getfield(L, 1, "fsync");
    const char *path = lua_tostring(L, -3);
    size_t len;
    const char *data = lua_tolstring(L, -2, &len);
    int fsync = lua_toboolean(L, -1);
    if (!path || !data) return luaL_error(L, "host.file_append expects { path =, data = } strings");
    lua_pushvalue(L, 2);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    /* The data is copied by the host: the strings may go when we return. */
    if (lua->ops->file_append(lua->ops->ud, path, data, len, fsync, ref) != 0)
        rsgLuaDone(lua, ref, "out of memory appending to a file");
    return 0;
}

void rsgLuaDone(rsgLua *lua, int cbref, const char *err) {
    lua_State *L = lua->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, cbref);
    luaL_unref(L, LUA_REGISTRYINDEX, cbref);
    if (err) {
        lua_pushnil(L);
        lua_pushstring(L, err);
    } else {
        lua_pushboolean(L, 1);
        lua_pushnil(L);
    }
    pcallLogged(lua, 2, "host operation callback");
}

static rsgStr *scratch(rsgLua *lua, size_t n) {
    if (n > lua->scratch_cap) {
        size_t cap = lua->scratch_cap ? lua->scratch_cap : 1024;
        while (cap < n)
            cap *= 2;
        rsgStr *s = realloc(lua->scratch, cap * sizeof(*s));
        if (!s) return NULL;
        lua->scratch = s;
        lua->scratch_cap = cap;
    }
    return lua->scratch;
}

/* Calls fn(ud, stream, n, ids) for each stream of { [stream] = { id, ... } }
 * at stack index 1; the strings stay valid during the call. */
static int eachStream(lua_State *L, const char *what,
                      void (*fn)(void *ud, rsgStr stream, int n, const rsgStr *ids)) {
    rsgLua *lua = self(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TTABLE)
            return luaL_error(L, "host.%s expects { stream = { id, ... } }", what);
        rsgStr stream;
        stream.p = lua_tolstring(L, -2, &stream.len);
        size_t n = lua_objlen(L, -1);
        rsgStr *ids = scratch(lua, n);
        if (!ids) return luaL_error(L, "out of memory");
        for (size_t i = 0; i < n; i++) {
            lua_rawgeti(L, -1, (int)i + 1);
            ids[i].p = lua_tolstring(L, -1, &ids[i].len);
            lua_pop(L, 1); /* still referenced by the ids table */
            if (!ids[i].p)
                return luaL_error(L, "host.%s: id #%d is not a string", what, (int)i + 1);
        }
        if (n) fn(lua->ops->ud, stream, (int)n, ids);
        lua_pop(L, 1);
    }
    return 0;
}

/* host.ack({ [stream] = { id, ... } }): these left the pipeline. */
static int hostAck(lua_State *L) {
    return eachStream(L, "ack", self(L)->ops->ack);
}

/* host.abandon({ [stream] = { id, ... } }): preprocess failed on these. */
static int hostAbandon(lua_State *L) {
    return eachStream(L, "abandon", self(L)->ops->abandon);
}

/* host.dead_letter(stream, id, deliveries, err) */
static int hostDeadLetter(lua_State *L) {
    rsgLua *lua = self(L);
    rsgStr stream, id, err;
    stream.p = luaL_checklstring(L, 1, &stream.len);
    id.p = luaL_checklstring(L, 2, &id.len);
    long deliveries = (long)luaL_optnumber(L, 3, 1);
    err.p = luaL_checklstring(L, 4, &err.len);
    lua->ops->dead_letter(lua->ops->ud, stream, id, deliveries, err);
    return 0;
}

static int hostRelease(lua_State *L) {
    rsgLua *lua = self(L);
    lua->ops->release(lua->ops->ud, (long)luaL_checknumber(L, 1));
    return 0;
}

static int hostSetTimer(lua_State *L) {
    rsgLua *lua = self(L);
    double d = lua_isnoneornil(L, 1) ? -1.0 : luaL_checknumber(L, 1);
    lua->ops->set_timer(lua->ops->ud, d);
    return 0;
}

static int hostPause(lua_State *L) {
    rsgLua *lua = self(L);
    lua->ops->pause(lua->ops->ud, lua_toboolean(L, 1));
    return 0;
}

/* host.finished(unsunk): the pipeline is done after a stop; unsunk messages
 * were given up on (a sink still failing). */
static int hostReady(lua_State *L) {
    rsgLua *lua = self(L);
    lua->ops->ready(lua->ops->ud);
    return 0;
}

static int hostFinished(lua_State *L) {
    rsgLua *lua = self(L);
    lua->ops->finished(lua->ops->ud, (long)luaL_optnumber(L, 1, 0));
    return 0;
}

/* ---- --metrics: the pipeline's events, once per read or per batch ---- */

static rsgMetrics *metricsOf(lua_State *L) {
    return self(L)->ops->metrics;
}

/* host.count_feed(dropped, failed): one read's preprocess outcomes. */
static int hostCountFeed(lua_State *L) {
    rsgMetrics *m = metricsOf(L);
    m->dropped += (uint64_t)luaL_checknumber(L, 1);
    m->failed += (uint64_t)luaL_checknumber(L, 2);
    return 0;
}

/* host.count_flush(reason): a batch closed ("size", "timeout", ...). */
static int hostCountFlush(lua_State *L) {
    int r = rsgMetricsFlushReason(luaL_checkstring(L, 1));
    if (r >= 0) metricsOf(L)->flushed[r]++;
    return 0;
}

/* host.count_sink(index, seconds, failed): one sink run on a batch. */
static int hostCountSink(lua_State *L) {
    rsgMetrics *m = metricsOf(L);
    int i = (int)luaL_checknumber(L, 1) - 1;
    if (i < 0 || i >= m->nsinks) return 0;
    m->sinks[i].calls++;
    if (lua_toboolean(L, 3)) m->sinks[i].errors++;
    rsgHistogramObserve(&m->sinks[i].duration, luaL_checknumber(L, 2));
    return 0;
}

/* host.count_acked(n, seconds): a batch of n acked, seconds after its first
 * message was read (each of the n counts that latency: an upper bound for
 * all but the first, and no per-message clock). */
static int hostCountAcked(lua_State *L) {
    double n = luaL_checknumber(L, 1);
    if (n > 0)
        rsgHistogramObserveN(&metricsOf(L)->ack_latency, luaL_checknumber(L, 2), (uint64_t)n);
    return 0;
}

int rsgLuaSinkCount(const rsgLua *lua) {
    return lua->nsinks;
}

int rsgLuaInit(rsgLua *lua, const char *luadir, char *err, size_t errlen) {
    memset(lua, 0, sizeof(*lua));
    lua->traceback_ref = lua->pipeline_ref = lua->feed_ref = LUA_NOREF;
    lua->tick_ref = lua->stop_ref = lua->cfg_ref = lua->start_ref = lua->reply_ref = LUA_NOREF;
    lua_State *L = luaL_newstate();
    if (!L) {
        snprintf(err, errlen, "cannot create a Lua state (out of memory)");
        return -1;
    }
    lua->L = L;
    luaL_openlibs(L);
    /* Our modules first, then the default path (where cjson and the user's
     * own modules live). */
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", luadir, luadir, lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 2);
    lua_pushcfunction(L, traceback);
    lua->traceback_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

/* Reads cfg.source.<key> as a string into a fresh copy, NULL when absent. */
static char *dupField(lua_State *L, int idx, const char *key) {
    lua_getfield(L, idx, key);
    char *s = lua_type(L, -1) == LUA_TSTRING ? strdup(lua_tostring(L, -1)) : NULL;
    lua_pop(L, 1);
    return s;
}

/* The fields rsghost.script always sets in a normalized source: their
 * defaults live there, in one place. A missing one is a bug there, reported
 * as such (-1 with err), never papered over with a default of our own. */
static int needField(lua_State *L, int idx, const char *key, int type, char *err, size_t errlen) {
    lua_getfield(L, idx, key);
    int t = lua_type(L, -1);
    lua_pop(L, 1);
    if (t == type) return 0;
    snprintf(err, errlen, "internal: the normalized source has no %s %s", lua_typename(L, type),
             key);
    return -1;
}

static double numField(lua_State *L, int idx, const char *key, double dflt) {
    lua_getfield(L, idx, key);
    double v = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : dflt;
    lua_pop(L, 1);
    return v;
}

static int boolField(lua_State *L, int idx, const char *key, int dflt) {
    lua_getfield(L, idx, key);
    int v = lua_isnil(L, -1) ? dflt : lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

/* Sets *kind from the normalized source.kind at idx (absent: a group), the
 * one place the script's string becomes rsgSourceKind (a value that is not
 * a string counts as absent). Returns 0, or -1 with err for a kind
 * script.lua does not make (a bug). */
static int readKind(lua_State *L, int idx, rsgSourceKind *kind, char *err, size_t errlen) {
    static const struct {
        const char *name;
        rsgSourceKind kind;
    } kinds[] = {
        {"group", RSG_SOURCE_GROUP},
        {"streams", RSG_SOURCE_STREAMS},
        {"lists", RSG_SOURCE_LISTS},
    };
    lua_getfield(L, idx, "kind");
    const char *name = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "group";
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (strcmp(name, kinds[i].name) == 0) {
            *kind = kinds[i].kind;
            lua_pop(L, 1);
            return 0;
        }
    snprintf(err, errlen, "internal: normalized source has an unknown kind '%s'", name);
    lua_pop(L, 1);
    return -1;
}

/* Fills src from the normalized cfg.source at the top of the stack. */
static int readSource(lua_State *L, rsgSourceConfig *src, char *err, size_t errlen) {
    int idx = lua_gettop(L);
    memset(src, 0, sizeof(*src));
    if (readKind(L, idx, &src->kind, err, errlen) != 0) return -1;
    int isLists = src->kind == RSG_SOURCE_LISTS;
    lua_getfield(L, idx, isLists ? "lists" : "streams");
    int n = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0;
    if (n == 0) {
        lua_pop(L, 1);
        snprintf(err, errlen, "internal: normalized source has no %s",
                 isLists ? "lists" : "streams");
        return -1;
    }
    src->streams = calloc((size_t)n, sizeof(char *));
    src->starts = isLists ? NULL : calloc((size_t)n, sizeof(char *));
    if (!src->streams || (!isLists && !src->starts)) {
        lua_pop(L, 1);
        snprintf(err, errlen, "out of memory reading the source");
        return -1;
    }
    src->nstreams = n;
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, -1, i + 1);
        if (isLists) {
            src->streams[i] = lua_isstring(L, -1) ? strdup(lua_tostring(L, -1)) : NULL;
        } else {
            src->streams[i] = dupField(L, lua_gettop(L), "name");
            src->starts[i] = dupField(L, lua_gettop(L), "start");
        }
        lua_pop(L, 1);
        if (!src->streams[i] || (!isLists && !src->starts[i])) {
            lua_pop(L, 1);
            snprintf(err, errlen, "internal: source stream #%d has no name or start", i + 1);
            return -1;
        }
    }
    lua_pop(L, 1);
    static const struct {
        const char *key;
        int type;
    } needed[] = {{"block_ms", LUA_TNUMBER},
                  {"convert", LUA_TBOOLEAN},
                  {"encoding", LUA_TSTRING},
                  {"max_in_flight", LUA_TNUMBER},
                  {"max_in_flight_bytes", LUA_TNUMBER},
                  {"read_chunk", LUA_TNUMBER},
                  {"replay_pending", LUA_TBOOLEAN}};
    for (size_t k = 0; k < sizeof(needed) / sizeof(needed[0]); k++)
        if (needField(L, idx, needed[k].key, needed[k].type, err, errlen) != 0) return -1;
    if (src->kind == RSG_SOURCE_GROUP && needField(L, idx, "group", LUA_TSTRING, err, errlen) != 0)
        return -1;
    if (isLists && needField(L, idx, "reliable", LUA_TBOOLEAN, err, errlen) != 0) return -1;
    src->group = dupField(L, idx, "group");
    src->count = (long)numField(L, idx, "count", 0);
    src->block_ms = (long)numField(L, idx, "block_ms", 0);
    src->replay_pending = boolField(L, idx, "replay_pending", 1);
    src->convert = boolField(L, idx, "convert", 1);
    src->encoding = dupField(L, idx, "encoding");
    src->max_in_flight = (long)numField(L, idx, "max_in_flight", 0);
    src->max_in_flight_bytes = (size_t)numField(L, idx, "max_in_flight_bytes", 0);
    src->read_chunk = (long)numField(L, idx, "read_chunk", 0);
    src->heartbeat_interval = numField(L, idx, "heartbeat_interval", 0);
    src->claim_timeout = numField(L, idx, "claim_timeout", 0);
    src->heartbeat_channel = dupField(L, idx, "heartbeat_channel");
    src->checkpoint = dupField(L, idx, "checkpoint");
    src->reliable = boolField(L, idx, "reliable", 0);
    src->max_deliveries = (long)numField(L, idx, "max_deliveries", 0);
    lua_getfield(L, idx, "dead_letter");
    if (lua_istable(L, -1)) {
        int dl = lua_gettop(L);
        src->dead_letter = dupField(L, dl, "key");
        src->dead_letter_maxlen = (long)numField(L, dl, "maxlen", 0);
        if (!src->dead_letter) {
            lua_pop(L, 1);
            snprintf(err, errlen, "internal: the normalized source.dead_letter has no key");
            return -1;
        }
    }
    lua_pop(L, 1);
    return 0;
}

int rsgLuaLoadScript(rsgLua *lua, const char *path, const char *consumer, rsgSourceConfig *src,
                     char *err, size_t errlen) {
    lua_State *L = lua->L;
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, lua->traceback_ref);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "rsghost.script");
    if (lua_pcall(L, 1, 1, top + 1) != 0) {
        snprintf(err, errlen, "cannot load rsghost.script: %s", lua_tostring(L, -1));
        lua_settop(L, top);
        return -1;
    }
    lua_getfield(L, -1, "load");
    lua_remove(L, -2);
    lua_pushstring(L, path);
    lua_createtable(L, 0, 2);
    if (consumer) {
        lua_pushstring(L, consumer);
        lua_setfield(L, -2, "consumer");
    }
    /* rsghost.log at the script's top level: the host's log lines too. */
    lua_pushcfunction(L, hostLog);
    lua_setfield(L, -2, "log");
    /* No traceback here: script.lua's messages are the user-facing
     * "path:LINE: reason" and must stay one line. */
    if (lua_pcall(L, 2, 1, 0) != 0) {
        const char *m = lua_tostring(L, -1);
        snprintf(err, errlen, "%s", m ? m : "script failed to load (non-string error)");
        lua_settop(L, top);
        return -1;
    }
    lua_pushvalue(L, -1);
    lua->cfg_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_getfield(L, -1, "sinks");
    lua->nsinks = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0;
    lua_pop(L, 1);
    lua_getfield(L, -1, "source");
    int rc = readSource(L, src, err, errlen);
    lua_settop(L, top);
    return rc;
}

int rsgLuaStart(rsgLua *lua, const rsgHostOps *ops, char *err, size_t errlen) {
    static const struct {
        const char *name;
        lua_CFunction fn;
    } api[] = {{"now", hostNow},           {"log", hostLog},
               {"send", hostSend},         {"ack", hostAck},
               {"abandon", hostAbandon},   {"dead_letter", hostDeadLetter},
               {"release", hostRelease},   {"set_timer", hostSetTimer},
               {"pause", hostPause},       {"ready", hostReady},
               {"finished", hostFinished}, {"file_append", hostFileAppend}};
    lua_State *L = lua->L;
    int top = lua_gettop(L);
    lua->ops = ops;
    lua_rawgeti(L, LUA_REGISTRYINDEX, lua->traceback_ref);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "rsghost.pipeline");
    if (lua_pcall(L, 1, 1, top + 1) != 0) goto fail;
    lua_getfield(L, -1, "new");
    lua_rawgeti(L, LUA_REGISTRYINDEX, lua->cfg_ref);
    lua_createtable(L, 0, (int)(sizeof(api) / sizeof(api[0])));
    for (size_t i = 0; i < sizeof(api) / sizeof(api[0]); i++) {
        lua_pushlightuserdata(L, lua);
        lua_pushcclosure(L, api[i].fn, 1);
        lua_setfield(L, -2, api[i].name);
    }
    /* host.debug: the pipeline builds its debug lines only when they show. */
    lua_pushboolean(L, rsgLogEnabled(RSG_LOG_DEBUG));
    lua_setfield(L, -2, "debug");
    if (ops->metrics) {
        static const struct {
            const char *name;
            lua_CFunction fn;
        } counts[] = {{"count_feed", hostCountFeed},
                      {"count_flush", hostCountFlush},
                      {"count_sink", hostCountSink},
                      {"count_acked", hostCountAcked}};
        for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
            lua_pushlightuserdata(L, lua);
            lua_pushcclosure(L, counts[i].fn, 1);
            lua_setfield(L, -2, counts[i].name);
        }
    }
    if (lua_pcall(L, 2, 1, top + 1) != 0) goto fail;
    /* feed_ref: a function(ptr, n) made by rsghost.handover for this pipeline. */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "rsghost.handover");
    if (lua_pcall(L, 1, 1, top + 1) != 0) goto fail;
    lua_getfield(L, -1, "feeder");
    lua_pushvalue(L, -3);
    if (lua_pcall(L, 1, 1, top + 1) != 0) goto fail;
    lua->feed_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1); /* the handover module */
    lua_getfield(L, -1, "tick");
    lua->tick_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_getfield(L, -1, "stop");
    lua->stop_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_getfield(L, -1, "start");
    lua->start_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "rsghost.hiredis");
    if (lua_pcall(L, 1, 1, top + 1) != 0) goto fail;
    lua_getfield(L, -1, "reply_at");
    lua->reply_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1); /* the module */
    lua->pipeline_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_settop(L, top);
    return 0;
fail:
    snprintf(err, errlen, "cannot start the pipeline: %s", lua_tostring(L, -1));
    lua_settop(L, top);
    return -1;
}

int rsgLuaFeed(rsgLua *lua, const rsgMsg *msgs, int n, const long *deliveries) {
    /* lua/rsghost/handover.lua reads the structs through the FFI, in code
     * LuaJIT compiles: cheaper than a C API call per string. */
    lua_State *L = lua->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, lua->feed_ref);
    lua_pushlightuserdata(L, (void *)msgs);
    lua_pushinteger(L, n);
    if (deliveries)
        lua_pushlightuserdata(L, (void *)deliveries);
    else
        lua_pushnil(L);
    return pcallLogged(lua, 3, "pipeline feed");
}

int rsgLuaTick(rsgLua *lua) {
    lua_rawgeti(lua->L, LUA_REGISTRYINDEX, lua->tick_ref);
    lua_rawgeti(lua->L, LUA_REGISTRYINDEX, lua->pipeline_ref);
    return pcallLogged(lua, 1, "pipeline tick");
}

int rsgLuaBegin(rsgLua *lua) {
    lua_rawgeti(lua->L, LUA_REGISTRYINDEX, lua->start_ref);
    lua_rawgeti(lua->L, LUA_REGISTRYINDEX, lua->pipeline_ref);
    return pcallLogged(lua, 1, "pipeline start");
}

int rsgLuaStop(rsgLua *lua) {
    lua_rawgeti(lua->L, LUA_REGISTRYINDEX, lua->stop_ref);
    lua_rawgeti(lua->L, LUA_REGISTRYINDEX, lua->pipeline_ref);
    return pcallLogged(lua, 1, "pipeline stop");
}

void rsgLuaReply(rsgLua *lua, int cbref, const redisReply *reply) {
    lua_State *L = lua->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, cbref);
    luaL_unref(L, LUA_REGISTRYINDEX, cbref);
    if (!reply) {
        lua_pushnil(L);
        lua_pushliteral(L, "connection to redis lost before the reply came");
    } else {
        /* rsghost.hiredis.reply_at converts it, as the kit's client does
         * with a real server: value, or nil and the error reply. */
        lua_rawgeti(L, LUA_REGISTRYINDEX, lua->reply_ref);
        lua_pushlightuserdata(L, (void *)reply);
        if (lua_pcall(L, 1, 2, 0) != 0) {
            lua_pushnil(L);
            lua_insert(L, -2); /* nil, the conversion's error */
        }
    }
    pcallLogged(lua, 2, "redis reply callback");
}

void rsgSourceConfigFree(rsgSourceConfig *src) {
    for (int i = 0; i < src->nstreams; i++) {
        free(src->streams[i]);
        if (src->starts) free(src->starts[i]);
    }
    free(src->streams);
    free(src->starts);
    free(src->group);
    free(src->encoding);
    free(src->heartbeat_channel);
    free(src->checkpoint);
    free(src->dead_letter);
    memset(src, 0, sizeof(*src));
}

void rsgLuaClose(rsgLua *lua) {
    if (lua->L) lua_close(lua->L);
    free(lua->scratch);
    memset(lua, 0, sizeof(*lua));
}
