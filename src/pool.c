/*
 * The library's own threads, for the passes BLAS does not run: elementwise
 * ops and their VJPs, bias rows and columns, gradient zeroing and optimizer
 * updates over large tensors. A small pool of POSIX threads rather than
 * OpenMP: the project already links pthreads and nothing else would need
 * OpenMP's runtime; the split below must be fixed and owned by us, not a
 * schedule clause; libgomp's workers spin for 300k cycles after every region
 * by default, on the same cores as OpenBLAS's; and a pool we own can be sized
 * by tg_set_num_threads together with BLAS, run ThreadSanitizer clean, and be
 * joined at exit so valgrind sees no thread's memory left behind.
 *
 * ** Bit-identical at any thread count. ** tg__parallel_for cuts [0, n) into
 * contiguous ranges (a few per thread) and hands each to fn(ctx, begin, end). The callers only
 * ever split along independent outputs (elements, rows, or the columns of a
 * sum over rows), never the terms of one sum, so each output is computed by
 * the same operations in the same order whichever thread computes it and
 * however many there are. tests/test_pool.c checks this.
 *
 * One job at a time: a call that finds the pool busy (another thread's job, or
 * a task calling in again) runs its loop on the calling thread, which gives
 * the same results.
 */
#include "internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

enum {
    MAX_THREADS = 64,
    /* Parts per thread: more parts than threads, claimed as threads come
     * free, so a worker the system preempts holds up at most a small part
     * instead of half the pass (on a loaded machine the caller would wait a
     * whole time slice for it). */
    PARTS_PER_THREAD = 4,
    /* Pause instructions a worker spins on after a job before it sleeps: a
     * few microseconds, enough for the next pass of the same op sequence
     * (an add_bias and then its activation) without a futex wake-up, short
     * enough not to hold a core BLAS or another process wants. */
    SPIN = 1000,
};

/* What a job is: fn over parts of [0, n). */
typedef struct job {
    tg__task_fn fn;
    void *ctx;
    int64_t n;
    int parts;
    uint32_t gen; /* which job this is */
} job;

typedef struct pool pool;

/* What a worker starts with: its pool, and the job generation when it was
 * made, so that a job posted before the thread first runs is still its to
 * help with. */
typedef struct worker_arg {
    pool *p;
    uint32_t gen;
} worker_arg;

struct pool {
    pthread_mutex_t mu;
    pthread_cond_t wake; /* workers wait here for a new job or for stop */
    pthread_cond_t done; /* the caller waits here for the last part */
    pthread_t tid[MAX_THREADS];
    worker_arg arg[MAX_THREADS];
    int n_workers;   /* running; the caller is one more thread */
    atomic_int want; /* threads wanted in all, caller included; 0: BLAS's count */
    bool stop;
    job cur;                  /* the current job, written under mu */
    atomic_uint_fast32_t gen; /* cur.gen, for workers spinning without mu */
    /* The job's generation in the high 32 bits and the next part to claim in
     * the low ones: a worker still finishing an older job cannot claim a
     * part of the new one, which would then run twice. */
    atomic_uint_fast64_t ticket;
    atomic_int left;  /* parts not finished yet */
    atomic_flag busy; /* a job is being run */
};

static pool the_pool = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
    .done = PTHREAD_COND_INITIALIZER,
    .busy = ATOMIC_FLAG_INIT,
};

/* The range of part k of 'parts' over [0, n): contiguous, in order, sizes
 * differing by at most one. */
static void part_range(int64_t n, int parts, int k, int64_t *begin, int64_t *end)
{
    *begin = n / parts * k + (k < n % parts ? k : n % parts);
    *end = *begin + n / parts + (k < n % parts);
}

/* Claims and runs parts of job j until none is left. */
static void run_parts(pool *p, const job *j)
{
    uint_fast64_t t = atomic_load(&p->ticket);
    for (;;) {
        if ((uint32_t)(t >> 32) != j->gen || (int64_t)(uint32_t)t >= j->parts) return;
        if (!atomic_compare_exchange_weak(&p->ticket, &t, t + 1)) continue;
        int64_t b, e;
        part_range(j->n, j->parts, (int)(uint32_t)t, &b, &e);
        j->fn(j->ctx, b, e);
        if (atomic_fetch_sub(&p->left, 1) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
        t = atomic_load(&p->ticket);
    }
}

static void *worker(void *arg)
{
    const worker_arg *wa = arg;
    pool *p = wa->p;
    uint32_t seen = wa->gen;
    for (;;) {
        /* Spin a little for the next job, then sleep until one comes. */
        for (int i = 0; i < SPIN && (uint32_t)atomic_load(&p->gen) == seen; i++)
            CPU_RELAX();
        pthread_mutex_lock(&p->mu);
        while (!p->stop && p->cur.gen == seen)
            pthread_cond_wait(&p->wake, &p->mu);
        bool stop = p->stop;
        job j = p->cur;
        pthread_mutex_unlock(&p->mu);
        if (stop) return NULL;
        seen = j.gen;
        run_parts(p, &j);
    }
}

/* Stops and joins every worker. Called with the pool not busy. */
static void stop_workers(pool *p)
{
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_workers; i++)
        pthread_join(p->tid[i], NULL);
    p->n_workers = 0;
    p->stop = false;
}

/* Threads wanted: as tg_set_num_threads said, else as many as BLAS uses. */
static int wanted(const pool *p)
{
    int n = atomic_load(&p->want);
    return n > 0 ? n : tg__blas_threads();
}

/* Starts workers until there are want - 1; fewer when a thread cannot be
 * made (the loops then run on fewer threads, with the same results). */
static void start_workers(pool *p)
{
    int want = wanted(p) < MAX_THREADS ? wanted(p) : MAX_THREADS;
    for (; p->n_workers < want - 1; p->n_workers++) {
        worker_arg *wa = &p->arg[p->n_workers];
        *wa = (worker_arg){p, (uint32_t)atomic_load(&p->gen)};
        if (pthread_create(&p->tid[p->n_workers], NULL, worker, wa) != 0) break;
    }
}

/* The library stops its threads when the program ends or unloads it, so none
 * is left running into the C library's exit and no tool reports their stacks. */
__attribute__((destructor)) static void pool_exit(void)
{
    pool *p = &the_pool;
    if (atomic_flag_test_and_set(&p->busy)) return; /* a job still runs: leave it */
    stop_workers(p);
    atomic_flag_clear(&p->busy);
}

void tg__pool_set_threads(int n)
{
    pool *p = &the_pool;
    if (n < 1) n = 1;
    if (n > MAX_THREADS) n = MAX_THREADS;
    /* Wait for a job of another thread to end rather than resize under it. */
    while (atomic_flag_test_and_set(&p->busy))
        CPU_RELAX();
    if (n != wanted(p)) stop_workers(p);
    atomic_store(&p->want, n);
    atomic_flag_clear(&p->busy);
}

int tg__pool_threads(void) { return wanted(&the_pool); }

void tg__pool_restart(void)
{
    pool *p = &the_pool;
    while (atomic_flag_test_and_set(&p->busy))
        CPU_RELAX();
    stop_workers(p); /* the next job starts them from the calling thread */
    atomic_flag_clear(&p->busy);
}

void tg__parallel_for(int64_t n, int64_t grain, tg__task_fn fn, void *ctx)
{
    pool *p = &the_pool;
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    int64_t by_size = n / grain;
    int want = wanted(p);
    int parts = want < 2                            ? 1
                : by_size < PARTS_PER_THREAD * want ? (int)by_size
                                                    : PARTS_PER_THREAD * want;
    if (parts < 2 || atomic_flag_test_and_set(&p->busy)) {
        fn(ctx, 0, n);
        return;
    }
    start_workers(p);
    if (p->n_workers == 0) { /* no thread could be started */
        atomic_flag_clear(&p->busy);
        fn(ctx, 0, n);
        return;
    }
    pthread_mutex_lock(&p->mu);
    job j = {fn, ctx, n, parts, p->cur.gen + 1};
    p->cur = j;
    atomic_store(&p->left, parts);
    atomic_store(&p->ticket, (uint_fast64_t)j.gen << 32);
    atomic_store(&p->gen, j.gen);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    run_parts(p, &j);
    /* The last part may still run on a worker: spin briefly, then sleep. */
    for (int i = 0; i < SPIN && atomic_load(&p->left) > 0; i++)
        CPU_RELAX();
    if (atomic_load(&p->left) > 0) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->left) > 0)
            pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
    atomic_flag_clear(&p->busy);
}

/* ====== Zeroing ====== */

typedef struct zero_job {
    unsigned char *p;
} zero_job;

static void zero_part(void *ctx, int64_t begin, int64_t end)
{
    const zero_job *z = ctx;
    memset(z->p + begin, 0, (size_t)(end - begin));
}

void tg__zero_big(void *p, size_t bytes)
{
    zero_job z = {p};
    tg__parallel_for((int64_t)bytes, TG__PAR_GRAIN_BYTES, zero_part, &z);
}
