/*
 * Rows of data sets: one-hot labels, a seeded train/held-out split, and a
 * mini-batch iterator with seeded shuffling.
 */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ====== One-hot labels ====== */

tg_tensor *tg_one_hot(const tg_tensor *labels, int64_t n_classes, tg_dtype dt)
{
    if (!labels || labels->rank != 1 || n_classes < 1) {
        tg__fail_call(TG_ERR_ARG, "one_hot: %s",
                      !labels             ? "NULL labels"
                      : labels->rank != 1 ? "labels must have rank 1"
                                          : "n_classes must be >= 1");
        return NULL;
    }
    int64_t n = labels->shape[0];
    for (int64_t i = 0; i < n; i++) {
        double v = tg__get(labels, i);
        if (!(v >= 0 && v < (double)n_classes) || v != trunc(v)) {
            tg__fail_call(TG_ERR_ARG, "one_hot: label %lld is %g, not a whole number in [0, %lld)",
                          (long long)i, v, (long long)n_classes);
            return NULL;
        }
    }
    tg_tensor *t = tg__tensor_alloc(dt, 2, (int64_t[]){n, n_classes});
    if (!t) {
        tg__bad_tensor("one_hot", dt, 2, (int64_t[]){n, n_classes});
        return NULL;
    }
    for (int64_t i = 0; i < n; i++)
        tg__put(t, i * n_classes + (int64_t)tg__get(labels, i), 1.0);
    return t;
}

/* ====== Rows: shuffling, split, batches ====== */

/* Elements in one row (axis 0) of a tensor of rank >= 1; -1 when that overflows. */
static int64_t row_elems(const tg_tensor *t) { return tg__numel(t->rank - 1, t->shape + 1); }

/* The identity permutation 0..n-1; NULL when out of memory. */
static int64_t *perm_new(int64_t n)
{
    if ((uint64_t)n > SIZE_MAX / sizeof(int64_t)) return NULL;
    int64_t *perm = tg__malloc(n ? (size_t)n * sizeof *perm : 1);
    if (!perm) return NULL;
    for (int64_t i = 0; i < n; i++)
        perm[i] = i;
    return perm;
}

/* Fisher-Yates: every order equally likely, and the same seed gives the same order everywhere. */
static void shuffle(int64_t *perm, int64_t n, tg_rng *r)
{
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)tg_rng_below(r, (uint64_t)i + 1);
        int64_t tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
    }
}

/* Copies rows perm[0..n) of src into rows 0..n of dst (same row shape and dtype). */
static void copy_rows(tg_tensor *dst, const tg_tensor *src, const int64_t *perm, int64_t n)
{
    size_t row = (size_t)row_elems(src) * tg__dtype_size(src->dtype);
    for (int64_t i = 0; i < n; i++)
        memcpy((char *)dst->data + (size_t)i * row, (const char *)src->data + (size_t)perm[i] * row,
               row);
}

/* A new tensor holding rows perm[0..n) of src; NULL when out of memory. */
static tg_tensor *gather_rows(const tg_tensor *src, const int64_t *perm, int64_t n)
{
    int64_t shape[TG_MAX_RANK];
    memcpy(shape, src->shape, sizeof shape);
    shape[0] = n;
    tg_tensor *t = tg__tensor_alloc(src->dtype, src->rank, shape);
    if (t) copy_rows(t, src, perm, n);
    return t;
}

/* True when t has rows (rank >= 1, a representable row size) and, if 'n' >= 0, n of them. */
static bool has_rows(const tg_tensor *t, int64_t n)
{
    return t->rank >= 1 && row_elems(t) >= 0 && (n < 0 || t->shape[0] == n);
}

tg_status tg_split(const tg_tensor *x, const tg_tensor *y, double holdout, uint64_t seed,
                   tg_tensor **x_train, tg_tensor **y_train, tg_tensor **x_held, tg_tensor **y_held)
{
    if (!x || !x_train || !x_held) return tg__fail_call(TG_ERR_ARG, "split: NULL x or x output");
    if (!has_rows(x, -1)) return tg__fail_call(TG_ERR_ARG, "split: x has no rows (rank 0)");
    if (!(holdout >= 0 && holdout <= 1))
        return tg__fail_call(TG_ERR_ARG, "split: holdout %g outside [0, 1]", holdout);
    int64_t n = x->shape[0];
    if (y && (!y_train || !y_held)) return tg__fail_call(TG_ERR_ARG, "split: NULL y output");
    if (y && !has_rows(y, n))
        return tg__fail_call(TG_ERR_ARG, "split: y has %lld rows, x %lld",
                             (long long)(y->rank ? y->shape[0] : 0), (long long)n);
    int64_t n_held = llround(holdout * (double)n), n_train = n - n_held;
    int64_t *perm = perm_new(n);
    if (!perm)
        return tg__fail_call(TG_ERR_NOMEM, "split: out of memory for %lld rows", (long long)n);
    tg_rng r;
    tg_rng_seed(&r, seed);
    shuffle(perm, n, &r);
    tg_tensor *xt = gather_rows(x, perm, n_train), *xh = gather_rows(x, perm + n_train, n_held);
    tg_tensor *yt = y ? gather_rows(y, perm, n_train) : NULL;
    tg_tensor *yh = y ? gather_rows(y, perm + n_train, n_held) : NULL;
    free(perm);
    if (!xt || !xh || (y && (!yt || !yh))) {
        tg_tensor_free(xt);
        tg_tensor_free(xh);
        tg_tensor_free(yt);
        tg_tensor_free(yh);
        return tg__fail_call(TG_ERR_NOMEM, "split: out of memory for the %lld rows", (long long)n);
    }
    *x_train = xt;
    *x_held = xh;
    if (y_train) *y_train = yt;
    if (y_held) *y_held = yh;
    return TG_OK;
}

struct tg_batcher {
    const tg_tensor *x, *y; /* the caller's; read at every 'next' */
    int64_t n, batch, pos;  /* rows, rows per batch, next position in 'perm' */
    bool shuffle;
    tg_rng rng;
    int64_t *perm; /* this epoch's row order */
    int64_t last; /* rows the last tg_batcher_next copied (0 before the first, at an epoch's end) */
};

tg_batcher *tg_batcher_new(const tg_tensor *x, const tg_tensor *y, int64_t batch, bool shuffle_rows,
                           uint64_t seed)
{
    if (!x || batch < 1 || !has_rows(x, -1) || (y && !has_rows(y, x->shape[0]))) {
        tg__fail_call(TG_ERR_ARG, "batcher_new: %s",
                      !x                 ? "NULL x"
                      : batch < 1        ? "batch must be >= 1"
                      : !has_rows(x, -1) ? "x has no rows (rank 0)"
                                         : "y has no rows or another row count than x");
        return NULL;
    }
    tg_batcher *b = tg__malloc(sizeof *b);
    if (b) {
        *b =
            (tg_batcher){.x = x, .y = y, .n = x->shape[0], .batch = batch, .shuffle = shuffle_rows};
        b->perm = perm_new(b->n);
    }
    if (!b || !b->perm) {
        free(b);
        tg__fail_call(TG_ERR_NOMEM, "batcher_new: out of memory for %lld rows",
                      (long long)x->shape[0]);
        return NULL;
    }
    tg_rng_seed(&b->rng, seed);
    if (b->shuffle) shuffle(b->perm, b->n, &b->rng);
    return b;
}

void tg_batcher_free(tg_batcher *b)
{
    if (!b) return;
    free(b->perm);
    free(b);
}

/* True when 'dst' is a leaf that holds 'batch' rows shaped like the rows of src. */
static bool batch_fits(const tg_tensor *dst, const tg_tensor *src, int64_t batch)
{
    if (dst->tape_owned || dst->is_grad || dst->dtype != src->dtype || dst->rank != src->rank ||
        dst->shape[0] != batch)
        return false;
    for (int i = 1; i < src->rank; i++)
        if (dst->shape[i] != src->shape[i]) return false;
    return true;
}

/* Copies the rows of the batch into dst and zeroes the rows a partial batch leaves over. */
static void fill_batch(tg_tensor *dst, const tg_tensor *src, const int64_t *perm, int64_t k)
{
    copy_rows(dst, src, perm, k);
    size_t row = (size_t)row_elems(src) * tg__dtype_size(src->dtype);
    memset((char *)dst->data + (size_t)k * row, 0, (size_t)(dst->shape[0] - k) * row);
}

int64_t tg_batcher_next(tg_batcher *b, tg_tensor *xb, tg_tensor *yb)
{
    if (!b || !xb) {
        tg__fail_call(TG_ERR_ARG, "batcher_next: NULL %s", !b ? "batcher" : "xb");
        return -1;
    }
    if (!batch_fits(xb, b->x, b->batch) || (yb && (!b->y || !batch_fits(yb, b->y, b->batch)))) {
        const char *what = !batch_fits(xb, b->x, b->batch) ? "xb" : "yb";
        const tg_tensor *dst = what[0] == 'x' ? xb : yb, *src = what[0] == 'x' ? b->x : b->y;
        char sd[TG__SHAPE_STR_MAX], ss[TG__SHAPE_STR_MAX];
        if (!src)
            tg__fail_call(TG_ERR_ARG, "batcher_next: yb given, but the batcher has no y");
        else
            tg__fail_call(TG_ERR_ARG,
                          "batcher_next: %s is %s %s%s, want a leaf of %lld rows shaped like "
                          "the rows of %s %s",
                          what, tg__shape_str(dst, sd, sizeof sd), tg__dt(dst->dtype)->name,
                          dst->tape_owned || dst->is_grad ? " (not a leaf)" : "",
                          (long long)b->batch, tg__shape_str(src, ss, sizeof ss),
                          tg__dt(src->dtype)->name);
        return -1;
    }
    if (b->pos == b->n) { /* the end of the epoch: the next call starts a new one */
        b->pos = 0;
        b->last = 0;
        if (b->shuffle) shuffle(b->perm, b->n, &b->rng);
        return 0;
    }
    int64_t k = b->n - b->pos < b->batch ? b->n - b->pos : b->batch;
    fill_batch(xb, b->x, b->perm + b->pos, k);
    if (yb) fill_batch(yb, b->y, b->perm + b->pos, k);
    b->pos += k;
    b->last = k;
    return k;
}

tg_status tg_batcher_weights(const tg_batcher *b, tg_tensor *w)
{
    if (!b || !w)
        return tg__fail_call(TG_ERR_ARG, "batcher_weights: NULL %s", !b ? "batcher" : "w");
    if (w->tape_owned || w->is_grad || !tg__dt(w->dtype)->is_float || w->numel != b->batch) {
        char sw[TG__SHAPE_STR_MAX];
        return tg__fail_call(
            TG_ERR_ARG, "batcher_weights: w is %s %s%s, want a float leaf of %lld elements",
            tg__shape_str(w, sw, sizeof sw), tg__dt(w->dtype)->name,
            w->tape_owned || w->is_grad ? " (not a leaf)" : "", (long long)b->batch);
    }
    /* batch / rows on the rows of the batch, 0 on the rows it leaves over: a
     * loss that averages over all 'batch' rows, each row's term multiplied by
     * its weight, is then the mean over the real rows, and so is its gradient. */
    double real = b->last ? (double)b->batch / (double)b->last : 0.0;
    for (int64_t i = 0; i < b->batch; i++)
        tg__put(w, i, i < b->last ? real : 0.0);
    return TG_OK;
}

int64_t tg_batcher_batches(const tg_batcher *b)
{
    return b ? b->n / b->batch + (b->n % b->batch != 0) : 0;
}
