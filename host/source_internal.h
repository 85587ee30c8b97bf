/* source_internal.h - what source.c shares with the per-kind readers
 * (source_group.c, source_streams.c, source_lists.c). Not for other modules. */
#ifndef RSG_SOURCE_INTERNAL_H
#define RSG_SOURCE_INTERNAL_H

#include "source.h"

/* Grows the scratch arrays to hold n messages and nfv strings. 0 or -1. */
int rsgSourceReserve(rsgSource *s, size_t n, size_t nfv);

/* Checks a stream read reply: [[stream, [[id, [f, v, ...] | nil], ...]], ...],
 * counting entries and field strings. 1 if well formed. */
int rsgSourceWellFormed(const redisReply *r, size_t *entries, size_t *strings);

/* First steps with a stream read reply: an error is fatal, nil (a BLOCK
 * that timed out) reads again, otherwise the shape is checked and the
 * scratch arrays made ready. Returns 0 when the entries are to be
 * collected, -1 when the reply was dealt with. */
int rsgSourceBeginRead(rsgSource *s, const redisReply *reply, const char *cmd, size_t *entries);

/* Converts the entries of one stream into s->msgs[*n...], advancing *n and
 * *fvused; entries deleted while pending are acked, invalid bytes logged
 * and left pending. The scratch arrays must have room. */
void rsgSourceCollect(rsgSource *s, const redisReply *stream, const redisReply *list, int *n,
                      size_t *fvused);

/* Feeds s->msgs[0..n) to the pipeline, counting them in flight; on failure
 * stops the host. Sends the next read first when `kick` is set. */
void rsgSourceDeliver(rsgSource *s, int n, int kick);

/* Index of a configured stream/list by name, or -1. */
int rsgSourceIndex(const rsgSource *s, const char *name, size_t len);

void rsgSourceSetCursor(rsgSource *s, int i, const char *id, size_t len);

/* Read size: the room shared among `keys` keys (COUNT bounds each key), at
 * most source.count. 0 when there is no room. */
long rsgSourceReadCount(const rsgSource *s, int keys);

/* A read failed with an error reply: fatal. WRONGTYPE first re-checks the
 * type of every key, so the error names the key that changed. */
void rsgSourceReadError(rsgSource *s, const char *cmd, const char *err);

void rsgSourceFatal(rsgSource *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Per-kind entry points. */
void rsgGroupSetup(rsgSource *s);
void rsgGroupRead(rsgSource *s);
void rsgGroupAck(rsgSource *s, rsgStr stream, int n, const rsgStr *ids);

int rsgStreamsInit(rsgSource *s);
void rsgStreamsSetup(rsgSource *s);
void rsgStreamsRead(rsgSource *s);
void rsgStreamsAck(rsgSource *s, rsgStr stream, int n, const rsgStr *ids, int acked);
void rsgStreamsFree(rsgSource *s);

int rsgListsInit(rsgSource *s);
void rsgListsSetup(rsgSource *s);
void rsgListsRead(rsgSource *s);
void rsgListsAck(rsgSource *s, rsgStr list, int n, const rsgStr *items);
void rsgListsStop(rsgSource *s);
void rsgListsRecheck(rsgSource *s);
void rsgListsFree(rsgSource *s);

#endif
