/* Loads N messages into a stream as fast as pipelining allows, for the
 * benchmark. Every message has three short fields:
 *   user=<n> event=click payload=<26 bytes>
 * XADDs go out --pipeline at a time (default 1000); the next chunk is written
 * before the previous chunk's replies are read, so Redis is never idle.
 *
 * With --rate R it is the latency benchmark's producer instead: a steady R
 * messages per second (what is due is sent every millisecond), each with a
 * fourth field t=<microseconds since the epoch when it was sent>.
 *
 * For the growth curves, --streams K spreads the messages round-robin over K
 * streams NAME:1 ... NAME:K, and --size B makes the payload B bytes.
 *
 * Prints one line on stdout:
 *   loader messages=N seconds=S rate=R last_id=ID
 * and exits 0; any error reply or lost connection exits 1. */
#include "common.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *prog = "loader";

/* The payload field: 26 bytes by default (--size), the same for every message. */
static const char *payload = "abcdefghijklmnopqrstuvwxyz";
static size_t payload_len = 26;

/* --streams K: message i goes to stream_names[i % K]. */
static char **stream_names;
static long nstreams = 1;

/* Reads n XADD replies; keeps the id of the last in last_id. Exits on error. */
static void read_replies(redisContext *c, long n, char *last_id, size_t last_len) {
    for (long i = 0; i < n; i++) {
        redisReply *r;
        if (redisGetReply(c, (void **)&r) != REDIS_OK) bench_die(prog, "read: %s", c->errstr);
        if (r->type == REDIS_REPLY_ERROR) bench_die(prog, "XADD: %s", r->str);
        if (r->type != REDIS_REPLY_STRING) bench_die(prog, "XADD: unexpected reply type");
        if (i == n - 1) snprintf(last_id, last_len, "%s", r->str);
        freeReplyObject(r);
    }
}

/* Appends n XADDs for messages first .. first+n-1 and writes them out;
 * with stamp, each carries t=<send time in epoch microseconds>. */
static void send_chunk(redisContext *c, const char *stream, long first, long n, int stamp) {
    char user[32], t[32];
    const char *argv[] = {"XADD",  stream,    "*",     "user", user, "event",
                          "click", "payload", payload, "t",    t};
    size_t argvlen[] = {4, strlen(stream), 1, 4, 0, 5, 5, 7, payload_len, 1, 0};
    for (long i = 0; i < n; i++) {
        if (nstreams > 1) {
            argv[1] = stream_names[(first + i) % nstreams];
            argvlen[1] = strlen(argv[1]);
        }
        argvlen[4] = (size_t)snprintf(user, sizeof(user), "%ld", first + i);
        if (stamp) argvlen[10] = (size_t)snprintf(t, sizeof(t), "%lld", bench_epoch_ns() / 1000);
        if (redisAppendCommandArgv(c, stamp ? 11 : 9, argv, argvlen) != REDIS_OK)
            bench_die(prog, "out of memory");
    }
    int done = 0;
    while (!done) {
        if (redisBufferWrite(c, &done) != REDIS_OK) bench_die(prog, "write: %s", c->errstr);
    }
}

static void usage(FILE *out) {
    fprintf(out, "usage: loader [options]\n"
                 "  --url URL        redis://[:password@]host[:port][/db] or unix:///path[?db=N]\n"
                 "  --host HOST      server host (default 127.0.0.1)\n"
                 "  --port PORT      server port (default 6379)\n"
                 "  --stream NAME    stream to add to (default bench)\n"
                 "  -n, --messages N messages to add (default 1000000)\n"
                 "  --pipeline N     XADDs per round trip (default 1000)\n"
                 "  --fresh          delete the stream first\n"
                 "  --rate R         a steady R messages per second, each stamped t=<epoch us>\n"
                 "  --streams K      spread over K streams NAME:1..NAME:K (default 1: NAME)\n"
                 "  --size B         payload bytes per message (default 26)\n");
}

int main(int argc, char **argv) {
    static const struct option opts[] = {
        {"url", required_argument, NULL, 'u'},      {"host", required_argument, NULL, 'h'},
        {"port", required_argument, NULL, 'p'},     {"stream", required_argument, NULL, 's'},
        {"messages", required_argument, NULL, 'n'}, {"pipeline", required_argument, NULL, 'P'},
        {"fresh", no_argument, NULL, 'f'},          {"rate", required_argument, NULL, 'r'},
        {"streams", required_argument, NULL, 'K'},  {"size", required_argument, NULL, 'B'},
        {"help", no_argument, NULL, 'H'},           {NULL, 0, NULL, 0},
    };
    bench_addr addr;
    char err[512];
    const char *stream = "bench";
    long n = 1000000, pipeline = 1000;
    int fresh = 0;
    double rate = 0;
    bench_addr_init(&addr);

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
            case 'n':
                n = atol(optarg);
                if (n < 0) bench_die(prog, "--messages wants a count >= 0");
                break;
            case 'P':
                pipeline = atol(optarg);
                if (pipeline < 1) bench_die(prog, "--pipeline wants a count >= 1");
                break;
            case 'f':
                fresh = 1;
                break;
            case 'K':
                nstreams = atol(optarg);
                if (nstreams < 1) bench_die(prog, "--streams wants a count >= 1");
                break;
            case 'B': {
                long size = atol(optarg);
                if (size < 1) bench_die(prog, "--size wants bytes >= 1");
                char *p = malloc((size_t)size);
                if (!p) bench_die(prog, "out of memory");
                for (long i = 0; i < size; i++)
                    p[i] = (char)('a' + i % 26);
                payload = p;
                payload_len = (size_t)size;
                break;
            }
            case 'r':
                rate = atof(optarg);
                if (rate <= 0) bench_die(prog, "--rate wants messages per second > 0");
                break;
            case 'H':
                usage(stdout);
                return 0;
            default:
                usage(stderr);
                return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }

    if (nstreams > 1) {
        stream_names = calloc((size_t)nstreams, sizeof(char *));
        if (!stream_names) bench_die(prog, "out of memory");
        for (long i = 0; i < nstreams; i++) {
            size_t len = strlen(stream) + 24;
            stream_names[i] = malloc(len);
            if (!stream_names[i]) bench_die(prog, "out of memory");
            snprintf(stream_names[i], len, "%s:%ld", stream, i + 1);
        }
    }
    redisContext *c = bench_connect(&addr, err, sizeof(err));
    if (!c) bench_die(prog, "%s", err);
    if (fresh) {
        redisReply *r = redisCommand(c, "DEL %s", stream);
        if (!r || r->type == REDIS_REPLY_ERROR) bench_die(prog, "DEL: %s", r ? r->str : c->errstr);
        freeReplyObject(r);
    }

    char last_id[64] = "";
    double start = bench_now();
    long sent = 0, in_flight = 0;
    while (sent < n && rate > 0) {
        /* What is due by now, at most a pipeline's worth; then a millisecond's nap. */
        long due = (long)((bench_now() - start) * rate) + 1;
        if (due > n) due = n;
        long chunk = due - sent < pipeline ? due - sent : pipeline;
        if (chunk > 0) {
            send_chunk(c, stream, sent, chunk, 1);
            sent += chunk;
            read_replies(c, chunk, last_id, sizeof(last_id));
        }
        struct timespec nap = {0, 1000000};
        if (sent < n) nanosleep(&nap, NULL);
    }
    while (sent < n) {
        long chunk = n - sent < pipeline ? n - sent : pipeline;
        send_chunk(c, stream, sent, chunk, 0);
        sent += chunk;
        read_replies(c, in_flight, last_id, sizeof(last_id));
        in_flight = chunk;
    }
    read_replies(c, in_flight, last_id, sizeof(last_id));
    double elapsed = bench_now() - start;

    printf("loader messages=%ld seconds=%.6f rate=%.0f last_id=%s\n", n, elapsed,
           elapsed > 0 ? (double)n / elapsed : 0.0, last_id[0] ? last_id : "-");
    redisFree(c);
    return 0;
}
