/*
 * The elementwise ops (their VJPs are gradchecked from the op list by
 * test_ops_list.c): forward values worked out by hand, the broadcasting walk against a
 * naive index computation, IEEE edge values, saturation, shape and dtype
 * errors, and replay.
 */
#include "testutil.h"

#include <fenv.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* v as the dtype stores it. */
static double rounded(tg_dtype dt, double v) { return dt == TG_F64 ? v : (double)(float)v; }

/* ====== wsum(y) = sum_k w_k y_k, w_k = 1 + (k mod 7)/4: the scalar to differentiate ======
 * Distinct weights make a gradient that lands on the wrong element fail the
 * check, where a plain sum would let it pass. Defined here so the suite needs
 * no reduce op. */

static double weight(int64_t k) { return 1 + (double)(k % 7) / 4; }

static tg_status wsum_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in, (void)ctx;
    double s = 0;
    for (int64_t k = 0; k < tg_tensor_numel(in[0]); k++)
        s += weight(k) * tu_at(in[0], k);
    tu_put(out, 0, s);
    return TG_OK;
}

static tg_status wsum_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                          tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)n_in, (void)ctx;
    if (!gin[0]) return TG_OK;
    for (int64_t k = 0; k < tg_tensor_numel(in[0]); k++) /* dy_k += dG w_k */
        tu_put(gin[0], k, tu_at(gin[0], k) + tu_at(gout, 0) * weight(k));
    return TG_OK;
}

static const tg_op_def wsum_def = {.name = "wsum", .forward = wsum_forward, .vjp = wsum_vjp};

static tg_tensor *wsum(tg_tape *tp, tg_tensor *y)
{
    return tg_custom(tp, &wsum_def, &y, 1, 0, NULL, NULL);
}

/* ====== The ops as function pointers, for the tables below ====== */

typedef tg_tensor *(*unary_fn)(tg_tape *tp, tg_tensor *x);
typedef tg_tensor *(*binary_fn)(tg_tape *tp, tg_tensor *a, tg_tensor *b);

static tg_tensor *scale_by_minus_2_5(tg_tape *tp, tg_tensor *x) { return tg_scale(tp, x, -2.5); }

/* Splits "a;b" into two shape strings ("a" alone gives b = NULL). */
static void split_shapes(const char *shapes, char *a, char *b, size_t size)
{
    const char *semi = strchr(shapes, ';');
    size_t n = semi ? (size_t)(semi - shapes) : strlen(shapes);
    snprintf(a, size, "%.*s", (int)n, shapes);
    snprintf(b, size, "%s", semi ? semi + 1 : "");
}

/* ====== Forward values worked out by hand, in F32 and F64 ====== */

typedef struct fwd_case {
    const char *name;
    unary_fn un;
    binary_fn bin;
    const char *a_shape, *b_shape, *y_shape;
    double a[6], b[6], y[12];
    int ulps; /* 0: exact; else |got - want| <= ulps * epsilon * |want| */
} fwd_case;

static const fwd_case fwd_cases[] = {
    {"add",
     NULL,
     tg_add,
     "2x3",
     "3",
     "2x3",
     {1, 2, 3, 4, 5, 6},
     {10, 20, 30},
     {11, 22, 33, 14, 25, 36},
     0},
    {"add", NULL, tg_add, "", "2x2", "2x2", {0.5}, {1, 2, 3, 4}, {1.5, 2.5, 3.5, 4.5}, 0},
    {"sub",
     NULL,
     tg_sub,
     "2x1",
     "1x3",
     "2x3",
     {1, 2},
     {10, 20, 30},
     {-9, -19, -29, -8, -18, -28},
     0},
    {"mul",
     NULL,
     tg_mul,
     "2x3",
     "3",
     "2x3",
     {1, 2, 3, 4, 5, 6},
     {2, 0.5, -1},
     {2, 1, -3, 8, 2.5, -6},
     0},
    {"mul",
     NULL,
     tg_mul,
     "2x1x2",
     "3x1",
     "2x3x2",
     {1, 2, 3, 4},
     {1, 10, 100},
     {1, 2, 10, 20, 100, 200, 3, 4, 30, 40, 300, 400},
     0},
    {"div", NULL, tg_div, "2x2", "2x1", "2x2", {1, 2, 3, 4}, {2, 4}, {0.5, 1, 0.75, 1}, 0},
    {"scale", scale_by_minus_2_5, NULL, "3", NULL, "3", {1, -2, 0.5}, {0}, {-2.5, 5, -1.25}, 0},
    {"neg", tg_neg, NULL, "1x3", NULL, "1x3", {1, -2, 0}, {0}, {-1, 2, 0}, 0},
    {"sigmoid", tg_sigmoid, NULL, "", NULL, "", {0}, {0}, {0.5}, 0},
    {"sigmoid",
     tg_sigmoid,
     NULL,
     "2",
     NULL,
     "2",
     {2, -2},
     {0},
     {0.8807970779778823, 0.11920292202211755},
     4},
    {"tanh",
     tg_tanh,
     NULL,
     "3",
     NULL,
     "3",
     {0, 1, -0.5},
     {0},
     {0, 0.7615941559557649, -0.46211715726000974},
     4},
    {"relu", tg_relu, NULL, "3", NULL, "3", {-1, 0, 2.5}, {0}, {0, 0, 2.5}, 0},
    {"exp",
     tg_exp,
     NULL,
     "3",
     NULL,
     "3",
     {0, 1, -1},
     {0},
     {1, 2.718281828459045, 0.36787944117144233},
     4},
    {"log",
     tg_log,
     NULL,
     "3",
     NULL,
     "3",
     {1, 2, 0.5},
     {0},
     {0, 0.6931471805599453, -0.6931471805599453},
     4},
    {"square", tg_square, NULL, "3", NULL, "3", {-3, 0.5, 0}, {0}, {9, 0.25, 0}, 0},
};

/* Row _i / 2 in F64 (even _i) or F32 (odd _i). */
START_TEST(forward_values)
{
    const fwd_case *c = &fwd_cases[_i / 2];
    tg_dtype dt = tu_loop_dtype(_i % 2);
    double eps = dt == TG_F64 ? DBL_EPSILON : (double)FLT_EPSILON;
    tg_tape *tp = tg_tape_new();
    tg_tensor *a = tu_from(dt, c->a_shape, c->a);
    tg_tensor *b = c->bin ? tu_from(dt, c->b_shape, c->b) : NULL;
    tg_tensor *y = c->bin ? c->bin(tp, a, b) : c->un(tp, a);
    ck_assert_msg(y, "%s %s: %s", c->name, tu_dtype_name(dt), tg_tape_error(tp));

    int64_t shape[TG_MAX_RANK];
    int rank = tu_parse_shape(c->y_shape, shape);
    ck_assert_int_eq(tg_tensor_rank(y), rank);
    for (int d = 0; d < rank; d++)
        ck_assert_int_eq(tg_tensor_shape(y)[d], shape[d]);
    for (int64_t k = 0; k < tg_tensor_numel(y); k++) {
        double got = tu_at(y, k), want = c->y[k];
        double tol = c->ulps * eps * fabs(want);
        ck_assert_msg(fabs(got - want) <= tol, "%s %s [%lld]: got %.17g want %.17g", c->name,
                      tu_dtype_name(dt), (long long)k, got, want);
    }
    tg_tape_free(tp);
    tg_tensor_free(a);
    tg_tensor_free(b);
}
END_TEST

/* ====== The broadcasting walk against a naive index computation ====== */

/* Every pair goes through all four ops: same shapes (one loop), row and column
 * broadcasts, both operands stretched, scalars, ranks up to 4, no elements. */
static const char *const walk_shapes[] = {
    "3x4;3x4",         "3x4;4", "4;3x4",   "3x1;3x4",      "3x1;1x4",
    "2x1x5;1x3x1",     ";2x3",  "2x3;",    "1x1;1",        "2x3x1x4;3x2x1",
    "1x3x1x2;4x1x5x1", "0x3;3", "2x1x3;1", "4x1x1x1;1x1x2"};

static const binary_fn walk_ops[] = {tg_add, tg_sub, tg_mul, tg_div};

/* Dimension d of t with t aligned at the right of a rank 'y_rank' shape: 1
 * where t has no such dimension. */
static int64_t aligned_dim(const tg_tensor *t, int y_rank, int d)
{
    int lead = y_rank - tg_tensor_rank(t);
    return d < lead ? 1 : tg_tensor_shape(t)[d - lead];
}

/* The flat index into t of element k of an output of shape ys: each output
 * index taken as 0 where t's dimension is 1. */
static int64_t source_index(const tg_tensor *t, int y_rank, const int64_t *ys, int64_t k)
{
    int64_t idx = 0, stride = 1;
    for (int d = y_rank - 1; d >= 0; d--) {
        int64_t i = k % ys[d], n = aligned_dim(t, y_rank, d);
        k /= ys[d];
        idx += (n == 1 ? 0 : i) * stride;
        stride *= n;
    }
    return idx;
}

/* y, dA and dB of op 'o' on one pair of elements, in double. */
static void naive(int o, double a, double b, double g, double *y, double *da, double *db)
{
    switch (o) {
    case 0:
        *y = a + b, *da = g, *db = g;
        break;
    case 1:
        *y = a - b, *da = g, *db = -g;
        break;
    case 2:
        *y = a * b, *da = g * b, *db = g * a;
        break;
    default:
        *y = a / b, *da = g / b, *db = -g * a / (b * b);
        break;
    }
}

/* Pair _i / 2 in F64 (even _i) or F32 (odd _i), through every binary op. The
 * forward is one IEEE operation per element, so it must match bit for bit; the
 * gradients sum in another order, so they match to a tolerance. */
START_TEST(broadcast_matches_naive)
{
    const char *shapes = walk_shapes[_i / 2];
    tg_dtype dt = tu_loop_dtype(_i % 2);
    double tol = dt == TG_F64 ? 1e-14 : 1e-5;
    char sa[32], sb[32];
    split_shapes(shapes, sa, sb, sizeof sa);
    for (int o = 0; o < 4; o++) {
        tg_tape *tp = tg_tape_new();
        tg_tensor *a = tu_random(dt, sa, -2, 2, 21), *b = tu_random(dt, sb, 0.5, 2, 22);
        tg_tensor_set_requires_grad(a, true);
        tg_tensor_set_requires_grad(b, true);
        tg_tensor *y = walk_ops[o](tp, a, b);
        ck_assert_msg(y, "%s: %s", shapes, tg_tape_error(tp));
        tg_tensor *seed = tg_tensor_new(dt, tg_tensor_rank(y), tg_tensor_shape(y));
        tg_tensor *rnd = tu_random(dt, "64", -1, 1, 23);
        for (int64_t k = 0; k < tg_tensor_numel(y); k++)
            tu_put(seed, k, tu_at(rnd, k % 64));
        ck_assert_int_eq(tg_backward_seed(tp, y, seed), TG_OK);

        tg_tensor *da = tg_tensor_new(TG_F64, tg_tensor_rank(a), tg_tensor_shape(a));
        tg_tensor *db = tg_tensor_new(TG_F64, tg_tensor_rank(b), tg_tensor_shape(b));
        int yr = tg_tensor_rank(y);
        const int64_t *ys = tg_tensor_shape(y);
        for (int d = 0; d < yr; d++) {
            int64_t na = aligned_dim(a, yr, d), nb = aligned_dim(b, yr, d);
            ck_assert_int_eq(ys[d], na == 1 ? nb : na);
        }
        for (int64_t k = 0; k < tg_tensor_numel(y); k++) {
            int64_t ia = source_index(a, yr, ys, k), ib = source_index(b, yr, ys, k);
            double want, ga, gb;
            naive(o, tu_at(a, ia), tu_at(b, ib), tu_at(seed, k), &want, &ga, &gb);
            ck_assert_msg(tu_at(y, k) == rounded(dt, want), "%s op %d [%lld]: got %.17g want %.17g",
                          shapes, o, (long long)k, tu_at(y, k), rounded(dt, want));
            tu_put(da, ia, tu_at(da, ia) + ga);
            tu_put(db, ib, tu_at(db, ib) + gb);
        }
        int64_t bad = 0;
        ck_assert_msg(tu_close(tg_tensor_grad(a), da, tol, &bad),
                      "%s op %d: dA[%lld] %.17g vs %.17g", shapes, o, (long long)bad,
                      tu_at(tg_tensor_grad(a), bad), tu_at(da, bad));
        ck_assert_msg(tu_close(tg_tensor_grad(b), db, tol, &bad),
                      "%s op %d: dB[%lld] %.17g vs %.17g", shapes, o, (long long)bad,
                      tu_at(tg_tensor_grad(b), bad), tu_at(db, bad));
        tg_tape_free(tp);
        tg_tensor_free(a), tg_tensor_free(b), tg_tensor_free(seed), tg_tensor_free(rnd);
        tg_tensor_free(da), tg_tensor_free(db);
    }
}
END_TEST

/* ====== IEEE values, saturation, relu at 0 ====== */

/* _i = 0: F64, 1: F32. Values are never errors: the tape stays healthy. */
START_TEST(ieee_edge_values)
{
    tg_dtype dt = tu_loop_dtype(_i);
    tg_tape *tp = tg_tape_new();
    tg_tensor *x = tu_from(dt, "3", (const double[]){0, -1, 1000});
    tg_tensor *num = tu_from(dt, "3", (const double[]){1, -1, 0});
    tg_tensor *zero = tu_from(dt, "", (const double[]){0});
    tg_tensor *nan = tu_from(dt, "", (const double[]){(double)NAN});
    tg_tensor *lg = tg_log(tp, x), *ex = tg_exp(tp, x), *dv = tg_div(tp, num, zero);
    tg_tensor *rl = tg_relu(tp, nan), *sg = tg_sigmoid(tp, nan);
    ck_assert_int_eq(tg_tape_status(tp), TG_OK);
    ck_assert(isinf(tu_at(lg, 0)) && tu_at(lg, 0) < 0); /* log(0) = -inf */
    ck_assert(isnan(tu_at(lg, 1)));                     /* log(-1) = NaN */
    ck_assert(isinf(tu_at(ex, 2)) && tu_at(ex, 2) > 0); /* exp(1000) = +inf */
    ck_assert(isinf(tu_at(dv, 0)) && tu_at(dv, 0) > 0); /* 1/0 = +inf */
    ck_assert(isinf(tu_at(dv, 1)) && tu_at(dv, 1) < 0); /* -1/0 = -inf */
    ck_assert(isnan(tu_at(dv, 2)));                     /* 0/0 = NaN */
    ck_assert(isnan(tu_at(rl, 0)) && isnan(tu_at(sg, 0)));
    tg_tape_free(tp);
    tg_tensor_free(x), tg_tensor_free(num), tg_tensor_free(zero), tg_tensor_free(nan);
}
END_TEST

/* y = op(x) and dx for a seed of ones. */
static void run_with_ones(tg_dtype dt, unary_fn op, const double *v, int n, tg_tensor **y_copy,
                          tg_tensor **dx_copy)
{
    char shape[8];
    snprintf(shape, sizeof shape, "%d", n);
    tg_tape *tp = tg_tape_new();
    tg_tensor *x = tu_from(dt, shape, v);
    tg_tensor_set_requires_grad(x, true);
    tg_tensor *y = op(tp, x);
    ck_assert_ptr_nonnull(y);
    tg_tensor *ones = tg_tensor_new(dt, 1, (const int64_t[]){n});
    for (int k = 0; k < n; k++)
        tu_put(ones, k, 1);
    ck_assert_int_eq(tg_backward_seed(tp, y, ones), TG_OK);
    *y_copy = tg_tensor_new(TG_F64, 1, (const int64_t[]){n});
    *dx_copy = tg_tensor_new(TG_F64, 1, (const int64_t[]){n});
    for (int k = 0; k < n; k++) {
        tu_put(*y_copy, k, tu_at(y, k));
        tu_put(*dx_copy, k, tu_at(tg_tensor_grad(x), k));
    }
    tg_tape_free(tp);
    tg_tensor_free(x), tg_tensor_free(ones);
}

/* _i = 0: F64, 1: F32. At |x| = 1e4 sigmoid and tanh are exactly 0, 1 or -1
 * and their gradients exactly 0, with no NaN anywhere. Sigmoid gets there
 * without overflow: exp never sees a large positive number. */
START_TEST(sigmoid_and_tanh_saturate)
{
    tg_dtype dt = tu_loop_dtype(_i);
    const double x[2] = {1e4, -1e4};
    tg_tensor *y, *dx;
    feclearexcept(FE_OVERFLOW | FE_INVALID);
    run_with_ones(dt, tg_sigmoid, x, 2, &y, &dx);
    ck_assert_msg(!fetestexcept(FE_OVERFLOW | FE_INVALID), "sigmoid %s raised %s",
                  tu_dtype_name(dt), fetestexcept(FE_OVERFLOW) ? "overflow" : "invalid");
    ck_assert_msg(tu_at(y, 0) == 1 && tu_at(y, 1) == 0, "sigmoid %s: %.17g %.17g",
                  tu_dtype_name(dt), tu_at(y, 0), tu_at(y, 1));
    ck_assert_msg(tu_at(dx, 0) == 0 && tu_at(dx, 1) == 0, "sigmoid' %s: %.17g %.17g",
                  tu_dtype_name(dt), tu_at(dx, 0), tu_at(dx, 1));
    tg_tensor_free(y), tg_tensor_free(dx);
    run_with_ones(dt, tg_tanh, x, 2, &y, &dx);
    ck_assert_msg(tu_at(y, 0) == 1 && tu_at(y, 1) == -1, "tanh %s: %.17g %.17g", tu_dtype_name(dt),
                  tu_at(y, 0), tu_at(y, 1));
    ck_assert_msg(tu_at(dx, 0) == 0 && tu_at(dx, 1) == 0, "tanh' %s: %.17g %.17g",
                  tu_dtype_name(dt), tu_at(dx, 0), tu_at(dx, 1));
    tg_tensor_free(y), tg_tensor_free(dx);
}
END_TEST

/* F32 tanh is correctly rounded (docs/ops.md): on a million floats spread
 * over every exponent and both signs, each is tanh in double rounded once to
 * float. glibc's tanhf misses by up to 2 ulp on about 3% of all floats. */
START_TEST(tanh_f32_is_correctly_rounded)
{
    enum { STRIDE = 4093 }; /* prime: the steps walk every mantissa pattern class */
    const int64_t n = (int64_t)(UINT32_C(0xffffffff) / STRIDE) + 1;
    tg_tensor *x = tg_tensor_new(TG_F32, 1, (const int64_t[]){n});
    ck_assert_ptr_nonnull(x);
    float *xs = tg_tensor_data(x);
    for (int64_t k = 0; k < n; k++) {
        uint32_t bits = (uint32_t)k * STRIDE;
        memcpy(&xs[k], &bits, sizeof bits);
    }
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_tanh(tp, x);
    ck_assert_ptr_nonnull(y);
    const float *ys = tg_tensor_data(y);
    for (int64_t k = 0; k < n; k++) {
        float want = (float)tanh((double)xs[k]);
        ck_assert_msg(memcmp(&ys[k], &want, sizeof want) == 0 || (isnan(ys[k]) && isnan(want)),
                      "tanh(%a) = %a, want %a", (double)xs[k], (double)ys[k], (double)want);
    }
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

/* _i = 0: F64, 1: F32. relu's derivative is taken as 0 at x = 0 (and -0). */
START_TEST(relu_gradient_at_zero_is_zero)
{
    tg_dtype dt = tu_loop_dtype(_i);
    tg_tensor *y, *dx;
    run_with_ones(dt, tg_relu, (const double[]){0, -0.0, 2, -3}, 4, &y, &dx);
    const double want_y[4] = {0, 0, 2, 0}, want_dx[4] = {0, 0, 1, 0};
    for (int k = 0; k < 4; k++) {
        ck_assert_msg(tu_at(y, k) == want_y[k], "relu[%d] = %.17g", k, tu_at(y, k));
        ck_assert_msg(tu_at(dx, k) == want_dx[k], "relu'[%d] = %.17g", k, tu_at(dx, k));
    }
    tg_tensor_free(y), tg_tensor_free(dx);
}
END_TEST

/* ====== Errors ====== */

typedef struct shape_err_case {
    const char *name;
    binary_fn op;
    const char *a, *b, *a_str, *b_str;
} shape_err_case;

static const shape_err_case shape_err_cases[] = {
    {"add", tg_add, "2x3", "4", "[2x3]", "[4]"},
    {"sub", tg_sub, "2x3", "3x2", "[2x3]", "[3x2]"},
    {"mul", tg_mul, "2x3x4", "2x4", "[2x3x4]", "[2x4]"},
    {"div", tg_div, "2x1x3x4", "5x4", "[2x1x3x4]", "[5x4]"},
};

START_TEST(shapes_that_do_not_broadcast)
{
    const shape_err_case *c = &shape_err_cases[_i];
    tg_tape *tp = tg_tape_new();
    tg_tensor *a = tu_random(TG_F64, c->a, -1, 1, 1), *b = tu_random(TG_F64, c->b, -1, 1, 2);
    ck_assert_ptr_null(c->op(tp, a, b));
    ck_assert_int_eq(tg_tape_status(tp), TG_ERR_SHAPE);
    const char *msg = tg_tape_error(tp);
    ck_assert_msg(strncmp(msg, c->name, strlen(c->name)) == 0 && strstr(msg, "broadcast") &&
                      strstr(msg, c->a_str) && strstr(msg, c->b_str),
                  "'%s'", msg);
    /* Sticky: a later op records nothing and the first message stays. */
    ck_assert_ptr_null(tg_neg(tp, a));
    ck_assert_int_eq(tg_tape_status(tp), TG_ERR_SHAPE);
    ck_assert_str_eq(tg_tape_error(tp), msg);
    ck_assert_uint_eq(tg_tape_size(tp), 0);
    tg_tape_free(tp);
    tg_tensor_free(a), tg_tensor_free(b);
}
END_TEST

START_TEST(mixed_dtypes_are_refused)
{
    tg_tape *tp = tg_tape_new();
    tg_tensor *a = tu_random(TG_F64, "2x3", -1, 1, 1), *b = tu_random(TG_F32, "3", -1, 1, 2);
    ck_assert_ptr_null(tg_mul(tp, a, b));
    ck_assert_int_eq(tg_tape_status(tp), TG_ERR_DTYPE);
    const char *msg = tg_tape_error(tp);
    ck_assert_msg(strstr(msg, "mul") && strstr(msg, "[2x3]") && strstr(msg, "[3]"), "'%s'", msg);
    tg_tape_free(tp);
    tg_tensor_free(a), tg_tensor_free(b);
}
END_TEST

START_TEST(null_inputs_are_refused)
{
    tg_tape *tp = tg_tape_new();
    tg_tensor *a = tu_random(TG_F64, "2", -1, 1, 1);
    ck_assert_ptr_null(tg_add(NULL, a, a));
    ck_assert_ptr_null(tg_scale(NULL, a, 2));
    ck_assert_ptr_null(tg_div(tp, a, NULL));
    ck_assert_int_eq(tg_tape_status(tp), TG_ERR_ARG);
    ck_assert_msg(strstr(tg_tape_error(tp), "div"), "'%s'", tg_tape_error(tp));
    tg_tape_reset(tp);
    ck_assert_ptr_null(tg_scale(tp, NULL, 2));
    ck_assert_int_eq(tg_tape_status(tp), TG_ERR_ARG);
    ck_assert_msg(strstr(tg_tape_error(tp), "scale"), "'%s'", tg_tape_error(tp));
    tg_tape_free(tp);
    tg_tensor_free(a);
}
END_TEST

/* ====== Gradient flow details ====== */

/* x + x, x * x: both slots of one node add into the same gradient. Only the
 * operand that requires grad gets one. */
START_TEST(gradients_accumulate_and_skip)
{
    tg_tape *tp = tg_tape_new();
    tg_tensor *x = tu_from(TG_F64, "2", (const double[]){3, -1});
    tg_tensor *c = tu_from(TG_F64, "2x2", (const double[]){1, 2, 3, 4});
    tg_tensor_set_requires_grad(x, true);
    /* L = wsum(x + x) + wsum(x * x) + wsum(c * x): dx = 2w + 2xw + w sum_rows(c) */
    tg_tensor *l = tg_add(tp, tg_add(tp, wsum(tp, tg_add(tp, x, x)), wsum(tp, tg_mul(tp, x, x))),
                          wsum(tp, tg_mul(tp, c, x)));
    ck_assert_int_eq(tg_backward(tp, l), TG_OK);
    ck_assert_ptr_null(tg_tensor_grad(c));
    const tg_tensor *dx = tg_tensor_grad(x);
    /* weights: x + x and x * x use w0, w1 = 1, 1.25; c * x uses 1, 1.25, 1.5, 1.75 */
    ck_assert_double_eq(tu_at(dx, 0), 2 * 1 + 2 * 3 * 1 + (1 * 1 + 3 * 1.5));
    ck_assert_double_eq(tu_at(dx, 1), 2 * 1.25 + 2 * -1 * 1.25 + (2 * 1.25 + 4 * 1.75));
    tg_tape_free(tp);
    tg_tensor_free(x), tg_tensor_free(c);
}
END_TEST

/* ====== Replay ====== */

/* L = wsum(tanh(a * b / c) - a) with a [3x4], b [4], c [3x1]: after new data
 * goes into the leaves, replay gives bit for bit what a fresh recording gives,
 * values and gradients. _i = 0: F64, 1: F32. */
static tg_tensor *replay_graph(tg_tape *tp, tg_tensor *a, tg_tensor *b, tg_tensor *c)
{
    return wsum(tp, tg_sub(tp, tg_tanh(tp, tg_div(tp, tg_mul(tp, a, b), c)), a));
}

static void fill(tg_tensor *t, uint64_t seed, double lo, double hi)
{
    tg_tensor *r = tu_random(tg_tensor_dtype(t), "64", lo, hi, seed);
    for (int64_t k = 0; k < tg_tensor_numel(t); k++)
        tu_put(t, k, tu_at(r, k));
    tg_tensor_free(r);
}

START_TEST(replay_equals_fresh_recording)
{
    tg_dtype dt = tu_loop_dtype(_i);
    tg_tensor *in[3] = {tg_tensor_new(dt, 2, (const int64_t[]){3, 4}),
                        tg_tensor_new(dt, 1, (const int64_t[]){4}),
                        tg_tensor_new(dt, 2, (const int64_t[]){3, 1})};
    double lo[3] = {-2, -2, 0.5};
    for (int i = 0; i < 3; i++) {
        fill(in[i], 31 + (uint64_t)i, lo[i], 2);
        tg_tensor_set_requires_grad(in[i], true);
    }
    tg_tape *rec = tg_tape_new(), *fresh = tg_tape_new();
    tg_tensor *l = replay_graph(rec, in[0], in[1], in[2]);
    ck_assert_int_eq(tg_backward(rec, l), TG_OK);
    size_t nodes = tg_tape_size(rec);

    for (int i = 0; i < 3; i++) {
        fill(in[i], 41 + (uint64_t)i, lo[i], 2); /* the next mini-batch */
        tg_tensor_zero_grad(in[i]);
    }
    ck_assert_int_eq(tg_tape_replay(rec), TG_OK);
    ck_assert_int_eq(tg_backward(rec, l), TG_OK);
    ck_assert_uint_eq(tg_tape_size(rec), nodes);
    double replayed = tu_at(l, 0);
    tg_tensor *grads[3];
    for (int i = 0; i < 3; i++) {
        const tg_tensor *g = tg_tensor_grad(in[i]);
        grads[i] = tg_tensor_from(dt, tg_tensor_rank(g), tg_tensor_shape(g),
                                  tg_tensor_data((tg_tensor *)g));
        tg_tensor_zero_grad(in[i]);
    }

    tg_tensor *l2 = replay_graph(fresh, in[0], in[1], in[2]);
    ck_assert_int_eq(tg_backward(fresh, l2), TG_OK);
    ck_assert_msg(tu_at(l2, 0) == replayed, "replay %.17g fresh %.17g", replayed, tu_at(l2, 0));
    for (int i = 0; i < 3; i++) {
        const tg_tensor *g = tg_tensor_grad(in[i]);
        size_t bytes = (size_t)tg_tensor_numel(g) * (dt == TG_F64 ? 8 : 4);
        ck_assert_msg(memcmp(tg_tensor_data((tg_tensor *)g), tg_tensor_data(grads[i]), bytes) == 0,
                      "input %d: gradients differ after replay", i);
        tg_tensor_free(grads[i]);
    }
    tg_tape_free(rec), tg_tape_free(fresh);
    for (int i = 0; i < 3; i++)
        tg_tensor_free(in[i]);
}
END_TEST

/* ====== Derivatives of derivatives ======
 * The op list gradgradchecks every row (tests/test_ops_list.c); here: the
 * recorded VJP against the fused one bit for bit, second and third
 * derivatives against closed forms, third derivatives of every op against
 * differences, the conventions at kinks and ties, and replay of the masks. */

static tg_tensor *pow_3(tg_tape *tp, tg_tensor *x) { return tg_pow(tp, x, 3); }
static tg_tensor *pow_1(tg_tape *tp, tg_tensor *x) { return tg_pow(tp, x, 1); }
static tg_tensor *pow_0(tg_tape *tp, tg_tensor *x) { return tg_pow(tp, x, 0); }
static tg_tensor *pow_2_5(tg_tape *tp, tg_tensor *x) { return tg_pow(tp, x, 2.5); }
static tg_tensor *pow_m1_7(tg_tape *tp, tg_tensor *x) { return tg_pow(tp, x, -1.7); }
static tg_tensor *pow_m_half(tg_tape *tp, tg_tensor *x) { return tg_pow(tp, x, -0.5); }
static tg_tensor *add_0_75(tg_tape *tp, tg_tensor *x) { return tg_add_scalar(tp, x, 0.75); }
static tg_tensor *clamp_half(tg_tape *tp, tg_tensor *x) { return tg_clamp(tp, x, -0.5, 0.5); }
static tg_tensor *leaky_0_2(tg_tape *tp, tg_tensor *x) { return tg_leaky_relu(tp, x, 0.2); }
static tg_tensor *leaky_m0_3(tg_tape *tp, tg_tensor *x) { return tg_leaky_relu(tp, x, -0.3); }
static tg_tensor *elu_0_7(tg_tape *tp, tg_tensor *x) { return tg_elu(tp, x, 0.7); }
static tg_tensor *gelu_erf(tg_tape *tp, tg_tensor *x) { return tg_gelu(tp, x, false); }
static tg_tensor *gelu_tanh(tg_tape *tp, tg_tensor *x) { return tg_gelu(tp, x, true); }

/* The closed forms of f'' and f'''. */
static double sigm(double x) { return 1 / (1 + exp(-x)); }
static double phi(double x) { return 0.39894228040143267794 * exp(-x * x / 2); } /* 1/√(2π) */
static double zero(double x) { return (void)x, 0; }
static double d2_sigmoid(double x) { return sigm(x) * (1 - sigm(x)) * (1 - 2 * sigm(x)); }
static double d3_sigmoid(double x)
{
    double s = sigm(x);
    return s * (1 - s) * (1 - 6 * s + 6 * s * s);
}
static double d2_tanh(double x) { return -2 * tanh(x) * (1 - tanh(x) * tanh(x)); }
static double d3_tanh(double x)
{
    double t = tanh(x);
    return (1 - t * t) * (6 * t * t - 2);
}
static double d2_log(double x) { return -1 / (x * x); }
static double d3_log(double x) { return 2 / (x * x * x); }
static double two(double x) { return (void)x, 2; }
static double d2_pow_3(double x) { return 6 * x; }
static double six(double x) { return (void)x, 6; }
static double d2_pow_2_5(double x) { return 2.5 * 1.5 * pow(x, 0.5); }
static double d3_pow_2_5(double x) { return 2.5 * 1.5 * 0.5 * pow(x, -0.5); }
static double d2_pow_m1_7(double x) { return -1.7 * -2.7 * pow(x, -3.7); }
static double d3_pow_m1_7(double x) { return -1.7 * -2.7 * -3.7 * pow(x, -4.7); }
static double d2_pow_m_half(double x) { return 0.75 * pow(x, -2.5); }
static double d3_pow_m_half(double x) { return -1.875 * pow(x, -3.5); }
static double d2_sqrt(double x) { return -0.25 * pow(x, -1.5); }
static double d3_sqrt(double x) { return 0.375 * pow(x, -2.5); }
static double d2_sin(double x) { return -sin(x); }
static double d3_sin(double x) { return -cos(x); }
static double d2_cos(double x) { return -cos(x); }
static double d2_elu(double x) { return x > 0 ? 0 : 0.7 * exp(x); }
static double d2_gelu(double x) { return phi(x) * (2 - x * x); }
static double d3_gelu(double x) { return phi(x) * x * (x * x - 4); }
static double d2_gelu_tanh(double x) /* (1 − t²) (u' + x/2 (u'' − 2 t u'²)) */
{
    double c = 0.79788456080286535588 /* √(2/π) */, k = 0.044715;
    double t = tanh(c * (x + k * x * x * x)), u1 = c * (1 + 3 * k * x * x), u2 = c * 6 * k * x;
    return (1 - t * t) * (u1 + x / 2 * (u2 - 2 * t * u1 * u1));
}
static double d2_silu(double x) { return sigm(x) * (1 - sigm(x)) * (2 + x * (1 - 2 * sigm(x))); }
static double d2_softplus(double x) { return sigm(x) * (1 - sigm(x)); }

/* A unary op, its second and third derivatives (d3 NULL: not given) at four
 * points away from its kinks, and the range its third derivatives are
 * gradgradchecked on (values move 0.2 away from each kink). */
typedef struct higher_case {
    const char *name;
    unary_fn fn;
    double (*d2)(double x), (*d3)(double x);
    double x[4];
    double lo, hi;
    double kink[2];
    int n_kinks;
} higher_case;

#define PLAIN    {-1, 0.3, 2, -0.1}, -1, 1
#define POSITIVE {0.3, 0.9, 1.7, 4}, 0.5, 2
#define WIDE     {-2.5, -0.3, 0.7, 3}, -3, 3

static const higher_case higher_cases[] = {
    {"scale", scale_by_minus_2_5, zero, zero, PLAIN, {0}, 0},
    {"neg", tg_neg, zero, zero, PLAIN, {0}, 0},
    {"sigmoid", tg_sigmoid, d2_sigmoid, d3_sigmoid, {-2.5, -0.3, 0.7, 4}, -3, 3, {0}, 0},
    {"tanh", tg_tanh, d2_tanh, d3_tanh, {-1.5, -0.25, 0.6, 2}, -2, 2, {0}, 0},
    {"relu", tg_relu, zero, zero, PLAIN, {0}, 1},
    {"exp", tg_exp, exp, exp, {-2, -0.5, 0.25, 1.5}, -1, 1, {0}, 0},
    {"log", tg_log, d2_log, d3_log, POSITIVE, {0}, 0},
    {"square", tg_square, two, zero, PLAIN, {0}, 0},
    {"add_scalar", add_0_75, zero, zero, PLAIN, {0}, 0},
    {"pow 3", pow_3, d2_pow_3, six, PLAIN, {0}, 0},
    {"pow 1", pow_1, zero, zero, PLAIN, {0}, 0},
    {"pow 0", pow_0, zero, zero, PLAIN, {0}, 0},
    {"pow 2.5", pow_2_5, d2_pow_2_5, d3_pow_2_5, POSITIVE, {0}, 0},
    {"pow -1.7", pow_m1_7, d2_pow_m1_7, d3_pow_m1_7, POSITIVE, {0}, 0},
    {"pow -0.5", pow_m_half, d2_pow_m_half, d3_pow_m_half, POSITIVE, {0}, 0},
    {"abs", tg_abs, zero, zero, PLAIN, {0}, 1},
    {"sqrt", tg_sqrt, d2_sqrt, d3_sqrt, POSITIVE, {0}, 0},
    {"sin", tg_sin, d2_sin, d3_sin, WIDE, {0}, 0},
    {"cos", tg_cos, d2_cos, sin, WIDE, {0}, 0},
    {"clamp", clamp_half, zero, zero, PLAIN, {-0.5, 0.5}, 2},
    {"leaky_relu 0.2", leaky_0_2, zero, zero, PLAIN, {0}, 1},
    {"leaky_relu -0.3", leaky_m0_3, zero, zero, PLAIN, {0}, 1},
    /* 800: e^800 overflows, but the branch taken is x's */
    {"elu", elu_0_7, d2_elu, d2_elu, {-2, -0.3, 0.4, 800}, -2, 2, {0}, 1},
    {"gelu", gelu_erf, d2_gelu, d3_gelu, WIDE, {0}, 0},
    {"gelu tanh", gelu_tanh, d2_gelu_tanh, NULL, WIDE, {0}, 0},
    {"silu", tg_silu, d2_silu, NULL, WIDE, {0}, 0},
    {"softplus", tg_softplus, d2_softplus, d2_sigmoid, WIDE, {0}, 0},
};

/* |got - want| <= tol max(1, |want|), labelled. */
static void expect_near(double got, double want, double tol, const char *what, const char *name,
                        tg_dtype dt, int k)
{
    ck_assert_msg(fabs(got - want) <= tol * fmax(1, fabs(want)),
                  "%s %s %s at x[%d]: got %.17g want %.17g", name, tu_dtype_name(dt), what, k, got,
                  want);
}

static void expect_same_bits(const tg_tensor *a, const tg_tensor *b, const char *what,
                             const char *name, tg_dtype dt)
{
    size_t size = (size_t)tg_tensor_numel(a) * (dt == TG_F64 ? sizeof(double) : sizeof(float));
    ck_assert_msg(tg_tensor_numel(a) == tg_tensor_numel(b) &&
                      memcmp(tg_tensor_cdata(a), tg_tensor_cdata(b), size) == 0,
                  "%s %s: %s", name, tu_dtype_name(dt), what);
}

/* Row _i / 2 in F64 (even _i) or F32: d1 = tg_grad(Σ f(x)) with create_graph
 * equals the fused first-order gradient bit for bit, and d2 = tg_grad(Σ d1),
 * d3 = tg_grad(Σ d2) (f is elementwise, so the sum's gradient is the next
 * derivative) equal the closed forms. */
START_TEST(second_and_third_derivatives_in_closed_form)
{
    const higher_case *c = &higher_cases[_i / 2];
    tg_dtype dt = tu_loop_dtype(_i % 2);
    double tol = dt == TG_F64 ? 1e-13 : 1e-5;
    tg_tensor *x = tu_lit(dt, "4", c->x);
    tg_tensor_set_requires_grad(x, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_sum(tp, c->fn(tp, x)), *fused, *d[3];
    ck_assert_int_eq(tg_grad(tp, y, NULL, &x, 1, &fused, false), TG_OK);
    ck_assert_int_eq(tg_grad(tp, y, NULL, &x, 1, &d[0], true), TG_OK);
    expect_same_bits(d[0], fused, "the recorded gradient differs from the fused one", c->name, dt);
    for (int o = 1; o < 3; o++) { /* after a constant derivative (NULL) the next one is 0 */
        d[o] = NULL;
        if (d[o - 1] && tg_tensor_requires_grad(d[o - 1]))
            ck_assert_msg(tg_grad(tp, tg_sum(tp, d[o - 1]), NULL, &x, 1, &d[o], true) == TG_OK,
                          "%s order %d: %s", c->name, o + 1, tg_tape_error(tp));
    }
    for (int k = 0; k < 4; k++) {
        double v = tu_at(x, k);
        expect_near(d[1] ? tu_at(d[1], k) : 0, c->d2(v), tol, "f''", c->name, dt, k);
        if (c->d3)
            expect_near(d[2] ? tu_at(d[2], k) : 0, c->d3(v), tol, "f'''", c->name, dt, k);
    }
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

/* ====== Third derivatives against differences ======
 * f(x) = Σ c ⊙ ∂/∂x Σ w ⊙ op(x), the first derivative recorded with
 * tg_grad(create_graph), so tg_gradgradcheck of f compares op's third
 * derivatives (contracted with c, w and its own directions) with central
 * differences of the recorded second ones. w and c are fixed, distinct
 * weights, so every element's derivative counts on its own. The terms
 * Σ 0 x keep f depending on x where op's first derivative is a constant. */

typedef struct third_ctx {
    unary_fn un;
    binary_fn bin;
    tg_tensor *w, *c[2];
} third_ctx;

static tg_tensor *first_derivative(tg_tape *tp, tg_tensor *const *in, void *ctx)
{
    const third_ctx *t = ctx;
    int n = t->un ? 1 : 2;
    tg_tensor *y = t->un ? t->un(tp, in[0]) : t->bin(tp, in[0], in[1]), *g[2];
    tg_tensor *l = tg_sum(tp, tg_mul(tp, y, t->w));
    if (!l || tg_grad(tp, l, NULL, in, n, g, true)) return NULL;
    tg_tensor *f = NULL;
    for (int i = 0; i < n; i++) {
        tg_tensor *term = tg_add(tp, tg_sum(tp, tg_mul(tp, g[i], t->c[i])),
                                 tg_sum(tp, tg_scale(tp, in[i], 0.0)));
        f = f ? tg_add(tp, f, term) : term;
    }
    return f;
}

/* Weights of t's shape, (1 + k mod 5) / 4 with alternating signs. */
static tg_tensor *weights_like(const tg_tensor *t)
{
    tg_tensor *w = tg_tensor_new(TG_F64, tg_tensor_rank(t), tg_tensor_shape(t));
    ck_assert_ptr_nonnull(w);
    for (int64_t k = 0; k < tg_tensor_numel(w); k++)
        tu_put(w, k, (k % 2 ? -1 : 1) * (1 + (double)(k % 5)) / 4);
    return w;
}

/* x's values moved 0.2 away from the nearer of c's kinks. */
static void away_from_kinks(tg_tensor *x, const higher_case *c)
{
    for (int64_t k = 0; k < tg_tensor_numel(x); k++) {
        double v = tu_at(x, k);
        for (int j = 0; j < c->n_kinks; j++)
            if (fabs(v - c->kink[j]) < 0.25) v = v < c->kink[j] ? v - 0.2 : v + 0.2;
        tu_put(x, k, v);
    }
}

static void expect_third_order_passes(const char *name, third_ctx *t, tg_tensor **in, int n)
{
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = t->un ? t->un(tp, in[0]) : t->bin(tp, in[0], in[1]);
    ck_assert_msg(y, "%s: %s", name, tg_tape_error(tp));
    t->w = weights_like(y);
    tg_tape_free(tp);
    for (int i = 0; i < n; i++) {
        t->c[i] = weights_like(in[i]);
        for (int64_t k = 0; k < tg_tensor_numel(t->c[i]); k++) /* not w's pattern */
            tu_put(t->c[i], k, 0.5 + (double)((3 * k + (uint64_t)i) % 4) / 3);
    }
    tg_gradcheck_report r;
    tg_status s = tg_gradgradcheck(first_derivative, in, n, t, NULL, &r);
    ck_assert_msg(s == TG_OK, "%s: %s: %s", name, tg_status_str(s), r.msg);
    ck_assert_msg(r.passed, "%s: %s", name, r.msg);
    tg_tensor_free(t->w);
    for (int i = 0; i < n; i++)
        tg_tensor_free(t->c[i]);
}

START_TEST(third_derivatives_of_unary_ops_match_differences)
{
    const higher_case *c = &higher_cases[_i];
    tg_tensor *x = tu_random(TG_F64, "2x3", c->lo, c->hi, 70 + (uint64_t)_i);
    away_from_kinks(x, c);
    tg_tensor_set_requires_grad(x, true);
    third_ctx t = {.un = c->fn};
    tg_tensor *in[2] = {x, NULL};
    expect_third_order_passes(c->name, &t, in, 1);
    tg_tensor_free(x);
}
END_TEST

typedef struct third_binary_case {
    const char *name;
    binary_fn fn;
    double lo, hi;
} third_binary_case;

static const third_binary_case third_binary_cases[] = {
    {"add", tg_add, -1, 1},  {"sub", tg_sub, -1, 1},         {"mul", tg_mul, -1, 1},
    {"div", tg_div, 0.5, 2}, {"maximum", tg_maximum, -1, 1}, {"minimum", tg_minimum, -1, 1},
};

/* Broadcasting: a stretched operand's gradient is summed by sum_axis and
 * reshape, whose recorded VJPs the third order goes through as well. */
static const char *const third_binary_shapes[][2] = {{"2x3", "3"}, {"2x1", "1x3"}, {"", "4"}};

START_TEST(third_derivatives_of_binary_ops_match_differences)
{
    const third_binary_case *c = &third_binary_cases[_i / 3];
    const char *const *shapes = third_binary_shapes[_i % 3];
    tg_tensor *in[2];
    for (int i = 0; i < 2; i++) {
        in[i] = tu_random(TG_F64, shapes[i], c->lo, c->hi, 90 + 2 * (uint64_t)_i + (uint64_t)i);
        tg_tensor_set_requires_grad(in[i], true);
    }
    char name[64];
    snprintf(name, sizeof name, "%s on %s;%s", c->name, shapes[0], shapes[1]);
    third_ctx t = {.bin = c->fn};
    expect_third_order_passes(name, &t, in, 2);
    tg_tensor_free(in[0]), tg_tensor_free(in[1]);
}
END_TEST

/* The binary ops' recorded gradients equal the fused ones bit for bit where
 * no operand is broadcast (a broadcast one is summed in another order). */
START_TEST(recorded_binary_gradients_equal_fused_ones)
{
    const third_binary_case *c = &third_binary_cases[_i / 2];
    tg_dtype dt = tu_loop_dtype(_i % 2);
    tg_tensor *in[2] = {tu_random(dt, "3x4", c->lo, c->hi, 11),
                        tu_random(dt, "3x4", c->lo, c->hi, 12)};
    tu_put(in[1], 5, tu_at(in[0], 5)); /* a tie */
    tg_tensor_set_requires_grad(in[0], true);
    tg_tensor_set_requires_grad(in[1], true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *seed = tu_random(dt, "3x4", -1, 1, 13), *fused[2], *rec[2];
    tg_tensor *y = c->fn(tp, in[0], in[1]);
    ck_assert_int_eq(tg_grad(tp, y, seed, in, 2, fused, false), TG_OK);
    ck_assert_int_eq(tg_grad(tp, y, seed, in, 2, rec, true), TG_OK);
    for (int i = 0; i < 2; i++)
        expect_same_bits(rec[i], fused[i],
                         i ? "dB differs from the fused one" : "dA differs from the fused one",
                         c->name, dt);
    tg_tape_free(tp);
    tg_tensor_free(in[0]), tg_tensor_free(in[1]), tg_tensor_free(seed);
}
END_TEST

/* ====== Kinks, ties and replay ====== */

/* At a tie maximum and minimum pass dG/2 to each operand (the ½ rule), with
 * a constant factor: the recorded dA is linear in dG with slope ½ and does
 * not move with A or B. A NaN operand passes the full dG to both. */
START_TEST(ties_pass_half_at_every_order)
{
    for (int op = 0; op < 2; op++) {
        binary_fn fn = op ? tg_minimum : tg_maximum;
        tg_tensor *a = tu_lit(TG_F64, "3", (double[]){0.5, (double)NAN, 2});
        tg_tensor *b = tu_lit(TG_F64, "3", (double[]){0.5, 1, -1});
        tg_tensor *g = tu_lit(TG_F64, "3", (double[]){4, 6, 8});
        tg_tensor_set_requires_grad(a, true);
        tg_tensor_set_requires_grad(b, true);
        tg_tensor_set_requires_grad(g, true);
        tg_tape *tp = tg_tape_new();
        tg_tensor *d[2], *dd[3];
        ck_assert_int_eq(tg_grad(tp, fn(tp, a, b), g, (tg_tensor *[]){a, b}, 2, d, true), TG_OK);
        /* a > b at element 2 picks a for maximum, b for minimum */
        double da[3] = {2, 6, op ? 0 : 8}, db[3] = {2, 6, op ? 8 : 0};
        tu_expect_exact(d[0], "3", da, "dA");
        tu_expect_exact(d[1], "3", db, "dB");
        tg_tensor *l = tg_add(tp, tg_sum(tp, d[0]), tg_scale(tp, tg_sum(tp, d[1]), 3));
        ck_assert_int_eq(tg_grad(tp, l, NULL, (tg_tensor *[]){a, b, g}, 3, dd, true), TG_OK);
        tu_expect_exact(dd[0], "3", (double[]){0, 0, 0}, "d(ΣdA + 3ΣdB)/dA");
        tu_expect_exact(dd[1], "3", (double[]){0, 0, 0}, "d(ΣdA + 3ΣdB)/dB");
        double dg[3] = {0.5 + 1.5, 1 + 3, op ? 3 : 1};
        tu_expect_exact(dd[2], "3", dg, "d(ΣdA + 3ΣdB)/dG");
        tg_tape_free(tp);
        tg_tensor_free(a), tg_tensor_free(b), tg_tensor_free(g);
    }
}
END_TEST

/* Where the first-order VJP selects (relu, clamp), an infinite or NaN dG
 * where the input is cut off gives 0, recorded as fused; relu and abs give 0
 * at 0 and clamp passes dG there, as at first order. */
START_TEST(selects_keep_non_finite_seeds_out)
{
    const unary_fn ops[] = {tg_relu, clamp_half, tg_abs};
    const char *names[] = {"relu", "clamp", "abs"};
    for (int o = 0; o < 3; o++) {
        tg_tensor *x = tu_lit(TG_F64, "4", (double[]){-1, 0, 0.25, 2});
        tg_tensor *seed = tu_lit(TG_F64, "4", (double[]){HUGE_VAL, 3, (double)NAN, 5});
        tg_tensor_set_requires_grad(x, true);
        tg_tape *tp = tg_tape_new();
        tg_tensor *y = ops[o](tp, x), *fused, *rec;
        ck_assert_int_eq(tg_grad(tp, y, seed, &x, 1, &fused, false), TG_OK);
        ck_assert_int_eq(tg_grad(tp, y, seed, &x, 1, &rec, true), TG_OK);
        ck_assert_msg(tu_at(rec, 1) == (o == 1 ? 3 : 0), "%s: dx at 0 is %g", names[o],
                      tu_at(rec, 1));
        for (int k = 0; k < 4; k++)
            ck_assert_msg(tu_at(rec, k) == tu_at(fused, k) ||
                              (isnan(tu_at(rec, k)) && isnan(tu_at(fused, k))),
                          "%s [%d]: recorded %g, fused %g", names[o], k, tu_at(rec, k),
                          tu_at(fused, k));
        if (o < 2) ck_assert_double_eq(tu_at(rec, 0), 0); /* inf dG where cut off */
        tg_tape_free(tp);
        tg_tensor_free(x), tg_tensor_free(seed);
    }
}
END_TEST

/* The masks are recomputed at replay: a recorded gradient of relu, leaky_relu
 * and maximum follows x across the kink. */
START_TEST(masks_follow_new_data_at_replay)
{
    tg_tensor *x = tu_lit(TG_F64, "3", (double[]){-1, 2, 0.5});
    tg_tensor *b = tu_lit(TG_F64, "3", (double[]){0, 0, 1});
    tg_tensor_set_requires_grad(x, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_add(tp, tg_add(tp, tg_relu(tp, x), leaky_0_2(tp, x)), tg_maximum(tp, x, b));
    tg_tensor *g, *h;
    ck_assert_int_eq(tg_grad(tp, tg_sum(tp, tg_square(tp, y)), NULL, &x, 1, &g, true), TG_OK);
    ck_assert_int_eq(tg_grad(tp, tg_sum(tp, g), NULL, &x, 1, &h, true), TG_OK);
    /* y' = 1 + 1 + 1 = 3 at x > 0 above b, 0.2 at x < 0 below b, 2 at 0 < x < b;
     * g = 2 y y', h = 2 y'² (y'' = 0 off the kinks). */
    tu_expect_exact(h, "3", (double[]){2 * 0.2 * 0.2, 2 * 3 * 3, 2 * 2 * 2}, "h");
    double *xd = tg_tensor_data(x);
    xd[0] = 3, xd[1] = -2, xd[2] = 1.5;
    ck_assert_int_eq(tg_tape_replay(tp), TG_OK);
    tu_expect_exact(h, "3", (double[]){2 * 3 * 3, 2 * 0.2 * 0.2, 2 * 3 * 3}, "h after replay");
    tg_tape_free(tp);
    tg_tensor_free(x), tg_tensor_free(b);
}
END_TEST

#define N(a) ((int)(sizeof(a) / sizeof *(a)))

static Suite *ops_elementwise_suite(void)
{
    Suite *s = suite_create("ops_elementwise");
    TCase *tc = tcase_create("elementwise");
    tcase_set_timeout(tc, 60); /* the 1M-element tanh comparison takes seconds on a loaded machine */
    tcase_add_loop_test(tc, forward_values, 0, 2 * N(fwd_cases));
    tcase_add_loop_test(tc, broadcast_matches_naive, 0, 2 * N(walk_shapes));
    tcase_add_loop_test(tc, ieee_edge_values, 0, 2);
    tcase_add_loop_test(tc, sigmoid_and_tanh_saturate, 0, 2);
    tcase_add_test(tc, tanh_f32_is_correctly_rounded);
    tcase_add_loop_test(tc, relu_gradient_at_zero_is_zero, 0, 2);
    tcase_add_loop_test(tc, shapes_that_do_not_broadcast, 0, N(shape_err_cases));
    tcase_add_test(tc, mixed_dtypes_are_refused);
    tcase_add_test(tc, null_inputs_are_refused);
    tcase_add_test(tc, gradients_accumulate_and_skip);
    tcase_add_loop_test(tc, replay_equals_fresh_recording, 0, 2);
    tcase_add_loop_test(tc, second_and_third_derivatives_in_closed_form, 0, 2 * N(higher_cases));
    tcase_add_loop_test(tc, third_derivatives_of_unary_ops_match_differences, 0, N(higher_cases));
    tcase_add_loop_test(tc, third_derivatives_of_binary_ops_match_differences, 0,
                        3 * N(third_binary_cases));
    tcase_add_loop_test(tc, recorded_binary_gradients_equal_fused_ones, 0,
                        2 * N(third_binary_cases));
    tcase_add_test(tc, ties_pass_half_at_every_order);
    tcase_add_test(tc, selects_keep_non_finite_seeds_out);
    tcase_add_test(tc, masks_follow_new_data_at_replay);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run(ops_elementwise_suite()); }
