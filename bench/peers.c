/*
 * Peers and floors that are not PyTorch, run in the tapegrad child process
 * right after the workload they belong to, so they see the same machine:
 *
 *   FANN (Debian libfann-dev), a C library of fixed MLPs, training W0's 2-3-2
 *   network incrementally: the same sigmoid hidden layer, linear output,
 *   1/2 ||y - a||^2 and SGD at rate 0.05 on the same ten points. Built only
 *   when Meson finds fann; otherwise the record says it was skipped.
 *
 *   The W1 floor: one W1 step (64-32-10 tanh, MSE, batch 32, SGD) written by
 *   hand in C, with the five cblas_sgemm calls tapegrad makes (two forward,
 *   dW2, dA1, dW1) and fused loops for everything else: what the step costs
 *   without a tape.
 */
#include "bench.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef TG_BENCH_CBLAS
#include <cblas.h>
#endif
#ifdef TG_BENCH_FANN
#include <floatfann.h>
#endif

/* ====== FANN on W0 ====== */

#ifdef TG_BENCH_FANN
typedef struct fann_peer {
    struct fann *ann;
    float xs[20], ys[20];
} fann_peer;

static const char *fann_step(void *ctx, int64_t i)
{
    fann_peer *f = ctx;
    int64_t b = i % 10;
    fann_train(f->ann, f->xs + 2 * b, f->ys + 2 * b);
    return NULL;
}
#endif

void bench_fann_w0(const options *o, int threads, bool ftz)
{
#ifdef TG_BENCH_FANN
    fann_peer f;
    /* The points of bench_small's W0: the unit square, (1,0) below the diagonal. */
    tg_rng rng;
    tg_rng_seed(&rng, (uint64_t)o->seed + 1);
    for (int i = 0; i < 10; i++) {
        float a = (float)tg_rng_uniform(&rng), b = (float)tg_rng_uniform(&rng);
        f.xs[2 * i] = a, f.xs[2 * i + 1] = b;
        f.ys[2 * i] = a > b ? 1.0f : 0.0f, f.ys[2 * i + 1] = a > b ? 0.0f : 1.0f;
    }
    f.ann = fann_create_standard(3, 2, 3, 2);
    double *per = malloc((size_t)o->reps * sizeof *per);
    if (!f.ann || !per) child_fail(threads, "w0", "FANN setup", "out of memory");
    /* FANN_SIGMOID is 1/(1 + e^(-2 s x)): steepness 0.5 makes it the logistic
     * function. FANN_LINEAR is s x: steepness 1. The linear error function
     * makes the output error y - a, the gradient of 1/2 ||y - a||^2. */
    fann_set_activation_function_hidden(f.ann, FANN_SIGMOID);
    fann_set_activation_steepness_hidden(f.ann, 0.5f);
    fann_set_activation_function_output(f.ann, FANN_LINEAR);
    fann_set_activation_steepness_output(f.ann, 1.0f);
    fann_set_train_error_function(f.ann, FANN_ERRORFUNC_LINEAR);
    fann_set_training_algorithm(f.ann, FANN_TRAIN_INCREMENTAL);
    fann_set_learning_rate(f.ann, 0.05f);
    fann_set_learning_momentum(f.ann, 0.0f);
    srand((unsigned)o->seed);
    fann_randomize_weights(f.ann, -0.5f, 0.5f);
    timed_reps(fann_step, &f, W0_WARMUP, W0_STEPS, o->reps, per);
    emit("fann", "w0", threads, ftz, "s_per_step", per, o->reps,
         json_pack("{s:i, s:s}", "steps_per_rep", W0_STEPS, "version", "libfann 2.2 (float)"));
    free(per);
    fann_destroy(f.ann);
#else
    (void)o, (void)ftz;
    json_t *r = json_pack("{s:s, s:s, s:i, s:s}", "engine", "fann", "workload", "w0", "threads",
                          threads, "skipped", "FANN not found at build time (libfann-dev)");
    char *s = r ? json_dumps(r, JSON_COMPACT) : NULL;
    if (s) printf("%s\n", s);
    fflush(stdout);
    free(s);
    json_decref(r);
#endif
}

/* ====== The W1 step by hand ====== */

#ifdef TG_BENCH_CBLAS
enum { W1_IN = 64, W1_HID = 32, W1_OUT = 10 };

typedef struct w1_floor {
    float *xs, *ys; /* W1_POOL batches */
    float w1[W1_IN * W1_HID], b1[W1_HID], w2[W1_HID * W1_OUT], b2[W1_OUT];
    float a1[W1_BATCH * W1_HID], p[W1_BATCH * W1_OUT];
    float dw1[W1_IN * W1_HID], db1[W1_HID], dw2[W1_HID * W1_OUT], db2[W1_OUT];
    float da1[W1_BATCH * W1_HID];
    float loss;
} w1_floor;

/* tapegrad's F32 tanh (src/ops/elementwise.c), the same correctly rounded
 * kernel, so the floor does the same arithmetic the library does. */
static float tanh_f32(float x)
{
    uint32_t ux, uc, ut;
    memcpy(&ux, &x, sizeof ux);
    const uint32_t sign = ux & 0x80000000u;
    ux &= 0x7fffffffu;
    uc = ux < 0x41200000u ? ux : 0x41200000u;
    float cf;
    memcpy(&cf, &uc, sizeof cf);
    double y = 2 * (double)cf;
    double kd = y * 0x1.71547652b82fep0 + 0x1.8p52;
    uint64_t kb, sb;
    memcpy(&kb, &kd, sizeof kb);
    kd -= 0x1.8p52;
    double r = (y - kd * 0x1.62e42fefa3800p-1) - kd * 0x1.ef35793c7673p-45;
    /* clang-format off */
    double q = r * (1 + r * (1.0 / 2 + r * (1.0 / 6 + r * (1.0 / 24 + r * (1.0 / 120 +
               r * (1.0 / 720 + r * (1.0 / 5040 + r * (1.0 / 40320 + r * (1.0 / 362880 +
               r * (1.0 / 3628800 + r * (1.0 / 39916800 + r * (1.0 / 479001600 +
               r * (1.0 / 6227020800)))))))))))));
    /* clang-format on */
    sb = (kb + 1023) << 52;
    double scale;
    memcpy(&scale, &sb, sizeof scale);
    double e = scale * q + (scale - 1);
    float t = (float)(e / (e + 2));
    memcpy(&ut, &t, sizeof ut);
    ut |= sign | (ux > 0x7f800000u ? 0x7fc00000u : 0);
    memcpy(&t, &ut, sizeof t);
    return t;
}

static const char *w1_floor_step(void *ctx, int64_t i)
{
    w1_floor *f = ctx;
    const float *x = f->xs + (i % W1_POOL) * W1_BATCH * W1_IN;
    const float *y = f->ys + (i % W1_POOL) * W1_BATCH * W1_OUT;
    const int nb = W1_BATCH, ni = W1_IN, nh = W1_HID, no = W1_OUT;
    const float lr = 0.01f, scale = 2.0f / (float)(nb * no);
    /* Forward: A1 = tanh(X W1 + b1), P = A1 W2 + b2, loss = mean (P - Y)^2. */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nb, nh, ni, 1.0f, x, ni, f->w1, nh, 0.0f,
                f->a1, nh);
    for (int r = 0; r < nb; r++)
        for (int j = 0; j < nh; j++)
            f->a1[r * nh + j] = tanh_f32(f->a1[r * nh + j] + f->b1[j]);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nb, no, nh, 1.0f, f->a1, nh, f->w2, no,
                0.0f, f->p, no);
    double loss = 0;
    for (int r = 0; r < nb; r++)
        for (int j = 0; j < no; j++) {
            float d = f->p[r * no + j] + f->b2[j] - y[r * no + j];
            loss += (double)d * (double)d;
            f->p[r * no + j] = scale * d; /* now dP */
        }
    f->loss = (float)(loss / (nb * no));
    /* Backward: dW2 = A1^T dP, db2 = colsum dP, dA1 = dP W2^T, dZ1 = dA1 (1 - A1^2),
     * dW1 = X^T dZ1, db1 = colsum dZ1. */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nh, no, nb, 1.0f, f->a1, nh, f->p, no,
                0.0f, f->dw2, no);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, nh, no, 1.0f, f->p, no, f->w2, no,
                0.0f, f->da1, nh);
    memset(f->db2, 0, sizeof f->db2);
    memset(f->db1, 0, sizeof f->db1);
    for (int r = 0; r < nb; r++)
        for (int j = 0; j < no; j++)
            f->db2[j] += f->p[r * no + j];
    for (int r = 0; r < nb; r++)
        for (int j = 0; j < nh; j++) {
            float a = f->a1[r * nh + j];
            f->da1[r * nh + j] *= 1 - a * a;
            f->db1[j] += f->da1[r * nh + j];
        }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ni, nh, nb, 1.0f, x, ni, f->da1, nh, 0.0f,
                f->dw1, nh);
    /* SGD. */
    for (int k = 0; k < ni * nh; k++)
        f->w1[k] -= lr * f->dw1[k];
    for (int k = 0; k < nh; k++)
        f->b1[k] -= lr * f->db1[k];
    for (int k = 0; k < nh * no; k++)
        f->w2[k] -= lr * f->dw2[k];
    for (int k = 0; k < no; k++)
        f->b2[k] -= lr * f->db2[k];
    return NULL;
}
#endif

void bench_w1_floor(const options *o, int threads, bool ftz)
{
#ifdef TG_BENCH_CBLAS
    w1_floor *f = calloc(1, sizeof *f);
    double *per = malloc((size_t)o->reps * sizeof *per);
    if (f) {
        f->xs = malloc((size_t)W1_POOL * W1_BATCH * W1_IN * sizeof(float));
        f->ys = malloc((size_t)W1_POOL * W1_BATCH * W1_OUT * sizeof(float));
    }
    if (!f || !per || !f->xs || !f->ys) child_fail(threads, "w1", "C floor", "out of memory");
    /* bench_small's W1 data: the same seed, the same order of draws. */
    tg_rng rng;
    tg_rng_seed(&rng, (uint64_t)o->seed + 1);
    for (int i = 0; i < W1_POOL * W1_BATCH * W1_IN; i++)
        f->xs[i] = (float)tg_rng_normal(&rng);
    for (int i = 0; i < W1_POOL * W1_BATCH * W1_OUT; i++)
        f->ys[i] = (float)tg_rng_normal(&rng);
    double a1 = sqrt(6.0 / (W1_IN + W1_HID)), a2 = sqrt(6.0 / (W1_HID + W1_OUT));
    for (int k = 0; k < W1_IN * W1_HID; k++)
        f->w1[k] = (float)(a1 * (2 * tg_rng_uniform(&rng) - 1));
    for (int k = 0; k < W1_HID * W1_OUT; k++)
        f->w2[k] = (float)(a2 * (2 * tg_rng_uniform(&rng) - 1));
    timed_reps(w1_floor_step, f, W1_WARMUP, W1_STEPS, o->reps, per);
    emit("c_floor", "w1", threads, ftz, "s_per_step", per, o->reps,
         json_pack("{s:i, s:i, s:f}", "steps_per_rep", W1_STEPS, "sgemm_calls", 5, "loss",
                   (double)f->loss));
    free(f->xs);
    free(f->ys);
    free(f);
    free(per);
#else
    (void)o, (void)threads, (void)ftz;
#endif
}
