/* file_out.h - appending to files without blocking the loop (rsghost.sink.file).
 *
 * Every step that may wait on a disk (stat, open, write, fsync) runs on
 * libuv's threadpool as a uv_fs request; the loop only starts them and
 * hears back. An append to a path goes: stat the path -> (re)open it when it
 * is not open yet, when a SIGHUP asked for it, or when the path no longer
 * names the open file (same st_dev/st_ino: logrotate moved it away) ->
 * write all of it (O_APPEND) -> fsync when asked -> done(err NULL). So a
 * batch is reported written only once its bytes are on disk, and after a
 * rotation by `mv` the next batch goes to the new file while nothing of the
 * old one is lost (it was fsynced before the move could be seen).
 *
 * Appends to one path run one at a time, in the order asked: a reopen never
 * pulls the descriptor from under a write in flight. */
#ifndef RSG_FILE_OUT_H
#define RSG_FILE_OUT_H

#include <stddef.h>
#include <uv.h>

typedef struct rsgFileOut rsgFileOut;

/* done(ud, cbref, err): the append finished; err NULL, or why it failed
 * (path and system error; valid during the call). */
typedef void (*rsgFileDone)(void *ud, int cbref, const char *err);

typedef struct rsgFiles {
    uv_loop_t *loop;   /* where the requests run */
    rsgFileOut *files; /* every path appended to so far */
    unsigned reopen;   /* bumped by rsgFilesReopen; a file opened before reopens */
    rsgFileDone done;  /* called when an append finished */
    void *ud;          /* passed back to done */
} rsgFiles;

/* Prepares an empty set on loop (which must outlive it). */
void rsgFilesInit(rsgFiles *fs, uv_loop_t *loop, rsgFileDone done, void *ud);

/* Appends data[0..len) to path (created 0644 if missing), fsyncing it when
 * fsync is set, and calls fs->done(ud, cbref, err) when finished (from a
 * libuv callback; from inside this call only if libuv refused to start a
 * request). data is copied. Returns 0, or -1 when out of memory (done is
 * then not called). */
int rsgFilesAppend(rsgFiles *fs, const char *path, const char *data, size_t len, int fsync,
                   int cbref);

/* Every file is reopened before its next append (SIGHUP, after a rotation
 * that copied and truncated, or one the inode check cannot see). */
void rsgFilesReopen(rsgFiles *fs);

/* Closes the files and frees everything. Only once the loop has run out of
 * requests (after uv_run returned): an append in flight holds its file. */
void rsgFilesFree(rsgFiles *fs);

#endif
