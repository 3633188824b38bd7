/*
 * Convolution and pooling on NCHW data: conv1d, conv2d, max_pool2d,
 * avg_pool2d, with PyTorch's output sizes floor((L + 2p - d (k - 1) - 1) / s) + 1.
 *
 * A convolution is a matrix product. For one sample, im2col lays the input
 * out as a column matrix [C KH KW, OH OW] whose column p holds the receptive
 * field of output position p (zeros where it reaches into the padding); the
 * weight, seen as [O, C KH KW], times that matrix is the output [O, OH OW].
 * With groups, each group is its own product on its own block of rows. The
 * VJP is two more products: dW += dY col^T, and dcol = W^T dY, which col2im
 * adds back into dX at the positions im2col read them from. So all the
 * arithmetic runs in GEMM; im2col and col2im only move memory. The samples
 * go in chunks whose columns sit side by side in one matrix, so each group
 * is one large GEMM per chunk; the column and staging buffers are made in the
 * arena when the op is recorded: forward, replay and VJP reuse them and
 * allocate nothing.
 *
 * Pools are direct loops, cheap next to a convolution (the common 2x2
 * stride-2 max pool has a branch-free loop of its own). Max pooling keeps the
 * flat index of each window's maximum in the arena, written at every forward,
 * so its VJP is one scatter-add.
 * To add an op: forward and vjp side by side, a tg_op_def, a constructor.
 */
#include "internal.h"

#include <limits.h>
#include <math.h>
#include <string.h>

/* The ONNX forms of the ops, at the end of the file. */
static TG__ONNX_HOOK(conv_onnx);
static TG__ONNX_HOOK(max_pool_onnx);
static TG__ONNX_HOOK(avg_pool_onnx);

/* The sizes of a convolution or a pool; 1-D ones have h = kh = oh = 1. */
typedef struct geom {
    int64_t n, c, h, w; /* input */
    int64_t o, kh, kw;  /* output channels and kernel (o = c for pools) */
    int64_t oh, ow;     /* output plane */
    int64_t sh, sw, ph, pw, dh, dw;
    int64_t groups;
} geom;

/* Output positions [*lo, *hi) of 'count' whose input index pos * stride + off
 * falls inside [0, len): the part of a row that reads data, not padding. */
static void valid_range(int64_t off, int64_t stride, int64_t len, int64_t count, int64_t *lo,
                        int64_t *hi)
{
    int64_t a = off >= 0 ? 0 : (-off + stride - 1) / stride;
    int64_t b = len - off <= 0 ? 0 : (len - off + stride - 1) / stride;
    *lo = a < count ? a : count;
    *hi = b < count ? b : count;
    if (*hi < *lo) *hi = *lo;
}

/* ====== im2col and col2im for one sample: x [C,H,W] <-> col [C KH KW, OH OW] ======
 * Row (c, i, j) of col, column (y, x) is input (c, y sh - ph + i dh, x sw - pw + j dw).
 * The columns of a chunk of samples lie side by side, so a row of the matrix
 * is 'ld' elements long and the sample's block starts at column s OH OW (the
 * caller offsets col by it). im2col writes every element of its block (zeros
 * for padding); col2im adds the data part back. */

#define DEFINE_COLS(T, SUF)                                                                        \
    static void im2col_##SUF(const geom *g, const T *restrict x, T *restrict col, int64_t ld)      \
    {                                                                                              \
        for (int64_t c = 0; c < g->c; c++)                                                         \
            for (int64_t i = 0; i < g->kh; i++) {                                                  \
                int64_t y0, y1, offy = i * g->dh - g->ph;                                          \
                valid_range(offy, g->sh, g->h, g->oh, &y0, &y1);                                   \
                for (int64_t j = 0; j < g->kw; j++) {                                              \
                    T *row = col + ((c * g->kh + i) * g->kw + j) * ld;                             \
                    int64_t x0, x1, offx = j * g->dw - g->pw;                                      \
                    valid_range(offx, g->sw, g->w, g->ow, &x0, &x1);                               \
                    memset(row, 0, (size_t)(y0 * g->ow) * sizeof(T));                              \
                    for (int64_t oy = y0; oy < y1; oy++) {                                         \
                        /* xr[ox sw + offx] is the input under output column ox */                 \
                        const T *xr = x + (c * g->h + oy * g->sh + offy) * g->w;                   \
                        T *r = row + oy * g->ow;                                                   \
                        for (int64_t ox = 0; ox < x0; ox++) r[ox] = 0;                             \
                        if (g->sw == 1)                                                            \
                            memcpy(r + x0, xr + x0 + offx, (size_t)(x1 - x0) * sizeof(T));         \
                        else                                                                       \
                            for (int64_t ox = x0; ox < x1; ox++) r[ox] = xr[ox * g->sw + offx];    \
                        for (int64_t ox = x1; ox < g->ow; ox++) r[ox] = 0;                         \
                    }                                                                              \
                    memset(row + y1 * g->ow, 0, (size_t)((g->oh - y1) * g->ow) * sizeof(T));       \
                }                                                                                  \
            }                                                                                      \
    }                                                                                              \
    static void col2im_##SUF(const geom *g, const T *restrict col, T *restrict dx, int64_t ld)     \
    {                                                                                              \
        for (int64_t c = 0; c < g->c; c++)                                                         \
            for (int64_t i = 0; i < g->kh; i++) {                                                  \
                int64_t y0, y1, offy = i * g->dh - g->ph;                                          \
                valid_range(offy, g->sh, g->h, g->oh, &y0, &y1);                                   \
                for (int64_t j = 0; j < g->kw; j++) {                                              \
                    const T *row = col + ((c * g->kh + i) * g->kw + j) * ld;                       \
                    int64_t x0, x1, offx = j * g->dw - g->pw;                                      \
                    valid_range(offx, g->sw, g->w, g->ow, &x0, &x1);                               \
                    for (int64_t oy = y0; oy < y1; oy++) {                                         \
                        T *xr = dx + (c * g->h + oy * g->sh + offy) * g->w;                        \
                        const T *r = row + oy * g->ow;                                             \
                        if (g->sw == 1)                                                            \
                            for (int64_t ox = x0; ox < x1; ox++) xr[ox + offx] += r[ox];           \
                        else                                                                       \
                            for (int64_t ox = x0; ox < x1; ox++) xr[ox * g->sw + offx] += r[ox];   \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
    }
DEFINE_COLS(float, f32)
DEFINE_COLS(double, f64)

static void im2col(tg_dtype dt, const geom *g, const void *x, void *col, int64_t ld)
{
    if (dt == TG_F64)
        im2col_f64(g, x, col, ld);
    else
        im2col_f32(g, x, col, ld);
}

static void col2im(tg_dtype dt, const geom *g, const void *col, void *dx, int64_t ld)
{
    if (dt == TG_F64)
        col2im_f64(g, col, dx, ld);
    else
        col2im_f32(g, col, dx, ld);
}

/* ====== conv2d (and conv1d as H = 1): Y[n] = W col(X[n]) + b 1^T per group ======
 * dW += dY[n] col(X[n])^T;  dX[n] += col2im(W^T dY[n]);  db += the sum of dY over n and the plane.
 *
 * The samples go in chunks of nb: the columns of a chunk form one matrix
 * [C KH KW, nb OH OW], so each group is one GEMM over the whole chunk, not
 * one per sample. Its product [O, nb OH OW] is laid out by channel, not by sample, so
 * it goes through a staging buffer that a copy turns into Y's [nb, O, OH OW]
 * (adding the bias on the way); the VJP gathers dY into that buffer the other
 * way round. A chunk of one sample needs neither: its product is Y[n] as it lies.
 */

/* Bytes of scratch (columns plus staging) a chunk may take: about one core's
 * L2 cache, so the columns im2col writes are still in cache when the GEMM
 * reads them, and the product when the copy into Y reads it. Measured on the
 * Fashion-MNIST CNN's layers at one thread (bench/conv_bench.c), a whole
 * batch of 100 in one chunk (22 MB of columns) took 15% more CPU time than
 * chunks of this size, which cost about what one GEMM per sample does (see
 * docs/benchmarks.md). */
#define CONV_SCRATCH_BYTES ((int64_t)1 << 20)

typedef struct conv_ctx {
    geom g;
    int64_t nb;   /* samples per chunk (the last chunk may be shorter) */
    void *col;    /* [C KH KW, nb OH OW] columns of a chunk, in the arena */
    void *stage;  /* [O, nb OH OW] product or gradient of a chunk; NULL when nb = 1 */
    bool fresh;   /* col holds the columns of all of X, left by the last forward */
    double *bsum; /* [O] bias gradient sums, in double for F32 too */
    void *scratch; /* conv_dx and conv_dw: a product of Y's shape their VJP adds; else NULL */
} conv_ctx;

/* The context of a convolution node with geometry g (checked by the caller)
 * and its arena buffers: the columns of a chunk and, for chunks of several
 * samples, the staging buffer; the bias sums with 'bias', and a scratch
 * product of 'scratch' elements when it is not 0. 'ops' names the operands
 * in messages. */
static conv_ctx *conv_ctx_new(tg_tape *tp, const geom *g, size_t es, const char *op,
                              const char *ops, bool bias, int64_t scratch)
{
    /* As many samples per chunk as the scratch budget holds (at least one);
     * a chunk of several samples also needs the staging buffer. */
    int64_t p = g->oh * g->ow, col_numel = g->c * g->kh * g->kw * p;
    int64_t yp = tg__numel(2, (int64_t[]){g->o, p});
    int64_t per = yp < 0 || col_numel > INT64_MAX - yp ? -1 : col_numel + yp;
    int64_t nb = per == 0 ? g->n : per < 0 ? 1 : CONV_SCRATCH_BYTES / (int64_t)es / per;
    nb = nb > g->n ? g->n : nb;
    nb = nb < 1 ? 1 : nb;
    conv_ctx c = {.g = *g, .nb = nb};
    conv_ctx *ctx = tg__tape_copy(tp, &c, sizeof c);
    if (!ctx) return NULL;
    if (!(ctx->col = tg__arena_alloc(&tp->arena, (size_t)(nb * col_numel) * es))) {
        tg__fail(tp, TG_ERR_NOMEM, "%s: out of memory for the column buffer (%lld elements): %s",
                 op, (long long)(nb * col_numel), ops);
        return NULL;
    }
    if (nb > 1 && !(ctx->stage = tg__arena_alloc(&tp->arena, (size_t)(nb * yp) * es))) {
        tg__fail(tp, TG_ERR_NOMEM, "%s: out of memory for the staging buffer (%lld elements): %s",
                 op, (long long)(nb * yp), ops);
        return NULL;
    }
    if (bias && !(ctx->bsum = tg__arena_alloc(&tp->arena, (size_t)g->o * sizeof(double)))) {
        tg__fail(tp, TG_ERR_NOMEM, "%s: out of memory for the bias sums: %s", op, ops);
        return NULL;
    }
    if (scratch && !(ctx->scratch = tg__arena_alloc(&tp->arena, (size_t)scratch * es))) {
        tg__fail(tp, TG_ERR_NOMEM, "%s: out of memory for a product of %lld elements: %s", op,
                 (long long)scratch, ops);
        return NULL;
    }
    return ctx;
}

/* Y[n0 + s][o] = stage[o][s] (+ b[o]) for the nb samples of a chunk; with nb = 1
 * the product is already in Y and only the bias is added. */
#define SCATTER_BIAS(T)                                                                            \
    do {                                                                                           \
        const T *bb = in[2]->data, *st = (const T *)stage;                                         \
        T *yc = (T *)y + n0 * g->o * p;                                                            \
        for (int64_t s = 0; s < nb; s++)                                                           \
            for (int64_t o = 0; o < g->o; o++) {                                                   \
                T *d = yc + (s * g->o + o) * p, bo = bb[o];                                        \
                const T *v = st + o * ld + s * p;                                                  \
                for (int64_t q = 0; q < p; q++) d[q] = v[q] + bo;                                  \
            }                                                                                      \
    } while (0)

static tg_status conv_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    conv_ctx *cx = ctx;
    const geom *g = &cx->g;
    tg_dtype dt = out->dtype;
    size_t es = tg__dtype_size(dt);
    int64_t p = g->oh * g->ow, og = g->o / g->groups, r = g->c / g->groups * g->kh * g->kw;
    const char *x = in[0]->data, *w = in[1]->data;
    char *y = out->data, *col = cx->col;
    if (out->numel == 0) return TG_OK; /* N or O is 0: no sample to walk */
    for (int64_t n0 = 0; n0 < g->n; n0 += cx->nb) {
        int64_t nb = g->n - n0 < cx->nb ? g->n - n0 : cx->nb, ld = nb * p;
        for (int64_t s = 0; s < nb; s++)
            im2col(dt, g, x + (size_t)((n0 + s) * g->c * g->h * g->w) * es,
                   col + (size_t)(s * p) * es, ld);
        char *stage = nb == 1 ? y + (size_t)(n0 * g->o * p) * es : cx->stage;
        for (int64_t k = 0; k < g->groups; k++)
            tg__gemm(dt, false, false, og, ld, r, 1.0, w + (size_t)(k * og * r) * es, r,
                     col + (size_t)(k * r * ld) * es, ld, 0.0,
                     stage + (size_t)(k * og * ld) * es, ld);
        /* With one chunk (a small batch), the VJP finds X's columns here, as
         * max_pool2d finds its argmax: the gradient is that of the last forward. */
        cx->fresh = nb == g->n;
        if (n_in > 2)
            TG__FLOAT_SWITCH(dt, SCATTER_BIAS, TG_ERR_DTYPE);
        else if (nb > 1)
            for (int64_t s = 0; s < nb; s++)
                for (int64_t o = 0; o < g->o; o++)
                    memcpy(y + (size_t)(((n0 + s) * g->o + o) * p) * es,
                           stage + (size_t)(o * ld + s * p) * es, (size_t)p * es);
    }
    return TG_OK;
}

/* The sum of a row in double with four partial sums: one running sum would
 * chain every addition on the last one, and the bias gradient of a
 * convolution is a pass over all of dY. */
#define DEFINE_ROW_SUM(T, SUF)                                                                     \
    static double row_sum_##SUF(const T *v, int64_t n)                                             \
    {                                                                                              \
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0;                                                     \
        int64_t i = 0;                                                                             \
        for (; i + 4 <= n; i += 4) {                                                               \
            s0 += (double)v[i];                                                                    \
            s1 += (double)v[i + 1];                                                                \
            s2 += (double)v[i + 2];                                                                \
            s3 += (double)v[i + 3];                                                                \
        }                                                                                          \
        for (; i < n; i++) s0 += (double)v[i];                                                     \
        return (s0 + s1) + (s2 + s3);                                                              \
    }
DEFINE_ROW_SUM(float, f32)
DEFINE_ROW_SUM(double, f64)

/* row_sum_f32 or row_sum_f64 by the element type of v. */
#define ROW_SUM(v, n) _Generic((v), const float *: row_sum_f32, const double *: row_sum_f64)(v, n)

/* Row (s, o) of dY in a chunk: summed into the bias sums when db is wanted
 * and, for a chunk of several samples that the GEMMs need, copied to
 * stage[o][s]; one pass over dY serves both. */
#define GATHER(T)                                                                                  \
    do {                                                                                           \
        for (int64_t s = 0; s < nb; s++)                                                           \
            for (int64_t o = 0; o < g->o; o++) {                                                   \
                const T *v = (const T *)gyc + (s * g->o + o) * p;                                  \
                if (db) cx->bsum[o] += ROW_SUM(v, p);                                              \
                if (copy) memcpy((T *)cx->stage + o * ld + s * p, v, (size_t)p * sizeof(T));       \
            }                                                                                      \
    } while (0)

#define BIAS_ADD(T)                                                                                \
    do {                                                                                           \
        T *dbt = (T *)db;                                                                          \
        for (int64_t o = 0; o < g->o; o++) dbt[o] += (T)cx->bsum[o];                               \
    } while (0)

/* The products of the VJP, each where its pointer is not NULL: dX += col2im(W^T dY),
 * dW += dY col(X)^T and db += Σ dY; x is read only for dW, w only for dX. The
 * fused VJP and the recorded one's conv_dx and conv_dw all run here. */
static tg_status conv_grads(conv_ctx *cx, tg_dtype dt, const char *x, const char *w,
                            const char *gy, char *dx, char *dw, char *db)
{
    const geom *g = &cx->g;
    size_t es = tg__dtype_size(dt);
    int64_t p = g->oh * g->ow, og = g->o / g->groups, r = g->c / g->groups * g->kh * g->kw;
    char *col = cx->col;
    if (g->n == 0 || g->o == 0 || (!dx && !dw && !db)) return TG_OK; /* nothing flows back */
    if (db) memset(cx->bsum, 0, (size_t)g->o * sizeof(double));
    for (int64_t n0 = 0; n0 < g->n; n0 += cx->nb) {
        int64_t nb = g->n - n0 < cx->nb ? g->n - n0 : cx->nb, ld = nb * p;
        const char *gyc = gy + (size_t)(n0 * g->o * p) * es;
        bool copy = nb > 1 && (dx || dw); /* the GEMMs take dY as [O, nb OH OW] */
        TG__FLOAT_SWITCH(dt, GATHER, TG_ERR_DTYPE);
        if (copy) gyc = cx->stage;
        if (dw) { /* dW_k [og, r] += dY_k [og, nb p] col_k^T */
            for (int64_t s = 0; s < nb && !cx->fresh; s++)
                im2col(dt, g, x + (size_t)((n0 + s) * g->c * g->h * g->w) * es,
                       col + (size_t)(s * p) * es, ld);
            for (int64_t k = 0; k < g->groups; k++)
                tg__gemm(dt, false, true, og, r, ld, 1.0, gyc + (size_t)(k * og * ld) * es, ld,
                         col + (size_t)(k * r * ld) * es, ld, 1.0, dw + (size_t)(k * og * r) * es,
                         r);
        }
        if (dx) { /* dcol_k [r, nb p] = W_k^T dY_k, added into dX through col2im */
            cx->fresh = false; /* dcol takes the columns' place */
            for (int64_t k = 0; k < g->groups; k++)
                tg__gemm(dt, true, false, r, ld, og, 1.0, w + (size_t)(k * og * r) * es, r,
                         gyc + (size_t)(k * og * ld) * es, ld, 0.0,
                         col + (size_t)(k * r * ld) * es, ld);
            for (int64_t s = 0; s < nb; s++)
                col2im(dt, g, col + (size_t)(s * p) * es,
                       dx + (size_t)((n0 + s) * g->c * g->h * g->w) * es, ld);
        }
    }
    if (db) TG__FLOAT_SWITCH(dt, BIAS_ADD, TG_ERR_DTYPE);
    return TG_OK;
}

static tg_status conv_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                          tg_tensor **gin, int n_in, void *ctx)
{
    (void)out;
    return conv_grads(ctx, gout->dtype, in[0]->data, in[1]->data, gout->data,
                      gin[0] ? gin[0]->data : NULL, gin[1] ? gin[1]->data : NULL,
                      n_in > 2 && gin[2] ? gin[2]->data : NULL);
}

/* ====== The recorded VJP: conv, conv_dx and conv_dw close under differentiation ======
 * B(x, w, dy) = <dy, conv(x, w)> is linear in each argument, and its three
 * partial derivatives are the three ops: conv(x, w) by dy, conv_dx(dy, w) (the
 * transposed convolution, col2im(W^T dY)) by x, and conv_dw(x, dy)
 * (dY col(X)^T) by w. So the VJP of each is made of the other two:
 *   conv:    dx = conv_dx(dy, w),  dw = conv_dw(x, dy),  db = conv_db(dy)
 *   conv_dx(dy, w), cotangent u of X's shape:  d dy = conv(u, w),   dw = conv_dw(u, dy)
 *   conv_dw(x, dy), cotangent v of W's shape:  dx = conv_dx(dy, v), d dy = conv(x, v)
 *   conv_db(dy) = Σ_{n,plane} dy, cotangent c [O]: d dy = c broadcast over n and the plane.
 * Each runs the kernels of the fused VJP (conv_grads) with the geometry of
 * the convolution that made it and buffers of its own, so a recorded
 * gradient has the fused one's bits. */

enum conv_kind { CONV_Y, CONV_DX, CONV_DW, CONV_DB };

static tg_tensor *conv_record(tg_tape *tp, enum conv_kind kind, const geom *g, tg_tensor *a,
                              tg_tensor *b);

static tg_status conv_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                                const bool *need, tg_tensor **gin, int n_in, void *ctx)
{
    (void)out;
    const geom *g = &((const conv_ctx *)ctx)->g;
    if (need[0]) gin[0] = conv_record(tp, CONV_DX, g, dy, in[1]);
    if (need[1]) gin[1] = conv_record(tp, CONV_DW, g, in[0], dy);
    if (n_in > 2 && need[2]) gin[2] = conv_record(tp, CONV_DB, g, dy, NULL);
    return tg_tape_status(tp);
}

/* out += the convolution of x with w (no bias), through the scratch product. */
static tg_status conv_add_product(conv_ctx *cx, tg_tensor *out, tg_tensor *x, tg_tensor *w)
{
    tg_tensor y = {.dtype = out->dtype, .numel = out->numel, .data = cx->scratch};
    tg_tensor *in[2] = {x, w};
    tg_status s = conv_forward(&y, in, 2, cx);
    if (s) return s;
    if (out->dtype == TG_F64)
        for (int64_t k = 0; k < out->numel; k++)
            ((double *)out->data)[k] += ((const double *)cx->scratch)[k];
    else
        for (int64_t k = 0; k < out->numel; k++)
            ((float *)out->data)[k] += ((const float *)cx->scratch)[k];
    return TG_OK;
}

/* conv_dx(dy, w): X's shape, col2im(W^T dY) per chunk and group. */
static tg_status conv_dx_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in;
    conv_ctx *cx = ctx;
    memset(out->data, 0, (size_t)out->numel * tg__dtype_size(out->dtype));
    cx->fresh = false;
    return conv_grads(cx, out->dtype, NULL, in[1]->data, in[0]->data, out->data, NULL, NULL);
}

static tg_status conv_dx_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                             tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)n_in;
    conv_ctx *cx = ctx;
    tg_status s = TG_OK;
    if (gin[0]) s = conv_add_product(cx, gin[0], (tg_tensor *)gout, in[1]); /* d dy += conv(u, w) */
    cx->fresh = false;
    if (!s && gin[1]) /* dw += conv_dw(u, dy) */
        s = conv_grads(cx, gout->dtype, gout->data, NULL, in[0]->data, NULL, gin[1]->data, NULL);
    return s;
}

static tg_status conv_dx_vjp_graph(tg_tape *tp, tg_tensor *du, tg_tensor *out,
                                   tg_tensor *const *in, const bool *need, tg_tensor **gin,
                                   int n_in, void *ctx)
{
    (void)out, (void)n_in;
    const geom *g = &((const conv_ctx *)ctx)->g;
    if (need[0]) gin[0] = conv_record(tp, CONV_Y, g, du, in[1]);
    if (need[1]) gin[1] = conv_record(tp, CONV_DW, g, du, in[0]);
    return tg_tape_status(tp);
}

/* conv_dw(x, dy): W's shape, Σ_chunks dY col(X)^T per group. */
static tg_status conv_dw_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in;
    conv_ctx *cx = ctx;
    memset(out->data, 0, (size_t)out->numel * tg__dtype_size(out->dtype));
    cx->fresh = false;
    return conv_grads(cx, out->dtype, in[0]->data, NULL, in[1]->data, NULL, out->data, NULL);
}

static tg_status conv_dw_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                             tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)n_in;
    conv_ctx *cx = ctx;
    tg_status s = TG_OK;
    cx->fresh = false;
    if (gin[0]) /* dx += conv_dx(dy, v) */
        s = conv_grads(cx, gout->dtype, NULL, gout->data, in[1]->data, gin[0]->data, NULL, NULL);
    if (!s && gin[1]) s = conv_add_product(cx, gin[1], in[0], (tg_tensor *)gout); /* d dy += conv(x, v) */
    return s;
}

static tg_status conv_dw_vjp_graph(tg_tape *tp, tg_tensor *dv, tg_tensor *out,
                                   tg_tensor *const *in, const bool *need, tg_tensor **gin,
                                   int n_in, void *ctx)
{
    (void)out, (void)n_in;
    const geom *g = &((const conv_ctx *)ctx)->g;
    if (need[0]) gin[0] = conv_record(tp, CONV_DX, g, in[1], dv);
    if (need[1]) gin[1] = conv_record(tp, CONV_Y, g, in[0], dv);
    return tg_tape_status(tp);
}

/* conv_db(dy) [O]: the bias gradient, summed as the fused VJP sums it. */
#define DB_SUM(T)                                                                                  \
    do {                                                                                           \
        const T *gy = in[0]->data;                                                                 \
        T *db = out->data;                                                                         \
        for (int64_t o = 0; o < g->o; o++) {                                                       \
            double acc = 0;                                                                        \
            for (int64_t n = 0; n < g->n; n++) acc += ROW_SUM(gy + (n * g->o + o) * p, p);         \
            db[o] = (T)acc;                                                                        \
        }                                                                                          \
    } while (0)

static tg_status conv_db_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in;
    const geom *g = &((const conv_ctx *)ctx)->g;
    int64_t p = g->oh * g->ow;
    TG__FLOAT_SWITCH(out->dtype, DB_SUM, TG_ERR_DTYPE);
    return TG_OK;
}

#define DB_SPREAD(T)                                                                               \
    do {                                                                                           \
        const T *c = gout->data;                                                                   \
        T *d = gin[0]->data;                                                                       \
        for (int64_t n = 0; n < g->n; n++)                                                         \
            for (int64_t o = 0; o < g->o; o++)                                                     \
                for (int64_t q = 0; q < p; q++) d[(n * g->o + o) * p + q] += c[o];                 \
    } while (0)

static tg_status conv_db_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                             tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)in, (void)n_in;
    const geom *g = &((const conv_ctx *)ctx)->g;
    int64_t p = g->oh * g->ow;
    if (gin[0]) TG__FLOAT_SWITCH(gout->dtype, DB_SPREAD, TG_ERR_DTYPE);
    return TG_OK;
}

static tg_status conv_db_vjp_graph(tg_tape *tp, tg_tensor *dc, tg_tensor *out,
                                   tg_tensor *const *in, const bool *need, tg_tensor **gin,
                                   int n_in, void *ctx)
{
    (void)out, (void)need, (void)n_in, (void)ctx; /* d dy = c as [1,O,1(,1)], broadcast */
    const tg_tensor *dy = in[0];
    int64_t shape[TG_MAX_RANK] = {1, dy->shape[1], 1, 1};
    gin[0] = tg_expand(tp, tg_reshape(tp, dc, dy->rank, shape), dy->rank, dy->shape);
    return tg_tape_status(tp);
}

static const tg_op_def conv2d_def = {
    .name = "conv2d", .forward = conv_forward, .vjp = conv_vjp, .vjp_graph = conv_vjp_graph,
    .rules = (const char *const[]){"col2im({1}ᵀ · {dy:s}) per sample and group",
                                   "Σ_n {dy:s} · im2col({0})ᵀ per group", "Σ_{n,h,w} {dy:s}",
                                   NULL},
    .onnx = conv_onnx};
static const tg_op_def conv1d_def = {
    .name = "conv1d", .forward = conv_forward, .vjp = conv_vjp, .vjp_graph = conv_vjp_graph,
    .rules = (const char *const[]){"col2im({1}ᵀ · {dy:s}) per sample and group",
                                   "Σ_n {dy:s} · im2col({0})ᵀ per group", "Σ_{n,l} {dy:s}",
                                   NULL},
    .onnx = conv_onnx};

/* The ops of the recorded VJP, for each dimension. */
#define CONV_DX_DEF(NAME, CONV, DW)                                                                \
    {.name = NAME, .forward = conv_dx_forward, .vjp = conv_dx_vjp,                                 \
     .vjp_graph = conv_dx_vjp_graph,                                                               \
     .rules = (const char *const[]){CONV "({dy:s}, {1})", DW "({dy:s}, {0})", NULL}}
#define CONV_DW_DEF(NAME, CONV, DX)                                                                \
    {.name = NAME, .forward = conv_dw_forward, .vjp = conv_dw_vjp,                                 \
     .vjp_graph = conv_dw_vjp_graph,                                                               \
     .rules = (const char *const[]){DX "({1}, {dy:s})", CONV "({0}, {dy:s})", NULL}}
#define CONV_DB_DEF(NAME, AXES)                                                                    \
    {.name = NAME, .forward = conv_db_forward, .vjp = conv_db_vjp,                                 \
     .vjp_graph = conv_db_vjp_graph,                                                               \
     .rules = (const char *const[]){"{dy:s} broadcast over " AXES, NULL}}

static const tg_op_def conv2d_dx_def = CONV_DX_DEF("conv2d_dx", "conv2d", "conv2d_dw");
static const tg_op_def conv2d_dw_def = CONV_DW_DEF("conv2d_dw", "conv2d", "conv2d_dx");
static const tg_op_def conv2d_db_def = CONV_DB_DEF("conv2d_db", "n, h, w");
static const tg_op_def conv1d_dx_def = CONV_DX_DEF("conv1d_dx", "conv1d", "conv1d_dw");
static const tg_op_def conv1d_dw_def = CONV_DW_DEF("conv1d_dw", "conv1d", "conv1d_dx");
static const tg_op_def conv1d_db_def = CONV_DB_DEF("conv1d_db", "n, l");

/* Records conv (no bias), conv_dx, conv_dw or conv_db with the geometry of
 * the convolution whose VJP it is part of; a and b as in the comment above,
 * which the vjp_graph contract gives the right shapes. */
static tg_tensor *conv_record(tg_tape *tp, enum conv_kind kind, const geom *g, tg_tensor *a,
                              tg_tensor *b)
{
    static const tg_op_def *const defs[2][4] = {
        {&conv2d_def, &conv2d_dx_def, &conv2d_dw_def, &conv2d_db_def},
        {&conv1d_def, &conv1d_dx_def, &conv1d_dw_def, &conv1d_db_def}};
    if (tg_tape_status(tp)) return NULL; /* a or b may be NULL after an earlier failure */
    bool one_d = a->rank == 3;
    const tg_op_def *def = defs[one_d][kind];
    int64_t dims[4][4] = {{g->n, g->o, g->oh, g->ow},
                          {g->n, g->c, g->h, g->w},
                          {g->o, g->c / g->groups, g->kh, g->kw},
                          {g->o}};
    int64_t *d = dims[kind], shape[4] = {d[0], d[1], one_d ? d[3] : d[2], d[3]};
    int rank = kind == CONV_DB ? 1 : one_d ? 3 : 4;
    tg_tensor *in[2] = {a, b};
    conv_ctx *ctx;
    if (kind == CONV_DB) {
        ctx = tg__tape_copy(tp, &(conv_ctx){.g = *g}, sizeof *ctx);
    } else {
        int64_t y = kind == CONV_Y ? 0 : g->n * g->o * g->oh * g->ow;
        ctx = conv_ctx_new(tp, g, tg__dtype_size(a->dtype), def->name, "in a recorded gradient",
                           false, y);
    }
    return ctx ? tg_custom(tp, def, in, kind == CONV_DB ? 1 : 2, rank, shape, ctx) : NULL;
}

/* "x [..], w [..], b [..]" (b NULL when absent) for messages. */
static const char *operands_str(const tg_tensor *x, const tg_tensor *w, const tg_tensor *b,
                                char *buf, size_t size)
{
    char sx[TG__SHAPE_STR_MAX], sw[TG__SHAPE_STR_MAX], sb[TG__SHAPE_STR_MAX] = "NULL";
    if (b) tg__shape_str(b, sb, sizeof sb);
    snprintf(buf, size, "x %s, w %s, b %s", tg__shape_str(x, sx, sizeof sx),
             tg__shape_str(w, sw, sizeof sw), sb);
    return buf;
}

/* One spatial pair as "AxB", or "B" alone for a 1-D op. */
static const char *pair_str(bool one_d, int64_t a, int64_t b, char *buf, size_t size)
{
    if (one_d)
        snprintf(buf, size, "%lld", (long long)b);
    else
        snprintf(buf, size, "%lldx%lld", (long long)a, (long long)b);
    return buf;
}

/* PyTorch's output length floor((len + 2 pad - dil (k - 1) - 1) / stride) + 1:
 * 0 when the dilated kernel does not fit, -1 when the length exceeds
 * INT64_MAX. Worked in unsigned 64 bits, where len + 2 pad and the kernel's
 * extent cannot wrap, so an empty tensor with a huge dimension is no overflow. */
static int64_t out_len(int64_t len, int64_t k, int64_t stride, int64_t pad, int64_t dil)
{
    uint64_t padded = (uint64_t)len + 2 * (uint64_t)pad;
    if ((uint64_t)(k - 1) > (UINT64_MAX - 1) / (uint64_t)dil) return 0;
    uint64_t extent = (uint64_t)dil * (uint64_t)(k - 1) + 1;
    if (extent > padded) return 0;
    uint64_t n = (padded - extent) / (uint64_t)stride + 1;
    return n > (uint64_t)INT64_MAX ? -1 : (int64_t)n;
}

static tg_tensor *conv(tg_tape *tp, const tg_op_def *def, bool one_d, tg_tensor *x, tg_tensor *w,
                       tg_tensor *b, const tg_conv_opts *o)
{
    const char *op = def->name;
    tg_tensor *in[3] = {x, w, b};
    if (!tg__guard(tp, op, 2, in)) return NULL;
    char ops[3 * TG__SHAPE_STR_MAX + 16], s1[48], s2[48], s3[48], s4[48];
    operands_str(x, w, b, ops, sizeof ops);
    tg_conv_opts z = o ? *o : (tg_conv_opts){{0, 0}, {0, 0}, {0, 0}, 0};
    int axes = one_d ? 1 : 2;
    bool neg = z.groups < 0;
    for (int i = 0; i < axes; i++)
        neg |= z.stride[i] < 0 || z.padding[i] < 0 || z.dilation[i] < 0;
    if (neg) {
        tg__fail(tp, TG_ERR_ARG,
                 "%s: options must not be negative: stride %s, padding %s, dilation %s, "
                 "groups %d",
                 op, pair_str(one_d, z.stride[0], z.stride[one_d ? 0 : 1], s1, sizeof s1),
                 pair_str(one_d, z.padding[0], z.padding[one_d ? 0 : 1], s2, sizeof s2),
                 pair_str(one_d, z.dilation[0], z.dilation[one_d ? 0 : 1], s3, sizeof s3),
                 z.groups);
        return NULL;
    }
    /* Zero fields take the defaults; a 1-D op reads index 0 into the W axis. */
    int64_t st[2], pd[2], dl[2];
    for (int i = 0; i < 2; i++) {
        int src = one_d ? 0 : i;
        bool used = !one_d || i == 1;
        st[i] = used && z.stride[src] ? z.stride[src] : 1;
        pd[i] = used ? z.padding[src] : 0;
        dl[i] = used && z.dilation[src] ? z.dilation[src] : 1;
    }
    int64_t groups = z.groups ? z.groups : 1;

    int rank = one_d ? 3 : 4;
    if (x->rank != rank || w->rank != rank || (b && (b->rank != 1 || b->shape[0] != w->shape[0]))) {
        tg__fail(tp, TG_ERR_SHAPE, "%s: needs x %s, w %s and b [O] or NULL: %s", op,
                 one_d ? "[N,C,L]" : "[N,C,H,W]", one_d ? "[O,C/groups,K]" : "[O,C/groups,KH,KW]",
                 ops);
        return NULL;
    }
    geom g = {.n = x->shape[0], .c = x->shape[1], .h = one_d ? 1 : x->shape[2],
              .w = x->shape[rank - 1], .o = w->shape[0], .kh = one_d ? 1 : w->shape[2],
              .kw = w->shape[rank - 1], .sh = st[0], .sw = st[1], .ph = pd[0], .pw = pd[1],
              .dh = dl[0], .dw = dl[1], .groups = groups};
    if (g.c % groups || g.o % groups) {
        tg__fail(tp, TG_ERR_SHAPE, "%s: groups %lld must divide C = %lld and O = %lld: %s", op,
                 (long long)groups, (long long)g.c, (long long)g.o, ops);
        return NULL;
    }
    if (w->shape[1] != g.c / groups) {
        tg__fail(tp, TG_ERR_SHAPE, "%s: w must have C/groups = %lld input channels: %s", op,
                 (long long)(g.c / groups), ops);
        return NULL;
    }
    if (g.kh == 0 || g.kw == 0) {
        tg__fail(tp, TG_ERR_SHAPE, "%s: the kernel is empty: %s", op, ops);
        return NULL;
    }
    g.oh = out_len(g.h, g.kh, g.sh, g.ph, g.dh);
    g.ow = out_len(g.w, g.kw, g.sw, g.pw, g.dw);
    if (g.oh < 0 || g.ow < 0) {
        tg__fail(tp, TG_ERR_SHAPE, "%s: the output would be too large: %s", op, ops);
        return NULL;
    }
    if (g.oh == 0 || g.ow == 0) {
        tg__fail(tp, TG_ERR_SHAPE,
                 "%s: the output would be empty (%s) with stride %s, padding %s, dilation %s: %s",
                 op, pair_str(one_d, g.oh, g.ow, s1, sizeof s1),
                 pair_str(one_d, g.sh, g.sw, s2, sizeof s2),
                 pair_str(one_d, g.ph, g.pw, s3, sizeof s3),
                 pair_str(one_d, g.dh, g.dw, s4, sizeof s4), ops);
        return NULL;
    }
    /* BLAS takes int extents (rows of a group's column matrix, output positions);
     * the column buffer must be addressable too. */
    int64_t p = tg__numel(2, (int64_t[]){g.oh, g.ow});
    int64_t r = tg__numel(3, (int64_t[]){g.c / groups, g.kh, g.kw});
    int64_t col_numel = tg__numel(4, (int64_t[]){g.c, g.kh, g.kw, p < 0 ? 0 : p});
    if (p < 0 || r < 0 || col_numel < 0 || p > INT_MAX || r > INT_MAX) {
        tg__fail(tp, TG_ERR_SHAPE, "%s: a matrix dimension exceeds INT_MAX: %s", op, ops);
        return NULL;
    }
    int64_t shape[4] = {g.n, g.o, one_d ? g.ow : g.oh, g.ow};
    if (tg__numel(rank, shape) < 0) {
        tg__fail(tp, TG_ERR_SHAPE, "%s: the output would be too large: %s", op, ops);
        return NULL;
    }
    conv_ctx *ctx = conv_ctx_new(tp, &g, tg__dtype_size(x->dtype), op, ops, b != NULL, 0);
    return ctx ? tg_custom(tp, def, in, b ? 3 : 2, rank, shape, ctx) : NULL;
}

tg_tensor *tg_conv1d(tg_tape *tp, tg_tensor *x, tg_tensor *w, tg_tensor *b, const tg_conv_opts *o)
{
    return conv(tp, &conv1d_def, true, x, w, b, o);
}

tg_tensor *tg_conv2d(tg_tape *tp, tg_tensor *x, tg_tensor *w, tg_tensor *b, const tg_conv_opts *o)
{
    return conv(tp, &conv2d_def, false, x, w, b, o);
}

/* ====== Pools over windows of x [N,C,H,W] (padding counts as -inf for max, 0 for avg) ======
 * max: Y = the window's first maximum (NaN wins, as in PyTorch);  dX[argmax] += dY.
 * avg: Y = the window's sum / (KH KW);  dX += dY / (KH KW) over the window. */

typedef struct pool_ctx {
    geom g;
    int64_t *arg; /* max: flat index into X of each output's maximum, rewritten at every forward */
} pool_ctx;

/* Runs BODY for every output (index k) with its window clipped to the data,
 * rows [y0, y1) and columns [x0, x1) of plane 'plane'. */
#define POOL_EACH(g, BODY)                                                                         \
    for (int64_t plane = 0, k = 0; plane < (g)->n * (g)->c; plane++)                               \
        for (int64_t oy = 0; oy < (g)->oh; oy++) {                                                 \
            int64_t ys = oy * (g)->sh - (g)->ph, y0 = ys < 0 ? 0 : ys;                             \
            int64_t y1 = ys + (g)->kh < (g)->h ? ys + (g)->kh : (g)->h;                            \
            for (int64_t ox = 0; ox < (g)->ow; ox++, k++) {                                        \
                int64_t xs = ox * (g)->sw - (g)->pw, x0 = xs < 0 ? 0 : xs;                         \
                int64_t x1 = xs + (g)->kw < (g)->w ? xs + (g)->kw : (g)->w;                        \
                int64_t base = plane * (g)->h * (g)->w;                                            \
                BODY;                                                                              \
            }                                                                                      \
        }

#define MAX_FWD(T)                                                                                 \
    do {                                                                                           \
        const T *xs_ = in[0]->data;                                                                \
        T *y = out->data;                                                                          \
        POOL_EACH(g, {                                                                             \
            int64_t best = base + y0 * g->w + x0;                                                  \
            for (int64_t iy = y0; iy < y1; iy++)                                                   \
                for (int64_t ix = x0; ix < x1; ix++) {                                             \
                    int64_t at = base + iy * g->w + ix;                                            \
                    if (xs_[at] > xs_[best] || isnan(xs_[at])) best = at;                          \
                }                                                                                  \
            y[k] = xs_[best];                                                                      \
            cx->arg[k] = best;                                                                     \
        })                                                                                         \
    } while (0)

/* The common 2x2 window with stride 2 and no padding: every window lies in
 * the data, so there are no bounds to clip. The general loop's rule (a later
 * element wins when it is larger or NaN) picks the largest element under one
 * total order (NaN above all, the last of equal NaNs, the first of equal
 * numbers), so the four candidates can meet as two pairs and then the two
 * winners, and each choice is an index select without a branch: on random
 * data a branch would mispredict at every other window. */
#define MAX_PICK(xs, i, j) ((i) ^ (((i) ^ (j)) & -(int64_t)(((xs)[j] > (xs)[i]) | isnan((xs)[j]))))
#define MAX_FWD_2X2(T)                                                                             \
    do {                                                                                           \
        const T *xs_ = in[0]->data;                                                                \
        T *y = out->data;                                                                          \
        int64_t *arg = cx->arg;                                                                    \
        for (int64_t plane = 0, k = 0; plane < g->n * g->c; plane++)                               \
            for (int64_t oy = 0; oy < g->oh; oy++) {                                               \
                int64_t i0 = (plane * g->h + 2 * oy) * g->w, i1 = i0 + g->w;                       \
                for (int64_t ox = 0; ox < g->ow; ox++, k++) {                                      \
                    int64_t top = MAX_PICK(xs_, i0 + 2 * ox, i0 + 2 * ox + 1);                  \
                    int64_t bottom = MAX_PICK(xs_, i1 + 2 * ox, i1 + 2 * ox + 1);               \
                    int64_t at = MAX_PICK(xs_, top, bottom);                                    \
                    y[k] = xs_[at];                                                                \
                    arg[k] = at;                                                                   \
                }                                                                                  \
            }                                                                                      \
    } while (0)

static tg_status max_pool_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in;
    const pool_ctx *cx = ctx;
    const geom *g = &cx->g;
    if (out->numel == 0) return TG_OK; /* no plane to walk */
    if (g->kh == 2 && g->kw == 2 && g->sh == 2 && g->sw == 2 && g->ph == 0 && g->pw == 0)
        TG__FLOAT_SWITCH(out->dtype, MAX_FWD_2X2, TG_ERR_DTYPE);
    else
        TG__FLOAT_SWITCH(out->dtype, MAX_FWD, TG_ERR_DTYPE);
    return TG_OK;
}

#define MAX_VJP(T)                                                                                 \
    do {                                                                                           \
        const T *gy = gout->data;                                                                  \
        T *dx = gin[0]->data;                                                                      \
        for (int64_t k = 0; k < out->numel; k++)                                                   \
            dx[cx->arg[k]] += gy[k];                                                               \
    } while (0)

static tg_status max_pool_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                              tg_tensor **gin, int n_in, void *ctx)
{
    (void)in, (void)n_in;
    const pool_ctx *cx = ctx;
    if (!gin[0]) return TG_OK;
    TG__FLOAT_SWITCH(out->dtype, MAX_VJP, TG_ERR_DTYPE);
    return TG_OK;
}

/* The recorded VJP: dX = scatter_argmax(dY), an op that reads the argmax of
 * the latest forward (the pool's node runs before it at every replay), so the
 * positions are constant and dX has no derivative by X. Its transpose is
 * gather_argmax, Y'[k] = X'[argmax k], and each one's VJP is the other. */
static tg_tensor *pool_arg_record(tg_tape *tp, bool scatter, tg_tensor *t, pool_ctx *cx);

static tg_status max_pool_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out,
                                    tg_tensor *const *in, const bool *need, tg_tensor **gin,
                                    int n_in, void *ctx)
{
    (void)out, (void)in, (void)need, (void)n_in;
    gin[0] = pool_arg_record(tp, true, dy, ctx);
    return tg_tape_status(tp);
}

/* dst[arg[k]] += src[k] over the pool's outputs k: scatter_argmax's forward, gather_argmax's VJP. */
#define ARG_SCATTER(T)                                                                             \
    do {                                                                                           \
        const T *src = src_;                                                                       \
        T *dst = dst_;                                                                             \
        for (int64_t k = 0; k < n; k++) dst[cx->arg[k]] += src[k];                                 \
    } while (0)

/* dst[k] += src[arg[k]]: gather_argmax's forward (on zeros), scatter_argmax's VJP. */
#define ARG_GATHER(T)                                                                              \
    do {                                                                                           \
        const T *src = src_;                                                                       \
        T *dst = dst_;                                                                             \
        for (int64_t k = 0; k < n; k++) dst[k] += src[cx->arg[k]];                                 \
    } while (0)

static tg_status arg_move(tg_dtype dt, const pool_ctx *cx, bool scatter, const void *src_,
                          void *dst_)
{
    const geom *g = &cx->g;
    int64_t n = g->n * g->c * g->oh * g->ow;
    if (scatter)
        TG__FLOAT_SWITCH(dt, ARG_SCATTER, TG_ERR_DTYPE);
    else
        TG__FLOAT_SWITCH(dt, ARG_GATHER, TG_ERR_DTYPE);
    return TG_OK;
}

static tg_status scatter_argmax_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in;
    memset(out->data, 0, (size_t)out->numel * tg__dtype_size(out->dtype));
    return arg_move(out->dtype, ctx, true, in[0]->data, out->data);
}

static tg_status gather_argmax_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in;
    memset(out->data, 0, (size_t)out->numel * tg__dtype_size(out->dtype));
    return arg_move(out->dtype, ctx, false, in[0]->data, out->data);
}

static tg_status scatter_argmax_vjp(const tg_tensor *gout, const tg_tensor *out,
                                    tg_tensor *const *in, tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)in, (void)n_in;
    return gin[0] ? arg_move(gout->dtype, ctx, false, gout->data, gin[0]->data) : TG_OK;
}

static tg_status gather_argmax_vjp(const tg_tensor *gout, const tg_tensor *out,
                                   tg_tensor *const *in, tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)in, (void)n_in;
    return gin[0] ? arg_move(gout->dtype, ctx, true, gout->data, gin[0]->data) : TG_OK;
}

static tg_status scatter_argmax_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out,
                                          tg_tensor *const *in, const bool *need, tg_tensor **gin,
                                          int n_in, void *ctx)
{
    (void)out, (void)in, (void)need, (void)n_in;
    gin[0] = pool_arg_record(tp, false, dy, ctx);
    return tg_tape_status(tp);
}

static tg_status gather_argmax_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out,
                                         tg_tensor *const *in, const bool *need, tg_tensor **gin,
                                         int n_in, void *ctx)
{
    (void)out, (void)in, (void)need, (void)n_in;
    gin[0] = pool_arg_record(tp, true, dy, ctx);
    return tg_tape_status(tp);
}

static const tg_op_def scatter_argmax_def = {
    .name = "scatter_argmax", .forward = scatter_argmax_forward, .vjp = scatter_argmax_vjp,
    .vjp_graph = scatter_argmax_vjp_graph,
    .rules = (const char *const[]){"{dy:s} at each window's first maximum", NULL}};
static const tg_op_def gather_argmax_def = {
    .name = "gather_argmax", .forward = gather_argmax_forward, .vjp = gather_argmax_vjp,
    .vjp_graph = gather_argmax_vjp_graph,
    .rules = (const char *const[]){"{dy:s} scattered to each window's first maximum", NULL}};

/* Records scatter_argmax (t of Y's shape, the result of X's) or gather_argmax
 * (the reverse) on the argmax positions of the max pool whose context is cx. */
static tg_tensor *pool_arg_record(tg_tape *tp, bool scatter, tg_tensor *t, pool_ctx *cx)
{
    const geom *g = &cx->g;
    int64_t shape[4] = {g->n, g->c, scatter ? g->h : g->oh, scatter ? g->w : g->ow};
    return tg_custom(tp, scatter ? &scatter_argmax_def : &gather_argmax_def, &t, 1, 4, shape, cx);
}

/* DST[k] = (or +=) the sum of SRC over window k / (KH KW). */
#define AVG_SUMS(T, SRC, DST, ASSIGN)                                                              \
    do {                                                                                           \
        const T *xs_ = SRC;                                                                        \
        T *y = DST;                                                                                \
        double div = (double)(g->kh * g->kw);                                                      \
        POOL_EACH(g, {                                                                             \
            double s = 0;                                                                          \
            for (int64_t iy = y0; iy < y1; iy++)                                                   \
                for (int64_t ix = x0; ix < x1; ix++)                                               \
                    s += (double)xs_[base + iy * g->w + ix];                                       \
            y[k] ASSIGN (T)(s / div);                                                              \
        })                                                                                         \
    } while (0)
#define AVG_FWD(T) AVG_SUMS(T, in[0]->data, out->data, =)

static tg_status avg_pool_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in;
    const geom *g = &((const pool_ctx *)ctx)->g;
    if (out->numel == 0) return TG_OK;
    TG__FLOAT_SWITCH(out->dtype, AVG_FWD, TG_ERR_DTYPE);
    return TG_OK;
}

/* DST += SRC[k] / (KH KW) over window k, for every k. */
#define AVG_SPREAD(T, SRC, DST)                                                                    \
    do {                                                                                           \
        const T *gy = SRC;                                                                         \
        T *dx = DST;                                                                               \
        double div = (double)(g->kh * g->kw);                                                      \
        POOL_EACH(g, {                                                                             \
            T v = (T)((double)gy[k] / div);                                                        \
            for (int64_t iy = y0; iy < y1; iy++)                                                   \
                for (int64_t ix = x0; ix < x1; ix++)                                               \
                    dx[base + iy * g->w + ix] += v;                                                \
        })                                                                                         \
    } while (0)
#define AVG_VJP(T) AVG_SPREAD(T, gout->data, gin[0]->data)

static tg_status avg_pool_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                              tg_tensor **gin, int n_in, void *ctx)
{
    (void)in, (void)n_in;
    const geom *g = &((const pool_ctx *)ctx)->g;
    if (!gin[0] || out->numel == 0) return TG_OK;
    TG__FLOAT_SWITCH(out->dtype, AVG_VJP, TG_ERR_DTYPE);
    return TG_OK;
}

/* The recorded VJP: dX = avg_pool2d_dx(dY), the spread above as an op. Both
 * are linear and each is the other's transpose, so each one's VJP is the other. */
static tg_tensor *avg_record(tg_tape *tp, bool transposed, tg_tensor *t, pool_ctx *cx);

static tg_status avg_pool_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out,
                                    tg_tensor *const *in, const bool *need, tg_tensor **gin,
                                    int n_in, void *ctx)
{
    (void)out, (void)in, (void)need, (void)n_in;
    gin[0] = avg_record(tp, true, dy, ctx);
    return tg_tape_status(tp);
}

#define AVG_T_FWD(T) AVG_SPREAD(T, in[0]->data, out->data)
#define AVG_T_VJP(T) AVG_SUMS(T, gout->data, gin[0]->data, +=)

static tg_status avg_pool_dx_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in;
    const geom *g = &((const pool_ctx *)ctx)->g;
    memset(out->data, 0, (size_t)out->numel * tg__dtype_size(out->dtype));
    if (in[0]->numel == 0) return TG_OK;
    TG__FLOAT_SWITCH(out->dtype, AVG_T_FWD, TG_ERR_DTYPE);
    return TG_OK;
}

static tg_status avg_pool_dx_vjp(const tg_tensor *gout, const tg_tensor *out,
                                 tg_tensor *const *in, tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)n_in;
    const geom *g = &((const pool_ctx *)ctx)->g;
    if (!gin[0] || in[0]->numel == 0) return TG_OK;
    TG__FLOAT_SWITCH(gout->dtype, AVG_T_VJP, TG_ERR_DTYPE);
    return TG_OK;
}

static tg_status avg_pool_dx_vjp_graph(tg_tape *tp, tg_tensor *du, tg_tensor *out,
                                       tg_tensor *const *in, const bool *need, tg_tensor **gin,
                                       int n_in, void *ctx)
{
    (void)out, (void)in, (void)need, (void)n_in;
    gin[0] = avg_record(tp, false, du, ctx);
    return tg_tape_status(tp);
}

static const tg_op_def avg_pool2d_dx_def = {
    .name = "avg_pool2d_dx", .forward = avg_pool_dx_forward, .vjp = avg_pool_dx_vjp,
    .vjp_graph = avg_pool_dx_vjp_graph,
    .rules = (const char *const[]){"avg_pool2d({dy:s})", NULL}};

static const tg_op_def max_pool2d_def = {
    .name = "max_pool2d", .forward = max_pool_forward, .vjp = max_pool_vjp,
    .vjp_graph = max_pool_vjp_graph,
    .rules = (const char *const[]){"{dy:s} scattered to each window's first maximum", NULL},
    .onnx = max_pool_onnx};
static const tg_op_def avg_pool2d_def = {
    .name = "avg_pool2d", .forward = avg_pool_forward, .vjp = avg_pool_vjp,
    .vjp_graph = avg_pool_vjp_graph,
    .rules = (const char *const[]){"{dy:s} / (KH KW) spread over each window", NULL},
    .onnx = avg_pool_onnx};

/* Records avg_pool2d_dx (t of Y's shape, transposed) or avg_pool2d with the
 * geometry of the pool whose context is cx. */
static tg_tensor *avg_record(tg_tape *tp, bool transposed, tg_tensor *t, pool_ctx *cx)
{
    const geom *g = &cx->g;
    int64_t shape[4] = {g->n, g->c, transposed ? g->h : g->oh, transposed ? g->w : g->ow};
    return tg_custom(tp, transposed ? &avg_pool2d_dx_def : &avg_pool2d_def, &t, 1, 4, shape, cx);
}

static tg_tensor *pool(tg_tape *tp, const tg_op_def *def, tg_tensor *x, const int kernel[2],
                       const int stride[2], const int padding[2])
{
    const char *op = def->name;
    if (!tg__guard(tp, op, 1, &x)) return NULL;
    char sx[TG__SHAPE_STR_MAX];
    tg__shape_str(x, sx, sizeof sx);
    if (!kernel) {
        tg__fail(tp, TG_ERR_ARG, "%s: kernel is NULL (x %s)", op, sx);
        return NULL;
    }
    int k[2] = {kernel[0], kernel[1]};
    int s[2] = {stride ? stride[0] : k[0], stride ? stride[1] : k[1]};
    int p[2] = {padding ? padding[0] : 0, padding ? padding[1] : 0};
    for (int i = 0; i < 2; i++)
        if (k[i] < 1 || s[i] < 1 || p[i] < 0 || p[i] > k[i] / 2) {
            tg__fail(tp, TG_ERR_ARG,
                     "%s: needs kernel >= 1, stride >= 1 and 0 <= padding <= kernel/2: kernel "
                     "%dx%d, stride %dx%d, padding %dx%d (x %s)",
                     op, k[0], k[1], s[0], s[1], p[0], p[1], sx);
            return NULL;
        }
    /* As in PyTorch, a plane has data: a window of padding alone has no maximum. */
    if (x->rank != 4 || x->shape[2] == 0 || x->shape[3] == 0) {
        tg__fail(tp, TG_ERR_SHAPE, "%s: needs x [N,C,H,W] with H, W >= 1, got %s", op, sx);
        return NULL;
    }
    geom g = {.n = x->shape[0], .c = x->shape[1], .h = x->shape[2], .w = x->shape[3],
              .o = x->shape[1], .kh = k[0], .kw = k[1], .sh = s[0], .sw = s[1], .ph = p[0],
              .pw = p[1], .dh = 1, .dw = 1, .groups = 1};
    g.oh = out_len(g.h, g.kh, g.sh, g.ph, 1);
    g.ow = out_len(g.w, g.kw, g.sw, g.pw, 1);
    if (g.oh < 0 || g.ow < 0) {
        tg__fail(tp, TG_ERR_SHAPE, "%s: the output would be too large: x %s", op, sx);
        return NULL;
    }
    if (g.oh == 0 || g.ow == 0) {
        tg__fail(tp, TG_ERR_SHAPE,
                 "%s: the output would be empty (%lldx%lld) with kernel %dx%d, stride %dx%d, "
                 "padding %dx%d: x %s",
                 op, (long long)g.oh, (long long)g.ow, k[0], k[1], s[0], s[1], p[0], p[1], sx);
        return NULL;
    }
    int64_t shape[4] = {g.n, g.c, g.oh, g.ow};
    int64_t numel = tg__numel(4, shape);
    if (numel < 0) {
        tg__fail(tp, TG_ERR_SHAPE, "%s: the output would be too large: x %s", op, sx);
        return NULL;
    }
    pool_ctx c = {.g = g};
    pool_ctx *ctx = tg__tape_copy(tp, &c, sizeof c);
    if (!ctx) return NULL;
    if (def == &max_pool2d_def &&
        !(ctx->arg = tg__arena_alloc(&tp->arena, (size_t)numel * sizeof(int64_t)))) {
        tg__fail(tp, TG_ERR_NOMEM, "%s: out of memory for the argmax positions: x %s", op, sx);
        return NULL;
    }
    return tg_custom(tp, def, &x, 1, 4, shape, ctx);
}

tg_tensor *tg_max_pool2d(tg_tape *tp, tg_tensor *x, const int kernel[2], const int stride[2],
                         const int padding[2])
{
    return pool(tp, &max_pool2d_def, x, kernel, stride, padding);
}

tg_tensor *tg_avg_pool2d(tg_tape *tp, tg_tensor *x, const int kernel[2], const int stride[2],
                         const int padding[2])
{
    return pool(tp, &avg_pool2d_def, x, kernel, stride, padding);
}

/* ====== ONNX forms ======
 * Conv with the geometry as attributes (pads are begin then end per spatial
 * axis; a 1-D convolution keeps its sizes in the w fields of geom), MaxPool
 * (padding never wins, as -inf here) and AveragePool with
 * count_include_pad = 1. Output sizes round down in both (ceil_mode 0). */

static TG__ONNX_HOOK(conv_onnx)
{
    const geom *gm = &((const conv_ctx *)ctx)->g;
    const char *ins[3], *y = tg_onnx_value(g, out);
    for (int i = 0; i < n_in; i++)
        ins[i] = tg_onnx_value(g, in[i]);
    tg_onnx_node *n = tg_onnx_node_add(g, "Conv", ins, n_in, &y, 1);
    if (out->rank == 3) {
        tg_onnx_attr_ints(n, "kernel_shape", (const int64_t[]){gm->kw}, 1);
        tg_onnx_attr_ints(n, "strides", (const int64_t[]){gm->sw}, 1);
        tg_onnx_attr_ints(n, "pads", (const int64_t[]){gm->pw, gm->pw}, 2);
        tg_onnx_attr_ints(n, "dilations", (const int64_t[]){gm->dw}, 1);
    } else {
        tg_onnx_attr_ints(n, "kernel_shape", (const int64_t[]){gm->kh, gm->kw}, 2);
        tg_onnx_attr_ints(n, "strides", (const int64_t[]){gm->sh, gm->sw}, 2);
        tg_onnx_attr_ints(n, "pads", (const int64_t[]){gm->ph, gm->pw, gm->ph, gm->pw}, 4);
        tg_onnx_attr_ints(n, "dilations", (const int64_t[]){gm->dh, gm->dw}, 2);
    }
    return tg_onnx_attr_int(n, "group", gm->groups);
}

static tg_onnx_node *pool_onnx(tg_onnx_graph *g, const char *op, const tg_tensor *out,
                               const tg_tensor *x, const geom *gm)
{
    tg_onnx_node *n = tg__onnx_op(g, op, tg_onnx_value(g, out), 1, tg_onnx_value(g, x));
    tg_onnx_attr_ints(n, "kernel_shape", (const int64_t[]){gm->kh, gm->kw}, 2);
    tg_onnx_attr_ints(n, "strides", (const int64_t[]){gm->sh, gm->sw}, 2);
    tg_onnx_attr_ints(n, "pads", (const int64_t[]){gm->ph, gm->pw, gm->ph, gm->pw}, 4);
    return n;
}

static TG__ONNX_HOOK(max_pool_onnx)
{
    (void)n_in;
    pool_onnx(g, "MaxPool", out, in[0], &((const pool_ctx *)ctx)->g);
    return tg_onnx_status(g);
}

static TG__ONNX_HOOK(avg_pool_onnx)
{
    (void)n_in;
    tg_onnx_node *n = pool_onnx(g, "AveragePool", out, in[0], &((const pool_ctx *)ctx)->g);
    return tg_onnx_attr_int(n, "count_include_pad", 1);
}
