/* Leaf tensors: construction, accessors, shapes, names, ownership, versions and status texts. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ====== An identity op, so the tests can hold tape-owned tensors and gradients ====== */

static tg_status copy_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in, (void)ctx;
    memcpy(tg_tensor_data(out), tg_tensor_data(in[0]),
           (size_t)tg_tensor_numel(out) * (tg_tensor_dtype(out) == TG_F64 ? 8 : 4));
    return TG_OK;
}

static tg_status copy_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                          tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)in, (void)n_in, (void)ctx;
    if (!gin[0]) return TG_OK;
    if (tg_tensor_dtype(gout) != TG_F64) return TG_ERR_DTYPE;
    const double *gy = tg_tensor_data((tg_tensor *)gout);
    double *gx = tg_tensor_data(gin[0]);
    for (int64_t i = 0; i < tg_tensor_numel(gout); i++)
        gx[i] += gy[i]; /* dx += dy */
    return TG_OK;
}

static const tg_op_def copy_def = {.name = "copy", .forward = copy_forward, .vjp = copy_vjp};

static tg_tensor *record_copy(tg_tape *tp, tg_tensor *x)
{
    return tg_custom(tp, &copy_def, &x, 1, tg_tensor_rank(x), tg_tensor_shape(x), NULL);
}

static void assert_shape(const tg_tensor *t, int rank, const int64_t *shape)
{
    ck_assert_int_eq(tg_tensor_rank(t), rank);
    int64_t numel = 1;
    for (int i = 0; i < rank; i++) {
        ck_assert_int_eq(tg_tensor_shape(t)[i], shape[i]);
        numel *= shape[i];
    }
    ck_assert_int_eq(tg_tensor_numel(t), numel);
}

/* ====== Construction ====== */

static const struct {
    const char *shape;
    int64_t numel;
} good_shapes[] = {
    {"2x3", 6}, {"4", 4}, {"", 1}, {"1x1x1x1", 1}, {"0x3", 0}, {"2x3x4x5", 120}, {"3x0", 0},
};
enum { N_GOOD = sizeof good_shapes / sizeof *good_shapes };

START_TEST(new_is_zero_filled_leaf)
{
    /* Each shape once per dtype. */
    tg_dtype dt = tu_loop_dtype(_i % 2);
    int64_t shape[TG_MAX_RANK];
    int rank = tu_parse_shape(good_shapes[_i / 2].shape, shape);
    tg_tensor *t = tg_tensor_new(dt, rank, shape);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(tg_tensor_dtype(t), dt);
    assert_shape(t, rank, shape);
    ck_assert_int_eq(tg_tensor_numel(t), good_shapes[_i / 2].numel);
    ck_assert_ptr_nonnull(tg_tensor_data(t));
    const unsigned char *bytes = tg_tensor_data(t);
    size_t n = (size_t)tg_tensor_numel(t) * (dt == TG_F64 ? 8 : 4);
    for (size_t k = 0; k < n; k++)
        ck_assert_uint_eq(bytes[k], 0);
    ck_assert_ptr_null(tg_tensor_grad(t));
    ck_assert(!tg_tensor_requires_grad(t));
    ck_assert_str_eq(tg_tensor_name(t), "");
    tg_tensor_free(t);
}
END_TEST

START_TEST(from_copies_the_data)
{
    double src64[6] = {1.5, -2, 0.1, 1e-300, -0.0, 6};
    float src32[6] = {1.5f, -2, 0.1f, 1e-30f, -0.0f, 6};
    const int64_t shape[2] = {2, 3};
    tg_tensor *a = tg_tensor_from(TG_F64, 2, shape, src64);
    tg_tensor *b = tg_tensor_from(TG_F32, 2, shape, src32);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_ptr_ne(tg_tensor_data(a), src64);
    ck_assert_mem_eq(tg_tensor_data(a), src64, sizeof src64);
    ck_assert_mem_eq(tg_tensor_data(b), src32, sizeof src32);
    src64[0] = 99, src32[0] = 99; /* the tensors hold copies */
    ck_assert_double_eq(tu_at(a, 0), 1.5);
    ck_assert_double_eq(tu_at(b, 0), 1.5);
    assert_shape(a, 2, shape);
    tg_tensor_free(a);
    tg_tensor_free(b);

    /* NULL data is only fine when there is nothing to copy. */
    ck_assert_ptr_null(tg_tensor_from(TG_F64, 2, shape, NULL));
    ck_assert_ptr_null(tg_tensor_from(TG_F64, 0, NULL, NULL));
    tg_tensor *empty = tg_tensor_from(TG_F64, 2, (const int64_t[]){0, 3}, NULL);
    ck_assert_ptr_nonnull(empty);
    ck_assert_int_eq(tg_tensor_numel(empty), 0);
    tg_tensor_free(empty);
}
END_TEST

static const struct {
    const char *what;
    tg_dtype dt;
    int rank;
    int64_t shape[TG_MAX_RANK + 1];
    bool null_shape;
} bad_shapes[] = {
    {"negative rank", TG_F64, -1, {2}, false},
    {"rank above TG_MAX_RANK", TG_F64, TG_MAX_RANK + 1, {1, 1, 1, 1, 1}, false},
    {"negative dimension", TG_F64, 2, {3, -1}, false},
    {"negative dimension after a zero", TG_F32, 2, {0, -4}, false},
    {"NULL shape with rank 2", TG_F64, 2, {0}, true},
    {"element count overflows int64", TG_F64, 3, {INT64_C(1) << 31, INT64_C(1) << 31, 4}, false},
    {"INT64_MAX elements", TG_F32, 1, {INT64_MAX}, false},
    {"byte size overflows int64", TG_F32, 1, {INT64_C(1) << 61}, false},
    {"byte size overflows at the last dimension",
     TG_F64,
     4,
     {1024, 1024, 1024, INT64_C(1) << 31},
     false},
    {"unknown dtype", (tg_dtype)7, 1, {3}, false},
};
enum { N_BAD = sizeof bad_shapes / sizeof *bad_shapes };

START_TEST(bad_shapes_give_null)
{
    const int64_t *shape = bad_shapes[_i].null_shape ? NULL : bad_shapes[_i].shape;
    static const double data[8];
    ck_assert_msg(!tg_tensor_new(bad_shapes[_i].dt, bad_shapes[_i].rank, shape), "new: %s",
                  bad_shapes[_i].what);
    ck_assert_msg(!tg_tensor_from(bad_shapes[_i].dt, bad_shapes[_i].rank, shape, data), "from: %s",
                  bad_shapes[_i].what);
}
END_TEST

START_TEST(rank0_and_item)
{
    tg_tensor *s = tg_tensor_from(TG_F64, 0, NULL, (const double[]){-2.75});
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(tg_tensor_rank(s), 0);
    ck_assert_int_eq(tg_tensor_numel(s), 1);
    ck_assert_ptr_nonnull(tg_tensor_shape(s));
    ck_assert_double_eq(tg_tensor_item(s), -2.75);

    tg_tensor *f = tg_tensor_from(TG_F32, 0, NULL, (const float[]){0.1f});
    ck_assert_double_eq(tg_tensor_item(f), (double)0.1f); /* widened exactly, not re-rounded */

    tg_tensor *one = tg_tensor_from(TG_F64, 3, (const int64_t[]){1, 1, 1}, (const double[]){7});
    ck_assert_double_eq(tg_tensor_item(one), 7);

    tg_tensor *two = tg_tensor_new(TG_F64, 1, (const int64_t[]){2});
    tg_tensor *none = tg_tensor_new(TG_F64, 1, (const int64_t[]){0});
    ck_assert(isnan(tg_tensor_item(two)));
    ck_assert(isnan(tg_tensor_item(none)));
    ck_assert(isnan(tg_tensor_item(NULL)));
    tg_tensor_free(s);
    tg_tensor_free(f);
    tg_tensor_free(one);
    tg_tensor_free(two);
    tg_tensor_free(none);
}
END_TEST

START_TEST(accessors_accept_null)
{
    ck_assert_int_eq(tg_tensor_dtype(NULL), TG_F32);
    ck_assert_int_eq(tg_tensor_rank(NULL), 0);
    ck_assert_ptr_null(tg_tensor_shape(NULL));
    ck_assert_int_eq(tg_tensor_numel(NULL), 0);
    ck_assert_ptr_null(tg_tensor_data(NULL));
    ck_assert_ptr_null(tg_tensor_grad(NULL));
    ck_assert(!tg_tensor_requires_grad(NULL));
    ck_assert_str_eq(tg_tensor_name(NULL), "");
    tg_tensor_set_requires_grad(NULL, true);
    tg_tensor_zero_grad(NULL);
    tg_tensor_set_name(NULL, "x");
    tg_tensor_free(NULL);
    ck_assert_int_eq(tg_tensor_reshape(NULL, 1, (const int64_t[]){1}), TG_ERR_ARG);
}
END_TEST

START_TEST(requires_grad_flag)
{
    tg_tensor *t = tg_tensor_new(TG_F32, 1, (const int64_t[]){3});
    tg_tensor_set_requires_grad(t, true);
    ck_assert(tg_tensor_requires_grad(t));
    tg_tensor_set_requires_grad(t, false);
    ck_assert(!tg_tensor_requires_grad(t));
    tg_tensor_zero_grad(t); /* no gradient yet: nothing to do */
    ck_assert_ptr_null(tg_tensor_grad(t));
    tg_tensor_free(t);
}
END_TEST

/* ====== Reshape ====== */

START_TEST(reshape_rules)
{
    const double v[6] = {1, 2, 3, 4, 5, 6};
    tg_tensor *t = tg_tensor_from(TG_F64, 2, (const int64_t[]){2, 3}, v);
    void *data = tg_tensor_data(t);

    const int64_t to_3x2[] = {3, 2}, to_1x6x1x1[] = {1, 6, 1, 1}, to_6[] = {6};
    ck_assert_int_eq(tg_tensor_reshape(t, 2, to_3x2), TG_OK);
    assert_shape(t, 2, to_3x2);
    ck_assert_int_eq(tg_tensor_reshape(t, 4, to_1x6x1x1), TG_OK);
    assert_shape(t, 4, to_1x6x1x1);
    ck_assert_int_eq(tg_tensor_reshape(t, 1, to_6), TG_OK);
    assert_shape(t, 1, to_6);
    ck_assert_ptr_eq(tg_tensor_data(t), data); /* no data moves */
    ck_assert_mem_eq(tg_tensor_data(t), v, sizeof v);

    /* Another element count is a shape error; a malformed shape an argument error. */
    ck_assert_int_eq(tg_tensor_reshape(t, 1, (const int64_t[]){4}), TG_ERR_SHAPE);
    ck_assert_int_eq(tg_tensor_reshape(t, 0, NULL), TG_ERR_SHAPE);
    ck_assert_int_eq(tg_tensor_reshape(t, 2, (const int64_t[]){-2, -3}), TG_ERR_ARG);
    ck_assert_int_eq(tg_tensor_reshape(t, TG_MAX_RANK + 1, (const int64_t[]){1, 1, 1, 1, 6}),
                     TG_ERR_ARG);
    ck_assert_int_eq(tg_tensor_reshape(t, -1, to_6), TG_ERR_ARG);
    ck_assert_int_eq(tg_tensor_reshape(t, 2, NULL), TG_ERR_ARG);
    assert_shape(t, 1, to_6); /* failures leave the shape alone */
    tg_tensor_free(t);

    /* One element reshapes to rank 0 and back. */
    tg_tensor *s = tg_tensor_from(TG_F32, 2, (const int64_t[]){1, 1}, (const float[]){3});
    ck_assert_int_eq(tg_tensor_reshape(s, 0, NULL), TG_OK);
    ck_assert_int_eq(tg_tensor_rank(s), 0);
    ck_assert_double_eq(tg_tensor_item(s), 3);
    ck_assert_int_eq(tg_tensor_reshape(s, 1, (const int64_t[]){1}), TG_OK);
    tg_tensor_free(s);
}
END_TEST

START_TEST(reshape_moves_the_gradient_and_refuses_tape_tensors)
{
    tg_tape *tp = tg_tape_new();
    tg_tensor *x = tg_tensor_from(TG_F64, 2, (const int64_t[]){2, 2}, (const double[]){1, 2, 3, 4});
    tg_tensor_set_requires_grad(x, true);
    tg_tensor *y = record_copy(tp, x);
    ck_assert_ptr_nonnull(y);
    tg_tensor *seed =
        tg_tensor_from(TG_F64, 2, (const int64_t[]){2, 2}, (const double[]){1, 1, 1, 1});
    ck_assert_int_eq(tg_backward_seed(tp, y, seed), TG_OK);

    ck_assert_int_eq(tg_tensor_reshape(y, 1, (const int64_t[]){4}), TG_ERR_ARG);
    ck_assert_int_eq(tg_tensor_reshape(tg_tensor_grad(x), 1, (const int64_t[]){4}), TG_ERR_ARG);
    ck_assert_int_eq(tg_tape_status(tp), TG_OK); /* reshape is not a tape error */

    const int64_t flat[] = {4};
    ck_assert_int_eq(tg_tensor_reshape(x, 1, flat), TG_OK);
    assert_shape(tg_tensor_grad(x), 1, flat);
    tg_tape_free(tp);
    tg_tensor_free(seed);
    tg_tensor_free(x);
}
END_TEST

/* ====== Names ====== */

START_TEST(names)
{
    tg_tensor *t = tg_tensor_new(TG_F64, 1, (const int64_t[]){2});
    tg_tensor_set_name(t, "W2");
    ck_assert_str_eq(tg_tensor_name(t), "W2");

    char buf[64];
    snprintf(buf, sizeof buf, "b3");
    tg_tensor_set_name(t, buf);
    buf[0] = 'x'; /* the name is a copy */
    ck_assert_str_eq(tg_tensor_name(t), "b3");

    char long_name[101];
    memset(long_name, 'n', 100);
    long_name[100] = '\0';
    tg_tensor_set_name(t, long_name);
    ck_assert_uint_eq(strlen(tg_tensor_name(t)), 63);
    ck_assert(strncmp(tg_tensor_name(t), long_name, 63) == 0);

    tg_tensor_set_name(t, NULL);
    ck_assert_str_eq(tg_tensor_name(t), "");
    tg_tensor_free(t);
}
END_TEST

/* ====== Ownership: freeing what the tape owns is a harmless no-op ====== */

START_TEST(free_of_tape_tensor_or_gradient_is_a_no_op)
{
    tg_tape *tp = tg_tape_new();
    tg_tensor *x = tg_tensor_from(TG_F64, 1, (const int64_t[]){3}, (const double[]){1, 2, 3});
    tg_tensor_set_requires_grad(x, true);
    tg_tensor *y = record_copy(tp, x);
    tg_tensor *seed = tg_tensor_from(TG_F64, 1, (const int64_t[]){3}, (const double[]){4, 5, 6});
    ck_assert_int_eq(tg_backward_seed(tp, y, seed), TG_OK);
    tg_tensor *gx = tg_tensor_grad(x), *gy = tg_tensor_grad(y);
    ck_assert_ptr_nonnull(gx);
    ck_assert_ptr_nonnull(gy);

    /* Under ASan or valgrind a real free of any of these would be reported. */
    tg_tensor_free(y);
    tg_tensor_free(gy);
    tg_tensor_free(gx);
    ck_assert_ptr_eq(tg_tensor_grad(x), gx);
    ck_assert_double_eq(tu_at(y, 2), 3);
    ck_assert_double_eq(tu_at(gy, 2), 6);
    ck_assert_double_eq(tu_at(gx, 2), 6);

    /* A gradient never requires grad of its own. */
    tg_tensor_set_requires_grad(gx, true);
    ck_assert(!tg_tensor_requires_grad(gx));

    tg_tensor_zero_grad(x);
    for (int k = 0; k < 3; k++)
        ck_assert_double_eq(tu_at(gx, k), 0);
    tg_tape_free(tp);
    tg_tensor_free(seed);
    tg_tensor_free(x); /* frees x's gradient too: valgrind sees no leak */
}
END_TEST

/* ====== Version and status texts ====== */

START_TEST(version)
{
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", TG_VERSION_MAJOR, TG_VERSION_MINOR, TG_VERSION_PATCH);
    ck_assert_str_eq(tg_version_string(), want);
    ck_assert_str_eq(tg_version_string(), TG_MESON_VERSION); /* header and meson.build agree */
    ck_assert_int_eq(tg_version_number(), TG_VERSION_NUMBER);
    ck_assert_int_eq(TG_VERSION_NUMBER,
                     TG_VERSION_MAJOR * 10000 + TG_VERSION_MINOR * 100 + TG_VERSION_PATCH);
}
END_TEST

static const struct {
    tg_status s;
    const char *text;
} statuses[] = {
    {TG_OK, "success"},
    {TG_ERR_ARG, "invalid argument"},
    {TG_ERR_SHAPE, "shape mismatch"},
    {TG_ERR_DTYPE, "dtype mismatch"},
    {TG_ERR_NOMEM, "out of memory"},
    {TG_ERR_STATE, "call out of order"},
    {TG_ERR_IO, "I/O error"},
    {TG_ERR_FORMAT, "malformed or truncated file"},
    {TG_ERR_NUMERIC, "NaN or infinity produced"},
    {(tg_status)(TG_ERR_NUMERIC + 1), "unknown status"},
    {(tg_status)1000, "unknown status"},
    {(tg_status)-1, "unknown status"},
};
enum { N_STATUSES = sizeof statuses / sizeof *statuses };

START_TEST(status_str)
{
    const char *text = tg_status_str(statuses[_i].s);
    ck_assert_ptr_nonnull(text);
    ck_assert_str_eq(text, statuses[_i].text);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("tensor");
    TCase *tc = tcase_create("leaf");
    tcase_add_loop_test(tc, new_is_zero_filled_leaf, 0, 2 * N_GOOD);
    tcase_add_test(tc, from_copies_the_data);
    tcase_add_loop_test(tc, bad_shapes_give_null, 0, N_BAD);
    tcase_add_test(tc, rank0_and_item);
    tcase_add_test(tc, accessors_accept_null);
    tcase_add_test(tc, requires_grad_flag);
    tcase_add_test(tc, reshape_rules);
    tcase_add_test(tc, reshape_moves_the_gradient_and_refuses_tape_tensors);
    tcase_add_test(tc, names);
    tcase_add_test(tc, free_of_tape_tensor_or_gradient_is_a_no_op);
    suite_add_tcase(s, tc);

    TCase *tv = tcase_create("texts");
    tcase_add_test(tv, version);
    tcase_add_loop_test(tv, status_str, 0, N_STATUSES);
    suite_add_tcase(s, tv);
    return tu_run(s);
}
