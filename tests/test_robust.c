/*
 * Robustness: anomaly mode, the numbers at the edges of the floating-point
 * range (docs/reliability.md states what they must be), shapes too large to
 * exist, and checkpoints that survive a save killed at any moment.
 */
#include "testutil.h"

#include "internal.h"

#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Shapes "too large to exist" ask for terabytes; under AddressSanitizer that
 * must come back as NULL, as it does from the C library, not abort. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }

static const tg_dtype dtypes[2] = {TG_F32, TG_F64};

/* Valgrind does not emulate FTZ/DAZ, and it runs the children of the kill test
 * many times slower: those tests ask less of it. */
static bool under_valgrind(void)
{
    const char *pre = getenv("LD_PRELOAD");
    return pre && strstr(pre, "vgpreload");
}

/* Values as the dtype stores them, so exact comparisons mean what they say. */
static tg_tensor *from(tg_dtype dt, const char *shape, const double *v)
{
    tg_tensor *t = tu_from(dt, shape, v);
    ck_assert_ptr_nonnull(t);
    return t;
}

/* Element k is 'want' exactly (NaN matches NaN). */
#define ASSERT_EXACT(t, k, want)                                                                   \
    do {                                                                                           \
        double got_ = tu_at(t, k), want_ = (double)(want);                                         \
        ck_assert_msg(got_ == want_ || (isnan(got_) && isnan(want_)),                              \
                      "element %d: got %.17g, want %.17g", (int)(k), got_, want_);                 \
    } while (0)

/* ====== Anomaly mode ====== */

START_TEST(anomaly_names_the_first_node_op_and_shapes)
{
    tg_tensor *x = from(TG_F64, "2x3", (double[]){1, 2, 0, 4, 5, 6});
    tg_tensor *b = from(TG_F64, "3", (double[]){1, 0, 1});
    tg_tensor *z = from(TG_F64, "2x3", (double[]){0, 0, 0, 0, 0, 0});
    tg_tape *tp = tg_tape_new();
    tg_tape_set_anomaly(tp, true);
    ck_assert_ptr_nonnull(tg_exp(tp, x));
    ck_assert_ptr_null(tg_log(tp, x)); /* log(0) = -inf */
    ck_assert_int_eq(tg_tape_status(tp), TG_ERR_NUMERIC);
    ck_assert_str_eq(tg_tape_error(tp),
                     "anomaly: log (node 1) produced -inf in its output; inputs [2x3]");
    ck_assert_uint_eq(tg_tape_size(tp), 1);
    ck_assert_ptr_null(tg_div(tp, z, z)); /* later anomalies are echoes: the first stays */
    ck_assert_ptr_nonnull(strstr(tg_tape_error(tp), "log (node 1)"));

    /* The mode survives a reset; a binary op lists both shapes; NaN is named as such. */
    tg_tape_reset(tp);
    ck_assert_ptr_null(tg_div(tp, x, b)); /* 2/0 */
    ck_assert_str_eq(tg_tape_error(tp),
                     "anomaly: div (node 0) produced inf in its output; inputs [2x3], [3]");
    tg_tape_reset(tp);
    ck_assert_ptr_null(tg_div(tp, z, z));
    ck_assert_str_eq(tg_tape_error(tp),
                     "anomaly: div (node 0) produced nan in its output; inputs [2x3], [2x3]");

    /* Names the user set show in place of the bare shapes. */
    tg_tape_reset(tp);
    tg_tensor_set_name(x, "x");
    tg_tensor_set_name(b, "b");
    tg_tensor *h = tg_div(tp, x, x);
    ck_assert_ptr_null(h); /* 0/0 */
    ck_assert_str_eq(tg_tape_error(tp),
                     "anomaly: div (node 0) produced nan in its output; inputs x [2x3], x [2x3]");
    tg_tape_reset(tp);
    ck_assert_ptr_null(tg_div(tp, x, b));
    ck_assert_str_eq(tg_tape_error(tp),
                     "anomaly: div (node 0) produced inf in its output; inputs x [2x3], b [3]");
    tg_tensor_set_name(x, NULL);

    /* Off again: IEEE values pass through and nothing fails. */
    tg_tape_reset(tp);
    tg_tape_set_anomaly(tp, false);
    tg_tensor *y = tg_log(tp, x);
    ck_assert_ptr_nonnull(y);
    ASSERT_EXACT(y, 2, -INFINITY);
    ck_assert_int_eq(tg_tape_status(tp), TG_OK);
    tg_tape_set_anomaly(NULL, true); /* ignored */
    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_tensor_free(b);
    tg_tensor_free(z);
}
END_TEST

START_TEST(anomaly_in_replay)
{
    tg_tensor *x = from(TG_F32, "4", (double[]){1, 2, 3, 4});
    tg_tape *tp = tg_tape_new();
    tg_tape_set_anomaly(tp, true);
    tg_tensor *loss = tg_sum(tp, tg_log(tp, tg_square(tp, x)));
    ck_assert_ptr_nonnull(loss);
    ck_assert_int_eq(tg_tape_replay(tp), TG_OK);
    ((float *)tg_tensor_data(x))[3] = 0; /* a new batch with a zero: log(0^2) */
    ck_assert_int_eq(tg_tape_replay(tp), TG_ERR_NUMERIC);
    ck_assert_str_eq(tg_tape_error(tp),
                     "anomaly: log (node 1) produced -inf in its output; inputs [4]");
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

START_TEST(anomaly_in_vjp)
{
    for (int d = 0; d < 2; d++) {
        /* log of a denormal is finite; its gradient 1/x is not. */
        double tiny = dtypes[d] == TG_F64 ? 1e-320 : 1e-40;
        tg_tensor *x = from(dtypes[d], "2", (double[]){1, tiny});
        tg_tensor_set_requires_grad(x, true);
        tg_tape *tp = tg_tape_new();
        tg_tape_set_anomaly(tp, true);
        tg_tensor *loss = tg_mean(tp, tg_log(tp, x));
        ck_assert_ptr_nonnull(loss);
        ck_assert(isfinite(tg_tensor_item(loss)));
        ck_assert_int_eq(tg_backward(tp, loss), TG_ERR_NUMERIC);
        ck_assert_str_eq(tg_tape_error(tp), "anomaly: log (node 0) produced inf in the gradient "
                                            "of its input 0; inputs [2]");
        /* Without anomaly mode the same sweep completes with the infinite gradient. */
        tg_tape_reset(tp);
        tg_tape_set_anomaly(tp, false);
        tg_tensor_zero_grad(x);
        ck_assert_int_eq(tg_backward(tp, tg_mean(tp, tg_log(tp, x))), TG_OK);
        ck_assert(isinf(tu_at(tg_tensor_grad(x), 1)));
        tg_tape_free(tp);
        tg_tensor_free(x);
    }
}
END_TEST

static tg_status copy_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in, (void)ctx;
    memcpy(out->data, in[0]->data, (size_t)out->numel * tg__dtype_size(out->dtype));
    return TG_OK;
}

static tg_status nan_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                         tg_tensor **gin, int n_in, void *ctx)
{
    (void)gout, (void)out, (void)in, (void)n_in, (void)ctx;
    if (gin[1]) ((double *)gin[1]->data)[0] = NAN;
    return TG_OK;
}

static const tg_op_def unnamed_def = {.forward = copy_forward, .vjp = nan_vjp};

START_TEST(anomaly_custom_op_and_seed)
{
    tg_tensor *a = from(TG_F64, "2", (double[]){1, 2});
    tg_tensor *b = from(TG_F64, "1", (double[]){3});
    tg_tensor_set_requires_grad(a, true);
    tg_tensor_set_requires_grad(b, true);
    tg_tape *tp = tg_tape_new();
    tg_tape_set_anomaly(tp, true);
    tg_tensor *y = tg_custom(tp, &unnamed_def, (tg_tensor *[]){a, b}, 2, 1, (int64_t[]){2}, NULL);
    ck_assert_ptr_nonnull(y);
    tg_tensor *seed = from(TG_F64, "2", (double[]){1, NAN});
    ck_assert_int_eq(tg_backward_seed(tp, y, seed), TG_ERR_NUMERIC);
    ck_assert_str_eq(tg_tape_error(tp), "anomaly: the seed of backward holds nan");
    ck_assert_int_eq(tg_tape_status(tp), TG_OK); /* a bad seed is a refused call */
    tg_tape_reset(tp);
    y = tg_custom(tp, &unnamed_def, (tg_tensor *[]){a, b}, 2, 1, (int64_t[]){2}, NULL);
    ck_assert_int_eq(tg_backward(tp, tg_sum(tp, y)), TG_ERR_NUMERIC);
    ck_assert_str_eq(tg_tape_error(tp), "anomaly: custom (node 0) produced nan in the gradient of "
                                        "its input 1; inputs [2], [1]");
    ck_assert_int_eq(tg_tape_status(tp), TG_ERR_NUMERIC); /* a fault of the recording: sticky */
    /* A named input is named in the message. */
    tg_tape_reset(tp);
    tg_tensor_set_name(b, "bias");
    y = tg_custom(tp, &unnamed_def, (tg_tensor *[]){a, b}, 2, 1, (int64_t[]){2}, NULL);
    ck_assert_int_eq(tg_backward(tp, tg_sum(tp, y)), TG_ERR_NUMERIC);
    ck_assert_str_eq(tg_tape_error(tp), "anomaly: custom (node 0) produced nan in the gradient of "
                                        "its input 1 (bias); inputs [2], bias [1]");
    tg_tape_free(tp);
    tg_tensor_free(a);
    tg_tensor_free(b);
    tg_tensor_free(seed);
}
END_TEST

/* A constant node (no VJP) stays constant when its output is later marked as
 * requiring grad: the sweep passes it by rather than call a missing VJP. */
static const tg_op_def constant_def = {.name = "constant", .forward = copy_forward};

START_TEST(constant_node_marked_requires_grad)
{
    tg_tensor *a = from(TG_F64, "2", (double[]){1, 2});
    tg_tensor_set_requires_grad(a, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *c = tg_custom(tp, &constant_def, &a, 1, 1, (int64_t[]){2}, NULL);
    ck_assert_ptr_nonnull(c);
    ck_assert(!tg_tensor_requires_grad(c));
    tg_tensor_set_requires_grad(c, true);
    ck_assert_int_eq(tg_backward(tp, tg_sum(tp, tg_mul(tp, c, a))), TG_OK);
    ASSERT_EXACT(tg_tensor_grad(a), 1, 2.0); /* only the direct path: d(c a)/da = c */
    tg_tape_free(tp);
    tg_tensor_free(a);
}
END_TEST

/* ====== Numbers at the edges: docs/reliability.md ====== */

START_TEST(softmax_family_exact_at_1e4)
{
    tg_dtype dt = dtypes[_i];
    /* Row 0: one logit far above the rest; row 1: a tie at the top, far below zero. */
    tg_tensor *z = from(dt, "2x3", (double[]){1e4, -1e4, 0, -1e4, -1e4, -3e4});
    tg_tensor_set_requires_grad(z, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *p = tg_softmax(tp, z), *ls = tg_log_softmax(tp, z);
    ck_assert_ptr_nonnull(ls);
    double ln2 = dt == TG_F64 ? log(2.0) : (double)logf(2.0f);
    const double want_p[6] = {1, 0, 0, 0.5, 0.5, 0};
    const double want_ls[6] = {0, -2e4, -1e4, -ln2, -ln2, -2e4 - ln2};
    for (int k = 0; k < 6; k++) {
        ck_assert(isfinite(tu_at(ls, k)));
        ck_assert_msg(fabs(tu_at(p, k) - want_p[k]) <= (dt == TG_F64 ? 1e-16 : 1e-7),
                      "softmax[%d] = %.17g", k, tu_at(p, k));
    }
    ASSERT_EXACT(p, 0, 1.0);
    ASSERT_EXACT(p, 1, 0.0);
    ASSERT_EXACT(ls, 0, 0.0);
    ASSERT_EXACT(ls, 1, -2e4);
    ASSERT_EXACT(ls, 2, -1e4);
    ASSERT_EXACT(ls, 3, want_ls[3]);
    ASSERT_EXACT(ls, 4, want_ls[4]);
    ck_assert(fabs(tu_at(ls, 5) - want_ls[5]) <= (dt == TG_F64 ? 4e-12 : 2e-3));

    /* d/dz of sum(log_softmax): 1 - 3 softmax, exact for the first row. */
    ck_assert_int_eq(tg_backward(tp, tg_sum(tp, ls)), TG_OK);
    tg_tensor *g = tg_tensor_grad(z);
    ASSERT_EXACT(g, 0, -2.0);
    ASSERT_EXACT(g, 1, 1.0);
    ASSERT_EXACT(g, 2, 1.0);
    for (int k = 3; k < 6; k++) ck_assert(isfinite(tu_at(g, k)));

    /* Cross-entropy: -log p of the target class, mean over rows; dz = (p - t) / n. */
    tg_tape_reset(tp);
    tg_tensor_zero_grad(z);
    tg_tensor *t = from(dt, "2x3", (double[]){0, 1, 0, 0, 0, 1});
    tg_tensor *ce = tg_softmax_cross_entropy(tp, z, t);
    ck_assert_ptr_nonnull(ce);
    /* (2e4 + (2e4 + ln 2)) / 2 */
    ck_assert_msg(fabs(tg_tensor_item(ce) - (2e4 + ln2 / 2)) <= (dt == TG_F64 ? 4e-12 : 2e-3),
                  "ce = %.17g", tg_tensor_item(ce));
    ck_assert_int_eq(tg_backward(tp, ce), TG_OK);
    ASSERT_EXACT(g, 0, 0.5);
    ASSERT_EXACT(g, 1, -0.5);
    ASSERT_EXACT(g, 2, 0.0);
    ASSERT_EXACT(g, 5, -0.5);
    tg_tape_reset(tp);
    tg_tensor *t0 = from(dt, "2x3", (double[]){1, 0, 0, 1, 0, 0});
    ce = tg_softmax_cross_entropy(tp, z, t0);
    ck_assert_msg(tg_tensor_item(ce) == ln2 / 2, "ce = %.17g", tg_tensor_item(ce));
    tg_tape_free(tp);
    tg_tensor_free(z);
    tg_tensor_free(t);
    tg_tensor_free(t0);
}
END_TEST

START_TEST(sigmoid_and_tanh_saturate)
{
    tg_dtype dt = dtypes[_i];
    /* Past ~745 (F64) or ~104 (F32) e^-|x| underflows and the result is exactly 0 or 1. */
    double big = dt == TG_F64 ? 800 : 120;
    tg_tensor *x = from(dt, "8", (double[]){-1e4, -big, -INFINITY, 0, big, 1e4, INFINITY, 1e-3});
    tg_tensor_set_requires_grad(x, true);
    tg_tape *tp = tg_tape_new();
    tg_tape_set_anomaly(tp, true); /* no NaN or Inf anywhere, forward or backward */
    tg_tensor *s = tg_sigmoid(tp, x), *th = tg_tanh(tp, x);
    ck_assert_ptr_nonnull(th);
    const double want_s[7] = {0, 0, 0, 0.5, 1, 1, 1}, want_t[7] = {-1, -1, -1, 0, 1, 1, 1};
    for (int k = 0; k < 7; k++) {
        ASSERT_EXACT(s, k, want_s[k]);
        ASSERT_EXACT(th, k, want_t[k]);
    }
    ck_assert_int_eq(tg_backward(tp, tg_sum(tp, tg_add(tp, s, th))), TG_OK);
    tg_tensor *g = tg_tensor_grad(x);
    for (int k = 0; k < 8; k++) {
        double want = k == 3 ? 1.25 : 0; /* y(1-y) + 1 - y^2 at 0 */
        if (k < 7) ASSERT_EXACT(g, k, want);
    }
    ck_assert(tu_at(g, 7) > 1.24 && tu_at(g, 7) < 1.25);
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

START_TEST(log_div_exp_follow_ieee)
{
    tg_dtype dt = dtypes[_i];
    double over = dt == TG_F64 ? 1000 : 100; /* e^x overflows past ~709.8 (F64), ~88.7 (F32) */
    tg_tensor *x = from(dt, "4", (double[]){0, -1, over, -2 * over});
    tg_tensor *num = from(dt, "4", (double[]){1, -1, 0, 1});
    tg_tensor *den = from(dt, "4", (double[]){0, 0, 0, -0.0});
    tg_tensor_set_requires_grad(x, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *l = tg_log(tp, x), *e = tg_exp(tp, x), *q = tg_div(tp, num, den);
    ck_assert_ptr_nonnull(q);
    ASSERT_EXACT(l, 0, -INFINITY); /* log(0) = -inf */
    ASSERT_EXACT(l, 1, NAN);       /* log(x < 0) = NaN */
    ASSERT_EXACT(e, 2, INFINITY);  /* overflow */
    ASSERT_EXACT(e, 3, 0.0);       /* underflow */
    ASSERT_EXACT(q, 0, INFINITY);  /* 1/0 */
    ASSERT_EXACT(q, 1, -INFINITY); /* -1/0 */
    ASSERT_EXACT(q, 2, NAN);       /* 0/0 */
    ASSERT_EXACT(q, 3, -INFINITY); /* 1/-0 */
    /* d log(x)/dx = 1/x: +inf at 0; d e^x/dx = e^x: +inf past the overflow. */
    ck_assert_int_eq(tg_backward(tp, tg_sum(tp, tg_add(tp, l, e))), TG_OK);
    ASSERT_EXACT(tg_tensor_grad(x), 0, INFINITY);
    ASSERT_EXACT(tg_tensor_grad(x), 2, INFINITY);
    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_tensor_free(num);
    tg_tensor_free(den);
}
END_TEST

/* With denormals flushed, a product whose inputs are all denormal is exactly
 * zero, also in the part of it BLAS computes on its worker threads (which
 * exist before the flag is set); without, it is the exact denormal sum. */
START_TEST(flush_denormals_reaches_every_thread_of_a_product)
{
    if (under_valgrind()) return;
    enum { N = 512 };
    /* Denormal (below FLT_MIN = 0x1p-126), and so are its partial sums up to
     * N tiny = 0x1p-131: every order of summation gives that sum exactly. */
    const float tiny = 0x1p-140f;
    int threads_before = tg_get_num_threads();
    tg_set_num_threads(2);
    tg_tensor *a = tg_tensor_new(TG_F32, 2, (const int64_t[]){N, N});
    tg_tensor *b = tg_tensor_new(TG_F32, 2, (const int64_t[]){N, N});
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    for (int64_t k = 0; k < N * N; k++) {
        ((float *)tg_tensor_data(a))[k] = tiny;
        ((float *)tg_tensor_data(b))[k] = 1;
    }
    for (int on = 1; on >= 0; on--) {
        if (!tg_set_flush_denormals(on)) break; /* not x86: nothing to check */
        tg_tape *tp = tg_tape_new();
        tg_tensor *c = tg_matmul(tp, a, b);
        ck_assert_ptr_nonnull(c);
        const float want = on ? 0.0f : (float)N * tiny, *got = tg_tensor_data(c);
        for (int64_t k = 0; k < N * N; k++)
            ck_assert_msg(got[k] == want, "flush %d: element %lld (row %lld) is %a, want %a", on,
                          (long long)k, (long long)(k / N), (double)got[k], (double)want);
        tg_tape_free(tp);
    }
    tg_set_flush_denormals(false);
    tg_set_num_threads(threads_before);
    tg_tensor_free(a);
    tg_tensor_free(b);
}
END_TEST

/* ====== Sizes: a shape too large to exist is refused, never wrapped ====== */

#define BIG (INT64_C(1) << 40) /* any tensor with an element and such a dimension needs terabytes \
                                */

typedef struct shape_case {
    int rank;
    int64_t shape[TG_MAX_RANK];
} shape_case;

static const shape_case impossible[] = {
    {1, {INT64_MAX}},
    {1, {INT64_C(1) << 60}},         /* 2^63 bytes of F64: one past the limit */
    {2, {INT64_C(1) << 31, INT64_C(1) << 31}},
    {4, {65536, 65536, 65536, 65536}}, /* 2^64: wraps to 0 in 64-bit arithmetic */
    {3, {3, INT64_C(3074457345618258603), 2}}, /* wraps to a small number */
    {2, {-1, 4}},
    {2, {0, -1}},
};

START_TEST(impossible_shapes_give_null)
{
    const shape_case *c = &impossible[_i];
    ck_assert_ptr_null(tg_tensor_new(TG_F32, c->rank, c->shape));
    ck_assert_ptr_null(tg_tensor_new(TG_F64, c->rank, c->shape));
    ck_assert_ptr_null(tg_tensor_from(TG_F64, c->rank, c->shape, (double[1]){0}));
    tg_params *ps = tg_params_new();
    ck_assert_ptr_null(tg_params_add(ps, "w", TG_F32, c->rank, c->shape));
    ck_assert_uint_eq(tg_params_count(ps), 0);
    tg_params_free(ps);

    /* A leaf cannot be reshaped into it, and no op can produce it. */
    tg_tensor *x = from(TG_F32, "2", (double[]){1, 2});
    ck_assert_int_ne(tg_tensor_reshape(x, c->rank, c->shape), TG_OK);
    ck_assert_int_eq(tg_tensor_rank(x), 1);
    tg_tape *tp = tg_tape_new();
    ck_assert_ptr_null(tg_custom(tp, &unnamed_def, &x, 1, c->rank, c->shape, NULL));
    ck_assert_int_eq(tg_tape_status(tp), TG_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(tg_tape_error(tp), "custom: output shape ["));
    ck_assert_ptr_nonnull(strstr(tg_tape_error(tp), "; inputs [2]"));
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

/* A valid element count that no machine can hold: NULL or TG_ERR_NOMEM. */
START_TEST(too_large_for_memory)
{
    ck_assert_ptr_null(tg_tensor_new(TG_F64, 2, (int64_t[]){BIG, 4}));
    tg_tensor *a = tg_tensor_new(TG_F64, 2, (int64_t[]){INT64_C(1) << 20, 0});
    tg_tensor *b = tg_tensor_new(TG_F64, 2, (int64_t[]){0, INT64_C(1) << 20});
    ck_assert_ptr_nonnull(b);
    tg_tape *tp = tg_tape_new();
    ck_assert_ptr_null(tg_matmul(tp, a, b)); /* [2^20, 2^20] doubles: 8 TiB */
    ck_assert_int_eq(tg_tape_status(tp), TG_ERR_NOMEM);
    ck_assert_ptr_nonnull(strstr(tg_tape_error(tp), "matmul"));
    tg_tape_free(tp);
    tg_tensor_free(a);
    tg_tensor_free(b);
    tg_tensor *labels = from(TG_F32, "1", (double[]){0});
    ck_assert_ptr_null(tg_one_hot(labels, INT64_C(1) << 62, TG_F32));
    ck_assert_ptr_null(tg_one_hot(labels, BIG, TG_F64));
    tg_tensor_free(labels);
}
END_TEST

/* Empty tensors may have huge dimensions: every op gives its (empty or zero)
 * result at once, with no product of dimensions overflowing and no loop
 * over the huge one. */
START_TEST(empty_tensors_with_huge_dims)
{
    tg_dtype dt = dtypes[_i];
    tg_tensor *e = tg_tensor_new(dt, 2, (int64_t[]){INT64_C(1) << 62, 0});
    tg_tensor *bias = tg_tensor_new(dt, 1, (int64_t[]){0});
    tg_tensor *w = tg_tensor_new(dt, 4, (int64_t[]){BIG, BIG, 5, 0});
    tg_tensor *c = tg_tensor_new(dt, 3, (int64_t[]){BIG, 1, 0});
    ck_assert_ptr_nonnull(e);
    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(tg_tensor_numel(e), 0);
    tg_tensor_set_requires_grad(e, true);
    tg_tensor_set_requires_grad(w, true);
    tg_tape *tp = tg_tape_new();

    tg_tensor *t = tg_transpose(tp, e);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(tg_tensor_shape(t)[0], 0);
    ck_assert_ptr_nonnull(tg_add_bias(tp, e, bias));
    tg_tensor *s = tg_sum_axis(tp, w, 2, false); /* [2^40, 2^40, 0] */
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(tg_tensor_shape(s)[1], BIG);
    ck_assert_ptr_nonnull(tg_sum_axis(tp, w, 1, true));
    ck_assert_ptr_nonnull(tg_add(tp, w, c)); /* broadcasts to [2^40, 2^40, 5, 0]... */
    ck_assert_ptr_nonnull(tg_softmax(tp, e));
    tg_tensor *ce = tg_softmax_cross_entropy(tp, e, e);
    ck_assert_ptr_nonnull(ce);
    tg_tensor *loss = tg_add(tp, tg_add(tp, tg_sum(tp, t), ce), tg_mean(tp, s));
    ck_assert_ptr_nonnull(loss);
    ck_assert_int_eq(tg_backward(tp, loss), TG_OK);
    ck_assert_int_eq(tg_tape_replay(tp), TG_OK);
    ck_assert_int_eq(tg_tensor_numel(tg_tensor_grad(w)), 0);

    /* ... but [2^40, 1] + [1, 2^40] would have 2^80 elements: refused, not wrapped. */
    tg_tape_reset(tp);
    tg_tensor *col = tg_tensor_new(dt, 3, (int64_t[]){BIG, 1, 0});
    tg_tensor *row = tg_tensor_new(dt, 3, (int64_t[]){1, BIG, 1});
    ck_assert_ptr_null(row); /* 2^40 elements */
    tg_tensor *m1 = tg_tensor_new(dt, 2, (int64_t[]){INT64_C(1) << 30, 0});
    tg_tensor *m2 = tg_tensor_new(dt, 2, (int64_t[]){0, INT64_C(1) << 30});
    ck_assert_ptr_null(tg_matmul(tp, m1, m2)); /* 2^60 elements */
    ck_assert_int_eq(tg_tape_status(tp), TG_ERR_SHAPE);
    ck_assert_str_eq(tg_tape_error(tp),
                     "matmul: output shape [1073741824x1073741824] has more elements than memory "
                     "can hold; inputs [1073741824x0], [0x1073741824]");
    tg_tape_free(tp);
    for (tg_tensor **p = (tg_tensor *[]){e, bias, w, c, col, m1, m2, NULL}; *p; p++)
        tg_tensor_free(*p);
}
END_TEST

/* File headers that promise impossible sizes are format errors, found before
 * anything is allocated. */
START_TEST(files_that_promise_too_much)
{
    char path[] = "/tmp/tg_robust_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    tg_error err;
    tg_tensor *t = NULL;

    /* IDX: 4 dims of 2^32-1 overflow; 2^32-1 bytes promised by a 12-byte file. */
    static const unsigned char idx_overflow[] = {0, 0, 8, 4, 255, 255, 255, 255, 255, 255, 255,
                                                 255, 255, 255, 255, 255, 255, 255, 255, 255};
    static const unsigned char idx_short[] = {0, 0, 8, 1, 255, 255, 255, 255, 1, 2, 3, 4};
    FILE *f = fopen(path, "wb");
    fwrite(idx_overflow, 1, sizeof idx_overflow, f);
    fclose(f);
    ck_assert_int_eq(tg_idx_load(path, TG_F32, 1, &t, &err), TG_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "overflow"));
    f = fopen(path, "wb");
    fwrite(idx_short, 1, sizeof idx_short, f);
    fclose(f);
    ck_assert_int_eq(tg_idx_load(path, TG_F32, 1, &t, &err), TG_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "truncated"));
    ck_assert_ptr_null(t);

    /* safetensors: a header length of 2^64 - 1, and offsets past the end. */
    tg_params *ps = tg_params_new();
    ck_assert_ptr_nonnull(tg_params_add(ps, "w", TG_F32, 1, (int64_t[]){2}));
    f = fopen(path, "wb");
    fwrite("\xff\xff\xff\xff\xff\xff\xff\xff{}", 1, 10, f);
    fclose(f);
    ck_assert_int_eq(tg_checkpoint_load(path, &ps, 1, &err), TG_ERR_FORMAT);
    const char *json = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],"
                       "\"data_offsets\":[9223372036854775800,9223372036854775807]}}";
    uint64_t len = strlen(json);
    f = fopen(path, "wb");
    for (int k = 0; k < 8; k++) fputc((int)(len >> (8 * k)) & 0xff, f);
    fputs(json, f);
    fclose(f);
    ck_assert_int_eq(tg_checkpoint_load(path, &ps, 1, &err), TG_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "data_offsets"));
    tg_params_free(ps);
    remove(path);
}
END_TEST

/* ====== Data safety: a save killed at any moment ====== */

/* Every element of every parameter is 'v'. */
static void fill_all(tg_params *ps, double v)
{
    for (size_t i = 0; i < tg_params_count(ps); i++) {
        tg_tensor *t = tg_params_at(ps, i, NULL);
        for (int64_t k = 0; k < tg_tensor_numel(t); k++)
            tu_put(t, k, v);
    }
}

/* The value every element shares, or NaN when they differ (a mix of two saves). */
static double common_value(tg_params *ps)
{
    double v = tu_at(tg_params_at(ps, 0, NULL), 0);
    for (size_t i = 0; i < tg_params_count(ps); i++) {
        tg_tensor *t = tg_params_at(ps, i, NULL);
        for (int64_t k = 0; k < tg_tensor_numel(t); k++)
            if (tu_at(t, k) != v) return NAN;
    }
    return v;
}

static tg_params *ckpt_params(void)
{
    tg_params *ps = tg_params_new();
    ck_assert_ptr_nonnull(tg_params_add(ps, "big", TG_F32, 2, (int64_t[]){768, 1024})); /* 3 MiB */
    ck_assert_ptr_nonnull(tg_params_add(ps, "small", TG_F64, 1, (int64_t[]){1000}));
    return ps;
}

/* Removes the temporary files killed saves left in 'dir' and returns how many there were. */
static int remove_strays(const char *dir)
{
    int n = 0;
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    for (struct dirent *e; (e = readdir(d));) {
        if (!strstr(e->d_name, ".tmp.")) continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        ck_assert_int_eq(remove(p), 0);
        n++;
    }
    closedir(d);
    return n;
}

START_TEST(killed_saves_leave_old_or_new)
{
    char dir[] = "/tmp/tg_kill_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    tg_params *ps = ckpt_params(), *back = ckpt_params();
    fill_all(ps, 0);
    ck_assert_int_eq(tg_checkpoint_save(path, &ps, 1, NULL), TG_OK);

    bool valgrind = under_valgrind();
    int kills = valgrind ? 6 : 50, strays = 0;
    long max_pause_us = valgrind ? 300000 : 20000;
    uint64_t rng = 0x9E3779B97F4A7C15u;
    double last = 0;
    for (int k = 0; k < kills; k++) {
        int started[2];
        ck_assert_int_eq(pipe(started), 0);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) { /* saves generation after generation until killed */
            for (int gen = 1;; gen++) {
                fill_all(ps, 1000.0 * (k + 1) + gen);
                if (tg_checkpoint_save(path, &ps, 1, NULL) != TG_OK) _exit(1);
                if (gen == 1 && write(started[1], "", 1) != 1) _exit(1);
            }
        }
        /* The pause starts once the saver has finished its first save, so on a
         * loaded machine (or under a sanitizer, where fork is slow) the kill
         * still lands during or between saves, not before the saver runs. */
        char byte;
        ck_assert_int_eq(read(started[0], &byte, 1), 1);
        close(started[0]), close(started[1]);
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        nanosleep(&(struct timespec){0, (long)(rng % (uint64_t)max_pause_us) * 1000}, NULL);
        ck_assert_int_eq(kill(pid, SIGKILL), 0);
        int status;
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "the saver failed");

        /* What is at the path is one whole checkpoint: the last one or a newer one. */
        fill_all(back, -1);
        tg_error err;
        ck_assert_msg(tg_checkpoint_load(path, &back, 1, &err) == TG_OK, "kill %d: %s", k, err.msg);
        double v = common_value(back);
        ck_assert_msg(v == last || (v > 1000.0 * (k + 1) && v < 1000.0 * (k + 2)),
                      "kill %d: found %.17g after %.17g", k, v, last);
        last = v;
        int n = remove_strays(dir);
        ck_assert_int_le(n, 1); /* only the save in progress leaves its temporary file */
        strays += n;
    }
    /* Some kill hit a save in the middle, or the test would prove nothing. */
    if (!valgrind) ck_assert_int_gt(strays, 0);
    remove(path);
    ck_assert_int_eq(rmdir(dir), 0);
    tg_params_free(ps);
    tg_params_free(back);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("robust");
    TCase *tc = tcase_create("anomaly");
    tcase_add_test(tc, anomaly_names_the_first_node_op_and_shapes);
    tcase_add_test(tc, anomaly_in_replay);
    tcase_add_test(tc, anomaly_in_vjp);
    tcase_add_test(tc, anomaly_custom_op_and_seed);
    tcase_add_test(tc, constant_node_marked_requires_grad);
    suite_add_tcase(s, tc);

    tc = tcase_create("numbers");
    tcase_set_timeout(tc, 60); /* OpenBLAS restarts its pool: seconds under a sanitizer and load */
    tcase_add_loop_test(tc, softmax_family_exact_at_1e4, 0, 2);
    tcase_add_loop_test(tc, sigmoid_and_tanh_saturate, 0, 2);
    tcase_add_loop_test(tc, log_div_exp_follow_ieee, 0, 2);
    tcase_add_test(tc, flush_denormals_reaches_every_thread_of_a_product);
    suite_add_tcase(s, tc);

    tc = tcase_create("sizes");
    tcase_add_loop_test(tc, impossible_shapes_give_null, 0, sizeof impossible / sizeof *impossible);
    tcase_add_test(tc, too_large_for_memory);
    tcase_add_loop_test(tc, empty_tensors_with_huge_dims, 0, 2);
    tcase_add_test(tc, files_that_promise_too_much);
    suite_add_tcase(s, tc);

    tc = tcase_create("data_safety");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, killed_saves_leave_old_or_new);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
