/* dead_letter.h - poison messages (source.dead_letter): one message moved
 * from its stream's pending list into the dead-letter stream.
 *
 * One server-side script does both halves: XRANGE id id (the entry's fields
 * exactly as Redis holds them, bytes the host and Lua never touched), XADD to
 * the dead-letter stream (MAXLEN ~ when set), then XACK. Scripts are atomic,
 * so a crash leaves the message in exactly one place: pending in its stream,
 * or dead-lettered and acked. An XADD that fails (WRONGTYPE) aborts the
 * script before the XACK: the message stays pending, and the host logs why.
 *
 * The dead-letter entry's fields: rsghost:stream, rsghost:id, rsghost:group,
 * rsghost:consumer, rsghost:deliveries, rsghost:error, rsghost:failed_at
 * (Unix ms), then the message's own fields in order. */
#ifndef RSG_DEAD_LETTER_H
#define RSG_DEAD_LETTER_H

#include "conn.h"
#include "types.h"

/* Sends the dead-letter script for message id of stream on cmds (the
 * command connection), for cfg's group and dead_letter key. deliveries and
 * err are recorded in the entry. The outcome is logged when the reply comes.
 * Returns 0, or -1 when it could not be sent (not connected, out of memory):
 * logged, and the message stays pending. */
int rsgDeadLetterSend(rsgConn *cmds, const rsgSourceConfig *cfg, const char *consumer,
                      rsgStr stream, rsgStr id, long deliveries, rsgStr err);

#endif
