/*
 * Normalisation and dropout: layer_norm, batch_norm and dropout.
 *
 * Each forward keeps what its VJP needs in arena buffers made when the op is
 * recorded (the mean and rstd = 1/sqrt(var + eps) of every row or channel,
 * dropout's mask), so replay allocates nothing and a VJP always reads the
 * values of the latest forward. Two of these ops act beyond their output, once
 * per forward (at recording and at every replay): batch_norm in training mode
 * updates the caller's running statistics, and dropout draws its mask from the
 * caller's rng. Sums run in double for both dtypes, and so do the closed-form
 * VJPs, so F32 is rounded once per element.
 *
 * gamma and beta are optional, so the position of each input depends on the
 * call: ctx records it (0 for an absent one, as input 0 is always x), and one
 * tg_op_def per combination carries the matching rules text.
 * To add an op: forward and vjp side by side, a tg_op_def, a constructor.
 */
#include "internal.h"

#include <math.h>
#include <string.h>

/* The ONNX forms of the ops, at the end of the file. */
static TG__ONNX_HOOK(layer_norm_onnx);
static TG__ONNX_HOOK(batch_norm_onnx);
static TG__ONNX_HOOK(dropout_onnx);

/* x's dtype must be float; the shape checks and messages below assume it. */
static bool float_x(tg_tape *tp, const char *op, const tg_tensor *x)
{
    if (tg__dt(x->dtype)->is_float) return true;
    char sx[TG__SHAPE_STR_MAX];
    tg__fail(tp, TG_ERR_DTYPE, "%s: x %s is %s; it must be f32 or f64", op,
             tg__shape_str(x, sx, sizeof sx), tg__dt(x->dtype)->name);
    return false;
}

/* A per-feature operand (gamma, beta, a running statistic) must be [n] in x's dtype. */
static bool check_vec(tg_tape *tp, const char *op, const char *what, const tg_tensor *t, int64_t n,
                      const tg_tensor *x)
{
    char st[TG__SHAPE_STR_MAX], sx[TG__SHAPE_STR_MAX];
    tg__shape_str(t, st, sizeof st);
    tg__shape_str(x, sx, sizeof sx);
    if (t->rank != 1 || t->shape[0] != n) {
        tg__fail(tp, TG_ERR_SHAPE, "%s: %s %s must be [%lld] for x %s", op, what, st, (long long)n,
                 sx);
        return false;
    }
    if (t->dtype != x->dtype) {
        tg__fail(tp, TG_ERR_DTYPE, "%s: %s %s %s and x %s %s differ in dtype", op, what,
                 tg__dt(t->dtype)->name, st, tg__dt(x->dtype)->name, sx);
        return false;
    }
    return true;
}

/* eps is added to a variance before its square root: 0 is allowed (torch allows it, and
 * a constant row then gives NaN as there), a negative or non-finite eps is refused. */
static bool check_eps(tg_tape *tp, const char *op, double eps)
{
    if (isfinite(eps) && eps >= 0) return true;
    tg__fail(tp, TG_ERR_ARG, "%s: eps must be finite and >= 0, got %g", op, eps);
    return false;
}

/* Two arrays of n doubles in the arena, for the per-row or per-channel statistics. */
static bool stat_buffers(tg_tape *tp, const char *op, int64_t n, double **a, double **b)
{
    *a = tg__arena_alloc(&tp->arena, (size_t)n * sizeof **a);
    *b = *a ? tg__arena_alloc(&tp->arena, (size_t)n * sizeof **b) : NULL;
    if (*b) return true;
    tg__fail(tp, TG_ERR_NOMEM, "%s: out of memory for %lld statistics", op, (long long)n);
    return false;
}

/* ====== layer_norm over the last axis, per row r of D elements:
 *   x̂ = (x - mean) rstd,  rstd = 1 / sqrt(var + eps) (biased var),  y = x̂ ⊙ gamma + beta
 *   dx += rstd (g - mean(g) - x̂ ⊙ mean(g ⊙ x̂)),  g = dG ⊙ gamma (dG without gamma)
 *   dgamma += Σ_rows dG ⊙ x̂,  dbeta += Σ_rows dG ======
 * ctx holds the extents, eps, the inputs' positions, the rows' mean and rstd
 * (written by every forward) and D double accumulators for dgamma and dbeta. */

typedef struct ln_ctx {
    int64_t rows, d;
    double eps;
    int gamma, beta;       /* input positions; 0 when absent */
    double *mean, *rstd;   /* per row */
    double *acc_g, *acc_b; /* per feature, VJP scratch */
} ln_ctx;

#define LN_FWD(T)                                                                                  \
    do {                                                                                           \
        const T *xs = in[0]->data;                                                                 \
        const T *gm = c->gamma ? in[c->gamma]->data : NULL;                                        \
        const T *bt = c->beta ? in[c->beta]->data : NULL;                                          \
        T *ys = out->data;                                                                         \
        for (int64_t r = 0; r < c->rows; r++) {                                                    \
            const T *x = xs + r * d;                                                               \
            T *y = ys + r * d;                                                                     \
            double mu = 0, var = 0;                                                                \
            for (int64_t j = 0; j < d; j++) mu += (double)x[j];                                    \
            mu /= (double)d;                                                                       \
            for (int64_t j = 0; j < d; j++) var += ((double)x[j] - mu) * ((double)x[j] - mu);      \
            double rs = 1.0 / sqrt(var / (double)d + c->eps);                                      \
            c->mean[r] = mu, c->rstd[r] = rs;                                                      \
            for (int64_t j = 0; j < d; j++)                                                        \
                y[j] = (T)(((double)x[j] - mu) * rs * (gm ? (double)gm[j] : 1.0) +                 \
                           (bt ? (double)bt[j] : 0.0));                                            \
        }                                                                                          \
    } while (0)

static tg_status layer_norm_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in;
    ln_ctx *c = ctx;
    const int64_t d = c->d;
    if (out->numel == 0) return TG_OK; /* no row to normalise, and D may be huge */
    TG__FLOAT_SWITCH(out->dtype, LN_FWD, TG_ERR_DTYPE);
    return TG_OK;
}

/* Per row: s1 = mean(g), s2 = mean(g ⊙ x̂), then dx = rstd (g - s1 - x̂ s2). */
#define LN_VJP(T)                                                                                  \
    do {                                                                                           \
        const T *xs = in[0]->data, *gs = gout->data;                                               \
        const T *gm = c->gamma ? in[c->gamma]->data : NULL;                                        \
        T *dxs = gin[0] ? gin[0]->data : NULL;                                                     \
        T *dgm = c->gamma && gin[c->gamma] ? gin[c->gamma]->data : NULL;                           \
        T *dbt = c->beta && gin[c->beta] ? gin[c->beta]->data : NULL;                              \
        for (int64_t j = 0; j < d; j++) c->acc_g[j] = c->acc_b[j] = 0;                             \
        for (int64_t r = 0; r < c->rows; r++) {                                                    \
            const T *x = xs + r * d, *dy = gs + r * d;                                             \
            const double mu = c->mean[r], rs = c->rstd[r];                                         \
            double s1 = 0, s2 = 0;                                                                 \
            for (int64_t j = 0; j < d; j++) {                                                      \
                double h = ((double)x[j] - mu) * rs, g = (double)dy[j];                            \
                c->acc_g[j] += g * h;                                                              \
                c->acc_b[j] += g;                                                                  \
                g *= gm ? (double)gm[j] : 1.0;                                                     \
                s1 += g, s2 += g * h;                                                              \
            }                                                                                      \
            if (!dxs) continue;                                                                    \
            s1 /= (double)d, s2 /= (double)d;                                                      \
            T *dx = dxs + r * d;                                                                   \
            for (int64_t j = 0; j < d; j++) {                                                      \
                double h = ((double)x[j] - mu) * rs;                                               \
                double g = (double)dy[j] * (gm ? (double)gm[j] : 1.0);                             \
                dx[j] += (T)(rs * (g - s1 - h * s2));                                              \
            }                                                                                      \
        }                                                                                          \
        for (int64_t j = 0; dgm && j < d; j++) dgm[j] += (T)c->acc_g[j];                           \
        for (int64_t j = 0; dbt && j < d; j++) dbt[j] += (T)c->acc_b[j];                           \
    } while (0)

static tg_status layer_norm_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                                tg_tensor **gin, int n_in, void *ctx)
{
    (void)n_in;
    ln_ctx *c = ctx;
    const int64_t d = c->d;
    /* Nothing flows back from no element: dgamma and dbeta get no contribution. */
    if (out->numel == 0) return TG_OK;
    TG__FLOAT_SWITCH(gout->dtype, LN_VJP, TG_ERR_DTYPE);
    return TG_OK;
}

/* The recorded VJP recomputes the statistics with ops, so that they are
 * differentiated too: x̂ = (x − mean x) / √(mean (x − mean x)² + eps) along the
 * last axis, then the three formulas above. */
static tg_status layer_norm_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out,
                                      tg_tensor *const *in, const bool *need, tg_tensor **gin,
                                      int n_in, void *ctx)
{
    (void)n_in;
    const ln_ctx *c = ctx;
    tg_tensor *x = in[0], *gamma = c->gamma ? in[c->gamma] : NULL;
    bool want_gamma = c->gamma && need[c->gamma];
    if (out->numel == 0) return tg_tape_status(tp); /* nothing flows back */
    if (c->beta && need[c->beta]) gin[c->beta] = tg__sum_to(tp, dy, in[c->beta]);
    if (!need[0] && !want_gamma) return tg_tape_status(tp);
    int ax = x->rank - 1;
    tg_tensor *xc = tg_sub(tp, x, tg_mean_axis(tp, x, ax, true));
    tg_tensor *sd =
        tg_sqrt(tp, tg_add_scalar(tp, tg_mean_axis(tp, tg_square(tp, xc), ax, true), c->eps));
    tg_tensor *rstd = sd ? tg_div(tp, tg_full_like(tp, sd, 1.0), sd) : NULL;
    tg_tensor *xhat = tg_mul(tp, xc, rstd);
    if (want_gamma) gin[c->gamma] = tg__sum_to(tp, tg_mul(tp, dy, xhat), gamma);
    if (need[0]) {
        tg_tensor *g = gamma ? tg_mul(tp, dy, gamma) : dy;
        tg_tensor *s1 = tg_mean_axis(tp, g, ax, true);
        tg_tensor *s2 = tg_mean_axis(tp, tg_mul(tp, g, xhat), ax, true);
        gin[0] = tg_mul(tp, rstd, tg_sub(tp, tg_sub(tp, g, s1), tg_mul(tp, xhat, s2)));
    }
    return tg_tape_status(tp);
}

#define LN_RULE_X(G)                                                                               \
    "rstd (g − mean_row g − x̂ ⊙ mean_row(g ⊙ x̂)), g = " G ", x̂ = ({0} − mean_row {0}) rstd"
#define LN_RULE_GAMMA "Σ_rows {dy:s} ⊙ x̂"
#define LN_RULE_BETA  "Σ_rows {dy:s}"

#define LN_DEF(...)                                                                                \
    {.name = "layer_norm", .forward = layer_norm_forward, .vjp = layer_norm_vjp,                   \
     .vjp_graph = layer_norm_vjp_graph,                                                            \
     .rules = (const char *const[]){__VA_ARGS__, NULL},                                            \
     .onnx = layer_norm_onnx}

/* Indexed by (gamma given) | (beta given) << 1; gamma is input 1 when given. */
static const tg_op_def layer_norm_defs[4] = {
    LN_DEF(LN_RULE_X("{dy}")),
    LN_DEF(LN_RULE_X("{dy} ⊙ {1}"), LN_RULE_GAMMA),
    LN_DEF(LN_RULE_X("{dy}"), LN_RULE_BETA),
    LN_DEF(LN_RULE_X("{dy} ⊙ {1}"), LN_RULE_GAMMA, LN_RULE_BETA),
};

tg_tensor *tg_layer_norm(tg_tape *tp, tg_tensor *x, tg_tensor *gamma, tg_tensor *beta, double eps)
{
    const char *op = "layer_norm";
    if (!tg__guard(tp, op, 1, &x) || !float_x(tp, op, x)) return NULL;
    if (x->rank < 1) {
        tg__fail(tp, TG_ERR_SHAPE, "%s: x must have rank >= 1, got []", op);
        return NULL;
    }
    int64_t d = x->shape[x->rank - 1];
    if ((gamma && !check_vec(tp, op, "gamma", gamma, d, x)) ||
        (beta && !check_vec(tp, op, "beta", beta, d, x)) || !check_eps(tp, op, eps))
        return NULL;

    /* An empty x may have a huge other dimension: the rows are only counted
     * when there are elements, and then their number cannot overflow. */
    ln_ctx c = {.rows = x->numel ? x->numel / d : 0, .d = d, .eps = eps};
    tg_tensor *in[3] = {x};
    int n = 1;
    if (gamma) c.gamma = n, in[n++] = gamma;
    if (beta) c.beta = n, in[n++] = beta;
    ln_ctx *ctx = tg__tape_copy(tp, &c, sizeof c);
    if (!ctx || !stat_buffers(tp, op, c.rows, &ctx->mean, &ctx->rstd) ||
        !stat_buffers(tp, op, x->numel ? d : 0, &ctx->acc_g, &ctx->acc_b))
        return NULL;
    const tg_op_def *def = &layer_norm_defs[(gamma != NULL) | (beta != NULL) << 1];
    return tg_custom(tp, def, in, n, x->rank, x->shape, ctx);
}

/* ====== batch_norm over every axis but the channel axis 1: x [N,C,S...], per channel c
 * over its M = N S elements (S the product of the dims after C, 1 for x [N,C]):
 *   training: x̂ = (x - mean_c) rstd_c with the batch's mean and biased var, and the running
 *     statistics updated: rm = (1 - mom) rm + mom mean, rv = (1 - mom) rv + mom var M/(M-1);
 *     dx += gamma_c rstd_c (dG - mean_c dG - x̂ mean_c(dG ⊙ x̂))
 *   eval: x̂ = (x - rm_c) rstd_c, rstd_c = 1 / sqrt(rv_c + eps);  dx += dG gamma_c rstd_c
 *   both: y = gamma_c x̂ + beta_c;  dgamma_c += Σ dG ⊙ x̂,  dbeta_c += Σ dG ======
 * ctx holds the extents, the options, the inputs' positions and each channel's
 * mean and rstd as the latest forward used them (the eval VJP must not see a
 * running statistic that another tape has updated since). */

typedef struct bn_ctx {
    int64_t n, c, s;
    double momentum, eps;
    bool training;
    int gamma, beta, rmean, rvar; /* input positions; 0 when absent */
    double *mean, *rstd;          /* per channel */
} bn_ctx;

/* Element (i, ch, k) of x [N,C,S] is at (i C + ch) S + k; each loop visits one channel. */
#define BN_EACH(STMT)                                                                              \
    for (int64_t i = 0; i < c->n; i++)                                                             \
        for (int64_t k = 0, e = (i * c->c + ch) * c->s; k < c->s; k++, e++) STMT

#define BN_FWD(T)                                                                                  \
    do {                                                                                           \
        const T *x = in[0]->data;                                                                  \
        const T *gm = c->gamma ? in[c->gamma]->data : NULL;                                        \
        const T *bt = c->beta ? in[c->beta]->data : NULL;                                          \
        T *rm = c->rmean ? in[c->rmean]->data : NULL;                                              \
        T *rv = c->rvar ? in[c->rvar]->data : NULL;                                                \
        T *y = out->data;                                                                          \
        const double m = (double)(c->n * c->s), mom = c->momentum;                                 \
        for (int64_t ch = 0; ch < c->c; ch++) {                                                    \
            double mu, var;                                                                        \
            if (c->training) {                                                                     \
                double sum = 0, ss = 0; /* Σ x and Σ (x - mean)² */                                \
                BN_EACH(sum += (double)x[e]);                                                      \
                mu = sum / m;                                                                      \
                BN_EACH(ss += ((double)x[e] - mu) * ((double)x[e] - mu));                          \
                var = ss / m;                                                                      \
                if (rm) rm[ch] = (T)((1 - mom) * (double)rm[ch] + mom * mu);                       \
                if (rv) rv[ch] = (T)((1 - mom) * (double)rv[ch] + mom * (ss / (m - 1)));           \
            } else {                                                                               \
                mu = (double)rm[ch], var = (double)rv[ch];                                         \
            }                                                                                      \
            const double rs = 1.0 / sqrt(var + c->eps);                                            \
            const double g = gm ? (double)gm[ch] : 1.0, b = bt ? (double)bt[ch] : 0.0;             \
            c->mean[ch] = mu, c->rstd[ch] = rs;                                                    \
            BN_EACH(y[e] = (T)(((double)x[e] - mu) * rs * g + b));                                 \
        }                                                                                          \
    } while (0)

static tg_status batch_norm_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in;
    bn_ctx *c = ctx;
    /* No element, nothing to normalise: the running statistics stay as they
     * are, as in PyTorch (a batch of 0 has no mean), and C may be huge. */
    if (out->numel == 0) return TG_OK;
    TG__FLOAT_SWITCH(out->dtype, BN_FWD, TG_ERR_DTYPE);
    return TG_OK;
}

/* Per channel: s1 = Σ dG and s2 = Σ dG ⊙ x̂ give dbeta and dgamma, and in
 * training the means s1 / M and s2 / M in dx. */
#define BN_VJP(T)                                                                                  \
    do {                                                                                           \
        const T *x = in[0]->data, *dy = gout->data;                                                \
        const T *gm = c->gamma ? in[c->gamma]->data : NULL;                                        \
        T *dx = gin[0] ? gin[0]->data : NULL;                                                      \
        T *dgm = c->gamma && gin[c->gamma] ? gin[c->gamma]->data : NULL;                           \
        T *dbt = c->beta && gin[c->beta] ? gin[c->beta]->data : NULL;                              \
        const double m = (double)(c->n * c->s);                                                    \
        for (int64_t ch = 0; ch < c->c; ch++) {                                                    \
            const double mu = c->mean[ch], rs = c->rstd[ch], g = gm ? (double)gm[ch] : 1.0;        \
            double s1 = 0, s2 = 0;                                                                 \
            BN_EACH({                                                                              \
                s1 += (double)dy[e];                                                               \
                s2 += (double)dy[e] * ((double)x[e] - mu) * rs;                                    \
            });                                                                                    \
            if (dgm) dgm[ch] += (T)s2;                                                             \
            if (dbt) dbt[ch] += (T)s1;                                                             \
            if (!dx) continue;                                                                     \
            if (c->training) {                                                                     \
                s1 /= m, s2 /= m;                                                                  \
                BN_EACH(dx[e] += (T)(g * rs *                                                      \
                                     ((double)dy[e] - s1 - ((double)x[e] - mu) * rs * s2)));       \
            } else {                                                                               \
                BN_EACH(dx[e] += (T)((double)dy[e] * g * rs));                                     \
            }                                                                                      \
        }                                                                                          \
    } while (0)

static tg_status batch_norm_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                                tg_tensor **gin, int n_in, void *ctx)
{
    (void)n_in;
    const bn_ctx *c = ctx;
    if (out->numel == 0) return TG_OK;
    TG__FLOAT_SWITCH(gout->dtype, BN_VJP, TG_ERR_DTYPE);
    return TG_OK;
}

/* ====== batch_norm's recorded VJP ======
 * Per-channel quantities are tensors of shape [1,C,1,...] that broadcast
 * against x. In training mode the batch statistics are recomputed with ops,
 * so that they are differentiated; in eval mode the mean and rstd the latest
 * forward used are constants (saved_mean, saved_rstd: ops that read them at
 * replay), and x̂ is affine in x. */

/* The sum over every axis but the channel axis 1, kept: [1,C,1,...]. */
static tg_tensor *chan_sum(tg_tape *tp, tg_tensor *t)
{
    for (int a = t ? t->rank - 1 : -1; a >= 0 && t; a--)
        if (a != 1) t = tg_sum_axis(tp, t, a, true);
    return t;
}

static tg_tensor *chan_mean(tg_tape *tp, tg_tensor *t, const bn_ctx *c)
{
    return tg_scale(tp, chan_sum(tp, t), 1.0 / (double)(c->n * c->s));
}

/* [C] as [1,C,1,...] of x's rank, and back. */
static tg_tensor *chan_shaped(tg_tape *tp, tg_tensor *v, int rank)
{
    int64_t shape[TG_MAX_RANK] = {1, v ? v->shape[0] : 0, 1, 1};
    return tg_reshape(tp, v, rank, shape);
}

static tg_tensor *chan_vec(tg_tape *tp, tg_tensor *t, const bn_ctx *c)
{
    return tg_reshape(tp, t, 1, (int64_t[]){c->c});
}

/* Writes the saved per-channel mean or rstd into out [1,C,1,...]. */
#define BN_SAVED(T)                                                                                \
    do {                                                                                           \
        T *o = out->data;                                                                          \
        for (int64_t ch = 0; ch < out->numel; ch++) o[ch] = (T)v[ch];                              \
    } while (0)

static tg_status saved_mean_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)in, (void)n_in;
    const double *v = ((const bn_ctx *)ctx)->mean;
    TG__FLOAT_SWITCH(out->dtype, BN_SAVED, TG_ERR_DTYPE);
    return TG_OK;
}

static tg_status saved_rstd_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)in, (void)n_in;
    const double *v = ((const bn_ctx *)ctx)->rstd;
    TG__FLOAT_SWITCH(out->dtype, BN_SAVED, TG_ERR_DTYPE);
    return TG_OK;
}

/* Constants: no VJP. Their input is the running statistic, which they do not read. */
static const tg_op_def saved_mean_def = {.name = "saved_mean", .forward = saved_mean_forward};
static const tg_op_def saved_rstd_def = {.name = "saved_rstd", .forward = saved_rstd_forward};

static tg_tensor *saved_stat(tg_tape *tp, const tg_op_def *def, tg_tensor *stat, int rank,
                             bn_ctx *c)
{
    int64_t shape[TG_MAX_RANK] = {1, c->c, 1, 1};
    return tg_custom(tp, def, &stat, 1, rank, shape, c);
}

static tg_status batch_norm_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out,
                                      tg_tensor *const *in, const bool *need, tg_tensor **gin,
                                      int n_in, void *ctx)
{
    (void)n_in;
    bn_ctx *c = ctx;
    tg_tensor *x = in[0], *gamma = c->gamma ? in[c->gamma] : NULL;
    bool want_gamma = c->gamma && need[c->gamma];
    int rank = x->rank;
    if (out->numel == 0) return tg_tape_status(tp); /* nothing flows back */
    if (c->beta && need[c->beta]) gin[c->beta] = chan_vec(tp, chan_sum(tp, dy), c);
    if (!need[0] && !want_gamma) return tg_tape_status(tp);
    tg_tensor *gm = gamma ? chan_shaped(tp, gamma, rank) : NULL, *rstd, *xhat;
    if (c->training) {
        tg_tensor *xc = tg_sub(tp, x, chan_mean(tp, x, c));
        tg_tensor *sd = tg_sqrt(tp, tg_add_scalar(tp, chan_mean(tp, tg_square(tp, xc), c), c->eps));
        rstd = sd ? tg_div(tp, tg_full_like(tp, sd, 1.0), sd) : NULL;
        xhat = tg_mul(tp, xc, rstd);
    } else {
        rstd = saved_stat(tp, &saved_rstd_def, in[c->rvar], rank, c);
        xhat = tg_mul(tp, tg_sub(tp, x, saved_stat(tp, &saved_mean_def, in[c->rmean], rank, c)),
                      rstd);
    }
    if (want_gamma) gin[c->gamma] = chan_vec(tp, chan_sum(tp, tg_mul(tp, dy, xhat)), c);
    if (need[0]) {
        tg_tensor *g = gm ? tg_mul(tp, dy, gm) : dy;
        if (c->training) {
            tg_tensor *s1 = chan_mean(tp, g, c), *s2 = chan_mean(tp, tg_mul(tp, g, xhat), c);
            gin[0] = tg_mul(tp, rstd, tg_sub(tp, tg_sub(tp, g, s1), tg_mul(tp, xhat, s2)));
        } else {
            gin[0] = tg_mul(tp, g, rstd);
        }
    }
    return tg_tape_status(tp);
}

#define BN_RULE_TRAIN(G)                                                                           \
    "rstd (g − mean_ch g − x̂ ⊙ mean_ch(g ⊙ x̂)), g = " G ", x̂ = ({0} − mean_ch {0}) rstd"
#define BN_RULE_EVAL(G) G " ⊙ rstd, rstd = 1/√(running_var + eps) per channel"
#define BN_RULE_GAMMA   "Σ_ch {dy:s} ⊙ x̂"
#define BN_RULE_BETA    "Σ_ch {dy:s}"
#define BN_RULE_STAT    "0 (running statistics are not differentiated)"
/* The four combinations of gamma and beta for one mode, in the order of
 * batch_norm_defs. The running statistics come after gamma and beta, one or
 * both, and get no gradient, which the two last rules say. */
#define BN_DEF(...)                                                                                \
    {.name = "batch_norm", .forward = batch_norm_forward, .vjp = batch_norm_vjp,                   \
     .vjp_graph = batch_norm_vjp_graph,                                                            \
     .rules = (const char *const[]){__VA_ARGS__, BN_RULE_STAT, BN_RULE_STAT, NULL},                \
     .onnx = batch_norm_onnx}
#define BN_DEFS(RULE_X)                                                                            \
    BN_DEF(RULE_X("{dy}")), BN_DEF(RULE_X("{dy} ⊙ {1}"), BN_RULE_GAMMA),                           \
        BN_DEF(RULE_X("{dy}"), BN_RULE_BETA),                                                      \
        BN_DEF(RULE_X("{dy} ⊙ {1}"), BN_RULE_GAMMA, BN_RULE_BETA)

/* Indexed by [training][(gamma given) | (beta given) << 1]. */
static const tg_op_def batch_norm_defs[2][4] = {{BN_DEFS(BN_RULE_EVAL)},
                                                {BN_DEFS(BN_RULE_TRAIN)}};

/* A running statistic is written by the forward, so it must be the caller's
 * leaf, never differentiated and not shared with gamma, beta or the other one. */
static bool check_running(tg_tape *tp, const char *what, const tg_tensor *t,
                          tg_tensor *const *others, const char *const *other_names)
{
    const char *op = "batch_norm";
    char st[TG__SHAPE_STR_MAX];
    tg__shape_str(t, st, sizeof st);
    if (t->tape_owned || t->is_grad) {
        tg__fail(tp, TG_ERR_ARG, "%s: %s %s is an op's result or a gradient; it must be the "
                 "caller's leaf", op, what, st);
        return false;
    }
    if (t->requires_grad) {
        tg__fail(tp, TG_ERR_ARG, "%s: %s %s requires grad; running statistics are updated in "
                 "place and never differentiated", op, what, st);
        return false;
    }
    for (int i = 0; other_names[i]; i++)
        if (others[i] == t) {
            tg__fail(tp, TG_ERR_ARG, "%s: %s %s is also passed as %s; it is written, so it must "
                     "be a tensor of its own", op, what, st, other_names[i]);
            return false;
        }
    return true;
}

tg_tensor *tg_batch_norm(tg_tape *tp, tg_tensor *x, tg_tensor *gamma, tg_tensor *beta,
                         tg_tensor *running_mean, tg_tensor *running_var, bool training,
                         double momentum, double eps)
{
    const char *op = "batch_norm";
    char sx[TG__SHAPE_STR_MAX];
    if (!tg__guard(tp, op, 1, &x) || !float_x(tp, op, x)) return NULL;
    tg__shape_str(x, sx, sizeof sx);
    if (x->rank < 2) {
        tg__fail(tp, TG_ERR_SHAPE, "%s: x must be [N,C], [N,C,L] or [N,C,H,W], got %s", op, sx);
        return NULL;
    }
    int64_t ch = x->shape[1];
    tg_tensor *vecs[4] = {gamma, beta, running_mean, running_var};
    static const char *const names[4] = {"gamma", "beta", "running_mean", "running_var"};
    for (int i = 0; i < 4; i++)
        if (vecs[i] && !check_vec(tp, op, names[i], vecs[i], ch, x)) return NULL;
    if (running_mean && !check_running(tp, "running_mean", running_mean,
                                       (tg_tensor *const[]){gamma, beta, running_var, NULL},
                                       (const char *const[]){"gamma", "beta", "running_var",
                                                             NULL}))
        return NULL;
    if (running_var &&
        !check_running(tp, "running_var", running_var, (tg_tensor *const[]){gamma, beta, NULL},
                       (const char *const[]){"gamma", "beta", NULL}))
        return NULL;
    if (!training && (!running_mean || !running_var)) {
        tg__fail(tp, TG_ERR_ARG, "%s: %s is NULL; eval mode normalises x %s with the running "
                 "statistics", op, running_mean ? "running_var" : "running_mean", sx);
        return NULL;
    }
    /* Each channel has M = N S values; counted only for an x with elements,
     * where the products cannot overflow. */
    int64_t s = x->numel ? x->numel / (x->shape[0] * ch) : 0, m = x->shape[0] * s;
    if (training && x->numel && m == 1) {
        /* The unbiased variance of one value is 0/0; PyTorch refuses it too. */
        tg__fail(tp, TG_ERR_SHAPE, "%s: training needs more than 1 value per channel, got x %s",
                 op, sx);
        return NULL;
    }
    if (!(momentum >= 0 && momentum <= 1)) {
        tg__fail(tp, TG_ERR_ARG, "%s: momentum must be in [0, 1], got %g", op, momentum);
        return NULL;
    }
    if (!check_eps(tp, op, eps)) return NULL;

    bn_ctx c = {.n = x->shape[0], .c = ch, .s = s, .momentum = momentum, .eps = eps,
                .training = training};
    tg_tensor *in[5] = {x};
    int n = 1;
    if (gamma) c.gamma = n, in[n++] = gamma;
    if (beta) c.beta = n, in[n++] = beta;
    if (running_mean) c.rmean = n, in[n++] = running_mean;
    if (running_var) c.rvar = n, in[n++] = running_var;
    bn_ctx *ctx = tg__tape_copy(tp, &c, sizeof c);
    if (!ctx || !stat_buffers(tp, op, x->numel ? ch : 0, &ctx->mean, &ctx->rstd)) return NULL;
    const tg_op_def *def = &batch_norm_defs[training][(gamma != NULL) | (beta != NULL) << 1];
    return tg_custom(tp, def, in, n, x->rank, x->shape, ctx);
}

/* ====== dropout: y = x ⊙ mask / (1 - p);  dx += dG ⊙ mask / (1 - p) ======
 * Each forward draws one uniform u per element from the caller's rng, in
 * element order, and keeps the element when u >= p; the mask (one byte per
 * element, in the arena) is what the VJP multiplies by. x is multiplied by 0
 * where dropped, so NaN and Inf give NaN there, as in PyTorch. p = 0 copies x
 * and draws nothing. p comes first in ctx, for the rules' {c}. */

typedef struct drop_ctx {
    double p;
    double scale; /* 1 / (1 - p) */
    tg_rng *rng;
    uint8_t *keep; /* NULL when p = 0 */
} drop_ctx;

#define DROP_FWD(T)                                                                                \
    do {                                                                                           \
        const T *x = in[0]->data, s = (T)c->scale;                                                 \
        T *y = out->data;                                                                          \
        for (int64_t k = 0; k < out->numel; k++) {                                                 \
            c->keep[k] = tg_rng_uniform(c->rng) >= c->p;                                           \
            y[k] = x[k] * (c->keep[k] ? s : (T)0);                                                 \
        }                                                                                          \
    } while (0)

static tg_status dropout_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in;
    const drop_ctx *c = ctx;
    if (!c->keep) {
        memcpy(out->data, in[0]->data, (size_t)out->numel * tg__dtype_size(out->dtype));
        return TG_OK;
    }
    TG__FLOAT_SWITCH(out->dtype, DROP_FWD, TG_ERR_DTYPE);
    return TG_OK;
}

#define DROP_VJP(T)                                                                                \
    do {                                                                                           \
        const T *g = gout->data, s = (T)c->scale;                                                  \
        T *dx = gin[0]->data;                                                                      \
        for (int64_t k = 0; k < gout->numel; k++)                                                  \
            dx[k] += c->keep ? g[k] * (c->keep[k] ? s : (T)0) : g[k];                              \
    } while (0)

static tg_status dropout_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                             tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)in, (void)n_in;
    const drop_ctx *c = ctx;
    if (!gin[0]) return TG_OK;
    TG__FLOAT_SWITCH(gout->dtype, DROP_VJP, TG_ERR_DTYPE);
    return TG_OK;
}

/* The recorded VJP: dX = dropout_mask(dG), the product by the mask of the
 * latest forward (dropout's node runs before it at every replay), which
 * draws nothing. It is linear and its own transpose, so it is also its own
 * VJP. With p = 0 dropout is the identity and dX is dG. */
#define DROP_MASK(T)                                                                               \
    do {                                                                                           \
        const T *x = in[0]->data, s = (T)c->scale;                                                 \
        T *y = out->data;                                                                          \
        for (int64_t k = 0; k < out->numel; k++) y[k] = x[k] * (c->keep[k] ? s : (T)0);            \
    } while (0)

static tg_status dropout_mask_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in;
    const drop_ctx *c = ctx;
    TG__FLOAT_SWITCH(out->dtype, DROP_MASK, TG_ERR_DTYPE);
    return TG_OK;
}

static tg_status dropout_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out,
                                   tg_tensor *const *in, const bool *need, tg_tensor **gin,
                                   int n_in, void *ctx);

static const tg_op_def dropout_mask_def = {
    .name = "dropout_mask", .forward = dropout_mask_forward, .vjp = dropout_vjp,
    .vjp_graph = dropout_vjp_graph,
    .rules = (const char *const[]){"{dy} ⊙ mask / (1 − {c})", NULL}};

static tg_status dropout_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out,
                                   tg_tensor *const *in, const bool *need, tg_tensor **gin,
                                   int n_in, void *ctx)
{
    (void)in, (void)need, (void)n_in;
    const drop_ctx *c = ctx;
    gin[0] = c->keep ? tg_custom(tp, &dropout_mask_def, &dy, 1, out->rank, out->shape, ctx) : dy;
    return tg_tape_status(tp);
}

static const tg_op_def dropout_def = {
    .name = "dropout", .forward = dropout_forward, .vjp = dropout_vjp,
    .vjp_graph = dropout_vjp_graph,
    .rules = (const char *const[]){"{dy} ⊙ mask / (1 − {c})", NULL},
    .onnx = dropout_onnx};

tg_tensor *tg_dropout(tg_tape *tp, tg_tensor *x, double p, tg_rng *rng)
{
    const char *op = "dropout";
    if (!tg__guard(tp, op, 1, &x) || !float_x(tp, op, x)) return NULL;
    if (!(p >= 0 && p < 1)) {
        tg__fail(tp, TG_ERR_ARG, "%s: p must be in [0, 1), got %g", op, p);
        return NULL;
    }
    if (p > 0 && !rng) {
        tg__fail(tp, TG_ERR_ARG, "%s: rng is NULL; p = %g draws a mask from it", op, p);
        return NULL;
    }
    drop_ctx c = {.p = p, .scale = 1.0 / (1.0 - p), .rng = rng};
    drop_ctx *ctx = tg__tape_copy(tp, &c, sizeof c);
    if (!ctx) return NULL;
    if (p > 0 && !(ctx->keep = tg__arena_alloc(&tp->arena, (size_t)x->numel))) {
        tg__fail(tp, TG_ERR_NOMEM, "%s: out of memory for a mask of %lld elements", op,
                 (long long)x->numel);
        return NULL;
    }
    return tg_custom(tp, &dropout_def, &x, 1, x->rank, x->shape, ctx);
}

/* ====== ONNX forms ======
 * layer_norm is LayerNormalization over the last axis (opset 17), batch_norm
 * in eval mode BatchNormalization with the running statistics; an absent
 * gamma or beta becomes a vector of ones or zeros. Training-mode batch_norm
 * normalises with the batch's own statistics, written out from ReduceMean;
 * its update of the running statistics is a side effect of the tape's
 * forward with no place in an inference graph, so the exported graph leaves
 * them alone. dropout is Dropout with its ratio, which ONNX runs as the
 * identity outside training: the exported model is the one to deploy. */

/* A [n] vector of v in dtype dt, for a gamma or beta left out: the scalar
 * expanded. */
static const char *onnx_fill(tg_onnx_graph *g, tg_dtype dt, int64_t n, double v)
{
    return tg__onnx_out(
        tg__onnx_op(g, "Expand", NULL, 2, tg_onnx_scalar(g, dt, v), tg_onnx_ints(g, &n, 1)));
}

static TG__ONNX_HOOK(layer_norm_onnx)
{
    (void)n_in;
    const ln_ctx *c = ctx;
    const char *ins[3] = {tg_onnx_value(g, in[0]),
                          c->gamma ? tg_onnx_value(g, in[c->gamma])
                                   : onnx_fill(g, out->dtype, c->d, 1),
                          c->beta ? tg_onnx_value(g, in[c->beta]) : ""};
    const char *y = tg_onnx_value(g, out);
    tg_onnx_node *n = tg_onnx_node_add(g, "LayerNormalization", ins, c->beta ? 3 : 2, &y, 1);
    tg_onnx_attr_int(n, "axis", -1);
    return tg_onnx_attr_float(n, "epsilon", c->eps);
}

/* (x − mean) / √(var + eps) ⊙ gamma + beta with the batch's statistics over
 * every axis but 1, gamma and beta shaped [C, 1, ...] to broadcast. */
static tg_status batch_norm_train_onnx(tg_onnx_graph *g, const tg_tensor *out, const char *x,
                                       const char *gamma, const char *beta, const bn_ctx *c)
{
    int64_t axes[TG_MAX_RANK], per_channel[TG_MAX_RANK] = {c->c};
    int n_axes = 0;
    for (int d = 0; d < out->rank; d++)
        if (d != 1) axes[n_axes++] = d;
    for (int d = 2; d < out->rank; d++)
        per_channel[d - 1] = 1;
    const char *shape = tg_onnx_ints(g, per_channel, out->rank - 1);
    tg_onnx_node *mean = tg__onnx_op(g, "ReduceMean", NULL, 1, x);
    tg_onnx_attr_ints(mean, "axes", axes, n_axes);
    const char *d = tg__onnx_out(tg__onnx_op(g, "Sub", NULL, 2, x, tg__onnx_out(mean)));
    tg_onnx_node *var =
        tg__onnx_op(g, "ReduceMean", NULL, 1, tg__onnx_out(tg__onnx_op(g, "Mul", NULL, 2, d, d)));
    tg_onnx_attr_ints(var, "axes", axes, n_axes);
    const char *eps = tg_onnx_scalar(g, out->dtype, c->eps);
    const char *sd = tg__onnx_out(tg__onnx_op(
        g, "Sqrt", NULL, 1, tg__onnx_out(tg__onnx_op(g, "Add", NULL, 2, tg__onnx_out(var), eps))));
    const char *xhat = tg__onnx_out(tg__onnx_op(g, "Div", NULL, 2, d, sd));
    const char *gm = tg__onnx_out(tg__onnx_op(g, "Reshape", NULL, 2, gamma, shape));
    const char *bt = tg__onnx_out(tg__onnx_op(g, "Reshape", NULL, 2, beta, shape));
    tg__onnx_op(g, "Add", tg_onnx_value(g, out), 2,
                tg__onnx_out(tg__onnx_op(g, "Mul", NULL, 2, xhat, gm)), bt);
    return tg_onnx_status(g);
}

static TG__ONNX_HOOK(batch_norm_onnx)
{
    (void)n_in;
    const bn_ctx *c = ctx;
    tg_dtype dt = out->dtype;
    const char *x = tg_onnx_value(g, in[0]);
    const char *gamma = c->gamma ? tg_onnx_value(g, in[c->gamma]) : onnx_fill(g, dt, c->c, 1);
    const char *beta = c->beta ? tg_onnx_value(g, in[c->beta]) : onnx_fill(g, dt, c->c, 0);
    if (c->training) return batch_norm_train_onnx(g, out, x, gamma, beta, c);
    tg_onnx_node *n =
        tg__onnx_op(g, "BatchNormalization", tg_onnx_value(g, out), 5, x, gamma, beta,
                    tg_onnx_value(g, in[c->rmean]), tg_onnx_value(g, in[c->rvar]));
    return tg_onnx_attr_float(n, "epsilon", c->eps);
}

static TG__ONNX_HOOK(dropout_onnx)
{
    (void)n_in;
    const drop_ctx *c = ctx;
    const char *x = tg_onnx_value(g, in[0]), *y = tg_onnx_value(g, out);
    if (c->p == 0)
        tg__onnx_op(g, "Identity", y, 1, x);
    else
        tg__onnx_op(g, "Dropout", y, 2, x, tg_onnx_scalar(g, out->dtype, c->p));
    return tg_onnx_status(g);
}
