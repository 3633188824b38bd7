/*
 * The library's one door to the heap. Every allocation passes through these
 * wrappers, so a test can make the N-th one fail and prove that each failure
 * path returns a status and frees what it held. Memory from them is released
 * with plain free().
 */
#include "internal.h"

#include <stdlib.h>

long tg__alloc_fail_after = -1;
long tg__alloc_refused = 0;

/* The count stops at zero, so once one allocation has failed every later one
 * fails too, as when memory is really exhausted. */
bool tg__alloc_fault(void)
{
    if (tg__alloc_fail_after < 0) return false;
    if (tg__alloc_fail_after == 0) {
        tg__alloc_refused++;
        return true;
    }
    tg__alloc_fail_after--;
    return false;
}

void *tg__malloc(size_t size) { return tg__alloc_fault() ? NULL : malloc(size); }

void *tg__calloc(size_t n, size_t size) { return tg__alloc_fault() ? NULL : calloc(n, size); }

/* Like realloc: on failure the old block is kept and still owned by the caller. */
void *tg__realloc(void *p, size_t size) { return tg__alloc_fault() ? NULL : realloc(p, size); }

void *tg__aligned_alloc(size_t align, size_t size)
{
    return tg__alloc_fault() ? NULL : aligned_alloc(align, size);
}
