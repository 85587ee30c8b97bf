/* arena.c - see arena.h. */
#include "arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK_SIZE (256 * 1024)

struct rsgArenaBlock {
    rsgArenaBlock *next;
    size_t used, cap;
    max_align_t data[]; /* aligned storage */
};

/* Every object carries its arena, so freeObject (which gets no privdata)
 * can find it; `top` marks the root of a reply. */
typedef struct arenaObj {
    rsgReplyArena *arena;
    int top;
    redisReply r;
} arenaObj;

static void *arenaAlloc(rsgReplyArena *a, size_t size) {
    size = (size + 15) & ~(size_t)15;
    rsgArenaBlock *b = a->blocks;
    if (!b || b->cap - b->used < size) {
        size_t cap = size > BLOCK_SIZE ? size : BLOCK_SIZE;
        b = malloc(sizeof(*b) + cap);
        if (!b) return NULL;
        b->used = 0;
        b->cap = cap;
        b->next = a->blocks;
        a->blocks = b;
    }
    void *p = (char *)b->data + b->used;
    b->used += size;
    return p;
}

/* Keeps the oldest block (at least BLOCK_SIZE) and forgets every object. */
static void arenaReset(rsgReplyArena *a) {
    rsgArenaBlock *b = a->blocks;
    if (!b) return;
    while (b->next) {
        rsgArenaBlock *next = b->next;
        free(b);
        b = next;
    }
    b->used = 0;
    a->blocks = b;
}

static redisReply *newObject(const redisReadTask *task, int type) {
    rsgReplyArena *a = task->privdata;
    arenaObj *o = arenaAlloc(a, sizeof(*o));
    if (!o) return NULL;
    memset(o, 0, sizeof(*o));
    o->arena = a;
    o->top = task->parent == NULL;
    o->r.type = type;
    if (task->parent) {
        redisReply *parent = task->parent->obj;
        parent->element[task->idx] = &o->r;
    }
    return &o->r;
}

static void *createString(const redisReadTask *task, char *str, size_t len) {
    redisReply *r = newObject(task, task->type);
    if (!r) return NULL;
    char *buf = arenaAlloc(((arenaObj *)((char *)r - offsetof(arenaObj, r)))->arena, len + 1);
    if (!buf) return NULL;
    memcpy(buf, str, len);
    buf[len] = '\0';
    r->str = buf;
    r->len = len;
    return r;
}

static void *createArray(const redisReadTask *task, int elements) {
    redisReply *r = newObject(task, REDIS_REPLY_ARRAY);
    if (!r) return NULL;
    if (elements > 0) {
        r->element = arenaAlloc(task->privdata, (size_t)elements * sizeof(redisReply *));
        if (!r->element) return NULL;
        memset(r->element, 0, (size_t)elements * sizeof(redisReply *));
    }
    r->elements = elements > 0 ? (size_t)elements : 0;
    return r;
}

static void *createInteger(const redisReadTask *task, long long value) {
    redisReply *r = newObject(task, REDIS_REPLY_INTEGER);
    if (r) r->integer = value;
    return r;
}

static void *createNil(const redisReadTask *task) {
    return newObject(task, REDIS_REPLY_NIL);
}

static void freeObject(void *obj) {
    arenaObj *o = (arenaObj *)((char *)obj - offsetof(arenaObj, r));
    /* Only a whole reply is ever freed by hiredis; its children go with it. */
    if (o->top) arenaReset(o->arena);
}

redisReplyObjectFunctions rsgArenaReplyFunctions = {createString, createArray, createInteger,
                                                    createNil, freeObject};

void rsgArenaFree(rsgReplyArena *a) {
    while (a->blocks) {
        rsgArenaBlock *next = a->blocks->next;
        free(a->blocks);
        a->blocks = next;
    }
}
