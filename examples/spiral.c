/*
 * spiral: the whole training loop on a toy problem. Three interleaved
 * spirals of 100 points each in the plane, one class per arm, learned by a
 * 2-64-64-3 ReLU network with AdamW (no weight decay on the biases), a cosine
 * schedule with warm-up, gradient clipping and an evaluation tape recorded
 * without gradients. Exits with 1 unless the training accuracy reaches 0.95.
 */
#include <tapegrad/tapegrad.h>

#include <math.h>
#include <stdbool.h>
#include <stdio.h>

#define ARM 100
#define N   (3 * ARM)

/* x [N,2], labels y [N] (I64) and their one-hot rows: point i of arm c at
 * radius i / ARM and angle 4 (c + radius) plus noise (cs231n's spiral). */
static bool make_spiral(tg_tensor **x, tg_tensor **y, tg_tensor **target, tg_rng *r)
{
    *x = tg_tensor_new(TG_F64, 2, (int64_t[]){N, 2});
    *y = tg_tensor_new(TG_I64, 1, (int64_t[]){N});
    if (!*x || !*y) return false;
    double *xv = tg_tensor_data(*x);
    int64_t *yv = tg_tensor_data(*y);
    for (int c = 0, k = 0; c < 3; c++)
        for (int i = 0; i < ARM; i++, k++) {
            double rad = (double)i / ARM, t = 4.0 * (c + rad) + 0.2 * tg_rng_normal(r);
            xv[2 * k] = rad * sin(t);
            xv[2 * k + 1] = rad * cos(t);
            yv[k] = c;
        }
    return (*target = tg_one_hot(*y, 3, TG_F64)) != NULL;
}

/* Everything main made, in one place so that main shows the loop. */
static void free_all(tg_tape *train, tg_tape *eval, tg_optim *opt, tg_mlp *m, tg_params *ps,
                     tg_tensor *const data[3])
{
    tg_tape_free(train);
    tg_tape_free(eval);
    tg_optim_free(opt);
    tg_mlp_free(m);
    tg_params_free(ps);
    for (int i = 0; i < 3; i++)
        tg_tensor_free(data[i]);
}

int main(void)
{
    tg_rng r;
    tg_rng_seed(&r, 7);
    tg_tensor *x = NULL, *y = NULL, *target = NULL;
    tg_params *ps = tg_params_new();
    tg_mlp *m = tg_mlp_new(ps, "mlp", 3, (int64_t[]){2, 64, 64, 3},
                           (tg_activation[]){TG_ACT_RELU, TG_ACT_RELU, TG_ACT_NONE}, TG_F64, &r);
    /* AdamW decaying the weights only, a warm-up then a cosine decay of the rate. */
    tg_param_group no_decay = {.name = "no_decay",
                               .match = (const char *[]){"*.bias", NULL},
                               .set = TG_GROUP_SET_WEIGHT_DECAY};
    tg_optim *opt = tg_optim_new_groups(
        ps, &(tg_optim_opts){.kind = TG_OPTIM_ADAMW, .lr = 0.01, .weight_decay = 1e-3}, &no_decay,
        1);
    tg_sched sched;
    tg_sched_opts cosine = {.kind = TG_SCHED_COSINE, .warmup_steps = 50, .total_steps = 1000};
    if (!make_spiral(&x, &y, &target, &r) || !m || !opt || tg_sched_init(&sched, &cosine, opt))
        return fprintf(stderr, "spiral: %s\n", tg_last_error()->msg), 1;
    /* One tape per mode: training records gradients, evaluation does not. */
    tg_tape *train = tg_tape_new(), *eval = tg_tape_new();
    tg_tensor *loss = tg_softmax_cross_entropy(train, tg_mlp_forward(train, m, x), target);
    tg_tape_set_grad(eval, false);
    tg_tensor *logits = tg_mlp_forward(eval, m, x);
    for (int step = 0; step < cosine.total_steps; step++) {
        tg_params_zero_grad(ps);
        if (tg_tape_replay(train) || tg_backward(train, loss)) break;
        tg_clip_grad_norm(ps, 5.0, 2.0);
        tg_optim_step(opt);
        tg_sched_step(&sched, opt, 0);
        if (step % 200 == 199) printf("step %4d  loss %.4f\n", step + 1, tg_tensor_item(loss));
    }
    double acc = tg_tape_replay(eval) == TG_OK ? tg_accuracy(logits, y) : -1;
    printf("training accuracy %.4f%s%s\n", acc, tg_tape_status(train) ? "; " : "",
           tg_tape_error(train));
    free_all(train, eval, opt, m, ps, (tg_tensor *[]){x, y, target});
    return acc >= 0.95 ? 0 : 1;
}
