/* The limit: drains a stream through a consumer group as fast as plain C and
 * hiredis can, so rsghost's throughput can be stated as a ratio against it.
 *
 *   --mode drain     XREADGROUP COUNT n, then one XACK per batch with all its
 *                    ids; nothing is done with the messages.
 *   --mode tutorial  the twin of the tutorial pipeline: every message becomes
 *                    the JSON object of its fields plus "_source" and "_id",
 *                    a batch's objects are joined with "\n" and RPUSHed to a
 *                    list as one string, and the batch is acked once the
 *                    RPUSH succeeded (as rsghost acks only after its sinks).
 *
 * Commands are pipelined: with --ahead N (default 1) the next N reads are on
 * their way while a batch is processed, which is what the issue asks of the
 * host ("reading the next batch overlaps processing the current one"). Acks
 * and RPUSHes ride along with the next read; nothing waits for a round trip
 * it could have started earlier. --ahead 0 is plain request/response.
 *
 * With --ahead 1 the next read leaves when the current reply has arrived, so
 * Redis sits idle for the round trip and for the time hiredis takes to parse
 * that reply. --ahead 2 is the pipelined limit: a read is always queued
 * behind the one Redis is answering, so Redis never waits for the client;
 * rsghost keeps two reads in flight too. It is the fastest this machine can
 * drain a stream, and the baseline of the trivial pipeline's target.
 *
 * Prints one line on stdout:
 *   limit mode=drain ahead=A messages=N batches=B seconds=S rate=R cpu_seconds=C maxrss_kib=K
 * (C: user + system CPU time of this process, K: its peak resident set)
 * and exits 0; any error reply or lost connection exits 1. */
#include "common.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static const char *prog = "limit";

/* What a reply in the pipeline belongs to. */
typedef enum { CMD_READ, CMD_SINK, CMD_ACK } cmd_kind;

/* A command sent whose reply has not been read yet. Replies arrive in the
 * order commands were sent, so these form a FIFO. */
typedef struct pending_cmd {
    cmd_kind kind;
    redisReply *batch; /* CMD_SINK: the read reply whose messages the RPUSH
                          carries, kept to build the XACK once it succeeded */
    size_t expect;     /* CMD_ACK: how many ids the XACK names */
} pending_cmd;

#define RING_SIZE 256

/* One run of the limit. */
typedef struct limit {
    redisContext *c;             /* the one connection, used in pipelined mode */
    const char *stream;          /* stream to drain */
    const char *group;           /* consumer group */
    const char *consumer;        /* consumer name inside the group */
    const char *list;            /* tutorial mode: list RPUSHed to */
    const char *count;           /* XREADGROUP COUNT, as the string sent */
    int tutorial;                /* 1: tutorial twin, 0: drain */
    int ahead;                   /* reads kept in flight while a batch is processed */
    pending_cmd ring[RING_SIZE]; /* commands awaiting replies */
    size_t head;                 /* index of the oldest in ring */
    size_t queued;               /* number of commands in ring */
    int reads_out;               /* XREADGROUPs in ring */
    int active;                  /* batches read but not yet acked */
    int eof;                     /* a read came back empty: send no more */
    long long messages;          /* messages read */
    long long batches;           /* non-empty reads */
    long long acked;             /* XACK replies summed */
    bench_buf json;              /* tutorial: the joined batch being built */
    const char **argv;           /* scratch argv for XACK */
    size_t *argvlen;             /* scratch argv lengths */
    size_t argcap;               /* capacity of argv and argvlen */
} limit;

/* Records a command just appended to the output buffer. */
static void push(limit *l, cmd_kind kind, redisReply *batch, size_t expect) {
    if (l->queued == RING_SIZE) bench_die(prog, "too many commands in flight");
    pending_cmd *p = &l->ring[(l->head + l->queued) % RING_SIZE];
    p->kind = kind;
    p->batch = batch;
    p->expect = expect;
    l->queued++;
}

/* Removes and returns the oldest command. */
static pending_cmd pop(limit *l) {
    pending_cmd p = l->ring[l->head];
    l->head = (l->head + 1) % RING_SIZE;
    l->queued--;
    return p;
}

/* Writes the output buffer out now, so Redis starts on it while we work. */
static void flush(limit *l) {
    int done = 0;
    while (!done) {
        if (redisBufferWrite(l->c, &done) != REDIS_OK) bench_die(prog, "write: %s", l->c->errstr);
    }
}

/* Makes sure the scratch argv holds n entries. */
static void argv_reserve(limit *l, size_t n) {
    if (n <= l->argcap) return;
    l->argv = realloc(l->argv, n * sizeof(*l->argv));
    l->argvlen = realloc(l->argvlen, n * sizeof(*l->argvlen));
    if (!l->argv || !l->argvlen) bench_die(prog, "out of memory");
    l->argcap = n;
}

/* Appends one XREADGROUP. */
static void send_read(limit *l) {
    const char *argv[] = {"XREADGROUP", "GROUP",   l->group,  l->consumer, "COUNT",
                          l->count,     "STREAMS", l->stream, ">"};
    if (redisAppendCommandArgv(l->c, 9, argv, NULL) != REDIS_OK) bench_die(prog, "out of memory");
    push(l, CMD_READ, NULL, 0);
    l->reads_out++;
}

/* Sends reads until as many are in flight as --ahead wants. With --ahead 0
 * the next read goes out only when no batch is in progress. */
static void top_up(limit *l) {
    int want = l->ahead > 0 ? l->ahead : (l->active == 0 ? 1 : 0);
    int sent = 0;
    while (!l->eof && l->reads_out < want) {
        send_read(l);
        sent = 1;
    }
    if (sent) flush(l);
}

/* Returns the entries array of a one-stream XREADGROUP reply, or NULL for an
 * empty read. Exits on a reply of an unexpected shape. */
static redisReply *entries_of(redisReply *r) {
    if (r->type == REDIS_REPLY_NIL) return NULL;
    if (r->type == REDIS_REPLY_ERROR) bench_die(prog, "XREADGROUP: %s", r->str);
    if (r->type != REDIS_REPLY_ARRAY) bench_die(prog, "XREADGROUP: unexpected reply type");
    if (r->elements == 0) return NULL;
    redisReply *s = r->element[0];
    if (s->type != REDIS_REPLY_ARRAY || s->elements != 2 ||
        s->element[1]->type != REDIS_REPLY_ARRAY)
        bench_die(prog, "XREADGROUP: unexpected reply shape");
    redisReply *e = s->element[1];
    return e->elements ? e : NULL;
}

/* Appends the XACK for every message of a read reply. */
static void send_ack(limit *l, redisReply *read) {
    redisReply *e = entries_of(read);
    size_t n = e->elements;
    argv_reserve(l, n + 3);
    l->argv[0] = "XACK";
    l->argvlen[0] = 4;
    l->argv[1] = l->stream;
    l->argvlen[1] = strlen(l->stream);
    l->argv[2] = l->group;
    l->argvlen[2] = strlen(l->group);
    for (size_t i = 0; i < n; i++) {
        redisReply *id = e->element[i]->element[0];
        l->argv[i + 3] = id->str;
        l->argvlen[i + 3] = id->len;
    }
    if (redisAppendCommandArgv(l->c, (int)(n + 3), l->argv, l->argvlen) != REDIS_OK)
        bench_die(prog, "out of memory");
    push(l, CMD_ACK, NULL, n);
    l->active--;
}

/* Appends the RPUSH of the tutorial twin: one JSON object per message, with
 * the message's fields plus "_source" and "_id", joined with "\n". */
static void send_sink(limit *l, redisReply *read) {
    redisReply *e = entries_of(read);
    const char *stream = l->stream;
    size_t stream_len = strlen(stream);
    bench_buf *b = &l->json;
    b->len = 0;
    for (size_t i = 0; i < e->elements; i++) {
        redisReply *msg = e->element[i];
        redisReply *id = msg->element[0];
        redisReply *fields = msg->element[1];
        if (i > 0) bench_buf_append(b, "\n", 1);
        bench_buf_append(b, "{", 1);
        /* A pending message deleted from the stream reads as nil fields. */
        if (fields->type == REDIS_REPLY_ARRAY) {
            for (size_t f = 0; f + 1 < fields->elements; f += 2) {
                bench_json_string(b, fields->element[f]->str, fields->element[f]->len);
                bench_buf_append(b, ":", 1);
                bench_json_string(b, fields->element[f + 1]->str, fields->element[f + 1]->len);
                bench_buf_append(b, ",", 1);
            }
        }
        bench_buf_append(b, "\"_source\":", 10);
        bench_json_string(b, stream, stream_len);
        bench_buf_append(b, ",\"_id\":", 7);
        bench_json_string(b, id->str, id->len);
        bench_buf_append(b, "}", 1);
    }
    const char *argv[] = {"RPUSH", l->list, b->data};
    size_t argvlen[] = {5, strlen(l->list), b->len};
    if (redisAppendCommandArgv(l->c, 3, argv, argvlen) != REDIS_OK)
        bench_die(prog, "out of memory");
    push(l, CMD_SINK, read, 0);
}

/* Handles the reply to the oldest command in flight. */
static void on_reply(limit *l, redisReply *r) {
    pending_cmd p = pop(l);
    switch (p.kind) {
        case CMD_READ: {
            l->reads_out--;
            redisReply *e = entries_of(r);
            if (!e) {
                l->eof = 1;
                freeReplyObject(r);
                return;
            }
            l->messages += (long long)e->elements;
            l->batches++;
            l->active++;
            /* Let Redis work on the next read while this batch is processed. */
            top_up(l);
            if (l->tutorial) {
                send_sink(l, r); /* r is kept until the RPUSH is answered */
            } else {
                send_ack(l, r);
                freeReplyObject(r);
                top_up(l);
            }
            return;
        }
        case CMD_SINK:
            if (r->type == REDIS_REPLY_ERROR) bench_die(prog, "RPUSH: %s", r->str);
            send_ack(l, p.batch);
            freeReplyObject(p.batch);
            freeReplyObject(r);
            top_up(l);
            return;
        case CMD_ACK:
            if (r->type != REDIS_REPLY_INTEGER)
                bench_die(prog, "XACK: %s", r->type == REDIS_REPLY_ERROR ? r->str : "bad reply");
            if ((size_t)r->integer != p.expect)
                fprintf(stderr, "%s: XACK acknowledged %lld of %zu ids\n", prog, r->integer,
                        p.expect);
            l->acked += r->integer;
            freeReplyObject(r);
            return;
    }
}

/* Creates the group at the start of the stream; an existing group is kept. */
static void create_group(limit *l) {
    const char *argv[] = {"XGROUP", "CREATE", l->stream, l->group, "0", "MKSTREAM"};
    redisReply *r = redisCommandArgv(l->c, 6, argv, NULL);
    if (!r) bench_die(prog, "XGROUP CREATE: %s", l->c->errstr);
    if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9) != 0)
        bench_die(prog, "XGROUP CREATE: %s", r->str);
    freeReplyObject(r);
}

static void usage(FILE *out) {
    fprintf(out, "usage: limit [options]\n"
                 "  --url URL        redis://[:password@]host[:port][/db] or unix:///path[?db=N]\n"
                 "  --host HOST      server host (default 127.0.0.1)\n"
                 "  --port PORT      server port (default 6379)\n"
                 "  --stream NAME    stream to drain (default bench)\n"
                 "  --group NAME     consumer group, created at 0 if missing (default bench)\n"
                 "  --consumer NAME  consumer name (default limit)\n"
                 "  --count N        XREADGROUP COUNT (default 1000)\n"
                 "  --mode MODE      drain (default) or tutorial\n"
                 "  --list KEY       tutorial mode: list to RPUSH to (default bench:out)\n"
                 "  --ahead N        reads in flight while a batch is processed (default 1;\n"
                 "                   2: the pipelined limit)\n");
}

int main(int argc, char **argv) {
    static const struct option opts[] = {
        {"url", required_argument, NULL, 'u'},   {"host", required_argument, NULL, 'h'},
        {"port", required_argument, NULL, 'p'},  {"stream", required_argument, NULL, 's'},
        {"group", required_argument, NULL, 'g'}, {"consumer", required_argument, NULL, 'c'},
        {"count", required_argument, NULL, 'n'}, {"mode", required_argument, NULL, 'm'},
        {"list", required_argument, NULL, 'l'},  {"ahead", required_argument, NULL, 'a'},
        {"help", no_argument, NULL, 'H'},        {NULL, 0, NULL, 0},
    };
    bench_addr addr;
    limit l;
    char err[512];
    memset(&l, 0, sizeof(l));
    bench_addr_init(&addr);
    l.stream = "bench";
    l.group = "bench";
    l.consumer = "limit";
    l.list = "bench:out";
    l.count = "1000";
    l.ahead = 1;

    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
            case 'u':
            case 'h':
            case 'p':
                bench_addr_option(&addr, ch, optarg, prog);
                break;
            case 's':
                l.stream = optarg;
                break;
            case 'g':
                l.group = optarg;
                break;
            case 'c':
                l.consumer = optarg;
                break;
            case 'n':
                if (atol(optarg) < 1) bench_die(prog, "--count wants a positive integer");
                l.count = optarg;
                break;
            case 'm':
                if (strcmp(optarg, "drain") == 0)
                    l.tutorial = 0;
                else if (strcmp(optarg, "tutorial") == 0)
                    l.tutorial = 1;
                else
                    bench_die(prog, "--mode wants drain or tutorial, not '%s'", optarg);
                break;
            case 'l':
                l.list = optarg;
                break;
            case 'a':
                l.ahead = atoi(optarg);
                if (l.ahead < 0 || l.ahead > 64) bench_die(prog, "--ahead wants 0..64");
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

    l.c = bench_connect(&addr, err, sizeof(err));
    if (!l.c) bench_die(prog, "%s", err);
    create_group(&l);

    double start = bench_now();
    top_up(&l);
    while (l.queued > 0) {
        void *reply;
        if (redisGetReply(l.c, &reply) != REDIS_OK) bench_die(prog, "read: %s", l.c->errstr);
        on_reply(&l, reply);
    }
    double elapsed = bench_now() - start;

    if (l.acked != l.messages)
        fprintf(stderr, "%s: read %lld messages but acked %lld\n", prog, l.messages, l.acked);
    /* CPU time says more than wall time on a busy machine: it is what the
     * client cost, whatever else ran meanwhile. */
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                 (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    printf("limit mode=%s ahead=%d messages=%lld batches=%lld seconds=%.6f rate=%.0f "
           "cpu_seconds=%.3f maxrss_kib=%ld\n",
           l.tutorial ? "tutorial" : "drain", l.ahead, l.messages, l.batches, elapsed,
           elapsed > 0 ? (double)l.messages / elapsed : 0.0, cpu, ru.ru_maxrss);

    redisFree(l.c);
    bench_buf_free(&l.json);
    free(l.argv);
    free(l.argvlen);
    return l.acked == l.messages ? 0 : 1;
}
