/*
 * Reductions: sum, mean (both to rank 0) and sum_axis. Sums of F32 data
 * accumulate in double, so they lose next to nothing before the final
 * rounding to float. The VJPs broadcast dG back over the reduced elements.
 * To add an op: forward and vjp side by side, a tg_op_def, a constructor.
 */
#include "internal.h"

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

static const tg_op_def sum_def = {
    .name = "sum", .forward = total_forward, .vjp = total_vjp,
    .rules = (const char *const[]){"{dy} broadcast to {0:shape}", NULL}};
static const tg_op_def mean_def = {
    .name = "mean", .forward = total_forward, .vjp = total_vjp,
    .rules = (const char *const[]){"{dy} / {c} broadcast to {0:shape}", NULL}};

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

/* ====== sum_axis: y[o,i] = sum_k x[o,k,i];  dx[o,k,i] += dG[o,i] ======
 * x is seen as [outer, n, inner] around the reduced axis; keepdim only
 * changes the output's shape, not its elements. ctx holds the three extents
 * and a row of 'inner' double accumulators, allocated when the op is recorded
 * so replay allocates nothing; it keeps the innermost loops contiguous. */

typedef struct axis_ctx {
    int64_t outer, n, inner;
    double *acc;
} axis_ctx;

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
            for (int64_t i = 0; i < c->inner; i++) y[o * c->inner + i] = (T)c->acc[i];             \
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
        for (int64_t o = 0; o < c->outer; o++)                                                     \
            for (int64_t k = 0; k < c->n; k++) {                                                   \
                T *dxk = dx + (o * c->n + k) * c->inner;                                           \
                const T *go = g + o * c->inner;                                                    \
                for (int64_t i = 0; i < c->inner; i++) dxk[i] += go[i]; /* dx[o,k,i] += dG[o,i] */ \
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

static const tg_op_def sum_axis_def = {
    .name = "sum_axis", .forward = sum_axis_forward, .vjp = sum_axis_vjp,
    .rules = (const char *const[]){"{dy:s} broadcast to {0:shape}", NULL}};

tg_tensor *tg_sum_axis(tg_tape *tp, tg_tensor *x, int axis, bool keepdim)
{
    if (!tg__guard(tp, "sum_axis", 1, &x)) return NULL;
    int ax = axis < 0 ? axis + x->rank : axis;
    if (ax < 0 || ax >= x->rank) {
        char sx[TG__SHAPE_STR_MAX];
        tg__fail(tp, TG_ERR_ARG, "sum_axis: axis %d out of range for %s", axis,
                 tg__shape_str(x, sx, sizeof sx));
        return NULL;
    }
    int64_t shape[TG_MAX_RANK];
    int rank = 0;
    for (int i = 0; i < x->rank; i++) {
        if (i != ax)
            shape[rank++] = x->shape[i];
        else if (keepdim)
            shape[rank++] = 1;
    }
    /* An empty x may have huge dims whose product overflows: the extents are
     * only formed for a result with elements, where they cannot (tg_custom
     * then refuses a result too large to exist). */
    axis_ctx c = {.n = x->shape[ax]};
    if (tg__numel(rank, shape) > 0) {
        c.outer = tg__numel(ax, x->shape);
        c.inner = tg__numel(x->rank - ax - 1, x->shape + ax + 1);
    }
    axis_ctx *ctx = tg__tape_copy(tp, &c, sizeof c);
    if (!ctx) return NULL;
    if (!(ctx->acc = tg__arena_alloc(&tp->arena, (size_t)c.inner * sizeof *ctx->acc))) {
        tg__fail(tp, TG_ERR_NOMEM, "sum_axis: out of memory for %lld accumulators",
                 (long long)c.inner);
        return NULL;
    }
    return tg_custom(tp, &sum_axis_def, &x, 1, rank, shape, ctx);
}
