/*
 * dist_bench: data-parallel training with tapegrad_dist against PyTorch
 * DistributedDataParallel (gloo), in one run, with the ratios.
 *
 *   W2     784-256-128-10 on Fashion-MNIST, Adam 1e-3, global batch 64 (as
 *          tg_bench's W2): one epoch of full batches on 1 process without MPI,
 *          on 1 and 2 MPI processes of 1 thread, with and without overlap
 *          (marks); images/s and scaling efficiency T1 / (N TN); PyTorch DDP
 *          with gloo on 1 and 2 processes of 1 thread (bench/dist_bench.py)
 *   W3     784-1024-1024-10, SGD, global batch 256, random data: a step on
 *          1 process, on 2 with and without overlap; one averaging of its
 *          1,863,690 gradients (tg_dist_allreduce_grads) for several bucket
 *          sizes against MPI_Allreduce of the same floats alone (the floor),
 *          and against gloo's all_reduce
 *   net    ping-pong between 2 ranks over shared memory and over TCP
 *          loopback: latency (8 bytes) and bandwidth (8 MiB)
 *   model  a ring allreduce, T = 2(p-1) alpha + 2 (p-1)/p n beta, of W2's and
 *          W3's gradients on 8, 64 and 256 machines at 10 and 100 Gbit/s,
 *          with the measured one-process step times: step time and
 *          efficiency with and without overlap (docs/distributed.md)
 *
 * The program is its own driver: it starts mpirun with itself (--child) and
 * the Python script, each printing one JSON object per line, and prints the
 * tables. Every time is a median over repetitions after a warm-up.
 */
#define _XOPEN_SOURCE 700 /* realpath */
#include <tapegrad/dist.h>
#include <tapegrad/nn.h>

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef TG_DIST_BENCH_SCRIPT
#define TG_DIST_BENCH_SCRIPT "bench/dist_bench.py"
#endif
#ifndef TG_MPIRUN
#define TG_MPIRUN "mpirun"
#endif

enum {
    W2_BATCH = 64,
    W2_WARMUP = 100,
    W3_BATCH = 256,
    W3_WARMUP = 3,
    W3_STEPS = 10,
    REDUCE_REPS = 20,
    MAX_RECORDS = 64,
};
static const int64_t w2_sizes[] = {784, 256, 128, 10};
static const int64_t w3_sizes[] = {784, 1024, 1024, 10};

typedef struct options {
    const char *data, *python, *script;
    int reps;
    bool torch;
} options;

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

static int world_rank(void)
{
    int r;
    MPI_Comm_rank(MPI_COMM_WORLD, &r);
    return r;
}

static int world_size(void)
{
    int n;
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    return n;
}

/* A child's failure: rank 0 says it as JSON; every rank leaves without
 * MPI_Finalize, so mpirun ends the job. */
static void child_fail(const char *what, const char *why)
{
    if (world_rank() == 0) {
        json_t *o = json_pack("{s:s, s:s}", "error", what, "why", why ? why : "");
        char *s = json_dumps(o, JSON_COMPACT);
        printf("%s\n", s);
        fflush(stdout);
        free(s);
        json_decref(o);
    }
    exit(EXIT_FAILURE);
}

static void emit(json_t *o)
{
    if (world_rank() == 0) {
        char *s = json_dumps(o, JSON_COMPACT);
        printf("%s\n", s);
        fflush(stdout);
        free(s);
    }
    json_decref(o);
}

/* ====== The networks ====== */

/* An MLP registered as "mlp.<l>.weight/bias" by tg_mlp_new (tg_bench's
 * initialisation), recorded layer by layer so that each layer can be marked. */
typedef struct net {
    tg_params *ps;
    tg_mlp *mlp;
    int n_layers;
    tg_optim *opt;
    tg_tape *tp;
    tg_tensor *x, *y, *w, *loss;
} net;

static void net_init(net *n, int n_layers, const int64_t *sizes, int64_t rows, tg_optim_kind kind,
                     double lr)
{
    tg_activation acts[3] = {TG_ACT_RELU, TG_ACT_RELU, TG_ACT_NONE};
    tg_rng r;
    tg_rng_seed(&r, 1);
    *n = (net){.ps = tg_params_new(), .n_layers = n_layers};
    n->mlp = tg_mlp_new(n->ps, "mlp", n_layers, sizes, acts, TG_F32, &r);
    n->opt = tg_optim_new(n->ps, &(tg_optim_opts){.kind = kind, .lr = lr});
    n->x = tg_tensor_new(TG_F32, 2, (int64_t[]){rows, sizes[0]});
    n->y = tg_tensor_new(TG_F32, 2, (int64_t[]){rows, sizes[n_layers]});
    n->w = tg_tensor_new(TG_F32, 2, (int64_t[]){rows, 1});
    if (!n->mlp || !n->opt || !n->x || !n->y || !n->w) child_fail("setup", tg_last_error()->msg);
    for (int64_t i = 0; i < rows; i++)
        ((float *)tg_tensor_data(n->w))[i] = 1;
}

/* Records the step; with 'd', each layer's parameters marked before it. */
static void net_record(net *n, tg_dist *d, bool marks)
{
    n->tp = tg_tape_new();
    tg_tensor *h = n->x;
    for (int l = 0; l < n->n_layers; l++) {
        char name[32];
        snprintf(name, sizeof name, "mlp.%d.weight", l);
        tg_tensor *w = tg_params_get(n->ps, name);
        snprintf(name, sizeof name, "mlp.%d.bias", l);
        tg_tensor *b = tg_params_get(n->ps, name);
        tg_error err = {0};
        if (d && marks && tg_dist_mark(d, n->tp, (tg_tensor *[]){w, b}, 2, &err))
            child_fail("mark", err.msg);
        h = tg_activate(n->tp, tg_dense(n->tp, h, w, b),
                        l < n->n_layers - 1 ? TG_ACT_RELU : TG_ACT_NONE);
    }
    n->loss = tg_softmax_cross_entropy(n->tp, h, tg_mul(n->tp, n->y, n->w));
    if (d && marks) n->loss = tg_dist_loss(d, n->tp, n->loss);
    if (tg_tape_status(n->tp) != TG_OK) child_fail("record", tg_tape_error(n->tp));
}

/* One training step on the leaves' current batch: averaged over the ranks with 'd'. */
static void net_step(net *n, tg_dist *d)
{
    tg_error err = {0};
    tg_status st = tg_tape_replay(n->tp);
    tg_params_zero_grad(n->ps);
    if (d)
        st = tg_dist_backward(d, n->tp, n->loss, NULL, &err);
    else if (st == TG_OK)
        st = tg_backward(n->tp, n->loss);
    if (st != TG_OK) child_fail("step", d ? err.msg : tg_tape_error(n->tp));
    tg_optim_step(n->opt);
}

static void net_free(net *n)
{
    tg_tape_free(n->tp);
    tg_optim_free(n->opt);
    tg_mlp_free(n->mlp);
    tg_params_free(n->ps);
    tg_tensor_free(n->x);
    tg_tensor_free(n->y);
    tg_tensor_free(n->w);
}

/* ====== W2: epochs of Fashion-MNIST ====== */

static tg_tensor *load(const char *dir, const char *name, double scale)
{
    char path[4096];
    tg_error err = {0};
    tg_tensor *t = NULL;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (tg_idx_load(path, TG_F32, scale, &t, &err) != TG_OK) child_fail("loading", err.msg);
    return t;
}

/* mode "plain": one process, no MPI in the step; "overlap" or "after": every
 * rank of the job, the buckets reduced during or after the sweep. */
static void child_w2(const options *o, const char *mode)
{
    tg_tensor *x = load(o->data, "train-images-idx3-ubyte.gz", 1.0 / 255);
    tg_tensor *labels = load(o->data, "train-labels-idx1-ubyte.gz", 1.0);
    int64_t n = tg_tensor_shape(x)[0];
    tg_tensor_reshape(x, 2, (int64_t[]){n, 784});
    tg_tensor *y = tg_one_hot(labels, 10, TG_F32);
    bool plain = !strcmp(mode, "plain"), overlap = !strcmp(mode, "overlap");
    int ranks = world_size();
    int64_t local = (W2_BATCH + ranks - 1) / ranks, steps = n / W2_BATCH;
    double *per = malloc((size_t)o->reps * sizeof *per);
    for (int rep = -1; rep < o->reps; rep++) { /* rep -1: the warm-up */
        net nt;
        net_init(&nt, 3, w2_sizes, local, TG_OPTIM_ADAM, 1e-3);
        tg_error err = {0};
        tg_dist *d = plain ? NULL
                           : tg_dist_new(MPI_COMM_WORLD, nt.ps,
                                         &(tg_dist_opts){.no_overlap = !overlap}, &err);
        if (!plain && !d) child_fail("dist_new", err.msg);
        net_record(&nt, d, overlap);
        tg_batcher *b = plain ? tg_batcher_new(x, y, W2_BATCH, true, 1) : NULL;
        tg_dist_batcher *db = plain ? NULL : tg_dist_batcher_new(d, x, y, W2_BATCH, true, 1, &err);
        int64_t todo = rep < 0 ? W2_WARMUP : steps;
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = now_s();
        for (int64_t s = 0; s < todo; s++) {
            /* Full batches only, as tg_bench's W2 and the PyTorch side. */
            if (plain)
                tg_batcher_next(b, nt.x, nt.y);
            else
                tg_dist_batcher_next(db, nt.x, nt.y);
            net_step(&nt, d);
        }
        MPI_Barrier(MPI_COMM_WORLD);
        if (rep >= 0) per[rep] = now_s() - t0;
        tg_batcher_free(b);
        tg_dist_batcher_free(db);
        tg_dist_forget(d, nt.tp);
        tg_dist_free(d);
        net_free(&nt);
    }
    double med = median(per, o->reps);
    emit(json_pack("{s:s, s:s, s:i, s:f, s:f, s:f, s:I, s:I}", "workload", "w2", "mode", mode,
                   "ranks", ranks, "s_per_epoch", med, "min", per[0], "max", per[o->reps - 1],
                   "steps", (json_int_t)steps, "buckets", (json_int_t)1));
    free(per);
    tg_tensor_free(x);
    tg_tensor_free(labels);
    tg_tensor_free(y);
}

/* ====== W3: steps, and the averaging of its gradients alone ====== */

static double w3_steps(net *nt, tg_dist *d)
{
    double t[W3_STEPS];
    for (int s = -W3_WARMUP; s < W3_STEPS; s++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = now_s();
        net_step(nt, d);
        if (s >= 0) t[s] = now_s() - t0;
    }
    return median(t, W3_STEPS);
}

static void child_w3(void)
{
    int ranks = world_size();
    int64_t local = W3_BATCH / ranks;
    tg_rng r;
    tg_rng_seed(&r, 7);
    json_t *out = json_pack("{s:s, s:i}", "workload", "w3", "ranks", ranks);
    tg_error err = {0};

    if (ranks == 1) {
        net nt;
        net_init(&nt, 3, w3_sizes, local, TG_OPTIM_SGD, 0.01);
        for (int64_t i = 0; i < local * 784; i++)
            ((float *)tg_tensor_data(nt.x))[i] = (float)tg_rng_normal(&r);
        for (int64_t i = 0; i < local; i++)
            ((float *)tg_tensor_data(nt.y))[i * 10 + (int64_t)tg_rng_below(&r, 10)] = 1;
        net_record(&nt, NULL, false);
        json_object_set_new(out, "step_plain", json_real(w3_steps(&nt, NULL)));
        json_object_set_new(out, "params", json_integer(tg_params_numel(nt.ps)));
        net_free(&nt);
        emit(out);
        return;
    }

    /* Steps with and without overlap, default buckets. */
    static const char *const modes[] = {"step_overlap", "step_after"};
    for (int m = 0; m < 2; m++) {
        net nt;
        net_init(&nt, 3, w3_sizes, local, TG_OPTIM_SGD, 0.01);
        for (int64_t i = 0; i < local * 784; i++)
            ((float *)tg_tensor_data(nt.x))[i] = (float)tg_rng_normal(&r);
        for (int64_t i = 0; i < local; i++)
            ((float *)tg_tensor_data(nt.y))[i * 10 + (int64_t)tg_rng_below(&r, 10)] = 1;
        tg_dist *d =
            tg_dist_new(MPI_COMM_WORLD, nt.ps, &(tg_dist_opts){.no_overlap = m == 1}, &err);
        if (!d) child_fail("dist_new", err.msg);
        net_record(&nt, d, true);
        json_object_set_new(out, modes[m], json_real(w3_steps(&nt, d)));
        json_object_set_new(out, m ? "buckets_after" : "buckets",
                            json_integer(tg_dist_bucket_count(d)));
        tg_dist_forget(d, nt.tp);
        tg_dist_free(d);
        net_free(&nt);
    }

    /* One averaging of every gradient, by bucket size, against MPI_Allreduce alone. */
    net nt;
    net_init(&nt, 3, w3_sizes, local, TG_OPTIM_SGD, 0.01);
    net_record(&nt, NULL, false);
    tg_backward(nt.tp, nt.loss); /* every parameter has a gradient */
    int64_t count = tg_params_numel(nt.ps);
    static const size_t buckets[] = {(size_t)1 << 18, (size_t)1 << 20, (size_t)1 << 22,
                                     (size_t)25 << 20};
    json_t *by_bucket = json_object();
    double t[REDUCE_REPS];
    for (size_t k = 0; k < sizeof buckets / sizeof *buckets; k++) {
        tg_dist *d =
            tg_dist_new(MPI_COMM_WORLD, nt.ps, &(tg_dist_opts){.bucket_bytes = buckets[k]}, &err);
        if (!d) child_fail("dist_new", err.msg);
        for (int rep = -2; rep < REDUCE_REPS; rep++) {
            MPI_Barrier(MPI_COMM_WORLD);
            double t0 = now_s();
            if (tg_dist_allreduce_grads(d, &err) != TG_OK) child_fail("allreduce", err.msg);
            if (rep >= 0) t[rep] = now_s() - t0;
        }
        char key[32];
        snprintf(key, sizeof key, "%zu", buckets[k]);
        json_object_set_new(by_bucket, key,
                            json_pack("{s:f, s:i}", "s", median(t, REDUCE_REPS), "buckets",
                                      tg_dist_bucket_count(d)));
        tg_dist_free(d);
    }
    json_object_set_new(out, "allreduce", by_bucket);
    float *send = calloc((size_t)count, sizeof *send), *recv = calloc((size_t)count, sizeof *recv);
    for (int rep = -2; rep < REDUCE_REPS; rep++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = now_s();
        MPI_Allreduce(send, recv, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        if (rep >= 0) t[rep] = now_s() - t0;
    }
    json_object_set_new(out, "mpi_allreduce", json_real(median(t, REDUCE_REPS)));
    json_object_set_new(out, "floats", json_integer(count));
    free(send);
    free(recv);
    net_free(&nt);
    emit(out);
}

/* ====== Ping-pong between ranks 0 and 1 ====== */

static double ping_pong(char *buf, int bytes, int rounds)
{
    int rank = world_rank();
    double t[7];
    for (int rep = 0; rep < 7; rep++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = now_s();
        for (int i = 0; i < rounds; i++) {
            if (rank == 0) {
                MPI_Send(buf, bytes, MPI_BYTE, 1, 0, MPI_COMM_WORLD);
                MPI_Recv(buf, bytes, MPI_BYTE, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            } else if (rank == 1) {
                MPI_Recv(buf, bytes, MPI_BYTE, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                MPI_Send(buf, bytes, MPI_BYTE, 0, 0, MPI_COMM_WORLD);
            }
        }
        t[rep] = (now_s() - t0) / (2.0 * rounds); /* one way */
    }
    return median(t, 7);
}

static void child_net(const char *transport)
{
    enum { BIG = 8 << 20 };
    char *buf = calloc(BIG, 1);
    ping_pong(buf, 8, 1000); /* warm-up */
    double lat = ping_pong(buf, 8, 10000);
    ping_pong(buf, BIG, 3);
    double big = ping_pong(buf, BIG, 20);
    emit(json_pack("{s:s, s:s, s:i, s:f, s:f}", "workload", "net", "transport", transport, "ranks",
                   world_size(), "latency_s", lat, "bandwidth_Bps", (double)BIG / big));
    free(buf);
}

/* ====== The driver ====== */

typedef struct records {
    json_t *r[MAX_RECORDS];
    int n;
} records;

/* Runs a command and keeps the JSON objects it prints; false when it failed. */
static bool collect(const char *cmd, records *rs)
{
    fprintf(stderr, "dist_bench: %s\n", cmd);
    FILE *p = popen(cmd, "r");
    if (!p) return false;
    char line[8192];
    bool ok = true;
    while (fgets(line, sizeof line, p)) {
        if (line[0] != '{') {
            fputs(line, stderr);
            continue;
        }
        json_t *o = json_loads(line, 0, NULL);
        if (!o) continue;
        if (json_object_get(o, "error")) {
            fprintf(stderr, "dist_bench: %s", line);
            ok = false;
        }
        if (rs->n < MAX_RECORDS)
            rs->r[rs->n++] = o;
        else
            json_decref(o);
    }
    return pclose(p) == 0 && ok;
}

static json_t *find(const records *rs, const char *workload, const char *key, const char *value,
                    int ranks)
{
    for (int i = 0; i < rs->n; i++) {
        json_t *o = rs->r[i];
        const char *w = json_string_value(json_object_get(o, "workload"));
        const char *v = key ? json_string_value(json_object_get(o, key)) : NULL;
        json_t *rk = json_object_get(o, "ranks");
        if (w && !strcmp(w, workload) && (!key || (v && !strcmp(v, value))) &&
            (ranks < 0 || (rk && json_integer_value(rk) == ranks)))
            return o;
    }
    return NULL;
}

static double num(const json_t *o, const char *key)
{
    json_t *v = o ? json_object_get(o, key) : NULL;
    return v ? json_number_value(v) : (double)NAN;
}

static void mpirun_cmd(char *out, size_t size, int np, const char *extra, const char *self,
                       const char *args)
{
    snprintf(out, size, "%s %s--bind-to core -np %d %s %s --child %s", TG_MPIRUN,
             geteuid() == 0 ? "--allow-run-as-root " : "", np, extra, self, args);
}

/* Ring allreduce of n bytes over p machines: 2(p-1) messages of n/p bytes each way. */
static double ring_s(int p, double bytes, double alpha, double bps)
{
    return 2.0 * (p - 1) * alpha + 2.0 * (p - 1) / p * bytes / bps;
}

static void print_model(double w2_step, double w3_step, double lat_tcp)
{
    static const int machines[] = {8, 64, 256};
    /* Latency per message, assumed: TCP over 10 GbE; RDMA over 100 Gbit/s. */
    static const struct {
        const char *name;
        double bps, alpha;
    } nets[] = {{"10 Gbit/s", 10e9 / 8, 20e-6}, {"100 Gbit/s", 100e9 / 8, 3e-6}};
    static const struct {
        const char *name;
        double bytes, *step;
    } work[] = {{"W2 (0.94 MB of gradients)", 235146 * 4.0, NULL},
                {"W3 (7.45 MB)", 1863690 * 4.0, NULL}};
    double steps[2] = {w2_step, w3_step};
    printf("\nModel: ring allreduce of the gradients, T = 2(p-1) alpha + 2(p-1)/p n beta; each\n"
           "machine keeps the measured one-process step (weak scaling: batch per machine\n"
           "fixed: W2 64, W3 256). alpha assumed 20 us at 10 Gbit/s (TCP), 3 us at 100 Gbit/s\n"
           "(RDMA); this machine's TCP loopback measured %.1f us. Overlap: the reduction\n"
           "hidden behind the backward sweep, taken as 2/3 of the step.\n",
           lat_tcp * 1e6);
    printf("%-28s %-11s %8s %12s %12s %10s %10s\n", "workload", "network", "machines",
           "allreduce ms", "step ms", "eff", "eff+ovl");
    for (int w = 0; w < 2; w++) {
        (void)work[w].step;
        for (int k = 0; k < 2; k++)
            for (int m = 0; m < 3; m++) {
                int p = machines[m];
                double c = steps[w], t = ring_s(p, work[w].bytes, nets[k].alpha, nets[k].bps);
                double exposed = fmax(0, t - c * 2.0 / 3.0);
                printf("%-28s %-11s %8d %12.3f %12.3f %9.0f%% %9.0f%%\n", work[w].name,
                       nets[k].name, p, t * 1e3, (c + t) * 1e3, 100 * c / (c + t),
                       100 * c / (c + exposed));
            }
    }
}

/* The machine's load average over the last minute, to say how quiet the run was. */
static double load_average(void)
{
    double l = NAN;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = NAN;
        fclose(f);
    }
    return l;
}

static int driver(const options *o, const char *self)
{
    records rs = {0};
    double load_before = load_average();
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    char cmd[16384], args[4200];
    bool ok = true;
    snprintf(args, sizeof args, "w2 plain --data %s --reps %d", o->data, o->reps);
    mpirun_cmd(cmd, sizeof cmd, 1, "", self, args);
    ok &= collect(cmd, &rs);
    const char *modes[] = {"overlap", "after"};
    for (int np = 1; np <= 2; np++)
        for (int m = 0; m < 2; m++) {
            snprintf(args, sizeof args, "w2 %s --data %s --reps %d", modes[m], o->data, o->reps);
            mpirun_cmd(cmd, sizeof cmd, np, "", self, args);
            ok &= collect(cmd, &rs);
        }
    for (int np = 1; np <= 2; np++) {
        mpirun_cmd(cmd, sizeof cmd, np, "", self, "w3");
        ok &= collect(cmd, &rs);
    }
    mpirun_cmd(cmd, sizeof cmd, 2, "", self, "net shm");
    ok &= collect(cmd, &rs);
    mpirun_cmd(cmd, sizeof cmd, 2, "--mca btl self,tcp", self, "net tcp");
    ok &= collect(cmd, &rs);
    if (o->torch)
        for (int np = 1; np <= 2; np++) {
            snprintf(cmd, sizeof cmd, "%s %s --np %d --data %s --reps %d", o->python, o->script, np,
                     o->data, o->reps);
            ok &= collect(cmd, &rs);
        }

    double t1 = num(find(&rs, "w2", "mode", "plain", 1), "s_per_epoch");
    double steps = num(find(&rs, "w2", "mode", "plain", 1), "steps");
    printf("\nW2 784-256-128-10 on Fashion-MNIST, Adam, global batch %d, %.0f steps an epoch, 1\n"
           "thread per process; efficiency = T(1 process, no MPI) / (N T(N))\n",
           W2_BATCH, steps);
    printf("%-38s %10s %10s %10s %12s\n", "engine", "processes", "s/epoch", "images/s",
           "efficiency");
    printf("%-38s %10d %10.3f %10.0f %11.0f%%\n", "tapegrad, no MPI", 1, t1, steps * W2_BATCH / t1,
           100.0);
    for (int np = 1; np <= 2; np++)
        for (int m = 0; m < 2; m++) {
            double t = num(find(&rs, "w2", "mode", modes[m], np), "s_per_epoch");
            char name[64];
            snprintf(name, sizeof name, "tapegrad_dist, %s the sweep",
                     m ? "reduce after" : "overlap with");
            printf("%-38s %10d %10.3f %10.0f %11.0f%%\n", name, np, t, steps * W2_BATCH / t,
                   100 * t1 / (np * t));
        }
    double torch1 = num(find(&rs, "w2", "engine", "torch", 1), "s_per_epoch");
    for (int np = 1; np <= 2 && o->torch; np++) {
        double t = num(find(&rs, "w2", "engine", "torch", np), "s_per_epoch");
        printf("%-38s %10d %10.3f %10.0f %11.0f%%\n", "PyTorch DDP, gloo", np, t,
               steps * W2_BATCH / t, 100 * torch1 / (np * t));
    }
    if (o->torch) {
        double t2 = num(find(&rs, "w2", "mode", "overlap", 2), "s_per_epoch");
        double p2 = num(find(&rs, "w2", "engine", "torch", 2), "s_per_epoch");
        printf("ratio tapegrad / PyTorch, epoch time: 1 process %.2f, 2 processes %.2f\n",
               t1 / torch1, t2 / p2);
    }

    json_t *w31 = find(&rs, "w3", NULL, NULL, 1), *w32 = find(&rs, "w3", NULL, NULL, 2);
    double plain = num(w31, "step_plain"), ov = num(w32, "step_overlap"),
           af = num(w32, "step_after");
    printf("\nW3 784-1024-1024-10, SGD, global batch %d, random data, 1 thread per process\n",
           W3_BATCH);
    printf("step: 1 process %.2f ms; 2 processes %.2f ms with overlap (%d buckets), %.2f ms "
           "reducing after the sweep; efficiency %.0f%% and %.0f%%\n",
           plain * 1e3, ov * 1e3, (int)num(w32, "buckets"), af * 1e3, 100 * plain / (2 * ov),
           100 * plain / (2 * af));
    double floor_s = num(w32, "mpi_allreduce");
    printf("one averaging of the %.0f gradients, 2 processes (ratio to MPI_Allreduce alone, "
           "%.3f ms):\n",
           num(w32, "floats"), floor_s * 1e3);
    json_t *ab = w32 ? json_object_get(w32, "allreduce") : NULL;
    const char *key;
    json_t *v;
    json_object_foreach(ab, key, v)
    {
        printf("  buckets of %6.2f MiB (%2d): %8.3f ms  %5.2fx\n", atof(key) / (1 << 20),
               (int)num(v, "buckets"), num(v, "s") * 1e3, num(v, "s") / floor_s);
    }
    if (o->torch)
        printf("  gloo all_reduce, same floats:  %8.3f ms  %5.2fx\n",
               num(find(&rs, "allreduce", "engine", "torch", 2), "s") * 1e3,
               num(find(&rs, "allreduce", "engine", "torch", 2), "s") / floor_s);

    json_t *shm = find(&rs, "net", "transport", "shm", 2),
           *tcp = find(&rs, "net", "transport", "tcp", 2);
    printf("\nloopback, one way, 2 processes: shared memory %.2f us and %.2f GB/s; TCP %.2f us "
           "and %.2f GB/s\n",
           num(shm, "latency_s") * 1e6, num(shm, "bandwidth_Bps") / 1e9,
           num(tcp, "latency_s") * 1e6, num(tcp, "bandwidth_Bps") / 1e9);
    print_model(t1 / steps, plain, num(tcp, "latency_s"));
    printf("\n%ld cores; load average (1 min) %.1f before the runs, %.1f after: the figures\n"
           "mean something only when both are well below the core count.\n",
           cores, load_before, load_average());
    for (int i = 0; i < rs.n; i++)
        json_decref(rs.r[i]);
    if (!ok) fprintf(stderr, "dist_bench: some runs failed (above)\n");
    return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}

static void usage(const char *prog)
{
    printf("Usage: %s [--reps N] [--data DIR] [--no-torch] [--python PATH]\n"
           "Runs the data-parallel benchmark (see the top of bench/dist_bench.c): tapegrad_dist\n"
           "on 1 and 2 MPI processes against PyTorch DDP with gloo, the cost of averaging W3's\n"
           "gradients against MPI_Allreduce, loopback latency and bandwidth, and the ring\n"
           "allreduce model for 8 to 256 machines.\n"
           "  --reps N      W2 epochs per configuration (median), default 3\n"
           "  --data DIR    Fashion-MNIST [/usr/share/datasets/fashion-mnist]\n"
           "  --no-torch    skip PyTorch\n"
           "  --python P    the Python with torch [/usr/bin/python3]\n",
           prog);
}

int main(int argc, char **argv)
{
    options o = {.data = "/usr/share/datasets/fashion-mnist",
                 .python = "/usr/bin/python3",
                 .script = TG_DIST_BENCH_SCRIPT,
                 .reps = 3,
                 .torch = true};
    const char *child = NULL, *mode = "";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--child") && i + 1 < argc) {
            child = argv[++i];
            if (i + 1 < argc && argv[i + 1][0] != '-') mode = argv[++i];
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            o.reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--data") && i + 1 < argc) {
            o.data = argv[++i];
        } else if (!strcmp(argv[i], "--python") && i + 1 < argc) {
            o.python = argv[++i];
        } else if (!strcmp(argv[i], "--no-torch")) {
            o.torch = false;
        } else {
            usage(argv[0]);
            return strcmp(argv[i], "--help") && strcmp(argv[i], "-h") ? EXIT_FAILURE : EXIT_SUCCESS;
        }
    }
    if (o.reps < 1) o.reps = 1;
    char self[PATH_MAX];
    if (!child) return driver(&o, realpath(argv[0], self) ? self : argv[0]);
    MPI_Init(&argc, &argv);
    tg_set_num_threads(1);
    tg_set_flush_denormals(true);
    if (!strcmp(child, "w2"))
        child_w2(&o, mode);
    else if (!strcmp(child, "w3"))
        child_w3();
    else if (!strcmp(child, "net"))
        child_net(mode);
    MPI_Finalize();
    return EXIT_SUCCESS;
}
