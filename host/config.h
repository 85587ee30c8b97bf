/* config.h - the command line.
 *
 *   rsghost [options] SCRIPT [CONSUMER-NAME]
 *
 * One declarative table (config.c) lists every option with its environment
 * variable, default and help text; the same table drives parsing and --help. */
#ifndef RSG_CONFIG_H
#define RSG_CONFIG_H

#include <stddef.h>
#include <stdio.h>

typedef struct rsgOptions {
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
} rsgOptions;

/* Parses argv (environment variables first, then options). Returns 0, or -1
 * with a one-line reason in err. */
int rsgOptionsParse(rsgOptions *o, int argc, char **argv, char *err, size_t errlen);

/* Writes the --help text. */
void rsgOptionsUsage(FILE *out);

#endif
