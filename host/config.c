/* config.c - see config.h. */
#include "config.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_URL "redis://127.0.0.1:6379/0"

typedef enum { OPT_STRING, OPT_FLAG } optKind;

typedef struct optSpec {
    const char *name; /* long option, without the dashes */
    const char *arg;  /* metavar, NULL for flags */
    const char *env;  /* environment variable that sets it, or NULL */
    const char *dflt; /* default shown in --help */
    const char *help;
    optKind kind;
    size_t offset; /* field in rsgOptions */
} optSpec;

#define FIELD(f) offsetof(rsgOptions, f)

static const optSpec specs[] = {
    {"redis", "URL", "RSGHOST_REDIS_URL", DEFAULT_URL,
     "Redis to read from: redis://[[user]:password@]host[:port][/db], "
     "rediss://... (TLS), unix:///path/to/socket[?db=N], "
     "redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/MASTER[/db] or "
     "redis+cluster://[[user]:password@]host[:port][,host[:port]...] (a Redis Cluster)",
     OPT_STRING, FIELD(redis_url)},
    {"tls-ca-cert", "FILE", "RSGHOST_TLS_CA_CERT", NULL,
     "rediss://: PEM file of the CA(s) the server's certificate must be signed by; "
     "without it, the system's CA store",
     OPT_STRING, FIELD(tls_ca_cert)},
    {"tls-cert", "FILE", "RSGHOST_TLS_CERT", NULL,
     "rediss://: PEM client certificate, for servers that require one (with --tls-key)", OPT_STRING,
     FIELD(tls_cert)},
    {"tls-key", "FILE", "RSGHOST_TLS_KEY", NULL, "rediss://: PEM private key of --tls-cert",
     OPT_STRING, FIELD(tls_key)},
    {"tls-server-name", "NAME", "RSGHOST_TLS_SERVER_NAME", NULL,
     "rediss://: the name the server's certificate must carry (and SNI); "
     "without it, the URL's host",
     OPT_STRING, FIELD(tls_server_name)},
    {"metrics", "HOST:PORT", "RSGHOST_METRICS", NULL,
     "serve /metrics (Prometheus), /livez and /readyz over HTTP on HOST:PORT "
     "(e.g. 127.0.0.1:9100, :9100 for every interface)",
     OPT_STRING, FIELD(metrics)},
    {"log-level", "LEVEL", "RSGHOST_LOG_LEVEL", "info", "debug, info, warn or error", OPT_STRING,
     FIELD(log_level)},
    {"log-format", "FORMAT", "RSGHOST_LOG_FORMAT", "text",
     "text, logfmt (key=value) or json (one object per line)", OPT_STRING, FIELD(log_format)},
    {"stop-timeout", "SECONDS", "RSGHOST_STOP_TIMEOUT", "25",
     "a stop that has not flushed and acked within SECONDS gives up: exit 1, the rest stays "
     "pending",
     OPT_STRING, FIELD(stop_timeout_arg)},
    {"check", NULL, NULL, NULL, "load and check SCRIPT, print its source settings, exit", OPT_FLAG,
     FIELD(check)},
    {"workers", "N", "RSGHOST_WORKERS", NULL,
     "run N consumers CONSUMER-NAME-1..N (or N generated names) under a master that restarts "
     "them; 'auto': one per core",
     OPT_STRING, FIELD(workers_arg)},
    {"json", NULL, NULL, NULL, "dead-letters, status: JSON instead of a table", OPT_FLAG,
     FIELD(json)},
    {"watch", "SECONDS", NULL, NULL, "status: refresh every SECONDS until interrupted", OPT_STRING,
     FIELD(watch_arg)},
    {"count", "N", NULL, NULL, "dead-letters, redrive: at most the N oldest dead letters",
     OPT_STRING, FIELD(count_arg)},
    {"help", NULL, NULL, NULL, "show this help and exit", OPT_FLAG, FIELD(help)},
    {"version", NULL, NULL, NULL, "print the version and exit", OPT_FLAG, FIELD(version)},
};

#define NSPECS (sizeof(specs) / sizeof(specs[0]))

void rsgOptionsUsage(FILE *out) {
    fprintf(out, "usage: rsghost [options] SCRIPT [CONSUMER-NAME]\n\n"
                 "Runs the Lua pipeline SCRIPT as consumer CONSUMER-NAME (or $RSGHOST_CONSUMER)\n"
                 "of the consumer group the script names: reads Redis Streams, preprocesses,\n"
                 "batches, sinks, and acknowledges each message only after it has left the\n"
                 "pipeline.\n\n"
                 "       rsghost dead-letters [options] SCRIPT\n"
                 "       rsghost redrive [options] SCRIPT [ENTRY-ID...]\n\n"
                 "List the entries of the script's source.dead_letter stream, or move them\n"
                 "back to their streams (all, the --count oldest, or the ENTRY-IDs named).\n\n"
                 "       rsghost status [--json] [--watch SECONDS] SCRIPT\n\n"
                 "Show the script's streams and group as Redis has them: length, lag, pending,\n"
                 "and each consumer, alive or not, with what it holds. Read-only.\n\n"
                 "A subcommand is the first word only: run a script named like one as\n"
                 "./dead-letters.\n\n"
                 "options:\n");
    for (size_t i = 0; i < NSPECS; i++) {
        const optSpec *s = &specs[i];
        char lhs[64];
        snprintf(lhs, sizeof(lhs), "--%s%s%s", s->name, s->arg ? " " : "", s->arg ? s->arg : "");
        fprintf(out, "  %-24s %s\n", lhs, s->help);
        if (s->env || s->dflt)
            fprintf(out, "  %-24s %s%s%s%s%s\n", "", s->env ? "env " : "", s->env ? s->env : "",
                    s->env && s->dflt ? ", " : "", s->dflt ? "default " : "",
                    s->dflt ? s->dflt : "");
    }
    fprintf(out, "\nexit status: 0 after a clean stop (SIGINT/SIGTERM), 1 on a runtime failure,\n"
                 "2 on a usage or script error. dead-letters and redrive: 0 when everything\n"
                 "was listed or moved, 1 on a Redis error or an entry that could not be moved,\n"
                 "2 on a usage or script error. status: 0, or 1 when Redis cannot be read.\n");
}

/* The usage line of o's command, for error messages. */
static const char *usageOf(const rsgOptions *o) {
    switch (o->command) {
        case RSG_CMD_DEAD_LETTERS:
            return "rsghost dead-letters [options] SCRIPT";
        case RSG_CMD_REDRIVE:
            return "rsghost redrive [options] SCRIPT [ENTRY-ID...]";
        case RSG_CMD_STATUS:
            return "rsghost status [--json] [--watch SECONDS] SCRIPT";
        default:
            return "rsghost [options] SCRIPT [CONSUMER-NAME]";
    }
}

/* Reads a number of seconds, at least min, from the value of option name.
 * Returns 0, or -1 with a reason in err. */
static int parseSeconds(const char *name, const char *arg, double min, double *out, char *err,
                        size_t errlen) {
    char *end;
    double v = strtod(arg, &end);
    if (end == arg || *end || !(v >= min) || v > 1e6) {
        snprintf(err, errlen, "%s needs a number of seconds, at least %g, not '%s'", name, min,
                 arg);
        return -1;
    }
    *out = v;
    return 0;
}

/* A run's own settings: --stop-timeout as a number,
 * and RSGHOST_CONSUMER when no CONSUMER-NAME was given (the Kubernetes
 * downward API and systemd's %i set it, not the command line). Returns 0,
 * or -1 with a reason in err. */
static int parseRunOptions(rsgOptions *o, char *err, size_t errlen) {
    if (parseSeconds("--stop-timeout", o->stop_timeout_arg, 0.1, &o->stop_timeout, err, errlen) !=
        0)
        return -1;
    if (!o->consumer) {
        const char *env = getenv("RSGHOST_CONSUMER");
        if (env && *env) o->consumer = env;
    }
    return 0;
}

/* --workers N or auto: at least 1, at most RSG_MAX_WORKERS. Returns 0, or
 * -1 with a reason in err. */
static int parseWorkers(rsgOptions *o, char *err, size_t errlen) {
    if (!o->workers_arg) return 0;
    if (strcmp(o->workers_arg, "auto") == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        o->workers = n > 0 ? (int)(n < RSG_MAX_WORKERS ? n : RSG_MAX_WORKERS) : 1;
        return 0;
    }
    char *end;
    long n = strtol(o->workers_arg, &end, 10);
    if (end == o->workers_arg || *end || n < 1 || n > RSG_MAX_WORKERS) {
        snprintf(err, errlen, "--workers needs a whole number from 1 to %d, or auto, not '%s'",
                 RSG_MAX_WORKERS, o->workers_arg);
        return -1;
    }
    o->workers = (int)n;
    return 0;
}

/* Checks what only some commands take, and turns --count into a number.
 * Returns 0, or -1 with a reason in err. */
static int checkCommandOptions(rsgOptions *o, char *err, size_t errlen) {
    if (o->command == RSG_CMD_RUN) {
        const char *bad = o->json        ? "--json"
                          : o->count_arg ? "--count"
                          : o->watch_arg ? "--watch"
                                         : NULL;
        if (bad) {
            snprintf(err, errlen, "%s is for a subcommand: %s (see --help)", bad,
                     o->count_arg ? "'rsghost dead-letters' and 'rsghost redrive'"
                     : o->json    ? "'rsghost dead-letters' and 'rsghost status'"
                                  : "'rsghost status'");
            return -1;
        }
        if (parseWorkers(o, err, errlen) != 0) return -1;
        return parseRunOptions(o, err, errlen);
    }
    if (o->check) {
        snprintf(err, errlen, "--check is for a run, not for a subcommand (usage: %s)", usageOf(o));
        return -1;
    }
    if (o->json && o->command == RSG_CMD_REDRIVE) {
        snprintf(err, errlen, "--json is for 'rsghost dead-letters' and 'rsghost status'");
        return -1;
    }
    if (o->watch_arg && o->command != RSG_CMD_STATUS) {
        snprintf(err, errlen, "--watch is for 'rsghost status'");
        return -1;
    }
    if (o->count_arg && o->command == RSG_CMD_STATUS) {
        snprintf(err, errlen, "--count is for 'rsghost dead-letters' and 'rsghost redrive'");
        return -1;
    }
    if (o->watch_arg && parseSeconds("--watch", o->watch_arg, 0.1, &o->watch, err, errlen) != 0)
        return -1;
    if (o->count_arg) {
        char *end;
        o->count = strtol(o->count_arg, &end, 10);
        if (end == o->count_arg || *end || o->count <= 0) {
            snprintf(err, errlen, "--count needs a whole number above 0, not '%s'", o->count_arg);
            return -1;
        }
        if (o->nids) {
            snprintf(err, errlen, "give either --count or ENTRY-IDs, not both");
            return -1;
        }
    }
    return 0;
}

int rsgOptionsParse(rsgOptions *o, int argc, char **argv, char *err, size_t errlen) {
    memset(o, 0, sizeof(*o));
    for (size_t i = 0; i < NSPECS; i++) {
        const optSpec *s = &specs[i];
        if (s->kind != OPT_STRING) continue;
        const char *v = s->env ? getenv(s->env) : NULL;
        *(const char **)((char *)o + s->offset) = v && *v ? v : s->dflt;
    }
    /* A subcommand is the first word only: anything later is an operand,
     * so a script may still be called "redrive" (as ./redrive). The rest
     * parses as if it were the whole command line. */
    if (argc > 1 && strcmp(argv[1], "dead-letters") == 0)
        o->command = RSG_CMD_DEAD_LETTERS;
    else if (argc > 1 && strcmp(argv[1], "redrive") == 0)
        o->command = RSG_CMD_REDRIVE;
    else if (argc > 1 && strcmp(argv[1], "status") == 0)
        o->command = RSG_CMD_STATUS;
    if (o->command != RSG_CMD_RUN) {
        argc--;
        argv++;
    }
    /* getopt_long, driven by the same table: long options from specs[], plus
     * -h and -V. A leading ':' reports a missing value apart from an
     * unknown option; opterr = 0 leaves the wording to us. */
    struct option longopts[NSPECS + 1];
    for (size_t k = 0; k < NSPECS; k++)
        longopts[k] = (struct option){specs[k].name,
                                      specs[k].kind == OPT_FLAG ? no_argument : required_argument,
                                      NULL, (int)(k + 256)};
    longopts[NSPECS] = (struct option){0, 0, 0, 0};
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":hV", longopts, NULL)) != -1) {
        const char *arg = argv[optind - 1];
        const optSpec *s = NULL;
        if (c == 'h' || c == 'V') {
            *(c == 'h' ? &o->help : &o->version) = 1;
            continue;
        }
        if (c >= 256) s = &specs[c - 256];
        if (c == ':') {
            const optSpec *m = optopt >= 256 ? &specs[optopt - 256] : NULL;
            snprintf(err, errlen, "option --%s needs a value (%s)", m ? m->name : arg + 2,
                     m ? m->arg : "?");
            return -1;
        }
        if (c == '?') {
            if (optopt >= 256 && specs[optopt - 256].kind == OPT_FLAG)
                snprintf(err, errlen, "option --%s takes no value", specs[optopt - 256].name);
            else
                snprintf(err, errlen, "unknown option '%s' (see --help)", arg);
            return -1;
        }
        if (!s) continue;
        if (s->kind == OPT_FLAG) {
            *(int *)((char *)o + s->offset) = 1;
            continue;
        }
        *(const char **)((char *)o + s->offset) = optarg;
        /* optarg points into argv's memory (after '=' or the next element):
         * main.c overwrites the password there once it has a copy. */
        if (s->offset == FIELD(redis_url)) o->redis_arg = optarg;
    }
    /* getopt_long moved the operands behind the options. */
    for (int i = optind; i < argc; i++) {
        const char *a = argv[i];
        if (!o->script)
            o->script = a;
        else if (o->command == RSG_CMD_RUN && !o->consumer)
            o->consumer = a;
        else if (o->command == RSG_CMD_REDRIVE) {
            if (!o->ids) o->ids = argv + i;
            o->nids++;
        } else {
            snprintf(err, errlen, "unexpected argument '%s' (usage: %s)", a, usageOf(o));
            return -1;
        }
    }
    if (!o->help && !o->version && !o->script) {
        snprintf(err, errlen, "missing SCRIPT (usage: %s)", usageOf(o));
        return -1;
    }
    return checkCommandOptions(o, err, errlen);
}

char **rsgOptionsWorkerArgv(const rsgOptions *o, const char *exe, const char *name) {
    /* exe, one per option, SCRIPT, name, NULL. */
    char **argv = calloc(NSPECS + 4, sizeof(char *));
    if (!argv) return NULL;
    size_t n = 0;
    argv[n++] = strdup(exe);
    for (size_t i = 0; i < NSPECS; i++) {
        const optSpec *s = &specs[i];
        if (s->kind != OPT_STRING || s->offset == FIELD(redis_url) ||
            s->offset == FIELD(workers_arg) || s->offset == FIELD(count_arg))
            continue;
        const char *v = *(const char *const *)((const char *)o + s->offset);
        if (!v) continue;
        size_t len = strlen(s->name) + strlen(v) + 4;
        char *a = malloc(len);
        if (a) snprintf(a, len, "--%s=%s", s->name, v);
        argv[n++] = a;
        if (!a) break;
    }
    if (n == 0 || !argv[n - 1] || !argv[0]) {
        rsgOptionsFreeArgv(argv);
        return NULL;
    }
    argv[n++] = strdup(o->script);
    if (name) argv[n++] = strdup(name);
    for (size_t i = 0; i < n; i++)
        if (!argv[i]) {
            rsgOptionsFreeArgv(argv);
            return NULL;
        }
    return argv;
}

void rsgOptionsFreeArgv(char **argv) {
    if (!argv) return;
    for (size_t i = 0; i <= NSPECS + 3; i++)
        free(argv[i]);
    free(argv);
}
