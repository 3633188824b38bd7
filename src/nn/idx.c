/*
 * IDX files, the format of the MNIST family: magic 00 00 type ndim, then ndim
 * big-endian u32 dimensions, then the elements big-endian. Read plain or
 * gzipped (zlib tells them apart), written gzipped when the name ends in .gz.
 *
 * The loader validates the whole file before it hands out a tensor, so the
 * caller's output pointer is written only on success, and every error
 * message names the file and the byte offset.
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
        if (t->dtype == TG_I64) { /* labels: whole numbers only, never rounded */
            for (size_t i = 0; i < k; i++) {
                double x = v[i] * scale;
                if (x != floor(x) || !(fabs(x) < 0x1p63)) {
                    s = tg__set_error(err, TG_ERR_FORMAT,
                                      "%s: element %zu is %g, not a whole number that fits i64",
                                      path, first + i, x);
                    goto done;
                }
                ((int64_t *)t->data)[first + i] = (int64_t)x;
            }
            continue;
        }
#define IDX_STORE(T)                                                   \
    do {                                                               \
        T *out = (T *)t->data + first;                                 \
        for (size_t i = 0; i < k; i++) out[i] = (T)(v[i] * scale);    \
    } while (0)
        TG__FLOAT_SWITCH(t->dtype, IDX_STORE, TG_ERR_DTYPE);
#undef IDX_STORE
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
    if (!path || !out || !tg__dtype_valid(dt))
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
        double v = tg__get(t, i);
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
            idx_put(buf + k * (int64_t)esize, type_code, tg__get(t, i + k));
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
