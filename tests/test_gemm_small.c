/*
 * Tiny matrix products (src/gemm.c, at most 128 multiply-adds) run in a
 * kernel of the library's own, with or without BLAS. Its result is stated
 * exactly: each element is the sum over p = 0 .. k-1 of the products, in
 * that order, each product rounded before its addition, from 0; then alpha
 * and beta as BLAS applies them. BLAS itself orders and fuses its
 * multiply-adds its own way (OpenBLAS's Haswell kernel uses FMA), so results
 * of these sizes may differ from the BLAS build's in the last bits; above
 * the limit nothing changed.
 */
#include "internal.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>

/* op(X)[r, c] of a row-major matrix with leading dimension ld. */
#define AT(x, trans, ld, r, c) ((trans) ? (x)[(c) * (ld) + (r)] : (x)[(r) * (ld) + (c)])

#define REFERENCE(T)                                                                               \
    static void reference_##T(bool ta, bool tb, int m, int n, int k, T alpha, const T *a, int lda, \
                              const T *b, int ldb, T beta, T *c, int ldc)                          \
    {                                                                                              \
        for (int i = 0; i < m; i++)                                                                \
            for (int j = 0; j < n; j++) {                                                          \
                T acc = 0;                                                                         \
                for (int p = 0; p < k; p++) {                                                      \
                    T prod = AT(a, ta, lda, i, p) * AT(b, tb, ldb, p, j);                          \
                    acc = acc + prod;                                                              \
                }                                                                                  \
                T *cij = &c[i * ldc + j];                                                          \
                if (beta == 0)                                                                     \
                    *cij = alpha * acc;                                                            \
                else if (beta == 1 && alpha == 1)                                                  \
                    *cij = *cij + acc;                                                             \
                else                                                                               \
                    *cij = beta * *cij + alpha * acc;                                              \
            }                                                                                      \
    }
REFERENCE(float)
REFERENCE(double)

/* Every shape up to m n k = 128 that the loop below draws, all four transpose
 * cases, alpha and beta of (1, 0), (1, 1) and (2, 0.5), leading dimensions
 * wider than the matrices: tg__gemm gives the reference's bits exactly. */
START_TEST(tiny_products_are_the_ordered_sums)
{
    static const int dims[][3] = {{1, 3, 2},   {1, 2, 3},   {3, 2, 1}, {2, 3, 1}, {4, 4, 8},
                                  {1, 1, 128}, {128, 1, 1}, {2, 8, 8}, {5, 5, 5}, {3, 7, 6}};
    static const double ab[][2] = {{1, 0}, {1, 1}, {2, 0.5}};
    tg_rng r;
    tg_rng_seed(&r, 5);
    float fa[1024], fb[1024], fc[1024], fr[1024];
    double da[1024], db[1024], dc[1024], dr[1024];
    for (size_t s = 0; s < sizeof dims / sizeof *dims; s++)
        for (int t = 0; t < 4; t++)
            for (size_t q = 0; q < 3; q++) {
                int m = dims[s][0], n = dims[s][1], k = dims[s][2];
                bool ta = t & 1, tb = t & 2;
                int lda = (ta ? m : k) + 1, ldb = (tb ? k : n) + 2, ldc = n + 3;
                for (int i = 0; i < 1024; i++) {
                    da[i] = 2 * tg_rng_uniform(&r) - 1, db[i] = 2 * tg_rng_uniform(&r) - 1;
                    dc[i] = dr[i] = 2 * tg_rng_uniform(&r) - 1;
                    fa[i] = (float)da[i], fb[i] = (float)db[i], fc[i] = fr[i] = (float)dc[i];
                }
                double alpha = ab[q][0], beta = ab[q][1];
                tg__gemm(TG_F64, ta, tb, m, n, k, alpha, da, lda, db, ldb, beta, dc, ldc);
                reference_double(ta, tb, m, n, k, alpha, da, lda, db, ldb, beta, dr, ldc);
                tg__gemm(TG_F32, ta, tb, m, n, k, alpha, fa, lda, fb, ldb, beta, fc, ldc);
                reference_float(ta, tb, m, n, k, (float)alpha, fa, lda, fb, ldb, (float)beta, fr,
                                ldc);
                for (int i = 0; i < 1024; i++) {
                    ck_assert_msg(dc[i] == dr[i], "f64 %dx%dx%d t%d ab%zu: C[%d] %.17g, want %.17g",
                                  m, n, k, t, q, i, dc[i], dr[i]);
                    ck_assert_msg(fc[i] == fr[i], "f32 %dx%dx%d t%d ab%zu: C[%d] %.9g, want %.9g",
                                  m, n, k, t, q, i, (double)fc[i], (double)fr[i]);
                }
            }
}
END_TEST

/* W0's products through the ops: the 2-3-2 network's forward, and matmul's
 * VJP (dA = dG Bᵀ, dB = Aᵀ dG into zeroed gradients), equal the ordered sums. */
START_TEST(matmul_of_the_seed_network_is_exact)
{
    const float x[2] = {0.3f, -0.7f}, w[6] = {0.1f, -0.2f, 0.3f, 0.4f, 0.5f, -0.6f};
    tg_tensor *a = tg_tensor_from(TG_F32, 2, (int64_t[]){1, 2}, x);
    tg_tensor *b = tg_tensor_from(TG_F32, 2, (int64_t[]){2, 3}, w);
    tg_tensor_set_requires_grad(a, true);
    tg_tensor_set_requires_grad(b, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_matmul(tp, a, b);
    tg_tensor *seed = tg_tensor_from(TG_F32, 2, (int64_t[]){1, 3}, (float[]){0.25f, -1.5f, 3.0f});
    ck_assert_int_eq(tg_backward_seed(tp, y, seed), TG_OK);
    const float *yv = tg_tensor_data(y), *g = tg_tensor_data(seed);
    for (int j = 0; j < 3; j++) {
        float acc = 0;
        acc = acc + x[0] * w[j];
        acc = acc + x[1] * w[3 + j];
        ck_assert(yv[j] == acc);
    }
    const float *da = tg_tensor_data(tg_tensor_grad(a)), *dbv = tg_tensor_data(tg_tensor_grad(b));
    for (int p = 0; p < 2; p++) {
        float acc = 0;
        for (int j = 0; j < 3; j++)
            acc = acc + g[j] * w[p * 3 + j];
        ck_assert(da[p] == acc);
        for (int j = 0; j < 3; j++)
            ck_assert(dbv[p * 3 + j] == x[p] * g[j]);
    }
    tg_tape_free(tp);
    tg_tensor_free(a);
    tg_tensor_free(b);
    tg_tensor_free(seed);
}
END_TEST

/* Past the limit (8x8x8 = 512 multiply-adds) the product is BLAS's or the
 * portable kernel's, as before: within rounding of the ordered sum. */
START_TEST(larger_products_agree_within_rounding)
{
    double a[64], b[64], c[64], r[64];
    tg_rng rng;
    tg_rng_seed(&rng, 9);
    for (int i = 0; i < 64; i++)
        a[i] = tg_rng_uniform(&rng), b[i] = tg_rng_uniform(&rng);
    tg__gemm(TG_F64, false, true, 8, 8, 8, 1.0, a, 8, b, 8, 0.0, c, 8);
    reference_double(false, true, 8, 8, 8, 1.0, a, 8, b, 8, 0.0, r, 8);
    for (int i = 0; i < 64; i++)
        ck_assert_double_eq_tol(c[i], r[i], 1e-14);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("gemm_small");
    TCase *tc = tcase_create("gemm_small");
    tcase_add_test(tc, tiny_products_are_the_ordered_sums);
    tcase_add_test(tc, matmul_of_the_seed_network_is_exact);
    tcase_add_test(tc, larger_products_agree_within_rounding);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
