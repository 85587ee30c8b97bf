/* heart.h - the heart: a separate process that publishes this consumer's
 * heartbeats, so they go out on time even while the main process is busy in
 * a long Lua computation.
 *
 * Every `interval` seconds the heart PUBLISHes the bare consumer name on the
 * group's channel (what streamz_redis does, so both kinds of consumer see each
 * other) and refreshes the liveness key (SET key <unix ms> PX claim_timeout),
 * which lets a consumer that starts later know at once who is alive. It also
 * registers the consumer in the group's registry hash, which marks it as one
 * that keeps a liveness key: when that key is gone, the consumer is dead.
 *
 * The heart subscribes to the channel and watches its own heartbeats come
 * back; if none arrives for claim_timeout (connection trouble, delays), peers
 * will think this consumer dead, so the heart stops, and with it the main
 * process. Main and heart hold the two ends of a socket pair: when either
 * dies, the other reads EOF at once. The heart also asks the kernel to kill
 * it if its parent dies (PR_SET_PDEATHSIG), so no orphan heart keeps a dead
 * consumer looking alive.
 *
 * One name, one process: before anything else the heart takes the owner key
 * (SET to "host:pid:nonce:beat" when free, PX two intervals, renewed at every
 * beat, all in one script), and only then writes 'N' on the socket pair: the
 * main process reads nothing before. A key held by another process that
 * renews it is a live duplicate: the heart logs who holds it and exits with
 * RSG_HEART_NAME_IN_USE. A key that is not renewed (its owner was killed) runs
 * out within two of its intervals and is taken. When the main process ends,
 * the heart deletes the key (if still ours) before it exits, waiting at most a
 * second for Redis: a planned restart takes the name at once. */
#ifndef RSG_HEART_H
#define RSG_HEART_H

#include <sys/types.h>

#include "url.h"

typedef struct rsgHeartConfig {
    const rsgRedisUrl *url; /* where to publish */
    const char *group;      /* consumer group */
    const char *consumer;   /* our name: the heartbeat payload */
    const char *channel;    /* pub/sub channel (default: the group's name) */
    double interval;        /* seconds between heartbeats */
    double claim_timeout;   /* seconds: liveness key TTL, and the watchdog */
} rsgHeartConfig;

/* The heart's exit status when another live process uses our name. */
#define RSG_HEART_NAME_IN_USE 4

/* Forks the heart. Returns its pid and sets *lifeline to the main process's
 * end of the socket pair (readable with EOF when the heart dies), or returns
 * -1 with a reason in err. Call before the main loop exists. */
pid_t rsgHeartSpawn(const rsgHeartConfig *cfg, int *lifeline, char *err, size_t errlen);

/* The liveness key of a consumer, "rsghost:alive:<group>:<consumer>"; the
 * caller frees it. NULL when out of memory. */
char *rsgHeartAliveKey(const char *group, const char *consumer);

/* The owner key of a consumer name, "rsghost:owner:<group>:<consumer>"; the
 * caller frees it. NULL when out of memory. */
char *rsgHeartOwnerKey(const char *group, const char *consumer);

/* The registry hash of a group, "rsghost:consumers:<group>"; the caller
 * frees it. NULL when out of memory. */
char *rsgHeartRegistryKey(const char *group);

#endif
