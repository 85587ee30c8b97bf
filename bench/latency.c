/* The latency benchmark's C twin (scripts/bench): a consumer in plain C +
 * hiredis that reads a stream the loader fills at a steady rate (--rate,
 * each message stamped t=<epoch us> when sent), notes for every message the
 * time from its XADD to now, and acks each read, as rsghost does with
 * batch.timeout = 0 and a sink that notes the same. It stops after N
 * messages and writes one latency per line, in microseconds, to stdout.
 *
 *   latency --url URL --stream S --group G -n N */
#include "common.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *prog = "latency";

/* The value of field t of one entry's field list, or -1. */
static long long stamp_of(const redisReply *fields) {
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        const redisReply *k = fields->element[i];
        if (k->type == REDIS_REPLY_STRING && k->len == 1 && k->str[0] == 't')
            return atoll(fields->element[i + 1]->str);
    }
    return -1;
}

int main(int argc, char **argv) {
    static const struct option opts[] = {
        {"url", required_argument, NULL, 'u'},
        {"host", required_argument, NULL, 'h'},
        {"port", required_argument, NULL, 'p'},
        {"stream", required_argument, NULL, 's'},
        {"group", required_argument, NULL, 'g'},
        {"messages", required_argument, NULL, 'n'},
        {NULL, 0, NULL, 0},
    };
    bench_addr addr;
    bench_addr_init(&addr);
    const char *stream = "bench", *group = "bench";
    long n = 10000;
    int ch;
    while ((ch = getopt_long(argc, argv, "n:", opts, NULL)) != -1) {
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
            case 'n':
                n = atol(optarg);
                break;
            default:
                fprintf(stderr, "usage: latency --url URL --stream S --group G -n N\n");
                return 2;
        }
    }
    char err[512];
    redisContext *c = bench_connect(&addr, err, sizeof(err));
    if (!c) bench_die(prog, "%s", err);
    redisReply *r = redisCommand(c, "XGROUP CREATE %s %s 0 MKSTREAM", stream, group);
    if (!r) bench_die(prog, "XGROUP CREATE: %s", c->errstr);
    if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9) != 0)
        bench_die(prog, "XGROUP CREATE: %s", r->str);
    freeReplyObject(r);

    long long *lat = malloc(sizeof(long long) * (size_t)(n > 0 ? n : 1));
    if (!lat) bench_die(prog, "out of memory");
    long got = 0;
    const char **ack = malloc(sizeof(char *) * 1004);
    size_t *acklen = malloc(sizeof(size_t) * 1004);
    if (!ack || !acklen) bench_die(prog, "out of memory");
    while (got < n) {
        r = redisCommand(c, "XREADGROUP GROUP %s c COUNT 1000 BLOCK 1000 STREAMS %s >", group,
                         stream);
        if (!r || r->type == REDIS_REPLY_ERROR)
            bench_die(prog, "XREADGROUP: %s", r ? r->str : c->errstr);
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 1) {
            const redisReply *entries = r->element[0]->element[1];
            long long now = bench_epoch_ns() / 1000;
            int na = 0;
            ack[na] = "XACK", acklen[na++] = 4;
            ack[na] = stream, acklen[na++] = strlen(stream);
            ack[na] = group, acklen[na++] = strlen(group);
            for (size_t i = 0; i < entries->elements; i++) {
                const redisReply *e = entries->element[i];
                long long t = stamp_of(e->element[1]);
                if (t >= 0 && got < n) lat[got++] = now - t;
                ack[na] = e->element[0]->str, acklen[na++] = e->element[0]->len;
            }
            redisReply *a = redisCommandArgv(c, na, ack, acklen);
            if (!a || a->type == REDIS_REPLY_ERROR)
                bench_die(prog, "XACK: %s", a ? a->str : c->errstr);
            freeReplyObject(a);
        }
        freeReplyObject(r);
    }
    for (long i = 0; i < got; i++)
        printf("%lld\n", lat[i]);
    free(lat);
    free(ack);
    free(acklen);
    redisFree(c);
    return 0;
}
