/* Prints the layout of the structs that Lua reads through the FFI
 * (lua/rsghost/handover.lua: rsgMsg; lua/rsghost/native.lua: rsgRedisUrl;
 * lua/rsghost/hiredis.lua: hiredis's redisReply and the start of
 * redisContext, as the installed hiredis headers declare them),
 * one "struct.field offset" or "struct size" per line, for layout_test.lua
 * to compare with the FFI declarations. A change on one side alone fails
 * the test instead of misreading memory. */
#include <stddef.h>
#include <stdio.h>

#include <hiredis/hiredis.h>

#include "lua_bridge.h"
#include "url.h"

#define SIZE(t)     printf("%s %zu\n", #t, sizeof(t))
#define FIELD(t, f) printf("%s.%s %zu\n", #t, #f, offsetof(t, f))

int main(void) {
    SIZE(rsgStr);
    FIELD(rsgStr, p);
    FIELD(rsgStr, len);
    SIZE(rsgMsg);
    FIELD(rsgMsg, stream);
    FIELD(rsgMsg, id);
    FIELD(rsgMsg, fv);
    FIELD(rsgMsg, nfields);
    SIZE(rsgAddr);
    FIELD(rsgAddr, host);
    FIELD(rsgAddr, port);
    SIZE(rsgRedisUrl);
    FIELD(rsgRedisUrl, host);
    FIELD(rsgRedisUrl, port);
    FIELD(rsgRedisUrl, path);
    FIELD(rsgRedisUrl, user);
    FIELD(rsgRedisUrl, password);
    FIELD(rsgRedisUrl, db);
    FIELD(rsgRedisUrl, tls);
    FIELD(rsgRedisUrl, sentinels);
    FIELD(rsgRedisUrl, nsentinels);
    FIELD(rsgRedisUrl, master);
    FIELD(rsgRedisUrl, sentinel_user);
    FIELD(rsgRedisUrl, sentinel_password);
    FIELD(rsgRedisUrl, cluster);
    FIELD(rsgRedisUrl, seeds);
    FIELD(rsgRedisUrl, nseeds);
    SIZE(redisReply);
    FIELD(redisReply, type);
    FIELD(redisReply, integer);
#if HIREDIS_MAJOR >= 1
    FIELD(redisReply, dval);
    FIELD(redisReply, vtype);
#endif
    FIELD(redisReply, len);
    FIELD(redisReply, str);
    FIELD(redisReply, elements);
    FIELD(redisReply, element);
    /* rsghost.hiredis declares only the start of redisContext: no size. */
    FIELD(redisContext, err);
    FIELD(redisContext, errstr);
    FIELD(redisContext, fd);
    FIELD(redisContext, flags);
    FIELD(redisContext, obuf);
    FIELD(redisContext, reader);
    return 0;
}
