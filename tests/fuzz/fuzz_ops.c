/*
 * Fuzz target: the bytes are a program of calls on one tape: every public
 * op, tg_dense and tg_activate, tg_custom with sound and broken definitions,
 * backward, seeded backward, replay, reset, anomaly mode, explain and DOT,
 * on leaves of random (often invalid) shapes, dtypes and values, and NULLs.
 *
 * The only allowed outcomes are a result or a clean TG_ERR_* on the tape. The
 * target also knows what each call should do, so it checks more than "no
 * crash": an op on a healthy tape returns NULL exactly when its operands are
 * wrong (and then leaves a status and a message), a result has the shape the
 * op promises, elementwise results match a plain reference loop, gradients
 * have their tensor's shape, and replay reproduces the recording bit for bit.
 * Besides the ops it knows, it calls every row of the op list
 * (tests/oplist.h) on operands from its slots, except the ops named in
 * not_fuzzed, and checks the contract every op keeps.
 */
#include "fuzzutil.h"

#include "../oplist.h"

#include <tapegrad/tapegrad.h>

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ====== Reading the program ====== */

typedef struct prog {
    const uint8_t *p;
    size_t n;
} prog;

/* The next byte; 0 once the input is used up, so every program ends cleanly. */
static unsigned next(prog *pr)
{
    if (!pr->n) return 0;
    pr->n--;
    return *pr->p++;
}

/* Mostly small dimensions, sometimes impossible ones: negative, or so large
 * that a tensor with an element would need terabytes, which the allocator
 * refuses. Only an empty tensor can have such a dimension and exist. */
static const int64_t dims[16] = {0, 1, 2, 3, 4, 5, 1, 2, 3, 1, INT64_C(1) << 40,
                                 INT64_C(1) << 62, INT64_MAX, -1, 2, 0};

static const double values[16] = {0.0, -0.0, 1, -1, 0.5, -2.5, 3, 1e4,
                                  -1e4, 1e-40, 710, -710, 1e300, HUGE_VAL, -HUGE_VAL, (double)NAN};

/* Outputs above this many elements can only be the impossible kind above. */
#define SMALL 4096

/* Element count with the library's limit (numel * 8 bytes fits in int64),
 * written independently of it; -1 for a bad rank or shape. */
static int64_t ref_numel(int rank, const int64_t *shape)
{
    if (rank < 0 || rank > TG_MAX_RANK || (rank > 0 && !shape)) return -1;
    bool empty = false;
    for (int i = 0; i < rank; i++) {
        if (shape[i] < 0) return -1;
        empty |= shape[i] == 0;
    }
    if (empty) return 0;
    int64_t n = 1;
    for (int i = 0; i < rank; i++)
        if (__builtin_mul_overflow(n, shape[i], &n)) return -1;
    return n > INT64_MAX / 8 ? -1 : n;
}

/* ====== Tensors through the public accessors ====== */

static double get(const tg_tensor *t, int64_t i)
{
    const void *d = tg_tensor_cdata(t);
    switch (tg_tensor_dtype(t)) {
    case TG_F64: return ((const double *)d)[i];
    case TG_I64: return (double)((const int64_t *)d)[i];
    default: return (double)((const float *)d)[i];
    }
}

static void set(tg_tensor *t, int64_t i, double v)
{
    if (tg_tensor_dtype(t) == TG_F64)
        ((double *)tg_tensor_data(t))[i] = v;
    else
        ((float *)tg_tensor_data(t))[i] = (float)v;
}

static size_t bytes_of(const tg_tensor *t)
{
    return (size_t)tg_tensor_numel(t) * (tg_tensor_dtype(t) == TG_F32 ? 4 : 8);
}

static bool same(double a, double b) { return a == b || (isnan(a) && isnan(b)); }

static bool has_shape(const tg_tensor *t, int rank, const int64_t *shape)
{
    if (tg_tensor_rank(t) != rank) return false;
    for (int i = 0; i < rank; i++)
        if (tg_tensor_shape(t)[i] != shape[i]) return false;
    return true;
}

/* ====== The program's state: slots it refers to by number ====== */

enum kind { EMPTY, LEAF, TAPE, LEAF_GRAD, TAPE_GRAD };
#define N_SLOTS    16
#define MAX_LEAVES 48

typedef struct state {
    tg_tape *tp;
    tg_tensor *slot[N_SLOTS];
    enum kind kind[N_SLOTS];
    tg_tensor *leaves[MAX_LEAVES]; /* freed at the end */
    int n_leaves;
    bool anomaly;
    /* A leaf or gradient that a recorded op may read has changed since the
     * last recording or replay, so replay may legitimately give new values. */
    bool dirty;
} state;

static FILE *devnull;
static double rule_ctx = 2.5; /* the double the custom op with rules gets as ctx, for {c} */

static void put(state *st, prog *pr, enum kind k, tg_tensor *t)
{
    unsigned i = next(pr) % N_SLOTS;
    st->slot[i] = t;
    st->kind[i] = t ? k : EMPTY;
}

/* An operand: a slot (possibly empty) or, now and then, NULL. */
static tg_tensor *pick(state *st, prog *pr)
{
    unsigned i = next(pr) % (N_SLOTS + 2);
    return i < N_SLOTS ? st->slot[i] : NULL;
}

/* ====== Leaves ====== */

static void op_leaf(state *st, prog *pr)
{
    static const int ranks[8] = {0, 1, 2, 2, 3, 4, 5, -1};
    unsigned d = next(pr), r = next(pr);
    tg_dtype dt = d % 8 < 3 ? TG_F32 : d % 8 < 7 ? TG_F64 : (tg_dtype)7;
    int rank = ranks[r & 7];
    int64_t shape[TG_MAX_RANK + 1];
    for (int i = 0; i < TG_MAX_RANK + 1; i++) shape[i] = dims[next(pr) % 16];
    const int64_t *sp = (r & 0xf0) == 0xf0 ? NULL : shape;
    int64_t numel = ref_numel(rank, sp);
    if (numel < 0 || (dt != TG_F32 && dt != TG_F64)) {
        FZ_CHECK(!tg_tensor_new(dt, rank, sp));
        FZ_CHECK(!tg_tensor_from(dt, rank, sp, values));
        return;
    }
    tg_tensor *t;
    if (numel > SMALL) {
        t = tg_tensor_new(dt, rank, sp);
        FZ_CHECK(!t); /* terabytes: the allocator says no */
        return;
    }
    /* A cycle of one to four values from the table fills the data. */
    double cycle[4], data[SMALL];
    int n_cycle = (int)(next(pr) % 4) + 1;
    for (int i = 0; i < n_cycle; i++) cycle[i] = values[next(pr) % 16];
    float data32[SMALL];
    for (int64_t i = 0; i < numel; i++) {
        data[i] = cycle[i % n_cycle];
        data32[i] = (float)data[i];
    }
    if (numel > 0) FZ_CHECK(!tg_tensor_from(dt, rank, sp, NULL));
    t = tg_tensor_from(dt, rank, sp, dt == TG_F64 ? (void *)data : (void *)data32);
    FZ_CHECK(t && tg_tensor_numel(t) == numel && tg_tensor_dtype(t) == dt);
    if (st->n_leaves == MAX_LEAVES) {
        tg_tensor_free(t);
        return;
    }
    st->leaves[st->n_leaves++] = t;
    tg_tensor_set_requires_grad(t, r & 8);
    if (r & 0x10) tg_tensor_set_name(t, d & 0x80 ? NULL : "a-name-longer-than-the-63-bytes-a-tensor-keeps-xxxxxxxxxxxxxxxxxxxxxxxx");
    put(st, pr, LEAF, t);
}

/* ====== What each op should give ====== */

typedef struct expect {
    bool ok;        /* the op must succeed (unless its result is too large to exist) */
    bool composite; /* several ops (tg_dense): a failure may leave the first ones recorded */
    int rank;       /* of the result, when ok */
    int64_t shape[TG_MAX_RANK];
} expect;

static expect fails(void) { return (expect){.ok = false}; }

/* A result of this shape, if such a tensor can exist at all. */
static expect gives(int rank, const int64_t *shape)
{
    if (ref_numel(rank, shape) < 0) return fails();
    expect e = {.ok = true, .rank = rank};
    for (int i = 0; i < rank; i++) e.shape[i] = shape[i];
    return e;
}

/* Operands present and of one float dtype (a listed op may leave an I64 result in a slot). */
static bool operands(tg_tensor *const *in, int n)
{
    for (int i = 0; i < n; i++)
        if (!in[i] || tg_tensor_dtype(in[i]) != tg_tensor_dtype(in[0]) ||
            tg_tensor_dtype(in[i]) == TG_I64)
            return false;
    return true;
}

static int64_t dim_right(const tg_tensor *t, int d)
{
    int r = tg_tensor_rank(t);
    return d < r ? tg_tensor_shape(t)[r - 1 - d] : 1;
}

static expect expect_broadcast(tg_tensor *a, tg_tensor *b)
{
    int rank = tg_tensor_rank(a) > tg_tensor_rank(b) ? tg_tensor_rank(a) : tg_tensor_rank(b);
    int64_t shape[TG_MAX_RANK];
    for (int d = 0; d < rank; d++) {
        int64_t x = dim_right(a, d), y = dim_right(b, d);
        if (x != y && x != 1 && y != 1) return fails();
        shape[rank - 1 - d] = x == 1 ? y : x;
    }
    return gives(rank, shape);
}

/* torch.matmul for ranks 2 to 4: [..., n, k] x [..., k, m], the batch
 * dimensions (all but the last two) broadcast. */
static expect expect_matmul(tg_tensor *a, tg_tensor *b)
{
    int ra = tg_tensor_rank(a), rb = tg_tensor_rank(b), rank = ra > rb ? ra : rb;
    if (ra < 2 || rb < 2) return fails();
    const int64_t *sa = tg_tensor_shape(a), *sb = tg_tensor_shape(b);
    int64_t n = sa[ra - 2], k = sa[ra - 1], m = sb[rb - 1];
    if (sb[rb - 2] != k || n > INT_MAX || k > INT_MAX || m > INT_MAX) return fails();
    int64_t shape[TG_MAX_RANK];
    for (int d = 2; d < rank; d++) {
        int64_t x = dim_right(a, d), y = dim_right(b, d);
        if (x != y && x != 1 && y != 1) return fails();
        shape[rank - 1 - d] = x == 1 ? y : x;
    }
    shape[rank - 2] = n;
    shape[rank - 1] = m;
    return gives(rank, shape);
}

static expect expect_sum_axis(tg_tensor *x, int axis, bool keepdim)
{
    int rank = tg_tensor_rank(x), ax = axis < 0 ? axis + rank : axis;
    if (ax < 0 || ax >= rank) return fails();
    int64_t shape[TG_MAX_RANK];
    int k = 0;
    for (int i = 0; i < rank; i++) {
        if (i != ax)
            shape[k++] = tg_tensor_shape(x)[i];
        else if (keepdim)
            shape[k++] = 1;
    }
    return gives(k, shape);
}

/* ====== Reference values for the elementwise ops ====== */

enum ew { EW_NONE, EW_ADD, EW_SUB, EW_MUL, EW_DIV, EW_NEG, EW_SQUARE, EW_RELU, EW_EXP, EW_LOG,
          EW_TANH, EW_SCALE };

/* The flat index into t of element 'flat' of a result of shape 'shape',
 * broadcasting t's size-1 and missing dimensions. */
static int64_t bcast_index(const tg_tensor *t, int rank, const int64_t *shape, int64_t flat)
{
    int64_t idx = 0, stride = 1;
    for (int d = 0; d < rank; d++) {
        int64_t n = shape[rank - 1 - d], i = flat % n, tn = dim_right(t, d);
        flat /= n;
        idx += (tn == 1 ? 0 : i) * stride;
        stride *= tn;
    }
    return idx;
}

/* The op's expression evaluated in the element type T, as the op does. */
#define EW_REF(T, EXP, LOG, TANH)                                                                  \
    do {                                                                                           \
        T a = (T)av, b = (T)bv, s = (T)scale, y = 0;                                               \
        switch (ew) {                                                                              \
        case EW_ADD: y = a + b; break;                                                             \
        case EW_SUB: y = a - b; break;                                                             \
        case EW_MUL: y = a * b; break;                                                             \
        case EW_DIV: y = a / b; break;                                                             \
        case EW_NEG: y = -a; break;                                                                \
        case EW_SQUARE: y = a * a; break;                                                          \
        case EW_RELU: y = a < 0 ? 0 : a; break;                                                    \
        case EW_EXP: y = EXP(a); break;                                                            \
        case EW_LOG: y = LOG(a); break;                                                            \
        case EW_TANH: y = TANH(a); break;                                                          \
        case EW_SCALE: y = s * a; break;                                                           \
        case EW_NONE: break;                                                                       \
        }                                                                                          \
        return (double)y;                                                                          \
    } while (0)

/* F32 tanh is correctly rounded (docs/ops.md), which glibc's tanhf is not:
 * the reference rounds the long double tanh instead. */
static float tanh_ref(float x) { return (float)tanhl((long double)x); }

static double ew_ref(enum ew ew, tg_dtype dt, double av, double bv, double scale)
{
    if (dt == TG_F64) EW_REF(double, exp, log, tanh);
    EW_REF(float, expf, logf, tanh_ref);
}

static void check_values(enum ew ew, tg_tensor *y, tg_tensor *a, tg_tensor *b, double scale)
{
    int rank = tg_tensor_rank(y);
    const int64_t *shape = tg_tensor_shape(y);
    for (int64_t i = 0; i < tg_tensor_numel(y); i++) {
        double av = get(a, b ? bcast_index(a, rank, shape, i) : i);
        double bv = b ? get(b, bcast_index(b, rank, shape, i)) : 0;
        FZ_CHECK(same(get(y, i), ew_ref(ew, tg_tensor_dtype(y), av, bv, scale)));
    }
}

/* ====== Custom ops: a sound one and broken ones ====== */

/* y[i] = sum_j x_j[i mod numel_j]; the VJP adds dG back along the same map. */
static tg_status cycle_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)ctx;
    for (int64_t i = 0; i < tg_tensor_numel(out); i++) {
        double v = 0;
        for (int j = 0; j < n_in; j++) {
            FZ_CHECK(tg_tensor_dtype(in[j]) == tg_tensor_dtype(out));
            int64_t n = tg_tensor_numel(in[j]);
            if (n) v += get(in[j], i % n);
        }
        set(out, i, v);
    }
    return TG_OK;
}

static tg_status cycle_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                           tg_tensor **gin, int n_in, void *ctx)
{
    (void)ctx;
    FZ_CHECK(has_shape(gout, tg_tensor_rank(out), tg_tensor_shape(out)));
    for (int j = 0; j < n_in; j++) {
        if (!gin[j]) continue;
        FZ_CHECK(has_shape(gin[j], tg_tensor_rank(in[j]), tg_tensor_shape(in[j])));
        FZ_CHECK(tg_tensor_dtype(gin[j]) == tg_tensor_dtype(in[j]));
        int64_t n = tg_tensor_numel(in[j]);
        for (int64_t i = 0; n && i < tg_tensor_numel(gout); i++)
            set(gin[j], i % n, get(gin[j], i % n) + get(gout, i));
    }
    return TG_OK;
}

static tg_status failing_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)out, (void)in, (void)n_in, (void)ctx;
    return TG_ERR_FORMAT;
}

static tg_status failing_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                             tg_tensor **gin, int n_in, void *ctx)
{
    (void)gout, (void)out, (void)in, (void)gin, (void)n_in, (void)ctx;
    return TG_ERR_IO;
}

/* Fails when the first input's first element is negative: a forward that
 * works when recorded and may fail in a replay on new data. */
static bool picky_refuses(tg_tensor *const *in) { return tg_tensor_numel(in[0]) && get(in[0], 0) < 0; }

static tg_status picky_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    if (picky_refuses(in)) return TG_ERR_FORMAT;
    return cycle_forward(out, in, n_in, ctx);
}

static const char *const odd_rules[] = {"{0:T} · {dy:s} {c} {y:rows}",
                                        "{1:shape}{bcast}{ {}{0:}{99}{dy:zz}{-1}", NULL};

static const tg_op_def custom_defs[] = {
    {.name = "fz_cycle", .forward = cycle_forward, .vjp = cycle_vjp},
    {.name = "fz_const", .forward = cycle_forward, .vjp = NULL},
    {.name = "fz_bad_forward", .forward = failing_forward, .vjp = cycle_vjp},
    {.name = "fz_bad_vjp", .forward = cycle_forward, .vjp = failing_vjp},
    {.name = NULL, .forward = cycle_forward, .vjp = cycle_vjp},
    {.name = "fz_no_forward", .forward = NULL, .vjp = cycle_vjp},
    {.name = "fz_rules", .forward = cycle_forward, .vjp = cycle_vjp, .rules = odd_rules},
    {.name = "fz_picky", .forward = picky_forward, .vjp = cycle_vjp},
};
#define N_DEFS (int)(sizeof custom_defs / sizeof *custom_defs)

/* ====== Running one op and judging the outcome ====== */

typedef struct before {
    tg_status status;
    char msg[512];
    size_t size;
} before;

static before look(const state *st)
{
    before b = {tg_tape_status(st->tp), "", tg_tape_size(st->tp)};
    snprintf(b.msg, sizeof b.msg, "%s", tg_tape_error(st->tp));
    return b;
}

static bool clean_error(tg_status s)
{
    return s == TG_ERR_ARG || s == TG_ERR_SHAPE || s == TG_ERR_DTYPE || s == TG_ERR_NOMEM ||
           s == TG_ERR_STATE;
}

/* An unexpected failure that is still legitimate: anomaly mode caught a NaN or
 * Inf, an operand was a gradient (which ops refuse, since backward rewrites
 * it), or one of the custom ops above failed on purpose. */
static bool excused(const state *st, tg_status s)
{
    const char *msg = tg_tape_error(st->tp);
    return (st->anomaly && s == TG_ERR_NUMERIC && strncmp(msg, "anomaly: ", 9) == 0) ||
           (s == TG_ERR_ARG && strstr(msg, " is a gradient, which every backward rewrites")) ||
           s == TG_ERR_FORMAT || s == TG_ERR_IO || s == TG_ERR_NOMEM;
}

/* The contract of every op: on a failed tape NULL and nothing new; on a
 * healthy one NULL exactly when the operands are wrong (then a status and a
 * message), else a result of the promised shape. */
static void judge(state *st, prog *pr, const before *b, expect e, tg_tensor *r, tg_tensor *in0)
{
    if (b->status != TG_OK) {
        FZ_CHECK(!r && tg_tape_status(st->tp) == b->status);
        FZ_CHECK(strcmp(tg_tape_error(st->tp), b->msg) == 0 && tg_tape_size(st->tp) == b->size);
        return;
    }
    tg_status s = tg_tape_status(st->tp);
    if (!r) {
        FZ_CHECK(s != TG_OK && tg_tape_error(st->tp)[0] != '\0');
        FZ_CHECK(clean_error(s) || excused(st, s));
        if (e.ok && ref_numel(e.rank, e.shape) <= SMALL) FZ_CHECK(excused(st, s) && s != TG_ERR_NOMEM);
        FZ_CHECK(tg_tape_size(st->tp) == b->size || e.composite);
        return;
    }
    FZ_CHECK(s == TG_OK && e.ok);
    FZ_CHECK(has_shape(r, e.rank, e.shape) && tg_tensor_dtype(r) == tg_tensor_dtype(in0));
    if (r == in0) return; /* tg_activate with TG_ACT_NONE hands x back */
    FZ_CHECK(tg_tape_size(st->tp) >= b->size + 1);
    put(st, pr, TAPE, r);
}

static tg_tensor *unary_op(tg_tape *tp, unsigned which, tg_tensor *x, enum ew *ew)
{
    switch (which % 9) {
    case 0: *ew = EW_NEG; return tg_neg(tp, x);
    case 1: *ew = EW_SQUARE; return tg_square(tp, x);
    case 2: *ew = EW_RELU; return tg_relu(tp, x);
    case 3: *ew = EW_EXP; return tg_exp(tp, x);
    case 4: *ew = EW_LOG; return tg_log(tp, x);
    case 5: *ew = EW_TANH; return tg_tanh(tp, x);
    case 6: return tg_sigmoid(tp, x);
    case 7: return tg_softmax(tp, x);
    default: return tg_log_softmax(tp, x);
    }
}

static void op_unary(state *st, prog *pr)
{
    unsigned which = next(pr);
    tg_tensor *x = pick(st, pr);
    before b = look(st);
    enum ew ew = EW_NONE;
    tg_tensor *r = unary_op(st->tp, which, x, &ew);
    expect e = !operands(&x, 1) ? fails() : gives(tg_tensor_rank(x), tg_tensor_shape(x));
    if (which % 9 >= 7 && e.ok && tg_tensor_rank(x) == 0) e = fails(); /* softmax needs an axis */
    judge(st, pr, &b, e, r, x);
    if (r && ew != EW_NONE) check_values(ew, r, x, NULL, 0);
}

static void op_binary(state *st, prog *pr)
{
    static tg_tensor *(*const fns[4])(tg_tape *, tg_tensor *, tg_tensor *) = {tg_add, tg_sub,
                                                                              tg_mul, tg_div};
    static const enum ew ews[4] = {EW_ADD, EW_SUB, EW_MUL, EW_DIV};
    unsigned which = next(pr) % 4;
    tg_tensor *in[2] = {pick(st, pr), pick(st, pr)};
    before b = look(st);
    tg_tensor *r = fns[which](st->tp, in[0], in[1]);
    judge(st, pr, &b, operands(in, 2) ? expect_broadcast(in[0], in[1]) : fails(), r, in[0]);
    if (r) check_values(ews[which], r, in[0], in[1], 0);
}

static void op_scale(state *st, prog *pr)
{
    double s = values[next(pr) % 16];
    tg_tensor *x = pick(st, pr);
    before b = look(st);
    tg_tensor *r = tg_scale(st->tp, x, s);
    judge(st, pr, &b, operands(&x, 1) ? gives(tg_tensor_rank(x), tg_tensor_shape(x)) : fails(), r,
          x);
    if (r) check_values(EW_SCALE, r, x, NULL, s);
}

static void op_linalg(state *st, prog *pr)
{
    unsigned which = next(pr) % 4;
    tg_tensor *in[3] = {pick(st, pr), pick(st, pr), pick(st, pr)};
    before b = look(st);
    tg_tensor *r;
    expect e = fails();
    if (which == 0) {
        r = tg_matmul(st->tp, in[0], in[1]);
        if (operands(in, 2)) e = expect_matmul(in[0], in[1]);
    } else if (which == 1) {
        r = tg_transpose(st->tp, in[0]);
        if (operands(in, 1) && tg_tensor_rank(in[0]) == 2)
            e = gives(2, (int64_t[]){tg_tensor_shape(in[0])[1], tg_tensor_shape(in[0])[0]});
    } else if (which == 2) {
        r = tg_add_bias(st->tp, in[0], in[1]);
        if (operands(in, 2) && tg_tensor_rank(in[0]) == 2 && tg_tensor_rank(in[1]) == 1 &&
            tg_tensor_shape(in[1])[0] == tg_tensor_shape(in[0])[1])
            e = gives(2, tg_tensor_shape(in[0]));
    } else {
        r = tg_dense(st->tp, in[0], in[1], in[2]);
        if (operands(in, 3)) {
            e = expect_matmul(in[0], in[1]);
            if (e.ok && !(e.rank == 2 && tg_tensor_rank(in[2]) == 1 &&
                          tg_tensor_shape(in[2])[0] == e.shape[1]))
                e = fails();
        }
        e.composite = true;
    }
    judge(st, pr, &b, e, r, in[0]);
}

static void op_reduce(state *st, prog *pr)
{
    unsigned which = next(pr);
    int axis = (int)(next(pr) % 13) - 6;
    tg_tensor *x = pick(st, pr);
    before b = look(st);
    tg_tensor *r;
    expect e = operands(&x, 1) ? gives(0, NULL) : fails();
    if (which % 3 == 0) {
        r = tg_sum(st->tp, x);
    } else if (which % 3 == 1) {
        r = tg_mean(st->tp, x);
    } else {
        if (which & 0x80) axis = which & 0x40 ? INT_MIN : INT_MAX;
        r = tg_sum_axis(st->tp, x, axis, which & 4);
        if (e.ok) e = expect_sum_axis(x, axis, which & 4);
    }
    judge(st, pr, &b, e, r, x);
}

static void op_loss(state *st, prog *pr)
{
    unsigned which = next(pr) % 3;
    tg_tensor *in[2] = {pick(st, pr), pick(st, pr)};
    before b = look(st);
    tg_tensor *r = which == 0   ? tg_frobenius_loss(st->tp, in[0], in[1])
                   : which == 1 ? tg_mse_loss(st->tp, in[0], in[1])
                                : tg_softmax_cross_entropy(st->tp, in[0], in[1]);
    bool ok = operands(in, 2) && has_shape(in[0], tg_tensor_rank(in[1]), tg_tensor_shape(in[1]));
    if (which == 2) ok = ok && tg_tensor_rank(in[0]) == 2;
    judge(st, pr, &b, ok ? gives(0, NULL) : fails(), r, in[0]);
}

static void op_activate(state *st, prog *pr)
{
    static const tg_activation acts[8] = {TG_ACT_NONE, TG_ACT_RELU, TG_ACT_TANH, TG_ACT_SIGMOID,
                                          TG_ACT_NONE, (tg_activation)4, (tg_activation)99,
                                          (tg_activation)-1};
    tg_activation act = acts[next(pr) % 8];
    tg_tensor *x = pick(st, pr);
    before b = look(st);
    tg_tensor *r = tg_activate(st->tp, x, act);
    /* TG_ACT_NONE hands x back whatever its dtype; the others need a float x. */
    bool ok = x && (unsigned)act <= TG_ACT_SIGMOID && (act == TG_ACT_NONE || operands(&x, 1));
    judge(st, pr, &b, ok ? gives(tg_tensor_rank(x), tg_tensor_shape(x)) : fails(), r, x);
}

static void op_custom(state *st, prog *pr)
{
    static const int n_ins[8] = {1, 1, 2, 2, 3, 0, -1, 4};
    static const int ranks[8] = {0, 1, 2, 3, 4, 5, -1, 2};
    unsigned which = next(pr), f = next(pr);
    const tg_op_def *def = which % (N_DEFS + 1) < N_DEFS ? &custom_defs[which % (N_DEFS + 1)] : NULL;
    int n_in = n_ins[f & 7], rank = ranks[(f >> 3) & 7];
    tg_tensor *in[4];
    for (int i = 0; i < 4; i++) in[i] = pick(st, pr);
    int64_t shape[TG_MAX_RANK + 1];
    for (int i = 0; i < TG_MAX_RANK + 1; i++) shape[i] = dims[next(pr) % 16];
    bool null_in = (f & 0xc0) == 0xc0, null_shape = (f & 0xc0) == 0x80;
    const int64_t *sp = null_shape ? NULL : shape;
    before b = look(st);
    tg_tensor *r = tg_custom(st->tp, def, null_in ? NULL : in, n_in, rank, sp,
                             def && def->rules ? &rule_ctx : NULL);
    bool ok = def && def->forward && !null_in && n_in >= 1 && operands(in, n_in) &&
              ref_numel(rank, sp) >= 0 && def->forward != failing_forward &&
              !(def->forward == picky_forward && picky_refuses(in));
    judge(st, pr, &b, ok ? gives(rank, shape) : fails(), r, ok ? in[0] : NULL);
}

/* ====== Every op of the list ====== */

/* Listed ops the generic call below leaves out, each with its reason; each
 * must be a listed op. NULL-terminated. */
static const char *const not_fuzzed[] = {NULL};

static bool fuzzed(const tu_op *op)
{
    for (int i = 0; not_fuzzed[i]; i++)
        if (strcmp(not_fuzzed[i], op->name) == 0) return false;
    return true;
}

/* A row of the op list with its parameters, on operands from the slots. What
 * holds for every op whatever its shapes: on a failed tape NULL and nothing
 * new; else a result on a healthy tape, or NULL with a clean error. A row
 * may record several nodes, so a failure may leave the first ones. */
static void op_listed(state *st, prog *pr)
{
    const tu_op *op = &tu_ops[next(pr) % (unsigned)tu_n_ops];
    tg_tensor *in[TU_MAX_INPUTS];
    for (int i = 0; i < TU_MAX_INPUTS; i++) in[i] = pick(st, pr);
    if (!fuzzed(op)) return;
    before b = look(st);
    tg_tensor *r = op->record(st->tp, in);
    tg_status s = tg_tape_status(st->tp);
    if (b.status != TG_OK) {
        FZ_CHECK(!r && s == b.status && strcmp(tg_tape_error(st->tp), b.msg) == 0);
        FZ_CHECK(tg_tape_size(st->tp) == b.size);
        return;
    }
    if (!r) {
        FZ_CHECK(s != TG_OK && tg_tape_error(st->tp)[0] != '\0');
        FZ_CHECK(clean_error(s) || excused(st, s));
        return;
    }
    FZ_CHECK(s == TG_OK && tg_tape_size(st->tp) > b.size);
    put(st, pr, TAPE, r);
}

/* ====== Backward, replay, reset ====== */

/* After a sweep every gradient has its tensor's shape and dtype. */
static void check_grads(const state *st)
{
    for (int i = 0; i < N_SLOTS; i++) {
        tg_tensor *t = st->slot[i], *g = t ? tg_tensor_grad(t) : NULL;
        if (!g) continue;
        FZ_CHECK(has_shape(g, tg_tensor_rank(t), tg_tensor_shape(t)));
        FZ_CHECK(tg_tensor_dtype(g) == tg_tensor_dtype(t) && !tg_tensor_grad(g));
    }
}

static void judge_status(state *st, const before *b, bool ok, tg_status s)
{
    if (b->status != TG_OK) {
        FZ_CHECK(s == b->status && tg_tape_status(st->tp) == b->status);
        FZ_CHECK(strcmp(tg_tape_error(st->tp), b->msg) == 0);
        return;
    }
    if (s == TG_OK) {
        FZ_CHECK(ok && tg_tape_status(st->tp) == TG_OK && tg_tape_error(st->tp)[0] == '\0');
        return;
    }
    /* Refused (the tape stays healthy, with a message) or failed (sticky). */
    FZ_CHECK(tg_tape_status(st->tp) == TG_OK || tg_tape_status(st->tp) == s);
    FZ_CHECK(tg_tape_error(st->tp)[0] != '\0' && (clean_error(s) || excused(st, s)));
    if (ok) FZ_CHECK(excused(st, s));
}

static void op_backward(state *st, prog *pr)
{
    unsigned which = next(pr);
    tg_tensor *out = pick(st, pr), *seed = pick(st, pr);
    before b = look(st);
    tg_status s;
    bool ok;
    if (which & 1) {
        s = tg_backward(st->tp, out);
        ok = out && tg_tensor_numel(out) == 1 && tg_tensor_requires_grad(out);
    } else {
        s = tg_backward_seed(st->tp, out, seed);
        ok = out && seed && tg_tensor_requires_grad(out) &&
             tg_tensor_dtype(out) == tg_tensor_dtype(seed) &&
             has_shape(seed, tg_tensor_rank(out), tg_tensor_shape(out));
    }
    judge_status(st, &b, ok, s);
    if (s == TG_OK) check_grads(st);
    st->dirty = true; /* an op may have read a gradient */
}

/* Replay must reproduce every recorded value bit for bit when nothing it reads has changed. */
static void op_replay(state *st)
{
    static unsigned char saved[N_SLOTS][SMALL * 8];
    for (int i = 0; i < N_SLOTS; i++)
        if (st->kind[i] == TAPE) memcpy(saved[i], tg_tensor_data(st->slot[i]), bytes_of(st->slot[i]));
    before b = look(st);
    tg_status s = tg_tape_replay(st->tp);
    judge_status(st, &b, true, s);
    if (s == TG_OK && !st->dirty)
        for (int i = 0; i < N_SLOTS; i++)
            if (st->kind[i] == TAPE)
                FZ_CHECK(memcmp(saved[i], tg_tensor_data(st->slot[i]), bytes_of(st->slot[i])) == 0);
    if (s == TG_OK) st->dirty = false;
}

static void op_reset(state *st)
{
    tg_tape_reset(st->tp);
    FZ_CHECK(tg_tape_status(st->tp) == TG_OK && tg_tape_error(st->tp)[0] == '\0');
    FZ_CHECK(tg_tape_size(st->tp) == 0);
    for (int i = 0; i < N_SLOTS; i++)
        if (st->kind[i] == TAPE || st->kind[i] == TAPE_GRAD) {
            st->slot[i] = NULL;
            st->kind[i] = EMPTY;
        }
    st->dirty = false;
}

/* ====== Everything else a caller may do between ops ====== */

static void op_misc(state *st, prog *pr)
{
    unsigned which = next(pr), i = next(pr) % N_SLOTS, v = next(pr);
    tg_tensor *t = st->slot[i];
    switch (which % 8) {
    case 0: /* new data in a leaf */
        if (st->kind[i] == LEAF && tg_tensor_numel(t)) {
            set(t, (int64_t)v % tg_tensor_numel(t), values[v % 16]);
            st->dirty = true;
        }
        break;
    case 1: /* any tensor, tape-owned ones too */
        tg_tensor_set_requires_grad(t, v & 1);
        break;
    case 2:
        tg_tensor_zero_grad(t);
        st->dirty = true;
        break;
    case 3: /* a gradient as an operand */
        if (t && tg_tensor_grad(t)) put(st, pr, st->kind[i] == LEAF ? LEAF_GRAD : TAPE_GRAD, tg_tensor_grad(t));
        break;
    case 4: /* freeing what the library owns is a harmless no-op */
        if (st->kind[i] != LEAF) tg_tensor_free(t);
        break;
    case 5:
        tg_tape_set_anomaly(st->tp, v & 1);
        st->anomaly = v & 1;
        break;
    case 6: {
        unsigned flags = v % 5 == 4 ? 8u : v % 4;
        tg_status s = tg_tape_explain(st->tp, devnull, flags);
        tg_status want = flags > 3 ? TG_ERR_ARG : tg_tape_status(st->tp);
        FZ_CHECK(s == want || (s == TG_ERR_NOMEM && want == TG_OK));
        break;
    }
    default:
        FZ_CHECK(tg_tape_to_dot(st->tp, devnull, pick(st, pr)) == TG_OK);
        if (t && tg_tensor_numel(t) == 1)
            FZ_CHECK(same(tg_tensor_item(t), get(t, 0)));
        else
            FZ_CHECK(isnan(tg_tensor_item(t)));
        break;
    }
}

/* ====== The program ====== */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    tg_set_num_threads(1); /* one thread: replay is compared bit for bit, and runs are faster */
    devnull = fopen("/dev/null", "w");
    FZ_CHECK(devnull);
    for (int i = 0; not_fuzzed[i]; i++) { /* the list of exceptions names listed ops */
        bool listed = false;
        for (int j = 0; j < tu_n_ops; j++) listed |= strcmp(not_fuzzed[i], tu_ops[j].name) == 0;
        FZ_CHECK(listed);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    prog pr = {data, size};
    state st = {.tp = tg_tape_new()};
    FZ_CHECK(st.tp);
    while (pr.n) {
        switch (next(&pr) % 15) {
        case 0:
        case 1: op_leaf(&st, &pr); break;
        case 2: op_unary(&st, &pr); break;
        case 3: op_binary(&st, &pr); break;
        case 4: op_scale(&st, &pr); break;
        case 5: op_linalg(&st, &pr); break;
        case 6: op_reduce(&st, &pr); break;
        case 7: op_loss(&st, &pr); break;
        case 8: op_activate(&st, &pr); break;
        case 9: op_custom(&st, &pr); break;
        case 10: op_backward(&st, &pr); break;
        case 11: op_replay(&st); break;
        case 12: op_reset(&st); break;
        case 13: op_listed(&st, &pr); break;
        default: op_misc(&st, &pr); break;
        }
    }
    tg_tape_free(st.tp);
    for (int i = 0; i < st.n_leaves; i++) tg_tensor_free(st.leaves[i]);
    return 0;
}
