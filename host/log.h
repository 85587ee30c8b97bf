/* log.h - one-line log records on stderr.
 *
 * Every record is one line, written with a single write(2) so lines from the
 * main process and the heart never interleave mid-line. Three formats
 * (--log-format):
 *   text    "TIMESTAMP rsghost[PID] LEVEL: message" (the default; the
 *           event's fields are already in the message)
 *   logfmt  time=... level=... msg="..." proc=... pid=... consumer=...
 *           group=... then the event's fields (stream=, id=, error=, ...)
 *   json    the same keys in one JSON object per line
 * so that a log shipper (Loki, Elasticsearch, journald's JSON output) can
 * index consumer, stream and id without parsing English. Field values are
 * cut at 512 bytes, messages at 4 KB, as text records are. */
#ifndef RSG_LOG_H
#define RSG_LOG_H

#include <stddef.h>

typedef enum { RSG_LOG_DEBUG = 0, RSG_LOG_INFO, RSG_LOG_WARN, RSG_LOG_ERROR } rsgLogLevel;

typedef enum { RSG_LOG_TEXT = 0, RSG_LOG_LOGFMT, RSG_LOG_JSON } rsgLogFormat;

/* One field of an event: key (a plain word) and a value of len bytes
 * (any bytes; escaped as the format needs). */
typedef struct rsgLogField {
    const char *key;
    const char *val;
    size_t len;
} rsgLogField;

/* Records below this level are dropped. Default: RSG_LOG_INFO. */
void rsgLogSetLevel(rsgLogLevel level);

/* Whether records of this level are written: callers skip building costly
 * messages that would be dropped. */
int rsgLogEnabled(rsgLogLevel level);

/* Parses "debug", "info", "warn" or "error". Returns 0 and sets *out, or -1
 * for an unknown name (nothing changed). */
int rsgLogParseLevel(const char *name, rsgLogLevel *out);

/* Parses "text", "logfmt" or "json". Returns 0 and sets *out, or -1 for an
 * unknown name (nothing changed). */
int rsgLogParseFormat(const char *name, rsgLogFormat *out);

/* The format of every later record. Default: RSG_LOG_TEXT. */
void rsgLogSetFormat(rsgLogFormat format);

/* Names used in the log for the process ("rsghost", "rsghost-heart"). */
void rsgLogSetName(const char *name);

/* The consumer and group every structured record carries (NULL: none).
 * The strings must outlive the logging. Text records do not show them. */
void rsgLogSetContext(const char *consumer, const char *group);

/* Writes one record at level (dropped below the set level), printf-style;
 * a message longer than a record is cut, and the line still ends (a JSON
 * record stays one valid object). */
void rsgLog(rsgLogLevel level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* rsgLog with the event's fields (n of them), which logfmt and json records
 * carry as keys of their own; text records show the message alone. */
void rsgLogFields(rsgLogLevel level, const rsgLogField *fields, int n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define rsgDebug(...) rsgLog(RSG_LOG_DEBUG, __VA_ARGS__)
#define rsgInfo(...)  rsgLog(RSG_LOG_INFO, __VA_ARGS__)
#define rsgWarn(...)  rsgLog(RSG_LOG_WARN, __VA_ARGS__)
#define rsgError(...) rsgLog(RSG_LOG_ERROR, __VA_ARGS__)

#endif
