/* Status texts and the one place errors are recorded. */
#include "internal.h"

#include <stdarg.h>

static const char *const status_msg[] = {
    [TG_OK] = "success",
    [TG_ERR_ARG] = "invalid argument",
    [TG_ERR_SHAPE] = "shape mismatch",
    [TG_ERR_DTYPE] = "dtype mismatch",
    [TG_ERR_NOMEM] = "out of memory",
    [TG_ERR_STATE] = "call out of order",
    [TG_ERR_IO] = "I/O error",
    [TG_ERR_FORMAT] = "malformed or truncated file",
    [TG_ERR_NUMERIC] = "NaN or infinity produced",
};
_Static_assert(sizeof status_msg / sizeof *status_msg == TG_ERR_NUMERIC + 1, "one text per status");

const char *tg_status_str(tg_status s)
{
    if ((unsigned)s >= sizeof status_msg / sizeof *status_msg) return "unknown status";
    return status_msg[s];
}

int tg_version_number(void) { return TG_VERSION_NUMBER; }

#define TG__STR2(x) #x
#define TG__STR(x)  TG__STR2(x)
const char *tg_version_string(void)
{
    return TG__STR(TG_VERSION_MAJOR) "." TG__STR(TG_VERSION_MINOR) "." TG__STR(TG_VERSION_PATCH);
}

/* The first error wins: later failures are usually its echoes. One breakpoint
 * here catches every error recorded on a tape. */
tg_status tg__fail(tg_tape *tp, tg_status s, const char *fmt, ...)
{
    if (tp->status != TG_OK) return tp->status;
    tp->status = s;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tp->msg, sizeof tp->msg, fmt, ap);
    va_end(ap);
    return s;
}

tg_status tg__refuse(tg_tape *tp, tg_status s, const char *fmt, ...)
{
    if (tp->status != TG_OK) return tp->status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tp->msg, sizeof tp->msg, fmt, ap);
    va_end(ap);
    return s;
}

/* ====== The last error of tape-less calls (tg_last_error) ======
 * A function without a tape has nowhere else to leave its reason when its
 * signature returns only NULL or a status, so every failure of one is written
 * here, per thread, like errno. Successful calls leave it alone. */

static _Thread_local tg_error last_error;

const tg_error *tg_last_error(void) { return &last_error; }

TG__PRINTF(2, 0) static tg_status set_last(tg_status s, const char *fmt, va_list ap)
{
    last_error.status = s;
    vsnprintf(last_error.msg, sizeof last_error.msg, fmt, ap);
    return s;
}

tg_status tg__fail_call(tg_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_last(s, fmt, ap);
    va_end(ap);
    return s;
}

tg_status tg__set_error(tg_error *err, tg_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_last(s, fmt, ap);
    va_end(ap);
    if (err) *err = last_error;
    return s;
}

tg_status tg__bad_tensor(const char *fn, tg_dtype dt, int rank, const int64_t *shape)
{
    if (!tg__dtype_valid(dt))
        return tg__fail_call(TG_ERR_DTYPE, "%s: unknown dtype %d", fn, (int)dt);
    if (rank < 0 || rank > TG_MAX_RANK)
        return tg__fail_call(TG_ERR_ARG, "%s: rank %d outside 0..%d", fn, rank, TG_MAX_RANK);
    if (rank > 0 && !shape)
        return tg__fail_call(TG_ERR_ARG, "%s: NULL shape for rank %d", fn, rank);
    char dims[TG__SHAPE_STR_MAX];
    tg_tensor probe = {.dtype = dt, .rank = rank};
    for (int i = 0; i < rank; i++)
        probe.shape[i] = shape[i];
    tg__shape_str(&probe, dims, sizeof dims);
    for (int i = 0; i < rank; i++)
        if (shape[i] < 0)
            return tg__fail_call(TG_ERR_ARG, "%s: negative dimension in %s", fn, dims);
    int64_t numel = tg__numel(rank, shape);
    if (numel < 0 || (uint64_t)numel * tg__dtype_size(dt) > SIZE_MAX - TG__ALIGN)
        return tg__fail_call(TG_ERR_ARG, "%s: %s %s is too large to allocate", fn, dims,
                             tg__dt(dt)->name);
    return tg__fail_call(TG_ERR_NOMEM, "%s: out of memory for %s %s", fn, dims, tg__dt(dt)->name);
}
