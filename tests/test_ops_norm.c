/*
 * Normalisation and dropout: layer_norm, batch_norm in training and eval
 * mode, dropout. Every VJP is gradchecked in F64 from the op list
 * (test_ops_list.c), batch_norm with running statistics here too; values are
 * checked exactly where the numbers are chosen to be binary-exact, and
 * against PyTorch (tests/norm_reference.h, written by
 * tools/norm_reference.py) elsewhere. Replay must equal a fresh recording,
 * running statistics must move once per forward and dropout must draw a fresh
 * mask per forward, reproducibly from the seed. The train/eval pattern (one
 * training tape and one eval tape sharing the parameters and the running
 * statistics) is exercised as a user would write it.
 */
#include "testutil.h"

#include "norm_reference.h"
#include "oplist.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_OF(a) (int64_t)(sizeof(a) / sizeof *(a))

/* A leaf of dtype dt from a shape string: zeros for I64, uniform in [-1, 1) otherwise. */
static tg_tensor *make(const char *shape, tg_dtype dt, uint64_t seed)
{
    if (!shape) return NULL;
    if (dt != TG_I64) return tu_operand(shape, dt, seed);
    int64_t s[TG_MAX_RANK];
    int rank = tu_parse_shape(shape, s);
    tg_tensor *t = tg_tensor_new(TG_I64, rank, s);
    ck_assert_ptr_nonnull(t);
    return t;
}

/* Asserts |t[k] - want[k]| <= tol max(1, |want[k]|) for the n elements of t. */
static void expect_near(const tg_tensor *t, const double *want, int64_t n, double tol,
                        const char *what)
{
    ck_assert_msg(t != NULL, "%s: no tensor", what);
    ck_assert_msg(tg_tensor_numel(t) == n, "%s: %lld elements, want %lld", what,
                  (long long)tg_tensor_numel(t), (long long)n);
    for (int64_t k = 0; k < n; k++)
        ck_assert_msg(fabs(tu_at(t, k) - want[k]) <= tol * fmax(1.0, fabs(want[k])),
                      "%s %s [%lld]: %.17g, want %.17g", what,
                      tu_dtype_name(tg_tensor_dtype(t)), (long long)k, tu_at(t, k), want[k]);
}

/* Asserts that a and b hold the same bits. */
static void expect_same(const tg_tensor *a, const tg_tensor *b, const char *what)
{
    ck_assert_msg(a && b, "%s: missing tensor", what);
    ck_assert_int_eq(tg_tensor_numel(a), tg_tensor_numel(b));
    size_t bytes = (size_t)tg_tensor_numel(a) * (tg_tensor_dtype(a) == TG_F64 ? 8 : 4);
    ck_assert_msg(memcmp(tg_tensor_cdata(a), tg_tensor_cdata(b), bytes) == 0, "%s differ", what);
}

/* A new leaf holding t's shape, dtype and data. */
static tg_tensor *copy_of(const tg_tensor *t)
{
    ck_assert_ptr_nonnull(t);
    tg_tensor *c = tg_tensor_from(tg_tensor_dtype(t), tg_tensor_rank(t), tg_tensor_shape(t),
                                  tg_tensor_cdata(t));
    ck_assert_ptr_nonnull(c);
    return c;
}

/* Copies numel(t) doubles from v into t, rounded to its dtype. */
static void fill(tg_tensor *t, const double *v)
{
    for (int64_t k = 0; k < tg_tensor_numel(t); k++) tu_put(t, k, v[k]);
}

/* ====== Gradient check with running statistics ======
 * The op list (tests/oplist.h, run by test_ops_list.c) gradchecks every
 * configuration in F64. Its training rows pass no running statistics; here
 * they are given, and updated at every replay gradcheck makes, which must
 * not move the output or the gradient. */

static tg_tensor *rm_g, *rv_g; /* the running statistics the op below updates */

static tg_tensor *bn_with_stats(tg_tape *tp, tg_tensor *const *in, const void *row)
{
    (void)row;
    return tg_batch_norm(tp, in[0], in[1], in[2], rm_g, rv_g, true, 0.1, 1e-5);
}

START_TEST(gradcheck_with_running_statistics)
{
    const char *shapes[][2] = {{"4x3;3;3", "3"}, {"2x3x2x2;3;3", "3"}, {"2x1x3;1;1", "1"}};
    for (int s = 0; s < 3; s++) {
        rm_g = tu_random(TG_F64, shapes[s][1], -0.5, 0.5, 11);
        rv_g = tu_random(TG_F64, shapes[s][1], 0.5, 1.5, 12);
        double rm0 = tu_at(rm_g, 0);
        tg_gradcheck_report r;
        tu_probe_gradcheck("batch_norm with running statistics", bn_with_stats, NULL,
                           shapes[s][0], s, 0, &r);
        ck_assert_int_gt(r.n_checked, 0);
        ck_assert(tu_at(rm_g, 0) != rm0); /* updated, once per forward */
        tg_tensor_free(rm_g);
        tg_tensor_free(rv_g);
    }
}
END_TEST

/* ====== Values by hand: numbers whose results are exact in binary (F64, then F32) ====== */

START_TEST(layer_norm_by_hand)
{
    /* Row 0 has mean 2, var 4, rstd 1/2; row 1 mean 2, var 1, rstd 1 (eps 0). */
    tg_dtype dt = tu_loop_dtype(_i);
    tg_tensor *x = tu_lit(dt, "2x4", (double[]){0, 0, 4, 4, 1, 3, 1, 3});
    tg_tensor *g = tu_lit(dt, "4", (double[]){1, 2, 1, 2});
    tg_tensor *b = tu_lit(dt, "4", (double[]){0, 1, 0, -1});
    tg_tensor *dy = tu_lit(dt, "2x4", (double[]){1, 2, 3, 4, 1, 0, 0, 0});
    tg_tensor_set_requires_grad(x, true);
    tg_tensor_set_requires_grad(g, true);
    tg_tensor_set_requires_grad(b, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_layer_norm(tp, x, g, b, 0);
    tu_expect_exact(y, "2x4", (double[]){-1, -1, 1, 1, -1, 3, -1, 1}, "layer_norm");
    ck_assert_int_eq(tg_backward_seed(tp, y, dy), TG_OK);
    /* dx = rstd (g - mean g - x̂ mean(g x̂)) with g = dy gamma: each row sums to 0. */
    tu_expect_exact(tg_tensor_grad(x), "2x4", (double[]){-.75, .75, -1.25, 1.25, .5, 0, -.5, 0},
                    "dx");
    tu_expect_exact(tg_tensor_grad(g), "4", (double[]){-2, -2, 3, 4}, "dgamma");
    tu_expect_exact(tg_tensor_grad(b), "4", (double[]){2, 2, 3, 4}, "dbeta");
    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_tensor_free(g);
    tg_tensor_free(b);
    tg_tensor_free(dy);
}
END_TEST

START_TEST(layer_norm_constant_row)
{
    /* A constant row has x - mean = 0: y = beta whatever eps > 0, and 0 * inf = NaN at
     * eps = 0, as in PyTorch. */
    tg_dtype dt = tu_loop_dtype(_i);
    tg_tensor *x = tu_lit(dt, "1x3", (double[]){5, 5, 5});
    tg_tensor *b = tu_lit(dt, "3", (double[]){1, 2, 3});
    tg_tape *tp = tg_tape_new();
    tu_expect_exact(tg_layer_norm(tp, x, NULL, b, 1e-5), "1x3", (double[]){1, 2, 3}, "y");
    tg_tensor *y = tg_layer_norm(tp, x, NULL, NULL, 0);
    ck_assert_ptr_nonnull(y);
    for (int k = 0; k < 3; k++) ck_assert(isnan(tu_at(y, k)));
    ck_assert_int_eq(tg_tape_status(tp), TG_OK);
    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_tensor_free(b);
}
END_TEST

/* x [3,2]: channel 0 holds 1, 1, 4 (mean 2, biased var 2, unbiased 3), channel 1
 * holds 2, -1, 2 (mean 1, the same variances); with eps 2, rstd is 1/2 in both. */
static const double bn_hand_x[6] = {1, 2, 1, -1, 4, 2};
static const double bn_hand_dy[6] = {1, 0, 0, 3, 2, 0};

START_TEST(batch_norm_train_by_hand)
{
    tg_dtype dt = tu_loop_dtype(_i);
    tg_tensor *x = tu_lit(dt, "3x2", bn_hand_x), *dy = tu_lit(dt, "3x2", bn_hand_dy);
    tg_tensor *g = tu_lit(dt, "2", (double[]){2, 1}), *b = tu_lit(dt, "2", (double[]){0, 1});
    tg_tensor *rm = tu_lit(dt, "2", (double[]){0, 0}), *rv = tu_lit(dt, "2", (double[]){1, 1});
    tg_tensor_set_requires_grad(x, true);
    tg_tensor_set_requires_grad(g, true);
    tg_tensor_set_requires_grad(b, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_batch_norm(tp, x, g, b, rm, rv, true, 0.5, 2);
    tu_expect_exact(y, "3x2", (double[]){-1, 1.5, -1, 0, 2, 1.5}, "y");
    /* rm = (1 - 0.5) rm + 0.5 mean, rv = (1 - 0.5) rv + 0.5 unbiased var */
    tu_expect_exact(rm, "2", (double[]){1, .5}, "running_mean");
    tu_expect_exact(rv, "2", (double[]){2, 2}, "running_var");
    ck_assert_int_eq(tg_backward_seed(tp, y, dy), TG_OK);
    tu_expect_exact(tg_tensor_grad(x), "3x2", (double[]){.25, -.25, -.75, .5, .5, -.25}, "dx");
    tu_expect_exact(tg_tensor_grad(g), "2", (double[]){1.5, -3}, "dgamma");
    tu_expect_exact(tg_tensor_grad(b), "2", (double[]){3, 3}, "dbeta");
    /* The sweep does not run the forward: the running statistics moved once. */
    tu_expect_exact(rm, "2", (double[]){1, .5}, "running_mean after backward");
    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_tensor_free(dy);
    tg_tensor_free(g);
    tg_tensor_free(b);
    tg_tensor_free(rm);
    tg_tensor_free(rv);
}
END_TEST

START_TEST(batch_norm_eval_by_hand)
{
    /* rm [1, 0.5], rv [2, 2], eps 2: x̂ = (x - rm) / 2. Eval allows N = 1 too. */
    tg_dtype dt = tu_loop_dtype(_i);
    tg_tensor *x = tu_lit(dt, "3x2", (double[]){3, .5, -1, 2.5, 1, .5});
    tg_tensor *dy = tu_lit(dt, "3x2", bn_hand_dy), *x1 = tu_lit(dt, "1x2", (double[]){5, -1.5});
    tg_tensor *g = tu_lit(dt, "2", (double[]){2, 1}), *b = tu_lit(dt, "2", (double[]){0, 1});
    tg_tensor *rm = tu_lit(dt, "2", (double[]){1, .5}), *rv = tu_lit(dt, "2", (double[]){2, 2});
    tg_tensor_set_requires_grad(x, true);
    tg_tensor_set_requires_grad(g, true);
    tg_tensor_set_requires_grad(b, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_batch_norm(tp, x, g, b, rm, rv, false, 0.5, 2);
    tu_expect_exact(y, "3x2", (double[]){2, 1, -2, 2, 0, 1}, "y");
    tu_expect_exact(tg_batch_norm(tp, x1, g, b, rm, rv, false, 0.5, 2), "1x2",
                    (double[]){4, 0}, "y of one sample");
    ck_assert_int_eq(tg_backward_seed(tp, y, dy), TG_OK);
    tu_expect_exact(tg_tensor_grad(x), "3x2", (double[]){1, 0, 0, 1.5, 2, 0}, "dx = dy gamma rstd");
    tu_expect_exact(tg_tensor_grad(g), "2", (double[]){1, 3}, "dgamma");
    tu_expect_exact(tg_tensor_grad(b), "2", (double[]){3, 3}, "dbeta");
    tu_expect_exact(rm, "2", (double[]){1, .5}, "running_mean untouched");
    tu_expect_exact(rv, "2", (double[]){2, 2}, "running_var untouched");
    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_tensor_free(x1);
    tg_tensor_free(dy);
    tg_tensor_free(g);
    tg_tensor_free(b);
    tg_tensor_free(rm);
    tg_tensor_free(rv);
}
END_TEST

START_TEST(empty_inputs)
{
    tg_dtype dt = tu_loop_dtype(_i);
    tg_tensor *rm = tu_lit(dt, "3", (double[]){1, 2, 3});
    tg_tensor *rv = tu_lit(dt, "3", (double[]){4, 5, 6});
    tg_tensor *g = tu_lit(dt, "3", (double[]){1, 1, 1}), *b = tu_lit(dt, "3", (double[]){0, 0, 0});
    tg_tensor *g0 = tu_lit(dt, "0", NULL), *x0 = make("0x3", dt, 1), *xs = make("2x3x0x2", dt, 2);
    tg_tensor *xd = make("3x0", dt, 3), *xc = make("2x0", dt, 4);
    tg_tensor_set_requires_grad(x0, true);
    tg_tensor_set_requires_grad(g, true);
    tg_tensor_set_requires_grad(b, true);
    tg_tape *tp = tg_tape_new();
    tg_rng rng, before;
    tg_rng_seed(&rng, 5);
    before = rng;
    tu_expect_exact(tg_layer_norm(tp, xd, g0, g0, 1e-5), "3x0", NULL, "layer_norm of D = 0");
    tu_expect_exact(tg_batch_norm(tp, xc, g0, g0, NULL, NULL, true, 0.1, 1e-5), "2x0", NULL,
                    "batch_norm of C = 0");
    tg_tensor *y = tg_batch_norm(tp, x0, g, b, rm, rv, true, 0.1, 1e-5);
    tu_expect_exact(y, "0x3", NULL, "batch_norm of N = 0");
    tu_expect_exact(tg_batch_norm(tp, xs, g, b, rm, rv, true, 0.1, 1e-5), "2x3x0x2", NULL,
                    "batch_norm of H = 0");
    tg_tensor *ln = tg_layer_norm(tp, x0, g, b, 1e-5);
    tu_expect_exact(ln, "0x3", NULL, "layer_norm of no rows");
    tu_expect_exact(tg_dropout(tp, x0, 0.5, &rng), "0x3", NULL, "dropout");
    ck_assert(memcmp(&rng, &before, sizeof rng) == 0); /* nothing drawn */
    /* A batch of nothing has no statistics: PyTorch leaves the running ones as they are. */
    tu_expect_exact(rm, "3", (double[]){1, 2, 3}, "running_mean");
    tu_expect_exact(rv, "3", (double[]){4, 5, 6}, "running_var");
    tg_tensor *loss = tg_add(tp, tg_sum(tp, y), tg_sum(tp, ln));
    ck_assert_int_eq(tg_backward(tp, loss), TG_OK);
    tu_expect_exact(tg_tensor_grad(g), "3", (double[]){0, 0, 0}, "dgamma");
    tu_expect_exact(tg_tensor_grad(b), "3", (double[]){0, 0, 0}, "dbeta");
    ck_assert_int_eq(tg_tape_replay(tp), TG_OK);
    tu_expect_exact(rm, "3", (double[]){1, 2, 3}, "running_mean after replay");
    tg_tape_free(tp);
    tg_tensor *all[] = {rm, rv, g, b, g0, x0, xs, xd, xc};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) tg_tensor_free(all[i]);
}
END_TEST

/* ====== Against PyTorch (tests/norm_reference.h) ====== */

/* F64 agrees to rounding; F32 to its precision (the inputs themselves are rounded). */
static double tol_of(tg_dtype dt) { return dt == TG_F64 ? 1e-12 : 2e-5; }

START_TEST(layer_norm_matches_torch)
{
    tg_dtype dt = tu_loop_dtype(_i);
    double tol = tol_of(dt);
    tg_tensor *x = tu_lit(dt, "2x3x4", ln_x), *dy = tu_lit(dt, "2x3x4", ln_dy);
    tg_tensor *g = tu_lit(dt, "4", ln_gamma), *b = tu_lit(dt, "4", ln_beta);
    tg_tensor_set_requires_grad(x, true);
    tg_tensor_set_requires_grad(g, true);
    tg_tensor_set_requires_grad(b, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_layer_norm(tp, x, g, b, 1e-5);
    expect_near(y, ln_y, N_OF(ln_y), tol, "y");
    ck_assert_int_eq(tg_backward_seed(tp, y, dy), TG_OK);
    expect_near(tg_tensor_grad(x), ln_dx, N_OF(ln_dx), tol, "dx");
    expect_near(tg_tensor_grad(g), ln_dgamma, N_OF(ln_dgamma), tol, "dgamma");
    expect_near(tg_tensor_grad(b), ln_dbeta, N_OF(ln_dbeta), tol, "dbeta");
    tg_tape_reset(tp);
    tg_tensor_zero_grad(x);
    y = tg_layer_norm(tp, x, NULL, NULL, 1e-5);
    expect_near(y, ln_plain_y, N_OF(ln_plain_y), tol, "y without gamma and beta");
    ck_assert_int_eq(tg_backward_seed(tp, y, dy), TG_OK);
    expect_near(tg_tensor_grad(x), ln_plain_dx, N_OF(ln_plain_dx), tol,
                "dx without gamma and beta");
    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_tensor_free(dy);
    tg_tensor_free(g);
    tg_tensor_free(b);
}
END_TEST

START_TEST(batch_norm_matches_torch)
{
    /* Recorded once on the first batch, replayed on the next two: the running
     * statistics after each forward are PyTorch's after the same batches. */
    tg_dtype dt = tu_loop_dtype(_i);
    double tol = tol_of(dt);
    const char *shape = "3x2x2x2";
    const int64_t n = 24;
    tg_tensor *x = tu_lit(dt, shape, bn_x), *dy = tu_lit(dt, shape, bn_dy);
    tg_tensor *g = tu_lit(dt, "2", bn_gamma), *b = tu_lit(dt, "2", bn_beta);
    tg_tensor *rm = tu_lit(dt, "2", bn_rm0), *rv = tu_lit(dt, "2", bn_rv0);
    tg_tensor_set_requires_grad(x, true);
    tg_tensor_set_requires_grad(g, true);
    tg_tensor_set_requires_grad(b, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_batch_norm(tp, x, g, b, rm, rv, true, 0.1, 1e-5);
    ck_assert_ptr_nonnull(y);
    for (int step = 0; step < 3; step++) {
        if (step) {
            fill(x, bn_x + step * n);
            ck_assert_int_eq(tg_tape_replay(tp), TG_OK);
        }
        char what[32];
        snprintf(what, sizeof what, "running_mean after %d", step + 1);
        expect_near(rm, bn_rm + 2 * step, 2, tol, what);
        snprintf(what, sizeof what, "running_var after %d", step + 1);
        expect_near(rv, bn_rv + 2 * step, 2, tol, what);
    }
    expect_near(y, bn_y, n, tol, "y");
    ck_assert_int_eq(tg_backward_seed(tp, y, dy), TG_OK);
    expect_near(tg_tensor_grad(x), bn_dx, n, tol, "dx");
    expect_near(tg_tensor_grad(g), bn_dgamma, 2, tol, "dgamma");
    expect_near(tg_tensor_grad(b), bn_dbeta, 2, tol, "dbeta");

    tg_tape *ev = tg_tape_new();
    tg_tensor *xe = tu_lit(dt, shape, bn_eval_x);
    tg_tensor_set_requires_grad(xe, true);
    tg_tensor_zero_grad(g);
    tg_tensor_zero_grad(b);
    y = tg_batch_norm(ev, xe, g, b, rm, rv, false, 0.1, 1e-5);
    expect_near(y, bn_eval_y, n, tol, "eval y");
    ck_assert_int_eq(tg_backward_seed(ev, y, dy), TG_OK);
    expect_near(tg_tensor_grad(xe), bn_eval_dx, n, tol, "eval dx");
    expect_near(tg_tensor_grad(g), bn_eval_dgamma, 2, tol, "eval dgamma");
    expect_near(tg_tensor_grad(b), bn_eval_dbeta, 2, tol, "eval dbeta");
    expect_near(rm, bn_rm + 4, 2, tol, "running_mean after eval");
    tg_tape_free(tp);
    tg_tape_free(ev);
    tg_tensor *all[] = {x, dy, g, b, rm, rv, xe};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) tg_tensor_free(all[i]);
}
END_TEST

START_TEST(batch_norm_rank2_matches_torch)
{
    /* Without gamma, beta and running statistics, then with the statistics only. */
    tg_dtype dt = tu_loop_dtype(_i);
    double tol = tol_of(dt);
    tg_tensor *x = tu_lit(dt, "5x3", bn2_x), *dy = tu_lit(dt, "5x3", bn2_dy);
    tg_tensor *rm = tu_lit(dt, "3", (double[]){0, 0, 0});
    tg_tensor *rv = tu_lit(dt, "3", (double[]){1, 1, 1});
    tg_tensor_set_requires_grad(x, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_batch_norm(tp, x, NULL, NULL, NULL, NULL, true, 0.1, 1e-3);
    expect_near(y, bn2_y, 15, tol, "y");
    ck_assert_int_eq(tg_backward_seed(tp, y, dy), TG_OK);
    expect_near(tg_tensor_grad(x), bn2_dx, 15, tol, "dx");
    ck_assert_ptr_nonnull(tg_batch_norm(tp, x, NULL, NULL, rm, rv, true, 0.3, 1e-3));
    expect_near(rm, bn2_rm, 3, tol, "running_mean");
    expect_near(rv, bn2_rv, 3, tol, "running_var");
    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_tensor_free(dy);
    tg_tensor_free(rm);
    tg_tensor_free(rv);
}
END_TEST

/* ====== Replay: the same values as a fresh recording, statistics and masks included ====== */

/* One of everything: layer_norm, batch_norm in training (updating rm, rv), dropout
 * drawing from rng, then batch_norm in eval mode with fixed statistics. */
typedef struct net {
    tg_tensor *g, *b, *rm, *rv, *erm, *erv;
    tg_rng *rng;
} net;

static tg_tensor *chain(tg_tape *tp, tg_tensor *x, const net *m)
{
    tg_tensor *h = tg_layer_norm(tp, x, m->g, m->b, 1e-5);
    h = tg_batch_norm(tp, h, m->g, m->b, m->rm, m->rv, true, 0.2, 1e-5);
    h = tg_dropout(tp, h, 0.3, m->rng);
    h = tg_batch_norm(tp, h, m->g, NULL, m->erm, m->erv, false, 0.2, 1e-5);
    return tg_sum(tp, tg_square(tp, h));
}

START_TEST(replay_matches_fresh_recording)
{
    tg_dtype dt = tu_loop_dtype(_i);
    tg_tensor *x = tu_random(dt, "6x4", -2, 2, 1), *x2 = tu_random(dt, "6x4", -2, 2, 2);
    tg_rng ra, rb;
    tg_rng_seed(&ra, 99);
    tg_rng_seed(&rb, 99);
    net a = {tu_random(dt, "4", 0.5, 1.5, 3), tu_random(dt, "4", -1, 1, 4),
             tu_lit(dt, "4", (double[]){0, 0, 0, 0}), tu_lit(dt, "4", (double[]){1, 1, 1, 1}),
             tu_random(dt, "4", -.1, .1, 5), tu_random(dt, "4", 0.5, 1.5, 6), &ra};
    net b = a;
    b.rm = tu_lit(dt, "4", (double[]){0, 0, 0, 0});
    b.rv = tu_lit(dt, "4", (double[]){1, 1, 1, 1});
    b.rng = &rb;
    ck_assert(x && x2 && a.g && a.b && a.erm && a.erv);
    tg_tensor_set_requires_grad(x, true);
    tg_tensor_set_requires_grad(a.g, true);
    tg_tensor_set_requires_grad(a.b, true);
    tg_tape *tp = tg_tape_new(), *fresh = tg_tape_new();
    tg_tensor *y = chain(tp, x, &a);
    ck_assert_ptr_nonnull(y);
    ck_assert_ptr_nonnull(chain(fresh, x, &b)); /* the same first forward on b's statistics */

    memcpy(tg_tensor_data(x), tg_tensor_cdata(x2), (size_t)24 * (dt == TG_F64 ? 8 : 4));
    ck_assert_int_eq(tg_tape_replay(tp), TG_OK);
    ck_assert_int_eq(tg_backward(tp, y), TG_OK);
    tg_tensor *gx = copy_of(tg_tensor_grad(x)), *gg = copy_of(tg_tensor_grad(a.g));

    tg_tape_reset(fresh);
    tg_tensor_zero_grad(x);
    tg_tensor_zero_grad(a.g);
    tg_tensor *want = chain(fresh, x, &b);
    ck_assert_int_eq(tg_backward(fresh, want), TG_OK);
    expect_same(y, want, "replayed loss");
    expect_same(gx, tg_tensor_grad(x), "dx");
    expect_same(gg, tg_tensor_grad(a.g), "dgamma");
    expect_same(a.rm, b.rm, "running_mean");
    expect_same(a.rv, b.rv, "running_var");
    ck_assert(memcmp(&ra, &rb, sizeof ra) == 0);
    tg_tape_free(tp);
    tg_tape_free(fresh);
    tg_tensor *all[] = {x, x2, gx, gg, a.g, a.b, a.rm, a.rv, a.erm, a.erv, b.rm, b.rv};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) tg_tensor_free(all[i]);
}
END_TEST

/* ====== Train and eval: two tapes sharing the parameters and the running statistics ======
 * The pattern a user writes: one model function with a 'training' flag,
 * recorded once per mode. The training tape is replayed on every batch (it
 * updates the running statistics and draws fresh dropout masks); the eval
 * tape, replayed whenever the model is evaluated, reads the statistics as they
 * are then and leaves them alone. */

typedef struct model {
    tg_tensor *gamma, *beta, *rm, *rv;
    tg_rng rng;
} model;

static tg_tensor *model_forward(tg_tape *tp, tg_tensor *x, model *m, bool training)
{
    tg_tensor *h = tg_batch_norm(tp, x, m->gamma, m->beta, m->rm, m->rv, training, 0.1, 1e-5);
    return tg_dropout(tp, h, training ? 0.5 : 0, training ? &m->rng : NULL);
}

START_TEST(train_and_eval_tapes_share_statistics)
{
    tg_dtype dt = tu_loop_dtype(_i);
    const char *shape = "4x3x2x2";
    model m = {.gamma = tu_random(dt, "3", 0.5, 1.5, 1),
               .beta = tu_random(dt, "3", -1, 1, 2),
               .rm = tu_lit(dt, "3", (double[]){0, 0, 0}),
               .rv = tu_lit(dt, "3", (double[]){1, 1, 1})};
    tg_rng_seed(&m.rng, 2026);
    tg_tensor_set_requires_grad(m.gamma, true);
    tg_tensor_set_requires_grad(m.beta, true);
    /* xt holds batch 0 (batch s is uniform in [s - 2, s + 3) from seed 20 + s). */
    tg_tensor *xt = tu_random(dt, shape, -2, 3, 20), *xe = tu_random(dt, shape, -2, 3, 11);
    tg_tape *train = tg_tape_new(), *eval = tg_tape_new();
    tg_tensor *loss = tg_mean(train, tg_square(train, model_forward(train, xt, &m, true)));
    tg_tensor *ye = model_forward(eval, xe, &m, false);
    ck_assert(loss && ye);
    ck_assert_uint_eq(tg_tape_size(eval), 2); /* dropout at p = 0 is still a node */

    double rm[3] = {0, 0, 0}, rv[3] = {1, 1, 1};
    for (int step = 0; step < 4; step++) {
        if (step) {
            tg_tensor *batch = tu_random(dt, shape, -2 + step, 3 + step, 20 + (uint64_t)step);
            ck_assert_ptr_nonnull(batch);
            memcpy(tg_tensor_data(xt), tg_tensor_cdata(batch), (size_t)48 * (dt == TG_F64 ? 8 : 4));
            tg_tensor_free(batch);
            ck_assert_int_eq(tg_tape_replay(train), TG_OK);
        }
        /* The expected update, from the batch's statistics computed here in double. */
        for (int c = 0; c < 3; c++) {
            double s = 0, q = 0;
            for (int i = 0; i < 4; i++)
                for (int k = 0; k < 4; k++) s += tu_at(xt, (i * 3 + c) * 4 + k);
            double mu = s / 16;
            for (int i = 0; i < 4; i++)
                for (int k = 0; k < 4; k++) {
                    double d = tu_at(xt, (i * 3 + c) * 4 + k) - mu;
                    q += d * d;
                }
            rm[c] = 0.9 * rm[c] + 0.1 * mu;
            rv[c] = 0.9 * rv[c] + 0.1 * q / 15;
        }
        expect_near(m.rm, rm, 3, dt == TG_F64 ? 1e-14 : 1e-6, "running_mean");
        expect_near(m.rv, rv, 3, dt == TG_F64 ? 1e-14 : 1e-6, "running_var");
        tg_tensor_zero_grad(m.gamma);
        tg_tensor_zero_grad(m.beta);
        ck_assert_int_eq(tg_backward(train, loss), TG_OK);
        for (int c = 0; c < 3; c++) { /* a plain SGD step on the shared parameters */
            tu_put(m.gamma, c, tu_at(m.gamma, c) - 0.1 * tu_at(tg_tensor_grad(m.gamma), c));
            tu_put(m.beta, c, tu_at(m.beta, c) - 0.1 * tu_at(tg_tensor_grad(m.beta), c));
        }

        /* Eval: the statistics and parameters as they are now, which it leaves alone. */
        double before[6];
        for (int c = 0; c < 3; c++) before[c] = tu_at(m.rm, c), before[3 + c] = tu_at(m.rv, c);
        ck_assert_int_eq(tg_tape_replay(eval), TG_OK);
        for (int c = 0; c < 3; c++)
            ck_assert(tu_at(m.rm, c) == before[c] && tu_at(m.rv, c) == before[3 + c]);
        tg_tape *fresh = tg_tape_new();
        expect_same(ye, model_forward(fresh, xe, &m, false), "eval replay and fresh recording");
        tg_tape_free(fresh);
        double want[48];
        for (int64_t e = 0; e < 48; e++) {
            int c = (int)(e / 4 % 3);
            want[e] = (tu_at(xe, e) - tu_at(m.rm, c)) / sqrt(tu_at(m.rv, c) + 1e-5) *
                          tu_at(m.gamma, c) +
                      tu_at(m.beta, c);
        }
        expect_near(ye, want, 48, dt == TG_F64 ? 1e-13 : 1e-5, "eval output");
    }
    tg_tape_free(train);
    tg_tape_free(eval);
    tg_tensor *all[] = {m.gamma, m.beta, m.rm, m.rv, xt, xe};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) tg_tensor_free(all[i]);
}
END_TEST

/* ====== Dropout ====== */

START_TEST(dropout_mask_statistics)
{
    /* 10000 draws at p = 0.3: the dropped fraction is within 0.02 (over 4 standard
     * deviations) of p, and every kept element is exactly x / (1 - p). */
    tg_dtype dt = tu_loop_dtype(_i);
    tg_tensor *x = tu_random(dt, "100x100", 1, 1, 0);
    tg_rng rng;
    tg_rng_seed(&rng, 1);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_dropout(tp, x, 0.3, &rng);
    ck_assert_ptr_nonnull(y);
    double scale = 1.0 / (1.0 - 0.3); /* as the op forms it, then rounded to the dtype */
    if (dt == TG_F32) scale = (double)(float)scale;
    for (int round = 0; round < 3; round++) {
        if (round) ck_assert_int_eq(tg_tape_replay(tp), TG_OK);
        int64_t dropped = 0;
        double sum = 0;
        for (int64_t k = 0; k < 10000; k++) {
            double v = tu_at(y, k);
            ck_assert_msg(v == 0 || v == scale, "y[%lld] = %.17g", (long long)k, v);
            dropped += v == 0;
            sum += v;
        }
        ck_assert_msg(fabs((double)dropped / 10000 - 0.3) < 0.02, "dropped %lld",
                      (long long)dropped);
        ck_assert_msg(fabs(sum / 10000 - 1) < 0.03, "mean %.6f", sum / 10000);
    }
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

/* y of dropout(x, p) on a new tape, copied into a new leaf. */
static tg_tensor *dropped(tg_tensor *x, double p, tg_rng *rng)
{
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_dropout(tp, x, p, rng);
    ck_assert_ptr_nonnull(y);
    tg_tensor *copy = copy_of(y);
    tg_tape_free(tp);
    return copy;
}

START_TEST(dropout_reproducible_from_seed)
{
    tg_dtype dt = tu_loop_dtype(_i);
    tg_tensor *x = tu_random(dt, "8x16", 1, 2, 3);
    tg_rng r1, r2, r3;
    tg_rng_seed(&r1, 42);
    tg_rng_seed(&r2, 42);
    tg_rng_seed(&r3, 43);
    for (int round = 0; round < 3; round++) {
        tg_tensor *a = dropped(x, 0.5, &r1), *b = dropped(x, 0.5, &r2), *c = dropped(x, 0.5, &r3);
        expect_same(a, b, "masks from one seed");
        ck_assert_msg(memcmp(tg_tensor_cdata(a), tg_tensor_cdata(c),
                             (size_t)128 * (dt == TG_F64 ? 8 : 4)) != 0,
                      "another seed drew the same mask");
        tg_tensor_free(a);
        tg_tensor_free(b);
        tg_tensor_free(c);
    }
    tg_tensor_free(x);
}
END_TEST

/* a b in dt's arithmetic, as the op multiplies. */
static double times(tg_dtype dt, double a, double b)
{
    return dt == TG_F64 ? a * b : (double)((float)a * (float)b);
}

START_TEST(dropout_fresh_mask_per_replay)
{
    /* Each replay draws a new mask, the sweep after it multiplies by that mask,
     * and the masks follow the rng's stream: recording then two replays give the
     * three masks of three fresh recordings from the same seed. */
    tg_dtype dt = tu_loop_dtype(_i);
    const double p = 0.25, scale = 1.0 / (1.0 - p);
    tg_tensor *x = tu_random(dt, "6x10", 1, 2, 4), *dy = tu_random(dt, "6x10", -1, 1, 5);
    tg_tensor_set_requires_grad(x, true);
    tg_rng rng, ref;
    tg_rng_seed(&rng, 8);
    tg_rng_seed(&ref, 8);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_dropout(tp, x, p, &rng), *prev = NULL;
    ck_assert_ptr_nonnull(y);
    for (int round = 0; round < 3; round++) {
        if (round) ck_assert_int_eq(tg_tape_replay(tp), TG_OK);
        tg_tensor *want = dropped(x, p, &ref);
        expect_same(y, want, "replayed mask and a fresh recording's");
        tg_tensor_free(want);
        if (prev) ck_assert(memcmp(tg_tensor_cdata(prev), tg_tensor_cdata(y),
                                   (size_t)60 * (dt == TG_F64 ? 8 : 4)) != 0);
        tg_tensor_free(prev);
        prev = copy_of(y);
        tg_tensor_zero_grad(x);
        ck_assert_int_eq(tg_backward_seed(tp, y, dy), TG_OK);
        /* y = x ⊙ mask / (1 - p) and dx = dy ⊙ mask / (1 - p), exactly */
        for (int64_t k = 0; k < 60; k++) {
            bool kept = tu_at(y, k) != 0;
            double want_dx = times(dt, tu_at(dy, k), kept ? scale : 0);
            ck_assert_msg(tu_at(tg_tensor_grad(x), k) == want_dx,
                          "round %d dx[%lld]: %.17g, want %.17g", round, (long long)k,
                          tu_at(tg_tensor_grad(x), k), want_dx);
            ck_assert(!kept || tu_at(y, k) == times(dt, tu_at(x, k), scale));
        }
    }
    tg_tensor_free(prev);
    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_tensor_free(dy);
}
END_TEST

START_TEST(dropout_p0_is_identity)
{
    /* p = 0 still records a node (the graph is the same in both modes) that copies x
     * bit for bit, NaN and Inf included, passes dy through and draws nothing: the
     * rng may be NULL. */
    tg_dtype dt = tu_loop_dtype(_i);
    tg_tensor *x = tu_lit(dt, "2x3", (double[]){1.5, -0.0, NAN, INFINITY, -2, 1e-30});
    tg_tensor *dy = tu_lit(dt, "2x3", (double[]){1, 2, 3, 4, 5, 6});
    tg_tensor_set_requires_grad(x, true);
    tg_rng rng, before;
    tg_rng_seed(&rng, 3);
    before = rng;
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_dropout(tp, x, 0, &rng), *z = tg_dropout(tp, x, 0, NULL);
    ck_assert(y && z);
    ck_assert_uint_eq(tg_tape_size(tp), 2);
    expect_same(y, x, "dropout(p = 0)");
    expect_same(z, x, "dropout(p = 0, rng NULL)");
    ck_assert_int_eq(tg_tape_replay(tp), TG_OK);
    ck_assert(memcmp(&rng, &before, sizeof rng) == 0);
    ck_assert_int_eq(tg_backward_seed(tp, y, dy), TG_OK);
    tu_expect_exact(tg_tensor_grad(x), "2x3", (double[]){1, 2, 3, 4, 5, 6}, "dx");
    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_tensor_free(dy);
}
END_TEST

START_TEST(dropout_multiplies_nan_by_zero)
{
    /* As in PyTorch, dropping is a product with 0: NaN stays NaN, Inf becomes NaN. */
    tg_dtype dt = tu_loop_dtype(_i);
    tg_tensor *x = tu_random(dt, "64", 1, 1, 0);
    for (int k = 0; k < 64; k++) tu_put(x, k, k % 2 ? NAN : INFINITY);
    tg_rng rng;
    tg_rng_seed(&rng, 4);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_dropout(tp, x, 0.5, &rng);
    ck_assert_ptr_nonnull(y);
    int nans = 0;
    for (int k = 0; k < 64; k++) {
        double v = tu_at(y, k);
        ck_assert(isnan(v) || (k % 2 == 0 && v == (double)INFINITY));
        nans += isnan(v) && k % 2 == 0;
    }
    ck_assert_int_gt(nans, 0);
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

/* ====== Second order: the recorded VJPs (vjp_graph) ======
 * f = Σ wt ⊙ y, and its Hessian-vector product H u recorded (tg_grad with
 * create_graph, twice), against closed forms. Two values a, b normalised
 * together (a layer_norm row, a batch_norm channel of N = 2) have
 * x̂ = ±s / √q, s = (a − b)/2, q = s² + eps, so with a = 1, b = 0, eps = 1/4:
 * d x̂₁/da = eps / (2 q^{3/2}) = 1/(2√2) =: D and d²x̂₁/da² = −(3/4) eps s / q^{5/2}
 * = −3/(4√2) =: E, with x̂₂ = −x̂₁ and d/db = −d/da. */

#define SQRT2 1.4142135623730951

/* <∇f, u> for f = Σ wt ⊙ y, the gradient recorded with create_graph over the
 * inputs 'in' (all requiring grad); its gradient (tg_grad without
 * create_graph) is H u, from the latest forward or replay. */
static tg_tensor *grad_dot_u(tg_tape *tp, tg_tensor *y, tg_tensor *wt, tg_tensor *const *in,
                             tg_tensor *const *u, int n)
{
    tg_tensor *g[4], *h = NULL;
    ck_assert_msg(y != NULL, "%s", tg_tape_error(tp));
    ck_assert_int_eq(tg_grad(tp, tg_sum(tp, tg_mul(tp, y, wt)), NULL, in, n, g, true), TG_OK);
    for (int j = 0; j < n; j++) {
        tg_tensor *term = tg_sum(tp, tg_mul(tp, g[j], u[j]));
        h = h ? tg_add(tp, h, term) : term;
    }
    return h;
}

static void hvp(tg_tape *tp, tg_tensor *y, tg_tensor *wt, tg_tensor *const *in,
                tg_tensor *const *u, int n, tg_tensor **hu)
{
    tg_tensor *h = grad_dot_u(tp, y, wt, in, u, n);
    ck_assert_int_eq(tg_grad(tp, h, NULL, in, n, hu, false), TG_OK);
}

START_TEST(layer_norm_second_derivatives)
{
    /* f = A x̂₁ + Σ wt ⊙ β with A = wt₁ γ₁ − wt₂ γ₂ = 0.5 for wt = (1, 0.5) and
     * γ = (2, 3). Direction u_x = (1, 0), u_γ = (1, 0), u_β = (1, 1):
     * H_x = ±(A E + wt₁ D), H_γ = (wt₁ D, −wt₂ D), H_β = 0. */
    tg_dtype dt = tu_loop_dtype(_i);
    double tol = dt == TG_F64 ? 1e-15 : 1e-6, d = 1 / (2 * SQRT2), e = -3 / (4 * SQRT2);
    tg_tensor *in[3] = {tu_lit(dt, "1x2", (double[]){1, 0}), tu_lit(dt, "2", (double[]){2, 3}),
                        tu_lit(dt, "2", (double[]){0.5, -1})};
    tg_tensor *u[3] = {tu_lit(dt, "1x2", (double[]){1, 0}), tu_lit(dt, "2", (double[]){1, 0}),
                       tu_lit(dt, "2", (double[]){1, 1})};
    tg_tensor *wt = tu_lit(dt, "1x2", (double[]){1, 0.5}), *hu[3];
    for (int j = 0; j < 3; j++) tg_tensor_set_requires_grad(in[j], true);
    tg_tape *tp = tg_tape_new();
    hvp(tp, tg_layer_norm(tp, in[0], in[1], in[2], 0.25), wt, in, u, 3, hu);
    expect_near(hu[0], (double[]){0.5 * e + d, -0.5 * e - d}, 2, tol, "H_x");
    expect_near(hu[1], (double[]){d, -0.5 * d}, 2, tol, "H_gamma");
    tu_expect_exact(hu[2], "2", (double[]){0, 0}, "H_beta");
    tg_tape_free(tp);
    for (int j = 0; j < 3; j++) tg_tensor_free(in[j]), tg_tensor_free(u[j]);
    tg_tensor_free(wt);
}
END_TEST

START_TEST(batch_norm_train_second_derivatives)
{
    /* x [2,1] = (1, 0), γ = 2, wt = (1, 0.5): f = γ (wt₁ − wt₂) x̂₁ + β Σ wt, so with
     * A = γ (wt₁ − wt₂) = 1 and direction u_x = (1, 0), u_γ = 1, u_β = 1:
     * H_x = ±(A E + (wt₁ − wt₂) D), H_γ = (wt₁ − wt₂) D, H_β = 0. The running
     * statistics move at every forward and get no derivative. */
    tg_dtype dt = tu_loop_dtype(_i);
    double tol = dt == TG_F64 ? 1e-15 : 1e-6, d = 1 / (2 * SQRT2), e = -3 / (4 * SQRT2);
    tg_tensor *in[3] = {tu_lit(dt, "2x1", (double[]){1, 0}), tu_lit(dt, "1", (double[]){2}),
                        tu_lit(dt, "1", (double[]){0.5})};
    tg_tensor *u[3] = {tu_lit(dt, "2x1", (double[]){1, 0}), tu_lit(dt, "1", (double[]){1}),
                       tu_lit(dt, "1", (double[]){1})};
    tg_tensor *wt = tu_lit(dt, "2x1", (double[]){1, 0.5}), *hu[3];
    tg_tensor *rm = tu_lit(dt, "1", (double[]){0}), *rv = tu_lit(dt, "1", (double[]){1});
    for (int j = 0; j < 3; j++) tg_tensor_set_requires_grad(in[j], true);
    tg_tape *tp = tg_tape_new();
    hvp(tp, tg_batch_norm(tp, in[0], in[1], in[2], rm, rv, true, 0.5, 0.25), wt, in, u, 3, hu);
    expect_near(hu[0], (double[]){e + 0.5 * d, -e - 0.5 * d}, 2, tol, "H_x");
    expect_near(hu[1], (double[]){0.5 * d}, 1, tol, "H_gamma");
    tu_expect_exact(hu[2], "1", (double[]){0}, "H_beta");
    tu_expect_exact(rm, "1", (double[]){0.25}, "running_mean after one forward");
    tg_tape_free(tp);
    for (int j = 0; j < 3; j++) tg_tensor_free(in[j]), tg_tensor_free(u[j]);
    tg_tensor_free(wt), tg_tensor_free(rm), tg_tensor_free(rv);
}
END_TEST

START_TEST(batch_norm_eval_second_derivatives)
{
    /* Eval mode is affine in x: f = Σ wt ⊙ (γ (x − rm) r + β), r = 1/√(rv + eps), so
     * H_xx = 0, H_xγ = wt r: direction u_x = (1, 0), u_γ = 1 gives H_x = wt r and
     * H_γ = wt₁ r. With rv = 0.75, eps = 0.25, r = 1; a replay after rv = 3.75 has
     * r = 1/2, which the recorded derivatives read from that forward. */
    tg_dtype dt = tu_loop_dtype(_i);
    tg_tensor *in[2] = {tu_lit(dt, "2x1", (double[]){1, 0}), tu_lit(dt, "1", (double[]){2})};
    tg_tensor *u[2] = {tu_lit(dt, "2x1", (double[]){1, 0}), tu_lit(dt, "1", (double[]){1})};
    tg_tensor *wt = tu_lit(dt, "2x1", (double[]){1, 0.5}), *hu[2];
    tg_tensor *rm = tu_lit(dt, "1", (double[]){0.5}), *rv = tu_lit(dt, "1", (double[]){0.75});
    for (int j = 0; j < 2; j++) tg_tensor_set_requires_grad(in[j], true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_batch_norm(tp, in[0], in[1], NULL, rm, rv, false, 0.1, 0.25);
    tg_tensor *h = grad_dot_u(tp, y, wt, in, u, 2);
    ck_assert_int_eq(tg_grad(tp, h, NULL, in, 2, hu, false), TG_OK);
    tu_expect_exact(hu[0], "2x1", (double[]){1, 0.5}, "H_x");
    tu_expect_exact(hu[1], "1", (double[]){1}, "H_gamma");
    tu_put(rv, 0, 3.75);
    ck_assert_int_eq(tg_tape_replay(tp), TG_OK);
    ck_assert_int_eq(tg_grad(tp, h, NULL, in, 2, hu, false), TG_OK);
    tu_expect_exact(hu[0], "2x1", (double[]){0.5, 0.25}, "H_x after replay");
    tu_expect_exact(hu[1], "1", (double[]){0.5}, "H_gamma after replay");
    tg_tape_free(tp);
    for (int j = 0; j < 2; j++) tg_tensor_free(in[j]), tg_tensor_free(u[j]);
    tg_tensor_free(wt), tg_tensor_free(rm), tg_tensor_free(rv);
}
END_TEST

START_TEST(dropout_second_derivative_follows_the_mask)
{
    /* f = Σ c ⊙ dropout(x)², H u = 2 c ⊙ K u / (1 − p)² = 8 c K u at p = 1/2; each
     * replay draws a new mask K, and the recorded H u multiplies by that one. */
    tg_dtype dt = tu_loop_dtype(_i);
    tg_tensor *x = tu_random(dt, "4x8", 1, 2, 3), *c = tu_random(dt, "4x8", 1, 2, 4);
    tg_tensor *u = tg_tensor_new(dt, 2, (int64_t[]){4, 8}), *g, *hu, *prev = NULL;
    for (int k = 0; k < 32; k++) tu_put(c, k, k % 5 + 1), tu_put(u, k, k - 7);
    tg_tensor_set_requires_grad(x, true);
    tg_rng rng;
    tg_rng_seed(&rng, 11);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_dropout(tp, x, 0.5, &rng);
    ck_assert_int_eq(tg_grad(tp, tg_sum(tp, tg_mul(tp, tg_mul(tp, y, y), c)), NULL, &x, 1, &g,
                             true),
                     TG_OK);
    ck_assert_int_eq(tg_grad(tp, tg_sum(tp, tg_mul(tp, g, u)), NULL, &x, 1, &hu, true), TG_OK);
    for (int round = 0; round < 3; round++) {
        if (round) ck_assert_int_eq(tg_tape_replay(tp), TG_OK);
        for (int64_t k = 0; k < 32; k++) {
            double want = tu_at(y, k) != 0 ? 8 * tu_at(c, k) * tu_at(u, k) : 0;
            ck_assert_msg(tu_at(hu, k) == want, "round %d H u [%lld]: %.17g, want %.17g", round,
                          (long long)k, tu_at(hu, k), want);
        }
        if (prev) ck_assert(memcmp(tg_tensor_cdata(prev), tg_tensor_cdata(y),
                                   (size_t)32 * (dt == TG_F64 ? 8 : 4)) != 0);
        tg_tensor_free(prev);
        prev = copy_of(y);
    }
    tg_tensor_free(prev);
    tg_tape_free(tp);
    tg_tensor_free(x), tg_tensor_free(c), tg_tensor_free(u);
}
END_TEST

/* Third order through dropout: tg_gradgradcheck of <∇ Σ c ⊙ dropout(x)³, r>, a
 * recorded gradient, differentiates dropout_mask twice (the generator is
 * reset before each forward, so every replay draws the same mask). */
static tg_tensor *dropout_grad_dot(tg_tape *tp, tg_tensor *const *in, void *ctx)
{
    tg_tensor *const *cr = ctx, *g;
    tg_tensor *y = tg_dropout(tp, tu_reseed(tp, in[0]), 0.5, tu_rng());
    tg_tensor *f = tg_sum(tp, tg_mul(tp, tg_mul(tp, tg_mul(tp, y, y), y), cr[0]));
    if (tg_grad(tp, f, NULL, in, 1, &g, true)) return NULL;
    return tg_sum(tp, tg_mul(tp, g, cr[1]));
}

START_TEST(dropout_third_order_gradgradcheck)
{
    tg_tensor *x = tu_random(TG_F64, "3x5", -1, 1, 1);
    tg_tensor *cr[2] = {tu_random(TG_F64, "3x5", -1, 1, 2), tu_random(TG_F64, "3x5", -1, 1, 3)};
    tg_tensor_set_requires_grad(x, true);
    tg_gradcheck_report r;
    ck_assert_int_eq(tg_gradgradcheck(dropout_grad_dot, &x, 1, cr, NULL, &r), TG_OK);
    ck_assert_msg(r.passed, "%s", r.msg);
    ck_assert_int_eq(r.n_checked, 15);
    tg_tensor_free(x), tg_tensor_free(cr[0]), tg_tensor_free(cr[1]);
}
END_TEST

/* ====== Explain: each op's rules ====== */

START_TEST(explain_shows_the_rules)
{
    tg_tensor *x = tu_random(TG_F64, "4x3", -1, 1, 1), *g = tu_random(TG_F64, "3", 0.5, 1, 2);
    tg_tensor *rm = tu_lit(TG_F64, "3", (double[]){0, 0, 0});
    tg_tensor *rv = tu_lit(TG_F64, "3", (double[]){1, 1, 1});
    tg_tensor_set_requires_grad(x, true);
    tg_tensor_set_requires_grad(g, true);
    tg_tensor_set_name(x, "X");
    tg_tensor_set_name(g, "γ");
    tg_rng rng;
    tg_rng_seed(&rng, 1);
    tg_tape *tp = tg_tape_new();
    tg_tensor *h = tg_layer_norm(tp, x, NULL, g, 1e-5);
    h = tg_batch_norm(tp, h, g, NULL, rm, rv, true, 0.1, 1e-5);
    h = tg_batch_norm(tp, h, g, g, rm, rv, false, 0.1, 1e-5);
    h = tg_dropout(tp, h, 0.25, &rng);
    tg_tensor *loss = tg_sum(tp, h);
    ck_assert_int_eq(tg_backward(tp, loss), TG_OK);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(tg_tape_explain(tp, f, 0), TG_OK);
    fclose(f);
    const char *want[] = {
        "dt2 [4x3] = dt3 ⊙ mask / (1 − 0.25)",
        "dt1 [4x3] = dt2 ⊙ γ ⊙ rstd, rstd = 1/√(running_var + eps) per channel",
        "dγ [3] = Σ_ch dt2 [4x3] ⊙ x̂",
        "dγ [3] += Σ_ch dt2 [4x3]",
        "dt0 [4x3] = rstd (g − mean_ch g − x̂ ⊙ mean_ch(g ⊙ x̂)), g = dt1 ⊙ γ, "
        "x̂ = (t0 − mean_ch t0) rstd",
        "dγ [3] += Σ_ch dt1 [4x3] ⊙ x̂",
        "dX [4x3] = rstd (g − mean_row g − x̂ ⊙ mean_row(g ⊙ x̂)), g = dt0, "
        "x̂ = (X − mean_row X) rstd",
        "dγ [3] += Σ_rows dt0 [4x3]",
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        ck_assert_msg(strstr(text, want[i]), "missing line '%s' in:\n%s", want[i], text);
    free(text);
    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_tensor_free(g);
    tg_tensor_free(rm);
    tg_tensor_free(rv);
}
END_TEST

/* ====== Errors: status and exact message; the tape stays failed ====== */

enum op { LAYER_NORM, BATCH_NORM, DROPOUT };

typedef struct err_case {
    enum op op;
    const char *x;                      /* NULL passes a NULL x */
    tg_dtype dx;                        /* x's dtype */
    const char *gamma, *beta, *rm, *rv; /* NULL: not given */
    tg_dtype dv;                        /* their dtype */
    bool training;
    double momentum, eps, p;
    bool no_rng;
    tg_status want;
    const char *msg;
} err_case;

#define F64 TG_F64
#define F32 TG_F32
#define I64 TG_I64
static const err_case err_cases[] = {
    {LAYER_NORM, "", F64, NULL, NULL, NULL, NULL, F64, false, 0, 1e-5, 0, false, TG_ERR_SHAPE,
     "layer_norm: x must have rank >= 1, got []"},
    {LAYER_NORM, "3x4", F64, "5", NULL, NULL, NULL, F64, false, 0, 1e-5, 0, false, TG_ERR_SHAPE,
     "layer_norm: gamma [5] must be [4] for x [3x4]"},
    {LAYER_NORM, "3x4", F64, "4", "4x1", NULL, NULL, F64, false, 0, 1e-5, 0, false, TG_ERR_SHAPE,
     "layer_norm: beta [4x1] must be [4] for x [3x4]"},
    {LAYER_NORM, "2x3x4", F32, NULL, "", NULL, NULL, F32, false, 0, 1e-5, 0, false, TG_ERR_SHAPE,
     "layer_norm: beta [] must be [4] for x [2x3x4]"},
    {LAYER_NORM, "3x4", F64, "4", NULL, NULL, NULL, F32, false, 0, 1e-5, 0, false, TG_ERR_DTYPE,
     "layer_norm: gamma f32 [4] and x f64 [3x4] differ in dtype"},
    {LAYER_NORM, "3x4", F64, "4", NULL, NULL, NULL, I64, false, 0, 1e-5, 0, false, TG_ERR_DTYPE,
     "layer_norm: gamma i64 [4] and x f64 [3x4] differ in dtype"},
    {LAYER_NORM, "3x4", I64, NULL, NULL, NULL, NULL, F64, false, 0, 1e-5, 0, false, TG_ERR_DTYPE,
     "layer_norm: x [3x4] is i64; it must be f32 or f64"},
    {LAYER_NORM, "3x4", F64, NULL, NULL, NULL, NULL, F64, false, 0, -1, 0, false, TG_ERR_ARG,
     "layer_norm: eps must be finite and >= 0, got -1"},
    {LAYER_NORM, "3x4", F64, NULL, NULL, NULL, NULL, F64, false, 0, NAN, 0, false, TG_ERR_ARG,
     "layer_norm: eps must be finite and >= 0, got nan"},
    {LAYER_NORM, "3x4", F64, NULL, NULL, NULL, NULL, F64, false, 0, INFINITY, 0, false, TG_ERR_ARG,
     "layer_norm: eps must be finite and >= 0, got inf"},
    {LAYER_NORM, NULL, F64, "4", NULL, NULL, NULL, F64, false, 0, 1e-5, 0, false, TG_ERR_ARG,
     "layer_norm: input 0 is NULL"},
    {BATCH_NORM, "3", F64, NULL, NULL, NULL, NULL, F64, true, 0.1, 1e-5, 0, false, TG_ERR_SHAPE,
     "batch_norm: x must be [N,C], [N,C,L] or [N,C,H,W], got [3]"},
    {BATCH_NORM, "", F64, NULL, NULL, NULL, NULL, F64, true, 0.1, 1e-5, 0, false, TG_ERR_SHAPE,
     "batch_norm: x must be [N,C], [N,C,L] or [N,C,H,W], got []"},
    {BATCH_NORM, "2x3x2x2", F64, "4", NULL, NULL, NULL, F64, true, 0.1, 1e-5, 0, false,
     TG_ERR_SHAPE, "batch_norm: gamma [4] must be [3] for x [2x3x2x2]"},
    {BATCH_NORM, "4x3", F32, "3", "1x3", NULL, NULL, F32, true, 0.1, 1e-5, 0, false, TG_ERR_SHAPE,
     "batch_norm: beta [1x3] must be [3] for x [4x3]"},
    {BATCH_NORM, "4x3", F64, NULL, NULL, "3", "3x1", F64, false, 0.1, 1e-5, 0, false, TG_ERR_SHAPE,
     "batch_norm: running_var [3x1] must be [3] for x [4x3]"},
    {BATCH_NORM, "4x3x5", F64, NULL, NULL, "5", "3", F64, true, 0.1, 1e-5, 0, false, TG_ERR_SHAPE,
     "batch_norm: running_mean [5] must be [3] for x [4x3x5]"},
    {BATCH_NORM, "4x3", F64, NULL, NULL, "3", "3", F32, false, 0.1, 1e-5, 0, false, TG_ERR_DTYPE,
     "batch_norm: running_mean f32 [3] and x f64 [4x3] differ in dtype"},
    {BATCH_NORM, "4x3", I64, "3", NULL, NULL, NULL, F64, true, 0.1, 1e-5, 0, false, TG_ERR_DTYPE,
     "batch_norm: x [4x3] is i64; it must be f32 or f64"},
    {BATCH_NORM, "4x3", F64, "3", "3", "3", NULL, F64, false, 0.1, 1e-5, 0, false, TG_ERR_ARG,
     "batch_norm: running_var is NULL; eval mode normalises x [4x3] with the running statistics"},
    {BATCH_NORM, "4x3", F64, NULL, NULL, NULL, NULL, F64, false, 0.1, 1e-5, 0, false, TG_ERR_ARG,
     "batch_norm: running_mean is NULL; eval mode normalises x [4x3] with the running "
     "statistics"},
    {BATCH_NORM, "1x3", F64, "3", "3", "3", "3", F64, true, 0.1, 1e-5, 0, false, TG_ERR_SHAPE,
     "batch_norm: training needs more than 1 value per channel, got x [1x3]"},
    {BATCH_NORM, "1x2x1x1", F32, NULL, NULL, NULL, NULL, F32, true, 0.1, 1e-5, 0, false,
     TG_ERR_SHAPE, "batch_norm: training needs more than 1 value per channel, got x [1x2x1x1]"},
    {BATCH_NORM, "4x3", F64, NULL, NULL, NULL, NULL, F64, true, 1.5, 1e-5, 0, false, TG_ERR_ARG,
     "batch_norm: momentum must be in [0, 1], got 1.5"},
    {BATCH_NORM, "4x3", F64, NULL, NULL, "3", "3", F64, false, -0.1, 1e-5, 0, false, TG_ERR_ARG,
     "batch_norm: momentum must be in [0, 1], got -0.1"},
    {BATCH_NORM, "4x3", F64, NULL, NULL, NULL, NULL, F64, true, NAN, 1e-5, 0, false, TG_ERR_ARG,
     "batch_norm: momentum must be in [0, 1], got nan"},
    {BATCH_NORM, "4x3", F64, NULL, NULL, NULL, NULL, F64, true, 0.1, -1e-5, 0, false, TG_ERR_ARG,
     "batch_norm: eps must be finite and >= 0, got -1e-05"},
    {BATCH_NORM, NULL, F64, NULL, NULL, NULL, NULL, F64, true, 0.1, 1e-5, 0, false, TG_ERR_ARG,
     "batch_norm: input 0 is NULL"},
    {DROPOUT, "3", F64, NULL, NULL, NULL, NULL, F64, false, 0, 0, -0.1, false, TG_ERR_ARG,
     "dropout: p must be in [0, 1), got -0.1"},
    {DROPOUT, "3", F64, NULL, NULL, NULL, NULL, F64, false, 0, 0, 1, false, TG_ERR_ARG,
     "dropout: p must be in [0, 1), got 1"},
    {DROPOUT, "3", F32, NULL, NULL, NULL, NULL, F64, false, 0, 0, 2.5, false, TG_ERR_ARG,
     "dropout: p must be in [0, 1), got 2.5"},
    {DROPOUT, "3", F64, NULL, NULL, NULL, NULL, F64, false, 0, 0, NAN, false, TG_ERR_ARG,
     "dropout: p must be in [0, 1), got nan"},
    {DROPOUT, "3", F64, NULL, NULL, NULL, NULL, F64, false, 0, 0, 0.5, true, TG_ERR_ARG,
     "dropout: rng is NULL; p = 0.5 draws a mask from it"},
    {DROPOUT, "3", I64, NULL, NULL, NULL, NULL, F64, false, 0, 0, 0.5, false, TG_ERR_DTYPE,
     "dropout: x [3] is i64; it must be f32 or f64"},
    {DROPOUT, NULL, F64, NULL, NULL, NULL, NULL, F64, false, 0, 0, 0.5, false, TG_ERR_ARG,
     "dropout: input 0 is NULL"},
};
#undef F64
#undef F32
#undef I64

static tg_tensor *run_case(tg_tape *tp, const err_case *c, tg_tensor *const *t, tg_rng *rng)
{
    switch (c->op) {
    case LAYER_NORM: return tg_layer_norm(tp, t[0], t[1], t[2], c->eps);
    case BATCH_NORM:
        return tg_batch_norm(tp, t[0], t[1], t[2], t[3], t[4], c->training, c->momentum, c->eps);
    case DROPOUT: return tg_dropout(tp, t[0], c->p, c->no_rng ? NULL : rng);
    }
    return NULL;
}

START_TEST(bad_input_fails_with_message)
{
    const err_case *c = &err_cases[_i];
    tg_tensor *t[5] = {make(c->x, c->dx, 1),      make(c->gamma, c->dv, 2), make(c->beta, c->dv, 3),
                       make(c->rm, c->dv, 4), make(c->rv, c->dv, 5)};
    tg_tensor *ok = tu_operand("2x2", TG_F64, 6);
    tg_rng rng;
    tg_rng_seed(&rng, 1);
    tg_tape *tp = tg_tape_new();
    ck_assert_ptr_null(run_case(tp, c, t, &rng));
    tu_expect_failed(tp, c->want, c->msg, _i);
    ck_assert_ptr_null(tg_sum(tp, ok));
    tu_expect_still_failed(tp, c->want, c->msg);
    ck_assert_ptr_null(run_case(NULL, c, t, &rng)); /* no tape: NULL, nothing else */
    tg_tape_free(tp);
    for (int i = 0; i < 5; i++) tg_tensor_free(t[i]);
    tg_tensor_free(ok);
}
END_TEST

/* Running statistics that are not plain caller-owned leaves of their own. */
START_TEST(running_statistics_must_be_plain_leaves)
{
    tg_tensor *x = tu_operand("4x3", TG_F64, 1), *g = tu_operand("3", TG_F64, 2);
    tg_tensor *rm = tu_operand("3", TG_F64, 3), *rv = tu_operand("3", TG_F64, 4);
    tg_tape *other = tg_tape_new();
    tg_tensor *owned = tg_scale(other, rm, 2); /* an op's result, on another tape */
    tg_tensor_set_requires_grad(g, true);
    ck_assert_int_eq(tg_backward(other, tg_sum(other, tg_mul(other, owned, g))), TG_OK);
    tg_tensor *grad = tg_tensor_grad(g);
    ck_assert(owned && grad);
    tg_tensor_set_requires_grad(g, false);

    struct {
        tg_tensor *gamma, *rm, *rv;
        bool rm_requires_grad;
        const char *msg;
    } cases[] = {
        {NULL, rm, rv, true, "batch_norm: running_mean [3] requires grad; running statistics "
                             "are updated in place and never differentiated"},
        {NULL, rm, owned, false, "batch_norm: running_var [3] is an op's result or a gradient; "
                                 "it must be the caller's leaf"},
        {NULL, grad, rv, false, "batch_norm: running_mean [3] is an op's result or a gradient; "
                                "it must be the caller's leaf"},
        {g, g, rv, false, "batch_norm: running_mean [3] is also passed as gamma; it is written, "
                          "so it must be a tensor of its own"},
        {g, rm, g, false, "batch_norm: running_var [3] is also passed as gamma; it is written, "
                          "so it must be a tensor of its own"},
        {NULL, rm, rm, false, "batch_norm: running_mean [3] is also passed as running_var; it is "
                              "written, so it must be a tensor of its own"},
    };
    for (int i = 0; i < (int)(sizeof cases / sizeof *cases); i++) {
        tg_tensor_set_requires_grad(rm, cases[i].rm_requires_grad);
        for (int training = 0; training < 2; training++) {
            tg_tape *tp = tg_tape_new();
            ck_assert_ptr_null(tg_batch_norm(tp, x, cases[i].gamma, NULL, cases[i].rm, cases[i].rv,
                                             training, 0.1, 1e-5));
            tu_expect_failed(tp, TG_ERR_ARG, cases[i].msg, i);
            tg_tape_free(tp);
        }
    }
    tg_tape_free(other);
    tg_tensor_free(x);
    tg_tensor_free(g);
    tg_tensor_free(rm);
    tg_tensor_free(rv);
}
END_TEST

static Suite *norm_suite(void)
{
    Suite *s = suite_create("ops_norm");
    TCase *tc = tcase_create("values"); /* each loop runs F64, then F32 */
    tcase_add_test(tc, gradcheck_with_running_statistics);
    tcase_add_loop_test(tc, layer_norm_by_hand, 0, 2);
    tcase_add_loop_test(tc, layer_norm_constant_row, 0, 2);
    tcase_add_loop_test(tc, batch_norm_train_by_hand, 0, 2);
    tcase_add_loop_test(tc, batch_norm_eval_by_hand, 0, 2);
    tcase_add_loop_test(tc, empty_inputs, 0, 2);
    tcase_add_loop_test(tc, layer_norm_matches_torch, 0, 2);
    tcase_add_loop_test(tc, batch_norm_matches_torch, 0, 2);
    tcase_add_loop_test(tc, batch_norm_rank2_matches_torch, 0, 2);
    tcase_add_loop_test(tc, replay_matches_fresh_recording, 0, 2);
    tcase_add_loop_test(tc, train_and_eval_tapes_share_statistics, 0, 2);
    tcase_add_test(tc, explain_shows_the_rules);
    tcase_add_loop_test(tc, layer_norm_second_derivatives, 0, 2);
    tcase_add_loop_test(tc, batch_norm_train_second_derivatives, 0, 2);
    tcase_add_loop_test(tc, batch_norm_eval_second_derivatives, 0, 2);
    suite_add_tcase(s, tc);

    tc = tcase_create("dropout");
    tcase_add_loop_test(tc, dropout_mask_statistics, 0, 2);
    tcase_add_loop_test(tc, dropout_reproducible_from_seed, 0, 2);
    tcase_add_loop_test(tc, dropout_fresh_mask_per_replay, 0, 2);
    tcase_add_loop_test(tc, dropout_p0_is_identity, 0, 2);
    tcase_add_loop_test(tc, dropout_multiplies_nan_by_zero, 0, 2);
    tcase_add_loop_test(tc, dropout_second_derivative_follows_the_mask, 0, 2);
    tcase_add_test(tc, dropout_third_order_gradgradcheck);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_loop_test(tc, bad_input_fails_with_message, 0, sizeof err_cases / sizeof *err_cases);
    tcase_add_test(tc, running_statistics_must_be_plain_leaves);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run(norm_suite()); }
