/*
 * What evaluating without gradients saves: the tape bytes and the time per
 * run of a training step (replay and backward), of a replay of the same tape
 * recorded with gradients, and of a replay of a tape recorded without them
 * (tg_tape_set_grad(tp, false)), on the trainer's 784-256-128-10 F32 MLP with
 * its 1,000-row evaluation batch. Built and run by tools/eval-cost; it reads
 * the tape's arena, so it links the static library and its internal header.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define ROWS 1000
#define RUNS 200

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Records the loss of the MLP on x against y on a new tape, with or without gradients. */
static tg_tape *record(const tg_mlp *m, tg_tensor *x, tg_tensor *y, bool grad, tg_tensor **loss)
{
    tg_tape *tp = tg_tape_new();
    tg_tape_set_grad(tp, grad);
    *loss = tg_softmax_cross_entropy(tp, tg_mlp_forward(tp, m, x), y);
    if (tg_tape_status(tp) != TG_OK) {
        fprintf(stderr, "eval_cost: %s\n", tg_tape_error(tp));
        exit(1);
    }
    return tp;
}

int main(void)
{
    tg_rng r;
    tg_rng_seed(&r, 1);
    tg_params *ps = tg_params_new();
    tg_mlp *m =
        tg_mlp_new(ps, "mlp", 3, (const int64_t[]){784, 256, 128, 10},
                   (const tg_activation[]){TG_ACT_RELU, TG_ACT_RELU, TG_ACT_NONE}, TG_F32, &r);
    tg_tensor *x = tg_tensor_new(TG_F32, 2, (const int64_t[]){ROWS, 784});
    tg_tensor *y = tg_tensor_new(TG_F32, 2, (const int64_t[]){ROWS, 10});
    if (!m || !x || !y) {
        fprintf(stderr, "eval_cost: %s\n", tg_last_error()->msg);
        return 1;
    }
    float *xv = tg_tensor_data(x), *yv = tg_tensor_data(y);
    for (int64_t k = 0; k < ROWS * 784; k++)
        xv[k] = (float)tg_rng_uniform(&r);
    for (int64_t k = 0; k < ROWS; k++)
        yv[k * 10 + k % 10] = 1;

    tg_tensor *loss[3];
    tg_tape *tp[3] = {record(m, x, y, true, &loss[0]), record(m, x, y, true, &loss[1]),
                      record(m, x, y, false, &loss[2])};
    static const char *const what[3] = {"training step: replay + backward",
                                        "recorded with gradients, replay only",
                                        "recorded without gradients, replay"};
    tg_backward(tp[0], loss[0]); /* its gradient buffers exist from the first step on */
    printf("%-38s %12s %10s\n", "tape", "bytes", "ms/run");
    for (int t = 0; t < 3; t++) {
        double start = now_seconds();
        for (int i = 0; i < RUNS; i++) {
            tg_status st = tg_tape_replay(tp[t]);
            if (t == 0 && st == TG_OK) {
                tg_params_zero_grad(ps);
                st = tg_backward(tp[t], loss[t]);
            }
            if (st != TG_OK) {
                fprintf(stderr, "eval_cost: %s\n", tg_tape_error(tp[t]));
                return 1;
            }
        }
        double ms = (now_seconds() - start) / RUNS * 1e3;
        printf("%-38s %12zu %10.3f\n", what[t], tg__arena_bytes(&tp[t]->arena), ms);
        tg_tape_free(tp[t]);
    }
    tg_tensor_free(x);
    tg_tensor_free(y);
    tg_mlp_free(m);
    tg_params_free(ps);
    return 0;
}
