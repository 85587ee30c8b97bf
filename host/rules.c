/* rules.c - see rules.h. */
#include "rules.h"

#include <stdio.h>

/* The shape of the next read: COUNT and keys named (see rules.h). */
static long readShape(long room, int keys, long count, long read_chunk, int *named) {
    *named = 0;
    long n = rsgReadShare(room, keys, count, read_chunk);
    long cap = count > 0 ? count : read_chunk;
    long floor = cap > 0 && cap < RSG_READ_MIN_PER_KEY ? cap : RSG_READ_MIN_PER_KEY;
    if (room <= 0 || keys <= 0) return 0;
    if (n >= floor) {
        *named = keys;
        return n;
    }
    /* Too thin: a window of keys, each with the floor (one key, at least,
     * with whatever room there is). */
    n = floor < room ? floor : room;
    long w = room / n;
    *named = w < keys ? (int)w : keys;
    return n;
}

long rsgReadCount(long room, int keys, long count, long read_chunk) {
    int named;
    return readShape(room, keys, count, read_chunk, &named);
}

int rsgReadKeys(long room, int keys, long count, long read_chunk) {
    int named;
    readShape(room, keys, count, read_chunk, &named);
    return named;
}

long rsgReadShare(long room, int keys, long count, long read_chunk) {
    if (room <= 0 || keys <= 0) return 0;
    long cap = count > 0 ? count : read_chunk;
    long n = room / keys;
    return cap > 0 && cap < n ? cap : n;
}

long rsgWaitCount(long room, int keys, long count, long read_chunk) {
    if (room <= 0 || keys <= 0) return 0;
    long n = rsgReadShare(room, keys, count, read_chunk);
    return n > 0 ? n : 1;
}

char *rsgBadFieldWhat(char *buf, size_t len, size_t k, const char *name, size_t nlen,
                      const char *why) {
    if (k % 2)
        snprintf(buf, len, "the value of field '%.*s' is %s", (int)nlen, name, why);
    else
        snprintf(buf, len, "field name #%zu is %s", k / 2 + 1, why);
    return buf;
}

char *rsgBadFieldLine(char *buf, size_t len, const char *stream, size_t slen, const char *id,
                      size_t idlen, size_t k, const char *name, size_t nlen, const char *why,
                      int pending, const char *dead) {
    char fate[320], what[512];
    if (dead)
        snprintf(fate, sizeof(fate), "dead-lettered to '%s'", dead);
    else
        snprintf(fate, sizeof(fate), "%s",
                 pending ? "left pending" : "skipped (plain streams keep no pending list)");
    snprintf(buf, len, "message %.*s %.*s %s: %s", (int)slen, stream, (int)idlen, id, fate,
             rsgBadFieldWhat(what, sizeof(what), k, name, nlen, why));
    return buf;
}

char *rsgBadItemLine(char *buf, size_t len, const char *list, const char *proc, const char *item,
                     size_t ilen, const char *why, const char *dead) {
    if (dead)
        snprintf(buf, len, "item of list '%s' dead-lettered to '%s': it is %s", list, dead, why);
    else if (proc)
        snprintf(buf, len, "item of list '%s' left in %s: it is %s", list, proc, why);
    else
        snprintf(buf, len, "item of list '%s' dropped: it is %s; its bytes: %.*s", list, why,
                 (int)(ilen > 512 ? 512 : ilen), item);
    return buf;
}

char *rsgBadItemWhat(char *buf, size_t len, const char *why) {
    snprintf(buf, len, "the item is %s", why);
    return buf;
}
