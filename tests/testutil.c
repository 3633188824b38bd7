#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int tu_parse_shape(const char *s, int64_t *shape)
{
    if (!s || !*s || strcmp(s, "scalar") == 0) return 0;
    int rank = 0;
    while (*s) {
        if (rank == TG_MAX_RANK) return -1;
        char *end;
        long long d = strtoll(s, &end, 10);
        if (end == s || d < 0) return -1;
        shape[rank++] = d;
        s = end;
        if (*s == 'x') s++;
        else if (*s) return -1;
    }
    return rank;
}

tg_tensor *tu_from(tg_dtype dt, const char *shape_str, const double *v)
{
    int64_t shape[TG_MAX_RANK];
    int rank = tu_parse_shape(shape_str, shape);
    if (rank < 0) return NULL;
    tg_tensor *t = tg_tensor_new(dt, rank, shape);
    if (!t) return NULL;
    for (int64_t k = 0; k < tg_tensor_numel(t); k++) {
        if (dt == TG_F64) ((double *)tg_tensor_data(t))[k] = v[k];
        else ((float *)tg_tensor_data(t))[k] = (float)v[k];
    }
    return t;
}

tg_tensor *tu_random(tg_dtype dt, const char *shape_str, double lo, double hi, uint64_t seed)
{
    int64_t shape[TG_MAX_RANK];
    int rank = tu_parse_shape(shape_str, shape);
    if (rank < 0) return NULL;
    tg_tensor *t = tg_tensor_new(dt, rank, shape);
    if (!t) return NULL;
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int64_t k = 0; k < tg_tensor_numel(t); k++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift64 */
        double u = (double)(x >> 11) / 9007199254740992.0;
        double v = lo + (hi - lo) * u;
        if (dt == TG_F64) ((double *)tg_tensor_data(t))[k] = v;
        else ((float *)tg_tensor_data(t))[k] = (float)v;
    }
    return t;
}

double tu_at(const tg_tensor *t, int64_t k)
{
    const void *d = tg_tensor_data((tg_tensor *)t);
    return tg_tensor_dtype(t) == TG_F64 ? ((const double *)d)[k] : (double)((const float *)d)[k];
}

int tu_close(const tg_tensor *a, const tg_tensor *b, double tol, int64_t *bad)
{
    if (!a || !b || tg_tensor_numel(a) != tg_tensor_numel(b)) {
        if (bad) *bad = -1;
        return 0;
    }
    for (int64_t k = 0; k < tg_tensor_numel(a); k++) {
        double x = tu_at(a, k), y = tu_at(b, k);
        if (!(fabs(x - y) <= tol * fmax(1.0, fabs(y)))) {
            if (bad) *bad = k;
            return 0;
        }
    }
    return 1;
}

int tu_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
