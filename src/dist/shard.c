/*
 * Sharded mini-batches: every rank draws the same permutation of the rows
 * from the seed, exactly as tg_batcher does, and copies its own contiguous
 * part of each global batch. So N ranks see together the batches one
 * process sees with tg_batcher, and the row weights make their averaged
 * gradient the mean over each whole batch.
 */
#include "dist_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tg_dist_batcher {
    const tg_tensor *x, *y; /* the caller's; read at every 'next' */
    int64_t n, batch, local, pos;
    int rank, size;
    bool shuffle;
    tg_rng rng;
    int64_t *perm;       /* this epoch's row order */
    int64_t rows, total; /* this rank's rows of the last batch, and the batch's */
    char error[256];
};

/* Fisher-Yates as tg_batcher's: the same seed gives the same order. */
static void shuffle(int64_t *perm, int64_t n, tg_rng *r)
{
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)tg_rng_below(r, (uint64_t)i + 1);
        int64_t tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
    }
}

static int64_t row_elems(const tg_tensor *t)
{
    int64_t n = 1;
    for (int k = 1; k < tg_tensor_rank(t); k++)
        n *= tg_tensor_shape(t)[k];
    return n;
}

tg_dist_batcher *tg_dist_batcher_new(const tg_dist *d, const tg_tensor *x, const tg_tensor *y,
                                     int64_t global_batch, bool shuffle_rows, uint64_t seed,
                                     tg_error *err)
{
    if (!d || !x || global_batch < 1 || tg_tensor_rank(x) < 1 ||
        (y && (tg_tensor_rank(y) < 1 || tg_tensor_shape(y)[0] != tg_tensor_shape(x)[0]))) {
        tg__dist_fail(err, TG_ERR_ARG, "dist_batcher_new: %s",
                      !d                      ? "NULL context"
                      : !x                    ? "NULL x"
                      : global_batch < 1      ? "global_batch must be >= 1"
                      : tg_tensor_rank(x) < 1 ? "x has no rows (rank 0)"
                                              : "y has no rows or another row count than x");
        return NULL;
    }
    int64_t n = tg_tensor_shape(x)[0];
    tg_dist_batcher *b = (uint64_t)n <= SIZE_MAX / sizeof(int64_t) ? calloc(1, sizeof *b) : NULL;
    if (b) b->perm = malloc(n ? (size_t)n * sizeof *b->perm : 1);
    if (!b || !b->perm) {
        if (b) free(b->perm);
        free(b);
        tg__dist_fail(err, TG_ERR_NOMEM, "dist_batcher_new: out of memory for %lld rows",
                      (long long)n);
        return NULL;
    }
    b->x = x;
    b->y = y;
    b->n = n;
    b->batch = global_batch;
    b->rank = d->rank;
    b->size = d->size;
    b->local = (global_batch + d->size - 1) / d->size;
    b->shuffle = shuffle_rows;
    for (int64_t i = 0; i < n; i++)
        b->perm[i] = i;
    tg_rng_seed(&b->rng, seed);
    if (shuffle_rows) shuffle(b->perm, n, &b->rng);
    return b;
}

void tg_dist_batcher_free(tg_dist_batcher *b)
{
    if (!b) return;
    free(b->perm);
    free(b);
}

int64_t tg_dist_batcher_local(const tg_dist_batcher *b) { return b ? b->local : 0; }
int64_t tg_dist_batcher_rows(const tg_dist_batcher *b) { return b ? b->rows : 0; }
const char *tg_dist_batcher_error(const tg_dist_batcher *b) { return b ? b->error : ""; }

int64_t tg_dist_batcher_batches(const tg_dist_batcher *b)
{
    return b ? b->n / b->batch + (b->n % b->batch != 0) : 0;
}

TG__DIST_PRINTF(2, 3) static void batcher_fail(tg_dist_batcher *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->error, sizeof b->error, fmt, ap);
    va_end(ap);
}

/* True when dst holds b->local rows shaped like the rows of src, of its dtype. */
static bool fits(const tg_dist_batcher *b, const tg_tensor *dst, const tg_tensor *src)
{
    if (tg_tensor_dtype(dst) != tg_tensor_dtype(src) ||
        tg_tensor_rank(dst) != tg_tensor_rank(src) || tg_tensor_shape(dst)[0] != b->local)
        return false;
    for (int k = 1; k < tg_tensor_rank(src); k++)
        if (tg_tensor_shape(dst)[k] != tg_tensor_shape(src)[k]) return false;
    return true;
}

/* Rows perm[0..k) of src into dst, the rest of dst zeroed. */
static void fill(tg_tensor *dst, const tg_tensor *src, const int64_t *perm, int64_t k)
{
    size_t row = (size_t)row_elems(src) * tg__dist_dtype_size(tg_tensor_dtype(src));
    char *out = tg_tensor_data(dst);
    const char *in = tg_tensor_cdata(src);
    for (int64_t i = 0; i < k; i++)
        memcpy(out + (size_t)i * row, in + (size_t)perm[i] * row, row);
    memset(out + (size_t)k * row, 0, (size_t)(tg_tensor_shape(dst)[0] - k) * row);
}

int64_t tg_dist_batcher_next(tg_dist_batcher *b, tg_tensor *xb, tg_tensor *yb)
{
    if (!b || !xb) {
        if (b) batcher_fail(b, "dist_batcher_next: NULL xb");
        return -1;
    }
    if (!fits(b, xb, b->x) || (yb && (!b->y || !fits(b, yb, b->y)))) {
        batcher_fail(b,
                     yb && !b->y ? "dist_batcher_next: yb given, but the batcher has no y"
                                 : "dist_batcher_next: %s must hold %lld rows (ceil(%lld / %d "
                                   "ranks)) shaped like the rows of %s, of its dtype",
                     !fits(b, xb, b->x) ? "xb" : "yb", (long long)b->local, (long long)b->batch,
                     b->size, !fits(b, xb, b->x) ? "x" : "y");
        return -1;
    }
    if (b->pos == b->n) { /* the end of the epoch: the next call starts a new one */
        b->pos = 0;
        b->rows = b->total = 0;
        if (b->shuffle) shuffle(b->perm, b->n, &b->rng);
        return 0;
    }
    int64_t total = b->n - b->pos < b->batch ? b->n - b->pos : b->batch;
    int64_t lo = total * b->rank / b->size, hi = total * (b->rank + 1) / b->size;
    fill(xb, b->x, b->perm + b->pos + lo, hi - lo);
    if (yb) fill(yb, b->y, b->perm + b->pos + lo, hi - lo);
    b->pos += total;
    b->rows = hi - lo;
    b->total = total;
    return total;
}

tg_status tg_dist_batcher_weights(tg_dist_batcher *b, tg_tensor *w)
{
    if (!b || !w) return TG_ERR_ARG;
    tg_dtype dt = tg_tensor_dtype(w);
    if (dt == TG_I64 || tg_tensor_numel(w) != b->local) {
        batcher_fail(b,
                     "dist_batcher_weights: w has %lld elements of %s, want a float tensor of %lld",
                     (long long)tg_tensor_numel(w), tg__dist_dtype_name(dt), (long long)b->local);
        return TG_ERR_ARG;
    }
    /* N L / R: each rank's loss is a mean over its L rows, and tg_dist_backward
     * averages over the N ranks, so the weights make the whole the mean over
     * the R rows of the global batch. With N L = R (full batches that divide
     * evenly) the weight is 1, which changes no bit. */
    double real = b->total ? (double)b->size * (double)b->local / (double)b->total : 0.0;
    for (int64_t i = 0; i < b->local; i++) {
        double v = i < b->rows ? real : 0.0;
        if (dt == TG_F32)
            ((float *)tg_tensor_data(w))[i] = (float)v;
        else
            ((double *)tg_tensor_data(w))[i] = v;
    }
    return TG_OK;
}
