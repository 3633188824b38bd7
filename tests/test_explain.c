/*
 * tg_tape_explain and tg_tape_to_dot: every built-in op's rule line, names,
 * fan-out, values, the generic line of ops without rules, template edge
 * cases, the DOT graph and the error paths. Output is captured with
 * open_memstream and compared whole.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ====== Capturing what a call writes ====== */

typedef struct capture {
    FILE *f;
    char *text;
    size_t len;
} capture;

static void capture_open(capture *c)
{
    c->text = NULL;
    c->f = open_memstream(&c->text, &c->len);
    ck_assert_ptr_nonnull(c->f);
}

/* Closes the stream; the text stays until capture_free. */
static const char *capture_close(capture *c)
{
    ck_assert_int_eq(fclose(c->f), 0);
    return c->text;
}

static void capture_free(capture *c) { free(c->text); }

static const char *explain(capture *c, const tg_tape *tp, unsigned flags)
{
    capture_open(c);
    tg_status s = tg_tape_explain(tp, c->f, flags);
    const char *text = capture_close(c);
    ck_assert_msg(s == TG_OK, "explain: %s", tg_status_str(s));
    return text;
}

static void assert_text(const char *got, const char *want)
{
    ck_assert_msg(!strcmp(got, want), "got:\n%s\nwant:\n%s", got, want);
}

/* ====== One rule line per built-in op ====== */

typedef tg_tensor *(*recorder)(tg_tape *tp, tg_tensor *const *in);

#define IN tg_tape *tp, tg_tensor *const *in /* every recorder's parameters */
static tg_tensor *rec_matmul(IN) { return tg_matmul(tp, in[0], in[1]); }
static tg_tensor *rec_transpose(IN) { return tg_transpose(tp, in[0]); }
static tg_tensor *rec_add(IN) { return tg_add(tp, in[0], in[1]); }
static tg_tensor *rec_sub(IN) { return tg_sub(tp, in[0], in[1]); }
static tg_tensor *rec_mul(IN) { return tg_mul(tp, in[0], in[1]); }
static tg_tensor *rec_div(IN) { return tg_div(tp, in[0], in[1]); }
static tg_tensor *rec_bias(IN) { return tg_add_bias(tp, in[0], in[1]); }
static tg_tensor *rec_scale(IN) { return tg_scale(tp, in[0], 0.5); }
static tg_tensor *rec_neg(IN) { return tg_neg(tp, in[0]); }
static tg_tensor *rec_sigmoid(IN) { return tg_sigmoid(tp, in[0]); }
static tg_tensor *rec_tanh(IN) { return tg_tanh(tp, in[0]); }
static tg_tensor *rec_relu(IN) { return tg_relu(tp, in[0]); }
static tg_tensor *rec_exp(IN) { return tg_exp(tp, in[0]); }
static tg_tensor *rec_log(IN) { return tg_log(tp, in[0]); }
static tg_tensor *rec_square(IN) { return tg_square(tp, in[0]); }
static tg_tensor *rec_sum(IN) { return tg_sum(tp, in[0]); }
static tg_tensor *rec_mean(IN) { return tg_mean(tp, in[0]); }
static tg_tensor *rec_sum0(IN) { return tg_sum_axis(tp, in[0], 0, false); }
static tg_tensor *rec_softmax(IN) { return tg_softmax(tp, in[0]); }
static tg_tensor *rec_lsm(IN) { return tg_log_softmax(tp, in[0]); }
static tg_tensor *rec_frob(IN) { return tg_frobenius_loss(tp, in[0], in[1]); }
static tg_tensor *rec_mse(IN) { return tg_mse_loss(tp, in[0], in[1]); }
static tg_tensor *rec_ce(IN) { return tg_softmax_cross_entropy(tp, in[0], in[1]); }
#undef IN

typedef struct rule_case {
    const char *op;
    recorder rec;
    const char *shapes[2]; /* the inputs, all requiring grad; NULL where there is none */
    const char *want;      /* the whole explanation, the seed line included */
} rule_case;

static const rule_case rule_cases[] = {
    {"matmul", rec_matmul, {"2x3", "3x4"},
     "dt0 [2x4] = 1\n"
     "dx0 [2x3] = dt0 [2x4] · x1ᵀ [4x3]\n"
     "dx1 [3x4] = x0ᵀ [3x2] · dt0 [2x4]\n"},
    {"transpose", rec_transpose, {"2x3", NULL}, "dt0 [3x2] = 1\ndx0 [2x3] = dt0ᵀ [2x3]\n"},
    {"add", rec_add, {"2x3", "3"}, "dt0 [2x3] = 1\ndx0 [2x3] = dt0\ndx1 [3] = Σ_bcast dt0\n"},
    {"sub", rec_sub, {"2x3", "3"}, "dt0 [2x3] = 1\ndx0 [2x3] = dt0\ndx1 [3] = −Σ_bcast dt0\n"},
    {"mul", rec_mul, {"2x3", "2x3"}, "dt0 [2x3] = 1\ndx0 [2x3] = dt0 ⊙ x1\ndx1 [2x3] = dt0 ⊙ x0\n"},
    {"div", rec_div, {"2x3", "2x1"},
     "dt0 [2x3] = 1\ndx0 [2x3] = dt0 ⊘ x1\ndx1 [2x1] = −Σ_bcast dt0 ⊙ x0 ⊘ x1²\n"},
    {"add_bias", rec_bias, {"2x3", "3"},
     "dt0 [2x3] = 1\ndx0 [2x3] = dt0\ndx1 [3] = Σ_rows dt0 [2x3]\n"},
    {"scale", rec_scale, {"3", NULL}, "dt0 [3] = 1\ndx0 [3] = 0.5 · dt0\n"},
    {"neg", rec_neg, {"3", NULL}, "dt0 [3] = 1\ndx0 [3] = −dt0\n"},
    {"sigmoid", rec_sigmoid, {"3", NULL}, "dt0 [3] = 1\ndx0 [3] = dt0 ⊙ σ'(x0)\n"},
    {"tanh", rec_tanh, {"3", NULL}, "dt0 [3] = 1\ndx0 [3] = dt0 ⊙ (1 − t0²)\n"},
    {"relu", rec_relu, {"3", NULL}, "dt0 [3] = 1\ndx0 [3] = dt0 ⊙ relu'(x0)\n"},
    {"exp", rec_exp, {"3", NULL}, "dt0 [3] = 1\ndx0 [3] = dt0 ⊙ t0\n"},
    {"log", rec_log, {"3", NULL}, "dt0 [3] = 1\ndx0 [3] = dt0 ⊘ x0\n"},
    {"square", rec_square, {"3", NULL}, "dt0 [3] = 1\ndx0 [3] = 2 x0 ⊙ dt0\n"},
    {"sum", rec_sum, {"2x3", NULL}, "dt0 [] = 1\ndx0 [2x3] = dt0 broadcast to [2x3]\n"},
    {"mean", rec_mean, {"2x3", NULL}, "dt0 [] = 1\ndx0 [2x3] = dt0 / 6 broadcast to [2x3]\n"},
    {"sum_axis", rec_sum0, {"2x3", NULL}, "dt0 [3] = 1\ndx0 [2x3] = dt0 [3] broadcast to [2x3]\n"},
    {"softmax", rec_softmax, {"2x3", NULL},
     "dt0 [2x3] = 1\ndx0 [2x3] = t0 ⊙ (dt0 − rowsum(dt0 ⊙ t0))\n"},
    {"log_softmax", rec_lsm, {"2x3", NULL},
     "dt0 [2x3] = 1\ndx0 [2x3] = dt0 − exp(t0) ⊙ rowsum(dt0)\n"},
    {"frobenius_loss", rec_frob, {"2x3", "2x3"},
     "dt0 [] = 1\ndx0 [2x3] = 2 (x0 − x1) · dt0\ndx1 [2x3] = −2 (x0 − x1) · dt0\n"},
    {"mse_loss", rec_mse, {"2x3", "2x3"},
     "dt0 [] = 1\ndx0 [2x3] = 2 (x0 − x1) · dt0 / 6\ndx1 [2x3] = −2 (x0 − x1) · dt0 / 6\n"},
    {"softmax_cross_entropy", rec_ce, {"2x3", "2x3"},
     "dt0 [] = 1\n"
     "dx0 [2x3] = (softmax(x0) ⊙ rowsum(x1) − x1) · dt0 / 2\n"
     "dx1 [2x3] = −log_softmax(x0) · dt0 / 2\n"},
};

START_TEST(rule_line_of_each_op)
{
    const rule_case *rc = &rule_cases[_i];
    tg_tensor *in[2] = {NULL, NULL};
    for (int i = 0; i < 2 && rc->shapes[i]; i++) {
        in[i] = tu_random(TG_F64, rc->shapes[i], 0.5, 1.5, 7 + (uint64_t)i);
        ck_assert_ptr_nonnull(in[i]);
        tg_tensor_set_requires_grad(in[i], true);
    }
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = rc->rec(tp, in);
    ck_assert_msg(y != NULL, "%s: %s", rc->op, tg_tape_error(tp));
    tg_tensor *ones = tg_tensor_new(TG_F64, tg_tensor_rank(y), tg_tensor_shape(y));
    for (int64_t k = 0; k < tg_tensor_numel(ones); k++) ((double *)tg_tensor_data(ones))[k] = 1;
    ck_assert_int_eq(tg_backward_seed(tp, y, ones), TG_OK);

    capture c;
    assert_text(explain(&c, tp, 0), rc->want);
    capture_free(&c);
    tg_tensor_free(ones);
    tg_tape_free(tp);
    tg_tensor_free(in[0]);
    tg_tensor_free(in[1]);
}
END_TEST

/* ====== The 2-3-2 network: names, forward listing, values ====== */

typedef struct seed_net {
    tg_tensor *x, *y, *w2, *b2, *w3, *b3;
    tg_tensor *z2, *a2, *z3, *cost;
    tg_tape *tp;
} seed_net;

static tg_tensor *leaf(const char *name, const char *shape, const double *v, bool param)
{
    tg_tensor *t = tu_from(TG_F64, shape, v);
    ck_assert_ptr_nonnull(t);
    tg_tensor_set_name(t, name);
    tg_tensor_set_requires_grad(t, param);
    return t;
}

static void seed_net_make(seed_net *n)
{
    n->x = leaf("X", "1x2", (const double[]){0.5, -1.2}, false);
    n->y = leaf("Y", "1x2", (const double[]){0.3, -0.7}, false);
    n->w2 = leaf("W2", "2x3", (const double[]){0.1, -0.4, 0.7, 0.3, 0.2, -0.6}, true);
    n->b2 = leaf("b2", "3", (const double[]){0.05, -0.1, 0.2}, true);
    n->w3 = leaf("W3", "3x2", (const double[]){0.6, -0.3, -0.8, 0.5, 0.4, 0.9}, true);
    n->b3 = leaf("b3", "2", (const double[]){-0.2, 0.1}, true);
    n->tp = tg_tape_new();
    n->z2 = tg_add_bias(n->tp, tg_matmul(n->tp, n->x, n->w2), n->b2);
    n->a2 = tg_sigmoid(n->tp, n->z2);
    n->z3 = tg_add_bias(n->tp, tg_matmul(n->tp, n->a2, n->w3), n->b3);
    n->cost = tg_scale(n->tp, tg_frobenius_loss(n->tp, n->z3, n->y), 0.5);
    ck_assert_msg(n->cost != NULL, "%s", tg_tape_error(n->tp));
    tg_tensor_set_name(n->z2, "Z2");
    tg_tensor_set_name(n->a2, "A2");
    tg_tensor_set_name(n->z3, "Z3");
    tg_tensor_set_name(n->cost, "C");
}

static void seed_net_free(seed_net *n)
{
    tg_tape_free(n->tp);
    tg_tensor *leaves[] = {n->x, n->y, n->w2, n->b2, n->w3, n->b3};
    for (size_t i = 0; i < sizeof leaves / sizeof *leaves; i++) tg_tensor_free(leaves[i]);
}

static const char seed_backward[] = "dC [] = 1\n"
                                    "dt5 [] = 0.5 · dC\n"
                                    "dZ3 [1x2] = 2 (Z3 − Y) · dt5\n"
                                    "dt3 [1x2] = dZ3\n"
                                    "db3 [2] = Σ_rows dZ3 [1x2]\n"
                                    "dA2 [1x3] = dt3 [1x2] · W3ᵀ [2x3]\n"
                                    "dW3 [3x2] = A2ᵀ [3x1] · dt3 [1x2]\n"
                                    "dZ2 [1x3] = dA2 ⊙ σ'(Z2)\n"
                                    "dt0 [1x3] = dZ2\n"
                                    "db2 [3] = Σ_rows dZ2 [1x3]\n"
                                    "dW2 [2x3] = Xᵀ [2x1] · dt0 [1x3]\n";

START_TEST(seed_network_derivation)
{
    seed_net n;
    seed_net_make(&n);
    ck_assert_int_eq(tg_backward(n.tp, n.cost), TG_OK);
    capture c;
    assert_text(explain(&c, n.tp, 0), seed_backward);
    capture_free(&c);
    seed_net_free(&n);
}
END_TEST

START_TEST(forward_listing_and_values)
{
    seed_net n;
    seed_net_make(&n);
    ck_assert_int_eq(tg_backward(n.tp, n.cost), TG_OK);
    capture c;
    const char *text = explain(&c, n.tp, TG_EXPLAIN_FORWARD | TG_EXPLAIN_VALUES);
    const char *head = "forward, in recording order:\n"
                       "t0 [1x3] = matmul(X [1x2], W2 [2x3])\n"
                       "      [ -0.31  -0.44   1.07 ]\n"
                       "Z2 [1x3] = add_bias(t0 [1x3], b2 [3])\n"
                       "      [ -0.26  -0.54   1.27 ]\n";
    ck_assert_msg(!strncmp(text, head, strlen(head)), "%s", text);
    ck_assert_ptr_nonnull(strstr(text, "backward, in the order the VJPs were applied:\n"
                                       "dC [] = 1\n"
                                       "dt5 [] = 0.5 · dC\n"
                                       "      [ 0.5 ]\n"));
    /* The seed's 1 is not repeated as a value line, and W2's gradient shows as two rows. */
    ck_assert_ptr_null(strstr(text, "dC [] = 1\n      ["));
    ck_assert_ptr_nonnull(strstr(text, "dW2 [2x3] = Xᵀ [2x1] · dt0 [1x3]\n"
                                       "      [ -0.0736811    0.111068    0.112307 ]\n"
                                       "      [   0.176835   -0.266562   -0.269537 ]\n"));
    capture_free(&c);
    seed_net_free(&n);
}
END_TEST

START_TEST(values_only_for_small_tensors)
{
    tg_tensor *x = tu_random(TG_F64, "17", -1, 1, 3), *v = tu_random(TG_F64, "16", -1, 1, 4);
    tg_tensor_set_requires_grad(x, true);
    tg_tensor_set_requires_grad(v, true);
    tg_tape *tp = tg_tape_new();
    /* Recorded first, whatever order C evaluates arguments in. */
    tg_tensor *sx = tg_sum(tp, tg_square(tp, x));
    tg_tensor *c = tg_add(tp, sx, tg_sum(tp, tg_square(tp, v)));
    ck_assert_int_eq(tg_backward(tp, c), TG_OK);
    capture cap;
    const char *text = explain(&cap, tp, TG_EXPLAIN_VALUES);
    /* dx0 and dt0 have 17 elements: no values; dx1 has 16: one row of 16. */
    ck_assert_ptr_nonnull(strstr(text, "dt0 [17] = dt1 broadcast to [17]\ndx0"));
    size_t len = strlen(text), tail = strlen("dx0 [17] = 2 x0 ⊙ dt0\n");
    ck_assert_msg(len > tail && !strcmp(text + len - tail, "dx0 [17] = 2 x0 ⊙ dt0\n"), "%s", text);
    const char *row = strstr(text, "dx1 [16] = 2 x1 ⊙ dt2\n      [ ");
    ck_assert_ptr_nonnull(row);
    ck_assert_ptr_nonnull(strstr(row, " ]\n"));
    capture_free(&cap);
    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_tensor_free(v);
}
END_TEST

/* ====== Fan-out, automatic names, seeds ====== */

START_TEST(fan_out_is_equals_then_plus_equals)
{
    /* C = sum(x (.) x + x): x gets three contributions, in sweep order. */
    tg_tensor *x = tu_from(TG_F64, "2", (const double[]){1.5, -2});
    tg_tensor_set_requires_grad(x, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *c = tg_sum(tp, tg_add(tp, tg_mul(tp, x, x), x));
    ck_assert_int_eq(tg_backward(tp, c), TG_OK);
    capture cap;
    assert_text(explain(&cap, tp, TG_EXPLAIN_VALUES), "dt2 [] = 1\n"
                                                      "dt1 [2] = dt2 broadcast to [2]\n"
                                                      "      [ 1  1 ]\n"
                                                      "dt0 [2] = dt1\n"
                                                      "      [ 1  1 ]\n"
                                                      "dx0 [2] = dt1\n"
                                                      "dx0 [2] += dt0 ⊙ x0\n"
                                                      "dx0 [2] += dt0 ⊙ x0\n"
                                                      "      [  4  -3 ]\n");
    capture_free(&cap);
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

START_TEST(leaves_numbered_by_first_use_and_constants_skipped)
{
    /* b is used first, a second, k never needs a gradient (no line for it). */
    tg_tensor *a = tu_random(TG_F64, "3", -1, 1, 1), *b = tu_random(TG_F64, "3", -1, 1, 2);
    tg_tensor *k = tu_random(TG_F64, "3", -1, 1, 3);
    tg_tensor_set_requires_grad(a, true);
    tg_tensor_set_requires_grad(b, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *c = tg_sum(tp, tg_mul(tp, tg_mul(tp, b, k), a));
    ck_assert_int_eq(tg_backward(tp, c), TG_OK);
    capture cap;
    assert_text(explain(&cap, tp, 0), "dt2 [] = 1\n"
                                      "dt1 [3] = dt2 broadcast to [3]\n"
                                      "dt0 [3] = dt1 ⊙ x2\n"
                                      "dx2 [3] = dt1 ⊙ t0\n"
                                      "dx0 [3] = dt0 ⊙ x1\n");
    capture_free(&cap);
    tg_tape_free(tp);
    tg_tensor_free(a);
    tg_tensor_free(b);
    tg_tensor_free(k);
}
END_TEST

START_TEST(given_seed_and_partial_sweep)
{
    /* Backward from an intermediate: the op recorded after it is not part of the sweep. */
    tg_tensor *x = tu_from(TG_F64, "2", (const double[]){1, 2});
    tg_tensor_set_requires_grad(x, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_neg(tp, x);
    ck_assert_ptr_nonnull(tg_exp(tp, y));
    tg_tensor *seed = tu_from(TG_F64, "2", (const double[]){3, 4});
    ck_assert_int_eq(tg_backward_seed(tp, y, seed), TG_OK);
    capture cap;
    assert_text(explain(&cap, tp, TG_EXPLAIN_VALUES), "dt0 [2] = seed\n"
                                                      "      [ 3  4 ]\n"
                                                      "dx0 [2] = −dt0\n"
                                                      "      [ -3  -4 ]\n");
    capture_free(&cap);
    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_tensor_free(seed);
}
END_TEST

START_TEST(no_backward_yet)
{
    tg_tensor *x = tu_random(TG_F64, "2", -1, 1, 1);
    tg_tensor_set_requires_grad(x, true);
    tg_tape *tp = tg_tape_new();
    ck_assert_ptr_nonnull(tg_neg(tp, x));
    capture cap;
    assert_text(explain(&cap, tp, TG_EXPLAIN_FORWARD),
                "forward, in recording order:\n"
                "t0 [2] = neg(x0 [2])\n"
                "backward, in the order the VJPs were applied:\n"
                "no backward sweep has reached this tape since it was recorded\n");
    capture_free(&cap);
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

/* ====== Ops of one's own: rules, no rules, a short list, odd templates ====== */

static tg_status copy_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in, (void)ctx;
    size_t bytes = (size_t)tg_tensor_numel(out) * sizeof(double);
    memcpy(tg_tensor_data(out), tg_tensor_data(in[0]), bytes);
    return TG_OK;
}

/* Every input gets dG: enough for the sweep to reach them all. */
static tg_status copy_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                          tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)in, (void)ctx;
    const double *g = tg_tensor_data((tg_tensor *)gout);
    for (int i = 0; i < n_in; i++)
        for (int64_t k = 0; gin[i] && k < tg_tensor_numel(gout); k++)
            ((double *)tg_tensor_data(gin[i]))[k] += g[k];
    return TG_OK;
}

static const tg_op_def bare_def = {.name = "bare", .forward = copy_forward, .vjp = copy_vjp};
static const tg_op_def short_def = {.name = "short", .forward = copy_forward, .vjp = copy_vjp,
                                    .rules = (const char *const[]){"{dy:s} first", NULL}};
/* Three positional fields, as code written before 'rules' existed: still a valid
 * definition ('rules' is NULL), though -Wextra notes the missing initializer. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
static const tg_op_def old_def = {"old", copy_forward, copy_vjp};
#pragma GCC diagnostic pop
static const tg_op_def odd_def = {
    .name = "odd", .forward = copy_forward, .vjp = copy_vjp,
    .rules = (const char *const[]){"{zz} {9} {0:q} {c} {} {y:rows} {dy:shape} {bcast:s} {", NULL}};

typedef struct custom_case {
    const tg_op_def *def;
    const char *want;
} custom_case;

static const custom_case custom_cases[] = {
    {&bare_def, "dt0 [2x2] = 1\ndx0 [2x2] = vjp_bare(dt0, x0, x1)\n"
                "dx1 [2x2] = vjp_bare(dt0, x0, x1)\n"},
    {&short_def, "dt0 [2x2] = 1\ndx0 [2x2] = dt0 [2x2] first\n"
                 "dx1 [2x2] = vjp_short(dt0, x0, x1)\n"},
    {&old_def, "dt0 [2x2] = 1\ndx0 [2x2] = vjp_old(dt0, x0, x1)\n"
               "dx1 [2x2] = vjp_old(dt0, x0, x1)\n"},
    {&odd_def, "dt0 [2x2] = 1\ndx0 [2x2] = {zz} {9} {0:q} {c} {} 2 [2x2] {bcast:s} {\n"
               "dx1 [2x2] = vjp_odd(dt0, x0, x1)\n"},
};

START_TEST(custom_op_lines)
{
    tg_tensor *in[2] = {tu_random(TG_F64, "2x2", -1, 1, 1), tu_random(TG_F64, "2x2", -1, 1, 2)};
    tg_tensor_set_requires_grad(in[0], true);
    tg_tensor_set_requires_grad(in[1], true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_custom(tp, custom_cases[_i].def, in, 2, 2, (const int64_t[]){2, 2}, NULL);
    tg_tensor *ones = tu_from(TG_F64, "2x2", (const double[]){1, 1, 1, 1});
    ck_assert_int_eq(tg_backward_seed(tp, y, ones), TG_OK);
    capture cap;
    assert_text(explain(&cap, tp, 0), custom_cases[_i].want);
    capture_free(&cap);
    tg_tape_free(tp);
    tg_tensor_free(ones);
    tg_tensor_free(in[0]);
    tg_tensor_free(in[1]);
}
END_TEST

START_TEST(constant_ops_have_no_lines)
{
    /* An op without a VJP passes no gradient, even when its output was later
     * marked as requiring one: the sweep skips it, and so does the explanation. */
    static const tg_op_def stop_def = {.name = "stop", .forward = copy_forward, .vjp = NULL};
    tg_tensor *x = tu_from(TG_F64, "2", (const double[]){1, 2});
    tg_tensor_set_requires_grad(x, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_custom(tp, &stop_def, &x, 1, 1, (const int64_t[]){2}, NULL);
    tg_tensor_set_requires_grad(y, true);
    tg_tensor *c = tg_sum(tp, tg_mul(tp, y, x));
    ck_assert_int_eq(tg_backward(tp, c), TG_OK);
    capture cap;
    assert_text(explain(&cap, tp, 0), "dt2 [] = 1\n"
                                      "dt1 [2] = dt2 broadcast to [2]\n"
                                      "dt0 [2] = dt1 ⊙ x0\n"
                                      "dx0 [2] = dt1 ⊙ t0\n");
    capture_free(&cap);
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

/* ====== Graphviz ====== */

static const char *to_dot(capture *c, const tg_tape *tp, const tg_tensor *loss)
{
    capture_open(c);
    tg_status s = tg_tape_to_dot(tp, c->f, loss);
    const char *text = capture_close(c);
    ck_assert_msg(s == TG_OK, "to_dot: %s", tg_status_str(s));
    return text;
}

START_TEST(dot_of_the_seed_network)
{
    seed_net n;
    seed_net_make(&n);
    capture c;
    /* Before any backward the loss is the last op's output. */
    const char *text = to_dot(&c, n.tp, NULL);
    ck_assert_msg(!strncmp(text, "digraph tape {\n", 15), "%s", text);
    ck_assert_ptr_nonnull(strstr(text, "label=\"X\\n[1x2] f64\\ninput\"];\n"));
    ck_assert_ptr_nonnull(strstr(text, "label=\"W2\\n[2x3] f64\\nparameter\"];\n"));
    ck_assert_ptr_nonnull(strstr(text, "label=\"matmul\\nt0 [1x3] f64\"];\n"));
    ck_assert_ptr_nonnull(strstr(text, "N6 [shape=box, style=\"rounded,filled,bold\""));
    ck_assert_ptr_nonnull(strstr(text, "label=\"scale\\nC [] f64\\nloss\"];\n  N5 -> N6;\n}\n"));
    /* An op with several inputs labels each edge with the operand's position. */
    ck_assert_ptr_nonnull(
        strstr(text, "  L0 -> N0 [headlabel=\"0\"];\n  L1 -> N0 [headlabel=\"1\"];\n"));
    ck_assert_ptr_nonnull(strstr(text, "  N1 -> N2;\n")); /* one input: no label */
    capture_free(&c);

    /* After a backward from Z3 the loss is Z3, unless one is given. */
    tg_tensor *seed = tu_from(TG_F64, "1x2", (const double[]){1, 1});
    ck_assert_int_eq(tg_backward_seed(n.tp, n.z3, seed), TG_OK);
    text = to_dot(&c, n.tp, NULL);
    ck_assert_ptr_nonnull(strstr(text, "label=\"add_bias\\nZ3 [1x2] f64\\nloss\"];\n"));
    ck_assert_ptr_nonnull(strstr(text, "label=\"scale\\nC [] f64\"];\n"));
    capture_free(&c);
    text = to_dot(&c, n.tp, n.y); /* a leaf may be the one drawn as the loss */
    ck_assert_ptr_nonnull(strstr(text, "label=\"Y\\n[1x2] f64\\nloss\"];\n"));
    capture_free(&c);
    tg_tensor_free(seed);
    seed_net_free(&n);
}
END_TEST

START_TEST(dot_escapes_names_and_draws_empty_tapes)
{
    tg_tape *tp = tg_tape_new();
    capture c;
    assert_text(to_dot(&c, tp, NULL),
                "digraph tape {\n"
                "  graph [rankdir=TB, nodesep=0.25, ranksep=0.35, fontname=\"Helvetica\", "
                "nslimit=2, nslimit1=2, mclimit=0.5, remincross=false];\n"
                "  node [fontname=\"Helvetica\", fontsize=11, penwidth=1.2];\n"
                "  edge [color=\"#566573\", arrowsize=0.7, labelfontsize=9, "
                "labelfontcolor=\"#2e6da4\", labeldistance=1.6, labelangle=-40];\n"
                "}\n");
    capture_free(&c);
    tg_tensor *x = tu_random(TG_F32, "2", -1, 1, 1);
    tg_tensor_set_name(x, "a \"quoted\" \\ name");
    ck_assert_ptr_nonnull(tg_neg(tp, x));
    ck_assert_ptr_nonnull(strstr(to_dot(&c, tp, NULL),
                                 "label=\"a \\\"quoted\\\" \\\\ name\\n[2] f32\\ninput\"];\n"));
    capture_free(&c);
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

/* A leaf used far from where it was drawn is drawn again, dashed, beside the
 * use, so that an unrolled loop has no edge spanning the whole graph. */
START_TEST(dot_draws_a_far_used_leaf_again)
{
    tg_tensor *w = tu_random(TG_F64, "2", -1, 1, 1), *h0 = tu_random(TG_F64, "2", -1, 1, 2);
    tg_tensor_set_name(w, "W");
    tg_tensor_set_requires_grad(w, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *h = h0;
    for (int step = 0; step < 3; step++) { /* W feeds nodes 0, 10 and 20 */
        h = tg_mul(tp, w, h);
        for (int k = 0; k < 9; k++)
            h = tg_neg(tp, h);
    }
    ck_assert_ptr_nonnull(h);
    capture c;
    const char *text = to_dot(&c, tp, NULL);
    ck_assert_ptr_nonnull(strstr(text, "  L0 [shape=box, style=\"rounded,filled\", "
                                       "fillcolor=\"#fde9a6\", color=\"#9a7d0a\", "
                                       "label=\"W\\n[2] f64\\nparameter\"];\n"));
    ck_assert_ptr_nonnull(strstr(text, "  L0 -> N0 [headlabel=\"0\"];\n"));
    ck_assert_ptr_nonnull(strstr(text, "  L0 -> N10 [headlabel=\"0\"];\n")); /* 10 nodes on */
    /* 20 nodes after it was drawn: a dashed copy beside node 20. */
    ck_assert_ptr_nonnull(strstr(text, "  L0_1 [shape=box, style=\"rounded,filled,dashed\", "
                                       "fillcolor=\"#fde9a6\", color=\"#9a7d0a\", "
                                       "label=\"W\\n[2] f64\\nparameter\"];\n"));
    ck_assert_ptr_nonnull(strstr(text, "  L0_1 -> N20 [headlabel=\"0\"];\n"));
    ck_assert_ptr_nonnull(strstr(text, "  N19 -> N20 [headlabel=\"1\"];\n"));
    ck_assert_ptr_null(strstr(text, "L0_2"));
    capture_free(&c);

    /* A leaf used twice by one node is drawn once, with both edges labelled. */
    tg_tape_reset(tp);
    ck_assert_ptr_nonnull(tg_mul(tp, w, w));
    text = to_dot(&c, tp, NULL);
    ck_assert_ptr_nonnull(
        strstr(text, "  L0 -> N0 [headlabel=\"0\"];\n  L0 -> N0 [headlabel=\"1\"];\n}\n"));
    capture_free(&c);
    tg_tape_free(tp);
    tg_tensor_free(w);
    tg_tensor_free(h0);
}
END_TEST

/* ====== Errors ====== */

START_TEST(errors)
{
    tg_tensor *a = tu_random(TG_F64, "2x3", -1, 1, 1), *b = tu_random(TG_F64, "2x3", -1, 1, 2);
    tg_tape *tp = tg_tape_new();
    ck_assert_int_eq(tg_tape_explain(NULL, stdout, 0), TG_ERR_ARG);
    ck_assert_int_eq(tg_tape_explain(tp, NULL, 0), TG_ERR_ARG);
    ck_assert_int_eq(tg_tape_explain(tp, stdout, 4u), TG_ERR_ARG);
    ck_assert_int_eq(tg_tape_to_dot(NULL, stdout, NULL), TG_ERR_ARG);
    ck_assert_int_eq(tg_tape_to_dot(tp, NULL, NULL), TG_ERR_ARG);

    /* A stream that refuses writes. */
    FILE *ro = fopen("/dev/null", "r");
    ck_assert_ptr_nonnull(ro);
    ck_assert_int_eq(tg_tape_explain(tp, ro, 0), TG_ERR_IO);
    ck_assert_int_eq(tg_tape_to_dot(tp, ro, NULL), TG_ERR_IO);
    fclose(ro);

    /* A failed tape: explain returns its status, the graph still shows what was recorded. */
    ck_assert_ptr_nonnull(tg_neg(tp, a));
    ck_assert_ptr_null(tg_matmul(tp, a, b));
    capture c;
    capture_open(&c);
    ck_assert_int_eq(tg_tape_explain(tp, c.f, 0), TG_ERR_SHAPE);
    ck_assert_str_eq(capture_close(&c), "");
    capture_free(&c);
    ck_assert_ptr_nonnull(strstr(to_dot(&c, tp, NULL), "label=\"neg\\nt0 [2x3] f64\\nloss\"]"));
    capture_free(&c);
    tg_tape_free(tp);
    tg_tensor_free(a);
    tg_tensor_free(b);
}
END_TEST

static Suite *explain_suite(void)
{
    Suite *s = suite_create("explain");
    TCase *tc = tcase_create("rules");
    tcase_add_loop_test(tc, rule_line_of_each_op, 0, sizeof rule_cases / sizeof *rule_cases);
    tcase_add_loop_test(tc, custom_op_lines, 0, sizeof custom_cases / sizeof *custom_cases);
    tcase_add_test(tc, constant_ops_have_no_lines);
    suite_add_tcase(s, tc);
    tc = tcase_create("explain");
    tcase_add_test(tc, seed_network_derivation);
    tcase_add_test(tc, forward_listing_and_values);
    tcase_add_test(tc, values_only_for_small_tensors);
    tcase_add_test(tc, fan_out_is_equals_then_plus_equals);
    tcase_add_test(tc, leaves_numbered_by_first_use_and_constants_skipped);
    tcase_add_test(tc, given_seed_and_partial_sweep);
    tcase_add_test(tc, no_backward_yet);
    suite_add_tcase(s, tc);
    tc = tcase_create("dot");
    tcase_add_test(tc, dot_of_the_seed_network);
    tcase_add_test(tc, dot_escapes_names_and_draws_empty_tapes);
    tcase_add_test(tc, dot_draws_a_far_used_leaf_again);
    tcase_add_test(tc, errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run(explain_suite()); }
