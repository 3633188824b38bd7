/*
 * Linear algebra ops: matmul, transpose, add_bias. Each VJP is gradchecked
 * from the op list (test_ops_list.c); here the graphs that combine them are,
 * through a Frobenius probe ||op(x) - W||^2 with a fixed, non-uniform W, so
 * dG differs from element to element and a swapped transpose shows. Forward values and gradients are also checked by hand on small literals,
 * and matmul against a naive triple loop.
 */
#include "testutil.h"

#include "internal.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* ====== Gradient checks of graphs (each op alone is in the op list) ====== */

typedef struct grad_case {
    const char *name;
    tu_op_fn op;
    const char *shapes[8]; /* operand shapes "a;b;c", NULL-terminated */
} grad_case;

static tg_tensor *op_matmul(tg_tape *tp, tg_tensor *const *in, const void *row)
{
    (void)row;
    return tg_matmul(tp, in[0], in[1]);
}

static tg_tensor *op_matmul_self(tg_tape *tp, tg_tensor *const *in, const void *row)
{
    (void)row;
    return tg_matmul(tp, in[0], in[0]); /* fan-out: dA gets both contributions */
}

static tg_tensor *op_affine(tg_tape *tp, tg_tensor *const *in, const void *row) /* X^T W + b */
{
    (void)row;
    return tg_add_bias(tp, tg_matmul(tp, tg_transpose(tp, in[0]), in[1]), in[2]);
}

static const grad_case grad_cases[] = {
    {"matmul with an empty inner dimension", op_matmul, {"2x0;0x3", "1x0;0x1"}},
    {"matmul A A", op_matmul_self, {"1x1", "3x3", "4x4"}},
    {"batched matmul A A", op_matmul_self, {"2x3x3", "2x2x1x1"}},
    {"transpose-matmul-add_bias", op_affine, {"1x1;1x1;1", "5x1;5x3;3", "3x2;3x4;4"}},
};

START_TEST(gradcheck_graph)
{
    const grad_case *c = &grad_cases[_i];
    for (int s = 0; c->shapes[s]; s++) {
        tg_gradcheck_report r;
        tu_probe_gradcheck(c->name, c->op, c, c->shapes[s], s, 0, &r);
    }
}
END_TEST

/* ====== Forward values and gradients by hand (F64, then F32) ====== */

START_TEST(matmul_by_hand)
{
    tg_dtype dt = tu_loop_dtype(_i);
    tg_tensor *a = tu_lit(dt, "2x3", (double[]){1, 2, 3, 4, 5, 6});
    tg_tensor *b = tu_lit(dt, "3x2", (double[]){7, 8, 9, 10, 11, 12});
    tg_tensor *g = tu_lit(dt, "2x2", (double[]){1, 2, 3, 4});
    tg_tensor_set_requires_grad(a, true);
    tg_tensor_set_requires_grad(b, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_matmul(tp, a, b);
    tu_expect_exact(y, "2x2", (double[]){58, 64, 139, 154}, "A B");

    ck_assert_int_eq(tg_backward_seed(tp, y, g), TG_OK);
    tu_expect_exact(tg_tensor_grad(a), "2x3", (double[]){23, 29, 35, 53, 67, 81}, "dA = dG B^T");
    tu_expect_exact(tg_tensor_grad(b), "3x2", (double[]){13, 18, 17, 24, 21, 30}, "dB = A^T dG");
    /* A second sweep adds into the leaves' gradients (GEMM with beta = 1). */
    ck_assert_int_eq(tg_backward_seed(tp, y, g), TG_OK);
    tu_expect_exact(tg_tensor_grad(a), "2x3", (double[]){46, 58, 70, 106, 134, 162}, "dA twice");
    tu_expect_exact(tg_tensor_grad(b), "3x2", (double[]){26, 36, 34, 48, 42, 60}, "dB twice");

    tg_tape_free(tp);
    tg_tensor_free(a);
    tg_tensor_free(b);
    tg_tensor_free(g);
}
END_TEST

START_TEST(transpose_by_hand)
{
    tg_dtype dt = tu_loop_dtype(_i);
    tg_tensor *x = tu_lit(dt, "2x3", (double[]){1, 2, 3, 4, 5, 6});
    tg_tensor *g = tu_lit(dt, "3x2", (double[]){1, 2, 3, 4, 5, 6});
    tg_tensor_set_requires_grad(x, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_transpose(tp, x);
    tu_expect_exact(y, "3x2", (double[]){1, 4, 2, 5, 3, 6}, "X^T");
    ck_assert_int_eq(tg_backward_seed(tp, y, g), TG_OK);
    tu_expect_exact(tg_tensor_grad(x), "2x3", (double[]){1, 3, 5, 2, 4, 6}, "dX = dG^T");
    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_tensor_free(g);
}
END_TEST

START_TEST(add_bias_by_hand)
{
    tg_dtype dt = tu_loop_dtype(_i);
    tg_tensor *x = tu_lit(dt, "2x3", (double[]){1, 2, 3, 4, 5, 6});
    tg_tensor *b = tu_lit(dt, "3", (double[]){10, 20, 30});
    tg_tensor *g = tu_lit(dt, "2x3", (double[]){1, 2, 3, 4, 5, 6});
    tg_tensor_set_requires_grad(x, true);
    tg_tensor_set_requires_grad(b, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_add_bias(tp, x, b);
    tu_expect_exact(y, "2x3", (double[]){11, 22, 33, 14, 25, 36}, "X + 1 b");
    ck_assert_int_eq(tg_backward_seed(tp, y, g), TG_OK);
    tu_expect_exact(tg_tensor_grad(x), "2x3", (double[]){1, 2, 3, 4, 5, 6}, "dX = dG");
    tu_expect_exact(tg_tensor_grad(b), "3", (double[]){5, 7, 9}, "db = sum over rows of dG");
    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_tensor_free(b);
    tg_tensor_free(g);
}
END_TEST

/* ====== Empty dimensions: k = 0 gives zeros, n = 0 or m = 0 give empty results ====== */

typedef struct empty_case {
    const char *a, *b, *out;
} empty_case;

static const empty_case empty_cases[] = {
    {"2x0", "0x3", "2x3"},
    {"1x0", "0x1", "1x1"},
    {"0x3", "3x2", "0x2"},
    {"2x3", "3x0", "2x0"},
    {"0x0", "0x0", "0x0"},
};
#define N_EMPTY (int)(sizeof empty_cases / sizeof *empty_cases)

START_TEST(matmul_with_empty_dims)
{
    const empty_case *c = &empty_cases[_i / 2];
    tg_dtype dt = tu_loop_dtype(_i % 2);
    tg_tensor *a = tu_random(dt, c->a, -1, 1, 1), *b = tu_random(dt, c->b, -1, 1, 2);
    tg_tensor *g = tu_random(dt, c->out, -1, 1, 3);
    ck_assert(a && b && g);
    tg_tensor_set_requires_grad(a, true);
    tg_tensor_set_requires_grad(b, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_matmul(tp, a, b);
    double zeros[6] = {0};
    tu_expect_exact(y, c->out, zeros, "empty product");

    /* The forward writes its zeros itself rather than relying on a fresh buffer. */
    for (int64_t k = 0; k < tg_tensor_numel(y); k++) {
        if (dt == TG_F64)
            ((double *)tg_tensor_data(y))[k] = nan("");
        else
            ((float *)tg_tensor_data(y))[k] = NAN;
    }
    ck_assert_int_eq(tg_tape_replay(tp), TG_OK);
    tu_expect_exact(y, c->out, zeros, "empty product after replay");

    /* The VJPs are empty products too: they leave zero gradients. */
    ck_assert_int_eq(tg_backward_seed(tp, y, g), TG_OK);
    tu_expect_exact(tg_tensor_grad(a), c->a, zeros, "dA");
    tu_expect_exact(tg_tensor_grad(b), c->b, zeros, "dB");
    tg_tape_free(tp);
    tg_tensor_free(a);
    tg_tensor_free(b);
    tg_tensor_free(g);
}
END_TEST

/* ====== matmul against a naive triple loop, 17x33 by 33x9, forward and both VJPs ====== */

/* Checks c [m,n] = op(a) op(b) with element (i,j) = sum_p A(i,p) B(p,j), where A(i,p) is
 * a[i*sa0 + p*sa1] and B(p,j) is b[p*sb0 + j*sb1]. The bound is 64 eps sum_p |A B|,
 * a generous multiple of the rounding any summation order can make. */
static void expect_product(const tg_tensor *c, const tg_tensor *a, int64_t sa0, int64_t sa1,
                           const tg_tensor *b, int64_t sb0, int64_t sb1, int64_t k,
                           const char *what)
{
    int64_t m = tg_tensor_shape(c)[0], n = tg_tensor_shape(c)[1];
    double eps = tg_tensor_dtype(c) == TG_F64 ? DBL_EPSILON : (double)FLT_EPSILON;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double ref = 0, mag = 0;
            for (int64_t p = 0; p < k; p++) {
                double t = tu_at(a, i * sa0 + p * sa1) * tu_at(b, p * sb0 + j * sb1);
                ref += t;
                mag += fabs(t);
            }
            double got = tu_at(c, i * n + j);
            ck_assert_msg(fabs(got - ref) <= 64 * eps * mag, "%s %s [%lld,%lld]: %.17g, want %.17g",
                          what, tu_dtype_name(tg_tensor_dtype(c)), (long long)i, (long long)j, got,
                          ref);
        }
}

START_TEST(matmul_matches_naive_loop)
{
    tg_dtype dt = tu_loop_dtype(_i);
    const int64_t n = 17, k = 33, m = 9;
    tg_tensor *a = tu_random(dt, "17x33", -1, 1, 11), *b = tu_random(dt, "33x9", -1, 1, 12);
    tg_tensor *g = tu_random(dt, "17x9", -1, 1, 13);
    ck_assert(a && b && g);
    tg_tensor_set_requires_grad(a, true);
    tg_tensor_set_requires_grad(b, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_matmul(tp, a, b);
    ck_assert_ptr_nonnull(y);
    expect_product(y, a, k, 1, b, m, 1, k, "A B");
    ck_assert_int_eq(tg_backward_seed(tp, y, g), TG_OK);
    /* dA [n,k] = dG [n,m] B^T: B^T(p,j) = b[j*m + p]; dB [k,m] = A^T dG: A^T(i,p) = a[p*k + i] */
    expect_product(tg_tensor_grad(a), g, m, 1, b, 1, m, m, "dG B^T");
    expect_product(tg_tensor_grad(b), a, 1, k, g, m, 1, n, "A^T dG");
    tg_tape_free(tp);
    tg_tensor_free(a);
    tg_tensor_free(b);
    tg_tensor_free(g);
}
END_TEST

/* ====== Batched matmul against naive loops, with broadcast batches ====== */

typedef struct batch_case {
    const char *a, *b, *out;
} batch_case;

static const batch_case batch_cases[] = {
    {"3x5x4", "4x2", "3x5x2"},          {"3x5x4", "3x4x2", "3x5x2"},
    {"5x4", "2x3x4x2", "2x3x5x2"},      {"2x1x5x4", "3x4x2", "2x3x5x2"},
    {"1x3x5x4", "2x1x4x2", "2x3x5x2"},  {"2x3x1x4", "1x1x4x1", "2x3x1x1"},
};

/* Flat offset of the matrix an operand gives to output batch (i0, i1): its batch
 * dims are right-aligned against the output's, and a dim of 1 is broadcast. */
static int64_t batch_offset(const tg_tensor *t, int64_t i0, int64_t i1)
{
    int r = tg_tensor_rank(t);
    const int64_t *sh = tg_tensor_shape(t);
    int64_t s[2] = {1, 1};
    for (int j = 0; j < r - 2; j++) s[2 - (r - 2) + j] = sh[j];
    int64_t j0 = s[0] == 1 ? 0 : i0, j1 = s[1] == 1 ? 0 : i1;
    return (j0 * s[1] + j1) * sh[r - 2] * sh[r - 1];
}

START_TEST(batched_matmul_matches_naive_loops)
{
    const batch_case *c = &batch_cases[_i / 2];
    tg_dtype dt = tu_loop_dtype(_i % 2);
    double eps = dt == TG_F64 ? DBL_EPSILON : (double)FLT_EPSILON;
    tg_tensor *a = tu_random(dt, c->a, -1, 1, 31), *b = tu_random(dt, c->b, -1, 1, 32);
    tg_tensor *g = tu_random(dt, c->out, -1, 1, 33);
    ck_assert(a && b && g);
    tg_tensor_set_requires_grad(a, true);
    tg_tensor_set_requires_grad(b, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_matmul(tp, a, b);
    ck_assert_msg(y != NULL, "%s", tg_tape_error(tp));
    int64_t shape[4];
    int rank = tu_parse_shape(c->out, shape);
    ck_assert_int_eq(tg_tensor_rank(y), rank);
    for (int j = 0; j < rank; j++) ck_assert_int_eq(tg_tensor_shape(y)[j], shape[j]);
    ck_assert_int_eq(tg_backward_seed(tp, y, g), TG_OK);
    int64_t n = shape[rank - 2], m = shape[rank - 1];
    int64_t k = tg_tensor_shape(a)[tg_tensor_rank(a) - 1];
    int64_t ob[2] = {rank == 4 ? shape[0] : 1, rank >= 3 ? shape[rank - 3] : 1};
    /* Reference gradients accumulate over every output batch that read an operand batch. */
    double da[256] = {0}, db[256] = {0}, mag_a[256] = {0}, mag_b[256] = {0};
    ck_assert(tg_tensor_numel(a) <= 256 && tg_tensor_numel(b) <= 256);
    for (int64_t i0 = 0, bi = 0; i0 < ob[0]; i0++)
        for (int64_t i1 = 0; i1 < ob[1]; i1++, bi++) {
            int64_t oa = batch_offset(a, i0, i1), obb = batch_offset(b, i0, i1);
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = 0; j < m; j++) {
                    double ref = 0, mag = 0, gij = tu_at(g, (bi * n + i) * m + j);
                    for (int64_t p = 0; p < k; p++) {
                        double av = tu_at(a, oa + i * k + p), bv = tu_at(b, obb + p * m + j);
                        ref += av * bv;
                        mag += fabs(av * bv);
                        da[oa + i * k + p] += gij * bv;
                        mag_a[oa + i * k + p] += fabs(gij * bv);
                        db[obb + p * m + j] += av * gij;
                        mag_b[obb + p * m + j] += fabs(av * gij);
                    }
                    double got = tu_at(y, (bi * n + i) * m + j);
                    ck_assert_msg(fabs(got - ref) <= 64 * eps * mag,
                                  "y %s x %s [%lld]: %.17g, want %.17g", c->a, c->b,
                                  (long long)((bi * n + i) * m + j), got, ref);
                }
        }
    for (int64_t q = 0; q < tg_tensor_numel(a); q++)
        ck_assert_msg(fabs(tu_at(tg_tensor_grad(a), q) - da[q]) <= 64 * eps * mag_a[q],
                      "dA %s x %s [%lld]", c->a, c->b, (long long)q);
    for (int64_t q = 0; q < tg_tensor_numel(b); q++)
        ck_assert_msg(fabs(tu_at(tg_tensor_grad(b), q) - db[q]) <= 64 * eps * mag_b[q],
                      "dB %s x %s [%lld]", c->a, c->b, (long long)q);
    tg_tape_free(tp);
    tg_tensor_free(a);
    tg_tensor_free(b);
    tg_tensor_free(g);
}
END_TEST

/* ====== Second order: the recorded VJPs (vjp_graph) ======
 * Inputs are small integers, so every product and sum is exact in F32 and
 * F64 alike and the closed forms are compared exactly. */

/* A tensor of 'shape' with integers in [-3, 3], which requires grad when 'param'. */
static tg_tensor *int_operand(tg_dtype dt, const char *shape, uint64_t seed, bool param)
{
    tg_tensor *t = tu_random(dt, shape, -3.5, 3.5, seed);
    ck_assert_ptr_nonnull(t);
    for (int64_t k = 0; k < tg_tensor_numel(t); k++) tu_put(t, k, round(tu_at(t, k)));
    tg_tensor_set_requires_grad(t, param);
    return t;
}

/* Asserts that t has 'numel' elements equal to want[]. */
static void expect_values(const tg_tensor *t, const double *want, int64_t numel, const char *what,
                          const batch_case *c)
{
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(tg_tensor_numel(t), numel);
    for (int64_t q = 0; q < numel; q++)
        ck_assert_msg(tu_at(t, q) == want[q], "%s, %s x %s [%lld]: %.17g, want %.17g", what,
                      c->a, c->b, (long long)q, tu_at(t, q), want[q]);
}

/* f = Σ W ⊙ (A B) with W a parameter too. The recorded gradients gA = Σ_bcast W Bᵀ
 * and gB = Σ_bcast Aᵀ W are contracted with R and S, h = <gA, R> + <gB, S>, and
 * differentiated again: per output batch, dh/dA += W Sᵀ, dh/dB += Rᵀ W and
 * dh/dW = R B + A S, with R and S read where A and B are (the broadcast). */
START_TEST(batched_matmul_second_derivatives)
{
    const batch_case *c = &batch_cases[_i / 2];
    tg_dtype dt = tu_loop_dtype(_i % 2);
    tg_tensor *a = int_operand(dt, c->a, 51, true), *b = int_operand(dt, c->b, 52, true);
    tg_tensor *w = int_operand(dt, c->out, 53, true);
    tg_tensor *r = int_operand(dt, c->a, 54, false), *s = int_operand(dt, c->b, 55, false);
    tg_tape *tp = tg_tape_new();
    tg_tensor *f = tg_sum(tp, tg_mul(tp, tg_matmul(tp, a, b), w)), *g[2], *hr[3];
    ck_assert_int_eq(tg_grad(tp, f, NULL, (tg_tensor *[]){a, b}, 2, g, true), TG_OK);
    tg_tensor *h = tg_add(tp, tg_sum(tp, tg_mul(tp, g[0], r)), tg_sum(tp, tg_mul(tp, g[1], s)));
    ck_assert_int_eq(tg_grad(tp, h, NULL, (tg_tensor *[]){a, b, w}, 3, hr, false), TG_OK);

    int64_t shape[4];
    int rank = tu_parse_shape(c->out, shape);
    int64_t n = shape[rank - 2], m = shape[rank - 1];
    int64_t k = tg_tensor_shape(a)[tg_tensor_rank(a) - 1];
    int64_t ob[2] = {rank == 4 ? shape[0] : 1, rank >= 3 ? shape[rank - 3] : 1};
    double ga[256] = {0}, gb[256] = {0}, ha[256] = {0}, hb[256] = {0}, hw[256] = {0};
    ck_assert(tg_tensor_numel(a) <= 256 && tg_tensor_numel(b) <= 256 && tg_tensor_numel(w) <= 256);
    for (int64_t i0 = 0, bi = 0; i0 < ob[0]; i0++)
        for (int64_t i1 = 0; i1 < ob[1]; i1++, bi++) {
            int64_t oa = batch_offset(a, i0, i1), obb = batch_offset(b, i0, i1);
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = 0; j < m; j++) {
                    int64_t wij = (bi * n + i) * m + j;
                    double wv = tu_at(w, wij);
                    for (int64_t p = 0; p < k; p++) {
                        int64_t ip = oa + i * k + p, pj = obb + p * m + j;
                        ga[ip] += wv * tu_at(b, pj);
                        gb[pj] += tu_at(a, ip) * wv;
                        ha[ip] += wv * tu_at(s, pj);
                        hb[pj] += tu_at(r, ip) * wv;
                        hw[wij] += tu_at(r, ip) * tu_at(b, pj) + tu_at(a, ip) * tu_at(s, pj);
                    }
                }
        }
    expect_values(g[0], ga, tg_tensor_numel(a), "gA", c);
    expect_values(g[1], gb, tg_tensor_numel(b), "gB", c);
    expect_values(hr[0], ha, tg_tensor_numel(a), "dh/dA", c);
    expect_values(hr[1], hb, tg_tensor_numel(b), "dh/dB", c);
    expect_values(hr[2], hw, tg_tensor_numel(w), "dh/dW", c);
    tg_tape_free(tp);
    tg_tensor_free(a);
    tg_tensor_free(b);
    tg_tensor_free(w);
    tg_tensor_free(r);
    tg_tensor_free(s);
}
END_TEST

/* Third order through matmul and transpose: for f(A) = 1ᵀ A³ 1, the third
 * derivative in directions R, R is D³f[R, R, ·] = 2 (1 (R R 1)ᵀ + (Rᵀ 1)(R 1)ᵀ
 * + (Rᵀ Rᵀ 1) 1ᵀ), whatever A is. */
START_TEST(matmul_third_derivative)
{
    tg_dtype dt = tu_loop_dtype(_i);
    enum { N = 3 };
    tg_tensor *a = int_operand(dt, "3x3", 61, true), *r = int_operand(dt, "3x3", 62, false);
    tg_tape *tp = tg_tape_new();
    tg_tensor *f = tg_sum(tp, tg_matmul(tp, tg_matmul(tp, a, a), a)), *g1, *g2, *g3;
    ck_assert_int_eq(tg_grad(tp, f, NULL, &a, 1, &g1, true), TG_OK);
    ck_assert_int_eq(tg_grad(tp, tg_sum(tp, tg_mul(tp, g1, r)), NULL, &a, 1, &g2, true), TG_OK);
    ck_assert_int_eq(tg_grad(tp, tg_sum(tp, tg_mul(tp, g2, r)), NULL, &a, 1, &g3, false), TG_OK);
    double rr[N][N] = {{0}}, r1[N] = {0}, rt1[N] = {0}, rr1[N] = {0}, rtrt1[N] = {0};
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            r1[i] += tu_at(r, i * N + j);
            rt1[j] += tu_at(r, i * N + j);
            for (int p = 0; p < N; p++) rr[i][j] += tu_at(r, i * N + p) * tu_at(r, p * N + j);
        }
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            rr1[i] += rr[i][j];
            rtrt1[j] += rr[i][j];
        }
    double want[N * N];
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) want[i * N + j] = 2 * (rr1[j] + rt1[i] * r1[j] + rtrt1[i]);
    tu_expect_exact(g3, "3x3", want, "D³f[R, R, ·]");
    tg_tape_free(tp);
    tg_tensor_free(a);
    tg_tensor_free(r);
}
END_TEST

/* transpose and add_bias are linear, so their recorded VJPs are linear in
 * dG: for f = Σ W ⊙ Xᵀ, gX = Wᵀ and d<gX, R>/dW = Rᵀ; for f = Σ W ⊙ (X + 1 b),
 * gX = W, gb = Σ_rows W and d(<gX, R> + <gb, q>)/dW = R + 1 qᵀ. */
START_TEST(linear_ops_second_derivatives)
{
    tg_dtype dt = tu_loop_dtype(_i);
    tg_tensor *x = tu_lit(dt, "2x3", (double[]){1, 2, 3, 4, 5, 6});
    tg_tensor *b = tu_lit(dt, "3", (double[]){-1, 0, 1});
    tg_tensor *wt = tu_lit(dt, "3x2", (double[]){1, -2, 3, -4, 5, -6});
    tg_tensor *w = tu_lit(dt, "2x3", (double[]){7, 8, 9, 10, 11, 12});
    tg_tensor *r = tu_lit(dt, "2x3", (double[]){1, 3, 5, 7, 9, 11});
    tg_tensor *q = tu_lit(dt, "3", (double[]){-2, 4, -8});
    tg_tensor *ins[] = {x, b, wt, w};
    for (int i = 0; i < 4; i++) tg_tensor_set_requires_grad(ins[i], true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *g[2], *hr[2];

    tg_tensor *f = tg_sum(tp, tg_mul(tp, tg_transpose(tp, x), wt));
    ck_assert_int_eq(tg_grad(tp, f, NULL, &x, 1, g, true), TG_OK);
    tu_expect_exact(g[0], "2x3", (double[]){1, 3, 5, -2, -4, -6}, "gX = Wᵀ");
    tg_tensor *h = tg_sum(tp, tg_mul(tp, g[0], r));
    ck_assert_int_eq(tg_grad(tp, h, NULL, (tg_tensor *[]){wt, x}, 2, hr, true), TG_OK);
    tu_expect_exact(hr[0], "3x2", (double[]){1, 7, 3, 9, 5, 11}, "d<gX, R>/dW = Rᵀ");
    tu_expect_exact(hr[1], "2x3", (double[]){0, 0, 0, 0, 0, 0}, "d<gX, R>/dX");

    f = tg_sum(tp, tg_mul(tp, tg_add_bias(tp, x, b), w));
    ck_assert_int_eq(tg_grad(tp, f, NULL, (tg_tensor *[]){x, b}, 2, g, true), TG_OK);
    tu_expect_exact(g[0], "2x3", (double[]){7, 8, 9, 10, 11, 12}, "gX = W");
    tu_expect_exact(g[1], "3", (double[]){17, 19, 21}, "gb = Σ_rows W");
    h = tg_add(tp, tg_sum(tp, tg_mul(tp, g[0], r)), tg_sum(tp, tg_mul(tp, g[1], q)));
    ck_assert_int_eq(tg_grad(tp, h, NULL, &w, 1, hr, true), TG_OK);
    tu_expect_exact(hr[0], "2x3", (double[]){-1, 7, -3, 5, 13, 3}, "R + 1 qᵀ");
    tg_tape_free(tp);
    for (int i = 0; i < 4; i++) tg_tensor_free(ins[i]);
    tg_tensor_free(r);
    tg_tensor_free(q);
}
END_TEST

/* Third order through batched products with broadcasting and through
 * add_bias and transpose: tg_gradgradcheck of h = <d<W, f>/d(A, B), (R, S)>,
 * f = (A B)², whose gradient is recorded, compares third derivatives with
 * finite differences of second ones. */
typedef struct third_ctx {
    bool affine; /* f = (Aᵀ + 1 b)² for A [k,n], b [n] instead */
    tg_tensor *w, *r[2];
} third_ctx;

static tg_tensor *contracted_gradient(tg_tape *tp, tg_tensor *const *in, void *ctx)
{
    const third_ctx *c = ctx;
    tg_tensor *y = c->affine ? tg_add_bias(tp, tg_transpose(tp, in[0]), in[1])
                             : tg_matmul(tp, in[0], in[1]);
    tg_tensor *g[2];
    if (tg_grad(tp, tg_sum(tp, tg_mul(tp, tg_square(tp, y), c->w)), NULL, in, 2, g, true))
        return NULL;
    return tg_add(tp, tg_sum(tp, tg_mul(tp, g[0], c->r[0])), tg_sum(tp, tg_mul(tp, g[1], c->r[1])));
}

START_TEST(third_derivatives_match_finite_differences)
{
    int n_batch = (int)(sizeof batch_cases / sizeof *batch_cases);
    third_ctx c = {.affine = _i == n_batch};
    const char *sa = c.affine ? "4x3" : batch_cases[_i].a, *sb = c.affine ? "4" : batch_cases[_i].b;
    const char *sy = c.affine ? "3x4" : batch_cases[_i].out;
    tg_tensor *in[2] = {tu_random(TG_F64, sa, -1, 1, 91), tu_random(TG_F64, sb, -1, 1, 92)};
    c.r[0] = tu_random(TG_F64, sa, -1, 1, 93), c.r[1] = tu_random(TG_F64, sb, -1, 1, 94);
    c.w = tu_random(TG_F64, sy, -1, 1, 95);
    ck_assert(in[0] && in[1] && c.r[0] && c.r[1] && c.w);
    tg_tensor_set_requires_grad(in[0], true);
    tg_tensor_set_requires_grad(in[1], true);
    tg_gradcheck_report rep;
    tg_status s = tg_gradgradcheck(contracted_gradient, in, 2, &c, NULL, &rep);
    ck_assert_msg(s == TG_OK && rep.passed, "%s x %s: %s", sa, sb, rep.msg);
    for (int i = 0; i < 2; i++) tg_tensor_free(in[i]), tg_tensor_free(c.r[i]);
    tg_tensor_free(c.w);
}
END_TEST

/* The recorded VJPs give the fused VJPs' values bit for bit in F64 where they
 * run the same arithmetic: transpose, add_bias, the rank-2 product, and
 * batched products whose operands are not broadcast (a broadcast operand's
 * recorded gradient sums its batches apart, after the products). */
START_TEST(recorded_gradients_equal_fused_ones)
{
    static const char *const cases[][2] = {
        {"3x4", NULL}, {"3x4", "4"}, {"5x7", "7x3"}, {"3x5x4", "3x4x2"}, {"2x3x5x4", "2x3x4x2"}};
    const char *sa = cases[_i][0], *sb = cases[_i][1];
    tg_tensor *a = tu_random(TG_F64, sa, -1, 1, 71);
    tg_tensor *b = sb ? tu_random(TG_F64, sb, -1, 1, 72) : NULL;
    tg_tensor_set_requires_grad(a, true);
    tg_tensor_set_requires_grad(b, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = !b                       ? tg_transpose(tp, a)
                   : tg_tensor_rank(b) == 1 ? tg_add_bias(tp, a, b)
                                            : tg_matmul(tp, a, b);
    ck_assert_msg(y != NULL, "%s", tg_tape_error(tp));
    tg_tensor *seed = tg_tensor_new(TG_F64, tg_tensor_rank(y), tg_tensor_shape(y));
    for (int64_t k = 0; k < tg_tensor_numel(y); k++) tu_put(seed, k, cos(0.7 * (double)k + 0.3));
    int n = b ? 2 : 1;
    tg_tensor *fused[2], *rec[2];
    ck_assert_int_eq(tg_grad(tp, y, seed, (tg_tensor *[]){a, b}, n, fused, false), TG_OK);
    ck_assert_int_eq(tg_grad(tp, y, seed, (tg_tensor *[]){a, b}, n, rec, true), TG_OK);
    for (int i = 0; i < n; i++)
        for (int64_t k = 0; k < tg_tensor_numel(fused[i]); k++)
            ck_assert_msg(tu_at(fused[i], k) == tu_at(rec[i], k),
                          "%s x %s: input %d [%lld]: fused %.17g, recorded %.17g", sa,
                          sb ? sb : "-", i, (long long)k, tu_at(fused[i], k), tu_at(rec[i], k));
    tg_tape_free(tp);
    tg_tensor_free(seed);
    tg_tensor_free(a);
    tg_tensor_free(b);
}
END_TEST

/* A recorded batched-matmul gradient, replayed on new data, equals a fresh recording. */
static void record_bmm_grads(tg_tape *tp, tg_tensor *a, tg_tensor *b, tg_tensor **g)
{
    tg_tensor *f = tg_sum(tp, tg_mul(tp, tg_matmul(tp, a, b), tg_matmul(tp, a, b)));
    ck_assert_int_eq(tg_grad(tp, f, NULL, (tg_tensor *[]){a, b}, 2, g, true), TG_OK);
}

START_TEST(recorded_batched_gradient_replays)
{
    tg_tensor *a = tu_random(TG_F64, "2x1x3x4", -1, 1, 81);
    tg_tensor *b = tu_random(TG_F64, "3x4x2", -1, 1, 82);
    tg_tensor *a2 = tu_random(TG_F64, "2x1x3x4", -1, 1, 83);
    ck_assert(a && b && a2);
    tg_tensor_set_requires_grad(a, true);
    tg_tensor_set_requires_grad(b, true);
    tg_tape *tp = tg_tape_new(), *fresh = tg_tape_new();
    tg_tensor *g[2], *want[2];
    record_bmm_grads(tp, a, b, g);
    memcpy(tg_tensor_data(a), tg_tensor_cdata(a2), 24 * sizeof(double));
    ck_assert_int_eq(tg_tape_replay(tp), TG_OK);
    record_bmm_grads(fresh, a, b, want);
    for (int i = 0; i < 2; i++)
        for (int64_t k = 0; k < tg_tensor_numel(g[i]); k++)
            ck_assert_msg(tu_at(g[i], k) == tu_at(want[i], k),
                          "input %d [%lld]: replay %.17g, fresh %.17g", i, (long long)k,
                          tu_at(g[i], k), tu_at(want[i], k));
    tg_tape_free(tp);
    tg_tape_free(fresh);
    tg_tensor_free(a);
    tg_tensor_free(b);
    tg_tensor_free(a2);
}
END_TEST

/* ====== Replay: new data in the leaves, the same values as a fresh recording ====== */

START_TEST(replay_matches_fresh_recording)
{
    tg_dtype dt = tu_loop_dtype(_i);
    tg_tensor *x = tu_random(dt, "3x4", -1, 1, 21), *w = tu_random(dt, "3x5", -1, 1, 22);
    tg_tensor *b = tu_random(dt, "5", -1, 1, 23), *x2 = tu_random(dt, "3x4", -1, 1, 24);
    ck_assert(x && w && b && x2);
    tg_tape *tp = tg_tape_new(), *fresh = tg_tape_new();
    tg_tensor *y = tg_add_bias(tp, tg_matmul(tp, tg_transpose(tp, x), w), b);
    ck_assert_ptr_nonnull(y);
    size_t bytes = (size_t)tg_tensor_numel(x) * (dt == TG_F64 ? 8 : 4);
    memcpy(tg_tensor_data(x), tg_tensor_data(x2), bytes);
    ck_assert_int_eq(tg_tape_replay(tp), TG_OK);
    tg_tensor *want = tg_add_bias(fresh, tg_matmul(fresh, tg_transpose(fresh, x2), w), b);
    ck_assert_ptr_nonnull(want);
    for (int64_t k = 0; k < tg_tensor_numel(y); k++)
        ck_assert_msg(tu_at(y, k) == tu_at(want, k), "[%lld]: replay %.17g, fresh %.17g",
                      (long long)k, tu_at(y, k), tu_at(want, k));
    tg_tape_free(tp);
    tg_tape_free(fresh);
    tg_tensor_free(x);
    tg_tensor_free(w);
    tg_tensor_free(b);
    tg_tensor_free(x2);
}
END_TEST

START_TEST(batched_replay_matches_fresh_recording)
{
    tg_dtype dt = tu_loop_dtype(_i);
    tg_tensor *a = tu_random(dt, "2x1x3x4", -1, 1, 41), *b = tu_random(dt, "3x4x2", -1, 1, 42);
    tg_tensor *w = tu_random(dt, "2x5", -1, 1, 43), *a2 = tu_random(dt, "2x1x3x4", -1, 1, 44);
    ck_assert(a && b && w && a2);
    tg_tape *tp = tg_tape_new(), *fresh = tg_tape_new();
    tg_tensor *y = tg_matmul(tp, tg_matmul(tp, a, b), w); /* broadcast, then folded */
    ck_assert_ptr_nonnull(y);
    size_t bytes = (size_t)tg_tensor_numel(a) * (dt == TG_F64 ? 8 : 4);
    memcpy(tg_tensor_data(a), tg_tensor_data(a2), bytes);
    ck_assert_int_eq(tg_tape_replay(tp), TG_OK);
    tg_tensor *want = tg_matmul(fresh, tg_matmul(fresh, a2, b), w);
    ck_assert_ptr_nonnull(want);
    ck_assert_int_eq(tg_tensor_rank(y), 4);
    ck_assert_int_eq(tg_tensor_numel(y), 2 * 3 * 3 * 5);
    for (int64_t k = 0; k < tg_tensor_numel(y); k++)
        ck_assert_msg(tu_at(y, k) == tu_at(want, k), "[%lld]: replay %.17g, fresh %.17g",
                      (long long)k, tu_at(y, k), tu_at(want, k));
    tg_tape_free(tp);
    tg_tape_free(fresh);
    tg_tensor_free(a);
    tg_tensor_free(b);
    tg_tensor_free(w);
    tg_tensor_free(a2);
}
END_TEST

/* ====== Errors: status and exact message; the tape stays failed ====== */

typedef tg_tensor *(*binary_fn)(tg_tape *tp, tg_tensor *a, tg_tensor *b);

static tg_tensor *transpose_ab(tg_tape *tp, tg_tensor *a, tg_tensor *b)
{
    (void)b;
    return tg_transpose(tp, a);
}

typedef struct err_case {
    binary_fn op;
    const char *a, *b; /* shape strings ("" is rank 0); NULL passes a NULL tensor */
    tg_dtype da, db;
    tg_status want;
    const char *msg;
} err_case;

#define F64 TG_F64
#define F32 TG_F32
static const err_case err_cases[] = {
    {tg_matmul, "2x3", "4x5", F64, F64, TG_ERR_SHAPE,
     "matmul: inner dimensions differ: [2x3] x [4x5]"},
    {tg_matmul, "32x64", "32x10", F32, F32, TG_ERR_SHAPE,
     "matmul: inner dimensions differ: [32x64] x [32x10]"},
    {tg_matmul, "3", "3x2", F64, F64, TG_ERR_SHAPE,
     "matmul: operands must have rank 2 to 4: [3] x [3x2]"},
    {tg_matmul, "2x2", "", F64, F64, TG_ERR_SHAPE,
     "matmul: operands must have rank 2 to 4: [2x2] x []"},
    {tg_matmul, "2x3x4", "3x2", F64, F64, TG_ERR_SHAPE,
     "matmul: inner dimensions differ: [2x3x4] x [3x2]"},
    {tg_matmul, "2x3x4", "3x4x2", F64, F64, TG_ERR_SHAPE,
     "matmul: batch dimensions do not broadcast: [2x3x4] x [3x4x2]"},
    {tg_matmul, "2x1x3x4", "3x2x4x2", F64, F64, TG_ERR_SHAPE,
     "matmul: batch dimensions do not broadcast: [2x1x3x4] x [3x2x4x2]"},
    {tg_matmul, "2x3x4", "2x4x2", F32, F64, TG_ERR_DTYPE,
     "matmul: inputs differ in dtype: f32 [2x3x4] and f64 [2x4x2]"},
    {tg_matmul, "3037000500x3037000500x1x0", "0x1", F64, F64, TG_ERR_SHAPE,
     "matmul: the result would be too large: [3037000500x3037000500x1x0] x [0x1]"},
    {tg_matmul, "2147483648x0", "0x1", F64, F64, TG_ERR_SHAPE,
     "matmul: a dimension exceeds INT_MAX: [2147483648x0] x [0x1]"},
    {tg_matmul, "2x3", "3x4", F32, F64, TG_ERR_DTYPE,
     "matmul: inputs differ in dtype: f32 [2x3] and f64 [3x4]"},
    {tg_matmul, NULL, "2x3", F64, F64, TG_ERR_ARG, "matmul: input 0 is NULL"},
    {tg_matmul, "2x3", NULL, F64, F64, TG_ERR_ARG, "matmul: input 1 is NULL"},
    {transpose_ab, "3", NULL, F64, F64, TG_ERR_SHAPE, "transpose: needs rank 2, got [3]"},
    {transpose_ab, "2x3x4", NULL, F32, F32, TG_ERR_SHAPE,
     "transpose: needs rank 2, got [2x3x4]"},
    {transpose_ab, NULL, NULL, F64, F64, TG_ERR_ARG, "transpose: input 0 is NULL"},
    {tg_add_bias, "2x3", "4", F64, F64, TG_ERR_SHAPE,
     "add_bias: needs x [n,m] and b [m]: [2x3] and [4]"},
    {tg_add_bias, "2x3", "1x3", F64, F64, TG_ERR_SHAPE,
     "add_bias: needs x [n,m] and b [m]: [2x3] and [1x3]"},
    {tg_add_bias, "3", "3", F64, F64, TG_ERR_SHAPE,
     "add_bias: needs x [n,m] and b [m]: [3] and [3]"},
    {tg_add_bias, "2x1", "", F64, F64, TG_ERR_SHAPE,
     "add_bias: needs x [n,m] and b [m]: [2x1] and []"},
    {tg_add_bias, "2x3", "3", F64, F32, TG_ERR_DTYPE,
     "add_bias: inputs differ in dtype: f64 [2x3] and f32 [3]"},
    {tg_add_bias, "2x3", NULL, F64, F64, TG_ERR_ARG, "add_bias: input 1 is NULL"},
};
#undef F64
#undef F32

START_TEST(bad_input_fails_with_message)
{
    const err_case *c = &err_cases[_i];
    tg_tensor *a = tu_operand(c->a, c->da, 1), *b = tu_operand(c->b, c->db, 2);
    tg_tensor *ok = tu_operand("2x2", TG_F64, 3);
    tg_tape *tp = tg_tape_new();
    ck_assert_ptr_null(c->op(tp, a, b));
    tu_expect_failed(tp, c->want, c->msg, _i);
    /* Sticky: a valid op now records nothing and the first message stays. */
    ck_assert_ptr_null(tg_matmul(tp, ok, ok));
    tu_expect_still_failed(tp, c->want, c->msg);
    tg_tape_free(tp);
    tg_tensor_free(a);
    tg_tensor_free(b);
    tg_tensor_free(ok);
}
END_TEST

START_TEST(empty_batch_of_any_size)
{
    /* No batch is walked when the result is empty, however many batches it has. */
    tg_tensor *a = tu_operand("9223372036854775807x0x0", TG_F64, 1);
    tg_tensor *b = tu_operand("9223372036854775807x0x0", TG_F64, 2);
    tg_tensor_set_requires_grad(a, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_matmul(tp, a, b);
    ck_assert_msg(y != NULL, "%s", tg_tape_error(tp));
    ck_assert_int_eq(tg_tensor_shape(y)[0], INT64_MAX);
    ck_assert_int_eq(tg_tensor_numel(y), 0);
    ck_assert_int_eq(tg_tape_replay(tp), TG_OK);
    tg_tape_free(tp);
    tg_tensor_free(a);
    tg_tensor_free(b);
}
END_TEST

START_TEST(null_tape_returns_null)
{
    tg_tensor *a = tu_operand("2x2", TG_F64, 1);
    ck_assert_ptr_null(tg_matmul(NULL, a, a));
    ck_assert_ptr_null(tg_transpose(NULL, a));
    ck_assert_ptr_null(tg_add_bias(NULL, a, a));
    tg_tensor_free(a);
}
END_TEST

static Suite *linalg_suite(void)
{
    Suite *s = suite_create("ops_linalg");
    TCase *tc = tcase_create("gradcheck");
    tcase_add_loop_test(tc, gradcheck_graph, 0, sizeof grad_cases / sizeof *grad_cases);
    suite_add_tcase(s, tc);

    tc = tcase_create("values");
    tcase_add_loop_test(tc, matmul_by_hand, 0, 2); /* F64, F32 */
    tcase_add_loop_test(tc, transpose_by_hand, 0, 2);
    tcase_add_loop_test(tc, add_bias_by_hand, 0, 2);
    tcase_add_loop_test(tc, matmul_with_empty_dims, 0, 2 * N_EMPTY);
    tcase_add_loop_test(tc, matmul_matches_naive_loop, 0, 2);
    tcase_add_loop_test(tc, batched_matmul_matches_naive_loops, 0,
                        2 * (int)(sizeof batch_cases / sizeof *batch_cases));
    tcase_add_loop_test(tc, replay_matches_fresh_recording, 0, 2);
    tcase_add_loop_test(tc, batched_replay_matches_fresh_recording, 0, 2);
    suite_add_tcase(s, tc);

    tc = tcase_create("second order");
    tcase_add_loop_test(tc, batched_matmul_second_derivatives, 0,
                        2 * (int)(sizeof batch_cases / sizeof *batch_cases));
    tcase_add_loop_test(tc, matmul_third_derivative, 0, 2);
    tcase_add_loop_test(tc, linear_ops_second_derivatives, 0, 2);
    tcase_add_loop_test(tc, recorded_gradients_equal_fused_ones, 0, 5);
    tcase_add_loop_test(tc, third_derivatives_match_finite_differences, 0,
                        1 + (int)(sizeof batch_cases / sizeof *batch_cases));
    tcase_add_test(tc, recorded_batched_gradient_replays);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_loop_test(tc, bad_input_fails_with_message, 0, sizeof err_cases / sizeof *err_cases);
    tcase_add_test(tc, empty_batch_of_any_size);
    tcase_add_test(tc, null_tape_returns_null);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run(linalg_suite()); }
