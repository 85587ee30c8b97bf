/* url.c - see url.h. */
#include "url.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Finding the secrets in any string ----
 *
 * The same spans serve rsgUrlRedact (error messages) and rsgUrlScrub
 * (argv), so what one hides the other hides too. They are found by the
 * shape of the text alone, not by a successful parse: a URL with a typo in
 * its scheme still hides its password. */

#define MAX_SPANS 8

typedef struct span {
    size_t from, to; /* [from, to) is secret */
} span;

/* Fills spans with the secret parts of s; returns how many. */
static int secretSpans(const char *s, span *spans) {
    int n = 0;
    /* The userinfo ends at the last '@' before the query; it starts after
     * "://", or, in something that is not quite a URL ("redis//pw@h",
     * "user:pw@h"), after the last '/' before that '@'. A password holding
     * a raw '/' or '@' is hidden all the same. '#' ends nothing here: the
     * parser refuses it (a fragment means nothing to Redis), and a password
     * that holds one must be hidden whole, up to its '@' or '&'. */
    size_t end = strcspn(s, "?"), at = end;
    for (size_t i = 0; i < end; i++)
        if (s[i] == '@') at = i;
    if (at < end) {
        const char *sep = strstr(s, "://");
        size_t start = 0;
        if (sep && (size_t)(sep - s) + 3 <= at) {
            start = (size_t)(sep - s) + 3;
        } else {
            for (size_t i = 0; i < at; i++)
                if (s[i] == '/') start = i + 1;
        }
        const char *colon = memchr(s + start, ':', at - start);
        size_t from = colon ? (size_t)(colon - s) + 1 : start; /* lone credential: a password */
        if (at > from) spans[n++] = (span){from, at};
    }
    /* Query parameters named like a password. */
    const char *q = s[end] == '?' ? s + end : NULL;
    while (q && n < MAX_SPANS) {
        const char *key = q + 1;
        size_t klen = strcspn(key, "=&");
        const char *eq = key[klen] == '=' ? key + klen : NULL;
        const char *vend = eq ? eq + 1 + strcspn(eq + 1, "&") : key + klen;
        int secret = 0;
        for (size_t i = 0; i + 8 <= klen && !secret; i++)
            secret = strncasecmp(key + i, "password", 8) == 0;
        if (secret && eq && vend > eq + 1)
            spans[n++] = (span){(size_t)(eq + 1 - s), (size_t)(vend - s)};
        q = *vend == '&' ? vend : NULL;
    }
    return n;
}

void rsgUrlRedact(const char *s, char *buf, size_t len) {
    span spans[MAX_SPANS];
    int n = secretSpans(s, spans);
    size_t o = 0, i = 0;
    if (len == 0) return;
    for (int k = 0; k <= n; k++) {
        size_t upto = k < n ? spans[k].from : strlen(s);
        for (; i < upto && o + 1 < len; i++)
            buf[o++] = s[i];
        if (k < n) {
            for (const char *m = "***"; *m && o + 1 < len; m++)
                buf[o++] = *m;
            i = spans[k].to;
        }
    }
    buf[o] = '\0';
}

void rsgUrlScrub(char *s) {
    span spans[MAX_SPANS];
    int n = secretSpans(s, spans);
    for (int k = 0; k < n; k++)
        memset(s + spans[k].from, '*', spans[k].to - spans[k].from);
}

/* ---- Parsing ---- */

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Copies s[0..len) with %XX sequences decoded. Returns NULL on a malformed
 * escape or out of memory. */
static char *pctdecode(const char *s, size_t len) {
    char *out = malloc(len + 1), *o = out;
    if (!out) return NULL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '%') {
            int hi = i + 1 < len ? hexval((unsigned char)s[i + 1]) : -1;
            int lo = i + 2 < len ? hexval((unsigned char)s[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                free(out);
                return NULL;
            }
            *o++ = (char)(hi * 16 + lo);
            i += 2;
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return out;
}

/* Parses a decimal in s[0..len) within [min, max]. Returns 0 or -1. */
static int parseint(const char *s, size_t len, long min, long max, int *out) {
    if (len == 0 || len > 10) return -1;
    long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i])) return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < min || v > max) return -1;
    *out = (int)v;
    return 0;
}

/* The parse state: the URL as typed (for messages) and where to report. */
typedef struct parser {
    const char *url;
    char *err;
    size_t errlen;
} parser;

/* Reports "<what> in <the URL, passwords masked>". Returns -1. */
static int fail(parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(parser *p, const char *fmt, ...) {
    char what[256], shown[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    rsgUrlRedact(p->url, shown, sizeof(shown));
    snprintf(p->err, p->errlen, "%s in redis URL '%s'", what, shown);
    return -1;
}

/* One host[:port] from s[0..len) into *a. */
static int parseAddr(parser *p, const char *s, size_t len, int dflt, rsgAddr *a) {
    const char *end = s + len, *portStart = NULL;
    a->port = dflt;
    if (len > 0 && *s == '[') {
        const char *rb = memchr(s, ']', len);
        if (!rb) return fail(p, "unterminated '[' in an IPv6 host");
        a->host = strndup(s + 1, (size_t)(rb - s - 1));
        if (rb + 1 < end && rb[1] == ':')
            portStart = rb + 2;
        else if (rb + 1 != end)
            return fail(p, "unexpected text after ']'");
    } else {
        const char *colon = memchr(s, ':', len);
        a->host = strndup(s, colon ? (size_t)(colon - s) : len);
        if (colon) portStart = colon + 1;
    }
    if (!a->host) return fail(p, "out of memory");
    if (a->host[0] == '\0') {
        free(a->host);
        if (!(a->host = strdup("127.0.0.1"))) return fail(p, "out of memory");
    }
    if (portStart && parseint(portStart, (size_t)(end - portStart), 1, 65535, &a->port))
        return fail(p, "bad port '%.*s'", (int)(end - portStart), portStart);
    return 0;
}

/* The userinfo "user:password", ":password" or "password". */
static int parseUserinfo(parser *p, const char *s, size_t len, char **user, char **password) {
    const char *colon = memchr(s, ':', len);
    if (colon) {
        if (colon > s && !(*user = pctdecode(s, (size_t)(colon - s))))
            return fail(p, "malformed %%-escape in the user name");
        if (!(*password = pctdecode(colon + 1, len - (size_t)(colon - s) - 1)))
            return fail(p, "malformed %%-escape in the password");
    } else if (len > 0 && !(*password = pctdecode(s, len))) {
        return fail(p, "malformed %%-escape in the password");
    }
    return 0;
}

/* The query: db=N, and for Sentinel its credentials; nothing else. */
static int parseQuery(parser *p, const char *q, rsgRedisUrl *u) {
    while (q && *q) {
        size_t plen = strcspn(q, "&");
        const char *eq = memchr(q, '=', plen);
        size_t klen = eq ? (size_t)(eq - q) : plen;
        const char *v = eq ? eq + 1 : q + plen;
        size_t vlen = (size_t)(q + plen - v);
        if (klen == 2 && strncmp(q, "db", 2) == 0) {
            if (parseint(v, vlen, 0, 1 << 30, &u->db))
                return fail(p, "bad database number '%.*s'", (int)vlen, v);
        } else if (u->nsentinels && klen == 17 && strncmp(q, "sentinel_password", 17) == 0) {
            free(u->sentinel_password);
            if (!(u->sentinel_password = pctdecode(v, vlen)))
                return fail(p, "malformed %%-escape in sentinel_password");
        } else if (u->nsentinels && klen == 13 && strncmp(q, "sentinel_user", 13) == 0) {
            free(u->sentinel_user);
            if (!(u->sentinel_user = pctdecode(v, vlen)))
                return fail(p, "malformed %%-escape in sentinel_user");
        } else {
            return fail(p, "unknown query parameter '%.*s' (known: db%s)", (int)klen, q,
                        u->nsentinels ? ", sentinel_user, sentinel_password" : "");
        }
        q += plen;
        if (*q == '&') q++;
    }
    return 0;
}

static int parseUnix(parser *p, const char *rest, rsgRedisUrl *out) {
    const char *q = strchr(rest, '?');
    size_t plen = q ? (size_t)(q - rest) : strlen(rest);
    if (plen == 0 || rest[0] != '/')
        return fail(p, "a unix socket URL needs an absolute path (unix:///path/to/socket)");
    if (!(out->path = pctdecode(rest, plen))) return fail(p, "malformed %%-escape in the path");
    return parseQuery(p, q ? q + 1 : NULL, out);
}

/* "/MASTER[/db]" after a Sentinel URL's hosts. */
static int parseMaster(parser *p, const char *path, size_t len, rsgRedisUrl *out) {
    if (len < 2 || path[0] != '/')
        return fail(p, "a Sentinel URL names its master: redis+sentinel://host:port/MASTER-NAME");
    const char *name = path + 1, *slash = memchr(name, '/', len - 1);
    size_t nlen = slash ? (size_t)(slash - name) : len - 1;
    if (nlen == 0) return fail(p, "empty master name");
    if (!(out->master = pctdecode(name, nlen))) return fail(p, "malformed %%-escape in the master");
    if (slash && (size_t)(path + len - slash) > 1 &&
        parseint(slash + 1, (size_t)(path + len - slash - 1), 0, 1 << 30, &out->db))
        return fail(p, "bad database number '%.*s'", (int)(path + len - slash - 1), slash + 1);
    return 0;
}

/* What the hosts of a network URL are. */
enum { URL_ONE, URL_SENTINEL, URL_CLUSTER };

/* A comma-separated list of host[:port] into *list, counted in *n. */
static int parseAddrList(parser *p, const char *hosts, const char *end, int dflt, const char *what,
                         rsgAddr **list, int *n) {
    int cap = 1;
    for (const char *s = hosts; s < end; s++)
        cap += *s == ',';
    if (!(*list = calloc((size_t)cap, sizeof(rsgAddr)))) return fail(p, "out of memory");
    const char *s = hosts;
    for (;;) {
        size_t len = strcspn(s, ",/?#");
        if (len == 0) return fail(p, "empty host in the list of %s", what);
        if (parseAddr(p, s, len, dflt, &(*list)[(*n)++])) return -1;
        if (s[len] != ',') break;
        s += len + 1;
    }
    return 0;
}

static int parseNetwork(parser *p, const char *rest, int mode, rsgRedisUrl *out) {
    const char *end = rest + strcspn(rest, "/?#");
    const char *at = NULL;
    for (const char *s = rest; s < end; s++)
        if (*s == '@') at = s;
    if (at && parseUserinfo(p, rest, (size_t)(at - rest), &out->user, &out->password)) return -1;
    const char *hosts = at ? at + 1 : rest;
    if (mode == URL_ONE) {
        rsgAddr a = {0};
        if (memchr(hosts, ',', (size_t)(end - hosts)))
            return fail(p, "several hosts need redis+sentinel:// (or redis+cluster://)");
        if (parseAddr(p, hosts, (size_t)(end - hosts), 6379, &a)) {
            free(a.host);
            return -1;
        }
        out->host = a.host;
        out->port = a.port;
    } else if (mode == URL_SENTINEL) {
        if (parseAddrList(p, hosts, end, RSG_SENTINEL_PORT, "sentinels", &out->sentinels,
                          &out->nsentinels))
            return -1;
    } else {
        out->cluster = 1;
        if (parseAddrList(p, hosts, end, 6379, "cluster nodes", &out->seeds, &out->nseeds))
            return -1;
    }
    const char *q = strchr(end, '?');
    size_t plen = q ? (size_t)(q - end) : strlen(end);
    if (mode == URL_SENTINEL) {
        if (parseMaster(p, end, plen, out)) return -1;
    } else if (plen > 1 && parseint(end + 1, plen - 1, 0, 1 << 30, &out->db)) {
        return fail(p, "bad database number '%.*s'", (int)(plen - 1), end + 1);
    }
    if (parseQuery(p, q ? q + 1 : NULL, out)) return -1;
    /* A cluster has database 0 only (SELECT is refused there). */
    if (out->cluster && out->db != 0)
        return fail(p, "a Redis Cluster has only database 0, not %d", out->db);
    return 0;
}

int rsgUrlParse(const char *url, rsgRedisUrl *out, char *err, size_t errlen) {
    parser p = {url, err, errlen};
    memset(out, 0, sizeof(*out));
    out->port = 6379;
    static const struct {
        const char *prefix;
        int tls, mode;
    } schemes[] = {{"redis://", 0, URL_ONE},
                   {"rediss://", 1, URL_ONE},
                   {"redis+sentinel://", 0, URL_SENTINEL},
                   {"rediss+sentinel://", 1, URL_SENTINEL},
                   {"redis+cluster://", 0, URL_CLUSTER},
                   {"rediss+cluster://", 1, URL_CLUSTER}};
    int rc = -1;
    /* Before anything is quoted: a raw '#' (in a password, say) would end
     * the authority early, and a piece of the password could show as a
     * "bad port". */
    if (strchr(url, '#'))
        return fail(&p, "'#' has no place in a redis URL (in a user name or password, write it "
                        "as %%23)");
    if (strncmp(url, "unix://", 7) == 0) {
        rc = parseUnix(&p, url + 7, out);
    } else {
        size_t i = 0, n = sizeof(schemes) / sizeof(schemes[0]);
        while (i < n && strncmp(url, schemes[i].prefix, strlen(schemes[i].prefix)) != 0)
            i++;
        if (i == n) {
            fail(&p, "unknown scheme (want redis://, rediss://, unix://, redis+sentinel://, "
                     "rediss+sentinel://, redis+cluster:// or rediss+cluster://)");
        } else {
            out->tls = schemes[i].tls;
            rc = parseNetwork(&p, url + strlen(schemes[i].prefix), schemes[i].mode, out);
        }
    }
    if (rc != 0) rsgUrlFree(out);
    return rc;
}

static void freeSecret(char *s) {
    /* Do not leave the secret in freed heap memory. */
    if (s) memset(s, 0, strlen(s));
    free(s);
}

void rsgUrlFree(rsgRedisUrl *u) {
    free(u->host);
    free(u->path);
    free(u->user);
    freeSecret(u->password);
    for (int i = 0; i < u->nsentinels; i++)
        free(u->sentinels[i].host);
    free(u->sentinels);
    for (int i = 0; i < u->nseeds; i++)
        free(u->seeds[i].host);
    free(u->seeds);
    free(u->master);
    free(u->sentinel_user);
    freeSecret(u->sentinel_password);
    memset(u, 0, sizeof(*u));
    u->port = 6379;
}

/* "host:port", bracketing an IPv6 host. */
static size_t formatAddr(char *buf, size_t len, const char *host, int port) {
    int v6 = strchr(host, ':') != NULL;
    int n = snprintf(buf, len, "%s%s%s:%d", v6 ? "[" : "", host, v6 ? "]" : "", port);
    return n < 0 ? 0 : (size_t)n < len ? (size_t)n : len - 1;
}

void rsgUrlFormat(const rsgRedisUrl *u, char *buf, size_t len) {
    if (len == 0) return;
    if (u->path) {
        snprintf(buf, len, "unix://%s?db=%d", u->path, u->db);
        return;
    }
    size_t o = (size_t)snprintf(buf, len, "%s%s://%s%s%s", u->tls ? "rediss" : "redis",
                                u->nsentinels ? "+sentinel"
                                : u->cluster  ? "+cluster"
                                              : "",
                                u->user ? u->user : "", u->password ? ":***" : "",
                                (u->user || u->password) ? "@" : "");
    if (o >= len) return;
    if (u->cluster) {
        for (int i = 0; i < u->nseeds && o + 1 < len; i++) {
            if (i) buf[o++] = ',';
            o += formatAddr(buf + o, len - o, u->seeds[i].host, u->seeds[i].port);
        }
        buf[o < len ? o : len - 1] = '\0';
        return;
    }
    if (!u->nsentinels) {
        o += formatAddr(buf + o, len - o, u->host, u->port);
        if (o < len) snprintf(buf + o, len - o, "/%d", u->db);
        return;
    }
    for (int i = 0; i < u->nsentinels && o + 1 < len; i++) {
        if (i) buf[o++] = ',';
        o += formatAddr(buf + o, len - o, u->sentinels[i].host, u->sentinels[i].port);
    }
    if (o < len) snprintf(buf + o, len - o, "/%s/%d", u->master, u->db);
}
