/*
 * Losses, each a rank-0 tensor: frobenius_loss ||P - T||_F^2, mse_loss (its
 * mean) and softmax_cross_entropy (mean over rows, log-sum-exp stable).
 * Gradients flow into the target too when it requires grad.
 * To add an op: forward and vjp side by side, a tg_op_def, a constructor.
 */
#include "internal.h"

#include <tgmath.h>

/* ====== frobenius_loss: y = sum (p - t)^2;  dp += 2 (p - t) dG,  dt -= 2 (p - t) dG ======
 * mse_loss: the same divided by n = numel. ctx points at the divisor. */

#define SQERR_FWD(T)                                                                               \
    do {                                                                                           \
        const T *p = in[0]->data, *t = in[1]->data;                                                \
        double acc = 0;                                                                            \
        for (int64_t i = 0; i < in[0]->numel; i++) {                                               \
            double d = (double)p[i] - (double)t[i];                                                \
            acc += d * d;                                                                          \
        }                                                                                          \
        *(T *)out->data = (T)(acc / div);                                                          \
    } while (0)

static tg_status sqerr_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in;
    double div = *(const double *)ctx;
    TG__FLOAT_SWITCH(out->dtype, SQERR_FWD, TG_ERR_DTYPE);
    return TG_OK;
}

#define SQERR_VJP(T)                                                                               \
    do {                                                                                           \
        const T *p = in[0]->data, *t = in[1]->data;                                                \
        T k = (T)(2 * tg_tensor_item(gout) / div);                                                 \
        if (gin[0]) {                                                                              \
            T *dp = gin[0]->data;                                                                  \
            for (int64_t i = 0; i < in[0]->numel; i++) /* dp += 2 (p - t) dG / div */              \
                dp[i] += k * (p[i] - t[i]);                                                        \
        }                                                                                          \
        if (gin[1]) {                                                                              \
            T *dt = gin[1]->data;                                                                  \
            for (int64_t i = 0; i < in[0]->numel; i++) /* dt -= 2 (p - t) dG / div */              \
                dt[i] -= k * (p[i] - t[i]);                                                        \
        }                                                                                          \
    } while (0)

static tg_status sqerr_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                           tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)n_in;
    double div = *(const double *)ctx;
    TG__FLOAT_SWITCH(gout->dtype, SQERR_VJP, TG_ERR_DTYPE);
    return TG_OK;
}

static const tg_op_def frobenius_def = {
    .name = "frobenius_loss", .forward = sqerr_forward, .vjp = sqerr_vjp,
    .rules = (const char *const[]){"2 ({0} − {1}) · {dy}", "−2 ({0} − {1}) · {dy}", NULL}};
static const tg_op_def mse_def = {
    .name = "mse_loss", .forward = sqerr_forward, .vjp = sqerr_vjp,
    .rules = (const char *const[]){"2 ({0} − {1}) · {dy} / {c}",
                                   "−2 ({0} − {1}) · {dy} / {c}", NULL}};

static bool same_shapes(tg_tape *tp, const char *op, tg_tensor *const *in)
{
    if (tg__same_shape(in[0], in[1])) return true;
    char sa[TG__SHAPE_STR_MAX], sb[TG__SHAPE_STR_MAX];
    tg__fail(tp, TG_ERR_SHAPE, "%s: prediction and target differ in shape: %s and %s", op,
             tg__shape_str(in[0], sa, sizeof sa), tg__shape_str(in[1], sb, sizeof sb));
    return false;
}

static tg_tensor *sqerr(tg_tape *tp, const tg_op_def *def, tg_tensor *pred, tg_tensor *target,
                        bool mean)
{
    tg_tensor *in[2] = {pred, target};
    if (!tg__guard(tp, def->name, 2, in) || !same_shapes(tp, def->name, in)) return NULL;
    double div = mean ? (double)pred->numel : 1.0; /* mean of nothing: NaN, as in PyTorch */
    double *ctx = tg__tape_copy(tp, &div, sizeof div);
    return ctx ? tg_custom(tp, def, in, 2, 0, NULL, ctx) : NULL;
}

tg_tensor *tg_frobenius_loss(tg_tape *tp, tg_tensor *pred, tg_tensor *target)
{
    return sqerr(tp, &frobenius_def, pred, target, false);
}

tg_tensor *tg_mse_loss(tg_tape *tp, tg_tensor *pred, tg_tensor *target)
{
    return sqerr(tp, &mse_def, pred, target, true);
}

/* ====== softmax_cross_entropy: y = -1/n sum_i sum_c t_ic ls_ic, ls = log_softmax(z) ======
 * dz_ic += dG/n (softmax_ic sum_c t_ic - t_ic),   dt_ic -= dG/n ls_ic.
 * The forward keeps ls in ctx, a buffer the size of the logits allocated when
 * the op is recorded, so the VJP reads it and replay allocates nothing. */

#define CE_FWD(T)                                                                                  \
    do {                                                                                           \
        const T *t = in[1]->data, *ls = ctx;                                                       \
        double acc = 0;                                                                            \
        for (int64_t i = 0; i < in[0]->numel; i++)                                                 \
            if (t[i] != 0) acc -= (double)(t[i] * ls[i]); /* 0 log 0 counts as 0 */                \
        *(T *)out->data = (T)(acc / (double)n);                                                    \
    } while (0)

static tg_status ce_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in;
    int64_t n = in[0]->shape[0], c = in[0]->shape[1];
    tg__log_softmax_rows(out->dtype, in[0]->data, ctx, n, c, false);
    TG__FLOAT_SWITCH(out->dtype, CE_FWD, TG_ERR_DTYPE);
    return TG_OK;
}

#define CE_VJP(T)                                                                                  \
    do {                                                                                           \
        const T *t = in[1]->data, *ls = ctx;                                                       \
        T k = (T)(tg_tensor_item(gout) / (double)n);                                               \
        if (gin[0]) {                                                                              \
            T *dz = gin[0]->data;                                                                  \
            for (int64_t i = 0; i < n; i++) {                                                      \
                T tsum = 0;                                                                        \
                for (int64_t j = 0; j < c; j++) tsum += t[i * c + j];                              \
                for (int64_t j = 0; j < c; j++) /* dz += dG/n (softmax sum_c t - t) */             \
                    dz[i * c + j] += k * (exp(ls[i * c + j]) * tsum - t[i * c + j]);               \
            }                                                                                      \
        }                                                                                          \
        if (gin[1]) {                                                                              \
            T *dt = gin[1]->data;                                                                  \
            for (int64_t i = 0; i < n * c; i++) dt[i] -= k * ls[i]; /* dt -= dG/n ls */            \
        }                                                                                          \
    } while (0)

static tg_status ce_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                        tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)n_in;
    int64_t n = in[0]->shape[0], c = in[0]->shape[1];
    if (c == 0) return TG_OK; /* no logits, and n may be huge: do not walk the rows */
    TG__FLOAT_SWITCH(gout->dtype, CE_VJP, TG_ERR_DTYPE);
    return TG_OK;
}

static const tg_op_def ce_def = {
    .name = "softmax_cross_entropy", .forward = ce_forward, .vjp = ce_vjp,
    .rules = (const char *const[]){"(softmax({0}) ⊙ rowsum({1}) − {1}) · {dy} / {0:rows}",
                                   "−log_softmax({0}) · {dy} / {0:rows}", NULL}};

tg_tensor *tg_softmax_cross_entropy(tg_tape *tp, tg_tensor *logits, tg_tensor *target)
{
    tg_tensor *in[2] = {logits, target};
    if (!tg__guard(tp, ce_def.name, 2, in) || !same_shapes(tp, ce_def.name, in)) return NULL;
    if (logits->rank != 2) {
        char s[TG__SHAPE_STR_MAX];
        tg__fail(tp, TG_ERR_SHAPE, "softmax_cross_entropy: logits must be [n,c], got %s",
                 tg__shape_str(logits, s, sizeof s));
        return NULL;
    }
    void *ls = tg__arena_alloc(&tp->arena, (size_t)logits->numel * tg__dtype_size(logits->dtype));
    if (!ls) {
        tg__fail(tp, TG_ERR_NOMEM,
                 "softmax_cross_entropy: out of memory for %lld log-probabilities",
                 (long long)logits->numel);
        return NULL;
    }
    return tg_custom(tp, &ce_def, in, 2, 0, NULL, ls);
}
