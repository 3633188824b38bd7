/*
 * The op list: one row per gradcheck case of every public op. The op tests
 * (tests/test_ops_list.c), the gradcheck report behind docs/ops.md's
 * max_abs_err column (tests/gradcheck_report.c), the fuzzer
 * (tests/fuzz/fuzz_ops.c) and the docs check (tests/oplist_docs.c) all read
 * it, so adding an op to the tests is adding rows here.
 *
 * A row is
 *
 *     X(id, "name", values, "shape lists", record expression)
 *
 * - id: unique among rows, a C identifier ("sum_axis_m1_keep").
 * - name: the op's public name, tg_<name> in tapegrad.h and `name` in the
 *   first column of docs/ops.md. Several rows may share it (one per axis,
 *   one per frozen input, ...).
 * - values: how float inputs are drawn, one of
 *     UNIFORM(lo, hi)        uniform in [lo, hi);
 *     AWAY(lo, hi, k)        uniform, then moved 0.1 away from the kink k on
 *                            its side (v < k gives v - 0.1, else v + 0.1);
 *     AWAY2(lo, hi, k1, k2)  the same for two kinks at least 0.4 apart (each
 *                            value moves away from the nearer one);
 *     TIES(lo, hi, step)     uniform, then rounded to a multiple of step, so
 *                            equal values (ties) occur on purpose.
 * - shape lists: space-separated; each is the inputs' shapes joined by ';'
 *   ("3x4;4" is two inputs, ";2x3" a scalar and a [2x3], "scalar" one rank-0
 *   input). An input's token may carry a prefix and a range:
 *     3x4@0.5:2   a float input drawn uniform in [0.5, 2) instead;
 *     c:4@0.5:2   a float input that does not require grad (running
 *                 statistics, targets of a frozen case);
 *     i:3@5       an I64 index input of shape [3] with values in [0, 5);
 *     i:3@-5:5    the same with values in [-5, 5), negatives for ops that wrap.
 * - record expression: the op recorded on tape 'tp' from inputs in[0..n-1],
 *   with its parameters written out; it may build arrays and options structs
 *   (tg_concat(tp, (tg_tensor *[]){in[0], in[1]}, 2, 0),
 *   &(tg_conv_opts){.stride = {2, 2}}) and draw from tu_rng(). An array with
 *   one entry per axis of the input (permute's perm, pad's before and after)
 *   is declared with TG_MAX_RANK entries: the fuzzer calls every row on
 *   operands of any rank, and the op reads one entry per axis it is given.
 *
 * Shape macros (UN, BIN, ...) are plain strings, so rows can share them and
 * docs/ops.md can name them.
 */
#ifndef TG_OPLIST_H
#define TG_OPLIST_H

#include <tapegrad/tapegrad.h>

/* ====== How a row's float inputs are drawn ====== */

typedef struct tu_values {
    double lo, hi;   /* uniform in [lo, hi) */
    double kink[2];  /* moved 0.1 away from the nearer of the first n_kinks */
    int n_kinks;
    double step;     /* > 0: rounded to a multiple of step (ties) */
} tu_values;

#define UNIFORM(lo, hi)        {(lo), (hi), {0, 0}, 0, 0}
#define AWAY(lo, hi, k)        {(lo), (hi), {(k), 0}, 1, 0}
#define AWAY2(lo, hi, k1, k2)  {(lo), (hi), {(k1), (k2)}, 2, 0}
#define TIES(lo, hi, step)     {(lo), (hi), {0, 0}, 0, (step)}

/* ====== Shape lists several rows share ====== */

#define BIN "3x4;3x4 3x4;4 2x1x5;1x3x1 3x1;1x4 ;2x3 2x3; 1;1x1 1x1;1x1 2x1x3x1;4x1x2"
#define UN "3x4 1 1x1 scalar 2x1x5 2x3x1x2"
#define ROWS "1x1 3x4 2x3x5 5 4x1"
#define PAIRS "3x4;3x4 1;1 1x1;1x1 ; 2x3x2;2x3x2"
#define LOGITS "3x4;3x4 1x1;1x1 1x5;1x5 4x1;4x1 2x3;2x3"
#define MATMUL "1x1;1x1 3x1;1x4 2x5;5x3 1x4;4x1 4x3;3x2"
/* Batched: B of rank 2 (A's batches fold into rows), equal batches, broadcast
 * batches, A of rank 2 over B's batches, batch dimensions of 1 on either side. */
#define BMM "2x3x4;4x5 2x3x4;2x4x5 2x1x3x4;3x4x2 3x4;2x4x5 2x3x2x4;1x3x4x2 1x2x3;4x3x2 2x2x1x3;2x1x3x1"
#define BIAS "3x4;4 1x1;1 1x5;5 5x1;1"
/* The shapes that have axis a, for sum_axis and the other reductions along an axis. */
#define AXIS_0 "2x3x4 1x3x1 5 1 3x4"
#define AXIS_1 "2x3x4 1x3x1 3x4 2x1x5"
#define AXIS_2 "2x3x4 1x3x1 2x1x5"
#define AXIS_3 "2x1x3x2 1x1x1x1 2x3x1x4"
#define AXIS_M1 "2x3x4 3x4 1x1 5 2x1x3x2"
#define AXIS_M2 "2x3x4 3x4 1x1"
#define AXIS_M3 "2x3x4 1x3x1 2x1x5"
#define AXIS_M4 "2x1x3x2 1x1x1x1 3x2x1x2"
/* x;gamma;beta for layer_norm: ranks 1 to 4, 1-sized dimensions. */
#define LNORM "3x4;4;4 2x3x5;5;5 5;5;5 2x1x3x2;2;2 4x1;1;1 1x1x1x3;3;3"
/* x;gamma;beta for batch_norm: ranks 2 to 4, one channel, N = 1 with H > 1, 1-sized H, W.
 * Training rows pass no running statistics: a replay rewrites them, which would
 * change what other recorded ops read (tests/test_ops_norm.c checks them). */
#define BNORM "4x3;3;3 2x3x2x2;3;3 2x3x4;3;3 3x1;1;1 1x2x3x1;2;2 2x2x1x1;2;2"
/* running_mean;running_var of c channels for eval mode, not requiring grad, var > 0. */
#define BNORM_STATS(c) "c:" #c "@-0.5:0.5;c:" #c "@0.5:1.5"
/* x;gamma;beta;running_mean;running_var for batch_norm in eval mode (N = 1 allowed). */
#define BNORM_EVAL                                                                        \
    "4x3;3;3;" BNORM_STATS(3) " 2x3x2x2;3;3;" BNORM_STATS(3) " 2x3x4;3;3;" BNORM_STATS(3) \
    " 1x3;3;3;" BNORM_STATS(3) " 1x1x1x1;1;1;" BNORM_STATS(1)
/* The same with 0-sized dimensions added: UN and BIN with an empty operand,
 * each AXIS_* list with a shape that is empty off the axis (an empty result).
 * Empty reduced axes and losses over nothing give NaN or -inf, which the
 * F32-against-F64 check does not take as agreeing; tests/test_ops_more.c
 * checks them. */
#define UN0 UN " 0x3"
#define BIN0 BIN " 0x3;3 2x0;1"
#define AXIS0_0 AXIS_0 " 3x0"
#define AXIS0_1 AXIS_1 " 0x3"
#define AXIS0_M1 AXIS_M1 " 0x3"
#define AXIS0_M2 AXIS_M2 " 0x3x2"

/* ====== The rows ====== */

/* clang-format off */
#define TU_OPLIST(X) \
    X(add, "add", UNIFORM(-1, 1), BIN, tg_add(tp, in[0], in[1])) \
    X(sub, "sub", UNIFORM(-1, 1), BIN, tg_sub(tp, in[0], in[1])) \
    X(mul, "mul", UNIFORM(-1, 1), BIN, tg_mul(tp, in[0], in[1])) \
    X(div, "div", UNIFORM(0.5, 2), BIN, tg_div(tp, in[0], in[1])) \
    X(scale, "scale", UNIFORM(-1, 1), UN, tg_scale(tp, in[0], -1.5)) \
    X(neg, "neg", UNIFORM(-1, 1), UN, tg_neg(tp, in[0])) \
    X(sigmoid, "sigmoid", UNIFORM(-3, 3), UN, tg_sigmoid(tp, in[0])) \
    X(tanh, "tanh", UNIFORM(-2, 2), UN, tg_tanh(tp, in[0])) \
    X(relu, "relu", AWAY(-1, 1, 0), UN, tg_relu(tp, in[0])) \
    X(exp, "exp", UNIFORM(-1, 1), UN, tg_exp(tp, in[0])) \
    X(log, "log", UNIFORM(0.5, 2), UN, tg_log(tp, in[0])) \
    X(square, "square", UNIFORM(-1, 1), UN, tg_square(tp, in[0])) \
    X(add_scalar, "add_scalar", UNIFORM(-1, 1), UN0, tg_add_scalar(tp, in[0], 0.75)) \
    X(pow_2, "pow", UNIFORM(-1, 1), UN0, tg_pow(tp, in[0], 2)) \
    X(pow_3, "pow", UNIFORM(-1, 1), UN0, tg_pow(tp, in[0], 3)) \
    X(pow_0, "pow", UNIFORM(-1, 1), UN0, tg_pow(tp, in[0], 0)) \
    X(pow_m1, "pow", UNIFORM(0.5, 2), UN0, tg_pow(tp, in[0], -1)) \
    X(pow_half, "pow", UNIFORM(0.5, 2), UN0, tg_pow(tp, in[0], 0.5)) \
    X(pow_m_half, "pow", UNIFORM(0.5, 2), UN0, tg_pow(tp, in[0], -0.5)) \
    X(pow_2_5, "pow", UNIFORM(0.5, 2), UN0, tg_pow(tp, in[0], 2.5)) \
    X(pow_m1_7, "pow", UNIFORM(0.5, 2), UN0, tg_pow(tp, in[0], -1.7)) \
    X(abs, "abs", AWAY(-1, 1, 0), UN0, tg_abs(tp, in[0])) \
    X(sqrt, "sqrt", UNIFORM(0.5, 2), UN0, tg_sqrt(tp, in[0])) \
    X(sin, "sin", UNIFORM(-3, 3), UN0, tg_sin(tp, in[0])) \
    X(cos, "cos", UNIFORM(-3, 3), UN0, tg_cos(tp, in[0])) \
    X(clamp, "clamp", AWAY2(-1, 1, -0.5, 0.5), UN0, tg_clamp(tp, in[0], -0.5, 0.5)) \
    X(maximum, "maximum", UNIFORM(-1, 1), BIN0, tg_maximum(tp, in[0], in[1])) \
    X(maximum_ties, "maximum", TIES(-1, 1, 0.5), BIN0, tg_maximum(tp, in[0], in[1])) \
    X(maximum_b, "maximum", TIES(-1, 1, 0.5), "c:3x4;3x4 c:3x4;4 c:2x1x5;1x3x1 c:scalar;2x3", tg_maximum(tp, in[0], in[1])) \
    X(minimum, "minimum", UNIFORM(-1, 1), BIN0, tg_minimum(tp, in[0], in[1])) \
    X(minimum_ties, "minimum", TIES(-1, 1, 0.5), BIN0, tg_minimum(tp, in[0], in[1])) \
    X(minimum_a, "minimum", TIES(-1, 1, 0.5), "3x4;c:3x4 3x4;c:4 2x1x5;c:1x3x1 2x3;c:scalar", tg_minimum(tp, in[0], in[1])) \
    X(leaky_relu, "leaky_relu", AWAY(-1, 1, 0), UN0, tg_leaky_relu(tp, in[0], 0.2)) \
    X(leaky_relu_neg, "leaky_relu", AWAY(-1, 1, 0), UN0, tg_leaky_relu(tp, in[0], -0.3)) \
    X(elu, "elu", AWAY(-2, 2, 0), UN0, tg_elu(tp, in[0], 0.7)) \
    X(gelu, "gelu", UNIFORM(-3, 3), UN0, tg_gelu(tp, in[0], false)) \
    X(gelu_tanh, "gelu", UNIFORM(-3, 3), UN0, tg_gelu(tp, in[0], true)) \
    X(silu, "silu", UNIFORM(-3, 3), UN0, tg_silu(tp, in[0])) \
    X(softplus, "softplus", UNIFORM(-3, 3), UN0, tg_softplus(tp, in[0])) \
    X(matmul, "matmul", UNIFORM(-1, 1), MATMUL, tg_matmul(tp, in[0], in[1])) \
    X(matmul_a, "matmul", UNIFORM(-1, 1), "1x1;c:1x1 3x1;c:1x4 2x5;c:5x3", tg_matmul(tp, in[0], in[1])) \
    X(matmul_b, "matmul", UNIFORM(-1, 1), "c:1x1;1x1 c:3x1;1x4 c:2x5;5x3", tg_matmul(tp, in[0], in[1])) \
    X(matmul_batched, "matmul", UNIFORM(-1, 1), BMM, tg_matmul(tp, in[0], in[1])) \
    X(matmul_batched_empty, "matmul", UNIFORM(-1, 1), "0x3x4;4x5 2x0x3;3x4 2x3x0;2x0x4 2x1x3;1x3x0", tg_matmul(tp, in[0], in[1])) \
    X(matmul_batched_a, "matmul", UNIFORM(-1, 1), "2x3x4;c:4x5 2x1x3x4;c:3x4x2 3x4;c:2x4x5", tg_matmul(tp, in[0], in[1])) \
    X(matmul_batched_b, "matmul", UNIFORM(-1, 1), "c:2x3x4;4x5 c:2x1x3x4;3x4x2 c:3x4;2x4x5", tg_matmul(tp, in[0], in[1])) \
    X(transpose, "transpose", UNIFORM(-1, 1), "3x4 1x1 1x5 5x1", tg_transpose(tp, in[0])) \
    X(add_bias, "add_bias", UNIFORM(-1, 1), BIAS, tg_add_bias(tp, in[0], in[1])) \
    X(add_bias_x, "add_bias", UNIFORM(-1, 1), "3x4;c:4 1x1;c:1 1x5;c:5", tg_add_bias(tp, in[0], in[1])) \
    X(add_bias_b, "add_bias", UNIFORM(-1, 1), "c:3x4;4 c:1x1;1 c:1x5;5", tg_add_bias(tp, in[0], in[1])) \
    X(sum, "sum", UNIFORM(-1, 1), UN, tg_sum(tp, in[0])) \
    X(mean, "mean", UNIFORM(-1, 1), UN, tg_mean(tp, in[0])) \
    X(sum_axis_0, "sum_axis", UNIFORM(-1, 1), AXIS_0, tg_sum_axis(tp, in[0], 0, false)) \
    X(sum_axis_0_keep, "sum_axis", UNIFORM(-1, 1), AXIS_0, tg_sum_axis(tp, in[0], 0, true)) \
    X(sum_axis_1, "sum_axis", UNIFORM(-1, 1), AXIS_1, tg_sum_axis(tp, in[0], 1, false)) \
    X(sum_axis_1_keep, "sum_axis", UNIFORM(-1, 1), AXIS_1, tg_sum_axis(tp, in[0], 1, true)) \
    X(sum_axis_2, "sum_axis", UNIFORM(-1, 1), AXIS_2, tg_sum_axis(tp, in[0], 2, false)) \
    X(sum_axis_2_keep, "sum_axis", UNIFORM(-1, 1), AXIS_2, tg_sum_axis(tp, in[0], 2, true)) \
    X(sum_axis_3, "sum_axis", UNIFORM(-1, 1), AXIS_3, tg_sum_axis(tp, in[0], 3, false)) \
    X(sum_axis_3_keep, "sum_axis", UNIFORM(-1, 1), AXIS_3, tg_sum_axis(tp, in[0], 3, true)) \
    X(sum_axis_m1, "sum_axis", UNIFORM(-1, 1), AXIS_M1, tg_sum_axis(tp, in[0], -1, false)) \
    X(sum_axis_m1_keep, "sum_axis", UNIFORM(-1, 1), AXIS_M1, tg_sum_axis(tp, in[0], -1, true)) \
    X(sum_axis_m2, "sum_axis", UNIFORM(-1, 1), AXIS_M2, tg_sum_axis(tp, in[0], -2, false)) \
    X(sum_axis_m2_keep, "sum_axis", UNIFORM(-1, 1), AXIS_M2, tg_sum_axis(tp, in[0], -2, true)) \
    X(sum_axis_m3, "sum_axis", UNIFORM(-1, 1), AXIS_M3, tg_sum_axis(tp, in[0], -3, false)) \
    X(sum_axis_m3_keep, "sum_axis", UNIFORM(-1, 1), AXIS_M3, tg_sum_axis(tp, in[0], -3, true)) \
    X(sum_axis_m4, "sum_axis", UNIFORM(-1, 1), AXIS_M4, tg_sum_axis(tp, in[0], -4, false)) \
    X(sum_axis_m4_keep, "sum_axis", UNIFORM(-1, 1), AXIS_M4, tg_sum_axis(tp, in[0], -4, true)) \
    X(conv2d, "conv2d", UNIFORM(-1, 1), "1x1x3x3;2x1x2x2;2 2x3x4x5;4x3x3x3;4 2x2x1x4;3x2x1x2;3 1x1x1x1;1x1x1x1;1 0x2x3x3;2x2x2x2;2 1x0x3x3;2x0x2x2;2 1x2x3x3;0x2x2x2;0", tg_conv2d(tp, in[0], in[1], in[2], NULL)) \
    X(conv2d_nobias, "conv2d", UNIFORM(-1, 1), "2x3x4x5;4x3x3x3 1x1x2x2;1x1x2x2 1x2x1x1;3x2x1x1", tg_conv2d(tp, in[0], in[1], NULL, NULL)) \
    X(conv2d_1x1, "conv2d", UNIFORM(-1, 1), "2x3x2x3;4x3x1x1;4 2x4x3x1;2x4x1x1;2", tg_conv2d(tp, in[0], in[1], in[2], NULL)) \
    X(conv2d_stride_pad, "conv2d", UNIFORM(-1, 1), "2x2x5x4;3x2x3x3;3 1x1x1x1;1x1x1x1;1", tg_conv2d(tp, in[0], in[1], in[2], &(tg_conv_opts){.stride = {2, 1}, .padding = {1, 2}})) \
    X(conv2d_dilation, "conv2d", UNIFORM(-1, 1), "1x2x6x7;2x2x2x2;2 2x1x5x4;1x1x3x2;1", tg_conv2d(tp, in[0], in[1], in[2], &(tg_conv_opts){.dilation = {2, 3}})) \
    X(conv2d_groups, "conv2d", UNIFORM(-1, 1), "2x4x3x3;6x2x2x2;6 1x2x1x1;2x1x3x3;2", tg_conv2d(tp, in[0], in[1], in[2], &(tg_conv_opts){.padding = {1, 1}, .groups = 2})) \
    X(conv2d_depthwise, "conv2d", UNIFORM(-1, 1), "1x3x4x4;3x1x3x3;3 2x3x2x2;6x1x2x2;6", tg_conv2d(tp, in[0], in[1], in[2], &(tg_conv_opts){.padding = {1, 1}, .groups = 3})) \
    X(conv2d_all, "conv2d", UNIFORM(-1, 1), "2x4x7x6;4x2x3x2;4 1x2x4x4;2x1x2x2;2", tg_conv2d(tp, in[0], in[1], in[2], &(tg_conv_opts){.stride = {2, 2}, .padding = {1, 1}, .dilation = {2, 2}, .groups = 2})) \
    X(conv2d_x, "conv2d", UNIFORM(-1, 1), "2x2x4x5;c:3x2x2x3;c:3", tg_conv2d(tp, in[0], in[1], in[2], &(tg_conv_opts){.stride = {1, 2}, .padding = {1, 0}})) \
    X(conv2d_w, "conv2d", UNIFORM(-1, 1), "c:2x2x4x5;3x2x2x3;c:3", tg_conv2d(tp, in[0], in[1], in[2], &(tg_conv_opts){.stride = {1, 2}, .padding = {1, 0}})) \
    X(conv2d_b, "conv2d", UNIFORM(-1, 1), "c:2x2x4x5;c:3x2x2x3;3", tg_conv2d(tp, in[0], in[1], in[2], &(tg_conv_opts){.stride = {1, 2}, .padding = {1, 0}})) \
    X(conv1d, "conv1d", UNIFORM(-1, 1), "2x3x5;4x3x2;4 1x1x1;1x1x1;1 0x2x3;1x2x2;1", tg_conv1d(tp, in[0], in[1], in[2], NULL)) \
    X(conv1d_nobias, "conv1d", UNIFORM(-1, 1), "1x2x4;3x2x4 2x1x3;2x1x1", tg_conv1d(tp, in[0], in[1], NULL, NULL)) \
    X(conv1d_stride_pad_dilation, "conv1d", UNIFORM(-1, 1), "1x2x9;3x2x3;3 2x1x2;2x1x2;2", tg_conv1d(tp, in[0], in[1], in[2], &(tg_conv_opts){.stride = {2}, .padding = {1}, .dilation = {2}})) \
    X(conv1d_groups, "conv1d", UNIFORM(-1, 1), "2x4x6;4x2x2;4 1x2x1;2x1x3;2", tg_conv1d(tp, in[0], in[1], in[2], &(tg_conv_opts){.padding = {1}, .groups = 2})) \
    X(max_pool2d, "max_pool2d", UNIFORM(-1, 1), "1x1x4x4 2x3x5x5 1x1x2x2 0x2x4x4 2x0x4x4", tg_max_pool2d(tp, in[0], (int[]){2, 2}, NULL, NULL)) \
    X(max_pool2d_pad, "max_pool2d", UNIFORM(-1, 1), "1x2x5x5 2x1x1x1 1x1x3x4", tg_max_pool2d(tp, in[0], (int[]){3, 2}, (int[]){2, 1}, (int[]){1, 1})) \
    X(max_pool2d_1, "max_pool2d", UNIFORM(-1, 1), "1x1x1x1 2x2x3x1", tg_max_pool2d(tp, in[0], (int[]){1, 1}, (int[]){1, 1}, (int[]){0, 0})) \
    X(avg_pool2d, "avg_pool2d", UNIFORM(-1, 1), "1x1x4x4 2x3x5x5 1x1x2x2 0x2x4x4", tg_avg_pool2d(tp, in[0], (int[]){2, 2}, NULL, NULL)) \
    X(avg_pool2d_pad, "avg_pool2d", UNIFORM(-1, 1), "2x1x4x5 1x2x1x1 1x1x3x2", tg_avg_pool2d(tp, in[0], (int[]){2, 3}, (int[]){1, 2}, (int[]){1, 1})) \
    X(mean_axis_0, "mean_axis", UNIFORM(-1, 1), AXIS0_0, tg_mean_axis(tp, in[0], 0, false)) \
    X(mean_axis_0_keep, "mean_axis", UNIFORM(-1, 1), AXIS0_0, tg_mean_axis(tp, in[0], 0, true)) \
    X(mean_axis_1, "mean_axis", UNIFORM(-1, 1), AXIS0_1, tg_mean_axis(tp, in[0], 1, false)) \
    X(mean_axis_1_keep, "mean_axis", UNIFORM(-1, 1), AXIS0_1, tg_mean_axis(tp, in[0], 1, true)) \
    X(mean_axis_m1, "mean_axis", UNIFORM(-1, 1), AXIS0_M1, tg_mean_axis(tp, in[0], -1, false)) \
    X(mean_axis_m1_keep, "mean_axis", UNIFORM(-1, 1), AXIS0_M1, tg_mean_axis(tp, in[0], -1, true)) \
    X(mean_axis_m2, "mean_axis", UNIFORM(-1, 1), AXIS0_M2, tg_mean_axis(tp, in[0], -2, false)) \
    X(mean_axis_m2_keep, "mean_axis", UNIFORM(-1, 1), AXIS0_M2, tg_mean_axis(tp, in[0], -2, true)) \
    X(max_axis_0, "max_axis", UNIFORM(-1, 1), AXIS0_0, tg_max_axis(tp, in[0], 0, false)) \
    X(max_axis_0_keep, "max_axis", UNIFORM(-1, 1), AXIS0_0, tg_max_axis(tp, in[0], 0, true)) \
    X(max_axis_1, "max_axis", UNIFORM(-1, 1), AXIS0_1, tg_max_axis(tp, in[0], 1, false)) \
    X(max_axis_1_keep, "max_axis", UNIFORM(-1, 1), AXIS0_1, tg_max_axis(tp, in[0], 1, true)) \
    X(max_axis_m1, "max_axis", UNIFORM(-1, 1), AXIS0_M1, tg_max_axis(tp, in[0], -1, false)) \
    X(max_axis_m1_keep, "max_axis", UNIFORM(-1, 1), AXIS0_M1, tg_max_axis(tp, in[0], -1, true)) \
    X(max_axis_m2, "max_axis", UNIFORM(-1, 1), AXIS0_M2, tg_max_axis(tp, in[0], -2, false)) \
    X(max_axis_m2_keep, "max_axis", UNIFORM(-1, 1), AXIS0_M2, tg_max_axis(tp, in[0], -2, true)) \
    X(min_axis_0, "min_axis", UNIFORM(-1, 1), AXIS0_0, tg_min_axis(tp, in[0], 0, false)) \
    X(min_axis_0_keep, "min_axis", UNIFORM(-1, 1), AXIS0_0, tg_min_axis(tp, in[0], 0, true)) \
    X(min_axis_1, "min_axis", UNIFORM(-1, 1), AXIS0_1, tg_min_axis(tp, in[0], 1, false)) \
    X(min_axis_1_keep, "min_axis", UNIFORM(-1, 1), AXIS0_1, tg_min_axis(tp, in[0], 1, true)) \
    X(min_axis_m1, "min_axis", UNIFORM(-1, 1), AXIS0_M1, tg_min_axis(tp, in[0], -1, false)) \
    X(min_axis_m1_keep, "min_axis", UNIFORM(-1, 1), AXIS0_M1, tg_min_axis(tp, in[0], -1, true)) \
    X(min_axis_m2, "min_axis", UNIFORM(-1, 1), AXIS0_M2, tg_min_axis(tp, in[0], -2, false)) \
    X(min_axis_m2_keep, "min_axis", UNIFORM(-1, 1), AXIS0_M2, tg_min_axis(tp, in[0], -2, true)) \
    X(logsumexp_0, "logsumexp", UNIFORM(-2, 2), AXIS0_0, tg_logsumexp(tp, in[0], 0, false)) \
    X(logsumexp_0_keep, "logsumexp", UNIFORM(-2, 2), AXIS0_0, tg_logsumexp(tp, in[0], 0, true)) \
    X(logsumexp_1, "logsumexp", UNIFORM(-2, 2), AXIS0_1, tg_logsumexp(tp, in[0], 1, false)) \
    X(logsumexp_1_keep, "logsumexp", UNIFORM(-2, 2), AXIS0_1, tg_logsumexp(tp, in[0], 1, true)) \
    X(logsumexp_m1, "logsumexp", UNIFORM(-2, 2), AXIS0_M1, tg_logsumexp(tp, in[0], -1, false)) \
    X(logsumexp_m1_keep, "logsumexp", UNIFORM(-2, 2), AXIS0_M1, tg_logsumexp(tp, in[0], -1, true)) \
    X(logsumexp_m2, "logsumexp", UNIFORM(-2, 2), AXIS0_M2, tg_logsumexp(tp, in[0], -2, false)) \
    X(logsumexp_m2_keep, "logsumexp", UNIFORM(-2, 2), AXIS0_M2, tg_logsumexp(tp, in[0], -2, true)) \
    X(full_like, "full_like", UNIFORM(-1, 1), UN0, tg_full_like(tp, in[0], 2.5)) \
    X(argmax_1, "argmax", UNIFORM(-1, 1), AXIS0_1, tg_argmax(tp, in[0], 1, false)) \
    X(argmax_m1_ties, "argmax", TIES(-1, 1, 0.5), AXIS0_M1, tg_argmax(tp, in[0], -1, true)) \
    X(softmax, "softmax", UNIFORM(-2, 2), ROWS, tg_softmax(tp, in[0])) \
    X(log_softmax, "log_softmax", UNIFORM(-2, 2), ROWS, tg_log_softmax(tp, in[0])) \
    X(frobenius_loss, "frobenius_loss", UNIFORM(-1, 1), PAIRS, tg_frobenius_loss(tp, in[0], in[1])) \
    X(frobenius_loss_p, "frobenius_loss", UNIFORM(-1, 1), "3x4;c:3x4 1;c:1", tg_frobenius_loss(tp, in[0], in[1])) \
    X(frobenius_loss_t, "frobenius_loss", UNIFORM(-1, 1), "c:3x4;3x4 c:1;1", tg_frobenius_loss(tp, in[0], in[1])) \
    X(mse_loss, "mse_loss", UNIFORM(-1, 1), PAIRS, tg_mse_loss(tp, in[0], in[1])) \
    X(mse_loss_p, "mse_loss", UNIFORM(-1, 1), "3x4;c:3x4 1;c:1", tg_mse_loss(tp, in[0], in[1])) \
    X(mse_loss_t, "mse_loss", UNIFORM(-1, 1), "c:3x4;3x4 c:1;1", tg_mse_loss(tp, in[0], in[1])) \
    X(softmax_cross_entropy, "softmax_cross_entropy", UNIFORM(0, 1), LOGITS, tg_softmax_cross_entropy(tp, in[0], in[1])) \
    X(softmax_cross_entropy_z, "softmax_cross_entropy", UNIFORM(0, 1), "3x4;c:3x4 1x1;c:1x1 1x5;c:1x5", tg_softmax_cross_entropy(tp, in[0], in[1])) \
    X(softmax_cross_entropy_t, "softmax_cross_entropy", UNIFORM(0, 1), "c:3x4;3x4 c:1x1;1x1 c:1x5;1x5", tg_softmax_cross_entropy(tp, in[0], in[1])) \
    X(layer_norm, "layer_norm", UNIFORM(-1, 1), LNORM, tg_layer_norm(tp, in[0], in[1], in[2], 1e-5)) \
    X(layer_norm_plain, "layer_norm", UNIFORM(-1, 1), "3x4 2x3x5 1x1 6", tg_layer_norm(tp, in[0], NULL, NULL, 1e-5)) \
    X(layer_norm_gamma, "layer_norm", UNIFORM(-1, 1), "3x4;4 2x1x5;5", tg_layer_norm(tp, in[0], in[1], NULL, 1e-5)) \
    X(layer_norm_beta, "layer_norm", UNIFORM(-1, 1), "3x4;4 2x1x5;5", tg_layer_norm(tp, in[0], NULL, in[1], 1e-5)) \
    X(layer_norm_x, "layer_norm", UNIFORM(-1, 1), "3x4;c:4;c:4 2x3x5;c:5;c:5", tg_layer_norm(tp, in[0], in[1], in[2], 1e-5)) \
    X(layer_norm_affine, "layer_norm", UNIFORM(-1, 1), "c:3x4;4;4 c:2x3x5;5;5", tg_layer_norm(tp, in[0], in[1], in[2], 1e-5)) \
    X(layer_norm_eps, "layer_norm", UNIFORM(-1, 1), "3x4;4;4 2x2x3;3;3", tg_layer_norm(tp, in[0], in[1], in[2], 0.5)) \
    X(layer_norm_eps0, "layer_norm", UNIFORM(-1, 1), "3x4;4;4", tg_layer_norm(tp, in[0], in[1], in[2], 0)) \
    X(layer_norm_empty, "layer_norm", UNIFORM(-1, 1), "0x3;3;3 3x0;0;0", tg_layer_norm(tp, in[0], in[1], in[2], 1e-5)) \
    X(batch_norm, "batch_norm", UNIFORM(-1, 1), BNORM, tg_batch_norm(tp, in[0], in[1], in[2], NULL, NULL, true, 0.1, 1e-5)) \
    X(batch_norm_plain, "batch_norm", UNIFORM(-1, 1), "4x3 2x2x3x1", tg_batch_norm(tp, in[0], NULL, NULL, NULL, NULL, true, 0.1, 1e-5)) \
    X(batch_norm_x, "batch_norm", UNIFORM(-1, 1), "4x3;c:3;c:3 2x3x2x2;c:3;c:3", tg_batch_norm(tp, in[0], in[1], in[2], NULL, NULL, true, 0.1, 1e-5)) \
    X(batch_norm_gamma, "batch_norm", UNIFORM(-1, 1), "4x3;3 2x2x3x1;2", tg_batch_norm(tp, in[0], in[1], NULL, NULL, NULL, true, 0.1, 1e-5)) \
    X(batch_norm_beta, "batch_norm", UNIFORM(-1, 1), "4x3;3 2x2x3x1;2", tg_batch_norm(tp, in[0], NULL, in[1], NULL, NULL, true, 0.1, 1e-5)) \
    X(batch_norm_eps, "batch_norm", UNIFORM(-1, 1), "4x3;3;3", tg_batch_norm(tp, in[0], in[1], in[2], NULL, NULL, true, 0.1, 0.5)) \
    X(batch_norm_empty, "batch_norm", UNIFORM(-1, 1), "0x3;3;3 2x3x0x2;3;3 2x0;0;0", tg_batch_norm(tp, in[0], in[1], in[2], NULL, NULL, true, 0.1, 1e-5)) \
    X(batch_norm_eval, "batch_norm", UNIFORM(-1, 1), BNORM_EVAL, tg_batch_norm(tp, in[0], in[1], in[2], in[3], in[4], false, 0.1, 1e-5)) \
    X(batch_norm_eval_plain, "batch_norm", UNIFORM(-1, 1), "4x3;" BNORM_STATS(3) " 1x2x2x2;" BNORM_STATS(2), tg_batch_norm(tp, in[0], NULL, NULL, in[1], in[2], false, 0.1, 1e-5)) \
    X(batch_norm_eval_gamma, "batch_norm", UNIFORM(-1, 1), "4x3;3;" BNORM_STATS(3), tg_batch_norm(tp, in[0], in[1], NULL, in[2], in[3], false, 0.1, 1e-5)) \
    X(batch_norm_eval_beta, "batch_norm", UNIFORM(-1, 1), "4x3;3;" BNORM_STATS(3), tg_batch_norm(tp, in[0], NULL, in[1], in[2], in[3], false, 0.1, 1e-5)) \
    X(batch_norm_eval_empty, "batch_norm", UNIFORM(-1, 1), "0x3;3;3;" BNORM_STATS(3), tg_batch_norm(tp, in[0], in[1], in[2], in[3], in[4], false, 0.1, 1e-5)) \
    X(dropout, "dropout", UNIFORM(-1, 1), "3x4 2x3x4x5 1 scalar 0x3", tg_dropout(tp, tu_reseed(tp, in[0]), 0.5, tu_rng())) \
    X(dropout_p09, "dropout", UNIFORM(-1, 1), "20x10", tg_dropout(tp, tu_reseed(tp, in[0]), 0.9, tu_rng())) \
    X(dropout_p0, "dropout", UNIFORM(-1, 1), "3x4 scalar", tg_dropout(tp, in[0], 0, NULL)) \
    X(reshape_flat, "reshape", UNIFORM(-1, 1), "2x3x4 1 scalar 0x3 2x1x3x1", tg_reshape(tp, in[0], 1, (int64_t[]){-1})) \
    X(reshape_m1x2, "reshape", UNIFORM(-1, 1), "3x4 2x1x2 4 0x6", tg_reshape(tp, in[0], 2, (int64_t[]){-1, 2})) \
    X(reshape_3x1x2, "reshape", UNIFORM(-1, 1), "6 2x3 1x6x1", tg_reshape(tp, in[0], 3, (int64_t[]){3, 1, 2})) \
    X(reshape_scalar, "reshape", UNIFORM(-1, 1), "1 1x1x1 scalar", tg_reshape(tp, in[0], 0, NULL)) \
    X(permute_102, "permute", UNIFORM(-1, 1), "2x3x4 1x1x1 2x0x3", tg_permute(tp, in[0], (int[TG_MAX_RANK]){1, 0, 2})) \
    X(permute_m10m21, "permute", UNIFORM(-1, 1), "2x3x1x2 1x2x3x1 2x2x2x2", tg_permute(tp, in[0], (int[]){-1, 0, -2, 1})) \
    X(permute_scalar, "permute", UNIFORM(-1, 1), "scalar", tg_permute(tp, in[0], NULL)) \
    X(slice_1, "slice", UNIFORM(-1, 1), "2x5 1x4x2 3x0 2x1", tg_slice(tp, in[0], 1, -3, 100, 2)) \
    X(slice_m1, "slice", UNIFORM(-1, 1), "4x3 2x2x2 5 3x1", tg_slice(tp, in[0], -1, 1, 2, 1)) \
    X(slice_0_big_step, "slice", UNIFORM(-1, 1), "3x2 1 2x1x2x1", tg_slice(tp, in[0], 0, 0, 10, 1000000)) \
    X(slice_m2_empty, "slice", UNIFORM(-1, 1), "6x2", tg_slice(tp, in[0], -2, 5, 1, 1)) \
    X(concat_1, "concat", UNIFORM(-1, 1), "2x3;2x1;2x2 1x1;1x2;1x1 2x0;2x2;2x1 2x1x3;2x2x3;2x1x3", tg_concat(tp, in, 3, 1)) \
    X(concat_1_ends, "concat", UNIFORM(-1, 1), "2x3;c:2x1;2x2", tg_concat(tp, in, 3, 1)) \
    X(concat_m1, "concat", UNIFORM(-1, 1), "3;2 0;4 2x1x2;2x1x3", tg_concat(tp, in, 2, -1)) \
    X(concat_0, "concat", UNIFORM(-1, 1), "2x3x2;1x3x2 0x3;2x3", tg_concat(tp, in, 2, 0)) \
    X(concat_one, "concat", UNIFORM(-1, 1), "3x2", tg_concat(tp, in, 1, 0)) \
    X(stack_0, "stack", UNIFORM(-1, 1), "2x3;2x3 ; 0x2;0x2", tg_stack(tp, in, 2, 0)) \
    X(stack_m1, "stack", UNIFORM(-1, 1), "2x2;2x2;2x2 1x3x2;1x3x2;1x3x2 4;4;4", tg_stack(tp, in, 3, -1)) \
    X(stack_1, "stack", UNIFORM(-1, 1), "2x3;2x3;2x3;2x3", tg_stack(tp, in, 4, 1)) \
    X(expand_2x3x4, "expand", UNIFORM(-1, 1), "3x1 1 scalar 2x1x4 1x3x1 2x3x4", tg_expand(tp, in[0], 3, (int64_t[]){2, 3, 4})) \
    X(expand_2x0x4, "expand", UNIFORM(-1, 1), "1x1 2x1x4", tg_expand(tp, in[0], 3, (int64_t[]){2, 0, 4})) \
    X(expand_keep, "expand", UNIFORM(-1, 1), "2x1 1x3 0x1", tg_expand(tp, in[0], 2, (int64_t[]){-1, 3})) \
    X(expand_rank4, "expand", UNIFORM(-1, 1), "3x1 1x1x2", tg_expand(tp, in[0], 4, (int64_t[]){2, 1, 3, 2})) \
    X(pad_3, "pad", UNIFORM(-1, 1), "2x3x1 1x1x1 2x0x2", tg_pad(tp, in[0], (int64_t[TG_MAX_RANK]){1, 0, 2}, (int64_t[TG_MAX_RANK]){0, 3, 1}, 0.5)) \
    X(pad_2, "pad", UNIFORM(-1, 1), "3x2 0x1 1x1", tg_pad(tp, in[0], (int64_t[TG_MAX_RANK]){2, 1}, (int64_t[TG_MAX_RANK]){1, 0}, -3)) \
    X(pad_scalar, "pad", UNIFORM(-1, 1), "scalar", tg_pad(tp, in[0], NULL, NULL, 2)) \
    X(index_select_0, "index_select", UNIFORM(-1, 1), "3x4;i:4@-3:3 4x1x2;i:6@-4:4 3;i:5@0:3", tg_index_select(tp, in[0], 0, in[1])) \
    X(index_select_m1, "index_select", UNIFORM(-1, 1), "2x2;i:3@-2:2 3x2x2;i:4@0:2 0x2;i:3@-2:2 1x1x2;i:2@-2:2", tg_index_select(tp, in[0], -1, in[1])) \
    X(index_select_none, "index_select", UNIFORM(-1, 1), "2x3;i:0@0:3", tg_index_select(tp, in[0], 1, in[1])) \
    X(embedding, "embedding", UNIFORM(-1, 1), "5x3;i:2x3@-5:5 5x1;i:7@0:5 5x0;i:2x2@-5:5 3x4;i:scalar@0:3 6x2;i:2x1x2@-6:6", tg_embedding(tp, in[0], in[1])) \
    X(where, "where", UNIFORM(-1, 1), "3x4;3x4;3x4 3x1;1x4;3x4 2x1x3;4x1; ;2x3;2x1 1x0;2x1;1 2x2x1x3;1x2x1;3", tg_where(tp, tg_relu(tp, in[0]), in[1], in[2])) \
    X(where_b, "where", UNIFORM(-1, 1), "c:3x1;c:1x4;3x4", tg_where(tp, tg_relu(tp, in[0]), in[1], in[2])) \
    X(where_i64, "where", UNIFORM(-1, 1), "i:2x1x3@0:2;4x1; i:2x1x3@-1:2;2x4x3;1x3 i:3x1@0:2;1;3x2 i:scalar@0:2;2x3;2x3", tg_where(tp, in[0], in[1], in[2])) \
    X(cross_entropy, "cross_entropy", UNIFORM(-2, 2), "3x4;i:3@4 1x1;i:1@1 4x1;i:4@1 1x5;i:1@5", tg_cross_entropy(tp, in[0], in[1])) \
    X(bce_with_logits, "bce_with_logits", UNIFORM(-2, 2), PAIRS, tg_bce_with_logits(tp, in[0], in[1])) \
    X(bce_with_logits_x, "bce_with_logits", UNIFORM(-2, 2), "3x4;c:3x4 1;c:1", tg_bce_with_logits(tp, in[0], in[1])) \
    X(bce_with_logits_t, "bce_with_logits", UNIFORM(-2, 2), "c:3x4;3x4 c:1;1", tg_bce_with_logits(tp, in[0], in[1])) \
    X(l1_loss, "l1_loss", UNIFORM(-1, 1), PAIRS, tg_l1_loss(tp, in[0], in[1])) \
    X(l1_loss_t, "l1_loss", UNIFORM(-1, 1), "c:3x4;3x4 c:1;1", tg_l1_loss(tp, in[0], in[1])) \
    X(huber_loss, "huber_loss", UNIFORM(-1, 1), PAIRS, tg_huber_loss(tp, in[0], in[1], 0.5)) \
    X(huber_loss_2, "huber_loss", UNIFORM(-2, 2), PAIRS, tg_huber_loss(tp, in[0], in[1], 2)) \
    X(huber_loss_p, "huber_loss", UNIFORM(-1, 1), "3x4;c:3x4 1;c:1", tg_huber_loss(tp, in[0], in[1], 0.5)) \
    X(maximum_b_apart, "maximum", UNIFORM(-1, 1), "c:3x4;3x4 c:3x4;4 c:2x1x5;1x3x1 c:scalar;2x3", tg_maximum(tp, in[0], in[1])) \
    X(minimum_a_apart, "minimum", UNIFORM(-1, 1), "3x4;c:3x4 3x4;c:4 2x1x5;c:1x3x1 2x3;c:scalar", tg_minimum(tp, in[0], in[1]))
/* clang-format on */

/* ====== The rows as a table ====== */

#define TU_MAX_INPUTS 8 /* inputs a row may have */

typedef struct tu_op {
    const char *id;
    const char *name;
    tu_values values;
    const char *shapes;
    tg_tensor *(*record)(tg_tape *tp, tg_tensor *const *in);
} tu_op;

extern const tu_op tu_ops[];
extern const int tu_n_ops;

/* Copies shape list s (0-based) of op into buf; false when op has fewer lists. */
bool tu_op_shape_list(const tu_op *op, int s, char *buf, size_t size);
/* The number of inputs of op (the ';'-separated tokens of its first shape list). */
int tu_op_arity(const tu_op *op);
/* A generator reset to one fixed seed at every call: an op that draws from it
 * (dropout) draws the same numbers at every recording; a test calls it again
 * before a replay to make the replay draw alike. */
tg_rng *tu_rng(void);
/* Records the identity on x, whose forward resets tu_rng's generator, so an op
 * recorded after it that draws from tu_rng() draws the same numbers at every
 * replay too. tg_gradcheck evaluates by replay, so dropout's rows need it. */
tg_tensor *tu_reseed(tg_tape *tp, tg_tensor *x);

#endif
