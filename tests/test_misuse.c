/*
 * Misuse the tape catches (docs/reliability.md, "Misuse the library catches"):
 * leaves that change shape under a recording, tensors that cross tapes or
 * outlive a reset, seeds and inputs that alias gradient memory, mistaken
 * backward calls, and the texts of these errors. Each misuse must give a
 * status and a message naming the op and the operand, never a crash or a
 * wrong number with TG_OK.
 */
#include "testutil.h"

#include "internal.h"

#include <string.h>

/* A leaf of dtype F64 with the given values, optionally requiring grad. */
static tg_tensor *leaf(const char *shape, const double *v, bool grad)
{
    tg_tensor *t = tu_lit(TG_F64, shape, v);
    tg_tensor_set_requires_grad(t, grad);
    return t;
}

/* Element k of t's gradient. */
static double grad_at(const tg_tensor *t, int64_t k)
{
    ck_assert_ptr_nonnull(tg_tensor_grad(t));
    return tu_at(tg_tensor_grad(t), k);
}

/* The call was refused with 'want' and 'msg', and the tape is still healthy. */
static void expect_refused(tg_tape *tp, tg_status got, tg_status want, const char *msg)
{
    ck_assert_int_eq(got, want);
    ck_assert_str_eq(tg_tape_error(tp), msg);
    ck_assert_int_eq(tg_tape_status(tp), TG_OK);
}

/* ====== Recorded inputs that change under the tape ====== */

START_TEST(replay_refuses_a_reshaped_leaf)
{
    tg_tensor *a = leaf("2x3", (double[]){1, 2, 3, 4, 5, 6}, true);
    tg_tensor *b = leaf("3x2", (double[]){1, 0, 0, 1, 1, 1}, false);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_matmul(tp, a, b);
    tg_tensor *loss = tg_sum(tp, y);
    ck_assert_ptr_nonnull(loss);
    double before = tg_tensor_item(loss);

    /* Same element counts, so tg_tensor_reshape allows it; the [2x2] output would
     * become [3x3] and the matrix product would write past it. */
    ck_assert_int_eq(tg_tensor_reshape(a, 2, (int64_t[]){3, 2}), TG_OK);
    ck_assert_int_eq(tg_tensor_reshape(b, 2, (int64_t[]){2, 3}), TG_OK);
    expect_refused(tp, tg_tape_replay(tp), TG_ERR_SHAPE,
                   "matmul: input 0 was [2x3] when recorded, is now [3x2]");
    ck_assert_double_eq(tg_tensor_item(loss), before); /* nothing ran */
    expect_refused(tp, tg_backward(tp, loss), TG_ERR_SHAPE,
                   "matmul: input 0 was [2x3] when recorded, is now [3x2]");
    ck_assert_ptr_null(tg_tensor_grad(a)); /* nothing was written */

    /* Only b changed: the message names input 1, by its name. */
    ck_assert_int_eq(tg_tensor_reshape(a, 2, (int64_t[]){2, 3}), TG_OK);
    tg_tensor_set_name(b, "W1");
    expect_refused(tp, tg_tape_replay(tp), TG_ERR_SHAPE,
                   "matmul: input 1 (W1) was [3x2] when recorded, is now [2x3]");

    /* Given its shape back, the leaf fits the recording again. */
    ck_assert_int_eq(tg_tensor_reshape(b, 2, (int64_t[]){3, 2}), TG_OK);
    ck_assert_int_eq(tg_tape_replay(tp), TG_OK);
    ck_assert_str_eq(tg_tape_error(tp), "");
    ck_assert_double_eq(tg_tensor_item(loss), before);
    ck_assert_int_eq(tg_backward(tp, loss), TG_OK);
    ck_assert_double_eq(grad_at(a, 0), 1); /* dA = 1 B^T: row sums of B */
    ck_assert_double_eq(grad_at(a, 2), 2);
    tg_tape_free(tp);
    tg_tensor_free(a);
    tg_tensor_free(b);
}
END_TEST

/* The rank alone may change (same numel, same data): still refused. */
START_TEST(a_new_rank_is_a_change)
{
    tg_tensor *x = leaf("6", (double[]){1, 2, 3, 4, 5, 6}, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *loss = tg_sum(tp, tg_square(tp, x));
    ck_assert_ptr_nonnull(loss);
    ck_assert_int_eq(tg_tensor_reshape(x, 2, (int64_t[]){2, 3}), TG_OK);
    expect_refused(tp, tg_tape_replay(tp), TG_ERR_SHAPE,
                   "square: input 0 was [6] when recorded, is now [2x3]");
    /* The gradient buffer, made later, follows the leaf's shape; still refused. */
    expect_refused(tp, tg_backward(tp, loss), TG_ERR_SHAPE,
                   "square: input 0 was [6] when recorded, is now [2x3]");
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

/* A leaf reshaped between two ops of one recording: the first node no longer
 * fits, although the second was recorded on the new shape. */
START_TEST(a_leaf_reshaped_in_the_middle_of_a_recording)
{
    tg_tensor *x = leaf("2x3", (double[]){1, 2, 3, 4, 5, 6}, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *s1 = tg_sum_axis(tp, x, 1, false);
    ck_assert_int_eq(tg_tensor_reshape(x, 2, (int64_t[]){3, 2}), TG_OK);
    tg_tensor *s2 = tg_sum_axis(tp, x, 1, false);
    tg_tensor *loss = tg_add(tp, tg_sum(tp, s1), tg_sum(tp, s2));
    ck_assert_ptr_nonnull(loss);
    expect_refused(tp, tg_tape_replay(tp), TG_ERR_SHAPE,
                   "sum_axis: input 0 was [2x3] when recorded, is now [3x2]");
    expect_refused(tp, tg_backward(tp, loss), TG_ERR_SHAPE,
                   "sum_axis: input 0 was [2x3] when recorded, is now [3x2]");
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

/* ASan builds poison the arena's unused bytes: a red zone follows every
 * allocation and a reset takes every byte back, so an op that writes past its
 * output is reported by the sanitizer, like a heap overflow. Other builds have
 * no red zone and the test only runs the recording. */
START_TEST(arena_red_zones_under_asan)
{
    tg_tensor *x = leaf("3", (double[]){1, 2, 3}, false);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_neg(tp, x), *z = tg_neg(tp, y);
    ck_assert_ptr_nonnull(z);
#ifdef TG__ASAN
    const char *end = (const char *)tg_tensor_cdata(y) + 3 * sizeof(double);
    ck_assert(!__asan_address_is_poisoned(end - 1));
    ck_assert(__asan_address_is_poisoned(end));                      /* the rounding to 64 bytes */
    ck_assert(__asan_address_is_poisoned(end + 40 + TG__ALIGN - 1)); /* and the red zone */
    const void *data = tg_tensor_cdata(z);
    tg_tape_reset(tp);
    ck_assert(__asan_address_is_poisoned(data)); /* a reset takes the memory back */
#endif
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

/* ====== Tensors crossing tapes, and results that outlive a reset ====== */

START_TEST(a_result_of_another_tape_is_refused)
{
    tg_tensor *x = leaf("2", (double[]){1, 2}, true);
    tg_tape *a = tg_tape_new(), *b = tg_tape_new();
    tg_tensor *ya = tg_square(a, x);
    ck_assert_ptr_nonnull(ya);
    ck_assert_ptr_null(tg_add(b, x, ya));
    ck_assert_int_eq(tg_tape_status(b), TG_ERR_STATE);
    ck_assert_str_eq(tg_tape_error(b), "add: input 1 belongs to another tape");
    ck_assert_uint_eq(tg_tape_size(b), 0);
    /* Any op, any input position. */
    tg_tape_reset(b);
    ck_assert_ptr_null(tg_sum(b, ya));
    ck_assert_str_eq(tg_tape_error(b), "sum: input 0 belongs to another tape");
    /* Tape a is untouched and works. */
    ck_assert_int_eq(tg_tape_status(a), TG_OK);
    ck_assert_int_eq(tg_backward(a, tg_sum(a, ya)), TG_OK);
    ck_assert_double_eq(grad_at(x, 1), 4);
    tg_tape_free(a);
    tg_tape_free(b);
    tg_tensor_free(x);
}
END_TEST

START_TEST(backward_on_another_tapes_loss_is_refused)
{
    tg_tensor *x = leaf("2", (double[]){1, 2}, true);
    tg_tape *a = tg_tape_new(), *b = tg_tape_new();
    tg_tensor *la = tg_sum(a, tg_square(a, x));
    tg_tensor *yb = tg_neg(b, x);
    ck_assert_ptr_nonnull(la);
    ck_assert_ptr_nonnull(yb);
    expect_refused(b, tg_backward(b, la), TG_ERR_STATE,
                   "backward: the loss belongs to another tape");
    expect_refused(b, tg_backward_seed(b, la, la), TG_ERR_STATE,
                   "backward: the output belongs to another tape");
    tg_tensor *seed = tg_neg(a, x); /* right shape and dtype, wrong tape */
    expect_refused(b, tg_backward_seed(b, yb, seed), TG_ERR_STATE,
                   "backward: the seed belongs to another tape");
    ck_assert_ptr_null(tg_tensor_grad(x));
    /* Both tapes still work, and a leaf serves both: its gradient sums them. */
    ck_assert_int_eq(tg_backward(a, la), TG_OK);
    ck_assert_int_eq(tg_backward(b, tg_sum(b, yb)), TG_OK);
    ck_assert_double_eq(grad_at(x, 0), 2 - 1);
    ck_assert_double_eq(grad_at(x, 1), 4 - 1);
    tg_tape_free(a);
    tg_tape_free(b);
    tg_tensor_free(x);
}
END_TEST

START_TEST(a_result_from_before_a_reset_is_refused)
{
    tg_tensor *x = leaf("4", (double[]){1, 2, 3, 4}, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *old = tg_square(tp, x);
    tg_tensor *old_loss = tg_sum(tp, old);
    ck_assert_ptr_nonnull(old_loss);
    tg_tape_reset(tp);
    /* Nothing recorded since: the memory still holds the old tensors (poisoned
     * under ASan, which the tape checks before it reads them, hence the
     * message's "freed, or" there). */
    ck_assert_int_eq(tg_backward(tp, old_loss), TG_ERR_STATE);
    ck_assert_int_eq(tg_tape_status(tp), TG_OK);
    ck_assert_ptr_nonnull(strstr(tg_tape_error(tp), "backward: the loss "));
    ck_assert_ptr_nonnull(strstr(tg_tape_error(tp), "recorded before the tape's last reset"));
    ck_assert_ptr_null(tg_neg(tp, old));
    ck_assert_int_eq(tg_tape_status(tp), TG_ERR_STATE);
    ck_assert_ptr_nonnull(strstr(tg_tape_error(tp), "neg: input 0 "));
    ck_assert_ptr_nonnull(strstr(tg_tape_error(tp), "recorded before the tape's last reset"));
    ck_assert_ptr_null(tg_tensor_grad(x));
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

/* The gradient of a tape's tensor belongs to that tape. */
START_TEST(a_gradient_of_another_tape_is_refused)
{
    tg_tensor *x = leaf("2", (double[]){1, 2}, true);
    tg_tape *a = tg_tape_new(), *b = tg_tape_new();
    tg_tensor *h = tg_square(a, x);
    ck_assert_int_eq(tg_backward(a, tg_sum(a, h)), TG_OK);
    ck_assert_ptr_null(tg_neg(b, tg_tensor_grad(h)));
    ck_assert_str_eq(tg_tape_error(b), "neg: input 0 belongs to another tape");
    tg_tape_free(a);
    tg_tape_free(b);
    tg_tensor_free(x);
}
END_TEST

/* ====== Aliasing in the sweep ====== */

/* y = x^2 (elementwise), h = 3 y: seeding h with its own gradient must act
 * as seeding it with a copy. */
START_TEST(a_seed_that_is_the_outputs_own_gradient)
{
    tg_tensor *x = leaf("3", (double[]){1, 2, 3}, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *h = tg_scale(tp, tg_square(tp, x), 3);
    tg_tensor *seed = leaf("3", (double[]){1, -1, 2}, false);
    ck_assert_int_eq(tg_backward_seed(tp, h, seed), TG_OK);
    tg_tensor_zero_grad(x);
    ck_assert_int_eq(tg_backward_seed(tp, h, tg_tensor_grad(h)), TG_OK);
    /* dx = 3 * 2x * seed */
    ck_assert_double_eq(grad_at(x, 0), 6);
    ck_assert_double_eq(grad_at(x, 1), -12);
    ck_assert_double_eq(grad_at(x, 2), 36);
    ck_assert_double_eq(grad_at(h, 2), 2); /* the output's gradient is the seed */
    /* Again, with no allocation: every buffer exists. */
    tg_tensor_zero_grad(x);
    tg__alloc_refused = 0;
    tg__alloc_fail_after = 0;
    tg_status s = tg_backward_seed(tp, h, tg_tensor_grad(h));
    tg__alloc_fail_after = -1;
    ck_assert_int_eq(s, TG_OK);
    ck_assert_int_eq(tg__alloc_refused, 0);
    ck_assert_double_eq(grad_at(x, 1), -12);
    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_tensor_free(seed);
}
END_TEST

/* The seed is another intermediate's gradient, which the sweep zeroes. */
START_TEST(a_seed_that_is_another_intermediates_gradient)
{
    tg_tensor *x = leaf("2", (double[]){1, 2}, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_square(tp, x);                         /* y = x^2 */
    tg_tensor *z = tg_scale(tp, y, 5);                       /* z = 5 y */
    ck_assert_int_eq(tg_backward(tp, tg_sum(tp, z)), TG_OK); /* dy = 5 */
    tg_tensor_zero_grad(x);
    ck_assert_int_eq(tg_backward_seed(tp, y, tg_tensor_grad(y)), TG_OK);
    ck_assert_double_eq(grad_at(x, 0), 10); /* 2x * 5 */
    ck_assert_double_eq(grad_at(x, 1), 20);
    tg_tensor_zero_grad(x);
    ck_assert_int_eq(tg_backward_seed(tp, z, tg_tensor_grad(y)), TG_OK); /* seed 5 into z */
    ck_assert_double_eq(grad_at(x, 0), 50);
    ck_assert_double_eq(grad_at(x, 1), 100);
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

/* A leaf as the output: its gradient accumulates the seed, read before it changes. */
START_TEST(a_leaf_seeded_with_its_own_gradient)
{
    tg_tensor *x = leaf("2", (double[]){1, 2}, true);
    tg_tape *tp = tg_tape_new();
    ck_assert_int_eq(tg_backward(tp, tg_sum(tp, tg_scale(tp, x, 3))), TG_OK);
    ck_assert_int_eq(tg_backward_seed(tp, x, tg_tensor_grad(x)), TG_OK);
    ck_assert_double_eq(grad_at(x, 0), 6);
    ck_assert_double_eq(grad_at(x, 1), 6);
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

/* A gradient as an op's input would be rewritten by backward under the node
 * that reads it, so it is refused, an intermediate's and a leaf's alike. */
START_TEST(a_gradient_is_not_an_op_input)
{
    tg_tensor *x = leaf("2", (double[]){1, 2}, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *h = tg_square(tp, x);
    ck_assert_int_eq(tg_backward(tp, tg_sum(tp, h)), TG_OK);
    ck_assert_ptr_null(tg_mul(tp, x, tg_tensor_grad(h)));
    ck_assert_int_eq(tg_tape_status(tp), TG_ERR_ARG);
    ck_assert_str_eq(tg_tape_error(tp), "mul: input 1 [2] is a gradient, which every backward "
                                        "rewrites; copy it into a tensor of your own first");
    tg_tape_reset(tp);
    ck_assert_ptr_null(tg_sum(tp, tg_tensor_grad(x)));
    ck_assert_str_eq(tg_tape_error(tp), "sum: input 0 [2] is a gradient, which every backward "
                                        "rewrites; copy it into a tensor of your own first");
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

/* ====== A mistaken backward call leaves the recording usable ====== */

typedef struct bad_call {
    const char *what;
    tg_status want;
    const char *msg;
} bad_call;

static const bad_call bad_calls[] = {
    {"NULL loss", TG_ERR_ARG, "backward: loss is NULL"},
    {"non-scalar loss", TG_ERR_SHAPE, "backward: loss must have one element, got h [2x2]"},
    {"NULL seed", TG_ERR_ARG, "backward: seed is NULL"},
    {"seed shape", TG_ERR_SHAPE, "backward: seed [4] does not match output h [2x2]"},
    {"seed dtype", TG_ERR_DTYPE, "backward: seed [2x2] is f32, the output h [2x2] is f64"},
    {"constant loss", TG_ERR_STATE,
     "backward: the output [] does not depend on any tensor that requires grad"},
    {"foreign loss", TG_ERR_STATE, "backward: the loss belongs to another tape"},
    {"nan seed", TG_ERR_NUMERIC, "anomaly: the seed of backward holds nan"},
};
enum { N_BAD_CALLS = sizeof bad_calls / sizeof *bad_calls };

START_TEST(a_bad_backward_call_does_not_fail_the_tape)
{
    tg_tensor *x = leaf("2x2", (double[]){1, 2, 3, 4}, true);
    tg_tensor *c = leaf("2", (double[]){1, 2}, false);
    tg_tensor *s4 = leaf("4", (double[]){1, 1, 1, 1}, false);
    tg_tensor *s32 = tu_lit(TG_F32, "2x2", (double[]){1, 1, 1, 1});
    tg_tensor *nan = leaf("2x2", (double[]){1, NAN, 1, 1}, false);
    tg_tape *tp = tg_tape_new(), *other = tg_tape_new();
    tg_tensor *h = tg_square(tp, x);
    tg_tensor_set_name(h, "h");
    tg_tensor *loss = tg_sum(tp, h), *constant = tg_sum(tp, c);
    tg_tensor *foreign = tg_sum(other, tg_neg(other, x));
    ck_assert_ptr_nonnull(loss);
    ck_assert_ptr_nonnull(constant);
    ck_assert_ptr_nonnull(foreign);
    tg_status s = TG_OK;
    switch (_i) {
    case 0:
        s = tg_backward(tp, NULL);
        break;
    case 1:
        s = tg_backward(tp, h);
        break;
    case 2:
        s = tg_backward_seed(tp, h, NULL);
        break;
    case 3:
        s = tg_backward_seed(tp, h, s4);
        break;
    case 4:
        s = tg_backward_seed(tp, h, s32);
        break;
    case 5:
        s = tg_backward(tp, constant);
        break;
    case 6:
        s = tg_backward(tp, foreign);
        break;
    default:
        tg_tape_set_anomaly(tp, true);
        s = tg_backward_seed(tp, h, nan);
        break;
    }
    ck_assert_msg(s == bad_calls[_i].want, "%s: status %d", bad_calls[_i].what, s);
    ck_assert_str_eq(tg_tape_error(tp), bad_calls[_i].msg);
    ck_assert_int_eq(tg_tape_status(tp), TG_OK);
    ck_assert_ptr_null(tg_tensor_grad(x));

    /* The recording works on: replay, backward, a seeded backward, more ops. */
    ck_assert_int_eq(tg_tape_replay(tp), TG_OK);
    ck_assert_str_eq(tg_tape_error(tp), ""); /* the message lasts until the next call */
    ck_assert_int_eq(tg_backward(tp, loss), TG_OK);
    ck_assert_double_eq(grad_at(x, 3), 8);
    ck_assert_int_eq(tg_backward_seed(tp, h, tg_tensor_grad(h)), TG_OK);
    ck_assert_double_eq(grad_at(x, 3), 16);
    ck_assert_ptr_nonnull(tg_neg(tp, loss));
    ck_assert_int_eq(tg_tape_status(tp), TG_OK);
    tg_tape_free(tp);
    tg_tape_free(other);
    for (tg_tensor **p = (tg_tensor *[]){x, c, s4, s32, nan, NULL}; *p; p++)
        tg_tensor_free(*p);
}
END_TEST

/* The next recorded op clears a refused call's message too. */
START_TEST(a_refused_calls_message_lasts_until_the_next_call)
{
    tg_tensor *x = leaf("2", (double[]){1, 2}, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *h = tg_square(tp, x);
    ck_assert_int_eq(tg_backward(tp, h), TG_ERR_SHAPE);
    ck_assert_str_eq(tg_tape_error(tp), "backward: loss must have one element, got [2]");
    ck_assert_ptr_nonnull(tg_sum(tp, h));
    ck_assert_str_eq(tg_tape_error(tp), "");
    ck_assert_int_eq(tg_backward(tp, h), TG_ERR_SHAPE);
    tg_tape_reset(tp);
    ck_assert_str_eq(tg_tape_error(tp), "");
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

/* An error in what was recorded stays: backward and replay return it. */
START_TEST(a_recording_error_stays_sticky)
{
    tg_tensor *a = leaf("2x3", (double[]){1, 2, 3, 4, 5, 6}, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *loss = tg_sum(tp, a);
    ck_assert_ptr_null(tg_matmul(tp, a, a));
    const char *msg = "matmul: inner dimensions differ: [2x3] x [2x3]";
    ck_assert_str_eq(tg_tape_error(tp), msg);
    ck_assert_int_eq(tg_backward(tp, loss), TG_ERR_SHAPE);
    ck_assert_int_eq(tg_tape_replay(tp), TG_ERR_SHAPE);
    ck_assert_int_eq(tg_backward(tp, NULL), TG_ERR_SHAPE); /* the stored status, not ARG */
    ck_assert_str_eq(tg_tape_error(tp), msg);
    ck_assert_int_eq(tg_tape_status(tp), TG_ERR_SHAPE);
    tg_tape_free(tp);
    tg_tensor_free(a);
}
END_TEST

/* ====== Error texts ====== */

START_TEST(operands_are_named_by_their_names)
{
    tg_tensor *w = leaf("2x3", (double[]){1, 2, 3, 4, 5, 6}, true);
    tg_tensor *x = leaf("2x2", (double[]){1, 2, 3, 4}, false);
    tg_tensor_set_name(w, "W1");
    tg_tensor_set_name(x, "x");
    tg_tape *tp = tg_tape_new();
    ck_assert_ptr_null(tg_matmul(tp, w, x));
    ck_assert_str_eq(tg_tape_error(tp), "matmul: inner dimensions differ: W1 [2x3] x x [2x2]");
    tg_tape_reset(tp);
    ck_assert_ptr_null(tg_add(tp, w, x));
    ck_assert_ptr_nonnull(strstr(tg_tape_error(tp), "W1 [2x3]"));
    ck_assert_ptr_nonnull(strstr(tg_tape_error(tp), "x [2x2]"));
    tg_tape_free(tp);
    tg_tensor_free(w);
    tg_tensor_free(x);
}
END_TEST

/* A long name is cut so that the whole shape still shows. */
START_TEST(a_long_name_leaves_room_for_the_shape)
{
    char name[64];
    memset(name, 'n', 63);
    name[63] = '\0';
    tg_tensor *a = tg_tensor_new(TG_F64, 4, (int64_t[]){INT64_C(1) << 40, 0, 123456789, 7});
    tg_tensor *b = leaf("3x3", (double[]){1, 2, 3, 4, 5, 6, 7, 8, 9}, false);
    tg_tensor_set_name(a, name);
    tg_tape *tp = tg_tape_new();
    ck_assert_ptr_null(tg_matmul(tp, a, b));
    const char *msg = tg_tape_error(tp);
    ck_assert_msg(strstr(msg, "nnnn [1099511627776x0x123456789x7] x [3x3]"), "%s", msg);
    tg_tape_free(tp);
    tg_tensor_free(a);
    tg_tensor_free(b);
}
END_TEST

START_TEST(an_impossible_output_is_a_shape_error_with_the_shapes)
{
    tg_tensor *a = tg_tensor_new(TG_F64, 2, (int64_t[]){INT64_C(1) << 30, 0});
    tg_tensor *b = tg_tensor_new(TG_F64, 2, (int64_t[]){0, INT64_C(1) << 30});
    tg_tensor_set_name(a, "a");
    tg_tape *tp = tg_tape_new();
    ck_assert_ptr_null(tg_matmul(tp, a, b));
    ck_assert_int_eq(tg_tape_status(tp), TG_ERR_SHAPE);
    ck_assert_str_eq(tg_tape_error(tp),
                     "matmul: output shape [1073741824x1073741824] has more elements than memory "
                     "can hold; inputs a [1073741824x0], [0x1073741824]");
    tg_tape_free(tp);
    tg_tensor_free(a);
    tg_tensor_free(b);
}
END_TEST

START_TEST(anomaly_has_a_status_of_its_own)
{
    ck_assert_str_eq(tg_status_str(TG_ERR_NUMERIC), "NaN or infinity produced");
    tg_tensor *x = leaf("2", (double[]){0, 1}, false);
    tg_tensor_set_name(x, "probs");
    tg_tape *tp = tg_tape_new();
    tg_tape_set_anomaly(tp, true);
    tg_tensor *y = tg_log(tp, x);
    ck_assert_ptr_null(y);
    ck_assert_int_eq(tg_tape_status(tp), TG_ERR_NUMERIC);
    ck_assert_str_eq(tg_tape_error(tp),
                     "anomaly: log (node 0) produced -inf in its output; inputs probs [2]");
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("misuse");
    TCase *tc = tcase_create("changed_leaves");
    tcase_add_test(tc, replay_refuses_a_reshaped_leaf);
    tcase_add_test(tc, a_new_rank_is_a_change);
    tcase_add_test(tc, a_leaf_reshaped_in_the_middle_of_a_recording);
    tcase_add_test(tc, arena_red_zones_under_asan);
    suite_add_tcase(s, tc);

    tc = tcase_create("crossing_tapes");
    tcase_add_test(tc, a_result_of_another_tape_is_refused);
    tcase_add_test(tc, backward_on_another_tapes_loss_is_refused);
    tcase_add_test(tc, a_result_from_before_a_reset_is_refused);
    tcase_add_test(tc, a_gradient_of_another_tape_is_refused);
    suite_add_tcase(s, tc);

    tc = tcase_create("aliasing");
    tcase_add_test(tc, a_seed_that_is_the_outputs_own_gradient);
    tcase_add_test(tc, a_seed_that_is_another_intermediates_gradient);
    tcase_add_test(tc, a_leaf_seeded_with_its_own_gradient);
    tcase_add_test(tc, a_gradient_is_not_an_op_input);
    suite_add_tcase(s, tc);

    tc = tcase_create("bad_calls");
    tcase_add_loop_test(tc, a_bad_backward_call_does_not_fail_the_tape, 0, N_BAD_CALLS);
    tcase_add_test(tc, a_refused_calls_message_lasts_until_the_next_call);
    tcase_add_test(tc, a_recording_error_stays_sticky);
    suite_add_tcase(s, tc);

    tc = tcase_create("texts");
    tcase_add_test(tc, operands_are_named_by_their_names);
    tcase_add_test(tc, a_long_name_leaves_room_for_the_shape);
    tcase_add_test(tc, an_impossible_output_is_a_shape_error_with_the_shapes);
    tcase_add_test(tc, anomaly_has_a_status_of_its_own);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
