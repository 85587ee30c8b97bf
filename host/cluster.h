/* cluster.h - a connection to a whole Redis Cluster (redis+cluster://).
 *
 * An rsgConn whose URL is a cluster URL is a router: rsgConnStart learns the
 * slot map (CLUSTER SLOTS, from the seed nodes, then from any node it is
 * connected to) and opens one plain rsgConn per master. Each command goes
 * to the master of its first key's slot (cluster_map.h); a command without
 * a key goes to any master. The router is ready when it has a map and every
 * master's connection is either ready or down (its last attempt failed:
 * refused, reset, or a handshake that timed out), at least one ready; its
 * on_ready, on_lost and on_fatal fire as a single connection's would, so
 * callers (acks, the script's commands, setup) need not know they talk to
 * a cluster:
 *
 *  - A command for a slot whose master is down waits in the router (in
 *    order, per master) and goes out when that master is ready again; if
 *    the map drops that master (a failover) it gets the NULL reply of a
 *    lost connection, and the caller resends as after any loss. With
 *    c->fail_fast it gets a "-CLUSTERDOWN ..." error reply instead, on the
 *    next turn of the loop (for setup that must not wait for every node).
 *    While a master is down the map is asked for every
 *    DOWN_REFRESH_TICKS ticks: when it changed, the router goes through
 *    on_lost and on_ready (moved set), as after a failover.
 *
 *  - "-MOVED slot host:port": the command is sent again there when that
 *    node is a master we are connected to (a migrated slot), and the map
 *    is asked for again; otherwise (a failover promoted a node we do not
 *    know yet) the command's callback gets the NULL reply of a lost
 *    connection, the router goes through on_lost, learns the new map and
 *    comes back through on_ready (with `moved` set when a slot changed
 *    master), exactly as after a reconnect: acks are resent then.
 *  - "-ASK slot host:port": ASKING, then the command, on that node, once.
 *  - "-CLUSTERDOWN" and "-TRYAGAIN" (a failover or a migration under way):
 *    like a lost connection, retried after the map is learnt again.
 *  - A master's connection lost: on_lost, and the map is asked for every
 *    RSG_CLUSTER_REFRESH_MS until a ready set of masters serves it again.
 *
 * SUBSCRIBE and PSUBSCRIBE go to one master (a cluster delivers a PUBLISH
 * to every node), on a connection that then carries nothing else; after
 * on_ready the owner subscribes again, as after a reconnect.
 *
 * A cross-slot command gets Redis's own CROSSSLOT error. Blocking reads do
 * not go through the router (a blocked connection carries nothing else):
 * the cluster source opens its own connection per slot, to the node
 * rsgClusterNodeUrl names. */
#ifndef RSG_CLUSTER_H
#define RSG_CLUSTER_H

#include "conn.h"

#define RSG_CLUSTER_REFRESH_MS 250

/* Called by rsgConnStart for a cluster URL, with c's fields and timer set
 * up: starts learning the map. Never fails: trouble becomes retries. */
void rsgClusterStart(rsgConn *c);

/* rsgConnCommand and rsgConnFormatted for a router: the same contract. */
int rsgClusterCommand(rsgConn *c, redisCallbackFn *fn, void *privdata, int argc, const char **argv,
                      const size_t *argvlen);
int rsgClusterFormatted(rsgConn *c, redisCallbackFn *fn, void *privdata, const char *cmd,
                        size_t len);

/* rsgConnFlush for a router: every master's connection. */
void rsgClusterFlush(rsgConn *c);

/* rsgConnClose for a router: closes every node connection; the router's
 * state is freed once they are closed. c->cluster is NULL afterwards. */
void rsgClusterClose(rsgConn *c);

/* Someone saw the map go stale (a MOVED on a connection of their own, a
 * lost blocking reader): the router goes through on_lost and learns the
 * map again. Does nothing on a router that is not ready or is closed. */
void rsgClusterRefresh(rsgConn *c);

/* A URL (heap copy: free with rsgUrlFree) of the master serving slot, with
 * the router's credentials and TLS, for a connection of the caller's own.
 * Returns 0, or -1 when no master is known for it (or out of memory). */
int rsgClusterNodeUrl(const rsgConn *c, int slot, rsgRedisUrl *out);

/* 1 when the router's connection to the master of slot is ready: a
 * command for it goes out at once rather than waiting. */
int rsgClusterSlotReady(const rsgConn *c, int slot);

/* The number of masters in the map (0 before one is known). */
int rsgClusterMasters(const rsgConn *c);

#endif
