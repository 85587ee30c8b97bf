#include "common.h"

#include "url.h"

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

/* Copies s into dst (of size dstlen). Returns 0, or -1 when it does not fit. */
static int copy_str(char *dst, size_t dstlen, const char *s) {
    if (!s) return 0;
    if (strlen(s) >= dstlen) return -1;
    strcpy(dst, s);
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
    /* The host's own parser (host/url.c), so a URL means the same here. */
    rsgRedisUrl u;
    if (rsgUrlParse(url, &u, err, errlen) != 0) return -1;
    int rc = -1;
    if (u.tls || u.nsentinels)
        snprintf(err, errlen, "the benchmark connects to one plain server: redis:// or unix://");
    else if (copy_str(addr->host, sizeof(addr->host), u.host) ||
             copy_str(addr->path, sizeof(addr->path), u.path) ||
             copy_str(addr->user, sizeof(addr->user), u.user) ||
             copy_str(addr->password, sizeof(addr->password), u.password))
        snprintf(err, errlen, "a part of the redis URL is too long");
    else
        rc = 0;
    addr->port = u.port;
    addr->db = u.db;
    rsgUrlFree(&u);
    return rc;
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
        const char *argv[] = {"AUTH", addr->user[0] ? addr->user : addr->password, addr->password};
        if (command_ok(c, addr->user[0] ? 3 : 2, argv, err, errlen) < 0) goto err;
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
