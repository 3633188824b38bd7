/*
 * Reductions (sum, mean, sum_axis), softmax and log_softmax, and the losses
 * (frobenius, mse, softmax cross-entropy). Every VJP is gradchecked from the
 * op list (test_ops_list.c). Forward values and gradients are checked by hand
 * on small literals, and logits of +-1e4 must give finite, exact results.
 */
#include "testutil.h"

#include "internal.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
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

    tc = tcase_create("errors");
    tcase_add_loop_test(tc, bad_input_fails_with_message, 0, sizeof err_cases / sizeof *err_cases);
    tcase_add_test(tc, null_tape_returns_null);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run(reduce_suite()); }
