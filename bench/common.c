/* Helpers shared by the benchmark's files: timing, records, GEMM floors. */
#include "bench.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#ifdef TG_BENCH_CBLAS
#include <cblas.h>
#endif

const int64_t w2_sizes[W2_LAYERS + 1] = {784, 256, 128, 10};
const int64_t w3_sizes[W3_LAYERS + 1] = {784, 1024, 1024, 10};

double now_s(void)
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

double median(const double *v, int n)
{
    double *s = malloc((size_t)n * sizeof *s);
    if (!s) return NAN;
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    double m = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
    free(s);
    return m;
}

double vmin(const double *v, int n)
{
    double m = v[0];
    for (int i = 1; i < n; i++)
        m = v[i] < m ? v[i] : m;
    return m;
}

double vmax(const double *v, int n)
{
    double m = v[0];
    for (int i = 1; i < n; i++)
        m = v[i] > m ? v[i] : m;
    return m;
}

long maxrss_kb(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : -1; /* KiB on Linux */
}

bool has_workload(const options *o, const char *w)
{
    size_t len = strlen(w);
    for (const char *p = o->workloads; (p = strstr(p, w)); p += len)
        if ((p == o->workloads || p[-1] == ',') && (p[len] == ',' || p[len] == '\0')) return true;
    return false;
}

_Noreturn void child_fail(int threads, const char *workload, const char *what, const char *detail)
{
    json_t *r =
        json_pack("{s:s, s:s, s:i, s:s++}", "engine", "tapegrad", "workload", workload, "threads",
                  threads, "error", what, detail && *detail ? ": " : "", detail ? detail : "");
    char *s = r ? json_dumps(r, JSON_COMPACT) : NULL;
    if (s) printf("%s\n", s);
    fflush(stdout);
    free(s);
    json_decref(r);
    exit(EXIT_FAILURE);
}

void emit(const char *engine, const char *workload, int threads, bool ftz, const char *metric,
          const double *per, int n, json_t *extra)
{
    json_t *r =
        json_pack("{s:s, s:s, s:i, s:b, s:s, s:f, s:f, s:f, s:i}", "engine", engine, "workload",
                  workload, "threads", threads, "ftz", ftz, "metric", metric, "median",
                  median(per, n), "min", vmin(per, n), "max", vmax(per, n), "reps", n);
    if (r && extra) json_object_update(r, extra);
    char *s = r ? json_dumps(r, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
    if (s) printf("%s\n", s);
    fflush(stdout);
    free(s);
    json_decref(r);
    json_decref(extra);
}

const char *timed_reps(step_fn f, void *ctx, int warmup, int steps, int reps, double *per)
{
    const char *e;
    int64_t k = 0;
    for (; k < warmup; k++)
        if ((e = f(ctx, k))) return e;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        for (int i = 0; i < steps; i++, k++)
            if ((e = f(ctx, k))) return e;
        per[r] = (now_s() - t0) / steps;
    }
    return NULL;
}

/* ====== GEMM floors ====== */

#ifdef TG_BENCH_CBLAS
float *floor_buf(floor_plan *fp, int64_t rows, int64_t cols, double amp)
{
    if (fp->n_mem == FLOOR_MAX_BUFS) return NULL;
    float *p = malloc((size_t)(rows * cols) * sizeof *p);
    if (!p) return NULL;
    fp->mem[fp->n_mem++] = p;
    for (int64_t i = 0; i < rows * cols; i++)
        p[i] = (float)(amp * (2 * tg_rng_uniform(&fp->rng) - 1));
    return p;
}

void floor_add(floor_plan *fp, bool ta, bool tb, int m, int n, int k, const float *a,
               const float *b, float beta, float *c)
{
    if (fp->n_calls == FLOOR_MAX_CALLS) return;
    fp->calls[fp->n_calls++] =
        (gemm_call){ta, tb, m, n, k, ta ? m : k, tb ? k : n, n, beta, a, b, c};
}

bool floor_plan_mlp(floor_plan *fp, int n_layers, const int64_t *sizes, int64_t batch,
                    uint64_t seed)
{
    memset(fp, 0, sizeof *fp);
    tg_rng_seed(&fp->rng, seed);
    float *x[8], *w[8], *z[8], *dz[8], *dw[8], *dx[8] = {NULL};
    if (n_layers > 8) return false;
    for (int l = 0; l < n_layers; l++) {
        int64_t in = sizes[l], out = sizes[l + 1];
        x[l] = floor_buf(fp, batch, in, 1.0);
        w[l] = floor_buf(fp, in, out, 0.05);
        z[l] = floor_buf(fp, batch, out, 1.0);
        dz[l] = floor_buf(fp, batch, out, 1e-3);
        dw[l] = floor_buf(fp, in, out, 1e-3);
        if (l > 0) dx[l] = floor_buf(fp, batch, in, 1e-3);
        if (!x[l] || !w[l] || !z[l] || !dz[l] || !dw[l] || (l > 0 && !dx[l])) return false;
    }
    int b = (int)batch;
    for (int l = 0; l < n_layers; l++)
        floor_add(fp, false, false, b, (int)sizes[l + 1], (int)sizes[l], x[l], w[l], 0.0f, z[l]);
    for (int l = n_layers - 1; l >= 0; l--) {
        int in = (int)sizes[l], out = (int)sizes[l + 1];
        if (l > 0) floor_add(fp, false, true, b, in, out, dz[l], w[l], 1.0f, dx[l]);
        floor_add(fp, true, false, in, out, b, x[l], dz[l], 1.0f, dw[l]);
    }
    return true;
}

void floor_plan_free(floor_plan *fp)
{
    for (int i = 0; i < fp->n_mem; i++)
        free(fp->mem[i]);
    fp->n_mem = 0;
}

const char *floor_step(void *ctx, int64_t i)
{
    const floor_plan *fp = ctx;
    (void)i;
    for (int c = 0; c < fp->n_calls; c++) {
        const gemm_call *g = &fp->calls[c];
        cblas_sgemm(CblasRowMajor, g->ta ? CblasTrans : CblasNoTrans,
                    g->tb ? CblasTrans : CblasNoTrans, g->m, g->n, g->k, 1.0f, g->a, g->lda, g->b,
                    g->ldb, g->beta, g->c, g->ldc);
    }
    return NULL;
}

double floor_flop(const floor_plan *fp)
{
    double f = 0;
    for (int c = 0; c < fp->n_calls; c++)
        f += 2.0 * fp->calls[c].m * (double)fp->calls[c].n * (double)fp->calls[c].k;
    return f;
}
#endif
