/*
 * hvp_bench: Hessian-vector products of a loss with respect to all the
 * parameters of a network, in tapegrad and in PyTorch eager (double
 * backward, bench/hvp_bench.py), same shapes, float32, same thread count.
 *
 *     w2    784-256-128-10, ReLU, softmax cross-entropy, batch 64 (tg_bench's
 *           W2 network on random inputs and one-hot targets: the time of a
 *           product does not depend on the values)
 *     tiny  2-3-2, tanh hidden, linear out, C = 1/2 ||y - a||^2, one sample
 *
 * H v, with one direction v per parameter, is the gradient of <dC/dθ, v>.
 * PyTorch, every product: the loss, g = autograd.grad(loss, θ,
 * create_graph=True), then autograd.grad(<g, v>, θ). tapegrad records the
 * same once, both gradients with tg_grad(create_graph), and every product is
 * one tg_tape_replay, which recomputes the loss, g and H v with no allocation
 * ("replay"). A second way: record only g and <g, v>, and every product
 * replays and runs tg_backward on <g, v>, whose last sweep then uses the
 * fused first-order kernels and leaves H v in the parameters' gradients
 * ("replay+bw").
 *
 * Forward mode on the tiny network: the tangent J t of its output along one
 * tangent per parameter, tg_jvp recorded once and replayed, against
 * functorch.jvp (native forward mode) and torch.autograd.functional.jvp
 * (double backward).
 *
 * Every time is the median over repetitions after a warm-up; tapegrad's and
 * PyTorch's run in the same invocation, PyTorch in a child per thread count
 * (torch.set_num_threads(T), OPENBLAS_NUM_THREADS=T).
 *
 *     hvp_bench [--threads 1,2] [--reps 11] [--no-torch]
 */
#include <tapegrad/tapegrad.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef TG_BENCH_HVP_SCRIPT
#define TG_BENCH_HVP_SCRIPT "bench/hvp_bench.py"
#endif

enum { MAX_REPS = 101, MAX_THREADS = 8, MAX_LAYERS = 3 };

/* ORDER CASES: hvp_bench.py has the same table and the same iteration counts. */
typedef struct bench_case {
    const char *name;
    int layers;
    int64_t sizes[MAX_LAYERS + 1], batch;
    bool relu_ce; /* ReLU hidden and softmax cross-entropy, else tanh and 1/2 squared error */
    int iters;    /* products per repetition */
} bench_case;

static const bench_case cases[] = {
    {"w2", 3, {784, 256, 128, 10}, 64, true, 20},
    {"tiny", 2, {2, 3, 2}, 1, false, 2000},
};
#define N_CASES ((int)(sizeof cases / sizeof *cases))

/* The rows of the table: what is timed, and the name of PyTorch's figure. */
enum { ROW_W2_HVP, ROW_TINY_HVP, ROW_TINY_JVP, N_ROWS };
static const char *const torch_key[N_ROWS][2] = {
    {"w2_hvp", NULL}, {"tiny_hvp", NULL}, {"tiny_jvp_fwd", "tiny_jvp_dbl"}};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "hvp_bench: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    exit(EXIT_FAILURE);
}

static tg_tensor *random_tensor(tg_rng *rng, int rank, const int64_t *shape, double scale)
{
    tg_tensor *t = tg_tensor_new(TG_F32, rank, shape);
    if (!t) die("out of memory", NULL);
    float *d = tg_tensor_data(t);
    for (int64_t k = 0; k < tg_tensor_numel(t); k++)
        d[k] = (float)(scale * (2 * tg_rng_uniform(rng) - 1));
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

/* ====== One network, its parameters and directions ====== */

typedef struct net {
    const bench_case *c;
    tg_tensor *x, *y;
    tg_tensor *p[2 * MAX_LAYERS], *v[2 * MAX_LAYERS]; /* W0, b0, W1, b1...; a direction each */
    int n;
} net;

static void net_init(net *m, const bench_case *c, tg_rng *rng)
{
    memset(m, 0, sizeof *m);
    m->c = c;
    m->n = 2 * c->layers;
    m->x = random_tensor(rng, 2, (int64_t[]){c->batch, c->sizes[0]}, 1.0);
    m->y = tg_tensor_new(TG_F32, 2, (int64_t[]){c->batch, c->sizes[c->layers]});
    if (!m->y) die("out of memory", NULL);
    float *y = tg_tensor_data(m->y);
    for (int64_t i = 0; i < c->batch; i++) /* one-hot rows for CE, values for the squared error */
        for (int64_t j = 0; j < c->sizes[c->layers]; j++)
            y[i * c->sizes[c->layers] + j] = c->relu_ce ? 0.0f : (float)tg_rng_uniform(rng);
    if (c->relu_ce)
        for (int64_t i = 0; i < c->batch; i++)
            y[i * c->sizes[c->layers] + (int64_t)tg_rng_below(rng, (uint64_t)c->sizes[c->layers])] =
                1;
    for (int l = 0; l < c->layers; l++) {
        double bound = 1.0 / sqrt((double)c->sizes[l]); /* PyTorch's Linear default */
        int64_t ws[2] = {c->sizes[l], c->sizes[l + 1]}, bs[1] = {c->sizes[l + 1]};
        m->p[2 * l] = random_tensor(rng, 2, ws, bound);
        m->p[2 * l + 1] = random_tensor(rng, 1, bs, bound);
        m->v[2 * l] = random_tensor(rng, 2, ws, 1.0);
        m->v[2 * l + 1] = random_tensor(rng, 1, bs, 1.0);
        tg_tensor_set_requires_grad(m->p[2 * l], true);
        tg_tensor_set_requires_grad(m->p[2 * l + 1], true);
    }
}

static void net_free(net *m)
{
    tg_tensor_free(m->x), tg_tensor_free(m->y);
    for (int i = 0; i < m->n; i++)
        tg_tensor_free(m->p[i]), tg_tensor_free(m->v[i]);
}

/* The network's output, recorded with matmul, a broadcast add and the activation. */
static tg_tensor *forward(tg_tape *tp, const net *m)
{
    tg_tensor *h = m->x;
    for (int l = 0; l < m->c->layers; l++) {
        h = tg_add(tp, tg_matmul(tp, h, m->p[2 * l]), m->p[2 * l + 1]);
        if (l + 1 < m->c->layers) h = m->c->relu_ce ? tg_relu(tp, h) : tg_tanh(tp, h);
    }
    return h;
}

static tg_tensor *loss_of(tg_tape *tp, const net *m)
{
    tg_tensor *out = forward(tp, m);
    if (m->c->relu_ce) return tg_softmax_cross_entropy(tp, out, m->y);
    tg_tensor *r = tg_sub(tp, out, m->y);
    return tg_scale(tp, tg_sum(tp, tg_mul(tp, r, r)), 0.5);
}

/* Records the loss, g = dC/dθ and <g, v>; with 'hvp' also H v = d<g, v>/dθ. */
static tg_tensor *record_hvp(tg_tape *tp, const net *m, bool hvp, tg_tensor **hv)
{
    tg_tensor *g[2 * MAX_LAYERS], *gv = NULL;
    if (tg_grad(tp, loss_of(tp, m), NULL, m->p, m->n, g, true) != TG_OK) return NULL;
    for (int i = 0; i < m->n; i++) {
        tg_tensor *t = tg_sum(tp, tg_mul(tp, g[i], m->v[i]));
        gv = gv ? tg_add(tp, gv, t) : t;
    }
    if (hvp && gv && tg_grad(tp, gv, NULL, m->p, m->n, hv, true) != TG_OK) return NULL;
    return gv;
}

/* ====== Timing ====== */

typedef struct timed {
    tg_tape *tp;
    tg_tensor *gv; /* for replay+bw: the output to run backward on */
    net *m;
} timed;

static void step(timed *t)
{
    if (tg_tape_replay(t->tp) != TG_OK) die("replay failed", tg_tape_error(t->tp));
    if (!t->gv) return;
    for (int i = 0; i < t->m->n; i++)
        tg_tensor_zero_grad(t->m->p[i]);
    if (tg_backward(t->tp, t->gv) != TG_OK) die("backward failed", tg_tape_error(t->tp));
}

/* Microseconds per call, median over 'reps' repetitions of 'iters' calls. */
static double time_us(timed *t, int iters, int reps)
{
    double per[MAX_REPS];
    for (int i = 0; i < iters; i++) /* warm-up: one repetition's worth */
        step(t);
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        for (int i = 0; i < iters; i++)
            step(t);
        per[r] = 1e6 * (now_s() - t0) / iters;
    }
    return median(per, reps);
}

/* The largest difference between the two ways' H v, relative to its largest
 * element: they must be the same product. */
static double agreement(net *m, tg_tensor *const *hv)
{
    double diff = 0, big = 0;
    for (int i = 0; i < m->n; i++) {
        const float *a = tg_tensor_cdata(hv[i]), *b = tg_tensor_cdata(tg_tensor_grad(m->p[i]));
        for (int64_t k = 0; k < tg_tensor_numel(hv[i]); k++) {
            double d = (double)a[k] - (double)b[k];
            diff = d > diff ? d : -d > diff ? -d : diff;
            big = (double)a[k] > big ? (double)a[k] : -(double)a[k] > big ? -(double)a[k] : big;
        }
    }
    return big > 0 ? diff / big : diff;
}

/* ====== PyTorch: one child per thread count, "key median_us" lines ====== */

typedef struct torch_figs {
    char key[8][32];
    double us[8];
    int n;
} torch_figs;

static void run_torch(int threads, int reps, torch_figs *f)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "OPENBLAS_NUM_THREADS=%d OMP_NUM_THREADS=%d OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 "
             "'%s' --threads %d --reps %d",
             threads, threads, TG_BENCH_HVP_SCRIPT, threads, reps);
    FILE *p = popen(cmd, "r");
    if (!p) die("cannot start", cmd);
    f->n = 0;
    while (f->n < 8 && fscanf(p, "%31s %lf", f->key[f->n], &f->us[f->n]) == 2)
        f->n++;
    if (pclose(p) != 0) fprintf(stderr, "hvp_bench: %s failed\n", cmd);
}

static double torch_us(const torch_figs *f, const char *key)
{
    for (int i = 0; key && i < f->n; i++)
        if (!strcmp(f->key[i], key)) return f->us[i];
    return 0;
}

static void print_row(const char *what, int threads, double tg, double tg2, double torch,
                      double torch2)
{
    char s2[16] = "", st[16] = "n/a", r[16] = "", st2[16] = "", r2[16] = "";
    if (tg2 > 0) snprintf(s2, sizeof s2, "%.2f", tg2);
    if (torch > 0)
        snprintf(st, sizeof st, "%.2f", torch), snprintf(r, sizeof r, "%.3f", tg / torch);
    if (torch2 > 0)
        snprintf(st2, sizeof st2, "%.2f", torch2), snprintf(r2, sizeof r2, "%.3f", tg / torch2);
    printf("%-10s %2d %12.2f %12s %12s %9s %12s %9s\n", what, threads, tg, s2, st, r, st2, r2);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    int threads[MAX_THREADS] = {1, 2}, n_threads = 2, reps = 11;
    bool torch = true;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            n_threads = 0;
            for (char *s = strtok(argv[++i], ","); s && n_threads < MAX_THREADS;
                 s = strtok(NULL, ","))
                threads[n_threads++] = atoi(s);
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--no-torch")) {
            torch = false;
        } else {
            die("usage: hvp_bench [--threads 1,2] [--reps 11] [--no-torch]", NULL);
        }
    }
    if (reps < 1 || reps > MAX_REPS || n_threads < 1) die("bad --reps or --threads", NULL);
    tg_set_flush_denormals(true);
    printf("== hvp_bench: tapegrad %s, float32, microseconds per product, median of %d "
           "repetitions after a warm-up ==\n",
           tg_version_string(), reps);
    print_load("at the start");
    printf("%-10s %2s %12s %12s %12s %9s %12s %9s\n", "product", "T", "tg replay", "tg replay+bw",
           "torch", "tg/torch", "torch dbl", "tg/dbl");
    for (int t = 0; t < n_threads; t++) {
        torch_figs tf = {.n = 0};
        if (torch) run_torch(threads[t], reps, &tf);
        tg_set_num_threads(threads[t]);
        for (int ci = 0; ci < N_CASES; ci++) {
            const bench_case *c = &cases[ci];
            tg_rng rng;
            tg_rng_seed(&rng, 42);
            net m;
            net_init(&m, c, &rng);
            tg_tensor *hv[2 * MAX_LAYERS];
            timed a = {.tp = tg_tape_new(), .m = &m}, b = {.tp = tg_tape_new(), .m = &m};
            if (!a.tp || !b.tp) die("out of memory", NULL);
            if (!record_hvp(a.tp, &m, true, hv)) die("recording H v failed", tg_tape_error(a.tp));
            if (!(b.gv = record_hvp(b.tp, &m, false, NULL)))
                die("recording <g, v> failed", tg_tape_error(b.tp));
            double us_a = time_us(&a, c->iters, reps), us_b = time_us(&b, c->iters, reps);
            double agree = agreement(&m, hv);
            if (agree > 1e-5) die("the two ways' H v differ", c->name);
            int row = ci == 0 ? ROW_W2_HVP : ROW_TINY_HVP;
            char what[32];
            snprintf(what, sizeof what, "%s hvp", c->name);
            print_row(what, threads[t], us_a, us_b, torch_us(&tf, torch_key[row][0]), 0);
            tg_tape_free(a.tp), tg_tape_free(b.tp);
            if (ci == 1) { /* forward mode on the tiny network */
                timed j = {.tp = tg_tape_new(), .m = &m};
                tg_tensor *jt;
                if (!j.tp || tg_jvp(j.tp, forward(j.tp, &m), m.p, m.n, m.v, &jt) != TG_OK)
                    die("recording the jvp failed", j.tp ? tg_tape_error(j.tp) : NULL);
                print_row("tiny jvp", threads[t], time_us(&j, c->iters, reps), 0,
                          torch_us(&tf, torch_key[ROW_TINY_JVP][0]),
                          torch_us(&tf, torch_key[ROW_TINY_JVP][1]));
                tg_tape_free(j.tp);
            }
            net_free(&m);
        }
    }
    printf("tg replay: the recorded H v replayed; tg replay+bw: the recorded <g, v> replayed, then "
           "tg_backward; torch: double backward (jvp: functorch.jvp, forward mode; torch dbl: "
           "torch.autograd.functional.jvp, double backward)\n");
    print_load("at the end");
    return 0;
}
