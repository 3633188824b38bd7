/*
 * Elementwise ops: add, sub, mul, div, maximum and minimum with NumPy
 * broadcasting, and the unary scale, neg, sigmoid, tanh, relu, exp, log,
 * square, add_scalar, pow, abs, sqrt, sin, cos, clamp, leaky_relu, elu, gelu
 * (both forms), silu and softplus.
 *
 * Adding an op here takes one BINARY_KERNEL or UNARY_KERNEL line (its forward
 * and VJP as expressions, the rule in a comment beside them), the
 * 'static const tg_op_def <op>_def' below it and a one-line constructor in
 * this file, its declaration in tapegrad.h, a row in tests/oplist.h (which
 * gradchecks, replays, fuzzes and measures it) and a row in docs/ops.md.
 *
 * Values are never errors here; IEEE 754 decides: log(0) = -inf,
 * log(x < 0) = NaN, x/0 = +inf or -inf by the signs, 0/0 = NaN. Sigmoid and
 * tanh saturate to exactly 0, 1 or -1 for large |x|, without NaN.
 */
#include "internal.h"

#include <stdint.h>
#include <string.h>
#include <tgmath.h> /* exp, log, tanh and fabs pick float or double from the argument */

/* The ONNX forms of the ops, at the end of the file. */
static TG__ONNX_HOOK(add_onnx);
static TG__ONNX_HOOK(sub_onnx);
static TG__ONNX_HOOK(mul_onnx);
static TG__ONNX_HOOK(div_onnx);
static TG__ONNX_HOOK(scale_onnx);
static TG__ONNX_HOOK(neg_onnx);
static TG__ONNX_HOOK(sigmoid_onnx);
static TG__ONNX_HOOK(tanh_onnx);
static TG__ONNX_HOOK(relu_onnx);
static TG__ONNX_HOOK(exp_onnx);
static TG__ONNX_HOOK(log_onnx);
static TG__ONNX_HOOK(square_onnx);
static TG__ONNX_HOOK(add_scalar_onnx);
static TG__ONNX_HOOK(pow_onnx);
static TG__ONNX_HOOK(abs_onnx);
static TG__ONNX_HOOK(sqrt_onnx);
static TG__ONNX_HOOK(sin_onnx);
static TG__ONNX_HOOK(cos_onnx);
static TG__ONNX_HOOK(clamp_onnx);
static TG__ONNX_HOOK(maximum_onnx);
static TG__ONNX_HOOK(minimum_onnx);
static TG__ONNX_HOOK(leaky_relu_onnx);
static TG__ONNX_HOOK(elu_onnx);
static TG__ONNX_HOOK(gelu_onnx);
static TG__ONNX_HOOK(gelu_tanh_onnx);
static TG__ONNX_HOOK(silu_onnx);
static TG__ONNX_HOOK(softplus_onnx);

/* The names the op expressions below are written in, at the current element:
 * the operands A and B of a binary op, the input X of a unary op (kept where
 * operand a is), the output Y, the output's gradient G, and s and s2, the
 * parameters of a unary op that has them (tg_scale's factor, tg_clamp's
 * bounds), as the element type. */
#define A a[ia]
#define B b[ib]
#define X a[i]
#define Y y[i]
#define G g[i]

/* ====== Loops: one body for both dtypes, every op and every pass ====== */

/* One loop of an op over 'n' elements. The forward pass writes y; a VJP pass
 * reads g (dG, laid out like y) and adds into w, the gradient of an input.
 * Buffers a pass does not use are NULL. A unary op's input sits in 'a'. */
typedef struct run {
    tg_dtype dtype;
    int64_t n;
    void *y, *g, *a, *b, *w;
    bool step_a, step_b; /* a (b) advances along the loop; false where it is broadcast */
    bool w_is_b;         /* w is laid out like b, else like a */
    double s, s2;        /* a unary op's parameters; 0 where it has none */
} run;

typedef void (*run_fn)(const run *r);

/* Runs STMT over run r, once written for both dtypes: T is the element type. */
#define RUN(r, STMT)                 \
    do {                             \
        if ((r)->dtype == TG_F64)    \
            RUN_AS(double, r, STMT); \
        else                         \
            RUN_AS(float, r, STMT);  \
    } while (0)

/* The operand indices ia and ib are i where the operand steps along the loop
 * and 0 where it is broadcast. Each case has its own loop with constant
 * indices, so the one where both step is plain contiguous code the compiler
 * can vectorise. A loop where neither steps has one element; the last case
 * covers it. */
#define RUN_AS(T, r, STMT)                                                        \
    do {                                                                          \
        const int64_t n = (r)->n;                                                 \
        T *restrict y = (r)->y, *restrict w = (r)->w;                             \
        const T *restrict g = (r)->g, *restrict a = (r)->a, *restrict b = (r)->b; \
        const T s = (T)(r)->s, s2 = (T)(r)->s2;                                   \
        (void)y, (void)w, (void)g, (void)a, (void)b, (void)s, (void)s2;           \
        if ((r)->step_a && (r)->step_b)                                           \
            LOOP(n, i, i, STMT);                                                  \
        else if ((r)->step_a)                                                     \
            LOOP(n, i, 0, STMT);                                                  \
        else                                                                      \
            LOOP(n, 0, i, STMT);                                                  \
    } while (0)

#define LOOP(n, IA, IB, STMT)                   \
    do {                                        \
        for (int64_t i = 0; i < (n); i++) {     \
            const int64_t ia = (IA), ib = (IB); \
            (void)ia, (void)ib;                 \
            STMT;                               \
        }                                       \
    } while (0)

/* ====== Broadcasting: one walk shared by the binary ops' forwards and VJPs ====== */

/* The d-th dimension of t counted from the right (d = 0 is the last one), and 1
 * past its rank: broadcasting aligns shapes at the right. */
static int64_t dim_from_right(const tg_tensor *t, int d)
{
    return d < t->rank ? t->shape[t->rank - 1 - d] : 1;
}

/* NumPy's rule: aligned at the right, two dims fit when equal or when one of
 * them is 1, which stretches. Writes y's shape and returns its rank, or -1 when
 * a and b do not broadcast. */
static int broadcast_shape(const tg_tensor *a, const tg_tensor *b, int64_t *shape)
{
    int rank = a->rank > b->rank ? a->rank : b->rank;
    for (int d = 0; d < rank; d++) {
        int64_t na = dim_from_right(a, d), nb = dim_from_right(b, d);
        if (na != nb && na != 1 && nb != 1) return -1;
        shape[rank - 1 - d] = na == 1 ? nb : na;
    }
    return rank;
}

/* y's index space as nested loops, innermost first. Size-1 dims of y are
 * dropped, and a dim is merged into the one inside it wherever both operands
 * run on contiguously (or stay put) across the boundary. So a same-shape op is
 * a single loop over numel elements, [n,m] op [m] is n loops of m contiguous
 * elements, and a scalar with anything is one loop: the fast cases fall out of
 * the general walk rather than being written beside it. */
typedef struct plan {
    int rank;
    int64_t dim[TG_MAX_RANK];
    int64_t sa[TG_MAX_RANK], sb[TG_MAX_RANK]; /* element strides of a and b; 0 where broadcast */
} plan;

static void plan_make(plan *p, const tg_tensor *a, const tg_tensor *b, const tg_tensor *y)
{
    int64_t ra = 1, rb = 1; /* row-major strides of a and b at dim d */
    p->rank = 0;
    for (int d = 0; d < y->rank; d++) {
        int64_t n = dim_from_right(y, d), na = dim_from_right(a, d), nb = dim_from_right(b, d);
        int64_t sa = na == 1 ? 0 : ra, sb = nb == 1 ? 0 : rb;
        ra *= na, rb *= nb;
        if (n == 1) continue; /* one index, nothing to walk */
        int k = p->rank - 1;
        if (k >= 0 && p->sa[k] * p->dim[k] == sa && p->sb[k] * p->dim[k] == sb) {
            p->dim[k] *= n;
            continue;
        }
        p->dim[p->rank] = n, p->sa[p->rank] = sa, p->sb[p->rank] = sb;
        p->rank++;
    }
}

/* base + k elements; NULL stays NULL. */
static void *advance(void *base, int64_t k, size_t esz)
{
    return base ? (char *)base + (size_t)k * esz : NULL;
}

/* A loop long enough to split runs on every thread (tg__parallel_for), each
 * on a contiguous range of it. Only where the gradient written steps along
 * the loop: a broadcast operand's gradient sums the whole loop into one
 * element, and that sum stays on one thread, in order. Elementwise, so the
 * results are the same bits at any thread count. */
typedef struct split {
    const run *r;
    run_fn kernel;
} split;

static void run_part(void *ctx, int64_t b, int64_t e)
{
    const split *sp = ctx;
    run r = *sp->r;
    size_t es = tg__dtype_size(r.dtype);
    bool w_steps = r.w_is_b ? r.step_b : r.step_a;
    r.n = e - b;
    r.y = advance(r.y, b, es), r.g = advance(r.g, b, es);
    r.a = advance(r.a, r.step_a ? b : 0, es), r.b = advance(r.b, r.step_b ? b : 0, es);
    r.w = advance(r.w, w_steps ? b : 0, es);
    sp->kernel(&r);
}

static void run_all(const run *r, run_fn kernel)
{
    bool w_steps = r->w_is_b ? r->step_b : r->step_a;
    if (r->n < 2 * TG__PAR_GRAIN || (r->w && !w_steps)) {
        kernel(r);
        return;
    }
    split sp = {r, kernel};
    tg__parallel_for(r->n, TG__PAR_GRAIN, run_part, &sp);
}

/* Calls 'kernel' on every innermost loop of the walk, with the buffers of
 * 'whole' advanced to where that loop starts. */
static void walk(const tg_tensor *a, const tg_tensor *b, const tg_tensor *y, const run *whole,
                 run_fn kernel)
{
    if (y->numel == 0) return;
    plan p;
    plan_make(&p, a, b, y);
    size_t esz = tg__dtype_size(y->dtype);
    run r = *whole;
    r.n = p.rank ? p.dim[0] : 1;
    r.step_a = p.rank && p.sa[0], r.step_b = p.rank && p.sb[0];
    int64_t idx[TG_MAX_RANK] = {0}, ia = 0, ib = 0;
    for (int64_t k = 0; k < y->numel; k += r.n) {
        r.y = advance(whole->y, k, esz);
        r.g = advance(whole->g, k, esz);
        r.a = advance(whole->a, ia, esz);
        r.b = advance(whole->b, ib, esz);
        r.w = advance(whole->w, whole->w_is_b ? ib : ia, esz);
        run_all(&r, kernel);
        for (int d = 1; d < p.rank; d++) { /* odometer over the outer loops */
            ia += p.sa[d], ib += p.sb[d];
            if (++idx[d] < p.dim[d]) break;
            ia -= p.sa[d] * p.dim[d], ib -= p.sb[d] * p.dim[d];
            idx[d] = 0;
        }
    }
}

/* Defines <op>_forward and <op>_vjp of a broadcasting binary op from Y = FWD,
 * dA += DA and dB += DB. An operand broadcast along a dim gets the sum of its
 * terms over that dim, since its one element is 'w[ia]' (or 'w[ib]') for every
 * index there: the bias rule, db = sum over rows of dG, is this case. */
#define BINARY_KERNEL(op, FWD, DA, DB)                                                           \
    static void op##_run_y(const run *r) { RUN(r, y[i] = (FWD)); }                               \
    static void op##_run_da(const run *r) { RUN(r, w[ia] += (DA)); }                             \
    static void op##_run_db(const run *r) { RUN(r, w[ib] += (DB)); }                             \
    static tg_status op##_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)     \
    {                                                                                            \
        (void)n_in, (void)ctx;                                                                   \
        return binary_forward(out, in, op##_run_y);                                              \
    }                                                                                            \
    static tg_status op##_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in, \
                              tg_tensor **gin, int n_in, void *ctx)                              \
    {                                                                                            \
        (void)out, (void)n_in, (void)ctx;                                                        \
        return binary_vjp(gout, in, gin, op##_run_da, op##_run_db);                              \
    }

static tg_status binary_forward(tg_tensor *out, tg_tensor *const *in, run_fn kernel)
{
    run r = {.dtype = out->dtype, .y = out->data, .a = in[0]->data, .b = in[1]->data};
    walk(in[0], in[1], out, &r, kernel);
    return TG_OK;
}

static tg_status binary_vjp(const tg_tensor *gout, tg_tensor *const *in, tg_tensor **gin, run_fn da,
                            run_fn db)
{
    run r = {.dtype = gout->dtype, .g = gout->data, .a = in[0]->data, .b = in[1]->data};
    if (gin[0]) {
        r.w = gin[0]->data, r.w_is_b = false;
        walk(in[0], in[1], gout, &r, da);
    }
    if (gin[1]) {
        r.w = gin[1]->data, r.w_is_b = true;
        walk(in[0], in[1], gout, &r, db);
    }
    return TG_OK;
}

/* The constructor of every binary op: shapes that broadcast (tg_custom
 * checks the dtypes, as for every op). */
static tg_tensor *binary(tg_tape *tp, const tg_op_def *def, tg_tensor *a, tg_tensor *b)
{
    tg_tensor *in[2] = {a, b};
    if (!tg__guard(tp, def->name, 2, in)) return NULL;
    int64_t shape[TG_MAX_RANK];
    int rank = broadcast_shape(a, b, shape);
    if (rank < 0) {
        char sa[TG__SHAPE_STR_MAX], sb[TG__SHAPE_STR_MAX];
        tg__fail(tp, TG_ERR_SHAPE, "%s: shapes do not broadcast: %s and %s", def->name,
                 tg__shape_str(a, sa, sizeof sa), tg__shape_str(b, sb, sizeof sb));
        return NULL;
    }
    return tg_custom(tp, def, in, 2, rank, shape, NULL);
}

/* ====== add: y = a + b;  dA += dG, dB += dG ====== */

BINARY_KERNEL(add, (A + B), G, G) /* dA += dG, dB += dG */

static tg_status add_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                               const bool *need, tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)n_in, (void)ctx;
    for (int i = 0; i < 2; i++)
        if (need[i]) gin[i] = tg__sum_to(tp, dy, in[i]);
    return tg_tape_status(tp);
}

static const tg_op_def add_def = {
    .name = "add", .forward = add_forward, .vjp = add_vjp, .vjp_graph = add_vjp_graph,
    .rules = (const char *const[]){"{bcast}{dy}", "{bcast}{dy}", NULL},
    .onnx = add_onnx};

tg_tensor *tg_add(tg_tape *tp, tg_tensor *a, tg_tensor *b) { return binary(tp, &add_def, a, b); }

/* ====== sub: y = a - b;  dA += dG, dB -= dG ====== */

BINARY_KERNEL(sub, (A - B), G, -G) /* dA += dG, dB -= dG */

static tg_status sub_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                               const bool *need, tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)n_in, (void)ctx;
    if (need[0]) gin[0] = tg__sum_to(tp, dy, in[0]);
    if (need[1]) gin[1] = tg__sum_to(tp, tg_neg(tp, dy), in[1]);
    return tg_tape_status(tp);
}

static const tg_op_def sub_def = {
    .name = "sub", .forward = sub_forward, .vjp = sub_vjp, .vjp_graph = sub_vjp_graph,
    .rules = (const char *const[]){"{bcast}{dy}", "−{bcast}{dy}", NULL},
    .onnx = sub_onnx};

tg_tensor *tg_sub(tg_tape *tp, tg_tensor *a, tg_tensor *b) { return binary(tp, &sub_def, a, b); }

/* ====== mul: y = a * b (Hadamard);  dA += dG * B, dB += dG * A ====== */

BINARY_KERNEL(mul, (A * B), (G * B), (G * A)) /* dA += dG * B, dB += dG * A */

static tg_status mul_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                               const bool *need, tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)n_in, (void)ctx;
    if (need[0]) gin[0] = tg__sum_to(tp, tg_mul(tp, dy, in[1]), in[0]);
    if (need[1]) gin[1] = tg__sum_to(tp, tg_mul(tp, dy, in[0]), in[1]);
    return tg_tape_status(tp);
}

static const tg_op_def mul_def = {
    .name = "mul", .forward = mul_forward, .vjp = mul_vjp, .vjp_graph = mul_vjp_graph,
    .rules = (const char *const[]){"{bcast}{dy} ⊙ {1}", "{bcast}{dy} ⊙ {0}", NULL},
    .onnx = mul_onnx};

tg_tensor *tg_mul(tg_tape *tp, tg_tensor *a, tg_tensor *b) { return binary(tp, &mul_def, a, b); }

/* ====== div: y = a / b;  dA += dG / B, dB -= dG * A / B^2 ====== */

/* dB is formed as dG * (A/B) / B so that B^2 cannot overflow or underflow on
 * its own. x/0 gives +-inf (0/0 NaN), as IEEE says. */
BINARY_KERNEL(div, (A / B), (G / B), (-G * (A / B) / B)) /* dA += dG / B, dB -= dG * A / B^2 */

/* The same two formulas recorded, with the saved output for A/B. */
static tg_status div_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                               const bool *need, tg_tensor **gin, int n_in, void *ctx)
{
    (void)n_in, (void)ctx;
    if (need[0]) gin[0] = tg__sum_to(tp, tg_div(tp, dy, in[1]), in[0]);
    if (need[1]) gin[1] = tg__sum_to(tp, tg_div(tp, tg_mul(tp, tg_neg(tp, dy), out), in[1]), in[1]);
    return tg_tape_status(tp);
}

static const tg_op_def div_def = {
    .name = "div", .forward = div_forward, .vjp = div_vjp, .vjp_graph = div_vjp_graph,
    .rules = (const char *const[]){"{bcast}{dy} ⊘ {1}", "−{bcast}{dy} ⊙ {0} ⊘ {1}²", NULL},
    .onnx = div_onnx};

tg_tensor *tg_div(tg_tape *tp, tg_tensor *a, tg_tensor *b) { return binary(tp, &div_def, a, b); }

/* ====== Unary ops ====== */

/* Defines <op>_forward and <op>_vjp of a unary op from Y = FWD and dx += DX,
 * expressions in X, Y, G, s and s2. ctx is NULL or the op's two parameters. */
#define UNARY_KERNEL(op, FWD, DX)                                                                \
    static void op##_run_y(const run *r) { RUN(r, y[i] = (FWD)); }                               \
    static void op##_run_dx(const run *r) { RUN(r, w[i] += (DX)); }                              \
    static tg_status op##_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)     \
    {                                                                                            \
        (void)n_in;                                                                              \
        return unary_pass(out, NULL, in[0], NULL, ctx, op##_run_y);                              \
    }                                                                                            \
    static tg_status op##_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in, \
                              tg_tensor **gin, int n_in, void *ctx)                              \
    {                                                                                            \
        (void)n_in;                                                                              \
        if (!gin[0]) return TG_OK; /* x needs no gradient */                                     \
        return unary_pass(out, gout, in[0], gin[0], ctx, op##_run_dx);                           \
    }

/* The forward pass (gout and gx NULL) or the VJP pass of a unary op: one
 * contiguous loop. 'p' is NULL or the op's two parameters. */
static tg_status unary_pass(const tg_tensor *out, const tg_tensor *gout, const tg_tensor *x,
                            tg_tensor *gx, const double *p, run_fn kernel)
{
    run r = {.dtype = out->dtype,
             .n = out->numel,
             .y = out->data,
             .a = x->data,
             .step_a = true,
             .step_b = true,
             .s = p ? p[0] : 0,
             .s2 = p ? p[1] : 0};
    if (gout) r.g = gout->data, r.w = gx->data;
    run_all(&r, kernel);
    return TG_OK;
}

/* The constructor of every unary op without a parameter. */
static tg_tensor *unary(tg_tape *tp, const tg_op_def *def, tg_tensor *x)
{
    if (!tg__guard(tp, def->name, 1, &x)) return NULL;
    return tg_custom(tp, def, &x, 1, x->rank, x->shape, NULL);
}

/* The constructor of a unary op with parameters s and s2 (0 when it has one),
 * copied into the arena as its ctx: the first is the double the '{c}' of its
 * rules reads. The caller has opened with tg__guard and checked the values. */
static tg_tensor *unary_with(tg_tape *tp, const tg_op_def *def, tg_tensor *x, double s, double s2)
{
    double *p = tg__tape_copy(tp, (const double[2]){s, s2}, 2 * sizeof(double));
    return p ? tg_custom(tp, def, &x, 1, x->rank, x->shape, p) : NULL;
}

/* Fails the tape unless the parameter 'what' of op 'def' is finite: a NaN or
 * infinite slope or scale would make every output NaN or infinite. */
static bool finite_param(tg_tape *tp, const tg_op_def *def, tg_tensor *x, const char *what,
                         double v)
{
    if (isfinite(v)) return true;
    char sx[TG__SHAPE_STR_MAX];
    tg__fail(tp, TG_ERR_ARG, "%s: %s must be finite, got %g (input %s)", def->name, what, v,
             tg__shape_str(x, sx, sizeof sx));
    return false;
}

/* ====== Masks: the constant factors of the piecewise ops' recorded VJPs ======
 * The derivative of relu, clamp, leaky_relu, elu's linear part, abs, maximum
 * and minimum is piecewise constant, so their vjp_graph multiplies dy by a
 * factor read off the inputs by a mask op: an op with no VJP, whose output is
 * a constant (the derivative of the mask is zero, as in PyTorch). Replay
 * recomputes it from the inputs' new values. A mask of a unary op is
 * W = MASK(X, s, s2) with the op's own ctx; of a binary op W = MASK(A, B)
 * over the broadcast shape. */
#define UNARY_MASK(op, MASK)                                                                 \
    static void op##_run_y(const run *r) { RUN(r, y[i] = (MASK)); }                          \
    static tg_status op##_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx) \
    {                                                                                        \
        (void)n_in;                                                                          \
        return unary_pass(out, NULL, in[0], NULL, ctx, op##_run_y);                          \
    }

#define BINARY_MASK(op, MASK)                                                                \
    static void op##_run_y(const run *r) { RUN(r, y[i] = (MASK)); }                          \
    static tg_status op##_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx) \
    {                                                                                        \
        (void)n_in, (void)ctx;                                                               \
        return binary_forward(out, in, op##_run_y);                                          \
    }

/* The mask 'def' of unary input x, read with ctx: the original node's. */
static tg_tensor *unary_mask(tg_tape *tp, const tg_op_def *def, tg_tensor *x, void *ctx)
{
    return tg_custom(tp, def, &x, 1, x->rank, x->shape, ctx);
}

/* The mask 'def' of binary inputs a and b, of their broadcast shape 'like'. */
static tg_tensor *binary_mask(tg_tape *tp, const tg_op_def *def, tg_tensor *a, tg_tensor *b,
                              const tg_tensor *like)
{
    return tg_custom(tp, def, (tg_tensor *[]){a, b}, 2, like->rank, like->shape, NULL);
}

/* masked: y = g w where w != 0, else 0, for a mask w of g's shape: the
 * recorded VJP of the ops whose first-order VJP selects (relu, clamp,
 * maximum, minimum), so a non-finite dG where the mask is 0 gives 0 there as
 * it does at first order. Linear in g with w constant, it is its own VJP. */
BINARY_KERNEL(masked, (B != 0 ? A * B : 0), (B != 0 ? G * B : 0), 0) /* dg += dG w [w ≠ 0] */

static tg_tensor *masked(tg_tape *tp, tg_tensor *g, tg_tensor *w);

static tg_status masked_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out,
                                  tg_tensor *const *in, const bool *need, tg_tensor **gin,
                                  int n_in, void *ctx)
{
    (void)out, (void)n_in, (void)ctx; /* w is a mask: no gradient */
    if (need[0]) gin[0] = masked(tp, dy, in[1]);
    return tg_tape_status(tp);
}

static const tg_op_def masked_def = {
    .name = "masked", .forward = masked_forward, .vjp = masked_vjp,
    .vjp_graph = masked_vjp_graph,
    .rules = (const char *const[]){"{dy} ⊙ {1} where {1} ≠ 0", "0 (a constant mask)", NULL}};

static tg_tensor *masked(tg_tape *tp, tg_tensor *g, tg_tensor *w)
{
    return binary(tp, &masked_def, g, w);
}

/* ====== scale: y = s x;  dx += s dG ====== */

UNARY_KERNEL(scale, (s * X), (s * G)) /* dx += s dG */

static tg_status scale_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out,
                                 tg_tensor *const *in, const bool *need, tg_tensor **gin, int n_in,
                                 void *ctx)
{
    (void)out, (void)in, (void)need, (void)n_in;
    gin[0] = tg_scale(tp, dy, ((const double *)ctx)[0]); /* dx = s dG */
    return tg_tape_status(tp);
}

static const tg_op_def scale_def = {
    .name = "scale", .forward = scale_forward, .vjp = scale_vjp, .vjp_graph = scale_vjp_graph,
    .rules = (const char *const[]){"{c} · {dy}", NULL},
    .onnx = scale_onnx};

tg_tensor *tg_scale(tg_tape *tp, tg_tensor *x, double s)
{
    if (!tg__guard(tp, "scale", 1, &x)) return NULL;
    return unary_with(tp, &scale_def, x, s, 0);
}

/* ====== neg: y = -x;  dx -= dG ====== */

UNARY_KERNEL(neg, -X, -G) /* dx -= dG */

static tg_status neg_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                               const bool *need, tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)in, (void)need, (void)n_in, (void)ctx;
    gin[0] = tg_neg(tp, dy); /* dx = -dG */
    return tg_tape_status(tp);
}

static const tg_op_def neg_def = {
    .name = "neg", .forward = neg_forward, .vjp = neg_vjp, .vjp_graph = neg_vjp_graph,
    .rules = (const char *const[]){"−{dy}", NULL},
    .onnx = neg_onnx};

tg_tensor *tg_neg(tg_tape *tp, tg_tensor *x) { return unary(tp, &neg_def, x); }

/* ====== sigmoid: y = 1/(1+e^-x);  dx += dG y(1-y), from the saved output ====== */

/* Computed from e = e^-|x| in (0, 1], so exp never sees a large positive
 * number: 1/(1+e) for x >= 0, e/(1+e) for x < 0. Once e underflows to 0
 * (|x| > ~745 in F64, ~104 in F32) the result is exactly 1 or 0. */
static double sigmoid_f64(double x)
{
    double e = exp(-fabs(x));
    return x >= 0 ? 1 / (1 + e) : e / (1 + e);
}

static float sigmoid_f32(float x)
{
    float e = exp(-fabs(x));
    return x >= 0 ? 1 / (1 + e) : e / (1 + e);
}

#define SIGMOID(x) _Generic((x), float : sigmoid_f32, default : sigmoid_f64)(x)

UNARY_KERNEL(sigmoid, SIGMOID(X), (G * Y * (1 - Y))) /* dx += dG y(1-y)  (saved output, not x) */

static tg_status sigmoid_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out,
                                   tg_tensor *const *in, const bool *need, tg_tensor **gin,
                                   int n_in, void *ctx)
{
    (void)in, (void)need, (void)n_in, (void)ctx; /* dx = (dG y) (1 - y) */
    gin[0] = tg_mul(tp, tg_mul(tp, dy, out), tg_add_scalar(tp, tg_neg(tp, out), 1.0));
    return tg_tape_status(tp);
}

static const tg_op_def sigmoid_def = {
    .name = "sigmoid", .forward = sigmoid_forward, .vjp = sigmoid_vjp,
    .vjp_graph = sigmoid_vjp_graph,
    .rules = (const char *const[]){"{dy} ⊙ σ'({0})", NULL},
    .onnx = sigmoid_onnx};

tg_tensor *tg_sigmoid(tg_tape *tp, tg_tensor *x) { return unary(tp, &sigmoid_def, x); }

/* ====== tanh: y = tanh x;  dx += dG (1 - y^2), from the saved output ====== */

/* F64 uses tanh(), which saturates to exactly +-1 with no exp to overflow.
 * F32 does not use tanhf: glibc's goes through expm1f at ~20 ns an element,
 * does not vectorise, and is up to 2 ulp off. tanh_f32 works in double:
 * e = expm1(2|x|) = 2^k (expm1(r) + 1) - 1 with k = round(2|x| / ln2), so
 * |r| <= ln2/2 and a degree-13 Taylor polynomial gives expm1(r) to ~1e-17,
 * and tanh|x| = e / (e + 2) has no cancellation anywhere. The double result
 * is within a few 1e-16 of the truth, so rounding it to float gives the
 * correctly rounded tanh: checked against (float)tanhl for all 2^32 floats,
 * 0 ulp apart. |x| is clamped to 10 (tanh rounds to 1 from 9.02 on) so 2^k
 * stays a normal double, and NaN is restored from the input's bits. All
 * selects are integer ones: gcc will not if-convert a float select under
 * -ftrapping-math, and this way the loop vectorises. */
/* Inlined into its loops whatever the file's size: gcc stopped inlining it
 * once this file grew (the recorded VJPs and export hooks), and the loop then
 * called it per element without vectorising (W1's forward 4x slower). */
#if defined(__GNUC__)
__attribute__((always_inline))
#endif
static inline float tanh_f32(float x)
{
    uint32_t ux, uc, ut;
    memcpy(&ux, &x, sizeof ux);
    const uint32_t sign = ux & 0x80000000u;
    ux &= 0x7fffffffu;
    uc = ux < 0x41200000u ? ux : 0x41200000u; /* min(|x|, 10); NaN gives 10 too */
    float cf;
    memcpy(&cf, &uc, sizeof cf);
    double y = 2 * (double)cf;
    /* k = round(y / ln2) sits in the low bits of kd; r = y - k ln2 in two steps
     * (ln2 split into a 42-bit head, so k ln2_hi is exact, and a tail). */
    double kd = y * 0x1.71547652b82fep0 + 0x1.8p52;
    uint64_t kb, sb;
    memcpy(&kb, &kd, sizeof kb);
    kd -= 0x1.8p52;
    double r = (y - kd * 0x1.62e42fefa3800p-1) - kd * 0x1.ef35793c7673p-45;
    double q = r * (1 + r * (1.0 / 2 + r * (1.0 / 6 + r * (1.0 / 24 + r * (1.0 / 120 +
               r * (1.0 / 720 + r * (1.0 / 5040 + r * (1.0 / 40320 + r * (1.0 / 362880 +
               r * (1.0 / 3628800 + r * (1.0 / 39916800 + r * (1.0 / 479001600 +
               r * (1.0 / 6227020800)))))))))))));
    sb = (kb + 1023) << 52; /* 2^k, 0 <= k <= 29 */
    double scale;
    memcpy(&scale, &sb, sizeof scale);
    double e = scale * q + (scale - 1);
    float t = (float)(e / (e + 2));
    memcpy(&ut, &t, sizeof ut);
    ut |= sign | (ux > 0x7f800000u ? 0x7fc00000u : 0); /* odd; NaN in, NaN out */
    memcpy(&t, &ut, sizeof t);
    return t;
}

static double tanh_f64(double x) { return tanh(x); }

#define TANH(x) _Generic((x), float : tanh_f32, default : tanh_f64)(x)

UNARY_KERNEL(tanh, TANH(X), (G * (1 - Y * Y))) /* dx += dG (1 - y^2) */

static tg_status tanh_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                                const bool *need, tg_tensor **gin, int n_in, void *ctx)
{
    (void)in, (void)need, (void)n_in, (void)ctx; /* dx = dG (1 - y^2) */
    gin[0] = tg_mul(tp, dy, tg_add_scalar(tp, tg_neg(tp, tg_square(tp, out)), 1.0));
    return tg_tape_status(tp);
}

static const tg_op_def tanh_def = {
    .name = "tanh", .forward = tanh_forward, .vjp = tanh_vjp, .vjp_graph = tanh_vjp_graph,
    .rules = (const char *const[]){"{dy} ⊙ (1 − {y}²)", NULL},
    .onnx = tanh_onnx};

tg_tensor *tg_tanh(tg_tape *tp, tg_tensor *x) { return unary(tp, &tanh_def, x); }

/* ====== relu: y = max(x, 0);  dx += dG where x > 0 ====== */

/* Written 'x < 0 ? 0 : x' so a NaN input stays NaN. The derivative at 0 is
 * taken as 0. RELU_GRAD takes dG as an argument so it is loaded whatever x
 * is: a load under the condition keeps gcc from vectorising, and the branch
 * left in its place mispredicts on half the elements of a ReLU layer. */
static float relu_grad_f32(float x, float g) { return x > 0 ? g : 0; }
static double relu_grad_f64(double x, double g) { return x > 0 ? g : 0; }

#define RELU_GRAD(x, g) _Generic((x), float : relu_grad_f32, default : relu_grad_f64)(x, g)

UNARY_KERNEL(relu, (X < 0 ? 0 : X), RELU_GRAD(X, G)) /* dx += dG where x > 0 */

UNARY_MASK(relu_mask, X > 0) /* [x > 0] */

static const tg_op_def relu_mask_def = {.name = "relu_mask", .forward = relu_mask_forward};

static tg_status relu_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                                const bool *need, tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)need, (void)n_in; /* dx = dG where x > 0 */
    gin[0] = masked(tp, dy, unary_mask(tp, &relu_mask_def, in[0], ctx));
    return tg_tape_status(tp);
}

static const tg_op_def relu_def = {
    .name = "relu", .forward = relu_forward, .vjp = relu_vjp, .vjp_graph = relu_vjp_graph,
    .rules = (const char *const[]){"{dy} ⊙ relu'({0})", NULL},
    .onnx = relu_onnx};

tg_tensor *tg_relu(tg_tape *tp, tg_tensor *x) { return unary(tp, &relu_def, x); }

/* ====== exp: y = e^x;  dx += dG y, from the saved output ====== */

/* Overflows to +inf past x ~ 709 (F64) or ~ 88 (F32), as IEEE says. */
UNARY_KERNEL(exp, exp(X), (G * Y)) /* dx += dG y */

static tg_status exp_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                               const bool *need, tg_tensor **gin, int n_in, void *ctx)
{
    (void)in, (void)need, (void)n_in, (void)ctx;
    gin[0] = tg_mul(tp, dy, out); /* dx = dG y */
    return tg_tape_status(tp);
}

static const tg_op_def exp_def = {
    .name = "exp", .forward = exp_forward, .vjp = exp_vjp, .vjp_graph = exp_vjp_graph,
    .rules = (const char *const[]){"{dy} ⊙ {y}", NULL},
    .onnx = exp_onnx};

tg_tensor *tg_exp(tg_tape *tp, tg_tensor *x) { return unary(tp, &exp_def, x); }

/* ====== log: y = ln x;  dx += dG / x ====== */

/* log(0) = -inf (gradient dG/0 = +-inf) and log(x < 0) = NaN, as IEEE says. */
UNARY_KERNEL(log, log(X), G / X) /* dx += dG / x */

static tg_status log_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                               const bool *need, tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)need, (void)n_in, (void)ctx;
    gin[0] = tg_div(tp, dy, in[0]); /* dx = dG / x */
    return tg_tape_status(tp);
}

static const tg_op_def log_def = {
    .name = "log", .forward = log_forward, .vjp = log_vjp, .vjp_graph = log_vjp_graph,
    .rules = (const char *const[]){"{dy} ⊘ {0}", NULL},
    .onnx = log_onnx};

tg_tensor *tg_log(tg_tape *tp, tg_tensor *x) { return unary(tp, &log_def, x); }

/* ====== square: y = x^2;  dx += 2 x dG ====== */

UNARY_KERNEL(square, (X * X), (2 * X * G)) /* dx += 2 x dG */

static tg_status square_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out,
                                  tg_tensor *const *in, const bool *need, tg_tensor **gin,
                                  int n_in, void *ctx)
{
    (void)out, (void)need, (void)n_in, (void)ctx;
    gin[0] = tg_mul(tp, tg_scale(tp, in[0], 2.0), dy); /* dx = (2 x) dG */
    return tg_tape_status(tp);
}

static const tg_op_def square_def = {
    .name = "square", .forward = square_forward, .vjp = square_vjp,
    .vjp_graph = square_vjp_graph,
    .rules = (const char *const[]){"2 {0} ⊙ {dy}", NULL},
    .onnx = square_onnx};

tg_tensor *tg_square(tg_tape *tp, tg_tensor *x) { return unary(tp, &square_def, x); }

/* ====== Helpers for the ops below, once per element type ======
 * BOTH(DEF) writes DEF(float, f32) and DEF(double, f64); PICK(fn, x) is
 * fn_f32 or fn_f64 by x's type. Each helper is a plain select or formula on
 * its arguments, loaded unconditionally, so the loops stay vectorisable. */

#define BOTH(DEF)   DEF(float, f32) DEF(double, f64)
#define PICK(fn, x) _Generic((x), float : fn##_f32, default : fn##_f64)

/* ====== add_scalar: y = x + s;  dx += dG ====== */

UNARY_KERNEL(add_scalar, (X + s), G) /* dx += dG */

static tg_status add_scalar_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out,
                                      tg_tensor *const *in, const bool *need, tg_tensor **gin,
                                      int n_in, void *ctx)
{
    (void)out, (void)in, (void)need, (void)n_in, (void)ctx;
    gin[0] = dy; /* dx = dG */
    return tg_tape_status(tp);
}

static const tg_op_def add_scalar_def = {
    .name = "add_scalar", .forward = add_scalar_forward, .vjp = add_scalar_vjp,
    .vjp_graph = add_scalar_vjp_graph,
    .rules = (const char *const[]){"{dy}", NULL},
    .onnx = add_scalar_onnx};

tg_tensor *tg_add_scalar(tg_tape *tp, tg_tensor *x, double s)
{
    if (!tg__guard(tp, "add_scalar", 1, &x)) return NULL;
    return unary_with(tp, &add_scalar_def, x, s, 0);
}

/* ====== pow: y = x^p;  dx += dG (p x^(p-1)), 0 for p = 0 ======
 * torch.pow with a float exponent, with the special cases of torch's CPU
 * kernel so F64 results agree bit for bit: p = 0 gives 1 (for NaN and 0 too),
 * 1 copies, 2 and 3 multiply, -2 is 1/(x x), 0.5 sqrt, -0.5 1/sqrt, -1 1/x;
 * any other p is libm's pow. The VJP is torch's p * x.pow(p - 1), so x = 0
 * with p < 1 has an infinite derivative, and a negative x with a non-integer
 * p gives NaN, both ways. */
#define POW_DEF(T, sfx)                                           \
    static T pow_##sfx(T x, T p)                                  \
    {                                                             \
        if (p == 0) return 1;                                     \
        if (p == 1) return x;                                     \
        if (p == 2) return x * x;                                 \
        if (p == 3) return x * x * x;                             \
        if (p == -2) return 1 / (x * x);                          \
        if (p == (T)0.5) return sqrt(x);                          \
        if (p == (T)-0.5) return 1 / sqrt(x);                     \
        if (p == -1) return 1 / x;                                \
        return pow(x, p);                                         \
    }                                                             \
    static T pow_grad_##sfx(T x, T p, T g)                        \
    {                                                             \
        return p == 0 ? 0 : g * (p * pow_##sfx(x, p - 1));        \
    }
BOTH(POW_DEF)

UNARY_KERNEL(pow, PICK(pow, X)(X, s), PICK(pow_grad, X)(X, s, G)) /* dx += dG p x^(p-1) */

/* dx = dG (p x^(p-1)) with x^(p-1) this op again, so its special cases hold
 * at every order; p = 0 gives no contribution. */
static tg_status pow_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                               const bool *need, tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)need, (void)n_in;
    double p = ((const double *)ctx)[0];
    if (p != 0) gin[0] = tg_mul(tp, dy, tg_scale(tp, tg_pow(tp, in[0], p - 1), p));
    return tg_tape_status(tp);
}

static const tg_op_def pow_def = {
    .name = "pow", .forward = pow_forward, .vjp = pow_vjp, .vjp_graph = pow_vjp_graph,
    .rules = (const char *const[]){"{c} {0}^({c} − 1) ⊙ {dy}", NULL},
    .onnx = pow_onnx};

tg_tensor *tg_pow(tg_tape *tp, tg_tensor *x, double p)
{
    if (!tg__guard(tp, "pow", 1, &x)) return NULL;
    if (isnan(p)) {
        char sx[TG__SHAPE_STR_MAX];
        tg__fail(tp, TG_ERR_ARG, "pow: the exponent is NaN (input %s)",
                 tg__shape_str(x, sx, sizeof sx));
        return NULL;
    }
    return unary_with(tp, &pow_def, x, p, 0);
}

/* ====== abs: y = |x|;  dx += dG sign(x), 0 at x = 0 (and for NaN) ====== */

#define SIGN_DEF(T, sfx) \
    static T sign_##sfx(T x) { return (T)((x > 0) - (x < 0)); }
BOTH(SIGN_DEF)

UNARY_KERNEL(abs, fabs(X), (G * PICK(sign, X)(X))) /* dx += dG sign(x) */

UNARY_MASK(sign, PICK(sign, X)(X)) /* sign(x), 0 at 0 and for NaN */

static const tg_op_def sign_def = {.name = "sign", .forward = sign_forward};

static tg_status abs_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                               const bool *need, tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)need, (void)n_in; /* dx = dG sign(x) */
    gin[0] = tg_mul(tp, dy, unary_mask(tp, &sign_def, in[0], ctx));
    return tg_tape_status(tp);
}

static const tg_op_def abs_def = {
    .name = "abs", .forward = abs_forward, .vjp = abs_vjp, .vjp_graph = abs_vjp_graph,
    .rules = (const char *const[]){"sign({0}) ⊙ {dy}", NULL},
    .onnx = abs_onnx};

tg_tensor *tg_abs(tg_tape *tp, tg_tensor *x) { return unary(tp, &abs_def, x); }

/* ====== sqrt: y = √x;  dx += dG / (2 y), from the saved output ======
 * As in torch, x = 0 gives an infinite derivative and x < 0 NaN. */
UNARY_KERNEL(sqrt, sqrt(X), (G / (2 * Y))) /* dx += dG / (2 y) */

static tg_status sqrt_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                                const bool *need, tg_tensor **gin, int n_in, void *ctx)
{
    (void)in, (void)need, (void)n_in, (void)ctx;
    gin[0] = tg_div(tp, dy, tg_scale(tp, out, 2.0)); /* dx = dG / (2 y) */
    return tg_tape_status(tp);
}

static const tg_op_def sqrt_def = {
    .name = "sqrt", .forward = sqrt_forward, .vjp = sqrt_vjp, .vjp_graph = sqrt_vjp_graph,
    .rules = (const char *const[]){"{dy} ⊘ (2 {y})", NULL},
    .onnx = sqrt_onnx};

tg_tensor *tg_sqrt(tg_tape *tp, tg_tensor *x) { return unary(tp, &sqrt_def, x); }

/* ====== sin: y = sin x;  dx += dG cos x.   cos: y = cos x;  dx += dG (−sin x) ====== */

UNARY_KERNEL(sin, sin(X), (G * cos(X))) /* dx += dG cos x */

static tg_status sin_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                               const bool *need, tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)need, (void)n_in, (void)ctx;
    gin[0] = tg_mul(tp, dy, tg_cos(tp, in[0])); /* dx = dG cos x */
    return tg_tape_status(tp);
}

static const tg_op_def sin_def = {
    .name = "sin", .forward = sin_forward, .vjp = sin_vjp, .vjp_graph = sin_vjp_graph,
    .rules = (const char *const[]){"cos({0}) ⊙ {dy}", NULL},
    .onnx = sin_onnx};

tg_tensor *tg_sin(tg_tape *tp, tg_tensor *x) { return unary(tp, &sin_def, x); }

UNARY_KERNEL(cos, cos(X), (G * -sin(X))) /* dx += dG (−sin x) */

static tg_status cos_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                               const bool *need, tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)need, (void)n_in, (void)ctx;
    gin[0] = tg_mul(tp, dy, tg_neg(tp, tg_sin(tp, in[0]))); /* dx = dG (−sin x) */
    return tg_tape_status(tp);
}

static const tg_op_def cos_def = {
    .name = "cos", .forward = cos_forward, .vjp = cos_vjp, .vjp_graph = cos_vjp_graph,
    .rules = (const char *const[]){"−sin({0}) ⊙ {dy}", NULL},
    .onnx = cos_onnx};

tg_tensor *tg_cos(tg_tape *tp, tg_tensor *x) { return unary(tp, &cos_def, x); }

/* ====== clamp: y = min(max(x, lo), hi);  dx += dG where lo <= x <= hi ======
 * torch.clamp: NaN stays NaN (and gets no gradient), the bounds themselves
 * pass the gradient, and lo > hi gives hi everywhere with no gradient. */
#define CLAMP_DEF(T, sfx)                                                            \
    static T clamp_##sfx(T x, T lo, T hi)                                            \
    {                                                                                \
        T t = x < lo ? lo : x;                                                       \
        return t > hi ? hi : t;                                                      \
    }                                                                                \
    static T clamp_grad_##sfx(T x, T lo, T hi, T g) { return x >= lo && x <= hi ? g : 0; }
BOTH(CLAMP_DEF)

UNARY_KERNEL(clamp, PICK(clamp, X)(X, s, s2),
             PICK(clamp_grad, X)(X, s, s2, G)) /* dx += dG [lo <= x <= hi] */

UNARY_MASK(clamp_mask, X >= s && X <= s2) /* [lo <= x <= hi] */

static const tg_op_def clamp_mask_def = {.name = "clamp_mask", .forward = clamp_mask_forward};

static tg_status clamp_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                                 const bool *need, tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)need, (void)n_in; /* dx = dG where lo <= x <= hi */
    gin[0] = masked(tp, dy, unary_mask(tp, &clamp_mask_def, in[0], ctx));
    return tg_tape_status(tp);
}

static const tg_op_def clamp_def = {
    .name = "clamp", .forward = clamp_forward, .vjp = clamp_vjp, .vjp_graph = clamp_vjp_graph,
    .rules = (const char *const[]){"{dy} ⊙ [lo ≤ {0} ≤ hi]", NULL},
    .onnx = clamp_onnx};

tg_tensor *tg_clamp(tg_tape *tp, tg_tensor *x, double lo, double hi)
{
    if (!tg__guard(tp, "clamp", 1, &x)) return NULL;
    if (isnan(lo) || isnan(hi)) {
        char sx[TG__SHAPE_STR_MAX];
        tg__fail(tp, TG_ERR_ARG, "clamp: a bound is NaN (lo %g, hi %g, input %s)", lo, hi,
                 tg__shape_str(x, sx, sizeof sx));
        return NULL;
    }
    return unary_with(tp, &clamp_def, x, lo, hi);
}

/* ====== maximum: y = max(a, b);  dA += dG [a > b] + dG/2 [a = b], dB likewise ======
 * minimum mirrors it. As torch.maximum: a NaN in either operand gives NaN and
 * the full dG to both; the selects are std::max's and std::min's. */
#define MINMAX_DEF(T, sfx)                                                                   \
    static T maximum_##sfx(T a, T b) { return b != b || a < b ? b : a; }                     \
    static T minimum_##sfx(T a, T b) { return b != b || b < a ? b : a; }                     \
    static T tie_or_##sfx(T a, T b, bool zero, T g) { return a == b ? g / 2 : zero ? 0 : g; } \
    static T tie_w_##sfx(T a, T b, bool zero) { return a == b ? (T)0.5 : zero ? 0 : 1; }
BOTH(MINMAX_DEF)

#define TIE_OR(a, b, zero, g) PICK(tie_or, g)(a, b, zero, g)

BINARY_KERNEL(maximum, PICK(maximum, A)(A, B), TIE_OR(A, B, A < B, G),
              TIE_OR(A, B, A > B, G)) /* dA += dG [a > b] + dG/2 [a = b], dB likewise */

#define TIE_W(a, b, zero) PICK(tie_w, a)(a, b, zero) /* TIE_OR's factor: g TIE_W = TIE_OR */

/* The factors of dA and dB as masks, one per operand and op, for the
 * recorded VJPs: dA = Σ_bcast dG w_a where w_a != 0, exactly TIE_OR's values
 * (g/2 is g ½). */
BINARY_MASK(maximum_mask_a, TIE_W(A, B, A < B))
BINARY_MASK(maximum_mask_b, TIE_W(A, B, A > B))
BINARY_MASK(minimum_mask_a, TIE_W(A, B, A > B))
BINARY_MASK(minimum_mask_b, TIE_W(A, B, A < B))

static const tg_op_def maximum_masks[2] = {
    {.name = "maximum_mask", .forward = maximum_mask_a_forward},
    {.name = "maximum_mask", .forward = maximum_mask_b_forward}};
static const tg_op_def minimum_masks[2] = {
    {.name = "minimum_mask", .forward = minimum_mask_a_forward},
    {.name = "minimum_mask", .forward = minimum_mask_b_forward}};

static tg_status minmax_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *const *in,
                                  const bool *need, tg_tensor **gin, const tg_op_def *masks)
{
    for (int i = 0; i < 2; i++)
        if (need[i])
            gin[i] = tg__sum_to(tp, masked(tp, dy, binary_mask(tp, &masks[i], in[0], in[1], dy)),
                                in[i]);
    return tg_tape_status(tp);
}

static tg_status maximum_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out,
                                   tg_tensor *const *in, const bool *need, tg_tensor **gin,
                                   int n_in, void *ctx)
{
    (void)out, (void)n_in, (void)ctx;
    return minmax_vjp_graph(tp, dy, in, need, gin, maximum_masks);
}

static const tg_op_def maximum_def = {
    .name = "maximum", .forward = maximum_forward, .vjp = maximum_vjp,
    .vjp_graph = maximum_vjp_graph,
    .rules = (const char *const[]){"{bcast}{dy} ⊙ ([{0} > {1}] + ½ [{0} = {1}])",
                                   "{bcast}{dy} ⊙ ([{1} > {0}] + ½ [{0} = {1}])", NULL},
    .onnx = maximum_onnx};

tg_tensor *tg_maximum(tg_tape *tp, tg_tensor *a, tg_tensor *b)
{
    return binary(tp, &maximum_def, a, b);
}

BINARY_KERNEL(minimum, PICK(minimum, A)(A, B), TIE_OR(A, B, A > B, G),
              TIE_OR(A, B, A < B, G)) /* dA += dG [a < b] + dG/2 [a = b], dB likewise */

static tg_status minimum_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out,
                                   tg_tensor *const *in, const bool *need, tg_tensor **gin,
                                   int n_in, void *ctx)
{
    (void)out, (void)n_in, (void)ctx;
    return minmax_vjp_graph(tp, dy, in, need, gin, minimum_masks);
}

static const tg_op_def minimum_def = {
    .name = "minimum", .forward = minimum_forward, .vjp = minimum_vjp,
    .vjp_graph = minimum_vjp_graph,
    .rules = (const char *const[]){"{bcast}{dy} ⊙ ([{0} < {1}] + ½ [{0} = {1}])",
                                   "{bcast}{dy} ⊙ ([{1} < {0}] + ½ [{0} = {1}])", NULL},
    .onnx = minimum_onnx};

tg_tensor *tg_minimum(tg_tape *tp, tg_tensor *a, tg_tensor *b)
{
    return binary(tp, &minimum_def, a, b);
}

/* ====== leaky_relu: y = x for x > 0, s x else;  dx += dG, or s dG at x <= 0 ====== */

#define LEAKY_DEF(T, sfx)                                                    \
    static T leaky_##sfx(T x, T s) { return x > 0 ? x : x * s; }             \
    static T leaky_grad_##sfx(T x, T s, T g) { return x > 0 ? g : g * s; }
BOTH(LEAKY_DEF)

UNARY_KERNEL(leaky_relu, PICK(leaky, X)(X, s),
             PICK(leaky_grad, X)(X, s, G)) /* dx += dG, s dG at x <= 0 */

UNARY_MASK(leaky_relu_slope, X > 0 ? 1 : s) /* 1 for x > 0, s else */

static const tg_op_def leaky_relu_slope_def = {.name = "leaky_relu_slope",
                                               .forward = leaky_relu_slope_forward};

static tg_status leaky_relu_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out,
                                      tg_tensor *const *in, const bool *need, tg_tensor **gin,
                                      int n_in, void *ctx)
{
    (void)out, (void)need, (void)n_in; /* dx = dG (1 or s): g, or g s as at first order */
    gin[0] = tg_mul(tp, dy, unary_mask(tp, &leaky_relu_slope_def, in[0], ctx));
    return tg_tape_status(tp);
}

static const tg_op_def leaky_relu_def = {
    .name = "leaky_relu", .forward = leaky_relu_forward, .vjp = leaky_relu_vjp,
    .vjp_graph = leaky_relu_vjp_graph,
    .rules = (const char *const[]){"{dy} ⊙ ([{0} > 0] + {c} [{0} ≤ 0])", NULL},
    .onnx = leaky_relu_onnx};

tg_tensor *tg_leaky_relu(tg_tape *tp, tg_tensor *x, double slope)
{
    if (!tg__guard(tp, "leaky_relu", 1, &x) ||
        !finite_param(tp, &leaky_relu_def, x, "the slope", slope))
        return NULL;
    return unary_with(tp, &leaky_relu_def, x, slope, 0);
}

/* ====== elu: y = x for x > 0, α (e^x − 1) else;  dx += dG, or dG α e^x at x <= 0 ======
 * e^x − 1 is expm1, exact to the last bit near 0 where the subtraction
 * would cancel. */
#define ELU_DEF(T, sfx)                                                          \
    static T elu_##sfx(T x, T alpha) { return x > 0 ? x : expm1(x) * alpha; }    \
    static T elu_grad_##sfx(T x, T alpha, T g) { return x > 0 ? g : g * (alpha * exp(x)); }
BOTH(ELU_DEF)

UNARY_KERNEL(elu, PICK(elu, X)(X, s), PICK(elu_grad, X)(X, s, G)) /* dx += dG, dG α e^x at x <= 0 */

/* dx = dG where x > 0, else dG (α e^x). e^x reads min(x, 0), so a large
 * x > 0, where the other branch is taken, cannot overflow it to inf and make
 * the next derivative 0 · inf = NaN; at x <= 0 it is the same number. */
static tg_status elu_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                               const bool *need, tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)need, (void)n_in;
    double alpha = ((const double *)ctx)[0];
    tg_tensor *e = tg_scale(tp, tg_exp(tp, tg_clamp(tp, in[0], -HUGE_VAL, 0)), alpha);
    gin[0] = tg_where(tp, unary_mask(tp, &relu_mask_def, in[0], ctx), dy, tg_mul(tp, dy, e));
    return tg_tape_status(tp);
}

static const tg_op_def elu_def = {
    .name = "elu", .forward = elu_forward, .vjp = elu_vjp, .vjp_graph = elu_vjp_graph,
    .rules = (const char *const[]){"{dy} ⊙ ([{0} > 0] + {c} e^{0} [{0} ≤ 0])", NULL},
    .onnx = elu_onnx};

tg_tensor *tg_elu(tg_tape *tp, tg_tensor *x, double alpha)
{
    if (!tg__guard(tp, "elu", 1, &x) || !finite_param(tp, &elu_def, x, "alpha", alpha))
        return NULL;
    return unary_with(tp, &elu_def, x, alpha, 0);
}

/* ====== gelu: y = x Φ(x);  dx += dG (Φ(x) + x φ(x)) ======
 * torch's formulas and their order of operations: Φ(x) = (1 + erf(x/√2)) / 2,
 * φ(x) = e^(−x²/2) / √(2π). The tanh form is y = x/2 (1 + tanh u) with
 * u = √(2/π) (x + 0.044715 x³), and its exact derivative
 * (1 + tanh u)/2 + x/2 (1 − tanh² u) √(2/π) (1 + 3 · 0.044715 x²). */
#define SQRT1_2      0.70710678118654752440 /* 1/√2 */
#define INV_SQRT_2PI 0.39894228040143267794 /* 1/√(2π) */
#define SQRT_2_PI    0.79788456080286535588 /* √(2/π) */
#define GELU_KAPPA   0.044715

#define NORMAL_DEF(T, sfx)                                                                  \
    static T normal_cdf_##sfx(T x) { return (T)0.5 * (1 + erf(x * (T)SQRT1_2)); }          \
    static T normal_pdf_##sfx(T x) { return (T)INV_SQRT_2PI * exp(x * x * (T)-0.5); }
BOTH(NORMAL_DEF)

#define GELU_DEF(T, sfx)                                                                   \
    static T gelu_##sfx(T x) { return x * (T)0.5 * (1 + erf(x * (T)SQRT1_2)); }            \
    static T gelu_grad_##sfx(T x, T g)                                                     \
    {                                                                                      \
        return g * (normal_cdf_##sfx(x) + x * normal_pdf_##sfx(x));                       \
    }                                                                                      \
    static T gelu_tanh_##sfx(T x)                                                          \
    {                                                                                      \
        T inner = (T)SQRT_2_PI * (x + (T)GELU_KAPPA * (x * x * x));                        \
        return (T)0.5 * x * (1 + TANH(inner));                                             \
    }                                                                                      \
    static T gelu_tanh_grad_##sfx(T x, T g)                                                \
    {                                                                                      \
        T t = TANH((T)SQRT_2_PI * (x + (T)GELU_KAPPA * (x * x * x)));                      \
        T right = (T)0.5 * x * (1 - t * t) * ((T)SQRT_2_PI * (1 + 3 * (T)GELU_KAPPA * x * x)); \
        return g * ((T)0.5 * (1 + t) + right);                                             \
    }
BOTH(GELU_DEF)

UNARY_KERNEL(gelu, PICK(gelu, X)(X), PICK(gelu_grad, X)(X, G)) /* dx += dG (Φ(x) + x φ(x)) */
UNARY_KERNEL(gelu_tanh, PICK(gelu_tanh, X)(X),
             PICK(gelu_tanh_grad, X)(X, G)) /* dx += dG gelu_tanh'(x) */

/* φ(x) recorded: e^(x x (−½)) / √(2π), as normal_pdf forms it. */
static tg_tensor *normal_pdf(tg_tape *tp, tg_tensor *x)
{
    return tg_scale(tp, tg_exp(tp, tg_scale(tp, tg_square(tp, x), -0.5)), INV_SQRT_2PI);
}

/* normal_cdf: y = Φ(x);  dx += dG φ(x). gelu's recorded VJP needs Φ as an op. */
UNARY_KERNEL(normal_cdf, PICK(normal_cdf, X)(X), (G * PICK(normal_pdf, X)(X))) /* dx += dG φ(x) */

static tg_status normal_cdf_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out,
                                      tg_tensor *const *in, const bool *need, tg_tensor **gin,
                                      int n_in, void *ctx)
{
    (void)out, (void)need, (void)n_in, (void)ctx;
    gin[0] = tg_mul(tp, dy, normal_pdf(tp, in[0])); /* dx = dG φ(x) */
    return tg_tape_status(tp);
}

static const tg_op_def normal_cdf_def = {
    .name = "normal_cdf", .forward = normal_cdf_forward, .vjp = normal_cdf_vjp,
    .vjp_graph = normal_cdf_vjp_graph, .rules = (const char *const[]){"{dy} ⊙ φ({0})", NULL}};

/* dx = dG (Φ(x) + x φ(x)) */
static tg_status gelu_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                                const bool *need, tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)need, (void)n_in, (void)ctx;
    tg_tensor *x = in[0], *cdf = unary(tp, &normal_cdf_def, x);
    gin[0] = tg_mul(tp, dy, tg_add(tp, cdf, tg_mul(tp, x, normal_pdf(tp, x))));
    return tg_tape_status(tp);
}

/* dx = dG ((1 + t)/2 + (x/2) (1 − t²) (√(2/π) (1 + (3κ x) x))), t = tanh u, in
 * gelu_tanh_grad's order of operations (3κ rounded as that dtype rounds it). */
static tg_status gelu_tanh_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out,
                                     tg_tensor *const *in, const bool *need, tg_tensor **gin,
                                     int n_in, void *ctx)
{
    (void)out, (void)need, (void)n_in, (void)ctx;
    tg_tensor *x = in[0];
    double k3 = x->dtype == TG_F32 ? (double)(3 * (float)GELU_KAPPA) : 3 * GELU_KAPPA;
    tg_tensor *x3 = tg_mul(tp, tg_square(tp, x), x);
    tg_tensor *u = tg_scale(tp, tg_add(tp, x, tg_scale(tp, x3, GELU_KAPPA)), SQRT_2_PI);
    tg_tensor *t = tg_tanh(tp, u);
    tg_tensor *du = tg_scale(tp, tg_add_scalar(tp, tg_mul(tp, tg_scale(tp, x, k3), x), 1.0),
                             SQRT_2_PI);
    tg_tensor *sech2 = tg_add_scalar(tp, tg_neg(tp, tg_square(tp, t)), 1.0);
    tg_tensor *right = tg_mul(tp, tg_mul(tp, tg_scale(tp, x, 0.5), sech2), du);
    tg_tensor *left = tg_scale(tp, tg_add_scalar(tp, t, 1.0), 0.5);
    gin[0] = tg_mul(tp, dy, tg_add(tp, left, right));
    return tg_tape_status(tp);
}

static const tg_op_def gelu_def = {
    .name = "gelu", .forward = gelu_forward, .vjp = gelu_vjp, .vjp_graph = gelu_vjp_graph,
    .rules = (const char *const[]){"{dy} ⊙ (Φ({0}) + {0} φ({0}))", NULL},
    .onnx = gelu_onnx};
static const tg_op_def gelu_tanh_def = {
    .name = "gelu", .forward = gelu_tanh_forward, .vjp = gelu_tanh_vjp,
    .vjp_graph = gelu_tanh_vjp_graph,
    .rules = (const char *const[]){"{dy} ⊙ gelu_tanh'({0})", NULL},
    .onnx = gelu_tanh_onnx};

tg_tensor *tg_gelu(tg_tape *tp, tg_tensor *x, bool tanh_approx)
{
    return unary(tp, tanh_approx ? &gelu_tanh_def : &gelu_def, x);
}

/* ====== silu: y = x σ(x);  dx += dG σ(x) (1 + x (1 − σ(x))) ======
 * σ is the stable sigmoid above, so large |x| gives x or -0 without overflow. */
#define SILU_DEF(T, sfx)                                  \
    static T silu_grad_##sfx(T x, T g)                    \
    {                                                     \
        T sg = SIGMOID(x);                                \
        return g * sg * (1 + x * (1 - sg));               \
    }
BOTH(SILU_DEF)

UNARY_KERNEL(silu, (X * SIGMOID(X)), PICK(silu_grad, X)(X, G)) /* dx += dG σ (1 + x (1 − σ)) */

static tg_status silu_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                                const bool *need, tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)need, (void)n_in, (void)ctx; /* dx = (dG σ) (1 + x (1 − σ)) */
    tg_tensor *x = in[0], *sg = tg_sigmoid(tp, x);
    tg_tensor *f = tg_add_scalar(tp, tg_mul(tp, x, tg_add_scalar(tp, tg_neg(tp, sg), 1.0)), 1.0);
    gin[0] = tg_mul(tp, tg_mul(tp, dy, sg), f);
    return tg_tape_status(tp);
}

static const tg_op_def silu_def = {
    .name = "silu", .forward = silu_forward, .vjp = silu_vjp, .vjp_graph = silu_vjp_graph,
    .rules = (const char *const[]){"{dy} ⊙ σ({0}) ⊙ (1 + {0} ⊙ (1 − σ({0})))", NULL},
    .onnx = silu_onnx};

tg_tensor *tg_silu(tg_tape *tp, tg_tensor *x) { return unary(tp, &silu_def, x); }

/* ====== softplus: y = log(1 + e^x) = max(x, 0) + log1p(e^−|x|);  dx += dG σ(x) ======
 * exp only ever sees -|x|, so nothing overflows; y is x + e^-x to the last
 * bit for large x, with no threshold where it switches to x. */
#define SOFTPLUS_DEF(T, sfx) \
    static T softplus_##sfx(T x) { return (x > 0 ? x : 0) + log1p(exp(-fabs(x))); }
BOTH(SOFTPLUS_DEF)

UNARY_KERNEL(softplus, PICK(softplus, X)(X), (G * SIGMOID(X))) /* dx += dG σ(x) */

static tg_status softplus_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out,
                                    tg_tensor *const *in, const bool *need, tg_tensor **gin,
                                    int n_in, void *ctx)
{
    (void)out, (void)need, (void)n_in, (void)ctx;
    gin[0] = tg_mul(tp, dy, tg_sigmoid(tp, in[0])); /* dx = dG σ(x) */
    return tg_tape_status(tp);
}

static const tg_op_def softplus_def = {
    .name = "softplus", .forward = softplus_forward, .vjp = softplus_vjp,
    .vjp_graph = softplus_vjp_graph,
    .rules = (const char *const[]){"{dy} ⊙ σ({0})", NULL},
    .onnx = softplus_onnx};

tg_tensor *tg_softplus(tg_tape *tp, tg_tensor *x) { return unary(tp, &softplus_def, x); }

/* ====== ONNX forms ======
 * Most ops are one ONNX operator of the same name, whose broadcasting is
 * NumPy's as here. The op parameters become constants of the op's dtype, so
 * an F32 graph computes with the same float values as the tape. gelu (ONNX
 * has Gelu only from opset 20) and silu are written out from Erf, Tanh and
 * Sigmoid. */

#define ONNX_SAME(op, OP)                                                                          \
    static TG__ONNX_HOOK(op##_onnx)                                                                \
    {                                                                                              \
        (void)ctx;                                                                                 \
        return tg__onnx_same(g, OP, out, in, n_in);                                                \
    }
ONNX_SAME(add, "Add")
ONNX_SAME(sub, "Sub")
ONNX_SAME(mul, "Mul")
ONNX_SAME(div, "Div")
ONNX_SAME(maximum, "Max")
ONNX_SAME(minimum, "Min")
ONNX_SAME(neg, "Neg")
ONNX_SAME(sigmoid, "Sigmoid")
ONNX_SAME(tanh, "Tanh")
ONNX_SAME(relu, "Relu")
ONNX_SAME(exp, "Exp")
ONNX_SAME(log, "Log")
ONNX_SAME(abs, "Abs")
ONNX_SAME(sqrt, "Sqrt")
ONNX_SAME(sin, "Sin")
ONNX_SAME(cos, "Cos")
ONNX_SAME(softplus, "Softplus")
#undef ONNX_SAME

/* y = OP(x, s) with the op's parameter s as a constant of x's dtype. */
static tg_status with_scalar(tg_onnx_graph *g, const char *op, const tg_tensor *out,
                             const tg_tensor *x, double s)
{
    const char *c = tg_onnx_scalar(g, out->dtype, s);
    tg__onnx_op(g, op, tg_onnx_value(g, out), 2, tg_onnx_value(g, x), c);
    return tg_onnx_status(g);
}

static TG__ONNX_HOOK(scale_onnx)
{
    (void)n_in;
    return with_scalar(g, "Mul", out, in[0], ((const double *)ctx)[0]);
}

static TG__ONNX_HOOK(add_scalar_onnx)
{
    (void)n_in;
    return with_scalar(g, "Add", out, in[0], ((const double *)ctx)[0]);
}

static TG__ONNX_HOOK(pow_onnx)
{
    (void)n_in;
    return with_scalar(g, "Pow", out, in[0], ((const double *)ctx)[0]);
}

static TG__ONNX_HOOK(square_onnx)
{
    (void)n_in, (void)ctx;
    const char *x = tg_onnx_value(g, in[0]);
    tg__onnx_op(g, "Mul", tg_onnx_value(g, out), 2, x, x);
    return tg_onnx_status(g);
}

/* Clip(x, lo, hi) is min(max(x, lo), hi), as here, lo > hi included. */
static TG__ONNX_HOOK(clamp_onnx)
{
    (void)n_in;
    const double *p = ctx;
    const char *lo = tg_onnx_scalar(g, out->dtype, p[0]);
    const char *hi = tg_onnx_scalar(g, out->dtype, p[1]);
    tg__onnx_op(g, "Clip", tg_onnx_value(g, out), 3, tg_onnx_value(g, in[0]), lo, hi);
    return tg_onnx_status(g);
}

/* LeakyRelu's and Elu's alpha are float attributes in ONNX. */
static TG__ONNX_HOOK(leaky_relu_onnx)
{
    (void)n_in;
    tg_onnx_node *n = tg__onnx_op(g, "LeakyRelu", tg_onnx_value(g, out), 1,
                                  tg_onnx_value(g, in[0]));
    return tg_onnx_attr_float(n, "alpha", ((const double *)ctx)[0]);
}

static TG__ONNX_HOOK(elu_onnx)
{
    (void)n_in;
    tg_onnx_node *n = tg__onnx_op(g, "Elu", tg_onnx_value(g, out), 1, tg_onnx_value(g, in[0]));
    return tg_onnx_attr_float(n, "alpha", ((const double *)ctx)[0]);
}

/* x Φ(x) = x (0.5 (1 + erf(x / √2))), in the order the kernel computes it. */
static TG__ONNX_HOOK(gelu_onnx)
{
    (void)n_in, (void)ctx;
    tg_dtype dt = out->dtype;
    const char *x = tg_onnx_value(g, in[0]);
    const char *c_rt = tg_onnx_scalar(g, dt, SQRT1_2), *one = tg_onnx_scalar(g, dt, 1);
    const char *half = tg_onnx_scalar(g, dt, 0.5);
    const char *xs = tg__onnx_out(tg__onnx_op(g, "Mul", NULL, 2, x, c_rt));
    const char *e = tg__onnx_out(tg__onnx_op(g, "Erf", NULL, 1, xs));
    const char *cdf = tg__onnx_out(
        tg__onnx_op(g, "Mul", NULL, 2, half, tg__onnx_out(tg__onnx_op(g, "Add", NULL, 2, one, e))));
    tg__onnx_op(g, "Mul", tg_onnx_value(g, out), 2, x, cdf);
    return tg_onnx_status(g);
}

/* 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³))). */
static TG__ONNX_HOOK(gelu_tanh_onnx)
{
    (void)n_in, (void)ctx;
    tg_dtype dt = out->dtype;
    const char *x = tg_onnx_value(g, in[0]);
    const char *kappa = tg_onnx_scalar(g, dt, GELU_KAPPA), *c = tg_onnx_scalar(g, dt, SQRT_2_PI);
    const char *one = tg_onnx_scalar(g, dt, 1), *half = tg_onnx_scalar(g, dt, 0.5);
    const char *x3 = tg__onnx_out(
        tg__onnx_op(g, "Mul", NULL, 2, x, tg__onnx_out(tg__onnx_op(g, "Mul", NULL, 2, x, x))));
    const char *inner = tg__onnx_out(tg__onnx_op(
        g, "Add", NULL, 2, x, tg__onnx_out(tg__onnx_op(g, "Mul", NULL, 2, kappa, x3))));
    const char *t = tg__onnx_out(
        tg__onnx_op(g, "Tanh", NULL, 1, tg__onnx_out(tg__onnx_op(g, "Mul", NULL, 2, c, inner))));
    const char *hx = tg__onnx_out(tg__onnx_op(g, "Mul", NULL, 2, half, x));
    tg__onnx_op(g, "Mul", tg_onnx_value(g, out), 2, hx,
                tg__onnx_out(tg__onnx_op(g, "Add", NULL, 2, one, t)));
    return tg_onnx_status(g);
}

/* x σ(x). */
static TG__ONNX_HOOK(silu_onnx)
{
    (void)n_in, (void)ctx;
    const char *x = tg_onnx_value(g, in[0]);
    tg__onnx_op(g, "Mul", tg_onnx_value(g, out), 2, x,
                tg__onnx_out(tg__onnx_op(g, "Sigmoid", NULL, 1, x)));
    return tg_onnx_status(g);
}
