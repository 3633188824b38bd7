/*
 * Numeric CSV: one row per line, an optional header line, the label column
 * chosen by the caller. The loader reads the whole file before it hands out a
 * tensor, so the caller's output pointers are written only on success, and
 * every error message names the file and the line.
 */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every cell of every data row, the label column included, in file order. */
typedef struct csv_values {
    double *v;
    size_t n, cap;
} csv_values;

static bool values_push(csv_values *a, double x)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 1024;
        if (cap > SIZE_MAX / sizeof *a->v) return false;
        double *v = tg__realloc(a->v, cap * sizeof *v);
        if (!v) return false;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return true;
}

/* True when the NUL-terminated cell is one number with optional spaces around it. */
static bool parse_cell(const char *s, double *v)
{
    char *end;
    *v = strtod(s, &end);
    if (end == s) return false; /* also catches an empty or all-space cell */
    while (*end == ' ' || *end == '\t')
        end++;
    return *end == '\0';
}

static const char *skip_spaces(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

/* Splits 'line' in place at 'delim' and appends its cells to 'vals'. Returns
 * the number of cells, -1 when a cell is not a number (its 1-based column and
 * text in *bad_col and *bad_cell), -2 when out of memory. */
static int64_t parse_row(char *line, char delim, csv_values *vals, int64_t *bad_col,
                         const char **bad_cell)
{
    int64_t col = 0;
    for (char *cell = line;;) {
        char *next = strchr(cell, delim);
        if (next) *next = '\0';
        double v;
        col++;
        if (!parse_cell(cell, &v)) {
            *bad_col = col;
            *bad_cell = skip_spaces(cell);
            return -1;
        }
        if (!values_push(vals, v)) return -2;
        if (!next) return col;
        cell = next + 1;
    }
}

static bool blank(const char *s) { return *skip_spaces(s) == '\0'; }

/* The label column's index for 'cols' columns: -1 for none, -2 when out of range. */
static int64_t label_index(int label_col, int64_t cols)
{
    if (label_col == -1) return -1;
    int64_t k = label_col < -1 ? cols + label_col + 1 : label_col;
    return k >= 0 && k < cols ? k : -2;
}

tg_status tg_csv_load(const char *path, const tg_csv_opts *opts, tg_tensor **x, tg_tensor **y,
                      tg_error *err)
{
    tg_csv_opts o = opts ? *opts : (tg_csv_opts){.header = -1, .label_col = -1, .dtype = TG_F32};
    char delim = o.delimiter ? o.delimiter : ',';
    if (!path || !x || (o.dtype != TG_F32 && o.dtype != TG_F64) || o.header < -1 || o.header > 1 ||
        delim == '\n' || delim == '\r')
        return tg__set_error(err, TG_ERR_ARG, "csv_load: NULL path or x, or bad options");
    FILE *f = fopen(path, "rb");
    if (!f) return tg__set_error(err, TG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));

    csv_values vals = {0};
    char *line = NULL;
    size_t line_cap = 0;
    long long lineno = 0;
    int64_t cols = -1, rows = 0, label = -1;
    bool first = true;
    tg_status s = TG_OK;
    tg_tensor *tx = NULL, *ty = NULL;
    for (;;) {
        errno = 0;
        ssize_t len = getline(&line, &line_cap, f);
        if (len < 0) break;
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (blank(line)) continue;
        if (first && o.header == 1) {
            first = false;
            continue;
        }
        size_t mark = vals.n;
        int64_t bad_col = 0;
        const char *bad_cell = "";
        int64_t n = parse_row(line, delim, &vals, &bad_col, &bad_cell);
        if (first && o.header == -1 && n == -1) {
            vals.n = mark; /* a first line that is not all numbers is the header */
            first = false;
            continue;
        }
        first = false;
        if (n == -2) {
            s = tg__set_error(err, TG_ERR_NOMEM, "%s:%lld: out of memory", path, lineno);
            goto done;
        }
        if (n == -1) {
            s = tg__set_error(err, TG_ERR_FORMAT, "%s:%lld: column %lld: not a number: '%.40s'",
                              path, lineno, (long long)bad_col, bad_cell);
            goto done;
        }
        if (cols < 0) {
            cols = n;
            label = label_index(o.label_col, cols);
            if (label == -2) {
                s = tg__set_error(err, TG_ERR_ARG,
                                  "%s:%lld: label column %d out of range for %lld columns", path,
                                  lineno, o.label_col, (long long)cols);
                goto done;
            }
        } else if (n != cols) {
            s = tg__set_error(err, TG_ERR_FORMAT, "%s:%lld: %lld columns, expected %lld", path,
                              lineno, (long long)n, (long long)cols);
            goto done;
        }
        rows++;
    }
    if (ferror(f)) {
        s = tg__set_error(err, errno == ENOMEM ? TG_ERR_NOMEM : TG_ERR_IO,
                          "%s:%lld: read failed: %s", path, lineno + 1, strerror(errno));
        goto done;
    }
    if (rows == 0) {
        s = tg__set_error(err, TG_ERR_FORMAT, "%s: no data rows", path);
        goto done;
    }

    int64_t x_cols = cols - (label >= 0);
    tx = tg__tensor_alloc(o.dtype, 2, (int64_t[]){rows, x_cols});
    if (label >= 0 && y) ty = tg__tensor_alloc(o.dtype, 1, &rows);
    if (!tx || (label >= 0 && y && !ty)) {
        s = tg__set_error(err, TG_ERR_NOMEM, "%s: out of memory for %lld rows", path,
                          (long long)rows);
        goto done;
    }
    for (int64_t r = 0, xi = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            double v = vals.v[r * cols + c];
            if (c != label)
                tg__put(tx, xi++, v);
            else if (ty)
                tg__put(ty, r, v);
        }
    *x = tx;
    if (y) *y = ty;
    tx = ty = NULL;
done:
    tg_tensor_free(tx);
    tg_tensor_free(ty);
    free(vals.v);
    free(line);
    fclose(f);
    return s;
}
