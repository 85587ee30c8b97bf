/* status.h - `rsghost status SCRIPT`: the consumer group of a script's
 * source as Redis has it, read-only and from Redis alone (so it also shows a
 * group that streamz_redis consumers share, or one whose consumers run on
 * other machines).
 *
 * Per stream: its length, and the group's lag, pending count and last
 * delivered id (XLEN, XINFO GROUPS). Per consumer (XINFO CONSUMERS, all
 * streams together): its pending count, its idle time, and whether it is
 * alive, judged as claim.c judges a peer:
 *   - registered in rsghost:consumers:<group> (an rsghost consumer with
 *     heartbeats): alive while its liveness key exists, dead once it is gone;
 *   - not registered (streamz_redis, or rsghost without heartbeats): alive
 *     when its heartbeat is heard on the group's channel while status
 *     listens (two heartbeat intervals; with --watch, between refreshes), or
 *     when Redis saw it within claim_timeout; otherwise silent, and peers
 *     with heartbeats will claim what it holds.
 * And the number of entries in source.dead_letter.
 *
 * A table on stdout, or with --json one JSON object per snapshot (a line
 * each); --watch SECONDS refreshes until interrupted (in place on a
 * terminal). */
#ifndef RSG_STATUS_H
#define RSG_STATUS_H

#include "config.h"
#include "types.h"
#include "url.h"

/* Shows src's group at url as opts asks. Returns the exit status: 0, 1 when
 * Redis could not be read (once; --watch keeps trying), 2 when the source
 * has no consumer group. */
int rsgStatusMain(const rsgOptions *opts, const rsgRedisUrl *url, const rsgSourceConfig *src);

#endif
