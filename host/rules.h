/* rules.h - host rules that the test kit must follow exactly, written as
 * plain functions of their inputs. The host calls them; the kit calls the
 * same compiled code through the FFI (lua/rsghost/native.lua loads the
 * shared library built from these sources), so the two cannot drift.
 * Nothing here touches Redis, libuv or Lua. */
#ifndef RSG_RULES_H
#define RSG_RULES_H

#include <stddef.h>

/* Read sizing: how many messages per key a read asks for (Redis's COUNT
 * bounds each key), and how many keys it names. `room` is what
 * max_in_flight (and the byte bound) still leave for `keys` keys; `count`
 * is source.count (0: not set), and without it a read asks for at most
 * `read_chunk` per key (about a batch, so that reading and processing
 * overlap).
 *
 * The room is shared among the keys, but never thinner than
 * RSG_READ_MIN_PER_KEY a key (or the cap, if lower): every key a read names
 * costs Redis a lookup of the key, its group and consumer, and a reply
 * header, whether it brings one message or a hundred. With 1000 streams and
 * 4096 of room, a read of every stream asks for 4 a stream, and Redis spends
 * a key visit per message or two (and an XACK each). Below the floor, a read
 * names a window of room / floor keys instead, taken in turn
 * (rsgReadKeys); the room still bounds what one read can bring. */
#define RSG_READ_MIN_PER_KEY 64

/* COUNT of the next read over `keys` keys: 0 when there is no room. */
long rsgReadCount(long room, int keys, long count, long read_chunk);

/* How many of the `keys` keys that read names: `keys` when the room
 * shared among all of them is at least the floor, else a window. */
int rsgReadKeys(long room, int keys, long count, long read_chunk);

/* The room shared evenly among `keys` keys that are all read at once (one
 * read per slot group on a cluster, lists), capped as above: 0 when it is
 * less than one a key. */
long rsgReadShare(long room, int keys, long count, long read_chunk);

/* COUNT of an idle wait: when windows in turn found nothing, one blocking
 * read names every key, so that a message on any of them wakes it: the
 * even share, and at least 1 (so a wait may bring up to one message a key
 * more than the room; never more than rsgReadCount a key). */
long rsgWaitCount(long room, int keys, long count, long read_chunk);

/* Why a message's field string number k (0-based over name, value, name,
 * value...) is refused: "the value of field 'NAME' is WHY" (odd k, name its
 * field's name) or "field name #N is WHY"; why is rsgDecode's or
 * rsgUtf8Why's reason. With source.dead_letter this is the error the dead
 * letter records. Writes at most len bytes, NUL-terminated; returns buf. */
char *rsgBadFieldWhat(char *buf, size_t len, size_t k, const char *name, size_t nlen,
                      const char *why);

/* The error line of a message whose field string k is not valid in the
 * source's encoding: it names the message, what becomes of it (dead: the
 * dead-letter stream it goes to; else pending: "left pending"; else
 * "skipped (plain streams keep no pending list)"), then rsgBadFieldWhat.
 * Writes at most len bytes, NUL-terminated; returns buf. */
char *rsgBadFieldLine(char *buf, size_t len, const char *stream, size_t slen, const char *id,
                      size_t idlen, size_t k, const char *name, size_t nlen, const char *why,
                      int pending, const char *dead);

/* The error line of a list item whose bytes are not valid in the source's
 * encoding: dead-lettered to `dead` (source.dead_letter), or kept in the
 * processing list `proc` (reliable lists), or, when both are NULL, dropped
 * (a plain list had popped it), its first 512 bytes shown. With dead, the
 * dead letter records "the item is WHY". Writes at most len bytes,
 * NUL-terminated; returns buf. */
char *rsgBadItemLine(char *buf, size_t len, const char *list, const char *proc, const char *item,
                     size_t ilen, const char *why, const char *dead);

/* What the dead letter of such an item records: "the item is WHY". */
char *rsgBadItemWhat(char *buf, size_t len, const char *why);

#endif
