/*
 * The max_abs_err column of docs/ops.md: tg_gradcheck with default options in
 * F64 on every op and every shape list of that table, printing the largest
 * error per op. Each op's output goes through a fixed weighted sum (the
 * custom op 'probe'), so every element of every input's gradient is compared,
 * with weights that would expose a transposed or permuted VJP. Fails when any
 * check fails. Run it with
 *
 *     meson test -C build gradcheck_report -v
 */
#include "testutil.h"

#include <stdio.h>
#include <string.h>

/* ====== probe: y = Σ_k w_k x_k;  dx_k += w_k dy ====== */

static double weight(int64_t k) { return (double)(2 * ((k * 7) % 11) - 9) / 8.0; }

static tg_status probe_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in, (void)ctx;
    double y = 0;
    for (int64_t k = 0; k < tg_tensor_numel(in[0]); k++) y += weight(k) * tu_at(in[0], k);
    tu_put(out, 0, y);
    return TG_OK;
}

static tg_status probe_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                           tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)n_in, (void)ctx;
    if (!gin[0]) return TG_OK;
    for (int64_t k = 0; k < tg_tensor_numel(in[0]); k++) /* dx_k += w_k dy */
        tu_put(gin[0], k, tu_at(gin[0], k) + weight(k) * tu_at(gout, 0));
    return TG_OK;
}

static const tg_op_def probe_def = {.name = "probe", .forward = probe_forward, .vjp = probe_vjp};

/* ====== The table of docs/ops.md ====== */

enum op { ADD, SUB, MUL, DIV, SCALE, NEG, SIGMOID, TANH, RELU, EXP, LOG, SQUARE, MATMUL,
          TRANSPOSE, ADD_BIAS, SUM, MEAN, SUM_AXIS, SOFTMAX, LOG_SOFTMAX, FROBENIUS, MSE, CE };

typedef struct op_case {
    const char *name;
    enum op op;
    int axis;              /* sum_axis */
    bool keep;             /* sum_axis */
    double lo, hi;         /* inputs drawn uniformly from [lo, hi) */
    bool away_from_zero;   /* relu: inputs moved 0.1 away from its kink */
    const char *shapes[10]; /* "A;B" for two inputs, "" for a scalar */
} op_case;

#define BIN {"3x4;3x4", "3x4;4", "2x1x5;1x3x1", "3x1;1x4", ";2x3", "2x3;", "1;1x1", "1x1;1x1", \
             "2x1x3x1;4x1x2"}
#define UN  {"3x4", "1", "1x1", "", "2x1x5", "2x3x1x2"}
/* sum_axis over one axis, dropping it and keeping it as 1, on the same shapes. */
#define SUM_AXIS_CASES(a, ...)                                                           \
    {"sum_axis(" #a ")", SUM_AXIS, a, false, -1, 1, false, {__VA_ARGS__}},                \
    {"sum_axis(" #a ",keep)", SUM_AXIS, a, true, -1, 1, false, {__VA_ARGS__}}

static const op_case cases[] = {
    {"add", ADD, 0, false, -1, 1, false, BIN},
    {"sub", SUB, 0, false, -1, 1, false, BIN},
    {"mul", MUL, 0, false, -1, 1, false, BIN},
    {"div", DIV, 0, false, 0.5, 2, false, BIN},
    {"scale", SCALE, 0, false, -1, 1, false, UN},
    {"neg", NEG, 0, false, -1, 1, false, UN},
    {"sigmoid", SIGMOID, 0, false, -3, 3, false, UN},
    {"tanh", TANH, 0, false, -2, 2, false, UN},
    {"relu", RELU, 0, false, -1, 1, true, UN},
    {"exp", EXP, 0, false, -1, 1, false, UN},
    {"log", LOG, 0, false, 0.5, 2, false, UN},
    {"square", SQUARE, 0, false, -1, 1, false, UN},
    {"matmul", MATMUL, 0, false, -1, 1, false, {"1x1;1x1", "3x1;1x4", "2x5;5x3", "1x4;4x1",
                                                "4x3;3x2"}},
    {"transpose", TRANSPOSE, 0, false, -1, 1, false, {"3x4", "1x1", "1x5", "5x1"}},
    {"add_bias", ADD_BIAS, 0, false, -1, 1, false, {"3x4;4", "1x1;1", "1x5;5", "5x1;1"}},
    {"sum", SUM, 0, false, -1, 1, false, UN},
    {"mean", MEAN, 0, false, -1, 1, false, UN},
    SUM_AXIS_CASES(0, "2x3x4", "1x3x1", "5", "1", "3x4"),
    SUM_AXIS_CASES(1, "2x3x4", "1x3x1", "3x4", "2x1x5"),
    SUM_AXIS_CASES(2, "2x3x4", "1x3x1", "2x1x5"),
    SUM_AXIS_CASES(3, "2x1x3x2", "1x1x1x1", "2x3x1x4"),
    SUM_AXIS_CASES(-1, "2x3x4", "3x4", "1x1", "5", "2x1x3x2"),
    SUM_AXIS_CASES(-2, "2x3x4", "3x4", "1x1"),
    SUM_AXIS_CASES(-3, "2x3x4", "1x3x1", "2x1x5"),
    SUM_AXIS_CASES(-4, "2x1x3x2", "1x1x1x1", "3x2x1x2"),
    {"softmax", SOFTMAX, 0, false, -2, 2, false, {"1x1", "3x4", "2x3x5", "5", "4x1"}},
    {"log_softmax", LOG_SOFTMAX, 0, false, -2, 2, false, {"1x1", "3x4", "2x3x5", "5", "4x1"}},
    {"frobenius_loss", FROBENIUS, 0, false, -1, 1, false, {"3x4;3x4", "1;1", "1x1;1x1", ";",
                                                            "2x3x2;2x3x2"}},
    {"mse_loss", MSE, 0, false, -1, 1, false, {"3x4;3x4", "1;1", "1x1;1x1", ";", "2x3x2;2x3x2"}},
    {"softmax_cross_entropy", CE, 0, false, 0, 1, false, {"3x4;3x4", "1x1;1x1", "1x5;1x5",
                                                           "4x1;4x1", "2x3;2x3"}},
};

static tg_tensor *record(tg_tape *tp, tg_tensor *const *in, const op_case *c)
{
    switch (c->op) {
    case ADD: return tg_add(tp, in[0], in[1]);
    case SUB: return tg_sub(tp, in[0], in[1]);
    case MUL: return tg_mul(tp, in[0], in[1]);
    case DIV: return tg_div(tp, in[0], in[1]);
    case SCALE: return tg_scale(tp, in[0], -1.5);
    case NEG: return tg_neg(tp, in[0]);
    case SIGMOID: return tg_sigmoid(tp, in[0]);
    case TANH: return tg_tanh(tp, in[0]);
    case RELU: return tg_relu(tp, in[0]);
    case EXP: return tg_exp(tp, in[0]);
    case LOG: return tg_log(tp, in[0]);
    case SQUARE: return tg_square(tp, in[0]);
    case MATMUL: return tg_matmul(tp, in[0], in[1]);
    case TRANSPOSE: return tg_transpose(tp, in[0]);
    case ADD_BIAS: return tg_add_bias(tp, in[0], in[1]);
    case SUM: return tg_sum(tp, in[0]);
    case MEAN: return tg_mean(tp, in[0]);
    case SUM_AXIS: return tg_sum_axis(tp, in[0], c->axis, c->keep);
    case SOFTMAX: return tg_softmax(tp, in[0]);
    case LOG_SOFTMAX: return tg_log_softmax(tp, in[0]);
    case FROBENIUS: return tg_frobenius_loss(tp, in[0], in[1]);
    case MSE: return tg_mse_loss(tp, in[0], in[1]);
    case CE: return tg_softmax_cross_entropy(tp, in[0], in[1]);
    }
    return NULL;
}

static tg_tensor *probed(tg_tape *tp, tg_tensor *const *in, void *ctx)
{
    tg_tensor *y = record(tp, in, ctx);
    return tg_custom(tp, &probe_def, &y, 1, 0, NULL, NULL);
}

/* Gradchecks one shape list ("A;B") of case c into *worst; false when it fails. */
static bool check_shapes(const op_case *c, int s, tg_gradcheck_report *worst)
{
    tg_tensor *in[2] = {NULL, NULL};
    int n = 0;
    char buf[64];
    snprintf(buf, sizeof buf, "%s", c->shapes[s]);
    for (char *tok = buf, *next; tok; tok = next, n++) {
        if ((next = strchr(tok, ';'))) *next++ = '\0';
        in[n] = tu_random(TG_F64, tok, c->lo, c->hi, 1000 + 10 * (uint64_t)s + (uint64_t)n);
        for (int64_t e = 0; c->away_from_zero && e < tg_tensor_numel(in[n]); e++) {
            double v = tu_at(in[n], e);
            tu_put(in[n], e, v < 0 ? v - 0.1 : v + 0.1);
        }
        tg_tensor_set_requires_grad(in[n], true);
    }
    tg_gradcheck_report r;
    tg_status st = tg_gradcheck(probed, in, n, (void *)c, NULL, &r);
    bool ok = st == TG_OK && r.passed;
    if (!ok) printf("FAIL %s on %s: %s\n", c->name, c->shapes[s], tg_status_str(st));
    if (r.max_abs_err > worst->max_abs_err) worst->max_abs_err = r.max_abs_err;
    if (r.max_rel_err > worst->max_rel_err) worst->max_rel_err = r.max_rel_err;
    worst->n_checked += r.n_checked;
    for (int j = 0; j < n; j++) tg_tensor_free(in[j]);
    return ok;
}

int main(void)
{
    int failures = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        tg_gradcheck_report worst = {0};
        for (int s = 0; s < 10 && cases[i].shapes[s]; s++)
            failures += !check_shapes(&cases[i], s, &worst);
        printf("%-24s max_abs_err %.1e  max_rel_err %.1e  (%lld elements)\n", cases[i].name,
               worst.max_abs_err, worst.max_rel_err, (long long)worst.n_checked);
    }
    return failures != 0;
}
