/*
 * Extending tapegrad with an op of your own: softplus, y = log(1 + e^x),
 * whose derivative is the logistic sigmoid. An op is a tg_op_def (a name, a
 * forward and a vector-Jacobian product) recorded with tg_custom; once
 * defined it mixes freely with the built-in ops, and tg_gradcheck compares
 * its VJP with central differences. Its optional vjp_graph, the same VJP
 * written with tapegrad ops, lets tg_grad differentiate it twice.
 */
#include <tapegrad/tapegrad.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* ====== softplus: y = log(1 + e^x);  dx += dy * sigmoid(x) ====== */

static tg_status softplus_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in, (void)ctx;
    if (tg_tensor_dtype(out) != TG_F64) return TG_ERR_DTYPE; /* this example keeps to F64 */
    const double *x = tg_tensor_data(in[0]);
    double *y = tg_tensor_data(out);
    /* max(x, 0) + log1p(e^-|x|) never overflows, unlike log(1 + e^x) for large x. */
    for (int64_t i = 0; i < tg_tensor_numel(out); i++)
        y[i] = fmax(x[i], 0.0) + log1p(exp(-fabs(x[i])));
    return TG_OK;
}

static tg_status softplus_vjp(const tg_tensor *grad_out, const tg_tensor *out, tg_tensor *const *in,
                              tg_tensor **grad_in, int n_in, void *ctx)
{
    (void)out, (void)n_in, (void)ctx;
    if (!grad_in[0]) return TG_OK; /* x needs no gradient */
    const double *x = tg_tensor_data(in[0]);
    const double *dy = tg_tensor_data((tg_tensor *)grad_out);
    double *dx = tg_tensor_data(grad_in[0]);
    for (int64_t i = 0; i < tg_tensor_numel(grad_out); i++)
        dx[i] += dy[i] / (1.0 + exp(-x[i])); /* dx += dy * sigmoid(x); add, never assign */
    return TG_OK;
}

/* Optional: the VJP as recorded ops, so that tg_grad with create_graph can
 * differentiate through the op again (second derivatives, Hessian-vector
 * products, tg_gradgradcheck). Without it those calls refuse the op. */
static tg_status softplus_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out,
                                    tg_tensor *const *in, const bool *need, tg_tensor **grad_in,
                                    int n_in, void *ctx)
{
    (void)out, (void)need, (void)n_in, (void)ctx;
    grad_in[0] = tg_mul(tp, dy, tg_sigmoid(tp, in[0])); /* dx = dy ⊙ σ(x) */
    return tg_tape_status(tp);
}

/* 'rules' is optional: the VJP as text, which tg_tape_explain prints. */
static const tg_op_def softplus_def = {.name = "softplus",
                                       .forward = softplus_forward,
                                       .vjp = softplus_vjp,
                                       .vjp_graph = softplus_vjp_graph,
                                       .rules = (const char *const[]){"{dy} ⊙ σ({0})", NULL}};

/* The op's constructor: the output has x's shape. A NULL x or a failed tape
 * passes through tg_custom, which records the error. */
static tg_tensor *softplus(tg_tape *tp, tg_tensor *x)
{
    return tg_custom(tp, &softplus_def, &x, 1, tg_tensor_rank(x), tg_tensor_shape(x), NULL);
}

/* The function tg_gradcheck differentiates: f(x) = sum softplus(x), a scalar. */
static tg_tensor *sum_softplus(tg_tape *tp, tg_tensor *const *inputs, void *ctx)
{
    (void)ctx;
    return tg_sum(tp, softplus(tp, inputs[0]));
}

int main(void)
{
    tg_tensor *x =
        tg_tensor_from(TG_F64, 2, (int64_t[]){2, 3}, (double[]){-3.0, -0.5, 0.0, 0.25, 2.0, 40.0});
    tg_tape *tp = tg_tape_new();
    int status = EXIT_FAILURE;
    if (!x || !tp) {
        fprintf(stderr, "custom_op: out of memory\n");
        goto done;
    }
    tg_tensor_set_requires_grad(x, true);
    tg_tensor_set_name(x, "X");

    /* Use it like any op: record, then one backward and one check of the tape. */
    tg_tensor *f = sum_softplus(tp, &x, NULL);
    if (tg_backward(tp, f) != TG_OK) {
        fprintf(stderr, "custom_op: %s\n", tg_tape_error(tp));
        goto done;
    }
    const double *xv = tg_tensor_data(x), *g = tg_tensor_data(tg_tensor_grad(x));
    printf("f(x) = sum softplus(x) = %.10f\n", tg_tensor_item(f));
    printf("%8s %16s %16s\n", "x", "df/dx (tape)", "sigmoid(x)");
    for (int64_t i = 0; i < tg_tensor_numel(x); i++)
        printf("%8.3f %16.12f %16.12f\n", xv[i], g[i], 1.0 / (1.0 + exp(-xv[i])));
    printf("\nthe backward sweep:\n");
    tg_tape_explain(tp, stdout, 0);

    /* Check the VJP against central differences; x is left exactly as it was. */
    tg_gradcheck_report r;
    tg_status s = tg_gradcheck(sum_softplus, &x, 1, NULL, NULL, &r);
    if (s != TG_OK) {
        fprintf(stderr, "custom_op: %s\n", r.msg); /* why it could not run */
        goto done;
    }
    printf("\ngradcheck: %s, %lld elements checked\n", r.passed ? "passed" : r.msg,
           (long long)r.n_checked);
    printf("  max abs error %.3e, max rel error %.3e\n", r.max_abs_err, r.max_rel_err);
    printf("  worst: input %d, element %lld: analytic %.12f, numeric %.12f\n", r.worst_input,
           (long long)r.worst_index, r.analytic, r.numeric);
    if (!r.passed) goto done;

    /* Second derivatives: record df/dx (create_graph), then differentiate
     * Σ df/dx; softplus'' = σ(x)(1 - σ(x)). */
    tg_tensor *d1, *d2;
    if (tg_grad(tp, f, NULL, &x, 1, &d1, true) != TG_OK ||
        tg_grad(tp, tg_sum(tp, d1), NULL, &x, 1, &d2, false) != TG_OK) {
        fprintf(stderr, "custom_op: %s\n", tg_tape_error(tp));
        goto done;
    }
    const double *h = tg_tensor_data(d2);
    printf("\n%8s %16s %16s\n", "x", "d2f/dx2 (tape)", "s(1-s)");
    for (int64_t i = 0; i < tg_tensor_numel(x); i++) {
        double sg = 1.0 / (1.0 + exp(-xv[i]));
        printf("%8.3f %16.12f %16.12f\n", xv[i], h[i], sg * (1 - sg));
    }
    s = tg_gradgradcheck(sum_softplus, &x, 1, NULL, NULL, &r);
    if (s != TG_OK) {
        fprintf(stderr, "custom_op: %s\n", r.msg);
        goto done;
    }
    printf("gradgradcheck: %s, %lld elements checked\n", r.passed ? "passed" : r.msg,
           (long long)r.n_checked);
    status = r.passed ? EXIT_SUCCESS : EXIT_FAILURE;

done:
    tg_tape_free(tp);
    tg_tensor_free(x);
    return status;
}
