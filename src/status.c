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
};
_Static_assert(sizeof status_msg / sizeof *status_msg == TG_ERR_FORMAT + 1, "one text per status");

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

tg_status tg__set_error(tg_error *err, tg_status s, const char *fmt, ...)
{
    if (!err) return s;
    err->status = s;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return s;
}
