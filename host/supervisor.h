/* supervisor.h - `rsghost --workers N SCRIPT NAME`: a small master process
 * that keeps N consumers alive, the shape of nginx's master and Unicorn's.
 *
 * Each worker is a normal rsghost process (its own Lua state, connections
 * and heart), started from this same binary with the master's options, as
 * consumer NAME-1 ... NAME-N (no NAME: generated names, which need
 * heartbeats). The master runs no Lua and talks to no Redis:
 *
 *   - a worker that dies is started again under the same name, so its
 *     pending messages are replayed, after a backoff that doubles while it
 *     keeps dying young (0.1 s up to 10 s);
 *   - a worker that exits 2 (a usage or script error, which no restart
 *     mends), or dies young RSG_SUPERVISE_MAX_QUICK times in a row (a
 *     broken environment), makes the master stop the others and exit
 *     non-zero instead of looping;
 *   - SIGTERM/SIGINT stop every worker (each flushes its batch as usual; a
 *     second signal is passed on too, for an immediate exit) and the master
 *     exits 0 only if every worker stopped cleanly; SIGHUP is passed on;
 *   - no worker outlives the master: workers ask the kernel for SIGTERM
 *     when it dies (PR_SET_PDEATHSIG), kill -9 of the master included, and
 *     stop cleanly.
 *
 * The Redis URL reaches the workers through their environment, never their
 * command line, so `ps` shows no password. */
#ifndef RSG_SUPERVISOR_H
#define RSG_SUPERVISOR_H

#include "config.h"

/* Consecutive deaths within the first seconds of a worker's life after
 * which the master gives up. */
#define RSG_SUPERVISE_MAX_QUICK 5

/* Runs the master for opts (opts->workers > 0); exe is how this binary was
 * started (argv[0]). Returns the process exit status: 0 when every worker
 * stopped cleanly on a stop, 1 otherwise, 2 when a worker reported a usage
 * or script error. */
int rsgSupervise(const rsgOptions *opts, const char *exe);

/* In a worker (RSGHOST_SUPERVISOR_PID set by the master): asks for SIGTERM
 * when the master dies, and exits at once if it is already gone. Does
 * nothing in a process the master did not start. */
void rsgSupervisedInit(void);

#endif
