/* log.c - see log.h. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static rsgLogLevel minLevel = RSG_LOG_INFO;
static const char *procName = "rsghost";
static const char *levelNames[] = {"debug", "info", "warn", "error"};

void rsgLogSetLevel(rsgLogLevel level) {
    minLevel = level;
}

int rsgLogEnabled(rsgLogLevel level) {
    return level >= minLevel;
}

void rsgLogSetName(const char *name) {
    procName = name;
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

void rsgLog(rsgLogLevel level, const char *fmt, ...) {
    if (level < minLevel) return;
    char buf[4096];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, ".%03dZ %s[%d] %s: ", (int)(tv.tv_usec / 1000),
                          procName, (int)getpid(), levelNames[level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(buf + n, sizeof(buf) - n - 1, fmt, ap);
    va_end(ap);
    /* A truncated record still ends with a newline. */
    if (m < 0) m = 0;
    n += (size_t)m < sizeof(buf) - n - 1 ? (size_t)m : sizeof(buf) - n - 2;
    buf[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, buf, n);
    (void)w;
}
