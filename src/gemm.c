/*
 * tg__gemm: the one place the matrix product is chosen. With CBLAS
 * (TG_HAVE_CBLAS) it is a direct sgemm/dgemm call; otherwise a portable
 * kernel whose inner loops run over contiguous memory so the compiler can
 * vectorise them. Both honour the transpose flags, so no VJP ever
 * materialises a transpose. Products of at most GEMM_SMALL_MAX multiply-adds
 * take a small kernel of their own with or without BLAS: OpenBLAS spends
 * 70-190 ns per call on locks and buffer setup before the first
 * multiplication, more than the whole of a 1x2 by 2x3 product.
 */
#include "internal.h"

#include <unistd.h>

#ifdef TG_HAVE_CBLAS
#include <cblas.h>
#endif

/* ====== Tiny products ======
 * Each element of C is acc = sum over p = 0 .. k-1 of op(A)[i,p] op(B)[p,j],
 * accumulated in that order in the element type from 0, each product rounded
 * before its addition (the project builds with -ffp-contract=off), then
 * C = alpha acc (beta 0, so NaN in C cannot leak), C + acc (alpha and beta 1,
 * what a VJP asks for) or beta C + alpha acc. tests/test_gemm_small.c checks
 * this to the bit. Up to GEMM_SMALL_MAX multiply-adds, where it is faster
 * than a BLAS call (measured on W0's and W1's shapes: 15-30 ns against
 * 70-190 ns at m n k = 6; BLAS wins from about 8x8x8 on). */
#define GEMM_SMALL_MAX 128

/* acc for element (i, j), then STORE writes it. */
#define GEMM_SMALL_LOOP(T, STORE)                                                                  \
    for (int64_t i = 0; i < m; i++) {                                                              \
        T *ci = c + i * ldc;                                                                       \
        for (int64_t j = 0; j < n; j++) {                                                          \
            T acc = 0;                                                                             \
            for (int64_t p = 0; p < k; p++) acc += a[i * sai + p * sap] * b[p * sbp + j * sbj];   \
            STORE;                                                                                 \
        }                                                                                          \
    }

#define GEMM_SMALL(NAME, T)                                                                        \
    static void NAME(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T *a,      \
                     int64_t lda, const T *b, int64_t ldb, T beta, T *c, int64_t ldc)              \
    {                                                                                              \
        const int64_t sai = ta ? 1 : lda, sap = ta ? lda : 1; /* op(A)[i,p] = a[i sai + p sap] */ \
        const int64_t sbp = tb ? 1 : ldb, sbj = tb ? ldb : 1; /* op(B)[p,j] = b[p sbp + j sbj] */ \
        if (beta == 0)                                                                             \
            GEMM_SMALL_LOOP(T, ci[j] = alpha * acc)                                                \
        else if (beta == 1 && alpha == 1)                                                          \
            GEMM_SMALL_LOOP(T, ci[j] += acc)                                                       \
        else                                                                                       \
            GEMM_SMALL_LOOP(T, ci[j] = beta * ci[j] + alpha * acc)                                 \
    }
GEMM_SMALL(gemm_small_f32, float)
GEMM_SMALL(gemm_small_f64, double)

#ifndef TG_HAVE_CBLAS
/* C = beta C first (beta = 0 writes zeros, so NaN in C cannot leak), then
 * C += alpha op(A) op(B) in the loop order that keeps the innermost loop
 * contiguous for each transpose case. Blocking over k keeps a panel of B in cache. */
#define GEMM_PORTABLE(NAME, T)                                                                     \
    static void NAME(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T *a,      \
                     int64_t lda, const T *b, int64_t ldb, T beta, T *c, int64_t ldc)              \
    {                                                                                              \
        for (int64_t i = 0; i < m; i++) {                                                          \
            T *ci = c + i * ldc;                                                                   \
            if (beta == 0)                                                                         \
                for (int64_t j = 0; j < n; j++) ci[j] = 0;                                         \
            else if (beta != 1)                                                                    \
                for (int64_t j = 0; j < n; j++) ci[j] *= beta;                                     \
        }                                                                                          \
        enum { KB = 256 };                                                                         \
        for (int64_t p0 = 0; p0 < k; p0 += KB) {                                                   \
            int64_t p1 = p0 + KB < k ? p0 + KB : k;                                                \
            for (int64_t i = 0; i < m; i++) {                                                      \
                T *ci = c + i * ldc;                                                               \
                if (!tb) {                                                                         \
                    for (int64_t p = p0; p < p1; p++) {                                            \
                        T aip = alpha * (ta ? a[p * lda + i] : a[i * lda + p]);                    \
                        const T *bp = b + p * ldb;                                                 \
                        for (int64_t j = 0; j < n; j++) ci[j] += aip * bp[j];                      \
                    }                                                                              \
                } else {                                                                           \
                    for (int64_t j = 0; j < n; j++) {                                              \
                        const T *bj = b + j * ldb;                                                 \
                        T acc = 0;                                                                 \
                        if (!ta)                                                                   \
                            for (int64_t p = p0; p < p1; p++) acc += a[i * lda + p] * bj[p];       \
                        else                                                                       \
                            for (int64_t p = p0; p < p1; p++) acc += a[p * lda + i] * bj[p];       \
                        ci[j] += alpha * acc;                                                      \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }
GEMM_PORTABLE(gemm_f32, float)
GEMM_PORTABLE(gemm_f64, double)
#endif

void tg__gemm(tg_dtype dt, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
              double alpha, const void *a, int64_t lda, const void *b, int64_t ldb, double beta,
              void *c, int64_t ldc)
{
    if (m == 0 || n == 0) return;
    /* Each extent is checked first so the product cannot overflow; then
     * n <= m n k <= GEMM_SMALL_MAX, so a row of C fits the kernel's acc. */
    if (k >= 1 && m <= GEMM_SMALL_MAX && n <= GEMM_SMALL_MAX && k <= GEMM_SMALL_MAX &&
        m * n * k <= GEMM_SMALL_MAX) {
        if (dt == TG_F64)
            gemm_small_f64(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        else
            gemm_small_f32(trans_a, trans_b, m, n, k, (float)alpha, a, lda, b, ldb, (float)beta,
                           c, ldc);
        return;
    }
#ifdef TG_HAVE_CBLAS
    if (k == 0) { /* BLAS leaves C alone when k = 0 only for beta = 1; make it exact */
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                if (dt == TG_F64) {
                    double *ci = (double *)c + i * ldc;
                    ci[j] = beta == 0 ? 0 : beta * ci[j];
                } else {
                    float *ci = (float *)c + i * ldc;
                    ci[j] = beta == 0 ? 0.0f : (float)beta * ci[j];
                }
            }
        return;
    }
    enum CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans;
    enum CBLAS_TRANSPOSE tb = trans_b ? CblasTrans : CblasNoTrans;
    if (dt == TG_F64)
        cblas_dgemm(CblasRowMajor, ta, tb, (int)m, (int)n, (int)k, alpha, a, (int)lda, b, (int)ldb,
                    beta, c, (int)ldc);
    else
        cblas_sgemm(CblasRowMajor, ta, tb, (int)m, (int)n, (int)k, (float)alpha, a, (int)lda, b,
                    (int)ldb, (float)beta, c, (int)ldc);
#else
    if (dt == TG_F64)
        gemm_f64(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    else
        gemm_f32(trans_a, trans_b, m, n, k, (float)alpha, a, lda, b, ldb, (float)beta, c, ldc);
#endif
}

/* ====== Runtime settings ====== */

void tg_set_num_threads(int n)
{
#ifdef TG_HAVE_CBLAS
    if (n <= 0) n = 0; /* OpenBLAS: 0 or less means all cores */
    openblas_set_num_threads(n);
    n = openblas_get_num_threads();
#else
    if (n <= 0) n = (int)sysconf(_SC_NPROCESSORS_ONLN);
#endif
    tg__pool_set_threads(n);
}

int tg_get_num_threads(void) { return tg__pool_threads(); }

int tg__blas_threads(void)
{
#ifdef TG_HAVE_CBLAS
    return openblas_get_num_threads();
#else
    return 1;
#endif
}
