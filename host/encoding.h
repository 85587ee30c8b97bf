/* encoding.h - turning the bytes Redis holds into UTF-8 strings for Lua.
 *
 * For UTF-8 (the default) nothing is copied: the bytes are validated in place
 * and handed over as they are. Any other encoding iconv knows is converted
 * into an arena that lives until the next rsgDecoderReset. A message with
 * bytes that are not valid in the encoding is never altered: the caller gets
 * an error and leaves the message pending. */
#ifndef RSG_ENCODING_H
#define RSG_ENCODING_H

#include <iconv.h>
#include <stddef.h>

typedef struct rsgArenaChunk rsgArenaChunk;

typedef struct rsgDecoder {
    int utf8;              /* 1: validate only, no conversion */
    iconv_t cd;            /* converter from the source encoding, when !utf8 */
    int reopen;            /* cd is opened afresh for every string (see rsgDecode) */
    char name[64];         /* encoding name as the user gave it, for messages */
    rsgArenaChunk *chunks; /* converted strings; chunks never move */
} rsgDecoder;

/* Prepares a decoder for `encoding`. Python-style names ("latin-1", "utf_8")
 * are accepted as well as iconv's. Returns 0, or -1 with a reason in err. */
int rsgDecoderInit(rsgDecoder *d, const char *encoding, char *err, size_t errlen);

/* Frees the converter and the arena. */
void rsgDecoderFree(rsgDecoder *d);

/* Forgets every string handed out since the last reset (keeps one chunk). */
void rsgDecoderReset(rsgDecoder *d);

/* Converts in[0..len) to UTF-8. On success returns 0 and points *out and *outlen
 * at the result (the input itself for UTF-8). On invalid input returns -1
 * and describes the offending byte offset in err. */
int rsgDecode(rsgDecoder *d, const char *in, size_t len, const char **out, size_t *outlen,
              char *err, size_t errlen);

/* Returns the offset of the first byte that breaks strict UTF-8 (overlongs,
 * surrogates and code points past U+10FFFF are invalid), or len if s is valid. */
size_t rsgUtf8Check(const char *s, size_t len);

/* rsgUtf8Check, and the reason the host gives for invalid bytes: returns 0
 * when s is valid UTF-8, else -1 with "not valid utf-8 (byte 0xNN at
 * offset N)" in why. */
int rsgUtf8Why(const char *s, size_t len, char *why, size_t whylen);

#endif
