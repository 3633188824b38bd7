/*
 * Numeric CSV: one row per line, an optional header line, the label column
 * chosen by the caller. The loader reads the whole file before it hands out a
 * tensor, so the caller's output pointers are written only on success, and
 * every error message names the file and the line.
 */
#include "internal.h"

#include <errno.h>
#include <math.h>
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

/* What parse_cell made of a cell. */
typedef enum cell_kind {
    CELL_NUMBER, /* a number in range */
    CELL_EMPTY,  /* nothing but spaces */
    CELL_TEXT,   /* not a number */
    CELL_HEX,    /* a hexadecimal number, which strtod takes but a CSV of data never means */
    CELL_RANGE,  /* a decimal number too large for the dtype (1e999; 1e39 in f32) */
} cell_kind;

static const char *skip_spaces(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

/* Reads one NUL-terminated cell, spaces allowed around the number. Numbers
 * are what strtod reads in the C locale, except hexadecimal ones (refused)
 * and ones that overflow the dtype (refused, where strtod would give inf);
 * "inf", "infinity" and "nan" in any case, as numpy.savetxt writes them,
 * are accepted. A value that underflows rounds to 0 or a denormal. */
static cell_kind parse_cell(const char *s, tg_dtype dt, double *v)
{
    const char *p = skip_spaces(s);
    if (*p == '\0') return CELL_EMPTY;
    errno = 0;
    char *end;
    *v = strtod(p, &end);
    bool overflow = errno == ERANGE && isinf(*v);
    if (end == p) return CELL_TEXT;
    if (*skip_spaces(end) != '\0') return CELL_TEXT;
    const char *digits = p + (*p == '+' || *p == '-');
    if (digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X')) return CELL_HEX;
    /* From FLT_MAX plus half an ulp up, a double rounds to an infinite float. */
    if (overflow || (dt == TG_F32 && isfinite(*v) && fabs(*v) >= 0x1.ffffffp127)) return CELL_RANGE;
    return CELL_NUMBER;
}

/* Splits 'line' in place at 'delim' and appends its cells to 'vals'. Returns
 * the number of cells, -1 when a cell is not a number in range (its 1-based
 * column, kind and text in *bad_col, *bad_kind and *bad_cell), -2 when out of
 * memory. */
static int64_t parse_row(char *line, char delim, tg_dtype dt, csv_values *vals, int64_t *bad_col,
                         cell_kind *bad_kind, const char **bad_cell)
{
    int64_t col = 0;
    for (char *cell = line;;) {
        char *next = strchr(cell, delim);
        if (next) *next = '\0';
        double v;
        col++;
        cell_kind kind = parse_cell(cell, dt, &v);
        if (kind != CELL_NUMBER) {
            *bad_col = col;
            *bad_kind = kind;
            *bad_cell = skip_spaces(cell);
            return -1;
        }
        if (!values_push(vals, v)) return -2;
        if (!next) return col;
        cell = next + 1;
    }
}

/* True when some cell of 'line' (split in place) reads as a number, in range
 * or not: a line with one is data, however malformed its other cells. */
static bool has_number(char *line, char delim)
{
    for (char *cell = line;;) {
        char *next = strchr(cell, delim);
        if (next) *next = '\0';
        double v;
        cell_kind kind = parse_cell(cell, TG_F64, &v);
        if (kind == CELL_NUMBER || kind == CELL_HEX || kind == CELL_RANGE) return true;
        if (!next) return false;
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

/* The error for a cell parse_row refused. */
static tg_status bad_cell_error(tg_error *err, const char *path, long long lineno, int64_t col,
                                cell_kind kind, const char *cell, tg_dtype dt)
{
    static const char *const what[] = {
        [CELL_EMPTY] = "empty cell",
        [CELL_TEXT] = "not a number",
        [CELL_HEX] = "hexadecimal numbers are not read",
    };
    if (kind == CELL_RANGE)
        return tg__set_error(err, TG_ERR_FORMAT,
                             "%s:%lld: column %lld: '%.40s' is out of range for %s", path, lineno,
                             (long long)col, cell, tg__dt(dt)->name);
    return tg__set_error(err, TG_ERR_FORMAT, "%s:%lld: column %lld: %s: '%.40s'", path, lineno,
                         (long long)col, what[kind], cell);
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
    char *line = NULL, *copy = NULL;
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
        char *text = line;
        /* A UTF-8 byte order mark (spreadsheets write one) is not part of the first cell. */
        if (lineno == 1 && len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) text += 3;
        if (blank(text)) continue;
        if (first && o.header == 1) {
            first = false;
            continue;
        }
        if (first && o.header == -1) {
            /* The first line is the header only when it cannot be data: when no
             * cell reads as a number. A row of numbers with one bad or empty
             * cell is an error below, never a header silently dropped. */
            free(copy);
            if (!(copy = tg__malloc(strlen(text) + 1))) {
                s = tg__set_error(err, TG_ERR_NOMEM, "%s:%lld: out of memory", path, lineno);
                goto done;
            }
            strcpy(copy, text);
            if (!has_number(copy, delim)) {
                first = false;
                continue;
            }
        }
        first = false;
        int64_t bad_col = 0;
        cell_kind bad_kind = CELL_TEXT;
        const char *bad_cell = "";
        int64_t n = parse_row(text, delim, o.dtype, &vals, &bad_col, &bad_kind, &bad_cell);
        if (n == -2) {
            s = tg__set_error(err, TG_ERR_NOMEM, "%s:%lld: out of memory", path, lineno);
            goto done;
        }
        if (n == -1) {
            s = bad_cell_error(err, path, lineno, bad_col, bad_kind, bad_cell, o.dtype);
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
    free(copy);
    free(line);
    fclose(f);
    return s;
}
