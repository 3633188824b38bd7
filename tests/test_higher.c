/*
 * Derivatives of derivatives: tg_grad with and without create_graph, tg_jvp,
 * tg_gradgradcheck, and how they meet the rest of the tape (replay, backward,
 * explain, DOT, refused calls). The per-op second-order checks are in
 * test_ops_list.c (every row) and the family suites.
 */
#include "testutil.h"

#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double at(const tg_tensor *t, int64_t k) { return tu_at(t, k); }

/* f(x) = Σ x³ through mul, so f' = 3x², the Hessian diag(6x), f''' = 6. */
static tg_tensor *cube_sum(tg_tape *tp, tg_tensor *x)
{
    return tg_sum(tp, tg_mul(tp, tg_mul(tp, x, x), x));
}

static const double X5[] = {-1.5, -0.25, 0.0, 0.75, 2.0};

/* ====== tg_grad without create_graph ====== */

START_TEST(grad_values_equal_backward_and_leave_leaves_alone)
{
    tg_tensor *w = tu_random(TG_F64, "3x4", -1, 1, 1), *x = tu_random(TG_F64, "2x3", -1, 1, 2);
    tg_tensor *b = tu_random(TG_F64, "4", -1, 1, 3);
    tg_tensor_set_requires_grad(w, true);
    tg_tensor_set_requires_grad(b, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *h = tg_tanh(tp, tg_add(tp, tg_matmul(tp, x, w), b));
    tg_tensor *loss = tg_mean(tp, tg_mul(tp, h, h));
    tg_tensor *g[2];
    ck_assert_int_eq(tg_grad(tp, loss, NULL, (tg_tensor *[]){w, b}, 2, g, false), TG_OK);
    ck_assert_ptr_null(tg_tensor_grad(w)); /* leaves untouched */
    ck_assert_ptr_null(tg_tensor_grad(b));
    ck_assert(!tg_tensor_requires_grad(g[0]));
    ck_assert_int_eq(tg_backward(tp, loss), TG_OK);
    ck_assert_mem_eq(tg_tensor_cdata(g[0]), tg_tensor_cdata(tg_tensor_grad(w)), 12 * sizeof(double));
    ck_assert_mem_eq(tg_tensor_cdata(g[1]), tg_tensor_cdata(tg_tensor_grad(b)), 4 * sizeof(double));
    /* The results are ordinary tensors of the tape: ops take them. */
    ck_assert_ptr_nonnull(tg_sum(tp, g[0]));
    ck_assert_int_eq(tg_tape_status(tp), TG_OK);
    tg_tape_free(tp);
    tg_tensor_free(w), tg_tensor_free(x), tg_tensor_free(b);
}
END_TEST

START_TEST(grad_of_unreached_wrt_is_zero_and_of_out_is_seed)
{
    for (int cg = 0; cg < 2; cg++) {
        tg_tensor *x = tu_lit(TG_F64, "5", X5), *z = tu_random(TG_F64, "2", -1, 1, 4);
        tg_tensor_set_requires_grad(x, true);
        tg_tensor_set_requires_grad(z, true);
        tg_tape *tp = tg_tape_new();
        tg_tensor *y = tg_scale(tp, x, 2.0);
        tg_tensor *seed = tu_lit(TG_F64, "5", (double[]){1, 2, 3, 4, 5});
        tg_tensor *g[3];
        ck_assert_int_eq(tg_grad(tp, y, seed, (tg_tensor *[]){x, z, y}, 3, g, cg), TG_OK);
        for (int k = 0; k < 5; k++) {
            ck_assert_double_eq(at(g[0], k), 2.0 * (k + 1));
            ck_assert_double_eq(at(g[2], k), k + 1.0);
        }
        ck_assert_double_eq(at(g[1], 0), 0.0);
        ck_assert_double_eq(at(g[1], 1), 0.0);
        ck_assert_ptr_ne(g[2], seed); /* a tensor of the tape, not the caller's seed */
        tg_tape_free(tp);
        tg_tensor_free(x), tg_tensor_free(z), tg_tensor_free(seed);
    }
}
END_TEST

/* ====== create_graph: exact second and third derivatives ====== */

START_TEST(hessian_vector_product_of_cubes)
{
    tg_tensor *x = tu_lit(TG_F64, "5", X5), *v = tu_lit(TG_F64, "5", (double[]){1, -2, 3, 0.5, -1});
    tg_tensor_set_requires_grad(x, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *g, *hv;
    ck_assert_int_eq(tg_grad(tp, cube_sum(tp, x), NULL, &x, 1, &g, true), TG_OK);
    ck_assert(tg_tensor_requires_grad(g));
    for (int k = 0; k < 5; k++) ck_assert_double_eq(at(g, k), 3 * X5[k] * X5[k]);
    tg_tensor *gv = tg_sum(tp, tg_mul(tp, g, v));
    ck_assert_int_eq(tg_grad(tp, gv, NULL, &x, 1, &hv, true), TG_OK);
    for (int k = 0; k < 5; k++) ck_assert_double_eq_tol(at(hv, k), 6 * X5[k] * at(v, k), 1e-15);
    /* Third order: d/dx of Σ (H v) = 6 v. */
    tg_tensor *t3;
    ck_assert_int_eq(tg_grad(tp, tg_sum(tp, hv), NULL, &x, 1, &t3, false), TG_OK);
    for (int k = 0; k < 5; k++) ck_assert_double_eq_tol(at(t3, k), 6 * at(v, k), 1e-15);
    tg_tape_free(tp);
    tg_tensor_free(x), tg_tensor_free(v);
}
END_TEST

START_TEST(tanh_to_fourth_order)
{
    tg_tensor *x = tu_lit(TG_F64, "5", X5);
    tg_tensor_set_requires_grad(x, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *d[4], *f = tg_sum(tp, tg_tanh(tp, x));
    for (int k = 0; k < 4; k++) {
        ck_assert_int_eq(tg_grad(tp, f, NULL, &x, 1, &d[k], true), TG_OK);
        f = tg_sum(tp, d[k]); /* elementwise, so the sum's gradient is the next derivative */
    }
    for (int k = 0; k < 5; k++) {
        double t = tanh(X5[k]), s = 1 - t * t;
        ck_assert_double_eq_tol(at(d[0], k), s, 1e-15);
        ck_assert_double_eq_tol(at(d[1], k), -2 * t * s, 1e-15);
        ck_assert_double_eq_tol(at(d[2], k), s * (6 * t * t - 2), 1e-14);
        ck_assert_double_eq_tol(at(d[3], k), 8 * t * s * (2 - 3 * t * t), 1e-14);
    }
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

/* Gradient penalty: loss = Σ (df/dx)² with f = Σ x³ is Σ 9x⁴, whose
 * gradient tg_backward gives as 36x³. */
START_TEST(backward_through_a_gradient)
{
    tg_tensor *x = tu_lit(TG_F64, "5", X5);
    tg_tensor_set_requires_grad(x, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *g;
    ck_assert_int_eq(tg_grad(tp, cube_sum(tp, x), NULL, &x, 1, &g, true), TG_OK);
    tg_tensor *pen = tg_sum(tp, tg_mul(tp, g, g));
    ck_assert_int_eq(tg_backward(tp, pen), TG_OK);
    for (int k = 0; k < 5; k++)
        ck_assert_double_eq_tol(at(tg_tensor_grad(x), k), 36 * pow(X5[k], 3), 1e-13);
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

/* ====== Replay of a recorded gradient ====== */

START_TEST(recorded_hvp_replays_without_allocation)
{
    tg_tensor *w = tu_random(TG_F64, "3x4", -1, 1, 5), *x = tu_random(TG_F64, "2x3", -1, 1, 6);
    tg_tensor *v = tu_random(TG_F64, "3x4", -1, 1, 7);
    tg_tensor_set_requires_grad(w, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *loss = tg_mean(tp, tg_tanh(tp, tg_matmul(tp, x, w))), *g, *hv;
    ck_assert_int_eq(tg_grad(tp, loss, NULL, &w, 1, &g, true), TG_OK);
    ck_assert_int_eq(tg_grad(tp, tg_sum(tp, tg_mul(tp, g, v)), NULL, &w, 1, &hv, true), TG_OK);
    size_t bytes = tg__arena_bytes(&tp->arena), nodes = tg_tape_size(tp);
    /* New data: replay equals a fresh recording, bit for bit. */
    double *xd = tg_tensor_data(x);
    for (int k = 0; k < 6; k++) xd[k] = 0.3 * k - 0.7;
    ck_assert_int_eq(tg_tape_replay(tp), TG_OK);
    ck_assert_uint_eq(tg__arena_bytes(&tp->arena), bytes);
    ck_assert_uint_eq(tg_tape_size(tp), nodes);
    tg_tape *fresh = tg_tape_new();
    tg_tensor *loss2 = tg_mean(fresh, tg_tanh(fresh, tg_matmul(fresh, x, w))), *g2, *hv2;
    ck_assert_int_eq(tg_grad(fresh, loss2, NULL, &w, 1, &g2, true), TG_OK);
    ck_assert_int_eq(
        tg_grad(fresh, tg_sum(fresh, tg_mul(fresh, g2, v)), NULL, &w, 1, &hv2, true), TG_OK);
    ck_assert_mem_eq(tg_tensor_cdata(hv), tg_tensor_cdata(hv2), 12 * sizeof(double));
    ck_assert_mem_eq(tg_tensor_cdata(g), tg_tensor_cdata(g2), 12 * sizeof(double));
    tg_tape_free(tp), tg_tape_free(fresh);
    tg_tensor_free(w), tg_tensor_free(x), tg_tensor_free(v);
}
END_TEST

/* ====== Custom ops: vjp_graph opts in; without it create_graph refuses ====== */

static tg_status sq_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in, (void)ctx;
    for (int64_t k = 0; k < tg_tensor_numel(out); k++) tu_put(out, k, at(in[0], k) * at(in[0], k));
    return TG_OK;
}

static tg_status sq_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                        tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)n_in, (void)ctx;
    for (int64_t k = 0; gin[0] && k < tg_tensor_numel(out); k++)
        tu_put(gin[0], k, at(gin[0], k) + 2 * at(in[0], k) * at(gout, k));
    return TG_OK;
}

static tg_status sq_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                              const bool *need, tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)need, (void)n_in, (void)ctx;
    gin[0] = tg_mul(tp, tg_scale(tp, dy, 2.0), in[0]);
    return tg_tape_status(tp);
}

static const tg_op_def sq_def = {.name = "my_square", .forward = sq_forward, .vjp = sq_vjp};
static const tg_op_def sq2_def = {
    .name = "my_square2", .forward = sq_forward, .vjp = sq_vjp, .vjp_graph = sq_vjp_graph};

static tg_tensor *my_square(tg_tape *tp, tg_tensor *x, const tg_op_def *def)
{
    return tg_custom(tp, def, &x, 1, tg_tensor_rank(x), tg_tensor_shape(x), NULL);
}

START_TEST(custom_op_without_vjp_graph_is_refused_by_name)
{
    tg_tensor *x = tu_lit(TG_F64, "5", X5);
    tg_tensor_set_requires_grad(x, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *f = tg_sum(tp, tg_tanh(tp, my_square(tp, x, &sq_def))), *g = NULL;
    size_t nodes = tg_tape_size(tp);
    ck_assert_int_eq(tg_grad(tp, f, NULL, &x, 1, &g, true), TG_ERR_STATE);
    ck_assert_str_eq(tg_tape_error(tp), "grad: my_square (node 0) cannot be differentiated twice: "
                                        "its tg_op_def has no vjp_graph, which create_graph needs");
    ck_assert_ptr_null(g);
    ck_assert_uint_eq(tg_tape_size(tp), nodes); /* refused: nothing recorded, tape healthy */
    ck_assert_int_eq(tg_tape_status(tp), TG_OK);
    /* First order still works through it. */
    ck_assert_int_eq(tg_grad(tp, f, NULL, &x, 1, &g, false), TG_OK);
    /* A user op that gives vjp_graph is differentiated twice like a built-in. */
    tg_tensor *f2 = tg_sum(tp, my_square(tp, x, &sq2_def)), *g2, *h2;
    ck_assert_int_eq(tg_grad(tp, f2, NULL, &x, 1, &g2, true), TG_OK);
    ck_assert_int_eq(tg_grad(tp, tg_sum(tp, g2), NULL, &x, 1, &h2, false), TG_OK);
    for (int k = 0; k < 5; k++) {
        ck_assert_double_eq(at(g2, k), 2 * X5[k]);
        ck_assert_double_eq(at(h2, k), 2.0);
    }
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

/* ====== Refused calls ====== */

START_TEST(bad_calls_are_refused_and_change_nothing)
{
    tg_tensor *x = tu_lit(TG_F64, "5", X5), *c = tu_lit(TG_F64, "5", X5);
    tg_tensor *s3 = tu_random(TG_F64, "3", -1, 1, 8), *s32 = tu_random(TG_F32, "5", -1, 1, 9);
    tg_tensor_set_requires_grad(x, true);
    tg_tape *tp = tg_tape_new(), *other = tg_tape_new();
    tg_tensor *y = tg_mul(tp, x, x), *f = tg_sum(tp, y), *g[1] = {NULL};
    tg_tensor *foreign = tg_sum(other, tg_mul(other, x, x));
    size_t nodes = tg_tape_size(tp);
    struct {
        tg_status want;
        const char *msg;
        tg_tensor *out;
        const tg_tensor *seed;
        tg_tensor *wrt;
        int n;
        bool cg;
    } cases[] = {
        {TG_ERR_ARG, "grad: needs at least one wrt tensor, got 0", f, NULL, x, 0, true},
        {TG_ERR_STATE, "grad: wrt 0 [5] does not require grad", f, NULL, c, 1, false},
        {TG_ERR_SHAPE, "grad: a NULL seed needs an output of one element, got [5]", y, NULL, x, 1,
         true},
        {TG_ERR_SHAPE, "grad: seed [3] does not match output [5]", y, s3, x, 1, false},
        {TG_ERR_DTYPE, "grad: seed [5] is f32, the output [5] is f64", y, s32, x, 1, true},
        {TG_ERR_STATE, "grad: the output belongs to another tape", foreign, NULL, x, 1, true},
        {TG_ERR_ARG, "grad: output is NULL", NULL, NULL, x, 1, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        tg_tensor *wrt[1] = {cases[i].wrt};
        tg_status st = tg_grad(tp, cases[i].out, cases[i].seed, wrt, cases[i].n, g, cases[i].cg);
        ck_assert_msg(st == cases[i].want, "case %zu: %s", i, tg_tape_error(tp));
        ck_assert_str_eq(tg_tape_error(tp), cases[i].msg);
        ck_assert_int_eq(tg_tape_status(tp), TG_OK);
        ck_assert_uint_eq(tg_tape_size(tp), nodes);
        ck_assert_ptr_null(g[0]);
    }
    /* A gradient buffer can seed the fused sweep, not a recorded one. */
    ck_assert_int_eq(tg_backward(tp, f), TG_OK);
    tg_tensor *gy = tg_tensor_grad(y);
    ck_assert_int_eq(tg_grad(tp, y, gy, &x, 1, g, true), TG_ERR_ARG);
    ck_assert_int_eq(tg_grad(tp, y, gy, &x, 1, g, false), TG_OK);
    for (int k = 0; k < 5; k++) ck_assert_double_eq(at(g[0], k), 2 * X5[k]);
    ck_assert_int_eq(tg_grad(NULL, f, NULL, &x, 1, g, true), TG_ERR_ARG);
    tg_tape_free(tp), tg_tape_free(other);
    tg_tensor_free(x), tg_tensor_free(c), tg_tensor_free(s3), tg_tensor_free(s32);
}
END_TEST

/* ====== Forward mode ====== */

START_TEST(jvp_matches_closed_forms)
{
    tg_tensor *x = tu_lit(TG_F64, "5", X5), *v = tu_lit(TG_F64, "5", (double[]){1, -2, 3, 0.5, -1});
    tg_tensor *w = tu_random(TG_F64, "5x2", -1, 1, 10), *dw = tu_random(TG_F64, "5x2", -1, 1, 11);
    tg_tensor_set_requires_grad(x, true);
    tg_tensor_set_requires_grad(w, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *t = tg_tanh(tp, x), *jt;
    ck_assert_int_eq(tg_jvp(tp, t, &x, 1, &v, &jt), TG_OK);
    for (int k = 0; k < 5; k++) {
        double th = tanh(X5[k]);
        ck_assert_double_eq_tol(at(jt, k), (1 - th * th) * at(v, k), 1e-15);
    }
    /* y = X W with X [1x5]: the tangent along (dX, dW) is dX W + X dW. */
    tg_tensor *xr = tg_reshape(tp, x, 2, (int64_t[]){1, 5}), *y = tg_matmul(tp, xr, w), *jy;
    tg_tensor *vr = tu_lit(TG_F64, "1x5", (double[]){1, -2, 3, 0.5, -1});
    ck_assert_int_eq(tg_jvp(tp, y, (tg_tensor *[]){w}, 1, (tg_tensor *[]){dw}, &jy), TG_OK);
    for (int j = 0; j < 2; j++) {
        double want = 0;
        for (int k = 0; k < 5; k++) want += X5[k] * at(dw, 2 * k + j);
        ck_assert_double_eq_tol(at(jy, j), want, 1e-15);
    }
    /* Nothing reaches: zero. Bad tangent: refused. */
    tg_tensor *c = tu_lit(TG_F64, "5", X5), *z;
    ck_assert_int_eq(tg_jvp(tp, tg_tanh(tp, c), &x, 1, &v, &z), TG_OK);
    for (int k = 0; k < 5; k++) ck_assert_double_eq(at(z, k), 0.0);
    ck_assert_int_eq(tg_jvp(tp, t, &x, 1, &vr, &z), TG_ERR_SHAPE);
    ck_assert_str_eq(tg_tape_error(tp), "jvp: tangent 0 [1x5] does not match wrt 0 [5]");
    ck_assert_int_eq(tg_tape_status(tp), TG_OK);
    tg_tape_free(tp);
    tg_tensor_free(x), tg_tensor_free(v), tg_tensor_free(w), tg_tensor_free(dw);
    tg_tensor_free(vr), tg_tensor_free(c);
}
END_TEST

/* ====== tg_gradgradcheck ====== */

static tg_tensor *mlp_loss(tg_tape *tp, tg_tensor *const *in, void *ctx)
{
    (void)ctx;
    tg_tensor *h = tg_tanh(tp, tg_add(tp, tg_matmul(tp, in[0], in[1]), in[2]));
    return tg_mean(tp, tg_mul(tp, h, tg_tanh(tp, h)));
}

static tg_tensor *custom_fn(tg_tape *tp, tg_tensor *const *in, void *ctx)
{
    return tg_sum(tp, tg_tanh(tp, my_square(tp, in[0], ctx)));
}

/* A vjp_graph off by a factor: gradgradcheck must catch it. */
static tg_status bad_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                               const bool *need, tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)need, (void)n_in, (void)ctx;
    gin[0] = tg_mul(tp, tg_scale(tp, dy, 2.1), in[0]);
    return tg_tape_status(tp);
}

/* A vjp_graph whose gradient has the wrong shape: the sweep refuses it. */
static tg_status misshapen_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out,
                                     tg_tensor *const *in, const bool *need, tg_tensor **gin,
                                     int n_in, void *ctx)
{
    (void)out, (void)in, (void)need, (void)n_in, (void)ctx;
    gin[0] = tg_sum(tp, dy);
    return tg_tape_status(tp);
}

static const tg_op_def sq_misshapen_def = {.name = "my_square_misshapen",
                                           .forward = sq_forward,
                                           .vjp = sq_vjp,
                                           .vjp_graph = misshapen_vjp_graph};

START_TEST(vjp_graph_of_the_wrong_shape_fails_the_tape)
{
    tg_tensor *x = tu_lit(TG_F64, "5", X5), *g = NULL;
    tg_tensor_set_requires_grad(x, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *f = tg_sum(tp, my_square(tp, x, &sq_misshapen_def));
    ck_assert_int_eq(tg_grad(tp, f, NULL, &x, 1, &g, true), TG_ERR_SHAPE);
    ck_assert_str_eq(tg_tape_error(tp), "my_square_misshapen: vjp_graph (node 0) gave input 0 f64 "
                                        "[5] a gradient f64 []");
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

static const tg_op_def sq_bad_def = {
    .name = "my_square_bad", .forward = sq_forward, .vjp = sq_vjp, .vjp_graph = bad_vjp_graph};

START_TEST(gradgradcheck_passes_fails_and_refuses)
{
    tg_tensor *x = tu_random(TG_F64, "3x4", -1, 1, 12), *w = tu_random(TG_F64, "4x2", -1, 1, 13);
    tg_tensor *b = tu_random(TG_F64, "2", -1, 1, 14);
    tg_tensor_set_requires_grad(x, true);
    tg_tensor_set_requires_grad(w, true);
    tg_tensor_set_requires_grad(b, true);
    tg_gradcheck_report r;
    ck_assert_int_eq(tg_gradgradcheck(mlp_loss, (tg_tensor *[]){x, w, b}, 3, NULL, NULL, &r), TG_OK);
    ck_assert_msg(r.passed, "%s", r.msg);
    ck_assert_int_eq(r.n_checked, 12 + 8 + 2);
    ck_assert_ptr_null(tg_tensor_grad(x)); /* inputs left as they were */

    ck_assert_int_eq(tg_gradgradcheck(custom_fn, &x, 1, (void *)&sq2_def, NULL, &r), TG_OK);
    ck_assert_msg(r.passed, "%s", r.msg);
    ck_assert_int_eq(tg_gradgradcheck(custom_fn, &x, 1, (void *)&sq_bad_def, NULL, &r), TG_OK);
    ck_assert(!r.passed);
    ck_assert_ptr_nonnull(strstr(r.msg, "recorded gradient (create_graph) of wrt 0"));
    ck_assert_int_eq(tg_gradgradcheck(custom_fn, &x, 1, (void *)&sq_def, NULL, &r), TG_ERR_STATE);
    ck_assert(!r.passed);
    ck_assert_ptr_nonnull(strstr(r.msg, "gradgradcheck: f failed to record: grad: my_square "));
    tg_tensor_free(x), tg_tensor_free(w), tg_tensor_free(b);
}
END_TEST

/* ====== Explain and DOT ====== */

static char *capture(tg_tape *tp, bool dot)
{
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(dot ? tg_tape_to_dot(tp, f, NULL) : tg_tape_explain(tp, f, 0), TG_OK);
    fclose(f);
    return buf;
}

START_TEST(second_order_sweep_reads_as_derivatives_of_gradients)
{
    tg_tensor *w = tu_random(TG_F64, "2x2", -1, 1, 15), *x = tu_random(TG_F64, "3x2", -1, 1, 16);
    tg_tensor_set_requires_grad(w, true);
    tg_tensor_set_name(w, "W2");
    tg_tape *tp = tg_tape_new();
    tg_tensor *z = tg_matmul(tp, x, w);
    tg_tensor_set_name(z, "Z2");
    tg_tensor *loss = tg_sum(tp, tg_tanh(tp, z)), *g;
    ck_assert_int_eq(tg_grad(tp, loss, NULL, &w, 1, &g, true), TG_OK);
    ck_assert_str_eq(tg_tensor_name(g), "dW2");
    ck_assert_int_eq(tg_backward(tp, tg_sum(tp, tg_mul(tp, g, g))), TG_OK);
    char *text = capture(tp, false);
    ck_assert_msg(strstr(text, "d(dW2) [2x2] = ") != NULL, "%s", text);
    ck_assert_msg(strstr(text, "d(dZ2) [3x2]") != NULL, "%s", text);
    ck_assert_msg(strstr(text, "dW2 [2x2] ") != NULL, "%s", text);
    free(text);
    char *dot = capture(tp, true);
    ck_assert_msg(strstr(dot, "\\ngradient\"") != NULL, "%s", dot);
    ck_assert_msg(strstr(dot, "dW2 [2x2]") != NULL, "%s", dot);
    free(dot);
    tg_tape_free(tp);
    tg_tensor_free(w), tg_tensor_free(x);
}
END_TEST

static Suite *higher_suite(void)
{
    Suite *s = suite_create("higher");
    TCase *tc = tcase_create("grad");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, grad_values_equal_backward_and_leave_leaves_alone);
    tcase_add_test(tc, grad_of_unreached_wrt_is_zero_and_of_out_is_seed);
    tcase_add_test(tc, hessian_vector_product_of_cubes);
    tcase_add_test(tc, tanh_to_fourth_order);
    tcase_add_test(tc, backward_through_a_gradient);
    tcase_add_test(tc, recorded_hvp_replays_without_allocation);
    tcase_add_test(tc, custom_op_without_vjp_graph_is_refused_by_name);
    tcase_add_test(tc, bad_calls_are_refused_and_change_nothing);
    tcase_add_test(tc, jvp_matches_closed_forms);
    tcase_add_test(tc, gradgradcheck_passes_fails_and_refuses);
    tcase_add_test(tc, vjp_graph_of_the_wrong_shape_fails_the_tape);
    tcase_add_test(tc, second_order_sweep_reads_as_derivatives_of_gradients);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run(higher_suite()); }
