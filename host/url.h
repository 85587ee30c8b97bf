/* url.h - Redis connection URLs.
 *
 *   redis://[[user]:password@]host[:port][/db]
 *   unix:///path/to/socket[?db=N]
 *
 * User and password may be percent-encoded. IPv6 hosts go in brackets. */
#ifndef RSG_URL_H
#define RSG_URL_H

#include <stddef.h>

typedef struct rsgRedisUrl {
    char *host;     /* TCP host, NULL for a unix socket */
    int port;       /* TCP port, 6379 by default */
    char *path;     /* unix socket path, NULL for TCP */
    char *user;     /* ACL user name, NULL when none was given */
    char *password; /* NULL when none was given */
    int db;         /* SELECT index, 0 by default */
} rsgRedisUrl;

/* Parses url into *out. Returns 0, or -1 with a reason in err (which never
 * contains the password); on error *out holds nothing to free. */
int rsgUrlParse(const char *url, rsgRedisUrl *out, char *err, size_t errlen);

/* Releases what rsgUrlParse allocated. Safe on a zeroed struct. */
void rsgUrlFree(rsgRedisUrl *u);

/* Writes a printable form with the password replaced by "***". */
void rsgUrlFormat(const rsgRedisUrl *u, char *buf, size_t len);

/* Overwrites the password inside the URL string s in place with '*', so that
 * it no longer shows in /proc/PID/cmdline or ps. Does nothing when s holds
 * no password. */
void rsgUrlScrub(char *s);

#endif
