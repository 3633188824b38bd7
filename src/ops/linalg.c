/*
 * Linear algebra: matmul (batched for ranks 3 and 4), transpose, add_bias.
 * Products go through tg__gemm with transpose flags, so no VJP materialises
 * a transpose, and gradients are accumulated by GEMM itself with beta = 1 (no
 * temporary, no extra pass).
 * To add an op: forward and vjp side by side, a tg_op_def, a constructor.
 */
#include "internal.h"

#include <limits.h>

/* The ONNX forms of the ops, at the end of the file. */
static TG__ONNX_HOOK(matmul_onnx);
static TG__ONNX_HOOK(transpose_onnx);
static TG__ONNX_HOOK(add_bias_onnx);

static tg_tensor *fail2(tg_tape *tp, tg_status s, const char *what, const tg_tensor *a,
                        const char *sep, const tg_tensor *b)
{
    char sa[TG__SHAPE_STR_MAX], sb[TG__SHAPE_STR_MAX];
    tg__fail(tp, s, "%s: %s%s%s", what, tg__shape_str(a, sa, sizeof sa), sep,
             tg__shape_str(b, sb, sizeof sb));
    return NULL;
}

/* ====== matmul: Y = A B, A [n,k], B [k,m];  dA += dG B^T,  dB += A^T dG ====== */

static tg_status matmul_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in, (void)ctx;
    int64_t n = in[0]->shape[0], k = in[0]->shape[1], m = in[1]->shape[1];
    tg__gemm(out->dtype, false, false, n, m, k, 1.0, in[0]->data, k, in[1]->data, m, 0.0,
             out->data, m);
    return TG_OK;
}

static tg_status matmul_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                            tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)n_in, (void)ctx;
    int64_t n = in[0]->shape[0], k = in[0]->shape[1], m = in[1]->shape[1];
    if (gin[0]) /* dA [n,k] += dG [n,m] B^T */
        tg__gemm(gout->dtype, false, true, n, k, m, 1.0, gout->data, m, in[1]->data, m, 1.0,
                 gin[0]->data, k);
    if (gin[1]) /* dB [k,m] += A^T dG */
        tg__gemm(gout->dtype, true, false, k, m, n, 1.0, in[0]->data, k, gout->data, m, 1.0,
                 gin[1]->data, m);
    return TG_OK;
}

static tg_status matmul_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out,
                                  tg_tensor *const *in, const bool *need, tg_tensor **gin,
                                  int n_in, void *ctx)
{
    (void)out, (void)n_in, (void)ctx;
    if (need[0]) gin[0] = tg_matmul(tp, dy, tg_transpose(tp, in[1])); /* dA = dG B^T */
    if (need[1]) gin[1] = tg_matmul(tp, tg_transpose(tp, in[0]), dy); /* dB = A^T dG */
    return tg_tape_status(tp);
}

static const tg_op_def matmul_def = {
    .name = "matmul", .forward = matmul_forward, .vjp = matmul_vjp, .vjp_graph = matmul_vjp_graph,
    .rules = (const char *const[]){"{dy:s} · {1:T}", "{0:T} · {dy:s}", NULL},
    .onnx = matmul_onnx};

/* ====== Batched matmul: Y[b] = A[a(b)] B[b(b)] for ranks 2..4 (torch.matmul) ======
 * The batch axes (all but the last two) broadcast like NumPy; a(b) and b(b)
 * map an output batch to the operand batches it reads, through strides that
 * are 0 along a stretched axis. Each VJP adds into the operand batch it read,
 * with GEMM and beta = 1, so a batch read by several outputs gets the sum of
 * their contributions: the reduction over broadcast axes costs nothing extra.
 * When every batch reads the same B (B has rank 2, or batch dims of size 1),
 * A's batches and rows fold into one [batch n, k] matrix and each direction is
 * a single GEMM, as fast as a rank-2 product of that size. */

typedef struct bmm_ctx {
    int64_t n, k, m;
    int64_t batch;      /* output batches */
    int64_t bshape[2];  /* output batch shape, leading 1s where the rank is lower */
    int64_t astride[2]; /* A's batch strides in matrices, 0 where A is broadcast */
    int64_t bstride[2]; /* B's likewise */
    bool fold;          /* B is the same matrix for every batch */
} bmm_ctx;

/* Calls GEMM_CALL(i, ia, ib) for every output batch i, ia and ib being the
 * operand batches it reads. */
#define BMM_EACH(c, GEMM_CALL)                                                                     \
    for (int64_t i0 = 0, i = 0; i0 < (c)->bshape[0]; i0++)                                         \
        for (int64_t i1 = 0; i1 < (c)->bshape[1]; i1++, i++) {                                     \
            int64_t ia = i0 * (c)->astride[0] + i1 * (c)->astride[1];                              \
            int64_t ib = i0 * (c)->bstride[0] + i1 * (c)->bstride[1];                              \
            GEMM_CALL(i, ia, ib);                                                                  \
        }

static tg_status bmm_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in;
    const bmm_ctx *c = ctx;
    int64_t n = c->n, k = c->k, m = c->m;
    size_t es = tg__dtype_size(out->dtype);
    const char *a = in[0]->data, *b = in[1]->data;
    char *y = out->data;
    if (out->numel == 0) return TG_OK; /* the batch may be huge when n or m is 0 */
    if (c->fold) {
        tg__gemm(out->dtype, false, false, c->batch * n, m, k, 1.0, a, k, b, m, 0.0, y, m);
        return TG_OK;
    }
#define BMM_FWD(i, ia, ib)                                                                         \
    tg__gemm(out->dtype, false, false, n, m, k, 1.0, a + (size_t)((ia) * n * k) * es, k,           \
             b + (size_t)((ib) * k * m) * es, m, 0.0, y + (size_t)((i) * n * m) * es, m)
    BMM_EACH(c, BMM_FWD);
#undef BMM_FWD
    return TG_OK;
}

static tg_status bmm_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                         tg_tensor **gin, int n_in, void *ctx)
{
    (void)n_in;
    const bmm_ctx *c = ctx;
    int64_t n = c->n, k = c->k, m = c->m;
    tg_dtype dt = out->dtype;
    size_t es = tg__dtype_size(dt);
    const char *a = in[0]->data, *b = in[1]->data, *g = gout->data;
    char *da = gin[0] ? gin[0]->data : NULL, *db = gin[1] ? gin[1]->data : NULL;
    if (out->numel == 0) return TG_OK; /* dG is empty: nothing flows back */
    if (c->fold) {
        int64_t rows = c->batch * n;
        if (da) tg__gemm(dt, false, true, rows, k, m, 1.0, g, m, b, m, 1.0, da, k);
        if (db) tg__gemm(dt, true, false, k, m, rows, 1.0, a, k, g, m, 1.0, db, m);
        return TG_OK;
    }
#define BMM_DA(i, ia, ib) /* dA[ia] [n,k] += dG[i] [n,m] B[ib]^T */                                \
    tg__gemm(dt, false, true, n, k, m, 1.0, g + (size_t)((i) * n * m) * es, m,                     \
             b + (size_t)((ib) * k * m) * es, m, 1.0, da + (size_t)((ia) * n * k) * es, k)
#define BMM_DB(i, ia, ib) /* dB[ib] [k,m] += A[ia]^T dG[i] */                                      \
    tg__gemm(dt, true, false, k, m, n, 1.0, a + (size_t)((ia) * n * k) * es, k,                    \
             g + (size_t)((i) * n * m) * es, m, 1.0, db + (size_t)((ib) * k * m) * es, m)
    if (da) BMM_EACH(c, BMM_DA);
    if (db) BMM_EACH(c, BMM_DB);
#undef BMM_DA
#undef BMM_DB
    return TG_OK;
}

/* x with its last two axes swapped, recorded: a transpose at rank 2, else a permute. */
static tg_tensor *swap_last(tg_tape *tp, tg_tensor *x)
{
    if (!x || x->rank == 2) return tg_transpose(tp, x);
    int perm[TG_MAX_RANK] = {0, 1, 2, 3};
    perm[x->rank - 2] = x->rank - 1, perm[x->rank - 1] = x->rank - 2;
    return tg_permute(tp, x, perm);
}

/* dA = Σ_bcast dG Bᵀ, dB = Σ_bcast Aᵀ dG per batch: batched products again,
 * summed over the batch axes where the operand was broadcast (tg__sum_to). */
static tg_status bmm_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                               const bool *need, tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)n_in, (void)ctx;
    if (need[0]) gin[0] = tg__sum_to(tp, tg_matmul(tp, dy, swap_last(tp, in[1])), in[0]);
    if (need[1]) gin[1] = tg__sum_to(tp, tg_matmul(tp, swap_last(tp, in[0]), dy), in[1]);
    return tg_tape_status(tp);
}

static const tg_op_def bmm_def = {
    .name = "matmul", .forward = bmm_forward, .vjp = bmm_vjp, .vjp_graph = bmm_vjp_graph,
    .rules = (const char *const[]){"{dy:s} · {1}ᵀ per batch, summed over broadcast batch axes",
                                   "{0}ᵀ · {dy:s} per batch, summed over broadcast batch axes",
                                   NULL},
    .onnx = matmul_onnx};

tg_tensor *tg_matmul(tg_tape *tp, tg_tensor *a, tg_tensor *b)
{
    tg_tensor *in[2] = {a, b};
    if (!tg__guard(tp, "matmul", 2, in)) return NULL;
    if (a->rank < 2 || b->rank < 2)
        return fail2(tp, TG_ERR_SHAPE, "matmul: operands must have rank 2 to 4", a, " x ", b);
    int64_t n = a->shape[a->rank - 2], k = a->shape[a->rank - 1], m = b->shape[b->rank - 1];
    if (b->shape[b->rank - 2] != k)
        return fail2(tp, TG_ERR_SHAPE, "matmul: inner dimensions differ", a, " x ", b);
    /* BLAS takes int extents; refuse what would be truncated rather than overrun memory. */
    if (n > INT_MAX || k > INT_MAX || m > INT_MAX)
        return fail2(tp, TG_ERR_SHAPE, "matmul: a dimension exceeds INT_MAX", a, " x ", b);
    if (a->rank == 2 && b->rank == 2)
        return tg_custom(tp, &matmul_def, in, 2, 2, (int64_t[]){n, m}, NULL);

    /* Batch axes aligned at the right into two slots; a missing axis counts as 1. */
    bmm_ctx c = {.n = n, .k = k, .m = m, .batch = 1, .bshape = {1, 1}};
    int64_t as[2] = {1, 1}, bs[2] = {1, 1};
    for (int j = 0; j < a->rank - 2; j++)
        as[2 - (a->rank - 2) + j] = a->shape[j];
    for (int j = 0; j < b->rank - 2; j++)
        bs[2 - (b->rank - 2) + j] = b->shape[j];
    for (int j = 0; j < 2; j++) {
        if (as[j] != bs[j] && as[j] != 1 && bs[j] != 1)
            return fail2(tp, TG_ERR_SHAPE, "matmul: batch dimensions do not broadcast", a, " x ",
                         b);
        c.bshape[j] = as[j] == 1 ? bs[j] : as[j];
        /* Batch strides in matrices: the inner slot steps by 1, the outer by the inner size. */
        c.astride[j] = as[j] == 1 ? 0 : j == 0 ? as[1] : 1;
        c.bstride[j] = bs[j] == 1 ? 0 : j == 0 ? bs[1] : 1;
    }
    int rank = a->rank > b->rank ? a->rank : b->rank;
    int64_t shape[TG_MAX_RANK];
    for (int j = 0; j < rank - 2; j++)
        shape[j] = c.bshape[2 - (rank - 2) + j];
    shape[rank - 2] = n;
    shape[rank - 1] = m;
    int64_t numel = tg__numel(rank, shape);
    if (numel < 0)
        return fail2(tp, TG_ERR_SHAPE, "matmul: the result would be too large", a, " x ", b);
    /* An empty result walks no batch, however many there are (n or m may be 0);
     * otherwise the count divides numel, so the product cannot overflow. */
    c.batch = numel == 0 ? 0 : c.bshape[0] * c.bshape[1];
    /* One B for every batch: fold A's batches into rows when BLAS can take that many. */
    c.fold = bs[0] == 1 && bs[1] == 1 && (n == 0 || c.batch <= INT_MAX / n);
    bmm_ctx *ctx = tg__tape_copy(tp, &c, sizeof c);
    if (!ctx) return NULL;
    return tg_custom(tp, &bmm_def, in, 2, rank, shape, ctx);
}

/* ====== transpose: Y = X^T;  dX += dG^T ====== */

#define TRANSPOSE_ADD(T, SRC, DST, ROWS, COLS, ACC)                                                \
    do {                                                                                           \
        const T *s_ = (SRC);                                                                       \
        T *d_ = (DST);                                                                             \
        for (int64_t i = 0; i < (ROWS); i++)                                                       \
            for (int64_t j = 0; j < (COLS); j++) d_[j * (ROWS) + i] ACC s_[i * (COLS) + j];        \
    } while (0)

static tg_status transpose_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in, (void)ctx;
    int64_t r = in[0]->shape[0], c = in[0]->shape[1];
    if (out->numel == 0) return TG_OK; /* the other dimension may be huge: do not walk it */
#define TRANSPOSE_FWD(T) TRANSPOSE_ADD(T, in[0]->data, out->data, r, c, =)
    TG__FLOAT_SWITCH(out->dtype, TRANSPOSE_FWD, TG_ERR_DTYPE);
    return TG_OK;
}

static tg_status transpose_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                               tg_tensor **gin, int n_in, void *ctx)
{
    (void)in, (void)n_in, (void)ctx;
    if (!gin[0] || out->numel == 0) return TG_OK;
    int64_t r = out->shape[0], c = out->shape[1]; /* dX [c,r] += (dG [r,c])^T */
#define TRANSPOSE_VJP(T) TRANSPOSE_ADD(T, gout->data, gin[0]->data, r, c, +=)
    TG__FLOAT_SWITCH(out->dtype, TRANSPOSE_VJP, TG_ERR_DTYPE);
    return TG_OK;
}

static tg_status transpose_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out,
                                     tg_tensor *const *in, const bool *need, tg_tensor **gin,
                                     int n_in, void *ctx)
{
    (void)out, (void)in, (void)need, (void)n_in, (void)ctx;
    gin[0] = tg_transpose(tp, dy); /* dX = dGᵀ */
    return tg_tape_status(tp);
}

static const tg_op_def transpose_def = {
    .name = "transpose", .forward = transpose_forward, .vjp = transpose_vjp,
    .vjp_graph = transpose_vjp_graph,
    .rules = (const char *const[]){"{dy:T}", NULL},
    .onnx = transpose_onnx};

tg_tensor *tg_transpose(tg_tape *tp, tg_tensor *a)
{
    if (!tg__guard(tp, "transpose", 1, &a)) return NULL;
    if (a->rank != 2) {
        char sa[TG__SHAPE_STR_MAX];
        tg__fail(tp, TG_ERR_SHAPE, "transpose: needs rank 2, got %s",
                 tg__shape_str(a, sa, sizeof sa));
        return NULL;
    }
    return tg_custom(tp, &transpose_def, &a, 1, 2, (int64_t[]){a->shape[1], a->shape[0]}, NULL);
}

/* ====== add_bias: Y = X + 1 b (b on every row);  dX += dG,  db += sum over rows of dG ====== */

/* Rows [r0, r1) of Y, and columns [c0, c1) of dX and db: the threads of
 * tg__parallel_for take ranges of rows forward and of columns backward, so
 * each db[j] still sums its column's rows in order, on one thread. */
typedef struct bias_part {
    tg_tensor *out;
    tg_tensor *const *in;
    const tg_tensor *gout;
    tg_tensor **gin;
} bias_part;

#define BIAS_FWD(T)                                                                                \
    do {                                                                                           \
        const T *x = bp->in[0]->data, *b = bp->in[1]->data;                                        \
        T *y = bp->out->data;                                                                      \
        for (int64_t i = r0; i < r1; i++)                                                          \
            for (int64_t j = 0; j < m; j++) y[i * m + j] = x[i * m + j] + b[j];                    \
    } while (0)

static void bias_rows(void *ctx, int64_t r0, int64_t r1)
{
    const bias_part *bp = ctx;
    int64_t m = bp->out->shape[1];
    TG__FLOAT_SWITCH(bp->out->dtype, BIAS_FWD, );
}

static tg_status add_bias_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in, (void)ctx;
    int64_t n = out->shape[0], m = out->shape[1];
    if (out->numel == 0) return TG_OK; /* n may be huge when m is 0: do not walk it */
    bias_part bp = {out, in, NULL, NULL};
    tg__parallel_for(n, TG__PAR_GRAIN / m + 1, bias_rows, &bp);
    return TG_OK;
}

/* One pass over dG, row by row, when both gradients are wanted: each row is
 * read once while in cache, and db sums the rows in the same order as alone. */
#define BIAS_VJP(T)                                                                                \
    do {                                                                                           \
        const T *restrict g = bp->gout->data;                                                      \
        T *restrict dx = bp->gin[0] ? bp->gin[0]->data : NULL;                                     \
        T *restrict db = bp->gin[1] ? bp->gin[1]->data : NULL;                                     \
        for (int64_t i = 0; i < n; i++) {                                                          \
            const T *gi = g + i * m;                                                               \
            if (dx)                                                                                \
                for (int64_t j = c0; j < c1; j++) dx[i * m + j] += gi[j]; /* dX += dG */           \
            if (db)                                                                                \
                for (int64_t j = c0; j < c1; j++) db[j] += gi[j]; /* db += sum over rows of dG */  \
        }                                                                                          \
    } while (0)

static void bias_cols(void *ctx, int64_t c0, int64_t c1)
{
    const bias_part *bp = ctx;
    int64_t n = bp->out->shape[0], m = bp->out->shape[1];
    TG__FLOAT_SWITCH(bp->out->dtype, BIAS_VJP, );
}

static tg_status add_bias_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                              tg_tensor **gin, int n_in, void *ctx)
{
    (void)in, (void)n_in, (void)ctx;
    int64_t n = out->shape[0], m = out->shape[1];
    if (out->numel == 0) return TG_OK; /* nothing flows back, and n may be huge */
    bias_part bp = {(tg_tensor *)out, in, gout, gin};
    tg__parallel_for(m, TG__PAR_GRAIN / n + 1, bias_cols, &bp);
    return TG_OK;
}

static tg_status add_bias_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out,
                                    tg_tensor *const *in, const bool *need, tg_tensor **gin,
                                    int n_in, void *ctx)
{
    (void)out, (void)in, (void)n_in, (void)ctx;
    if (need[0]) gin[0] = dy;                            /* dX = dG */
    if (need[1]) gin[1] = tg_sum_axis(tp, dy, 0, false); /* db = Σ_rows dG */
    return tg_tape_status(tp);
}

static const tg_op_def add_bias_def = {
    .name = "add_bias", .forward = add_bias_forward, .vjp = add_bias_vjp,
    .vjp_graph = add_bias_vjp_graph,
    .rules = (const char *const[]){"{dy}", "Σ_rows {dy:s}", NULL},
    .onnx = add_bias_onnx};

tg_tensor *tg_add_bias(tg_tape *tp, tg_tensor *x, tg_tensor *b)
{
    tg_tensor *in[2] = {x, b};
    if (!tg__guard(tp, "add_bias", 2, in)) return NULL;
    if (x->rank != 2 || b->rank != 1 || b->shape[0] != x->shape[1])
        return fail2(tp, TG_ERR_SHAPE, "add_bias: needs x [n,m] and b [m]", x, " and ", b);
    return tg_custom(tp, &add_bias_def, in, 2, 2, x->shape, NULL);
}

/* ====== ONNX forms ======
 * MatMul is torch.matmul, batch broadcasting included; add_bias is an Add
 * broadcasting b over the rows. */

static TG__ONNX_HOOK(matmul_onnx)
{
    (void)ctx;
    return tg__onnx_same(g, "MatMul", out, in, n_in);
}

static TG__ONNX_HOOK(add_bias_onnx)
{
    (void)ctx;
    return tg__onnx_same(g, "Add", out, in, n_in);
}

static TG__ONNX_HOOK(transpose_onnx)
{
    (void)n_in, (void)ctx;
    tg_onnx_node *n = tg__onnx_op(g, "Transpose", tg_onnx_value(g, out), 1,
                                  tg_onnx_value(g, in[0]));
    tg_onnx_attr_ints(n, "perm", (const int64_t[]){1, 0}, 2);
    int b = tg_onnx_batch_axis(g, in[0]);
    tg_onnx_set_batch_axis(g, out, b < 0 ? -1 : 1 - b);
    return tg_onnx_status(g);
}
