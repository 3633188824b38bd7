/*
 * Reductions (sum, mean, sum_axis), softmax and log_softmax, and the losses
 * (frobenius, mse, softmax cross-entropy). Every VJP is gradchecked from the
 * op list (test_ops_list.c). Forward values and gradients are checked by hand
 * on small literals, and logits of +-1e4 must give finite, exact results.
 * Second order, for these and the other axis reductions and losses: Hessian-
 * vector products against closed forms, the recorded VJPs against the fused
 * ones, and replays of recorded gradients that read saved state.
 */
#include "testutil.h"

#include "internal.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* log x in dt's own arithmetic, for values the ops compute with log or logf. */
static double log_in(tg_dtype dt, double x)
{
    return dt == TG_F64 ? log(x) : (double)logf((float)x);
}

/* ====== Reductions by hand (F64, then F32) ====== */

START_TEST(sum_and_mean_by_hand)
{
    tg_dtype dt = tu_loop_dtype(_i);
    tg_tensor *x = tu_lit(dt, "2x4", (double[]){1, 2, 3, 4, 5, 6, 7, 8});
    tg_tensor *s = tu_lit(dt, "scalar", (double[]){-7});
    tg_tensor_set_requires_grad(x, true);
    tg_tensor_set_requires_grad(s, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *sum = tg_sum(tp, x), *mean = tg_mean(tp, x);
    tu_expect_exact(sum, "", (double[]){36}, "sum");
    tu_expect_exact(mean, "", (double[]){4.5}, "mean");
    tu_expect_exact(tg_sum(tp, s), "", (double[]){-7}, "sum of a scalar");
    tu_expect_exact(tg_mean(tp, s), "", (double[]){-7}, "mean of a scalar");

    double ones[8] = {1, 1, 1, 1, 1, 1, 1, 1}, eighths[8];
    for (int k = 0; k < 8; k++) eighths[k] = 0.125;
    ck_assert_int_eq(tg_backward(tp, sum), TG_OK);
    tu_expect_exact(tg_tensor_grad(x), "2x4", ones, "d sum / dx");
    tg_tensor_zero_grad(x);
    ck_assert_int_eq(tg_backward(tp, mean), TG_OK);
    tu_expect_exact(tg_tensor_grad(x), "2x4", eighths, "d mean / dx");
    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_tensor_free(s);
}
END_TEST

START_TEST(empty_sum_and_mean)
{
    tg_dtype dt = tu_loop_dtype(_i);
    tg_tensor *x = tu_random(dt, "0x3", -1, 1, 1);
    ck_assert_ptr_nonnull(x);
    tg_tape *tp = tg_tape_new();
    tu_expect_exact(tg_sum(tp, x), "", (double[]){0}, "sum of nothing");
    tg_tensor *mean = tg_mean(tp, x); /* 0/0, as in NumPy */
    ck_assert_ptr_nonnull(mean);
    ck_assert_msg(isnan(tg_tensor_item(mean)), "mean of nothing: %.17g", tg_tensor_item(mean));
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

START_TEST(f32_sums_accumulate_in_double)
{
    /* 1e8 + 1 == 1e8 in float: a float accumulator would lose all sixteen ones. */
    double v[18] = {1e8};
    for (int k = 1; k < 17; k++) v[k] = 1;
    v[17] = -1e8;
    tg_tensor *x = tu_lit(TG_F32, "18", v), *col = tu_lit(TG_F32, "18x1", v);
    tg_tape *tp = tg_tape_new();
    tu_expect_exact(tg_sum(tp, x), "", (double[]){16}, "sum");
    tu_expect_exact(tg_sum_axis(tp, col, 0, false), "1", (double[]){16}, "sum_axis");
    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_tensor_free(col);
}
END_TEST

/* x holds 1, 2, 3, ... in the given shape; the seed holds 1, 2, 3, ... in the output's. */
typedef struct axis_case {
    const char *shape;
    int axis;
    bool keepdim;
    const char *out;
    double y[4];  /* the sums */
    double dx[8]; /* the seed broadcast back over the reduced axis */
} axis_case;

static const axis_case axis_cases[] = {
    {"2x3", 0, false, "3", {5, 7, 9}, {1, 2, 3, 1, 2, 3}},
    {"2x3", 0, true, "1x3", {5, 7, 9}, {1, 2, 3, 1, 2, 3}},
    {"2x3", -2, false, "3", {5, 7, 9}, {1, 2, 3, 1, 2, 3}},
    {"2x3", 1, false, "2", {6, 15}, {1, 1, 1, 2, 2, 2}},
    {"2x3", -1, true, "2x1", {6, 15}, {1, 1, 1, 2, 2, 2}},
    {"2x2x2", 0, false, "2x2", {6, 8, 10, 12}, {1, 2, 3, 4, 1, 2, 3, 4}},
    {"2x2x2", -3, true, "1x2x2", {6, 8, 10, 12}, {1, 2, 3, 4, 1, 2, 3, 4}},
    {"2x2x2", 1, false, "2x2", {4, 6, 12, 14}, {1, 2, 1, 2, 3, 4, 3, 4}},
    {"2x2x2", -2, true, "2x1x2", {4, 6, 12, 14}, {1, 2, 1, 2, 3, 4, 3, 4}},
    {"2x2x2", 2, false, "2x2", {3, 7, 11, 15}, {1, 1, 2, 2, 3, 3, 4, 4}},
    {"4", 0, false, "", {10}, {1, 1, 1, 1}},
    {"4", -1, true, "1", {10}, {1, 1, 1, 1}},
    {"1x2x1x2", 3, false, "1x2x1", {3, 7}, {1, 1, 2, 2}},
    {"1x2x1x2", -4, true, "1x2x1x2", {1, 2, 3, 4}, {1, 2, 3, 4}},
    {"2x0", 1, false, "2", {0, 0}, {0}},
    {"2x0", 0, true, "1x0", {0}, {0}},
};
#define N_AXIS (int)(sizeof axis_cases / sizeof *axis_cases)

START_TEST(sum_axis_by_hand)
{
    const axis_case *c = &axis_cases[_i / 2];
    tg_dtype dt = tu_loop_dtype(_i % 2);
    double v[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    tg_tensor *x = tu_lit(dt, c->shape, v), *g = tu_lit(dt, c->out, v);
    tg_tensor_set_requires_grad(x, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_sum_axis(tp, x, c->axis, c->keepdim);
    char what[64];
    snprintf(what, sizeof what, "sum_axis(%s, %d, %s)", c->shape, c->axis,
             c->keepdim ? "keepdim" : "drop");
    tu_expect_exact(y, c->out, c->y, what);
    ck_assert_int_eq(tg_backward_seed(tp, y, g), TG_OK);
    tu_expect_exact(tg_tensor_grad(x), c->shape, c->dx, what);
    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_tensor_free(g);
}
END_TEST

/* ====== softmax and log_softmax by hand ====== */

START_TEST(softmax_by_hand)
{
    tg_dtype dt = tu_loop_dtype(_i);
    double l2 = log_in(dt, 2), l4 = log_in(dt, 4);
    tg_tensor *one = tu_lit(dt, "1x1", (double[]){5});
    tg_tensor *x = tu_lit(dt, "3x2", (double[]){0, 0, -3, -3, 7, 7});
    tg_tensor *x4 = tu_lit(dt, "2x1x4", (double[]){0, 0, 0, 0, 2, 2, 2, 2});
    tg_tape *tp = tg_tape_new();
    tu_expect_exact(tg_softmax(tp, one), "1x1", (double[]){1}, "softmax of one");
    tu_expect_exact(tg_log_softmax(tp, one), "1x1", (double[]){0}, "log_softmax of one");
    tu_expect_exact(tg_softmax(tp, x), "3x2", (double[]){.5, .5, .5, .5, .5, .5}, "softmax");
    tu_expect_exact(tg_log_softmax(tp, x), "3x2", (double[]){-l2, -l2, -l2, -l2, -l2, -l2},
                 "log_softmax");
    double q[8] = {.25, .25, .25, .25, .25, .25, .25, .25}, lq[8];
    for (int k = 0; k < 8; k++) lq[k] = -l4;
    tu_expect_exact(tg_softmax(tp, x4), "2x1x4", q, "softmax rank 3");
    tu_expect_exact(tg_log_softmax(tp, x4), "2x1x4", lq, "log_softmax rank 3");
    tg_tape_free(tp);
    tg_tensor_free(one);
    tg_tensor_free(x);
    tg_tensor_free(x4);
}
END_TEST

START_TEST(softmax_is_shift_invariant)
{
    /* x - max is exact for both rows, so the results agree bit for bit. */
    tg_dtype dt = tu_loop_dtype(_i);
    tg_tensor *x = tu_lit(dt, "2x3", (double[]){1, 2, 3, 1001, 1002, 1003});
    tg_tape *tp = tg_tape_new();
    tg_tensor *p = tg_softmax(tp, x), *lp = tg_log_softmax(tp, x);
    ck_assert(p && lp);
    for (int k = 0; k < 3; k++) {
        ck_assert_msg(tu_at(p, k) == tu_at(p, k + 3), "softmax [%d]: %.17g vs %.17g", k,
                      tu_at(p, k), tu_at(p, k + 3));
        ck_assert_msg(tu_at(lp, k) == tu_at(lp, k + 3), "log_softmax [%d]: %.17g vs %.17g", k,
                      tu_at(lp, k), tu_at(lp, k + 3));
    }
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

/* Rows [1e4, 0], [0, 1e4], [-1e4, 1e4], [1e4, 1e4]: exp(+-1e4) overflows and
 * underflows in both dtypes, yet every result below is finite and exact. */
static const double huge[8] = {1e4, 0, 0, 1e4, -1e4, 1e4, 1e4, 1e4};
static const double huge_seed[8] = {1, 0, 0, 1, 1, 1, 1, 0};

START_TEST(softmax_of_huge_logits)
{
    tg_dtype dt = tu_loop_dtype(_i);
    tg_tensor *x = tu_lit(dt, "4x2", huge), *g = tu_lit(dt, "4x2", huge_seed);
    tg_tensor_set_requires_grad(x, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_softmax(tp, x);
    tu_expect_exact(y, "4x2", (double[]){1, 0, 0, 1, 0, 1, .5, .5}, "softmax");
    ck_assert_int_eq(tg_backward_seed(tp, y, g), TG_OK);
    /* dx = y (.) (dG - sum_j dG_j y_j); only the last row has y away from 0 and 1 */
    tu_expect_exact(tg_tensor_grad(x), "4x2", (double[]){0, 0, 0, 0, 0, 0, .25, -.25}, "dx");
    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_tensor_free(g);
}
END_TEST

START_TEST(log_softmax_of_huge_logits)
{
    tg_dtype dt = tu_loop_dtype(_i);
    double l2 = log_in(dt, 2);
    tg_tensor *x = tu_lit(dt, "4x2", huge), *g = tu_lit(dt, "4x2", huge_seed);
    tg_tensor_set_requires_grad(x, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_log_softmax(tp, x);
    tu_expect_exact(y, "4x2", (double[]){0, -1e4, -1e4, 0, -2e4, 0, -l2, -l2}, "log_softmax");
    ck_assert_int_eq(tg_backward_seed(tp, y, g), TG_OK);
    /* dx = dG - softmax sum_j dG_j */
    tu_expect_exact(tg_tensor_grad(x), "4x2", (double[]){0, 0, 0, 0, 1, -1, .5, -.5}, "dx");
    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_tensor_free(g);
}
END_TEST

/* ====== Losses by hand ====== */

START_TEST(squared_losses_by_hand)
{
    tg_dtype dt = tu_loop_dtype(_i);
    const char *shapes[] = {"4", "2x2"};
    for (int s = 0; s < 2; s++) {
        tg_tensor *p = tu_lit(dt, shapes[s], (double[]){1, 2, 3, 4});
        tg_tensor *t = tu_lit(dt, shapes[s], (double[]){1, 0, 5, 4});
        tg_tensor_set_requires_grad(p, true);
        tg_tensor_set_requires_grad(t, true);
        tg_tape *tp = tg_tape_new();
        tg_tensor *frob = tg_frobenius_loss(tp, p, t), *mse = tg_mse_loss(tp, p, t);
        tu_expect_exact(frob, "", (double[]){8}, "||p - t||^2");
        tu_expect_exact(mse, "", (double[]){2}, "mean (p - t)^2");
        ck_assert_int_eq(tg_backward(tp, frob), TG_OK);
        tu_expect_exact(tg_tensor_grad(p), shapes[s], (double[]){0, 4, -4, 0}, "frobenius dp");
        tu_expect_exact(tg_tensor_grad(t), shapes[s], (double[]){0, -4, 4, 0}, "frobenius dt");
        tg_tensor_zero_grad(p);
        tg_tensor_zero_grad(t);
        ck_assert_int_eq(tg_backward(tp, mse), TG_OK);
        tu_expect_exact(tg_tensor_grad(p), shapes[s], (double[]){0, 1, -1, 0}, "mse dp");
        tu_expect_exact(tg_tensor_grad(t), shapes[s], (double[]){0, -1, 1, 0}, "mse dt");
        tg_tape_free(tp);
        tg_tensor_free(p);
        tg_tensor_free(t);
    }
}
END_TEST

START_TEST(cross_entropy_by_hand)
{
    tg_dtype dt = tu_loop_dtype(_i);
    double l2 = log_in(dt, 2);
    /* Row 0: uniform logits, soft target: log 2. Row 1: a sure, right answer: 0. */
    tg_tensor *z = tu_lit(dt, "2x2", (double[]){0, 0, 1e4, 0});
    tg_tensor *t = tu_lit(dt, "2x2", (double[]){.5, .5, 1, 0});
    tg_tensor *z1 = tu_lit(dt, "1x2", (double[]){0, 0}), *t1 = tu_lit(dt, "1x2", (double[]){1, 0});
    tg_tensor_set_requires_grad(z1, true);
    tg_tensor_set_requires_grad(t1, true);
    tg_tape *tp = tg_tape_new();
    tu_expect_exact(tg_softmax_cross_entropy(tp, z, t), "", (double[]){l2 / 2}, "mean of rows");
    tg_tensor *y = tg_softmax_cross_entropy(tp, z1, t1);
    tu_expect_exact(y, "", (double[]){l2}, "-log 1/2");
    ck_assert_int_eq(tg_backward(tp, y), TG_OK);
    /* dz = softmax sum_c t - t; dt = -log_softmax */
    tu_expect_exact(tg_tensor_grad(z1), "1x2", (double[]){-.5, .5}, "dz");
    tu_expect_exact(tg_tensor_grad(t1), "1x2", (double[]){l2, l2}, "dt");
    tg_tape_free(tp);
    tg_tensor_free(z);
    tg_tensor_free(t);
    tg_tensor_free(z1);
    tg_tensor_free(t1);
}
END_TEST

START_TEST(cross_entropy_of_huge_logits)
{
    tg_dtype dt = tu_loop_dtype(_i);
    tg_tensor *z = tu_lit(dt, "2x2", (double[]){1e4, 0, 0, 1e4});
    tg_tensor *right = tu_lit(dt, "2x2", (double[]){1, 0, 0, 1});
    tg_tensor *wrong = tu_lit(dt, "2x2", (double[]){0, 1, 1, 0});
    tg_tensor_set_requires_grad(z, true);
    tg_tensor_set_requires_grad(wrong, true);
    tg_tape *tp = tg_tape_new();
    tu_expect_exact(tg_softmax_cross_entropy(tp, z, right), "", (double[]){0}, "sure and right");
    tg_tensor *y = tg_softmax_cross_entropy(tp, z, wrong);
    tu_expect_exact(y, "", (double[]){1e4}, "sure and wrong");
    ck_assert_int_eq(tg_backward(tp, y), TG_OK);
    /* dz = 1/n (softmax - t), dt = -1/n log_softmax */
    tu_expect_exact(tg_tensor_grad(z), "2x2", (double[]){.5, -.5, -.5, .5}, "dz");
    tu_expect_exact(tg_tensor_grad(wrong), "2x2", (double[]){0, 5e3, 5e3, 0}, "dt");
    tg_tape_free(tp);
    tg_tensor_free(z);
    tg_tensor_free(right);
    tg_tensor_free(wrong);
}
END_TEST

/* ====== Replay: new data in the leaves, the same values as a fresh recording ====== */

static tg_tensor *chain(tg_tape *tp, tg_tensor *x, tg_tensor *t)
{
    tg_tensor *ls = tg_log_softmax(tp, tg_sum_axis(tp, x, 1, false));
    tg_tensor *ce = tg_softmax_cross_entropy(tp, tg_softmax(tp, ls), t);
    tg_tensor *m = tg_mean(tp, tg_sum_axis(tp, ls, 0, true));
    return tg_add(tp, tg_add(tp, ce, tg_mse_loss(tp, ls, t)), tg_add(tp, m, tg_sum(tp, x)));
}

START_TEST(replay_matches_fresh_recording)
{
    tg_dtype dt = tu_loop_dtype(_i);
    tg_tensor *x = tu_random(dt, "3x4x5", -2, 2, 31), *x2 = tu_random(dt, "3x4x5", -2, 2, 32);
    tg_tensor *t = tu_random(dt, "3x5", 0, 1, 33);
    ck_assert(x && x2 && t);
    tg_tensor_set_requires_grad(x, true);
    tg_tape *tp = tg_tape_new(), *fresh = tg_tape_new();
    tg_tensor *y = chain(tp, x, t);
    ck_assert_ptr_nonnull(y);
    memcpy(tg_tensor_data(x), tg_tensor_data(x2), (size_t)60 * (dt == TG_F64 ? 8 : 4));
    ck_assert_int_eq(tg_tape_replay(tp), TG_OK);
    tg_tensor *want = chain(fresh, x2, t);
    ck_assert_ptr_nonnull(want);
    ck_assert_msg(tg_tensor_item(y) == tg_tensor_item(want), "replay %.17g, fresh %.17g",
                  tg_tensor_item(y), tg_tensor_item(want));
    tg_tape_free(tp);
    tg_tape_free(fresh);
    tg_tensor_free(x);
    tg_tensor_free(x2);
    tg_tensor_free(t);
}
END_TEST

/* ====== Second order: the recorded VJPs (vjp_graph), against closed forms ======
 * hvp() differentiates f twice through tg_grad with create_graph: the
 * gradients g_i, then h = Σ_i <g_i, r_i>, then dh/dx_i = (H r)_i, the
 * Hessian-vector products, which each case compares with its closed form. */

#define HVP_MAX 3

/* grads: df/dwrt_i and hr: (H r)_i, both recorded (so they replay). */
static void hvp(tg_tape *tp, tg_tensor *f, tg_tensor *const *wrt, tg_tensor *const *r, int n,
                tg_tensor **grads, tg_tensor **hr)
{
    ck_assert_msg(f != NULL, "%s", tg_tape_error(tp));
    ck_assert_int_eq(tg_grad(tp, f, NULL, wrt, n, grads, true), TG_OK);
    tg_tensor *h = NULL;
    for (int i = 0; i < n; i++) {
        tg_tensor *term = tg_sum(tp, tg_mul(tp, grads[i], r[i]));
        h = h ? tg_add(tp, h, term) : term;
    }
    ck_assert_msg(h != NULL, "%s", tg_tape_error(tp));
    ck_assert_msg(tg_grad(tp, h, NULL, wrt, n, hr, true) == TG_OK, "%s", tg_tape_error(tp));
}

/* Asserts |t[k] - want[k]| <= tol max(1, |want[k]|) for every element. */
static void expect_near(const tg_tensor *t, const double *want, double tol, const char *what)
{
    ck_assert_ptr_nonnull(t);
    for (int64_t k = 0; k < tg_tensor_numel(t); k++)
        ck_assert_msg(fabs(tu_at(t, k) - want[k]) <= tol * fmax(1, fabs(want[k])),
                      "%s [%lld]: %.17g, want %.17g", what, (long long)k, tu_at(t, k), want[k]);
}

/* One closed form: f records a scalar from in[0..n-1] (the wrt tensors) and
 * the constants in[n...]; want writes (H r)_i into out[i] (numel doubles each). */
typedef struct hess_case {
    const char *name;
    const char *shapes[HVP_MAX + 1]; /* wrt shapes, then one constant's (or NULL) */
    double lo, hi;                   /* the wrt tensors are uniform in [lo, hi) */
    tg_tensor *(*f)(tg_tape *tp, tg_tensor *const *in);
    void (*want)(tg_tensor *const *in, tg_tensor *const *r, double **out);
} hess_case;

/* softmax along the last axis of row 'row' of x [rows, c] at column j, in double. */
static double softmax_at(const tg_tensor *x, int64_t c, int64_t row, int64_t j)
{
    double m = -HUGE_VAL, s = 0;
    for (int64_t l = 0; l < c; l++) m = fmax(m, tu_at(x, row * c + l));
    for (int64_t l = 0; l < c; l++) s += exp(tu_at(x, row * c + l) - m);
    return exp(tu_at(x, row * c + j) - m) / s;
}

/* (J r) of softmax at row 'row': s ⊙ (r − <s, r>), into jr[0..c). */
static void softmax_jr(const tg_tensor *x, const tg_tensor *r, int64_t c, int64_t row, double *jr)
{
    double sr = 0;
    for (int64_t l = 0; l < c; l++) sr += softmax_at(x, c, row, l) * tu_at(r, row * c + l);
    for (int64_t l = 0; l < c; l++)
        jr[l] = softmax_at(x, c, row, l) * (tu_at(r, row * c + l) - sr);
}

/* x [3,4] and the weights w [3,4] of Σ w ⊙ softmax(x): g = s ⊙ (w − <s, w>),
 * H r = (J r) ⊙ (w − <s, w>) − s <J r, w>. */
static tg_tensor *h_softmax(tg_tape *tp, tg_tensor *const *in)
{
    return tg_sum(tp, tg_mul(tp, tg_softmax(tp, in[0]), in[1]));
}

static void want_softmax_w(tg_tensor *const *in, tg_tensor *const *r, double **out)
{
    for (int64_t row = 0; row < 3; row++) {
        double jr[4], sw = 0, jrw = 0;
        softmax_jr(in[0], r[0], 4, row, jr);
        for (int64_t j = 0; j < 4; j++) {
            sw += softmax_at(in[0], 4, row, j) * tu_at(in[1], row * 4 + j);
            jrw += jr[j] * tu_at(in[1], row * 4 + j);
        }
        for (int64_t j = 0; j < 4; j++)
            out[0][row * 4 + j] =
                jr[j] * (tu_at(in[1], row * 4 + j) - sw) - softmax_at(in[0], 4, row, j) * jrw;
    }
}

/* Σ w ⊙ log_softmax(x): g = w − s Σw, H r = −(J r) Σw. */
static tg_tensor *h_log_softmax(tg_tape *tp, tg_tensor *const *in)
{
    return tg_sum(tp, tg_mul(tp, tg_log_softmax(tp, in[0]), in[1]));
}

static void want_log_softmax_w(tg_tensor *const *in, tg_tensor *const *r, double **out)
{
    for (int64_t row = 0; row < 3; row++) {
        double jr[4], wsum = 0;
        softmax_jr(in[0], r[0], 4, row, jr);
        for (int64_t j = 0; j < 4; j++) wsum += tu_at(in[1], row * 4 + j);
        for (int64_t j = 0; j < 4; j++) out[0][row * 4 + j] = -jr[j] * wsum;
    }
}

/* Σ w ⊙ logsumexp(x, axis 0) for x [3,2], w [2]: the softmax p down each
 * column, H r = w ⊙ p ⊙ (r − <p, r>) column by column. */
static tg_tensor *h_logsumexp(tg_tape *tp, tg_tensor *const *in)
{
    return tg_sum(tp, tg_mul(tp, tg_logsumexp(tp, in[0], 0, false), in[1]));
}

static void want_logsumexp_w(tg_tensor *const *in, tg_tensor *const *r, double **out)
{
    for (int64_t i = 0; i < 2; i++) {
        double m = -HUGE_VAL, s = 0, pr = 0, p[3];
        for (int64_t k = 0; k < 3; k++) m = fmax(m, tu_at(in[0], k * 2 + i));
        for (int64_t k = 0; k < 3; k++) s += exp(tu_at(in[0], k * 2 + i) - m);
        for (int64_t k = 0; k < 3; k++) p[k] = exp(tu_at(in[0], k * 2 + i) - m) / s;
        for (int64_t k = 0; k < 3; k++) pr += p[k] * tu_at(r[0], k * 2 + i);
        for (int64_t k = 0; k < 3; k++)
            out[0][k * 2 + i] = tu_at(in[1], i) * p[k] * (tu_at(r[0], k * 2 + i) - pr);
    }
}

/* cross_entropy(z [3,4], labels): H = (diag(s) − s sᵀ) / n per row, H r = (J r) / 3. */
static tg_tensor *h_cross_entropy(tg_tape *tp, tg_tensor *const *in)
{
    return tg_cross_entropy(tp, in[0], in[1]);
}

static void want_cross_entropy(tg_tensor *const *in, tg_tensor *const *r, double **out)
{
    for (int64_t row = 0; row < 3; row++) {
        double jr[4];
        softmax_jr(in[0], r[0], 4, row, jr);
        for (int64_t j = 0; j < 4; j++) out[0][row * 4 + j] = jr[j] / 3;
    }
}

/* softmax_cross_entropy(z, t), both [3,4], t not normalised, k = 1/3:
 * (H r)_z = k (rowsum(t) J r_z + s rowsum(r_t) − r_t), (H r)_t = −k (r_z − <s, r_z>). */
static tg_tensor *h_softmax_ce(tg_tape *tp, tg_tensor *const *in)
{
    return tg_softmax_cross_entropy(tp, in[0], in[1]);
}

static void want_softmax_ce(tg_tensor *const *in, tg_tensor *const *r, double **out)
{
    for (int64_t row = 0; row < 3; row++) {
        double jr[4], tsum = 0, rtsum = 0, sr = 0;
        softmax_jr(in[0], r[0], 4, row, jr);
        for (int64_t j = 0; j < 4; j++) {
            tsum += tu_at(in[1], row * 4 + j);
            rtsum += tu_at(r[1], row * 4 + j);
            sr += softmax_at(in[0], 4, row, j) * tu_at(r[0], row * 4 + j);
        }
        for (int64_t j = 0; j < 4; j++) {
            double s = softmax_at(in[0], 4, row, j);
            out[0][row * 4 + j] = (tsum * jr[j] + s * rtsum - tu_at(r[1], row * 4 + j)) / 3;
            out[1][row * 4 + j] = -(tu_at(r[0], row * 4 + j) - sr) / 3;
        }
    }
}

/* bce_with_logits(x, t) over n = 6: (H r)_x = (σ(1 − σ) r_x − r_t) / n, (H r)_t = −r_x / n. */
static tg_tensor *h_bce(tg_tape *tp, tg_tensor *const *in)
{
    return tg_bce_with_logits(tp, in[0], in[1]);
}

static void want_bce(tg_tensor *const *in, tg_tensor *const *r, double **out)
{
    for (int64_t k = 0; k < 6; k++) {
        double s = 1 / (1 + exp(-tu_at(in[0], k)));
        out[0][k] = (s * (1 - s) * tu_at(r[0], k) - tu_at(r[1], k)) / 6;
        out[1][k] = -tu_at(r[0], k) / 6;
    }
}

/* mse_loss(p, t) over n = 6 and frobenius_loss: (H r)_p = c (r_p − r_t), (H r)_t = −(H r)_p,
 * c = 2/n and 2. */
static tg_tensor *h_mse(tg_tape *tp, tg_tensor *const *in) { return tg_mse_loss(tp, in[0], in[1]); }

static void want_mse(tg_tensor *const *in, tg_tensor *const *r, double **out)
{
    (void)in;
    for (int64_t k = 0; k < 6; k++) {
        out[0][k] = 2 * (tu_at(r[0], k) - tu_at(r[1], k)) / 6;
        out[1][k] = -out[0][k];
    }
}

static tg_tensor *h_frobenius(tg_tape *tp, tg_tensor *const *in)
{
    return tg_frobenius_loss(tp, in[0], in[1]);
}

static void want_frobenius(tg_tensor *const *in, tg_tensor *const *r, double **out)
{
    (void)in;
    for (int64_t k = 0; k < 6; k++) {
        out[0][k] = 2 * (tu_at(r[0], k) - tu_at(r[1], k));
        out[1][k] = -out[0][k];
    }
}

/* huber_loss(p, t, 0.5) over n = 6, values on both sides of δ:
 * (H r)_p = [|p − t| < δ] (r_p − r_t) / n, (H r)_t = −(H r)_p. */
static tg_tensor *h_huber(tg_tape *tp, tg_tensor *const *in)
{
    return tg_huber_loss(tp, in[0], in[1], 0.5);
}

static void want_huber(tg_tensor *const *in, tg_tensor *const *r, double **out)
{
    for (int64_t k = 0; k < 6; k++) {
        bool inside = fabs(tu_at(in[0], k) - tu_at(in[1], k)) < 0.5;
        out[0][k] = inside ? (tu_at(r[0], k) - tu_at(r[1], k)) / 6 : 0;
        out[1][k] = -out[0][k];
    }
}

/* Σ w ⊙ mean_axis(x, −2) for x [2,3,2] and w [2,2], times the sum of x:
 * f = S M with S = Σx and M = Σ w ⊙ mean; dM/dx = w / 3 down the axis, so
 * H r = (w/3) Σr + 1 <w/3, r> (the Hessian of a product of two linear maps). */
static tg_tensor *h_mean_axis_sum(tg_tape *tp, tg_tensor *const *in)
{
    tg_tensor *m = tg_sum(tp, tg_mul(tp, tg_mean_axis(tp, in[0], -2, false), in[1]));
    return tg_mul(tp, m, tg_sum(tp, in[0]));
}

static void want_mean_axis_sum(tg_tensor *const *in, tg_tensor *const *r, double **out)
{
    double rsum = 0, wr = 0;
    for (int64_t k = 0; k < 12; k++) {
        rsum += tu_at(r[0], k);
        wr += tu_at(in[1], (k / 6) * 2 + k % 2) / 3 * tu_at(r[0], k);
    }
    for (int64_t k = 0; k < 12; k++) out[0][k] = tu_at(in[1], (k / 6) * 2 + k % 2) / 3 * rsum + wr;
}

static const hess_case hess_cases[] = {
    {"softmax", {"3x4", "c:3x4"}, -2, 2, h_softmax, want_softmax_w},
    {"log_softmax", {"3x4", "c:3x4"}, -2, 2, h_log_softmax, want_log_softmax_w},
    {"logsumexp", {"3x2", "c:2"}, -2, 2, h_logsumexp, want_logsumexp_w},
    {"cross_entropy", {"3x4", "i:3"}, -2, 2, h_cross_entropy, want_cross_entropy},
    {"softmax_cross_entropy", {"3x4", "3x4"}, 0, 1, h_softmax_ce, want_softmax_ce},
    {"bce_with_logits", {"2x3", "2x3"}, -2, 2, h_bce, want_bce},
    {"mse_loss", {"2x3", "2x3"}, -1, 1, h_mse, want_mse},
    {"frobenius_loss", {"6", "6"}, -1, 1, h_frobenius, want_frobenius},
    {"huber_loss", {"2x3", "2x3"}, -1, 1, h_huber, want_huber},
    {"mean_axis", {"2x3x2", "c:2x2"}, -1, 1, h_mean_axis_sum, want_mean_axis_sum},
};

START_TEST(hessian_vector_products_match_closed_forms)
{
    const hess_case *c = &hess_cases[_i];
    tg_tensor *in[HVP_MAX + 1] = {NULL}, *r[HVP_MAX] = {NULL}, *wrt[HVP_MAX];
    int n_in = 0, n = 0;
    for (; n_in <= HVP_MAX && c->shapes[n_in]; n_in++) {
        const char *s = c->shapes[n_in];
        uint64_t seed = 700 + 10 * (uint64_t)_i + (uint64_t)n_in;
        if (!strncmp(s, "i:", 2)) { /* labels 2, 0, 3 */
            in[n_in] = tg_tensor_from(TG_I64, 1, (int64_t[]){3}, (int64_t[]){2, 0, 3});
        } else if (!strncmp(s, "c:", 2)) {
            in[n_in] = tu_random(TG_F64, s + 2, -1, 1, seed);
        } else {
            in[n_in] = tu_random(TG_F64, s, c->lo, c->hi, seed);
            r[n] = tu_random(TG_F64, s, -1, 1, seed + 100);
            tg_tensor_set_requires_grad(in[n_in], true);
            wrt[n++] = in[n_in];
        }
        ck_assert_ptr_nonnull(in[n_in]);
    }
    tg_tape *tp = tg_tape_new();
    tg_tensor *g[HVP_MAX], *hr[HVP_MAX];
    hvp(tp, c->f(tp, in), wrt, r, n, g, hr);
    double *want[HVP_MAX];
    for (int i = 0; i < n; i++) want[i] = calloc((size_t)tg_tensor_numel(wrt[i]), sizeof(double));
    c->want(in, r, want);
    for (int i = 0; i < n; i++) {
        char what[96];
        snprintf(what, sizeof what, "%s: (H r)_%d", c->name, i);
        expect_near(hr[i], want[i], 1e-13, what);
        free(want[i]);
    }
    tg_tape_free(tp);
    for (int i = 0; i < n_in; i++) tg_tensor_free(in[i]);
    for (int i = 0; i < n; i++) tg_tensor_free(r[i]);
}
END_TEST

/* max_axis and min_axis: the recorded gradient puts dG at the first extreme
 * (ties: the first), dh/dw gathers r from there, and after new data a replay
 * moves both to the new extremes; a third derivative runs through the pair of
 * scatter and gather both ways. */
START_TEST(extreme_gradients_follow_replay)
{
    bool min = _i == 1;
    tg_tensor *(*op)(tg_tape *, tg_tensor *, int, bool) = min ? tg_min_axis : tg_max_axis;
    tg_tensor *x = tu_lit(TG_F64, "2x3", (double[]){1, 3, 3, -2, 5, 0});
    tg_tensor *w = tu_lit(TG_F64, "2", (double[]){2, -3});
    tg_tensor *r = tu_lit(TG_F64, "2x3", (double[]){1, 2, 3, 4, 5, 6});
    tg_tensor *rw = tu_lit(TG_F64, "2", (double[]){10, 20});
    tg_tensor *q = tu_lit(TG_F64, "2", (double[]){7, -5});
    tg_tensor_set_requires_grad(x, true);
    tg_tensor_set_requires_grad(w, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *g[2], *hr[2], *u, *v, *z;
    tg_tensor *f = tg_sum(tp, tg_mul(tp, op(tp, x, 1, false), w));
    hvp(tp, f, (tg_tensor *[]){x, w}, (tg_tensor *[]){r, rw}, 2, g, hr);
    /* Third order: u = df/dx = w at the extremes, v = d<u, u>/dw = 2 w, d<v, q>/dw = 2 q. */
    ck_assert_int_eq(tg_grad(tp, f, NULL, &x, 1, &u, true), TG_OK);
    ck_assert_int_eq(tg_grad(tp, tg_sum(tp, tg_mul(tp, u, u)), NULL, &w, 1, &v, true), TG_OK);
    ck_assert_int_eq(tg_grad(tp, tg_sum(tp, tg_mul(tp, v, q)), NULL, &w, 1, &z, true), TG_OK);
    if (min) { /* row 0: 1 at 0; row 1: -2 at 0 */
        tu_expect_exact(g[0], "2x3", (double[]){2, 0, 0, -3, 0, 0}, "df/dx");
        tu_expect_exact(hr[0], "2x3", (double[]){10, 0, 0, 20, 0, 0}, "(H r)_x");
        tu_expect_exact(hr[1], "2", (double[]){1, 4}, "(H r)_w");
    } else { /* row 0: the first 3, at 1; row 1: 5 at 1 */
        tu_expect_exact(g[0], "2x3", (double[]){0, 2, 0, 0, -3, 0}, "df/dx");
        tu_expect_exact(hr[0], "2x3", (double[]){0, 10, 0, 0, 20, 0}, "(H r)_x");
        tu_expect_exact(hr[1], "2", (double[]){2, 5}, "(H r)_w");
    }
    tu_expect_exact(v, "2", (double[]){4, -6}, "d<u, u>/dw");
    tu_expect_exact(z, "2", (double[]){14, -10}, "d<v, q>/dw");

    /* New data: the extremes move (ties again go to the first). */
    double x2[] = {4, -1, 4, 0, 0, 7};
    memcpy(tg_tensor_data(x), x2, sizeof x2);
    ck_assert_int_eq(tg_tape_replay(tp), TG_OK);
    if (min) { /* row 0: -1 at 1; row 1: the first 0, at 0 */
        tu_expect_exact(g[0], "2x3", (double[]){0, 2, 0, -3, 0, 0}, "df/dx after replay");
        tu_expect_exact(hr[0], "2x3", (double[]){0, 10, 0, 20, 0, 0}, "(H r)_x after replay");
        tu_expect_exact(hr[1], "2", (double[]){2, 4}, "(H r)_w after replay");
    } else { /* row 0: the first 4, at 0; row 1: 7 at 2 */
        tu_expect_exact(g[0], "2x3", (double[]){2, 0, 0, 0, 0, -3}, "df/dx after replay");
        tu_expect_exact(hr[0], "2x3", (double[]){10, 0, 0, 0, 0, 20}, "(H r)_x after replay");
        tu_expect_exact(hr[1], "2", (double[]){1, 6}, "(H r)_w after replay");
    }
    tu_expect_exact(z, "2", (double[]){14, -10}, "d<v, q>/dw after replay");
    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_tensor_free(w);
    tg_tensor_free(r);
    tg_tensor_free(rw);
    tg_tensor_free(q);
}
END_TEST

/* l1_loss: the gradient sign(p − t)/n is piecewise constant, so it is
 * recorded as a constant (its derivative is zero) and nothing differentiates
 * it again; sign(0) = 0 as in the fused VJP. */
START_TEST(l1_gradient_is_constant)
{
    tg_tensor *p = tu_lit(TG_F64, "4", (double[]){1, -2, 0.5, 3});
    tg_tensor *t = tu_lit(TG_F64, "4", (double[]){0, 1, 0.5, 5});
    tg_tensor_set_requires_grad(p, true);
    tg_tensor_set_requires_grad(t, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *g[2];
    ck_assert_int_eq(tg_grad(tp, tg_l1_loss(tp, p, t), NULL, (tg_tensor *[]){p, t}, 2, g, true),
                     TG_OK);
    tu_expect_exact(g[0], "4", (double[]){0.25, -0.25, 0, -0.25}, "dp");
    tu_expect_exact(g[1], "4", (double[]){-0.25, 0.25, 0, 0.25}, "dt");
    ck_assert(!tg_tensor_requires_grad(g[0]) && !tg_tensor_requires_grad(g[1]));
    tg_tape_free(tp);
    tg_tensor_free(p);
    tg_tensor_free(t);
}
END_TEST

/* cross_entropy's recorded gradient reads the labels through a constant
 * one-hot op that its forward rewrites: new logits and new labels, replayed,
 * give what a fresh recording gives, bit for bit. */
static void record_ce_hvp(tg_tape *tp, tg_tensor *z, tg_tensor *l, tg_tensor *r, tg_tensor **out)
{
    tg_tensor *g, *hr;
    hvp(tp, tg_cross_entropy(tp, z, l), &z, &r, 1, &g, &hr);
    out[0] = g, out[1] = hr;
}

START_TEST(cross_entropy_hvp_replays_new_labels)
{
    tg_tensor *z = tu_random(TG_F64, "3x4", -2, 2, 81), *z2 = tu_random(TG_F64, "3x4", -2, 2, 82);
    tg_tensor *r = tu_random(TG_F64, "3x4", -1, 1, 83);
    tg_tensor *l = tg_tensor_from(TG_I64, 1, (int64_t[]){3}, (int64_t[]){2, 0, 3});
    ck_assert(z && z2 && r && l);
    tg_tensor_set_requires_grad(z, true);
    tg_tape *tp = tg_tape_new(), *fresh = tg_tape_new();
    tg_tensor *rec[2], *want[2];
    record_ce_hvp(tp, z, l, r, rec);
    memcpy(tg_tensor_data(z), tg_tensor_cdata(z2), 12 * sizeof(double));
    memcpy(tg_tensor_data(l), (int64_t[]){1, 1, 0}, 3 * sizeof(int64_t));
    ck_assert_int_eq(tg_tape_replay(tp), TG_OK);
    record_ce_hvp(fresh, z, l, r, want);
    for (int i = 0; i < 2; i++)
        ck_assert_msg(!memcmp(tg_tensor_cdata(rec[i]), tg_tensor_cdata(want[i]),
                              12 * sizeof(double)),
                      "%s after replay differs from a fresh recording", i ? "H r" : "the gradient");
    /* The one-hot rows moved: the gradient of row 0 is now s − e_1, over 3. */
    double s0 = softmax_at(z2, 4, 0, 1);
    ck_assert_double_eq_tol(tu_at(rec[0], 1), (s0 - 1) / 3, 1e-15);
    tg_tape_free(tp);
    tg_tape_free(fresh);
    tg_tensor_free(z);
    tg_tensor_free(z2);
    tg_tensor_free(r);
    tg_tensor_free(l);
}
END_TEST

/* Third order: tg_gradgradcheck of h(x) = <d<w, f(x)>/dx, r>, whose own
 * gradient is recorded, so the check compares third derivatives of f with
 * finite differences of its second ones. f squares or composes where the
 * op alone has no third derivative. */
typedef struct third_ctx {
    tg_tensor *(*f)(tg_tape *tp, tg_tensor *const *in);
    int n;
    tg_tensor *w, *r[2];
} third_ctx;

static tg_tensor *contracted_gradient(tg_tape *tp, tg_tensor *const *in, void *ctx)
{
    const third_ctx *c = ctx;
    tg_tensor *y = c->f(tp, in), *g[2], *h = NULL;
    if (!y || tg_grad(tp, tg_sum(tp, tg_mul(tp, y, c->w)), NULL, in, c->n, g, true)) return NULL;
    for (int i = 0; i < c->n; i++) {
        tg_tensor *term = tg_sum(tp, tg_mul(tp, g[i], c->r[i]));
        h = h ? tg_add(tp, h, term) : term;
    }
    return h;
}

static tg_tensor *t_softmax(tg_tape *tp, tg_tensor *const *in) { return tg_softmax(tp, in[0]); }
static tg_tensor *t_log_softmax(tg_tape *tp, tg_tensor *const *in)
{
    return tg_log_softmax(tp, in[0]);
}
static tg_tensor *t_logsumexp(tg_tape *tp, tg_tensor *const *in)
{
    return tg_logsumexp(tp, in[0], 0, true);
}
static tg_tensor *t_max_axis(tg_tape *tp, tg_tensor *const *in)
{
    return tg_square(tp, tg_max_axis(tp, in[0], 1, false));
}
static tg_tensor *t_min_axis(tg_tape *tp, tg_tensor *const *in)
{
    return tg_square(tp, tg_min_axis(tp, in[0], -1, true));
}
static tg_tensor *t_sum_axis(tg_tape *tp, tg_tensor *const *in)
{
    return tg_pow(tp, tg_sum_axis(tp, in[0], 0, false), 3);
}
static tg_tensor *t_mean_axis(tg_tape *tp, tg_tensor *const *in)
{
    return tg_pow(tp, tg_mean_axis(tp, in[0], -2, true), 3);
}
static tg_tensor *t_mse(tg_tape *tp, tg_tensor *const *in)
{
    return tg_mse_loss(tp, tg_square(tp, in[0]), in[1]);
}
static tg_tensor *t_frobenius(tg_tape *tp, tg_tensor *const *in)
{
    return tg_frobenius_loss(tp, in[0], tg_square(tp, in[1]));
}
static tg_tensor *t_huber(tg_tape *tp, tg_tensor *const *in)
{
    return tg_huber_loss(tp, tg_square(tp, in[0]), in[1], 0.3);
}
static tg_tensor *t_l1(tg_tape *tp, tg_tensor *const *in)
{
    return tg_l1_loss(tp, tg_pow(tp, in[0], 3), in[1]);
}

static const struct {
    const char *name;
    tg_tensor *(*f)(tg_tape *tp, tg_tensor *const *in);
    const char *shapes[2];
} third_cases[] = {
    {"softmax", t_softmax, {"3x4"}},
    {"log_softmax", t_log_softmax, {"2x3"}},
    {"logsumexp", t_logsumexp, {"3x2"}},
    {"max_axis", t_max_axis, {"2x3x2"}},
    {"min_axis", t_min_axis, {"2x3"}},
    {"sum_axis", t_sum_axis, {"3x2"}},
    {"mean_axis", t_mean_axis, {"2x3x2"}},
    {"softmax_cross_entropy", h_softmax_ce, {"2x3", "2x3"}},
    {"cross_entropy", h_cross_entropy, {"3x4", NULL}},
    {"bce_with_logits", h_bce, {"2x3", "2x3"}},
    {"mse_loss", t_mse, {"4", "4"}},
    {"frobenius_loss", t_frobenius, {"2x2", "2x2"}},
    {"huber_loss", t_huber, {"5", "5"}},
    {"l1_loss", t_l1, {"5", "5"}},
};

START_TEST(third_derivatives_match_finite_differences)
{
    tg_tensor *in[2] = {NULL, NULL};
    third_ctx c = {.f = third_cases[_i].f};
    uint64_t seed = 1100 + 10 * (uint64_t)_i;
    for (int i = 0; i < 2 && third_cases[_i].shapes[i]; i++, c.n++) {
        in[i] = tu_random(TG_F64, third_cases[_i].shapes[i], -1, 1, seed + (uint64_t)i);
        c.r[i] = tu_random(TG_F64, third_cases[_i].shapes[i], -1, 1, seed + 5 + (uint64_t)i);
        ck_assert(in[i] && c.r[i]);
        tg_tensor_set_requires_grad(in[i], true);
    }
    tg_tensor *labels = tg_tensor_from(TG_I64, 1, (int64_t[]){3}, (int64_t[]){2, 0, 3});
    if (!in[1]) in[1] = labels; /* cross_entropy's labels, not differentiated */
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = c.f(tp, in);
    ck_assert_msg(y != NULL, "%s: %s", third_cases[_i].name, tg_tape_error(tp));
    c.w = tu_random(TG_F64, "", -1, 1, seed + 9);
    if (tg_tensor_rank(y) > 0) {
        char shape[32] = "";
        for (int d = 0; d < tg_tensor_rank(y); d++)
            snprintf(shape + strlen(shape), sizeof shape - strlen(shape), d ? "x%lld" : "%lld",
                     (long long)tg_tensor_shape(y)[d]);
        tg_tensor_free(c.w);
        c.w = tu_random(TG_F64, shape, -1, 1, seed + 9);
    }
    tg_tape_free(tp);
    tg_gradcheck_report rep;
    tg_status s = tg_gradgradcheck(contracted_gradient, in, c.n, &c, NULL, &rep);
    ck_assert_msg(s == TG_OK && rep.passed, "%s: %s", third_cases[_i].name, rep.msg);
    ck_assert_int_gt(rep.n_checked, 0);
    for (int i = 0; i < 2; i++) tg_tensor_free(c.r[i]);
    tg_tensor_free(in[0]);
    if (in[1] != labels) tg_tensor_free(in[1]);
    tg_tensor_free(labels);
    tg_tensor_free(c.w);
}
END_TEST

/* ====== The recorded VJPs give the fused VJPs' values, bit for bit in F64 ====== */

typedef struct same_case {
    const char *name;
    const char *shapes; /* "a;b", the float inputs, all requiring grad; "i:" labels */
    tg_tensor *(*f)(tg_tape *tp, tg_tensor *const *in);
} same_case;

static tg_tensor *s_sum_axis(tg_tape *tp, tg_tensor *const *in)
{
    return tg_sum_axis(tp, in[0], 1, false);
}
static tg_tensor *s_mean_axis(tg_tape *tp, tg_tensor *const *in)
{
    return tg_mean_axis(tp, in[0], -1, true);
}
static tg_tensor *s_max_axis(tg_tape *tp, tg_tensor *const *in)
{
    return tg_max_axis(tp, in[0], 0, false);
}
static tg_tensor *s_min_axis(tg_tape *tp, tg_tensor *const *in)
{
    return tg_min_axis(tp, in[0], 1, true);
}
static tg_tensor *s_logsumexp(tg_tape *tp, tg_tensor *const *in)
{
    return tg_logsumexp(tp, in[0], 1, false);
}
static tg_tensor *s_softmax(tg_tape *tp, tg_tensor *const *in) { return tg_softmax(tp, in[0]); }
static tg_tensor *s_log_softmax(tg_tape *tp, tg_tensor *const *in)
{
    return tg_log_softmax(tp, in[0]);
}
static tg_tensor *s_huber(tg_tape *tp, tg_tensor *const *in)
{
    return tg_huber_loss(tp, in[0], in[1], 0.5);
}
static tg_tensor *s_l1(tg_tape *tp, tg_tensor *const *in) { return tg_l1_loss(tp, in[0], in[1]); }

static const same_case same_cases[] = {
    {"sum_axis", "2x3x4", s_sum_axis},
    {"mean_axis", "2x3x5", s_mean_axis},
    {"max_axis", "3x4", s_max_axis},
    {"min_axis", "2x3x4", s_min_axis},
    {"logsumexp", "2x5x3", s_logsumexp},
    {"softmax", "3x7", s_softmax},
    {"log_softmax", "2x3x7", s_log_softmax},
    {"frobenius_loss", "3x5;3x5", h_frobenius},
    {"mse_loss", "3x5;3x5", h_mse},
    {"softmax_cross_entropy", "3x5;3x5", h_softmax_ce},
    {"cross_entropy", "3x4;i:3", h_cross_entropy},
    {"bce_with_logits", "3x5;3x5", h_bce},
    {"l1_loss", "3x5;3x5", s_l1},
    {"huber_loss", "3x5;3x5", s_huber},
    /* Empty operands: nothing flows back, and nothing fails on the way. */
    {"sum_axis", "0x3x2", s_sum_axis},
    {"mean_axis", "2x3x0", s_mean_axis},
    {"max_axis", "3x0", s_max_axis},
    {"min_axis", "0x2x3", s_min_axis},
    {"logsumexp", "2x0x3", s_logsumexp},
    {"softmax", "2x0", s_softmax},
    {"log_softmax", "0x3", s_log_softmax},
    {"frobenius_loss", "0x3;0x3", h_frobenius},
    {"mse_loss", "0x3;0x3", h_mse},
    {"softmax_cross_entropy", "0x3;0x3", h_softmax_ce},
    {"cross_entropy", "0x4;i:", h_cross_entropy},
    {"bce_with_logits", "0;0", h_bce},
    {"l1_loss", "2x0;2x0", s_l1},
    {"huber_loss", "0;0", s_huber},
};

START_TEST(recorded_gradients_equal_fused_ones)
{
    const same_case *c = &same_cases[_i];
    char buf[64];
    snprintf(buf, sizeof buf, "%s", c->shapes);
    tg_tensor *in[2] = {NULL, NULL};
    int n = 0;
    for (char *s = strtok(buf, ";"); s; s = strtok(NULL, ";"), n++) {
        if (!strncmp(s, "i:", 2)) { /* labels 2, 0, 3 for the logits' rows */
            in[n] = tg_tensor_from(TG_I64, 1, (int64_t[]){tg_tensor_shape(in[0])[0]},
                                   (int64_t[]){2, 0, 3});
        } else {
            in[n] = tu_random(TG_F64, s, -2, 2, 900 + 10 * (uint64_t)_i + (uint64_t)n);
            tg_tensor_set_requires_grad(in[n], true);
        }
        ck_assert_ptr_nonnull(in[n]);
    }
    int n_wrt = tg_tensor_dtype(in[n - 1]) == TG_I64 ? n - 1 : n;
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = c->f(tp, in);
    ck_assert_msg(y != NULL, "%s: %s", c->name, tg_tape_error(tp));
    tg_tensor *seed = tu_random(TG_F64, "", -1, 1, 999);
    if (tg_tensor_rank(y) > 0) { /* a seed that differs from element to element */
        tg_tensor_free(seed);
        seed = tg_tensor_new(TG_F64, tg_tensor_rank(y), tg_tensor_shape(y));
        for (int64_t k = 0; k < tg_tensor_numel(y); k++)
            tu_put(seed, k, cos(0.7 * (double)k + 0.3));
    }
    tg_tensor *fused[2], *rec[2];
    ck_assert_int_eq(tg_grad(tp, y, seed, in, n_wrt, fused, false), TG_OK);
    ck_assert_int_eq(tg_grad(tp, y, seed, in, n_wrt, rec, true), TG_OK);
    for (int i = 0; i < n_wrt; i++)
        for (int64_t k = 0; k < tg_tensor_numel(in[i]); k++)
            ck_assert_msg(tu_at(fused[i], k) == tu_at(rec[i], k),
                          "%s: input %d [%lld]: fused %.17g, recorded %.17g", c->name, i,
                          (long long)k, tu_at(fused[i], k), tu_at(rec[i], k));
    tg_tape_free(tp);
    tg_tensor_free(seed);
    for (int i = 0; i < n; i++) tg_tensor_free(in[i]);
}
END_TEST

/* ====== Errors: status and exact message; the tape stays failed ====== */

/* Every op as one taking two tensors and an axis, so one table holds them all. */
typedef tg_tensor *(*any_fn)(tg_tape *tp, tg_tensor *a, tg_tensor *b, int axis);

static tg_tensor *f_sum(tg_tape *tp, tg_tensor *a, tg_tensor *b, int axis)
{
    (void)b, (void)axis;
    return tg_sum(tp, a);
}

static tg_tensor *f_mean(tg_tape *tp, tg_tensor *a, tg_tensor *b, int axis)
{
    (void)b, (void)axis;
    return tg_mean(tp, a);
}

static tg_tensor *f_sum_axis(tg_tape *tp, tg_tensor *a, tg_tensor *b, int axis)
{
    (void)b;
    return tg_sum_axis(tp, a, axis, false);
}

static tg_tensor *f_softmax(tg_tape *tp, tg_tensor *a, tg_tensor *b, int axis)
{
    (void)b, (void)axis;
    return tg_softmax(tp, a);
}

static tg_tensor *f_log_softmax(tg_tape *tp, tg_tensor *a, tg_tensor *b, int axis)
{
    (void)b, (void)axis;
    return tg_log_softmax(tp, a);
}

static tg_tensor *f_frobenius(tg_tape *tp, tg_tensor *a, tg_tensor *b, int axis)
{
    (void)axis;
    return tg_frobenius_loss(tp, a, b);
}

static tg_tensor *f_mse(tg_tape *tp, tg_tensor *a, tg_tensor *b, int axis)
{
    (void)axis;
    return tg_mse_loss(tp, a, b);
}

static tg_tensor *f_ce(tg_tape *tp, tg_tensor *a, tg_tensor *b, int axis)
{
    (void)axis;
    return tg_softmax_cross_entropy(tp, a, b);
}

typedef struct err_case {
    any_fn op;
    const char *a, *b; /* shape strings ("" is rank 0); NULL passes a NULL tensor */
    tg_dtype da, db;
    int axis;
    tg_status want;
    const char *msg;
} err_case;

#define F64 TG_F64
#define F32 TG_F32
static const err_case err_cases[] = {
    {f_sum_axis, "2x3", NULL, F64, F64, 2, TG_ERR_ARG, "sum_axis: axis 2 out of range for [2x3]"},
    {f_sum_axis, "2x3", NULL, F32, F32, -3, TG_ERR_ARG,
     "sum_axis: axis -3 out of range for [2x3]"},
    {f_sum_axis, "", NULL, F64, F64, 0, TG_ERR_ARG, "sum_axis: axis 0 out of range for []"},
    {f_sum_axis, "", NULL, F64, F64, -1, TG_ERR_ARG, "sum_axis: axis -1 out of range for []"},
    {f_sum_axis, "2x3", NULL, F64, F64, INT_MAX, TG_ERR_ARG,
     "sum_axis: axis 2147483647 out of range for [2x3]"},
    {f_sum_axis, "2x3", NULL, F64, F64, INT_MIN, TG_ERR_ARG,
     "sum_axis: axis -2147483648 out of range for [2x3]"},
    {f_sum_axis, NULL, NULL, F64, F64, 0, TG_ERR_ARG, "sum_axis: input 0 is NULL"},
    {f_sum, NULL, NULL, F64, F64, 0, TG_ERR_ARG, "sum: input 0 is NULL"},
    {f_mean, NULL, NULL, F64, F64, 0, TG_ERR_ARG, "mean: input 0 is NULL"},
    {f_softmax, "", NULL, F64, F64, 0, TG_ERR_SHAPE, "softmax: needs rank >= 1, got []"},
    {f_log_softmax, "", NULL, F32, F32, 0, TG_ERR_SHAPE, "log_softmax: needs rank >= 1, got []"},
    {f_softmax, NULL, NULL, F64, F64, 0, TG_ERR_ARG, "softmax: input 0 is NULL"},
    {f_frobenius, "2x3", "3x2", F64, F64, 0, TG_ERR_SHAPE,
     "frobenius_loss: prediction and target differ in shape: [2x3] and [3x2]"},
    {f_mse, "4", "5", F64, F64, 0, TG_ERR_SHAPE,
     "mse_loss: prediction and target differ in shape: [4] and [5]"},
    {f_mse, "4", "1x4", F32, F32, 0, TG_ERR_SHAPE,
     "mse_loss: prediction and target differ in shape: [4] and [1x4]"},
    {f_ce, "2x3", "2x4", F64, F64, 0, TG_ERR_SHAPE,
     "softmax_cross_entropy: prediction and target differ in shape: [2x3] and [2x4]"},
    {f_ce, "6", "6", F64, F64, 0, TG_ERR_SHAPE,
     "softmax_cross_entropy: logits must be [n,c], got [6]"},
    {f_ce, "2x3x4", "2x3x4", F64, F64, 0, TG_ERR_SHAPE,
     "softmax_cross_entropy: logits must be [n,c], got [2x3x4]"},
    {f_frobenius, "4", "4", F32, F64, 0, TG_ERR_DTYPE,
     "frobenius_loss: inputs differ in dtype: f32 [4] and f64 [4]"},
    {f_mse, "2x2", "2x2", F64, F32, 0, TG_ERR_DTYPE,
     "mse_loss: inputs differ in dtype: f64 [2x2] and f32 [2x2]"},
    {f_ce, "2x3", "2x3", F64, F32, 0, TG_ERR_DTYPE,
     "softmax_cross_entropy: inputs differ in dtype: f64 [2x3] and f32 [2x3]"},
    {f_mse, "4", NULL, F64, F64, 0, TG_ERR_ARG, "mse_loss: input 1 is NULL"},
    {f_ce, NULL, "2x3", F64, F64, 0, TG_ERR_ARG, "softmax_cross_entropy: input 0 is NULL"},
};
#undef F64
#undef F32

START_TEST(bad_input_fails_with_message)
{
    const err_case *c = &err_cases[_i];
    tg_tensor *a = tu_operand(c->a, c->da, 1), *b = tu_operand(c->b, c->db, 2);
    tg_tensor *ok = tu_operand("2x2", TG_F64, 3);
    tg_tape *tp = tg_tape_new();
    ck_assert_ptr_null(c->op(tp, a, b, c->axis));
    tu_expect_failed(tp, c->want, c->msg, _i);
    /* Sticky: a valid op now records nothing and the first message stays. */
    ck_assert_ptr_null(tg_sum(tp, ok));
    tu_expect_still_failed(tp, c->want, c->msg);
    tg_tape_free(tp);
    tg_tensor_free(a);
    tg_tensor_free(b);
    tg_tensor_free(ok);
}
END_TEST

START_TEST(null_tape_returns_null)
{
    tg_tensor *a = tu_operand("2x2", TG_F64, 1);
    for (size_t i = 0; i < sizeof err_cases / sizeof *err_cases; i++)
        ck_assert_ptr_null(err_cases[i].op(NULL, a, a, 0));
    tg_tensor_free(a);
}
END_TEST

static Suite *reduce_suite(void)
{
    Suite *s = suite_create("ops_reduce");
    TCase *tc = tcase_create("values"); /* each loop runs F64, then F32 */
    tcase_add_loop_test(tc, sum_and_mean_by_hand, 0, 2);
    tcase_add_loop_test(tc, empty_sum_and_mean, 0, 2);
    tcase_add_test(tc, f32_sums_accumulate_in_double);
    tcase_add_loop_test(tc, sum_axis_by_hand, 0, 2 * N_AXIS);
    tcase_add_loop_test(tc, softmax_by_hand, 0, 2);
    tcase_add_loop_test(tc, softmax_is_shift_invariant, 0, 2);
    tcase_add_loop_test(tc, softmax_of_huge_logits, 0, 2);
    tcase_add_loop_test(tc, log_softmax_of_huge_logits, 0, 2);
    tcase_add_loop_test(tc, squared_losses_by_hand, 0, 2);
    tcase_add_loop_test(tc, cross_entropy_by_hand, 0, 2);
    tcase_add_loop_test(tc, cross_entropy_of_huge_logits, 0, 2);
    tcase_add_loop_test(tc, replay_matches_fresh_recording, 0, 2);
    suite_add_tcase(s, tc);

    tc = tcase_create("second order");
    tcase_add_loop_test(tc, hessian_vector_products_match_closed_forms, 0,
                        sizeof hess_cases / sizeof *hess_cases);
    tcase_add_loop_test(tc, extreme_gradients_follow_replay, 0, 2); /* max, min */
    tcase_add_test(tc, l1_gradient_is_constant);
    tcase_add_test(tc, cross_entropy_hvp_replays_new_labels);
    tcase_add_loop_test(tc, recorded_gradients_equal_fused_ones, 0,
                        sizeof same_cases / sizeof *same_cases);
    tcase_add_loop_test(tc, third_derivatives_match_finite_differences, 0,
                        sizeof third_cases / sizeof *third_cases);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_loop_test(tc, bad_input_fails_with_message, 0, sizeof err_cases / sizeof *err_cases);
    tcase_add_test(tc, null_tape_returns_null);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run(reduce_suite()); }
