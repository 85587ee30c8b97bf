/* dead_letter.h - poison messages (source.dead_letter): one message moved
 * out of its source into the dead-letter stream.
 *
 * One server-side script does both halves, so a crash leaves the message in
 * exactly one place. It XADDs the entry to the dead-letter stream (MAXLEN ~
 * when set), then takes the message out of its source, which depends on
 * the kind of source:
 *
 *   group           the entry's fields are read inside the script (XRANGE
 *                   id id: bytes the host and Lua never touched), then XACK:
 *                   pending in its stream, or dead-lettered and acked;
 *   plain streams   the fields likewise; nothing is pending in Redis, so the
 *                   checkpoint moves past the message once the script's
 *                   reply is in (the request's `done`): a crash before that
 *                   reads it again, and may dead-letter it a second time;
 *   lists           the item is the message (field `item`); a reliable list
 *                   removes it from its processing list in the script (LREM).
 *
 * An XADD that fails (WRONGTYPE) aborts the script before the rest: the
 * message stays where it was, and the host logs why.
 *
 * The dead-letter entry's fields: rsghost:stream (rsghost:list for lists),
 * rsghost:id (empty for lists), rsghost:group (empty without one),
 * rsghost:consumer, rsghost:deliveries, rsghost:error, rsghost:failed_at
 * (Unix ms), then the message's own fields in order. host/redrive.c reads
 * them back by position. */
#ifndef RSG_DEAD_LETTER_H
#define RSG_DEAD_LETTER_H

#include "conn.h"
#include "types.h"

/* One message to dead-letter. */
typedef struct rsgDeadLetter {
    rsgStr origin;    /* its stream or list */
    rsgStr id;        /* its entry id, or the list item */
    long deliveries;  /* recorded in the entry */
    rsgStr err;       /* why: recorded in the entry */
    const char *proc; /* a reliable list's processing list, else NULL */
    /* Called once the entry is stored and the message taken out (not on
     * failure), with copies of origin and id; NULL: nothing to do. */
    void (*done)(void *ud, rsgStr origin, rsgStr id);
    void *ud;
} rsgDeadLetter;

/* Sends the dead-letter script for d on cmds (the command connection), for
 * cfg's kind, group and dead_letter key. The outcome is logged when the
 * reply comes. Returns 0, or -1 when it could not be sent (not connected,
 * out of memory): logged, and the message stays where it was. */
int rsgDeadLetterSend(rsgConn *cmds, const rsgSourceConfig *cfg, const char *consumer,
                      const rsgDeadLetter *d);

#endif
