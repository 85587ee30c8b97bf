/* cluster_map.h - Redis Cluster routing: which slot a key is in, which node
 * serves a slot, and what a MOVED or ASK redirection says.
 *
 * A cluster splits its keys into 16384 slots: CRC16 (XMODEM) of the key,
 * modulo 16384. A key holding a hash tag - the text between its first '{'
 * and the first '}' after it, when that text is not empty - is hashed on the
 * tag alone, so "{orders}:eu" and "{orders}:us" share a slot, a node, and a
 * multi-key command. Each slot is served by one master; the map comes from
 * CLUSTER SLOTS (every version) or CLUSTER SHARDS (Redis 7), and goes stale
 * when the cluster fails over or migrates a slot: a command then gets
 * "-MOVED slot host:port" (the slot lives there now: ask the map again) or
 * "-ASK slot host:port" (this one key is being migrated: send ASKING and
 * the command there, once, without changing the map).
 *
 * Nothing here touches the network, libuv or Lua: the functions read replies
 * and strings, so they are unit-tested (host/tests/test_cluster_map.c) and
 * also built into librsghost_rules.so for the Lua side (key slots). */
#ifndef RSG_CLUSTER_MAP_H
#define RSG_CLUSTER_MAP_H

#include <stddef.h>

#include <hiredis/hiredis.h>

#define RSG_CLUSTER_SLOTS 16384

/* CRC16-CCITT (XMODEM: polynomial 0x1021, initial 0), as Redis computes
 * it: "123456789" gives 0x31C3. */
unsigned rsgClusterCrc16(const char *buf, size_t len);

/* The slot of key[0..len): of its hash tag when it has a non-empty one. */
int rsgClusterKeySlot(const char *key, size_t len);

/* One node of the map. */
typedef struct rsgClusterNode {
    char *host; /* address to connect to */
    int port;
    char *id;   /* the node's id, or NULL when the reply did not give it */
    int master; /* 1 for a master (serves slots), 0 for a replica */
    int of;     /* a replica: index of its master in nodes[]; a master: -1 */
} rsgClusterNode;

/* The slot map: every node the reply named (masters and replicas) and the
 * master of each slot. */
typedef struct rsgClusterMap {
    rsgClusterNode *nodes;          /* masters and replicas, masters first seen first */
    int nnodes;                     /* how many */
    short owner[RSG_CLUSTER_SLOTS]; /* index into nodes of the slot's master, -1: none */
    int covered;                    /* slots that have a master */
} rsgClusterMap;

/* Builds *m from a CLUSTER SLOTS reply: [[start, end, [host, port, id?, ...],
 * replica...], ...]. A node whose host is empty or "?" (Redis 7: endpoint
 * unknown) is at asked_host, the node that answered. Returns 0, or -1 with
 * a reason in err and *m holding nothing to free. */
int rsgClusterMapFromSlots(rsgClusterMap *m, const redisReply *r, const char *asked_host, char *err,
                           size_t errlen);

/* The same from a CLUSTER SHARDS reply (Redis 7, RESP2: each shard is
 * ["slots", [start, end, ...], "nodes", [[name, value, ...], ...]]);
 * endpoint, then ip, is the host; failed nodes are left out. */
int rsgClusterMapFromShards(rsgClusterMap *m, const redisReply *r, const char *asked_host,
                            char *err, size_t errlen);

/* Index into m->nodes of the master serving slot, or -1. */
int rsgClusterMapOwner(const rsgClusterMap *m, int slot);

/* Index of the node at host:port, or -1. */
int rsgClusterMapFind(const rsgClusterMap *m, const char *host, int port);

/* Releases what the map holds; the struct is left empty (no owners). Safe
 * on a zeroed or already freed map. */
void rsgClusterMapFree(rsgClusterMap *m);

/* The slot of the first key of cmd[0..len), a command in RESP form (as
 * redisFormatCommandArgv makes it), or -1 for a command without keys, which
 * any master may serve, or text that is not a RESP array of bulk strings.
 * The rule: scripts and functions (EVAL, EVALSHA, FCALL and their _RO
 * forms) name their keys after numkeys; XREAD and XREADGROUP after
 * STREAMS; XGROUP, XINFO, OBJECT and MEMORY after a subcommand; commands of
 * the server or the connection (PING, INFO, CLUSTER, PUBLISH, ...) have
 * none; every other command's first argument is its first key. */
int rsgClusterCommandSlot(const char *cmd, size_t len);

/* 1 when the command cmd[0..len) (RESP form) is `name` (any case). */
int rsgClusterCommandIs(const char *cmd, size_t len, const char *name);

/* A redirection in an error reply. */
typedef struct rsgClusterRedirect {
    int ask;        /* 1: ASK (this key, once, after ASKING); 0: MOVED (the slot moved) */
    int slot;       /* the slot it is about */
    char host[256]; /* where to go; empty when Redis did not know the endpoint */
    int port;
} rsgClusterRedirect;

/* Reads err[0..len) (an error reply's text): "MOVED 3999 127.0.0.1:6381",
 * "ASK 3999 [::1]:6381" or "ASK 3999 ::1:6381" (the port follows the last
 * ':'), ":6381" with no host. Returns 1 and fills *out for a redirection,
 * 0 for any other text (*out untouched). */
int rsgClusterParseRedirect(const char *err, size_t len, rsgClusterRedirect *out);

#endif
