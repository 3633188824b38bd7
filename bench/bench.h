/*
 * What the benchmark's files share: the options of a run, the workloads'
 * constants, timing and JSON records, and the GEMM floors. tg_bench.c is the
 * driver (W0-W3, the table); peers.c holds the peers and floors (FANN, the
 * hand-written W1 step, the matrix products alone); workloads.c holds W4, W5
 * and the growth sweep.
 */
#ifndef TG_BENCH_H
#define TG_BENCH_H

#include <tapegrad/tapegrad.h>

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* ORDER WORKLOADS: warm-up steps and steps per repetition; torch_bench.py
 * uses the same numbers. */
enum {
    W0_WARMUP = 2000,
    W0_STEPS = 2000,
    W1_WARMUP = 500,
    W1_STEPS = 1000,
    W2_WARMUP = 100,
    W2_STEP_WARMUP = 20, /* W2's steps alone, beside their GEMM floor */
    W2_STEPS = 20,
    W3_WARMUP = 3,
    W3_STEPS = 3,
    W4_WARMUP = 2,
    W4_STEPS = 3,
    W5_WARMUP = 3,
    W5_STEPS = 5,
    W1_BATCH = 32,
    W1_POOL = 16,
    W2_BATCH = 64,
    EVAL_CHUNK = 500,
    W3_BATCH = 256,
    W4_BATCH = 100,
    W5_T = 32, /* characters per window */
    W5_BATCH = 32,
    W5_EMBED = 32,
    W5_HIDDEN = 128,
    W5_VOCAB = 80,
    MAX_THREAD_COUNTS = 8,
    RETRY_BUDGET_S = 240, /* no new retries after this many seconds of the whole run */
};
#define W3_LAYERS 3
#define W2_LAYERS 3
extern const int64_t w2_sizes[W2_LAYERS + 1], w3_sizes[W3_LAYERS + 1];

typedef struct options {
    bool torch, child, ftz, omp_active;
    int threads[MAX_THREAD_COUNTS], n_threads;
    char workloads[128]; /* "w0,w1,w2,w3,w4,w5,w5r,growth", any subset */
    int reps, w2_reps, w2_epochs;
    long w2_train; /* rows of the training set used; 0 means all */
    long seed;
    long growth_max; /* longest chain of the growth sweep */
    const char *data, *python, *script, *json_out;
    int retries;    /* extra runs of a child that other processes disturbed */
    double noise;   /* CPUs kept busy by others above which a child counts as disturbed */
    double t_start; /* when the driver started (now_s) */
} options;

/* ====== Helpers (common.c) ====== */

double now_s(void);
double median(const double *v, int n);
double vmin(const double *v, int n);
double vmax(const double *v, int n);
/* Peak resident memory of this process in KiB. */
long maxrss_kb(void);
/* Whether 'w' is one of the comma-separated names of o->workloads. */
bool has_workload(const options *o, const char *w);
/* A child reports a failure as a record, so the table can say where it broke. */
_Noreturn void child_fail(int threads, const char *workload, const char *what, const char *detail);
/* Prints a timing record with median, min, max over the repetitions plus the
 * fields of 'extra' (which it consumes). */
void emit(const char *engine, const char *workload, int threads, bool ftz, const char *metric,
          const double *per, int n, json_t *extra);

typedef const char *(*step_fn)(void *ctx, int64_t i);
/* Seconds per step of each of 'reps' repetitions of 'steps' steps, after 'warmup' steps. */
const char *timed_reps(step_fn f, void *ctx, int warmup, int steps, int reps, double *per);

/* ====== GEMM floors (common.c; with OpenBLAS only) ====== */

#ifdef TG_BENCH_CBLAS
/* One sgemm: row-major C = op(A) op(B) + beta C. */
typedef struct gemm_call {
    bool ta, tb;
    int m, n, k, lda, ldb, ldc;
    float beta;
    const float *a, *b;
    float *c;
} gemm_call;

enum { FLOOR_MAX_CALLS = 16, FLOOR_MAX_BUFS = 48 };

/* The matrix products of one training step, on buffers of their shapes. */
typedef struct floor_plan {
    gemm_call calls[FLOOR_MAX_CALLS];
    int n_calls;
    float *mem[FLOOR_MAX_BUFS];
    int n_mem;
    tg_rng rng;
} floor_plan;

/* A buffer of rows x cols uniform values in [-amp, amp), freed with the plan. */
float *floor_buf(floor_plan *fp, int64_t rows, int64_t cols, double amp);
/* Appends C = op(A) op(B) + beta C with A, B, C of the given (stored) shapes. */
void floor_add(floor_plan *fp, bool ta, bool tb, int m, int n, int k, const float *a,
               const float *b, float beta, float *c);
/* The products of an MLP step as tapegrad's matmul makes them: forward
 * Z = X W (beta 0), then in reverse layer order dX += dZ W^T (not for the
 * first layer, whose input needs no gradient) and dW += X^T dZ (beta 1). */
bool floor_plan_mlp(floor_plan *fp, int n_layers, const int64_t *sizes, int64_t batch,
                    uint64_t seed);
void floor_plan_free(floor_plan *fp);
/* Runs the plan's products once (a step_fn). */
const char *floor_step(void *ctx, int64_t i);
/* FLOPs of the plan's products. */
double floor_flop(const floor_plan *fp);
#endif

/* ====== Peers and floors (peers.c) ====== */

/* W0 trained by FANN (fixed-MLP C library), same network and SGD; a record
 * with engine "fann", or one saying why it was skipped. */
void bench_fann_w0(const options *o, int threads, bool ftz);
/* W1 as a hand-written C step with the same BLAS calls: engine "c_floor". */
void bench_w1_floor(const options *o, int threads, bool ftz);

/* ====== W4, W5 and the growth sweep (workloads.c) ====== */

void bench_cnn(const options *o, int threads, bool ftz, long base_rss);
void bench_lstm(const options *o, int threads, bool ftz, long base_rss, bool record_each_step);
void bench_growth(const options *o, int threads, bool ftz);

#endif /* TG_BENCH_H */
