/* Parameter registries, the seeded RNG and weight initialisation. */
#include "testutil.h"

#include "internal.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Gives a leaf a gradient filled with 'v', as a backward sweep would. */
static void give_grad(tg_tensor *t, double v)
{
    tg_tape *tp = tg_tape_new();
    ck_assert_ptr_nonnull(tp);
    tg_tensor *g = tg__grad_get(tp, t);
    ck_assert_ptr_nonnull(g);
    for (int64_t k = 0; k < g->numel; k++)
        tu_put(g, k, v);
    tg_tape_free(tp);
}

/* ====== Registry ====== */

START_TEST(add_and_get)
{
    tg_params *ps = tg_params_new();
    ck_assert_ptr_nonnull(ps);
    tg_tensor *w = tg_params_add(ps, "layer.0.weight", TG_F64, 2, (int64_t[]){2, 3});
    tg_tensor *b = tg_params_add(ps, "layer.0.bias", TG_F32, 1, (int64_t[]){3});
    tg_tensor *s = tg_params_add(ps, "scale", TG_F64, 0, NULL);
    ck_assert_ptr_nonnull(w);
    ck_assert_ptr_nonnull(b);
    ck_assert_ptr_nonnull(s);
    ck_assert_ptr_eq(tg_params_get(ps, "layer.0.weight"), w);
    ck_assert_ptr_eq(tg_params_get(ps, "layer.0.bias"), b);
    ck_assert_ptr_eq(tg_params_get(ps, "scale"), s);
    ck_assert_ptr_null(tg_params_get(ps, "layer.0"));
    ck_assert_ptr_null(tg_params_get(ps, ""));
    ck_assert_ptr_null(tg_params_get(ps, NULL));

    ck_assert_int_eq(tg_tensor_dtype(w), TG_F64);
    ck_assert_int_eq(tg_tensor_dtype(b), TG_F32);
    ck_assert_int_eq(tg_tensor_rank(w), 2);
    ck_assert_int_eq(tg_tensor_shape(w)[0], 2);
    ck_assert_int_eq(tg_tensor_shape(w)[1], 3);
    ck_assert_int_eq(tg_tensor_rank(s), 0);
    ck_assert_int_eq(tg_tensor_numel(s), 1);
    ck_assert(tg_tensor_requires_grad(w) && tg_tensor_requires_grad(b) &&
              tg_tensor_requires_grad(s));
    ck_assert_str_eq(tg_tensor_name(w), "layer.0.weight");
    ck_assert_ptr_null(tg_tensor_grad(w));
    for (int64_t k = 0; k < 6; k++)
        ck_assert(tu_at(w, k) == 0.0);

    ck_assert_uint_eq(tg_params_count(ps), 3);
    ck_assert_int_eq(tg_params_numel(ps), 6 + 3 + 1);
    /* tg_tensor_free on a registry's parameter would be a double free later;
     * the registry frees them, gradients included. */
    give_grad(w, 1.0);
    tg_params_free(ps);
}
END_TEST

static const struct {
    const char *what;
    const char *name;
    tg_dtype dt;
    int rank;
    int64_t shape[TG_MAX_RANK + 1];
    tg_status want;
    const char *msg;
} bad_adds[] = {
    {"duplicate name", "w", TG_F64, 1, {2}, TG_ERR_ARG, "params_add: 'w' is already registered"},
    {"empty name", "", TG_F64, 1, {2}, TG_ERR_ARG, "params_add: NULL or empty name"},
    {"NULL name", NULL, TG_F64, 1, {2}, TG_ERR_ARG, "params_add: NULL or empty name"},
    {"rank 5", "r5", TG_F64, 5, {1, 1, 1, 1, 1}, TG_ERR_ARG, "params_add: rank 5 outside 0..4"},
    {"negative rank", "rneg", TG_F64, -1, {1}, TG_ERR_ARG, "params_add: rank -1 outside 0..4"},
    {"negative dimension",
     "neg",
     TG_F32,
     2,
     {2, -1},
     TG_ERR_ARG,
     "params_add: negative dimension in [2x-1]"},
    {"impossible size",
     "huge",
     TG_F64,
     2,
     {INT64_MAX / 4, 4},
     TG_ERR_ARG,
     "params_add: [2305843009213693951x4] f64 is too large to allocate"},
    {"bad dtype", "dt", (tg_dtype)7, 1, {2}, TG_ERR_DTYPE, "params_add: unknown dtype 7"},
};

START_TEST(bad_add_is_null)
{
    tg_params *ps = tg_params_new();
    tg_tensor *w = tg_params_add(ps, "w", TG_F64, 1, (int64_t[]){2});
    ck_assert_ptr_nonnull(w);
    ck_assert_msg(!tg_params_add(ps, bad_adds[_i].name, bad_adds[_i].dt, bad_adds[_i].rank,
                                 bad_adds[_i].shape),
                  "%s accepted", bad_adds[_i].what);
    ck_assert_int_eq(tg_last_error()->status, bad_adds[_i].want);
    ck_assert_str_eq(tg_last_error()->msg, bad_adds[_i].msg);
    ck_assert_uint_eq(tg_params_count(ps), 1);
    ck_assert_ptr_eq(tg_params_get(ps, "w"), w);
    ck_assert_ptr_null(tg_params_add(NULL, "x", TG_F64, 1, (int64_t[]){2}));
    tg_params_free(ps);
}
END_TEST

START_TEST(insertion_order_is_stable)
{
    enum { N = 1000 };
    tg_params *ps = tg_params_new();
    tg_tensor *added[N];
    char name[32];
    /* Scrambled names, so hash order and insertion order surely differ. */
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "p%d", (i * 7919) % N);
        added[i] = tg_params_add(ps, name, TG_F32, 1, (int64_t[]){i % 5 + 1});
        ck_assert_ptr_nonnull(added[i]);
    }
    ck_assert_uint_eq(tg_params_count(ps), N);
    int64_t numel = 0;
    for (int i = 0; i < N; i++) {
        const char *got;
        snprintf(name, sizeof name, "p%d", (i * 7919) % N);
        ck_assert_ptr_eq(tg_params_at(ps, (size_t)i, &got), added[i]);
        ck_assert_str_eq(got, name);
        ck_assert_ptr_eq(tg_params_at(ps, (size_t)i, NULL), added[i]);
        ck_assert_ptr_eq(tg_params_get(ps, name), added[i]);
        numel += i % 5 + 1;
    }
    ck_assert_int_eq(tg_params_numel(ps), numel);
    const char *got = "unchanged";
    ck_assert_ptr_null(tg_params_at(ps, N, &got));
    ck_assert_ptr_null(got);
    tg_params_free(ps);
}
END_TEST

START_TEST(zero_grad_clears_every_gradient)
{
    tg_params *ps = tg_params_new();
    tg_tensor *a = tg_params_add(ps, "a", TG_F64, 2, (int64_t[]){3, 2});
    tg_tensor *b = tg_params_add(ps, "b", TG_F32, 1, (int64_t[]){4});
    tg_tensor *c = tg_params_add(ps, "c", TG_F64, 1, (int64_t[]){2});
    give_grad(a, 2.5);
    give_grad(b, -1.5);
    ck_assert(tu_at(tg_tensor_grad(a), 5) == 2.5);
    tg_params_zero_grad(ps);
    for (int64_t k = 0; k < 6; k++)
        ck_assert(tu_at(tg_tensor_grad(a), k) == 0.0);
    for (int64_t k = 0; k < 4; k++)
        ck_assert(tu_at(tg_tensor_grad(b), k) == 0.0);
    ck_assert_ptr_null(tg_tensor_grad(c)); /* no gradient yet: none is made */
    tg_params_free(ps);
}
END_TEST

START_TEST(truncate_undoes_registrations)
{
    tg_params *ps = tg_params_new();
    char name[16];
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof name, "p%d", i);
        ck_assert_ptr_nonnull(tg_params_add(ps, name, TG_F64, 1, (int64_t[]){2}));
    }
    give_grad(tg_params_get(ps, "p4"), 1.0);
    tg__params_truncate(ps, 2);
    ck_assert_uint_eq(tg_params_count(ps), 2);
    ck_assert_ptr_nonnull(tg_params_get(ps, "p1"));
    ck_assert_ptr_null(tg_params_get(ps, "p2"));
    ck_assert_ptr_null(tg_params_get(ps, "p4"));
    ck_assert_ptr_nonnull(tg_params_add(ps, "p3", TG_F64, 1, (int64_t[]){2}));
    ck_assert_uint_eq(tg_params_count(ps), 3);
    tg__params_truncate(ps, 0);
    ck_assert_uint_eq(tg_params_count(ps), 0);
    ck_assert_ptr_nonnull(tg_params_add(ps, "p0", TG_F64, 1, (int64_t[]){2}));
    tg_params_free(ps);
}
END_TEST

START_TEST(null_registry_is_harmless)
{
    const char *name = "unchanged";
    tg_params_free(NULL);
    tg_params_zero_grad(NULL);
    tg__params_truncate(NULL, 0);
    ck_assert_uint_eq(tg_params_count(NULL), 0);
    ck_assert_int_eq(tg_params_numel(NULL), 0);
    ck_assert_ptr_null(tg_params_get(NULL, "a"));
    ck_assert_ptr_null(tg_params_at(NULL, 0, &name));
    ck_assert_ptr_null(name);
}
END_TEST

/* ====== RNG: an independent reference, written from the published algorithms ====== */

typedef struct ref_rng {
    uint64_t a, b, c, d;
} ref_rng;

static ref_rng ref_seed(uint64_t seed)
{
    uint64_t w[4];
    for (int i = 0; i < 4; i++) {
        seed += UINT64_C(0x9e3779b97f4a7c15);
        uint64_t z = seed;
        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        w[i] = z ^ (z >> 31);
    }
    return (ref_rng){w[0], w[1], w[2], w[3]};
}

static uint64_t ref_next(ref_rng *r)
{
    uint64_t x = r->b * 5;
    uint64_t out = ((x << 7) | (x >> 57)) * 9;
    uint64_t t = r->b << 17;
    r->c ^= r->a;
    r->d ^= r->b;
    r->b ^= r->c;
    r->a ^= r->d;
    r->c ^= t;
    r->d = (r->d << 45) | (r->d >> 19);
    return out;
}

START_TEST(seed_42_gives_fixed_stream)
{
    /* The first outputs of seed 42, also computed with Python integers. */
    static const uint64_t expect[] = {
        UINT64_C(0x15780b2e0c2ec716), UINT64_C(0x6104d9866d113a7e), UINT64_C(0xae17533239e499a1),
        UINT64_C(0xecb8ad4703b360a1), UINT64_C(0xfde6dc7fe2ec5e64), UINT64_C(0xc50da53101795238),
    };
    tg_rng r;
    tg_rng_seed(&r, 42);
    ck_assert(r.s[0] == UINT64_C(0xbdd732262feb6e95) && r.s[3] == UINT64_C(0x581ce1ff0e4ae394));
    ref_rng ref = ref_seed(42);
    for (size_t i = 0; i < sizeof expect / sizeof *expect; i++) {
        uint64_t got = tg_rng_u64(&r), want = ref_next(&ref);
        ck_assert_msg(got == expect[i] && want == expect[i], "output %zu: %016llx, want %016llx", i,
                      (unsigned long long)got, (unsigned long long)expect[i]);
    }
}
END_TEST

static const uint64_t ref_seeds[] = {0, 1, 42, 0xDEADBEEF, UINT64_MAX};

START_TEST(stream_matches_reference)
{
    tg_rng r;
    tg_rng_seed(&r, ref_seeds[_i]);
    ref_rng ref = ref_seed(ref_seeds[_i]);
    for (int i = 0; i < 10000; i++)
        ck_assert(tg_rng_u64(&r) == ref_next(&ref));
    /* The whole state is the struct: a copy continues identically. */
    tg_rng copy = r;
    for (int i = 0; i < 100; i++)
        ck_assert(tg_rng_normal(&r) == tg_rng_normal(&copy));
}
END_TEST

START_TEST(uniform_is_53_bits_in_range)
{
    enum { N = 100000 };
    tg_rng r;
    tg_rng_seed(&r, 7);
    ref_rng ref = ref_seed(7);
    for (int i = 0; i < 100; i++)
        ck_assert(tg_rng_uniform(&r) == (double)(ref_next(&ref) >> 11) / 9007199254740992.0);
    double sum = 0, sum2 = 0;
    for (int i = 0; i < N; i++) {
        double u = tg_rng_uniform(&r);
        ck_assert(u >= 0.0 && u < 1.0);
        sum += u;
        sum2 += u * u;
    }
    double mean = sum / N, var = sum2 / N - mean * mean;
    ck_assert_msg(fabs(mean - 0.5) < 0.005, "mean %.17g", mean);
    ck_assert_msg(fabs(var - 1.0 / 12) < 0.002, "variance %.17g", var);
}
END_TEST

START_TEST(normal_has_unit_moments)
{
    enum { N = 100000 };
    tg_rng r;
    tg_rng_seed(&r, 2024);
    double sum = 0, sum2 = 0, sum4 = 0;
    for (int i = 0; i < N; i++) {
        double z = tg_rng_normal(&r);
        ck_assert(isfinite(z));
        sum += z;
        sum2 += z * z;
        sum4 += z * z * z * z;
    }
    /* Standard errors: 0.0032 for the mean, 0.0045 for the variance. */
    double mean = sum / N, var = sum2 / N - mean * mean, kurt = sum4 / N;
    ck_assert_msg(fabs(mean) < 0.015, "mean %.17g", mean);
    ck_assert_msg(fabs(var - 1.0) < 0.02, "variance %.17g", var);
    ck_assert_msg(fabs(kurt - 3.0) < 0.1, "fourth moment %.17g", kurt); /* normal, not uniform */
}
END_TEST

START_TEST(below_is_bounded_and_even)
{
    enum { N = 100000, K = 10 };
    tg_rng r;
    tg_rng_seed(&r, 99);
    ck_assert(tg_rng_below(&r, 0) == 0);
    for (int i = 0; i < 100; i++)
        ck_assert(tg_rng_below(&r, 1) == 0);
    int count[K] = {0};
    for (int i = 0; i < N; i++) {
        uint64_t x = tg_rng_below(&r, K);
        ck_assert(x < K);
        count[x]++;
    }
    for (int k = 0; k < K; k++) /* expected 10000, standard deviation 95 */
        ck_assert_msg(abs(count[k] - N / K) < 500, "value %d drawn %d times", k, count[k]);
    /* Half the 64-bit range is rejected for n = 2^63 + 1: still bounded, both halves seen. */
    uint64_t big = (UINT64_C(1) << 63) + 1;
    int high = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t x = tg_rng_below(&r, big);
        ck_assert(x < big);
        high += x >= big / 2;
    }
    ck_assert(high > 400 && high < 600);
    for (int i = 0; i < 100; i++)
        ck_assert(tg_rng_below(&r, UINT64_MAX) < UINT64_MAX);
}
END_TEST

START_TEST(null_rng_is_harmless)
{
    tg_rng_seed(NULL, 1);
    ck_assert(tg_rng_u64(NULL) == 0);
    ck_assert(tg_rng_uniform(NULL) == 0.0);
    ck_assert(tg_rng_below(NULL, 10) == 0);
}
END_TEST

/* ====== Initialisation ====== */

static const struct {
    tg_init kind;
    tg_dtype dt;
    int64_t fan_in, fan_out;
    bool normal;
    double var; /* the variance the scheme promises */
} init_cases[] = {
    {TG_INIT_XAVIER_UNIFORM, TG_F64, 200, 300, false, 2.0 / 500},
    {TG_INIT_XAVIER_UNIFORM, TG_F32, 256, 256, false, 2.0 / 512},
    {TG_INIT_XAVIER_NORMAL, TG_F64, 200, 300, true, 2.0 / 500},
    {TG_INIT_XAVIER_NORMAL, TG_F32, 1, 1, true, 1.0},
    {TG_INIT_HE_UNIFORM, TG_F64, 200, 300, false, 2.0 / 200},
    {TG_INIT_HE_UNIFORM, TG_F32, 1, 7, false, 2.0},
    {TG_INIT_HE_NORMAL, TG_F64, 200, 300, true, 2.0 / 200},
    {TG_INIT_HE_NORMAL, TG_F32, 64, 10, true, 2.0 / 64},
};

START_TEST(init_has_promised_spread)
{
    enum { ROWS = 256, COLS = 256, N = ROWS * COLS };
    tg_tensor *t = tg_tensor_new(init_cases[_i].dt, 2, (int64_t[]){ROWS, COLS});
    tg_rng r;
    tg_rng_seed(&r, 5);
    ck_assert_int_eq(
        tg_init_tensor(t, init_cases[_i].kind, init_cases[_i].fan_in, init_cases[_i].fan_out, &r),
        TG_OK);
    double bound = sqrt(3.0 * init_cases[_i].var); /* U(-a, a) has variance a^2 / 3 */
    double sum = 0, sum2 = 0, max_abs = 0;
    for (int64_t k = 0; k < N; k++) {
        double x = tu_at(t, k);
        sum += x;
        sum2 += x * x;
        max_abs = fmax(max_abs, fabs(x));
    }
    double mean = sum / N, var = sum2 / N - mean * mean, want = init_cases[_i].var;
    ck_assert_msg(fabs(mean) < 4 * sqrt(want / N), "case %d: mean %.17g", _i, mean);
    ck_assert_msg(fabs(var / want - 1) < 0.05, "case %d: variance %.17g, want %.17g", _i, var,
                  want);
    if (!init_cases[_i].normal) {
        /* In [-a, a] (a rounded up for F32), and reaching close to both ends. */
        ck_assert_msg(max_abs <= bound * (1 + 1e-7), "case %d: %.17g beyond %.17g", _i, max_abs,
                      bound);
        ck_assert(max_abs > 0.999 * bound);
    } else {
        ck_assert(max_abs > 3 * sqrt(want)); /* tails exist */
    }
    tg_tensor_free(t);
}
END_TEST

START_TEST(init_is_seeded_and_dtype_independent)
{
    int64_t shape[2] = {30, 20};
    tg_tensor *a = tg_tensor_new(TG_F64, 2, shape), *b = tg_tensor_new(TG_F64, 2, shape);
    tg_tensor *c = tg_tensor_new(TG_F32, 2, shape);
    tg_rng r;
    tg_rng_seed(&r, 11);
    ck_assert_int_eq(tg_init_tensor(a, TG_INIT_HE_NORMAL, 30, 20, &r), TG_OK);
    tg_rng_seed(&r, 11);
    ck_assert_int_eq(tg_init_tensor(b, TG_INIT_HE_NORMAL, 30, 20, &r), TG_OK);
    tg_rng_seed(&r, 11);
    ck_assert_int_eq(tg_init_tensor(c, TG_INIT_HE_NORMAL, 30, 20, &r), TG_OK);
    for (int64_t k = 0; k < 600; k++) {
        ck_assert(tu_at(a, k) == tu_at(b, k));
        ck_assert(tu_at(c, k) == (double)(float)tu_at(a, k));
    }
    /* The first value is the first draw: sqrt(2/30) * the rng's first normal. */
    tg_rng_seed(&r, 11);
    ck_assert(tu_at(a, 0) == sqrt(2.0 / 30) * tg_rng_normal(&r));
    tg_tensor_free(a);
    tg_tensor_free(b);
    tg_tensor_free(c);
}
END_TEST

START_TEST(init_zeros_needs_no_rng)
{
    tg_tensor *t = tu_random(TG_F32, "4x5", 1, 2, 3);
    ck_assert_int_eq(tg_init_tensor(t, TG_INIT_ZEROS, 0, 0, NULL), TG_OK);
    for (int64_t k = 0; k < 20; k++)
        ck_assert(tu_at(t, k) == 0.0);
    tg_tensor_free(t);
}
END_TEST

START_TEST(init_bad_arguments)
{
    tg_tensor *t = tu_random(TG_F64, "3x2", 1, 2, 3);
    tg_tensor *orig = tu_random(TG_F64, "3x2", 1, 2, 3);
    tg_rng r;
    tg_rng_seed(&r, 1);
    ck_assert_int_eq(tg_init_tensor(NULL, TG_INIT_XAVIER_UNIFORM, 3, 2, &r), TG_ERR_ARG);
    ck_assert_int_eq(tg_init_tensor(NULL, TG_INIT_ZEROS, 3, 2, &r), TG_ERR_ARG);
    ck_assert_int_eq(tg_init_tensor(t, TG_INIT_XAVIER_UNIFORM, 3, 2, NULL), TG_ERR_ARG);
    ck_assert_int_eq(tg_init_tensor(t, TG_INIT_HE_NORMAL, 3, 2, NULL), TG_ERR_ARG);
    ck_assert_int_eq(tg_init_tensor(t, TG_INIT_XAVIER_NORMAL, 0, 2, &r), TG_ERR_ARG);
    ck_assert_int_eq(tg_init_tensor(t, TG_INIT_XAVIER_UNIFORM, 3, -1, &r), TG_ERR_ARG);
    ck_assert_int_eq(tg_init_tensor(t, TG_INIT_HE_UNIFORM, 0, 2, &r), TG_ERR_ARG);
    ck_assert_int_eq(tg_init_tensor(t, TG_INIT_HE_NORMAL, 3, 0, &r), TG_ERR_ARG);
    ck_assert_int_eq(tg_init_tensor(t, (tg_init)42, 3, 2, &r), TG_ERR_ARG);
    ck_assert_str_eq(tg_last_error()->msg, "init_tensor: unknown kind 42");
    ck_assert_int_eq(tg_init_tensor(t, TG_INIT_HE_NORMAL, 3, 0, &r), TG_ERR_ARG);
    ck_assert_str_eq(tg_last_error()->msg, "init_tensor: fans 3 and 0, both must be >= 1");
    ck_assert_int_eq(tg_init_tensor(t, TG_INIT_HE_NORMAL, 3, 2, NULL), TG_ERR_ARG);
    ck_assert_str_eq(tg_last_error()->msg, "init_tensor: NULL rng");
    ck_assert_int_eq(tg_init_tensor(NULL, TG_INIT_ZEROS, 3, 2, &r), TG_ERR_ARG);
    ck_assert_str_eq(tg_last_error()->msg, "init_tensor: NULL tensor");
    tg_tensor *labels = tg_tensor_new(TG_I64, 1, (int64_t[]){3});
    ck_assert_int_eq(tg_init_tensor(labels, TG_INIT_ZEROS, 3, 2, &r), TG_ERR_DTYPE);
    ck_assert_str_eq(tg_last_error()->msg, "init_tensor: i64 tensor, not a float one");
    tg_tensor_free(labels);
    ck_assert(tu_close(t, orig, 0, NULL)); /* untouched */
    tg_rng fresh;
    tg_rng_seed(&fresh, 1);
    ck_assert(tg_rng_u64(&r) == tg_rng_u64(&fresh)); /* and no draw was taken */
    tg_tensor_free(t);
    tg_tensor_free(orig);
}
END_TEST

/* ====== tg_last_error: every tape-less call says why it failed ====== */

static void expect_last(tg_status want, const char *msg)
{
    ck_assert_int_eq(tg_last_error()->status, want);
    ck_assert_str_eq(tg_last_error()->msg, msg);
}

START_TEST(tensor_constructors_say_why)
{
    ck_assert_ptr_null(tg_tensor_new(TG_F64, 5, (int64_t[]){1, 1, 1, 1, 1}));
    expect_last(TG_ERR_ARG, "tensor_new: rank 5 outside 0..4");
    ck_assert_ptr_null(tg_tensor_new(TG_F64, 2, NULL));
    expect_last(TG_ERR_ARG, "tensor_new: NULL shape for rank 2");
    ck_assert_ptr_null(tg_tensor_new(TG_F32, 3, (int64_t[]){2, -3, 1}));
    expect_last(TG_ERR_ARG, "tensor_new: negative dimension in [2x-3x1]");
    ck_assert_ptr_null(tg_tensor_new(TG_I64, 2, (int64_t[]){INT64_MAX / 2, 2}));
    expect_last(TG_ERR_ARG, "tensor_new: [4611686018427387903x2] i64 is too large to allocate");
    ck_assert_ptr_null(tg_tensor_new((tg_dtype)9, 1, (int64_t[]){2}));
    expect_last(TG_ERR_DTYPE, "tensor_new: unknown dtype 9");
    ck_assert_ptr_null(tg_tensor_from(TG_F64, 1, (int64_t[]){2}, NULL));
    expect_last(TG_ERR_ARG, "tensor_from: NULL data for a non-empty shape");
    ck_assert_ptr_null(tg_tensor_from(TG_F64, -1, NULL, (double[]){1}));
    expect_last(TG_ERR_ARG, "tensor_from: rank -1 outside 0..4");

    /* Out of memory, at each allocation a constructor makes. */
    tg__alloc_fail_after = 0;
    tg_tensor *t = tg_tensor_new(TG_F32, 2, (int64_t[]){2, 3});
    tg_tape *tp = tg_tape_new();
    tg_params *ps = tg_params_new();
    tg__alloc_fail_after = -1;
    ck_assert_ptr_null(t);
    ck_assert_ptr_null(tp);
    ck_assert_ptr_null(ps);
    expect_last(TG_ERR_NOMEM, "params_new: out of memory");
    tg__alloc_fail_after = 0;
    tp = tg_tape_new();
    tg__alloc_fail_after = -1;
    expect_last(TG_ERR_NOMEM, "tape_new: out of memory");
    tg__alloc_fail_after = 1; /* the tensor's struct, not its data */
    t = tg_tensor_new(TG_F32, 2, (int64_t[]){2, 3});
    tg__alloc_fail_after = -1;
    ck_assert_ptr_null(t);
    expect_last(TG_ERR_NOMEM, "tensor_new: out of memory for [2x3] f32");

    tg_tensor *x = tg_tensor_new(TG_F64, 2, (int64_t[]){2, 3});
    ck_assert_int_eq(tg_tensor_reshape(x, 1, (int64_t[]){5}), TG_ERR_SHAPE);
    expect_last(TG_ERR_SHAPE, "tensor_reshape: 6 elements cannot take 5");
    ck_assert_int_eq(tg_tensor_reshape(x, 7, (int64_t[]){6}), TG_ERR_ARG);
    expect_last(TG_ERR_ARG, "tensor_reshape: rank 7 outside 0..4");
    ck_assert_int_eq(tg_tensor_reshape(NULL, 1, (int64_t[]){6}), TG_ERR_ARG);
    expect_last(TG_ERR_ARG, "tensor_reshape: NULL tensor");
    /* Success leaves the last error alone, as errno does. */
    ck_assert_int_eq(tg_tensor_reshape(x, 1, (int64_t[]){6}), TG_OK);
    expect_last(TG_ERR_ARG, "tensor_reshape: NULL tensor");
    tg_tensor_free(x);
}
END_TEST

START_TEST(registry_lookups_say_why)
{
    tg_params *ps = tg_params_new();
    ck_assert_ptr_nonnull(tg_params_add(ps, "w", TG_F64, 1, (int64_t[]){2}));
    ck_assert_ptr_null(tg_params_get(ps, "v"));
    expect_last(TG_ERR_ARG, "params_get: no parameter 'v'");
    ck_assert_ptr_null(tg_params_get(NULL, "v"));
    expect_last(TG_ERR_ARG, "params_get: NULL registry");
    const char *name = "x";
    ck_assert_ptr_null(tg_params_at(ps, 1, &name));
    ck_assert_ptr_null(name);
    expect_last(TG_ERR_ARG, "params_at: index out of range");
    ck_assert_ptr_null(tg_params_add(NULL, "x", TG_F64, 1, (int64_t[]){2}));
    expect_last(TG_ERR_ARG, "params_add: NULL registry");
    tg_params_free(ps);
}
END_TEST

static void *fail_in_thread(void *arg)
{
    (void)arg;
    /* A fresh thread starts clean, and its failure stays its own. */
    bool clean = tg_last_error()->status == TG_OK && tg_last_error()->msg[0] == '\0';
    tg_tensor_new(TG_F64, -2, NULL);
    return clean ? (void *)1 : NULL;
}

START_TEST(last_error_is_per_thread)
{
    ck_assert_ptr_null(tg_tensor_new(TG_F64, 9, NULL));
    pthread_t th;
    void *clean = NULL;
    ck_assert_int_eq(pthread_create(&th, NULL, fail_in_thread, NULL), 0);
    ck_assert_int_eq(pthread_join(th, &clean), 0);
    ck_assert_ptr_nonnull(clean);
    expect_last(TG_ERR_ARG, "tensor_new: rank 9 outside 0..4");
}
END_TEST

static Suite *nn_params_suite(void)
{
    Suite *s = suite_create("nn_params");
    TCase *tc = tcase_create("registry");
    tcase_add_test(tc, add_and_get);
    tcase_add_loop_test(tc, bad_add_is_null, 0, sizeof bad_adds / sizeof *bad_adds);
    tcase_add_test(tc, insertion_order_is_stable);
    tcase_add_test(tc, zero_grad_clears_every_gradient);
    tcase_add_test(tc, truncate_undoes_registrations);
    tcase_add_test(tc, null_registry_is_harmless);
    tcase_add_test(tc, tensor_constructors_say_why);
    tcase_add_test(tc, registry_lookups_say_why);
    tcase_add_test(tc, last_error_is_per_thread);
    suite_add_tcase(s, tc);

    tc = tcase_create("rng");
    tcase_add_test(tc, seed_42_gives_fixed_stream);
    tcase_add_loop_test(tc, stream_matches_reference, 0, sizeof ref_seeds / sizeof *ref_seeds);
    tcase_add_test(tc, uniform_is_53_bits_in_range);
    tcase_add_test(tc, normal_has_unit_moments);
    tcase_add_test(tc, below_is_bounded_and_even);
    tcase_add_test(tc, null_rng_is_harmless);
    suite_add_tcase(s, tc);

    tc = tcase_create("init");
    tcase_add_loop_test(tc, init_has_promised_spread, 0, sizeof init_cases / sizeof *init_cases);
    tcase_add_test(tc, init_is_seeded_and_dtype_independent);
    tcase_add_test(tc, init_zeros_needs_no_rng);
    tcase_add_test(tc, init_bad_arguments);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run(nn_params_suite()); }
