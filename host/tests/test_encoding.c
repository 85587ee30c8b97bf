/* Unit tests of encoding.c: strict UTF-8 validation and iconv conversion. */
#include "encoding.h"
#include "test.h"

static int valid(const char *s, size_t n) {
    return rsgUtf8Check(s, n) == n;
}

static void utf8Validation(void) {
    CHECK(valid("", 0));
    CHECK(valid("plain ascii text, long enough for the fast path", 47));
    CHECK(valid("caf\xc3\xa9", 5));
    CHECK(valid("\xe2\x82\xac 100", 7));             /* euro sign */
    CHECK(valid("\xf0\x9f\x98\x80", 4));             /* emoji, 4 bytes */
    CHECK(rsgUtf8Check("ab\xff", 3) == 2);           /* invalid byte */
    CHECK(rsgUtf8Check("\xc0\xaf", 2) == 0);         /* overlong '/' */
    CHECK(rsgUtf8Check("\xe0\x80\xaf", 3) == 0);     /* overlong, 3 bytes */
    CHECK(rsgUtf8Check("\xed\xa0\x80", 3) == 0);     /* UTF-16 surrogate */
    CHECK(rsgUtf8Check("\xf4\x90\x80\x80", 4) == 0); /* past U+10FFFF */
    CHECK(rsgUtf8Check("abcdefgh\xc3", 9) == 8);     /* truncated at the end */
    CHECK(rsgUtf8Check("\xc3\x28", 2) == 0);         /* bad continuation */
}

static void utf8DecoderPassesThrough(void) {
    rsgDecoder d;
    char err[128];
    CHECK(rsgDecoderInit(&d, "UTF-8", err, sizeof(err)) == 0);
    CHECK(d.utf8);
    const char *out;
    size_t len;
    const char *in = "caf\xc3\xa9";
    CHECK(rsgDecode(&d, in, 5, &out, &len, err, sizeof(err)) == 0);
    CHECK(out == in && len == 5);
    CHECK(rsgDecode(&d, "x\xfey", 3, &out, &len, err, sizeof(err)) == -1);
    CHECK(strstr(err, "offset 1") != NULL);
    rsgDecoderFree(&d);
}

static void latin1Converts(void) {
    rsgDecoder d;
    char err[128];
    CHECK(rsgDecoderInit(&d, "latin-1", err, sizeof(err)) == 0); /* Python's name */
    const char *out;
    size_t len;
    CHECK(rsgDecode(&d, "caf\xe9", 4, &out, &len, err, sizeof(err)) == 0);
    CHECK(len == 5 && memcmp(out, "caf\xc3\xa9", 5) == 0);
    /* Many conversions survive arena growth and reset. */
    for (int i = 0; i < 100000; i++)
        CHECK(rsgDecode(&d, "\xe9\xe8", 2, &out, &len, err, sizeof(err)) == 0 && len == 4);
    rsgDecoderReset(&d);
    CHECK(rsgDecode(&d, "A", 1, &out, &len, err, sizeof(err)) == 0 && len == 1 && out[0] == 'A');
    rsgDecoderFree(&d);
}

static void invalidInEncodingIsReported(void) {
    rsgDecoder d;
    char err[128];
    CHECK(rsgDecoderInit(&d, "ascii", err, sizeof(err)) == 0);
    const char *out;
    size_t len;
    CHECK(rsgDecode(&d, "ok\x80", 3, &out, &len, err, sizeof(err)) == -1);
    CHECK(strstr(err, "offset 2") != NULL);
    rsgDecoderFree(&d);
    CHECK(rsgDecoderInit(&d, "no-such-encoding", err, sizeof(err)) == -1);
    CHECK(strstr(err, "no-such-encoding") != NULL);
}

/* Found by fuzz/fuzz_encoding: one TSCII byte is four code points, 12 bytes
 * of UTF-8, more than the 4x first tried; it was refused as "incomplete". */
static void conversionLargerThanFourTimes(void) {
    rsgDecoder d;
    char err[128];
    CHECK(rsgDecoderInit(&d, "TSCII", err, sizeof(err)) == 0);
    const char *out;
    size_t len;
    static const char want[] = "\xe0\xae\xb8\xe0\xaf\x8d\xe0\xae\xb0\xe0\xaf\x80";
    CHECK(rsgDecode(&d, "\x82", 1, &out, &len, err, sizeof(err)) == 0);
    CHECK(len == 12 && memcmp(out, want, 12) == 0);
    rsgDecoderFree(&d);
}

/* Found by fuzz/fuzz_encoding: with "utf-16", one string's BOM chose the
 * byte order of every string after it. Without a BOM, glibc reads UTF-16 in
 * the machine's order (little-endian on the machines Debian runs rsghost on). */
static void bomDoesNotCarryOver(void) {
    rsgDecoder d;
    char err[128];
    CHECK(rsgDecoderInit(&d, "utf-16", err, sizeof(err)) == 0);
    const char *out;
    size_t len;
    static const char be[] = {'\xfe', '\xff', '\x00', 'A'}, plain[] = {'B', '\x00'};
    CHECK(rsgDecode(&d, be, 4, &out, &len, err, sizeof(err)) == 0);
    CHECK(len == 1 && out[0] == 'A');
    CHECK(rsgDecode(&d, plain, 2, &out, &len, err, sizeof(err)) == 0);
    CHECK(len == 1 && out[0] == 'B');
    rsgDecoderFree(&d);
}

int main(void) {
    utf8Validation();
    utf8DecoderPassesThrough();
    latin1Converts();
    invalidInEncodingIsReported();
    conversionLargerThanFourTimes();
    bomDoesNotCarryOver();
    TEST_DONE();
}
