#include "common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void bench_addr_init(bench_addr *addr) {
    memset(addr, 0, sizeof(*addr));
    snprintf(addr->host, sizeof(addr->host), "127.0.0.1");
    addr->port = 6379;
}

/* Copies the n bytes at s into dst (of size dstlen) as a C string. Returns 0,
 * or -1 when they do not fit. */
static int copy_part(char *dst, size_t dstlen, const char *s, size_t n) {
    if (n >= dstlen) return -1;
    memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}

/* Parses a database number (the whole string). Returns 0, or -1. */
static int parse_db(const char *s, int *db) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 0 || v > 1000000) return -1;
    *db = (int)v;
    return 0;
}

void bench_addr_option(bench_addr *addr, int opt, const char *arg, const char *prog) {
    char err[512];
    if (opt == 'u' && bench_addr_parse_url(addr, arg, err, sizeof(err)) < 0)
        bench_die(prog, "%s", err);
    if (opt == 'h') snprintf(addr->host, sizeof(addr->host), "%s", arg);
    if (opt == 'p') addr->port = atoi(arg);
}

int bench_addr_parse_url(bench_addr *addr, const char *url, char *err, size_t errlen) {
    bench_addr_init(addr);
    if (strncmp(url, "unix://", 7) == 0) {
        const char *p = url + 7;
        const char *q = strchr(p, '?');
        size_t n = q ? (size_t)(q - p) : strlen(p);
        if (n == 0 || copy_part(addr->path, sizeof(addr->path), p, n) < 0) goto bad;
        if (q) {
            if (strncmp(q, "?db=", 4) != 0 || parse_db(q + 4, &addr->db) < 0) goto bad;
        }
        return 0;
    }
    if (strncmp(url, "redis://", 8) != 0) goto bad;
    const char *p = url + 8;
    const char *at = strchr(p, '@');
    if (at) {
        /* redis://[user]:password@host: only the password is used. */
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (!colon) goto bad;
        if (copy_part(addr->password, sizeof(addr->password), colon + 1, (size_t)(at - colon - 1)) <
            0)
            goto bad;
        p = at + 1;
    }
    const char *slash = strchr(p, '/');
    size_t hostport = slash ? (size_t)(slash - p) : strlen(p);
    const char *colon = memchr(p, ':', hostport);
    size_t hostlen = colon ? (size_t)(colon - p) : hostport;
    if (hostlen > 0 && copy_part(addr->host, sizeof(addr->host), p, hostlen) < 0) goto bad;
    if (colon) {
        char port[16];
        char *end;
        if (copy_part(port, sizeof(port), colon + 1, hostport - hostlen - 1) < 0) goto bad;
        long v = strtol(port, &end, 10);
        if (port[0] == '\0' || *end != '\0' || v < 1 || v > 65535) goto bad;
        addr->port = (int)v;
    }
    if (slash && slash[1] != '\0' && parse_db(slash + 1, &addr->db) < 0) goto bad;
    return 0;

bad:
    snprintf(err, errlen,
             "bad URL '%s' (want redis://[:password@]host[:port][/db] or unix:///path[?db=N])",
             url);
    return -1;
}

/* Runs one command given as argv and checks that the reply is not an error.
 * Returns 0, or -1 with a message in err. */
static int command_ok(redisContext *c, int argc, const char **argv, char *err, size_t errlen) {
    redisReply *r = redisCommandArgv(c, argc, argv, NULL);
    if (!r) {
        snprintf(err, errlen, "%s: %s", argv[0], c->errstr);
        return -1;
    }
    int ok = r->type != REDIS_REPLY_ERROR;
    if (!ok) snprintf(err, errlen, "%s: %s", argv[0], r->str);
    freeReplyObject(r);
    return ok ? 0 : -1;
}

redisContext *bench_connect(const bench_addr *addr, char *err, size_t errlen) {
    redisContext *c =
        addr->path[0] ? redisConnectUnix(addr->path) : redisConnect(addr->host, addr->port);
    if (!c) {
        snprintf(err, errlen, "cannot allocate a redis context");
        return NULL;
    }
    if (c->err) {
        if (addr->path[0])
            snprintf(err, errlen, "cannot connect to %s: %s", addr->path, c->errstr);
        else
            snprintf(err, errlen, "cannot connect to %s:%d: %s", addr->host, addr->port, c->errstr);
        goto err;
    }
    if (addr->password[0]) {
        const char *argv[] = {"AUTH", addr->password};
        if (command_ok(c, 2, argv, err, errlen) < 0) goto err;
    }
    if (addr->db != 0) {
        char db[16];
        snprintf(db, sizeof(db), "%d", addr->db);
        const char *argv[] = {"SELECT", db};
        if (command_ok(c, 2, argv, err, errlen) < 0) goto err;
    }
    return c;

err:
    redisFree(c);
    return NULL;
}

double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

long long bench_epoch_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void bench_buf_reserve(bench_buf *b, size_t more) {
    if (b->cap - b->len >= more) return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < more)
        cap *= 2;
    char *data = realloc(b->data, cap);
    if (!data) {
        fprintf(stderr, "out of memory (%zu bytes)\n", cap);
        exit(1);
    }
    b->data = data;
    b->cap = cap;
}

void bench_buf_append(bench_buf *b, const char *s, size_t len) {
    bench_buf_reserve(b, len);
    memcpy(b->data + b->len, s, len);
    b->len += len;
}

void bench_buf_free(bench_buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void bench_json_string(bench_buf *b, const char *s, size_t len) {
    static const char hex[] = "0123456789abcdef";
    /* Worst case: every byte becomes \u00XX (6 bytes), plus the quotes. */
    bench_buf_reserve(b, len * 6 + 2);
    char *out = b->data + b->len;
    *out++ = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\') {
            *out++ = (char)ch;
            continue;
        }
        *out++ = '\\';
        switch (ch) {
            case '"':
                *out++ = '"';
                break;
            case '\\':
                *out++ = '\\';
                break;
            case '\b':
                *out++ = 'b';
                break;
            case '\f':
                *out++ = 'f';
                break;
            case '\n':
                *out++ = 'n';
                break;
            case '\r':
                *out++ = 'r';
                break;
            case '\t':
                *out++ = 't';
                break;
            default:
                *out++ = 'u';
                *out++ = '0';
                *out++ = '0';
                *out++ = hex[ch >> 4];
                *out++ = hex[ch & 15];
        }
    }
    *out++ = '"';
    b->len = (size_t)(out - b->data);
}

void bench_die(const char *prog, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "%s: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}
