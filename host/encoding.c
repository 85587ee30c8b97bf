/* encoding.c - see encoding.h. */
#include "encoding.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rsgArenaChunk {
    rsgArenaChunk *next;
    size_t used, cap;
    char data[];
};

#define ARENA_CHUNK (64 * 1024)

size_t rsgUtf8Check(const char *str, size_t len) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        /* Fast path: eight ASCII bytes at a time, the common case. */
        if (i + 8 <= len) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if ((w & 0x8080808080808080ULL) == 0) {
                i += 8;
                continue;
            }
        }
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        unsigned min;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) {
            n = 1, cp = c & 0x1F, min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2, cp = c & 0x0F, min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return i; /* continuation byte, 0xC0/0xC1 or 0xF5.. as a lead */
        }
        for (size_t k = 1; k <= n; k++) {
            if (i + k >= len || (s[i + k] & 0xC0) != 0x80) return i; /* truncated/bad */
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += n + 1;
    }
    return len;
}

int rsgUtf8Why(const char *s, size_t len, char *why, size_t whylen) {
    size_t bad = rsgUtf8Check(s, len);
    if (bad == len) return 0;
    snprintf(why, whylen, "not valid utf-8 (byte 0x%02x at offset %zu)", (unsigned char)s[bad],
             bad);
    return -1;
}

/* Tries iconv_open as given, then with '-' and '_' removed ("latin-1" ->
 * "latin1"), since users bring Python's codec names. */
static iconv_t openConverter(const char *encoding) {
    iconv_t cd = iconv_open("UTF-8", encoding);
    if (cd != (iconv_t)-1) return cd;
    char alt[64];
    size_t j = 0;
    for (const char *p = encoding; *p && j < sizeof(alt) - 1; p++)
        if (*p != '-' && *p != '_') alt[j++] = *p;
    alt[j] = '\0';
    return iconv_open("UTF-8", alt);
}

static int isUtf8Name(const char *e) {
    char n[16];
    size_t j = 0;
    for (; *e && j < sizeof(n) - 1; e++)
        if (*e != '-' && *e != '_') n[j++] = (char)tolower((unsigned char)*e);
    n[j] = '\0';
    return *e == '\0' && strcmp(n, "utf8") == 0;
}

/* Whether a BOM decides the byte order of encoding (UTF-16, UTF-32, UCS-2,
 * UCS-4 without LE/BE): glibc's iconv then keeps the order one string's BOM
 * chose for the strings after it, even across a reset. */
static int bomDecidesOrder(const char *e) {
    char n[16];
    size_t j = 0;
    for (; *e && j < sizeof(n) - 1; e++)
        if (*e != '-' && *e != '_') n[j++] = (char)tolower((unsigned char)*e);
    n[j] = '\0';
    static const char *const names[] = {"utf16", "utf32", "ucs2", "ucs4", "unicode"};
    for (size_t i = 0; *e == '\0' && i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(n, names[i]) == 0) return 1;
    return 0;
}

int rsgDecoderInit(rsgDecoder *d, const char *encoding, char *err, size_t errlen) {
    memset(d, 0, sizeof(*d));
    d->cd = (iconv_t)-1;
    snprintf(d->name, sizeof(d->name), "%s", encoding);
    if (isUtf8Name(encoding)) {
        d->utf8 = 1;
        return 0;
    }
    d->cd = openConverter(encoding);
    if (d->cd == (iconv_t)-1) {
        snprintf(err, errlen, "unknown encoding '%s' (iconv does not know it)", encoding);
        return -1;
    }
    d->reopen = bomDecidesOrder(encoding);
    return 0;
}

void rsgDecoderFree(rsgDecoder *d) {
    if (d->cd != (iconv_t)-1) iconv_close(d->cd);
    d->cd = (iconv_t)-1;
    while (d->chunks) {
        rsgArenaChunk *next = d->chunks->next;
        free(d->chunks);
        d->chunks = next;
    }
}

void rsgDecoderReset(rsgDecoder *d) {
    if (!d->chunks) return;
    rsgArenaChunk *keep = d->chunks;
    while (keep->next) {
        rsgArenaChunk *next = keep->next;
        free(keep);
        keep = next;
    }
    /* The oldest chunk stays: it is the one of default size. */
    keep->used = 0;
    d->chunks = keep;
}

/* Returns room for at least `need` bytes at the arena's head chunk. */
static rsgArenaChunk *arenaRoom(rsgDecoder *d, size_t need) {
    if (d->chunks && d->chunks->cap - d->chunks->used >= need) return d->chunks;
    size_t cap = need > ARENA_CHUNK ? need : ARENA_CHUNK;
    rsgArenaChunk *c = malloc(sizeof(*c) + cap);
    if (!c) return NULL;
    c->used = 0;
    c->cap = cap;
    c->next = d->chunks;
    d->chunks = c;
    return c;
}

int rsgDecode(rsgDecoder *d, const char *in, size_t len, const char **out, size_t *outlen,
              char *err, size_t errlen) {
    if (d->utf8) {
        if (rsgUtf8Why(in, len, err, errlen) != 0) return -1;
        *out = in;
        *outlen = len;
        return 0;
    }
    /* 4 bytes of UTF-8 per input byte (plus a little) is room enough for
     * nearly every encoding, but not all: TSCII makes up to 12 bytes of one
     * (a Tamil syllable is several code points). Out of room (E2BIG), the
     * conversion starts over with twice the room; only an invalid or
     * incomplete sequence is the input's fault. */
    /* Found by fuzz/fuzz_encoding: one message's BOM must not decide how
     * the next message's bytes are read. */
    if (d->reopen) {
        iconv_t fresh = openConverter(d->name);
        if (fresh == (iconv_t)-1) {
            snprintf(err, errlen, "cannot open a converter from %s", d->name);
            return -1;
        }
        iconv_close(d->cd);
        d->cd = fresh;
    }
    size_t need = len * 4 + 4;
    rsgArenaChunk *c;
    char *src, *dst;
    size_t srcleft, dstleft;
    for (;;) {
        c = arenaRoom(d, need);
        if (!c) {
            snprintf(err, errlen, "out of memory converting from %s", d->name);
            return -1;
        }
        src = (char *)in, dst = c->data + c->used;
        srcleft = len, dstleft = need;
        iconv(d->cd, NULL, NULL, NULL, NULL);
        if (iconv(d->cd, &src, &srcleft, &dst, &dstleft) != (size_t)-1 &&
            iconv(d->cd, NULL, NULL, &dst, &dstleft) != (size_t)-1)
            break;
        if (errno != E2BIG || need > ((size_t)-1) / 4) {
            snprintf(err, errlen, "not valid %s (byte 0x%02x at offset %zu: %s)", d->name,
                     srcleft ? (unsigned char)*src : 0, (size_t)(src - in),
                     errno == EILSEQ ? "invalid sequence" : "incomplete sequence");
            return -1;
        }
        need *= 2;
    }
    *out = c->data + c->used;
    *outlen = need - dstleft;
    c->used += *outlen;
    return 0;
}
