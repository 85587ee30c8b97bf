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

typedef struct lua_State lua_State;

/* A byte string that is not NUL-terminated and not owned. */
typedef struct rsgStr {
    const char *p;
    size_t len;
} rsgStr;

/* One message as it goes to Lua. */
typedef struct rsgMsg {
    rsgStr stream;    /* stream (or list) name */
    rsgStr id;        /* message id (or, for lists, the item itself) */
    const rsgStr *fv; /* field/value pairs: fv[2i] name, fv[2i+1] value; for a
                         list item fv[0] is the item converted for Lua */
    int nfields;      /* number of pairs; -1 for a list item (no data table) */
} rsgMsg;

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
} rsgHostOps;

/* The script's `source` table, as normalized by lua/rsghost/script.lua. */
typedef struct rsgSourceConfig {
    char kind[16];              /* "group", "streams" or "lists" */
    int nstreams;               /* streams (or lists) to read */
    char **streams;             /* their names */
    char **starts;              /* start ids (group creation / XREAD), NULL for lists */
    char *group;                /* consumer group, NULL unless kind is group */
    long count;                 /* max messages per read, 0 = as many as room allows */
    long block_ms;              /* XREADGROUP BLOCK, 0 = forever */
    int replay_pending;         /* re-read our own pending entries first */
    int convert;                /* decode field names and values */
    char *encoding;             /* source encoding for convert */
    long max_in_flight;         /* bound on unacknowledged messages held */
    size_t max_in_flight_bytes; /* and on their bytes, 0 = none */
    long read_chunk;            /* reads without source.count ask for at most this */
    double heartbeat_interval;  /* seconds, 0 = heartbeats off */
    double claim_timeout;       /* seconds, 0 = never claim */
    char *heartbeat_channel;    /* pub/sub channel, NULL when heartbeats are off */
    char *checkpoint;           /* hash key for XREAD checkpoints, or NULL */
    int reliable;               /* lists: use a processing list */
} rsgSourceConfig;

typedef struct rsgLua {
    lua_State *L;          /* the only Lua state */
    int traceback_ref;     /* message handler for every pcall */
    int pipeline_ref;      /* the pipeline object */
    int feed_ref;          /* pipeline.feed */
    int tick_ref;          /* pipeline.tick */
    int stop_ref;          /* pipeline.stop */
    int start_ref;         /* pipeline.start */
    int cfg_ref;           /* the normalized script config */
    const rsgHostOps *ops; /* set by rsgLuaStart */
    rsgStr *scratch;       /* ids handed to ops->ack */
    size_t scratch_cap;
} rsgLua;

/* Creates the state, opens the standard libraries and points require at
 * luadir. Returns 0, or -1 with a reason in err. */
int rsgLuaInit(rsgLua *lua, const char *luadir, char *err, size_t errlen);

/* Loads and checks the user's script (rsghost.script.load) and fills *src.
 * Touches no Redis. Returns 0, or -1 with the script's "path:LINE: reason". */
int rsgLuaLoadScript(rsgLua *lua, const char *path, const char *consumer, rsgSourceConfig *src,
                     char *err, size_t errlen);

/* Builds the pipeline with the host's ops. Returns 0 or -1 with err. */
int rsgLuaStart(rsgLua *lua, const rsgHostOps *ops, char *err, size_t errlen);

/* The command connection is up for the first time: runs the script's init
 * (ops->ready follows once it returned; at once without one). Returns 0 or
 * -1 like rsgLuaFeed. */
int rsgLuaBegin(rsgLua *lua);

/* Hands n messages to the pipeline in one call. Returns 0, or -1 if the
 * pipeline itself failed (a bug, logged): the host should stop. */
int rsgLuaFeed(rsgLua *lua, const rsgMsg *msgs, int n);

/* The pipeline timer fired. Returns 0 or -1 like rsgLuaFeed. */
int rsgLuaTick(rsgLua *lua);

/* Stop: flush the partial batch; ops->finished follows when done. */
int rsgLuaStop(rsgLua *lua);

/* Delivers the reply of a command sent through ops->send; reply NULL means
 * the connection was lost before the reply came. */
void rsgLuaReply(rsgLua *lua, int cbref, const redisReply *reply);

/* Frees *src's strings. */
void rsgSourceConfigFree(rsgSourceConfig *src);

/* Closes the state. */
void rsgLuaClose(rsgLua *lua);

#endif
