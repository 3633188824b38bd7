#include "testutil.h"

#include "oplist.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int tu_parse_shape(const char *s, int64_t *shape)
{
    if (!s || !*s || strcmp(s, "scalar") == 0) return 0;
    int rank = 0;
    while (*s) {
        if (rank == TG_MAX_RANK) return -1;
        char *end;
        long long d = strtoll(s, &end, 10);
        if (end == s || d < 0) return -1;
        shape[rank++] = d;
        s = end;
        if (*s == 'x') s++;
        else if (*s) return -1;
    }
    return rank;
}

tg_tensor *tu_from(tg_dtype dt, const char *shape_str, const double *v)
{
    int64_t shape[TG_MAX_RANK];
    int rank = tu_parse_shape(shape_str, shape);
    if (rank < 0) return NULL;
    tg_tensor *t = tg_tensor_new(dt, rank, shape);
    if (!t) return NULL;
    for (int64_t k = 0; k < tg_tensor_numel(t); k++)
        tu_put(t, k, v[k]);
    return t;
}

tg_tensor *tu_random(tg_dtype dt, const char *shape_str, double lo, double hi, uint64_t seed)
{
    int64_t shape[TG_MAX_RANK];
    int rank = tu_parse_shape(shape_str, shape);
    if (rank < 0) return NULL;
    tg_tensor *t = tg_tensor_new(dt, rank, shape);
    if (!t) return NULL;
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int64_t k = 0; k < tg_tensor_numel(t); k++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift64 */
        double u = (double)(x >> 11) / 9007199254740992.0;
        tu_put(t, k, lo + (hi - lo) * u);
    }
    return t;
}

double tu_at(const tg_tensor *t, int64_t k)
{
    const void *d = tg_tensor_cdata(t);
    switch (tg_tensor_dtype(t)) {
    case TG_F64: return ((const double *)d)[k];
    case TG_I64: return (double)((const int64_t *)d)[k];
    default: return (double)((const float *)d)[k];
    }
}

int tu_close(const tg_tensor *a, const tg_tensor *b, double tol, int64_t *bad)
{
    if (!a || !b || tg_tensor_numel(a) != tg_tensor_numel(b)) {
        if (bad) *bad = -1;
        return 0;
    }
    for (int64_t k = 0; k < tg_tensor_numel(a); k++) {
        double x = tu_at(a, k), y = tu_at(b, k);
        if (!(fabs(x - y) <= tol * fmax(1.0, fabs(y)))) {
            if (bad) *bad = k;
            return 0;
        }
    }
    return 1;
}

int tu_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* ====== Values and assertions ====== */

tg_dtype tu_loop_dtype(int i) { return i ? TG_F32 : TG_F64; }

const char *tu_dtype_name(tg_dtype dt)
{
    return dt == TG_F64 ? "f64" : dt == TG_I64 ? "i64" : "f32";
}

void tu_put(tg_tensor *t, int64_t k, double v)
{
    switch (tg_tensor_dtype(t)) {
    case TG_F64: ((double *)tg_tensor_data(t))[k] = v; break;
    case TG_I64: ((int64_t *)tg_tensor_data(t))[k] = (int64_t)floor(v); break;
    default: ((float *)tg_tensor_data(t))[k] = (float)v; break;
    }
}

tg_tensor *tu_lit(tg_dtype dt, const char *shape, const double *v)
{
    tg_tensor *t = tu_from(dt, shape, v);
    ck_assert_ptr_nonnull(t);
    return t;
}

tg_tensor *tu_operand(const char *shape, tg_dtype dt, uint64_t seed)
{
    if (!shape) return NULL;
    tg_tensor *t = tu_random(dt, shape, -1, 1, seed);
    ck_assert_ptr_nonnull(t);
    return t;
}

void tu_expect_exact(const tg_tensor *t, const char *shape, const double *want, const char *what)
{
    int64_t s[TG_MAX_RANK];
    int rank = tu_parse_shape(shape, s);
    ck_assert_msg(t != NULL, "%s: no tensor", what);
    ck_assert_msg(tg_tensor_rank(t) == rank, "%s: rank %d, want %d", what, tg_tensor_rank(t), rank);
    for (int i = 0; i < rank; i++)
        ck_assert_msg(tg_tensor_shape(t)[i] == s[i], "%s: dim %d is %lld, want %lld", what, i,
                      (long long)tg_tensor_shape(t)[i], (long long)s[i]);
    for (int64_t k = 0; k < tg_tensor_numel(t); k++) {
        double w = tg_tensor_dtype(t) == TG_F32 ? (double)(float)want[k] : want[k];
        ck_assert_msg(tu_at(t, k) == w, "%s %s [%lld]: %.17g, want %.17g", what,
                      tu_dtype_name(tg_tensor_dtype(t)), (long long)k, tu_at(t, k), w);
    }
}

/* ====== Ops under test ====== */

typedef struct probe {
    tu_op_fn op;
    const void *row;
    tg_tensor *w; /* fixed weights of the op's output shape */
} probe;

static tg_tensor *probe_fn(tg_tape *tp, tg_tensor *const *in, void *ctx)
{
    const probe *p = ctx;
    return tg_frobenius_loss(tp, p->op(tp, in, p->row), p->w);
}

void tu_probe_gradcheck(const char *name, tu_op_fn op, const void *row, const char *shapes, int s,
                        unsigned frozen, tg_gradcheck_report *r)
{
    tg_tensor *in[4] = {NULL};
    int n = 0;
    char buf[64];
    snprintf(buf, sizeof buf, "%s", shapes);
    for (char *tok = buf, *next; tok && n < 4; tok = next, n++) {
        if ((next = strchr(tok, ';'))) *next++ = '\0';
        in[n] = tu_random(TG_F64, tok, -1, 1, 100u * (unsigned)s + (unsigned)n + 1);
        tg_tensor_set_requires_grad(in[n], !(frozen >> n & 1));
    }
    probe p = {op, row, NULL};
    tg_status st = TG_ERR_NOMEM;
    /* One recording to learn the output shape; W is then filled with cos(0.7k + 0.3). */
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tp ? op(tp, in, row) : NULL;
    if (y) p.w = tg_tensor_new(TG_F64, tg_tensor_rank(y), tg_tensor_shape(y));
    tg_tape_free(tp);
    if (p.w) {
        for (int64_t k = 0; k < tg_tensor_numel(p.w); k++)
            ((double *)tg_tensor_data(p.w))[k] = cos(0.7 * (double)k + 0.3);
        st = tg_gradcheck(probe_fn, in, n, &p, NULL, r);
    }
    tg_tensor_free(p.w);
    for (int i = 0; i < n; i++)
        tg_tensor_free(in[i]);
    ck_assert_msg(st == TG_OK, "%s %s: gradcheck returned %s", name, shapes, tg_status_str(st));
    ck_assert_msg(r->passed, "%s %s: input %d[%lld] analytic %.17g numeric %.17g", name, shapes,
                  r->worst_input, (long long)r->worst_index, r->analytic, r->numeric);
}

/* ====== The rows of oplist.h ====== */

/* v moved 0.1 away from the nearer kink on its side, then rounded to a
 * multiple of the step (see oplist.h). */
static double shaped(const tu_values *v, double x)
{
    if (v->n_kinks) {
        double k = v->kink[0];
        if (v->n_kinks == 2 && fabs(x - v->kink[1]) < fabs(x - k)) k = v->kink[1];
        x += x < k ? -0.1 : 0.1;
    }
    return v->step > 0 ? v->step * round(x / v->step) : x;
}

/* One token "[i:|c:]shape[@a[:b]]" into input *t; false when malformed. */
static bool op_input(const tu_op *op, char *tok, tg_dtype dt, uint64_t seed, tg_tensor **t)
{
    bool index = strncmp(tok, "i:", 2) == 0, frozen = strncmp(tok, "c:", 2) == 0;
    if (index || frozen) tok += 2;
    char *at = strchr(tok, '@');
    tu_values v = op->values;
    bool own_range = at != NULL;
    if (at) {
        *at++ = '\0';
        char *end;
        double a = strtod(at, &end), b;
        if (end == at) return false;
        if (*end == ':') {
            char *b_at = end + 1;
            b = strtod(b_at, &end);
            if (end == b_at) return false;
        } else {
            b = a, a = 0; /* "@n" is [0, n) */
        }
        if (*end) return false;
        v = (tu_values){.lo = a, .hi = b};
    }
    if (index && !own_range) return false; /* an index needs its range */
    *t = tu_random(index ? TG_I64 : TG_F64, tok, v.lo, v.hi, seed);
    if (!*t) return false;
    if (index) return true;
    if (dt != TG_F64) {
        tg_tensor *f = tg_tensor_new(dt, tg_tensor_rank(*t), tg_tensor_shape(*t));
        for (int64_t k = 0; f && k < tg_tensor_numel(f); k++) tu_put(f, k, tu_at(*t, k));
        tg_tensor_free(*t);
        if (!(*t = f)) return false;
    }
    for (int64_t k = 0; k < tg_tensor_numel(*t); k++) tu_put(*t, k, shaped(&v, tu_at(*t, k)));
    tg_tensor_set_requires_grad(*t, !frozen);
    return true;
}

int tu_op_inputs(const tu_op *op, const char *shapes, tg_dtype dt, uint64_t seed, tg_tensor **in)
{
    char buf[256];
    int n = 0;
    snprintf(buf, sizeof buf, "%s", shapes);
    for (char *tok = buf, *next; tok; tok = next, n++) {
        if ((next = strchr(tok, ';'))) *next++ = '\0';
        if (n == TU_MAX_INPUTS || !op_input(op, tok, dt, seed + (uint64_t)n, &in[n])) {
            for (int i = 0; i < n; i++) tg_tensor_free(in[i]);
            return -1;
        }
    }
    return n;
}

static double probe_weight(int64_t k) { return (double)(2 * ((k * 7) % 11) - 9) / 8.0; }

static tg_status probe_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in, (void)ctx;
    double y = 0;
    for (int64_t k = 0; k < tg_tensor_numel(in[0]); k++) y += probe_weight(k) * tu_at(in[0], k);
    tu_put(out, 0, y);
    return TG_OK;
}

static tg_status probe_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                           tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)n_in, (void)ctx;
    if (!gin[0]) return TG_OK;
    for (int64_t k = 0; k < tg_tensor_numel(in[0]); k++) /* dy_k += w_k dG */
        tu_put(gin[0], k, tu_at(gin[0], k) + probe_weight(k) * tu_at(gout, 0));
    return TG_OK;
}

static const char *const probe_rules[] = {"{dy} w", NULL};
static const tg_op_def probe_def = {
    .name = "probe", .forward = probe_forward, .vjp = probe_vjp, .rules = probe_rules};

tg_tensor *tu_probe(tg_tape *tp, tg_tensor *y)
{
    return tg_custom(tp, &probe_def, &y, 1, 0, NULL, NULL);
}

static tg_tensor *probed(tg_tape *tp, tg_tensor *const *in, void *ctx)
{
    const tu_op *op = ctx;
    return tu_probe(tp, op->record(tp, in));
}

tg_status tu_op_gradcheck(const tu_op *op, int s, tg_gradcheck_report *r)
{
    char shapes[256];
    tg_tensor *in[TU_MAX_INPUTS];
    int n = tu_op_shape_list(op, s, shapes, sizeof shapes)
                ? tu_op_inputs(op, shapes, TG_F64, 1000 + 10 * (uint64_t)s, in)
                : -1;
    if (n < 0) return TG_ERR_ARG;
    tg_status st = tg_gradcheck(probed, in, n, (void *)op, NULL, r);
    for (int i = 0; i < n; i++) tg_tensor_free(in[i]);
    return st;
}

/* Σ W ⊙ op(x), W being the last input. */
typedef struct weighted_ctx {
    const tu_op *op;
    int n; /* the op's inputs; W is input n */
} weighted_ctx;

static tg_tensor *weighted(tg_tape *tp, tg_tensor *const *in, void *ctx)
{
    const weighted_ctx *c = ctx;
    return tg_sum(tp, tg_mul(tp, c->op->record(tp, in), in[c->n]));
}

tg_status tu_op_gradgradcheck(const tu_op *op, int s, tg_gradcheck_report *r)
{
    char shapes[256];
    tg_tensor *in[TU_MAX_INPUTS + 1];
    int n = tu_op_shape_list(op, s, shapes, sizeof shapes)
                ? tu_op_inputs(op, shapes, TG_F64, 1000 + 10 * (uint64_t)s, in)
                : -1;
    if (n < 0) return TG_ERR_ARG;
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tp ? op->record(tp, in) : NULL;
    tg_status st = TG_ERR_ARG;
    if (y) {
        in[n] = tg_tensor_new(TG_F64, tg_tensor_rank(y), tg_tensor_shape(y));
        for (int64_t k = 0; in[n] && k < tg_tensor_numel(y); k++)
            tu_put(in[n], k, cos(0.7 * (double)k + 0.3));
        tg_tensor_set_requires_grad(in[n], true);
        weighted_ctx c = {op, n};
        if (in[n]) st = tg_gradgradcheck(weighted, in, n + 1, &c, NULL, r);
        tg_tensor_free(in[n]);
    }
    tg_tape_free(tp);
    for (int i = 0; i < n; i++) tg_tensor_free(in[i]);
    return st;
}

void tu_expect_failed(tg_tape *tp, tg_status want, const char *msg, int case_no)
{
    ck_assert_msg(tg_tape_status(tp) == want, "case %d: status %s, want %s ('%s')", case_no,
                  tg_status_str(tg_tape_status(tp)), tg_status_str(want), tg_tape_error(tp));
    ck_assert_str_eq(tg_tape_error(tp), msg);
    ck_assert_uint_eq(tg_tape_size(tp), 0);
}

void tu_expect_still_failed(tg_tape *tp, tg_status want, const char *msg)
{
    ck_assert_str_eq(tg_tape_error(tp), msg);
    ck_assert_int_eq(tg_backward(tp, NULL), want);
}

/* ====== A scratch folder per test ====== */

static char scratch[64];

void tu_scratch_make(const char *prefix)
{
    snprintf(scratch, sizeof scratch, "/tmp/%s_XXXXXX", prefix);
    ck_assert_ptr_nonnull(mkdtemp(scratch));
}

void tu_scratch_remove(void)
{
    DIR *d = opendir(scratch);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", scratch, e->d_name);
        remove(p);
    }
    closedir(d);
    rmdir(scratch);
}

const char *tu_scratch(void) { return scratch; }

const char *tu_in_scratch(const char *name)
{
    static char buf[2][512];
    static int k;
    k ^= 1;
    snprintf(buf[k], sizeof buf[k], "%s/%s", scratch, name);
    return buf[k];
}

void tu_write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}
