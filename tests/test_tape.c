/*
 * The tape on its own: recording, the backward sweep, replay, reset and sticky
 * errors. Every op here is defined in this file through tg_custom, so the suite
 * depends on no built-in op.
 */
#include "testutil.h"

#include "internal.h"

#include <stdio.h>
#include <string.h>

/* ====== Test ops, written against the public tg_op_def contract ====== */

/* Element stores as double, so one kernel serves F32 and F64 (tu_at reads). */
static void acc(tg_tensor *t, int64_t k, double v) { tu_put(t, k, tu_at(t, k) + v); }

/* add: y = a + b (same shape);  da += dy, db += dy */
static tg_status add_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in, (void)ctx;
    for (int64_t k = 0; k < tg_tensor_numel(out); k++)
        tu_put(out, k, tu_at(in[0], k) + tu_at(in[1], k));
    return TG_OK;
}

static tg_status add_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                         tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)in, (void)ctx;
    for (int i = 0; i < n_in; i++)
        for (int64_t k = 0; gin[i] && k < tg_tensor_numel(gout); k++)
            acc(gin[i], k, tu_at(gout, k));
    return TG_OK;
}

/* mul: y = a * b (Hadamard);  da += dy * b, db += dy * a */
static tg_status mul_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in, (void)ctx;
    for (int64_t k = 0; k < tg_tensor_numel(out); k++)
        tu_put(out, k, tu_at(in[0], k) * tu_at(in[1], k));
    return TG_OK;
}

static tg_status mul_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                         tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)n_in, (void)ctx;
    for (int64_t k = 0; k < tg_tensor_numel(gout); k++) {
        if (gin[0]) acc(gin[0], k, tu_at(gout, k) * tu_at(in[1], k));
        if (gin[1]) acc(gin[1], k, tu_at(gout, k) * tu_at(in[0], k));
    }
    return TG_OK;
}

/* sum: y = sum_k x_k (rank 0);  dx_k += dy */
static tg_status sum_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in, (void)ctx;
    double s = 0;
    for (int64_t k = 0; k < tg_tensor_numel(in[0]); k++)
        s += tu_at(in[0], k);
    tu_put(out, 0, s);
    return TG_OK;
}

static tg_status sum_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                         tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)n_in, (void)ctx;
    for (int64_t k = 0; gin[0] && k < tg_tensor_numel(in[0]); k++)
        acc(gin[0], k, tu_at(gout, 0));
    return TG_OK;
}

/* scale: y = c x, c in ctx;  dx += c dy */
static tg_status scale_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in;
    double c = *(const double *)ctx;
    for (int64_t k = 0; k < tg_tensor_numel(out); k++)
        tu_put(out, k, c * tu_at(in[0], k));
    return TG_OK;
}

static tg_status scale_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                           tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)in, (void)n_in;
    double c = *(const double *)ctx;
    for (int64_t k = 0; gin[0] && k < tg_tensor_numel(gout); k++)
        acc(gin[0], k, c * tu_at(gout, k));
    return TG_OK;
}

/* A forward that always fails, and a vjp that always fails. */
static tg_status refuse_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)out, (void)in, (void)n_in, (void)ctx;
    return TG_ERR_SHAPE;
}

static tg_status refuse_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                            tg_tensor **gin, int n_in, void *ctx)
{
    (void)gout, (void)out, (void)in, (void)gin, (void)n_in, (void)ctx;
    return TG_ERR_NOMEM;
}

static const tg_op_def add_def = {.name = "t_add", .forward = add_forward, .vjp = add_vjp};
static const tg_op_def mul_def = {.name = "t_mul", .forward = mul_forward, .vjp = mul_vjp};
static const tg_op_def sum_def = {.name = "t_sum", .forward = sum_forward, .vjp = sum_vjp};
static const tg_op_def scale_def = {.name = "t_scale", .forward = scale_forward, .vjp = scale_vjp};
static const tg_op_def stop_def = {.name = "t_stop", .forward = scale_forward, .vjp = NULL};
static const tg_op_def broken_fwd_def = {
    .name = "t_broken_fwd", .forward = refuse_forward, .vjp = add_vjp};
static const tg_op_def broken_vjp_def = {
    .name = "t_broken_vjp", .forward = add_forward, .vjp = refuse_vjp};

static tg_tensor *binary(tg_tape *tp, const tg_op_def *def, tg_tensor *a, tg_tensor *b)
{
    tg_tensor *in[2] = {a, b};
    return tg_custom(tp, def, in, 2, tg_tensor_rank(a), tg_tensor_shape(a), NULL);
}

static tg_tensor *t_add(tg_tape *tp, tg_tensor *a, tg_tensor *b)
{
    return binary(tp, &add_def, a, b);
}

static tg_tensor *t_mul(tg_tape *tp, tg_tensor *a, tg_tensor *b)
{
    return binary(tp, &mul_def, a, b);
}

static tg_tensor *t_sum(tg_tape *tp, tg_tensor *x)
{
    return tg_custom(tp, &sum_def, &x, 1, 0, NULL, NULL);
}

/* 'c' must outlive the recording; the tests pass static constants. */
static tg_tensor *t_scale(tg_tape *tp, tg_tensor *x, const double *c)
{
    return tg_custom(tp, &scale_def, &x, 1, tg_tensor_rank(x), tg_tensor_shape(x), (void *)c);
}

static const double THREE = 3, TENTH = 0.1, ONE = 1;

static tg_tensor *leaf(tg_dtype dt, const char *shape, const double *v, bool grad)
{
    tg_tensor *t = tu_from(dt, shape, v);
    ck_assert_ptr_nonnull(t);
    tg_tensor_set_requires_grad(t, grad);
    return t;
}

static void assert_values(const tg_tensor *t, const double *want, int64_t n)
{
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(tg_tensor_numel(t), n);
    for (int64_t k = 0; k < n; k++)
        ck_assert_msg(tu_at(t, k) == want[k], "element %lld: got %.17g, want %.17g", (long long)k,
                      tu_at(t, k), want[k]);
}

/* ====== Fan-out ====== */

START_TEST(fanout_leaf_used_twice_in_one_op)
{
    /* L = sum(x * x): both slots of one node point at x, so dL/dx = x + x. */
    tg_dtype dt = tu_loop_dtype(_i);
    tg_tape *tp = tg_tape_new();
    tg_tensor *x = leaf(dt, "3", (const double[]){1, -2, 3}, true);
    tg_tensor *loss = t_sum(tp, t_mul(tp, x, x));
    ck_assert_int_eq(tg_backward(tp, loss), TG_OK);
    ck_assert_double_eq(tg_tensor_item(loss), 14);
    assert_values(tg_tensor_grad(x), (const double[]){2, -4, 6}, 3);
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

/* h = 3x;  L = sum(h * x) + sum(h):  dL/dh = x + 1,  dL/dx = 3 (x + 1) + h = 6x + 3. */
static tg_tensor *fanout_graph(tg_tape *tp, tg_tensor *x, tg_tensor **h)
{
    *h = t_scale(tp, x, &THREE);
    return t_add(tp, t_sum(tp, t_mul(tp, *h, x)), t_sum(tp, *h));
}

START_TEST(fanout_intermediate_used_by_two_ops)
{
    tg_tape *tp = tg_tape_new();
    tg_tensor *x = leaf(TG_F64, "4", (const double[]){1, 2, -3, 0.5}, true);
    tg_tensor *h;
    tg_tensor *loss = fanout_graph(tp, x, &h);
    ck_assert_int_eq(tg_backward(tp, loss), TG_OK);
    ck_assert_double_eq(tg_tensor_item(loss), 3 * (1 + 4 + 9 + 0.25) + 3 * (1 + 2 - 3 + 0.5));
    assert_values(tg_tensor_grad(h), (const double[]){2, 3, -2, 1.5}, 4);
    assert_values(tg_tensor_grad(x), (const double[]){9, 15, -15, 6}, 4);
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

START_TEST(backward_twice_accumulates_leaves_only)
{
    tg_tape *tp = tg_tape_new();
    tg_tensor *x = leaf(TG_F64, "4", (const double[]){1, 2, -3, 0.5}, true);
    tg_tensor *h;
    tg_tensor *loss = fanout_graph(tp, x, &h);
    ck_assert_int_eq(tg_backward(tp, loss), TG_OK);
    tg_tensor *gx = tg_tensor_grad(x), *gh = tg_tensor_grad(h), *gl = tg_tensor_grad(loss);
    ck_assert_int_eq(tg_backward(tp, loss), TG_OK);
    ck_assert_ptr_eq(tg_tensor_grad(x), gx); /* the same buffers, reused */
    ck_assert_ptr_eq(tg_tensor_grad(h), gh);
    assert_values(gx, (const double[]){18, 30, -30, 12}, 4);
    assert_values(gh, (const double[]){2, 3, -2, 1.5}, 4);
    assert_values(gl, (const double[]){1}, 1);

    /* After zeroing the leaf, a third sweep gives the single gradient again. */
    tg_tensor_zero_grad(x);
    ck_assert_int_eq(tg_backward(tp, loss), TG_OK);
    assert_values(gx, (const double[]){9, 15, -15, 6}, 4);
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

/* ====== Which tensors get a gradient ====== */

START_TEST(grad_is_null_where_backward_does_not_reach)
{
    tg_tape *tp = tg_tape_new();
    tg_tensor *x = leaf(TG_F64, "2", (const double[]){1, 2}, true);
    tg_tensor *w = leaf(TG_F64, "2", (const double[]){3, 4}, true);  /* only in a side branch */
    tg_tensor *c = leaf(TG_F64, "2", (const double[]){5, 6}, false); /* a constant */
    tg_tensor *side = t_mul(tp, x, w);                               /* not on the loss path */
    tg_tensor *loss = t_sum(tp, t_mul(tp, x, c));
    ck_assert_ptr_null(tg_tensor_grad(x)); /* nothing before a backward */
    ck_assert_ptr_null(tg_tensor_grad(loss));
    ck_assert_int_eq(tg_backward(tp, loss), TG_OK);

    assert_values(tg_tensor_grad(x), (const double[]){5, 6}, 2);
    ck_assert_ptr_null(tg_tensor_grad(w));
    ck_assert_ptr_null(tg_tensor_grad(c));
    ck_assert_ptr_null(tg_tensor_grad(side));
    ck_assert(tg_tensor_requires_grad(side));
    ck_assert(!tg_tensor_requires_grad(c));
    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_tensor_free(w);
    tg_tensor_free(c);
}
END_TEST

START_TEST(null_vjp_makes_a_constant)
{
    /* L = sum(stop(x) * x): the stopped branch passes no gradient, so dL/dx = stop(x) = x. */
    tg_tape *tp = tg_tape_new();
    tg_tensor *x = leaf(TG_F64, "3", (const double[]){1, 2, 3}, true);
    tg_tensor *s = tg_custom(tp, &stop_def, &x, 1, 1, tg_tensor_shape(x), (void *)&ONE);
    ck_assert_ptr_nonnull(s);
    ck_assert(!tg_tensor_requires_grad(s));
    tg_tensor *loss = t_sum(tp, t_mul(tp, s, x));
    ck_assert_int_eq(tg_backward(tp, loss), TG_OK);
    assert_values(tg_tensor_grad(x), (const double[]){1, 2, 3}, 3);
    ck_assert_ptr_null(tg_tensor_grad(s));

    /* A loss that only goes through the constant depends on nothing. */
    tg_tensor *dead = t_sum(tp, s);
    ck_assert(!tg_tensor_requires_grad(dead));
    ck_assert_int_eq(tg_backward(tp, dead), TG_ERR_STATE);
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

START_TEST(backward_seed_on_a_vector)
{
    tg_tape *tp = tg_tape_new();
    tg_tensor *x = leaf(TG_F64, "3", (const double[]){1, 2, 3}, true);
    tg_tensor *w = leaf(TG_F64, "3", (const double[]){-1, 0.5, 4}, true);
    tg_tensor *seed = leaf(TG_F64, "3", (const double[]){1, 10, 100}, false);
    tg_tensor *y = t_mul(tp, x, w);
    ck_assert_int_eq(tg_backward_seed(tp, y, seed), TG_OK);
    assert_values(tg_tensor_grad(y), (const double[]){1, 10, 100}, 3);
    assert_values(tg_tensor_grad(x), (const double[]){-1, 5, 400}, 3);
    assert_values(tg_tensor_grad(w), (const double[]){1, 20, 300}, 3);
    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_tensor_free(w);
    tg_tensor_free(seed);
}
END_TEST

static const struct {
    const char *what, *seed_shape;
    tg_dtype seed_dtype;
    tg_status want;
} bad_seeds[] = {
    {"other shape", "1x3", TG_F64, TG_ERR_SHAPE},
    {"other length", "4", TG_F64, TG_ERR_SHAPE},
    {"other dtype", "3", TG_F32, TG_ERR_DTYPE},
    {"NULL seed", NULL, TG_F64, TG_ERR_ARG},
};

START_TEST(backward_seed_rejects_a_bad_seed)
{
    tg_tape *tp = tg_tape_new();
    tg_tensor *x = leaf(TG_F64, "3", (const double[]){1, 2, 3}, true);
    tg_tensor *seed = bad_seeds[_i].seed_shape
                          ? tu_random(bad_seeds[_i].seed_dtype, bad_seeds[_i].seed_shape, 0, 1, 1)
                          : NULL;
    tg_tensor *y = t_mul(tp, x, x);
    ck_assert_int_eq(tg_backward_seed(tp, y, seed), bad_seeds[_i].want);
    /* The call is refused with a message; the recording stays usable. */
    ck_assert_int_eq(tg_tape_status(tp), TG_OK);
    ck_assert_msg(strstr(tg_tape_error(tp), "backward"), "%s: '%s'", bad_seeds[_i].what,
                  tg_tape_error(tp));
    ck_assert_ptr_null(tg_tensor_grad(x));
    ck_assert_int_eq(tg_backward(tp, t_sum(tp, y)), TG_OK);
    ck_assert_str_eq(tg_tape_error(tp), "");
    assert_values(tg_tensor_grad(x), (const double[]){2, 4, 6}, 3);
    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_tensor_free(seed);
}
END_TEST

/* ====== Replay ====== */

/* A graph with inexact arithmetic, so "bit for bit" means something:
 * L = sum((0.1 x * w + x) * x). */
static tg_tensor *replay_graph(tg_tape *tp, tg_tensor *x, tg_tensor *w, tg_tensor **mid)
{
    *mid = t_add(tp, t_mul(tp, t_scale(tp, x, &TENTH), w), x);
    return t_sum(tp, t_mul(tp, *mid, x));
}

static void assert_same_bits(const tg_tensor *a, const tg_tensor *b)
{
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(tg_tensor_numel(a), tg_tensor_numel(b));
    ck_assert_mem_eq(tg_tensor_data((tg_tensor *)a), tg_tensor_data((tg_tensor *)b),
                     (size_t)tg_tensor_numel(a) * sizeof(double));
}

START_TEST(replay_equals_a_fresh_recording)
{
    tg_tensor *x = tu_random(TG_F64, "2x5", -1, 1, 11);
    tg_tensor *w = tu_random(TG_F64, "2x5", -1, 1, 12);
    tg_tensor *x2 = tu_random(TG_F64, "2x5", -3, 3, 13);
    tg_tensor_set_requires_grad(x, true);
    tg_tensor_set_requires_grad(w, true);

    tg_tape *tp = tg_tape_new();
    tg_tensor *mid;
    tg_tensor *loss = replay_graph(tp, x, w, &mid);
    ck_assert_int_eq(tg_backward(tp, loss), TG_OK);
    size_t n_nodes = tg_tape_size(tp);
    tg__chunk *head = tp->arena.head;

    /* A new mini-batch in x, then replay and a second backward. */
    memcpy(tg_tensor_data(x), tg_tensor_data(x2), 10 * sizeof(double));
    tg_tensor_zero_grad(x);
    tg_tensor_zero_grad(w);
    ck_assert_int_eq(tg_tape_replay(tp), TG_OK);
    ck_assert_int_eq(tg_backward(tp, loss), TG_OK);
    ck_assert_uint_eq(tg_tape_size(tp), n_nodes);
    ck_assert_ptr_eq(tp->arena.head, head); /* replay and backward allocated nothing new */

    /* The same graph recorded from scratch on the new data. */
    tg_tensor *xf = tu_from(TG_F64, "2x5", tg_tensor_data(x2));
    tg_tensor *wf = tu_from(TG_F64, "2x5", tg_tensor_data(w));
    tg_tensor_set_requires_grad(xf, true);
    tg_tensor_set_requires_grad(wf, true);
    tg_tape *fresh = tg_tape_new();
    tg_tensor *mid_f;
    tg_tensor *loss_f = replay_graph(fresh, xf, wf, &mid_f);
    ck_assert_int_eq(tg_backward(fresh, loss_f), TG_OK);

    assert_same_bits(loss, loss_f);
    assert_same_bits(mid, mid_f);
    assert_same_bits(tg_tensor_grad(mid), tg_tensor_grad(mid_f));
    assert_same_bits(tg_tensor_grad(x), tg_tensor_grad(xf));
    assert_same_bits(tg_tensor_grad(w), tg_tensor_grad(wf));
    tg_tape_free(tp);
    tg_tape_free(fresh);
    tg_tensor_free(x);
    tg_tensor_free(w);
    tg_tensor_free(x2);
    tg_tensor_free(xf);
    tg_tensor_free(wf);
}
END_TEST

/* ====== Reset ====== */

enum { CHAIN = 40 };

/* Enough 8 KB intermediates to spread over several arena chunks. */
static tg_tensor *long_chain(tg_tape *tp, tg_tensor *x, tg_tensor **outs)
{
    tg_tensor *h = x;
    for (int i = 0; i < CHAIN; i++)
        outs[i] = h = t_add(tp, h, x);
    return t_sum(tp, h);
}

START_TEST(reset_reuses_the_arena)
{
    tg_tensor *x = tu_random(TG_F64, "1024", -1, 1, 5);
    tg_tensor_set_requires_grad(x, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *first[CHAIN], *again[CHAIN];
    tg_tensor *loss = long_chain(tp, x, first);
    ck_assert_int_eq(tg_backward(tp, loss), TG_OK);
    size_t n_nodes = tg_tape_size(tp);
    ck_assert_uint_eq(n_nodes, CHAIN + 1);
    tg__chunk *head = tp->arena.head, *chunk0 = tp->arena.first;
    size_t cap_nodes = tp->cap_nodes;
    double want = tg_tensor_item(loss);

    for (int round = 0; round < 3; round++) {
        tg_tape_reset(tp);
        ck_assert_uint_eq(tg_tape_size(tp), 0);
        tg_tensor_zero_grad(x);
        loss = long_chain(tp, x, again);
        ck_assert_int_eq(tg_backward(tp, loss), TG_OK);
        ck_assert_uint_eq(tg_tape_size(tp), n_nodes);
        /* The same addresses as the first recording: no chunk was added. */
        for (int i = 0; i < CHAIN; i++)
            ck_assert_ptr_eq(again[i], first[i]);
        ck_assert_ptr_eq(tp->arena.first, chunk0);
        ck_assert_ptr_eq(tp->arena.head, head);
        ck_assert_uint_eq(tp->cap_nodes, cap_nodes);
        ck_assert_double_eq(tg_tensor_item(loss), want);
        ck_assert_double_eq(tu_at(tg_tensor_grad(x), 7), CHAIN + 1);
    }
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

START_TEST(reset_clears_the_error)
{
    tg_tape *tp = tg_tape_new();
    tg_tensor *x = leaf(TG_F64, "2", (const double[]){1, 2}, true);
    ck_assert_ptr_null(binary(tp, &broken_fwd_def, x, x));
    ck_assert_int_ne(tg_tape_status(tp), TG_OK);
    tg_tape_reset(tp);
    ck_assert_int_eq(tg_tape_status(tp), TG_OK);
    ck_assert_str_eq(tg_tape_error(tp), "");
    ck_assert_uint_eq(tg_tape_size(tp), 0);
    tg_tensor *loss = t_sum(tp, t_mul(tp, x, x));
    ck_assert_int_eq(tg_backward(tp, loss), TG_OK);
    assert_values(tg_tensor_grad(x), (const double[]){2, 4}, 2);
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

/* ====== Errors ====== */

START_TEST(failing_forward_names_the_op)
{
    tg_tape *tp = tg_tape_new();
    tg_tensor *x = leaf(TG_F64, "2", (const double[]){1, 2}, true);
    ck_assert_ptr_nonnull(t_mul(tp, x, x));
    ck_assert_ptr_null(binary(tp, &broken_fwd_def, x, x));
    ck_assert_int_eq(tg_tape_status(tp), TG_ERR_SHAPE); /* the forward's own status */
    ck_assert_ptr_nonnull(strstr(tg_tape_error(tp), "t_broken_fwd"));
    ck_assert_uint_eq(tg_tape_size(tp), 1); /* the failed node is not recorded */
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

START_TEST(failing_vjp_names_the_op)
{
    tg_tape *tp = tg_tape_new();
    tg_tensor *x = leaf(TG_F64, "2", (const double[]){1, 2}, true);
    tg_tensor *loss = t_sum(tp, binary(tp, &broken_vjp_def, x, x));
    ck_assert_int_eq(tg_backward(tp, loss), TG_ERR_NOMEM);
    ck_assert_int_eq(tg_tape_status(tp), TG_ERR_NOMEM);
    ck_assert_ptr_nonnull(strstr(tg_tape_error(tp), "t_broken_vjp"));
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

START_TEST(errors_are_sticky)
{
    tg_tape *tp = tg_tape_new();
    tg_tensor *x = leaf(TG_F64, "2", (const double[]){1, 2}, true);
    tg_tensor *ok = t_mul(tp, x, x);
    ck_assert_ptr_null(binary(tp, &broken_fwd_def, x, x));
    char first[sizeof tp->msg];
    snprintf(first, sizeof first, "%s", tg_tape_error(tp));
    ck_assert_str_ne(first, "");

    /* Later ops, good or bad, return NULL and record nothing new. */
    ck_assert_ptr_null(t_mul(tp, x, x));
    ck_assert_ptr_null(t_add(tp, x, NULL));
    ck_assert_ptr_null(t_sum(tp, NULL));
    ck_assert_ptr_null(tg_custom(tp, NULL, &x, 1, 0, NULL, NULL));
    ck_assert_uint_eq(tg_tape_size(tp), 1);
    ck_assert_int_eq(tg_tape_status(tp), TG_ERR_SHAPE);
    ck_assert_str_eq(tg_tape_error(tp), first);

    /* Backward, seeded backward and replay all return the stored status. */
    ck_assert_int_eq(tg_backward(tp, t_sum(tp, ok)), TG_ERR_SHAPE);
    ck_assert_int_eq(tg_backward(tp, NULL), TG_ERR_SHAPE);
    ck_assert_int_eq(tg_backward_seed(tp, ok, x), TG_ERR_SHAPE);
    ck_assert_int_eq(tg_tape_replay(tp), TG_ERR_SHAPE);
    ck_assert_str_eq(tg_tape_error(tp), first);
    ck_assert_ptr_null(tg_tensor_grad(x));
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

START_TEST(null_input_on_a_healthy_tape)
{
    tg_tape *tp = tg_tape_new();
    tg_tensor *x = leaf(TG_F64, "2", (const double[]){1, 2}, true);
    ck_assert_ptr_null(t_mul(tp, x, NULL));
    ck_assert_int_eq(tg_tape_status(tp), TG_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(tg_tape_error(tp), "t_mul"));
    ck_assert_ptr_nonnull(strstr(tg_tape_error(tp), "input 1"));
    ck_assert_uint_eq(tg_tape_size(tp), 0);
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

static const tg_op_def no_forward_def = {.name = "t_hollow", .forward = NULL, .vjp = add_vjp};

/* Records one tg_custom call on a fresh tape (errors are sticky) and checks its
 * status and that the message holds the op's name and any further needles. */
static void assert_custom_fails(const tg_op_def *def, tg_tensor *const *in, int n_in, int rank,
                                const int64_t *shape, tg_status want, const char *const *needles)
{
    tg_tape *tp = tg_tape_new();
    ck_assert_ptr_null(tg_custom(tp, def, in, n_in, rank, shape, NULL));
    ck_assert_int_eq(tg_tape_status(tp), want);
    ck_assert_uint_eq(tg_tape_size(tp), 0);
    for (int k = 0; needles[k]; k++)
        ck_assert_msg(strstr(tg_tape_error(tp), needles[k]), "'%s' lacks '%s'", tg_tape_error(tp),
                      needles[k]);
    tg_tape_free(tp);
}

START_TEST(custom_rejects_bad_arguments)
{
    tg_tensor *x = leaf(TG_F64, "2x3", (const double[]){1, 2, 3, 4, 5, 6}, true);
    tg_tensor *y = leaf(TG_F32, "3", (const double[]){1, 2, 3}, false);
    tg_tensor *both[2] = {x, y};
    const int64_t bad_shape[2] = {2, -3}, huge[3] = {INT64_C(1) << 31, INT64_C(1) << 31, 4};

    const char *const named_custom[] = {"custom", NULL};
    const char *const named_hollow[] = {"t_hollow", NULL};
    const char *const named_add[] = {"t_add", NULL};
    const char *const dtypes_and_shapes[] = {"t_add", "[2x3]", "[3]", NULL};
    const char *const negative[] = {"t_add: output shape [2x-3] has a negative dimension; inputs "
                                    "[2x3]",
                                    NULL};
    const char *const too_big[] = {"t_add: output shape [2147483648x2147483648x4] has more "
                                   "elements than memory can hold; inputs [2x3]",
                                   NULL};
    const char *const bad_rank[] = {"t_add: output rank 5 is not 0 to 4 with a shape", NULL};

    assert_custom_fails(NULL, &x, 1, 0, NULL, TG_ERR_ARG, named_custom);
    assert_custom_fails(&no_forward_def, &x, 1, 0, NULL, TG_ERR_ARG, named_hollow);
    assert_custom_fails(&add_def, &x, 0, 0, NULL, TG_ERR_ARG, named_add);
    assert_custom_fails(&add_def, NULL, 2, 0, NULL, TG_ERR_ARG, named_add);
    assert_custom_fails(&add_def, &x, 1, 2, bad_shape, TG_ERR_SHAPE, negative);
    assert_custom_fails(&add_def, &x, 1, TG_MAX_RANK + 1, bad_shape, TG_ERR_ARG, bad_rank);
    assert_custom_fails(&add_def, &x, 1, 2, NULL, TG_ERR_ARG, named_add);
    assert_custom_fails(&add_def, &x, 1, 3, huge, TG_ERR_SHAPE, too_big);
    assert_custom_fails(&add_def, both, 2, 1, (const int64_t[]){3}, TG_ERR_DTYPE,
                        dtypes_and_shapes);
    tg_tensor_free(x);
    tg_tensor_free(y);
}
END_TEST

START_TEST(null_tape_is_safe)
{
    tg_tensor *x = leaf(TG_F64, "2", (const double[]){1, 2}, true);
    tg_tape_free(NULL);
    tg_tape_reset(NULL);
    ck_assert_int_eq(tg_tape_status(NULL), TG_ERR_ARG);
    ck_assert_ptr_nonnull(tg_tape_error(NULL));
    ck_assert_uint_eq(tg_tape_size(NULL), 0);
    ck_assert_int_eq(tg_tape_replay(NULL), TG_ERR_ARG);
    ck_assert_int_eq(tg_backward(NULL, x), TG_ERR_ARG);
    ck_assert_int_eq(tg_backward_seed(NULL, x, x), TG_ERR_ARG);
    ck_assert_ptr_null(t_mul(NULL, x, x));

    tg_tape *tp = tg_tape_new(); /* a new tape is healthy and empty */
    ck_assert_int_eq(tg_tape_status(tp), TG_OK);
    ck_assert_str_eq(tg_tape_error(tp), "");
    ck_assert_uint_eq(tg_tape_size(tp), 0);
    ck_assert_int_eq(tg_tape_replay(tp), TG_OK);
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

START_TEST(backward_needs_a_loss_that_requires_grad)
{
    tg_tape *tp = tg_tape_new();
    tg_tensor *c = leaf(TG_F64, "2", (const double[]){1, 2}, false);
    tg_tensor *loss = t_sum(tp, t_mul(tp, c, c));
    ck_assert_ptr_nonnull(loss);
    ck_assert_int_eq(tg_backward(tp, loss), TG_ERR_STATE);
    ck_assert_int_eq(tg_tape_status(tp), TG_OK); /* a refused call, not a failed tape */
    ck_assert_str_eq(tg_tape_error(tp),
                     "backward: the output [] does not depend on any tensor that requires grad");
    ck_assert_ptr_null(tg_tensor_grad(c));
    tg_tape_free(tp);
    tg_tensor_free(c);
}
END_TEST

START_TEST(backward_needs_a_scalar_loss)
{
    tg_tape *tp = tg_tape_new();
    tg_tensor *x = leaf(TG_F64, "2x3", (const double[]){1, 2, 3, 4, 5, 6}, true);
    tg_tensor *y = t_mul(tp, x, x);
    ck_assert_int_eq(tg_backward(tp, y), TG_ERR_SHAPE);
    ck_assert_str_eq(tg_tape_error(tp), "backward: loss must have one element, got [2x3]");
    ck_assert_ptr_null(tg_tensor_grad(x));
    tg_tape_free(tp);

    /* A NULL loss on a healthy tape is an argument error, refused like any bad call. */
    tp = tg_tape_new();
    ck_assert_int_eq(tg_backward(tp, NULL), TG_ERR_ARG);
    ck_assert_int_eq(tg_tape_status(tp), TG_OK);
    ck_assert_str_eq(tg_tape_error(tp), "backward: loss is NULL");
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

START_TEST(backward_from_a_leaf_or_a_one_element_tensor)
{
    /* Seeding a leaf reaches only that leaf; a [1x1] output counts as a loss. */
    tg_tape *tp = tg_tape_new();
    tg_tensor *x = leaf(TG_F64, "1x1", (const double[]){3}, true);
    ck_assert_int_eq(tg_backward(tp, x), TG_OK);
    assert_values(tg_tensor_grad(x), (const double[]){1}, 1);
    tg_tensor *y = t_mul(tp, x, x);
    ck_assert_int_eq(tg_backward(tp, y), TG_OK);
    assert_values(tg_tensor_grad(x), (const double[]){7}, 1);
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("tape");
    TCase *tg = tcase_create("gradients");
    tcase_add_loop_test(tg, fanout_leaf_used_twice_in_one_op, 0, 2);
    tcase_add_test(tg, fanout_intermediate_used_by_two_ops);
    tcase_add_test(tg, backward_twice_accumulates_leaves_only);
    tcase_add_test(tg, grad_is_null_where_backward_does_not_reach);
    tcase_add_test(tg, null_vjp_makes_a_constant);
    tcase_add_test(tg, backward_seed_on_a_vector);
    tcase_add_loop_test(tg, backward_seed_rejects_a_bad_seed, 0,
                        sizeof bad_seeds / sizeof *bad_seeds);
    tcase_add_test(tg, backward_from_a_leaf_or_a_one_element_tensor);
    suite_add_tcase(s, tg);

    TCase *tr = tcase_create("replay_reset");
    tcase_add_test(tr, replay_equals_a_fresh_recording);
    tcase_add_test(tr, reset_reuses_the_arena);
    tcase_add_test(tr, reset_clears_the_error);
    suite_add_tcase(s, tr);

    TCase *te = tcase_create("errors");
    tcase_add_test(te, failing_forward_names_the_op);
    tcase_add_test(te, failing_vjp_names_the_op);
    tcase_add_test(te, errors_are_sticky);
    tcase_add_test(te, null_input_on_a_healthy_tape);
    tcase_add_test(te, custom_rejects_bad_arguments);
    tcase_add_test(te, null_tape_is_safe);
    tcase_add_test(te, backward_needs_a_loss_that_requires_grad);
    tcase_add_test(te, backward_needs_a_scalar_loss);
    suite_add_tcase(s, te);
    return tu_run(s);
}
