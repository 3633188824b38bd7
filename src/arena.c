/*
 * A growable bump allocator, the tape's memory. Chunks double in size; rewind
 * keeps them, so recording the same graph again calls no malloc and replay
 * only rewrites buffers that already exist. Only tg__arena_free returns memory.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

struct tg__chunk {
    tg__chunk *next;
    size_t size, used; /* bytes of 'mem' */
    _Alignas(TG__ALIGN) unsigned char mem[];
};

#define FIRST_CHUNK ((size_t)64 * 1024)

static tg__chunk *chunk_new(size_t size)
{
    if (size > SIZE_MAX - sizeof(tg__chunk) - TG__ALIGN) return NULL;
    size_t bytes = (sizeof(tg__chunk) + size + TG__ALIGN - 1) / TG__ALIGN * TG__ALIGN;
    tg__chunk *c = tg__aligned_alloc(TG__ALIGN, bytes);
    if (!c) return NULL;
    c->next = NULL;
    c->size = size;
    c->used = 0;
    return c;
}

void *tg__arena_alloc(tg__arena *a, size_t size)
{
    if (tg__alloc_fault() || size > SIZE_MAX - TG__ALIGN) return NULL;
    size = (size + TG__ALIGN - 1) / TG__ALIGN * TG__ALIGN;
    if (size == 0) size = TG__ALIGN;
    /* Find room in the current chunk or a later (kept) one before growing. */
    while (a->head && a->head->size - a->head->used < size && a->head->next) {
        a->head = a->head->next;
        a->head->used = 0;
    }
    if (!a->head || a->head->size - a->head->used < size) {
        size_t want = a->head ? a->head->size * 2 : FIRST_CHUNK;
        if (want < size) want = size;
        tg__chunk *c = chunk_new(want);
        if (!c) return NULL;
        if (a->head)
            a->head->next = c; /* the loop above stopped at the last chunk */
        else
            a->first = c;
        a->head = c;
    }
    void *p = a->head->mem + a->head->used;
    a->head->used += size;
    memset(p, 0, size);
    return p;
}

void tg__arena_rewind(tg__arena *a)
{
    a->head = a->first;
    if (a->head) a->head->used = 0;
}

void tg__arena_free(tg__arena *a)
{
    for (tg__chunk *c = a->first, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    a->head = a->first = NULL;
}
