/* file_out.c - see file_out.h. */
#include "file_out.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

typedef struct appendReq appendReq;

struct rsgFileOut {
    rsgFileOut *next; /* the set's list */
    char *path;       /* as the script gave it */
    uv_file fd;       /* -1 while not open */
    uint64_t dev;     /* st_dev and st_ino of the open file: the path names */
    uint64_t ino;     /*   it still while a stat of the path gives the same */
    unsigned reopen;  /* the set's reopen count when this was opened */
    int running;      /* head's steps are in flight */
    appendReq *head;  /* appends waiting, oldest first; head runs */
    appendReq *tail;
};

struct appendReq {
    uv_fs_t fs;       /* the step in flight; fs.data points back here */
    appendReq *next;  /* the file's queue */
    rsgFiles *files;  /* the set, for the loop and done */
    rsgFileOut *file; /* what this appends to */
    char *buf;        /* a copy of the data */
    size_t len;       /* its length */
    size_t off;       /* bytes already written */
    int fsync;        /* fsync before reporting done */
    unsigned reopen;  /* the set's reopen count when the open was asked for */
    int cbref;        /* passed back to done */
};

static void start(appendReq *r);

/* Closes f's descriptor, at once: after an fsync (or on an error) there is
 * nothing left for close() to flush, so it does not wait on the disk. */
static void closeFile(rsgFileOut *f) {
    if (f->fd < 0) return;
    uv_fs_t c;
    uv_fs_close(NULL, &c, f->fd, NULL);
    uv_fs_req_cleanup(&c);
    f->fd = -1;
}

/* r is done (err NULL) or failed: take it off its queue, tell the caller,
 * and start the next append to the same file. done may append again (the
 * next batch): that append finds the file idle and starts itself. */
static void finish(appendReq *r, const char *err) {
    rsgFileOut *f = r->file;
    rsgFiles *fs = r->files;
    f->head = r->next;
    if (!f->head) f->tail = NULL;
    f->running = 0;
    int cbref = r->cbref;
    free(r->buf);
    free(r);
    fs->done(fs->ud, cbref, err);
    if (!f->running && f->head) {
        f->running = 1;
        start(f->head);
    }
}

/* A step failed with libuv error code: the file is closed, so that the next
 * append starts from a fresh open (a full disk that was cleared, a file
 * that was removed), and r fails with the path and the reason. */
static void fail(appendReq *r, const char *step, int code) {
    char err[1024];
    snprintf(err, sizeof(err), "cannot %s '%s': %s", step, r->file->path, uv_strerror(code));
    closeFile(r->file);
    finish(r, err);
}

static void onFsync(uv_fs_t *req) {
    appendReq *r = req->data;
    int rc = (int)req->result;
    uv_fs_req_cleanup(req);
    /* EINVAL: a FIFO, a socket or a terminal (/dev/stdout under a
     * supervisor), which has no disk to sync: the write is all there is. */
    if (rc < 0 && rc != UV_EINVAL) return fail(r, "fsync", rc);
    finish(r, NULL);
}

static void onWrite(uv_fs_t *req);

/* Writes what is left of r's data, or moves on to the fsync. */
static void writeMore(appendReq *r) {
    rsgFileOut *f = r->file;
    int rc;
    if (r->off < r->len) {
        uv_buf_t b = uv_buf_init(r->buf + r->off, (unsigned)(r->len - r->off));
        rc = uv_fs_write(r->files->loop, &r->fs, f->fd, &b, 1, -1, onWrite);
        if (rc < 0) fail(r, "write to", rc);
    } else if (r->fsync) {
        rc = uv_fs_fsync(r->files->loop, &r->fs, f->fd, onFsync);
        if (rc < 0) fail(r, "fsync", rc);
    } else {
        finish(r, NULL);
    }
}

static void onWrite(uv_fs_t *req) {
    appendReq *r = req->data;
    ssize_t n = req->result;
    uv_fs_req_cleanup(req);
    if (n < 0) return fail(r, "write to", (int)n);
    r->off += (size_t)n; /* a short write (a signal, a full quota) goes on */
    writeMore(r);
}

static void onFstat(uv_fs_t *req) {
    appendReq *r = req->data;
    int rc = (int)req->result;
    uint64_t dev = req->statbuf.st_dev, ino = req->statbuf.st_ino;
    uv_fs_req_cleanup(req);
    if (rc < 0) return fail(r, "stat", rc);
    r->file->dev = dev;
    r->file->ino = ino;
    writeMore(r);
}

static void onOpen(uv_fs_t *req) {
    appendReq *r = req->data;
    int rc = (int)req->result;
    uv_fs_req_cleanup(req);
    if (rc < 0) return fail(r, "open", rc);
    r->file->fd = rc;
    /* The count from before the open: a SIGHUP that came while it ran may
     * have meant a file the open was already past, so it reopens again. */
    r->file->reopen = r->reopen;
    rc = uv_fs_fstat(r->files->loop, &r->fs, r->file->fd, onFstat);
    if (rc < 0) fail(r, "stat", rc);
}

/* The path's stat is in: write to the open file if the path still names it
 * and no reopen was asked for since it was opened; else (re)open the path. */
static void onStat(uv_fs_t *req) {
    appendReq *r = req->data;
    rsgFileOut *f = r->file;
    int rc = (int)req->result;
    uint64_t dev = req->statbuf.st_dev, ino = req->statbuf.st_ino;
    uv_fs_req_cleanup(req);
    if (f->fd >= 0 && rc == 0 && dev == f->dev && ino == f->ino && f->reopen == r->files->reopen)
        return writeMore(r);
    if (f->fd >= 0) {
        rsgInfo("reopening '%s' (%s)", f->path,
                f->reopen != r->files->reopen ? "SIGHUP" : "the path names another file now");
        closeFile(f);
    }
    r->reopen = r->files->reopen;
    rc = uv_fs_open(r->files->loop, &r->fs, f->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
                    0644, onOpen);
    if (rc < 0) fail(r, "open", rc);
}

/* First step of an append: stat the path (on the threadpool: a stat may
 * wait on a slow or network disk too). */
static void start(appendReq *r) {
    int rc = uv_fs_stat(r->files->loop, &r->fs, r->file->path, onStat);
    if (rc < 0) fail(r, "stat", rc);
}

void rsgFilesInit(rsgFiles *fs, uv_loop_t *loop, rsgFileDone done, void *ud) {
    memset(fs, 0, sizeof(*fs));
    fs->loop = loop;
    fs->done = done;
    fs->ud = ud;
}

/* The entry for path, made (not open yet) on first use; NULL out of memory. */
static rsgFileOut *fileOf(rsgFiles *fs, const char *path) {
    for (rsgFileOut *f = fs->files; f; f = f->next)
        if (strcmp(f->path, path) == 0) return f;
    rsgFileOut *f = calloc(1, sizeof(*f));
    if (!f) return NULL;
    f->path = strdup(path);
    if (!f->path) {
        free(f);
        return NULL;
    }
    f->fd = -1;
    f->next = fs->files;
    fs->files = f;
    return f;
}

int rsgFilesAppend(rsgFiles *fs, const char *path, const char *data, size_t len, int fsync,
                   int cbref) {
    rsgFileOut *f = fileOf(fs, path);
    if (!f) return -1;
    appendReq *r = calloc(1, sizeof(*r));
    if (!r) return -1;
    r->buf = malloc(len ? len : 1);
    if (!r->buf) {
        free(r);
        return -1;
    }
    memcpy(r->buf, data, len);
    r->len = len;
    r->fsync = fsync;
    r->cbref = cbref;
    r->files = fs;
    r->file = f;
    r->fs.data = r;
    if (f->tail)
        f->tail->next = r;
    else
        f->head = r;
    f->tail = r;
    if (!f->running) {
        f->running = 1;
        start(f->head);
    }
    return 0;
}

void rsgFilesReopen(rsgFiles *fs) {
    fs->reopen++;
}

void rsgFilesFree(rsgFiles *fs) {
    rsgFileOut *f = fs->files;
    while (f) {
        rsgFileOut *next = f->next;
        closeFile(f);
        for (appendReq *r = f->head; r;) {
            appendReq *rn = r->next;
            free(r->buf);
            free(r);
            r = rn;
        }
        free(f->path);
        free(f);
        f = next;
    }
    fs->files = NULL;
}
