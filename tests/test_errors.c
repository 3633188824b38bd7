/*
 * Every tape status that bad input can reach through the public ops, and the
 * message each one leaves: it names the op and the shapes involved.
 */
#include "testutil.h"

#include <stdio.h>
#include <string.h>

/* The out-of-memory test asks for an impossible buffer; under AddressSanitizer
 * that must come back as NULL, as it does from the C library, not abort. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }

/* Every op as a binary one, so one table can hold them all ('b' unused by unary ops). */
typedef tg_tensor *(*op_fn)(tg_tape *tp, tg_tensor *a, tg_tensor *b);

static tg_tensor *transpose_ab(tg_tape *tp, tg_tensor *a, tg_tensor *b)
{
    (void)b;
    return tg_transpose(tp, a);
}

static tg_tensor *sigmoid_ab(tg_tape *tp, tg_tensor *a, tg_tensor *b)
{
    (void)b;
    return tg_sigmoid(tp, a);
}

static tg_tensor *sum_axis_2(tg_tape *tp, tg_tensor *a, tg_tensor *b)
{
    (void)b;
    return tg_sum_axis(tp, a, 2, false);
}

static tg_tensor *sum_axis_minus_3(tg_tape *tp, tg_tensor *a, tg_tensor *b)
{
    (void)b;
    return tg_sum_axis(tp, a, -3, true);
}

/* ====== One row per way to fail: op, operands, status, what the message holds ====== */

typedef struct err_case {
    op_fn op;
    const char *a, *b; /* shape strings; NULL passes a NULL tensor */
    tg_status want;
    const char *needles[3];
} err_case;

static const err_case cases[] = {
    /* NULL or out-of-range arguments */
    {tg_matmul, NULL, "2x3", TG_ERR_ARG, {"matmul"}},
    {tg_add, "2x3", NULL, TG_ERR_ARG, {"add"}},
    {sigmoid_ab, NULL, NULL, TG_ERR_ARG, {"sigmoid"}},
    {tg_softmax_cross_entropy, "2x3", NULL, TG_ERR_ARG, {"cross_entropy"}},
    {sum_axis_2, "2x3", NULL, TG_ERR_ARG, {"sum_axis", "[2x3]"}},
    {sum_axis_minus_3, "2x3", NULL, TG_ERR_ARG, {"sum_axis", "[2x3]"}},
    /* shapes that do not fit */
    {tg_matmul, "2x3", "4x5", TG_ERR_SHAPE, {"matmul", "[2x3]", "[4x5]"}},
    {tg_matmul, "3", "3x2", TG_ERR_SHAPE, {"matmul", "[3]", "[3x2]"}},
    {tg_matmul, "32x64", "32x10", TG_ERR_SHAPE, {"matmul", "[32x64]", "[32x10]"}},
    {transpose_ab, "2x3x4", NULL, TG_ERR_SHAPE, {"transpose", "[2x3x4]"}},
    {tg_add, "2x3", "4", TG_ERR_SHAPE, {"add", "[2x3]", "[4]"}},
    {tg_sub, "2x3", "3x2", TG_ERR_SHAPE, {"sub", "[2x3]", "[3x2]"}},
    {tg_mul, "2x3x4", "2x4", TG_ERR_SHAPE, {"mul", "[2x3x4]", "[2x4]"}},
    {tg_div, "5", "4", TG_ERR_SHAPE, {"div", "[5]", "[4]"}},
    {tg_add_bias, "2x3", "4", TG_ERR_SHAPE, {"add_bias", "[2x3]", "[4]"}},
    {tg_frobenius_loss, "2x3", "3x2", TG_ERR_SHAPE, {"frobenius_loss", "[2x3]", "[3x2]"}},
    {tg_mse_loss, "4", "5", TG_ERR_SHAPE, {"mse_loss", "[4]", "[5]"}},
    {tg_softmax_cross_entropy, "2x3", "2x4", TG_ERR_SHAPE, {"cross_entropy", "[2x3]", "[2x4]"}},
    /* mixed dtypes: the first operand is F64, the second F32 */
    {tg_add, "2x3", "2x3", TG_ERR_DTYPE, {"add", "[2x3]"}},
    {tg_matmul, "2x3", "3x4", TG_ERR_DTYPE, {"matmul", "[2x3]", "[3x4]"}},
    {tg_frobenius_loss, "4", "4", TG_ERR_DTYPE, {"frobenius_loss", "[4]"}},
};

START_TEST(bad_input_sets_status_and_message)
{
    const err_case *c = &cases[_i];
    tg_tensor *a = tu_operand(c->a, TG_F64, 1);
    tg_tensor *b = tu_operand(c->b, c->want == TG_ERR_DTYPE ? TG_F32 : TG_F64, 2);
    tg_tape *tp = tg_tape_new();
    tg_tensor_set_requires_grad(a, true);

    ck_assert_ptr_null(c->op(tp, a, b));
    ck_assert_msg(tg_tape_status(tp) == c->want, "case %d: status %s, want %s ('%s')", _i,
                  tg_status_str(tg_tape_status(tp)), tg_status_str(c->want), tg_tape_error(tp));
    ck_assert_uint_eq(tg_tape_size(tp), 0);
    for (int k = 0; k < 3 && c->needles[k]; k++)
        ck_assert_msg(strstr(tg_tape_error(tp), c->needles[k]), "case %d: '%s' lacks '%s'", _i,
                      tg_tape_error(tp), c->needles[k]);

    /* The error is sticky: a valid op now returns NULL and the message stays. */
    char first[512];
    snprintf(first, sizeof first, "%s", tg_tape_error(tp));
    tg_tensor *ok = tu_operand("2x2", TG_F64, 3);
    ck_assert_ptr_null(tg_matmul(tp, ok, ok));
    ck_assert_int_eq(tg_tape_status(tp), c->want);
    ck_assert_str_eq(tg_tape_error(tp), first);
    ck_assert_int_eq(tg_backward(tp, NULL), c->want);

    tg_tape_free(tp);
    tg_tensor_free(a);
    tg_tensor_free(b);
    tg_tensor_free(ok);
}
END_TEST

START_TEST(every_op_accepts_a_null_tape)
{
    tg_tensor *a = tu_operand("2x2", TG_F64, 1);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        ck_assert_ptr_null(cases[i].op(NULL, a, a));
    tg_tensor_free(a);
}
END_TEST

START_TEST(a_network_with_one_wrong_shape_fails_once)
{
    /* The caller builds the whole graph, then checks once: the first error is the one reported. */
    tg_tensor *x = tu_operand("4x3", TG_F64, 1), *w1 = tu_operand("3x5", TG_F64, 2);
    tg_tensor *w2 = tu_operand("4x2", TG_F64, 3), *y = tu_operand("4x2", TG_F64, 4);
    tg_tensor_set_requires_grad(w1, true);
    tg_tensor_set_requires_grad(w2, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *h = tg_sigmoid(tp, tg_matmul(tp, x, w1));
    tg_tensor *out = tg_matmul(tp, h, w2); /* [4x5] x [4x2] */
    tg_tensor *loss = tg_mse_loss(tp, out, y);
    ck_assert_ptr_nonnull(h);
    ck_assert_ptr_null(out);
    ck_assert_ptr_null(loss);
    ck_assert_int_eq(tg_backward(tp, loss), TG_ERR_SHAPE);
    const char *msg = tg_tape_error(tp);
    ck_assert_msg(strstr(msg, "matmul") && strstr(msg, "[4x5]") && strstr(msg, "[4x2]"), "'%s'",
                  msg);
    ck_assert_uint_eq(tg_tape_size(tp), 2);
    ck_assert_ptr_null(tg_tensor_grad(w1));
    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_tensor_free(w1);
    tg_tensor_free(w2);
    tg_tensor_free(y);
}
END_TEST

START_TEST(state_errors)
{
    /* A loss that depends on nothing requiring grad. */
    tg_tensor *c = tu_operand("2x3", TG_F64, 1);
    tg_tape *tp = tg_tape_new();
    tg_tensor *loss = tg_sum(tp, tg_square(tp, c));
    ck_assert_ptr_nonnull(loss);
    ck_assert_int_eq(tg_backward(tp, loss), TG_ERR_STATE);
    ck_assert_int_eq(tg_tape_status(tp), TG_OK); /* refused; the recording stays usable */
    ck_assert_ptr_nonnull(strstr(tg_tape_error(tp), "backward"));
    tg_tape_free(tp);

    /* The same through a seeded backward on a vector. */
    tp = tg_tape_new();
    tg_tensor *seed = tu_operand("2x3", TG_F64, 2);
    ck_assert_int_eq(tg_backward_seed(tp, tg_exp(tp, c), seed), TG_ERR_STATE);
    tg_tape_free(tp);

    /* A non-scalar loss is a shape error that names its shape. */
    tg_tensor_set_requires_grad(c, true);
    tp = tg_tape_new();
    ck_assert_int_eq(tg_backward(tp, tg_tanh(tp, c)), TG_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(tg_tape_error(tp), "[2x3]"));
    tg_tape_free(tp);
    tg_tensor_free(c);
    tg_tensor_free(seed);
}
END_TEST

/* ====== Out of memory: a custom op with an output no machine can hold ====== */

static tg_status never_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)out, (void)in, (void)n_in, (void)ctx;
    return TG_OK;
}

static const tg_op_def huge_def = {.name = "huge", .forward = never_forward, .vjp = NULL};

START_TEST(impossible_output_is_out_of_memory)
{
    tg_tensor *x = tu_operand("2", TG_F64, 1);
    tg_tape *tp = tg_tape_new();
    ck_assert_ptr_nonnull(tg_exp(tp, x));
    /* 2^52 doubles: 32 PiB, a valid element count but no allocation can succeed. */
    const int64_t shape[3] = {INT64_C(1) << 20, INT64_C(1) << 20, INT64_C(1) << 12};
    ck_assert_ptr_null(tg_custom(tp, &huge_def, &x, 1, 3, shape, NULL));
    ck_assert_int_eq(tg_tape_status(tp), TG_ERR_NOMEM);
    ck_assert_ptr_nonnull(strstr(tg_tape_error(tp), "huge"));
    ck_assert_uint_eq(tg_tape_size(tp), 1);

    /* After a reset the tape records again. */
    tg_tape_reset(tp);
    tg_tensor *y = tg_sum(tp, tg_exp(tp, x));
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(tg_tape_status(tp), TG_OK);
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("errors");
    TCase *tc = tcase_create("ops");
    tcase_add_loop_test(tc, bad_input_sets_status_and_message, 0, sizeof cases / sizeof *cases);
    tcase_add_test(tc, every_op_accepts_a_null_tape);
    tcase_add_test(tc, a_network_with_one_wrong_shape_fails_once);
    tcase_add_test(tc, state_errors);
    tcase_add_test(tc, impossible_output_is_out_of_memory);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
