/* Helpers shared by the benchmark's plain-C programs (limit, loader, wait):
 * where the server is, connecting to it, a monotonic clock and a growable
 * byte buffer. Prefix: bench_. */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <stddef.h>
#include <hiredis/hiredis.h>

/* Where the Redis server is, from --url or --host/--port. */
typedef struct bench_addr {
    char host[256];     /* TCP host; ignored when path is set */
    int port;           /* TCP port */
    char path[256];     /* unix socket path, "" for TCP */
    int db;             /* database number selected after connecting */
    char user[256];     /* ACL user, "" for none */
    char password[256]; /* AUTH password, "" for none */
} bench_addr;

/* Fills addr with the defaults: 127.0.0.1:6379, db 0, no password. */
void bench_addr_init(bench_addr *addr);

/* Parses a redis:// or unix:// URL into addr with the host's own parser
 * (host/url.c), so that it means here what it means to rsghost. Returns 0,
 * or -1 with a message in err (TLS and Sentinel URLs are refused). */
int bench_addr_parse_url(bench_addr *addr, const char *url, char *err, size_t errlen);

/* Connects, authenticates and selects the database. Returns a connected
 * context, or NULL with a message in err (nothing is left allocated). */
/* Applies one of the connection options every program takes: 'u' --url,
 * 'h' --host, 'p' --port. Exits with a message on a bad URL. */
void bench_addr_option(bench_addr *addr, int opt, const char *arg, const char *prog);

redisContext *bench_connect(const bench_addr *addr, char *err, size_t errlen);

/* Seconds on a monotonic clock, for elapsed times. */
double bench_now(void);

/* Nanoseconds since the epoch (CLOCK_REALTIME), comparable with the shell's
 * `date +%s%N`. */
long long bench_epoch_ns(void);

/* A growable byte buffer. Allocation failure aborts the program: the
 * benchmark has no way to carry on without memory. */
typedef struct bench_buf {
    char *data; /* bytes, not NUL-terminated */
    size_t len; /* bytes in use */
    size_t cap; /* bytes allocated */
} bench_buf;

/* Makes sure at least `more` bytes can be appended without reallocating. */
void bench_buf_reserve(bench_buf *b, size_t more);

/* Appends len bytes. */
void bench_buf_append(bench_buf *b, const char *s, size_t len);

/* Frees the buffer's bytes and leaves it empty and reusable. */
void bench_buf_free(bench_buf *b);

/* Appends s as a JSON string literal: quotes, and backslash escapes for the
 * quote, the backslash and every byte below 0x20. Other bytes are copied as
 * they are (the benchmark's data is UTF-8). */
void bench_json_string(bench_buf *b, const char *s, size_t len);

/* Prints "prog: message" on stderr and exits with status 1. */
void bench_die(const char *prog, const char *fmt, ...) __attribute__((format(printf, 2, 3)))
__attribute__((noreturn));

#endif
