/* Floating-point environment: flush-to-zero for denormals. */
#include "internal.h"

#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#define TG__MXCSR_FTZ 0x8000 /* flush results that would be denormal to zero */
#define TG__MXCSR_DAZ 0x0040 /* read denormal inputs as zero */
#endif

bool tg_set_flush_denormals(bool on)
{
#if defined(__SSE__) || defined(__x86_64__)
    unsigned int csr = _mm_getcsr();
    csr = on ? csr | TG__MXCSR_FTZ | TG__MXCSR_DAZ : csr & ~(unsigned)(TG__MXCSR_FTZ | TG__MXCSR_DAZ);
    _mm_setcsr(csr);
    return true;
#else
    (void)on;
    return false;
#endif
}
