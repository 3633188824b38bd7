/*
 * Threads: four threads each record and train their own network on their
 * own tape at the same time, reading one shared input batch, and every one
 * ends bit for bit where the same training ends when run alone. Also built
 * under ThreadSanitizer (docs/reliability.md), which checks that nothing in
 * the library is shared behind the caller's back.
 */
#include "testutil.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define N_WORKERS 4
#define BATCH     64
#define N_IN      64
#define N_HIDDEN  128
#define N_OUT     10
#define STEPS     15

/* Read by every worker, written by none: leaves that do not require grad. */
typedef struct shared {
    tg_tensor *x[2], *y[2]; /* per dtype: TG_F32, TG_F64 */
} shared;

typedef struct worker {
    const shared *data;
    int id;
    /* results */
    tg_status status;
    double first_loss, loss;
    unsigned char *params; /* every parameter's bytes, in registry order */
    size_t n_bytes;
} worker;

/* A seeded MLP trained with Adam by replaying one recorded step: the loop
 * docs/design.md describes. Odd workers train in F64, even ones in F32. */
static void *train(void *arg)
{
    worker *w = arg;
    tg_dtype dt = w->id % 2 ? TG_F64 : TG_F32;
    tg_rng rng;
    tg_rng_seed(&rng, 1000 + (uint64_t)w->id);
    tg_params *ps = tg_params_new();
    tg_mlp *mlp = tg_mlp_new(ps, "mlp", 2, (int64_t[]){N_IN, N_HIDDEN, N_OUT},
                             (tg_activation[]){TG_ACT_TANH, TG_ACT_NONE}, dt, &rng);
    tg_optim *opt = tg_optim_new(ps, &(tg_optim_opts){.kind = TG_OPTIM_ADAM, .lr = 1e-2});
    tg_tape *tp = tg_tape_new();
    w->status = TG_ERR_NOMEM;
    if (!mlp || !opt || !tp) goto done;

    tg_tensor *x = w->data->x[dt == TG_F64], *y = w->data->y[dt == TG_F64];
    tg_tensor *loss = tg_softmax_cross_entropy(tp, tg_mlp_forward(tp, mlp, x), y);
    w->first_loss = tg_tensor_item(loss);
    for (int step = 0; step < STEPS; step++) {
        if (step > 0) tg_tape_replay(tp);
        tg_params_zero_grad(ps);
        if ((w->status = tg_backward(tp, loss)) != TG_OK) goto done;
        if ((w->status = tg_optim_step(opt)) != TG_OK) goto done;
    }
    w->status = tg_tape_replay(tp);
    w->loss = tg_tensor_item(loss);

    w->n_bytes = 0;
    for (size_t i = 0; i < tg_params_count(ps); i++)
        w->n_bytes += (size_t)tg_tensor_numel(tg_params_at(ps, i, NULL)) * (dt == TG_F64 ? 8 : 4);
    w->params = malloc(w->n_bytes);
    if (!w->params) {
        w->status = TG_ERR_NOMEM;
        goto done;
    }
    unsigned char *p = w->params;
    for (size_t i = 0; i < tg_params_count(ps); i++) {
        tg_tensor *t = tg_params_at(ps, i, NULL);
        size_t n = (size_t)tg_tensor_numel(t) * (dt == TG_F64 ? 8 : 4);
        memcpy(p, tg_tensor_data(t), n);
        p += n;
    }
done:
    tg_tape_free(tp);
    tg_optim_free(opt);
    tg_mlp_free(mlp);
    tg_params_free(ps);
    return NULL;
}

static void shared_make(shared *s)
{
    for (int d = 0; d < 2; d++) {
        tg_dtype dt = d ? TG_F64 : TG_F32;
        s->x[d] = tu_random(dt, "64x64", -1, 1, 7);
        tg_tensor *labels = tg_tensor_new(TG_F64, 1, (int64_t[]){BATCH});
        ck_assert_ptr_nonnull(labels);
        for (int i = 0; i < BATCH; i++) ((double *)tg_tensor_data(labels))[i] = (i * 7) % N_OUT;
        s->y[d] = tg_one_hot(labels, N_OUT, dt);
        tg_tensor_free(labels);
        ck_assert_ptr_nonnull(s->x[d]);
        ck_assert_ptr_nonnull(s->y[d]);
    }
}

static void shared_free(shared *s)
{
    for (int d = 0; d < 2; d++) {
        tg_tensor_free(s->x[d]);
        tg_tensor_free(s->y[d]);
    }
}

/* _i = 0: BLAS limited to one thread; _i = 1: its default pool, which the
 * workers then use concurrently. */
START_TEST(concurrent_training_matches_serial)
{
    int blas_before = tg_get_num_threads();
    if (_i == 0) tg_set_num_threads(1);
    shared data;
    shared_make(&data);
    worker serial[N_WORKERS], parallel[N_WORKERS];
    for (int i = 0; i < N_WORKERS; i++) {
        serial[i] = parallel[i] = (worker){.data = &data, .id = i};
        train(&serial[i]);
        ck_assert_int_eq(serial[i].status, TG_OK);
    }
    pthread_t th[N_WORKERS];
    for (int i = 0; i < N_WORKERS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, train, &parallel[i]), 0);
    for (int i = 0; i < N_WORKERS; i++) ck_assert_int_eq(pthread_join(th[i], NULL), 0);

    for (int i = 0; i < N_WORKERS; i++) {
        ck_assert_int_eq(parallel[i].status, TG_OK);
        ck_assert_msg(memcmp(&parallel[i].loss, &serial[i].loss, sizeof(double)) == 0,
                      "worker %d: loss %.17g alone, %.17g concurrently", i, serial[i].loss,
                      parallel[i].loss);
        ck_assert_uint_eq(parallel[i].n_bytes, serial[i].n_bytes);
        ck_assert_msg(memcmp(parallel[i].params, serial[i].params, serial[i].n_bytes) == 0,
                      "worker %d: parameters differ", i);
        free(serial[i].params);
        free(parallel[i].params);
    }
    for (int i = 0; i < N_WORKERS; i++)
        ck_assert_msg(serial[i].loss < serial[i].first_loss, "worker %d did not learn: %.17g -> %.17g",
                      i, serial[i].first_loss, serial[i].loss);
    shared_free(&data);
    tg_set_num_threads(blas_before);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("threads");
    TCase *tc = tcase_create("tapes");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, concurrent_training_matches_serial, 0, 2);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
