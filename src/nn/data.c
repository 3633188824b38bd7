/*
 * Data in and out of tensors: IDX files (the MNIST family), numeric CSV,
 * one-hot labels, a seeded train/held-out split, and a mini-batch iterator.
 *
 * Every loader validates the whole file before it hands out a tensor, so a
 * caller's output pointers are written only on success, and every error
 * message names the file and the byte offset (IDX) or the line (CSV).
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* Element i of a tensor as a double. */
static double elem_at(const tg_tensor *t, int64_t i)
{
    return t->dtype == TG_F64 ? ((const double *)t->data)[i] : (double)((const float *)t->data)[i];
}

/* ====== IDX: magic 00 00 type ndim, big-endian u32 dims, big-endian data ====== */

enum {
    IDX_U8 = 0x08,
    IDX_I8 = 0x09,
    IDX_I16 = 0x0B,
    IDX_I32 = 0x0C,
    IDX_F32 = 0x0D,
    IDX_F64 = 0x0E
};

/* Bytes one element of an IDX type code takes; 0 for an unknown code. */
static size_t idx_size(int type)
{
    switch (type) {
    case IDX_U8:
    case IDX_I8:
        return 1;
    case IDX_I16:
        return 2;
    case IDX_I32:
    case IDX_F32:
        return 4;
    case IDX_F64:
        return 8;
    default:
        return 0;
    }
}

static const char *idx_name(int type)
{
    switch (type) {
    case IDX_U8:
        return "ubyte";
    case IDX_I8:
        return "byte";
    case IDX_I16:
        return "short";
    case IDX_I32:
        return "int";
    case IDX_F32:
        return "float";
    default:
        return "double";
    }
}

static uint32_t get_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get_be64(const unsigned char *p)
{
    return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}

static void put_be64(unsigned char *p, uint64_t v)
{
    put_be32(p, (uint32_t)(v >> 32));
    put_be32(p + 4, (uint32_t)v);
}

static float get_f32(const unsigned char *p)
{
    uint32_t bits = get_be32(p);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static double get_f64(const unsigned char *p)
{
    uint64_t bits = get_be64(p);
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

/* Decodes n big-endian elements of 'type' into doubles (exact for every
 * type). The switch sits outside the loops so each loop stays simple. */
static void idx_decode(const unsigned char *raw, int type, size_t n, double *v)
{
    switch (type) {
    case IDX_U8:
        for (size_t i = 0; i < n; i++)
            v[i] = raw[i];
        break;
    case IDX_I8:
        for (size_t i = 0; i < n; i++)
            v[i] = (int8_t)raw[i];
        break;
    case IDX_I16:
        for (size_t i = 0; i < n; i++)
            v[i] = (int16_t)(uint16_t)(raw[2 * i] << 8 | raw[2 * i + 1]);
        break;
    case IDX_I32:
        for (size_t i = 0; i < n; i++)
            v[i] = (int32_t)get_be32(raw + 4 * i);
        break;
    case IDX_F32:
        for (size_t i = 0; i < n; i++)
            v[i] = (double)get_f32(raw + 4 * i);
        break;
    default:
        for (size_t i = 0; i < n; i++)
            v[i] = get_f64(raw + 8 * i);
        break;
    }
}

/* Encodes v as one big-endian element of 'type' at p. */
static void idx_put(unsigned char *p, int type, double v)
{
    switch (type) {
    case IDX_U8:
        *p = (unsigned char)v;
        break;
    case IDX_I8:
        *p = (unsigned char)(int8_t)v;
        break;
    case IDX_I16: {
        uint16_t u = (uint16_t)(int16_t)v;
        p[0] = (unsigned char)(u >> 8), p[1] = (unsigned char)u;
        break;
    }
    case IDX_I32:
        put_be32(p, (uint32_t)(int32_t)v);
        break;
    case IDX_F32: {
        float f = (float)v;
        uint32_t bits;
        memcpy(&bits, &f, sizeof bits);
        put_be32(p, bits);
        break;
    }
    default: {
        uint64_t bits;
        memcpy(&bits, &v, sizeof bits);
        put_be64(p, bits);
        break;
    }
    }
}

/* True when 'type' stores v exactly (integer types) or at all (floats). */
static bool idx_fits(int type, double v)
{
    double lo, hi;
    switch (type) {
    case IDX_U8:
        lo = 0, hi = UINT8_MAX;
        break;
    case IDX_I8:
        lo = INT8_MIN, hi = INT8_MAX;
        break;
    case IDX_I16:
        lo = INT16_MIN, hi = INT16_MAX;
        break;
    case IDX_I32:
        lo = INT32_MIN, hi = INT32_MAX;
        break;
    default:
        return true; /* a float or double file takes any value (float rounds) */
    }
    return v >= lo && v <= hi && v == trunc(v); /* false for NaN too */
}

/* Elements decoded per step: large enough for few gzread calls, small enough
 * to stay in cache (and far below gzread's INT_MAX limit). */
#define IDX_CHUNK ((size_t)1 << 16)

/* Turns a failed gzread into a status: the OS's error, memory, or a corrupt
 * gzip stream (which is the file's fault). */
static tg_status gz_fail(gzFile gz, const char *path, int64_t offset, tg_error *err)
{
    int code;
    const char *msg = gzerror(gz, &code);
    if (code == Z_ERRNO)
        return tg__set_error(err, TG_ERR_IO, "%s: offset %lld: read failed: %s", path,
                             (long long)offset, strerror(errno));
    if (code == Z_MEM_ERROR)
        return tg__set_error(err, TG_ERR_NOMEM, "%s: out of memory decompressing", path);
    return tg__set_error(err, TG_ERR_FORMAT, "%s: offset %lld: corrupt gzip data: %s", path,
                         (long long)offset, msg);
}

/* Reads up to n bytes into buf; *got says how many arrived before the end of
 * the (decompressed) stream. 'offset' is where buf starts, for messages. */
static tg_status gz_read_all(gzFile gz, unsigned char *buf, size_t n, size_t *got, const char *path,
                             int64_t offset, tg_error *err)
{
    *got = 0;
    while (*got < n) {
        size_t want = n - *got < INT_MAX ? n - *got : INT_MAX;
        int r = gzread(gz, buf + *got, (unsigned)want);
        if (r < 0) return gz_fail(gz, path, offset + (int64_t)*got, err);
        if (r == 0) {
            int code;
            gzerror(gz, &code);
            /* A gzip stream cut short ends with Z_BUF_ERROR: that is a truncated file. */
            if (code != Z_OK && code != Z_BUF_ERROR)
                return gz_fail(gz, path, offset + (int64_t)*got, err);
            break;
        }
        *got += (size_t)r;
    }
    return TG_OK;
}

/* Reads the header; fills *type, *ndim, dims and *numel (checked for overflow). */
static tg_status idx_header(gzFile gz, const char *path, int *type, int *ndim, int64_t *dims,
                            int64_t *numel, tg_error *err)
{
    unsigned char head[4 + 4 * TG_MAX_RANK];
    size_t got;
    tg_status s = gz_read_all(gz, head, 4, &got, path, 0, err);
    if (s) return s;
    if (got == 0) return tg__set_error(err, TG_ERR_FORMAT, "%s: offset 0: empty file", path);
    if (got < 4)
        return tg__set_error(err, TG_ERR_FORMAT, "%s: offset %zu: truncated header", path, got);
    if (head[0] || head[1])
        return tg__set_error(err, TG_ERR_FORMAT, "%s: offset 0: bad magic 0x%02x%02x (want 0x0000)",
                             path, head[0], head[1]);
    *type = head[2];
    if (!idx_size(*type))
        return tg__set_error(err, TG_ERR_FORMAT, "%s: offset 2: unknown type code 0x%02x", path,
                             *type);
    *ndim = head[3];
    if (*ndim < 1 || *ndim > TG_MAX_RANK)
        return tg__set_error(err, TG_ERR_FORMAT, "%s: offset 3: %d dimensions (want 1..%d)", path,
                             *ndim, TG_MAX_RANK);
    size_t dim_bytes = 4 * (size_t)*ndim;
    s = gz_read_all(gz, head + 4, dim_bytes, &got, path, 4, err);
    if (s) return s;
    if (got < dim_bytes)
        return tg__set_error(err, TG_ERR_FORMAT, "%s: offset %zu: truncated header (%d dims)", path,
                             4 + got, *ndim);
    *numel = 1;
    for (int i = 0; i < *ndim; i++) {
        dims[i] = get_be32(head + 4 + 4 * i);
        /* Keep numel * 8 bytes representable, the limit tensors have. */
        if (dims[i] > 0 && *numel > (INT64_MAX / 8) / dims[i])
            return tg__set_error(err, TG_ERR_FORMAT,
                                 "%s: offset %d: dimensions overflow (dim %d is %lld)", path,
                                 4 + 4 * i, i, (long long)dims[i]);
        *numel *= dims[i];
    }
    return TG_OK;
}

static tg_status truncated(const char *path, int64_t offset, int64_t have, size_t want,
                           tg_error *err)
{
    return tg__set_error(err, TG_ERR_FORMAT, "%s: offset %lld: truncated data (%lld of %zu bytes)",
                         path, (long long)offset, (long long)have, want);
}

static tg_status trailing(const char *path, int64_t offset, tg_error *err)
{
    return tg__set_error(err, TG_ERR_FORMAT, "%s: offset %lld: trailing bytes after the data", path,
                         (long long)offset);
}

/* Before a tensor is allocated, compares the data the header promises with
 * what the file can hold, so a corrupt header claiming gigabytes costs
 * nothing. A plain file must end exactly after the data; a gzip stream
 * expands at most 1032:1 (deflate's limit), so a smaller file is cut short. */
static tg_status idx_fits_file(gzFile gz, const char *path, const struct stat *sb, int64_t head,
                               size_t want, tg_error *err)
{
    if (!S_ISREG(sb->st_mode)) return TG_OK; /* a pipe: the read itself will tell */
    uint64_t size = (uint64_t)sb->st_size, end = (uint64_t)head + want;
    if (gzdirect(gz)) {
        if (size < end) return truncated(path, (int64_t)size, (int64_t)size - head, want, err);
        if (size > end) return trailing(path, (int64_t)end, err);
    } else if (want / 1032 > size) {
        return tg__set_error(err, TG_ERR_FORMAT,
                             "%s: offset %lld: truncated data (%zu bytes cannot fit in %llu "
                             "compressed bytes)",
                             path, (long long)head, want, (unsigned long long)size);
    }
    return TG_OK;
}

/* Reads the data that starts at 'head' chunk by chunk straight into t, times
 * 'scale', then insists on the end of the file. */
static tg_status idx_stream(gzFile gz, const char *path, int64_t head, int type, double scale,
                            tg_tensor *t, tg_error *err)
{
    size_t esize = idx_size(type), n = (size_t)t->numel, want = n * esize;
    unsigned char *raw = tg__malloc(IDX_CHUNK * esize);
    double *v = tg__malloc(IDX_CHUNK * sizeof *v);
    tg_status s = TG_OK;
    if (!raw || !v) {
        s = tg__set_error(err, TG_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    for (size_t first = 0; first < n; first += IDX_CHUNK) {
        size_t k = n - first < IDX_CHUNK ? n - first : IDX_CHUNK, got;
        int64_t offset = head + (int64_t)(first * esize);
        s = gz_read_all(gz, raw, k * esize, &got, path, offset, err);
        if (s) goto done;
        if (got < k * esize) {
            s = truncated(path, offset + (int64_t)got, (int64_t)(first * esize + got), want, err);
            goto done;
        }
        idx_decode(raw, type, k, v);
        if (t->dtype == TG_F64) {
            double *out = (double *)t->data + first;
            for (size_t i = 0; i < k; i++)
                out[i] = v[i] * scale;
        } else {
            float *out = (float *)t->data + first;
            for (size_t i = 0; i < k; i++)
                out[i] = (float)(v[i] * scale);
        }
    }
    size_t got;
    s = gz_read_all(gz, raw, 1, &got, path, head + (int64_t)want, err);
    if (!s && got) s = trailing(path, head + (int64_t)want, err);
done:
    free(raw);
    free(v);
    return s;
}

tg_status tg_idx_load(const char *path, tg_dtype dt, double scale, tg_tensor **out, tg_error *err)
{
    if (!path || !out || (dt != TG_F32 && dt != TG_F64))
        return tg__set_error(err, TG_ERR_ARG, "idx_load: NULL path or output, or bad dtype");
    /* Our own descriptor, so fstat can size the file before anything is allocated. */
    int fd = open(path, O_RDONLY);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        tg_status s = tg__set_error(err, TG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return s;
    }
    gzFile gz = gzdopen(fd, "rb");
    if (!gz) {
        close(fd);
        return tg__set_error(err, TG_ERR_NOMEM, "%s: out of memory opening", path);
    }
    gzbuffer(gz, 1 << 20);

    tg_tensor *t = NULL;
    int type = 0, ndim = 0; /* set by idx_header */
    int64_t dims[TG_MAX_RANK], numel = 0;
    tg_status s = idx_header(gz, path, &type, &ndim, dims, &numel, err);
    if (s) goto done;
    if ((uint64_t)numel > SIZE_MAX / idx_size(type)) {
        s = tg__set_error(err, TG_ERR_NOMEM, "%s: %lld elements do not fit in memory", path,
                          (long long)numel);
        goto done;
    }
    int64_t head = 4 + 4 * ndim;
    s = idx_fits_file(gz, path, &sb, head, (size_t)numel * idx_size(type), err);
    if (s) goto done;
    t = tg__tensor_alloc(dt, ndim, dims);
    if (!t) {
        s = tg__set_error(err, TG_ERR_NOMEM, "%s: out of memory for %lld elements", path,
                          (long long)numel);
        goto done;
    }
    s = idx_stream(gz, path, head, type, scale, t, err);
    if (s) goto done;
    *out = t;
    t = NULL;
done:
    tg_tensor_free(t);
    gzclose(gz);
    return s;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* The error of a failed gzwrite or gzclose on a file being written. */
static tg_status gz_write_fail(gzFile gz, const char *path, tg_error *err)
{
    int code = Z_ERRNO;
    const char *msg = gz ? gzerror(gz, &code) : "close failed";
    return tg__set_error(err, TG_ERR_IO, "%s: write failed: %s", path,
                         code == Z_ERRNO ? strerror(errno) : msg);
}

tg_status tg_idx_save(const char *path, const tg_tensor *t, int type_code, tg_error *err)
{
    if (!path || !t) return tg__set_error(err, TG_ERR_ARG, "idx_save: NULL path or tensor");
    size_t esize = idx_size(type_code);
    if (!esize)
        return tg__set_error(err, TG_ERR_ARG, "%s: unknown IDX type code 0x%02x", path,
                             (unsigned)type_code);
    if (t->rank < 1)
        return tg__set_error(err, TG_ERR_ARG, "%s: IDX needs rank 1..%d, got rank 0", path,
                             TG_MAX_RANK);
    unsigned char head[4 + 4 * TG_MAX_RANK] = {0, 0, (unsigned char)type_code,
                                               (unsigned char)t->rank};
    for (int i = 0; i < t->rank; i++) {
        if (t->shape[i] > UINT32_MAX)
            return tg__set_error(err, TG_ERR_ARG, "%s: dimension %d (%lld) exceeds 2^32-1", path, i,
                                 (long long)t->shape[i]);
        put_be32(head + 4 + 4 * i, (uint32_t)t->shape[i]);
    }
    /* Check every value before the file is opened (and truncated). */
    for (int64_t i = 0; i < t->numel; i++) {
        double v = elem_at(t, i);
        if (!idx_fits(type_code, v))
            return tg__set_error(err, TG_ERR_ARG, "%s: element %lld (%.17g) does not fit IDX %s",
                                 path, (long long)i, v, idx_name(type_code));
    }

    errno = 0;
    gzFile gz = gzopen(path, ends_with(path, ".gz") ? "wb" : "wbT");
    if (!gz)
        return tg__set_error(err, errno ? TG_ERR_IO : TG_ERR_NOMEM, "%s: cannot create: %s", path,
                             errno ? strerror(errno) : "out of memory");
    enum { CHUNK = 1 << 16 };
    unsigned char buf[CHUNK];
    tg_status s = TG_OK;
    if (gzwrite(gz, head, 4 + 4 * (unsigned)t->rank) == 0) goto fail;
    int64_t per_chunk = CHUNK / (int64_t)esize;
    for (int64_t i = 0; i < t->numel; i += per_chunk) {
        int64_t n = t->numel - i < per_chunk ? t->numel - i : per_chunk;
        for (int64_t k = 0; k < n; k++)
            idx_put(buf + k * (int64_t)esize, type_code, elem_at(t, i + k));
        if (gzwrite(gz, buf, (unsigned)(n * (int64_t)esize)) == 0) goto fail;
    }
    int rc = gzclose(gz);
    gz = NULL;
    if (rc != Z_OK) goto fail;
    return TG_OK;
fail:
    s = gz_write_fail(gz, path, err);
    if (gz) gzclose(gz);
    /* The file was truncated on open, so a half-written one is only misleading. */
    remove(path);
    return s;
}

/* ====== CSV: numeric cells, one row per line ====== */

static void set_elem(tg_tensor *t, int64_t i, double v)
{
    if (t->dtype == TG_F64)
        ((double *)t->data)[i] = v;
    else
        ((float *)t->data)[i] = (float)v;
}

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
                set_elem(tx, xi++, v);
            else if (ty)
                set_elem(ty, r, v);
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

/* ====== One-hot labels ====== */

tg_tensor *tg_one_hot(const tg_tensor *labels, int64_t n_classes, tg_dtype dt)
{
    if (!labels || labels->rank != 1 || n_classes < 1) return NULL;
    int64_t n = labels->shape[0];
    for (int64_t i = 0; i < n; i++) {
        double v = elem_at(labels, i);
        if (!(v >= 0 && v < (double)n_classes) || v != trunc(v)) return NULL;
    }
    tg_tensor *t = tg__tensor_alloc(dt, 2, (int64_t[]){n, n_classes});
    if (!t) return NULL;
    for (int64_t i = 0; i < n; i++)
        set_elem(t, i * n_classes + (int64_t)elem_at(labels, i), 1.0);
    return t;
}

/* ====== Rows: shuffling, split, batches ====== */

/* Elements in one row (axis 0) of a tensor of rank >= 1; -1 when that overflows. */
static int64_t row_elems(const tg_tensor *t) { return tg__numel(t->rank - 1, t->shape + 1); }

/* The identity permutation 0..n-1; NULL when out of memory. */
static int64_t *perm_new(int64_t n)
{
    if ((uint64_t)n > SIZE_MAX / sizeof(int64_t)) return NULL;
    int64_t *perm = tg__malloc(n ? (size_t)n * sizeof *perm : 1);
    if (!perm) return NULL;
    for (int64_t i = 0; i < n; i++)
        perm[i] = i;
    return perm;
}

/* Fisher-Yates: every order equally likely, and the same seed gives the same order everywhere. */
static void shuffle(int64_t *perm, int64_t n, tg_rng *r)
{
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)tg_rng_below(r, (uint64_t)i + 1);
        int64_t tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
    }
}

/* Copies rows perm[0..n) of src into rows 0..n of dst (same row shape and dtype). */
static void copy_rows(tg_tensor *dst, const tg_tensor *src, const int64_t *perm, int64_t n)
{
    size_t row = (size_t)row_elems(src) * tg__dtype_size(src->dtype);
    for (int64_t i = 0; i < n; i++)
        memcpy((char *)dst->data + (size_t)i * row, (const char *)src->data + (size_t)perm[i] * row,
               row);
}

/* A new tensor holding rows perm[0..n) of src; NULL when out of memory. */
static tg_tensor *gather_rows(const tg_tensor *src, const int64_t *perm, int64_t n)
{
    int64_t shape[TG_MAX_RANK];
    memcpy(shape, src->shape, sizeof shape);
    shape[0] = n;
    tg_tensor *t = tg__tensor_alloc(src->dtype, src->rank, shape);
    if (t) copy_rows(t, src, perm, n);
    return t;
}

/* True when t has rows (rank >= 1, a representable row size) and, if 'n' >= 0, n of them. */
static bool has_rows(const tg_tensor *t, int64_t n)
{
    return t->rank >= 1 && row_elems(t) >= 0 && (n < 0 || t->shape[0] == n);
}

tg_status tg_split(const tg_tensor *x, const tg_tensor *y, double holdout, uint64_t seed,
                   tg_tensor **x_train, tg_tensor **y_train, tg_tensor **x_held, tg_tensor **y_held)
{
    if (!x || !x_train || !x_held || !has_rows(x, -1) || !(holdout >= 0 && holdout <= 1))
        return TG_ERR_ARG;
    int64_t n = x->shape[0];
    if (y && (!y_train || !y_held || !has_rows(y, n))) return TG_ERR_ARG;
    int64_t n_held = llround(holdout * (double)n), n_train = n - n_held;
    int64_t *perm = perm_new(n);
    if (!perm) return TG_ERR_NOMEM;
    tg_rng r;
    tg_rng_seed(&r, seed);
    shuffle(perm, n, &r);
    tg_tensor *xt = gather_rows(x, perm, n_train), *xh = gather_rows(x, perm + n_train, n_held);
    tg_tensor *yt = y ? gather_rows(y, perm, n_train) : NULL;
    tg_tensor *yh = y ? gather_rows(y, perm + n_train, n_held) : NULL;
    free(perm);
    if (!xt || !xh || (y && (!yt || !yh))) {
        tg_tensor_free(xt);
        tg_tensor_free(xh);
        tg_tensor_free(yt);
        tg_tensor_free(yh);
        return TG_ERR_NOMEM;
    }
    *x_train = xt;
    *x_held = xh;
    if (y_train) *y_train = yt;
    if (y_held) *y_held = yh;
    return TG_OK;
}

struct tg_batcher {
    const tg_tensor *x, *y; /* the caller's; read at every 'next' */
    int64_t n, batch, pos;  /* rows, rows per batch, next position in 'perm' */
    bool shuffle;
    tg_rng rng;
    int64_t *perm; /* this epoch's row order */
};

tg_batcher *tg_batcher_new(const tg_tensor *x, const tg_tensor *y, int64_t batch, bool shuffle_rows,
                           uint64_t seed)
{
    if (!x || batch < 1 || !has_rows(x, -1) || (y && !has_rows(y, x->shape[0]))) return NULL;
    tg_batcher *b = tg__malloc(sizeof *b);
    if (!b) return NULL;
    *b = (tg_batcher){.x = x, .y = y, .n = x->shape[0], .batch = batch, .shuffle = shuffle_rows};
    b->perm = perm_new(b->n);
    if (!b->perm) {
        free(b);
        return NULL;
    }
    tg_rng_seed(&b->rng, seed);
    if (b->shuffle) shuffle(b->perm, b->n, &b->rng);
    return b;
}

void tg_batcher_free(tg_batcher *b)
{
    if (!b) return;
    free(b->perm);
    free(b);
}

/* True when 'dst' is a leaf that holds 'batch' rows shaped like the rows of src. */
static bool batch_fits(const tg_tensor *dst, const tg_tensor *src, int64_t batch)
{
    if (dst->tape_owned || dst->is_grad || dst->dtype != src->dtype || dst->rank != src->rank ||
        dst->shape[0] != batch)
        return false;
    for (int i = 1; i < src->rank; i++)
        if (dst->shape[i] != src->shape[i]) return false;
    return true;
}

/* Copies the rows of the batch into dst and zeroes the rows a partial batch leaves over. */
static void fill_batch(tg_tensor *dst, const tg_tensor *src, const int64_t *perm, int64_t k)
{
    copy_rows(dst, src, perm, k);
    size_t row = (size_t)row_elems(src) * tg__dtype_size(src->dtype);
    memset((char *)dst->data + (size_t)k * row, 0, (size_t)(dst->shape[0] - k) * row);
}

int64_t tg_batcher_next(tg_batcher *b, tg_tensor *xb, tg_tensor *yb)
{
    if (!b || !xb || !batch_fits(xb, b->x, b->batch) ||
        (yb && (!b->y || !batch_fits(yb, b->y, b->batch))))
        return -1;
    if (b->pos == b->n) { /* the end of the epoch: the next call starts a new one */
        b->pos = 0;
        if (b->shuffle) shuffle(b->perm, b->n, &b->rng);
        return 0;
    }
    int64_t k = b->n - b->pos < b->batch ? b->n - b->pos : b->batch;
    fill_batch(xb, b->x, b->perm + b->pos, k);
    if (yb) fill_batch(yb, b->y, b->perm + b->pos, k);
    b->pos += k;
    return k;
}

int64_t tg_batcher_batches(const tg_batcher *b)
{
    return b ? b->n / b->batch + (b->n % b->batch != 0) : 0;
}
