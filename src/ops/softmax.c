/*
 * softmax and log_softmax along the last axis. Both subtract the row maximum
 * first, so exp never overflows: logits of +-1e4 give exact results.
 * To add an op: forward and vjp side by side, a tg_op_def, a constructor.
 */
#include "internal.h"

#include <tgmath.h>

/* The ONNX forms of the ops, at the end of the file. */
static TG__ONNX_HOOK(softmax_onnx);
static TG__ONNX_HOOK(log_softmax_onnx);

/* y = (x - max) - log(sum exp(x - max)) for each row of 'cols' elements; with
 * 'as_prob' the row is exponentiated at the end (softmax instead). Subtracting
 * max before log(sum) keeps log(sum) from being rounded away next to a large max. */
#define ROWS_LOG_SOFTMAX(T)                                                                        \
    do {                                                                                           \
        const T *xs = x;                                                                           \
        T *ys = y;                                                                                 \
        for (int64_t r = 0; r < rows; r++) {                                                       \
            const T *xr = xs + r * cols;                                                           \
            T *yr = ys + r * cols;                                                                 \
            T mx = xr[0], sum = 0;                                                                 \
            for (int64_t j = 1; j < cols; j++) mx = xr[j] > mx ? xr[j] : mx;                       \
            for (int64_t j = 0; j < cols; j++) sum += exp(xr[j] - mx);                             \
            T lsum = log(sum);                                                                     \
            for (int64_t j = 0; j < cols; j++) yr[j] = (xr[j] - mx) - lsum;                        \
            if (as_prob)                                                                           \
                for (int64_t j = 0; j < cols; j++) yr[j] = exp(yr[j]);                             \
        }                                                                                          \
    } while (0)

void tg__log_softmax_rows(tg_dtype dt, const void *x, void *y, int64_t rows, int64_t cols,
                          bool as_prob)
{
    if (cols == 0) return;
    TG__FLOAT_SWITCH(dt, ROWS_LOG_SOFTMAX, );
}

static void last_axis(const tg_tensor *t, int64_t *rows, int64_t *cols)
{
    *cols = t->shape[t->rank - 1];
    *rows = *cols ? t->numel / *cols : 0;
}

/* ====== softmax: y = e^(x - lse(x)) per row;  dx += y (.) (dG - sum_j dG_j y_j) ====== */

static tg_status softmax_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in, (void)ctx;
    int64_t rows, cols;
    last_axis(out, &rows, &cols);
    tg__log_softmax_rows(out->dtype, in[0]->data, out->data, rows, cols, true);
    return TG_OK;
}

#define SOFTMAX_VJP(T)                                                                             \
    do {                                                                                           \
        const T *ys = out->data, *gs = gout->data;                                                 \
        T *dxs = gin[0]->data;                                                                     \
        for (int64_t r = 0; r < rows; r++) {                                                       \
            const T *yr = ys + r * cols, *gr = gs + r * cols;                                      \
            T *dx = dxs + r * cols, dot = 0;                                                       \
            for (int64_t j = 0; j < cols; j++) dot += gr[j] * yr[j];                               \
            /* dx += y (.) (dG - sum_j dG_j y_j) */                                                \
            for (int64_t j = 0; j < cols; j++) dx[j] += yr[j] * (gr[j] - dot);                     \
        }                                                                                          \
    } while (0)

static tg_status softmax_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                             tg_tensor **gin, int n_in, void *ctx)
{
    (void)in, (void)n_in, (void)ctx;
    if (!gin[0]) return TG_OK;
    int64_t rows, cols;
    last_axis(out, &rows, &cols);
    TG__FLOAT_SWITCH(out->dtype, SOFTMAX_VJP, TG_ERR_DTYPE);
    return TG_OK;
}

static tg_status softmax_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out,
                                   tg_tensor *const *in, const bool *need, tg_tensor **gin,
                                   int n_in, void *ctx)
{
    (void)in, (void)need, (void)n_in, (void)ctx;
    tg_tensor *dot = tg_sum_axis(tp, tg_mul(tp, dy, out), -1, true); /* Σ_j dG_j y_j per row */
    gin[0] = tg_mul(tp, out, tg_sub(tp, dy, dot));                   /* dx = y ⊙ (dG − dot) */
    return tg_tape_status(tp);
}

static const tg_op_def softmax_def = {
    .name = "softmax", .forward = softmax_forward, .vjp = softmax_vjp,
    .vjp_graph = softmax_vjp_graph,
    .rules = (const char *const[]){"{y} ⊙ ({dy} − rowsum({dy} ⊙ {y}))", NULL},
    .onnx = softmax_onnx};

/* ====== log_softmax: y = x - lse(x) per row;  dx += dG - e^y sum_j dG_j ====== */

static tg_status log_softmax_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in, (void)ctx;
    int64_t rows, cols;
    last_axis(out, &rows, &cols);
    tg__log_softmax_rows(out->dtype, in[0]->data, out->data, rows, cols, false);
    return TG_OK;
}

#define LOG_SOFTMAX_VJP(T)                                                                         \
    do {                                                                                           \
        const T *ys = out->data, *gs = gout->data;                                                 \
        T *dxs = gin[0]->data;                                                                     \
        for (int64_t r = 0; r < rows; r++) {                                                       \
            const T *yr = ys + r * cols, *gr = gs + r * cols;                                      \
            T *dx = dxs + r * cols, gsum = 0;                                                      \
            for (int64_t j = 0; j < cols; j++) gsum += gr[j];                                      \
            /* dx += dG - e^y sum_j dG_j */                                                        \
            for (int64_t j = 0; j < cols; j++) dx[j] += gr[j] - exp(yr[j]) * gsum;                 \
        }                                                                                          \
    } while (0)

static tg_status log_softmax_vjp(const tg_tensor *gout, const tg_tensor *out,
                                 tg_tensor *const *in, tg_tensor **gin, int n_in, void *ctx)
{
    (void)in, (void)n_in, (void)ctx;
    if (!gin[0]) return TG_OK;
    int64_t rows, cols;
    last_axis(out, &rows, &cols);
    TG__FLOAT_SWITCH(out->dtype, LOG_SOFTMAX_VJP, TG_ERR_DTYPE);
    return TG_OK;
}

static tg_status log_softmax_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out,
                                       tg_tensor *const *in, const bool *need, tg_tensor **gin,
                                       int n_in, void *ctx)
{
    (void)in, (void)need, (void)n_in, (void)ctx;
    tg_tensor *gsum = tg_sum_axis(tp, dy, -1, true);            /* Σ_j dG_j per row */
    gin[0] = tg_sub(tp, dy, tg_mul(tp, tg_exp(tp, out), gsum)); /* dx = dG − e^y gsum */
    return tg_tape_status(tp);
}

static const tg_op_def log_softmax_def = {
    .name = "log_softmax", .forward = log_softmax_forward, .vjp = log_softmax_vjp,
    .vjp_graph = log_softmax_vjp_graph,
    .rules = (const char *const[]){"{dy} − exp({y}) ⊙ rowsum({dy})", NULL},
    .onnx = log_softmax_onnx};

static tg_tensor *row_op(tg_tape *tp, const tg_op_def *def, tg_tensor *x)
{
    if (!tg__guard(tp, def->name, 1, &x)) return NULL;
    if (x->rank < 1) {
        tg__fail(tp, TG_ERR_SHAPE, "%s: needs rank >= 1, got []", def->name);
        return NULL;
    }
    return tg_custom(tp, def, &x, 1, x->rank, x->shape, NULL);
}

tg_tensor *tg_softmax(tg_tape *tp, tg_tensor *x) { return row_op(tp, &softmax_def, x); }
tg_tensor *tg_log_softmax(tg_tape *tp, tg_tensor *x) { return row_op(tp, &log_softmax_def, x); }

/* ====== ONNX forms: Softmax and LogSoftmax along the last axis (opset 13 and later) ====== */

static tg_status along_last(tg_onnx_graph *g, const char *op, const tg_tensor *out,
                            const tg_tensor *x)
{
    tg_onnx_node *n = tg__onnx_op(g, op, tg_onnx_value(g, out), 1, tg_onnx_value(g, x));
    return tg_onnx_attr_int(n, "axis", -1);
}

static TG__ONNX_HOOK(softmax_onnx)
{
    (void)n_in, (void)ctx;
    return along_last(g, "Softmax", out, in[0]);
}

static TG__ONNX_HOOK(log_softmax_onnx)
{
    (void)n_in, (void)ctx;
    return along_last(g, "LogSoftmax", out, in[0]);
}
