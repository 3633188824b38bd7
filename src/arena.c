/*
 * A growable bump allocator, the tape's memory. Chunks double in size up to
 * MAX_CHUNK, then stay there, so a long tape wastes at most one chunk's tail;
 * rewind keeps them, so recording the same graph again calls no malloc and
 * replay only rewrites buffers that already exist. Only tg__arena_free
 * returns memory.
 *
 * Blocks are TG__ALIGN-aligned (a cache line, the widest vector) unless the
 * caller asks for less: a one-element node's tensor header, data and input
 * lists take 16-byte steps (tg__arena_alloc_small), 192 bytes instead of the
 * 384 they took when every block started a cache line.
 */
#define _DEFAULT_SOURCE /* madvise */
#include "internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

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
#define MAX_CHUNK   ((size_t)16 * 1024 * 1024)
#define HUGE_PAGE   ((uintptr_t)2 * 1024 * 1024)

static tg__chunk *chunk_new(size_t size)
{
    if (size > SIZE_MAX - sizeof(tg__chunk) - TG__ALIGN) return NULL;
    size_t bytes = (sizeof(tg__chunk) + size + TG__ALIGN - 1) / TG__ALIGN * TG__ALIGN;
    tg__chunk *c = tg__aligned_alloc(TG__ALIGN, bytes);
    if (!c) return NULL;
    c->next = NULL;
    c->size = size;
    c->used = 0;
#ifdef MADV_HUGEPAGE
    /* A first recording touches every page of its chunks once: with 4 KiB
     * pages a long tape paid more for page faults than for recording (about
     * 1 us per node on a fresh tape, measured on a loaded VM). Transparent
     * huge pages, where the system offers them on request, fault 2 MiB at a
     * time; a hint, so a refusal changes nothing. */
    if (bytes >= 2 * HUGE_PAGE) {
        uintptr_t lo = ((uintptr_t)c + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
        uintptr_t hi = ((uintptr_t)c + bytes) / HUGE_PAGE * HUGE_PAGE;
        if (hi > lo) madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
    }
#endif
    POISON(c->mem, size);
    return c;
}

/* A block of 'size' bytes at a multiple of 'align' (16 or TG__ALIGN), owning
 * its bytes up to the next multiple of 'align'. */
static void *arena_alloc(tg__arena *a, size_t size, size_t align)
{
    if (tg__alloc_fault() || size > SIZE_MAX - 2 * TG__ALIGN - RED_ZONE) return NULL;
    size_t asked = size;
    size = (size + align - 1) / align * align + RED_ZONE;
    if (size == 0) size = align;
    /* Find room in the current chunk or a later (kept) one before growing.
     * Chunk sizes and every block's size are multiples of 16, so a 16-aligned
     * start needs rounding up to 'align' only. */
    for (;;) {
        if (a->head) {
            size_t at = (a->head->used + align - 1) / align * align;
            if (at <= a->head->size && a->head->size - at >= size) {
                void *p = a->head->mem + at;
                a->head->used = at + size;
                UNPOISON(p, asked);
                memset(p, 0, asked);
                return p;
            }
            if (a->head->next) {
                a->head = a->head->next;
                a->head->used = 0;
                continue;
            }
        }
        size_t want = a->head ? a->head->size * 2 : FIRST_CHUNK;
        if (want > MAX_CHUNK) want = MAX_CHUNK;
        if (want < size) want = (size + TG__ALIGN - 1) / TG__ALIGN * TG__ALIGN;
        tg__chunk *c = chunk_new(want);
        if (!c) return NULL;
        if (a->head)
            a->head->next = c; /* the loop above stopped at the last chunk */
        else
            a->first = c;
        a->head = c;
    }
}

void *tg__arena_alloc(tg__arena *a, size_t size) { return arena_alloc(a, size, TG__ALIGN); }

void *tg__arena_alloc_small(tg__arena *a, size_t size) { return arena_alloc(a, size, 16); }

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
