/*
 * Reductions: sum, mean (both to rank 0), and along one axis sum_axis,
 * mean_axis, max_axis, min_axis, argmax and logsumexp. Sums of F32 data
 * accumulate in double, so they lose next to nothing before the final
 * rounding to float. The VJPs broadcast dG back over the reduced elements.
 * To add an op: forward and vjp side by side, a tg_op_def, a constructor.
 */
#include "internal.h"

#include <string.h>
#include <tgmath.h>

/* The ONNX forms of the ops, at the end of the file. */
static TG__ONNX_HOOK(total_onnx);
static TG__ONNX_HOOK(sum_axis_onnx);
static TG__ONNX_HOOK(mean_axis_onnx);
static TG__ONNX_HOOK(max_axis_onnx);
static TG__ONNX_HOOK(min_axis_onnx);
static TG__ONNX_HOOK(argmax_onnx);
static TG__ONNX_HOOK(logsumexp_onnx);

/* ====== sum: y = sum_i x_i;  dx_i += dG.   mean: y = sum_i x_i / n;  dx_i += dG / n ======
 * ctx points at the divisor (1 for sum, n for mean), copied into the arena. */

#define TOTAL(T)                                                                                   \
    do {                                                                                           \
        const T *x = in[0]->data;                                                                  \
        double acc = 0;                                                                            \
        for (int64_t i = 0; i < in[0]->numel; i++) acc += (double)x[i];                            \
        *(T *)out->data = (T)(acc / div);                                                          \
    } while (0)

static tg_status total_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in;
    double div = *(const double *)ctx;
    TG__FLOAT_SWITCH(out->dtype, TOTAL, TG_ERR_DTYPE);
    return TG_OK;
}

#define TOTAL_VJP(T)                                                                               \
    do {                                                                                           \
        T g = (T)(tg_tensor_item(gout) / div);                                                     \
        T *dx = gin[0]->data;                                                                      \
        for (int64_t i = 0; i < in[0]->numel; i++) dx[i] += g; /* dx_i += dG / div */             \
    } while (0)

static tg_status total_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                           tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)n_in;
    if (!gin[0]) return TG_OK;
    double div = *(const double *)ctx;
    TG__FLOAT_SWITCH(gout->dtype, TOTAL_VJP, TG_ERR_DTYPE);
    return TG_OK;
}

/* dx = dG / div at every element: dG (rank 0) expanded to x's shape. */
static tg_status total_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                                 const bool *need, tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)need, (void)n_in;
    double div = *(const double *)ctx;
    tg_tensor *g = div == 1.0 ? dy : tg_scale(tp, dy, 1.0 / div);
    gin[0] = g ? tg_expand(tp, g, in[0]->rank, in[0]->shape) : NULL;
    return tg_tape_status(tp);
}

static const tg_op_def sum_def = {
    .name = "sum", .forward = total_forward, .vjp = total_vjp, .vjp_graph = total_vjp_graph,
    .rules = (const char *const[]){"{dy} broadcast to {0:shape}", NULL},
    .onnx = total_onnx};
static const tg_op_def mean_def = {
    .name = "mean", .forward = total_forward, .vjp = total_vjp, .vjp_graph = total_vjp_graph,
    .rules = (const char *const[]){"{dy} / {c} broadcast to {0:shape}", NULL},
    .onnx = total_onnx};

static tg_tensor *total(tg_tape *tp, const tg_op_def *def, tg_tensor *x, bool mean)
{
    if (!tg__guard(tp, def->name, 1, &x)) return NULL;
    /* The mean of no elements is 0/0 = NaN, as in NumPy and PyTorch. */
    double div = mean ? (double)x->numel : 1.0;
    double *ctx = tg__tape_copy(tp, &div, sizeof div);
    return ctx ? tg_custom(tp, def, &x, 1, 0, NULL, ctx) : NULL;
}

tg_tensor *tg_sum(tg_tape *tp, tg_tensor *x) { return total(tp, &sum_def, x, false); }
tg_tensor *tg_mean(tg_tape *tp, tg_tensor *x) { return total(tp, &mean_def, x, true); }

/* ====== Along one axis: x is seen as [outer, n, inner] around the reduced axis ======
 * keepdim only changes the output's shape, not its elements. Every op below
 * keeps its per-output scratch (accumulators, argument indices) in ctx,
 * allocated when the op is recorded so replay allocates nothing; the
 * innermost loops run over 'inner' contiguous elements. */

typedef struct axis_ctx {
    int64_t outer, n, inner;
    double div;      /* sum_axis 1, mean_axis n */
    double *acc;     /* 'inner' accumulators: sum_axis, mean_axis, logsumexp */
    int64_t *arg;    /* outer x inner positions along the axis: max_axis, min_axis */
    bool min;        /* min_axis: the smallest, else the largest */
    int ax;          /* the reduced axis, in [0, rank) */
} axis_ctx;

/* Checks the axis of op 'op' on x (negative counts from the end; max, min
 * and argmax also refuse an empty one, as torch does), writes the output's
 * shape and rank, and returns the ctx in the arena with its extents, or NULL
 * with the tape failed. */
static axis_ctx *axis_setup(tg_tape *tp, const char *op, tg_tensor *x, int axis, bool keepdim,
                            bool needs_elements, int64_t *shape, int *rank)
{
    char sx[TG__SHAPE_STR_MAX];
    int ax = axis < 0 ? axis + x->rank : axis;
    if (ax < 0 || ax >= x->rank) {
        tg__fail(tp, TG_ERR_ARG, "%s: axis %d out of range for %s", op, axis,
                 tg__shape_str(x, sx, sizeof sx));
        return NULL;
    }
    if (needs_elements && x->shape[ax] == 0) {
        tg__fail(tp, TG_ERR_SHAPE, "%s: axis %d of %s is empty; there is no extreme to take", op,
                 axis, tg__shape_str(x, sx, sizeof sx));
        return NULL;
    }
    *rank = 0;
    for (int i = 0; i < x->rank; i++) {
        if (i != ax)
            shape[(*rank)++] = x->shape[i];
        else if (keepdim)
            shape[(*rank)++] = 1;
    }
    /* An empty x may have huge dims whose product overflows: the extents are
     * only formed for a result with elements, where they cannot (tg_custom
     * then refuses a result too large to exist). */
    axis_ctx c = {.n = x->shape[ax], .div = 1, .ax = ax};
    if (tg__numel(*rank, shape) > 0) {
        c.outer = tg__numel(ax, x->shape);
        c.inner = tg__numel(x->rank - ax - 1, x->shape + ax + 1);
    }
    return tg__tape_copy(tp, &c, sizeof c);
}

/* The 'inner' double accumulators of sum_axis, mean_axis and logsumexp. */
static bool alloc_acc(tg_tape *tp, const char *op, axis_ctx *c)
{
    if ((c->acc = tg__arena_alloc(&tp->arena, (size_t)c->inner * sizeof *c->acc))) return true;
    tg__fail(tp, TG_ERR_NOMEM, "%s: out of memory for %lld accumulators", op, (long long)c->inner);
    return false;
}

/* ====== sum_axis: y[o,i] = sum_k x[o,k,i];  dx[o,k,i] += dG[o,i] ======
 * mean_axis: the same divided by n, and dG / n. An empty axis gives 0 and
 * 0/0 = NaN, as in torch. */

#define AXIS_FWD(T)                                                                                \
    do {                                                                                           \
        const T *x = in[0]->data;                                                                  \
        T *y = out->data;                                                                          \
        for (int64_t o = 0; o < c->outer; o++) {                                                   \
            for (int64_t i = 0; i < c->inner; i++) c->acc[i] = 0;                                  \
            for (int64_t k = 0; k < c->n; k++) {                                                   \
                const T *xk = x + (o * c->n + k) * c->inner;                                       \
                for (int64_t i = 0; i < c->inner; i++) c->acc[i] += (double)xk[i];                 \
            }                                                                                      \
            for (int64_t i = 0; i < c->inner; i++) y[o * c->inner + i] = (T)(c->acc[i] / c->div);  \
        }                                                                                          \
    } while (0)

static tg_status sum_axis_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in;
    const axis_ctx *c = ctx;
    TG__FLOAT_SWITCH(out->dtype, AXIS_FWD, TG_ERR_DTYPE);
    return TG_OK;
}

#define AXIS_VJP(T)                                                                                \
    do {                                                                                           \
        const T *g = gout->data;                                                                   \
        T *dx = gin[0]->data;                                                                      \
        const T div = (T)c->div;                                                                   \
        for (int64_t o = 0; o < c->outer; o++)                                                     \
            for (int64_t k = 0; k < c->n; k++) {                                                   \
                T *dxk = dx + (o * c->n + k) * c->inner;                                           \
                const T *go = g + o * c->inner;                                                    \
                for (int64_t i = 0; i < c->inner; i++)                                             \
                    dxk[i] += go[i] / div; /* dx[o,k,i] += dG[o,i] / div */                        \
            }                                                                                      \
    } while (0)

static tg_status sum_axis_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                              tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)in, (void)n_in;
    if (!gin[0]) return TG_OK;
    const axis_ctx *c = ctx;
    TG__FLOAT_SWITCH(gout->dtype, AXIS_VJP, TG_ERR_DTYPE);
    return TG_OK;
}

/* t, of y's shape, with the reduced axis back as a 1 (y's shape with keepdim),
 * recorded where it is missing, so that it broadcasts against x. */
static tg_tensor *with_axis(tg_tape *tp, tg_tensor *t, const tg_tensor *x, const axis_ctx *c)
{
    if (!t || t->rank == x->rank) return t;
    int64_t shape[TG_MAX_RANK];
    for (int d = 0; d < x->rank; d++) shape[d] = d == c->ax ? 1 : x->shape[d];
    return tg_reshape(tp, t, x->rank, shape);
}

/* dx = dG / div expanded along the axis; the division comes first, on the
 * smaller tensor, and by div itself so the values are the fused VJP's. */
static tg_status sum_axis_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out,
                                    tg_tensor *const *in, const bool *need, tg_tensor **gin,
                                    int n_in, void *ctx)
{
    (void)out, (void)need, (void)n_in;
    const axis_ctx *c = ctx;
    tg_tensor *g = c->div == 1.0 ? dy : tg_div(tp, dy, tg_full_like(tp, dy, c->div));
    gin[0] = g ? tg_expand(tp, with_axis(tp, g, in[0], c), in[0]->rank, in[0]->shape) : NULL;
    return tg_tape_status(tp);
}

static const tg_op_def sum_axis_def = {
    .name = "sum_axis", .forward = sum_axis_forward, .vjp = sum_axis_vjp,
    .vjp_graph = sum_axis_vjp_graph,
    .rules = (const char *const[]){"{dy:s} broadcast to {0:shape}", NULL},
    .onnx = sum_axis_onnx};
static const tg_op_def mean_axis_def = {
    .name = "mean_axis", .forward = sum_axis_forward, .vjp = sum_axis_vjp,
    .vjp_graph = sum_axis_vjp_graph,
    .rules = (const char *const[]){"{dy:s} / n broadcast to {0:shape}", NULL},
    .onnx = mean_axis_onnx};

static tg_tensor *sum_or_mean(tg_tape *tp, const tg_op_def *def, tg_tensor *x, int axis,
                              bool keepdim)
{
    if (!tg__guard(tp, def->name, 1, &x)) return NULL;
    int64_t shape[TG_MAX_RANK];
    int rank;
    axis_ctx *c = axis_setup(tp, def->name, x, axis, keepdim, false, shape, &rank);
    if (!c || !alloc_acc(tp, def->name, c)) return NULL;
    if (def == &mean_axis_def) c->div = (double)c->n;
    return tg_custom(tp, def, &x, 1, rank, shape, c);
}

tg_tensor *tg_sum_axis(tg_tape *tp, tg_tensor *x, int axis, bool keepdim)
{
    return sum_or_mean(tp, &sum_axis_def, x, axis, keepdim);
}

tg_tensor *tg_mean_axis(tg_tape *tp, tg_tensor *x, int axis, bool keepdim)
{
    return sum_or_mean(tp, &mean_axis_def, x, axis, keepdim);
}

/* ====== max_axis: y[o,i] = max_k x[o,k,i];  dx[o,k*,i] += dG[o,i], k* the first maximum ======
 * min_axis the same with the minimum, argmax y[o,i] = k* as I64. As torch: a
 * NaN counts as larger (smaller) than everything, so the first NaN along the
 * axis is the result and gets the gradient; among equal values the first
 * wins. The axis is never empty (refused when recorded), so k = 0 starts. */

#define BEATS(v, best) ((v) > (best) || ((v) != (v) && (best) == (best)))
#define BEATS_MIN(v, best) ((v) < (best) || ((v) != (v) && (best) == (best)))

#define EXTREME_FWD(T)                                                                             \
    do {                                                                                           \
        const T *x = in[0]->data;                                                                  \
        T *y = values ? out->data : NULL;                                                          \
        for (int64_t o = 0; o < c->outer; o++) {                                                   \
            const T *xo = x + o * c->n * c->inner;                                                 \
            int64_t *ao = arg + o * c->inner;                                                      \
            for (int64_t i = 0; i < c->inner; i++) ao[i] = 0;                                      \
            for (int64_t k = 1; k < c->n; k++) {                                                   \
                const T *xk = xo + k * c->inner;                                                   \
                for (int64_t i = 0; i < c->inner; i++) {                                           \
                    T v = xk[i], best = xo[ao[i] * c->inner + i];                                  \
                    if (c->min ? BEATS_MIN(v, best) : BEATS(v, best)) ao[i] = k;                   \
                }                                                                                  \
            }                                                                                      \
            if (y)                                                                                 \
                for (int64_t i = 0; i < c->inner; i++)                                             \
                    y[o * c->inner + i] = xo[ao[i] * c->inner + i];                                \
        }                                                                                          \
    } while (0)

/* Writes the positions of the extremes into 'arg' and, when 'values', the
 * extremes into out. */
static tg_status extreme(const axis_ctx *c, tg_tensor *out, tg_tensor *const *in, int64_t *arg,
                         bool values)
{
    TG__FLOAT_SWITCH(in[0]->dtype, EXTREME_FWD, TG_ERR_DTYPE);
    return TG_OK;
}

static tg_status extreme_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in;
    const axis_ctx *c = ctx;
    return extreme(c, out, in, c->arg, true);
}

#define EXTREME_VJP(T)                                                                             \
    do {                                                                                           \
        const T *g = gout->data;                                                                   \
        T *dx = gin[0]->data;                                                                      \
        for (int64_t o = 0; o < c->outer; o++)                                                     \
            for (int64_t i = 0; i < c->inner; i++) {                                               \
                int64_t j = o * c->inner + i;                                                      \
                dx[(o * c->n + c->arg[j]) * c->inner + i] += g[j]; /* dx[o,k*,i] += dG[o,i] */     \
            }                                                                                      \
    } while (0)

static tg_status extreme_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                             tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)in, (void)n_in;
    if (!gin[0]) return TG_OK;
    const axis_ctx *c = ctx;
    TG__FLOAT_SWITCH(gout->dtype, EXTREME_VJP, TG_ERR_DTYPE);
    return TG_OK;
}

/* ====== The recorded VJP of max_axis and min_axis ======
 * scatter_at_arg puts g[o,i] at x[o,k*,i] (zeros elsewhere) and gather_at_arg
 * reads g[o,k*,i] back: each is the other's transpose, so their recorded VJPs
 * close on the pair at every order. Both read the positions k* from the
 * max_axis (min_axis) node's ctx, which its forward rewrites; they are
 * recorded after that node, so a replay has refreshed them before they run. */

/* dst[o,k*,i] ACC src[o,i] ('to_x') or dst[o,i] ACC src[o,k*,i]. */
#define AT_ARG(T, ACC)                                                                             \
    do {                                                                                           \
        const T *s = src;                                                                          \
        T *d = dst;                                                                                \
        for (int64_t o = 0; o < c->outer; o++)                                                     \
            for (int64_t i = 0; i < c->inner; i++) {                                               \
                int64_t j = o * c->inner + i, kx = (o * c->n + c->arg[j]) * c->inner + i;          \
                if (to_x)                                                                          \
                    d[kx] ACC s[j];                                                                \
                else                                                                               \
                    d[j] ACC s[kx];                                                                \
            }                                                                                      \
    } while (0)
#define AT_ARG_SET(T) AT_ARG(T, =)
#define AT_ARG_ADD(T) AT_ARG(T, +=)

static tg_status at_arg(const axis_ctx *c, tg_dtype dt, const void *src, void *dst, bool to_x,
                        bool add)
{
    if (add)
        TG__FLOAT_SWITCH(dt, AT_ARG_ADD, TG_ERR_DTYPE);
    else
        TG__FLOAT_SWITCH(dt, AT_ARG_SET, TG_ERR_DTYPE);
    return TG_OK;
}

static tg_tensor *scatter_at_arg(tg_tape *tp, tg_tensor *g, const tg_tensor *x, axis_ctx *c);
static tg_tensor *gather_at_arg(tg_tape *tp, tg_tensor *g, const tg_tensor *y, axis_ctx *c);

static tg_status scatter_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in;
    if (out->numel) memset(out->data, 0, (size_t)out->numel * tg__dtype_size(out->dtype));
    return at_arg(ctx, out->dtype, in[0]->data, out->data, true, false);
}

static tg_status scatter_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                             tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)in, (void)n_in;
    return gin[0] ? at_arg(ctx, gout->dtype, gout->data, gin[0]->data, false, true) : TG_OK;
}

static tg_status scatter_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out,
                                   tg_tensor *const *in, const bool *need, tg_tensor **gin,
                                   int n_in, void *ctx)
{
    (void)out, (void)need, (void)n_in;
    gin[0] = gather_at_arg(tp, dy, in[0], ctx);
    return tg_tape_status(tp);
}

static tg_status gather_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in;
    return at_arg(ctx, out->dtype, in[0]->data, out->data, false, false);
}

static tg_status gather_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                            tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)in, (void)n_in;
    return gin[0] ? at_arg(ctx, gout->dtype, gout->data, gin[0]->data, true, true) : TG_OK;
}

static tg_status gather_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out,
                                  tg_tensor *const *in, const bool *need, tg_tensor **gin,
                                  int n_in, void *ctx)
{
    (void)out, (void)need, (void)n_in;
    gin[0] = scatter_at_arg(tp, dy, in[0], ctx);
    return tg_tape_status(tp);
}

static const tg_op_def scatter_at_arg_def = {
    .name = "scatter_at_arg", .forward = scatter_forward, .vjp = scatter_vjp,
    .vjp_graph = scatter_vjp_graph,
    .rules = (const char *const[]){"{dy:s} at the extremes along the axis", NULL}};
static const tg_op_def gather_at_arg_def = {
    .name = "gather_at_arg", .forward = gather_forward, .vjp = gather_vjp,
    .vjp_graph = gather_vjp_graph,
    .rules = (const char *const[]){"{dy:s} put at the extremes along the axis of {0:shape}",
                                   NULL}};

/* g (y's shape) scattered to x's shape. */
static tg_tensor *scatter_at_arg(tg_tape *tp, tg_tensor *g, const tg_tensor *x, axis_ctx *c)
{
    return tg_custom(tp, &scatter_at_arg_def, &g, 1, x->rank, x->shape, c);
}

/* g (x's shape) gathered to y's shape. */
static tg_tensor *gather_at_arg(tg_tape *tp, tg_tensor *g, const tg_tensor *y, axis_ctx *c)
{
    return tg_custom(tp, &gather_at_arg_def, &g, 1, y->rank, y->shape, c);
}

/* dx = dG placed at the first extreme: the recorded twin of extreme_vjp. */
static tg_status extreme_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out,
                                   tg_tensor *const *in, const bool *need, tg_tensor **gin,
                                   int n_in, void *ctx)
{
    (void)out, (void)need, (void)n_in;
    gin[0] = scatter_at_arg(tp, dy, in[0], ctx);
    return tg_tape_status(tp);
}

static tg_status argmax_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in;
    return extreme(ctx, out, in, out->data, false);
}

static const tg_op_def max_axis_def = {
    .name = "max_axis", .forward = extreme_forward, .vjp = extreme_vjp,
    .vjp_graph = extreme_vjp_graph,
    .rules = (const char *const[]){"{dy:s} at the first maximum along the axis of {0:shape}",
                                   NULL},
    .onnx = max_axis_onnx};
static const tg_op_def min_axis_def = {
    .name = "min_axis", .forward = extreme_forward, .vjp = extreme_vjp,
    .vjp_graph = extreme_vjp_graph,
    .rules = (const char *const[]){"{dy:s} at the first minimum along the axis of {0:shape}",
                                   NULL},
    .onnx = min_axis_onnx};
/* No VJP: the index is piecewise constant, and its output is I64. */
static const tg_op_def argmax_def = {.name = "argmax", .forward = argmax_forward,
                                     .index_output = true,
                                     .onnx = argmax_onnx};

static tg_tensor *extreme_op(tg_tape *tp, const tg_op_def *def, tg_tensor *x, int axis,
                             bool keepdim)
{
    if (!tg__guard(tp, def->name, 1, &x)) return NULL;
    int64_t shape[TG_MAX_RANK];
    int rank;
    axis_ctx *c = axis_setup(tp, def->name, x, axis, keepdim, true, shape, &rank);
    if (!c) return NULL;
    c->min = def == &min_axis_def;
    if (def != &argmax_def &&
        !(c->arg = tg__arena_alloc(&tp->arena, (size_t)(c->outer * c->inner) * sizeof *c->arg))) {
        tg__fail(tp, TG_ERR_NOMEM, "%s: out of memory for %lld positions", def->name,
                 (long long)(c->outer * c->inner));
        return NULL;
    }
    return tg_custom(tp, def, &x, 1, rank, shape, c);
}

tg_tensor *tg_max_axis(tg_tape *tp, tg_tensor *x, int axis, bool keepdim)
{
    return extreme_op(tp, &max_axis_def, x, axis, keepdim);
}

tg_tensor *tg_min_axis(tg_tape *tp, tg_tensor *x, int axis, bool keepdim)
{
    return extreme_op(tp, &min_axis_def, x, axis, keepdim);
}

tg_tensor *tg_argmax(tg_tape *tp, tg_tensor *x, int axis, bool keepdim)
{
    return extreme_op(tp, &argmax_def, x, axis, keepdim);
}

/* ====== logsumexp: y[o,i] = m + log sum_k e^(x[o,k,i] − m), m = max_k x[o,k,i];
 *        dx[o,k,i] += dG[o,i] e^(x[o,k,i] − y[o,i]) ======
 * As torch: an infinite m is replaced by 0, so a row of -inf gives -inf (and
 * an empty axis too), a +inf gives +inf, and a NaN gives NaN. The sum runs in
 * double; m is kept per column in the output row until the sum is done. */

#define LSE_FWD(T)                                                                                 \
    do {                                                                                           \
        const T *x = in[0]->data;                                                                  \
        T *y = out->data;                                                                          \
        for (int64_t o = 0; o < c->outer; o++) {                                                   \
            const T *xo = x + o * c->n * c->inner;                                                 \
            T *m = y + o * c->inner;                                                               \
            for (int64_t i = 0; i < c->inner; i++) m[i] = (T)-INFINITY, c->acc[i] = 0;             \
            for (int64_t k = 0; k < c->n; k++)                                                     \
                for (int64_t i = 0; i < c->inner; i++)                                             \
                    if (BEATS(xo[k * c->inner + i], m[i])) m[i] = xo[k * c->inner + i];            \
            for (int64_t i = 0; i < c->inner; i++)                                                 \
                if (isinf(m[i])) m[i] = 0;                                                         \
            for (int64_t k = 0; k < c->n; k++)                                                     \
                for (int64_t i = 0; i < c->inner; i++)                                             \
                    c->acc[i] += exp((double)xo[k * c->inner + i] - (double)m[i]);             \
            for (int64_t i = 0; i < c->inner; i++) m[i] = (T)(log(c->acc[i]) + (double)m[i]);      \
        }                                                                                          \
    } while (0)

static tg_status logsumexp_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in;
    const axis_ctx *c = ctx;
    TG__FLOAT_SWITCH(out->dtype, LSE_FWD, TG_ERR_DTYPE);
    return TG_OK;
}

#define LSE_VJP(T)                                                                                 \
    do {                                                                                           \
        const T *x = in[0]->data, *y = out->data, *g = gout->data;                                 \
        T *dx = gin[0]->data;                                                                      \
        for (int64_t o = 0; o < c->outer; o++)                                                     \
            for (int64_t k = 0; k < c->n; k++) {                                                   \
                int64_t base = (o * c->n + k) * c->inner;                                          \
                const T *yo = y + o * c->inner, *go = g + o * c->inner;                            \
                for (int64_t i = 0; i < c->inner; i++) /* dx += dG e^(x − y) */                    \
                    dx[base + i] += go[i] * exp(x[base + i] - yo[i]);                              \
            }                                                                                      \
    } while (0)

static tg_status logsumexp_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                               tg_tensor **gin, int n_in, void *ctx)
{
    (void)n_in;
    if (!gin[0]) return TG_OK;
    const axis_ctx *c = ctx;
    TG__FLOAT_SWITCH(gout->dtype, LSE_VJP, TG_ERR_DTYPE);
    return TG_OK;
}

/* dx = dG e^(x − y), dG and y given back the axis so that they broadcast
 * along it; through y, the second derivative gets softmax's terms. */
static tg_status logsumexp_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out,
                                     tg_tensor *const *in, const bool *need, tg_tensor **gin,
                                     int n_in, void *ctx)
{
    (void)need, (void)n_in;
    const axis_ctx *c = ctx;
    tg_tensor *e = tg_exp(tp, tg_sub(tp, in[0], with_axis(tp, out, in[0], c)));
    gin[0] = tg_mul(tp, with_axis(tp, dy, in[0], c), e);
    return tg_tape_status(tp);
}

static const tg_op_def logsumexp_def = {
    .name = "logsumexp", .forward = logsumexp_forward, .vjp = logsumexp_vjp,
    .vjp_graph = logsumexp_vjp_graph,
    .rules = (const char *const[]){"{dy:s} ⊙ e^({0} − {y}) along the axis", NULL},
    .onnx = logsumexp_onnx};

tg_tensor *tg_logsumexp(tg_tape *tp, tg_tensor *x, int axis, bool keepdim)
{
    if (!tg__guard(tp, "logsumexp", 1, &x)) return NULL;
    int64_t shape[TG_MAX_RANK];
    int rank;
    axis_ctx *c = axis_setup(tp, "logsumexp", x, axis, keepdim, false, shape, &rank);
    if (!c || !alloc_acc(tp, "logsumexp", c)) return NULL;
    return tg_custom(tp, &logsumexp_def, &x, 1, rank, shape, c);
}

/* ====== ONNX forms ======
 * ReduceSum takes its axes as an input from opset 13; ReduceMean, ReduceMax,
 * ReduceMin and ReduceLogSumExp take them as an attribute until opset 18.
 * Without axes every axis is reduced. */

/* The axis the node reduced, found from the shapes and ctx's extents: the
 * first axis of x of c->n elements that the output's shape drops (or keeps
 * as 1) and that has c->outer elements before it. Two axes pass only when
 * every axis from one to the other has one element, and reducing either
 * gives the same values. */
static int reduced_axis(const axis_ctx *c, const tg_tensor *x, const tg_tensor *y)
{
    bool keep = y->rank == x->rank;
    for (int ax = 0; ax < x->rank; ax++) {
        if (x->shape[ax] != c->n || (keep && y->shape[ax] != 1)) continue;
        bool fits = true;
        for (int d = 0, k = 0; d < x->rank && fits; d++) {
            if (d == ax && !keep) continue;
            fits = y->shape[k] == (d == ax ? 1 : x->shape[d]);
            k++;
        }
        if (fits && (y->numel == 0 || tg__numel(ax, x->shape) == c->outer)) return ax;
    }
    return 0;
}

/* The output's batch axis after reducing axis ax of x. */
static void reduced_batch(tg_onnx_graph *g, const tg_tensor *out, const tg_tensor *x, int ax)
{
    int b = tg_onnx_batch_axis(g, x);
    bool keep = out->rank == x->rank;
    tg_onnx_set_batch_axis(g, out, b < 0 || b == ax ? -1 : keep || b < ax ? b : b - 1);
}

static TG__ONNX_HOOK(total_onnx)
{
    (void)n_in;
    const char *op = *(const double *)ctx == 1 ? "ReduceSum" : "ReduceMean";
    tg_onnx_node *n = tg__onnx_op(g, op, tg_onnx_value(g, out), 1, tg_onnx_value(g, in[0]));
    tg_onnx_set_batch_axis(g, out, -1);
    return tg_onnx_attr_int(n, "keepdims", 0);
}

/* Reduces the axis of the node with 'op', keeping it as 1 when the output
 * does; the axes go in as an input ('as_input', ReduceSum) or an attribute. */
static tg_status reduce_along(tg_onnx_graph *g, const char *op, bool as_input,
                              const tg_tensor *out, const tg_tensor *x, const axis_ctx *c)
{
    int ax = reduced_axis(c, x, out);
    int64_t axes = ax;
    const char *ins[2] = {tg_onnx_value(g, x), as_input ? tg_onnx_ints(g, &axes, 1) : NULL};
    const char *y = tg_onnx_value(g, out);
    tg_onnx_node *n = tg_onnx_node_add(g, op, ins, as_input ? 2 : 1, &y, 1);
    if (!as_input) tg_onnx_attr_ints(n, "axes", &axes, 1);
    tg_onnx_attr_int(n, "keepdims", out->rank == x->rank);
    reduced_batch(g, out, x, ax);
    return tg_onnx_status(g);
}

#define ONNX_ALONG(op, OP, AS_INPUT)                                                               \
    static TG__ONNX_HOOK(op##_onnx)                                                                \
    {                                                                                              \
        (void)n_in;                                                                                \
        return reduce_along(g, OP, AS_INPUT, out, in[0], ctx);                                     \
    }
ONNX_ALONG(sum_axis, "ReduceSum", true)
ONNX_ALONG(mean_axis, "ReduceMean", false)
ONNX_ALONG(max_axis, "ReduceMax", false)
ONNX_ALONG(min_axis, "ReduceMin", false)
ONNX_ALONG(logsumexp, "ReduceLogSumExp", false)
#undef ONNX_ALONG

/* ArgMax gives int64 indices of the first maximum (select_last_index 0). */
static TG__ONNX_HOOK(argmax_onnx)
{
    (void)n_in;
    const tg_tensor *x = in[0];
    int ax = reduced_axis(ctx, x, out);
    tg_onnx_node *n = tg__onnx_op(g, "ArgMax", tg_onnx_value(g, out), 1, tg_onnx_value(g, x));
    tg_onnx_attr_int(n, "axis", ax);
    tg_onnx_attr_int(n, "keepdims", out->rank == x->rank);
    reduced_batch(g, out, x, ax);
    return tg_onnx_status(g);
}
