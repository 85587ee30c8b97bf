/* tls.c - see tls.h. */
#include "tls.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#ifdef RSG_HAVE_TLS

#include <hiredis/hiredis_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

static struct {
    rsgTlsConfig cfg;   /* from rsgTlsInit */
    SSL_CTX *ctx;       /* this process's context, NULL until the first attach */
    pid_t ctx_pid;      /* the process that made ctx: a forked child makes its own */
    int ex_index;       /* SSL ex_data slot holding the redisContext it serves */
    const void *failed; /* the redisContext whose server certificate was refused */
    char why[384];      /* ...and why, from the verify callback */
} tls = {.ex_index = -1};

const char *rsgTlsDescribe(void) {
    static char buf[128];
    snprintf(buf, sizeof(buf), "yes (hiredis %d.%d.%d, %s)", HIREDIS_MAJOR, HIREDIS_MINOR,
             HIREDIS_PATCH, OpenSSL_version(OPENSSL_VERSION));
    return buf;
}

/* OpenSSL's reason for the last error in its queue, never NULL. */
static const char *lastReason(void) {
    static char buf[256];
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    if (r) return r;
    if (!e) return "no reason given";
    ERR_error_string_n(e, buf, sizeof(buf));
    return buf;
}

/* fopen's answer about path, so that "no such file" and "permission
 * denied" read as such instead of as OpenSSL's "system lib". Returns 0 or -1
 * with a reason naming the option and the file. */
static int readable(const char *option, const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot read the %s file '%s': %s", option, path, strerror(errno));
        return -1;
    }
    fclose(f);
    return 0;
}

/* Records why the server's certificate was refused, for rsgTlsFailure: the
 * failed handshake itself only leaves "certificate verify failed". */
static int onVerify(int ok, X509_STORE_CTX *store) {
    if (ok) return 1;
    SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
    X509 *cert = X509_STORE_CTX_get_current_cert(store);
    char subject[256] = "?";
    if (cert) X509_NAME_oneline(X509_get_subject_name(cert), subject, sizeof(subject));
    tls.failed = ssl ? SSL_get_ex_data(ssl, tls.ex_index) : NULL;
    snprintf(tls.why, sizeof(tls.why), "%s (certificate '%s')",
             X509_verify_cert_error_string(X509_STORE_CTX_get_error(store)), subject);
    return 0;
}

/* A client context for cfg. Returns it, or NULL with a reason in err
 * (nothing to free). */
static SSL_CTX *makeContext(const rsgTlsConfig *cfg, char *err, size_t errlen) {
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(err, errlen, "cannot create a TLS context: %s", lastReason());
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, onVerify);
    if (cfg->ca_cert) {
        if (readable("--tls-ca-cert", cfg->ca_cert, err, errlen) != 0) goto err;
        if (SSL_CTX_load_verify_locations(ctx, cfg->ca_cert, NULL) != 1) {
            snprintf(err, errlen, "the --tls-ca-cert file '%s' holds no usable CA certificate: %s",
                     cfg->ca_cert, lastReason());
            goto err;
        }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        snprintf(err, errlen, "cannot load the system's CA store (give --tls-ca-cert): %s",
                 lastReason());
        goto err;
    }
    if (cfg->cert) {
        if (readable("--tls-cert", cfg->cert, err, errlen) != 0 ||
            readable("--tls-key", cfg->key, err, errlen) != 0)
            goto err;
        if (SSL_CTX_use_certificate_chain_file(ctx, cfg->cert) != 1) {
            snprintf(err, errlen, "the --tls-cert file '%s' holds no usable certificate: %s",
                     cfg->cert, lastReason());
            goto err;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, cfg->key, SSL_FILETYPE_PEM) != 1) {
            snprintf(err, errlen, "the --tls-key file '%s' holds no usable private key: %s",
                     cfg->key, lastReason());
            goto err;
        }
        if (SSL_CTX_check_private_key(ctx) != 1) {
            snprintf(err, errlen, "the --tls-key file '%s' is not the key of the --tls-cert '%s'",
                     cfg->key, cfg->cert);
            goto err;
        }
    }
    ERR_clear_error();
    return ctx;
err:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}

int rsgTlsInit(const rsgTlsConfig *cfg, char *err, size_t errlen) {
    if (!cfg->cert != !cfg->key) {
        snprintf(err, errlen, "%s given without %s: a client certificate needs both",
                 cfg->cert ? "--tls-cert" : "--tls-key", cfg->cert ? "--tls-key" : "--tls-cert");
        return -1;
    }
    if (tls.ex_index < 0) tls.ex_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    /* Load everything once now, while a mistake is still a usage error;
     * each process then makes its own context on first use. */
    SSL_CTX *ctx = makeContext(cfg, err, errlen);
    if (!ctx) return -1;
    SSL_CTX_free(ctx);
    tls.cfg = *cfg;
    return 0;
}

int rsgTlsAttach(redisContext *c, const char *host, char *err, size_t errlen) {
    if (!tls.ctx || tls.ctx_pid != getpid()) {
        /* A context inherited through fork is the parent's: leave it alone. */
        tls.ctx = makeContext(&tls.cfg, err, errlen);
        if (!tls.ctx) return -1;
        tls.ctx_pid = getpid();
    }
    SSL *ssl = SSL_new(tls.ctx);
    if (!ssl) {
        snprintf(err, errlen, "cannot create a TLS session: %s", lastReason());
        return -1;
    }
    const char *name = tls.cfg.server_name ? tls.cfg.server_name : host;
    if (name) {
        /* An address is checked against the certificate's IP entries, a
         * name against its DNS names and sent as SNI (SNI takes no
         * addresses). */
        X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (X509_VERIFY_PARAM_set1_ip_asc(param, name) != 1 &&
            (X509_VERIFY_PARAM_set1_host(param, name, 0) != 1 ||
             SSL_set_tlsext_host_name(ssl, name) != 1)) {
            snprintf(err, errlen, "cannot use '%s' as the TLS server name", name);
            SSL_free(ssl);
            return -1;
        }
    }
    SSL_set_ex_data(ssl, tls.ex_index, c);
    if (tls.failed == c) tls.failed = NULL; /* a new context at an old address */
    /* On success hiredis owns ssl and frees it with c; on failure we do. */
    if (redisInitiateSSL(c, ssl) != REDIS_OK) {
        snprintf(err, errlen, "cannot start TLS: %s", c->errstr);
        SSL_free(ssl);
        return -1;
    }
    return 0;
}

/* The server refused our certificate, or our lack of one: alerts it sends
 * for that (TLS 1.3 "certificate required", TLS 1.2 "handshake failure"). */
static int refusedUs(int reason) {
    switch (reason) {
#ifdef SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED
        case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
#endif
        case SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE:
        case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
        case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
        case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
        case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
        case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
        case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
        case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
            return 1;
        default:
            return 0;
    }
}

rsgTlsTrouble rsgTlsFailure(const redisContext *c, const char *where, char *buf, size_t len) {
    if (tls.failed == c && c) {
        tls.failed = NULL;
        ERR_clear_error();
        snprintf(buf, len,
                 "TLS certificate verification of the server %s failed: %s; the server's "
                 "certificate must be signed by the CA of --tls-ca-cert (default: the system's CA "
                 "store) and name the host (or --tls-server-name)",
                 where, tls.why);
        return RSG_TLS_FATAL;
    }
    unsigned long e = ERR_peek_last_error();
    if (!e) return RSG_TLS_NONE;
    int lib = ERR_GET_LIB(e), reason = ERR_GET_REASON(e);
    char what[256];
    snprintf(what, sizeof(what), "%s", lastReason());
    ERR_clear_error();
    if (lib == ERR_LIB_SSL && reason == SSL_R_CERTIFICATE_VERIFY_FAILED) {
        snprintf(buf, len, "TLS certificate verification of the server %s failed: %s", where, what);
        return RSG_TLS_FATAL;
    }
    if (lib == ERR_LIB_SSL && refusedUs(reason)) {
        if (!tls.cfg.cert)
            snprintf(buf, len,
                     "the server %s refused the TLS connection (%s): it requires a client "
                     "certificate; give --tls-cert and --tls-key",
                     where, what);
        else
            snprintf(buf, len,
                     "the server %s refused our TLS client certificate '%s' (%s): it must be "
                     "signed by a CA the server trusts (its tls-ca-cert-file)",
                     where, tls.cfg.cert, what);
        return RSG_TLS_FATAL;
    }
    snprintf(buf, len, "TLS with %s failed: %s%s", where, what,
             lib == ERR_LIB_SSL && (reason == SSL_R_WRONG_VERSION_NUMBER ||
                                    reason == SSL_R_PACKET_LENGTH_TOO_LONG)
                 ? " (is that port speaking TLS? rediss:// needs a TLS port)"
                 : "");
    return RSG_TLS_RETRY;
}

#else /* !RSG_HAVE_TLS */

const char *rsgTlsDescribe(void) {
    static char buf[128];
    snprintf(buf, sizeof(buf), "no (built with hiredis %d.%d.%d, which has no hiredis_ssl)",
             HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH);
    return buf;
}

int rsgTlsInit(const rsgTlsConfig *cfg, char *err, size_t errlen) {
    (void)cfg;
    snprintf(err, errlen,
             "rediss:// (TLS) is not available: this rsghost was built with hiredis %d.%d.%d, "
             "which has no TLS. Build it against hiredis 1.x with hiredis_ssl (Debian 13's "
             "libhiredis-dev), or run a TLS tunnel such as stunnel and give --redis "
             "redis://127.0.0.1:PORT, its plain local port (README: TLS)",
             HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH);
    return -1;
}

int rsgTlsAttach(redisContext *c, const char *host, char *err, size_t errlen) {
    (void)c, (void)host;
    snprintf(err, errlen, "this rsghost was built without TLS");
    return -1;
}

rsgTlsTrouble rsgTlsFailure(const redisContext *c, const char *where, char *buf, size_t len) {
    (void)c, (void)where, (void)buf, (void)len;
    return RSG_TLS_NONE;
}

#endif
