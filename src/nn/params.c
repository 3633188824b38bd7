/*
 * Named parameters: a registry that owns its tensors. A uthash table finds a
 * parameter by name; a separate array keeps insertion order, because a hash
 * table's order is not something checkpoints, optimizers or a printed summary
 * should depend on.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* A failed insertion must come back as a status, not end the process; the
 * table's memory comes from the library's allocator like everything else. */
#define HASH_NONFATAL_OOM    1
#define uthash_malloc(sz)    tg__malloc(sz)
#define uthash_free(ptr, sz) free(ptr)
#include <uthash.h>

typedef struct param_entry {
    char *name; /* owned copy; the hash key points here */
    tg_tensor *t;
    UT_hash_handle hh;
} param_entry;

struct tg_params {
    param_entry *by_name; /* uthash head */
    param_entry **order;  /* n entries in insertion order */
    size_t n, cap;
};

tg_params *tg_params_new(void)
{
    tg_params *ps = tg__calloc(1, sizeof(tg_params));
    if (!ps) tg__fail_call(TG_ERR_NOMEM, "params_new: out of memory");
    return ps;
}

static void entry_free(param_entry *e)
{
    tg_tensor_free(e->t); /* its gradient goes with it */
    free(e->name);
    free(e);
}

void tg__params_truncate(tg_params *ps, size_t count)
{
    if (!ps) return;
    while (ps->n > count) {
        param_entry *e = ps->order[--ps->n];
        HASH_DEL(ps->by_name, e);
        entry_free(e);
    }
}

void tg_params_free(tg_params *ps)
{
    if (!ps) return;
    tg__params_truncate(ps, 0);
    free(ps->order);
    free(ps);
}

static bool grow_order(tg_params *ps)
{
    if (ps->n < ps->cap) return true;
    size_t cap = ps->cap ? ps->cap * 2 : 16;
    if (cap > SIZE_MAX / sizeof *ps->order) return false;
    param_entry **order = tg__realloc(ps->order, cap * sizeof *order);
    if (!order) return false;
    ps->order = order;
    ps->cap = cap;
    return true;
}

tg_tensor *tg_params_add(tg_params *ps, const char *name, tg_dtype dt, int rank,
                         const int64_t *shape)
{
    if (!ps || !name || !*name) {
        tg__fail_call(TG_ERR_ARG, "params_add: %s", !ps ? "NULL registry" : "NULL or empty name");
        return NULL;
    }
    param_entry *found;
    HASH_FIND_STR(ps->by_name, name, found);
    if (found) {
        tg__fail_call(TG_ERR_ARG, "params_add: '%.400s' is already registered", name);
        return NULL;
    }
    param_entry *e = grow_order(ps) ? tg__calloc(1, sizeof *e) : NULL;
    if (!e) {
        tg__fail_call(TG_ERR_NOMEM, "params_add: '%.400s': out of memory", name);
        return NULL;
    }
    size_t len = strlen(name);
    e->name = tg__malloc(len + 1);
    e->t = tg__tensor_alloc(dt, rank, shape);
    if (!e->t) {
        tg__bad_tensor("params_add", dt, rank, shape);
        goto fail;
    }
    if (!e->name) goto nomem;
    memcpy(e->name, name, len + 1);
    e->t->requires_grad = tg__dt(dt)->is_float; /* an I64 entry (a counter) never does */
    tg_tensor_set_name(e->t, name);
    HASH_ADD_KEYPTR(hh, ps->by_name, e->name, len, e);
    if (!e->hh.tbl) goto nomem; /* uthash could not allocate its table or a bucket */
    ps->order[ps->n++] = e;
    return e->t;
nomem:
    tg__fail_call(TG_ERR_NOMEM, "params_add: '%.400s': out of memory", name);
fail:
    entry_free(e);
    return NULL;
}

tg_tensor *tg_params_get(const tg_params *ps, const char *name)
{
    if (!ps || !name) {
        tg__fail_call(TG_ERR_ARG, "params_get: NULL %s", !ps ? "registry" : "name");
        return NULL;
    }
    param_entry *e;
    HASH_FIND_STR(ps->by_name, name, e);
    if (!e) tg__fail_call(TG_ERR_ARG, "params_get: no parameter '%.400s'", name);
    return e ? e->t : NULL;
}

size_t tg_params_count(const tg_params *ps) { return ps ? ps->n : 0; }

tg_tensor *tg_params_at(const tg_params *ps, size_t i, const char **name)
{
    bool ok = ps && i < ps->n;
    if (name) *name = ok ? ps->order[i]->name : NULL;
    if (!ok)
        tg__fail_call(TG_ERR_ARG, "params_at: %s", !ps ? "NULL registry" : "index out of range");
    return ok ? ps->order[i]->t : NULL;
}

void tg_params_zero_grad(tg_params *ps)
{
    for (size_t i = 0; i < tg_params_count(ps); i++)
        tg_tensor_zero_grad(ps->order[i]->t);
}

int64_t tg_params_numel(const tg_params *ps)
{
    int64_t n = 0;
    for (size_t i = 0; i < tg_params_count(ps); i++)
        n += ps->order[i]->t->numel;
    return n;
}
