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

static void *arenaGrow(rsgReplyArena *a, size_t size);

static inline void *arenaAlloc(rsgReplyArena *a, size_t size) {
    size = (size + 15) & ~(size_t)15;
    rsgArenaBlock *b = a->cur;
    if (__builtin_expect(!b || b->cap - b->used < size, 0)) return arenaGrow(a, size);
    void *p = (char *)b->data + b->used;
    b->used += size;
    return p;
}

/* Moves on to the next block, reusing the blocks of earlier replies before
 * asking malloc: fresh large blocks would be fresh mmaps and page faults
 * for every read. A string larger than a block gets a block of its own,
 * freed at the next reset. */
static void *arenaGrow(rsgReplyArena *a, size_t size) {
    if (size > BLOCK_SIZE) {
        rsgArenaBlock *big = malloc(sizeof(*big) + size);
        if (!big) return NULL;
        big->used = big->cap = size;
        big->next = a->big;
        a->big = big;
        return big->data;
    }
    rsgArenaBlock *next = a->cur ? a->cur->next : a->blocks;
    if (!next) {
        next = malloc(sizeof(*next) + BLOCK_SIZE);
        if (!next) return NULL;
        next->cap = BLOCK_SIZE;
        next->next = NULL;
        if (a->cur)
            a->cur->next = next;
        else
            a->blocks = next;
    }
    next->used = size;
    a->cur = next;
    return next->data;
}

/* Forgets every object; keeps the blocks for the next reply. */
static void arenaReset(rsgReplyArena *a) {
    while (a->big) {
        rsgArenaBlock *next = a->big->next;
        free(a->big);
        a->big = next;
    }
    a->cur = a->blocks;
    if (a->cur) a->cur->used = 0;
}

static redisReply *newObject(const redisReadTask *task, int type, size_t extra) {
    rsgReplyArena *a = task->privdata;
    arenaObj *o = arenaAlloc(a, sizeof(*o) + extra);
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
    /* The string lives right behind its object: one allocation. */
    redisReply *r = newObject(task, task->type, len + 1);
    if (!r) return NULL;
    char *buf = (char *)((arenaObj *)((char *)r - offsetof(arenaObj, r)) + 1);
    memcpy(buf, str, len);
    buf[len] = '\0';
    r->str = buf;
    r->len = len;
    return r;
}

/* hiredis 1.x counts elements in a size_t, 0.14 in an int: one body for both. */
static void *newArray(const redisReadTask *task, size_t elements) {
    redisReply *r = newObject(task, task->type, 0);
    if (!r) return NULL;
    if (elements > 0) {
        r->element = arenaAlloc(task->privdata, elements * sizeof(redisReply *));
        if (!r->element) return NULL;
        memset(r->element, 0, elements * sizeof(redisReply *));
    }
    r->elements = elements;
    return r;
}

#if HIREDIS_MAJOR >= 1
static void *createArray(const redisReadTask *task, size_t elements) {
    return newArray(task, elements);
}
#else
static void *createArray(const redisReadTask *task, int elements) {
    return newArray(task, elements > 0 ? (size_t)elements : 0);
}
#endif

static void *createInteger(const redisReadTask *task, long long value) {
    redisReply *r = newObject(task, REDIS_REPLY_INTEGER, 0);
    if (r) r->integer = value;
    return r;
}

static void *createNil(const redisReadTask *task) {
    return newObject(task, REDIS_REPLY_NIL, 0);
}

#if HIREDIS_MAJOR >= 1
/* RESP3 types hiredis 1.x knows. The host speaks RESP2, so these only
 * complete the table; they are built as hiredis itself builds them. */
static void *createDouble(const redisReadTask *task, double value, char *str, size_t len) {
    redisReply *r = createString(task, str, len);
    if (r) r->dval = value;
    return r;
}

static void *createBool(const redisReadTask *task, int value) {
    redisReply *r = newObject(task, REDIS_REPLY_BOOL, 0);
    if (r) r->integer = value != 0;
    return r;
}
#endif

static void freeObject(void *obj) {
    arenaObj *o = (arenaObj *)((char *)obj - offsetof(arenaObj, r));
    /* Only a whole reply is ever freed by hiredis; its children go with it. */
    if (o->top) arenaReset(o->arena);
}

#if HIREDIS_MAJOR >= 1
redisReplyObjectFunctions rsgArenaReplyFunctions = {
    createString, createArray, createInteger, createDouble, createNil, createBool, freeObject};
#else
redisReplyObjectFunctions rsgArenaReplyFunctions = {createString, createArray, createInteger,
                                                    createNil, freeObject};
#endif

void rsgArenaFree(rsgReplyArena *a) {
    arenaReset(a);
    while (a->blocks) {
        rsgArenaBlock *next = a->blocks->next;
        free(a->blocks);
        a->blocks = next;
    }
    a->cur = NULL;
}
