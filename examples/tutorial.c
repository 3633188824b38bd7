/*
 * The program behind docs/tutorial.md, "Backprop on a tape": every step of
 * the tutorial is one function here, and every code block and output block
 * of the tutorial is cut from this file and from what it prints. The test
 * 'tutorial_docs' (tools/check-tutorial) fails when the two drift apart.
 *
 * Each step prints a line "[name]" and then its output. The lines between
 * "tutorial: name" and "tutorial end" comments are the code the tutorial
 * shows for that step. Gradients of tensors computed "by hand" are written
 * out with plain loops from the formulas, next to what the tape computed.
 */
#include <tapegrad/tapegrad.h>

#include <stdio.h>
#include <stdlib.h>

/* ====== Helpers: leaves, checks, printing ====== */

#define MAX_LEAVES 32
static tg_tensor *leaves[MAX_LEAVES]; /* every leaf made, freed at the end of main */
static int n_leaves;

/* A leaf named 'name' (NULL for none) of shape [rows, cols], or [rows] when
 * cols is 0, holding 'v'; 'grad' turns requires_grad on. */
static tg_tensor *leaf(const char *name, int64_t rows, int64_t cols, const double *v, bool grad)
{
    tg_tensor *t = cols ? tg_tensor_from(TG_F64, 2, (int64_t[]){rows, cols}, v)
                        : tg_tensor_from(TG_F64, 1, (int64_t[]){rows}, v);
    if (!t || n_leaves == MAX_LEAVES) {
        fprintf(stderr, "tutorial: cannot make leaf %s\n", name ? name : "");
        exit(EXIT_FAILURE);
    }
    tg_tensor_set_name(t, name);
    tg_tensor_set_requires_grad(t, grad);
    return leaves[n_leaves++] = t;
}

/* Exits with the tape's error (or the status) when a call did not succeed. */
static void must(const tg_tape *tp, tg_status s)
{
    if (s == TG_OK) return;
    fprintf(stderr, "tutorial: %s\n", tg_tape_status(tp) ? tg_tape_error(tp) : tg_status_str(s));
    exit(EXIT_FAILURE);
}

/* 'label', then the rows of a rows x cols matrix in the layout tg_tape_explain uses. */
static void show_values(const char *label, int64_t rows, int64_t cols, const double *v)
{
    char text[16][32];
    int width = 0;
    for (int64_t k = 0; k < rows * cols && k < 16; k++) {
        int w = snprintf(text[k], sizeof text[k], "%.6g", v[k]);
        width = w > width ? w : width;
    }
    printf("%s\n", label);
    for (int64_t k = 0; k < rows * cols && k < 16; k++)
        printf("%s%*s%s", k % cols ? "  " : "      [ ", width, text[k],
               k % cols == cols - 1 ? " ]\n" : "");
}

static void show(const char *label, tg_tensor *t)
{
    int rank = tg_tensor_rank(t);
    int64_t cols = rank ? tg_tensor_shape(t)[rank - 1] : 1;
    show_values(label, tg_tensor_numel(t) / cols, cols, tg_tensor_data(t));
}

/* ====== Step 1: a VJP is a row vector times the Jacobian ====== */

static void step_jacobian(void)
{
    printf("[jacobian]\n");
    tg_tape *tp = tg_tape_new();
    /* tutorial: jacobian */
    tg_tensor *x = leaf("x", 1, 3, (double[]){1, 2, 3}, true);
    tg_tensor *w = leaf("W", 3, 2, (double[]){0.1, 0.2, 0.3, 0.4, 0.5, 0.6}, false);
    tg_tensor *z = tg_matmul(tp, x, w); /* z = x W, [1x2]; its Jacobian dz/dx is [2x3] */
    tg_tensor *e1 = leaf("e1", 1, 2, (double[]){1, 0}, false);
    tg_tensor *e2 = leaf("e2", 1, 2, (double[]){0, 1}, false);
    must(tp, tg_backward_seed(tp, z, e1)); /* dx = e1 J: row 1 of J */
    show("e1 J =", tg_tensor_grad(x));
    tg_tensor_zero_grad(x);                /* leaves accumulate; start the next product from 0 */
    must(tp, tg_backward_seed(tp, z, e2)); /* dx = e2 J: row 2 of J */
    show("e2 J =", tg_tensor_grad(x));
    /* tutorial end */
    tg_tape_free(tp);
}

/* ====== Step 2: an elementwise function's VJP is a Hadamard product ====== */

static void step_hadamard(void)
{
    printf("[hadamard]\n");
    tg_tape *tp = tg_tape_new();
    /* tutorial: hadamard */
    tg_tensor *z = leaf("Z", 2, 3, (double[]){-1, 0, 1, 2, -0.5, 0.25}, true);
    tg_tensor *a = tg_sigmoid(tp, z);
    tg_tensor *s = tg_square(tp, a);
    tg_tensor *c = tg_sum(tp, s); /* C = sum of A (.) A over all entries */
    tg_tensor_set_name(a, "A");
    tg_tensor_set_name(s, "S");
    tg_tensor_set_name(c, "C");
    must(tp, tg_backward(tp, c));
    must(tp, tg_tape_explain(tp, stdout, TG_EXPLAIN_VALUES));
    /* tutorial end */

    /* By hand: dA = 2 A, and sigma'(z) = a (1 - a) from the saved activations. */
    const double *av = tg_tensor_data(a);
    double dz[6];
    for (int k = 0; k < 6; k++)
        dz[k] = 2 * av[k] * av[k] * (1 - av[k]);
    show_values("by hand, 2 A ⊙ A ⊙ (1 − A) =", 2, 3, dz);
    tg_tape_free(tp);
}

/* ====== Step 3: matrix product, dX = dZ W^T and dW = X^T dZ ====== */

static void step_matmul(void)
{
    printf("[matmul]\n");
    tg_tape *tp = tg_tape_new();
    /* tutorial: matmul */
    tg_tensor *x = leaf("X", 2, 3, (double[]){1, 2, 3, 4, 5, 6}, true);
    tg_tensor *w = leaf("W", 3, 2, (double[]){0.5, -1, 0.25, 2, -0.5, 1}, true);
    tg_tensor *z = tg_matmul(tp, x, w);
    tg_tensor_set_name(z, "Z");
    tg_tensor *dz = leaf(NULL, 2, 2, (double[]){1, -1, 0.5, 2}, false);
    must(tp, tg_backward_seed(tp, z, dz)); /* as if dC/dZ were dz */
    must(tp, tg_tape_explain(tp, stdout, TG_EXPLAIN_VALUES));
    /* tutorial end */

    /* By hand, the chain rule entry by entry: Z_il = sum_j X_ij W_jl, so
     * dX_ij = sum_l dZ_il W_jl and dW_jl = sum_i X_ij dZ_il. */
    const double *xv = tg_tensor_data(x), *wv = tg_tensor_data(w), *g = tg_tensor_data(dz);
    double dx[6] = {0}, dw[6] = {0};
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            for (int l = 0; l < 2; l++) {
                dx[i * 3 + j] += g[i * 2 + l] * wv[j * 2 + l];
                dw[j * 2 + l] += xv[i * 3 + j] * g[i * 2 + l];
            }
    show_values("by hand, dX_ij = Σ_l dZ_il W_jl =", 2, 3, dx);
    show_values("by hand, dW_jl = Σ_i X_ij dZ_il =", 3, 2, dw);
    tg_tape_free(tp);
}

/* ====== Step 4: the bias gradient is a sum over the rows ====== */

static void step_bias(void)
{
    printf("[bias]\n");
    tg_tape *tp = tg_tape_new();
    /* tutorial: bias */
    tg_tensor *x = leaf("X", 4, 3, (double[]){1, 0, 2, 0, 1, 1, 3, 1, 0, 1, 2, 1}, false);
    tg_tensor *w = leaf("W", 3, 2, (double[]){0.5, -1, 0.25, 2, -0.5, 1}, false);
    tg_tensor *b = leaf("b", 2, 0, (double[]){0.1, -0.2}, true);
    tg_tensor *z = tg_add_bias(tp, tg_matmul(tp, x, w), b); /* b added to each of the 4 rows */
    tg_tensor_set_name(z, "Z");
    tg_tensor *dz = leaf(NULL, 4, 2, (double[]){1, 0, 0.5, -1, -2, 1, 0.25, 3}, false);
    must(tp, tg_backward_seed(tp, z, dz));
    must(tp, tg_tape_explain(tp, stdout, TG_EXPLAIN_VALUES));
    /* tutorial end */
    tg_tape_free(tp);
}

/* ====== Step 5: the helper gradients delta are the intermediates' gradients ====== */

static void step_network(void)
{
    printf("[network]\n");
    tg_tape *tp = tg_tape_new();
    /* tutorial: network */
    tg_tensor *x = leaf("X", 1, 2, (double[]){0.5, -1.2}, false);
    tg_tensor *y = leaf("Y", 1, 2, (double[]){0.3, -0.7}, false);
    tg_tensor *w2 = leaf("W2", 2, 3, (double[]){0.1, -0.4, 0.7, 0.3, 0.2, -0.6}, true);
    tg_tensor *b2 = leaf("b2", 3, 0, (double[]){0.05, -0.1, 0.2}, true);
    tg_tensor *w3 = leaf("W3", 3, 2, (double[]){0.6, -0.3, -0.8, 0.5, 0.4, 0.9}, true);
    tg_tensor *b3 = leaf("b3", 2, 0, (double[]){-0.2, 0.1}, true);

    tg_tensor *z2 = tg_add_bias(tp, tg_matmul(tp, x, w2), b2);      /* Z2 = X W2 + b2 */
    tg_tensor *a2 = tg_sigmoid(tp, z2);                             /* A2 = σ(Z2) */
    tg_tensor *z3 = tg_add_bias(tp, tg_matmul(tp, a2, w3), b3);     /* A3 = Z3 */
    tg_tensor *c = tg_scale(tp, tg_frobenius_loss(tp, z3, y), 0.5); /* C = ½‖Z3 − Y‖² */
    tg_tensor_set_name(z2, "Z2");
    tg_tensor_set_name(a2, "A2");
    tg_tensor_set_name(z3, "Z3");
    tg_tensor_set_name(c, "C");
    must(tp, tg_backward(tp, c));
    must(tp, tg_tape_explain(tp, stdout, TG_EXPLAIN_FORWARD | TG_EXPLAIN_VALUES));
    /* tutorial end */

    printf("[deltas]\n");
    /* tutorial: deltas */
    show("δ3 = dC/dZ3, read from the tape:", tg_tensor_grad(z3));
    show("δ2 = dC/dZ2, read from the tape:", tg_tensor_grad(z2));
    /* tutorial end */

    /* By hand, in rows: delta3 = a3 - y; delta2 = (delta3 W3^T) (.) a2 (1 - a2). */
    const double *a2v = tg_tensor_data(a2), *z3v = tg_tensor_data(z3), *yv = tg_tensor_data(y);
    const double *w3v = tg_tensor_data(w3);
    double d3[2], d2[3];
    for (int k = 0; k < 2; k++)
        d3[k] = z3v[k] - yv[k];
    for (int j = 0; j < 3; j++)
        d2[j] = (d3[0] * w3v[j * 2] + d3[1] * w3v[j * 2 + 1]) * a2v[j] * (1 - a2v[j]);
    show_values("by hand, δ3 = A3 − Y =", 1, 2, d3);
    show_values("by hand, δ2 = (δ3 W3ᵀ) ⊙ A2 ⊙ (1 − A2) =", 1, 3, d2);
    tg_tape_free(tp);
}

/* ====== Step 6: fan-out, contributions add up ====== */

static void step_fanout(void)
{
    printf("[fanout]\n");
    tg_tape *tp = tg_tape_new();
    /* tutorial: fanout */
    tg_tensor *x = leaf("x", 3, 0, (double[]){-1, 0.5, 2}, true);
    tg_tensor *u = tg_tanh(tp, x);
    tg_tensor *p = tg_mul(tp, u, x); /* x feeds tanh and mul */
    tg_tensor *c = tg_sum(tp, p);    /* C = sum of tanh(x) (.) x */
    tg_tensor_set_name(u, "U");
    tg_tensor_set_name(p, "P");
    tg_tensor_set_name(c, "C");
    must(tp, tg_backward(tp, c));
    must(tp, tg_tape_explain(tp, stdout, TG_EXPLAIN_VALUES));
    /* tutorial end */

    /* By hand: dC/dx = tanh(x) + x (1 - tanh(x)^2), one term per path. */
    const double *xv = tg_tensor_data(x), *uv = tg_tensor_data(u);
    double dx[3];
    for (int k = 0; k < 3; k++)
        dx[k] = uv[k] + xv[k] * (1 - uv[k] * uv[k]);
    show_values("by hand, U + x ⊙ (1 − U²) =", 1, 3, dx);
    tg_tape_free(tp);
}

/* ====== Step 7: beyond the MLP, a recurrent net unrolled in time ====== */

static void step_rnn(void)
{
    printf("[rnn]\n");
    tg_tape *tp = tg_tape_new();
    /* tutorial: rnn */
    tg_tensor *xs = leaf("X", 3, 2, (double[]){1, 0, 0.5, -1, -0.5, 2}, false); /* 3 steps */
    tg_tensor *w = leaf("W", 2, 2, (double[]){0.5, -0.3, 0.8, 0.2}, true);
    tg_tensor *u = leaf("U", 2, 2, (double[]){0.1, 0.4, -0.6, 0.3}, true);
    tg_tensor *h = NULL;
    for (int t = 0; t < 3; t++) { /* h_t = tanh(x_t W + h_(t-1) U), h_0 = 0 */
        tg_tensor *x_t = tg_slice(tp, xs, 0, t, t + 1, 1); /* row t, [1x2] */
        tg_tensor *z = tg_matmul(tp, x_t, w);
        if (h) z = tg_add(tp, z, tg_matmul(tp, h, u));
        h = tg_tanh(tp, z);
    }
    tg_tensor *c = tg_sum(tp, h);
    tg_tensor_set_name(c, "C");
    must(tp, tg_backward(tp, c));
    show("dC/dW =", tg_tensor_grad(w));
    show("dC/dU =", tg_tensor_grad(u));
    /* tutorial end */
    printf("%zu nodes; the sweep gave W one contribution per step:\n", tg_tape_size(tp));
    must(tp, tg_tape_explain(tp, stdout, 0));
    tg_tape_free(tp);
}

int main(void)
{
    step_jacobian();
    step_hadamard();
    step_matmul();
    step_bias();
    step_network();
    step_fanout();
    step_rnn();
    for (int i = 0; i < n_leaves; i++)
        tg_tensor_free(leaves[i]);
    return EXIT_SUCCESS;
}
