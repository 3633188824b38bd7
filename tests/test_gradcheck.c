/*
 * tg_gradcheck against ops defined here: a correct sum of cubes, the same op
 * with a deliberately wrong VJP at one element, and an elementwise cube whose
 * result is not a scalar.
 */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static size_t bytes_of(const tg_tensor *t)
{
    return (size_t)tg_tensor_numel(t) * (tg_tensor_dtype(t) == TG_F64 ? 8 : 4);
}

/* ====== cubesum: y = sum_i sum_k x_ik^3;  dx_ik += 3 x_ik^2 dy ====== */

/* Where the VJP is made wrong on purpose (2 x^2 instead of 3 x^2); input -1 for nowhere. */
typedef struct wrong_at {
    int input;
    int64_t index;
} wrong_at;

static tg_status cubesum_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)ctx;
    double s = 0;
    for (int i = 0; i < n_in; i++)
        for (int64_t k = 0; k < tg_tensor_numel(in[i]); k++) {
            double x = tu_at(in[i], k);
            s += x * x * x;
        }
    tu_put(out, 0, s);
    return TG_OK;
}

static tg_status cubesum_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                             tg_tensor **gin, int n_in, void *ctx)
{
    (void)out;
    const wrong_at *w = ctx;
    double dy = tu_at(gout, 0);
    for (int i = 0; i < n_in; i++) {
        if (!gin[i]) continue;
        for (int64_t k = 0; k < tg_tensor_numel(in[i]); k++) {
            double x = tu_at(in[i], k);
            double d = w && w->input == i && w->index == k ? 2 * x * x : 3 * x * x;
            tu_put(gin[i], k, tu_at(gin[i], k) + d * dy); /* dx += 3 x^2 dy */
        }
    }
    return TG_OK;
}

static const tg_op_def cubesum_def = {
    .name = "cubesum", .forward = cubesum_forward, .vjp = cubesum_vjp};

/* ====== cube: y = x^3 elementwise;  dx += 3 x^2 dy ====== */

static tg_status cube_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in, (void)ctx;
    for (int64_t k = 0; k < tg_tensor_numel(out); k++) {
        double x = tu_at(in[0], k);
        tu_put(out, k, x * x * x);
    }
    return TG_OK;
}

static tg_status cube_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                          tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)n_in, (void)ctx;
    for (int64_t k = 0; gin[0] && k < tg_tensor_numel(gout); k++) {
        double x = tu_at(in[0], k);
        tu_put(gin[0], k, tu_at(gin[0], k) + 3 * x * x * tu_at(gout, k)); /* dx += 3 x^2 dy */
    }
    return TG_OK;
}

static const tg_op_def cube_def = {.name = "cube", .forward = cube_forward, .vjp = cube_vjp};

static tg_status refuse_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)out, (void)in, (void)n_in, (void)ctx;
    return TG_ERR_DTYPE;
}

static const tg_op_def refuse_def = {.name = "refuse", .forward = refuse_forward, .vjp = cube_vjp};

/* ====== Functions under check (tg_fn) ====== */

typedef struct cubesum_args {
    int n_in;
    const wrong_at *wrong;
} cubesum_args;

static tg_tensor *f_cubesum(tg_tape *tp, tg_tensor *const *inputs, void *ctx)
{
    const cubesum_args *a = ctx;
    return tg_custom(tp, &cubesum_def, inputs, a->n_in, 0, NULL, (void *)a->wrong);
}

static tg_tensor *f_cube(tg_tape *tp, tg_tensor *const *inputs, void *ctx)
{
    (void)ctx;
    tg_tensor *x = inputs[0];
    return tg_custom(tp, &cube_def, &x, 1, tg_tensor_rank(x), tg_tensor_shape(x), NULL);
}

static tg_tensor *f_refuse(tg_tape *tp, tg_tensor *const *inputs, void *ctx)
{
    (void)ctx;
    return tg_custom(tp, &refuse_def, inputs, 1, 0, NULL, NULL);
}

static tg_tensor *f_nothing(tg_tape *tp, tg_tensor *const *inputs, void *ctx)
{
    (void)tp, (void)inputs, (void)ctx;
    return NULL;
}

/* Tighter than the F32 defaults: the cube sum of a few elements is accurate enough. */
static const tg_gradcheck_opts f32_opts = {.eps = 1e-2, .atol = 1e-3, .rtol = 1e-2};

static tg_tensor *grad_leaf(tg_dtype dt, const char *shape, double lo, double hi, uint64_t seed)
{
    tg_tensor *t = tu_random(dt, shape, lo, hi, seed);
    ck_assert_ptr_nonnull(t);
    tg_tensor_set_requires_grad(t, true);
    return t;
}

/* ====== A correct op passes ====== */

static const char *const pass_shapes[] = {"3", "2x3", "1", "", "1x4x1", "2x1x3x1"};

START_TEST(correct_op_passes_f64)
{
    tg_tensor *x = grad_leaf(TG_F64, pass_shapes[_i], -2, 2, 100 + (uint64_t)_i);
    cubesum_args args = {1, NULL};
    tg_gradcheck_report r;
    ck_assert_int_eq(tg_gradcheck(f_cubesum, &x, 1, &args, NULL, &r), TG_OK);
    ck_assert_msg(r.passed, "%s: input %d[%lld] analytic %.17g numeric %.17g", pass_shapes[_i],
                  r.worst_input, (long long)r.worst_index, r.analytic, r.numeric);
    ck_assert_int_eq(r.n_checked, tg_tensor_numel(x));
    ck_assert_int_eq(r.worst_input, 0);
    ck_assert(r.worst_index >= 0 && r.worst_index < tg_tensor_numel(x));
    ck_assert_msg(r.max_abs_err < 1e-7, "max_abs_err %.17g", r.max_abs_err);
    ck_assert_str_eq(r.msg, "");

    /* Zeroed options mean the defaults, so the report is the same. */
    tg_gradcheck_report r0;
    const tg_gradcheck_opts zero = {0, 0, 0, 0};
    ck_assert_int_eq(tg_gradcheck(f_cubesum, &x, 1, &args, &zero, &r0), TG_OK);
    ck_assert_mem_eq(&r0.max_abs_err, &r.max_abs_err, sizeof r.max_abs_err);
    ck_assert_int_eq(r0.passed, r.passed);
    tg_tensor_free(x);
}
END_TEST

/* ====== A wrong VJP fails, and the report points at the wrong element ====== */

static const wrong_at wrong_cases[] = {{0, 0}, {0, 5}, {1, 3}, {1, 0}};

START_TEST(wrong_vjp_is_caught)
{
    tg_dtype dt = tu_loop_dtype(_i % 2);
    const wrong_at *w = &wrong_cases[_i / 2];
    tg_tensor *in[2] = {grad_leaf(dt, "2x3", 0.5, 2, 7), grad_leaf(dt, "4", 0.5, 2, 8)};
    cubesum_args args = {2, w};
    tg_gradcheck_report r;
    ck_assert_int_eq(tg_gradcheck(f_cubesum, in, 2, &args, dt == TG_F32 ? &f32_opts : NULL, &r),
                     TG_OK);

    ck_assert(!r.passed);
    ck_assert_int_eq(r.worst_input, w->input);
    ck_assert_int_eq(r.worst_index, w->index);
    ck_assert_int_eq(r.n_checked, 10);
    double x = tu_at(in[w->input], w->index);
    /* The wrong derivative, as stored in the gradient's dtype. */
    double want = dt == TG_F64 ? 2 * x * x : (double)(float)(2 * x * x);
    ck_assert_msg(r.analytic == want, "analytic %.17g, want %.17g", r.analytic, want);
    double tol = dt == TG_F64 ? 1e-7 : 1e-3;
    ck_assert_msg(fabs(r.numeric - 3 * x * x) <= tol * 3 * x * x, "numeric %.17g, want %.17g",
                  r.numeric, 3 * x * x);
    ck_assert_msg(fabs(r.max_abs_err - x * x) <= tol * x * x, "max_abs_err %.17g, want %.17g",
                  r.max_abs_err, x * x);
    ck_assert_msg(fabs(r.max_rel_err - 1.0 / 3) <= tol, "max_rel_err %.17g", r.max_rel_err);
    char want_msg[64];
    snprintf(want_msg, sizeof want_msg, "gradcheck: input %d element %lld: analytic ", w->input,
             (long long)w->index);
    ck_assert_msg(strstr(r.msg, want_msg) == r.msg, "message '%s'", r.msg);
    ck_assert_msg(strstr(r.msg, "exceeds atol"), "message '%s'", r.msg);
    tg_tensor_free(in[0]);
    tg_tensor_free(in[1]);
}
END_TEST

START_TEST(f32_passes_with_loose_tolerances)
{
    tg_tensor *x = grad_leaf(TG_F32, pass_shapes[_i], -1.5, 1.5, 200 + (uint64_t)_i);
    cubesum_args args = {1, NULL};
    tg_gradcheck_report r;
    ck_assert_int_eq(tg_gradcheck(f_cubesum, &x, 1, &args, &f32_opts, &r), TG_OK);
    ck_assert_msg(r.passed, "%s: input %d[%lld] analytic %.17g numeric %.17g", pass_shapes[_i],
                  r.worst_input, (long long)r.worst_index, r.analytic, r.numeric);
    ck_assert_int_eq(r.n_checked, tg_tensor_numel(x));
    tg_tensor_free(x);
}
END_TEST

/* ====== Inputs are left exactly as they were ====== */

START_TEST(inputs_and_gradients_are_restored)
{
    tg_dtype dt = tu_loop_dtype(_i);
    /* Values whose +-eps round trip is inexact, so a restore by arithmetic would show. */
    const double awkward[6] = {0.1, 1.0 / 3, -2.0 / 7, 1e-300, 1e-5 + 1e-12, -0.0};
    tg_tensor *a = tu_from(dt, "2x3", awkward);
    tg_tensor *b = tu_random(dt, "3", -1, 1, 9);
    tg_tensor_set_requires_grad(a, true);
    tg_tensor_set_requires_grad(b, true);

    /* Give 'a' a gradient from an earlier backward, then make it recognisable. */
    tg_tape *tp = tg_tape_new();
    cubesum_args one = {1, NULL};
    ck_assert_int_eq(tg_backward(tp, f_cubesum(tp, &a, &one)), TG_OK);
    tg_tape_free(tp);
    tg_tensor *ga = tg_tensor_grad(a);
    ck_assert_ptr_nonnull(ga);
    for (int64_t k = 0; k < 6; k++)
        tu_put(ga, k, 42 + 0.1 * (double)k);

    unsigned char a_before[6 * 8], b_before[3 * 8], ga_before[6 * 8];
    memcpy(a_before, tg_tensor_data(a), bytes_of(a));
    memcpy(b_before, tg_tensor_data(b), bytes_of(b));
    memcpy(ga_before, tg_tensor_data(ga), bytes_of(ga));

    /* 'a' twice: a duplicated input is checked once and restored once. */
    tg_tensor *in[3] = {a, b, a};
    cubesum_args args = {3, NULL};
    tg_gradcheck_report r;
    ck_assert_int_eq(tg_gradcheck(f_cubesum, in, 3, &args, dt == TG_F32 ? &f32_opts : NULL, &r),
                     TG_OK);
    ck_assert_msg(r.passed, "input %d[%lld] analytic %.17g numeric %.17g", r.worst_input,
                  (long long)r.worst_index, r.analytic, r.numeric);
    ck_assert_int_eq(r.n_checked, 9);

    ck_assert_mem_eq(tg_tensor_data(a), a_before, bytes_of(a));
    ck_assert_mem_eq(tg_tensor_data(b), b_before, bytes_of(b));
    ck_assert_ptr_eq(tg_tensor_grad(a), ga);
    ck_assert_mem_eq(tg_tensor_data(ga), ga_before, bytes_of(ga));
    ck_assert_ptr_null(tg_tensor_grad(b)); /* had none, has none */
    ck_assert(tg_tensor_requires_grad(a) && tg_tensor_requires_grad(b));
    tg_tensor_free(a);
    tg_tensor_free(b);
}
END_TEST

START_TEST(only_inputs_requiring_grad_are_checked)
{
    tg_tensor *in[3] = {grad_leaf(TG_F64, "2x2", -1, 1, 1), tu_random(TG_F64, "3", -1, 1, 2),
                        grad_leaf(TG_F64, "5", -1, 1, 3)};
    /* A wrong VJP on the constant input cannot show: its slot is NULL. */
    const wrong_at w = {1, 0};
    cubesum_args args = {3, &w};
    tg_gradcheck_report r;
    ck_assert_int_eq(tg_gradcheck(f_cubesum, in, 3, &args, NULL, &r), TG_OK);
    ck_assert(r.passed);
    ck_assert_int_eq(r.n_checked, 4 + 5);
    ck_assert_int_ne(r.worst_input, 1);
    ck_assert_ptr_null(tg_tensor_grad(in[1]));
    for (int i = 0; i < 3; i++)
        tg_tensor_free(in[i]);
}
END_TEST

/* ====== Arguments and results that cannot be checked ====== */

START_TEST(bad_arguments)
{
    tg_tensor *x = grad_leaf(TG_F64, "3", -1, 1, 4);
    tg_tensor *c = tu_random(TG_F64, "3", -1, 1, 5); /* requires no grad */
    cubesum_args args = {1, NULL};
    tg_gradcheck_report r;
    ck_assert_int_eq(tg_gradcheck(NULL, &x, 1, &args, NULL, &r), TG_ERR_ARG);
    ck_assert_int_eq(tg_gradcheck(f_cubesum, NULL, 1, &args, NULL, &r), TG_ERR_ARG);
    ck_assert_int_eq(tg_gradcheck(f_cubesum, &x, 0, &args, NULL, &r), TG_ERR_ARG);
    ck_assert_int_eq(tg_gradcheck(f_cubesum, &x, 1, &args, NULL, NULL), TG_ERR_ARG);
    tg_tensor *with_null[2] = {x, NULL};
    ck_assert_int_eq(tg_gradcheck(f_cubesum, with_null, 2, &args, NULL, &r), TG_ERR_ARG);
    /* A check of nothing would pass vacuously. */
    ck_assert_int_eq(tg_gradcheck(f_cubesum, &c, 1, &args, NULL, &r), TG_ERR_ARG);
    /* f recorded nothing. */
    ck_assert_int_eq(tg_gradcheck(f_nothing, &x, 1, NULL, NULL, &r), TG_ERR_ARG);

    const tg_gradcheck_opts neg_eps = {.eps = -1e-6}, neg_atol = {.atol = -1},
                            neg_rtol = {.rtol = -1e-3};
    ck_assert_int_eq(tg_gradcheck(f_cubesum, &x, 1, &args, &neg_eps, &r), TG_ERR_ARG);
    ck_assert_int_eq(tg_gradcheck(f_cubesum, &x, 1, &args, &neg_atol, &r), TG_ERR_ARG);
    ck_assert_int_eq(tg_gradcheck(f_cubesum, &x, 1, &args, &neg_rtol, &r), TG_ERR_ARG);

    /* A tape-owned tensor and a gradient are not the caller's to perturb. */
    tg_tape *tp = tg_tape_new();
    tg_tensor *owned = f_cube(tp, &x, NULL);
    ck_assert_int_eq(tg_backward(tp, f_cubesum(tp, &x, &args)), TG_OK);
    tg_tensor *gx = tg_tensor_grad(x);
    ck_assert_int_eq(tg_gradcheck(f_cube, &owned, 1, NULL, NULL, &r), TG_ERR_ARG);
    ck_assert_int_eq(tg_gradcheck(f_cubesum, &gx, 1, &args, NULL, &r), TG_ERR_ARG);
    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_tensor_free(c);
}
END_TEST

START_TEST(result_must_have_one_element)
{
    tg_tensor *x = grad_leaf(TG_F64, "2x3", -1, 1, 6);
    double before[6];
    memcpy(before, tg_tensor_data(x), sizeof before);
    tg_gradcheck_report r;
    ck_assert_int_eq(tg_gradcheck(f_cube, &x, 1, NULL, NULL, &r), TG_ERR_SHAPE);
    ck_assert_mem_eq(tg_tensor_data(x), before, sizeof before);
    ck_assert_ptr_null(tg_tensor_grad(x));

    /* One element of any rank is fine. */
    tg_tensor *one = grad_leaf(TG_F64, "1x1x1", 0.5, 1, 7);
    ck_assert_int_eq(tg_gradcheck(f_cube, &one, 1, NULL, NULL, &r), TG_OK);
    ck_assert(r.passed);
    ck_assert_int_eq(r.n_checked, 1);
    tg_tensor_free(one);
    tg_tensor_free(x);
}
END_TEST

START_TEST(failure_inside_f_is_returned)
{
    tg_tensor *x = grad_leaf(TG_F64, "3", -1, 1, 8);
    tg_gradcheck_report r;
    ck_assert_int_eq(tg_gradcheck(f_refuse, &x, 1, NULL, NULL, &r), TG_ERR_DTYPE);
    ck_assert_ptr_null(tg_tensor_grad(x));
    tg_tensor_free(x);
}
END_TEST

/* ====== A check that cannot run never reports a pass ====== */

/* An op whose forward works when recorded and fails from its second call on,
 * so the failure comes during the perturbed replays. */
static tg_status flaky_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    int *calls = ctx;
    if ((*calls)++ > 0) return TG_ERR_STATE;
    return cubesum_forward(out, in, n_in, NULL);
}

static const tg_op_def flaky_def = {.name = "flaky", .forward = flaky_forward, .vjp = cubesum_vjp};

static tg_tensor *f_flaky(tg_tape *tp, tg_tensor *const *inputs, void *ctx)
{
    return tg_custom(tp, &flaky_def, inputs, 1, 0, NULL, ctx);
}

/* A scalar that ignores the inputs: ctx is a constant leaf. */
static tg_tensor *f_constant(tg_tape *tp, tg_tensor *const *inputs, void *ctx)
{
    (void)inputs;
    tg_tensor *c = ctx;
    return tg_custom(tp, &cubesum_def, &c, 1, 0, NULL, NULL);
}

typedef struct refusal {
    const char *name;
    tg_fn f;
    tg_status want;
    const char *msg; /* the start of report.msg */
} refusal;

static const refusal refusals[] = {
    {"f fails to record", f_refuse, TG_ERR_DTYPE, "gradcheck: f failed to record: refuse"},
    {"f returns NULL", f_nothing, TG_ERR_ARG, "gradcheck: f returned NULL on a healthy tape"},
    {"result of 6 elements", f_cube, TG_ERR_SHAPE,
     "gradcheck: f returned a [2x3] tensor; it must have one element"},
    {"backward fails", f_constant, TG_ERR_STATE, "gradcheck: backward of f failed: "},
    {"replay fails", f_flaky, TG_ERR_STATE,
     "gradcheck: replaying f with input 0 element 0 moved failed: "},
};

START_TEST(refusals_fail_the_report)
{
    const refusal *c = &refusals[_i];
    tg_tensor *x = grad_leaf(TG_F64, "2x3", -1, 1, 30);
    tg_tensor *k = tu_random(TG_F64, "2", -1, 1, 31);
    int calls = 0;
    void *ctx = c->f == f_constant ? (void *)k : c->f == f_flaky ? (void *)&calls : NULL;
    double before[6];
    memcpy(before, tg_tensor_data(x), sizeof before);
    tg_gradcheck_report r;
    memset(&r, 0xff, sizeof r); /* whatever was there, passed included, is overwritten */
    tg_status s = tg_gradcheck(c->f, &x, 1, ctx, NULL, &r);
    ck_assert_msg(s == c->want, "%s: status %s", c->name, tg_status_str(s));
    ck_assert_msg(!r.passed, "%s: passed", c->name);
    ck_assert_msg(strstr(r.msg, c->msg) == r.msg, "%s: message '%s'", c->name, r.msg);
    ck_assert_int_eq(tg_last_error()->status, c->want);
    ck_assert_str_eq(tg_last_error()->msg, r.msg);
    ck_assert_mem_eq(tg_tensor_data(x), before, sizeof before);
    ck_assert_ptr_null(tg_tensor_grad(x));
    tg_tensor_free(x);
    tg_tensor_free(k);
}
END_TEST

START_TEST(bad_arguments_fail_the_report)
{
    tg_tensor *x = grad_leaf(TG_F64, "3", -1, 1, 32), *c = tu_random(TG_F64, "3", -1, 1, 33);
    cubesum_args args = {1, NULL};
    tg_gradcheck_report r;
    static const struct {
        tg_gradcheck_opts o;
        const char *msg;
    } bad[] = {
        {{.eps = NAN}, "gradcheck: eps nan, atol"},
        {{.atol = INFINITY}, "gradcheck: eps 0, atol inf"},
        {{.rtol = -1}, "gradcheck: eps 0, atol 0, rtol -1: each must be finite and >= 0"},
        {{.set = 4}, "gradcheck: unknown bits 0x4 in 'set'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        r.passed = true;
        ck_assert_int_eq(tg_gradcheck(f_cubesum, &x, 1, &args, &bad[i].o, &r), TG_ERR_ARG);
        ck_assert(!r.passed);
        ck_assert_msg(strstr(r.msg, bad[i].msg) == r.msg, "message '%s'", r.msg);
    }
    r.passed = true;
    ck_assert_int_eq(tg_gradcheck(f_cubesum, &c, 1, &args, NULL, &r), TG_ERR_ARG);
    ck_assert(!r.passed);
    ck_assert_str_eq(r.msg, "gradcheck: no input requires grad");
    tg_tensor *in[2] = {x, NULL};
    ck_assert_int_eq(tg_gradcheck(f_cubesum, in, 2, &args, NULL, &r), TG_ERR_ARG);
    ck_assert_str_eq(r.msg, "gradcheck: input 1 is NULL; inputs must be the caller's leaves");
    /* Without a report the reason is still in tg_last_error. */
    ck_assert_int_eq(tg_gradcheck(f_cubesum, &x, 1, &args, NULL, NULL), TG_ERR_ARG);
    ck_assert_int_eq(tg_last_error()->status, TG_ERR_ARG);
    ck_assert_str_eq(tg_last_error()->msg, "gradcheck: NULL f, inputs or report, or no inputs");
    tg_tensor_free(x);
    tg_tensor_free(c);
}
END_TEST

/* ====== Defaults follow the dtype; 0 tolerances can be asked for ====== */

/* A small network's loss through public ops: softmax_cross_entropy(tanh(x W + b), t),
 * t in ctx; every input is checked. */
static tg_tensor *f_net(tg_tape *tp, tg_tensor *const *in, void *ctx)
{
    tg_tensor *h = tg_tanh(tp, tg_add_bias(tp, tg_matmul(tp, in[0], in[1]), in[2]));
    return tg_softmax_cross_entropy(tp, tg_scale(tp, h, 3.0), ctx);
}

START_TEST(f32_defaults_pass_correct_gradients)
{
    uint64_t seed = 40 + 4 * (uint64_t)_i;
    tg_tensor *in[3] = {grad_leaf(TG_F32, "5x3", -1, 1, seed),
                        grad_leaf(TG_F32, "3x4", -1, 1, seed + 1),
                        grad_leaf(TG_F32, "4", -0.5, 0.5, seed + 2)};
    tg_tensor *t = tu_random(TG_F32, "5x4", 0, 1, seed + 3);
    tg_gradcheck_report r;
    ck_assert_int_eq(tg_gradcheck(f_net, in, 3, t, NULL, &r), TG_OK);
    ck_assert_msg(r.passed, "%s", r.msg);
    ck_assert_int_eq(r.n_checked, 15 + 12 + 4);
    /* The F64 step would not do in F32: rounding swamps a difference over 1e-6. */
    const tg_gradcheck_opts f64_step = {.eps = TG_GRADCHECK_F64_EPS};
    ck_assert_int_eq(tg_gradcheck(f_net, in, 3, t, &f64_step, &r), TG_OK);
    ck_assert_msg(!r.passed, "passed with eps 1e-6 in f32: max_abs_err %g", r.max_abs_err);

    /* A cube sum in F32 of every shape, at the defaults. */
    tg_tensor *x = grad_leaf(TG_F32, pass_shapes[_i], -1.5, 1.5, seed + 5);
    cubesum_args args = {1, NULL};
    ck_assert_int_eq(tg_gradcheck(f_cubesum, &x, 1, &args, NULL, &r), TG_OK);
    ck_assert_msg(r.passed, "%s: %s", pass_shapes[_i], r.msg);
    for (int i = 0; i < 3; i++)
        tg_tensor_free(in[i]);
    tg_tensor_free(t);
    tg_tensor_free(x);
}
END_TEST

START_TEST(f32_defaults_catch_a_wrong_gradient)
{
    const wrong_at *w = &wrong_cases[_i];
    tg_tensor *in[2] = {grad_leaf(TG_F32, "2x3", 0.5, 2, 50), grad_leaf(TG_F32, "4", 0.5, 2, 51)};
    cubesum_args args = {2, w};
    tg_gradcheck_report r;
    ck_assert_int_eq(tg_gradcheck(f_cubesum, in, 2, &args, NULL, &r), TG_OK);
    ck_assert(!r.passed);
    ck_assert_int_eq(r.worst_input, w->input);
    ck_assert_int_eq(r.worst_index, w->index);
    ck_assert_msg(strstr(r.msg, "atol 0.01 + rtol 0.01 * |numeric| (eps 0.00492)"), "message '%s'",
                  r.msg);
    tg_tensor_free(in[0]);
    tg_tensor_free(in[1]);
}
END_TEST

START_TEST(zero_tolerances_can_be_asked_for)
{
    tg_tensor *x = grad_leaf(TG_F64, "2x3", -2, 2, 60);
    cubesum_args args = {1, NULL};
    tg_gradcheck_report r;
    /* Left 0, the tolerances are the defaults and the correct op passes... */
    const tg_gradcheck_opts dflt = {.atol = 0, .rtol = 0};
    ck_assert_int_eq(tg_gradcheck(f_cubesum, &x, 1, &args, &dflt, &r), TG_OK);
    ck_assert(r.passed);
    ck_assert(r.max_abs_err > 0); /* central differences are never exact here */
    /* ...flagged, they are 0, and the rounding of the difference fails it. */
    const tg_gradcheck_opts exact = {.set = TG_GRADCHECK_SET_ATOL | TG_GRADCHECK_SET_RTOL};
    ck_assert_int_eq(tg_gradcheck(f_cubesum, &x, 1, &args, &exact, &r), TG_OK);
    ck_assert(!r.passed);
    ck_assert_msg(strstr(r.msg, "exceeds atol 0 + rtol 0 * |numeric|"), "message '%s'", r.msg);
    /* atol 0 alone: the relative tolerance still passes it. */
    const tg_gradcheck_opts rel_only = {.rtol = 1e-6, .set = TG_GRADCHECK_SET_ATOL};
    ck_assert_int_eq(tg_gradcheck(f_cubesum, &x, 1, &args, &rel_only, &r), TG_OK);
    ck_assert_msg(r.passed, "%s", r.msg);
    tg_tensor_free(x);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("gradcheck");
    TCase *tc = tcase_create("report");
    tcase_add_loop_test(tc, correct_op_passes_f64, 0, sizeof pass_shapes / sizeof *pass_shapes);
    tcase_add_loop_test(tc, wrong_vjp_is_caught, 0, 2 * sizeof wrong_cases / sizeof *wrong_cases);
    tcase_add_loop_test(tc, f32_passes_with_loose_tolerances, 0,
                        sizeof pass_shapes / sizeof *pass_shapes);
    tcase_add_loop_test(tc, inputs_and_gradients_are_restored, 0, 2);
    tcase_add_test(tc, only_inputs_requiring_grad_are_checked);
    suite_add_tcase(s, tc);

    TCase *te = tcase_create("errors");
    tcase_add_test(te, bad_arguments);
    tcase_add_test(te, result_must_have_one_element);
    tcase_add_test(te, failure_inside_f_is_returned);
    tcase_add_loop_test(te, refusals_fail_the_report, 0, sizeof refusals / sizeof *refusals);
    tcase_add_test(te, bad_arguments_fail_the_report);
    suite_add_tcase(s, te);

    TCase *td = tcase_create("defaults");
    tcase_add_loop_test(td, f32_defaults_pass_correct_gradients, 0,
                        sizeof pass_shapes / sizeof *pass_shapes);
    tcase_add_loop_test(td, f32_defaults_catch_a_wrong_gradient, 0,
                        sizeof wrong_cases / sizeof *wrong_cases);
    tcase_add_test(td, zero_tolerances_can_be_asked_for);
    suite_add_tcase(s, td);
    return tu_run(s);
}
