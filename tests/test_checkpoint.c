/* Checkpoints: safetensors round trips, the file layout, corrupt files, interrupted saves. */
#include "testutil.h"

#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ====== A scratch folder per test, removed afterwards; no write set to fail ====== */

static void scratch_make(void)
{
    tu_scratch_make("tg_ckpt");
    tg__io_fail_after = -1;
}

static void scratch_remove(void)
{
    tg__io_fail_after = -1;
    tu_scratch_remove();
}

/* Files in the scratch folder. */
static int scratch_files(void)
{
    DIR *d = opendir(tu_scratch());
    ck_assert_ptr_nonnull(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

static unsigned char *read_all(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    *size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(*size + 1);
    ck_assert_uint_eq(fread(buf, 1, *size, f), *size);
    fclose(f);
    return buf;
}

/* ====== Registries ====== */

static const struct {
    const char *name, *shape;
    tg_dtype dt;
} layout[] = {
    {"layer.0.weight", "2x3", TG_F32},  {"layer.0.bias", "3", TG_F64}, {"scale", "", TG_F64},
    {"conv.kernel", "2x1x2x2", TG_F32}, {"empty", "0x4", TG_F32},
};
enum { N_LAYOUT = sizeof layout / sizeof *layout };

/* Parameters of 'layout' whose names start with 'prefix', zero-filled. */
static tg_params *make_params(const char *prefix)
{
    tg_params *ps = tg_params_new();
    for (int i = 0; i < N_LAYOUT; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s%s", prefix, layout[i].name);
        int64_t shape[TG_MAX_RANK];
        int rank = tu_parse_shape(layout[i].shape, shape);
        ck_assert_ptr_nonnull(tg_params_add(ps, name, layout[i].dt, rank, shape));
    }
    return ps;
}

/* Distinct values per seed, parameter and element; non-round, so every bit counts. */
static void fill(tg_params *ps, double seed)
{
    for (size_t i = 0; i < tg_params_count(ps); i++) {
        tg_tensor *t = tg_params_at(ps, i, NULL);
        for (int64_t k = 0; k < tg_tensor_numel(t); k++)
            tu_put(t, k, seed + (double)i / 7 + (double)k / 3);
    }
}

/* Every parameter's bytes, concatenated; the caller frees. */
static unsigned char *snapshot(tg_params *ps, size_t *size)
{
    *size = 0;
    for (size_t i = 0; i < tg_params_count(ps); i++) {
        tg_tensor *t = tg_params_at(ps, i, NULL);
        *size += (size_t)tg_tensor_numel(t) * (tg_tensor_dtype(t) == TG_F64 ? 8 : 4);
    }
    unsigned char *buf = malloc(*size + 1), *p = buf;
    for (size_t i = 0; i < tg_params_count(ps); i++) {
        tg_tensor *t = tg_params_at(ps, i, NULL);
        size_t n = (size_t)tg_tensor_numel(t) * (tg_tensor_dtype(t) == TG_F64 ? 8 : 4);
        memcpy(p, tg_tensor_data(t), n);
        p += n;
    }
    return buf;
}

static void assert_same(tg_params *a, tg_params *b)
{
    size_t na, nb;
    unsigned char *sa = snapshot(a, &na), *sb = snapshot(b, &nb);
    ck_assert_uint_eq(na, nb);
    ck_assert(memcmp(sa, sb, na) == 0);
    free(sa);
    free(sb);
}

/* ====== Round trips ====== */

START_TEST(round_trip)
{
    tg_params *ps = make_params(""), *back = make_params("");
    fill(ps, 1);
    tg_error err = {0};
    const char *path = tu_in_scratch("model.safetensors");
    ck_assert_msg(tg_checkpoint_save(path, &ps, 1, &err) == TG_OK, "%s", err.msg);
    ck_assert_int_eq(scratch_files(), 1); /* no temporary left behind */
    ck_assert_msg(tg_checkpoint_load(path, &back, 1, &err) == TG_OK, "%s", err.msg);
    assert_same(ps, back);

    /* Saving again replaces the file, and a new file gets mode 0644, an old one keeps its own. */
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_int_eq(sb.st_mode & 0777, 0644);
    ck_assert_int_eq(chmod(path, 0600), 0);
    fill(ps, 2);
    ck_assert_int_eq(tg_checkpoint_save(path, &ps, 1, &err), TG_OK);
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_int_eq(sb.st_mode & 0777, 0600);
    ck_assert_int_eq(tg_checkpoint_load(path, &back, 1, &err), TG_OK);
    assert_same(ps, back);
    tg_params_free(ps);
    tg_params_free(back);
}
END_TEST

START_TEST(several_registries)
{
    tg_params *model = make_params(""), *optim = make_params("optim.m."), *sets[2] = {model, optim};
    fill(model, 3);
    fill(optim, -5);
    tg_error err = {0};
    const char *path = tu_in_scratch("both.safetensors");
    ck_assert_msg(tg_checkpoint_save(path, sets, 2, &err) == TG_OK, "%s", err.msg);

    tg_params *model2 = make_params(""), *optim2 = make_params("optim.m."),
              *back[2] = {model2, optim2};
    ck_assert_int_eq(tg_checkpoint_load(path, back, 2, &err), TG_OK);
    assert_same(model, model2);
    assert_same(optim, optim2);

    /* The optimizer's tensors are extra for a model-only load, and ignored. */
    tg_params *model3 = make_params("");
    ck_assert_msg(tg_checkpoint_load(path, &model3, 1, &err) == TG_OK, "%s", err.msg);
    assert_same(model, model3);

    /* No registries at all: a valid, empty checkpoint. */
    const char *empty = tu_in_scratch("empty.safetensors");
    ck_assert_int_eq(tg_checkpoint_save(empty, NULL, 0, &err), TG_OK);
    ck_assert_int_eq(tg_checkpoint_load(empty, NULL, 0, &err), TG_OK);
    ck_assert_int_eq(tg_checkpoint_load(empty, &model3, 1, &err), TG_ERR_FORMAT);
    tg_params_free(model);
    tg_params_free(optim);
    tg_params_free(model2);
    tg_params_free(optim2);
    tg_params_free(model3);
}
END_TEST

/* ====== The file is safetensors ====== */

/* t's elements as little-endian bytes, built from the values' bits (host order aside). */
static void le_bytes(tg_tensor *t, unsigned char *out)
{
    size_t size = tg_tensor_dtype(t) == TG_F64 ? 8 : 4;
    for (int64_t k = 0; k < tg_tensor_numel(t); k++) {
        uint64_t bits;
        if (size == 8) {
            memcpy(&bits, (double *)tg_tensor_data(t) + k, 8);
        } else {
            uint32_t b32;
            memcpy(&b32, (float *)tg_tensor_data(t) + k, 4);
            bits = b32;
        }
        for (size_t b = 0; b < size; b++)
            out[(size_t)k * size + b] = (unsigned char)(bits >> (8 * b));
    }
}

START_TEST(file_is_safetensors)
{
    tg_params *ps = make_params("");
    fill(ps, 0.25);
    const char *path = tu_in_scratch("layout.safetensors");
    ck_assert_int_eq(tg_checkpoint_save(path, &ps, 1, NULL), TG_OK);
    size_t size;
    unsigned char *buf = read_all(path, &size);
    uint64_t n = 0;
    for (int b = 7; b >= 0; b--)
        n = n << 8 | buf[b];
    ck_assert_uint_eq(n % 8, 0);
    ck_assert_uint_le(8 + n, size);
    ck_assert_int_eq(buf[8], '{');

    json_error_t jerr;
    json_t *root = json_loadb((const char *)buf + 8, n, 0, &jerr);
    ck_assert_msg(root != NULL, "%s", jerr.text);
    ck_assert_uint_eq(json_object_size(root), N_LAYOUT + 1);
    ck_assert_str_eq(
        json_string_value(json_object_get(json_object_get(root, "__metadata__"), "format")), "pt");
    uint64_t expected_begin = 0;
    for (size_t i = 0; i < tg_params_count(ps); i++) {
        const char *name;
        tg_tensor *t = tg_params_at(ps, i, &name);
        json_t *info = json_object_get(root, name);
        ck_assert_ptr_nonnull(info);
        ck_assert_str_eq(json_string_value(json_object_get(info, "dtype")),
                         tg_tensor_dtype(t) == TG_F64 ? "F64" : "F32");
        json_t *shape = json_object_get(info, "shape");
        ck_assert_uint_eq(json_array_size(shape), (size_t)tg_tensor_rank(t));
        for (int d = 0; d < tg_tensor_rank(t); d++)
            ck_assert_int_eq(json_integer_value(json_array_get(shape, (size_t)d)),
                             tg_tensor_shape(t)[d]);
        json_t *offs = json_object_get(info, "data_offsets");
        uint64_t begin = (uint64_t)json_integer_value(json_array_get(offs, 0));
        uint64_t end = (uint64_t)json_integer_value(json_array_get(offs, 1));
        ck_assert_uint_eq(begin, expected_begin); /* packed in registry order */
        size_t bytes = (size_t)tg_tensor_numel(t) * (tg_tensor_dtype(t) == TG_F64 ? 8 : 4);
        ck_assert_uint_eq(end - begin, bytes);
        unsigned char *want = malloc(bytes + 1);
        le_bytes(t, want);
        ck_assert(memcmp(buf + 8 + n + begin, want, bytes) == 0);
        free(want);
        expected_begin = end;
    }
    ck_assert_uint_eq(size, 8 + n + expected_begin); /* nothing after the data */
    json_decref(root);
    free(buf);
    tg_params_free(ps);
}
END_TEST

/* ====== Files written by hand: a foreign but valid one, and a table of broken ones ====== */

/* Two parameters the hand-made files describe: w F32 [2,3] then b F64 [3], 48 bytes of data. */
static tg_params *wb_params(void)
{
    tg_params *ps = tg_params_new();
    tg_params_add(ps, "w", TG_F32, 2, (int64_t[]){2, 3});
    tg_params_add(ps, "b", TG_F64, 1, (int64_t[]){3});
    return ps;
}

static void wb_data(unsigned char *data)
{
    tg_tensor *w = tu_from(TG_F32, "2x3", (double[]){0.5, 1.5, 2.5, 3.5, 4.5, 5.5});
    tg_tensor *b = tu_from(TG_F64, "3", (double[]){-1.25, -2.25, -3.25});
    le_bytes(w, data);
    le_bytes(b, data + 24);
    tg_tensor_free(w);
    tg_tensor_free(b);
}

static json_t *wb_header(void)
{
    return json_pack("{s:{s:s,s:[i,i],s:[i,i]}, s:{s:s,s:[i],s:[i,i]}}", "w", "dtype", "F32",
                     "shape", 2, 3, "data_offsets", 0, 24, "b", "dtype", "F64", "shape", 3,
                     "data_offsets", 24, 48);
}

/* Writes length, header text (unpadded) and data; returns the file size. */
static size_t write_st(const char *path, const char *header, uint64_t declared,
                       const unsigned char *data, size_t data_len)
{
    size_t hlen = strlen(header), size = 8 + hlen + data_len;
    unsigned char *buf = malloc(size);
    for (int b = 0; b < 8; b++)
        buf[b] = (unsigned char)(declared >> (8 * b));
    memcpy(buf + 8, header, hlen);
    memcpy(buf + 8 + hlen, data, data_len);
    tu_write_file(path, buf, size);
    free(buf);
    return size;
}

START_TEST(foreign_file_loads)
{
    /* Metadata first, no padding, an extra I64 tensor after ours: still fine. */
    json_t *h = wb_header();
    json_object_set_new(
        h, "step",
        json_pack("{s:s,s:[],s:[i,i]}", "dtype", "I64", "shape", "data_offsets", 48, 56));
    json_t *all = json_pack("{s:{s:s}}", "__metadata__", "format", "pt");
    json_object_update(all, h);
    char *text = json_dumps(all, 0);
    unsigned char data[56] = {0};
    wb_data(data);
    const char *path = tu_in_scratch("foreign.safetensors");
    write_st(path, text, strlen(text), data, sizeof data);
    tg_params *ps = wb_params();
    tg_error err = {0};
    ck_assert_msg(tg_checkpoint_load(path, &ps, 1, &err) == TG_OK, "%s", err.msg);
    ck_assert(tu_at(tg_params_get(ps, "w"), 5) == 5.5);
    ck_assert(tu_at(tg_params_get(ps, "b"), 2) == -3.25);
    free(text);
    json_decref(all);
    json_decref(h);
    tg_params_free(ps);
}
END_TEST

static void drop_b(json_t *h) { json_object_del(h, "b"); }
static void b_dtype_f32(json_t *h)
{
    json_object_set_new(json_object_get(h, "b"), "dtype", json_string("F32"));
}
static void b_dtype_number(json_t *h)
{
    json_object_set_new(json_object_get(h, "b"), "dtype", json_integer(5));
}
static void w_shape_3x2(json_t *h)
{
    json_object_set_new(json_object_get(h, "w"), "shape", json_pack("[i,i]", 3, 2));
}
static void w_shape_6(json_t *h)
{
    json_object_set_new(json_object_get(h, "w"), "shape", json_pack("[i]", 6));
}
static void w_no_shape(json_t *h) { json_object_del(json_object_get(h, "w"), "shape"); }
static void set_offsets(json_t *h, const char *name, json_t *offs)
{
    json_object_set_new(json_object_get(h, name), "data_offsets", offs);
}
static void b_out_of_bounds(json_t *h) { set_offsets(h, "b", json_pack("[i,i]", 24, 56)); }
static void b_reversed(json_t *h) { set_offsets(h, "b", json_pack("[i,i]", 48, 24)); }
static void w_negative(json_t *h) { set_offsets(h, "w", json_pack("[i,i]", -8, 16)); }
static void w_strings(json_t *h) { set_offsets(h, "w", json_pack("[s,i]", "0", 24)); }
static void w_one_offset(json_t *h) { set_offsets(h, "w", json_pack("[i]", 24)); }
static void w_short(json_t *h) { set_offsets(h, "w", json_pack("[i,i]", 0, 20)); }
static void overlap(json_t *h) { set_offsets(h, "b", json_pack("[i,i]", 16, 40)); }
static void extra_overlaps(json_t *h)
{
    json_object_set_new(
        h, "x",
        json_pack("{s:s,s:[i],s:[i,i]}", "dtype", "I64", "shape", 1, "data_offsets", 8, 16));
}
static void extra_out_of_bounds(json_t *h)
{
    json_object_set_new(
        h, "x",
        json_pack("{s:s,s:[i],s:[i,i]}", "dtype", "I64", "shape", 1, "data_offsets", 48, 999));
}
static void entry_not_object(json_t *h) { json_object_set_new(h, "b", json_integer(3)); }

typedef struct bad_file {
    const char *name;
    void (*mutate)(json_t *h); /* applied to wb_header(), or NULL */
    const char *raw;           /* header text used instead, or NULL */
    int64_t declared_delta;    /* added to the true header length */
    size_t cut;                /* bytes cut from the end of the file */
    size_t keep;               /* if not 0, the file is cut to this many bytes */
    const char *msg;           /* expected in the message, which starts with the path */
} bad_file;

static const bad_file bad_files[] = {
    {"header length beyond file", .declared_delta = 1000, .msg = "offset 0: header length"},
    {"file of 5 bytes", .keep = 5, .msg = "offset 0: 5 bytes, too short"},
    {"bad JSON", .raw = "{\"w\": {\"dtype\": ", .msg = "bad JSON header"},
    {"header not an object", .raw = "[1, 2, 3]", .msg = "offset 8: header is not a JSON object"},
    {"duplicate key",
     .raw = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
            "\"b\":{\"dtype\":\"F64\",\"shape\":[3],\"data_offsets\":[24,48]},"
            "\"b\":{\"dtype\":\"F64\",\"shape\":[3],\"data_offsets\":[24,48]}}",
     .msg = "bad JSON header"},
    {"missing tensor", drop_b, .msg = "tensor 'b' missing"},
    {"wrong dtype", b_dtype_f32, .msg = "tensor 'b': dtype F32, expected F64"},
    {"dtype not a string", b_dtype_number, .msg = "tensor 'b': dtype (none), expected F64"},
    {"wrong shape", w_shape_3x2, .msg = "tensor 'w': shape [3,2] in the file, [2x3] in the registry"},
    {"wrong rank", w_shape_6, .msg = "tensor 'w': shape [6] in the file, [2x3] in the registry"},
    {"no shape", w_no_shape, .msg = "tensor 'w': shape (none)"},
    {"offsets out of bounds", b_out_of_bounds, .msg = "tensor 'b': bad data_offsets"},
    {"offsets reversed", b_reversed, .msg = "tensor 'b': bad data_offsets"},
    {"negative offset", w_negative, .msg = "tensor 'w': bad data_offsets"},
    {"offsets not integers", w_strings, .msg = "tensor 'w': bad data_offsets"},
    {"one offset", w_one_offset, .msg = "tensor 'w': bad data_offsets"},
    {"size mismatch", w_short, .msg = "tensor 'w': 20 data bytes, expected 24"},
    {"overlapping offsets", overlap, .msg = "tensors 'w' and 'b' overlap"},
    {"unknown tensor overlaps", extra_overlaps, .msg = "tensors 'w' and 'x' overlap"},
    {"unknown tensor out of bounds", extra_out_of_bounds, .msg = "tensor 'x': bad data_offsets"},
    {"entry not an object", entry_not_object, .msg = "tensor 'b': bad data_offsets"},
    {"truncated data", .cut = 10, .msg = "tensor 'b': bad data_offsets (data section is 38 bytes)"},
};
enum { N_BAD = sizeof bad_files / sizeof *bad_files };

START_TEST(corrupt_file_changes_nothing)
{
    const bad_file *c = &bad_files[_i];
    char *text;
    if (c->raw) {
        text = strdup(c->raw);
    } else {
        json_t *h = wb_header();
        if (c->mutate) c->mutate(h);
        text = json_dumps(h, JSON_COMPACT);
        json_decref(h);
    }
    unsigned char data[48];
    wb_data(data);
    const char *path = tu_in_scratch("bad.safetensors");
    size_t size =
        write_st(path, text, strlen(text) + (uint64_t)c->declared_delta, data, sizeof data);
    free(text);
    if (c->cut || c->keep)
        ck_assert_int_eq(truncate(path, (off_t)(c->keep ? c->keep : size - c->cut)), 0);

    tg_params *ps = wb_params();
    fill(ps, 9);
    size_t before_n, after_n;
    unsigned char *before = snapshot(ps, &before_n);
    tg_error err = {0};
    tg_status s = tg_checkpoint_load(path, &ps, 1, &err);
    ck_assert_msg(s == TG_ERR_FORMAT, "%s: status %d (%s)", c->name, s, err.msg);
    unsigned char *after = snapshot(ps, &after_n);
    ck_assert(before_n == after_n && memcmp(before, after, before_n) == 0);
    ck_assert_msg(strncmp(err.msg, path, strlen(path)) == 0 && strstr(err.msg, c->msg),
                  "%s: message '%s' lacks the path or '%s'", c->name, err.msg, c->msg);
    /* The thread's last error is the same error, and is there without 'err' too. */
    ck_assert_int_eq(tg_last_error()->status, TG_ERR_FORMAT);
    ck_assert_str_eq(tg_last_error()->msg, err.msg);
    tg_status again = tg_checkpoint_load(path, &ps, 1, NULL);
    ck_assert_int_eq(again, TG_ERR_FORMAT);
    ck_assert_str_eq(tg_last_error()->msg, err.msg);
    free(before);
    free(after);
    tg_params_free(ps);
}
END_TEST

/* ====== Interrupted saves ====== */

START_TEST(interrupted_save_keeps_the_old_file)
{
    tg_params *ps = make_params(""), *old = make_params(""), *back = make_params("");
    fill(old, 1);
    const char *path = tu_in_scratch("ckpt.safetensors");
    tg_error err = {0};
    ck_assert_int_eq(tg_checkpoint_save(path, &old, 1, &err), TG_OK);
    fill(ps, 2);
    int failed = 0;
    for (int step = 0;; step++) {
        tg__io_fail_after = step;
        tg_status s = tg_checkpoint_save(path, &ps, 1, &err);
        if (tg__io_fail_after >= 0) { /* the save had fewer steps: it ran to the end */
            tg__io_fail_after = -1;
            ck_assert_msg(s == TG_OK, "%s", err.msg);
            break;
        }
        failed++;
        ck_assert_msg(s == TG_ERR_IO, "step %d: status %d", step, s);
        ck_assert_msg(strstr(err.msg, path) && strstr(err.msg, strerror(EIO)), "%s", err.msg);
        ck_assert_int_eq(scratch_files(), 1); /* the temporary is gone */
        fill(back, 0);
        ck_assert_msg(tg_checkpoint_load(path, &back, 1, &err) == TG_OK, "step %d: %s", step,
                      err.msg);
        assert_same(back, old);
    }
    /* create, header, one write per tensor, flush, fsync, close, rename */
    ck_assert_int_eq(failed, 6 + N_LAYOUT);
    ck_assert_int_eq(tg_checkpoint_load(path, &back, 1, &err), TG_OK);
    assert_same(back, ps);
    tg_params_free(ps);
    tg_params_free(old);
    tg_params_free(back);
}
END_TEST

/* ====== Bad arguments and I/O errors ====== */

START_TEST(io_errors)
{
    tg_params *ps = make_params("");
    tg_error err = {0};
    const char *nodir = tu_in_scratch("no/such/folder/ckpt.safetensors");
    ck_assert_int_eq(tg_checkpoint_save(nodir, &ps, 1, &err), TG_ERR_IO);
    ck_assert_int_eq(err.status, TG_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err.msg, nodir));
    ck_assert_ptr_nonnull(strstr(err.msg, "No such file"));
    ck_assert_int_eq(tg_checkpoint_load(nodir, &ps, 1, &err), TG_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err.msg, "No such file"));
    ck_assert_int_eq(tg_checkpoint_save(nodir, &ps, 1, NULL), TG_ERR_IO);
    ck_assert_int_eq(tg_last_error()->status, TG_ERR_IO);
    ck_assert_ptr_nonnull(strstr(tg_last_error()->msg, nodir));
    ck_assert_int_eq(tg_checkpoint_load(tu_scratch(), &ps, 1, &err), TG_ERR_IO); /* a folder */
    ck_assert_int_eq(tg_checkpoint_save(tu_scratch(), &ps, 1, &err),
                     TG_ERR_IO); /* rename onto a folder */
    ck_assert_int_eq(scratch_files(), 0);
    tg_params_free(ps);
}
END_TEST

START_TEST(bad_arguments)
{
    tg_params *a = make_params(""), *b = make_params(""), *sets[2] = {a, b};
    tg_error err = {0};
    const char *path = tu_in_scratch("x.safetensors");
    ck_assert_int_eq(tg_checkpoint_save(path, sets, 2, &err), TG_ERR_ARG); /* names repeat */
    ck_assert_ptr_nonnull(strstr(err.msg, "'layer.0.weight' appears twice"));
    ck_assert_int_eq(tg_checkpoint_load(path, sets, 2, &err), TG_ERR_ARG);
    ck_assert_int_eq(scratch_files(), 0);
    ck_assert_int_eq(tg_checkpoint_save(NULL, &a, 1, &err), TG_ERR_ARG);
    ck_assert_int_eq(tg_checkpoint_save(path, &a, -1, &err), TG_ERR_ARG);
    ck_assert_int_eq(tg_checkpoint_save(path, NULL, 1, &err), TG_ERR_ARG);
    tg_params *with_null[2] = {a, NULL};
    ck_assert_int_eq(tg_checkpoint_save(path, with_null, 2, &err), TG_ERR_ARG);
    ck_assert_int_eq(tg_checkpoint_load(NULL, &a, 1, &err), TG_ERR_ARG);

    tg_params *reserved = tg_params_new(), *latin1 = tg_params_new();
    tg_params_add(reserved, "__metadata__", TG_F32, 1, (int64_t[]){1});
    ck_assert_int_eq(tg_checkpoint_save(path, &reserved, 1, &err), TG_ERR_ARG);
    tg_params_add(latin1, "caf\xe9", TG_F32, 1, (int64_t[]){1});
    ck_assert_int_eq(tg_checkpoint_save(path, &latin1, 1, &err), TG_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "not UTF-8"));
    ck_assert_int_eq(scratch_files(), 0);
    tg_params_free(reserved);
    tg_params_free(latin1);
    tg_params_free(a);
    tg_params_free(b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("checkpoint");
    TCase *tc = tcase_create("safetensors");
    tcase_add_checked_fixture(tc, scratch_make, scratch_remove);
    tcase_add_test(tc, round_trip);
    tcase_add_test(tc, several_registries);
    tcase_add_test(tc, file_is_safetensors);
    tcase_add_test(tc, foreign_file_loads);
    tcase_add_loop_test(tc, corrupt_file_changes_nothing, 0, N_BAD);
    tcase_add_test(tc, interrupted_save_keeps_the_old_file);
    tcase_add_test(tc, io_errors);
    tcase_add_test(tc, bad_arguments);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
