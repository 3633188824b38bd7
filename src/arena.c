/*
 * A growable bump allocator, the tape's memory. Chunks double in size; rewind
 * keeps them, so recording the same graph again calls no malloc and replay
 * only rewrites buffers that already exist. Only tg__arena_free returns memory.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* Under AddressSanitizer the arena tells it which bytes are handed out: a
 * chunk starts poisoned, each allocation unpoisons its own bytes and leaves a
 * poisoned red zone after them, and a rewind poisons everything again. An
 * op that writes past its output, or a read through a pointer from before a
 * reset, is then reported like a heap overflow or a use after free, although
 * the arena is a few large blocks to the C library (the tape asks ASan first
 * and refuses such a tensor as an op input). Other builds pay nothing. */
#ifdef TG__ASAN
#define POISON(p, n)   __asan_poison_memory_region((p), (n))
#define UNPOISON(p, n) __asan_unpoison_memory_region((p), (n))
#define RED_ZONE       ((size_t)TG__ALIGN)
#else
#define POISON(p, n)   ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#define RED_ZONE       ((size_t)0)
#endif

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
    POISON(c->mem, size);
    return c;
}

void *tg__arena_alloc(tg__arena *a, size_t size)
{
    if (tg__alloc_fault() || size > SIZE_MAX - 2 * TG__ALIGN - RED_ZONE) return NULL;
    size_t asked = size;
    size = (size + TG__ALIGN - 1) / TG__ALIGN * TG__ALIGN + RED_ZONE;
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
    UNPOISON(p, asked);
    memset(p, 0, asked);
    return p;
}

void tg__arena_rewind(tg__arena *a)
{
    for (tg__chunk *c = a->first; c; c = c->next)
        POISON(c->mem, c->size);
    a->head = a->first;
    if (a->head) a->head->used = 0;
}

void tg__arena_free(tg__arena *a)
{
    for (tg__chunk *c = a->first, *next; c; c = next) {
        next = c->next;
        UNPOISON(c->mem, c->size);
        free(c);
    }
    a->head = a->first = NULL;
}

size_t tg__arena_bytes(const tg__arena *a)
{
    size_t n = 0;
    for (const tg__chunk *c = a->first; c; c = c == a->head ? NULL : c->next)
        n += c->used;
    return n;
}
