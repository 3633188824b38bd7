/*
 * tg__gemm: the one place the matrix product is chosen. With CBLAS
 * (TG_HAVE_CBLAS) it is a direct sgemm/dgemm call; otherwise a portable
 * kernel whose inner loops run over contiguous memory so the compiler can
 * vectorise them. Both honour the transpose flags, so no VJP ever
 * materialises a transpose.
 */
#include "internal.h"

#ifdef TG_HAVE_CBLAS
#include <cblas.h>
#endif

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
#else
    (void)n;
#endif
}

int tg_get_num_threads(void)
{
#ifdef TG_HAVE_CBLAS
    return openblas_get_num_threads();
#else
    return 1;
#endif
}
