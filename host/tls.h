/* tls.h - TLS for rediss:// connections: one client context per process,
 * one TLS session per hiredis connection.
 *
 * The settings (CA file, client certificate and key, server name) are the
 * same for every connection a process makes, so they live here, set once by
 * rsgTlsInit, rather than in rsgRedisUrl or rsgConn: a connection only says
 * "this one is TLS, to this host" (rsgTlsAttach), and a Sentinel connect path
 * can call the same function for the sentinels and for the master it finds.
 *
 * The OpenSSL context is made lazily by the first rsgTlsAttach of each
 * process: the heart is forked before any connection exists and makes its
 * own, sharing nothing with the main process but the settings.
 *
 * We build the OpenSSL context ourselves and hand each SSL object to
 * hiredis (redisInitiateSSL) instead of using redisCreateSSLContext, for two
 * reasons: hiredis only sends the server name as SNI and never checks that
 * the certificate is for that name (we do: X509_VERIFY_PARAM_set1_host /
 * _ip_asc), and owning the verify callback lets us say why a certificate was
 * refused, where hiredis only reports strerror(errno).
 *
 * Built without hiredis_ssl (hiredis 0.14), every function still exists:
 * rsgTlsInit refuses with a message that says what to do instead. */
#ifndef RSG_TLS_H
#define RSG_TLS_H

#include <stddef.h>

#include <hiredis/hiredis.h>

typedef struct rsgTlsConfig {
    const char *ca_cert;     /* PEM CA file to trust, NULL: the system's CA store */
    const char *cert;        /* PEM client certificate (chain), NULL: none */
    const char *key;         /* PEM private key of cert, NULL with cert */
    const char *server_name; /* name the certificate must carry, NULL: the host connected to */
} rsgTlsConfig;

typedef enum {
    RSG_TLS_NONE = 0, /* no TLS trouble seen: report the plain error */
    RSG_TLS_RETRY,    /* a TLS error that may heal (reset, server restarting) */
    RSG_TLS_FATAL,    /* a certificate was refused, either way: waiting will not help */
} rsgTlsTrouble;

/* One line for --version: "yes (OpenSSL ...)" or "no (...)". */
const char *rsgTlsDescribe(void);

/* Keeps *cfg (the strings are not copied: they must outlive every
 * connection) and checks it by loading every file once, so a missing,
 * unreadable or mismatched file is an error now, not at the first connect.
 * Returns 0, or -1 with a reason naming the file (or, built without TLS,
 * saying how to get TLS) in err. Call before the heart is forked. */
int rsgTlsInit(const rsgTlsConfig *cfg, char *err, size_t errlen);

/* Starts TLS on c, a connection being made to host (a name or an address,
 * checked against the server's certificate unless server_name was given).
 * Call right after redisAsyncConnect, before any I/O. Makes this process's
 * context on first use. Returns 0, or -1 with a reason in err (c is then
 * not TLS; the caller frees it). */
int rsgTlsAttach(redisContext *c, const char *host, char *err, size_t errlen);

/* After c failed (connect or disconnect callback, c not yet freed): tells
 * whether TLS was the reason and writes one line about it, naming `where`,
 * into buf. Clears what it read from OpenSSL's error queue. */
rsgTlsTrouble rsgTlsFailure(const redisContext *c, const char *where, char *buf, size_t len);

#endif
