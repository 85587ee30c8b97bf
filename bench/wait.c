/* Waits until a consumer group has drained a stream: every message delivered
 * (the group's last-delivered-id is the stream's last id) and acknowledged
 * (nothing pending). The benchmark runs rsghost, which never exits on its own,
 * and uses this to stop the clock.
 *
 * The stream must not grow while waiting: its last id is read once. Polls
 * XINFO GROUPS every --interval-ms (default 1) milliseconds: one cheap command,
 * so the poll barely loads the server being measured.
 *
 * Prints one line on stdout when drained:
 *   wait drained_ns=T polls=P
 * where T is CLOCK_REALTIME in nanoseconds (compare with `date +%s%N`).
 * Exit 0 drained; 1 error; 2 --timeout passed; 3 the --pid process ended. */
#include "common.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

static const char *prog = "wait";

/* Returns 1 while process pid exists and is not a zombie, else 0. */
static int alive(pid_t pid) {
    if (kill(pid, 0) != 0) return 0;
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 1; /* no /proc: trust kill() */
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *paren = strrchr(buf, ')');
    return !(paren && paren[1] == ' ' && paren[2] == 'Z');
}

/* Looks up field name in a flat [name, value, ...] reply. Returns the value
 * or NULL. */
static redisReply *field(redisReply *map, const char *name) {
    if (map->type != REDIS_REPLY_ARRAY) return NULL;
    for (size_t i = 0; i + 1 < map->elements; i += 2) {
        redisReply *k = map->element[i];
        if (k->type == REDIS_REPLY_STRING && strcmp(k->str, name) == 0) return map->element[i + 1];
    }
    return NULL;
}

/* Reads the stream's last-generated-id into id. Returns 1, or 0 when the
 * stream does not exist yet. Exits on other errors. */
static int last_id(redisContext *c, const char *stream, char *id, size_t idlen) {
    redisReply *r = redisCommand(c, "XINFO STREAM %s", stream);
    if (!r) bench_die(prog, "XINFO STREAM: %s", c->errstr);
    int found = 0;
    if (r->type == REDIS_REPLY_ARRAY) {
        redisReply *v = field(r, "last-generated-id");
        if (!v || v->type != REDIS_REPLY_STRING) bench_die(prog, "XINFO STREAM: no last id");
        snprintf(id, idlen, "%s", v->str);
        found = 1;
    } else if (r->type == REDIS_REPLY_ERROR && !strstr(r->str, "no such key")) {
        bench_die(prog, "XINFO STREAM: %s", r->str);
    }
    freeReplyObject(r);
    return found;
}

/* Returns 1 when group has delivered everything up to id and has nothing
 * pending; 0 otherwise, also while the group or the stream does not exist. */
static int drained(redisContext *c, const char *stream, const char *group, const char *id) {
    redisReply *r = redisCommand(c, "XINFO GROUPS %s", stream);
    if (!r) bench_die(prog, "XINFO GROUPS: %s", c->errstr);
    int done = 0;
    if (r->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < r->elements; i++) {
            redisReply *name = field(r->element[i], "name");
            if (!name || name->type != REDIS_REPLY_STRING || strcmp(name->str, group) != 0)
                continue;
            redisReply *pending = field(r->element[i], "pending");
            redisReply *delivered = field(r->element[i], "last-delivered-id");
            done = pending && pending->type == REDIS_REPLY_INTEGER && pending->integer == 0 &&
                   delivered && delivered->type == REDIS_REPLY_STRING &&
                   strcmp(delivered->str, id) == 0;
        }
    }
    freeReplyObject(r);
    return done;
}

static void usage(FILE *out) {
    fprintf(out,
            "usage: wait [options]\n"
            "  --url URL          redis://[:password@]host[:port][/db] or unix:///path[?db=N]\n"
            "  --host HOST        server host (default 127.0.0.1)\n"
            "  --port PORT        server port (default 6379)\n"
            "  --stream NAME      stream (default bench)\n"
            "  --group NAME       consumer group (default bench)\n"
            "  --pid PID          give up (exit 3) when this process ends\n"
            "  --interval-ms N    poll interval (default 1)\n"
            "  --timeout S        give up (exit 2) after S seconds (default 600)\n");
}

int main(int argc, char **argv) {
    static const struct option opts[] = {
        {"url", required_argument, NULL, 'u'},
        {"host", required_argument, NULL, 'h'},
        {"port", required_argument, NULL, 'p'},
        {"stream", required_argument, NULL, 's'},
        {"group", required_argument, NULL, 'g'},
        {"pid", required_argument, NULL, 'P'},
        {"interval-ms", required_argument, NULL, 'i'},
        {"timeout", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'H'},
        {NULL, 0, NULL, 0},
    };
    bench_addr addr;
    char err[512];
    const char *stream = "bench", *group = "bench";
    pid_t pid = 0;
    long interval_ms = 1;
    double timeout = 600;
    bench_addr_init(&addr);

    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
            case 'u':
            case 'h':
            case 'p':
                bench_addr_option(&addr, ch, optarg, prog);
                break;
            case 's':
                stream = optarg;
                break;
            case 'g':
                group = optarg;
                break;
            case 'P':
                pid = (pid_t)atol(optarg);
                break;
            case 'i':
                interval_ms = atol(optarg);
                break;
            case 't':
                timeout = atof(optarg);
                break;
            case 'H':
                usage(stdout);
                return 0;
            default:
                usage(stderr);
                return 2;
        }
    }
    if (optind != argc || interval_ms < 0) {
        usage(stderr);
        return 2;
    }

    redisContext *c = bench_connect(&addr, err, sizeof(err));
    if (!c) bench_die(prog, "%s", err);

    struct timespec nap = {interval_ms / 1000, (interval_ms % 1000) * 1000000L};
    double deadline = bench_now() + timeout;
    char id[64];
    long polls = 0;
    int have_id = 0;
    for (;;) {
        polls++;
        if (!have_id) have_id = last_id(c, stream, id, sizeof(id));
        if (have_id && drained(c, stream, group, id)) break;
        if (pid > 0 && !alive(pid)) {
            fprintf(stderr, "%s: process %ld ended before the group drained\n", prog, (long)pid);
            redisFree(c);
            return 3;
        }
        if (bench_now() > deadline) {
            fprintf(stderr, "%s: not drained after %.0f s\n", prog, timeout);
            redisFree(c);
            return 2;
        }
        nanosleep(&nap, NULL);
    }
    printf("wait drained_ns=%lld polls=%ld\n", bench_epoch_ns(), polls);
    redisFree(c);
    return 0;
}
