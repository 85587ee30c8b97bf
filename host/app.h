/* app.h - one running consumer: the wiring of connections, source, acks and
 * the Lua pipeline on one libuv loop, and the shutdown sequence.
 *
 * Shutdown (first SIGINT/SIGTERM): stop reading and drop the reader
 * connection (a blocked XREADGROUP cannot be cancelled otherwise; whatever
 * Redis delivered into it stays pending for us), let the pipeline flush its
 * partial batch through the sinks, wait for every ack to be confirmed, then
 * close the command connection and every handle, and return 0. A second
 * signal returns at once: unacknowledged messages stay pending in Redis. */
#ifndef RSG_APP_H
#define RSG_APP_H

#include "config.h"

/* Runs a consumer until it stops. Returns the process exit status. */
int rsgAppRun(const rsgOptions *opts);

#endif
