/*
 * Fuzz target: the first two bytes pick the options, the rest is the CSV file.
 * tg_csv_load must load it or fail with a status and a message, leaving the
 * outputs alone; a loaded x is [rows, cols] and y, with a label column, [rows].
 */
#include "fuzzutil.h"

#include <tapegrad/tapegrad.h>

#include <limits.h>
#include <string.h>

static const char delimiters[] = {0, ',', ';', '\t', ' ', '\n', 'e', '-'};
static const int headers[] = {-1, 0, 1, 2};
static const int label_cols[] = {-1, 0, 1, -2, -3, 2, 1000, INT_MIN};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    unsigned o = data[0], f = data[1];
    tg_csv_opts opts = {.delimiter = delimiters[o & 7],
                        .header = headers[(o >> 3) & 3],
                        .label_col = label_cols[(o >> 5) & 7],
                        .dtype = (f & 1) ? TG_F64 : TG_F32};
    bool want_y = f & 2;
    const char *path = fz_write(data + 2, size - 2, ".csv");

    tg_tensor *sentinel = (tg_tensor *)&sentinel, *x = sentinel, *y = sentinel;
    tg_error err = {TG_OK, ""};
    tg_status s = tg_csv_load(path, (f & 4) ? NULL : &opts, &x, want_y ? &y : NULL, &err);
    if (s != TG_OK) {
        FZ_CHECK(s == TG_ERR_FORMAT || s == TG_ERR_ARG || s == TG_ERR_NOMEM || s == TG_ERR_IO);
        FZ_CHECK(x == sentinel && y == sentinel);
        FZ_CHECK(err.status == s && err.msg[0] != '\0');
        return 0;
    }
    FZ_CHECK(x && x != sentinel && tg_tensor_rank(x) == 2);
    int64_t rows = tg_tensor_shape(x)[0];
    FZ_CHECK(rows >= 1);
    if (want_y) {
        bool labelled = !(f & 4) && opts.label_col != -1;
        FZ_CHECK(labelled ? y != NULL && y != sentinel : y == NULL);
        if (y) FZ_CHECK(tg_tensor_rank(y) == 1 && tg_tensor_shape(y)[0] == rows);
        if (y) FZ_CHECK(tg_tensor_dtype(y) == tg_tensor_dtype(x));
        tg_tensor_free(y);
    }
    tg_tensor_free(x);
    return 0;
}
