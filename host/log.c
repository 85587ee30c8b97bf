/* log.c - see log.h. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static rsgLogLevel minLevel = RSG_LOG_INFO;
static rsgLogFormat format = RSG_LOG_TEXT;
static const char *procName = "rsghost";
static const char *ctxConsumer, *ctxGroup;
static const char *levelNames[] = {"debug", "info", "warn", "error"};
static const char *formatNames[] = {"text", "logfmt", "json"};

void rsgLogSetLevel(rsgLogLevel level) {
    minLevel = level;
}

int rsgLogEnabled(rsgLogLevel level) {
    return level >= minLevel;
}

void rsgLogSetName(const char *name) {
    procName = name;
}

void rsgLogSetContext(const char *consumer, const char *group) {
    ctxConsumer = consumer;
    ctxGroup = group;
}

void rsgLogSetFormat(rsgLogFormat f) {
    format = f;
}

int rsgLogParseLevel(const char *name, rsgLogLevel *out) {
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, levelNames[i]) == 0) {
            *out = (rsgLogLevel)i;
            return 0;
        }
    }
    if (strcmp(name, "warning") == 0) {
        *out = RSG_LOG_WARN;
        return 0;
    }
    return -1;
}

int rsgLogParseFormat(const char *name, rsgLogFormat *out) {
    for (int i = 0; i < 3; i++) {
        if (strcmp(name, formatNames[i]) == 0) {
            *out = (rsgLogFormat)i;
            return 0;
        }
    }
    return -1;
}

/* Field values longer than this are cut (at a UTF-8 boundary): an event's
 * error may be a whole traceback, and the message already carries it. */
#define FIELD_MAX 512

/* A record being built: a fixed buffer, filled up to cap. TAIL bytes stay
 * free for what closes a record ("\"}\n" at most), so a cut record still
 * ends well-formed. The buffer holds the longest record there can be (a
 * 4 KB message and ten FIELD_MAX values, each byte escaped to six), so
 * records are not cut in practice; the bound is a backstop. */
#define TAIL 4
typedef struct recBuf {
    char b[65536];
    size_t n;
    int full; /* something did not fit: later pieces are dropped */
} recBuf;

static void putRaw(recBuf *r, const char *s, size_t len) {
    if (r->full) return;
    if (len > sizeof(r->b) - TAIL - r->n) {
        r->full = 1;
        return;
    }
    memcpy(r->b + r->n, s, len);
    r->n += len;
}

static void putStr(recBuf *r, const char *s) {
    putRaw(r, s, strlen(s));
}

/* Whether logfmt must quote v: empty, or holding a space, '=', '"' or a
 * control byte. */
static int needsQuotes(const char *v, size_t len) {
    if (len == 0) return 1;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)v[i];
        if (ch <= ' ' || ch == '=' || ch == '"' || ch == 0x7f) return 1;
    }
    return 0;
}

/* Writes v quoted and escaped, as a JSON string (which a logfmt parser
 * also reads): '"', '\' and control bytes escaped, other bytes as they are.
 * Escapes are written whole: a cut never leaves half of one. */
static void putQuoted(recBuf *r, const char *v, size_t len) {
    putRaw(r, "\"", 1);
    for (size_t i = 0; i < len && !r->full; i++) {
        unsigned char ch = (unsigned char)v[i];
        char esc[8];
        if (ch == '"' || ch == '\\') {
            esc[0] = '\\';
            esc[1] = (char)ch;
            putRaw(r, esc, 2);
        } else if (ch == '\n') {
            putRaw(r, "\\n", 2);
        } else if (ch == '\t') {
            putRaw(r, "\\t", 2);
        } else if (ch < 0x20 || ch == 0x7f) {
            snprintf(esc, sizeof(esc), "\\u%04x", ch);
            putRaw(r, esc, 6);
        } else {
            putRaw(r, (const char *)&ch, 1);
        }
    }
    /* The closing quote goes in even when the value was cut (TAIL). */
    r->b[r->n++] = '"';
}

/* One key and its value in the record's format (not text). */
/* len, cut to at most max bytes without splitting a UTF-8 sequence. */
static size_t utf8Cut(const char *v, size_t len, size_t max) {
    if (len <= max) return len;
    while (max > 0 && ((unsigned char)v[max] & 0xC0) == 0x80)
        max--;
    return max;
}

/* len, less a UTF-8 sequence that a cut at len left incomplete. */
static size_t utf8Whole(const char *v, size_t len) {
    size_t k = len;
    while (k > 0 && ((unsigned char)v[k - 1] & 0xC0) == 0x80)
        k--;
    if (k == 0 || (unsigned char)v[k - 1] < 0xC0) return len;
    unsigned char lead = (unsigned char)v[k - 1];
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
    return len - (k - 1) < need ? k - 1 : len;
}

static void putField(recBuf *r, int first, const char *key, const char *v, size_t len) {
    /* The key goes in only with room for its value's quotes: a cut drops
     * whole fields, so the record stays parseable. */
    if (r->full || strlen(key) + 8 > sizeof(r->b) - TAIL - r->n) {
        r->full = 1;
        return;
    }
    if (format == RSG_LOG_JSON) {
        putStr(r, first ? "{\"" : ",\"");
        putStr(r, key);
        putStr(r, "\":");
        if (!r->full) putQuoted(r, v, len);
        return;
    }
    if (!first) putRaw(r, " ", 1);
    putStr(r, key);
    putRaw(r, "=", 1);
    if (needsQuotes(v, len)) {
        if (!r->full) putQuoted(r, v, len);
    } else {
        putRaw(r, v, len);
    }
}

static void putCString(recBuf *r, const char *key, const char *v) {
    if (v) putField(r, 0, key, v, utf8Cut(v, strlen(v), FIELD_MAX));
}

static void writeRecord(rsgLogLevel level, const rsgLogField *fields, int nfields, const char *fmt,
                        va_list ap) {
    static recBuf r; /* one process, one thread: no record is built twice at once */
    struct timeval tv;
    struct tm tm;
    char ts[40], msg[4096], pid[16];
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t tn = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + tn, sizeof(ts) - tn, ".%03dZ", (int)(tv.tv_usec / 1000));
    int m = vsnprintf(msg, sizeof(msg), fmt, ap);
    /* A message longer than msg is cut there. */
    size_t mlen = m < 0 ? 0 : (size_t)m < sizeof(msg) ? (size_t)m : sizeof(msg) - 1;
    r.n = 0;
    r.full = 0;
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    if (format == RSG_LOG_TEXT) {
        putStr(&r, ts);
        putRaw(&r, " ", 1);
        putStr(&r, procName);
        putRaw(&r, "[", 1);
        putStr(&r, pid);
        putRaw(&r, "] ", 2);
        putStr(&r, levelNames[level]);
        putRaw(&r, ": ", 2);
        /* The text line is the message as it was formatted, bytes and all
         * (specs and people grep it). */
        r.full = 0;
        putRaw(&r, msg, mlen < sizeof(r.b) - TAIL - r.n ? mlen : sizeof(r.b) - TAIL - r.n);
    } else {
        putField(&r, 1, "time", ts, strlen(ts));
        putCString(&r, "level", levelNames[level]);
        putField(&r, 0, "msg", msg, m >= (int)sizeof(msg) ? utf8Whole(msg, mlen) : mlen);
        putCString(&r, "proc", procName);
        if (format == RSG_LOG_JSON) { /* a number, unquoted */
            putStr(&r, ",\"pid\":");
            putStr(&r, pid);
        } else {
            putCString(&r, "pid", pid);
        }
        putCString(&r, "consumer", ctxConsumer);
        putCString(&r, "group", ctxGroup);
        for (int i = 0; i < nfields; i++)
            if (fields[i].val)
                putField(&r, 0, fields[i].key, fields[i].val,
                         utf8Cut(fields[i].val, fields[i].len, FIELD_MAX));
        if (format == RSG_LOG_JSON) r.b[r.n++] = '}';
    }
    r.b[r.n++] = '\n';
    ssize_t w = write(STDERR_FILENO, r.b, r.n);
    (void)w;
}

void rsgLog(rsgLogLevel level, const char *fmt, ...) {
    if (level < minLevel) return;
    va_list ap;
    va_start(ap, fmt);
    writeRecord(level, NULL, 0, fmt, ap);
    va_end(ap);
}

void rsgLogFields(rsgLogLevel level, const rsgLogField *fields, int n, const char *fmt, ...) {
    if (level < minLevel) return;
    va_list ap;
    va_start(ap, fmt);
    writeRecord(level, fields, n, fmt, ap);
    va_end(ap);
}
