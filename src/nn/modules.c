/*
 * The layers of CNNs, RNNs and attention: linear, convolution, batch and
 * layer normalisation, LSTM and GRU cells, multi-head self-attention.
 *
 * Like tg_dense, none of them has a backward pass of its own. A layer is a
 * struct of parameter handles; its forward records ordinary ops (matmul,
 * slice, sigmoid, softmax, ...) and the sweep differentiates those. An LSTM
 * unrolled over 50 steps is 50 copies of the same dozen ops on the tape.
 *
 * Initialisation and parameter names follow PyTorch, so a state dict maps
 * name for name (the one difference: our linear weights are [in,out], the
 * transpose of torch's, because a layer computes x W).
 */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ====== Registration ====== */

/* Registers "<prefix>.<name>" into *out and fills it: U(-bound, bound) from
 * r when bound > 0, else the constant 'fill'. On failure the caller undoes
 * earlier registrations with undo(). */
static tg_status reg(tg_tensor **out, tg_params *ps, const char *prefix, const char *name,
                     tg_dtype dt, int rank, const int64_t *shape, double bound, double fill,
                     tg_rng *r, tg_error *err)
{
    char full[256];
    if ((size_t)snprintf(full, sizeof full, "%s.%s", prefix, name) >= sizeof full)
        return tg__set_error(err, TG_ERR_ARG, "%s: parameter name longer than %zu bytes", prefix,
                             sizeof full - 1);
    if (tg_params_get(ps, full))
        return tg__set_error(err, TG_ERR_ARG, "%s: the registry already has a parameter '%s'",
                             prefix, full);
    tg_tensor *t = *out = tg_params_add(ps, full, dt, rank, shape);
    if (!t)
        return tg__set_error(err, TG_ERR_NOMEM, "%s: out of memory registering '%s'", prefix, full);
    for (int64_t i = 0; i < t->numel; i++)
        tg__put(t, i, bound > 0 ? bound * (2.0 * tg_rng_uniform(r) - 1.0) : fill);
    return TG_OK;
}

/* The checks every _init shares: non-NULL registry, prefix and rng (when the
 * layer draws), and a float dtype. */
static tg_status init_args(const void *layer, const tg_params *ps, const char *prefix, tg_dtype dt,
                           bool needs_rng, const tg_rng *r, const char *what, tg_error *err)
{
    if (!layer || !ps || !prefix || !*prefix || (needs_rng && !r))
        return tg__set_error(err, TG_ERR_ARG, "%s: NULL layer, registry%s or empty prefix", what,
                             needs_rng ? ", rng" : "");
    if (!tg__dtype_valid(dt) || !tg__dt(dt)->is_float)
        return tg__set_error(err, TG_ERR_DTYPE, "%s: parameters must be f32 or f64", what);
    return TG_OK;
}

/* Undoes a partial registration and passes its status on. */
static tg_status undo(tg_params *ps, size_t n_before, tg_status s)
{
    tg__params_truncate(ps, n_before);
    return s;
}

/* Fails the tape for a layer given a NULL description. */
static tg_tensor *no_layer(tg_tape *tp, const char *what)
{
    if (tp && !tp->status) tg__fail(tp, TG_ERR_ARG, "%s: layer is NULL", what);
    return NULL;
}

/* ====== Linear ====== */

tg_status tg_linear_init(tg_linear *l, tg_params *ps, const char *prefix, int64_t in, int64_t out,
                         bool bias, tg_dtype dt, tg_rng *r, tg_error *err)
{
    tg_status s = init_args(l, ps, prefix, dt, true, r, "linear", err);
    if (s) return s;
    if (in < 1 || out < 1)
        return tg__set_error(err, TG_ERR_ARG, "linear: sizes %lld -> %lld must be >= 1",
                             (long long)in, (long long)out);
    size_t n0 = tg_params_count(ps);
    double a = 1.0 / sqrt((double)in);
    *l = (tg_linear){0};
    if ((s = reg(&l->weight, ps, prefix, "weight", dt, 2, (int64_t[]){in, out}, a, 0, r, err)) ||
        (bias && (s = reg(&l->bias, ps, prefix, "bias", dt, 1, &out, a, 0, r, err))))
        return undo(ps, n0, s);
    return TG_OK;
}

tg_tensor *tg_linear_forward(tg_tape *tp, const tg_linear *l, tg_tensor *x)
{
    if (!tg__guard(tp, "linear", 1, &x)) return NULL;
    if (!l || !l->weight) return no_layer(tp, "linear");
    /* The rank-2 case keeps the fused bias op of tg_dense; higher ranks go
     * through the batched matmul and a broadcast add over the last axis. */
    if (x->rank == 2) {
        tg_tensor *y = tg_matmul(tp, x, l->weight);
        return l->bias ? tg_add_bias(tp, y, l->bias) : y;
    }
    tg_tensor *y = tg_matmul(tp, x, l->weight);
    return l->bias ? tg_add(tp, y, l->bias) : y;
}

/* ====== Convolution ====== */

tg_status tg_conv_layer_init(tg_conv_layer *l, tg_params *ps, const char *prefix, int dims,
                             int64_t in_ch, int64_t out_ch, const int kernel[2],
                             const tg_conv_opts *opts, bool bias, tg_dtype dt, tg_rng *r,
                             tg_error *err)
{
    tg_status s = init_args(l, ps, prefix, dt, true, r, "conv_layer", err);
    if (s) return s;
    tg_conv_opts o = opts ? *opts : (tg_conv_opts){0};
    int groups = o.groups ? o.groups : 1;
    if ((dims != 1 && dims != 2) || !kernel || kernel[0] < 1 || (dims == 2 && kernel[1] < 1) ||
        in_ch < 1 || out_ch < 1 || groups < 1 || in_ch % groups || out_ch % groups)
        return tg__set_error(err, TG_ERR_ARG,
                             "conv_layer: needs dims 1 or 2, kernel sizes >= 1 and channels "
                             "%lld -> %lld that divide by groups %d",
                             (long long)in_ch, (long long)out_ch, groups);
    int64_t kh = kernel[0], kw = dims == 2 ? kernel[1] : 1;
    int64_t shape[4] = {out_ch, in_ch / groups, kh, kw};
    double a = 1.0 / sqrt((double)(in_ch / groups * kh * kw));
    size_t n0 = tg_params_count(ps);
    *l = (tg_conv_layer){.dims = dims, .opts = o};
    if ((s = reg(&l->weight, ps, prefix, "weight", dt, dims + 2, shape, a, 0, r, err)) ||
        (bias && (s = reg(&l->bias, ps, prefix, "bias", dt, 1, &out_ch, a, 0, r, err))))
        return undo(ps, n0, s);
    return TG_OK;
}

tg_tensor *tg_conv_layer_forward(tg_tape *tp, const tg_conv_layer *l, tg_tensor *x)
{
    if (!tg__guard(tp, "conv_layer", 1, &x)) return NULL;
    if (!l || !l->weight) return no_layer(tp, "conv_layer");
    return l->dims == 1 ? tg_conv1d(tp, x, l->weight, l->bias, &l->opts)
                        : tg_conv2d(tp, x, l->weight, l->bias, &l->opts);
}

/* ====== Batch and layer normalisation ====== */

tg_status tg_batch_norm_layer_init(tg_batch_norm_layer *l, tg_params *ps, const char *prefix,
                                   int64_t channels, tg_dtype dt, tg_error *err)
{
    tg_status s = init_args(l, ps, prefix, dt, false, NULL, "batch_norm_layer", err);
    if (s) return s;
    if (channels < 1)
        return tg__set_error(err, TG_ERR_ARG, "batch_norm_layer: %lld channels",
                             (long long)channels);
    size_t n0 = tg_params_count(ps);
    *l = (tg_batch_norm_layer){.momentum = 0.1, .eps = 1e-5};
    if ((s = reg(&l->weight, ps, prefix, "weight", dt, 1, &channels, 0, 1, NULL, err)) ||
        (s = reg(&l->bias, ps, prefix, "bias", dt, 1, &channels, 0, 0, NULL, err)) ||
        (s = reg(&l->running_mean, ps, prefix, "running_mean", dt, 1, &channels, 0, 0, NULL,
                 err)) ||
        (s = reg(&l->running_var, ps, prefix, "running_var", dt, 1, &channels, 0, 1, NULL, err)))
        return undo(ps, n0, s);
    tg_tensor_set_requires_grad(l->running_mean, false);
    tg_tensor_set_requires_grad(l->running_var, false);
    return TG_OK;
}

tg_tensor *tg_batch_norm_layer_forward(tg_tape *tp, const tg_batch_norm_layer *l, tg_tensor *x,
                                       bool training)
{
    if (!tg__guard(tp, "batch_norm_layer", 1, &x)) return NULL;
    if (!l || !l->weight) return no_layer(tp, "batch_norm_layer");
    return tg_batch_norm(tp, x, l->weight, l->bias, l->running_mean, l->running_var, training,
                         l->momentum, l->eps);
}

tg_status tg_layer_norm_layer_init(tg_layer_norm_layer *l, tg_params *ps, const char *prefix,
                                   int64_t dim, tg_dtype dt, tg_error *err)
{
    tg_status s = init_args(l, ps, prefix, dt, false, NULL, "layer_norm_layer", err);
    if (s) return s;
    if (dim < 1)
        return tg__set_error(err, TG_ERR_ARG, "layer_norm_layer: size %lld", (long long)dim);
    size_t n0 = tg_params_count(ps);
    *l = (tg_layer_norm_layer){.eps = 1e-5};
    if ((s = reg(&l->weight, ps, prefix, "weight", dt, 1, &dim, 0, 1, NULL, err)) ||
        (s = reg(&l->bias, ps, prefix, "bias", dt, 1, &dim, 0, 0, NULL, err)))
        return undo(ps, n0, s);
    return TG_OK;
}

tg_tensor *tg_layer_norm_layer_forward(tg_tape *tp, const tg_layer_norm_layer *l, tg_tensor *x)
{
    if (!tg__guard(tp, "layer_norm_layer", 1, &x)) return NULL;
    if (!l || !l->weight) return no_layer(tp, "layer_norm_layer");
    return tg_layer_norm(tp, x, l->weight, l->bias, l->eps);
}

/* ====== Recurrent cells ====== */

/* The four tensors of an LSTM or GRU cell with 'gates' gates, all
 * U(-1/sqrt(H), 1/sqrt(H)) as PyTorch draws them. */
static tg_status rnn_init(tg_tensor **w_ih, tg_tensor **w_hh, tg_tensor **b_ih, tg_tensor **b_hh,
                          tg_params *ps, const char *prefix, int64_t in, int64_t hidden, int gates,
                          tg_dtype dt, tg_rng *r, tg_error *err)
{
    const char *what = gates == 4 ? "lstm_cell" : "gru_cell";
    if (in < 1 || hidden < 1)
        return tg__set_error(err, TG_ERR_ARG, "%s: sizes %lld and %lld must be >= 1", what,
                             (long long)in, (long long)hidden);
    int64_t g = gates * hidden;
    double a = 1.0 / sqrt((double)hidden);
    size_t n0 = tg_params_count(ps);
    tg_status s;
    if ((s = reg(w_ih, ps, prefix, "weight_ih", dt, 2, (int64_t[]){in, g}, a, 0, r, err)) ||
        (s = reg(w_hh, ps, prefix, "weight_hh", dt, 2, (int64_t[]){hidden, g}, a, 0, r, err)) ||
        (s = reg(b_ih, ps, prefix, "bias_ih", dt, 1, &g, a, 0, r, err)) ||
        (s = reg(b_hh, ps, prefix, "bias_hh", dt, 1, &g, a, 0, r, err)))
        return undo(ps, n0, s);
    return TG_OK;
}

/* Gate k (of width h) of the stacked pre-activations. */
static tg_tensor *gate(tg_tape *tp, tg_tensor *z, int k, int64_t h)
{
    return tg_slice(tp, z, 1, k * h, (k + 1) * h, 1);
}

/* The checks both cells make on x [N,in] and a state [N,H] (NULL allowed). */
static bool rnn_shapes(tg_tape *tp, const char *what, const tg_tensor *w_ih, int64_t hidden,
                       const tg_tensor *x, const tg_tensor *h, const tg_tensor *c)
{
    char sx[TG__SHAPE_STR_MAX], sh[TG__SHAPE_STR_MAX];
    if (x->rank != 2 || x->shape[1] != w_ih->shape[0]) {
        tg__fail(tp, TG_ERR_SHAPE, "%s: input %s is not [N x %lld]", what,
                 tg__shape_str(x, sx, sizeof sx), (long long)w_ih->shape[0]);
        return false;
    }
    const tg_tensor *st[2] = {h, c};
    for (int i = 0; i < 2; i++)
        if (st[i] &&
            (st[i]->rank != 2 || st[i]->shape[0] != x->shape[0] || st[i]->shape[1] != hidden)) {
            tg__fail(tp, TG_ERR_SHAPE, "%s: state %s does not fit input %s and hidden size %lld",
                     what, tg__shape_str(st[i], sh, sizeof sh), tg__shape_str(x, sx, sizeof sx),
                     (long long)hidden);
            return false;
        }
    return true;
}

tg_status tg_lstm_cell_init(tg_lstm_cell *c, tg_params *ps, const char *prefix, int64_t in,
                            int64_t hidden, tg_dtype dt, tg_rng *r, tg_error *err)
{
    tg_status s = init_args(c, ps, prefix, dt, true, r, "lstm_cell", err);
    if (s) return s;
    *c = (tg_lstm_cell){.hidden = hidden};
    return rnn_init(&c->w_ih, &c->w_hh, &c->b_ih, &c->b_hh, ps, prefix, in, hidden, 4, dt, r, err);
}

tg_tensor *tg_lstm_cell_forward(tg_tape *tp, const tg_lstm_cell *cell, tg_tensor *x, tg_tensor *h,
                                tg_tensor *c, tg_tensor **c_out)
{
    if (c_out) *c_out = NULL;
    if (!tg__guard(tp, "lstm_cell", 1, &x)) return NULL;
    if (!cell || !cell->w_ih) return no_layer(tp, "lstm_cell");
    if (!c_out) {
        tg__fail(tp, TG_ERR_ARG, "lstm_cell: c_out is NULL");
        return NULL;
    }
    if ((h == NULL) != (c == NULL)) {
        tg__fail(tp, TG_ERR_ARG, "lstm_cell: h and c must both be given or both be NULL");
        return NULL;
    }
    if (!rnn_shapes(tp, "lstm_cell", cell->w_ih, cell->hidden, x, h, c)) return NULL;
    int64_t hs = cell->hidden;
    tg_tensor *z = tg_add_bias(tp, tg_matmul(tp, x, cell->w_ih), cell->b_ih);
    if (h)
        z = tg_add(tp, z, tg_add_bias(tp, tg_matmul(tp, h, cell->w_hh), cell->b_hh));
    else
        z = tg_add(tp, z, cell->b_hh); /* h = 0: only its bias remains */
    tg_tensor *i = tg_sigmoid(tp, gate(tp, z, 0, hs));
    tg_tensor *f = tg_sigmoid(tp, gate(tp, z, 1, hs));
    tg_tensor *g = tg_tanh(tp, gate(tp, z, 2, hs));
    tg_tensor *o = tg_sigmoid(tp, gate(tp, z, 3, hs));
    tg_tensor *ig = tg_mul(tp, i, g);
    tg_tensor *c2 = c ? tg_add(tp, tg_mul(tp, f, c), ig) : ig; /* c = 0: f ⊙ c vanishes */
    tg_tensor *h2 = tg_mul(tp, o, tg_tanh(tp, c2));
    if (!h2) return NULL;
    *c_out = c2;
    return h2;
}

tg_status tg_gru_cell_init(tg_gru_cell *c, tg_params *ps, const char *prefix, int64_t in,
                           int64_t hidden, tg_dtype dt, tg_rng *r, tg_error *err)
{
    tg_status s = init_args(c, ps, prefix, dt, true, r, "gru_cell", err);
    if (s) return s;
    *c = (tg_gru_cell){.hidden = hidden};
    return rnn_init(&c->w_ih, &c->w_hh, &c->b_ih, &c->b_hh, ps, prefix, in, hidden, 3, dt, r, err);
}

tg_tensor *tg_gru_cell_forward(tg_tape *tp, const tg_gru_cell *cell, tg_tensor *x, tg_tensor *h)
{
    if (!tg__guard(tp, "gru_cell", 1, &x)) return NULL;
    if (!cell || !cell->w_ih) return no_layer(tp, "gru_cell");
    if (!rnn_shapes(tp, "gru_cell", cell->w_ih, cell->hidden, x, h, NULL)) return NULL;
    int64_t hs = cell->hidden;
    tg_tensor *gi = tg_add_bias(tp, tg_matmul(tp, x, cell->w_ih), cell->b_ih);
    /* h = 0 leaves only the hidden bias of each gate: one row, broadcast. */
    tg_tensor *gh = h ? tg_add_bias(tp, tg_matmul(tp, h, cell->w_hh), cell->b_hh)
                      : tg_reshape(tp, cell->b_hh, 2, (const int64_t[]){1, 3 * hs});
    tg_tensor *r = tg_sigmoid(tp, tg_add(tp, gate(tp, gi, 0, hs), gate(tp, gh, 0, hs)));
    tg_tensor *z = tg_sigmoid(tp, tg_add(tp, gate(tp, gi, 1, hs), gate(tp, gh, 1, hs)));
    tg_tensor *n = tg_tanh(tp, tg_add(tp, gate(tp, gi, 2, hs), tg_mul(tp, r, gate(tp, gh, 2, hs))));
    /* h' = (1 - z) n + z h = n + z (h - n); with h = 0 that is n - z n. */
    return tg_add(tp, n, tg_mul(tp, z, h ? tg_sub(tp, h, n) : tg_neg(tp, n)));
}

/* ====== Multi-head self-attention ====== */

tg_status tg_mha_init(tg_mha *m, tg_params *ps, const char *prefix, int64_t d_model, int64_t heads,
                      tg_dtype dt, tg_rng *r, tg_error *err)
{
    tg_status s = init_args(m, ps, prefix, dt, true, r, "mha", err);
    if (s) return s;
    if (d_model < 1 || heads < 1 || d_model % heads)
        return tg__set_error(err, TG_ERR_ARG, "mha: %lld heads do not divide d_model %lld",
                             (long long)heads, (long long)d_model);
    size_t n0 = tg_params_count(ps);
    *m = (tg_mha){.heads = heads};
    /* PyTorch draws q, k and v as one [3D, D] Xavier-uniform matrix: the bound
     * uses fans D and 3D. The output projection keeps Linear's bound; every
     * bias starts at zero. */
    const double xavier = sqrt(6.0 / (double)(4 * d_model));
    const double bound[4] = {xavier, xavier, xavier, 1.0 / sqrt((double)d_model)};
    tg_linear *proj[4] = {&m->q, &m->k, &m->v, &m->out};
    const char *weights[4] = {"q.weight", "k.weight", "v.weight", "out.weight"};
    const char *biases[4] = {"q.bias", "k.bias", "v.bias", "out.bias"};
    const int64_t shape[2] = {d_model, d_model};
    for (int i = 0; i < 4; i++)
        if ((s = reg(&proj[i]->weight, ps, prefix, weights[i], dt, 2, shape, bound[i], 0, r,
                     err)) ||
            (s = reg(&proj[i]->bias, ps, prefix, biases[i], dt, 1, shape, 0, 0, NULL, err)))
            return undo(ps, n0, s);
    return TG_OK;
}

tg_tensor *tg_mha_forward(tg_tape *tp, const tg_mha *m, tg_tensor *x, tg_tensor *mask)
{
    if (!tg__guard(tp, "mha", 1, &x)) return NULL;
    if (!m || !m->q.weight) return no_layer(tp, "mha");
    int64_t d = m->q.weight->shape[0], heads = m->heads, dh = d / heads;
    char sx[TG__SHAPE_STR_MAX], sm[TG__SHAPE_STR_MAX];
    if (x->rank != 3 || x->shape[2] != d) {
        tg__fail(tp, TG_ERR_SHAPE, "mha: input %s is not [B x T x %lld]",
                 tg__shape_str(x, sx, sizeof sx), (long long)d);
        return NULL;
    }
    int64_t b = x->shape[0], t = x->shape[1];
    if (mask && (mask->rank != 2 || mask->shape[0] != t || mask->shape[1] != t)) {
        tg__fail(tp, TG_ERR_SHAPE, "mha: mask %s is not [T x T] for input %s",
                 tg__shape_str(mask, sm, sizeof sm), tg__shape_str(x, sx, sizeof sx));
        return NULL;
    }
    /* [B,T,D] -> [B,T,H,Dh] -> [B,H,T,Dh]; K goes to [B,H,Dh,T] for Q Kᵀ. */
    const int64_t split[4] = {b, t, heads, dh};
    tg_tensor *q = tg_permute(tp, tg_reshape(tp, tg_linear_forward(tp, &m->q, x), 4, split),
                              (const int[]){0, 2, 1, 3});
    tg_tensor *kt = tg_permute(tp, tg_reshape(tp, tg_linear_forward(tp, &m->k, x), 4, split),
                               (const int[]){0, 2, 3, 1});
    tg_tensor *v = tg_permute(tp, tg_reshape(tp, tg_linear_forward(tp, &m->v, x), 4, split),
                              (const int[]){0, 2, 1, 3});
    tg_tensor *scores = tg_scale(tp, tg_matmul(tp, q, kt), 1.0 / sqrt((double)dh));
    if (mask) scores = tg_add(tp, scores, mask);
    tg_tensor *ctx = tg_matmul(tp, tg_softmax(tp, scores), v); /* [B,H,T,Dh] */
    ctx = tg_reshape(tp, tg_permute(tp, ctx, (const int[]){0, 2, 1, 3}), 3,
                     (const int64_t[]){b, t, d});
    return tg_linear_forward(tp, &m->out, ctx);
}

tg_tensor *tg_causal_mask(int64_t t, tg_dtype dt)
{
    if (t < 0 || !tg__dtype_valid(dt) || !tg__dt(dt)->is_float) return NULL;
    tg_tensor *m = tg__tensor_alloc(dt, 2, (int64_t[]){t, t});
    if (!m) return NULL;
    for (int64_t i = 0; i < t; i++)
        for (int64_t j = i + 1; j < t; j++)
            tg__put(m, i * t + j, -(double)INFINITY);
    return m;
}
