/*
 * tg_bench: tapegrad against PyTorch eager, and against the other peers and
 * floors we can run here, in one run, on the same shapes, in float32, with
 * the same thread count.
 *
 *     W0 seed-net  2-3-2, sigmoid hidden, linear out, C = 1/2 ||y - a||^2,
 *                  one sample per SGD step             time per step; FANN
 *     W1 tiny      64-32-10, tanh, MSE, batch 32, SGD  time per step; the same
 *                                                      step written by hand in C
 *     W2 fashion   784-256-128-10, ReLU, softmax CE, Adam 1e-3, batch 64,
 *                  Fashion-MNIST                       s per epoch, test accuracy;
 *                                                      a step beside its GEMM floor
 *     W3 large     784-1024-1024-10, ReLU, softmax CE, SGD, batch 256, random
 *                  data                                time per step, GFLOP/s,
 *                                                      GEMM floor, peak RSS
 *     W4 CNN       the Fashion-MNIST CNN of the examples, batch 100, Adam
 *                                                      time per step, im2col GEMM floor
 *     W5 LSTM      the character LSTM of the examples, 32 x 32 characters
 *                                                      time per step, replayed (W5)
 *                                                      and recorded every step (W5r)
 *     growth       chains of 10 to 10^6 one-element tanh nodes and of widths
 *                  1 to 4096: ns and heap bytes per node to record, replay and
 *                  differentiate
 *
 * With W0 it also measures the tape's own cost per node: replay and backward
 * of a chain of 1000 one-element negations (tapegrad only).
 *
 * The tapegrad side trains the way a user does: it records one step once and
 * then, every step, writes the batch into the input leaves, replays the tape,
 * zeroes the gradients, runs backward and steps the optimizer. It uses the
 * public API only, plus cblas_sgemm for the GEMM floors: the matrix products
 * a step makes, with the same shapes and transpose flags, timed alone
 * (common.c, peers.c and workloads.c hold the other peers and workloads).
 *
 * The program is its own driver. For every thread count it starts fresh child
 * processes (itself with --child, and bench/torch_bench.py under /usr/bin/python3
 * with --torch): W0 and W1 share one, every other workload has its own so
 * that its peak resident memory is its own. Children print one JSON object
 * per line; the driver merges them into tables. Every time is the median over
 * the repetitions that follow a warm-up.
 */
#include "bench.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef TG_BENCH_CBLAS
#include <cblas.h>
#endif

#ifndef TG_BENCH_TORCH_SCRIPT
#define TG_BENCH_TORCH_SCRIPT "bench/torch_bench.py"
#endif


/* ====== A network being trained: registry, MLP, optimizer, one recorded step ====== */

typedef enum loss_kind { LOSS_HALF_SQUARED, LOSS_MSE, LOSS_SOFTMAX_CE } loss_kind;

/* The calls of one step, for the breakdown of where a step's time goes. */
enum { PH_LOAD, PH_REPLAY, PH_ZERO_GRAD, PH_BACKWARD, PH_OPTIM, N_PHASES };
static const char *const phase_name[N_PHASES] = {"load_batch", "replay", "zero_grad", "backward",
                                                 "optim_step"};

typedef struct net {
    tg_params *ps;
    tg_mlp *mlp;
    tg_optim *opt;
    tg_tape *tp;
    tg_tensor *x, *y; /* input and target leaves of one batch */
    tg_tensor *loss;
    double *phase; /* when set, seconds spent in each phase are added here */
} net;

static void net_free(net *n)
{
    tg_tape_free(n->tp);
    tg_optim_free(n->opt);
    tg_mlp_free(n->mlp);
    tg_params_free(n->ps);
    tg_tensor_free(n->x);
    tg_tensor_free(n->y);
    memset(n, 0, sizeof *n);
}

/* Builds the network and records one training step on zero data; returns an
 * error text or NULL. */
static const char *net_init(net *n, int n_layers, const int64_t *sizes, const tg_activation *acts,
                            int64_t batch, loss_kind loss, const tg_optim_opts *oo, uint64_t seed)
{
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    memset(n, 0, sizeof *n);
    n->ps = tg_params_new();
    n->tp = tg_tape_new();
    n->x = tg_tensor_new(TG_F32, 2, (int64_t[]){batch, sizes[0]});
    n->y = tg_tensor_new(TG_F32, 2, (int64_t[]){batch, sizes[n_layers]});
    if (!n->ps || !n->tp || !n->x || !n->y) return "out of memory";
    n->mlp = tg_mlp_new(n->ps, "mlp", n_layers, sizes, acts, TG_F32, &rng);
    if (!n->mlp) return "tg_mlp_new failed";
    n->opt = tg_optim_new(n->ps, oo);
    if (!n->opt) return "tg_optim_new failed";
    tg_tensor *pred = tg_mlp_forward(n->tp, n->mlp, n->x);
    if (loss == LOSS_HALF_SQUARED)
        n->loss = tg_scale(n->tp, tg_frobenius_loss(n->tp, pred, n->y), 0.5);
    else if (loss == LOSS_MSE)
        n->loss = tg_mse_loss(n->tp, pred, n->y);
    else
        n->loss = tg_softmax_cross_entropy(n->tp, pred, n->y);
    if (tg_tape_status(n->tp) != TG_OK) return tg_tape_error(n->tp);
    return NULL;
}

/* With a breakdown running (n->phase set), adds the time since *t to phase
 * 'ph' and restarts *t; otherwise does nothing, so timed steps read no clock. */
static void lap(net *n, int ph, double *t)
{
    if (!n->phase) return;
    double now = now_s();
    n->phase[ph] += now - *t;
    *t = now;
}

/* One training step on whatever the leaves hold now. */
static const char *net_step(net *n)
{
    double t = n->phase ? now_s() : 0;
    tg_status s = tg_tape_replay(n->tp);
    lap(n, PH_REPLAY, &t);
    tg_params_zero_grad(n->ps);
    lap(n, PH_ZERO_GRAD, &t);
    if (s == TG_OK) s = tg_backward(n->tp, n->loss);
    lap(n, PH_BACKWARD, &t);
    if (s != TG_OK) return tg_tape_error(n->tp);
    if ((s = tg_optim_step(n->opt)) != TG_OK) return tg_status_str(s);
    lap(n, PH_OPTIM, &t);
    return NULL;
}

/* Microseconds per step spent in each call of the step (and in writing the
 * batch into the leaves), from a separate pass of 'steps' steps with a clock
 * read between the calls: about 20 ns each, which the small workloads' phases
 * carry on top. NULL and *err set when a step fails. */
static json_t *phase_breakdown(net *n, step_fn f, void *ctx, int64_t steps, const char **err)
{
    double acc[N_PHASES] = {0};
    n->phase = acc;
    *err = NULL;
    for (int64_t k = 0; k < steps && !*err; k++)
        *err = f(ctx, k);
    n->phase = NULL;
    if (*err) return NULL;
    json_t *j = json_object();
    for (int i = 0; i < N_PHASES; i++)
        json_object_set_new(j, phase_name[i], json_real(1e6 * acc[i] / (double)steps));
    return j;
}

/* ====== W0 seed-net and W1 tiny: per-step cost of a small network ====== */

typedef struct pool {
    net n;
    float *xs, *ys; /* 'count' batches of inputs and targets */
    int count;
    size_t x_bytes, y_bytes;
} pool;

static const char *pool_step(void *ctx, int64_t i)
{
    pool *p = ctx;
    int64_t b = i % p->count;
    double t = p->n.phase ? now_s() : 0;
    memcpy(tg_tensor_data(p->n.x), (char *)p->xs + (size_t)b * p->x_bytes, p->x_bytes);
    memcpy(tg_tensor_data(p->n.y), (char *)p->ys + (size_t)b * p->y_bytes, p->y_bytes);
    lap(&p->n, PH_LOAD, &t);
    return net_step(&p->n);
}

static void bench_small(const options *o, int threads, bool ftz, const char *workload)
{
    bool w0 = strcmp(workload, "w0") == 0;
    const int64_t sizes0[] = {2, 3, 2}, sizes1[] = {64, 32, 10};
    const tg_activation acts0[] = {TG_ACT_SIGMOID, TG_ACT_NONE},
                        acts1[] = {TG_ACT_TANH, TG_ACT_NONE};
    const int64_t *sizes = w0 ? sizes0 : sizes1;
    int64_t batch = w0 ? 1 : W1_BATCH;
    tg_optim_opts oo = {.kind = TG_OPTIM_SGD, .lr = w0 ? 0.05 : 0.01};
    pool p = {.count = w0 ? 10 : W1_POOL};
    const char *e = net_init(&p.n, 2, sizes, w0 ? acts0 : acts1, batch,
                             w0 ? LOSS_HALF_SQUARED : LOSS_MSE, &oo, (uint64_t)o->seed);
    if (e) child_fail(threads, workload, "setup", e);

    p.x_bytes = (size_t)(batch * sizes[0]) * sizeof(float);
    p.y_bytes = (size_t)(batch * sizes[2]) * sizeof(float);
    p.xs = malloc((size_t)p.count * p.x_bytes);
    p.ys = malloc((size_t)p.count * p.y_bytes);
    double *per = malloc((size_t)o->reps * sizeof *per);
    if (!p.xs || !p.ys || !per) child_fail(threads, workload, "setup", "out of memory");
    tg_rng rng;
    tg_rng_seed(&rng, (uint64_t)o->seed + 1);
    if (w0) { /* points in the unit square, class (1,0) below the diagonal, (0,1) above */
        for (int i = 0; i < p.count; i++) {
            float a = (float)tg_rng_uniform(&rng), b = (float)tg_rng_uniform(&rng);
            p.xs[2 * i] = a;
            p.xs[2 * i + 1] = b;
            p.ys[2 * i] = a > b ? 1.0f : 0.0f;
            p.ys[2 * i + 1] = a > b ? 0.0f : 1.0f;
        }
    } else {
        for (size_t i = 0; i < (size_t)p.count * p.x_bytes / sizeof(float); i++)
            p.xs[i] = (float)tg_rng_normal(&rng);
        for (size_t i = 0; i < (size_t)p.count * p.y_bytes / sizeof(float); i++)
            p.ys[i] = (float)tg_rng_normal(&rng);
    }
    e = timed_reps(pool_step, &p, w0 ? W0_WARMUP : W1_WARMUP, w0 ? W0_STEPS : W1_STEPS, o->reps,
                   per);
    json_t *phases = e ? NULL : phase_breakdown(&p.n, pool_step, &p, w0 ? W0_STEPS : W1_STEPS, &e);
    if (e) child_fail(threads, workload, "step", e);
    emit("tapegrad", workload, threads, ftz, "s_per_step", per, o->reps,
         json_pack("{s:i, s:i, s:o}", "steps_per_rep", w0 ? W0_STEPS : W1_STEPS, "tape_nodes",
                   (int)tg_tape_size(p.n.tp), "phase_us", phases));
    free(per);
    free(p.xs);
    free(p.ys);
    net_free(&p.n);
}

/* ====== Tape overhead: what a node costs beyond its op's arithmetic ====== */

/* A chain of CHAIN_NODES negations of a 1-element F32 leaf: the op does one
 * flop, so the time per node of a replay or a backward sweep is the tape's
 * own cost (the walk over the nodes, the call through the op definition, the
 * gradient bookkeeping). Run with W0. */
enum { CHAIN_NODES = 1000, CHAIN_WARMUP = 100, CHAIN_STEPS = 1000 };

typedef struct chain {
    tg_tape *tp;
    tg_tensor *x, *out;
} chain;

static const char *chain_replay(void *ctx, int64_t i)
{
    (void)i;
    chain *c = ctx;
    return tg_tape_replay(c->tp) == TG_OK ? NULL : tg_tape_error(c->tp);
}

static const char *chain_backward(void *ctx, int64_t i)
{
    (void)i;
    chain *c = ctx;
    return tg_backward(c->tp, c->out) == TG_OK ? NULL : tg_tape_error(c->tp);
}

static void bench_overhead(const options *o, int threads, bool ftz)
{
    chain c = {.tp = tg_tape_new(), .x = tg_tensor_new(TG_F32, 1, (int64_t[]){1})};
    double *per = malloc(2 * (size_t)o->reps * sizeof *per);
    if (!c.tp || !c.x || !per) child_fail(threads, "overhead", "setup", "out of memory");
    tg_tensor_set_requires_grad(c.x, true);
    c.out = c.x;
    for (int i = 0; i < CHAIN_NODES; i++)
        c.out = tg_neg(c.tp, c.out);
    if (tg_tape_status(c.tp) != TG_OK)
        child_fail(threads, "overhead", "setup", tg_tape_error(c.tp));
    double *bw = per + o->reps;
    const char *e = timed_reps(chain_replay, &c, CHAIN_WARMUP, CHAIN_STEPS, o->reps, per);
    if (!e) e = timed_reps(chain_backward, &c, CHAIN_WARMUP, CHAIN_STEPS, o->reps, bw);
    if (e) child_fail(threads, "overhead", "step", e);
    for (int r = 0; r < 2 * o->reps; r++)
        per[r] /= CHAIN_NODES;
    emit("tapegrad", "overhead", threads, ftz, "s_per_node", per, o->reps,
         json_pack("{s:i, s:f, s:f, s:f}", "nodes", CHAIN_NODES, "backward_median",
                   median(bw, o->reps), "backward_min", vmin(bw, o->reps), "backward_max",
                   vmax(bw, o->reps)));
    free(per);
    tg_tape_free(c.tp);
    tg_tensor_free(c.x);
}

/* ====== W2 fashion: an epoch of Fashion-MNIST ====== */

/* Loads one gzipped IDX file as F32 times 'scale'; exits the child on failure. */
static tg_tensor *load_idx(const options *o, int threads, const char *name, double scale)
{
    char path[4096];
    tg_error err = {0};
    tg_tensor *t = NULL;
    snprintf(path, sizeof path, "%s/%s", o->data, name);
    if (tg_idx_load(path, TG_F32, scale, &t, &err) != TG_OK)
        child_fail(threads, "w2", "loading Fashion-MNIST", err.msg);
    return t;
}

/* The first 'rows' rows of a [n, cols] leaf as a new leaf. */
static tg_tensor *first_rows(tg_tensor *t, int64_t rows)
{
    int64_t cols = tg_tensor_numel(t) / tg_tensor_shape(t)[0];
    return tg_tensor_from(TG_F32, 2, (int64_t[]){rows, cols}, tg_tensor_data(t));
}

/* Fraction of rows of x whose argmax logit is the label, in chunks through one replayed tape. */
static double accuracy(int threads, const tg_mlp *mlp, tg_tensor *x, tg_tensor *labels)
{
    int64_t n = tg_tensor_shape(x)[0], cols = tg_tensor_shape(x)[1], hits = 0;
    tg_tape *tp = tg_tape_new();
    tg_tensor *xc = tg_tensor_new(TG_F32, 2, (int64_t[]){EVAL_CHUNK, cols});
    tg_tensor *logits = tp && xc ? tg_mlp_forward(tp, mlp, xc) : NULL;
    if (!logits) child_fail(threads, "w2", "evaluation", tp ? tg_tape_error(tp) : "no memory");
    int64_t classes = tg_tensor_shape(logits)[1];
    const float *lab = tg_tensor_data(labels);
    for (int64_t r0 = 0; r0 < n; r0 += EVAL_CHUNK) {
        /* A short last chunk leaves stale rows after its end; they are not counted. */
        int64_t rows = n - r0 < EVAL_CHUNK ? n - r0 : EVAL_CHUNK;
        memcpy(tg_tensor_data(xc), (float *)tg_tensor_data(x) + r0 * cols,
               (size_t)(rows * cols) * sizeof(float));
        if (tg_tape_replay(tp) != TG_OK) child_fail(threads, "w2", "evaluation", tg_tape_error(tp));
        const float *l = tg_tensor_data(logits);
        for (int64_t i = 0; i < rows; i++) {
            int64_t best = 0;
            for (int64_t c = 1; c < classes; c++)
                if (l[i * classes + c] > l[i * classes + best]) best = c;
            hits += (float)best == lab[r0 + i];
        }
    }
    tg_tape_free(tp);
    tg_tensor_free(xc);
    return (double)hits / (double)n;
}

/* Trains up to 'max_steps' full batches (all of one epoch when negative). */
static const char *train_epoch(net *n, tg_batcher *b, int64_t max_steps)
{
    int64_t got, steps = 0;
    const char *e;
    while ((got = tg_batcher_next(b, n->x, n->y)) > 0) {
        /* The last partial batch is dropped (the tape holds a full-batch graph). */
        if (got < W2_BATCH) continue;
        if (max_steps >= 0 && steps >= max_steps) break;
        if ((e = net_step(n))) return e;
        steps++;
    }
    return got < 0 ? "tg_batcher_next: shapes do not match" : NULL;
}

static void bench_fashion(const options *o, int threads, bool ftz, long base_rss)
{
    const int64_t sizes[] = {784, 256, 128, 10};
    const tg_activation acts[] = {TG_ACT_RELU, TG_ACT_RELU, TG_ACT_NONE};
    tg_optim_opts oo = {.kind = TG_OPTIM_ADAM, .lr = 1e-3};
    tg_tensor *xtr = load_idx(o, threads, "train-images-idx3-ubyte.gz", 1.0 / 255);
    tg_tensor *ltr = load_idx(o, threads, "train-labels-idx1-ubyte.gz", 1.0);
    tg_tensor *xte = load_idx(o, threads, "t10k-images-idx3-ubyte.gz", 1.0 / 255);
    tg_tensor *lte = load_idx(o, threads, "t10k-labels-idx1-ubyte.gz", 1.0);
    int64_t ntr = tg_tensor_shape(xtr)[0], nte = tg_tensor_shape(xte)[0];
    if (tg_tensor_reshape(xtr, 2, (int64_t[]){ntr, 784}) != TG_OK ||
        tg_tensor_reshape(xte, 2, (int64_t[]){nte, 784}) != TG_OK)
        child_fail(threads, "w2", "setup", "images are not 28x28");
    if (o->w2_train > 0 && o->w2_train < ntr) {
        tg_tensor *xs = first_rows(xtr, o->w2_train),
                  *ls = tg_tensor_from(TG_F32, 1, (int64_t[]){o->w2_train}, tg_tensor_data(ltr));
        tg_tensor_free(xtr);
        tg_tensor_free(ltr);
        xtr = xs;
        ltr = ls;
        ntr = o->w2_train;
    }
    tg_tensor *ytr = xtr && ltr ? tg_one_hot(ltr, 10, TG_F32) : NULL;
    int n_per = o->w2_reps * o->w2_epochs;
    double *per = malloc((size_t)n_per * sizeof *per);
    if (!ytr || !per) child_fail(threads, "w2", "setup", "out of memory or bad labels");

    double acc = 0;
    const char *e = NULL;
    for (int r = -1; r < o->w2_reps && !e; r++) { /* r = -1: the warm-up */
        net n;
        tg_batcher *b = NULL;
        if (!(e = net_init(&n, 3, sizes, acts, W2_BATCH, LOSS_SOFTMAX_CE, &oo, (uint64_t)o->seed)))
            b = tg_batcher_new(xtr, ytr, W2_BATCH, true, (uint64_t)o->seed);
        if (!e && !b) e = "tg_batcher_new failed";
        for (int ep = 0; ep < (r < 0 ? 1 : o->w2_epochs) && !e; ep++) {
            double t0 = now_s();
            e = train_epoch(&n, b, r < 0 ? W2_WARMUP : -1);
            if (r >= 0) per[r * o->w2_epochs + ep] = now_s() - t0;
        }
        if (!e && r >= 0) {
            acc = accuracy(threads, n.mlp, xte, lte);
            fprintf(stderr, "tg_bench: w2 threads=%d: %.3f s/epoch, test accuracy %.4f\n", threads,
                    per[r * o->w2_epochs + o->w2_epochs - 1], acc);
        }
        tg_batcher_free(b);
        net_free(&n);
    }
    if (e) child_fail(threads, "w2", "training", e);
    emit("tapegrad", "w2", threads, ftz, "s_per_epoch", per, n_per,
         json_pack("{s:f, s:i, s:I, s:I, s:I, s:I}", "accuracy", acc, "epochs", o->w2_epochs,
                   "train_rows", (json_int_t)(ntr / W2_BATCH * W2_BATCH), "steps_per_epoch",
                   (json_int_t)(ntr / W2_BATCH), "maxrss_kb", (json_int_t)maxrss_kb(),
                   "base_rss_kb", (json_int_t)base_rss));
    free(per);
    tg_tensor_free(xtr);
    tg_tensor_free(ltr);
    tg_tensor_free(ytr);
    tg_tensor_free(xte);
    tg_tensor_free(lte);
}

/* ====== W3 large, and W2's steps alone: GEMM-bound steps beside their GEMM floor ====== */

/* An MLP trained step by step on one fixed random batch, for the ratio to
 * its GEMM floor: W3 (SGD, batch 256), and W2's network and optimizer (Adam,
 * batch 64), whose epochs bench_fashion times on the real data. */
typedef struct mlp_spec {
    const char *id; /* "w3" or "w2step" */
    int n_layers;
    const int64_t *sizes;
    int64_t batch;
    tg_optim_opts oo;
    int warmup, steps;
} mlp_spec;

static const mlp_spec w3_spec = {"w3", W3_LAYERS, w3_sizes, W3_BATCH,
                                 {.kind = TG_OPTIM_SGD, .lr = 0.01}, W3_WARMUP, W3_STEPS};
static const mlp_spec w2_step_spec = {"w2step", W2_LAYERS, w2_sizes, W2_BATCH,
                                      {.kind = TG_OPTIM_ADAM, .lr = 1e-3}, W2_STEP_WARMUP, W2_STEPS};

/* Matrix-product FLOPs of one step: 2 B in out per GEMM, three GEMMs per layer
 * (forward, dW, dX) except the first layer, whose input needs no gradient. */
static double mlp_flop(const mlp_spec *sp)
{
    double f = 0;
    for (int l = 0; l < sp->n_layers; l++)
        f += (l ? 3.0 : 2.0) * 2.0 * (double)sp->batch * (double)sp->sizes[l] *
             (double)sp->sizes[l + 1];
    return f;
}

static const char *mlp_step(void *ctx, int64_t i)
{
    (void)i;
    return net_step(ctx);
}

/* The repetitions of the tapegrad steps and of the GEMM floor alternate, so
 * both see the same machine: on a shared one its speed drifts by more than the
 * difference being measured. The phase breakdown and the peak memory are taken
 * first, before the floor's own buffers exist. */
static void bench_mlp_floor(const options *o, int threads, bool ftz, long base_rss,
                            const mlp_spec *sp)
{
    const tg_activation acts[] = {TG_ACT_RELU, TG_ACT_RELU, TG_ACT_NONE};
    net n;
    const char *e = net_init(&n, sp->n_layers, sp->sizes, acts, sp->batch, LOSS_SOFTMAX_CE,
                             &sp->oo, (uint64_t)o->seed);
    double *per = malloc(2 * (size_t)o->reps * sizeof *per); /* tapegrad, then the floor */
    if (!e && !per) e = "out of memory";
    if (e) child_fail(threads, sp->id, "setup", e);
    tg_rng r;
    tg_rng_seed(&r, (uint64_t)o->seed + 3);
    float *x = tg_tensor_data(n.x), *y = tg_tensor_data(n.y);
    int64_t classes = sp->sizes[sp->n_layers];
    for (int64_t i = 0; i < tg_tensor_numel(n.x); i++)
        x[i] = (float)tg_rng_uniform(&r);
    for (int64_t i = 0; i < sp->batch; i++)
        y[i * classes + (int64_t)tg_rng_below(&r, (uint64_t)classes)] = 1;

    json_t *phases = NULL;
    if (!(e = timed_reps(mlp_step, &n, sp->warmup, 0, 0, NULL)))
        phases = phase_breakdown(&n, mlp_step, &n, (int64_t)o->reps * sp->steps, &e);
    if (e) child_fail(threads, sp->id, "step", e);
    long peak = maxrss_kb();
#ifdef TG_BENCH_CBLAS
    double *floor_per = per + o->reps;
    floor_plan fp;
    if (!floor_plan_mlp(&fp, sp->n_layers, sp->sizes, sp->batch, (uint64_t)o->seed))
        child_fail(threads, sp->id, "GEMM floor", "out of memory");
    timed_reps(floor_step, &fp, sp->warmup, 0, 0, NULL);
    for (int k = 0; k < o->reps && !e; k++)
        if (!(e = timed_reps(mlp_step, &n, 0, sp->steps, 1, per + k)))
            timed_reps(floor_step, &fp, 0, sp->steps, 1, floor_per + k);
#else
    e = timed_reps(mlp_step, &n, 0, sp->steps, o->reps, per);
#endif
    if (e) child_fail(threads, sp->id, "step", e);
    double flop = mlp_flop(sp), med = median(per, o->reps);
    emit("tapegrad", sp->id, threads, ftz, "s_per_step", per, o->reps,
         json_pack("{s:i, s:f, s:I, s:I, s:i, s:o}", "steps_per_rep", sp->steps, "gflops",
                   flop / med / 1e9, "maxrss_kb", (json_int_t)peak, "base_rss_kb",
                   (json_int_t)base_rss, "tape_nodes", (int)tg_tape_size(n.tp), "phase_us",
                   phases));
    net_free(&n);
#ifdef TG_BENCH_CBLAS
    med = median(floor_per, o->reps);
    emit("gemm_floor", sp->id, threads, ftz, "s_per_step", floor_per, o->reps,
         json_pack("{s:i, s:f, s:i}", "steps_per_rep", sp->steps, "gflops", flop / med / 1e9,
                   "sgemm_calls", fp.n_calls));
    floor_plan_free(&fp);
#endif
    free(per);
}

/* ====== Child: run the workloads for one thread count, print JSON lines ====== */

static int run_child(const options *o)
{
    long base_rss = maxrss_kb();
    int threads = o->threads[0];
    tg_set_num_threads(threads);
    bool ftz = tg_set_flush_denormals(o->ftz) && o->ftz;
#ifdef TG_BENCH_CBLAS
    const bool cblas_floor = true;
#else
    const bool cblas_floor = false;
#endif
    json_t *info = json_pack("{s:s, s:b, s:s, s:i, s:i, s:b, s:b}", "engine", "tapegrad", "info", 1,
                             "version", tg_version_string(), "threads", threads, "blas_threads",
                             tg_get_num_threads(), "ftz", ftz, "cblas_floor", cblas_floor);
    char *s = info ? json_dumps(info, JSON_COMPACT) : NULL;
    if (s) printf("%s\n", s);
    fflush(stdout);
    free(s);
    json_decref(info);
    static const char *const order[] = {"w0", "w1", "w2", "w3", "w4", "w5", "w5r", "growth"};
    for (int i = 0; i < (int)(sizeof order / sizeof *order); i++) {
        if (!has_workload(o, order[i])) continue;
        fprintf(stderr, "tg_bench: %s threads=%d\n", order[i], threads);
        switch (i) {
        case 0:
            bench_small(o, threads, ftz, "w0");
            bench_fann_w0(o, threads, ftz);
            bench_overhead(o, threads, ftz);
            break;
        case 1:
            bench_small(o, threads, ftz, "w1");
            bench_w1_floor(o, threads, ftz);
            break;
        case 2:
            bench_fashion(o, threads, ftz, base_rss);
            bench_mlp_floor(o, threads, ftz, base_rss, &w2_step_spec);
            break;
        case 3:
            bench_mlp_floor(o, threads, ftz, base_rss, &w3_spec);
            break;
        case 4:
            bench_cnn(o, threads, ftz, base_rss);
            break;
        case 5:
        case 6:
            bench_lstm(o, threads, ftz, base_rss, i == 6);
            break;
        default:
            bench_growth(o, threads, ftz);
            break;
        }
    }
    return EXIT_SUCCESS;
}

/* ====== Driver: spawn the children, collect their records ====== */

typedef struct records {
    json_t *all;         /* array of every record received */
    char torch_err[512]; /* why the PyTorch column is missing, "" when it is not */
} records;

/* Busy seconds of every CPU of the machine so far, from /proc/stat
 * (time stolen by the hypervisor counts as busy); false when unreadable. */
static bool machine_cpu(double *busy)
{
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    int got = f ? fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
                         &v[3], &v[4], &v[5], &v[6], &v[7])
                : 0;
    if (f) fclose(f);
    if (got != 8) return false;
    double hz = (double)sysconf(_SC_CLK_TCK), sum = 0;
    for (int i = 0; i < 8; i++)
        sum += (double)v[i];
    *busy = (sum - (double)v[3] - (double)v[4]) / hz; /* minus idle and iowait */
    return true;
}

static double children_cpu(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_CHILDREN, &ru) != 0) return 0;
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           1e-6 * (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* Runs argv with stdout on a pipe and 'env' (name, value, name, value, ..., NULL)
 * set in its environment; keeps every JSON line it prints, each marked with
 * "other_load": the CPUs that other processes kept busy meanwhile, on average,
 * so a noisy measurement shows as one. Returns the exit status, -1 when it
 * could not start. */
static int spawn_collect(char *const argv[], const char *const *env, json_t *into)
{
    int fd[2];
    double busy0 = 0, busy1 = 0, own0 = children_cpu(), t0 = now_s();
    bool have_cpu = machine_cpu(&busy0);
    size_t first = json_array_size(into);
    fflush(stdout);
    if (pipe(fd) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(fd[0]);
        close(fd[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(fd[1], STDOUT_FILENO);
        close(fd[0]);
        close(fd[1]);
        for (int i = 0; env && env[i] && env[i + 1]; i += 2)
            setenv(env[i], env[i + 1], 1);
        execv(argv[0], argv);
        fprintf(stderr, "tg_bench: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(fd[1]);
    FILE *in = fdopen(fd[0], "r");
    char *line = NULL;
    size_t cap = 0;
    while (in && getline(&line, &cap, in) > 0) {
        json_error_t jerr;
        json_t *j = json_loads(line, 0, &jerr);
        if (json_is_object(j))
            json_array_append_new(into, j);
        else {
            json_decref(j);
            fprintf(stderr, "%s", line); /* not a record: pass it on */
        }
    }
    free(line);
    if (in)
        fclose(in);
    else
        close(fd[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    double wall = now_s() - t0, own = children_cpu() - own0;
    if (have_cpu && machine_cpu(&busy1) && wall > 0) {
        double other = (busy1 - busy0 - own) / wall;
        for (size_t i = first; i < json_array_size(into); i++)
            json_object_set_new(json_array_get(into, i), "other_load",
                                json_real(other > 0 ? other : 0));
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

/* The record of 'engine' for (workload, threads), or NULL. */
static json_t *find(const records *rec, const char *engine, const char *workload, int threads)
{
    size_t i;
    json_t *r;
    json_array_foreach(rec->all, i, r)
    {
        if (json_integer_value(json_object_get(r, "threads")) != threads) continue;
        const char *e = json_string_value(json_object_get(r, "engine"));
        const char *w = json_string_value(json_object_get(r, "workload"));
        if (e && w && strcmp(e, engine) == 0 && strcmp(w, workload) == 0) return r;
    }
    return NULL;
}

static json_t *find_info(const records *rec, const char *engine, int threads)
{
    size_t i;
    json_t *r;
    json_array_foreach(rec->all, i, r)
    {
        const char *e = json_string_value(json_object_get(r, "engine"));
        if (e && strcmp(e, engine) == 0 && json_is_true(json_object_get(r, "info")) &&
            json_integer_value(json_object_get(r, "threads")) == threads)
            return r;
    }
    return NULL;
}

static double num(const json_t *r, const char *key)
{
    const json_t *v = r ? json_object_get(r, key) : NULL;
    return json_is_number(v) ? json_number_value(v) : (double)NAN;
}

/* Runs a child, again (up to o->retries times, within the time budget) while
 * other processes kept more than o->noise CPUs busy during it, and keeps the
 * quietest attempt's records. Returns that attempt's exit status. */
static int spawn_quiet(const options *o, char *const argv[], const char *const *env, records *rec,
                       const char *what)
{
    json_t *best = NULL;
    double best_load = INFINITY;
    int best_st = -1;
    for (int attempt = 0;; attempt++) {
        json_t *got = json_array();
        if (!got) break;
        int st = spawn_collect(argv, env, got);
        double load = 0;
        size_t i;
        json_t *r;
        json_array_foreach(got, i, r) load = fmax(load, num(r, "other_load"));
        if (!best || load < best_load) {
            json_decref(best);
            best = got, best_load = load, best_st = st;
        } else {
            json_decref(got);
        }
        if (st != 0 || best_load <= o->noise || attempt >= o->retries ||
            now_s() - o->t_start > RETRY_BUDGET_S)
            break;
        fprintf(stderr, "tg_bench: %s: other processes kept %.2f CPUs busy; running it again\n",
                what, load);
    }
    if (best) json_array_extend(rec->all, best);
    json_decref(best);
    return best_st;
}

/* The parameters every child gets, tapegrad's and PyTorch's alike. */
typedef struct child_args {
    char threads[16], reps[16], w2_reps[16], w2_epochs[16], w2_train[32], seed[32], growth[32];
} child_args;

static void child_args_fill(child_args *a, const options *o, int threads)
{
    snprintf(a->threads, sizeof a->threads, "%d", threads);
    snprintf(a->reps, sizeof a->reps, "%d", o->reps);
    snprintf(a->w2_reps, sizeof a->w2_reps, "%d", o->w2_reps);
    snprintf(a->w2_epochs, sizeof a->w2_epochs, "%d", o->w2_epochs);
    snprintf(a->w2_train, sizeof a->w2_train, "%ld", o->w2_train);
    snprintf(a->growth, sizeof a->growth, "%ld", o->growth_max);
    snprintf(a->seed, sizeof a->seed, "%ld", o->seed);
}

static void run_tapegrad(const options *o, const char *self, int threads, const char *workloads,
                         records *rec)
{
    child_args a;
    child_args_fill(&a, o, threads);
    /* clang-format off */
    char *argv[] = {(char *)self, "--child", "--threads", a.threads, "--workloads",
                    (char *)workloads, "--reps", a.reps, "--w2-reps", a.w2_reps,
                    "--w2-epochs", a.w2_epochs, "--w2-train", a.w2_train, "--seed", a.seed,
                    "--growth-max", a.growth, "--data", (char *)o->data,
                    o->ftz ? "--ftz" : "--no-ftz", NULL};
    /* clang-format on */
    char what[96];
    snprintf(what, sizeof what, "tapegrad %s, %d thread%s", workloads, threads,
             threads == 1 ? "" : "s");
    int st = spawn_quiet(o, argv, NULL, rec, what);
    if (st != 0) fprintf(stderr, "tg_bench: %s: the child exited with %d\n", what, st);
}

static void run_torch(const options *o, int threads, const char *workloads, records *rec)
{
    if (rec->torch_err[0]) return;
    child_args a;
    child_args_fill(&a, o, threads);
    /* clang-format off */
    char *argv[] = {(char *)o->python, (char *)o->script, "--threads", a.threads, "--workloads",
                    (char *)workloads, "--reps", a.reps, "--w2-reps", a.w2_reps,
                    "--w2-epochs", a.w2_epochs, "--w2-train", a.w2_train, "--seed", a.seed,
                    "--data", (char *)o->data, "--ftz", o->ftz ? "1" : "0", NULL};
    /* torch.set_num_threads sizes the OpenMP pool only; its BLAS (OpenBLAS)
     * takes the count from the environment. A passive OpenMP wait keeps the
     * OpenMP workers from spinning against the BLAS threads on the same cores. */
    const char *env[] = {"OPENBLAS_NUM_THREADS", a.threads, "OMP_NUM_THREADS", a.threads,
                         "OMP_WAIT_POLICY", o->omp_active ? "ACTIVE" : "PASSIVE", NULL};
    /* clang-format on */
    char what[96];
    snprintf(what, sizeof what, "PyTorch %s, %d thread%s", workloads, threads,
             threads == 1 ? "" : "s");
    size_t before = json_array_size(rec->all);
    int st = spawn_quiet(o, argv, env, rec, what);
    for (size_t i = before; i < json_array_size(rec->all); i++) {
        json_t *r = json_array_get(rec->all, i);
        const char *err = json_string_value(json_object_get(r, "error"));
        if (err && !json_object_get(r, "workload"))
            snprintf(rec->torch_err, sizeof rec->torch_err, "%s", err);
    }
    if (st != 0 && !rec->torch_err[0])
        snprintf(rec->torch_err, sizeof rec->torch_err, "%s %s exited with status %d", o->python,
                 o->script, st);
}

/* ====== Driver: the table ====== */

static void cpu_model(char *buf, size_t size)
{
    snprintf(buf, size, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        char *c = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && c) {
            snprintf(buf, size, "%s", c + 2);
            buf[strcspn(buf, "\n")] = '\0';
            break;
        }
    }
    if (f) fclose(f);
}

typedef struct wl_row {
    const char *id, *label, *unit;
    double scale; /* seconds -> unit */
} wl_row;

static const wl_row wl_rows[] = {
    {"w0", "W0 seed-net 2-3-2 sigmoid, 1 sample SGD", "us/step", 1e6},
    {"w1", "W1 tiny 64-32-10 tanh MSE b32 SGD", "us/step", 1e6},
    {"w2", "W2 fashion 784-256-128-10 Adam b64", "s/epoch", 1.0},
    {"w3", "W3 large 784-1024-1024-10 SGD b256", "ms/step", 1e3},
    {"w4", "W4 CNN conv32-bn-pool-conv64-bn-pool b100", "ms/step", 1e3},
    {"w5", "W5 char LSTM 32x32 steps, H128, replayed", "ms/step", 1e3},
    {"w5r", "W5r the same, recorded every step", "ms/step", 1e3},
};

/* A ratio of tapegrad to another engine or a floor, in the second table. */
typedef struct peer_row {
    const char *label, *workload, *engine, *peer, *unit;
    double scale;
} peer_row;

static const peer_row peer_rows[] = {
    {"W0 vs FANN 2.2 (same net, SGD)", "w0", "fann", "FANN", "us/step", 1e6},
    {"W1 vs hand-written C, same sgemm calls", "w1", "c_floor", "C floor", "us/step", 1e6},
    {"W2 step (Adam, b64) vs GEMM floor", "w2step", "gemm_floor", "GEMM", "ms/step", 1e3},
    {"W3 step vs GEMM floor", "w3", "gemm_floor", "GEMM", "ms/step", 1e3},
    {"W4 step vs im2col GEMM floor", "w4", "gemm_floor", "GEMM", "ms/step", 1e3},
};

static void fmt_time(char *buf, size_t size, const json_t *r, double scale)
{
    const char *err = r ? json_string_value(json_object_get(r, "error")) : NULL;
    double v = num(r, "median") * scale;
    if (err)
        snprintf(buf, size, "error");
    else if (isnan(v))
        snprintf(buf, size, "n/a");
    else
        snprintf(buf, size, v < 10 ? "%.3f" : v < 100 ? "%.2f" : "%.1f", v);
}

/* v with 1 (per = 10) or 3 (per = 1000) decimals, "n/a" when unknown. */
static void fmt_num(char *buf, size_t size, double v, int per)
{
    if (isnan(v) || isinf(v))
        snprintf(buf, size, "n/a");
    else if (per >= 1000)
        snprintf(buf, size, "%.3f", v);
    else
        snprintf(buf, size, "%.1f", v);
}

/* tapegrad against FANN, the hand-written step and the GEMM floors. */
static void print_peers(const options *o, const records *rec)
{
    printf("\n%-42s %3s %9s %9s %9s %8s %8s\n", "peers and floors", "T", "tapegrad", "peer",
           "unit", "peer", "tg/peer");
    for (size_t w = 0; w < sizeof peer_rows / sizeof *peer_rows; w++) {
        const peer_row *pr = &peer_rows[w];
        bool any = false;
        for (int k = 0; k < o->n_threads; k++) {
            int t = o->threads[k];
            const json_t *g = find(rec, "tapegrad", pr->workload, t);
            const json_t *p = find(rec, pr->engine, pr->workload, t);
            if (!g && !p) continue;
            char gs[32], ps[32], ratio[16];
            fmt_time(gs, sizeof gs, g, pr->scale);
            fmt_time(ps, sizeof ps, p, pr->scale);
            fmt_num(ratio, sizeof ratio, num(g, "median") / num(p, "median"), 1000);
            const char *skip = p ? json_string_value(json_object_get(p, "skipped")) : NULL;
            printf("%-42s %3d %9s %9s %9s %8s %8s%s%s\n", any ? "" : pr->label, t, gs, ps,
                   pr->unit, pr->peer, ratio, skip ? "  skipped: " : "", skip ? skip : "");
            any = true;
        }
    }
}

/* The growth sweep: ns and bytes per node as chains get longer and wider. */
static void print_growth(const options *o, const records *rec)
{
    bool header = false;
    for (int k = 0; k < o->n_threads; k++) {
        size_t i;
        json_t *r;
        json_array_foreach(rec->all, i, r)
        {
            const char *w = json_string_value(json_object_get(r, "workload"));
            if (!w || strcmp(w, "growth") != 0 ||
                json_integer_value(json_object_get(r, "threads")) != o->threads[k])
                continue;
            if (json_object_get(r, "error")) {
                printf("growth T=%d: %s\n", o->threads[k],
                       json_string_value(json_object_get(r, "error")));
                continue;
            }
            if (!header)
                printf("\ngrowth: one tg_tanh per node (medians; ns per node; bytes per node "
                       "that the heap reserved and that became resident, after recording and "
                       "after the first backward)\n%3s %8s %6s %9s %9s %8s %9s %8s %7s %7s %7s "
                       "%7s\n",
                       "T", "nodes", "width", "rec first", "re-record", "replay", "bw first",
                       "backward", "heap", "+grad", "res", "+grad");
            header = true;
            printf("%3d %8.0f %6.0f %9.1f %9.1f %8.1f %9.1f %8.1f %7.0f %7.0f %7.0f %7.0f\n",
                   o->threads[k], num(r, "nodes"), num(r, "width"), num(r, "record_first_ns"),
                   num(r, "record_ns"), num(r, "replay_ns"), num(r, "backward_first_ns"),
                   num(r, "backward_ns"), num(r, "bytes_record"), num(r, "bytes_backward"),
                   num(r, "resident_record"), num(r, "resident_backward"));
        }
    }
}

/* Peak resident memory of the workloads that run in a process of their own. */
static void print_rss(const options *o, const records *rec)
{
    static const char *const ids[] = {"w2", "w3", "w4", "w5", "w5r"};
    bool header = false;
    for (size_t w = 0; w < sizeof ids / sizeof *ids; w++)
        for (int k = 0; k < o->n_threads; k++) {
            const json_t *g = find(rec, "tapegrad", ids[w], o->threads[k]);
            const json_t *p = find(rec, "torch", ids[w], o->threads[k]);
            if (!json_is_number(json_object_get(g, "maxrss_kb"))) continue;
            if (!header)
                printf("\npeak RSS, MiB (ru_maxrss of the workload's process; in parentheses "
                       "before the workload)\n%-6s %3s %18s %18s %8s\n",
                       "", "T", "tapegrad", "PyTorch", "tg/torch");
            header = true;
            char gm[16], gb[16], pm[16], pb[16], q[16];
            fmt_num(gm, sizeof gm, num(g, "maxrss_kb") / 1024, 10);
            fmt_num(gb, sizeof gb, num(g, "base_rss_kb") / 1024, 10);
            fmt_num(pm, sizeof pm, num(p, "maxrss_kb") / 1024, 10);
            fmt_num(pb, sizeof pb, num(p, "base_rss_kb") / 1024, 10);
            fmt_num(q, sizeof q, num(g, "maxrss_kb") / num(p, "maxrss_kb"), 1000);
            printf("%-6s %3d %9s (%6s) %9s (%6s) %8s\n", ids[w], o->threads[k], gm, gb, pm, pb,
                   q);
        }
}

static void print_table(const options *o, const records *rec)
{
    char cpu[256], load[64] = "?";
    cpu_model(cpu, sizeof cpu);
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (!fgets(load, sizeof load, f)) snprintf(load, sizeof load, "?");
        load[strcspn(load, "\n")] = '\0';
        fclose(f);
    }
    const json_t *tinfo = find_info(rec, "torch", o->threads[0]);
    const json_t *ginfo = find_info(rec, "tapegrad", o->threads[0]);
    const char *tv = tinfo ? json_string_value(json_object_get(tinfo, "version")) : NULL;
    printf("\n== tapegrad %s vs PyTorch %s, float32 ==\n", tg_version_string(),
           tv ? tv : "(not run)");
    printf("machine: %s, %ld online CPUs; load average at the end: %s\n", cpu,
           sysconf(_SC_NPROCESSORS_ONLN), load);
    printf("timing: median of %d repetitions after warm-up (W2: %d repetition%s of %d epoch%s, "
           "each from a fresh model)\n",
           o->reps, o->w2_reps, o->w2_reps == 1 ? "" : "s", o->w2_epochs,
           o->w2_epochs == 1 ? "" : "s");
    printf("FTZ/DAZ: tapegrad %s (tg_set_flush_denormals), PyTorch %s (torch.set_flush_denormal)\n",
           ginfo ? (json_is_true(json_object_get(ginfo, "ftz")) ? "on" : "off") : "?",
           tinfo ? (json_is_true(json_object_get(tinfo, "ftz")) ? "on" : "off") : "-");
    printf("threads: tapegrad tg_set_num_threads(T); PyTorch torch.set_num_threads(T) with "
           "OPENBLAS_NUM_THREADS=T, OMP_WAIT_POLICY=%s\n",
           o->omp_active ? "ACTIVE" : "PASSIVE");
    for (int k = 0; k < o->n_threads; k++) {
        const json_t *gi = find_info(rec, "tapegrad", o->threads[k]);
        const json_t *ti = find_info(rec, "torch", o->threads[k]);
        printf("  T=%d: tg_get_num_threads() = %.0f", o->threads[k], num(gi, "blas_threads"));
        if (ti) printf(", torch.get_num_threads() = %.0f", num(ti, "torch_threads"));
        printf("\n");
    }
    if (rec->torch_err[0]) printf("PyTorch column skipped: %s\n", rec->torch_err);

    printf("\n%-42s %3s %9s %9s %10s %8s  %s\n", "workload", "T", "tapegrad", "PyTorch", "unit",
           "tg/torch", "notes");
    for (size_t w = 0; w < sizeof wl_rows / sizeof *wl_rows; w++) {
        if (!has_workload(o, wl_rows[w].id)) continue;
        for (int k = 0; k < o->n_threads; k++) {
            int t = o->threads[k];
            const json_t *g = find(rec, "tapegrad", wl_rows[w].id, t);
            const json_t *p = find(rec, "torch", wl_rows[w].id, t);
            char gs[32], ps[32], ratio[16], notes[256] = "";
            fmt_time(gs, sizeof gs, g, wl_rows[w].scale);
            fmt_time(ps, sizeof ps, p, wl_rows[w].scale);
            fmt_num(ratio, sizeof ratio, num(g, "median") / num(p, "median"), 1000);
            if (strcmp(wl_rows[w].id, "w2") == 0) {
                char ga[16], pa[16];
                fmt_num(ga, sizeof ga, num(g, "accuracy"), 1000);
                fmt_num(pa, sizeof pa, num(p, "accuracy"), 1000);
                snprintf(notes, sizeof notes, "test acc %s / %s after %d epoch%s, %.0f rows", ga,
                         pa, o->w2_epochs, o->w2_epochs == 1 ? "" : "s", num(g, "train_rows"));
            }
            double bg = fmax(num(g, "other_load"), num(p, "other_load"));
            if (bg > 0.1) /* fmax ignores a NaN */
                snprintf(notes + strlen(notes), sizeof notes - strlen(notes),
                         "%sothers kept %.2f / %.2f CPUs busy", notes[0] ? "; " : "",
                         num(g, "other_load"), num(p, "other_load"));
            const char *err = g ? json_string_value(json_object_get(g, "error")) : NULL;
            const char *perr = p ? json_string_value(json_object_get(p, "error")) : NULL;
            if (err || perr)
                snprintf(notes, sizeof notes, "%s: %s", err ? "tapegrad" : "PyTorch",
                         err ? err : perr);
            printf("%-42s %3d %9s %9s %10s %8s  %s\n", k == 0 ? wl_rows[w].label : "", t, gs, ps,
                   wl_rows[w].unit, ratio, notes);
        }
    }
    printf("\ntapegrad step breakdown (us per step, mean of a separate pass with a clock read "
           "between calls)\n%-6s %3s %10s %10s %10s %10s %10s %10s\n",
           "", "T", "load", "replay", "zero_grad", "backward", "optim", "sum");
    static const char *const phase_ids[] = {"w0", "w1", "w2step", "w3"};
    for (size_t w = 0; w < sizeof phase_ids / sizeof *phase_ids; w++) {
        for (int k = 0; k < o->n_threads; k++) {
            const json_t *g = find(rec, "tapegrad", phase_ids[w], o->threads[k]);
            const json_t *ph = g ? json_object_get(g, "phase_us") : NULL;
            if (!json_is_object(ph)) continue;
            double sum = 0;
            printf("%-6s %3d", phase_ids[w], o->threads[k]);
            for (int i = 0; i < N_PHASES; i++) {
                double v = num(ph, phase_name[i]);
                sum += v;
                printf(" %10.2f", v);
            }
            printf(" %10.2f\n", sum);
        }
    }
    for (int k = 0; k < o->n_threads; k++) {
        const json_t *ov = find(rec, "tapegrad", "overhead", o->threads[k]);
        if (!ov) continue;
        printf("%stape overhead, T=%d: %.1f ns per node in replay, %.1f ns per node in backward "
               "(median; chain of %.0f neg ops on a 1-element F32 tensor)\n",
               k ? "" : "\n", o->threads[k], 1e9 * num(ov, "median"),
               1e9 * num(ov, "backward_median"), num(ov, "nodes"));
    }
    print_peers(o, rec);
    print_growth(o, rec);
    print_rss(o, rec);
    if (!has_workload(o, "w3")) return;
    printf("\nW3 detail (%.3f GFLOP of matrix products per step)\n", mlp_flop(&w3_spec) / 1e9);
    printf("%3s %9s %9s %8s %9s %10s %10s %16s %16s\n", "T", "tg ms", "floor ms", "tg/floor",
           "tg GF/s", "floor GF/s", "torch GF/s", "tg peak MiB", "torch peak MiB");
    for (int k = 0; k < o->n_threads; k++) {
        int t = o->threads[k];
        const json_t *g = find(rec, "tapegrad", "w3", t), *fl = find(rec, "gemm_floor", "w3", t);
        const json_t *p = find(rec, "torch", "w3", t);
        char gs[32], fs[32], q[16], gf[16], ff[16], pf[16], gm[16], gb[16], pm[16], pb[16];
        fmt_time(gs, sizeof gs, g, 1e3);
        fmt_time(fs, sizeof fs, fl, 1e3);
        fmt_num(q, sizeof q, num(g, "median") / num(fl, "median"), 1000);
        fmt_num(gf, sizeof gf, num(g, "gflops"), 10);
        fmt_num(ff, sizeof ff, num(fl, "gflops"), 10);
        fmt_num(pf, sizeof pf, num(p, "gflops"), 10);
        fmt_num(gm, sizeof gm, num(g, "maxrss_kb") / 1024, 10);
        fmt_num(gb, sizeof gb, num(g, "base_rss_kb") / 1024, 10);
        fmt_num(pm, sizeof pm, num(p, "maxrss_kb") / 1024, 10);
        fmt_num(pb, sizeof pb, num(p, "base_rss_kb") / 1024, 10);
        printf("%3d %9s %9s %8s %9s %10s %10s %7s (%6s) %7s (%6s)\n", t, gs, fs, q, gf, ff, pf, gm,
               gb, pm, pb);
    }
    printf("(peak = ru_maxrss of the W3 process; in parentheses its value before the workload: "
           "after start-up, for PyTorch after import torch)\n");
#ifndef TG_BENCH_CBLAS
    printf("GEMM floor: n/a (built without OpenBLAS)\n");
#endif
}

/* ====== Options ====== */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tg_bench [--torch] [--threads 1,2] [--workloads LIST] [--reps N]\n"
            "                [--w2-reps N] [--w2-epochs E] [--w2-train ROWS] [--data DIR]\n"
            "                [--no-ftz] [--seed S] [--json FILE] [--python PATH]\n"
            "                [--torch-script PATH] [--torch-omp-active] [--retries N]\n"
            "                [--noise CPUS] [--growth-max NODES]\n"
            "  --torch           also run PyTorch (bench/torch_bench.py) on the same workloads\n"
            "  --threads LIST    thread counts to run, default 1,2\n"
            "  --workloads LIST  any of w0,w1,w2,w3,w4,w5,w5r,growth (the default: all)\n"
            "  --growth-max N    longest chain of the growth sweep, default 1000000\n"
            "  --reps N          repetitions per timing (all but W2's epochs), default 11\n"
            "  --w2-reps N       W2 repetitions, each a fresh model trained E epochs, default 7\n"
            "  --w2-epochs E     epochs per W2 repetition, default 1\n"
            "  --w2-train ROWS   train W2 on the first ROWS images only, default all 60000\n"
            "  --data DIR        Fashion-MNIST gz IDX files, default %s\n"
            "  --no-ftz          keep denormals (both engines); the default flushes them\n"
            "  --json FILE       also write every record as JSON lines\n"
            "  --python PATH     interpreter with torch, default /usr/bin/python3\n"
            "  --torch-omp-active  let PyTorch's OpenMP workers spin (libgomp's default)\n"
            "  --retries N       run a child again up to N times (default 2) while other\n"
            "  --noise CPUS      processes keep more than CPUS busy (default 0.2); the\n"
            "                    quietest attempt counts. No new retries after %d s\n",
            "/usr/share/datasets/fashion-mnist", (int)RETRY_BUDGET_S);
}

static bool parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

static bool parse_options(int argc, char **argv, options *o)
{
    *o = (options){.ftz = true,
                   .threads = {1, 2},
                   .n_threads = 2,
                   .workloads = "w0,w1,w2,w3,w4,w5,w5r,growth",
                   .growth_max = 1000000,
                   .reps = 11,
                   .w2_reps = 7,
                   .w2_epochs = 1,
                   .seed = 1,
                   .retries = 2,
                   .noise = 0.2,
                   .data = "/usr/share/datasets/fashion-mnist",
                   .python = "/usr/bin/python3",
                   .script = TG_BENCH_TORCH_SCRIPT};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        if (strcmp(a, "--torch") == 0)
            o->torch = true;
        else if (strcmp(a, "--child") == 0)
            o->child = true;
        else if (strcmp(a, "--ftz") == 0)
            o->ftz = true;
        else if (strcmp(a, "--no-ftz") == 0)
            o->ftz = false;
        else if (strcmp(a, "--torch-omp-active") == 0)
            o->omp_active = true;
        else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(EXIT_SUCCESS);
        } else if (!v) {
            fprintf(stderr, "tg_bench: %s needs a value\n", a);
            return false;
        } else if (strcmp(a, "--threads") == 0) {
            o->n_threads = 0;
            char buf[128];
            snprintf(buf, sizeof buf, "%s", v);
            for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
                 tok = strtok_r(NULL, ",", &save)) {
                if (o->n_threads == MAX_THREAD_COUNTS || !parse_int(tok, 1, 1024, &n)) return false;
                o->threads[o->n_threads++] = (int)n;
            }
            if (o->n_threads == 0) return false;
            i++;
        } else if (strcmp(a, "--workloads") == 0) {
            snprintf(o->workloads, sizeof o->workloads, "%s", v);
            i++;
        } else if (strcmp(a, "--reps") == 0) {
            if (!parse_int(v, 1, 100000, &n)) return false;
            o->reps = (int)n, i++;
        } else if (strcmp(a, "--w2-reps") == 0) {
            if (!parse_int(v, 1, 100000, &n)) return false;
            o->w2_reps = (int)n, i++;
        } else if (strcmp(a, "--w2-epochs") == 0) {
            if (!parse_int(v, 1, 100000, &n)) return false;
            o->w2_epochs = (int)n, i++;
        } else if (strcmp(a, "--retries") == 0) {
            if (!parse_int(v, 0, 100, &n)) return false;
            o->retries = (int)n, i++;
        } else if (strcmp(a, "--noise") == 0) {
            char *end;
            o->noise = strtod(v, &end);
            if (end == v || *end || !(o->noise >= 0)) return false;
            i++;
        } else if (strcmp(a, "--growth-max") == 0) {
            if (!parse_int(v, 10, 100000000, &o->growth_max)) return false;
            i++;
        } else if (strcmp(a, "--w2-train") == 0) {
            if (!parse_int(v, 0, 1L << 40, &o->w2_train)) return false;
            i++;
        } else if (strcmp(a, "--seed") == 0) {
            if (!parse_int(v, 0, 1L << 40, &o->seed)) return false;
            i++;
        } else if (strcmp(a, "--data") == 0)
            o->data = argv[++i];
        else if (strcmp(a, "--python") == 0)
            o->python = argv[++i];
        else if (strcmp(a, "--torch-script") == 0)
            o->script = argv[++i];
        else if (strcmp(a, "--json") == 0)
            o->json_out = argv[++i];
        else {
            fprintf(stderr, "tg_bench: unknown option %s\n", a);
            return false;
        }
    }
    if (o->w2_train > 0 && o->w2_train < W2_BATCH) o->w2_train = W2_BATCH;
    return true;
}

int main(int argc, char **argv)
{
    options o;
    if (!parse_options(argc, argv, &o)) {
        usage(stderr);
        return 2;
    }
    if (o.child) return run_child(&o);
    o.t_start = now_s();
    if (o.reps < 7 || o.w2_reps < 7)
        fprintf(stderr, "tg_bench: note: fewer than 7 repetitions; medians are less reliable\n");

    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) {
        fprintf(stderr, "tg_bench: cannot find my own executable: %s\n", strerror(errno));
        return 1;
    }
    self[len] = '\0';
    records rec = {.all = json_array()};
    if (!rec.all) return 1;
    if (!o.torch) snprintf(rec.torch_err, sizeof rec.torch_err, "not requested (add --torch)");

    /* W0 and W1 in one process per engine and thread count; every other
     * workload alone, so the peak resident memory it reports is its own. */
    char small[64] = "";
    static const char *const ids[] = {"w0", "w1"};
    static const char *const alone[] = {"w2", "w3", "w4", "w5", "w5r", "growth"};
    for (int i = 0; i < 2; i++)
        if (has_workload(&o, ids[i]))
            snprintf(small + strlen(small), sizeof small - strlen(small), "%s%s",
                     small[0] ? "," : "", ids[i]);
    for (int k = 0; k < o.n_threads; k++) {
        int t = o.threads[k];
        if (small[0]) {
            run_tapegrad(&o, self, t, small, &rec);
            if (o.torch) run_torch(&o, t, small, &rec);
        }
        for (size_t i = 0; i < sizeof alone / sizeof *alone; i++) {
            if (!has_workload(&o, alone[i])) continue;
            run_tapegrad(&o, self, t, alone[i], &rec);
            if (o.torch && strcmp(alone[i], "growth") != 0) run_torch(&o, t, alone[i], &rec);
        }
    }
    print_table(&o, &rec);

    if (o.json_out) {
        FILE *f = fopen(o.json_out, "w");
        size_t i;
        json_t *r;
        json_array_foreach(rec.all, i, r)
        {
            char *s = f ? json_dumps(r, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
            if (s) fprintf(f, "%s\n", s);
            free(s);
        }
        if (!f || fclose(f) != 0) fprintf(stderr, "tg_bench: cannot write %s\n", o.json_out);
    }
    json_decref(rec.all);
    return 0;
}
