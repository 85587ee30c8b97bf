/* log.h - one-line log records on stderr.
 *
 * Every record is "TIMESTAMP rsghost[PID] LEVEL: message", written with a
 * single write(2) so lines from the main process and the heart never
 * interleave mid-line. */
#ifndef RSG_LOG_H
#define RSG_LOG_H

typedef enum { RSG_LOG_DEBUG = 0, RSG_LOG_INFO, RSG_LOG_WARN, RSG_LOG_ERROR } rsgLogLevel;

/* Records below this level are dropped. Default: RSG_LOG_INFO. */
void rsgLogSetLevel(rsgLogLevel level);

/* Whether records of this level are written: callers skip building costly
 * messages that would be dropped. */
int rsgLogEnabled(rsgLogLevel level);

/* Parses "debug", "info", "warn" or "error". Returns 0 and sets *out, or -1
 * for an unknown name (nothing changed). */
int rsgLogParseLevel(const char *name, rsgLogLevel *out);

/* Names used in the log for the process ("rsghost", "rsghost-heart"). */
void rsgLogSetName(const char *name);

/* Writes one record at level (dropped below the set level), printf-style;
 * a message longer than a record is cut, and the line still ends. */
void rsgLog(rsgLogLevel level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define rsgDebug(...) rsgLog(RSG_LOG_DEBUG, __VA_ARGS__)
#define rsgInfo(...)  rsgLog(RSG_LOG_INFO, __VA_ARGS__)
#define rsgWarn(...)  rsgLog(RSG_LOG_WARN, __VA_ARGS__)
#define rsgError(...) rsgLog(RSG_LOG_ERROR, __VA_ARGS__)

#endif
