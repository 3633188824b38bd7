/*
 * Losses, each a rank-0 tensor: frobenius_loss ||P - T||_F^2, mse_loss (its
 * mean), softmax_cross_entropy (mean over rows, log-sum-exp stable),
 * cross_entropy with I64 class labels, bce_with_logits, l1_loss and
 * huber_loss (means over every element). Sums accumulate in double; a mean
 * over no elements is 0/0 = NaN, as in torch. Gradients flow into a float
 * target too when it requires grad.
 * To add an op: forward and vjp side by side, a tg_op_def, a constructor.
 */
#include "internal.h"

#include <string.h>
#include <tgmath.h>

/* The ONNX forms of the ops, at the end of the file. */
static TG__ONNX_HOOK(sqerr_onnx);
static TG__ONNX_HOOK(ce_onnx);
static TG__ONNX_HOOK(xent_onnx);
static TG__ONNX_HOOK(bce_onnx);
static TG__ONNX_HOOK(l1_onnx);
static TG__ONNX_HOOK(huber_onnx);

/* For the recorded VJPs: x / n, with n a constant shaped like dG (rank 0 for
 * every loss). A division rather than a product with 1/n gives the values of
 * the fused VJPs, which divide. NULL passes through. */
static tg_tensor *div_n(tg_tape *tp, tg_tensor *x, tg_tensor *dy, double n)
{
    return n == 1.0 || !x ? x : tg_div(tp, x, tg_full_like(tp, dy, n));
}

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

/* dp = (2 dG / div) (p − t), dt = −dp. */
static tg_status sqerr_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                                 const bool *need, tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)n_in;
    tg_tensor *k = div_n(tp, tg_scale(tp, dy, 2.0), dy, *(const double *)ctx);
    tg_tensor *dp = tg_mul(tp, k, tg_sub(tp, in[0], in[1]));
    if (need[0]) gin[0] = dp;
    if (need[1]) gin[1] = tg_neg(tp, dp);
    return tg_tape_status(tp);
}

static const tg_op_def frobenius_def = {
    .name = "frobenius_loss", .forward = sqerr_forward, .vjp = sqerr_vjp,
    .vjp_graph = sqerr_vjp_graph,
    .rules = (const char *const[]){"2 ({0} − {1}) · {dy}", "−2 ({0} − {1}) · {dy}", NULL},
    .onnx = sqerr_onnx};
static const tg_op_def mse_def = {
    .name = "mse_loss", .forward = sqerr_forward, .vjp = sqerr_vjp,
    .vjp_graph = sqerr_vjp_graph,
    .rules = (const char *const[]){"2 ({0} − {1}) · {dy} / {c}",
                                   "−2 ({0} − {1}) · {dy} / {c}", NULL},
    .onnx = sqerr_onnx};

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

/* dz = k (softmax(z) ⊙ rowsum(t) − t), dt = −k log_softmax(z), k = dG/n:
 * softmax and log_softmax recorded again from z (the buffer in ctx is no
 * recorded tensor), with the values the forward kept. */
static tg_status ce_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                              const bool *need, tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)n_in, (void)ctx;
    tg_tensor *z = in[0], *t = in[1], *k = div_n(tp, dy, dy, (double)z->shape[0]);
    if (need[0]) {
        tg_tensor *tsum = tg_sum_axis(tp, t, -1, true);
        gin[0] = tg_mul(tp, k, tg_sub(tp, tg_mul(tp, tg_softmax(tp, z), tsum), t));
    }
    if (need[1]) gin[1] = tg_neg(tp, tg_mul(tp, k, tg_log_softmax(tp, z)));
    return tg_tape_status(tp);
}

static const tg_op_def ce_def = {
    .name = "softmax_cross_entropy", .forward = ce_forward, .vjp = ce_vjp,
    .vjp_graph = ce_vjp_graph,
    .rules = (const char *const[]){"(softmax({0}) ⊙ rowsum({1}) − {1}) · {dy} / {0:rows}",
                                   "−log_softmax({0}) · {dy} / {0:rows}", NULL},
    .onnx = ce_onnx};

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

/* ====== cross_entropy: y = −1/n Σ_i LS[i, l_i], LS = log_softmax(Z), l the labels ======
 * dZ[i,j] += dG/n (softmax(Z)[i,j] − [j = l_i]); the labels get no gradient.
 * torch.nn.functional.cross_entropy with class indices and no ignore_index:
 * every label must be in [0, C). The forward checks them at recording and at
 * every replay, since the caller may write new labels between replays; it
 * fails the tape itself (ctx keeps the tape) so the message can name the
 * position and the value. LS lives in ctx, made when the op is recorded. */

typedef struct xent_ctx {
    tg_tape *tp;
    void *ls; /* n x C log-probabilities, the logits' dtype */
} xent_ctx;

/* TG_OK when every label is a class of the logits, else fails the tape with
 * the first bad label. */
static tg_status check_labels(const xent_ctx *c, tg_tensor *const *in)
{
    const int64_t *l = in[1]->data;
    int64_t n = in[0]->shape[0], classes = in[0]->shape[1];
    for (int64_t i = 0; i < n; i++) {
        if (l[i] >= 0 && l[i] < classes) continue;
        char sz[TG__SHAPE_STR_MAX], sl[TG__SHAPE_STR_MAX];
        return tg__fail(c->tp, TG_ERR_ARG,
                        "cross_entropy: label %lld at position %lld is out of range for %lld "
                        "classes (logits %s, labels %s)",
                        (long long)l[i], (long long)i, (long long)classes,
                        tg__shape_str(in[0], sz, sizeof sz), tg__shape_str(in[1], sl, sizeof sl));
    }
    return TG_OK;
}

#define XENT_FWD(T)                                                                                \
    do {                                                                                           \
        const T *ls = c->ls;                                                                       \
        double acc = 0;                                                                            \
        for (int64_t i = 0; i < n; i++) acc += (double)ls[i * classes + l[i]];                     \
        *(T *)out->data = (T)(-acc / (double)n);                                                   \
    } while (0)

static tg_status xent_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in;
    const xent_ctx *c = ctx;
    tg_status s = check_labels(c, in);
    if (s != TG_OK) return s;
    const int64_t *l = in[1]->data;
    int64_t n = in[0]->shape[0], classes = in[0]->shape[1];
    tg__log_softmax_rows(out->dtype, in[0]->data, c->ls, n, classes, false);
    TG__FLOAT_SWITCH(out->dtype, XENT_FWD, TG_ERR_DTYPE);
    return TG_OK;
}

#define XENT_VJP(T)                                                                                \
    do {                                                                                           \
        const T *ls = c->ls;                                                                       \
        T k = (T)(tg_tensor_item(gout) / (double)n), *dz = gin[0]->data;                           \
        for (int64_t i = 0; i < n; i++)                                                            \
            for (int64_t j = 0; j < classes; j++) /* dz += dG/n (softmax − onehot) */              \
                dz[i * classes + j] += k * exp(ls[i * classes + j]) - (j == l[i] ? k : 0);         \
    } while (0)

static tg_status xent_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                          tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)n_in;
    if (!gin[0]) return TG_OK;
    const xent_ctx *c = ctx;
    const int64_t *l = in[1]->data;
    int64_t n = in[0]->shape[0], classes = in[0]->shape[1];
    TG__FLOAT_SWITCH(gout->dtype, XENT_VJP, TG_ERR_DTYPE);
    return TG_OK;
}

/* The one-hot rows of the labels as a constant [n,C] of the logits' dtype
 * (input 0, the logits, gives the dtype; no VJP), rewritten at every forward
 * from that forward's labels. A label out of range, which the loss's own
 * forward has already refused, leaves its row zero. */
static tg_status one_hot_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in, (void)ctx;
    const int64_t *l = in[1]->data;
    int64_t n = out->shape[0], classes = out->shape[1];
    if (out->numel) memset(out->data, 0, (size_t)out->numel * tg__dtype_size(out->dtype));
    for (int64_t i = 0; i < n; i++)
        if (l[i] >= 0 && l[i] < classes) tg__put(out, i * classes + l[i], 1.0);
    return TG_OK;
}

static const tg_op_def one_hot_def = {
    .name = "one_hot", .forward = one_hot_forward, .index_inputs = 1u << 1};

/* dz = k softmax(z) − k onehot(l), k = dG/n: the fused VJP's two terms. */
static tg_status xent_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                                const bool *need, tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)need, (void)n_in, (void)ctx;
    tg_tensor *z = in[0], *k = div_n(tp, dy, dy, (double)z->shape[0]);
    tg_tensor *hot = tg_custom(tp, &one_hot_def, in, 2, 2, z->shape, NULL);
    gin[0] = tg_sub(tp, tg_mul(tp, k, tg_softmax(tp, z)), tg_mul(tp, k, hot));
    return tg_tape_status(tp);
}

static const tg_op_def xent_def = {
    .name = "cross_entropy", .forward = xent_forward, .vjp = xent_vjp,
    .vjp_graph = xent_vjp_graph,
    .rules = (const char *const[]){"(softmax({0}) − onehot({1})) · {dy} / {0:rows}", NULL},
    .index_inputs = 1u << 1,
    .onnx = xent_onnx};

tg_tensor *tg_cross_entropy(tg_tape *tp, tg_tensor *logits, tg_tensor *labels)
{
    tg_tensor *in[2] = {logits, labels};
    if (!tg__guard(tp, "cross_entropy", 2, in)) return NULL;
    if (logits->rank != 2 || labels->rank != 1 || labels->shape[0] != logits->shape[0]) {
        char sz[TG__SHAPE_STR_MAX], sl[TG__SHAPE_STR_MAX];
        tg__fail(tp, TG_ERR_SHAPE,
                 "cross_entropy: logits must be [n,C] and labels [n], got %s and %s",
                 tg__shape_str(logits, sz, sizeof sz), tg__shape_str(labels, sl, sizeof sl));
        return NULL;
    }
    xent_ctx c = {.tp = tp, .ls = NULL};
    xent_ctx *ctx = tg__tape_copy(tp, &c, sizeof c);
    if (!ctx) return NULL;
    size_t bytes = (size_t)logits->numel * tg__dtype_size(logits->dtype);
    if (!(ctx->ls = tg__arena_alloc(&tp->arena, bytes))) {
        tg__fail(tp, TG_ERR_NOMEM, "cross_entropy: out of memory for %lld log-probabilities",
                 (long long)logits->numel);
        return NULL;
    }
    return tg_custom(tp, &xent_def, in, 2, 0, NULL, ctx);
}

/* ====== bce_with_logits: y = 1/n Σ max(x, 0) − x t + log(1 + e^−|x|) ======
 * dx += dG/n (σ(x) − t),  dt −= dG/n x. The log term only ever exponentiates
 * −|x|, so large logits cost nothing in accuracy, and the target's rule is
 * −x itself rather than log(1 − σ(x)) − log σ(x), which is infinite once σ(x)
 * rounds to 1. */

static double sigmoid(double x)
{
    double e = exp(-fabs(x));
    return x >= 0 ? 1 / (1 + e) : e / (1 + e);
}

#define BCE_FWD(T)                                                                                 \
    do {                                                                                           \
        const T *x = in[0]->data, *t = in[1]->data;                                                \
        double acc = 0;                                                                            \
        for (int64_t i = 0; i < n; i++) {                                                          \
            double xi = (double)x[i];                                                              \
            acc += (xi > 0 ? xi : 0) - xi * (double)t[i] + log1p(exp(-fabs(xi)));                  \
        }                                                                                          \
        *(T *)out->data = (T)(acc / (double)n);                                                    \
    } while (0)

static tg_status bce_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in, (void)ctx;
    int64_t n = in[0]->numel;
    TG__FLOAT_SWITCH(out->dtype, BCE_FWD, TG_ERR_DTYPE);
    return TG_OK;
}

#define BCE_VJP(T)                                                                                 \
    do {                                                                                           \
        const T *x = in[0]->data, *t = in[1]->data;                                                \
        double g = tg_tensor_item(gout), dn = (double)n;                                           \
        if (gin[0]) {                                                                              \
            T *dx = gin[0]->data;                                                                  \
            for (int64_t i = 0; i < n; i++) /* dx += (σ(x) − t) dG / n */                          \
                dx[i] += (T)((sigmoid((double)x[i]) - (double)t[i]) * g / dn);                     \
        }                                                                                          \
        if (gin[1]) {                                                                              \
            T *dt = gin[1]->data;                                                                  \
            for (int64_t i = 0; i < n; i++) /* dt −= x dG / n */                                   \
                dt[i] -= (T)((double)x[i] * g / dn);                                               \
        }                                                                                          \
    } while (0)

static tg_status bce_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                         tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)n_in, (void)ctx;
    int64_t n = in[0]->numel;
    TG__FLOAT_SWITCH(gout->dtype, BCE_VJP, TG_ERR_DTYPE);
    return TG_OK;
}

/* dx = (σ(x) − t) dG / n, dt = −x dG / n, in the fused VJP's order. */
static tg_status bce_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                               const bool *need, tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)n_in, (void)ctx;
    tg_tensor *x = in[0], *t = in[1];
    double n = (double)x->numel;
    if (need[0]) gin[0] = div_n(tp, tg_mul(tp, tg_sub(tp, tg_sigmoid(tp, x), t), dy), dy, n);
    if (need[1]) gin[1] = tg_neg(tp, div_n(tp, tg_mul(tp, x, dy), dy, n));
    return tg_tape_status(tp);
}

static const tg_op_def bce_def = {
    .name = "bce_with_logits", .forward = bce_forward, .vjp = bce_vjp,
    .vjp_graph = bce_vjp_graph,
    .rules = (const char *const[]){"(σ({0}) − {1}) · {dy} / n", "−{0} · {dy} / n", NULL},
    .onnx = bce_onnx};

/* The constructor of the losses over two same-shape operands with no
 * parameter but delta (huber_loss), which ctx then holds. */
static tg_tensor *pair_loss(tg_tape *tp, const tg_op_def *def, tg_tensor *pred, tg_tensor *target,
                            const double *delta)
{
    tg_tensor *in[2] = {pred, target};
    if (!tg__guard(tp, def->name, 2, in) || !same_shapes(tp, def->name, in)) return NULL;
    double *ctx = NULL;
    if (delta && !(ctx = tg__tape_copy(tp, delta, sizeof *delta))) return NULL;
    return tg_custom(tp, def, in, 2, 0, NULL, ctx);
}

tg_tensor *tg_bce_with_logits(tg_tape *tp, tg_tensor *logits, tg_tensor *target)
{
    return pair_loss(tp, &bce_def, logits, target, NULL);
}

/* ====== l1_loss: y = 1/n Σ |p − t|;  dp += dG/n sign(p − t), dt −= the same ======
 * sign(0) = 0, as torch's sgn. */

#define L1_FWD(T)                                                                                  \
    do {                                                                                           \
        const T *p = in[0]->data, *t = in[1]->data;                                                \
        double acc = 0;                                                                            \
        for (int64_t i = 0; i < n; i++) acc += fabs((double)p[i] - (double)t[i]);                  \
        *(T *)out->data = (T)(acc / (double)n);                                                    \
    } while (0)

static tg_status l1_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in, (void)ctx;
    int64_t n = in[0]->numel;
    TG__FLOAT_SWITCH(out->dtype, L1_FWD, TG_ERR_DTYPE);
    return TG_OK;
}

#define L1_VJP(T)                                                                                  \
    do {                                                                                           \
        const T *p = in[0]->data, *t = in[1]->data;                                                \
        T k = (T)(tg_tensor_item(gout) / (double)n);                                               \
        for (int64_t i = 0; i < n; i++) {                                                          \
            T d = k * (T)((p[i] > t[i]) - (p[i] < t[i])); /* dG/n sign(p − t) */                   \
            if (gin[0]) ((T *)gin[0]->data)[i] += d;                                               \
            if (gin[1]) ((T *)gin[1]->data)[i] -= d;                                               \
        }                                                                                          \
    } while (0)

static tg_status l1_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                        tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)n_in, (void)ctx;
    int64_t n = in[0]->numel;
    TG__FLOAT_SWITCH(gout->dtype, L1_VJP, TG_ERR_DTYPE);
    return TG_OK;
}

/* sign(p − t) as a constant of p's shape: its derivative is zero (and at
 * p = t the value is 0, the fused VJP's subgradient). */
#define SIGN_FWD(T)                                                                                \
    do {                                                                                           \
        const T *p = in[0]->data, *t = in[1]->data;                                                \
        T *y = out->data;                                                                          \
        for (int64_t i = 0; i < out->numel; i++) y[i] = (T)((p[i] > t[i]) - (p[i] < t[i]));       \
    } while (0)

static tg_status sign_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in, (void)ctx;
    TG__FLOAT_SWITCH(out->dtype, SIGN_FWD, TG_ERR_DTYPE);
    return TG_OK;
}

static const tg_op_def sign_def = {.name = "sign_of_difference", .forward = sign_forward};

/* dp = (dG/n) sign(p − t), dt = −dp. */
static tg_status l1_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                              const bool *need, tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)n_in, (void)ctx;
    tg_tensor *k = div_n(tp, dy, dy, (double)in[0]->numel);
    tg_tensor *dp = tg_mul(tp, k, tg_custom(tp, &sign_def, in, 2, in[0]->rank, in[0]->shape, NULL));
    if (need[0]) gin[0] = dp;
    if (need[1]) gin[1] = tg_neg(tp, dp);
    return tg_tape_status(tp);
}

static const tg_op_def l1_def = {
    .name = "l1_loss", .forward = l1_forward, .vjp = l1_vjp,
    .vjp_graph = l1_vjp_graph,
    .rules = (const char *const[]){"sign({0} − {1}) · {dy} / n", "−sign({0} − {1}) · {dy} / n",
                                   NULL},
    .onnx = l1_onnx};

tg_tensor *tg_l1_loss(tg_tape *tp, tg_tensor *pred, tg_tensor *target)
{
    return pair_loss(tp, &l1_def, pred, target, NULL);
}

/* ====== huber_loss: y = 1/n Σ h(p − t), h(d) = d²/2 for |d| < δ, δ (|d| − δ/2) else ======
 * dp += dG/n clamp(p − t, −δ, δ), dt −= the same: torch.nn.functional.huber_loss
 * with reduction "mean"; ctx holds δ > 0. */

#define HUBER_FWD(T)                                                                               \
    do {                                                                                           \
        const T *p = in[0]->data, *t = in[1]->data;                                                \
        double acc = 0;                                                                            \
        for (int64_t i = 0; i < n; i++) {                                                          \
            double z = fabs((double)p[i] - (double)t[i]);                                          \
            acc += z < delta ? 0.5 * z * z : delta * (z - 0.5 * delta);                            \
        }                                                                                          \
        *(T *)out->data = (T)(acc / (double)n);                                                    \
    } while (0)

static tg_status huber_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in;
    int64_t n = in[0]->numel;
    double delta = *(const double *)ctx;
    TG__FLOAT_SWITCH(out->dtype, HUBER_FWD, TG_ERR_DTYPE);
    return TG_OK;
}

#define HUBER_VJP(T)                                                                               \
    do {                                                                                           \
        const T *p = in[0]->data, *t = in[1]->data;                                                \
        T k = (T)(tg_tensor_item(gout) / (double)n), dl = (T)delta;                                \
        for (int64_t i = 0; i < n; i++) {                                                          \
            T x = p[i] - t[i];                                                                     \
            T d = x < -dl ? -k * dl : x > dl ? k * dl : k * x; /* dG/n clamp(p − t, −δ, δ) */      \
            if (gin[0]) ((T *)gin[0]->data)[i] += d;                                               \
            if (gin[1]) ((T *)gin[1]->data)[i] -= d;                                               \
        }                                                                                          \
    } while (0)

static tg_status huber_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                           tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)n_in;
    int64_t n = in[0]->numel;
    double delta = *(const double *)ctx;
    TG__FLOAT_SWITCH(gout->dtype, HUBER_VJP, TG_ERR_DTYPE);
    return TG_OK;
}

/* dp = (dG/n) clamp(p − t, −δ, δ), dt = −dp: clamp passes the gradient
 * inside the bounds, so the second derivative is 1/n there and 0 outside. */
static tg_status huber_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                                 const bool *need, tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)n_in;
    double delta = *(const double *)ctx;
    tg_tensor *k = div_n(tp, dy, dy, (double)in[0]->numel);
    tg_tensor *dp = tg_mul(tp, k, tg_clamp(tp, tg_sub(tp, in[0], in[1]), -delta, delta));
    if (need[0]) gin[0] = dp;
    if (need[1]) gin[1] = tg_neg(tp, dp);
    return tg_tape_status(tp);
}

static const tg_op_def huber_def = {
    .name = "huber_loss", .forward = huber_forward, .vjp = huber_vjp,
    .vjp_graph = huber_vjp_graph,
    .rules = (const char *const[]){"clamp({0} − {1}, −{c}, {c}) · {dy} / n",
                                   "−clamp({0} − {1}, −{c}, {c}) · {dy} / n", NULL},
    .onnx = huber_onnx};

tg_tensor *tg_huber_loss(tg_tape *tp, tg_tensor *pred, tg_tensor *target, double delta)
{
    tg_tensor *in[2] = {pred, target};
    if (!tg__guard(tp, "huber_loss", 2, in)) return NULL;
    if (!(delta > 0)) {
        char sp[TG__SHAPE_STR_MAX], st[TG__SHAPE_STR_MAX];
        tg__fail(tp, TG_ERR_ARG, "huber_loss: delta must be > 0, got %g (pred %s, target %s)",
                 delta, tg__shape_str(pred, sp, sizeof sp), tg__shape_str(target, st, sizeof st));
        return NULL;
    }
    return pair_loss(tp, &huber_def, pred, target, &delta);
}

/* ====== ONNX forms ======
 * Each loss is written out from elementwise operators and a reduction to
 * rank 0 (keepdims 0, every axis); cross_entropy is SoftmaxCrossEntropyLoss,
 * whose default reduction is the mean over the rows. */

/* The rank-0 reduction 'op' of value v into out. */
static tg_status reduce_all(tg_onnx_graph *g, const char *op, const tg_tensor *out, const char *v)
{
    tg_onnx_node *n = tg__onnx_op(g, op, tg_onnx_value(g, out), 1, v);
    tg_onnx_set_batch_axis(g, out, -1);
    return tg_onnx_attr_int(n, "keepdims", 0);
}

static const char *onnx_diff(tg_onnx_graph *g, tg_tensor *const *in)
{
    return tg__onnx_out(
        tg__onnx_op(g, "Sub", NULL, 2, tg_onnx_value(g, in[0]), tg_onnx_value(g, in[1])));
}

/* frobenius_loss: ReduceSumSquare(p − t); mse_loss: ReduceMean((p − t)²). */
static TG__ONNX_HOOK(sqerr_onnx)
{
    (void)n_in;
    const char *d = onnx_diff(g, in);
    if (*(const double *)ctx == 1) return reduce_all(g, "ReduceSumSquare", out, d);
    return reduce_all(g, "ReduceMean", out, tg__onnx_out(tg__onnx_op(g, "Mul", NULL, 2, d, d)));
}

/* −mean over rows of Σ_c t log_softmax(z). */
static TG__ONNX_HOOK(ce_onnx)
{
    (void)n_in, (void)ctx;
    tg_onnx_node *ls = tg__onnx_op(g, "LogSoftmax", NULL, 1, tg_onnx_value(g, in[0]));
    tg_onnx_attr_int(ls, "axis", 1);
    const char *tls = tg__onnx_out(
        tg__onnx_op(g, "Mul", NULL, 2, tg_onnx_value(g, in[1]), tg__onnx_out(ls)));
    const char *axis1 = tg_onnx_ints(g, (const int64_t[]){1}, 1);
    tg_onnx_node *rows = tg__onnx_op(g, "ReduceSum", NULL, 2, tls, axis1);
    tg_onnx_attr_int(rows, "keepdims", 0);
    tg_onnx_node *mean = tg__onnx_op(g, "ReduceMean", NULL, 1, tg__onnx_out(rows));
    tg_onnx_attr_int(mean, "keepdims", 0);
    tg__onnx_op(g, "Neg", tg_onnx_value(g, out), 1, tg__onnx_out(mean));
    tg_onnx_set_batch_axis(g, out, -1);
    return tg_onnx_status(g);
}

static TG__ONNX_HOOK(xent_onnx)
{
    (void)ctx;
    tg_onnx_set_batch_axis(g, out, -1);
    return tg__onnx_same(g, "SoftmaxCrossEntropyLoss", out, in, n_in);
}

/* mean of relu(x) − x t + softplus(−|x|). */
static TG__ONNX_HOOK(bce_onnx)
{
    (void)n_in, (void)ctx;
    const char *x = tg_onnx_value(g, in[0]), *t = tg_onnx_value(g, in[1]);
    const char *relu = tg__onnx_out(tg__onnx_op(g, "Relu", NULL, 1, x));
    const char *xt = tg__onnx_out(tg__onnx_op(g, "Mul", NULL, 2, x, t));
    const char *nabs = tg__onnx_out(
        tg__onnx_op(g, "Neg", NULL, 1, tg__onnx_out(tg__onnx_op(g, "Abs", NULL, 1, x))));
    const char *sp = tg__onnx_out(tg__onnx_op(g, "Softplus", NULL, 1, nabs));
    const char *sum = tg__onnx_out(
        tg__onnx_op(g, "Add", NULL, 2, tg__onnx_out(tg__onnx_op(g, "Sub", NULL, 2, relu, xt)), sp));
    return reduce_all(g, "ReduceMean", out, sum);
}

static TG__ONNX_HOOK(l1_onnx)
{
    (void)n_in, (void)ctx;
    const char *d = onnx_diff(g, in);
    return reduce_all(g, "ReduceMean", out, tg__onnx_out(tg__onnx_op(g, "Abs", NULL, 1, d)));
}

/* mean of |d| < δ ? d²/2 : δ (|d| − δ/2), d = p − t. */
static TG__ONNX_HOOK(huber_onnx)
{
    (void)n_in;
    double delta = *(const double *)ctx;
    tg_dtype dt = out->dtype;
    const char *d = onnx_diff(g, in);
    const char *a = tg__onnx_out(tg__onnx_op(g, "Abs", NULL, 1, d));
    const char *c_delta = tg_onnx_scalar(g, dt, delta), *c_half = tg_onnx_scalar(g, dt, 0.5);
    const char *c_hd = tg_onnx_scalar(g, dt, 0.5 * delta);
    const char *small = tg__onnx_out(tg__onnx_op(g, "Less", NULL, 2, a, c_delta));
    const char *quad = tg__onnx_out(tg__onnx_op(
        g, "Mul", NULL, 2, c_half, tg__onnx_out(tg__onnx_op(g, "Mul", NULL, 2, d, d))));
    const char *lin = tg__onnx_out(tg__onnx_op(
        g, "Mul", NULL, 2, c_delta, tg__onnx_out(tg__onnx_op(g, "Sub", NULL, 2, a, c_hd))));
    return reduce_all(g, "ReduceMean", out,
                      tg__onnx_out(tg__onnx_op(g, "Where", NULL, 3, small, quad, lin)));
}
