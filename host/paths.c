/* paths.c - see paths.h. */
#include "paths.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int hasModules(const char *dir) {
    char probe[PATH_MAX];
    if (snprintf(probe, sizeof(probe), "%s/rsghost/init.lua", dir) >= (int)sizeof(probe)) return 0;
    return access(probe, R_OK) == 0;
}

int rsgFindLuaDir(char *buf, size_t len, char *err, size_t errlen) {
    const char *env = getenv("RSGHOST_LUA_DIR");
    if (env && *env) {
        if (!hasModules(env)) {
            snprintf(err, errlen, "RSGHOST_LUA_DIR=%s holds no rsghost/init.lua", env);
            return -1;
        }
        snprintf(buf, len, "%s", env);
        return 0;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0) {
        snprintf(err, errlen, "cannot locate the rsghost executable (/proc/self/exe)");
        return -1;
    }
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) *slash = '\0';
    static const char *const rel[] = {"/../share/rsghost/lua", "/lua", "/../lua"};
    for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
        char cand[PATH_MAX];
        snprintf(cand, sizeof(cand), "%s%s", exe, rel[i]);
        if (hasModules(cand)) {
            char *real = realpath(cand, NULL);
            snprintf(buf, len, "%s", real ? real : cand);
            free(real);
            return 0;
        }
    }
    snprintf(err, errlen,
             "cannot find rsghost's Lua modules next to %s (looked in ../share/rsghost/lua, lua, "
             "../lua)",
             exe);
    return -1;
}
