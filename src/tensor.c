/* Leaf tensors, accessors, gradients, and shape strings for messages. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int64_t tg__numel(int rank, const int64_t *shape)
{
    if (rank < 0 || rank > TG_MAX_RANK || (rank > 0 && !shape)) return -1;
    for (int i = 0; i < rank; i++)
        if (shape[i] < 0) return -1;
    for (int i = 0; i < rank; i++)
        if (shape[i] == 0) return 0; /* empty, whatever the other dimensions */
    int64_t n = 1;
    for (int i = 0; i < rank; i++) {
        /* Keep numel * 8 bytes representable, so byte sizes never wrap. */
        if (n > (INT64_MAX / 8) / shape[i]) return -1;
        n *= shape[i];
    }
    return n;
}

/* ====== The dtype table ====== */

static double get_f32(const void *d, int64_t k) { return (double)((const float *)d)[k]; }
static double get_f64(const void *d, int64_t k) { return ((const double *)d)[k]; }
static double get_i64(const void *d, int64_t k) { return (double)((const int64_t *)d)[k]; }
static double put_f32(void *d, int64_t k, double v) { return (double)(((float *)d)[k] = (float)v); }
static double put_f64(void *d, int64_t k, double v) { return ((double *)d)[k] = v; }
/* Truncates toward zero; a value outside int64's range stores 0 rather than
 * invoking undefined behaviour (callers that care check the range first). */
static double put_i64(void *d, int64_t k, double v)
{
    int64_t i = v > -0x1p63 && v < 0x1p63 ? (int64_t)v : 0;
    return (double)(((int64_t *)d)[k] = i);
}

const tg__dtype_info tg__dtypes[TG__N_DTYPES] = {
    [TG_F32] = {"f32", "F32", sizeof(float), true, get_f32, put_f32},
    [TG_F64] = {"f64", "F64", sizeof(double), true, get_f64, put_f64},
    [TG_I64] = {"i64", "I64", sizeof(int64_t), false, get_i64, put_i64},
};

/* ====== Tensors ====== */

static bool valid_dtype(tg_dtype dt) { return tg__dtype_valid(dt); }

static void set_shape(tg_tensor *t, tg_dtype dt, int rank, const int64_t *shape, int64_t numel)
{
    t->dtype = dt;
    t->rank = rank;
    for (int i = 0; i < rank; i++) t->shape[i] = shape[i];
    t->numel = numel;
}

tg_tensor *tg__tensor_alloc(tg_dtype dt, int rank, const int64_t *shape)
{
    int64_t numel = tg__numel(rank, shape);
    if (numel < 0 || !valid_dtype(dt)) return NULL;
    size_t bytes = (size_t)numel * tg__dtype_size(dt);
    if ((uint64_t)numel * tg__dtype_size(dt) > SIZE_MAX - TG__ALIGN) return NULL;
    tg_tensor *t = tg__calloc(1, sizeof *t);
    if (!t) return NULL;
    /* aligned_alloc wants a multiple of the alignment; round up, and never 0. */
    size_t rounded = bytes ? (bytes + TG__ALIGN - 1) / TG__ALIGN * TG__ALIGN : TG__ALIGN;
    t->data = tg__aligned_alloc(TG__ALIGN, rounded);
    if (!t->data) {
        free(t);
        return NULL;
    }
    memset(t->data, 0, bytes);
    set_shape(t, dt, rank, shape, numel);
    return t;
}

tg_tensor *tg__tensor_arena(tg_tape *tp, tg_dtype dt, int rank, const int64_t *shape)
{
    int64_t numel = tg__numel(rank, shape);
    if (numel < 0 || !valid_dtype(dt)) return NULL;
    if ((uint64_t)numel * tg__dtype_size(dt) > SIZE_MAX - TG__ALIGN) return NULL;
    /* The header and small data in 16-byte steps (arena.c); data of a cache
     * line or more starts one, for vector loops. */
    size_t bytes = (size_t)numel * tg__dtype_size(dt);
    tg_tensor *t = tg__arena_alloc_small(&tp->arena, sizeof *t);
    if (!t) return NULL;
    t->data = bytes < TG__ALIGN ? tg__arena_alloc_small(&tp->arena, bytes)
                                : tg__arena_alloc(&tp->arena, bytes);
    if (!t->data) return NULL;
    set_shape(t, dt, rank, shape, numel);
    t->tape_owned = true;
    t->tape = tp;
    t->gen = tp->gen;
    return t;
}

tg_tensor *tg_tensor_new(tg_dtype dt, int rank, const int64_t *shape)
{
    tg_tensor *t = tg__tensor_alloc(dt, rank, shape);
    if (!t) tg__bad_tensor("tensor_new", dt, rank, shape);
    return t;
}

tg_tensor *tg_tensor_from(tg_dtype dt, int rank, const int64_t *shape, const void *data)
{
    if (!data && tg__numel(rank, shape) > 0) {
        tg__fail_call(TG_ERR_ARG, "tensor_from: NULL data for a non-empty shape");
        return NULL;
    }
    tg_tensor *t = tg__tensor_alloc(dt, rank, shape);
    if (!t) tg__bad_tensor("tensor_from", dt, rank, shape);
    if (t && t->numel) memcpy(t->data, data, (size_t)t->numel * tg__dtype_size(dt));
    return t;
}

static void tensor_release(tg_tensor *t)
{
    free(t->data);
    free(t);
}

void tg_tensor_free(tg_tensor *t)
{
    if (!t || t->tape_owned || t->is_grad) return;
    if (t->grad) tensor_release(t->grad);
    tensor_release(t);
}

tg_dtype tg_tensor_dtype(const tg_tensor *t) { return t ? t->dtype : TG_F32; }
int tg_tensor_rank(const tg_tensor *t) { return t ? t->rank : 0; }
const int64_t *tg_tensor_shape(const tg_tensor *t) { return t ? t->shape : NULL; }
int64_t tg_tensor_numel(const tg_tensor *t) { return t ? t->numel : 0; }
void *tg_tensor_data(tg_tensor *t) { return t ? t->data : NULL; }
const void *tg_tensor_cdata(const tg_tensor *t) { return t ? t->data : NULL; }
tg_tensor *tg_tensor_grad(const tg_tensor *t) { return t ? t->grad : NULL; }
bool tg_tensor_requires_grad(const tg_tensor *t) { return t && t->requires_grad; }
const char *tg_tensor_name(const tg_tensor *t) { return t ? t->name : ""; }

double tg_tensor_item(const tg_tensor *t)
{
    if (!t || t->numel != 1) return (double)NAN;
    return tg__get(t, 0);
}

void tg_tensor_set_requires_grad(tg_tensor *t, bool on)
{
    if (t && !t->is_grad && tg__dt(t->dtype)->is_float) t->requires_grad = on;
}

void tg_tensor_zero_grad(tg_tensor *t)
{
    if (t && t->grad) tg__zero(t->grad->data, (size_t)t->grad->numel * tg__dtype_size(t->dtype));
}

void tg_tensor_set_name(tg_tensor *t, const char *name)
{
    if (!t) return;
    snprintf(t->name, sizeof t->name, "%s", name ? name : "");
}

tg_status tg_tensor_reshape(tg_tensor *t, int rank, const int64_t *shape)
{
    if (!t || t->tape_owned || t->is_grad)
        return tg__fail_call(TG_ERR_ARG, "tensor_reshape: %s",
                             !t           ? "NULL tensor"
                             : t->is_grad ? "a gradient"
                                          : "a tape-owned tensor");
    int64_t numel = tg__numel(rank, shape);
    if (numel < 0) return tg__bad_tensor("tensor_reshape", t->dtype, rank, shape);
    if (numel != t->numel)
        return tg__fail_call(TG_ERR_SHAPE, "tensor_reshape: %lld elements cannot take %lld",
                             (long long)t->numel, (long long)numel);
    set_shape(t, t->dtype, rank, shape, numel);
    if (t->grad) set_shape(t->grad, t->dtype, rank, shape, numel);
    t->reshapes++;
    return TG_OK;
}

bool tg__same_shape(const tg_tensor *a, const tg_tensor *b)
{
    if (a->rank != b->rank) return false;
    for (int i = 0; i < a->rank; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

const char *tg__dims_str(int rank, const int64_t *shape, char *buf, size_t size)
{
    size_t len = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < rank && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, i ? "x%lld" : "%lld", (long long)shape[i]);
    if (len < size) snprintf(buf + len, size - len, "]");
    return buf;
}

const char *tg__shape_str(const tg_tensor *t, char *buf, size_t size)
{
    char dims[TG__SHAPE_STR_MAX];
    tg__dims_str(t->rank, t->shape, dims, sizeof dims);
    size_t room = size > strlen(dims) + 2 ? size - strlen(dims) - 2 : 0; /* a space, a NUL */
    if (!t->name[0] || !room) {
        snprintf(buf, size, "%s", dims);
        return buf;
    }
    snprintf(buf, size, "%.*s %s", (int)room, t->name, dims); /* the name cut to 'room' bytes */
    return buf;
}

tg_tensor *tg__grad_new(tg_tape *tp, tg_tensor *t)
{
    tg_tensor *g = t->tape_owned ? tg__tensor_arena(tp, t->dtype, t->rank, t->shape)
                                 : tg__tensor_alloc(t->dtype, t->rank, t->shape);
    if (!g) return NULL;
    g->is_grad = true;
    t->grad = g;
    return g;
}
