/*
 * conv_bench: forward + backward of the Fashion-MNIST CNN's layers, batch
 * 100, float32, in tapegrad, in PyTorch eager (bench/conv_bench.py, same
 * shapes, same thread count) and, for the convolutions, the GEMM floor: the
 * im2col matrix products of the layer alone.
 *
 *     conv1  x [100,1,28,28],  w [32,1,3,3],  b [32], padding 1; x needs no gradient
 *     conv2  x [100,32,14,14], w [64,32,3,3], b [64], padding 1; x needs its gradient
 *     pool1  max_pool2d 2x2 on [100,32,28,28]; x needs its gradient
 *     pool2  max_pool2d 2x2 on [100,64,14,14]; x needs its gradient
 *
 * The tapegrad side records the layer once, then every step replays the tape,
 * zeroes the gradients and runs backward from a fixed seed dC/dY. The floor
 * of a convolution is Y = W col (M = O, N = 100 OH OW, K = C 9), dW = dY colᵀ
 * and, when x needs its gradient, dcol = Wᵀ dY, with cblas_sgemm on buffers of
 * those shapes; its repetitions alternate with tapegrad's, so both see the
 * same machine. The last two columns are the process's CPU time for the same
 * steps (all threads, spinning BLAS workers included), which other processes
 * on a shared machine disturb less than the wall clock. PyTorch runs in a
 * child process per thread count (torch.set_num_threads(T),
 * OPENBLAS_NUM_THREADS=T). Every time is the median over repetitions after a
 * warm-up; the load average is printed before and after, as the machine may
 * be shared.
 *
 *     conv_bench [--threads 1,2] [--reps 11] [--layers conv1,conv2,pool1,pool2] [--no-torch]
 */
#include <tapegrad/tapegrad.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef TG_BENCH_CBLAS
#include <cblas.h>
#endif

#ifndef TG_BENCH_CONV_SCRIPT
#define TG_BENCH_CONV_SCRIPT "bench/conv_bench.py"
#endif

enum { BATCH = 100, WARMUP = 3, MAX_REPS = 101, MAX_THREADS = 8, N_CASES = 4 };

/* ORDER CASES: conv_bench.py has the same table. */
typedef struct bench_case {
    const char *name;
    int64_t c, h, o; /* input channels, plane side, output channels (conv only) */
    bool conv, x_grad;
} bench_case;

static const bench_case cases[N_CASES] = {
    {"conv1", 1, 28, 32, true, false},
    {"conv2", 32, 14, 64, true, true},
    {"pool1", 32, 28, 0, false, true},
    {"pool2", 64, 14, 0, false, true},
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU seconds of the whole process (all its threads): unlike the wall clock,
 * it does not count the time other processes hold the cores. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of v[0..n), sorting v. */
static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "conv_bench: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    exit(EXIT_FAILURE);
}

/* A new F32 tensor of the given shape with values in [-1, 1). */
static tg_tensor *random_tensor(tg_rng *rng, int rank, const int64_t *shape)
{
    tg_tensor *t = tg_tensor_new(TG_F32, rank, shape);
    if (!t) die("out of memory", NULL);
    float *d = tg_tensor_data(t);
    for (int64_t k = 0; k < tg_tensor_numel(t); k++)
        d[k] = (float)((double)(tg_rng_u64(rng) >> 11) * 0x1p-52 - 1.0);
    return t;
}

static void print_load(const char *when)
{
    char buf[128] = "?";
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (!fgets(buf, sizeof buf, f)) strcpy(buf, "?\n");
        fclose(f);
    }
    printf("load average %s: %s", when, buf);
}

/* ====== One layer in tapegrad ====== */

typedef struct layer {
    tg_tape *tp;
    tg_tensor *x, *w, *b, *y, *seed;
} layer;

static void layer_init(layer *l, const bench_case *c, tg_rng *rng)
{
    memset(l, 0, sizeof *l);
    l->tp = tg_tape_new();
    if (!l->tp) die("out of memory", NULL);
    l->x = random_tensor(rng, 4, (int64_t[]){BATCH, c->c, c->h, c->h});
    tg_tensor_set_requires_grad(l->x, c->x_grad);
    if (c->conv) {
        l->w = random_tensor(rng, 4, (int64_t[]){c->o, c->c, 3, 3});
        l->b = random_tensor(rng, 1, (int64_t[]){c->o});
        tg_tensor_set_requires_grad(l->w, true);
        tg_tensor_set_requires_grad(l->b, true);
        l->y = tg_conv2d(l->tp, l->x, l->w, l->b, &(tg_conv_opts){.padding = {1, 1}});
    } else {
        l->y = tg_max_pool2d(l->tp, l->x, (int[]){2, 2}, NULL, NULL);
    }
    if (!l->y) die("recording failed", tg_tape_error(l->tp));
    l->seed = random_tensor(rng, 4,
                            (int64_t[]){BATCH, c->conv ? c->o : c->c, c->conv ? c->h : c->h / 2,
                                        c->conv ? c->h : c->h / 2});
}

static void layer_step(layer *l)
{
    if (tg_tape_replay(l->tp) != TG_OK) die("replay failed", tg_tape_error(l->tp));
    tg_tensor_zero_grad(l->x);
    if (l->w) tg_tensor_zero_grad(l->w), tg_tensor_zero_grad(l->b);
    if (tg_backward_seed(l->tp, l->y, l->seed) != TG_OK)
        die("backward failed", tg_tape_error(l->tp));
}

static void layer_free(layer *l)
{
    tg_tape_free(l->tp);
    tg_tensor_free(l->x);
    tg_tensor_free(l->w);
    tg_tensor_free(l->b);
    tg_tensor_free(l->seed);
}

/* ====== The GEMM floor of a convolution ====== */

#ifdef TG_BENCH_CBLAS
typedef struct floor_bufs {
    int m, n, k;          /* O, 100 OH OW, C 9 */
    float *w, *col, *out; /* [m, k], [k, n], [m, n] */
    float *dw, *dcol;
    bool dx;
} floor_bufs;

static void floor_init(floor_bufs *f, const bench_case *c, tg_rng *rng)
{
    f->m = (int)c->o, f->n = (int)(BATCH * c->h * c->h), f->k = (int)(c->c * 9), f->dx = c->x_grad;
    size_t mk = (size_t)f->m * (size_t)f->k, kn = (size_t)f->k * (size_t)f->n,
           mn = (size_t)f->m * (size_t)f->n;
    f->w = malloc(mk * sizeof(float)), f->dw = malloc(mk * sizeof(float));
    f->col = malloc(kn * sizeof(float)), f->dcol = malloc(kn * sizeof(float));
    f->out = malloc(mn * sizeof(float));
    if (!f->w || !f->dw || !f->col || !f->dcol || !f->out) die("out of memory", NULL);
    float *all[] = {f->w, f->dw, f->col, f->dcol, f->out};
    size_t len[] = {mk, mk, kn, kn, mn};
    for (int i = 0; i < 5; i++)
        for (size_t j = 0; j < len[i]; j++)
            all[i][j] = (float)((double)(tg_rng_u64(rng) >> 11) * 0x1p-53);
}

/* Y = W col; dW += dY colᵀ (dY in 'out'); dcol = Wᵀ dY. */
static void floor_step(floor_bufs *f)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, f->m, f->n, f->k, 1.0f, f->w, f->k,
                f->col, f->n, 0.0f, f->out, f->n);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, f->m, f->k, f->n, 1.0f, f->out, f->n,
                f->col, f->n, 1.0f, f->dw, f->k);
    if (f->dx)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, f->k, f->n, f->m, 1.0f, f->w, f->k,
                    f->out, f->n, 0.0f, f->dcol, f->n);
}

static void floor_free(floor_bufs *f)
{
    free(f->w), free(f->dw), free(f->col), free(f->dcol), free(f->out);
}
#endif

/* ====== PyTorch: one child per thread count, "name median_ms" lines ====== */

static void run_torch(int threads, int reps, double *ms)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "OPENBLAS_NUM_THREADS=%d OMP_NUM_THREADS=%d OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 "
             "'%s' --threads %d --reps %d --warmup %d",
             threads, threads, TG_BENCH_CONV_SCRIPT, threads, reps, WARMUP);
    FILE *p = popen(cmd, "r");
    if (!p) die("cannot start", cmd);
    char name[32];
    double v;
    while (fscanf(p, "%31s %lf", name, &v) == 2)
        for (int i = 0; i < N_CASES; i++)
            if (!strcmp(name, cases[i].name)) ms[i] = v;
    if (pclose(p) != 0) fprintf(stderr, "conv_bench: %s failed\n", cmd);
}

int main(int argc, char **argv)
{
    int threads[MAX_THREADS] = {1, 2}, n_threads = 2, reps = 11;
    bool torch = true;
    const char *layers = "conv1,conv2,pool1,pool2";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            n_threads = 0;
            for (char *s = strtok(argv[++i], ","); s && n_threads < MAX_THREADS;
                 s = strtok(NULL, ","))
                threads[n_threads++] = atoi(s);
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--layers") && i + 1 < argc) {
            layers = argv[++i];
        } else if (!strcmp(argv[i], "--no-torch")) {
            torch = false;
        } else {
            die("usage: conv_bench [--threads 1,2] [--reps 11] [--layers conv1,conv2,pool1,pool2] "
                "[--no-torch]",
                NULL);
        }
    }
    if (reps < 1 || reps > MAX_REPS || n_threads < 1) die("bad --reps or --threads", NULL);
    tg_set_flush_denormals(true);
    printf("== conv_bench: tapegrad %s, batch %d, float32, median of %d repetitions after %d "
           "warm-up ==\n",
           tg_version_string(), BATCH, reps, WARMUP);
    print_load("at the start");
    printf("%-6s %2s %10s %10s %10s %9s %9s %10s %10s\n", "layer", "T", "tg ms", "floor ms",
           "torch ms", "tg/floor", "tg/torch", "tg cpu ms", "floor cpu");
    for (int t = 0; t < n_threads; t++) {
        double torch_ms[N_CASES] = {0};
        if (torch) run_torch(threads[t], reps, torch_ms);
        tg_set_num_threads(threads[t]);
        tg_rng rng;
        tg_rng_seed(&rng, 42);
        for (int i = 0; i < N_CASES; i++) {
            const bench_case *c = &cases[i];
            if (!strstr(layers, c->name)) continue;
            layer l;
            layer_init(&l, c, &rng);
            double tg[MAX_REPS], fl[MAX_REPS], tgc[MAX_REPS], flc[MAX_REPS], floor_ms = 0;
            double floor_cpu = 0;
#ifdef TG_BENCH_CBLAS
            floor_bufs f = {0};
            if (c->conv) floor_init(&f, c, &rng);
#endif
            for (int r = -WARMUP; r < reps; r++) {
                double t0 = now_s(), c0 = cpu_s();
                layer_step(&l);
                double t1 = now_s(), c1 = cpu_s();
#ifdef TG_BENCH_CBLAS
                if (c->conv) floor_step(&f);
#endif
                double t2 = now_s(), c2 = cpu_s();
                if (r >= 0)
                    tg[r] = 1e3 * (t1 - t0), fl[r] = 1e3 * (t2 - t1), tgc[r] = 1e3 * (c1 - c0),
                    flc[r] = 1e3 * (c2 - c1);
            }
            double tg_ms = median(tg, reps), tg_cpu = median(tgc, reps);
#ifdef TG_BENCH_CBLAS
            if (c->conv) floor_ms = median(fl, reps), floor_cpu = median(flc, reps), floor_free(&f);
#else
            (void)fl, (void)flc;
#endif
            char sf[16] = "n/a", st[16] = "n/a", rf[16] = "", rt[16] = "", sfc[16] = "n/a";
            if (floor_ms > 0)
                snprintf(sf, sizeof sf, "%.2f", floor_ms),
                    snprintf(rf, sizeof rf, "%.2f", tg_ms / floor_ms),
                    snprintf(sfc, sizeof sfc, "%.2f", floor_cpu);
            if (torch_ms[i] > 0)
                snprintf(st, sizeof st, "%.2f", torch_ms[i]),
                    snprintf(rt, sizeof rt, "%.2f", tg_ms / torch_ms[i]);
            printf("%-6s %2d %10.2f %10s %10s %9s %9s %10.2f %10s\n", c->name, threads[t], tg_ms,
                   sf, st, rf, rt, tg_cpu, sfc);
            fflush(stdout);
            layer_free(&l);
        }
    }
    print_load("at the end");
    return 0;
}
