/* main.c - rsghost's entry point: arguments in, exit status out. The work is
 * in app.c; this file only parses, hides the password and dispatches. */
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "config.h"
#include "log.h"
#include "supervisor.h"
#include "tls.h"
#include "url.h"

int main(int argc, char **argv) {
    rsgOptions opts;
    char err[512];
    if (rsgOptionsParse(&opts, argc, argv, err, sizeof(err)) != 0) {
        fprintf(stderr, "rsghost: %s\n", err);
        return 2;
    }
    if (opts.help) {
        rsgOptionsUsage(stdout);
        return 0;
    }
    if (opts.version) {
        printf("rsghost %s\ntls: %s\n", RSGHOST_VERSION, rsgTlsDescribe());
        return 0;
    }
    rsgLogLevel level;
    if (rsgLogParseLevel(opts.log_level, &level) != 0) {
        fprintf(stderr, "rsghost: unknown log level '%s' (debug, info, warn or error)\n",
                opts.log_level);
        return 2;
    }
    rsgLogSetLevel(level);
    rsgLogFormat format;
    if (rsgLogParseFormat(opts.log_format, &format) != 0) {
        fprintf(stderr, "rsghost: unknown log format '%s' (text, logfmt or json)\n",
                opts.log_format);
        return 2;
    }
    rsgLogSetFormat(format);
    /* Batches and reads are large (a sink's RPUSH of a thousand lines is
     * ~100 KB) and come every few milliseconds. glibc would hand each such
     * buffer back to the kernel and fault it in again: the profile showed a
     * tenth of the time in page faults. Keep freed memory for reuse; the
     * peak stays bounded by max_in_flight. */
    mallopt(M_MMAP_THRESHOLD, 64 * 1024 * 1024);
    mallopt(M_TRIM_THRESHOLD, 256 * 1024 * 1024);

    /* Take a copy of the URL, then hide the password from ps and
     * /proc/PID/cmdline, which show argv's memory as it is now. */
    char *url = strdup(opts.redis_url);
    if (!url) return 1;
    if (opts.redis_arg) rsgUrlScrub(opts.redis_arg);
    opts.redis_url = url;
    /* SIGINT/SIGTERM wait (blocked) until the loop's handlers are in place:
     * a stop asked for while the script loads is then a clean stop, not a
     * kill. app.c unblocks them. */
    sigset_t stops;
    sigemptyset(&stops);
    sigaddset(&stops, SIGINT);
    sigaddset(&stops, SIGTERM);
    sigprocmask(SIG_BLOCK, &stops, NULL);
    int rc;
    if (opts.workers > 0 && !opts.check && opts.command == RSG_CMD_RUN) {
        rc = rsgSupervise(&opts, argv[0]);
    } else {
        rsgSupervisedInit();
        rc = rsgAppRun(&opts);
    }
    memset(url, 0, strlen(url));
    free(url);
    return rc;
}
