/* The dtype table and TG_I64: index tensors as leaves, in files, and as the
 * inputs and outputs tg_op_def marks; the float dispatch refusing anything else. */
#include "testutil.h"

#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ====== The table ====== */

START_TEST(table_describes_every_dtype)
{
    ck_assert_str_eq(tg__dt(TG_F32)->name, "f32");
    ck_assert_str_eq(tg__dt(TG_F64)->tag, "F64");
    ck_assert_str_eq(tg__dt(TG_I64)->tag, "I64");
    ck_assert_uint_eq(tg__dtype_size(TG_F32), 4);
    ck_assert_uint_eq(tg__dtype_size(TG_I64), 8);
    ck_assert(tg__dt(TG_F64)->is_float && !tg__dt(TG_I64)->is_float);
    ck_assert(tg__dtype_valid(TG_I64) && !tg__dtype_valid((tg_dtype)3) &&
              !tg__dtype_valid((tg_dtype)-1));
    ck_assert_ptr_null(tg_tensor_new((tg_dtype)3, 1, (int64_t[]){2}));
}
END_TEST

/* ====== I64 leaves ====== */

START_TEST(i64_leaves_hold_indices_and_never_require_grad)
{
    const int64_t v[] = {3, -2, INT64_MAX, 0};
    tg_tensor *t = tg_tensor_from(TG_I64, 2, (int64_t[]){2, 2}, v);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(tg_tensor_dtype(t), TG_I64);
    ck_assert_mem_eq(tg_tensor_cdata(t), v, sizeof v);
    ck_assert_ptr_eq(tg_tensor_cdata(t), tg_tensor_data(t));
    ck_assert_ptr_null(tg_tensor_cdata(NULL));
    tg_tensor_set_requires_grad(t, true);
    ck_assert(!tg_tensor_requires_grad(t));
    tg_tensor *s = tg_tensor_from(TG_I64, 0, NULL, (int64_t[]){-7});
    ck_assert(tg_tensor_item(s) == -7.0);
    ck_assert(isnan(tg_tensor_item(t)));
    /* tg__put truncates toward zero and stores 0 for what int64 cannot hold. */
    ck_assert(tg__put(s, 0, 2.9) == 2.0 && tg__put(s, 0, -2.9) == -2.0);
    ck_assert(tg__put(s, 0, 1e300) == 0.0 && tg__put(s, 0, NAN) == 0.0);
    tg_rng r;
    tg_rng_seed(&r, 1);
    ck_assert_int_eq(tg_init_tensor(t, TG_INIT_HE_UNIFORM, 2, 2, &r), TG_ERR_DTYPE);
    ck_assert_mem_eq(tg_tensor_cdata(t), v, sizeof v); /* untouched */
    tg_tensor_free(t);
    tg_tensor_free(s);
}
END_TEST

START_TEST(i64_round_trips_through_a_checkpoint)
{
    tu_scratch_make("tg_dtype");
    const char *path = tu_in_scratch("i64.safetensors");
    tg_params *ps = tg_params_new();
    tg_tensor *steps = tg_params_add(ps, "steps", TG_I64, 1, (int64_t[]){3});
    tg_tensor *w = tg_params_add(ps, "w", TG_F32, 1, (int64_t[]){2});
    ck_assert(steps && w && !tg_tensor_requires_grad(steps) && tg_tensor_requires_grad(w));
    int64_t *sv = tg_tensor_data(steps);
    sv[0] = -1, sv[1] = INT64_MAX, sv[2] = 42;
    tg_error err = {0};
    ck_assert_int_eq(tg_checkpoint_save(path, &ps, 1, &err), TG_OK);
    memset(sv, 0, 3 * sizeof *sv);
    ck_assert_int_eq(tg_checkpoint_load(path, &ps, 1, &err), TG_OK);
    ck_assert(sv[0] == -1 && sv[1] == INT64_MAX && sv[2] == 42);
    /* A registry expecting F64 where the file has I64 is refused, naming both. */
    tg_params *other = tg_params_new();
    ck_assert_ptr_nonnull(tg_params_add(other, "steps", TG_F64, 1, (int64_t[]){3}));
    ck_assert_int_eq(tg_checkpoint_load(path, &other, 1, &err), TG_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "dtype I64, expected F64"));
    tg_params_free(other);
    tg_params_free(ps);
    tu_scratch_remove();
}
END_TEST

/* An IDX file of unsigned bytes: magic 0x00000801, one dimension. */
static void write_idx_u8(const char *path, const unsigned char *v, unsigned char n)
{
    unsigned char buf[64] = {0, 0, 0x08, 1, 0, 0, 0, n};
    memcpy(buf + 8, v, n);
    tu_write_file(path, buf, 8u + n);
}

START_TEST(idx_loads_labels_as_i64_and_refuses_fractions)
{
    tu_scratch_make("tg_dtype");
    const char *path = tu_in_scratch("labels.idx");
    write_idx_u8(path, (const unsigned char[]){0, 9, 255, 4}, 4);
    tg_tensor *t = NULL;
    tg_error err = {0};
    ck_assert_int_eq(tg_idx_load(path, TG_I64, 1.0, &t, &err), TG_OK);
    ck_assert_int_eq(tg_tensor_dtype(t), TG_I64);
    const int64_t *v = tg_tensor_cdata(t);
    ck_assert(v[0] == 0 && v[1] == 9 && v[2] == 255 && v[3] == 4);
    tg_tensor_free(t);
    t = NULL;
    ck_assert_int_eq(tg_idx_load(path, TG_I64, 0.5, &t, &err), TG_ERR_FORMAT);
    ck_assert_ptr_null(t);
    ck_assert_ptr_nonnull(strstr(err.msg, "element 1 is 4.5, not a whole number that fits i64"));
    tu_scratch_remove();
}
END_TEST

/* ====== tg_custom with index inputs and outputs ====== */

/* gather: y[k] = x[idx[k]], index input 1; dx[idx[k]] += dy[k]. */
static tg_status gather_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in, (void)ctx;
    const int64_t *idx = tg_tensor_cdata(in[1]);
    for (int64_t k = 0; k < tg_tensor_numel(out); k++)
        tu_put(out, k, tu_at(in[0], idx[k]));
    return TG_OK;
}

static tg_status gather_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                            tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)n_in, (void)ctx;
    ck_assert_ptr_null(gin[1]); /* an index never gets a gradient */
    const int64_t *idx = tg_tensor_cdata(in[1]);
    if (gin[0])
        for (int64_t k = 0; k < tg_tensor_numel(gout); k++)
            tu_put(gin[0], idx[k], tu_at(gin[0], idx[k]) + tu_at(gout, k));
    return TG_OK;
}

static const tg_op_def gather_def = {
    .name = "gather", .forward = gather_forward, .vjp = gather_vjp, .index_inputs = 1u << 1};

/* count_positive: I64 result, one element. */
static tg_status count_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in, (void)ctx;
    int64_t n = 0;
    for (int64_t k = 0; k < tg_tensor_numel(in[0]); k++)
        n += tu_at(in[0], k) > 0;
    *(int64_t *)tg_tensor_data(out) = n;
    return TG_OK;
}

static const tg_op_def count_def = {
    .name = "count_positive", .forward = count_forward, .vjp = gather_vjp, .index_output = true};

START_TEST(custom_ops_take_and_give_indices_where_marked)
{
    tg_tape *tp = tg_tape_new();
    tg_tensor *x = tu_lit(TG_F32, "4", (const double[]){10, -20, 30, 40});
    tg_tensor *idx = tg_tensor_from(TG_I64, 1, (int64_t[]){3}, (int64_t[]){3, 0, 3});
    tg_tensor_set_requires_grad(x, true);
    tg_tensor *y = tg_custom(tp, &gather_def, (tg_tensor *[]){x, idx}, 2, 1, (int64_t[]){3}, NULL);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(tg_tensor_dtype(y), TG_F32);
    tu_expect_exact(y, "3", (const double[]){40, 10, 40}, "gather");
    ck_assert_int_eq(tg_backward(tp, tg_sum(tp, y)), TG_OK);
    tu_expect_exact(tg_tensor_grad(x), "4", (const double[]){1, 0, 0, 2}, "dx");

    tg_tensor *n = tg_custom(tp, &count_def, &x, 1, 0, NULL, NULL);
    ck_assert_ptr_nonnull(n);
    ck_assert_int_eq(tg_tensor_dtype(n), TG_I64);
    ck_assert(!tg_tensor_requires_grad(n)); /* even with x requiring grad and a vjp */
    ck_assert(tg_tensor_item(n) == 3.0);
    /* An I64 result feeds an op that takes it as an index. */
    tg_tensor *z = tg_custom(tp, &gather_def, (tg_tensor *[]){x, n}, 2, 1, (int64_t[]){1}, NULL);
    ck_assert_msg(z != NULL, "%s", tg_tape_error(tp));
    ck_assert(tu_at(z, 0) == 40);
    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_tensor_free(idx);
}
END_TEST

typedef struct dtype_case {
    const tg_op_def *def;
    tg_dtype a, b;
    const char *msg;
} dtype_case;

static const tg_op_def plain_def = {.name = "plain", .forward = gather_forward};
static const tg_op_def all_index_def = {
    .name = "indices_only", .forward = gather_forward, .index_inputs = 3u};

static const dtype_case dtype_cases[] = {
    {&gather_def, TG_F32, TG_F32, "gather: input 1 [3] must be i64 indices, is f32"},
    {&gather_def, TG_I64, TG_I64, "gather: input 0 [3] is i64; this op takes f32 or f64 there"},
    {&plain_def, TG_F64, TG_I64, "plain: input 1 [3] is i64; this op takes f32 or f64 there"},
    {&plain_def, TG_F64, TG_F32, "plain: inputs differ in dtype: f64 [3] and f32 [3]"},
    {&all_index_def, TG_I64, TG_I64,
     "indices_only: every input is an index, so the output has no float dtype"},
};

START_TEST(custom_ops_refuse_dtypes_they_do_not_take)
{
    const dtype_case *c = &dtype_cases[_i];
    tg_tape *tp = tg_tape_new();
    tg_tensor *a = tg_tensor_new(c->a, 1, (int64_t[]){3});
    tg_tensor *b = tg_tensor_new(c->b, 1, (int64_t[]){3});
    ck_assert_ptr_null(tg_custom(tp, c->def, (tg_tensor *[]){a, b}, 2, 1, (int64_t[]){3}, NULL));
    tu_expect_failed(tp, TG_ERR_DTYPE, c->msg, _i);
    tg_tape_free(tp);
    tg_tensor_free(a);
    tg_tensor_free(b);
}
END_TEST

START_TEST(builtin_ops_refuse_i64)
{
    tg_tape *tp = tg_tape_new();
    tg_tensor *i = tg_tensor_new(TG_I64, 2, (int64_t[]){2, 2});
    ck_assert_ptr_null(tg_tanh(tp, i));
    tu_expect_failed(tp, TG_ERR_DTYPE, "tanh: input 0 [2x2] is i64; this op takes f32 or f64 there",
                     0);
    tg_tape_free(tp);
    tg_tensor_free(i);
}
END_TEST

/* ====== The float dispatch fails loudly ====== */

#define NEGATE(T)                                        \
    do {                                                 \
        T *v = tg_tensor_data(t);                        \
        for (int64_t k = 0; k < tg_tensor_numel(t); k++) \
            v[k] = -v[k];                                \
    } while (0)

static tg_status negate_in_place(tg_tensor *t)
{
    TG__FLOAT_SWITCH(tg_tensor_dtype(t), NEGATE, TG_ERR_DTYPE);
    return TG_OK;
}

START_TEST(float_switch_refuses_other_dtypes)
{
    tg_tensor *f = tu_lit(TG_F64, "2", (const double[]){1, -2});
    tg_tensor *i = tg_tensor_from(TG_I64, 1, (int64_t[]){2}, (int64_t[]){1, -2});
    ck_assert_int_eq(negate_in_place(f), TG_OK);
    tu_expect_exact(f, "2", (const double[]){-1, 2}, "negated");
    ck_assert_int_eq(negate_in_place(i), TG_ERR_DTYPE);
    ck_assert(((const int64_t *)tg_tensor_cdata(i))[0] == 1); /* untouched */
    tg_tensor_free(f);
    tg_tensor_free(i);
}
END_TEST

static Suite *dtype_suite(void)
{
    Suite *s = suite_create("dtype");
    TCase *tc = tcase_create("dtype");
    tcase_add_test(tc, table_describes_every_dtype);
    tcase_add_test(tc, i64_leaves_hold_indices_and_never_require_grad);
    tcase_add_test(tc, i64_round_trips_through_a_checkpoint);
    tcase_add_test(tc, idx_loads_labels_as_i64_and_refuses_fractions);
    tcase_add_test(tc, custom_ops_take_and_give_indices_where_marked);
    tcase_add_loop_test(tc, custom_ops_refuse_dtypes_they_do_not_take, 0,
                        sizeof dtype_cases / sizeof *dtype_cases);
    tcase_add_test(tc, builtin_ops_refuse_i64);
    tcase_add_test(tc, float_switch_refuses_other_dtypes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run(dtype_suite()); }
