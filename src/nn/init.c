/* Weight initialisation: Xavier (Glorot) and He (Kaiming), uniform or normal,
 * drawn from a caller's tg_rng in element order. */
#include "internal.h"

#include <math.h>

static tg_status bad_fans(int64_t fan_in, int64_t fan_out)
{
    return tg__fail_call(TG_ERR_ARG, "init_tensor: fans %lld and %lld, both must be >= 1",
                         (long long)fan_in, (long long)fan_out);
}

tg_status tg_init_tensor(tg_tensor *t, tg_init kind, int64_t fan_in, int64_t fan_out, tg_rng *r)
{
    if (!t) return tg__fail_call(TG_ERR_ARG, "init_tensor: NULL tensor");
    if (!tg__dt(t->dtype)->is_float)
        return tg__fail_call(TG_ERR_DTYPE, "init_tensor: %s tensor, not a float one",
                             tg__dt(t->dtype)->name);
    double bound; /* half-width of the uniform, or the normal's standard deviation */
    bool normal;
    switch (kind) {
    case TG_INIT_ZEROS:
        for (int64_t i = 0; i < t->numel; i++) tg__put(t, i, 0.0);
        return TG_OK;
    case TG_INIT_XAVIER_UNIFORM:
    case TG_INIT_XAVIER_NORMAL:
        if (fan_in < 1 || fan_out < 1) return bad_fans(fan_in, fan_out);
        normal = kind == TG_INIT_XAVIER_NORMAL;
        bound = sqrt((normal ? 2.0 : 6.0) / ((double)fan_in + (double)fan_out));
        break;
    case TG_INIT_HE_UNIFORM:
    case TG_INIT_HE_NORMAL:
        if (fan_in < 1 || fan_out < 1) return bad_fans(fan_in, fan_out);
        normal = kind == TG_INIT_HE_NORMAL;
        bound = sqrt((normal ? 2.0 : 6.0) / (double)fan_in);
        break;
    case TG_INIT_FAN_IN_UNIFORM:
        if (fan_in < 1) return TG_ERR_ARG;
        normal = false;
        bound = 1.0 / sqrt((double)fan_in);
        break;
    default:
        return tg__fail_call(TG_ERR_ARG, "init_tensor: unknown kind %d", (int)kind);
    }
    if (!r) return tg__fail_call(TG_ERR_ARG, "init_tensor: NULL rng");
    /* Draws are taken in element order in both dtypes, so an F32 tensor holds
     * the F64 tensor's values rounded. */
    for (int64_t i = 0; i < t->numel; i++) {
        double v = normal ? bound * tg_rng_normal(r) : bound * (2.0 * tg_rng_uniform(r) - 1.0);
        tg__put(t, i, v);
    }
    return TG_OK;
}
