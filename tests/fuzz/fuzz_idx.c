/*
 * Fuzz target: the input is an IDX file, plain or gzipped. tg_idx_load must
 * either load it or fail with TG_ERR_FORMAT (or IO, NOMEM) and a message,
 * leaving the output alone; both dtypes must agree; a loaded tensor saved
 * as IDX doubles must load back to the same values.
 */
#include "fuzzutil.h"

#include <tapegrad/tapegrad.h>

#include <math.h>
#include <string.h>

static bool ok_status(tg_status s)
{
    return s == TG_OK || s == TG_ERR_FORMAT || s == TG_ERR_IO || s == TG_ERR_NOMEM;
}

static double at(tg_tensor *t, int64_t i)
{
    return tg_tensor_dtype(t) == TG_F64 ? ((double *)tg_tensor_data(t))[i]
                                        : (double)((float *)tg_tensor_data(t))[i];
}

static bool same_values(tg_tensor *a, tg_tensor *b)
{
    if (tg_tensor_rank(a) != tg_tensor_rank(b) || tg_tensor_numel(a) != tg_tensor_numel(b))
        return false;
    for (int i = 0; i < tg_tensor_rank(a); i++)
        if (tg_tensor_shape(a)[i] != tg_tensor_shape(b)[i]) return false;
    for (int64_t i = 0; i < tg_tensor_numel(a); i++) {
        double x = at(a, i), y = at(b, i);
        if (!(x == y || (isnan(x) && isnan(y)))) return false;
    }
    return true;
}

/* Loads 'path' as 'dt' and checks the contract of a failure. */
static tg_status load(const char *path, tg_dtype dt, double scale, tg_tensor **out)
{
    tg_tensor *sentinel = (tg_tensor *)&sentinel;
    *out = sentinel;
    tg_error err = {TG_OK, ""};
    tg_status s = tg_idx_load(path, dt, scale, out, &err);
    FZ_CHECK(ok_status(s));
    if (s == TG_OK) {
        FZ_CHECK(*out != sentinel && *out != NULL);
        FZ_CHECK(tg_tensor_dtype(*out) == dt);
        FZ_CHECK(tg_tensor_rank(*out) >= 1 && tg_tensor_rank(*out) <= TG_MAX_RANK);
    } else {
        FZ_CHECK(*out == sentinel);
        FZ_CHECK(err.status == s && err.msg[0] != '\0' && strstr(err.msg, path));
        *out = NULL;
    }
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fz_write(data, size, ".idx");
    tg_tensor *t64, *t32;
    tg_status s64 = load(path, TG_F64, 1.0, &t64);
    tg_status s32 = load(path, TG_F32, 1.0 / 255, &t32);
    FZ_CHECK(s64 == s32 || s64 == TG_ERR_NOMEM || s32 == TG_ERR_NOMEM);
    FZ_CHECK(tg_idx_load(path, TG_F64, 1.0, NULL, NULL) == TG_ERR_ARG);

    if (s64 == TG_OK) {
        /* Doubles hold every IDX type exactly, so a round trip keeps every value. */
        const char *copy = fz_write((const uint8_t *)"", 0, ".copy.idx");
        tg_error err = {TG_OK, ""};
        FZ_CHECK(tg_idx_save(copy, t64, 0x0E, &err) == TG_OK);
        tg_tensor *back;
        FZ_CHECK(load(copy, TG_F64, 1.0, &back) == TG_OK);
        FZ_CHECK(same_values(t64, back));
        tg_tensor_free(back);
    }
    tg_tensor_free(t64);
    tg_tensor_free(t32);
    return 0;
}
