/* url.c - see url.h. */
#include "url.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int rsgUrlParse(const char *url, rsgRedisUrl *out, char *err, size_t errlen) {
    memset(out, 0, sizeof(*out));
    out->port = 6379;

    if (strncmp(url, "unix://", 7) == 0) {
        const char *p = url + 7, *q = strchr(p, '?');
        size_t plen = q ? (size_t)(q - p) : strlen(p);
        if (plen == 0 || p[0] != '/') {
            snprintf(err, errlen, "unix socket URL needs an absolute path: unix:///path/to/socket");
            return -1;
        }
        if (q) {
            if (strncmp(q, "?db=", 4) != 0 ||
                parseint(q + 4, strlen(q + 4), 0, 1 << 30, &out->db)) {
                snprintf(err, errlen, "unix socket URL: expected ?db=N after the path");
                return -1;
            }
        }
        out->path = strndup(p, plen);
        return 0;
    }

    if (strncmp(url, "redis://", 8) != 0) {
        snprintf(err, errlen, "redis URL must start with redis:// or unix:// (got '%.20s')", url);
        return -1;
    }
    const char *p = url + 8;
    const char *end = p + strcspn(p, "/?#");
    /* The last '@' before the path separates credentials: passwords may hold '@'
     * only percent-encoded, but be lenient with a raw one. */
    const char *at = NULL;
    for (const char *s = p; s < end; s++)
        if (*s == '@') at = s;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon) {
            if (colon > p && !(out->user = pctdecode(p, (size_t)(colon - p)))) goto badcred;
            if (!(out->password = pctdecode(colon + 1, (size_t)(at - colon - 1)))) goto badcred;
        } else if (at > p) {
            /* redis://secret@host: like redis-cli, a lone credential is the password. */
            if (!(out->password = pctdecode(p, (size_t)(at - p)))) goto badcred;
        }
        p = at + 1;
    }

    const char *hostEnd, *portStart = NULL;
    if (*p == '[') {
        const char *rb = memchr(p, ']', (size_t)(end - p));
        if (!rb) {
            snprintf(err, errlen, "redis URL: unterminated '[' in IPv6 host");
            goto fail;
        }
        out->host = strndup(p + 1, (size_t)(rb - p - 1));
        hostEnd = rb + 1;
        if (hostEnd < end && *hostEnd == ':') portStart = hostEnd + 1;
    } else {
        const char *colon = memchr(p, ':', (size_t)(end - p));
        hostEnd = colon ? colon : end;
        out->host = strndup(p, (size_t)(hostEnd - p));
        if (colon) portStart = colon + 1;
    }
    if (!out->host || out->host[0] == '\0') {
        free(out->host);
        out->host = strdup("127.0.0.1");
    }
    if (portStart && parseint(portStart, (size_t)(end - portStart), 1, 65535, &out->port)) {
        snprintf(err, errlen, "redis URL: bad port '%.*s'", (int)(end - portStart), portStart);
        goto fail;
    }
    if (*end == '/') {
        const char *db = end + 1;
        size_t dblen = strcspn(db, "?#");
        if (dblen && parseint(db, dblen, 0, 1 << 30, &out->db)) {
            snprintf(err, errlen, "redis URL: bad database number '%.*s'", (int)dblen, db);
            goto fail;
        }
    }
    return 0;

badcred:
    snprintf(err, errlen, "redis URL: malformed %%-escape in user or password");
fail:
    rsgUrlFree(out);
    return -1;
}

void rsgUrlFree(rsgRedisUrl *u) {
    free(u->host);
    free(u->path);
    free(u->user);
    if (u->password) {
        /* Do not leave the secret in freed heap memory. */
        memset(u->password, 0, strlen(u->password));
        free(u->password);
    }
    memset(u, 0, sizeof(*u));
    u->port = 6379;
}

void rsgUrlFormat(const rsgRedisUrl *u, char *buf, size_t len) {
    if (u->path) {
        snprintf(buf, len, "unix://%s?db=%d", u->path, u->db);
        return;
    }
    int v6 = strchr(u->host, ':') != NULL;
    snprintf(buf, len, "redis://%s%s%s%s%s%s:%d/%d", u->user ? u->user : "",
             u->password ? ":***" : "", (u->user || u->password) ? "@" : "", v6 ? "[" : "", u->host,
             v6 ? "]" : "", u->port, u->db);
}

void rsgUrlScrub(char *s) {
    if (strncmp(s, "redis://", 8) != 0) return;
    char *p = s + 8, *end = p + strcspn(p, "/?#"), *at = NULL;
    for (char *q = p; q < end; q++)
        if (*q == '@') at = q;
    if (!at) return;
    char *colon = memchr(p, ':', (size_t)(at - p));
    char *from = colon ? colon + 1 : p;
    memset(from, '*', (size_t)(at - from));
}
