/*
 * Linear algebra: matmul, transpose, add_bias. Products go through tg__gemm
 * with transpose flags, so no VJP materialises a transpose, and gradients are
 * accumulated by GEMM itself with beta = 1 (no temporary, no extra pass).
 * To add an op: forward and vjp side by side, a tg_op_def, a constructor.
 */
#include "internal.h"

#include <limits.h>

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

static const tg_op_def matmul_def = {
    .name = "matmul", .forward = matmul_forward, .vjp = matmul_vjp,
    .rules = (const char *const[]){"{dy:s} · {1:T}", "{0:T} · {dy:s}", NULL}};

tg_tensor *tg_matmul(tg_tape *tp, tg_tensor *a, tg_tensor *b)
{
    tg_tensor *in[2] = {a, b};
    if (!tg__guard(tp, "matmul", 2, in)) return NULL;
    if (a->rank != 2 || b->rank != 2)
        return fail2(tp, TG_ERR_SHAPE, "matmul: both operands must have rank 2", a, " x ", b);
    if (a->shape[1] != b->shape[0])
        return fail2(tp, TG_ERR_SHAPE, "matmul: inner dimensions differ", a, " x ", b);
    /* BLAS takes int extents; refuse what would be truncated rather than overrun memory. */
    if (a->shape[0] > INT_MAX || a->shape[1] > INT_MAX || b->shape[1] > INT_MAX)
        return fail2(tp, TG_ERR_SHAPE, "matmul: a dimension exceeds INT_MAX", a, " x ", b);
    return tg_custom(tp, &matmul_def, in, 2, 2, (int64_t[]){a->shape[0], b->shape[1]}, NULL);
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

static const tg_op_def transpose_def = {
    .name = "transpose", .forward = transpose_forward, .vjp = transpose_vjp,
    .rules = (const char *const[]){"{dy:T}", NULL}};

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

#define BIAS_FWD(T)                                                                                \
    do {                                                                                           \
        const T *x = in[0]->data, *b = in[1]->data;                                                \
        T *y = out->data;                                                                          \
        for (int64_t i = 0; i < n; i++)                                                            \
            for (int64_t j = 0; j < m; j++) y[i * m + j] = x[i * m + j] + b[j];                    \
    } while (0)

static tg_status add_bias_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in, (void)ctx;
    int64_t n = out->shape[0], m = out->shape[1];
    if (out->numel == 0) return TG_OK; /* n may be huge when m is 0: do not walk it */
    TG__FLOAT_SWITCH(out->dtype, BIAS_FWD, TG_ERR_DTYPE);
    return TG_OK;
}

/* One pass over dG, row by row, when both gradients are wanted: each row is
 * read once while in cache, and db sums the rows in the same order as alone. */
#define BIAS_VJP(T)                                                                                \
    do {                                                                                           \
        const T *restrict g = gout->data;                                                          \
        T *restrict dx = gin[0] ? gin[0]->data : NULL;                                             \
        T *restrict db = gin[1] ? gin[1]->data : NULL;                                             \
        for (int64_t i = 0; i < n; i++) {                                                          \
            const T *gi = g + i * m;                                                               \
            if (dx)                                                                                \
                for (int64_t j = 0; j < m; j++) dx[i * m + j] += gi[j]; /* dX += dG */             \
            if (db)                                                                                \
                for (int64_t j = 0; j < m; j++) db[j] += gi[j]; /* db += sum over rows of dG */    \
        }                                                                                          \
    } while (0)

static tg_status add_bias_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                              tg_tensor **gin, int n_in, void *ctx)
{
    (void)in, (void)n_in, (void)ctx;
    int64_t n = out->shape[0], m = out->shape[1];
    if (out->numel == 0) return TG_OK; /* nothing flows back, and n may be huge */
    TG__FLOAT_SWITCH(out->dtype, BIAS_VJP, TG_ERR_DTYPE);
    return TG_OK;
}

static const tg_op_def add_bias_def = {
    .name = "add_bias", .forward = add_bias_forward, .vjp = add_bias_vjp,
    .rules = (const char *const[]){"{dy}", "Σ_rows {dy:s}", NULL}};

tg_tensor *tg_add_bias(tg_tape *tp, tg_tensor *x, tg_tensor *b)
{
    tg_tensor *in[2] = {x, b};
    if (!tg__guard(tp, "add_bias", 2, in)) return NULL;
    if (x->rank != 2 || b->rank != 1 || b->shape[0] != x->shape[1])
        return fail2(tp, TG_ERR_SHAPE, "add_bias: needs x [n,m] and b [m]", x, " and ", b);
    return tg_custom(tp, &add_bias_def, in, 2, 2, x->shape, NULL);
}
