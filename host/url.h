/* url.h - Redis connection URLs.
 *
 *   redis://[[user]:password@]host[:port][/db]
 *   rediss://...                        the same over TLS
 *   unix:///path/to/socket[?db=N]
 *   redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/MASTER[/db]
 *   rediss+sentinel://...               sentinels and master over TLS
 *   redis+cluster://[[user]:password@]host[:port][,host[:port]...]
 *   rediss+cluster://...                a Redis Cluster, every node over TLS
 *
 * User and password may be percent-encoded; a lone credential
 * (redis://secret@host) is a password, as in redis-cli. IPv6 hosts go in
 * brackets. The query may hold db=N, and for Sentinel sentinel_user= and
 * sentinel_password= (the sentinels' own credentials); any other query
 * parameter is an error, never silently ignored. A cluster URL lists seed
 * nodes (any of them tells the slot map) and has database 0 only. */
#ifndef RSG_URL_H
#define RSG_URL_H

#include <stddef.h>

#define RSG_SENTINEL_PORT 26379

typedef struct rsgAddr {
    char *host; /* name or address, without IPv6 brackets */
    int port;
} rsgAddr;

typedef struct rsgRedisUrl {
    char *host;              /* TCP host; NULL for a unix socket, Sentinel or a cluster */
    int port;                /* TCP port, 6379 by default */
    char *path;              /* unix socket path, NULL otherwise */
    char *user;              /* ACL user name, NULL when none was given */
    char *password;          /* NULL when none was given */
    int db;                  /* SELECT index, 0 by default */
    int tls;                 /* rediss: every connection speaks TLS */
    rsgAddr *sentinels;      /* Sentinel: the sentinels to ask, in order */
    int nsentinels;          /* 0 unless this is a Sentinel URL */
    char *master;            /* Sentinel: the master's name */
    char *sentinel_user;     /* Sentinel: the sentinels' ACL user, or NULL */
    char *sentinel_password; /* Sentinel: the sentinels' password, or NULL */
    int cluster;             /* redis+cluster: a Redis Cluster */
    rsgAddr *seeds;          /* cluster: the nodes to learn the slot map from, in order */
    int nseeds;              /* 0 unless this is a cluster URL */
} rsgRedisUrl;

/* Parses url into *out. Returns 0, or -1 with a reason in err that never
 * contains a password (the URL is quoted whole, its passwords masked); on
 * error *out holds nothing to free. */
int rsgUrlParse(const char *url, rsgRedisUrl *out, char *err, size_t errlen);

/* Releases what rsgUrlParse allocated. Safe on a zeroed struct. */
void rsgUrlFree(rsgRedisUrl *u);

/* Writes a printable form with every password replaced by "***". */
void rsgUrlFormat(const rsgRedisUrl *u, char *buf, size_t len);

/* Copies any string that may be a URL, well formed or not, into buf with
 * every password replaced by "***": the userinfo's password (or a lone
 * credential) and the value of any query parameter whose name holds
 * "password". For error messages about what the user typed. */
void rsgUrlRedact(const char *s, char *buf, size_t len);

/* Overwrites the same passwords inside s in place with '*', so that they
 * no longer show in /proc/PID/cmdline or ps. */
void rsgUrlScrub(char *s);

#endif
