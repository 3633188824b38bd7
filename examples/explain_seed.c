/*
 * The 2-3-2 network of the backpropagation notes (sigmoid hidden layer,
 * linear output, C = 1/2 ||y - a3||^2), its backward sweep printed as a
 * derivation with the numbers, and its graph written for Graphviz:
 *
 *     explain_seed [graph.dot]        (default: seed_network.dot)
 *     dot -Tsvg seed_network.dot -o seed_network.svg
 *
 * The tensors carry the notes' names, in rows: Z2 = X W2 + b2 with W2 of
 * shape [in, out], so W2 here is the notes' W^[2] transposed. The ops left
 * unnamed (the two products and the squared error) get automatic names.
 */
#include <tapegrad/tapegrad.h>

#include <stdio.h>
#include <stdlib.h>

static tg_tensor *named(const char *name, int rank, const int64_t *shape, const double *v,
                        bool param)
{
    tg_tensor *t = tg_tensor_from(TG_F64, rank, shape, v);
    tg_tensor_set_name(t, name);
    tg_tensor_set_requires_grad(t, param);
    return t;
}

int main(int argc, char **argv)
{
    const char *dot_path = argc > 1 ? argv[1] : "seed_network.dot";
    tg_tensor *x = named("X", 2, (int64_t[]){1, 2}, (double[]){0.5, -1.2}, false);
    tg_tensor *y = named("Y", 2, (int64_t[]){1, 2}, (double[]){0.3, -0.7}, false);
    tg_tensor *w2 =
        named("W2", 2, (int64_t[]){2, 3}, (double[]){0.1, -0.4, 0.7, 0.3, 0.2, -0.6}, true);
    tg_tensor *b2 = named("b2", 1, (int64_t[]){3}, (double[]){0.05, -0.1, 0.2}, true);
    tg_tensor *w3 =
        named("W3", 2, (int64_t[]){3, 2}, (double[]){0.6, -0.3, -0.8, 0.5, 0.4, 0.9}, true);
    tg_tensor *b3 = named("b3", 1, (int64_t[]){2}, (double[]){-0.2, 0.1}, true);
    tg_tape *tp = tg_tape_new();
    int status = EXIT_FAILURE;
    if (!x || !y || !w2 || !b2 || !w3 || !b3 || !tp) {
        fprintf(stderr, "explain_seed: out of memory\n");
        goto done;
    }

    tg_tensor *z2 = tg_add_bias(tp, tg_matmul(tp, x, w2), b2);
    tg_tensor *a2 = tg_sigmoid(tp, z2);
    tg_tensor *z3 = tg_add_bias(tp, tg_matmul(tp, a2, w3), b3);
    tg_tensor *cost = tg_scale(tp, tg_frobenius_loss(tp, z3, y), 0.5);
    tg_tensor_set_name(z2, "Z2");
    tg_tensor_set_name(a2, "A2");
    tg_tensor_set_name(z3, "Z3");
    tg_tensor_set_name(cost, "C");
    if (tg_backward(tp, cost) != TG_OK) { /* one check covers every op above */
        fprintf(stderr, "explain_seed: %s\n", tg_tape_error(tp));
        goto done;
    }
    if (tg_tape_explain(tp, stdout, TG_EXPLAIN_FORWARD | TG_EXPLAIN_VALUES) != TG_OK) {
        fprintf(stderr, "explain_seed: cannot write the explanation\n");
        goto done;
    }

    FILE *dot = fopen(dot_path, "w");
    if (!dot) {
        perror(dot_path);
        goto done;
    }
    tg_status written = tg_tape_to_dot(tp, dot, cost);
    if (fclose(dot) != 0 || written != TG_OK) {
        fprintf(stderr, "explain_seed: cannot write %s\n", dot_path);
        goto done;
    }
    printf("\ngraph written to %s; render it with: dot -Tsvg %s -o seed_network.svg\n", dot_path,
           dot_path);
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
