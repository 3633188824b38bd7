/*
 * Convolution and pooling: conv1d, conv2d, max_pool2d, avg_pool2d. Each VJP
 * is gradchecked from the op list (tests/oplist.h: combinations of stride,
 * padding, dilation and groups, with and without bias, batch 1 and more,
 * 1-sized and 0-sized dimensions); here the graphs that combine them are,
 * through a Frobenius probe. Values and gradients are compared with
 * PyTorch's (tests/conv_ref.h, made by tools/conv_ref.py), small cases are
 * checked by hand (ties, padding as -inf, NaN), replay of a small CNN must
 * equal a fresh recording, and every bad input fails with its status and
 * message.
 */
#include "testutil.h"

#include "conv_ref.h"

#include <math.h>
#include <string.h>

/* ====== Gradient checks of graphs (each op alone is in the op list) ====== */

typedef struct grad_case {
    const char *name;
    tu_op_fn op;
    const char *shapes[8]; /* operand shapes "a;b;c", NULL-terminated */
} grad_case;

static tg_tensor *op_conv_pool(tg_tape *tp, tg_tensor *const *in, const void *row)
{
    (void)row;
    tg_tensor *h = tg_conv2d(tp, in[0], in[1], in[2], &(tg_conv_opts){.padding = {1, 1}});
    return tg_avg_pool2d(tp, tg_max_pool2d(tp, h, (int[]){2, 2}, (int[]){1, 1}, NULL),
                         (int[]){2, 2}, NULL, (int[]){1, 1});
}

static tg_tensor *op_conv_self(tg_tape *tp, tg_tensor *const *in, const void *row)
{
    (void)row; /* fan-out: x is also the kernel, so dX gets both contributions */
    return tg_conv2d(tp, in[0], in[0], NULL, &(tg_conv_opts){.padding = {1, 2}});
}

static tg_tensor *op_conv1d_twice(tg_tape *tp, tg_tensor *const *in, const void *row)
{
    (void)row; /* the same weights on a signal and on the result */
    tg_conv_opts same = {.padding = {1}};
    return tg_conv1d(tp, tg_conv1d(tp, in[0], in[1], in[2], &same), in[1], in[2], &same);
}

static const grad_case grad_cases[] = {
    {"conv2d-max_pool2d-avg_pool2d", op_conv_pool, {"2x2x5x5;3x2x3x3;3", "1x1x2x3;2x1x1x1;2"}},
    {"conv2d of x with itself", op_conv_self, {"1x1x2x2", "1x1x3x3", "1x1x1x4"}},
    {"conv1d twice", op_conv1d_twice, {"2x3x5;3x3x3;3", "1x1x1;1x1x3;1"}},
};

START_TEST(gradcheck_graph)
{
    const grad_case *c = &grad_cases[_i];
    for (int s = 0; c->shapes[s]; s++) {
        tg_gradcheck_report r;
        tu_probe_gradcheck(c->name, c->op, c, c->shapes[s], s, 0, &r);
    }
}
END_TEST

/* ====== Against PyTorch (tests/conv_ref.h) ====== */

static tg_tensor *filled(tg_dtype dt, const char *shape, double (*f)(int64_t))
{
    tg_tensor *t = tu_random(dt, shape, 0, 1, 1);
    ck_assert_ptr_nonnull(t);
    for (int64_t k = 0; k < tg_tensor_numel(t); k++) tu_put(t, k, f(k));
    return t;
}

static double fx(int64_t k) { return sin(0.37 * (double)k + 0.1); }
static double fw(int64_t k) { return cos(0.53 * (double)k - 0.2); }
static double fb(int64_t k) { return 0.1 * (double)k - 0.2; }
static double fseed(int64_t k) { return cos(0.7 * (double)k + 0.3); }

static void expect_near(const tg_tensor *t, const double *want, double tol, const char *what)
{
    ck_assert_ptr_nonnull(t);
    for (int64_t k = 0; k < tg_tensor_numel(t); k++) {
        double got = tu_at(t, k);
        ck_assert_msg(fabs(got - want[k]) <= tol * fmax(1, fabs(want[k])),
                      "%s %s [%lld]: %.17g, torch %.17g", what,
                      tu_dtype_name(tg_tensor_dtype(t)), (long long)k, got, want[k]);
    }
}

/* Options as stride, padding, dilation (H then W) and groups; zeros take the defaults. */
#define OPTS(sh, sw, ph, pw, dh, dw, g) {{sh, sw}, {ph, pw}, {dh, dw}, g}
#define NOOPTS                          OPTS(0, 0, 0, 0, 0, 0, 0)

typedef struct torch_case {
    const char *name, *x, *w, *b; /* shapes; w NULL for a pool, b NULL without bias */
    int kind;                     /* 0 conv2d, 1 conv1d, 2 max_pool2d, 3 avg_pool2d */
    tg_conv_opts o;
    int kernel[2], stride[2], pad[2];
    const char *y_shape;
    const double *y, *dx, *dw, *db;
} torch_case;

static const torch_case torch_cases[] = {
    {"conv2d_a", "2x2x4x5", "3x2x3x2", "3", 0, OPTS(2, 1, 1, 2, 1, 2, 1), {0}, {0}, {0},
     conv2d_a_y_shape, conv2d_a_y, conv2d_a_dx, conv2d_a_dw, conv2d_a_db},
    {"conv2d_b", "1x4x4x4", "6x2x2x3", NULL, 0, OPTS(1, 1, 0, 1, 2, 1, 2), {0}, {0}, {0},
     conv2d_b_y_shape, conv2d_b_y, conv2d_b_dx, conv2d_b_dw, NULL},
    {"conv2d_c", "2x3x3x3", "4x3x1x1", "4", 0, NOOPTS, {0}, {0}, {0}, conv2d_c_y_shape,
     conv2d_c_y, conv2d_c_dx, conv2d_c_dw, conv2d_c_db},
    {"conv1d_a", "2x2x7", "3x2x3", "3", 1, OPTS(2, 0, 1, 0, 2, 0, 1), {0}, {0}, {0},
     conv1d_a_y_shape, conv1d_a_y, conv1d_a_dx, conv1d_a_dw, conv1d_a_db},
    {"conv1d_b", "1x4x5", "4x1x2", NULL, 1, OPTS(1, 0, 1, 0, 1, 0, 4), {0}, {0}, {0},
     conv1d_b_y_shape, conv1d_b_y, conv1d_b_dx, conv1d_b_dw, NULL},
    {"max_pool_a", "1x2x5x5", NULL, NULL, 2, NOOPTS, {3, 2}, {2, 1}, {1, 1}, max_pool_a_y_shape,
     max_pool_a_y, max_pool_a_dx, NULL, NULL},
    {"avg_pool_a", "2x1x4x5", NULL, NULL, 3, NOOPTS, {2, 3}, {1, 2}, {1, 1}, avg_pool_a_y_shape,
     avg_pool_a_y, avg_pool_a_dx, NULL, NULL},
};

START_TEST(matches_torch)
{
    const torch_case *c = &torch_cases[_i / 2];
    tg_dtype dt = tu_loop_dtype(_i % 2);
    double tol = dt == TG_F64 ? 1e-12 : 1e-5;
    tg_tensor *x = filled(dt, c->x, fx);
    tg_tensor *w = c->w ? filled(dt, c->w, fw) : NULL, *b = c->b ? filled(dt, c->b, fb) : NULL;
    tg_tensor_set_requires_grad(x, true);
    tg_tensor_set_requires_grad(w, true);
    tg_tensor_set_requires_grad(b, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = c->kind == 0   ? tg_conv2d(tp, x, w, b, &c->o)
                   : c->kind == 1 ? tg_conv1d(tp, x, w, b, &c->o)
                   : c->kind == 2 ? tg_max_pool2d(tp, x, c->kernel, c->stride, c->pad)
                                  : tg_avg_pool2d(tp, x, c->kernel, c->stride, c->pad);
    ck_assert_msg(y != NULL, "%s: %s", c->name, tg_tape_error(tp));
    int64_t shape[4];
    int rank = tu_parse_shape(c->y_shape, shape);
    ck_assert_int_eq(tg_tensor_rank(y), rank);
    for (int i = 0; i < rank; i++) ck_assert_int_eq(tg_tensor_shape(y)[i], shape[i]);
    expect_near(y, c->y, tol, c->name);
    tg_tensor *seed = filled(dt, c->y_shape, fseed);
    ck_assert_int_eq(tg_backward_seed(tp, y, seed), TG_OK);
    expect_near(tg_tensor_grad(x), c->dx, tol, "dx");
    if (w) expect_near(tg_tensor_grad(w), c->dw, tol, "dw");
    if (b) expect_near(tg_tensor_grad(b), c->db, tol, "db");
    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_tensor_free(w);
    tg_tensor_free(b);
    tg_tensor_free(seed);
}
END_TEST

/* ====== By hand ====== */

START_TEST(conv2d_by_hand)
{
    tg_dtype dt = tu_loop_dtype(_i);
    tg_tensor *x = tu_lit(dt, "1x1x3x3", (double[]){1, 2, 3, 4, 5, 6, 7, 8, 9});
    tg_tensor *w = tu_lit(dt, "1x1x2x2", (double[]){1, 0, 0, 1}); /* the diagonal's sum */
    tg_tensor *b = tu_lit(dt, "1", (double[]){0.5});
    tg_tensor *g = tu_lit(dt, "1x1x2x2", (double[]){1, 1, 1, 1});
    tg_tensor_set_requires_grad(x, true);
    tg_tensor_set_requires_grad(w, true);
    tg_tensor_set_requires_grad(b, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_conv2d(tp, x, w, b, NULL);
    tu_expect_exact(y, "1x1x2x2", (double[]){6.5, 8.5, 12.5, 14.5}, "x[i,j] + x[i+1,j+1] + b");
    ck_assert_int_eq(tg_backward_seed(tp, y, g), TG_OK);
    tu_expect_exact(tg_tensor_grad(x), "1x1x3x3", (double[]){1, 1, 0, 1, 2, 1, 0, 1, 1}, "dx");
    tu_expect_exact(tg_tensor_grad(w), "1x1x2x2", (double[]){12, 16, 24, 28}, "dw");
    tu_expect_exact(tg_tensor_grad(b), "1", (double[]){4}, "db");
    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_tensor_free(w);
    tg_tensor_free(b);
    tg_tensor_free(g);
}
END_TEST

START_TEST(max_pool_ties_padding_and_nan)
{
    tg_dtype dt = tu_loop_dtype(_i);
    /* Windows [1 3; 3 2], [3 0; 0 0], [0 0; 0 0]: the first maximum of each takes dY. */
    tg_tensor *x = tu_lit(dt, "1x1x2x6", (double[]){1, 3, 3, 0, 0, 0, 3, 2, 0, 0, 0, 0});
    tg_tensor *g = tu_lit(dt, "1x1x1x3", (double[]){1, 10, 100});
    tg_tensor_set_requires_grad(x, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_max_pool2d(tp, x, (int[]){2, 2}, NULL, NULL);
    tu_expect_exact(y, "1x1x1x3", (double[]){3, 3, 0}, "max");
    ck_assert_int_eq(tg_backward_seed(tp, y, g), TG_OK);
    tu_expect_exact(tg_tensor_grad(x), "1x1x2x6", (double[]){0, 1, 10, 0, 100, 0, 0, 0, 0, 0, 0, 0},
                    "dx goes to the first maximum");

    /* Padding counts as -inf: all-negative data keeps its own maxima. */
    tg_tensor *neg = tu_lit(dt, "1x1x2x2", (double[]){-5, -4, -3, -2});
    y = tg_max_pool2d(tp, neg, (int[]){2, 2}, (int[]){2, 2}, (int[]){1, 1});
    tu_expect_exact(y, "1x1x2x2", (double[]){-5, -4, -3, -2}, "max with padding");

    /* NaN wins its window, as in PyTorch. */
    tg_tensor *nan = tu_lit(dt, "1x1x1x2", (double[]){1, NAN});
    y = tg_max_pool2d(tp, nan, (int[]){1, 2}, NULL, NULL);
    ck_assert_ptr_nonnull(y);
    ck_assert(isnan(tg_tensor_item(y)));

    /* The 2x2 stride-2 windows take the general rule (a later element wins
     * when larger or NaN): the last NaN, a lone NaN, a first NaN above
     * numbers, the first of four equal values. */
    tg_tensor *nans = tu_lit(dt, "1x1x2x8",
                             (double[]){NAN, 1, 1, NAN, NAN, 1, 2, 2, 2, NAN, 5, 2, 1, 1, 2, 2});
    tg_tensor *g4 = tu_lit(dt, "1x1x1x4", (double[]){1, 10, 100, 1000});
    tg_tensor_set_requires_grad(nans, true);
    y = tg_max_pool2d(tp, nans, (int[]){2, 2}, NULL, NULL);
    ck_assert_ptr_nonnull(y);
    for (int k = 0; k < 3; k++) ck_assert(isnan(tu_at(y, k)));
    ck_assert(tu_at(y, 3) == 2);
    ck_assert_int_eq(tg_backward_seed(tp, y, g4), TG_OK);
    tu_expect_exact(tg_tensor_grad(nans), "1x1x2x8",
                    (double[]){0, 0, 0, 10, 100, 0, 1000, 0, 0, 1, 0, 0, 0, 0, 0, 0},
                    "dx goes to the window's winner");
    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_tensor_free(g);
    tg_tensor_free(neg);
    tg_tensor_free(nan);
    tg_tensor_free(nans);
    tg_tensor_free(g4);
}
END_TEST

START_TEST(avg_pool_counts_padding)
{
    tg_dtype dt = tu_loop_dtype(_i);
    tg_tensor *x = tu_lit(dt, "1x1x2x2", (double[]){1, 2, 3, 4});
    tg_tensor *g = tu_lit(dt, "1x1x3x3", (double[]){1, 1, 1, 1, 1, 1, 1, 1, 1});
    tg_tensor_set_requires_grad(x, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_avg_pool2d(tp, x, (int[]){2, 2}, (int[]){1, 1}, (int[]){1, 1});
    tu_expect_exact(y, "1x1x3x3", (double[]){0.25, 0.75, 0.5, 1, 2.5, 1.5, 0.75, 1.75, 1},
                    "window sums / 4, padding included");
    ck_assert_int_eq(tg_backward_seed(tp, y, g), TG_OK);
    tu_expect_exact(tg_tensor_grad(x), "1x1x2x2", (double[]){1, 1, 1, 1}, "4 windows x 1/4");
    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_tensor_free(g);
}
END_TEST

START_TEST(f32_bias_gradient_sums_in_double)
{
    /* 1e8 + 1 == 1e8 in float: a float accumulator would lose all sixteen ones. */
    double v[18] = {1e8};
    for (int k = 1; k < 17; k++) v[k] = 1;
    v[17] = -1e8;
    tg_tensor *x = tu_random(TG_F32, "1x1x1x18", -1, 1, 1), *g = tu_lit(TG_F32, "1x1x1x18", v);
    tg_tensor *w = tu_lit(TG_F32, "1x1x1x1", (double[]){1});
    tg_tensor *b = tu_lit(TG_F32, "1", (double[]){0});
    tg_tensor_set_requires_grad(b, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_conv2d(tp, x, w, b, NULL);
    ck_assert_int_eq(tg_backward_seed(tp, y, g), TG_OK);
    tu_expect_exact(tg_tensor_grad(b), "1", (double[]){16}, "db");
    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_tensor_free(g);
    tg_tensor_free(w);
    tg_tensor_free(b);
}
END_TEST

/* ====== A batch in chunks of samples equals each sample alone ====== */

typedef struct batch_case {
    const char *x, *w, *b, *sample; /* the batch, the weights, one sample of x */
    tg_conv_opts opts;
} batch_case;

/* In F64, a sample of [8,26,26] under a 3x3 kernel with 4 filters takes 400 KB
 * of columns and staging, so with the 1 MiB scratch budget the batch of 3
 * runs as a chunk of 2 samples and one of 1; the second case is one chunk of
 * 4 with groups, stride and padding, whose VJP reuses the forward's columns. */
static const batch_case batch_cases[] = {
    {"3x8x26x26", "4x8x3x3", "4", "1x8x26x26", {.padding = {1, 1}}},
    {"4x4x5x6", "6x2x3x2", "6", "1x4x5x6", {.stride = {2, 1}, .padding = {1, 1}, .groups = 2}},
};

/* Elements [off, off + numel(want)) of t against want, to 1e-12 relative. */
static void expect_slice(const tg_tensor *t, int64_t off, const tg_tensor *want, const char *what)
{
    for (int64_t k = 0; k < tg_tensor_numel(want); k++) {
        double a = tu_at(t, off + k), b = tu_at(want, k);
        ck_assert_msg(fabs(a - b) <= 1e-12 * fmax(1, fabs(b)),
                      "%s [%lld]: batch %.17g, alone %.17g", what, (long long)(off + k), a, b);
    }
}

START_TEST(batch_matches_samples_alone)
{
    const batch_case *c = &batch_cases[_i];
    tg_tensor *x = tu_random(TG_F64, c->x, -1, 1, 1), *w = tu_random(TG_F64, c->w, -1, 1, 2);
    tg_tensor *b = tu_random(TG_F64, c->b, -1, 1, 3);
    tg_tensor_set_requires_grad(x, true);
    tg_tensor_set_requires_grad(w, true);
    tg_tensor_set_requires_grad(b, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_conv2d(tp, x, w, b, &c->opts);
    ck_assert_msg(y != NULL, "%s", tg_tape_error(tp));
    tg_tensor *seed = tg_tensor_new(TG_F64, 4, tg_tensor_shape(y));
    ck_assert_ptr_nonnull(seed);
    for (int64_t k = 0; k < tg_tensor_numel(seed); k++) tu_put(seed, k, fseed(k));
    ck_assert_int_eq(tg_backward_seed(tp, y, seed), TG_OK);
    tg_tensor *g1[3], *leaf[] = {x, w, b};
    for (int j = 0; j < 3; j++) /* the first sweep's gradients */
        g1[j] = tg_tensor_from(TG_F64, tg_tensor_rank(leaf[j]), tg_tensor_shape(leaf[j]),
                               tg_tensor_data(tg_tensor_grad(leaf[j])));
    tg_tensor *gx = g1[0], *gw = g1[1], *gb = g1[2];
    /* A second sweep of the same forward gives the same gradients: the VJP
     * must not take the columns it overwrote with dcol for X's. */
    for (int j = 0; j < 3; j++) tg_tensor_zero_grad(leaf[j]);
    ck_assert_int_eq(tg_backward_seed(tp, y, seed), TG_OK);
    for (int j = 0; j < 3; j++)
        for (int64_t k = 0; k < tg_tensor_numel(leaf[j]); k++)
            ck_assert_msg(tu_at(tg_tensor_grad(leaf[j]), k) == tu_at(g1[j], k),
                          "gradient %d [%lld]: second sweep %.17g, first %.17g", j, (long long)k,
                          tu_at(tg_tensor_grad(leaf[j]), k), tu_at(g1[j], k));
    tg_tensor_zero_grad(w);
    tg_tensor_zero_grad(b);
    int64_t n = tg_tensor_shape(x)[0], xn = tg_tensor_numel(x) / n, yn = tg_tensor_numel(y) / n;
    for (int64_t i = 0; i < n; i++) { /* w and b gather the samples' gradients */
        tg_tensor *xi = tu_random(TG_F64, c->sample, -1, 1, 5);
        memcpy(tg_tensor_data(xi), (const double *)tg_tensor_data(x) + i * xn,
               (size_t)xn * sizeof(double));
        tg_tensor_set_requires_grad(xi, true);
        tg_tape *one = tg_tape_new();
        tg_tensor *yi = tg_conv2d(one, xi, w, b, &c->opts);
        ck_assert_msg(yi != NULL, "%s", tg_tape_error(one));
        tg_tensor *si = tg_tensor_from(TG_F64, 4, tg_tensor_shape(yi),
                                       (const double *)tg_tensor_data(seed) + i * yn);
        ck_assert_int_eq(tg_backward_seed(one, yi, si), TG_OK);
        expect_slice(y, i * yn, yi, "y");
        expect_slice(gx, i * xn, tg_tensor_grad(xi), "dx");
        tg_tape_free(one);
        tg_tensor_free(xi);
        tg_tensor_free(si);
    }
    expect_slice(gw, 0, tg_tensor_grad(w), "dw");
    expect_slice(gb, 0, tg_tensor_grad(b), "db");
    tg_tape_free(tp);
    tg_tensor *all[] = {x, w, b, seed, gx, gw, gb};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) tg_tensor_free(all[i]);
}
END_TEST

/* ====== Replay: new data in x, the same values and gradients as a fresh recording ====== */

/* A small CNN on x [2,2,6,6] and a 1-D convolution on s [2,3,7], as one loss. */
static tg_tensor *small_cnn(tg_tape *tp, tg_tensor *x, tg_tensor *s, tg_tensor *const *p)
{
    tg_conv_opts pad1 = {.padding = {1, 1}};
    tg_tensor *h = tg_relu(tp, tg_conv2d(tp, x, p[0], p[1], &pad1));
    h = tg_max_pool2d(tp, h, (int[]){2, 2}, NULL, NULL);
    h = tg_conv2d(tp, h, p[2], NULL, &(tg_conv_opts){.stride = {1, 2}, .groups = 2});
    h = tg_avg_pool2d(tp, h, (int[]){2, 1}, (int[]){1, 1}, NULL);
    tg_tensor *q = tg_conv1d(tp, s, p[3], p[4], &(tg_conv_opts){.padding = {2}, .dilation = {2}});
    return tg_add(tp, tg_sum(tp, tg_square(tp, h)), tg_sum(tp, tg_square(tp, q)));
}

#define N_PARAMS 5

START_TEST(replay_matches_fresh_recording)
{
    tg_dtype dt = tu_loop_dtype(_i);
    size_t es = dt == TG_F64 ? 8 : 4;
    tg_tensor *x = tu_random(dt, "2x2x6x6", -1, 1, 1), *x2 = tu_random(dt, "2x2x6x6", -1, 1, 2);
    tg_tensor *s = tu_random(dt, "2x3x7", -1, 1, 3), *s2 = tu_random(dt, "2x3x7", -1, 1, 4);
    tg_tensor *p[N_PARAMS] = {tu_random(dt, "4x2x3x3", -1, 1, 5), tu_random(dt, "4", -1, 1, 6),
                              tu_random(dt, "4x2x2x2", -1, 1, 7), tu_random(dt, "2x3x3", -1, 1, 8),
                              tu_random(dt, "2", -1, 1, 9)};
    tg_tensor *replayed[N_PARAMS];
    for (int i = 0; i < N_PARAMS; i++) tg_tensor_set_requires_grad(p[i], true);
    tg_tape *tp = tg_tape_new(), *fresh = tg_tape_new();
    tg_tensor *loss = small_cnn(tp, x, s, p);
    ck_assert_msg(loss != NULL, "%s", tg_tape_error(tp));
    memcpy(tg_tensor_data(x), tg_tensor_data(x2), (size_t)tg_tensor_numel(x) * es);
    memcpy(tg_tensor_data(s), tg_tensor_data(s2), (size_t)tg_tensor_numel(s) * es);
    ck_assert_int_eq(tg_tape_replay(tp), TG_OK);
    ck_assert_int_eq(tg_backward(tp, loss), TG_OK);
    for (int i = 0; i < N_PARAMS; i++) { /* keep the replayed gradients, then start afresh */
        replayed[i] = tg_tensor_from(dt, tg_tensor_rank(p[i]), tg_tensor_shape(p[i]),
                                     tg_tensor_data(tg_tensor_grad(p[i])));
        tg_tensor_zero_grad(p[i]);
    }
    tg_tensor *want = small_cnn(fresh, x2, s2, p);
    ck_assert_int_eq(tg_backward(fresh, want), TG_OK);
    ck_assert_msg(tg_tensor_item(loss) == tg_tensor_item(want), "loss: replay %.17g, fresh %.17g",
                  tg_tensor_item(loss), tg_tensor_item(want));
    for (int i = 0; i < N_PARAMS; i++)
        for (int64_t k = 0; k < tg_tensor_numel(p[i]); k++)
            ck_assert_msg(tu_at(replayed[i], k) == tu_at(tg_tensor_grad(p[i]), k),
                          "grad %d [%lld]: replay %.17g, fresh %.17g", i, (long long)k,
                          tu_at(replayed[i], k), tu_at(tg_tensor_grad(p[i]), k));
    tg_tape_free(tp);
    tg_tape_free(fresh);
    tg_tensor_free(x);
    tg_tensor_free(x2);
    tg_tensor_free(s);
    tg_tensor_free(s2);
    for (int i = 0; i < N_PARAMS; i++) {
        tg_tensor_free(p[i]);
        tg_tensor_free(replayed[i]);
    }
}
END_TEST

/* ====== Second order: the recorded VJPs (vjp_graph) ====== */

typedef struct second_case {
    bool one_d;
    const char *x, *w, *b; /* b NULL: no bias */
    tg_conv_opts o;
} second_case;

/* The first runs in chunks of 2 and 1 samples in F64 (see batch_cases). */
static const second_case second_cases[] = {
    {false, "3x8x26x26", "4x8x3x3", "4", {.padding = {1, 1}}},
    {false, "4x4x5x6", "6x2x3x2", "6", {.stride = {2, 1}, .padding = {1, 1}, .groups = 2}},
    {false, "2x4x7x6", "4x2x3x2", NULL,
     {.stride = {2, 2}, .padding = {1, 1}, .dilation = {2, 2}, .groups = 2}},
    {true, "2x4x9", "6x2x3", "6", {.stride = {2}, .padding = {1}, .dilation = {2}, .groups = 2}},
};

static tg_tensor *conv_of(tg_tape *tp, const second_case *c, tg_tensor *x, tg_tensor *w,
                          tg_tensor *b)
{
    return c->one_d ? tg_conv1d(tp, x, w, b, &c->o) : tg_conv2d(tp, x, w, b, &c->o);
}

static void expect_same_bits(const tg_tensor *a, const tg_tensor *b, const char *what)
{
    ck_assert_msg(a && b, "%s missing", what);
    ck_assert_int_eq(tg_tensor_numel(a), tg_tensor_numel(b));
    for (int64_t k = 0; k < tg_tensor_numel(a); k++)
        ck_assert_msg(tu_at(a, k) == tu_at(b, k), "%s [%lld]: %.17g, want %.17g", what,
                      (long long)k, tu_at(a, k), tu_at(b, k));
}

/* dG/dx, dG/dw and dG/db recorded (create_graph) equal the fused VJP's bit for
 * bit. Then the Hessian-vector product of L = <r, conv(x, w) + b> in the
 * direction (u, v): L is bilinear, so it is conv_dx(r, v) for x and
 * conv_dw(u, r) for w, the first-order gradients of <r, conv(x, v)> by x and
 * of <r, conv(u, w)> by w, again to the bit. */
START_TEST(recorded_gradient_has_the_fused_bits)
{
    const second_case *c = &second_cases[_i / 2];
    tg_dtype dt = tu_loop_dtype(_i % 2);
    tg_tensor *x = tu_random(dt, c->x, -1, 1, 1), *w = tu_random(dt, c->w, -1, 1, 2);
    tg_tensor *b = c->b ? tu_random(dt, c->b, -1, 1, 3) : NULL;
    tg_tensor *u = tu_random(dt, c->x, -1, 1, 4), *v = tu_random(dt, c->w, -1, 1, 5);
    tg_tensor *wrt[3] = {x, w, b}, *fused[3], *rec[3], *hv[2], *want_x, *want_w;
    int n = b ? 3 : 2;
    for (int j = 0; j < n; j++) tg_tensor_set_requires_grad(wrt[j], true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = conv_of(tp, c, x, w, b);
    ck_assert_msg(y != NULL, "%s", tg_tape_error(tp));
    tg_tensor *r = tg_tensor_new(dt, tg_tensor_rank(y), tg_tensor_shape(y));
    for (int64_t k = 0; k < tg_tensor_numel(r); k++) tu_put(r, k, fseed(k));
    ck_assert_int_eq(tg_grad(tp, y, r, wrt, n, fused, false), TG_OK);
    ck_assert_int_eq(tg_grad(tp, y, r, wrt, n, rec, true), TG_OK);
    const char *names[3] = {"dx", "dw", "db"};
    for (int j = 0; j < n; j++) expect_same_bits(rec[j], fused[j], names[j]);
    tg_tensor *h = tg_add(tp, tg_sum(tp, tg_mul(tp, rec[0], u)), tg_sum(tp, tg_mul(tp, rec[1], v)));
    ck_assert_int_eq(tg_grad(tp, h, NULL, wrt, 2, hv, false), TG_OK);
    tg_tape *ref = tg_tape_new();
    ck_assert_int_eq(tg_grad(ref, conv_of(ref, c, x, v, NULL), r, &x, 1, &want_x, false), TG_OK);
    ck_assert_int_eq(tg_grad(ref, conv_of(ref, c, u, w, NULL), r, &w, 1, &want_w, false), TG_OK);
    expect_same_bits(hv[0], want_x, "Hx = conv_dx(r, v)");
    expect_same_bits(hv[1], want_w, "Hw = conv_dw(u, r)");
    tg_tape_free(tp);
    tg_tape_free(ref);
    tg_tensor *all[] = {x, w, b, u, v, r};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) tg_tensor_free(all[i]);
}
END_TEST

/* f = Σ c ⊙ pool(x)² on 2x2 windows of stride 2, and its Hessian-vector
 * product H u recorded (tg_grad with create_graph, twice). For max pooling
 * H u = scatter(2 c ⊙ u at the argmax): 2 c_k u[a_k] at the maximum a_k of
 * window k, 0 elsewhere; after new data moves the maxima, a replay moves
 * them too. For average pooling H u = 2 c_k (Σ_window u) / 16 over window k. */
static void pool_hvp(tg_dtype dt, bool max, const double *xv, const double *want)
{
    static const double cv[4] = {1, 2, 3, 4};
    tg_tensor *x = tu_lit(dt, "1x1x4x4", xv), *c = tu_lit(dt, "1x1x2x2", cv);
    tg_tensor *u = tg_tensor_new(dt, 4, (int64_t[]){1, 1, 4, 4}), *g, *hu;
    for (int k = 0; k < 16; k++) tu_put(u, k, k + 1);
    tg_tensor_set_requires_grad(x, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = max ? tg_max_pool2d(tp, x, (int[]){2, 2}, NULL, NULL)
                       : tg_avg_pool2d(tp, x, (int[]){2, 2}, NULL, NULL);
    tg_tensor *f = tg_sum(tp, tg_mul(tp, tg_mul(tp, y, y), c));
    ck_assert_int_eq(tg_grad(tp, f, NULL, &x, 1, &g, true), TG_OK);
    ck_assert_int_eq(tg_grad(tp, tg_sum(tp, tg_mul(tp, g, u)), NULL, &x, 1, &hu, true), TG_OK);
    tu_expect_exact(hu, "1x1x4x4", want, max ? "max_pool H u" : "avg_pool H u");
    if (max) { /* -x has each window's maximum where x had its minimum */
        for (int k = 0; k < 16; k++) tu_put(x, k, -xv[k]);
        ck_assert_int_eq(tg_tape_replay(tp), TG_OK);
        double moved[16] = {0};
        moved[0] = 2 * 1 * 1, moved[2] = 2 * 2 * 3, moved[8] = 2 * 3 * 9, moved[10] = 2 * 4 * 11;
        tu_expect_exact(hu, "1x1x4x4", moved, "max_pool H u after replay");
    }
    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_tensor_free(c);
    tg_tensor_free(u);
}

START_TEST(pool_hessian_vector_products)
{
    tg_dtype dt = tu_loop_dtype(_i);
    /* Each window's maximum is its bottom-right element: 5, 7, 13, 15. */
    static const double xv[16] = {1, 2, 5, 6, 3, 4, 7, 8, 9, 10, 13, 14, 11, 12, 15, 16};
    double want[16] = {0};
    want[5] = 2 * 1 * 6, want[7] = 2 * 2 * 8, want[13] = 2 * 3 * 14, want[15] = 2 * 4 * 16;
    pool_hvp(dt, true, xv, want);
    /* Window sums of u (1..16 row-major): 14, 22, 46, 54. */
    static const double avg[16] = {14. / 8,  14. / 8,  44. / 8,  44. / 8,  14. / 8,  14. / 8,
                                   44. / 8,  44. / 8,  138. / 8, 138. / 8, 216. / 8, 216. / 8,
                                   138. / 8, 138. / 8, 216. / 8, 216. / 8};
    pool_hvp(dt, false, xv, avg);
}
END_TEST

/* A convolution, a max pool and an average pool, Σ q ⊙ q ⊙ c: its
 * Hessian-vector product recorded, then replayed on new x, equals a fresh
 * recording bit for bit (the argmax and the columns are those of the replay). */
static tg_tensor *cnn_hvp(tg_tape *tp, tg_tensor *const *p, tg_tensor *const *u, tg_tensor *c,
                          tg_tensor **hv)
{
    tg_tensor *q = tg_conv2d(tp, p[0], p[1], p[2], &(tg_conv_opts){.padding = {1, 1}});
    q = tg_max_pool2d(tp, q, (int[]){2, 2}, (int[]){1, 1}, NULL);
    q = tg_avg_pool2d(tp, q, (int[]){2, 2}, NULL, (int[]){1, 1});
    tg_tensor *f = tg_sum(tp, tg_mul(tp, tg_mul(tp, q, q), c)), *g[3], *h = NULL;
    ck_assert_int_eq(tg_grad(tp, f, NULL, p, 3, g, true), TG_OK);
    for (int j = 0; j < 3; j++) {
        tg_tensor *term = tg_sum(tp, tg_mul(tp, g[j], u[j]));
        h = h ? tg_add(tp, h, term) : term;
    }
    ck_assert_int_eq(tg_grad(tp, h, NULL, p, 3, hv, true), TG_OK);
    return f;
}

START_TEST(recorded_hvp_replays)
{
    tg_dtype dt = tu_loop_dtype(_i);
    size_t es = dt == TG_F64 ? 8 : 4;
    const char *shapes[3] = {"2x2x5x5", "3x2x3x3", "3"};
    tg_tensor *p[3], *u[3], *hv[3], *hv2[3];
    for (int j = 0; j < 3; j++) {
        p[j] = tu_random(dt, shapes[j], -1, 1, 1 + (uint64_t)j);
        u[j] = tu_random(dt, shapes[j], -1, 1, 4 + (uint64_t)j);
        tg_tensor_set_requires_grad(p[j], true);
    }
    tg_tensor *c = tu_random(dt, "2x3x3x3", -1, 1, 7), *x2 = tu_random(dt, "2x2x5x5", -1, 1, 8);
    tg_tape *tp = tg_tape_new(), *fresh = tg_tape_new();
    cnn_hvp(tp, p, u, c, hv);
    memcpy(tg_tensor_data(p[0]), tg_tensor_data(x2), (size_t)tg_tensor_numel(x2) * es);
    ck_assert_int_eq(tg_tape_replay(tp), TG_OK);
    cnn_hvp(fresh, p, u, c, hv2);
    const char *names[3] = {"Hx", "Hw", "Hb"};
    for (int j = 0; j < 3; j++) expect_same_bits(hv[j], hv2[j], names[j]);
    tg_tape_free(tp);
    tg_tape_free(fresh);
    for (int j = 0; j < 3; j++) tg_tensor_free(p[j]), tg_tensor_free(u[j]);
    tg_tensor_free(c);
    tg_tensor_free(x2);
}
END_TEST

/* Third order: tg_gradgradcheck of <∇f, r>, a first derivative recorded with
 * create_graph, checks the derivatives of the recorded VJPs themselves (conv_dx,
 * conv_dw, conv_db, scatter and gather at the argmax, avg_pool2d_dx). f = Σ q³. */
typedef struct third_ctx {
    int kind; /* 0: conv2d, max_pool2d, avg_pool2d; 1: conv1d */
    tg_tensor *r[3];
} third_ctx;

static tg_tensor *grad_dot(tg_tape *tp, tg_tensor *const *in, void *ctx)
{
    const third_ctx *t = ctx;
    tg_tensor *q;
    if (t->kind == 0) {
        q = tg_conv2d(tp, in[0], in[1], in[2], &(tg_conv_opts){.stride = {1, 2}, .padding = {1, 0}});
        q = tg_max_pool2d(tp, q, (int[]){2, 2}, (int[]){1, 1}, NULL);
        q = tg_avg_pool2d(tp, q, (int[]){2, 2}, (int[]){1, 1}, (int[]){1, 1});
    } else {
        q = tg_conv1d(tp, in[0], in[1], in[2], &(tg_conv_opts){.padding = {1}, .groups = 2});
    }
    tg_tensor *g[3], *h = NULL;
    if (tg_grad(tp, tg_sum(tp, tg_mul(tp, tg_mul(tp, q, q), q)), NULL, in, 3, g, true)) return NULL;
    for (int j = 0; j < 3; j++) {
        tg_tensor *term = tg_sum(tp, tg_mul(tp, g[j], t->r[j]));
        h = h ? tg_add(tp, h, term) : term;
    }
    return h;
}

START_TEST(third_order_gradgradcheck)
{
    static const char *const shapes[2][3] = {{"1x2x4x5", "2x2x2x2", "2"}, {"2x2x5", "4x1x3", "4"}};
    third_ctx t = {.kind = _i};
    tg_tensor *in[3];
    for (int j = 0; j < 3; j++) {
        in[j] = tu_random(TG_F64, shapes[_i][j], -1, 1, 10 + (uint64_t)j);
        t.r[j] = tu_random(TG_F64, shapes[_i][j], -1, 1, 20 + (uint64_t)j);
        tg_tensor_set_requires_grad(in[j], true);
    }
    tg_gradcheck_report r;
    ck_assert_int_eq(tg_gradgradcheck(grad_dot, in, 3, &t, NULL, &r), TG_OK);
    ck_assert_msg(r.passed, "%s", r.msg);
    ck_assert_int_gt(r.n_checked, 0);
    for (int j = 0; j < 3; j++) tg_tensor_free(in[j]), tg_tensor_free(t.r[j]);
}
END_TEST

/* ====== Errors: status and exact message; the tape stays failed ====== */

typedef struct err_case {
    int kind; /* 0 conv2d, 1 conv1d, 2 max_pool2d, 3 avg_pool2d */
    const char *x, *w, *b; /* shapes; NULL passes NULL */
    tg_dtype dx, dw;
    bool null_opts;
    tg_conv_opts o;
    const int *kernel, *stride, *pad;
    tg_status want;
    const char *msg;
} err_case;

#define F64 TG_F64
#define F32 TG_F32
#define I64 TG_I64
#define K(a, b) ((const int[]){a, b})
static const err_case err_cases[] = {
    {0, NULL, "1x1x1x1", NULL, F64, F64, true, NOOPTS, 0, 0, 0, TG_ERR_ARG,
     "conv2d: input 0 is NULL"},
    {0, "1x1x3x3", NULL, NULL, F64, F64, true, NOOPTS, 0, 0, 0, TG_ERR_ARG,
     "conv2d: input 1 is NULL"},
    {0, "1x1x3x3", "1x1x2x2", NULL, F64, F64, false, OPTS(-1, 1, 0, 0, 0, 0, 0), 0, 0, 0,
     TG_ERR_ARG,
     "conv2d: options must not be negative: stride -1x1, padding 0x0, dilation 0x0, groups 0"},
    {0, "1x1x3x3", "1x1x2x2", NULL, F64, F64, false, OPTS(0, 0, 0, -2, 0, 0, 0), 0, 0, 0,
     TG_ERR_ARG,
     "conv2d: options must not be negative: stride 0x0, padding 0x-2, dilation 0x0, groups 0"},
    {0, "1x1x3x3", "1x1x2x2", NULL, F64, F64, false, OPTS(0, 0, 0, 0, 0, 0, -1), 0, 0, 0,
     TG_ERR_ARG,
     "conv2d: options must not be negative: stride 0x0, padding 0x0, dilation 0x0, groups -1"},
    {1, "1x1x3", "1x1x2", NULL, F64, F64, false, OPTS(0, 0, 0, 0, -3, 0, 0), 0, 0, 0, TG_ERR_ARG,
     "conv1d: options must not be negative: stride 0, padding 0, dilation -3, groups 0"},
    {0, "1x3x3", "1x1x2x2", NULL, F64, F64, true, NOOPTS, 0, 0, 0, TG_ERR_SHAPE,
     "conv2d: needs x [N,C,H,W], w [O,C/groups,KH,KW] and b [O] or NULL: x [1x3x3], w "
     "[1x1x2x2], b NULL"},
    {0, "1x1x3x3", "1x1x2", NULL, F64, F64, true, NOOPTS, 0, 0, 0, TG_ERR_SHAPE,
     "conv2d: needs x [N,C,H,W], w [O,C/groups,KH,KW] and b [O] or NULL: x [1x1x3x3], w "
     "[1x1x2], b NULL"},
    {0, "1x1x3x3", "2x1x2x2", "3", F64, F64, true, NOOPTS, 0, 0, 0, TG_ERR_SHAPE,
     "conv2d: needs x [N,C,H,W], w [O,C/groups,KH,KW] and b [O] or NULL: x [1x1x3x3], w "
     "[2x1x2x2], b [3]"},
    {1, "1x1x3x3", "1x1x2", NULL, F64, F64, true, NOOPTS, 0, 0, 0, TG_ERR_SHAPE,
     "conv1d: needs x [N,C,L], w [O,C/groups,K] and b [O] or NULL: x [1x1x3x3], w [1x1x2], b "
     "NULL"},
    {0, "1x3x3x3", "2x1x2x2", NULL, F64, F64, false, OPTS(0, 0, 0, 0, 0, 0, 2), 0, 0, 0,
     TG_ERR_SHAPE,
     "conv2d: groups 2 must divide C = 3 and O = 2: x [1x3x3x3], w [2x1x2x2], b NULL"},
    {0, "1x4x3x3", "3x2x2x2", NULL, F64, F64, false, OPTS(0, 0, 0, 0, 0, 0, 2), 0, 0, 0,
     TG_ERR_SHAPE,
     "conv2d: groups 2 must divide C = 4 and O = 3: x [1x4x3x3], w [3x2x2x2], b NULL"},
    {0, "1x4x3x3", "2x4x2x2", NULL, F64, F64, false, OPTS(0, 0, 0, 0, 0, 0, 2), 0, 0, 0,
     TG_ERR_SHAPE,
     "conv2d: w must have C/groups = 2 input channels: x [1x4x3x3], w [2x4x2x2], b NULL"},
    {0, "1x1x3x3", "1x1x0x2", NULL, F64, F64, true, NOOPTS, 0, 0, 0, TG_ERR_SHAPE,
     "conv2d: the kernel is empty: x [1x1x3x3], w [1x1x0x2], b NULL"},
    {0, "1x1x3x3", "1x1x4x2", NULL, F64, F64, true, NOOPTS, 0, 0, 0, TG_ERR_SHAPE,
     "conv2d: the output would be empty (0x2) with stride 1x1, padding 0x0, dilation 1x1: "
     "x [1x1x3x3], w [1x1x4x2], b NULL"},
    {0, "1x1x5x5", "1x1x3x3", NULL, F64, F64, false, OPTS(0, 0, 0, 0, 3, 1, 0), 0, 0, 0,
     TG_ERR_SHAPE,
     "conv2d: the output would be empty (0x3) with stride 1x1, padding 0x0, dilation 3x1: "
     "x [1x1x5x5], w [1x1x3x3], b NULL"},
    {1, "2x1x0", "1x1x2", NULL, F64, F64, true, NOOPTS, 0, 0, 0, TG_ERR_SHAPE,
     "conv1d: the output would be empty (0) with stride 1, padding 0, dilation 1: x [2x1x0], w "
     "[1x1x2], b NULL"},
    {0, "4611686018427387904x0x1x1", "2x0x1x1", NULL, F64, F64, true, NOOPTS, 0, 0, 0,
     TG_ERR_SHAPE,
     "conv2d: the output would be too large: x [4611686018427387904x0x1x1], w [2x0x1x1], b NULL"},
    {0, "1x1x3x3", "1x1x2x2", NULL, F32, F64, true, NOOPTS, 0, 0, 0, TG_ERR_DTYPE,
     "conv2d: inputs differ in dtype: f32 [1x1x3x3] and f64 [1x1x2x2]"},
    {0, "1x1x3x3", "1x1x2x2", NULL, I64, I64, true, NOOPTS, 0, 0, 0, TG_ERR_DTYPE,
     "conv2d: input 0 [1x1x3x3] is i64; this op takes f32 or f64 there"},
    {2, "1x1x3x3", NULL, NULL, F64, F64, true, NOOPTS, NULL, NULL, NULL, TG_ERR_ARG,
     "max_pool2d: kernel is NULL (x [1x1x3x3])"},
    {2, NULL, NULL, NULL, F64, F64, true, NOOPTS, K(2, 2), NULL, NULL, TG_ERR_ARG,
     "max_pool2d: input 0 is NULL"},
    {2, "1x1x3x3", NULL, NULL, F64, F64, true, NOOPTS, K(0, 2), NULL, NULL, TG_ERR_ARG,
     "max_pool2d: needs kernel >= 1, stride >= 1 and 0 <= padding <= kernel/2: kernel 0x2, "
     "stride 0x2, padding 0x0 (x [1x1x3x3])"},
    {3, "1x1x3x3", NULL, NULL, F64, F64, true, NOOPTS, K(2, 2), K(1, 0), NULL, TG_ERR_ARG,
     "avg_pool2d: needs kernel >= 1, stride >= 1 and 0 <= padding <= kernel/2: kernel 2x2, "
     "stride 1x0, padding 0x0 (x [1x1x3x3])"},
    {2, "1x1x3x3", NULL, NULL, F64, F64, true, NOOPTS, K(3, 3), NULL, K(2, 1), TG_ERR_ARG,
     "max_pool2d: needs kernel >= 1, stride >= 1 and 0 <= padding <= kernel/2: kernel 3x3, "
     "stride 3x3, padding 2x1 (x [1x1x3x3])"},
    {3, "1x1x3x3", NULL, NULL, F64, F64, true, NOOPTS, K(2, 2), NULL, K(-1, 0), TG_ERR_ARG,
     "avg_pool2d: needs kernel >= 1, stride >= 1 and 0 <= padding <= kernel/2: kernel 2x2, "
     "stride 2x2, padding -1x0 (x [1x1x3x3])"},
    {2, "3x3x3", NULL, NULL, F64, F64, true, NOOPTS, K(2, 2), NULL, NULL, TG_ERR_SHAPE,
     "max_pool2d: needs x [N,C,H,W] with H, W >= 1, got [3x3x3]"},
    {3, "1x1x0x2", NULL, NULL, F64, F64, true, NOOPTS, K(2, 2), NULL, K(1, 1), TG_ERR_SHAPE,
     "avg_pool2d: needs x [N,C,H,W] with H, W >= 1, got [1x1x0x2]"},
    {2, "0x1x1x9223372036854775807", NULL, NULL, F64, F64, true, NOOPTS, K(2, 2), K(1, 1),
     K(0, 1), TG_ERR_SHAPE,
     "max_pool2d: the output would be too large: x [0x1x1x9223372036854775807]"},
    {0, "0x1x1x9223372036854775807", "1x1x1x1", NULL, F64, F64, false,
     OPTS(0, 0, 0, 1, 0, 0, 0), 0, 0, 0, TG_ERR_SHAPE,
     "conv2d: the output would be too large: x [0x1x1x9223372036854775807], w [1x1x1x1], b NULL"},
    {3, "1x1x1x3", NULL, NULL, F64, F64, true, NOOPTS, K(2, 2), NULL, NULL, TG_ERR_SHAPE,
     "avg_pool2d: the output would be empty (0x1) with kernel 2x2, stride 2x2, padding 0x0: x "
     "[1x1x1x3]"},
    {2, "1x1x3x3", NULL, NULL, I64, F64, true, NOOPTS, K(2, 2), NULL, NULL, TG_ERR_DTYPE,
     "max_pool2d: input 0 [1x1x3x3] is i64; this op takes f32 or f64 there"},
};
#undef F64
#undef F32
#undef I64

START_TEST(bad_input_fails_with_message)
{
    const err_case *c = &err_cases[_i];
    tg_tensor *x = tu_operand(c->x, c->dx, 1), *w = tu_operand(c->w, c->dw, 2);
    tg_tensor *b = tu_operand(c->b, c->dw, 3), *ok = tu_operand("1x1x2x2", TG_F64, 4);
    const tg_conv_opts *o = c->null_opts ? NULL : &c->o;
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = c->kind == 0   ? tg_conv2d(tp, x, w, b, o)
                   : c->kind == 1 ? tg_conv1d(tp, x, w, b, o)
                   : c->kind == 2 ? tg_max_pool2d(tp, x, c->kernel, c->stride, c->pad)
                                  : tg_avg_pool2d(tp, x, c->kernel, c->stride, c->pad);
    ck_assert_ptr_null(y);
    tu_expect_failed(tp, c->want, c->msg, _i);
    ck_assert_ptr_null(tg_max_pool2d(tp, ok, (int[]){2, 2}, NULL, NULL));
    tu_expect_still_failed(tp, c->want, c->msg);
    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_tensor_free(w);
    tg_tensor_free(b);
    tg_tensor_free(ok);
}
END_TEST

START_TEST(null_tape_returns_null)
{
    tg_tensor *x = tu_operand("1x1x2x2", TG_F64, 1), *x1 = tu_operand("1x1x2", TG_F64, 2);
    ck_assert_ptr_null(tg_conv2d(NULL, x, x, NULL, NULL));
    ck_assert_ptr_null(tg_conv1d(NULL, x1, x1, NULL, NULL));
    ck_assert_ptr_null(tg_max_pool2d(NULL, x, (int[]){1, 1}, NULL, NULL));
    ck_assert_ptr_null(tg_avg_pool2d(NULL, x, (int[]){1, 1}, NULL, NULL));
    tg_tensor_free(x);
    tg_tensor_free(x1);
}
END_TEST

static Suite *conv_suite(void)
{
    Suite *s = suite_create("ops_conv");
    TCase *tc = tcase_create("gradcheck");
    tcase_add_loop_test(tc, gradcheck_graph, 0, sizeof grad_cases / sizeof *grad_cases);
    suite_add_tcase(s, tc);

    tc = tcase_create("values");
    tcase_add_loop_test(tc, matches_torch, 0, 2 * (int)(sizeof torch_cases / sizeof *torch_cases));
    tcase_add_loop_test(tc, conv2d_by_hand, 0, 2); /* F64, F32 */
    tcase_add_loop_test(tc, max_pool_ties_padding_and_nan, 0, 2);
    tcase_add_loop_test(tc, avg_pool_counts_padding, 0, 2);
    tcase_add_test(tc, f32_bias_gradient_sums_in_double);
    tcase_add_loop_test(tc, replay_matches_fresh_recording, 0, 2);
    tcase_add_loop_test(tc, batch_matches_samples_alone, 0,
                        sizeof batch_cases / sizeof *batch_cases);
    suite_add_tcase(s, tc);

    tc = tcase_create("second_order");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, recorded_gradient_has_the_fused_bits, 0,
                        2 * (int)(sizeof second_cases / sizeof *second_cases));
    tcase_add_loop_test(tc, pool_hessian_vector_products, 0, 2);
    tcase_add_loop_test(tc, recorded_hvp_replays, 0, 2);
    tcase_add_loop_test(tc, third_order_gradgradcheck, 0, 2);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_loop_test(tc, bad_input_fails_with_message, 0, sizeof err_cases / sizeof *err_cases);
    tcase_add_test(tc, null_tape_returns_null);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run(conv_suite()); }
