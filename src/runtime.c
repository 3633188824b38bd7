/* Floating-point environment: flush-to-zero for denormals. */
#include "internal.h"

#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#define TG__MXCSR_FTZ 0x8000 /* flush results that would be denormal to zero */
#define TG__MXCSR_DAZ 0x0040 /* read denormal inputs as zero */

#if defined(TG_HAVE_CBLAS) && defined(__GNUC__)
/* OpenBLAS's (pthreads build) own calls that stop and start its worker pool.
 * They are not in cblas.h; weak, so a BLAS without them still links and the
 * restart below is skipped. */
extern int blas_thread_shutdown_(void) __attribute__((weak));
extern int blas_thread_init(void) __attribute__((weak));
#endif

/* A thread keeps the MXCSR it was created with, and OpenBLAS creates its
 * workers when it is loaded, before main: without this, the part of a
 * product they compute ignores the caller's FTZ/DAZ (measured: with DAZ set
 * in the caller only, the half of a 2-thread sgemm done by the worker read
 * denormal inputs as nonzero). Restarting the pool from the calling thread
 * creates the workers afresh with its MXCSR. */
static void restart_blas_workers(void)
{
#if defined(TG_HAVE_CBLAS) && defined(__GNUC__)
    if (blas_thread_shutdown_ && blas_thread_init) {
        blas_thread_shutdown_();
        blas_thread_init();
    }
#endif
}

bool tg_set_flush_denormals(bool on)
{
    const unsigned int bits = TG__MXCSR_FTZ | TG__MXCSR_DAZ;
    unsigned int old = _mm_getcsr(), csr = on ? old | bits : old & ~bits;
    if (csr == old) return true;
    _mm_setcsr(csr);
    restart_blas_workers();
    tg__pool_restart(); /* the library's own threads too */
    return true;
}

#else

bool tg_set_flush_denormals(bool on)
{
    (void)on;
    return false;
}

#endif
