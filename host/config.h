/* config.h - the command line.
 *
 *   rsghost [options] SCRIPT [CONSUMER-NAME]
 *   rsghost dead-letters [options] SCRIPT
 *   rsghost redrive [options] SCRIPT [ENTRY-ID...]
 *
 * A subcommand is the first word only, so a script file named like one is
 * run as ./dead-letters.
 * One declarative table (config.c) lists every option with its environment
 * variable, default and help text; the same table drives parsing and --help. */
#ifndef RSG_CONFIG_H
#define RSG_CONFIG_H

#include <stddef.h>
#include <stdio.h>

/* What the invocation asks for: the first word of argv, or a run. */
typedef enum {
    RSG_CMD_RUN = 0,      /* rsghost SCRIPT: run a consumer */
    RSG_CMD_DEAD_LETTERS, /* rsghost dead-letters SCRIPT: list them (redrive.h) */
    RSG_CMD_REDRIVE,      /* rsghost redrive SCRIPT [ENTRY-ID...]: move them back */
} rsgCommand;

typedef struct rsgOptions {
    rsgCommand command;          /* the subcommand, RSG_CMD_RUN without one */
    const char *redis_url;       /* --redis / RSGHOST_REDIS_URL */
    const char *log_level;       /* --log-level / RSGHOST_LOG_LEVEL */
    int check;                   /* --check: load the script, print, exit */
    int help, version;           /* --help, --version */
    const char *script;          /* SCRIPT */
    const char *consumer;        /* CONSUMER-NAME, or NULL */
    char *redis_arg;             /* the --redis value inside argv, or NULL (to scrub) */
    const char *tls_ca_cert;     /* --tls-ca-cert / RSGHOST_TLS_CA_CERT, or NULL */
    const char *tls_cert;        /* --tls-cert / RSGHOST_TLS_CERT, or NULL */
    const char *tls_key;         /* --tls-key / RSGHOST_TLS_KEY, or NULL */
    const char *tls_server_name; /* --tls-server-name / RSGHOST_TLS_SERVER_NAME, or NULL */
    const char *metrics;         /* --metrics HOST:PORT / RSGHOST_METRICS, or NULL */
    int json;                    /* --json (dead-letters): JSON lines instead of a table */
    const char *count_arg;       /* --count N as typed, or NULL */
    long count;                  /* --count N (subcommands): at most N entries, 0 = all */
    char **ids;                  /* redrive's ENTRY-IDs (inside argv), nids of them */
    int nids;
    const char *workers_arg; /* --workers N|auto / RSGHOST_WORKERS as typed, or NULL */
    int workers;             /* --workers: consumers under a master (supervisor.h), 0 = none */
} rsgOptions;

/* The most workers --workers takes. */
#define RSG_MAX_WORKERS 256

/* Parses argv (environment variables first, then options). Returns 0, or -1
 * with a one-line reason in err. */
int rsgOptionsParse(rsgOptions *o, int argc, char **argv, char *err, size_t errlen);

/* The command line of one worker of o (rsghost --workers): exe, every
 * option o holds as --name=value except --workers and --redis (the caller
 * passes the URL in the environment: no password on a command line), then
 * SCRIPT and name (NULL: none, a generated name). Returns a NULL-terminated
 * array, freed with rsgOptionsFreeArgv, or NULL out of memory. */
char **rsgOptionsWorkerArgv(const rsgOptions *o, const char *exe, const char *name);
void rsgOptionsFreeArgv(char **argv);

/* Writes the --help text. */
void rsgOptionsUsage(FILE *out);

#endif
