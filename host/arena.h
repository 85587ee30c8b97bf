/* arena.h - hiredis reply objects from an arena, for the reader connection.
 *
 * A read of a thousand stream entries is some eleven thousand reply objects
 * and strings. hiredis allocates each with calloc/malloc and frees them one
 * by one after the callback; the profile of the host showed the allocator
 * (including glibc consolidating the freed chunks) taking nearly half of the
 * host's instructions per message. Here objects are carved from chunks that
 * are reused: freeing the top-level reply resets the arena.
 *
 * This is safe because hiredis builds one reply at a time: the next reply's
 * objects are created only after the previous reply was freed. The objects
 * are ordinary redisReply structs, so callbacks need not know. */
#ifndef RSG_ARENA_H
#define RSG_ARENA_H

#include <hiredis/hiredis.h>
#include <stddef.h>

typedef struct rsgArenaBlock rsgArenaBlock;

typedef struct rsgReplyArena {
    rsgArenaBlock *blocks; /* in order; kept across resets, so bounded by the largest reply */
    rsgArenaBlock *cur;    /* the block being filled */
    rsgArenaBlock *big;    /* blocks of single oversized strings, freed at reset */
} rsgReplyArena;

/* The functions to put in redisReader.fn, with reader.privdata = the arena. */
extern redisReplyObjectFunctions rsgArenaReplyFunctions;

/* Releases every block. */
void rsgArenaFree(rsgReplyArena *a);

#endif
