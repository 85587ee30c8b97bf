/* rules.c - see rules.h. */
#include "rules.h"

#include <stdio.h>

long rsgReadCount(long room, int keys, long count, long read_chunk) {
    if (room <= 0 || keys <= 0) return 0;
    long n = room / keys;
    long cap = count > 0 ? count : read_chunk;
    if (cap > 0 && cap < n) n = cap;
    return n;
}

char *rsgBadFieldLine(char *buf, size_t len, const char *stream, size_t slen, const char *id,
                      size_t idlen, size_t k, const char *name, size_t nlen, const char *why,
                      int pending) {
    const char *fate = pending ? "left pending" : "skipped (plain streams keep no pending list)";
    if (k % 2)
        snprintf(buf, len, "message %.*s %.*s %s: the value of field '%.*s' is %s", (int)slen,
                 stream, (int)idlen, id, fate, (int)nlen, name, why);
    else
        snprintf(buf, len, "message %.*s %.*s %s: field name #%zu is %s", (int)slen, stream,
                 (int)idlen, id, fate, k / 2 + 1, why);
    return buf;
}

char *rsgBadItemLine(char *buf, size_t len, const char *list, const char *proc, const char *item,
                     size_t ilen, const char *why) {
    if (proc)
        snprintf(buf, len, "item of list '%s' left in %s: it is %s", list, proc, why);
    else
        snprintf(buf, len, "item of list '%s' dropped: it is %s; its bytes: %.*s", list, why,
                 (int)(ilen > 512 ? 512 : ilen), item);
    return buf;
}
