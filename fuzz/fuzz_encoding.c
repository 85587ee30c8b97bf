/* fuzz_encoding.c - UTF-8 validation and conversion (host/encoding.c) and
 * the error lines built from bad bytes (host/rules.c), on any bytes.
 *
 * Input: byte 0 picks the source encoding, byte 1 how many strings the
 * rest is cut into (one read's field strings, converted into one arena).
 * Invariants: rsgUtf8Check agrees with a plain reference validator
 * (Unicode's table of well-formed sequences); a UTF-8 decode is the input
 * itself, any other succeeds exactly when plain iconv with unbounded room
 * succeeds, with the same bytes, which are valid UTF-8; ISO-8859-1 always
 * converts, to the length it must; converted strings never move while
 * later ones are converted (the arena's promise); a reset arena converts
 * the same again; error lines always fit their buffer. */
#include <string.h>

#include "encoding.h"
#include "fuzz.h"
#include "rules.h"

/* Encodings users set in source.encoding, and a few that stress the 4x
 * output bound: stateful (ISO-2022-JP, UTF-7) or one byte to several code
 * points (TSCII). */
static const char *const encodings[] = {
    "utf-8",   "latin-1",    "cp1252",      "utf-16", "utf-16le", "utf_32", "shift_jis", "euc-jp",
    "gb18030", "big5-hkscs", "iso-2022-jp", "utf-7",  "koi8-r",   "TSCII",  "ascii",
};
#define NENC (sizeof(encodings) / sizeof(encodings[0]))

/* The reference: 1 if s[0..len) is well-formed UTF-8 (Unicode 15, table
 * 3-7), written for clarity, not speed. */
static int refValid(const unsigned char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t n;
        unsigned lo = 0x80, hi = 0xBF; /* range of the second byte */
        if (c <= 0x7F) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            n = 2;
        } else if (c == 0xE0) {
            n = 3, lo = 0xA0;
        } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
            n = 3;
        } else if (c == 0xED) {
            n = 3, hi = 0x9F;
        } else if (c == 0xF0) {
            n = 4, lo = 0x90;
        } else if (c >= 0xF1 && c <= 0xF3) {
            n = 4;
        } else if (c == 0xF4) {
            n = 4, hi = 0x8F;
        } else {
            return 0;
        }
        if (i + n > len) return 0;
        if (s[i + 1] < lo || s[i + 1] > hi) return 0;
        for (size_t k = 2; k < n; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF) return 0;
        i += n;
    }
    return 1;
}

static rsgDecoder decoders[NENC];
static int ready[NENC];
static char referenceName[NENC][64]; /* iconv's name of encodings[e] */

/* The reference conversion of in[0..len) from encodings[e]: 1 and the
 * UTF-8 in *out (malloc'ed, *outlen bytes) when iconv converts it with an
 * output buffer far larger than any conversion needs, else 0. */
static int refConvert(size_t e, const char *in, size_t len, char **out, size_t *outlen) {
    size_t cap = len * 16 + 16;
    char *buf = malloc(cap), *src = (char *)in, *dst = buf;
    size_t srcleft = len, dstleft = cap;
    FUZZ_CHECK(buf != NULL);
    /* A fresh converter: nothing one string set (a BOM's byte order)
     * carries over to the next. */
    iconv_t cd = iconv_open("UTF-8", referenceName[e]);
    FUZZ_CHECK(cd != (iconv_t)-1);
    int ok = iconv(cd, &src, &srcleft, &dst, &dstleft) != (size_t)-1 &&
             iconv(cd, NULL, NULL, &dst, &dstleft) != (size_t)-1;
    iconv_close(cd);
    if (!ok) {
        free(buf);
        return 0;
    }
    *out = buf;
    *outlen = cap - dstleft;
    return 1;
}

/* The decoder for encodings[e], made once: iconv_open is slow. NULL when
 * this system's iconv lacks it. */
static rsgDecoder *decoder(size_t e) {
    if (!ready[e]) {
        char err[128];
        ready[e] = rsgDecoderInit(&decoders[e], encodings[e], err, sizeof(err)) == 0 ? 1 : -1;
        if (ready[e] == 1 && !decoders[e].utf8) {
            /* The same converter rsgDecoderInit opened (it is iconv's name
             * for the encoding that worked there). */
            snprintf(referenceName[e], sizeof(referenceName[e]), "%s", encodings[e]);
            iconv_t cd = iconv_open("UTF-8", referenceName[e]);
            if (cd == (iconv_t)-1) {
                size_t n = 0;
                for (const char *c = encodings[e]; *c && n + 1 < sizeof(referenceName[e]); c++)
                    if (*c != '-' && *c != '_') referenceName[e][n++] = *c;
                referenceName[e][n] = '\0';
                cd = iconv_open("UTF-8", referenceName[e]);
            }
            FUZZ_CHECK(cd != (iconv_t)-1);
            iconv_close(cd);
        }
    }
    return ready[e] == 1 ? &decoders[e] : NULL;
}

#define MAX_PIECES 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    size_t e = data[0] % NENC;
    size_t pieces = 1 + data[1] % MAX_PIECES;
    const char *in = (const char *)data + 2;
    size_t len = size - 2;

    /* Validation alone, over the whole input. */
    size_t off = rsgUtf8Check(in, len);
    FUZZ_CHECK(off <= len);
    FUZZ_CHECK((off == len) == refValid((const unsigned char *)in, len));
    FUZZ_CHECK(refValid((const unsigned char *)in, off));
    char why[160];
    FUZZ_CHECK((rsgUtf8Why(in, len, why, sizeof(why)) == 0) == (off == len));

    rsgDecoder *d = decoder(e);
    if (!d) return 0;
    rsgDecoderReset(d);
    const char *out[MAX_PIECES];
    size_t outlen[MAX_PIECES];
    char *copy[MAX_PIECES] = {0};
    size_t at = 0;
    for (size_t k = 0; k < pieces; k++) {
        size_t plen = k + 1 == pieces ? len - at : (len - at) / (pieces - k);
        const char *p = in + at;
        at += plen;
        char err[160];
        memset(err, 'x', sizeof(err));
        int rc = rsgDecode(d, p, plen, &out[k], &outlen[k], err, sizeof(err));
        /* Converted exactly when iconv converts it given all the room in
         * the world, to the same bytes. */
        if (e != 0) {
            char *want;
            size_t wantlen;
            int ok = refConvert(e, p, plen, &want, &wantlen);
            FUZZ_CHECK((rc == 0) == ok);
            if (ok) {
                FUZZ_CHECK(rc != 0 || (outlen[k] == wantlen && memcmp(out[k], want, wantlen) == 0));
                free(want);
            }
        }
        if (rc != 0) {
            FUZZ_CHECK(rc == -1);
            FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL);
            out[k] = NULL;
            /* The error lines that name it always fit, dead-lettered or not. */
            char line[1024], small[16];
            const char *dead = k & 2 ? "dead" : NULL;
            rsgBadFieldLine(line, sizeof(line), p, plen, p, plen, k, p, plen, err, (int)(k & 1),
                            dead);
            FUZZ_CHECK(strlen(line) < sizeof(line));
            rsgBadFieldLine(small, sizeof(small), p, plen, p, plen, k, p, plen, err, 0, dead);
            FUZZ_CHECK(strlen(small) < sizeof(small));
            rsgBadFieldWhat(line, sizeof(line), k, p, plen, err);
            FUZZ_CHECK(strlen(line) < sizeof(line));
            rsgBadFieldWhat(small, sizeof(small), k, p, plen, err);
            FUZZ_CHECK(strlen(small) < sizeof(small));
            rsgBadItemLine(line, sizeof(line), "list", k & 1 ? "proc" : NULL, p, plen, err, dead);
            FUZZ_CHECK(strlen(line) < sizeof(line));
            rsgBadItemLine(small, sizeof(small), "list", NULL, p, plen, err, dead);
            FUZZ_CHECK(strlen(small) < sizeof(small));
            rsgBadItemWhat(small, sizeof(small), err);
            FUZZ_CHECK(strlen(small) < sizeof(small));
            if (e == 0) FUZZ_CHECK(!refValid((const unsigned char *)p, plen));
            /* ISO-8859-1 maps every byte. */
            FUZZ_CHECK(e != 1);
            continue;
        }
        FUZZ_CHECK(refValid((const unsigned char *)out[k], outlen[k]));
        if (e == 0) FUZZ_CHECK(out[k] == p && outlen[k] == plen);
        if (e == 1) {
            size_t high = 0;
            for (size_t i = 0; i < plen; i++)
                high += (unsigned char)p[i] >= 0x80;
            FUZZ_CHECK(outlen[k] == plen + high);
        }
        copy[k] = malloc(outlen[k] ? outlen[k] : 1);
        FUZZ_CHECK(copy[k] != NULL);
        memcpy(copy[k], out[k], outlen[k]);
    }
    /* Earlier strings are intact after later conversions. */
    for (size_t k = 0; k < pieces; k++) {
        if (!out[k]) continue;
        FUZZ_CHECK(memcmp(copy[k], out[k], outlen[k]) == 0);
    }
    /* After a reset the first string converts to the same bytes. */
    rsgDecoderReset(d);
    size_t first = pieces == 1 ? len : len / pieces;
    const char *again;
    size_t againlen;
    char err[160];
    int rc = rsgDecode(d, in, first, &again, &againlen, err, sizeof(err));
    FUZZ_CHECK((rc == 0) == (out[0] != NULL));
    if (rc == 0) FUZZ_CHECK(againlen == outlen[0] && memcmp(again, copy[0], againlen) == 0);
    for (size_t k = 0; k < pieces; k++)
        free(copy[k]);
    return 0;
}
