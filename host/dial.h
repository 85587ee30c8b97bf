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

/* Connects to u's master. Returns the connection (redisFree it), or NULL
 * with a reason in err. */
redisContext *rsgDialMaster(const rsgRedisUrl *u, char *err, size_t errlen);

/* Sends one command (lens NULL: C strings). Returns its reply, or NULL with
 * the reason in err (a connection error, or an error reply, which is
 * freed). */
redisReply *rsgDialCall(redisContext *c, int argc, const char **argv, const size_t *lens, char *err,
                        size_t errlen);

#endif
