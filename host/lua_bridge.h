/* lua_bridge.h - the one place that touches the lua_State.
 *
 * The pipeline's semantics live in lua/rsghost/ (script.lua loads and checks
 * the user's script, pipeline.lua runs preprocess, batching, sinks and
 * decides what to ack). The same files run under busted, so there is one
 * implementation of them. This module hands messages over (once per read,
 * never once per message), and exposes the host's I/O to Lua as the `host`
 * table described in pipeline.lua, through the callbacks in rsgHostOps. */
#ifndef RSG_LUA_BRIDGE_H
#define RSG_LUA_BRIDGE_H

#include <hiredis/hiredis.h>
#include <stddef.h>

#include "metrics.h"
#include "types.h"

typedef struct lua_State lua_State;

/* What the host does for Lua. `ud` is passed back to every callback. */
typedef struct rsgHostOps {
    void *ud;
    /* Sends a command on the command connection. When the reply comes the host
     * calls rsgLuaReply(lua, cbref, reply). Returns 0, or -1 when the command
     * cannot be sent (not connected): the bridge then answers Lua at once. */
    int (*send)(void *ud, int argc, const char **argv, const size_t *lens, int cbref);
    /* Acknowledge these ids of one stream (strings valid during the call). */
    void (*ack)(void *ud, rsgStr stream, int n, const rsgStr *ids);
    /* Preprocess failed on these: they are given up on (not acked). */
    void (*abandon)(void *ud, rsgStr stream, int n, const rsgStr *ids);
    /* Dead-letter one message (source.dead_letter): append it with err to the
     * dead-letter stream and ack it, atomically (dead_letter.h). */
    void (*dead_letter)(void *ud, rsgStr stream, rsgStr id, long deliveries, rsgStr err);
    /* n messages left the pipeline (acked, dropped or left pending). */
    void (*release)(void *ud, long n);
    /* Arms the pipeline's one timer: call rsgLuaTick after delay seconds;
     * a negative delay cancels it. */
    void (*set_timer)(void *ud, double delay);
    /* Pauses (1) or resumes (0) reading while a failed batch waits. */
    void (*pause)(void *ud, int flag);
    /* After rsgLuaBegin: the script's init returned; reading may start. */
    void (*ready)(void *ud);
    /* After rsgLuaStop: everything was flushed and acked (unsunk == 0), or
     * the pipeline gave up on unsunk messages whose sink kept failing. */
    void (*finished)(void *ud, long unsunk);
    /* Appends data to the file at path (fsync'd when fsync is set), off the
     * loop (file_out.h); the host calls rsgLuaDone(lua, cbref, err) when it
     * is on disk or failed. Returns 0, or -1 out of memory (the bridge then
     * answers Lua at once). */
    int (*file_append)(void *ud, const char *path, const char *data, size_t len, int fsync,
                       int cbref);
    /* Where the pipeline's own events are counted (--metrics), or NULL: the
     * host table then has no count_* functions and the pipeline skips them. */
    rsgMetrics *metrics;
} rsgHostOps;

typedef struct rsgLua {
    lua_State *L;          /* the only Lua state */
    int traceback_ref;     /* message handler for every pcall */
    int pipeline_ref;      /* the pipeline object */
    int feed_ref;          /* pipeline.feed */
    int tick_ref;          /* pipeline.tick */
    int stop_ref;          /* pipeline.stop */
    int start_ref;         /* pipeline.start */
    int reply_ref;         /* rsghost.hiredis.reply_at: replies as scripts see them */
    int cfg_ref;           /* the normalized script config */
    const rsgHostOps *ops; /* set by rsgLuaStart */
    rsgStr *scratch;       /* ids handed to ops->ack */
    size_t scratch_cap;
    int nsinks; /* the script's sinks, known once it loaded */
} rsgLua;

/* Creates the state, opens the standard libraries and points require at
 * luadir. Returns 0, or -1 with a reason in err. */
int rsgLuaInit(rsgLua *lua, const char *luadir, char *err, size_t errlen);

/* Loads and checks the user's script (rsghost.script.load) and fills *src.
 * Touches no Redis. Returns 0, or -1 with the script's "path:LINE: reason". */
int rsgLuaLoadScript(rsgLua *lua, const char *path, const char *consumer, rsgSourceConfig *src,
                     char *err, size_t errlen);

/* How many sinks the loaded script has (metrics.h labels them 1..n). */
int rsgLuaSinkCount(const rsgLua *lua);

/* Builds the pipeline with the host's ops. Returns 0 or -1 with err. */
int rsgLuaStart(rsgLua *lua, const rsgHostOps *ops, char *err, size_t errlen);

/* The command connection is up for the first time: runs the script's init
 * (ops->ready follows once it returned; at once without one). Returns 0 or
 * -1 like rsgLuaFeed. */
int rsgLuaBegin(rsgLua *lua);

/* Hands n messages to the pipeline in one call. deliveries: NULL when every
 * message is at its first delivery (a live read), else deliveries[i] is
 * Redis's times-delivered of msgs[i] (replayed or claimed entries). Returns
 * 0, or -1 if the pipeline itself failed (a bug, logged): the host should
 * stop. */
int rsgLuaFeed(rsgLua *lua, const rsgMsg *msgs, int n, const long *deliveries);

/* The pipeline timer fired. Returns 0 or -1 like rsgLuaFeed. */
int rsgLuaTick(rsgLua *lua);

/* Stop: flush the partial batch; ops->finished follows when done. */
int rsgLuaStop(rsgLua *lua);

/* Delivers the reply of a command sent through ops->send; reply NULL means
 * the connection was lost before the reply came. */
void rsgLuaReply(rsgLua *lua, int cbref, const redisReply *reply);

/* Finishes a host operation other than a command (ops->file_append): calls
 * its Lua callback with true, or with nil and err. */
void rsgLuaDone(rsgLua *lua, int cbref, const char *err);

/* Frees *src's strings. */
void rsgSourceConfigFree(rsgSourceConfig *src);

/* Closes the state. */
void rsgLuaClose(rsgLua *lua);

#endif
