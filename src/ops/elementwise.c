/*
 * Elementwise ops: the binary ones with NumPy broadcasting (add, sub, mul,
 * div) and the unary ones (scale, neg, sigmoid, tanh, relu, exp, log, square).
 *
 * Each op is one line that gives its forward expression and its VJP, expanded
 * by the macros below into a forward, a vjp and a tg_op_def. To add an op:
 * one UNARY_OP or BINARY_OP line, a constructor, a header line, a test row.
 * <tgmath.h> makes exp, log and tanh pick the float or double function from
 * the element type, so one expression serves F32 and F64.
 *
 * IEEE rules hold for values: log(0) = -inf, log(x < 0) = NaN, x/0 = +-inf.
 * They are results, not errors.
 */
#include "internal.h"

#include <tgmath.h>

/* ====== Broadcasting ======
 * Shapes are aligned at their last axis and padded to rank 4 with leading 1s;
 * an operand's axis of size 1 is stretched by giving it stride 0. Equal shapes
 * collapse to one contiguous axis. The VJP walks the same index pattern, so
 * "sum dG over the broadcast axes" is just += through a stride-0 index. */

typedef struct bcast {
    int64_t n[4];      /* output extent per padded axis */
    int64_t sa[4], sb[4]; /* element strides of a and b (0 where stretched) */
} bcast;

static void padded(const tg_tensor *t, int64_t *dims)
{
    for (int i = 0; i < 4; i++) dims[i] = 1;
    for (int i = 0; i < t->rank; i++) dims[4 - t->rank + i] = t->shape[i];
}

/* The broadcast output shape of a and b; false if they do not broadcast. */
static bool bcast_shape(const tg_tensor *a, const tg_tensor *b, int *rank, int64_t *shape)
{
    int64_t da[4], db[4];
    padded(a, da);
    padded(b, db);
    *rank = a->rank > b->rank ? a->rank : b->rank;
    for (int i = 4 - *rank; i < 4; i++) {
        if (da[i] != db[i] && da[i] != 1 && db[i] != 1) return false;
        shape[i - (4 - *rank)] = da[i] == 1 ? db[i] : da[i];
    }
    return true;
}

static void bcast_plan(bcast *p, const tg_tensor *a, const tg_tensor *b)
{
    if (tg__same_shape(a, b)) {
        *p = (bcast){{1, 1, 1, a->numel}, {0, 0, 0, 1}, {0, 0, 0, 1}};
        return;
    }
    int64_t da[4], db[4];
    padded(a, da);
    padded(b, db);
    int64_t ka = 1, kb = 1;
    for (int i = 3; i >= 0; i--) {
        p->n[i] = da[i] == 1 ? db[i] : da[i];
        p->sa[i] = da[i] == 1 ? 0 : ka;
        p->sb[i] = db[i] == 1 ? 0 : kb;
        ka *= da[i];
        kb *= db[i];
    }
}

/* Runs the statement given for every output element o with the operands' elements ia, ib. */
#define BCAST_FOR(p, ...)                                                                          \
    do {                                                                                           \
        int64_t o = 0;                                                                             \
        for (int64_t i0 = 0; i0 < (p)->n[0]; i0++)                                                 \
            for (int64_t i1 = 0; i1 < (p)->n[1]; i1++)                                             \
                for (int64_t i2 = 0; i2 < (p)->n[2]; i2++) {                                       \
                    int64_t ja = i0 * (p)->sa[0] + i1 * (p)->sa[1] + i2 * (p)->sa[2];              \
                    int64_t jb = i0 * (p)->sb[0] + i1 * (p)->sb[1] + i2 * (p)->sb[2];              \
                    for (int64_t i3 = 0; i3 < (p)->n[3]; i3++, o++) {                              \
                        int64_t ia = ja + i3 * (p)->sa[3], ib = jb + i3 * (p)->sb[3];              \
                        __VA_ARGS__;                                                               \
                    }                                                                              \
                }                                                                                  \
    } while (0)

#define BINARY_FWD(T, FWD)                                                                         \
    do {                                                                                           \
        typedef T elem;                                                                            \
        const elem *A = in[0]->data, *B = in[1]->data;                                             \
        elem *Y = out->data;                                                                       \
        BCAST_FOR(&p, {                                                                            \
            elem a = A[ia], b = B[ib];                                                             \
            Y[o] = (FWD);                                                                          \
        });                                                                                        \
    } while (0)

/* dA and dB are separate passes so neither loop tests for a NULL gradient. */
#define BINARY_VJP(T, DA, DB)                                                                      \
    do {                                                                                           \
        typedef T elem;                                                                            \
        const elem *A = in[0]->data, *B = in[1]->data, *G = gout->data;                            \
        if (gin[0]) {                                                                              \
            elem *GA = gin[0]->data;                                                               \
            BCAST_FOR(&p, {                                                                        \
                elem a = A[ia], b = B[ib], g = G[o];                                               \
                (void)a, (void)b;                                                                  \
                GA[ia] += (DA);                                                                    \
            });                                                                                    \
        }                                                                                          \
        if (gin[1]) {                                                                              \
            elem *GB = gin[1]->data;                                                               \
            BCAST_FOR(&p, {                                                                        \
                elem a = A[ia], b = B[ib], g = G[o];                                               \
                (void)a, (void)b;                                                                  \
                GB[ib] += (DB);                                                                    \
            });                                                                                    \
        }                                                                                          \
    } while (0)

#define BINARY_OP(NAME, FWD, DA, DB)                                                               \
    static tg_status NAME##_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)     \
    {                                                                                              \
        (void)n_in, (void)ctx;                                                                     \
        bcast p;                                                                                   \
        bcast_plan(&p, in[0], in[1]);                                                              \
        if (out->dtype == TG_F64)                                                                  \
            BINARY_FWD(double, FWD);                                                               \
        else                                                                                       \
            BINARY_FWD(float, FWD);                                                                \
        return TG_OK;                                                                              \
    }                                                                                              \
    static tg_status NAME##_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in, \
                                tg_tensor **gin, int n_in, void *ctx)                              \
    {                                                                                              \
        (void)out, (void)n_in, (void)ctx;                                                          \
        bcast p;                                                                                   \
        bcast_plan(&p, in[0], in[1]);                                                              \
        if (gout->dtype == TG_F64)                                                                 \
            BINARY_VJP(double, DA, DB);                                                            \
        else                                                                                       \
            BINARY_VJP(float, DA, DB);                                                             \
        return TG_OK;                                                                              \
    }                                                                                              \
    static const tg_op_def NAME##_def = {.name = #NAME, .forward = NAME##_forward, .vjp = NAME##_vjp};

/* ====== add: y = a + b;  da += dG, db += dG (summed over broadcast axes) ====== */
BINARY_OP(add, a + b, g, g)
/* ====== sub: y = a - b;  da += dG, db -= dG ====== */
BINARY_OP(sub, a - b, g, -g)
/* ====== mul (Hadamard): y = a (.) b;  da += dG (.) b, db += dG (.) a ====== */
BINARY_OP(mul, a * b, g * b, g * a)
/* ====== div: y = a / b;  da += dG / b, db -= dG a / b^2 ====== */
BINARY_OP(div, a / b, g / b, -g * a / (b * b))

static tg_tensor *binary(tg_tape *tp, const tg_op_def *def, tg_tensor *a, tg_tensor *b)
{
    tg_tensor *in[2] = {a, b};
    if (!tg__guard(tp, def->name, 2, in)) return NULL;
    int rank;
    int64_t shape[TG_MAX_RANK];
    if (!bcast_shape(a, b, &rank, shape)) {
        char sa[TG__SHAPE_STR_MAX], sb[TG__SHAPE_STR_MAX];
        tg__fail(tp, TG_ERR_SHAPE, "%s: shapes do not broadcast: %s and %s", def->name,
                 tg__shape_str(a, sa, sizeof sa), tg__shape_str(b, sb, sizeof sb));
        return NULL;
    }
    return tg_custom(tp, def, in, 2, rank, shape, NULL);
}

tg_tensor *tg_add(tg_tape *tp, tg_tensor *a, tg_tensor *b) { return binary(tp, &add_def, a, b); }
tg_tensor *tg_sub(tg_tape *tp, tg_tensor *a, tg_tensor *b) { return binary(tp, &sub_def, a, b); }
tg_tensor *tg_mul(tg_tape *tp, tg_tensor *a, tg_tensor *b) { return binary(tp, &mul_def, a, b); }
tg_tensor *tg_div(tg_tape *tp, tg_tensor *a, tg_tensor *b) { return binary(tp, &div_def, a, b); }

/* ====== Unary ops ======
 * FWD is y in terms of x (and the parameter s of scale); DX is the
 * contribution to dx in terms of g = dG, x and the saved output y. */

#define UNARY_FWD(T, FWD)                                                                          \
    do {                                                                                           \
        typedef T elem;                                                                            \
        const elem *X = in[0]->data;                                                               \
        elem *Y = out->data, sv = (elem)s;                                                         \
        (void)sv;                                                                                  \
        for (int64_t i = 0; i < out->numel; i++) {                                                 \
            elem x = X[i];                                                                         \
            Y[i] = (FWD);                                                                          \
        }                                                                                          \
    } while (0)

#define UNARY_VJP(T, DX)                                                                           \
    do {                                                                                           \
        typedef T elem;                                                                            \
        const elem *X = in[0]->data, *Y = out->data, *G = gout->data;                              \
        elem *D = gin[0]->data, sv = (elem)s;                                                      \
        (void)sv;                                                                                  \
        for (int64_t i = 0; i < out->numel; i++) {                                                 \
            elem x = X[i], y = Y[i], g = G[i];                                                     \
            (void)x, (void)y;                                                                      \
            D[i] += (DX);                                                                          \
        }                                                                                          \
    } while (0)

#define UNARY_OP(NAME, FWD, DX)                                                                    \
    static tg_status NAME##_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)     \
    {                                                                                              \
        (void)n_in;                                                                                \
        double s = ctx ? *(const double *)ctx : 0.0;                                               \
        if (out->dtype == TG_F64)                                                                  \
            UNARY_FWD(double, FWD);                                                                \
        else                                                                                       \
            UNARY_FWD(float, FWD);                                                                 \
        return TG_OK;                                                                              \
    }                                                                                              \
    static tg_status NAME##_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in, \
                                tg_tensor **gin, int n_in, void *ctx)                              \
    {                                                                                              \
        (void)n_in;                                                                                \
        if (!gin[0]) return TG_OK;                                                                 \
        double s = ctx ? *(const double *)ctx : 0.0;                                               \
        if (out->dtype == TG_F64)                                                                  \
            UNARY_VJP(double, DX);                                                                 \
        else                                                                                       \
            UNARY_VJP(float, DX);                                                                  \
        return TG_OK;                                                                              \
    }                                                                                              \
    static const tg_op_def NAME##_def = {.name = #NAME, .forward = NAME##_forward, .vjp = NAME##_vjp};

/* ====== scale: y = s x;  dx += s dG ====== */
UNARY_OP(scale, sv * x, sv * g)
/* ====== neg: y = -x;  dx -= dG ====== */
UNARY_OP(neg, -x, -g)
/* ====== sigmoid: y = 1/(1+e^-x);  dx += dG y(1-y), from the saved output ======
 * Never takes exp of a large positive number, so it saturates to exactly 0 or 1. */
UNARY_OP(sigmoid, x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x)), g * y * (1 - y))
/* ====== tanh: y = tanh x;  dx += dG (1 - y^2) ====== */
UNARY_OP(tanh, tanh(x), g * (1 - y * y))
/* ====== relu: y = max(x, 0);  dx += dG where x > 0 (the derivative at 0 is taken as 0) ====== */
UNARY_OP(relu, x > 0 ? x : 0, x > 0 ? g : 0)
/* ====== exp: y = e^x;  dx += dG y ====== */
UNARY_OP(exp, exp(x), g * y)
/* ====== log: y = ln x;  dx += dG / x ====== */
UNARY_OP(log, log(x), g / x)
/* ====== square: y = x^2;  dx += 2 x dG ====== */
UNARY_OP(square, x * x, 2 * x * g)

static tg_tensor *unary(tg_tape *tp, const tg_op_def *def, tg_tensor *x, void *ctx)
{
    if (!tg__guard(tp, def->name, 1, &x)) return NULL;
    return tg_custom(tp, def, &x, 1, x->rank, x->shape, ctx);
}

tg_tensor *tg_scale(tg_tape *tp, tg_tensor *x, double s)
{
    if (!tg__guard(tp, "scale", 1, &x)) return NULL;
    double *ctx = tg__tape_copy(tp, &s, sizeof s);
    return ctx ? unary(tp, &scale_def, x, ctx) : NULL;
}

tg_tensor *tg_neg(tg_tape *tp, tg_tensor *x) { return unary(tp, &neg_def, x, NULL); }
tg_tensor *tg_sigmoid(tg_tape *tp, tg_tensor *x) { return unary(tp, &sigmoid_def, x, NULL); }
tg_tensor *tg_tanh(tg_tape *tp, tg_tensor *x) { return unary(tp, &tanh_def, x, NULL); }
tg_tensor *tg_relu(tg_tape *tp, tg_tensor *x) { return unary(tp, &relu_def, x, NULL); }
tg_tensor *tg_exp(tg_tape *tp, tg_tensor *x) { return unary(tp, &exp_def, x, NULL); }
tg_tensor *tg_log(tg_tape *tp, tg_tensor *x) { return unary(tp, &log_def, x, NULL); }
tg_tensor *tg_square(tg_tape *tp, tg_tensor *x) { return unary(tp, &square_def, x, NULL); }
