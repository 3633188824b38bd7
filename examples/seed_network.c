/*
 * The worked example of the backpropagation notes (section VI) on the tape: a
 * 2-3-2 network with a sigmoid hidden layer, a linear output and the cost
 * C = 1/2 ||y - a[3]||^2. It prints the forward values, the helper gradients
 * delta[l] = dC/dz[l] and every parameter gradient.
 *
 * The notes use columns, z[l] = W[l] a[l-1] + b[l]. The tape uses rows,
 * z = a W + b with W of shape [in, out], so each W here is the notes' W
 * transposed, and so is each dC/dW printed below.
 */
#include <tapegrad/tapegrad.h>

#include <stdio.h>
#include <stdlib.h>

/* Prints a rank 1 or 2 F64 tensor, one row per line, under a label. */
static void show(const char *label, tg_tensor *t)
{
    const double *v = tg_tensor_data(t);
    int64_t cols = tg_tensor_rank(t) == 0 ? 1 : tg_tensor_shape(t)[tg_tensor_rank(t) - 1];
    printf("  %-42s", label);
    for (int64_t k = 0; k < tg_tensor_numel(t); k++) {
        if (k > 0 && k % cols == 0) printf("\n  %-42s", "");
        printf(" %12.8f", v[k]);
    }
    printf("\n");
}

int main(void)
{
    /* The training point (x, y) and the parameters, as rows. */
    tg_tensor *x = tg_tensor_from(TG_F64, 2, (int64_t[]){1, 2}, (double[]){0.5, -1.2});
    tg_tensor *y = tg_tensor_from(TG_F64, 2, (int64_t[]){1, 2}, (double[]){0.3, -0.7});
    tg_tensor *w2 =
        tg_tensor_from(TG_F64, 2, (int64_t[]){2, 3}, (double[]){0.1, -0.4, 0.7, 0.3, 0.2, -0.6});
    tg_tensor *b2 = tg_tensor_from(TG_F64, 1, (int64_t[]){3}, (double[]){0.05, -0.1, 0.2});
    tg_tensor *w3 =
        tg_tensor_from(TG_F64, 2, (int64_t[]){3, 2}, (double[]){0.6, -0.3, -0.8, 0.5, 0.4, 0.9});
    tg_tensor *b3 = tg_tensor_from(TG_F64, 1, (int64_t[]){2}, (double[]){-0.2, 0.1});
    tg_tape *tp = tg_tape_new();
    int status = EXIT_FAILURE;
    if (!x || !y || !w2 || !b2 || !w3 || !b3 || !tp) {
        fprintf(stderr, "seed_network: out of memory\n");
        goto done;
    }
    tg_tensor_set_requires_grad(w2, true);
    tg_tensor_set_requires_grad(b2, true);
    tg_tensor_set_requires_grad(w3, true);
    tg_tensor_set_requires_grad(b3, true);

    /* Forward pass: a[1] = x, z[l] = a[l-1] W[l] + b[l], a[2] = sigma(z[2]), a[3] = z[3]. */
    tg_tensor *z2 = tg_add_bias(tp, tg_matmul(tp, x, w2), b2);
    tg_tensor *a2 = tg_sigmoid(tp, z2);
    tg_tensor *z3 = tg_add_bias(tp, tg_matmul(tp, a2, w3), b3);
    tg_tensor *cost = tg_scale(tp, tg_frobenius_loss(tp, z3, y), 0.5);

    /* Backward pass. Errors are sticky, so this one check covers every op above. */
    if (tg_backward(tp, cost) != TG_OK) {
        fprintf(stderr, "seed_network: %s\n", tg_tape_error(tp));
        goto done;
    }

    printf("Forward pass\n");
    show("z[2] = x W[2] + b[2]", z2);
    show("a[2] = sigma(z[2])", a2);
    show("a[3] = z[3] = a[2] W[3] + b[3]", z3);
    show("C = 1/2 ||y - a[3]||^2", cost);

    printf("\nHelper gradients delta[l] = dC/dz[l]\n");
    show("delta[3] = a[3] - y", tg_tensor_grad(z3));
    show("delta[2] = sigma'(z[2]) o W[3]^T delta[3]", tg_tensor_grad(z2));

    printf("\nParameter gradients (rows: the notes' formulas transposed)\n");
    show("dC/dW[3] = (delta[3] a[2]^T)^T", tg_tensor_grad(w3));
    show("dC/db[3] = delta[3]", tg_tensor_grad(b3));
    show("dC/dW[2] = (delta[2] x^T)^T", tg_tensor_grad(w2));
    show("dC/db[2] = delta[2]", tg_tensor_grad(b2));
    status = EXIT_SUCCESS;

done:
    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_tensor_free(y);
    tg_tensor_free(w2);
    tg_tensor_free(b2);
    tg_tensor_free(w3);
    tg_tensor_free(b3);
    return status;
}
