/* Data: IDX and CSV files, one-hot labels, the seeded split and the mini-batch iterator. */
#include "testutil.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

/* ====== A scratch folder per test, removed afterwards ====== */

static void scratch_make(void) { tu_scratch_make("tg_data"); }

static void write_file(const char *path, const void *data, size_t n, bool gz)
{
    if (gz) {
        gzFile f = gzopen(path, "wb");
        ck_assert_ptr_nonnull(f);
        if (n) ck_assert_int_eq(gzwrite(f, data, (unsigned)n), (int)n);
        ck_assert_int_eq(gzclose(f), Z_OK);
    } else {
        tu_write_file(path, data, n);
    }
}

/* The first bytes of a file (up to n) and how many there were. */
static size_t read_head(const char *path, unsigned char *buf, size_t n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    size_t got = fread(buf, 1, n, f);
    fclose(f);
    return got;
}

/* A pointer the functions must not touch on failure. */
static char untouched_mark;
static tg_tensor *const untouched = (tg_tensor *)&untouched_mark;

/* ====== IDX round trips: every type code, plain and gzipped, ranks 1 to 4 ====== */

static const int idx_codes[] = {0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E};
enum { N_CODES = sizeof idx_codes / sizeof *idx_codes };

/* A value exactly representable in type 'code' (and in F64), different per k. */
static double idx_value(int code, int64_t k)
{
    double v = (double)((k * 37) % 200);
    switch (code) {
    case 0x08:
        return v;
    case 0x09:
        return v - 100;
    case 0x0B:
        return (v - 100) * 300;
    case 0x0C:
        return (v - 100) * 20000000;
    case 0x0D:
        return (v - 100) * 0.25;
    default:
        return (v - 100) / 3;
    }
}

START_TEST(idx_round_trip)
{
    int code = idx_codes[_i % N_CODES];
    bool gz = (_i / N_CODES) % 2;
    int rank = 1 + _i / (2 * N_CODES);
    static const char *const shapes[] = {"7", "3x5", "2x3x4", "2x1x3x2"};
    tg_tensor *t = tu_random(TG_F64, shapes[rank - 1], 0, 1, 1);
    for (int64_t k = 0; k < tg_tensor_numel(t); k++)
        ((double *)tg_tensor_data(t))[k] = idx_value(code, k);
    const char *path = tu_in_scratch(gz ? "t.idx.gz" : "t.idx");
    tg_error err = {0};
    ck_assert_msg(tg_idx_save(path, t, code, &err) == TG_OK, "%s", err.msg);

    unsigned char head[4];
    ck_assert_uint_eq(read_head(path, head, 4), 4);
    if (gz) {
        ck_assert(head[0] == 0x1f && head[1] == 0x8b);
    } else {
        ck_assert(head[0] == 0 && head[1] == 0 && head[2] == code && head[3] == rank);
    }

    tg_tensor *back = NULL;
    ck_assert_msg(tg_idx_load(path, TG_F64, 1.0, &back, &err) == TG_OK, "%s", err.msg);
    ck_assert_int_eq(tg_tensor_rank(back), rank);
    for (int d = 0; d < rank; d++)
        ck_assert_int_eq(tg_tensor_shape(back)[d], tg_tensor_shape(t)[d]);
    for (int64_t k = 0; k < tg_tensor_numel(t); k++)
        ck_assert_msg(tu_at(back, k) == tu_at(t, k), "code 0x%02x [%lld]: %.17g vs %.17g", code,
                      (long long)k, tu_at(back, k), tu_at(t, k));
    tg_tensor_free(back);

    /* F32 with a scale: each value is (float)(v * scale). */
    ck_assert(tg_idx_load(path, TG_F32, 0.5, &back, &err) == TG_OK);
    ck_assert_int_eq(tg_tensor_dtype(back), TG_F32);
    for (int64_t k = 0; k < tg_tensor_numel(t); k++)
        ck_assert(((float *)tg_tensor_data(back))[k] == (float)(tu_at(t, k) * 0.5));
    tg_tensor_free(back);
    tg_tensor_free(t);
}
END_TEST

START_TEST(idx_bytes_are_big_endian)
{
    /* Written by hand: shorts -2 and 256, then a float 1.0 file. */
    static const unsigned char shorts[] = {0, 0, 0x0B, 1, 0, 0, 0, 2, 0xFF, 0xFE, 0x01, 0x00};
    static const unsigned char one[] = {0, 0, 0x0D, 1, 0, 0, 0, 1, 0x3F, 0x80, 0, 0};
    const char *path = tu_in_scratch("s.idx");
    tg_tensor *t = NULL;
    write_file(path, shorts, sizeof shorts, false);
    ck_assert_int_eq(tg_idx_load(path, TG_F64, 1.0, &t, NULL), TG_OK);
    ck_assert(tu_at(t, 0) == -2 && tu_at(t, 1) == 256);
    tg_tensor_free(t);
    write_file(path, one, sizeof one, false);
    ck_assert_int_eq(tg_idx_load(path, TG_F32, 1.0, &t, NULL), TG_OK);
    ck_assert(tu_at(t, 0) == 1.0);
    tg_tensor_free(t);

    /* And tg_idx_save writes exactly these bytes. */
    tg_tensor *u = tu_from(TG_F32, "2", (double[]){-2, 256});
    ck_assert_int_eq(tg_idx_save(path, u, 0x0B, NULL), TG_OK);
    unsigned char got[32];
    ck_assert_uint_eq(read_head(path, got, sizeof got), sizeof shorts);
    ck_assert(memcmp(got, shorts, sizeof shorts) == 0);
    tg_tensor_free(u);
}
END_TEST

/* ====== IDX: corrupt and missing files ====== */

typedef struct idx_bad {
    const char *name;
    unsigned char bytes[40];
    size_t n;
    bool gz;
    tg_status want;
    const char *msg; /* expected in the error message, after the path */
} idx_bad;

static const idx_bad idx_bads[] = {
    {"wrong magic", {1, 0, 8, 1, 0, 0, 0, 1, 5}, 9, false, TG_ERR_FORMAT, "offset 0: bad magic"},
    {"wrong magic gz", {0, 7, 8, 1, 0, 0, 0, 1, 5}, 9, true, TG_ERR_FORMAT, "offset 0: bad magic"},
    {"bad type", {0, 0, 7, 1, 0, 0, 0, 1, 5}, 9, false, TG_ERR_FORMAT, "offset 2: unknown type"},
    {"ndim 0", {0, 0, 8, 0}, 4, false, TG_ERR_FORMAT, "offset 3: 0 dimensions"},
    {"ndim 5",
     {0, 0, 8, 5, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 9},
     25,
     false,
     TG_ERR_FORMAT,
     "offset 3: 5 dimensions"},
    {"short magic", {0, 0}, 2, false, TG_ERR_FORMAT, "offset 2: truncated header"},
    {"short dims",
     {0, 0, 8, 2, 0, 0, 0, 3, 0, 0},
     10,
     false,
     TG_ERR_FORMAT,
     "offset 10: truncated header"},
    {"short data",
     {0, 0, 8, 1, 0, 0, 0, 4, 1, 2},
     10,
     false,
     TG_ERR_FORMAT,
     "offset 10: truncated data"},
    {"short data gz",
     {0, 0, 0x0B, 1, 0, 0, 0, 2, 1, 2, 3},
     11,
     true,
     TG_ERR_FORMAT,
     "offset 11: truncated data"},
    {"huge dims, small file",
     {0, 0, 8, 2, 0x7F, 0, 0, 0, 0, 0, 0x10, 0, 1},
     13,
     false,
     TG_ERR_FORMAT,
     "offset 13: truncated data"},
    {"huge dims, small gz",
     {0, 0, 8, 2, 0x7F, 0, 0, 0, 0, 0, 0x10, 0, 1},
     13,
     true,
     TG_ERR_FORMAT,
     "offset 12: truncated data"},
    {"trailing bytes",
     {0, 0, 8, 1, 0, 0, 0, 2, 1, 2, 3},
     11,
     false,
     TG_ERR_FORMAT,
     "offset 10: trailing bytes"},
    {"trailing bytes gz",
     {0, 0, 8, 1, 0, 0, 0, 1, 1, 2},
     10,
     true,
     TG_ERR_FORMAT,
     "offset 9: trailing bytes"},
    {"dims overflow",
     {0,    0,    8,    4,    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
      0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF},
     20,
     false,
     TG_ERR_FORMAT,
     "offset 8: dimensions overflow"},
    {"empty file", {0}, 0, false, TG_ERR_FORMAT, "offset 0: empty file"},
    {"empty gz", {0}, 0, true, TG_ERR_FORMAT, "offset 0: empty file"},
    /* A gzip header, then bytes that are no deflate stream. */
    {"gz with garbage",
     {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF},
     16,
     false,
     TG_ERR_FORMAT,
     "offset 0: corrupt gzip data"},
};
enum { N_IDX_BAD = sizeof idx_bads / sizeof *idx_bads };

START_TEST(idx_corrupt)
{
    const idx_bad *c = &idx_bads[_i];
    const char *path = tu_in_scratch("bad.idx");
    write_file(path, c->bytes, c->n, c->gz);
    tg_tensor *out = untouched;
    tg_error err = {0};
    tg_status s = tg_idx_load(path, TG_F32, 1.0, &out, &err);
    ck_assert_msg(s == c->want, "%s: status %d (%s)", c->name, s, err.msg);
    ck_assert_int_eq(err.status, s);
    ck_assert_ptr_eq(out, untouched);
    char want[600];
    snprintf(want, sizeof want, "%s: %s", path, c->msg);
    ck_assert_msg(strstr(err.msg, want), "%s: message '%s' lacks '%s'", c->name, err.msg, want);
}
END_TEST

START_TEST(idx_gz_cut_short)
{
    /* A good gzipped file cut in the middle of its deflate stream. */
    unsigned char idx[8 + 1000];
    memcpy(idx, (unsigned char[]){0, 0, 8, 1, 0, 0, 0x03, 0xE8}, 8);
    for (int k = 0; k < 1000; k++)
        idx[8 + k] = (unsigned char)(k * 7919 >> 3);
    const char *path = tu_in_scratch("cut.idx.gz");
    write_file(path, idx, sizeof idx, true);
    unsigned char gz[4096];
    size_t n = read_head(path, gz, sizeof gz);
    write_file(path, gz, n / 2, false);
    tg_tensor *out = untouched;
    tg_error err = {0};
    ck_assert_int_eq(tg_idx_load(path, TG_F32, 1.0, &out, &err), TG_ERR_FORMAT);
    ck_assert_ptr_eq(out, untouched);
    ck_assert_msg(strstr(err.msg, path) && strstr(err.msg, "offset"), "%s", err.msg);
}
END_TEST

START_TEST(idx_io_errors)
{
    tg_tensor *out = untouched;
    tg_error err = {0};
    const char *missing = tu_in_scratch("missing.idx");
    ck_assert_int_eq(tg_idx_load(missing, TG_F32, 1.0, &out, &err), TG_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err.msg, missing));
    ck_assert_ptr_nonnull(strstr(err.msg, "No such file"));
    ck_assert_int_eq(tg_idx_load(tu_scratch(), TG_F32, 1.0, &out, &err), TG_ERR_IO); /* a folder */
    ck_assert_ptr_eq(out, untouched);
    ck_assert_int_eq(tg_idx_load(NULL, TG_F32, 1.0, &out, &err), TG_ERR_ARG);
    ck_assert_int_eq(tg_idx_load(missing, TG_F32, 1.0, NULL, &err), TG_ERR_ARG);
    ck_assert_int_eq(tg_idx_load(missing, (tg_dtype)7, 1.0, &out, &err), TG_ERR_ARG);

    tg_tensor *t = tu_from(TG_F64, "2", (double[]){1, 2});
    ck_assert_int_eq(tg_idx_save(tu_in_scratch("no/such/folder.idx"), t, 0x08, &err), TG_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err.msg, "no/such/folder.idx"));
    tg_tensor_free(t);
}
END_TEST

START_TEST(idx_save_refuses_what_the_type_cannot_hold)
{
    static const struct {
        int code;
        double v;
    } rows[] = {{0x08, 256},    {0x08, -1},           {0x08, 0.5}, {0x09, 128},
                {0x0B, -32769}, {0x0C, 2147483648.0}, {0x08, NAN}};
    tg_error err = {0};
    const char *path = tu_in_scratch("v.idx");
    for (size_t r = 0; r < sizeof rows / sizeof *rows; r++) {
        tg_tensor *t = tu_from(TG_F64, "3", (double[]){0, rows[r].v, 1});
        ck_assert_int_eq(tg_idx_save(path, t, rows[r].code, &err), TG_ERR_ARG);
        ck_assert_ptr_nonnull(strstr(err.msg, "element 1"));
        ck_assert_int_ne(access(path, F_OK), 0); /* nothing was created */
        tg_tensor_free(t);
    }
    tg_tensor *t = tu_from(TG_F64, "1", (double[]){1});
    ck_assert_int_eq(tg_idx_save(path, t, 0x07, &err), TG_ERR_ARG);
    ck_assert_int_eq(tg_idx_save(NULL, t, 0x08, &err), TG_ERR_ARG);
    ck_assert_int_eq(tg_idx_save(path, NULL, 0x08, &err), TG_ERR_ARG);
    tg_tensor_free(t);
    tg_tensor *s = tu_from(TG_F64, "", (double[]){1});
    ck_assert_int_eq(tg_idx_save(path, s, 0x08, &err), TG_ERR_ARG); /* rank 0 */
    tg_tensor_free(s);
}
END_TEST

/* ====== CSV ====== */

typedef struct csv_case {
    const char *name, *text;
    tg_csv_opts opts;
    int64_t rows, cols;
    double x[12];
    bool has_y;
    double y[4];
} csv_case;

#define OPTS(d, h, l)                                                      \
    {                                                                      \
        .delimiter = (d), .header = (h), .label_col = (l), .dtype = TG_F64 \
    }

static const csv_case csv_good[] = {
    {"plain", "1,2,3\n4,5,6\n", OPTS(0, 0, -1), 2, 3, {1, 2, 3, 4, 5, 6}, false, {0}},
    {"header", "a,b\n1,2\n", OPTS(0, 1, -1), 1, 2, {1, 2}, false, {0}},
    {"header detected", "a,b\n1,2\n3,4\n", OPTS(0, -1, -1), 2, 2, {1, 2, 3, 4}, false, {0}},
    {"no header detected", "1,2\n3,4\n", OPTS(0, -1, -1), 2, 2, {1, 2, 3, 4}, false, {0}},
    {"label first", "7,1,2\n8,3,4\n", OPTS(0, 0, 0), 2, 2, {1, 2, 3, 4}, true, {7, 8}},
    {"label middle", "1,7,2\n3,8,4\n", OPTS(0, 0, 1), 2, 2, {1, 2, 3, 4}, true, {7, 8}},
    {"label last via -2", "1,2,7\n3,4,8\n", OPTS(0, 0, -2), 2, 2, {1, 2, 3, 4}, true, {7, 8}},
    {"label -3", "1,7,2\n3,8,4\n", OPTS(0, 0, -3), 2, 2, {1, 2, 3, 4}, true, {7, 8}},
    {"crlf, no final newline",
     "x,y\r\n1,2\r\n3,4",
     OPTS(0, -1, -1),
     2,
     2,
     {1, 2, 3, 4},
     false,
     {0}},
    {"semicolons and spaces",
     " 1 ; 2.5\n\t-3;4e2 \n",
     OPTS(';', 0, -1),
     2,
     2,
     {1, 2.5, -3, 400},
     false,
     {0}},
    {"tabs", "1\t2\n3\t4\n", OPTS('\t', 0, -1), 2, 2, {1, 2, 3, 4}, false, {0}},
    {"blank lines skipped", "\n1,2\n\n  \n3,4\n\n", OPTS(0, 0, -1), 2, 2, {1, 2, 3, 4}, false, {0}},
    {"one column", "0.1\n0.2\n", OPTS(0, 0, -1), 2, 1, {0.1, 0.2}, false, {0}},
    {"BOM, numbers",
     "\xEF\xBB\xBF"
     "1,2\n3,4\n",
     OPTS(0, -1, -1),
     2,
     2,
     {1, 2, 3, 4},
     false,
     {0}},
    {"BOM, header detected",
     "\xEF\xBB\xBF"
     "a,b\n1,2\n",
     OPTS(0, -1, -1),
     1,
     2,
     {1, 2},
     false,
     {0}},
    {"BOM, no header",
     "\xEF\xBB\xBF"
     "5;6\n",
     OPTS(';', 0, -1),
     1,
     2,
     {5, 6},
     false,
     {0}},
    {"header of empty and text cells",
     "a,,c\n1,2,3\n",
     OPTS(0, -1, -1),
     1,
     3,
     {1, 2, 3},
     false,
     {0}},
    {"underflow rounds to 0", "1e-400,-1e-400\n", OPTS(0, -1, -1), 1, 2, {0, 0}, false, {0}},
};
enum { N_CSV_GOOD = sizeof csv_good / sizeof *csv_good };

START_TEST(csv_loads)
{
    const csv_case *c = &csv_good[_i];
    const char *path = tu_in_scratch("data.csv");
    write_file(path, c->text, strlen(c->text), false);
    tg_tensor *x = untouched, *y = untouched;
    tg_error err = {0};
    ck_assert_msg(tg_csv_load(path, &c->opts, &x, &y, &err) == TG_OK, "%s: %s", c->name, err.msg);
    ck_assert_int_eq(tg_tensor_rank(x), 2);
    ck_assert_int_eq(tg_tensor_shape(x)[0], c->rows);
    ck_assert_int_eq(tg_tensor_shape(x)[1], c->cols);
    for (int64_t k = 0; k < c->rows * c->cols; k++)
        ck_assert_msg(tu_at(x, k) == c->x[k], "%s: x[%lld] = %.17g", c->name, (long long)k,
                      tu_at(x, k));
    if (c->has_y) {
        ck_assert_int_eq(tg_tensor_rank(y), 1);
        ck_assert_int_eq(tg_tensor_shape(y)[0], c->rows);
        for (int64_t k = 0; k < c->rows; k++)
            ck_assert(tu_at(y, k) == c->y[k]);
        tg_tensor_free(y);
    } else {
        ck_assert_ptr_null(y);
    }
    tg_tensor_free(x);
}
END_TEST

typedef struct csv_bad {
    const char *name, *text;
    tg_csv_opts opts;
    tg_status want;
    const char *msg; /* expected after "<path>" */
} csv_bad;

static const csv_bad csv_bads[] = {
    {"not a number", "1,2,3\n4,abc,6\n", OPTS(0, 0, -1), TG_ERR_FORMAT,
     ":2: column 2: not a number: 'abc'"},
    {"after a detected header", "a,b\n1,2\n3,x\n", OPTS(0, -1, -1), TG_ERR_FORMAT,
     ":3: column 2: not a number: 'x'"},
    {"header given, bad first row", "a,b\n1,b\n", OPTS(0, 1, -1), TG_ERR_FORMAT,
     ":2: column 2: not a number: 'b'"},
    {"empty cell", "1,,3\n", OPTS(0, 0, -1), TG_ERR_FORMAT, ":1: column 2: empty cell: ''"},
    {"space-only cell", "1,  ,3\n", OPTS(0, 0, -1), TG_ERR_FORMAT, ":1: column 2: empty cell: ''"},
    /* With header detection, a first line with a number is data, so one bad
     * cell is an error there, not a header silently dropped. */
    {"first row with a bad cell", "1,abc,3\n4,5,6\n", OPTS(0, -1, -1), TG_ERR_FORMAT,
     ":1: column 2: not a number: 'abc'"},
    {"first row with an empty cell", "1,,3\n4,5,6\n", OPTS(0, -1, -1), TG_ERR_FORMAT,
     ":1: column 2: empty cell: ''"},
    {"first row with an empty last cell", "1,2,\n4,5,6\n", OPTS(0, -1, -1), TG_ERR_FORMAT,
     ":1: column 3: empty cell: ''"},
    {"BOM then a bad cell",
     "\xEF\xBB\xBF"
     "1,x\n",
     OPTS(0, -1, -1), TG_ERR_FORMAT, ":1: column 2: not a number: 'x'"},
    {"header with a numeric name", "x,2024\n1,2\n", OPTS(0, -1, -1), TG_ERR_FORMAT,
     ":1: column 1: not a number: 'x'"},
    {"hexadecimal", "1,0x10\n", OPTS(0, 0, -1), TG_ERR_FORMAT,
     ":1: column 2: hexadecimal numbers are not read: '0x10'"},
    {"negative hexadecimal, detected", "-0X1p3,1\n", OPTS(0, -1, -1), TG_ERR_FORMAT,
     ":1: column 1: hexadecimal numbers are not read: '-0X1p3'"},
    {"overflow", "1,1e999\n", OPTS(0, 0, -1), TG_ERR_FORMAT,
     ":1: column 2: '1e999' is out of range for f64"},
    {"negative overflow, detected", "-1e999\n", OPTS(0, -1, -1), TG_ERR_FORMAT,
     ":1: column 1: '-1e999' is out of range for f64"},
    {"f32 overflow",
     "1\n1e39\n",
     {.header = 0, .label_col = -1, .dtype = TG_F32},
     TG_ERR_FORMAT,
     ":2: column 1: '1e39' is out of range for f32"},
    {"trailing junk", "1,2.5x\n", OPTS(0, 0, -1), TG_ERR_FORMAT,
     ":1: column 2: not a number: '2.5x'"},
    {"ragged", "1,2\n3\n", OPTS(0, 0, -1), TG_ERR_FORMAT, ":2: 1 columns, expected 2"},
    {"ragged long", "1,2\r\n3,4,5\r\n", OPTS(0, 0, -1), TG_ERR_FORMAT, ":2: 3 columns, expected 2"},
    {"empty file", "", OPTS(0, -1, -1), TG_ERR_FORMAT, ": no data rows"},
    {"header only", "a,b\n", OPTS(0, 1, -1), TG_ERR_FORMAT, ": no data rows"},
    {"blank lines only", "\n \r\n", OPTS(0, -1, -1), TG_ERR_FORMAT, ": no data rows"},
    {"label out of range", "1,2\n", OPTS(0, 0, 2), TG_ERR_ARG, ":1: label column 2 out of range"},
    {"label far from the end", "1,2\n", OPTS(0, 0, -4), TG_ERR_ARG,
     ":1: label column -4 out of range"},
};
enum { N_CSV_BAD = sizeof csv_bads / sizeof *csv_bads };

START_TEST(csv_errors)
{
    const csv_bad *c = &csv_bads[_i];
    const char *path = tu_in_scratch("data.csv");
    write_file(path, c->text, strlen(c->text), false);
    tg_tensor *x = untouched, *y = untouched;
    tg_error err = {0};
    tg_status s = tg_csv_load(path, &c->opts, &x, &y, &err);
    ck_assert_msg(s == c->want, "%s: status %d (%s)", c->name, s, err.msg);
    ck_assert_ptr_eq(x, untouched);
    ck_assert_ptr_eq(y, untouched);
    char want[600];
    snprintf(want, sizeof want, "%s%s", path, c->msg);
    ck_assert_msg(strstr(err.msg, want), "%s: message '%s' lacks '%s'", c->name, err.msg, want);
    ck_assert_int_eq(tg_last_error()->status, s);
    ck_assert_str_eq(tg_last_error()->msg, err.msg);
}
END_TEST

/* inf, infinity and nan are read as numpy.savetxt writes them; the largest
 * f32 is accepted in f32, and half an ulp past it is not. */
START_TEST(csv_special_values)
{
    const char *path = tu_in_scratch("special.csv");
    const char *text = "inf,-Infinity,NaN\n-nan,+INF,3.4028235e38\n";
    write_file(path, text, strlen(text), false);
    tg_tensor *x = NULL;
    tg_error err = {0};
    tg_csv_opts o = {.header = -1, .label_col = -1, .dtype = TG_F32};
    ck_assert_msg(tg_csv_load(path, &o, &x, NULL, &err) == TG_OK, "%s", err.msg);
    ck_assert_int_eq(tg_tensor_shape(x)[0], 2);
    ck_assert(isinf(tu_at(x, 0)) && tu_at(x, 0) > 0);
    ck_assert(isinf(tu_at(x, 1)) && tu_at(x, 1) < 0);
    ck_assert(isnan(tu_at(x, 2)) && isnan(tu_at(x, 3)));
    ck_assert(isinf(tu_at(x, 4)) && tu_at(x, 4) > 0);
    ck_assert(tu_at(x, 5) == (double)FLT_MAX);
    tg_tensor_free(x);
    text = "3.40282357e38\n";
    write_file(path, text, strlen(text), false);
    ck_assert_int_eq(tg_csv_load(path, &o, &x, NULL, &err), TG_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, ":1: column 1: '3.40282357e38' is out of range for f32"), "%s",
                  err.msg);
}
END_TEST

START_TEST(csv_long_lines_and_defaults)
{
    /* 3 rows of 5000 columns, 'a' header, label in the last column, and no opts. */
    enum { COLS = 5000 };
    size_t cap = 16 * COLS * 4;
    char *text = malloc(cap), *p = text;
    for (int c = 0; c < COLS; c++)
        p += sprintf(p, c ? ",a%d" : "a%d", c);
    *p++ = '\n';
    for (int r = 0; r < 3; r++) {
        for (int c = 0; c < COLS; c++)
            p += sprintf(p, c ? ",%d" : "%d", r * COLS + c);
        *p++ = '\n';
    }
    const char *path = tu_in_scratch("wide.csv");
    write_file(path, text, (size_t)(p - text), false);
    free(text);

    tg_tensor *x = NULL, *y = NULL;
    tg_error err = {0};
    ck_assert_msg(tg_csv_load(path, NULL, &x, &y, &err) == TG_OK, "%s", err.msg);
    ck_assert_int_eq(tg_tensor_dtype(x), TG_F32);
    ck_assert_int_eq(tg_tensor_shape(x)[0], 3);
    ck_assert_int_eq(tg_tensor_shape(x)[1], COLS);
    ck_assert_ptr_null(y); /* no label column by default */
    for (int64_t k = 0; k < 3 * COLS; k++)
        ck_assert(tu_at(x, k) == (double)k);
    tg_tensor_free(x);

    tg_csv_opts o = {.header = 1, .label_col = -2, .dtype = TG_F64};
    ck_assert_int_eq(tg_csv_load(path, &o, &x, &y, &err), TG_OK);
    ck_assert_int_eq(tg_tensor_shape(x)[1], COLS - 1);
    ck_assert(tu_at(y, 2) == 3 * COLS - 1);
    tg_tensor_free(x);
    tg_tensor_free(y);
    ck_assert_int_eq(tg_csv_load(path, &o, &x, NULL, &err), TG_OK); /* labels dropped */
    ck_assert_int_eq(tg_tensor_shape(x)[1], COLS - 1);
    ck_assert(tu_at(x, COLS - 2) == COLS - 2);
    tg_tensor_free(x);

    x = untouched;
    ck_assert_int_eq(tg_csv_load(tu_in_scratch("missing.csv"), NULL, &x, NULL, &err), TG_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err.msg, "missing.csv: cannot open"));
    ck_assert_int_eq(tg_csv_load(NULL, NULL, &x, NULL, &err), TG_ERR_ARG);
    ck_assert_int_eq(tg_csv_load(path, NULL, NULL, NULL, &err), TG_ERR_ARG);
    o.header = 2;
    ck_assert_int_eq(tg_csv_load(path, &o, &x, NULL, &err), TG_ERR_ARG);
    ck_assert_ptr_eq(x, untouched);
}
END_TEST

/* ====== One-hot ====== */

START_TEST(one_hot)
{
    tg_dtype dt = _i ? TG_F64 : TG_F32;
    tg_tensor *labels = tu_from(TG_F64, "4", (double[]){2, 0, 1, 2});
    tg_tensor *h = tg_one_hot(labels, 3, dt);
    ck_assert_ptr_nonnull(h);
    ck_assert_int_eq(tg_tensor_dtype(h), dt);
    ck_assert_int_eq(tg_tensor_shape(h)[0], 4);
    ck_assert_int_eq(tg_tensor_shape(h)[1], 3);
    static const double want[] = {0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 1};
    for (int k = 0; k < 12; k++)
        ck_assert(tu_at(h, k) == want[k]);
    tg_tensor_free(h);
    ck_assert_ptr_null(tg_one_hot(labels, 2, dt)); /* label 2 out of range */
    ck_assert_int_eq(tg_last_error()->status, TG_ERR_ARG);
    ck_assert_str_eq(tg_last_error()->msg, "one_hot: label 0 is 2, not a whole number in [0, 2)");
    ck_assert_ptr_null(tg_one_hot(labels, 0, dt));
    ck_assert_str_eq(tg_last_error()->msg, "one_hot: n_classes must be >= 1");
    ck_assert_ptr_null(tg_one_hot(NULL, 3, dt));
    ck_assert_str_eq(tg_last_error()->msg, "one_hot: NULL labels");
    ck_assert_ptr_null(tg_one_hot(labels, INT64_MAX / 2, dt));
    ck_assert_int_eq(tg_last_error()->status, TG_ERR_ARG);
    ck_assert_msg(strstr(tg_last_error()->msg, "is too large to allocate"), "%s",
                  tg_last_error()->msg);
    tg_tensor_free(labels);
    static const double bad[][2] = {{0, -1}, {0, 0.5}, {0, NAN}};
    for (int r = 0; r < 3; r++) {
        labels = tu_from(TG_F32, "2", bad[r]);
        ck_assert_ptr_null(tg_one_hot(labels, 3, dt));
        tg_tensor_free(labels);
    }
    labels = tu_from(TG_F32, "2x1", (double[]){0, 1});
    ck_assert_ptr_null(tg_one_hot(labels, 3, dt)); /* rank 1 only */
    ck_assert_str_eq(tg_last_error()->msg, "one_hot: labels must have rank 1");
    tg_tensor_free(labels);
}
END_TEST

/* ====== Split ====== */

/* x [n, 3] with x[i][j] = 10 i + j, y [n] with y[i] = i. */
static void rows_fixture(int64_t n, tg_tensor **x, tg_tensor **y)
{
    *x = tg_tensor_new(TG_F64, 2, (int64_t[]){n, 3});
    *y = tg_tensor_new(TG_F32, 1, &n);
    for (int64_t i = 0; i < n; i++) {
        for (int j = 0; j < 3; j++)
            ((double *)tg_tensor_data(*x))[i * 3 + j] = 10.0 * (double)i + j;
        ((float *)tg_tensor_data(*y))[i] = (float)i;
    }
}

/* The row ids in xs (rows of rows_fixture), checked against ys, counted into seen. */
static void count_rows(const tg_tensor *xs, const tg_tensor *ys, int *seen)
{
    for (int64_t r = 0; r < tg_tensor_shape(xs)[0]; r++) {
        double id = tu_at(xs, r * 3) / 10;
        ck_assert(tu_at(xs, r * 3 + 2) == 10 * id + 2);
        if (ys) ck_assert(tu_at(ys, r) == id);
        seen[(int)id]++;
    }
}

static const struct {
    double holdout;
    int64_t held;
} split_rows[] = {{0.3, 3}, {0, 0}, {1, 10}, {0.25, 3}, {0.04, 0}};

START_TEST(split)
{
    tg_tensor *x, *y;
    rows_fixture(10, &x, &y);
    tg_tensor *xt, *yt, *xh, *yh;
    ck_assert_int_eq(tg_split(x, y, split_rows[_i].holdout, 42, &xt, &yt, &xh, &yh), TG_OK);
    int64_t held = split_rows[_i].held;
    ck_assert_int_eq(tg_tensor_shape(xh)[0], held);
    ck_assert_int_eq(tg_tensor_shape(yh)[0], held);
    ck_assert_int_eq(tg_tensor_shape(xt)[0], 10 - held);
    ck_assert_int_eq(tg_tensor_shape(yt)[0], 10 - held);
    ck_assert_int_eq(tg_tensor_shape(xt)[1], 3);
    ck_assert_int_eq(tg_tensor_dtype(yt), TG_F32);
    int seen[10] = {0};
    count_rows(xt, yt, seen);
    count_rows(xh, yh, seen);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(seen[i], 1); /* disjoint and complete */

    /* The same seed gives the same split; y may be left out. */
    tg_tensor *xt2, *xh2, *yt2 = untouched, *yh2 = untouched;
    ck_assert_int_eq(tg_split(x, NULL, split_rows[_i].holdout, 42, &xt2, &yt2, &xh2, &yh2), TG_OK);
    ck_assert_ptr_null(yt2);
    ck_assert_ptr_null(yh2);
    ck_assert(tu_close(xt, xt2, 0, NULL) && tu_close(xh, xh2, 0, NULL));
    tg_tensor_free(xt2);
    tg_tensor_free(xh2);
    tg_tensor_free(xt);
    tg_tensor_free(yt);
    tg_tensor_free(xh);
    tg_tensor_free(yh);
    tg_tensor_free(x);
    tg_tensor_free(y);
}
END_TEST

START_TEST(split_shuffles_by_seed_and_checks_arguments)
{
    tg_tensor *x, *y;
    rows_fixture(50, &x, &y);
    tg_tensor *a, *b, *held_a, *held_b;
    ck_assert_int_eq(tg_split(x, NULL, 0.2, 1, &a, NULL, &held_a, NULL), TG_OK);
    ck_assert_int_eq(tg_split(x, NULL, 0.2, 2, &b, NULL, &held_b, NULL), TG_OK);
    ck_assert(!tu_close(a, b, 0, NULL)); /* other seed, other order */
    bool in_order = true;
    for (int64_t r = 1; r < tg_tensor_shape(a)[0]; r++)
        in_order &= tu_at(a, r * 3) > tu_at(a, r * 3 - 3);
    ck_assert(!in_order);
    tg_tensor_free(a);
    tg_tensor_free(b);
    tg_tensor_free(held_a);
    tg_tensor_free(held_b);

    tg_tensor *o1 = untouched, *o2 = untouched, *o3 = untouched, *o4 = untouched;
    ck_assert_int_eq(tg_split(x, y, 1.5, 1, &o1, &o2, &o3, &o4), TG_ERR_ARG);
    ck_assert_str_eq(tg_last_error()->msg, "split: holdout 1.5 outside [0, 1]");
    ck_assert_int_eq(tg_split(x, y, -0.1, 1, &o1, &o2, &o3, &o4), TG_ERR_ARG);
    ck_assert_int_eq(tg_split(x, y, NAN, 1, &o1, &o2, &o3, &o4), TG_ERR_ARG);
    ck_assert_str_eq(tg_last_error()->msg, "split: holdout nan outside [0, 1]");
    ck_assert_int_eq(tg_split(x, y, 0.5, 1, &o1, NULL, &o3, &o4), TG_ERR_ARG);
    ck_assert_str_eq(tg_last_error()->msg, "split: NULL y output");
    ck_assert_int_eq(tg_split(NULL, y, 0.5, 1, &o1, &o2, &o3, &o4), TG_ERR_ARG);
    ck_assert_str_eq(tg_last_error()->msg, "split: NULL x or x output");
    tg_tensor *y_short = tg_tensor_new(TG_F32, 1, (int64_t[]){49});
    ck_assert_int_eq(tg_split(x, y_short, 0.5, 1, &o1, &o2, &o3, &o4), TG_ERR_ARG);
    ck_assert_str_eq(tg_last_error()->msg, "split: y has 49 rows, x 50");
    tg_tensor *s = tg_tensor_new(TG_F32, 0, NULL);
    ck_assert_int_eq(tg_split(s, NULL, 0.5, 1, &o1, &o2, &o3, &o4), TG_ERR_ARG);
    ck_assert_str_eq(tg_last_error()->msg, "split: x has no rows (rank 0)");
    ck_assert(o1 == untouched && o2 == untouched && o3 == untouched && o4 == untouched);
    tg_tensor_free(s);
    tg_tensor_free(y_short);
    tg_tensor_free(x);
    tg_tensor_free(y);
}
END_TEST

/* ====== Batcher ====== */

/* Runs one epoch of batches of 4 over rows_fixture(10): row ids in visiting order into ids. */
static void epoch(tg_batcher *b, tg_tensor *xb, tg_tensor *yb, int *ids)
{
    static const int64_t sizes[] = {4, 4, 2, 0};
    int k = 0;
    for (int i = 0; i < 4; i++) {
        int64_t got = tg_batcher_next(b, xb, yb);
        ck_assert_int_eq(got, sizes[i]);
        for (int64_t r = 0; r < got; r++) {
            double id = tu_at(xb, r * 3) / 10;
            ck_assert(tu_at(xb, r * 3 + 1) == 10 * id + 1);
            if (yb) ck_assert(tu_at(yb, r) == id);
            ids[k++] = (int)id;
        }
        if (got == 2) /* the rows a partial batch leaves over are zero */
            for (int64_t e = 2 * 3; e < 4 * 3; e++)
                ck_assert(tu_at(xb, e) == 0);
    }
}

START_TEST(batcher_epochs)
{
    tg_tensor *x, *y;
    rows_fixture(10, &x, &y);
    tg_batcher *b = tg_batcher_new(x, y, 4, true, 7), *same = tg_batcher_new(x, NULL, 4, true, 7);
    ck_assert_int_eq(tg_batcher_batches(b), 3);
    tg_tensor *xb = tg_tensor_new(TG_F64, 2, (int64_t[]){4, 3});
    tg_tensor *yb = tg_tensor_new(TG_F32, 1, (int64_t[]){4});
    int ids[3][10], again[10];
    for (int e = 0; e < 3; e++) {
        epoch(b, xb, yb, ids[e]);
        int seen[10] = {0};
        for (int k = 0; k < 10; k++)
            seen[ids[e][k]]++;
        for (int k = 0; k < 10; k++)
            ck_assert_int_eq(seen[k], 1); /* every row once */
        epoch(same, xb, NULL, again);
        ck_assert(memcmp(ids[e], again, sizeof again) == 0); /* same seed, same order */
    }
    ck_assert(memcmp(ids[0], ids[1], sizeof ids[0]) != 0); /* reshuffled every epoch */
    ck_assert(memcmp(ids[1], ids[2], sizeof ids[0]) != 0);
    tg_batcher_free(b);
    tg_batcher_free(same);

    b = tg_batcher_new(x, y, 4, false, 7); /* no shuffle: file order, every epoch */
    for (int e = 0; e < 2; e++) {
        epoch(b, xb, yb, ids[0]);
        for (int k = 0; k < 10; k++)
            ck_assert_int_eq(ids[0][k], k);
    }
    tg_batcher_free(b);
    tg_tensor_free(xb);
    tg_tensor_free(yb);
    tg_tensor_free(x);
    tg_tensor_free(y);
}
END_TEST

START_TEST(batcher_refuses_mismatches)
{
    tg_tensor *x, *y;
    rows_fixture(10, &x, &y);
    tg_batcher *b = tg_batcher_new(x, y, 4, true, 1), *no_y = tg_batcher_new(x, NULL, 4, true, 1);
    tg_tensor *xb = tg_tensor_new(TG_F64, 2, (int64_t[]){4, 3});
    tg_tensor *yb = tg_tensor_new(TG_F32, 1, (int64_t[]){4});
    tg_tensor *wrong[] = {
        tg_tensor_new(TG_F64, 2, (int64_t[]){5, 3}),
        tg_tensor_new(TG_F32, 2, (int64_t[]){4, 3}),
        tg_tensor_new(TG_F64, 2, (int64_t[]){4, 2}),
        tg_tensor_new(TG_F64, 1, (int64_t[]){4}),
    };
    for (int w = 0; w < 4; w++) {
        ck_assert_int_eq(tg_batcher_next(b, wrong[w], yb), -1);
        ck_assert_int_eq(tg_last_error()->status, TG_ERR_ARG);
        ck_assert_msg(strstr(tg_last_error()->msg, "batcher_next: xb is ["), "%s",
                      tg_last_error()->msg);
        ck_assert_int_eq(tg_batcher_next(b, xb, wrong[w]), -1);
        ck_assert_msg(strstr(tg_last_error()->msg, "batcher_next: yb is ["), "%s",
                      tg_last_error()->msg);
        tg_tensor_free(wrong[w]);
    }
    ck_assert_int_eq(tg_batcher_next(no_y, xb, yb), -1); /* no y to copy */
    ck_assert_str_eq(tg_last_error()->msg, "batcher_next: yb given, but the batcher has no y");
    ck_assert_int_eq(tg_batcher_next(NULL, xb, yb), -1);
    ck_assert_str_eq(tg_last_error()->msg, "batcher_next: NULL batcher");
    ck_assert_int_eq(tg_batcher_next(b, NULL, yb), -1);
    ck_assert_str_eq(tg_last_error()->msg, "batcher_next: NULL xb");
    tg_tensor *x32 = tg_tensor_new(TG_F32, 2, (int64_t[]){4, 3});
    ck_assert_int_eq(tg_batcher_next(b, x32, yb), -1);
    ck_assert_str_eq(tg_last_error()->msg, "batcher_next: xb is [4x3] f32, want a leaf of 4 rows "
                                           "shaped like the rows of [10x3] f64");
    tg_tensor_free(x32);
    ck_assert_int_eq(tg_batcher_next(b, xb, NULL), 4); /* yb may be left out */
    ck_assert_int_eq(tg_batcher_batches(NULL), 0);

    tg_tensor *y_short = tg_tensor_new(TG_F32, 1, (int64_t[]){9});
    ck_assert_ptr_null(tg_batcher_new(x, y_short, 4, true, 1));
    ck_assert_str_eq(tg_last_error()->msg,
                     "batcher_new: y has no rows or another row count than x");
    ck_assert_ptr_null(tg_batcher_new(x, y, 0, true, 1));
    ck_assert_str_eq(tg_last_error()->msg, "batcher_new: batch must be >= 1");
    ck_assert_ptr_null(tg_batcher_new(NULL, y, 4, true, 1));
    ck_assert_str_eq(tg_last_error()->msg, "batcher_new: NULL x");
    tg_tensor_free(y_short);

    tg_tensor *empty = tg_tensor_new(TG_F64, 2, (int64_t[]){0, 3});
    tg_batcher *e = tg_batcher_new(empty, NULL, 4, true, 1);
    ck_assert_int_eq(tg_batcher_batches(e), 0);
    ck_assert_int_eq(tg_batcher_next(e, xb, NULL), 0);
    ck_assert_int_eq(tg_batcher_next(e, xb, NULL), 0);
    tg_batcher_free(e);
    tg_batcher_free(NULL);
    tg_tensor_free(empty);

    tg_batcher_free(b);
    tg_batcher_free(no_y);
    tg_tensor_free(xb);
    tg_tensor_free(yb);
    tg_tensor_free(x);
    tg_tensor_free(y);
}
END_TEST

/* Row weights: batch / rows on the rows of the batch just copied, 0 after them. */
START_TEST(batcher_weights)
{
    tg_tensor *x, *y;
    rows_fixture(10, &x, &y);
    tg_batcher *b = tg_batcher_new(x, NULL, 4, false, 1);
    tg_tensor *xb = tg_tensor_new(TG_F64, 2, (int64_t[]){4, 3});
    tg_tensor *w = tg_tensor_new(_i ? TG_F32 : TG_F64, 2, (int64_t[]){4, 1});
    ck_assert_int_eq(tg_batcher_weights(b, w), TG_OK); /* before the first batch: all 0 */
    for (int k = 0; k < 4; k++)
        ck_assert(tu_at(w, k) == 0);
    static const int64_t rows[] = {4, 4, 2, 0, 4};
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(tg_batcher_next(b, xb, NULL), rows[i]);
        ck_assert_int_eq(tg_batcher_weights(b, w), TG_OK);
        for (int64_t k = 0; k < 4; k++) {
            double want = k < rows[i] ? 4.0 / (double)rows[i] : 0.0;
            ck_assert_msg(tu_at(w, k) == want, "batch %d row %lld: %g, want %g", i, (long long)k,
                          tu_at(w, k), want);
        }
    }
    /* Any float leaf of 'batch' elements; nothing else. */
    tg_tensor *flat = tg_tensor_new(TG_F64, 1, (int64_t[]){4});
    ck_assert_int_eq(tg_batcher_weights(b, flat), TG_OK);
    tg_tensor *bad[] = {tg_tensor_new(TG_F64, 2, (int64_t[]){5, 1}),
                        tg_tensor_new(TG_I64, 1, (int64_t[]){4})};
    ck_assert_int_eq(tg_batcher_weights(b, bad[0]), TG_ERR_ARG);
    ck_assert_str_eq(tg_last_error()->msg,
                     "batcher_weights: w is [5x1] f64, want a float leaf of 4 elements");
    ck_assert_int_eq(tg_batcher_weights(b, bad[1]), TG_ERR_ARG);
    ck_assert_str_eq(tg_last_error()->msg,
                     "batcher_weights: w is [4] i64, want a float leaf of 4 elements");
    ck_assert_int_eq(tg_batcher_weights(NULL, w), TG_ERR_ARG);
    ck_assert_str_eq(tg_last_error()->msg, "batcher_weights: NULL batcher");
    ck_assert_int_eq(tg_batcher_weights(b, NULL), TG_ERR_ARG);
    ck_assert_str_eq(tg_last_error()->msg, "batcher_weights: NULL w");
    tg_tape *tp = tg_tape_new();
    tg_tensor *owned = tg_scale(tp, flat, 1.0);
    ck_assert_int_eq(tg_batcher_weights(b, owned), TG_ERR_ARG);
    ck_assert_str_eq(tg_last_error()->msg,
                     "batcher_weights: w is [4] f64 (not a leaf), want a float leaf of 4 elements");
    tg_tape_free(tp);
    tg_tensor_free(bad[0]);
    tg_tensor_free(bad[1]);
    tg_tensor_free(flat);
    tg_tensor_free(w);
    tg_tensor_free(xb);
    tg_batcher_free(b);
    tg_tensor_free(x);
    tg_tensor_free(y);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("data");
    TCase *idx = tcase_create("idx");
    tcase_add_checked_fixture(idx, scratch_make, tu_scratch_remove);
    tcase_add_loop_test(idx, idx_round_trip, 0, 2 * N_CODES * TG_MAX_RANK);
    tcase_add_test(idx, idx_bytes_are_big_endian);
    tcase_add_loop_test(idx, idx_corrupt, 0, N_IDX_BAD);
    tcase_add_test(idx, idx_gz_cut_short);
    tcase_add_test(idx, idx_io_errors);
    tcase_add_test(idx, idx_save_refuses_what_the_type_cannot_hold);
    suite_add_tcase(s, idx);

    TCase *csv = tcase_create("csv");
    tcase_add_checked_fixture(csv, scratch_make, tu_scratch_remove);
    tcase_add_loop_test(csv, csv_loads, 0, N_CSV_GOOD);
    tcase_add_loop_test(csv, csv_errors, 0, N_CSV_BAD);
    tcase_add_test(csv, csv_long_lines_and_defaults);
    tcase_add_test(csv, csv_special_values);
    suite_add_tcase(s, csv);

    TCase *rows = tcase_create("rows");
    tcase_add_loop_test(rows, one_hot, 0, 2);
    tcase_add_loop_test(rows, split, 0, sizeof split_rows / sizeof *split_rows);
    tcase_add_test(rows, split_shuffles_by_seed_and_checks_arguments);
    tcase_add_test(rows, batcher_epochs);
    tcase_add_test(rows, batcher_refuses_mismatches);
    tcase_add_loop_test(rows, batcher_weights, 0, 2);
    suite_add_tcase(s, rows);
    return tu_run(s);
}
