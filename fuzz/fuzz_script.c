/* fuzz_script.c - the script checker (lua/rsghost/script.lua's validate)
 * on arbitrary tables: fuzz_script.lua builds a table from the input and
 * holds the checker's promises; a broken one (a Lua error there) aborts.
 * The tables are checked against script_lines.lua's text, as if that
 * script had returned them, so that errors look up real lines.
 *
 * The checker is Lua, where clang's coverage cannot see: a line hook
 * counts the Lua lines run into libFuzzer's extra counters, so the fuzzer
 * is led by which checks a table reaches (in the replay build the counters
 * are plain memory). */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "fuzz.h"

static lua_State *L;
static int runRef;

#define NCOUNTERS 4096
__attribute__((used, section("__libfuzzer_extra_counters"))) static uint8_t counters[NCOUNTERS];

/* One counter per (chunk, line): chunk names are interned, so their
 * address tells chunks apart. */
static void lineHook(lua_State *l, lua_Debug *ar) {
    if (!lua_getinfo(l, "S", ar)) return;
    uintptr_t h = ((uintptr_t)ar->source >> 4) * 31 + (uintptr_t)ar->currentline;
    counters[h % NCOUNTERS]++;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    L = luaL_newstate();
    FUZZ_CHECK(L != NULL);
    luaL_openlibs(L);
    lua_getglobal(L, "package");
    lua_pushstring(L, RSG_FUZZ_LUA_DIR "/?.lua;" RSG_FUZZ_LUA_DIR "/?/init.lua;" RSG_FUZZ_DIR
                                       "/?.lua");
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "fuzz_script");
    if (lua_pcall(L, 1, 1, 0) != 0) {
        fprintf(stderr, "fuzz_script: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_getfield(L, -1, "run");
    runRef = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);
    lua_sethook(L, lineHook, LUA_MASKLINE, 0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, runRef);
    lua_pushlstring(L, (const char *)data, size);
    lua_pushliteral(L, RSG_FUZZ_DIR "/script_lines.lua");
    if (lua_pcall(L, 2, 0, 0) != 0) {
        fprintf(stderr, "fuzz_script: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_gc(L, LUA_GCSTEP, 0);
    return 0;
}
