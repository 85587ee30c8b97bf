/* paths.h - where the host finds its own Lua modules (lua/rsghost/...). */
#ifndef RSG_PATHS_H
#define RSG_PATHS_H

#include <stddef.h>

/* Finds the directory holding rsghost/init.lua, in this order:
 *   $RSGHOST_LUA_DIR (an override, for development),
 *   <dir of the executable>/../share/rsghost/lua   (after cmake --install),
 *   <dir of the executable>/lua                    (the build tree's link),
 *   <dir of the executable>/../lua                 (a build dir in the source tree).
 * Returns 0 and writes the directory into buf, or -1 with a reason in err. */
int rsgFindLuaDir(char *buf, size_t len, char *err, size_t errlen);

#endif
