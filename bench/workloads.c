/*
 * W4, W5 and the growth sweep (tapegrad side; bench/torch_bench.py has the
 * PyTorch side of W4 and W5).
 *
 *   W4  the Fashion-MNIST CNN of examples/train_fashion_mnist.c --model cnn:
 *       conv 3x3 1->32, batch norm, ReLU, max pool 2x2, conv 3x3 32->64, batch
 *       norm, ReLU, max pool, dropout 0.25, 3136-128 ReLU, dropout, 128-10;
 *       softmax cross-entropy, Adam 1e-3, batch 100, in training mode, on
 *       random images: ms per step, beside its GEMM floor (the im2col products
 *       of both convolutions over the whole batch and the two dense layers'
 *       products, 11 sgemm calls).
 *   W5  the character LSTM of examples/char_lstm.c: embedding 32, LSTM cell
 *       128, linear to 80 characters, unrolled over 32 characters of 32
 *       windows, cross-entropy, Adam 3e-3: ms per step, recorded once and
 *       replayed. W5r records the whole graph again at every step (reset,
 *       record, backward, step), as a graph that changes every step must be.
 *   growth  chains of one-element tg_tanh nodes from 10 to 10^6 nodes and
 *       chains of 1000 nodes of widths 1 to 4096: ns per node to record
 *       (first on a new tape, then again after a reset), to replay, for the
 *       first backward of a recording and for a later one, and heap bytes per
 *       node (glibc's mallinfo2 before and after).
 */
#include "bench.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef TG_BENCH_CBLAS
#include <cblas.h>
#endif
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
#include <malloc.h>
#define HAVE_MALLINFO2 1
#endif

/* ====== A model being trained: registry, optimizer, the recorded step ====== */

typedef struct model_run {
    tg_params *ps;
    tg_optim *opt;
    tg_tape *tp;
    tg_tensor *loss;
} model_run;

/* zero_grad, replay, backward, optimizer step. */
static const char *model_step(model_run *m)
{
    tg_params_zero_grad(m->ps);
    if (tg_tape_replay(m->tp) || tg_backward(m->tp, m->loss)) return tg_tape_error(m->tp);
    return tg_optim_step(m->opt) == TG_OK ? NULL : tg_last_error()->msg;
}

static void model_free(model_run *m)
{
    tg_tape_free(m->tp);
    tg_optim_free(m->opt);
    tg_params_free(m->ps);
}

/* Prints a record made of 'r' (consumed). */
static void print_record(json_t *r)
{
    char *s = r ? json_dumps(r, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
    if (s) printf("%s\n", s);
    fflush(stdout);
    free(s);
    json_decref(r);
}

/* ====== W4: the CNN ====== */

enum { W4_POOL = 4 }; /* batches of random images cycled through */

typedef struct cnn_run {
    model_run m;
    tg_conv_layer conv[2];
    tg_batch_norm_layer bn[2];
    tg_linear fc[2];
    tg_rng drop;
    tg_tensor *x, *y; /* [100, 784] images, [100, 10] one-hot */
    float *xs, *ys;
} cnn_run;

static const char *cnn_record(cnn_run *c)
{
    tg_tape *tp = c->m.tp;
    tg_tensor *h = tg_reshape(tp, c->x, 4, (int64_t[]){W4_BATCH, 1, 28, 28});
    for (int b = 0; b < 2; b++) {
        h = tg_conv_layer_forward(tp, &c->conv[b], h);
        h = tg_relu(tp, tg_batch_norm_layer_forward(tp, &c->bn[b], h, true));
        h = tg_max_pool2d(tp, h, (const int[]){2, 2}, NULL, NULL);
    }
    h = tg_dropout(tp, tg_reshape(tp, h, 2, (int64_t[]){W4_BATCH, -1}), 0.25, &c->drop);
    h = tg_dropout(tp, tg_relu(tp, tg_linear_forward(tp, &c->fc[0], h)), 0.25, &c->drop);
    c->m.loss = tg_softmax_cross_entropy(tp, tg_linear_forward(tp, &c->fc[1], h), c->y);
    return tg_tape_status(tp) ? tg_tape_error(tp) : NULL;
}

static const char *cnn_step(void *ctx, int64_t i)
{
    cnn_run *c = ctx;
    int64_t b = i % W4_POOL;
    memcpy(tg_tensor_data(c->x), c->xs + b * W4_BATCH * 784, W4_BATCH * 784 * sizeof(float));
    memcpy(tg_tensor_data(c->y), c->ys + b * W4_BATCH * 10, W4_BATCH * 10 * sizeof(float));
    return model_step(&c->m);
}

#ifdef TG_BENCH_CBLAS
/* W4's matrix products with the whole batch in each: conv1 Y = W col and
 * dW = dY colᵀ (x needs no gradient), conv2 the same and dcol = Wᵀ dY, then
 * each dense layer's forward, dW and dX. */
static bool cnn_floor(floor_plan *fp, uint64_t seed)
{
    memset(fp, 0, sizeof *fp);
    tg_rng_seed(&fp->rng, seed);
    const int n1 = W4_BATCH * 28 * 28, n2 = W4_BATCH * 14 * 14;
    float *w1 = floor_buf(fp, 32, 9, 0.3), *col1 = floor_buf(fp, 9, n1, 1.0);
    float *y1 = floor_buf(fp, 32, n1, 1.0), *dy1 = floor_buf(fp, 32, n1, 1e-3);
    float *dw1 = floor_buf(fp, 32, 9, 1e-3);
    float *w2 = floor_buf(fp, 64, 288, 0.05), *col2 = floor_buf(fp, 288, n2, 1.0);
    float *y2 = floor_buf(fp, 64, n2, 1.0), *dy2 = floor_buf(fp, 64, n2, 1e-3);
    float *dw2 = floor_buf(fp, 64, 288, 1e-3), *dcol2 = floor_buf(fp, 288, n2, 1e-3);
    float *x3 = floor_buf(fp, W4_BATCH, 3136, 1.0), *w3 = floor_buf(fp, 3136, 128, 0.02);
    float *z3 = floor_buf(fp, W4_BATCH, 128, 1.0), *dz3 = floor_buf(fp, W4_BATCH, 128, 1e-3);
    float *dw3 = floor_buf(fp, 3136, 128, 1e-3), *dx3 = floor_buf(fp, W4_BATCH, 3136, 1e-3);
    float *x4 = floor_buf(fp, W4_BATCH, 128, 1.0), *w4 = floor_buf(fp, 128, 10, 0.1);
    float *z4 = floor_buf(fp, W4_BATCH, 10, 1.0), *dz4 = floor_buf(fp, W4_BATCH, 10, 1e-3);
    float *dw4 = floor_buf(fp, 128, 10, 1e-3), *dx4 = floor_buf(fp, W4_BATCH, 128, 1e-3);
    if (!dx4) return false; /* the last one; floor_buf fails only once the plan is full */
    for (int k = 0; k < fp->n_mem; k++)
        if (!fp->mem[k]) return false;
    const int B = W4_BATCH;
    floor_add(fp, false, false, 32, n1, 9, w1, col1, 0.0f, y1);
    floor_add(fp, false, false, 64, n2, 288, w2, col2, 0.0f, y2);
    floor_add(fp, false, false, B, 128, 3136, x3, w3, 0.0f, z3);
    floor_add(fp, false, false, B, 10, 128, x4, w4, 0.0f, z4);
    floor_add(fp, false, true, B, 128, 10, dz4, w4, 1.0f, dx4);
    floor_add(fp, true, false, 128, 10, B, x4, dz4, 1.0f, dw4);
    floor_add(fp, false, true, B, 3136, 128, dz3, w3, 1.0f, dx3);
    floor_add(fp, true, false, 3136, 128, B, x3, dz3, 1.0f, dw3);
    floor_add(fp, false, true, 64, 288, n2, dy2, col2, 1.0f, dw2);
    floor_add(fp, true, false, 288, n2, 64, w2, dy2, 0.0f, dcol2);
    floor_add(fp, false, true, 32, 9, n1, dy1, col1, 1.0f, dw1);
    return true;
}
#endif

void bench_cnn(const options *o, int threads, bool ftz, long base_rss)
{
    cnn_run c = {0};
    tg_error err = {0};
    tg_rng r;
    tg_rng_seed(&r, (uint64_t)o->seed);
    tg_rng_seed(&c.drop, (uint64_t)o->seed + 7);
    const tg_conv_opts same = {.padding = {1, 1}};
    c.m.ps = tg_params_new();
    c.m.tp = tg_tape_new();
    c.x = tg_tensor_new(TG_F32, 2, (int64_t[]){W4_BATCH, 784});
    c.y = tg_tensor_new(TG_F32, 2, (int64_t[]){W4_BATCH, 10});
    c.xs = malloc((size_t)W4_POOL * W4_BATCH * 784 * sizeof(float));
    c.ys = calloc((size_t)W4_POOL * W4_BATCH * 10, sizeof(float));
    double *per = malloc(2 * (size_t)o->reps * sizeof *per);
    if (!c.m.ps || !c.m.tp || !c.x || !c.y || !c.xs || !c.ys || !per)
        child_fail(threads, "w4", "setup", "out of memory");
    if (tg_conv_layer_init(&c.conv[0], c.m.ps, "conv.0", 2, 1, 32, (const int[]){3, 3}, &same, true,
                           TG_F32, &r, &err) ||
        tg_batch_norm_layer_init(&c.bn[0], c.m.ps, "bn.0", 32, TG_F32, &err) ||
        tg_conv_layer_init(&c.conv[1], c.m.ps, "conv.1", 2, 32, 64, (const int[]){3, 3}, &same,
                           true, TG_F32, &r, &err) ||
        tg_batch_norm_layer_init(&c.bn[1], c.m.ps, "bn.1", 64, TG_F32, &err) ||
        tg_linear_init(&c.fc[0], c.m.ps, "fc.0", 3136, 128, true, TG_F32, &r, &err) ||
        tg_linear_init(&c.fc[1], c.m.ps, "fc.1", 128, 10, true, TG_F32, &r, &err))
        child_fail(threads, "w4", "setup", err.msg);
    c.m.opt = tg_optim_new(c.m.ps, &(tg_optim_opts){.kind = TG_OPTIM_ADAM, .lr = 1e-3});
    if (!c.m.opt) child_fail(threads, "w4", "setup", tg_last_error()->msg);
    for (int64_t k = 0; k < (int64_t)W4_POOL * W4_BATCH * 784; k++)
        c.xs[k] = (float)tg_rng_uniform(&r);
    for (int64_t k = 0; k < (int64_t)W4_POOL * W4_BATCH; k++)
        c.ys[k * 10 + (int64_t)tg_rng_below(&r, 10)] = 1;
    const char *e = cnn_record(&c);
    if (!e) e = timed_reps(cnn_step, &c, W4_WARMUP, 0, 0, NULL);
    if (e) child_fail(threads, "w4", "step", e);
    long peak = maxrss_kb(); /* before the floor's buffers exist */
#ifdef TG_BENCH_CBLAS
    double *floor_per = per + o->reps;
    floor_plan fp;
    if (!cnn_floor(&fp, (uint64_t)o->seed))
        child_fail(threads, "w4", "GEMM floor", "out of memory");
    timed_reps(floor_step, &fp, 1, 0, 0, NULL);
    for (int k = 0; k < o->reps && !e; k++)
        if (!(e = timed_reps(cnn_step, &c, 0, W4_STEPS, 1, per + k)))
            timed_reps(floor_step, &fp, 0, W4_STEPS, 1, floor_per + k);
#else
    e = timed_reps(cnn_step, &c, 0, W4_STEPS, o->reps, per);
#endif
    if (e) child_fail(threads, "w4", "step", e);
    emit("tapegrad", "w4", threads, ftz, "s_per_step", per, o->reps,
         json_pack("{s:i, s:I, s:I, s:i, s:f}", "steps_per_rep", W4_STEPS, "maxrss_kb",
                   (json_int_t)peak, "base_rss_kb", (json_int_t)base_rss, "tape_nodes",
                   (int)tg_tape_size(c.m.tp), "loss", tg_tensor_item(c.m.loss)));
#ifdef TG_BENCH_CBLAS
    emit("gemm_floor", "w4", threads, ftz, "s_per_step", floor_per, o->reps,
         json_pack("{s:i, s:i, s:f}", "steps_per_rep", W4_STEPS, "sgemm_calls", fp.n_calls, "gflop",
                   floor_flop(&fp) / 1e9));
    floor_plan_free(&fp);
#endif
    model_free(&c.m);
    tg_tensor_free(c.x);
    tg_tensor_free(c.y);
    free(c.xs);
    free(c.ys);
    free(per);
}

/* ====== W5: the character LSTM ====== */

typedef struct lstm_run {
    model_run m;
    tg_tensor *embed;
    tg_lstm_cell cell;
    tg_linear head;
    tg_tensor *x[W5_T], *y; /* I64 [B] per character, I64 [T B] targets */
    tg_tensor *logits[W5_T];
    tg_rng data;
    bool record_each_step;
} lstm_run;

static const char *lstm_record(lstm_run *l)
{
    tg_tape *tp = l->m.tp;
    tg_tensor *h = NULL, *c = NULL;
    for (int t = 0; t < W5_T; t++) {
        h = tg_lstm_cell_forward(tp, &l->cell, tg_embedding(tp, l->embed, l->x[t]), h, c, &c);
        l->logits[t] = tg_linear_forward(tp, &l->head, h);
    }
    l->m.loss = tg_cross_entropy(tp, tg_concat(tp, l->logits, W5_T, 0), l->y);
    return tg_tape_status(tp) ? tg_tape_error(tp) : NULL;
}

static const char *lstm_step(void *ctx, int64_t i)
{
    (void)i;
    lstm_run *l = ctx;
    for (int t = 0; t < W5_T; t++) {
        int64_t *xt = tg_tensor_data(l->x[t]), *y = tg_tensor_data(l->y);
        for (int b = 0; b < W5_BATCH; b++) {
            xt[b] = (int64_t)tg_rng_below(&l->data, W5_VOCAB);
            y[t * W5_BATCH + b] = (int64_t)tg_rng_below(&l->data, W5_VOCAB);
        }
    }
    if (!l->record_each_step) return model_step(&l->m);
    /* A graph that may change every step: recorded anew, so no replay. */
    tg_tape_reset(l->m.tp);
    const char *e = lstm_record(l);
    if (e) return e;
    tg_params_zero_grad(l->m.ps);
    if (tg_backward(l->m.tp, l->m.loss)) return tg_tape_error(l->m.tp);
    return tg_optim_step(l->m.opt) == TG_OK ? NULL : tg_last_error()->msg;
}

void bench_lstm(const options *o, int threads, bool ftz, long base_rss, bool record_each_step)
{
    const char *id = record_each_step ? "w5r" : "w5";
    lstm_run l = {.record_each_step = record_each_step};
    tg_error err = {0};
    tg_rng r;
    tg_rng_seed(&r, (uint64_t)o->seed);
    tg_rng_seed(&l.data, (uint64_t)o->seed + 5);
    l.m.ps = tg_params_new();
    l.m.tp = tg_tape_new();
    l.y = tg_tensor_new(TG_I64, 1, (int64_t[]){W5_T * W5_BATCH});
    double *per = malloc((size_t)o->reps * sizeof *per);
    if (!l.m.ps || !l.m.tp || !l.y || !per) child_fail(threads, id, "setup", "out of memory");
    for (int t = 0; t < W5_T; t++)
        if (!(l.x[t] = tg_tensor_new(TG_I64, 1, (int64_t[]){W5_BATCH})))
            child_fail(threads, id, "setup", "out of memory");
    if (!(l.embed = tg_params_add(l.m.ps, "embed", TG_F32, 2, (int64_t[]){W5_VOCAB, W5_EMBED})) ||
        tg_init_tensor(l.embed, TG_INIT_XAVIER_NORMAL, W5_VOCAB, W5_EMBED, &r) ||
        tg_lstm_cell_init(&l.cell, l.m.ps, "lstm", W5_EMBED, W5_HIDDEN, TG_F32, &r, &err) ||
        tg_linear_init(&l.head, l.m.ps, "head", W5_HIDDEN, W5_VOCAB, true, TG_F32, &r, &err))
        child_fail(threads, id, "setup", err.msg[0] ? err.msg : tg_last_error()->msg);
    l.m.opt = tg_optim_new(l.m.ps, &(tg_optim_opts){.kind = TG_OPTIM_ADAM, .lr = 3e-3});
    if (!l.m.opt) child_fail(threads, id, "setup", tg_last_error()->msg);
    const char *e = lstm_record(&l);
    if (!e) e = timed_reps(lstm_step, &l, W5_WARMUP, W5_STEPS, o->reps, per);
    if (e) child_fail(threads, id, "step", e);
    emit("tapegrad", id, threads, ftz, "s_per_step", per, o->reps,
         json_pack("{s:i, s:I, s:I, s:i, s:f}", "steps_per_rep", W5_STEPS, "maxrss_kb",
                   (json_int_t)maxrss_kb(), "base_rss_kb", (json_int_t)base_rss, "tape_nodes",
                   (int)tg_tape_size(l.m.tp), "loss", tg_tensor_item(l.m.loss)));
    model_free(&l.m);
    for (int t = 0; t < W5_T; t++)
        tg_tensor_free(l.x[t]);
    tg_tensor_free(l.y);
    free(per);
}

/* ====== Growth: cost per node as the tape grows ====== */

/* Heap bytes in use (glibc), or -1 where unknown. */
static double heap_bytes(void)
{
#ifdef HAVE_MALLINFO2
    struct mallinfo2 mi = mallinfo2();
    return (double)mi.uordblks + (double)mi.hblkhd;
#else
    return -1;
#endif
}

/* Resident bytes of this process (/proc/self/statm), or -1: the pages a tape
 * has touched, where heap_bytes counts what it reserved. */
static double resident_bytes(void)
{
    long pages = -1, res = -1;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f && fscanf(f, "%ld %ld", &pages, &res) != 2) res = -1;
    if (f) fclose(f);
    return res < 0 ? -1 : (double)res * (double)sysconf(_SC_PAGESIZE);
}

typedef struct chain_case {
    tg_tape *tp;
    tg_tensor *x, *out, *seed; /* seed: dC/d(out), ones */
    long nodes;
} chain_case;

static bool chain_backward(chain_case *c)
{
    return tg_backward_seed(c->tp, c->out, c->seed) == TG_OK;
}

static const char *chain_record(chain_case *c)
{
    tg_tensor *h = c->x;
    for (long k = 0; k < c->nodes; k++)
        h = tg_tanh(c->tp, h);
    c->out = h;
    return tg_tape_status(c->tp) ? tg_tape_error(c->tp) : NULL;
}

/* Medians over 'reps' of ns per node for every phase, and bytes per node, of
 * a chain of 'nodes' tanh nodes on a [width] F32 leaf; each timing repeats
 * its phase 'inner' times. */
static void growth_case(const options *o, int threads, long nodes, int64_t width, int reps,
                        int inner)
{
    double *t = malloc(5 * (size_t)reps * sizeof *t);
    double *first = t, *rerec = t + reps, *replay = t + 2 * reps, *bw1 = t + 3 * reps,
           *bw = t + 4 * reps;
    double h0 = heap_bytes();
    chain_case c = {.tp = tg_tape_new(),
                    .x = tg_tensor_new(TG_F32, 1, &width),
                    .seed = tg_tensor_new(TG_F32, 1, &width),
                    .nodes = nodes};
    if (!t || !c.tp || !c.x || !c.seed) child_fail(threads, "growth", "setup", "out of memory");
    tg_tensor_set_requires_grad(c.x, true);
    float *xd = tg_tensor_data(c.x), *sd = tg_tensor_data(c.seed);
    for (int64_t k = 0; k < width; k++)
        xd[k] = 0.5f, sd[k] = 1.0f;
    const char *e = NULL;
    double bytes_rec = 0, bytes_bw = 0, res_rec = 0, res_bw = 0;
    for (int r = 0; r < reps && !e; r++) {
        /* The first recording on a new tape, its arena and node table growing. */
        tg_tape_free(c.tp);
        double hb = heap_bytes(), rb = resident_bytes();
        c.tp = tg_tape_new();
        double t0 = now_s();
        e = chain_record(&c);
        first[r] = now_s() - t0;
        double hr = heap_bytes(), rr = resident_bytes();
        t0 = now_s();
        if (!e && !chain_backward(&c)) e = tg_tape_error(c.tp);
        bw1[r] = now_s() - t0;
        if (r == 0) {
            bytes_rec = hr - hb, bytes_bw = heap_bytes() - hb;
            res_rec = rr - rb, res_bw = resident_bytes() - rb;
        }
        /* Recording again on the same tape after a reset: the memory is there. */
        t0 = now_s();
        for (int i = 0; i < inner && !e; i++) {
            tg_tape_reset(c.tp);
            e = chain_record(&c);
        }
        rerec[r] = (now_s() - t0) / inner;
        t0 = now_s();
        for (int i = 0; i < inner && !e; i++)
            if (tg_tape_replay(c.tp)) e = tg_tape_error(c.tp);
        replay[r] = (now_s() - t0) / inner;
        if (!e && !chain_backward(&c)) e = tg_tape_error(c.tp);
        t0 = now_s();
        for (int i = 0; i < inner && !e; i++)
            if (!chain_backward(&c)) e = tg_tape_error(c.tp);
        bw[r] = (now_s() - t0) / inner;
    }
    if (e) child_fail(threads, "growth", "chain", e);
    double ns = 1e9 / (double)nodes;
    json_t *rec = json_pack(
        "{s:s, s:s, s:i, s:s, s:I, s:I, s:i, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, "
        "s:f}",
        "engine", "tapegrad", "workload", "growth", "threads", threads, "kind",
        width == 1 ? "chain" : "width", "nodes", (json_int_t)nodes, "width", (json_int_t)width,
        "reps", reps, "record_first_ns", ns * median(first, reps), "record_ns",
        ns * median(rerec, reps), "record_ns_max", ns * vmax(rerec, reps), "replay_ns",
        ns * median(replay, reps), "backward_first_ns", ns * median(bw1, reps), "backward_ns",
        ns * median(bw, reps), "bytes_record", h0 < 0 ? -1.0 : bytes_rec / (double)nodes,
        "bytes_backward", h0 < 0 ? -1.0 : bytes_bw / (double)nodes, "resident_record",
        res_rec / (double)nodes, "resident_backward", res_bw / (double)nodes, "heap_before",
        h0 < 0 ? -1.0 : h0);
    print_record(rec);
    (void)o;
    tg_tape_free(c.tp);
    tg_tensor_free(c.x);
    tg_tensor_free(c.seed);
    free(t);
}

void bench_growth(const options *o, int threads, bool ftz)
{
    (void)ftz;
    for (long n = 10; n <= o->growth_max; n *= 10) {
        int inner = n >= 100000 ? 1 : (int)(100000 / n);
        growth_case(o, threads, n, 1, n >= 100000 ? 5 : o->reps, inner);
    }
    for (int64_t w = 4; w <= 4096; w *= 4)
        growth_case(o, threads, 1000, w, o->reps, w >= 1024 ? 10 : 100);
}
