/*
 * Layers and whole-network training: dense layers and MLPs built from graph
 * ops, gradient checks of a complete network, and training runs that learn
 * XOR through tape replay, reproducibly and bit for bit like re-recording.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ====== Layers ====== */

START_TEST(dense_is_matmul_plus_bias)
{
    tg_tape *tp = tg_tape_new();
    tg_tensor *x = tu_from(TG_F64, "2x2", (double[]){1, 2, -1, 0.5});
    tg_tensor *w = tu_from(TG_F64, "2x3", (double[]){1, 2, 3, 4, 5, 6});
    tg_tensor *b = tu_from(TG_F64, "3", (double[]){0.5, -1, 0.25});
    tg_tensor *z = tg_dense(tp, x, w, b);
    ck_assert_ptr_nonnull(z);
    ck_assert_uint_eq(tg_tape_size(tp), 2); /* two graph ops, no special node */
    ck_assert_int_eq(tg_tensor_shape(z)[0], 2);
    ck_assert_int_eq(tg_tensor_shape(z)[1], 3);
    /* row 0: [1 2] W = [9 12 15]; row 1: [-1 0.5] W = [1 0.5 0] */
    const double want[6] = {9.5, 11, 15.25, 1.5, -0.5, 0.25};
    for (int k = 0; k < 6; k++)
        ck_assert(tu_at(z, k) == want[k]);
    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_tensor_free(w);
    tg_tensor_free(b);
}
END_TEST

START_TEST(activate_applies_one_op)
{
    tg_tape *tp = tg_tape_new();
    tg_tensor *x = tu_from(TG_F64, "4", (double[]){-2, -0.5, 0, 3});
    ck_assert_ptr_eq(tg_activate(tp, x, TG_ACT_NONE), x);
    ck_assert_uint_eq(tg_tape_size(tp), 0);
    tg_tensor *r = tg_activate(tp, x, TG_ACT_RELU);
    tg_tensor *t = tg_activate(tp, x, TG_ACT_TANH);
    tg_tensor *s = tg_activate(tp, x, TG_ACT_SIGMOID);
    ck_assert_uint_eq(tg_tape_size(tp), 3);
    for (int k = 0; k < 4; k++) {
        double v = tu_at(x, k);
        ck_assert(tu_at(r, k) == (v > 0 ? v : 0));
        ck_assert(fabs(tu_at(t, k) - tanh(v)) <= 1e-15);
        ck_assert(fabs(tu_at(s, k) - 1 / (1 + exp(-v))) <= 1e-15);
    }
    ck_assert_ptr_null(tg_activate(tp, x, (tg_activation)9));
    ck_assert_int_eq(tg_tape_status(tp), TG_ERR_ARG);
    ck_assert_msg(strstr(tg_tape_error(tp), "activate"), "message: %s", tg_tape_error(tp));
    ck_assert_ptr_null(tg_activate(tp, x, TG_ACT_NONE)); /* a failed tape passes NULL on */
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

static const int64_t sizes_2432[] = {2, 4, 3, 2};

START_TEST(mlp_registers_and_initialises)
{
    const int64_t sizes[] = {2, 16, 5};
    const tg_activation acts[] = {TG_ACT_RELU, TG_ACT_TANH};
    tg_params *ps = tg_params_new();
    tg_rng r;
    tg_rng_seed(&r, 3);
    tg_mlp *m = tg_mlp_new(ps, "net", 2, sizes, acts, TG_F32, &r);
    ck_assert_ptr_nonnull(m);
    static const char *const names[] = {"net.0.weight", "net.0.bias", "net.1.weight", "net.1.bias"};
    ck_assert_uint_eq(tg_params_count(ps), 4);
    for (size_t i = 0; i < 4; i++) {
        const char *name;
        tg_params_at(ps, i, &name);
        ck_assert_str_eq(name, names[i]);
    }
    ck_assert_int_eq(tg_params_numel(ps), 2 * 16 + 16 + 16 * 5 + 5);
    tg_tensor *w0 = tg_params_get(ps, "net.0.weight"), *w1 = tg_params_get(ps, "net.1.weight");
    ck_assert_int_eq(tg_tensor_dtype(w0), TG_F32);
    ck_assert_int_eq(tg_tensor_shape(w0)[0], 2);
    ck_assert_int_eq(tg_tensor_shape(w0)[1], 16);
    ck_assert_int_eq(tg_tensor_shape(tg_params_get(ps, "net.1.bias"))[0], 5);
    /* He-uniform before the ReLU, Xavier-uniform before tanh, drawn in layer order;
     * biases zero. */
    tg_tensor *e0 = tg_tensor_new(TG_F32, 2, (int64_t[]){2, 16});
    tg_tensor *e1 = tg_tensor_new(TG_F32, 2, (int64_t[]){16, 5});
    tg_rng_seed(&r, 3);
    ck_assert_int_eq(tg_init_tensor(e0, TG_INIT_HE_UNIFORM, 2, 16, &r), TG_OK);
    ck_assert_int_eq(tg_init_tensor(e1, TG_INIT_XAVIER_UNIFORM, 16, 5, &r), TG_OK);
    ck_assert(memcmp(tg_tensor_data(w0), tg_tensor_data(e0), 32 * sizeof(float)) == 0);
    ck_assert(memcmp(tg_tensor_data(w1), tg_tensor_data(e1), 80 * sizeof(float)) == 0);
    for (int k = 0; k < 16; k++)
        ck_assert(tu_at(tg_params_get(ps, "net.0.bias"), k) == 0.0);
    tg_mlp_free(m);
    tg_mlp_free(NULL);
    tg_tensor_free(e0);
    tg_tensor_free(e1);
    tg_params_free(ps);
}
END_TEST

static void expect_last_error(tg_status want, const char *msg)
{
    ck_assert_int_eq(tg_last_error()->status, want);
    ck_assert_str_eq(tg_last_error()->msg, msg);
}

START_TEST(mlp_bad_arguments_register_nothing)
{
    const tg_activation acts[] = {TG_ACT_TANH, TG_ACT_SIGMOID, TG_ACT_NONE};
    const tg_activation bad_acts[] = {TG_ACT_TANH, (tg_activation)-1, TG_ACT_NONE};
    const int64_t zero_size[] = {2, 4, 0, 2};
    tg_params *ps = tg_params_new();
    tg_rng r;
    tg_rng_seed(&r, 1);
    /* A name the third layer would need already exists: the first two roll back. */
    tg_tensor *clash = tg_params_add(ps, "net.2.bias", TG_F64, 1, (int64_t[]){2});
    ck_assert_ptr_null(tg_mlp_new(ps, "net", 3, sizes_2432, acts, TG_F64, &r));
    expect_last_error(TG_ERR_ARG,
                      "mlp_new: layer 2: params_add: 'net.2.bias' is already registered");
    ck_assert_uint_eq(tg_params_count(ps), 1);
    ck_assert_ptr_eq(tg_params_get(ps, "net.2.bias"), clash);
    static const char null_msg[] =
        "mlp_new: NULL registry, sizes, activations or rng, or an empty prefix";
    ck_assert_ptr_null(tg_mlp_new(NULL, "a", 3, sizes_2432, acts, TG_F64, &r));
    expect_last_error(TG_ERR_ARG, null_msg);
    ck_assert_ptr_null(tg_mlp_new(ps, NULL, 3, sizes_2432, acts, TG_F64, &r));
    expect_last_error(TG_ERR_ARG, null_msg);
    ck_assert_ptr_null(tg_mlp_new(ps, "", 3, sizes_2432, acts, TG_F64, &r));
    expect_last_error(TG_ERR_ARG, null_msg);
    ck_assert_ptr_null(tg_mlp_new(ps, "a", 0, sizes_2432, acts, TG_F64, &r));
    expect_last_error(TG_ERR_ARG, "mlp_new: 0 layers, at least 1 needed");
    ck_assert_ptr_null(tg_mlp_new(ps, "a", 3, NULL, acts, TG_F64, &r));
    expect_last_error(TG_ERR_ARG, null_msg);
    ck_assert_ptr_null(tg_mlp_new(ps, "a", 3, zero_size, acts, TG_F64, &r));
    expect_last_error(TG_ERR_ARG, "mlp_new: sizes[2] is 0, must be >= 1");
    ck_assert_ptr_null(tg_mlp_new(ps, "a", 3, sizes_2432, NULL, TG_F64, &r));
    expect_last_error(TG_ERR_ARG, null_msg);
    ck_assert_ptr_null(tg_mlp_new(ps, "a", 3, sizes_2432, bad_acts, TG_F64, &r));
    expect_last_error(TG_ERR_ARG, "mlp_new: acts[1] is -1, not an activation");
    ck_assert_ptr_null(tg_mlp_new(ps, "a", 3, sizes_2432, acts, (tg_dtype)5, &r));
    expect_last_error(TG_ERR_DTYPE, "mlp_new: dtype 5, not f32 or f64");
    ck_assert_ptr_null(tg_mlp_new(ps, "a", 3, sizes_2432, acts, TG_F64, NULL));
    expect_last_error(TG_ERR_ARG, null_msg);
    /* A layer too large to allocate says which layer and why. */
    const int64_t huge[] = {2, INT64_MAX / 4, 2};
    ck_assert_ptr_null(tg_mlp_new(ps, "big", 2, huge, acts, TG_F64, &r));
    ck_assert_int_eq(tg_last_error()->status, TG_ERR_ARG);
    ck_assert_msg(strstr(tg_last_error()->msg, "mlp_new: layer 0: params_add: [2x"), "message '%s'",
                  tg_last_error()->msg);
    ck_assert_msg(strstr(tg_last_error()->msg, "is too large to allocate"), "message '%s'",
                  tg_last_error()->msg);
    ck_assert_uint_eq(tg_params_count(ps), 1);
    tg_params_free(ps);
}
END_TEST

START_TEST(mlp_forward_shapes_and_errors)
{
    const tg_activation acts[] = {TG_ACT_TANH, TG_ACT_SIGMOID, TG_ACT_NONE};
    tg_params *ps = tg_params_new();
    tg_rng r;
    tg_rng_seed(&r, 1);
    tg_mlp *m = tg_mlp_new(ps, "net", 3, sizes_2432, acts, TG_F64, &r);
    tg_tape *tp = tg_tape_new();
    tg_tensor *x = tu_random(TG_F64, "5x2", -1, 1, 1);
    tg_tensor *y = tg_mlp_forward(tp, m, x);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(tg_tensor_rank(y), 2);
    ck_assert_int_eq(tg_tensor_shape(y)[0], 5);
    ck_assert_int_eq(tg_tensor_shape(y)[1], 2);
    ck_assert_uint_eq(tg_tape_size(tp), 3 * 2 + 2); /* no node for the linear output */

    static const struct {
        const char *shape;
        tg_dtype dt;
        tg_status status;
    } bad[] = {
        {"5x3", TG_F64, TG_ERR_SHAPE}, {"2", TG_F64, TG_ERR_SHAPE}, {"5x2", TG_F32, TG_ERR_DTYPE}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        tg_tensor *bx = tu_random(bad[i].dt, bad[i].shape, -1, 1, 2);
        tg_tape_reset(tp);
        ck_assert_ptr_null(tg_mlp_forward(tp, m, bx));
        ck_assert_int_eq(tg_tape_status(tp), bad[i].status);
        ck_assert_uint_eq(tg_tape_size(tp), 0);
        tg_tensor_free(bx);
    }
    tg_tape_reset(tp);
    ck_assert_ptr_null(tg_mlp_forward(tp, NULL, x));
    ck_assert_int_eq(tg_tape_status(tp), TG_ERR_ARG);
    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_mlp_free(m);
    tg_params_free(ps);
}
END_TEST

/* ====== Gradient check of a whole 2-4-3-2 network ====== */

typedef struct net_ctx {
    const tg_mlp *m;
    tg_tensor *x, *target;
    bool mse;
} net_ctx;

static tg_tensor *net_loss(tg_tape *tp, tg_tensor *const *inputs, void *ctx)
{
    (void)inputs; /* the network holds the same tensors */
    const net_ctx *c = ctx;
    tg_tensor *out = tg_mlp_forward(tp, c->m, c->x);
    return c->mse ? tg_mse_loss(tp, out, c->target) : tg_softmax_cross_entropy(tp, out, c->target);
}

static const struct {
    const char *name;
    tg_activation acts[3];
    bool mse;
} net_cases[] = {
    {"tanh, sigmoid, linear; cross-entropy", {TG_ACT_TANH, TG_ACT_SIGMOID, TG_ACT_NONE}, false},
    {"tanh, sigmoid, linear; mse", {TG_ACT_TANH, TG_ACT_SIGMOID, TG_ACT_NONE}, true},
    {"sigmoid, tanh, sigmoid; cross-entropy", {TG_ACT_SIGMOID, TG_ACT_TANH, TG_ACT_SIGMOID}, false},
    {"sigmoid, tanh, tanh; mse", {TG_ACT_SIGMOID, TG_ACT_TANH, TG_ACT_TANH}, true},
};

START_TEST(whole_network_passes_gradcheck)
{
    tg_params *ps = tg_params_new();
    tg_rng r;
    tg_rng_seed(&r, 100 + (uint64_t)_i);
    tg_mlp *m = tg_mlp_new(ps, "net", 3, sizes_2432, net_cases[_i].acts, TG_F64, &r);
    ck_assert_ptr_nonnull(m);
    /* Nonzero biases, so the check is at a generic point. */
    for (int l = 0; l < 3; l++) {
        char name[32];
        snprintf(name, sizeof name, "net.%d.bias", l);
        ck_assert_int_eq(tg_init_tensor(tg_params_get(ps, name), TG_INIT_XAVIER_NORMAL, 4, 4, &r),
                         TG_OK);
    }
    net_ctx c = {.m = m, .x = tu_random(TG_F64, "5x2", -2, 2, 7), .mse = net_cases[_i].mse};
    if (c.mse) {
        c.target = tu_random(TG_F64, "5x2", -1, 1, 8);
    } else { /* soft labels: rows of probabilities */
        c.target = tu_random(TG_F64, "5x2", 0.05, 1, 8);
        double *t = tg_tensor_data(c.target);
        for (int i = 0; i < 5; i++) {
            double s = t[2 * i] + t[2 * i + 1];
            t[2 * i] /= s;
            t[2 * i + 1] /= s;
        }
    }
    tg_tensor_set_requires_grad(c.x, true);
    tg_tensor *inputs[7];
    for (int i = 0; i < 6; i++)
        inputs[i] = tg_params_at(ps, (size_t)i, NULL);
    inputs[6] = c.x;

    tg_gradcheck_report rep;
    tg_gradcheck_opts opts = {.eps = 1e-6, .atol = 1e-8, .rtol = 1e-5};
    ck_assert_int_eq(tg_gradcheck(net_loss, inputs, 7, &c, &opts, &rep), TG_OK);
    ck_assert_msg(rep.passed, "%s: input %d[%lld] analytic %.17g numeric %.17g", net_cases[_i].name,
                  rep.worst_input, (long long)rep.worst_index, rep.analytic, rep.numeric);
    ck_assert_int_eq(rep.n_checked, 2 * 4 + 4 + 4 * 3 + 3 + 3 * 2 + 2 + 5 * 2);
    tg_tensor_free(c.x);
    tg_tensor_free(c.target);
    tg_mlp_free(m);
    tg_params_free(ps);
}
END_TEST

/* ====== Training: XOR with a 2-16-16-2 network and Adam ====== */

static const double xor_x[4][2] = {{0, 0}, {0, 1}, {1, 0}, {1, 1}};
static const int xor_label[4] = {0, 1, 1, 0};

/* Writes the four XOR points in the given order into x [4,2] and their
 * one-hot labels into y [4,2], as a batcher fills a mini-batch. */
static void write_rows(tg_tensor *x, tg_tensor *y, const int *order)
{
    double *xd = tg_tensor_data(x), *yd = tg_tensor_data(y);
    for (int i = 0; i < 4; i++) {
        xd[2 * i] = xor_x[order[i]][0];
        xd[2 * i + 1] = xor_x[order[i]][1];
        yd[2 * i] = xor_label[order[i]] == 0;
        yd[2 * i + 1] = xor_label[order[i]] == 1;
    }
}

static void shuffle(int *order, tg_rng *r)
{
    for (int i = 3; i > 0; i--) {
        int j = (int)tg_rng_below(r, (uint64_t)i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

static tg_tensor *record_loss(tg_tape *tp, const tg_mlp *m, tg_tensor *x, tg_tensor *y)
{
    tg_tensor *loss = tg_softmax_cross_entropy(tp, tg_mlp_forward(tp, m, x), y);
    ck_assert_msg(loss != NULL, "%s", tg_tape_error(tp));
    return loss;
}

/* Trains for 'steps' steps from 'seed' and returns the registry (the caller
 * frees it). With 'rerecord' every step records the graph anew; otherwise the
 * first recording is replayed. *loss_after and *correct (points classified
 * right) are measured afterwards on the four points in order. */
static tg_params *train_xor(uint64_t seed, tg_activation act, int steps, bool rerecord,
                            double *loss_after, int *correct)
{
    const int64_t sizes[] = {2, 16, 16, 2};
    const tg_activation acts[] = {act, act, TG_ACT_NONE};
    const int64_t shape[2] = {4, 2};
    tg_params *ps = tg_params_new();
    tg_rng r;
    tg_rng_seed(&r, seed);
    tg_mlp *m = tg_mlp_new(ps, "xor", 3, sizes, acts, TG_F64, &r);
    tg_optim *o = tg_optim_new(ps, &(tg_optim_opts){.kind = TG_OPTIM_ADAM, .lr = 0.02});
    tg_tensor *x = tg_tensor_new(TG_F64, 2, shape), *y = tg_tensor_new(TG_F64, 2, shape);
    tg_tape *tp = tg_tape_new();
    ck_assert(m && o && x && y && tp);

    tg_tensor *loss = NULL;
    int order[4] = {0, 1, 2, 3};
    for (int s = 0; s < steps; s++) {
        shuffle(order, &r); /* new data in the same leaves every step */
        write_rows(x, y, order);
        if (!loss || rerecord) {
            tg_tape_reset(tp);
            loss = record_loss(tp, m, x, y);
        } else {
            ck_assert_int_eq(tg_tape_replay(tp), TG_OK);
        }
        tg_params_zero_grad(ps);
        ck_assert_int_eq(tg_backward(tp, loss), TG_OK);
        ck_assert_int_eq(tg_optim_step(o), TG_OK);
    }

    /* Evaluation on a fresh recording, points in order. */
    write_rows(x, y, (const int[]){0, 1, 2, 3});
    tg_tape_reset(tp);
    tg_tensor *logits = tg_mlp_forward(tp, m, x);
    loss = tg_softmax_cross_entropy(tp, logits, y);
    ck_assert_msg(loss != NULL, "%s", tg_tape_error(tp));
    *loss_after = tg_tensor_item(loss);
    *correct = 0;
    for (int i = 0; i < 4; i++)
        *correct += (tu_at(logits, 2 * i + 1) > tu_at(logits, 2 * i)) == (xor_label[i] == 1);

    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_tensor_free(y);
    tg_optim_free(o);
    tg_mlp_free(m);
    return ps;
}

static const tg_activation train_acts[] = {TG_ACT_TANH, TG_ACT_RELU};

START_TEST(mlp_learns_xor)
{
    double loss;
    int correct;
    tg_params *ps = train_xor(2024, train_acts[_i], 400, false, &loss, &correct);
    ck_assert_msg(loss < 0.02, "%s: loss %.17g after training",
                  train_acts[_i] == TG_ACT_RELU ? "relu" : "tanh", loss);
    ck_assert_int_eq(correct, 4);
    tg_params_free(ps);
}
END_TEST

/* Every parameter of a and b, compared bit for bit. */
static void assert_same_params(tg_params *a, tg_params *b)
{
    ck_assert_uint_eq(tg_params_count(a), tg_params_count(b));
    for (size_t i = 0; i < tg_params_count(a); i++) {
        const char *name;
        tg_tensor *pa = tg_params_at(a, i, &name), *pb = tg_params_at(b, i, NULL);
        ck_assert_int_eq(tg_tensor_numel(pa), tg_tensor_numel(pb));
        ck_assert_msg(memcmp(tg_tensor_data(pa), tg_tensor_data(pb),
                             (size_t)tg_tensor_numel(pa) * sizeof(double)) == 0,
                      "%s differs", name);
    }
}

START_TEST(same_seed_same_parameters)
{
    double la, lb, lc;
    int ca, cb, cc;
    tg_params *a = train_xor(77, TG_ACT_TANH, 150, false, &la, &ca);
    tg_params *b = train_xor(77, TG_ACT_TANH, 150, false, &lb, &cb);
    tg_params *c = train_xor(78, TG_ACT_TANH, 150, false, &lc, &cc);
    assert_same_params(a, b);
    ck_assert(la == lb);
    ck_assert(memcmp(tg_tensor_data(tg_params_at(a, 0, NULL)),
                     tg_tensor_data(tg_params_at(c, 0, NULL)), 32 * sizeof(double)) != 0);
    tg_params_free(a);
    tg_params_free(b);
    tg_params_free(c);
}
END_TEST

START_TEST(replay_equals_rerecording)
{
    double la, lb;
    int ca, cb;
    tg_params *a = train_xor(5, train_acts[_i], 150, false, &la, &ca);
    tg_params *b = train_xor(5, train_acts[_i], 150, true, &lb, &cb);
    assert_same_params(a, b);
    ck_assert(la == lb);
    tg_params_free(a);
    tg_params_free(b);
}
END_TEST

/* ====== A short last batch gives the exact mean over its rows ====== */

enum { BATCH = 4, N_ROWS = 7, N_IN = 3, N_OUT = 4, N_PARAMS = 4 };

/* The loss the documented pattern records on 'batch' rows: each row's terms
 * weighted by w (tg_batcher_weights), softmax cross-entropy through its
 * target, the squared error before its mean. NULL w: the plain loss. */
static tg_tensor *batch_loss(tg_tape *tp, bool ce, tg_tensor *pred, tg_tensor *y, tg_tensor *w)
{
    if (ce) return tg_softmax_cross_entropy(tp, pred, w ? tg_mul(tp, y, w) : y);
    if (!w) return tg_mse_loss(tp, pred, y);
    return tg_mean(tp, tg_mul(tp, tg_square(tp, tg_sub(tp, pred, y)), w));
}

/* Backward from loss on tp after a replay, returning the loss; the
 * parameters' gradients (zeroed first) are copied into g. */
static double grads_of(tg_tape *tp, tg_tensor *loss, tg_params *ps, tg_tensor **g, bool replay)
{
    if (replay) ck_assert_int_eq(tg_tape_replay(tp), TG_OK);
    tg_params_zero_grad(ps);
    ck_assert_msg(tg_backward(tp, loss) == TG_OK, "%s", tg_tape_error(tp));
    for (int i = 0; i < N_PARAMS; i++) {
        const tg_tensor *gi = tg_tensor_grad(tg_params_at(ps, (size_t)i, NULL));
        if (!g[i])
            g[i] = tg_tensor_new(tg_tensor_dtype(gi), tg_tensor_rank(gi), tg_tensor_shape(gi));
        memcpy(tg_tensor_data(g[i]), tg_tensor_cdata(gi),
               (size_t)tg_tensor_numel(gi) * (tg_tensor_dtype(gi) == TG_F64 ? 8 : 4));
    }
    return tg_tensor_item(loss);
}

START_TEST(short_batch_gives_the_exact_mean)
{
    bool ce = _i % 2 == 0;
    tg_dtype dt = tu_loop_dtype(_i / 2);
    double tol = dt == TG_F64 ? 1e-13 : 2e-6;
    const int64_t sizes[] = {N_IN, 5, N_OUT};
    const tg_activation acts[] = {TG_ACT_TANH, TG_ACT_NONE};
    tg_params *ps = tg_params_new();
    tg_rng r;
    tg_rng_seed(&r, 11);
    tg_mlp *m = tg_mlp_new(ps, "net", 2, sizes, acts, dt, &r);
    ck_assert_ptr_nonnull(m);
    tg_tensor *x = tu_random(dt, "7x3", -1, 1, 12), *y = tu_random(dt, "7x4", 0, 1, 13);
    if (ce) /* one-hot rows */
        for (int64_t k = 0; k < N_ROWS * N_OUT; k++)
            tu_put(y, k, k % N_OUT == (k / N_OUT) % N_OUT);

    /* One tape, recorded once for BATCH rows, serves the full and the short batch. */
    tg_batcher *b = tg_batcher_new(x, y, BATCH, true, 14);
    tg_tensor *xb = tg_tensor_new(dt, 2, (int64_t[]){BATCH, N_IN});
    tg_tensor *yb = tg_tensor_new(dt, 2, (int64_t[]){BATCH, N_OUT});
    tg_tensor *w = tg_tensor_new(dt, 2, (int64_t[]){BATCH, 1});
    tg_tape *tp = tg_tape_new(), *plain_tp = tg_tape_new();
    tg_tensor *loss = batch_loss(tp, ce, tg_mlp_forward(tp, m, xb), yb, w);
    tg_tensor *plain = batch_loss(plain_tp, ce, tg_mlp_forward(plain_tp, m, xb), yb, NULL);
    ck_assert_msg(loss && plain, "%s %s", tg_tape_error(tp), tg_tape_error(plain_tp));

    tg_tensor *g[N_PARAMS] = {0}, *want[N_PARAMS] = {0}, *g_plain[N_PARAMS] = {0};
    int64_t rows, seen = 0;
    while ((rows = tg_batcher_next(b, xb, yb)) > 0) {
        ck_assert_int_eq(tg_batcher_weights(b, w), TG_OK);
        double got = grads_of(tp, loss, ps, g, true);

        /* The reference: a tape recorded on exactly the batch's rows. */
        tg_tensor *xr = tg_tensor_new(dt, 2, (int64_t[]){rows, N_IN});
        tg_tensor *yr = tg_tensor_new(dt, 2, (int64_t[]){rows, N_OUT});
        for (int64_t k = 0; k < rows * N_IN; k++)
            tu_put(xr, k, tu_at(xb, k));
        for (int64_t k = 0; k < rows * N_OUT; k++)
            tu_put(yr, k, tu_at(yb, k));
        tg_tape *ref = tg_tape_new();
        tg_tensor *ref_loss = batch_loss(ref, ce, tg_mlp_forward(ref, m, xr), yr, NULL);
        double exact = grads_of(ref, ref_loss, ps, want, false);
        ck_assert_msg(fabs(got - exact) <= tol * fabs(exact), "rows %lld: loss %.17g, want %.17g",
                      (long long)rows, got, exact);
        for (int i = 0; i < N_PARAMS; i++) {
            int64_t bad = -1;
            ck_assert_msg(tu_close(g[i], want[i], tol, &bad),
                          "rows %lld, parameter %d[%lld]: %.17g, want %.17g", (long long)rows, i,
                          (long long)bad, tu_at(g[i], bad), tu_at(want[i], bad));
        }
        /* Without the weights the short batch's cross-entropy divides by BATCH:
         * its gradient is rows / BATCH of the exact one. */
        if (ce && rows < BATCH) {
            grads_of(plain_tp, plain, ps, g_plain, true);
            for (int64_t k = 0; k < tg_tensor_numel(want[0]); k++)
                ck_assert_msg(fabs(tu_at(g_plain[0], k) - 0.75 * tu_at(want[0], k)) <=
                                  tol * fmax(1, fabs(tu_at(want[0], k))),
                              "plain[%lld] %.17g, exact %.17g", (long long)k, tu_at(g_plain[0], k),
                              tu_at(want[0], k));
        }
        tg_tape_free(ref);
        tg_tensor_free(xr);
        tg_tensor_free(yr);
        seen += rows;
    }
    ck_assert_int_eq(rows, 0);
    ck_assert_int_eq(seen, N_ROWS); /* a batch of 4, then one of 3 */
    for (int i = 0; i < N_PARAMS; i++) {
        tg_tensor_free(g[i]);
        tg_tensor_free(want[i]);
        tg_tensor_free(g_plain[i]);
    }
    tg_tape_free(tp);
    tg_tape_free(plain_tp);
    tg_batcher_free(b);
    tg_tensor_free(xb);
    tg_tensor_free(yb);
    tg_tensor_free(w);
    tg_tensor_free(x);
    tg_tensor_free(y);
    tg_mlp_free(m);
    tg_params_free(ps);
}
END_TEST

static Suite *nn_train_suite(void)
{
    Suite *s = suite_create("nn_train");
    TCase *tc = tcase_create("layers");
    tcase_add_test(tc, dense_is_matmul_plus_bias);
    tcase_add_test(tc, activate_applies_one_op);
    tcase_add_test(tc, mlp_registers_and_initialises);
    tcase_add_test(tc, mlp_bad_arguments_register_nothing);
    tcase_add_test(tc, mlp_forward_shapes_and_errors);
    suite_add_tcase(s, tc);

    tc = tcase_create("gradcheck");
    tcase_add_loop_test(tc, whole_network_passes_gradcheck, 0,
                        sizeof net_cases / sizeof *net_cases);
    suite_add_tcase(s, tc);

    tc = tcase_create("training");
    tcase_set_timeout(tc, 60); /* the default 4 s is tight under valgrind */
    tcase_add_loop_test(tc, mlp_learns_xor, 0, sizeof train_acts / sizeof *train_acts);
    tcase_add_test(tc, same_seed_same_parameters);
    tcase_add_loop_test(tc, short_batch_gives_the_exact_mean, 0, 4);
    tcase_add_loop_test(tc, replay_equals_rerecording, 0, sizeof train_acts / sizeof *train_acts);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run(nn_train_suite()); }
