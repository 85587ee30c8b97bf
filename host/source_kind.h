/* source_kind.h - what the core (source.c) offers the kinds of source
 * (source_group.c, source_streams.c, source_lists.c), and their tables.
 * Not for other modules. A kind calls only these and the public functions
 * of source.h, never another kind's. */
#ifndef RSG_SOURCE_KIND_H
#define RSG_SOURCE_KIND_H

#include "source.h"

/* The kinds' tables (see rsgSourceType), one per file. */
extern const rsgSourceType rsgSourceGroup;
extern const rsgSourceType rsgSourceStreams;
extern const rsgSourceType rsgSourceLists;
extern const rsgSourceType rsgSourceClusterGroup; /* a group on a Redis Cluster */

/* Setup is done: reading starts in `phase` (REPLAY or LIVE) at once. */
void rsgSourceBegin(rsgSource *s, rsgSourcePhase phase);

/* Grows the scratch arrays s->msgs and s->fv to hold n messages and nfv
 * strings. Returns 0, or -1 out of memory (the arrays stay as they were). */
int rsgSourceReserve(rsgSource *s, size_t n, size_t nfv);

/* First steps with a stream read reply: an error is fatal, nil (a BLOCK
 * that timed out) reads again, otherwise the shape is checked and the
 * scratch arrays made ready. Returns 0 when the entries are to be
 * collected, -1 when the reply was dealt with. */
int rsgSourceBeginRead(rsgSource *s, const redisReply *reply, const char *cmd, size_t *entries);

/* Converts the entries of one stream into s->msgs[*n...], advancing *n and
 * *fvused; entries deleted while pending are acked, those with invalid
 * bytes logged (rsgBadFieldLine, with type->keeps_pending) and abandoned. The scratch arrays must
 * have room (rsgSourceBeginRead or rsgSourceReserve). counts: NULL, or
 * counts[j] the times-delivered of list's entry j, kept in s->deliv for
 * the next rsgSourceDeliver (which then passes them on). */
void rsgSourceCollect(rsgSource *s, const redisReply *stream, const redisReply *list, int *n,
                      size_t *fvused, const long *counts);

/* Feeds s->msgs[0..n) to the pipeline (with s->deliv when a collect had
 * counts), counting them (and their bytes) in flight; on failure stops the
 * host. With `kick` the next read is sent and
 * written out first, so Redis works on it while Lua runs. */
void rsgSourceDeliver(rsgSource *s, int n, int kick);

/* Queues one XACK of ids on stream for the group (the group and cluster
 * kinds' ack): kept and resent in order by the ack queue, whose
 * connection routes it to the stream's master on a cluster. */
void rsgSourceXack(rsgSource *s, rsgStr stream, int n, const rsgStr *ids);

/* A replay's delivery counts (source.max_deliveries): one stream's XPENDING
 * (extended form: [[id, consumer, idle, count]...]), asked just before the
 * replay read, so that the read's entries reach Lua with Redis's
 * times-delivered. The group and cluster kinds keep one per stream. */
typedef struct rsgPendingCounts {
    char **ids;   /* pending ids, NULL when none asked or the reply failed */
    long *counts; /* their times-delivered before the read */
    size_t n;     /* how many */
} rsgPendingCounts;

/* Frees what p holds and leaves it empty. */
void rsgPendingClear(rsgPendingCounts *p);

/* Replaces p's counts with those of an XPENDING array reply; a malformed
 * entry ends the list there, and out of memory leaves none (those entries
 * then count as at their first delivery). */
void rsgPendingTake(rsgPendingCounts *p, const redisReply *reply);

/* counts[j]: the times-delivered of list's entry j (one stream of a replay
 * read): XPENDING's count plus this read, 1 when unknown. Both list the
 * same entries in id order. */
void rsgPendingReplayCounts(const rsgPendingCounts *p, const redisReply *list, long *counts);

/* privdata for a per-key command whose reply does not name its key (TYPE,
 * LLEN, XREVRANGE): key i of s (i == nstreams: the dead-letter stream).
 * Replies cannot be matched to keys by their order: on a cluster the router
 * (s->conn) sends each key's command to that key's master, and the replies
 * of different masters arrive in any order. */
void *rsgSourceKeyRef(rsgSource *s, int i);

/* The source and key (into *i) of a reply's rsgSourceKeyRef privdata. */
rsgSource *rsgSourceKeyOf(void *privdata, int *i);

/* Index of a configured stream/list by name, or -1. */
int rsgSourceIndex(const rsgSource *s, const char *name, size_t len);

/* Sets key i's cursor to a copy of id[0..len). Out of memory leaves it
 * NULL (no cursor), as if nothing had been seen. */
void rsgSourceSetCursor(rsgSource *s, int i, const char *id, size_t len);

/* Read size: the room shared among `keys` keys (COUNT bounds each key), at
 * most source.count. 0 when there is no room. */
long rsgSourceReadCount(const rsgSource *s, int keys);

/* The next read over the eligible keys idx[0..n) (indexes into
 * cfg->streams, in order), by rules.c's read sizing: rewrites idx[] so
 * that the keys it names come first and returns how many (0: no room now),
 * with its COUNT in *count. *block: it may block (only `live` reads do):
 * a read of every key, or the idle wait on every key after a turn of
 * windows found nothing (rsgSourceBeginRead counts those). */
int rsgSourcePlanRead(rsgSource *s, int *idx, int n, int live, long *count, int *block);

/* A read failed with an error reply: fatal. WRONGTYPE first re-checks the
 * type of every key, so the error names the key that changed. */
void rsgSourceReadError(rsgSource *s, const char *cmd, const char *err);

/* Something no retry can mend: formats the reason and stops the host
 * (hooks.fatal); the caller returns at once and reads nothing more. */
void rsgSourceFatal(rsgSource *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
