/* dial.h - one blocking connection to the master a URL names, for the
 * one-shot subcommands (dead-letters, redrive, status): a command that runs
 * once and exits has no loop to keep responsive.
 *
 * TCP or unix socket, TLS when the URL is rediss://, AUTH and SELECT as the
 * URL says; for a Sentinel URL, the master its sentinels name (asked in
 * order, with their own credentials, as sentinel.c does for a run). */
#ifndef RSG_DIAL_H
#define RSG_DIAL_H

#include <stddef.h>

#include <hiredis/hiredis.h>

#include "url.h"

/* Connects to u's master; for a cluster, to the first seed that answers
 * (for what any node serves: SUBSCRIBE, as a PUBLISH reaches every node).
 * Returns the connection (redisFree it), or NULL with a reason in err. */
redisContext *rsgDialMaster(const rsgRedisUrl *u, char *err, size_t errlen);

/* Sends one command (lens NULL: C strings). Returns its reply, or NULL with
 * the reason in err (a connection error, or an error reply, which is
 * freed). */
redisReply *rsgDialCall(redisContext *c, int argc, const char **argv, const size_t *lens, char *err,
                        size_t errlen);

/* A session of one-shot commands that may each touch a different key: on
 * one server (or a Sentinel's master) a single connection; on a Redis
 * Cluster (redis+cluster://) a blocking router. It learns the slot map
 * from the seeds (CLUSTER SLOTS, in order, until one answers), sends each
 * command to the master of its first key's slot (the rule of cluster_map.h,
 * so the async router and this one cannot disagree) over one connection per
 * node, made when first needed, and follows "-MOVED" (the map is learnt
 * again from that node) and "-ASK" (ASKING, then the command, once) up to
 * five hops. A command is never sent twice after a lost connection: a
 * one-shot command reports the loss instead of guessing. */
typedef struct rsgDialer rsgDialer;

/* Connects for u (kept by the caller while the session lives). Returns the
 * session, or NULL with a reason in err. */
rsgDialer *rsgDialOpen(const rsgRedisUrl *u, char *err, size_t errlen);

/* rsgDialCall for a session: the same contract, routed on a cluster. */
redisReply *rsgDialerCall(rsgDialer *d, int argc, const char **argv, const size_t *lens, char *err,
                          size_t errlen);

/* Closes every connection of d. Safe on NULL. */
void rsgDialClose(rsgDialer *d);

#endif
