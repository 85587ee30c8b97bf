/* redrive.h - `rsghost dead-letters` and `rsghost redrive`: one-shot
 * commands on the dead-letter stream of a script's source (dead_letter.h
 * says what its entries hold).
 *
 * They talk to Redis with hiredis's blocking API on one connection of their
 * own (dial.h).
 *
 * Redrive moves each entry with one server-side script, so the move is
 * atomic per entry: the entry is read again inside the script, its original
 * fields (exactly the bytes Redis holds, order and repeated names kept) are
 * XADDed to its original stream with a new id, and the entry is XDELed. A
 * crash leaves each entry in exactly one place. */
#ifndef RSG_REDRIVE_H
#define RSG_REDRIVE_H

#include "config.h"
#include "types.h"
#include "url.h"

/* Runs opts->command (RSG_CMD_DEAD_LETTERS or RSG_CMD_REDRIVE) against the
 * Redis at url for src's dead-letter stream: results on stdout, errors on
 * stderr. Returns the exit status: 0 ok, 1 a Redis error or an entry that
 * could not be moved, 2 a usage error (no source.dead_letter). */
int rsgRedriveMain(const rsgOptions *opts, const rsgRedisUrl *url, const rsgSourceConfig *src);

#endif
