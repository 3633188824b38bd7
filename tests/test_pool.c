/*
 * The library's own threads (src/pool.c): tg__parallel_for cuts a loop into
 * contiguous parts that cover it once, and training that runs elementwise
 * ops, their VJPs, bias, gradient zeroing and optimizer updates over tensors
 * large enough to be split ends bit for bit where it ends on one thread,
 * whatever the pool's thread count. BLAS stays at one thread throughout:
 * OpenBLAS 0.3.21's sgemm gives other bits at 2 threads than at 1 for these
 * very shapes (it blocks the product differently), which is BLAS's doing, not
 * the pool's.
 */
#include "internal.h"
#include "testutil.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ====== The split ====== */

enum { MAX_PARTS = 16 };

typedef struct cover {
    int *hits; /* how many parts covered each index */
    int64_t begin[MAX_PARTS], end[MAX_PARTS];
    int parts;
    pthread_mutex_t mu;
} cover;

static void mark(void *ctx, int64_t b, int64_t e)
{
    cover *c = ctx;
    for (int64_t i = b; i < e; i++)
        c->hits[i]++; /* parts are disjoint, so no two threads write one index */
    pthread_mutex_lock(&c->mu);
    if (c->parts < MAX_PARTS) c->begin[c->parts] = b, c->end[c->parts] = e;
    c->parts++;
    pthread_mutex_unlock(&c->mu);
}

/* n indices with a grain of 1000 on 1 to 4 threads: every index once, in
 * one part on one thread or below two grains, else in min(4 threads,
 * n / grain) parts whose sizes differ by at most one. */
START_TEST(parallel_for_covers_each_index_once)
{
    static const int64_t sizes[] = {0, 1, 999, 1999, 2000, 2001, 7919, 100000};
    int before = tg_get_num_threads();
    for (int threads = 1; threads <= 4; threads++) {
        tg_set_num_threads(threads);
        ck_assert_int_eq(tg_get_num_threads(), threads);
        for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
            int64_t n = sizes[s];
            cover c = {.hits = calloc((size_t)n + 1, sizeof(int)), .mu = PTHREAD_MUTEX_INITIALIZER};
            ck_assert_ptr_nonnull(c.hits);
            tg__parallel_for(n, 1000, mark, &c);
            for (int64_t i = 0; i < n; i++)
                ck_assert_msg(c.hits[i] == 1, "n %lld, %d threads: index %lld covered %d times",
                              (long long)n, threads, (long long)i, c.hits[i]);
            int64_t want = n == 0                            ? 0
                           : threads == 1 || n < 2000        ? 1
                           : n / 1000 < 4 * (int64_t)threads ? n / 1000
                                                             : 4 * (int64_t)threads;
            ck_assert_int_eq(c.parts, want);
            int64_t lo = INT64_MAX, hi = 0;
            for (int k = 0; k < c.parts; k++) {
                int64_t len = c.end[k] - c.begin[k];
                lo = len < lo ? len : lo, hi = len > hi ? len : hi;
            }
            if (c.parts) ck_assert_int_le(hi - lo, 1);
            free(c.hits);
        }
    }
    tg_set_num_threads(before);
}
END_TEST

/* ====== Training at 1, 2 and 3 threads ====== */

#define BATCH  64
#define N_IN   300
#define HIDDEN 1024 /* 64 x 1024 activations and 300 x 1024 weights: above every split threshold \
                     */
#define N_OUT 10
#define STEPS 4

/* The parameters' bytes and the last loss of a few steps of training on one
 * batch: an MLP with sigmoid and tanh layers, a product with a broadcast
 * [1024] row (its VJP sums the rows: not split) and with a same-shape tensor
 * (split), momentum SGD or Adam. */
typedef struct result {
    unsigned char *bytes;
    size_t n;
    double loss;
} result;

static result train(tg_dtype dt, bool adam, int threads)
{
    tg_set_num_threads(1); /* BLAS on one thread */
    tg__pool_set_threads(threads);
    ck_assert_int_eq(tg_get_num_threads(), threads);
    tg_rng rng;
    tg_rng_seed(&rng, 42);
    tg_params *ps = tg_params_new();
    tg_mlp *mlp = tg_mlp_new(ps, "mlp", 2, (int64_t[]){N_IN, HIDDEN, N_OUT},
                             (tg_activation[]){TG_ACT_SIGMOID, TG_ACT_NONE}, dt, &rng);
    tg_tensor *row = tg_params_add(ps, "row", dt, 1, (int64_t[]){HIDDEN});
    ck_assert_ptr_nonnull(mlp);
    ck_assert_ptr_nonnull(row);
    ck_assert_int_eq(tg_init_tensor(row, TG_INIT_FAN_IN_UNIFORM, 1, 1, &rng), TG_OK);
    tg_optim_opts oo =
        adam ? (tg_optim_opts){.kind = TG_OPTIM_ADAM, .lr = 1e-2}
             : (tg_optim_opts){
                   .kind = TG_OPTIM_SGD, .lr = 0.1, .momentum = 0.9, .weight_decay = 1e-3};
    tg_optim *opt = tg_optim_new(ps, &oo);
    tg_tensor *x = tu_random(dt, "64x300", -1, 1, 7), *y = tu_random(dt, "64x1024", -1, 1, 8);
    tg_tape *tp = tg_tape_new();
    ck_assert_ptr_nonnull(opt);
    ck_assert_ptr_nonnull(tp);
    /* The MLP's layers by hand, with h = relu(1.5 tanh(sigmoid layer ⊙ row) ⊙ y) between. */
    tg_tensor *w0 = tg_params_get(ps, "mlp.0.weight"), *b0 = tg_params_get(ps, "mlp.0.bias");
    tg_tensor *w1 = tg_params_get(ps, "mlp.1.weight"), *b1 = tg_params_get(ps, "mlp.1.bias");
    tg_tensor *h = tg_sigmoid(tp, tg_add_bias(tp, tg_matmul(tp, x, w0), b0));
    h = tg_mul(tp, tg_tanh(tp, tg_mul(tp, h, row)), y);
    h = tg_relu(tp, tg_add(tp, h, tg_scale(tp, h, 0.5)));
    tg_tensor *labels = tu_random(dt, "64x10", 0, 1, 9);
    tg_tensor *loss =
        tg_softmax_cross_entropy(tp, tg_add_bias(tp, tg_matmul(tp, h, w1), b1), labels);
    ck_assert_msg(tg_tape_status(tp) == TG_OK, "%s", tg_tape_error(tp));
    for (int s = 0; s < STEPS; s++) {
        if (s) ck_assert_int_eq(tg_tape_replay(tp), TG_OK);
        tg_params_zero_grad(ps);
        ck_assert_int_eq(tg_backward(tp, loss), TG_OK);
        ck_assert_int_eq(tg_optim_step(opt), TG_OK);
    }
    result r = {.loss = tg_tensor_item(loss)};
    size_t es = dt == TG_F64 ? 8 : 4;
    for (size_t i = 0; i < tg_params_count(ps); i++)
        r.n += (size_t)tg_tensor_numel(tg_params_at(ps, i, NULL)) * es;
    r.bytes = malloc(r.n);
    ck_assert_ptr_nonnull(r.bytes);
    for (size_t i = 0, at = 0; i < tg_params_count(ps); i++) {
        tg_tensor *t = tg_params_at(ps, i, NULL);
        memcpy(r.bytes + at, tg_tensor_data(t), (size_t)tg_tensor_numel(t) * es);
        at += (size_t)tg_tensor_numel(t) * es;
    }
    tg_tape_free(tp);
    tg_optim_free(opt);
    tg_mlp_free(mlp);
    tg_params_free(ps);
    tg_tensor_free(x);
    tg_tensor_free(y);
    tg_tensor_free(labels);
    return r;
}

/* _i: bit 0 the dtype, bit 1 Adam. The same bits at 2 and 3 threads as at 1. */
START_TEST(training_is_bit_identical_at_any_thread_count)
{
    int before = tg_get_num_threads();
    tg_dtype dt = _i & 1 ? TG_F64 : TG_F32;
    bool adam = _i & 2;
    result one = train(dt, adam, 1);
    ck_assert(one.loss == one.loss); /* not NaN: the network trained */
    for (int threads = 2; threads <= 3; threads++) {
        result more = train(dt, adam, threads);
        ck_assert_msg(memcmp(&more.loss, &one.loss, sizeof one.loss) == 0,
                      "%s %s: loss %.17g at 1 thread, %.17g at %d", tu_dtype_name(dt),
                      adam ? "Adam" : "SGD", one.loss, more.loss, threads);
        ck_assert_uint_eq(more.n, one.n);
        ck_assert_msg(memcmp(more.bytes, one.bytes, one.n) == 0,
                      "%s %s: parameters differ at %d threads", tu_dtype_name(dt),
                      adam ? "Adam" : "SGD", threads);
        free(more.bytes);
    }
    free(one.bytes);
    tg_set_num_threads(before);
}
END_TEST

/* tg__zero clears a whole gradient however large: zero_grad of a 1 MiB one
 * with 2 threads (split in two) and of a one-element one (a 64-byte store). */
START_TEST(zero_grad_clears_large_and_small)
{
    int before = tg_get_num_threads();
    tg_set_num_threads(2);
    tg_tensor *big = tu_random(TG_F32, "512x512", -1, 1, 3),
              *small = tu_random(TG_F32, "1", 1, 2, 4);
    tg_tensor_set_requires_grad(big, true);
    tg_tensor_set_requires_grad(small, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *loss = tg_add(tp, tg_sum(tp, big), tg_sum(tp, small));
    ck_assert_int_eq(tg_backward(tp, loss), TG_OK);
    const float *g = tg_tensor_data(tg_tensor_grad(big));
    ck_assert(g[0] == 1.0f && g[512 * 512 - 1] == 1.0f);
    tg_tensor_zero_grad(big);
    tg_tensor_zero_grad(small);
    for (int64_t i = 0; i < 512 * 512; i++)
        ck_assert_msg(g[i] == 0.0f, "element %lld is %g", (long long)i, (double)g[i]);
    ck_assert(*(const float *)tg_tensor_data(tg_tensor_grad(small)) == 0.0f);
    tg_tape_free(tp);
    tg_tensor_free(big);
    tg_tensor_free(small);
    tg_set_num_threads(before);
}
END_TEST

/* The pool's threads take the caller's FTZ/DAZ mode when it changes after
 * they started: tg_set_flush_denormals restarts them from the calling thread.
 * Two parts of one pass, each waiting (up to 10 s) until the other has
 * started, so that they run on two threads; each records its MXCSR. */
#if defined(__SSE__) || defined(__x86_64__)
#include <stdatomic.h>
#include <time.h>
#include <xmmintrin.h>

typedef struct csr_probe {
    atomic_int started;
    unsigned csr[2];
    pthread_t who[2];
} csr_probe;

static void probe_part(void *ctx, int64_t b, int64_t e)
{
    csr_probe *c = ctx;
    (void)e;
    c->csr[b] = _mm_getcsr();
    c->who[b] = pthread_self();
    atomic_fetch_add(&c->started, 1);
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do
        clock_gettime(CLOCK_MONOTONIC, &t);
    while (atomic_load(&c->started) < 2 && t.tv_sec - t0.tv_sec < 10);
}

START_TEST(workers_take_the_callers_denormal_mode)
{
    const unsigned ftz_daz = 0x8040;
    int before = tg_get_num_threads();
    tg__pool_set_threads(2);
    csr_probe c = {0};
    tg__parallel_for(2, 1, probe_part, &c); /* the worker starts with FTZ/DAZ off */
    ck_assert(tg_set_flush_denormals(true));
    /* valgrind runs the program on a CPU model without FTZ and DAZ: the bits
     * do not read back there, in any thread, and there is nothing to compare.
     * It also runs one thread at a time, so the caller may take both parts
     * before the worker wakes. */
    bool modelled = (_mm_getcsr() & ftz_daz) == ftz_daz;
    csr_probe d = {0};
    tg__parallel_for(2, 1, probe_part, &d);
    tg_set_flush_denormals(false);
    if (modelled) {
        ck_assert_msg(!pthread_equal(d.who[0], d.who[1]), "both parts ran on one thread");
        ck_assert_uint_eq(d.csr[0] & ftz_daz, ftz_daz);
        ck_assert_uint_eq(d.csr[1] & ftz_daz, ftz_daz);
    }
    tg_set_num_threads(before);
}
END_TEST
#endif

int main(void)
{
    Suite *s = suite_create("pool");
    TCase *tc = tcase_create("pool");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, parallel_for_covers_each_index_once);
    tcase_add_loop_test(tc, training_is_bit_identical_at_any_thread_count, 0, 4);
    tcase_add_test(tc, zero_grad_clears_large_and_small);
#if defined(__SSE__) || defined(__x86_64__)
    tcase_add_test(tc, workers_take_the_callers_denormal_mode);
#endif
    suite_add_tcase(s, tc);
    return tu_run(s);
}
