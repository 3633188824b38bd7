/*
 * The worked example of the backpropagation notes (section VI): a 2-3-2
 * network, sigmoid hidden layer, linear output, C = 1/2 ||y - a3||^2.
 *
 * The notes write column vectors, z^[l] = W^[l] a^[l-1] + b^[l]. The tape
 * uses rows, z = a W + b with W [in, out], so our W is the notes' W
 * transposed and every gradient below is the transpose of the notes' formula:
 *     delta3 = a3 - y                                   (linear output, D3 = I)
 *     delta2 = sigma'(z2) (.) (delta3 W3^T)              notes: D2 W3^T delta3
 *     dC/dW3 = a2^T delta3,  dC/db3 = delta3             notes: delta3 a2^T
 *     dC/dW2 = x^T delta2,   dC/db2 = delta2             notes: delta2 x^T
 * The expected values are computed here in plain loops, independently of the
 * library, and compared to 1e-12 relative.
 */
#include "testutil.h"

#include <math.h>

/* ====== The network's fixed values ====== */

static const double X[2] = {0.5, -1.2};
static const double W2[2][3] = {{0.1, -0.4, 0.7}, {0.3, 0.2, -0.6}}; /* [in=2, out=3] */
static const double B2[3] = {0.05, -0.1, 0.2};
static const double W3[3][2] = {{0.6, -0.3}, {-0.8, 0.5}, {0.4, 0.9}}; /* [in=3, out=2] */
static const double B3[2] = {-0.2, 0.1};
static const double Y[2] = {0.3, -0.7};

/* ====== Closed forms, in plain C ====== */

typedef struct closed_form {
    double z2[3], a2[3], z3[2], cost;
    double delta3[2], delta2[3];
    double dw3[3][2], db3[2], dw2[2][3], db2[3];
    double da2[3], dx[2], dy[2];
} closed_form;

static closed_form solve(void)
{
    closed_form f = {0};
    for (int j = 0; j < 3; j++) {
        f.z2[j] = B2[j];
        for (int i = 0; i < 2; i++)
            f.z2[j] += X[i] * W2[i][j];
        f.a2[j] = 1.0 / (1.0 + exp(-f.z2[j]));
    }
    for (int k = 0; k < 2; k++) {
        f.z3[k] = B3[k];
        for (int j = 0; j < 3; j++)
            f.z3[k] += f.a2[j] * W3[j][k];
        f.delta3[k] = f.z3[k] - Y[k]; /* a3 = z3 */
        f.cost += 0.5 * f.delta3[k] * f.delta3[k];
        f.db3[k] = f.delta3[k];
        f.dy[k] = -f.delta3[k]; /* the target is a leaf too */
    }
    for (int j = 0; j < 3; j++) {
        for (int k = 0; k < 2; k++)
            f.da2[j] += W3[j][k] * f.delta3[k];
        f.delta2[j] = f.a2[j] * (1 - f.a2[j]) * f.da2[j]; /* sigma' = a (1 - a) */
        f.db2[j] = f.delta2[j];
        for (int k = 0; k < 2; k++)
            f.dw3[j][k] = f.a2[j] * f.delta3[k];
        for (int i = 0; i < 2; i++)
            f.dw2[i][j] = X[i] * f.delta2[j];
    }
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            f.dx[i] += W2[i][j] * f.delta2[j];
    return f;
}

/* ====== The same network on the tape ====== */

enum { IN_X, IN_W2, IN_B2, IN_W3, IN_B3, IN_Y, N_IN };

typedef struct network {
    tg_tensor *z2, *a2, *z3, *cost;
} network;

static void make_leaves(tg_tensor **in)
{
    in[IN_X] = tg_tensor_from(TG_F64, 2, (const int64_t[]){1, 2}, X);
    in[IN_W2] = tg_tensor_from(TG_F64, 2, (const int64_t[]){2, 3}, W2);
    in[IN_B2] = tg_tensor_from(TG_F64, 1, (const int64_t[]){3}, B2);
    in[IN_W3] = tg_tensor_from(TG_F64, 2, (const int64_t[]){3, 2}, W3);
    in[IN_B3] = tg_tensor_from(TG_F64, 1, (const int64_t[]){2}, B3);
    in[IN_Y] = tg_tensor_from(TG_F64, 2, (const int64_t[]){1, 2}, Y);
    for (int i = 0; i < N_IN; i++) {
        ck_assert_ptr_nonnull(in[i]);
        tg_tensor_set_requires_grad(in[i], true);
    }
}

static network record_network(tg_tape *tp, tg_tensor *const *in)
{
    network n;
    n.z2 = tg_add_bias(tp, tg_matmul(tp, in[IN_X], in[IN_W2]), in[IN_B2]);
    n.a2 = tg_sigmoid(tp, n.z2);
    n.z3 = tg_add_bias(tp, tg_matmul(tp, n.a2, in[IN_W3]), in[IN_B3]);
    n.cost = tg_scale(tp, tg_frobenius_loss(tp, n.z3, in[IN_Y]), 0.5);
    return n;
}

static void assert_rel(const char *what, const tg_tensor *t, const double *want, int64_t n)
{
    ck_assert_msg(t != NULL, "%s: no tensor", what);
    ck_assert_int_eq(tg_tensor_numel(t), n);
    for (int64_t k = 0; k < n; k++) {
        double got = tu_at(t, k);
        ck_assert_msg(fabs(got - want[k]) <= 1e-12 * fabs(want[k]),
                      "%s[%lld]: got %.17g, want %.17g", what, (long long)k, got, want[k]);
    }
}

START_TEST(deltas_and_gradients_match_the_closed_forms)
{
    const closed_form f = solve();
    tg_tensor *in[N_IN];
    make_leaves(in);
    tg_tape *tp = tg_tape_new();
    network n = record_network(tp, in);
    ck_assert_msg(tg_backward(tp, n.cost) == TG_OK, "%s", tg_tape_error(tp));

    /* Forward values. */
    assert_rel("z2", n.z2, f.z2, 3);
    assert_rel("a2", n.a2, f.a2, 3);
    assert_rel("z3", n.z3, f.z3, 2);
    assert_rel("C", n.cost, &f.cost, 1);
    ck_assert_int_eq(tg_tensor_rank(n.cost), 0);

    /* The helper gradients delta^l = dC/dz^l are the intermediates' gradients. */
    assert_rel("delta3 = dC/dz3", tg_tensor_grad(n.z3), f.delta3, 2);
    assert_rel("delta2 = dC/dz2", tg_tensor_grad(n.z2), f.delta2, 3);
    assert_rel("dC/da2", tg_tensor_grad(n.a2), f.da2, 3);

    /* Parameter gradients. */
    assert_rel("dC/dW3", tg_tensor_grad(in[IN_W3]), &f.dw3[0][0], 6);
    assert_rel("dC/db3", tg_tensor_grad(in[IN_B3]), f.db3, 2);
    assert_rel("dC/dW2", tg_tensor_grad(in[IN_W2]), &f.dw2[0][0], 6);
    assert_rel("dC/db2", tg_tensor_grad(in[IN_B2]), f.db2, 3);

    /* Gradients reach the input and the target as well. */
    assert_rel("dC/dx", tg_tensor_grad(in[IN_X]), f.dx, 2);
    assert_rel("dC/dy", tg_tensor_grad(in[IN_Y]), f.dy, 2);

    tg_tape_free(tp);
    for (int i = 0; i < N_IN; i++)
        tg_tensor_free(in[i]);
}
END_TEST

static tg_tensor *cost_fn(tg_tape *tp, tg_tensor *const *inputs, void *ctx)
{
    (void)ctx;
    return record_network(tp, inputs).cost;
}

START_TEST(network_passes_gradcheck)
{
    tg_tensor *in[N_IN];
    make_leaves(in);
    tg_gradcheck_report r;
    ck_assert_int_eq(tg_gradcheck(cost_fn, in, N_IN, NULL, NULL, &r), TG_OK);
    ck_assert_msg(r.passed, "input %d[%lld]: analytic %.17g numeric %.17g", r.worst_input,
                  (long long)r.worst_index, r.analytic, r.numeric);
    ck_assert_int_eq(r.n_checked, 2 + 6 + 3 + 6 + 2 + 2);
    for (int i = 0; i < N_IN; i++)
        tg_tensor_free(in[i]);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("seed");
    TCase *tc = tcase_create("network_2_3_2");
    tcase_add_test(tc, deltas_and_gradients_match_the_closed_forms);
    tcase_add_test(tc, network_passes_gradcheck);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
