/*
 * The v0.2 elementwise ops (add_scalar, pow, abs, sqrt, sin, cos, clamp,
 * maximum, minimum, leaky_relu, elu, gelu, silu, softplus), the axis
 * reductions (mean_axis, max_axis, min_axis, argmax, logsumexp) and the
 * losses (cross_entropy, bce_with_logits, l1_loss, huber_loss). Their
 * gradchecks, generic replay and F32 checks are rows of tests/oplist.h; this
 * suite has what is particular to them: values and gradients against
 * PyTorch 1.13 (tools/ewops_torch_ref.py made the numbers) at kinks, ties,
 * NaN and infinities; empty axes and losses over nothing; exact rules at
 * the kinks; replay with new labels; every error with its status and text.
 */
#include "testutil.h"

#include <fenv.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define N(a) ((int)(sizeof(a) / sizeof *(a)))

/* ====== The ops under test, with their parameters from the table row ====== */

/* The parameters every row starts with; the op wrappers read them. */
typedef struct params {
    double p, q; /* pow's exponent, clamp's bounds, a slope, alpha or delta */
    int axis;
    bool keepdim;
} params;

/* The labels op_cross_entropy reads; the test that records it sets them. */
static tg_tensor *labels;

#define OP(name, call)                                                          \
    static tg_tensor *op_##name(tg_tape *tp, tg_tensor *const *in, const void *row) \
    {                                                                           \
        const params *c = row;                                                  \
        (void)c;                                                                \
        return call;                                                            \
    }

OP(add_scalar, tg_add_scalar(tp, in[0], c->p))
OP(pow, tg_pow(tp, in[0], c->p))
OP(abs, tg_abs(tp, in[0]))
OP(sqrt, tg_sqrt(tp, in[0]))
OP(sin, tg_sin(tp, in[0]))
OP(cos, tg_cos(tp, in[0]))
OP(clamp, tg_clamp(tp, in[0], c->p, c->q))
OP(maximum, tg_maximum(tp, in[0], in[1]))
OP(minimum, tg_minimum(tp, in[0], in[1]))
OP(leaky_relu, tg_leaky_relu(tp, in[0], c->p))
OP(elu, tg_elu(tp, in[0], c->p))
OP(gelu, tg_gelu(tp, in[0], false))
OP(gelu_tanh, tg_gelu(tp, in[0], true))
OP(silu, tg_silu(tp, in[0]))
OP(softplus, tg_softplus(tp, in[0]))
OP(mean_axis, tg_mean_axis(tp, in[0], c->axis, c->keepdim))
OP(max_axis, tg_max_axis(tp, in[0], c->axis, c->keepdim))
OP(min_axis, tg_min_axis(tp, in[0], c->axis, c->keepdim))
OP(logsumexp, tg_logsumexp(tp, in[0], c->axis, c->keepdim))
OP(cross_entropy, tg_cross_entropy(tp, in[0], labels))
OP(bce, tg_bce_with_logits(tp, in[0], in[1]))
OP(l1, tg_l1_loss(tp, in[0], in[1]))
OP(huber, tg_huber_loss(tp, in[0], in[1], c->p))

/* An I64 tensor from a shape string and values. */
static tg_tensor *i64(const char *shape, const int64_t *v)
{
    int64_t s[TG_MAX_RANK];
    int rank = tu_parse_shape(shape, s);
    tg_tensor *t = tg_tensor_new(TG_I64, rank, s);
    ck_assert_ptr_nonnull(t);
    if (tg_tensor_numel(t)) memcpy(tg_tensor_data(t), v, (size_t)tg_tensor_numel(t) * sizeof *v);
    return t;
}

static int64_t i64_at(const tg_tensor *t, int64_t k) { return ((const int64_t *)tg_tensor_cdata(t))[k]; }

/* ====== Against PyTorch 1.13 (tools/ewops_torch_ref.py), F64 to 1e-12 and F32 ====== */

/* got agrees with want: the same NaN or infinity, or within rel |want| + abs. */
static bool agrees(double got, double want, double rel, double abs_tol)
{
    if (isnan(want)) return isnan(got);
    if (isinf(want)) return got == want;
    return fabs(got - want) <= rel * fabs(want) + abs_tol;
}

/* The tolerances of dtype dt: 1e-12 relative in F64 (torch's own formulas),
 * a few float roundings in F32. */
static void tolerances(tg_dtype dt, double *rel, double *abs_tol)
{
    *rel = dt == TG_F64 ? 1e-12 : 2e-6;
    *abs_tol = dt == TG_F64 ? 1e-15 : 1e-6;
}

static void expect_values(const tg_tensor *t, const double *want, const char *what, int64_t n)
{
    double rel, abs_tol;
    tolerances(tg_tensor_dtype(t), &rel, &abs_tol);
    ck_assert_msg(tg_tensor_numel(t) == n, "%s: %lld elements, want %lld", what,
                  (long long)tg_tensor_numel(t), (long long)n);
    for (int64_t k = 0; k < n; k++)
        ck_assert_msg(agrees(tu_at(t, k), want[k], rel, abs_tol), "%s %s [%lld]: %.17g, want %.17g",
                      what, tu_dtype_name(tg_tensor_dtype(t)), (long long)k, tu_at(t, k), want[k]);
}

static const double UX[7] = {-2.5, -1.0, -0.3, 0.0, 0.4, 1.0, 3.0};
static const double UW[7] = {0.5, -1.25, 2.0, 0.75, -0.5, 1.5, 1.0};

typedef struct torch_unary {
    params prm;
    const char *name;
    tu_op_fn op;
    double y[7], dx[7]; /* op(UX) and the gradient of sum(op(UX) * UW) */
} torch_unary;

static const torch_unary torch_unary_cases[] = {
    {{0.75, 0, 0, false}, "add_scalar 0.75", op_add_scalar,
     {-1.75, -0.25, 0.45, 0.75, 1.15, 1.75, 3.75},
     {0.5, -1.25, 2.0, 0.75, -0.5, 1.5, 1.0}},
    {{0, 0, 0, false}, "pow 0", op_pow,
     {1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0},
     {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0}},
    {{1, 0, 0, false}, "pow 1", op_pow,
     {-2.5, -1.0, -0.3, 0.0, 0.4, 1.0, 3.0},
     {0.5, -1.25, 2.0, 0.75, -0.5, 1.5, 1.0}},
    {{2, 0, 0, false}, "pow 2", op_pow,
     {6.25, 1.0, 0.09, 0.0, 0.16000000000000003, 1.0, 9.0},
     {-2.5, 2.5, -1.2, 0.0, -0.4, 3.0, 6.0}},
    {{3, 0, 0, false}, "pow 3", op_pow,
     {-15.625, -1.0, -0.027, 0.0, 0.06400000000000002, 1.0, 27.0},
     {9.375, -3.75, 0.54, 0.0, -0.24000000000000005, 4.5, 27.0}},
    {{-2, 0, 0, false}, "pow -2", op_pow,
     {0.16, 1.0, 11.11111111111111, INFINITY, 6.249999999999999, 1.0, 0.1111111111111111},
     {0.064, -2.5, 148.14814814814815, -INFINITY, 15.624999999999998, -3.0,
      -0.07407407407407407}},
    {{0.5, 0, 0, false}, "pow 0.5", op_pow,
     {NAN, NAN, NAN, 0.0, 0.6324555320336759, 1.0, 1.7320508075688772},
     {NAN, NAN, NAN, INFINITY, -0.3952847075210474, 0.75, 0.2886751345948129}},
    {{-0.5, 0, 0, false}, "pow -0.5", op_pow,
     {NAN, NAN, NAN, INFINITY, 1.5811388300841895, 1.0, 0.5773502691896258},
     {NAN, NAN, NAN, -INFINITY, 0.9882117688026184, -0.75, -0.09622504486493763}},
    {{-1, 0, 0, false}, "pow -1", op_pow,
     {-0.4, -1.0, -3.3333333333333335, INFINITY, 2.5, 1.0, 0.3333333333333333},
     {-0.08, 1.25, -22.22222222222222, -INFINITY, 3.1249999999999996, -1.5,
      -0.1111111111111111}},
    {{2.5, 0, 0, false}, "pow 2.5", op_pow,
     {NAN, NAN, NAN, 0.0, 0.10119288512538815, 1.0, 15.588457268119896},
     {NAN, NAN, NAN, 0.0, -0.316227766016838, 3.75, 12.99038105676658}},
    {{0.3, 0, 0, false}, "pow 0.3", op_pow,
     {NAN, NAN, NAN, 0.0, 0.7596577929323739, 1.0, 1.3903891703159093},
     {NAN, NAN, NAN, INFINITY, -0.28487167234964017, 0.44999999999999996,
      0.13903891703159094}},
    {{-1.7, 0, 0, false}, "pow -1.7", op_pow,
     {NAN, NAN, NAN, INFINITY, 4.747861205827336, 1.0, 0.1544876855906566},
     {NAN, NAN, NAN, -INFINITY, 10.08920506238309, -2.55, -0.08754302183470539}},
    {{0, 0, 0, false}, "abs", op_abs,
     {2.5, 1.0, 0.3, 0.0, 0.4, 1.0, 3.0},
     {-0.5, 1.25, -2.0, 0.0, -0.5, 1.5, 1.0}},
    {{0, 0, 0, false}, "sqrt", op_sqrt,
     {NAN, NAN, NAN, 0.0, 0.6324555320336759, 1.0, 1.7320508075688772},
     {NAN, NAN, NAN, INFINITY, -0.3952847075210474, 0.75, 0.2886751345948129}},
    {{0, 0, 0, false}, "sin", op_sin,
     {-0.5984721441039564, -0.8414709848078965, -0.29552020666133955, 0.0, 0.3894183423086505,
      0.8414709848078965, 0.1411200080598672},
     {-0.40057180777346685, -0.6753778823351747, 1.910672978251212, 0.75, -0.46053049700144255,
      0.8104534588022096, -0.9899924966004454}},
    {{0, 0, 0, false}, "cos", op_cos,
     {-0.8011436155469337, 0.5403023058681398, 0.955336489125606, 1.0, 0.9210609940028851,
      0.5403023058681398, -0.9899924966004454},
     {0.2992360720519782, -1.0518387310098707, 0.5910404133226791, -0.0, 0.19470917115432526,
      -1.2622064772118446, -0.1411200080598672}},
    {{-1, 1, 0, false}, "clamp -1 1", op_clamp,
     {-1.0, -1.0, -0.3, 0.0, 0.4, 1.0, 1.0},
     {0.0, -1.25, 2.0, 0.75, -0.5, 1.5, 0.0}},
    {{0.5, -0.5, 0, false}, "clamp 0.5 -0.5", op_clamp,
     {-0.5, -0.5, -0.5, -0.5, -0.5, -0.5, -0.5},
     {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0}},
    {{0.1, 0, 0, false}, "leaky_relu 0.1", op_leaky_relu,
     {-0.25, -0.1, -0.03, 0.0, 0.4, 1.0, 3.0},
     {0.05, -0.125, 0.2, 0.07500000000000001, -0.5, 1.5, 1.0}},
    {{-0.5, 0, 0, false}, "leaky_relu -0.5", op_leaky_relu,
     {1.25, 0.5, 0.15, -0.0, 0.4, 1.0, 3.0},
     {-0.25, 0.625, -1.0, -0.375, -0.5, 1.5, 1.0}},
    {{1, 0, 0, false}, "elu 1", op_elu,
     {-0.9179150013761012, -0.6321205588285577, -0.2591817793182821, 0.0, 0.4, 1.0, 3.0},
     {0.0410424993119494, -0.4598493014643029, 1.4816364413634358, 0.75, -0.5, 1.5, 1.0}},
    {{0.5, 0, 0, false}, "elu 0.5", op_elu,
     {-0.4589575006880506, -0.31606027941427883, -0.12959088965914106, 0.0, 0.4, 1.0, 3.0},
     {0.0205212496559747, -0.22992465073215146, 0.7408182206817179, 0.375, -0.5, 1.5, 1.0}},
    {{0, 0, 0, false}, "gelu", op_gelu,
     {-0.015524163314440398, -0.15865525393145702, -0.1146265733433142, 0.0, 0.2621686966441297,
      0.841344746068543, 2.99595030590511},
     {-0.018805542954072597, 0.10414433823460793, 0.5353444663457803, 0.375,
      -0.40136489886582677, 1.6249732058815296, 1.011945647204184}},
    {{0, 0, 0, false}, "gelu tanh", op_gelu_tanh,
     {-0.015084266089998577, -0.15880800939172324, -0.11462907645724074, 0.0,
      0.2621611694273562, 0.8411919906082768, 2.996362607918227},
     {-0.01897578810633309, 0.10370510480722815, 0.5354090967223963, 0.375, -0.4013294172102807,
      1.624446125768674, 1.0115841666309695}},
    {{0, 0, 0, false}, "silu", op_silu,
     {-0.18964545005310887, -0.2689414213699951, -0.1276672449565023, 0.0, 0.2394750640449808,
      0.7310585786300049, 2.8577223804672998},
     {-0.04970055567076342, -0.09041186016064158, 0.7044399793622346, 0.375, -0.3473959792045318,
      1.3915057678072302, 1.0881041060151693}},
    {{0, 0, 0, false}, "softplus", op_softplus,
     {0.07888973429254963, 0.31326168751822286, 0.5543552444685271, 0.6931471805599453,
      0.9130152523999526, 1.3132616875182228, 3.048587351573742},
     {0.03792909001062178, -0.3361767767124939, 0.851114966376682, 0.375, -0.299343830056226,
      1.0965878679450074, 0.9525741268224333}},
};

/* y = op(in...) and the gradients for the seed w (of y's shape). */
static tg_tensor *run_seeded(tg_tape *tp, tu_op_fn op, const void *prm, tg_tensor *const *in,
                             const double *w)
{
    tg_tensor *y = op(tp, in, prm);
    ck_assert_msg(y, "%s", tg_tape_error(tp));
    tg_tensor *seed = tg_tensor_new(tg_tensor_dtype(y), tg_tensor_rank(y), tg_tensor_shape(y));
    for (int64_t k = 0; k < tg_tensor_numel(y); k++)
        tu_put(seed, k, w[k]);
    ck_assert_int_eq(tg_backward_seed(tp, y, seed), TG_OK);
    tg_tensor_free(seed);
    return y;
}

/* Row _i / 2 in F64 (even _i) or F32 (odd _i). */
START_TEST(unary_matches_torch)
{
    const torch_unary *c = &torch_unary_cases[_i / 2];
    tg_dtype dt = tu_loop_dtype(_i % 2);
    tg_tensor *x = tu_lit(dt, "7", UX);
    tg_tensor_set_requires_grad(x, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = run_seeded(tp, c->op, &c->prm, &x, UW);
    char what[64];
    snprintf(what, sizeof what, "%s y", c->name);
    expect_values(y, c->y, what, 7);
    snprintf(what, sizeof what, "%s dx", c->name);
    expect_values(tg_tensor_grad(x), c->dx, what, 7);
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

/* maximum and minimum of a [2x3] and b [3] (broadcast), with ties and a NaN. */
START_TEST(maximum_minimum_match_torch)
{
    static const double a_v[6] = {1.0, 2.0, -1.0, 0.5, NAN, 3.0}, b_v[3] = {1.0, 2.5, -1.0};
    static const double w[6] = {0.5, -1.0, 2.0, 1.5, 0.25, -0.75};
    static const struct {
        const char *name;
        tu_op_fn op;
        double y[6], da[6], db[3];
    } cases[2] = {
        {"maximum", op_maximum, {1.0, 2.5, -1.0, 1.0, NAN, 3.0},
         {0.25, 0.0, 1.0, 0.0, 0.25, -0.75}, {1.75, -0.75, 1.0}},
        {"minimum", op_minimum, {1.0, 2.0, -1.0, 0.5, NAN, -1.0},
         {0.25, -1.0, 1.0, 1.5, 0.25, 0.0}, {0.25, 0.25, 0.25}},
    };
    tg_dtype dt = tu_loop_dtype(_i % 2);
    const params none = {0};
    for (int o = 0; o < 2; o++) {
        tg_tensor *in[2] = {tu_lit(dt, "2x3", a_v), tu_lit(dt, "3", b_v)};
        tg_tensor_set_requires_grad(in[0], true);
        tg_tensor_set_requires_grad(in[1], true);
        tg_tape *tp = tg_tape_new();
        expect_values(run_seeded(tp, cases[o].op, &none, in, w), cases[o].y, cases[o].name, 6);
        expect_values(tg_tensor_grad(in[0]), cases[o].da, cases[o].name, 6);
        expect_values(tg_tensor_grad(in[1]), cases[o].db, cases[o].name, 3);
        tg_tape_free(tp);
        tg_tensor_free(in[0]), tg_tensor_free(in[1]);
    }
}
END_TEST

/* A [2x3x4] with ties along every axis. */
static const double XR[24] = {1, 3, 3, -2, 0, 5, 5, 1, 2, 3, -1, 1,
                              4, 4, 0, 0, -3, 2, 7, 7, 4, 1, 0, -5};

typedef struct torch_axis {
    params prm;
    const char *name;
    tu_op_fn op;
    bool third;   /* the op runs on XR / 3 (a tensor division, as in torch) */
    int64_t n_y;
    double y[12]; /* of the ops' output */
    double dx[24]; /* the gradient of sum(y * cos(0.7k + 0.3)) */
} torch_axis;

static const torch_axis torch_axis_cases[] = {
    {{0, 0, 1, false}, "max_axis 1", op_max_axis, false, 8,
     {2.0, 5.0, 5.0, 1.0, 4.0, 4.0, 7.0, 7.0},
     {0.0, 0.0, 0.0, 0.0, 0.0, 0.5403023058681398, -0.12884449429552464, -0.7373937155412451,
      0.955336489125606, 0.0, 0.0, 0.0, -0.9991351502732795, -0.7909677119144168, 0.0, 0.0, 0.0,
      0.0, -0.21079579943078058, 0.46851667130037633, 0.0, 0.0, 0.0, 0.0}},
    {{0, 0, -1, true}, "max_axis -1 keepdim", op_max_axis, false, 6,
     {3.0, 5.0, 3.0, 4.0, 7.0, 4.0},
     {0.0, 0.955336489125606, 0.0, 0.0, 0.0, 0.5403023058681398, 0.0, 0.0, 0.0,
      -0.12884449429552464, 0.0, 0.0, -0.7373937155412451, 0.0, 0.0, 0.0, 0.0, 0.0,
      -0.9991351502732795, 0.0, -0.7909677119144168, 0.0, 0.0, 0.0}},
    {{0, 0, 0, false}, "min_axis 0", op_min_axis, false, 12,
     {1.0, 3.0, 0.0, -2.0, -3.0, 2.0, 5.0, 1.0, 2.0, 1.0, -1.0, -5.0},
     {0.955336489125606, 0.5403023058681398, 0.0, -0.7373937155412451, 0.0, 0.0,
      -0.21079579943078058, 0.46851667130037633, 0.9274784307440356, 0.0, 0.5260775173811053,
      0.0, 0.0, 0.0, -0.12884449429552464, 0.0, -0.9991351502732795, -0.7909677119144168, 0.0,
      0.0, 0.0, 0.9502325919585296, 0.0, -0.14550003380861265}},
    {{0, 0, -2, false}, "min_axis -2", op_min_axis, false, 8,
     {0.0, 3.0, -1.0, -2.0, -3.0, 1.0, 0.0, -5.0},
     {0.0, 0.5403023058681398, 0.0, -0.7373937155412451, 0.955336489125606, 0.0, 0.0, 0.0, 0.0,
      0.0, -0.12884449429552464, 0.0, 0.0, 0.0, -0.21079579943078058, 0.0, -0.9991351502732795,
      0.0, 0.0, 0.0, 0.0, -0.7909677119144168, 0.0, 0.46851667130037633}},
    {{0, 0, 1, false}, "mean_axis 1", op_mean_axis, false, 8,
     {1.0, 3.6666666666666665, 2.3333333333333335, 0.0, 1.6666666666666667, 2.3333333333333335,
      2.3333333333333335, 0.6666666666666666},
     {0.318445496375202, 0.18010076862271326, -0.04294816476517488, -0.24579790518041503,
      0.318445496375202, 0.18010076862271326, -0.04294816476517488, -0.24579790518041503,
      0.318445496375202, 0.18010076862271326, -0.04294816476517488, -0.24579790518041503,
      -0.33304505009109314, -0.26365590397147226, -0.07026526647692687, 0.1561722237667921,
      -0.33304505009109314, -0.26365590397147226, -0.07026526647692687, 0.1561722237667921,
      -0.33304505009109314, -0.26365590397147226, -0.07026526647692687, 0.1561722237667921}},
    {{0, 0, -1, true}, "mean_axis -1 keepdim", op_mean_axis, false, 6,
     {1.25, 2.75, 1.25, 2.0, 3.25, 0.0},
     {0.2388341222814015, 0.2388341222814015, 0.2388341222814015, 0.2388341222814015,
      0.13507557646703494, 0.13507557646703494, 0.13507557646703494, 0.13507557646703494,
      -0.03221112357388116, -0.03221112357388116, -0.03221112357388116, -0.03221112357388116,
      -0.18434842888531128, -0.18434842888531128, -0.18434842888531128, -0.18434842888531128,
      -0.24978378756831987, -0.24978378756831987, -0.24978378756831987, -0.24978378756831987,
      -0.1977419279786042, -0.1977419279786042, -0.1977419279786042, -0.1977419279786042}},
    {{0, 0, 2, false}, "logsumexp 2", op_logsumexp, true, 6,
     {1.9941005689292912, 2.5637634642623954, 1.9137056204398721, 2.260443038970827,
      3.1328877997791036, 1.85287901523273},
     {0.06050246444238319, 0.11784270956212985, 0.11784270956212985, 0.022257612808558997,
      0.013870344276242912, 0.07343639976716203, 0.07343639976716203, 0.019357624812146337,
      -0.012341344463194246, -0.01722373367510131, -0.004540126904424173, -0.00884295972245515,
      -0.0972611830804509, -0.0972611830804509, -0.025637769509756606, -0.025637769509756606,
      -0.005340877506917104, -0.028277222821151776, -0.14971347488151215, -0.14971347488151215,
      -0.1568200825249569, -0.05769088432374061, -0.04133732495265074, -0.0078076121701240965}},
    {{0, 0, 0, true}, "logsumexp 0 keepdim", op_logsumexp, true, 12,
     {1.646595020851556, 1.8736389080227416, 1.3132616875182228, 0.41437008685207205,
      0.31326168751822286, 1.9799283541848895, 2.7477034201854056, 2.460261344376306,
      1.7477034201854054, 1.414370086852072, 0.5403055746894084, 0.46026134437630595},
     {0.08564318442402045, 0.07517942666215764, -0.03139762428799601, -0.08338537390315937,
      -0.24347544093935336, -0.19274791040479358, -0.023837044149270164, 0.01861618541169361,
      0.10488038357899608, 0.2092907456484828, 0.07320014315507095, -0.04271866820810304,
      0.23280231195118153, 0.10492134196055564, -0.011550540477178873, -0.16241253127725566,
      -0.08956960915173982, -0.07090799356667868, -0.04642822232765669, 0.13755603835509847,
      0.20427909333568242, 0.10745345167102703, 0.10215902930529748, -0.0057813430614345055}},
};

static tg_tensor *record_axis(tg_tape *tp, const torch_axis *c, tg_tensor *x, tg_tensor *three)
{
    tg_tensor *in = c->third ? tg_div(tp, x, three) : x;
    return c->op(tp, &in, &c->prm);
}

/* Row _i / 2 in F64 (even _i) or F32 (odd _i). */
START_TEST(axis_ops_match_torch)
{
    const torch_axis *c = &torch_axis_cases[_i / 2];
    tg_dtype dt = tu_loop_dtype(_i % 2);
    tg_tensor *x = tu_lit(dt, "2x3x4", XR), *three = tu_lit(dt, "", (const double[]){3});
    tg_tensor_set_requires_grad(x, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = record_axis(tp, c, x, three);
    ck_assert_msg(y, "%s: %s", c->name, tg_tape_error(tp));
    expect_values(y, c->y, c->name, c->n_y);
    tg_tensor *seed = tg_tensor_new(dt, tg_tensor_rank(y), tg_tensor_shape(y));
    for (int64_t k = 0; k < c->n_y; k++)
        tu_put(seed, k, cos(0.7 * (double)k + 0.3));
    ck_assert_int_eq(tg_backward_seed(tp, y, seed), TG_OK);
    expect_values(tg_tensor_grad(x), c->dx, c->name, 24);
    tg_tape_free(tp);
    tg_tensor_free(x), tg_tensor_free(three), tg_tensor_free(seed);
}
END_TEST

/* argmax takes the first maximum and is I64; a NaN is the maximum (the
 * first one), for max_axis, min_axis and argmax alike, as in torch. */
START_TEST(argmax_and_nan_match_torch)
{
    tg_dtype dt = tu_loop_dtype(_i);
    tg_tensor *x = tu_lit(dt, "2x3x4", XR);
    tg_tensor *xn = tu_lit(dt, "2x4", (const double[]){1, NAN, 3, NAN, -1, 2, 2, 0});
    tg_tensor_set_requires_grad(x, true);
    tg_tensor_set_requires_grad(xn, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *a1 = tg_argmax(tp, x, 1, false), *a2 = tg_argmax(tp, x, -1, true);
    ck_assert_msg(a1 && a2, "%s", tg_tape_error(tp));
    ck_assert_int_eq(tg_tensor_dtype(a1), TG_I64);
    ck_assert(!tg_tensor_requires_grad(a1));
    const int64_t w1[8] = {2, 1, 1, 1, 0, 0, 1, 1}, w2[6] = {1, 1, 1, 0, 2, 0};
    ck_assert_int_eq(tg_tensor_rank(a2), 3);
    ck_assert_int_eq(tg_tensor_shape(a2)[2], 1);
    for (int k = 0; k < 8; k++) ck_assert_int_eq(i64_at(a1, k), w1[k]);
    for (int k = 0; k < 6; k++) ck_assert_int_eq(i64_at(a2, k), w2[k]);

    tg_tensor *mx = tg_max_axis(tp, xn, 1, false), *mn = tg_min_axis(tp, xn, 1, false);
    tg_tensor *an = tg_argmax(tp, xn, 1, false);
    ck_assert_msg(mx && mn && an, "%s", tg_tape_error(tp));
    expect_values(mx, (const double[]){NAN, 2}, "max with NaN", 2);
    expect_values(mn, (const double[]){NAN, -1}, "min with NaN", 2);
    ck_assert_int_eq(i64_at(an, 0), 1);
    ck_assert_int_eq(i64_at(an, 1), 1);
    tg_tensor *seed = tu_lit(dt, "2", (const double[]){2, 3});
    ck_assert_int_eq(tg_backward_seed(tp, mx, seed), TG_OK);
    expect_values(tg_tensor_grad(xn), (const double[]){0, 2, 0, 0, 0, 3, 0, 0}, "dmax", 8);
    tg_tape_free(tp);
    tg_tensor_free(x), tg_tensor_free(xn), tg_tensor_free(seed);
}
END_TEST

/* Each loss times 1.5 on fixed data, loss and gradients against torch. */
START_TEST(losses_match_torch)
{
    tg_dtype dt = tu_loop_dtype(_i);
    static const double Z[12] = {0.2, -1.0, 3.0, 0.5, 1.5, 1.5, -0.5, 0.0, -2.0, 0.3, 0.7, 4.0};
    static const double XB[6] = {0.3, -2.0, 40.0, -0.7, 1.2, 0.0};
    static const double TB[6] = {1.0, 0.25, 0.0, 0.0, 0.5, 1.0};
    static const double P[6] = {0.5, -1.0, 2.0, 1.0, 3.0, -0.25};
    static const double T[6] = {0.0, -1.0, 0.5, 2.0, 0.5, 0.25};
    static const struct {
        const char *name;
        tu_op_fn op;
        params prm;
        double y, d0[12], d1[6];
    } cases[] = {
        {"cross_entropy", op_cross_entropy, {0, 0, 0, false}, 0.35653001122342204,
         {0.02618390556425247, 0.007886440801208545, -0.0694149219081055, 0.03534457554264451,
          -0.28799774175093984, 0.21200225824906016, 0.028691385666938064, 0.04730409783494157,
          0.0011647336150831873, 0.011617265588095647, 0.01733092372337913,
          -0.030112922926557983},
         {0}},
        {"bce_with_logits", op_bce, {0, 0, 0, false}, 7.1901498253824885,
         {-0.10638937079708526, -0.03269926949447061, 0.25, 0.08295305695795847,
          0.06713119587475438, -0.125},
         {-0.075, 0.5, -10.0, 0.17499999999999996, -0.3, -0.0}},
        {"l1_loss", op_l1, {0, 0, 0, false}, 1.0, {0.25, 0.0, 0.25, -0.25, 0.25, -0.25},
         {-0.25, -0.0, -0.25, 0.25, -0.25, 0.25}},
        {"huber_loss 1", op_huber, {1, 0, 0, false}, 0.625, {0.125, 0.0, 0.25, -0.25, 0.25, -0.125},
         {-0.125, 0.0, -0.25, 0.25, -0.25, 0.125}},
        {"huber_loss 0.5", op_huber, {0.5, 0, 0, false}, 0.3958333333333333,
         {0.125, 0.0, 0.125, -0.125, 0.125, -0.125}, {-0.125, 0.0, -0.125, 0.125, -0.125, 0.125}},
    };
    for (int o = 0; o < N(cases); o++) {
        bool xent = cases[o].op == op_cross_entropy;
        tg_tensor *in[2];
        if (xent) {
            in[0] = tu_lit(dt, "3x4", Z);
            in[1] = NULL;
            labels = i64("3", (const int64_t[]){2, 0, 3});
        } else {
            bool bce = cases[o].op == op_bce;
            in[0] = tu_lit(dt, "2x3", bce ? XB : P);
            in[1] = tu_lit(dt, "2x3", bce ? TB : T);
            tg_tensor_set_requires_grad(in[1], true);
        }
        tg_tensor_set_requires_grad(in[0], true);
        tg_tape *tp = tg_tape_new();
        tg_tensor *y = run_seeded(tp, cases[o].op, &cases[o].prm, in, (const double[]){1.5});
        expect_values(y, &cases[o].y, cases[o].name, 1);
        expect_values(tg_tensor_grad(in[0]), cases[o].d0, cases[o].name, xent ? 12 : 6);
        if (!xent) expect_values(tg_tensor_grad(in[1]), cases[o].d1, cases[o].name, 6);
        tg_tape_free(tp);
        tg_tensor_free(in[0]), tg_tensor_free(in[1]), tg_tensor_free(labels);
        labels = NULL;
    }
}
END_TEST

/* ====== Edge values ====== */

/* Empty axes and empty losses: mean is NaN, logsumexp -inf, the losses NaN
 * (torch's values); max, min and argmax refuse an empty axis (see errors). */
START_TEST(empty_reductions_and_losses)
{
    tg_dtype dt = tu_loop_dtype(_i);
    tg_tensor *x = tu_lit(dt, "2x0", NULL), *e = tu_lit(dt, "0", NULL), *z = tu_lit(dt, "0x3", NULL);
    tg_tensor *l = i64("0", NULL), *ls2 = tu_lit(dt, "2", (const double[]){1, 1});
    tg_tensor_set_requires_grad(x, true);
    tg_tensor_set_requires_grad(e, true);
    tg_tensor_set_requires_grad(z, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *m = tg_mean_axis(tp, x, 1, false), *s = tg_logsumexp(tp, x, -1, true);
    tg_tensor *ls[4] = {tg_l1_loss(tp, e, e), tg_huber_loss(tp, e, e, 1),
                        tg_bce_with_logits(tp, e, e), tg_cross_entropy(tp, z, l)};
    ck_assert_msg(m && s && ls[0] && ls[1] && ls[2] && ls[3], "%s", tg_tape_error(tp));
    expect_values(m, (const double[]){NAN, NAN}, "mean_axis", 2);
    ck_assert_int_eq(tg_tensor_rank(s), 2);
    expect_values(s, (const double[]){-INFINITY, -INFINITY}, "logsumexp", 2);
    for (int k = 0; k < 4; k++) ck_assert(isnan(tg_tensor_item(ls[k])));
    /* Backward runs through them and leaves empty gradients. */
    ck_assert_int_eq(tg_backward(tp, ls[0]), TG_OK);
    ck_assert_int_eq(tg_backward(tp, ls[3]), TG_OK);
    ck_assert_int_eq(tg_tensor_numel(tg_tensor_grad(e)), 0);
    ck_assert_int_eq(tg_tensor_numel(tg_tensor_grad(z)), 0);
    ck_assert_int_eq(tg_backward_seed(tp, m, ls2), TG_OK);
    ck_assert_int_eq(tg_tensor_numel(tg_tensor_grad(x)), 0);
    /* The other extents may be 0 too, with no elements anywhere. */
    tg_tensor *zz = tg_max_axis(tp, z, 1, true);
    ck_assert_msg(zz, "%s", tg_tape_error(tp));
    ck_assert_int_eq(tg_tensor_numel(zz), 0);
    tg_tape_free(tp);
    tg_tensor_free(x), tg_tensor_free(e), tg_tensor_free(z), tg_tensor_free(l);
    tg_tensor_free(ls2);
}
END_TEST

/* logsumexp keeps infinities as torch does, and 1000 + log 2 for a row of 1000s. */
START_TEST(logsumexp_of_infinities)
{
    tg_dtype dt = tu_loop_dtype(_i);
    tg_tensor *x = tu_lit(dt, "3x2", (const double[]){-INFINITY, -INFINITY, INFINITY, 1, 1000, 1000});
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_logsumexp(tp, x, 1, false);
    ck_assert_msg(y, "%s", tg_tape_error(tp));
    expect_values(y, (const double[]){-INFINITY, INFINITY, 1000.6931471805599}, "logsumexp", 3);
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

/* Large |x|: softplus, silu, gelu, elu and bce_with_logits give exact
 * limits and raise no overflow. */
START_TEST(large_inputs_saturate)
{
    tg_dtype dt = tu_loop_dtype(_i);
    const double v[2] = {1e4, -1e4};
    tg_tensor *x = tu_lit(dt, "2", v), *t = tu_lit(dt, "2", (const double[]){1, 1});
    tg_tensor_set_requires_grad(x, true);
    feclearexcept(FE_OVERFLOW | FE_INVALID);
    tg_tape *tp = tg_tape_new();
    tg_tensor *sp = tg_softplus(tp, x), *si = tg_silu(tp, x), *ge = tg_gelu(tp, x, false);
    tg_tensor *gt = tg_gelu(tp, x, true), *el = tg_elu(tp, x, 0.5), *b = tg_bce_with_logits(tp, x, t);
    ck_assert_msg(b, "%s", tg_tape_error(tp));
    ck_assert_int_eq(tg_backward(tp, b), TG_OK);
    ck_assert_msg(!fetestexcept(FE_OVERFLOW | FE_INVALID), "%s raised %s", tu_dtype_name(dt),
                  fetestexcept(FE_OVERFLOW) ? "overflow" : "invalid");
    tu_expect_exact(sp, "2", (const double[]){1e4, 0}, "softplus");
    tu_expect_exact(si, "2", (const double[]){1e4, -0.0}, "silu");
    tu_expect_exact(ge, "2", (const double[]){1e4, -0.0}, "gelu");
    tu_expect_exact(gt, "2", (const double[]){1e4, -0.0}, "gelu tanh");
    tu_expect_exact(el, "2", (const double[]){1e4, -0.5}, "elu");
    tu_expect_exact(b, "", (const double[]){5e3}, "bce_with_logits"); /* (0 + 1e4) / 2 */
    tu_expect_exact(tg_tensor_grad(x), "2", (const double[]){0, -0.5}, "d bce / dx");
    tg_tape_free(tp);
    tg_tensor_free(x), tg_tensor_free(t);
}
END_TEST

/* Exact rules at the kinks: ties split dG in half, clamp passes it at both
 * bounds, abs has 0 at 0, pow 0 has 0 everywhere, leaky_relu has the slope at 0. */
START_TEST(exact_rules_at_kinks)
{
    tg_dtype dt = tu_loop_dtype(_i);
    tg_tensor *a = tu_lit(dt, "4", (const double[]){-1, 0, 1, 2});
    tg_tensor *b = tu_lit(dt, "4", (const double[]){-1, 0, 1, 2});
    tg_tensor *w = tu_lit(dt, "4", (const double[]){1, 2, 3, 4});
    tg_tensor_set_requires_grad(a, true);
    tg_tensor_set_requires_grad(b, true);
    const struct {
        const char *name;
        tg_tensor *(*record)(tg_tape *tp, tg_tensor *a, tg_tensor *b);
        double da[4], db[4];
    } cases[] = {
        {"maximum", tg_maximum, {0.5, 1, 1.5, 2}, {0.5, 1, 1.5, 2}},
        {"minimum", tg_minimum, {0.5, 1, 1.5, 2}, {0.5, 1, 1.5, 2}},
    };
    for (int o = 0; o < N(cases); o++) {
        tg_tape *tp = tg_tape_new();
        ck_assert_int_eq(tg_backward_seed(tp, cases[o].record(tp, a, b), w), TG_OK);
        tu_expect_exact(tg_tensor_grad(a), "4", cases[o].da, cases[o].name);
        tu_expect_exact(tg_tensor_grad(b), "4", cases[o].db, cases[o].name);
        tg_tensor_zero_grad(a), tg_tensor_zero_grad(b);
        tg_tape_free(tp);
    }
    const struct {
        const char *name;
        tu_op_fn op;
        params prm;
        double y[4], da[4];
    } un[] = {
        {"clamp", op_clamp, {-1, 1, 0, false}, {-1, 0, 1, 1}, {1, 2, 3, 0}},
        {"abs", op_abs, {0, 0, 0, false}, {1, 0, 1, 2}, {-1, 0, 3, 4}},
        {"pow 0", op_pow, {0, 0, 0, false}, {1, 1, 1, 1}, {0, 0, 0, 0}},
        {"leaky_relu", op_leaky_relu, {0.25, 0, 0, false}, {-0.25, 0, 1, 2}, {0.25, 0.5, 3, 4}},
        {"relu-like elu at 0", op_elu, {2, 0, 0, false}, {NAN, 0, 1, 2}, {NAN, 4, 3, 4}},
    };
    for (int o = 0; o < N(un); o++) {
        tg_tape *tp = tg_tape_new();
        tg_tensor *y = un[o].op(tp, &a, &un[o].prm);
        ck_assert_int_eq(tg_backward_seed(tp, y, w), TG_OK);
        for (int k = isnan(un[o].y[0]) ? 1 : 0; k < 4; k++) {
            double want = dt == TG_F32 ? (double)(float)un[o].y[k] : un[o].y[k];
            double dwant = dt == TG_F32 ? (double)(float)un[o].da[k] : un[o].da[k];
            ck_assert_msg(tu_at(y, k) == want, "%s y[%d] = %.17g", un[o].name, k, tu_at(y, k));
            ck_assert_msg(tu_at(tg_tensor_grad(a), k) == dwant, "%s dx[%d] = %.17g", un[o].name,
                          k, tu_at(tg_tensor_grad(a), k));
        }
        tg_tensor_zero_grad(a);
        tg_tape_free(tp);
    }
    tg_tensor_free(a), tg_tensor_free(b), tg_tensor_free(w);
}
END_TEST

/* ====== Replay ====== */

/* A graph through most of the new ops: after new data (and new labels) go
 * into the leaves, replay gives bit for bit what a fresh recording gives. */
static tg_tensor *replay_graph(tg_tape *tp, tg_tensor *x, tg_tensor *b, tg_tensor *t,
                               tg_tensor *lab, tg_tensor **arg)
{
    tg_tensor *h = tg_maximum(tp, tg_sin(tp, x), tg_cos(tp, b));                        /* [4x3] */
    tg_tensor *g = tg_gelu(tp, tg_add_scalar(tp, tg_clamp(tp, h, -0.6, 0.6), 0.1), false);
    tg_tensor *u = tg_minimum(tp, tg_silu(tp, h), tg_softplus(tp, tg_leaky_relu(tp, x, 0.1)));
    tg_tensor *v = tg_pow(tp, tg_sqrt(tp, tg_add_scalar(tp, tg_abs(tp, x), 1)), 1.5);
    tg_tensor *w = tg_elu(tp, tg_gelu(tp, tg_sub(tp, u, v), true), 0.8);
    *arg = tg_argmax(tp, g, -1, false);
    tg_tensor *terms[7] = {
        tg_cross_entropy(tp, g, lab),
        tg_bce_with_logits(tp, w, t),
        tg_l1_loss(tp, u, t),
        tg_huber_loss(tp, v, t, 0.5),
        tg_mean(tp, tg_max_axis(tp, w, 0, false)),
        tg_mean(tp, tg_min_axis(tp, u, -1, true)),
        tg_mean(tp, tg_logsumexp(tp, tg_mean_axis(tp, tg_mul(tp, g, u), 1, true), 0, false)),
    };
    tg_tensor *l = terms[0];
    for (int k = 1; k < 7; k++) l = tg_add(tp, l, terms[k]);
    return l;
}

static void fill(tg_tensor *t, uint64_t seed)
{
    tg_tensor *r = tu_random(tg_tensor_dtype(t), "64", -1.5, 1.5, seed);
    for (int64_t k = 0; k < tg_tensor_numel(t); k++)
        tu_put(t, k, tu_at(r, k));
    tg_tensor_free(r);
}

START_TEST(replay_equals_fresh_recording)
{
    tg_dtype dt = tu_loop_dtype(_i);
    tg_tensor *in[3] = {tg_tensor_new(dt, 2, (const int64_t[]){4, 3}),
                        tg_tensor_new(dt, 1, (const int64_t[]){3}),
                        tg_tensor_new(dt, 2, (const int64_t[]){4, 3})};
    tg_tensor *lab = i64("4", (const int64_t[]){0, 2, 1, 2});
    for (int i = 0; i < 3; i++) {
        fill(in[i], 51 + (uint64_t)i);
        tg_tensor_set_requires_grad(in[i], true);
    }
    tg_tape *rec = tg_tape_new(), *fresh = tg_tape_new();
    tg_tensor *arg, *arg2;
    tg_tensor *l = replay_graph(rec, in[0], in[1], in[2], lab, &arg);
    ck_assert_msg(l, "%s", tg_tape_error(rec));
    ck_assert_int_eq(tg_backward(rec, l), TG_OK);
    double first = tg_tensor_item(l);

    for (int i = 0; i < 3; i++) {
        fill(in[i], 61 + (uint64_t)i); /* the next mini-batch */
        tg_tensor_zero_grad(in[i]);
    }
    memcpy(tg_tensor_data(lab), (const int64_t[]){2, 1, 0, 0}, 4 * sizeof(int64_t));
    ck_assert_int_eq(tg_tape_replay(rec), TG_OK);
    ck_assert_int_eq(tg_backward(rec, l), TG_OK);
    ck_assert(tg_tensor_item(l) != first);
    tg_tensor *grads[3];
    for (int i = 0; i < 3; i++) {
        const tg_tensor *g = tg_tensor_grad(in[i]);
        grads[i] = tg_tensor_from(dt, tg_tensor_rank(g), tg_tensor_shape(g), tg_tensor_cdata(g));
        tg_tensor_zero_grad(in[i]);
    }

    tg_tensor *l2 = replay_graph(fresh, in[0], in[1], in[2], lab, &arg2);
    ck_assert_msg(l2, "%s", tg_tape_error(fresh));
    ck_assert_int_eq(tg_backward(fresh, l2), TG_OK);
    ck_assert_msg(tg_tensor_item(l2) == tg_tensor_item(l), "replay %.17g fresh %.17g",
                  tg_tensor_item(l), tg_tensor_item(l2));
    ck_assert_mem_eq(tg_tensor_cdata(arg), tg_tensor_cdata(arg2), 4 * sizeof(int64_t));
    for (int i = 0; i < 3; i++) {
        size_t bytes = (size_t)tg_tensor_numel(grads[i]) * (dt == TG_F64 ? 8 : 4);
        ck_assert_msg(memcmp(tg_tensor_cdata(tg_tensor_grad(in[i])), tg_tensor_cdata(grads[i]),
                             bytes) == 0,
                      "input %d: gradients differ after replay", i);
        tg_tensor_free(grads[i]);
    }
    tg_tape_free(rec), tg_tape_free(fresh);
    for (int i = 0; i < 3; i++)
        tg_tensor_free(in[i]);
    tg_tensor_free(lab);
}
END_TEST

/* A label written out of range between replays fails the tape, naming the
 * op, the position and the value; the tape stays failed. */
START_TEST(bad_label_at_replay_fails_the_tape)
{
    static const int64_t bad[2] = {3, -1};
    tg_tensor *z = tu_random(TG_F64, "2x3", -1, 1, 7);
    tg_tensor *lab = i64("2", (const int64_t[]){0, 2});
    tg_tensor_set_requires_grad(z, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *l = tg_cross_entropy(tp, z, lab);
    ck_assert_msg(l, "%s", tg_tape_error(tp));
    ((int64_t *)tg_tensor_data(lab))[1] = bad[_i];
    ck_assert_int_eq(tg_tape_replay(tp), TG_ERR_ARG);
    char want[160];
    snprintf(want, sizeof want,
             "cross_entropy: label %lld at position 1 is out of range for 3 classes "
             "(logits [2x3], labels [2])",
             (long long)bad[_i]);
    ck_assert_str_eq(tg_tape_error(tp), want);
    ck_assert_int_eq(tg_backward(tp, l), TG_ERR_ARG);
    ck_assert_str_eq(tg_tape_error(tp), want);
    tg_tape_free(tp);
    tg_tensor_free(z), tg_tensor_free(lab);
}
END_TEST

/* ====== Errors: status and message ====== */

/* The operands the error cases use. */
typedef struct operands {
    tg_tensor *x23, *x4, *x32, *f23, *i3, *x20, *x3, *z23, *lab2, *labbad, *labneg, *lab3;
} operands;

typedef struct err_case {
    tg_tensor *(*record)(tg_tape *tp, const operands *o);
    tg_status status;
    const char *msg;
} err_case;

#define ERR(name, call)                                                  \
    static tg_tensor *err_##name(tg_tape *tp, const operands *o)         \
    {                                                                    \
        (void)o;                                                         \
        return call;                                                     \
    }

ERR(pow_nan, tg_pow(tp, o->x23, NAN))
ERR(clamp_nan, tg_clamp(tp, o->x23, 0, NAN))
ERR(leaky_inf, tg_leaky_relu(tp, o->x23, INFINITY))
ERR(elu_nan, tg_elu(tp, o->x23, NAN))
ERR(sqrt_i64, tg_sqrt(tp, o->i3))
ERR(abs_null, tg_abs(tp, NULL))
ERR(max_bcast, tg_maximum(tp, o->x23, o->x4))
ERR(min_dtype, tg_minimum(tp, o->x23, o->f23))
ERR(min_i64, tg_minimum(tp, o->x3, o->i3))
ERR(mean_axis_range, tg_mean_axis(tp, o->x23, 2, false))
ERR(mean_axis_neg, tg_mean_axis(tp, o->x23, -3, true))
ERR(lse_range, tg_logsumexp(tp, o->x3, 1, false))
ERR(max_empty, tg_max_axis(tp, o->x20, 1, false))
ERR(min_empty, tg_min_axis(tp, o->x20, -1, true))
ERR(argmax_empty, tg_argmax(tp, o->x20, 1, false))
ERR(argmax_i64, tg_argmax(tp, o->i3, 0, false))
ERR(argmax_range, tg_argmax(tp, o->x23, -3, false))
ERR(xent_rank, tg_cross_entropy(tp, o->x3, o->lab3))
ERR(xent_n, tg_cross_entropy(tp, o->z23, o->lab3))
ERR(xent_dtype, tg_cross_entropy(tp, o->z23, o->f23))
ERR(xent_float_labels, tg_cross_entropy(tp, o->x32, o->x3))
ERR(xent_null, tg_cross_entropy(tp, o->z23, NULL))
ERR(xent_range, tg_cross_entropy(tp, o->z23, o->labbad))
ERR(xent_neg, tg_cross_entropy(tp, o->z23, o->labneg))
ERR(bce_shape, tg_bce_with_logits(tp, o->x23, o->x32))
ERR(bce_dtype, tg_bce_with_logits(tp, o->x23, o->f23))
ERR(l1_shape, tg_l1_loss(tp, o->x4, o->x3))
ERR(huber_zero, tg_huber_loss(tp, o->x23, o->x23, 0))
ERR(huber_neg, tg_huber_loss(tp, o->x23, o->x23, -1))
ERR(huber_nan, tg_huber_loss(tp, o->x23, o->x23, NAN))
ERR(huber_shape, tg_huber_loss(tp, o->x23, o->x32, 1))

static const err_case err_cases[] = {
    {err_pow_nan, TG_ERR_ARG, "pow: the exponent is NaN (input [2x3])"},
    {err_clamp_nan, TG_ERR_ARG, "clamp: a bound is NaN (lo 0, hi nan, input [2x3])"},
    {err_leaky_inf, TG_ERR_ARG, "leaky_relu: the slope must be finite, got inf (input [2x3])"},
    {err_elu_nan, TG_ERR_ARG, "elu: alpha must be finite, got nan (input [2x3])"},
    {err_sqrt_i64, TG_ERR_DTYPE, "sqrt: input 0 [3] is i64; this op takes f32 or f64 there"},
    {err_abs_null, TG_ERR_ARG, "abs: input 0 is NULL"},
    {err_max_bcast, TG_ERR_SHAPE, "maximum: shapes do not broadcast: [2x3] and [4]"},
    {err_min_dtype, TG_ERR_DTYPE, "minimum: inputs differ in dtype: f64 [2x3] and f32 [2x3]"},
    {err_min_i64, TG_ERR_DTYPE, "minimum: input 1 [3] is i64; this op takes f32 or f64 there"},
    {err_mean_axis_range, TG_ERR_ARG, "mean_axis: axis 2 out of range for [2x3]"},
    {err_mean_axis_neg, TG_ERR_ARG, "mean_axis: axis -3 out of range for [2x3]"},
    {err_lse_range, TG_ERR_ARG, "logsumexp: axis 1 out of range for [3]"},
    {err_max_empty, TG_ERR_SHAPE, "max_axis: axis 1 of [2x0] is empty; there is no extreme to take"},
    {err_min_empty, TG_ERR_SHAPE,
     "min_axis: axis -1 of [2x0] is empty; there is no extreme to take"},
    {err_argmax_empty, TG_ERR_SHAPE,
     "argmax: axis 1 of [2x0] is empty; there is no extreme to take"},
    {err_argmax_i64, TG_ERR_DTYPE, "argmax: input 0 [3] is i64; this op takes f32 or f64 there"},
    {err_argmax_range, TG_ERR_ARG, "argmax: axis -3 out of range for [2x3]"},
    {err_xent_rank, TG_ERR_SHAPE,
     "cross_entropy: logits must be [n,C] and labels [n], got [3] and [3]"},
    {err_xent_n, TG_ERR_SHAPE,
     "cross_entropy: logits must be [n,C] and labels [n], got [2x3] and [3]"},
    {err_xent_dtype, TG_ERR_SHAPE,
     "cross_entropy: logits must be [n,C] and labels [n], got [2x3] and [2x3]"},
    {err_xent_float_labels, TG_ERR_DTYPE, "cross_entropy: input 1 [3] must be i64 indices, is f64"},
    {err_xent_null, TG_ERR_ARG, "cross_entropy: input 1 is NULL"},
    {err_xent_range, TG_ERR_ARG,
     "cross_entropy: label 3 at position 1 is out of range for 3 classes (logits [2x3], labels "
     "[2])"},
    {err_xent_neg, TG_ERR_ARG,
     "cross_entropy: label -100 at position 0 is out of range for 3 classes (logits [2x3], "
     "labels [2])"},
    {err_bce_shape, TG_ERR_SHAPE,
     "bce_with_logits: prediction and target differ in shape: [2x3] and [3x2]"},
    {err_bce_dtype, TG_ERR_DTYPE,
     "bce_with_logits: inputs differ in dtype: f64 [2x3] and f32 [2x3]"},
    {err_l1_shape, TG_ERR_SHAPE, "l1_loss: prediction and target differ in shape: [4] and [3]"},
    {err_huber_zero, TG_ERR_ARG, "huber_loss: delta must be > 0, got 0 (pred [2x3], target [2x3])"},
    {err_huber_neg, TG_ERR_ARG,
     "huber_loss: delta must be > 0, got -1 (pred [2x3], target [2x3])"},
    {err_huber_nan, TG_ERR_ARG,
     "huber_loss: delta must be > 0, got nan (pred [2x3], target [2x3])"},
    {err_huber_shape, TG_ERR_SHAPE,
     "huber_loss: prediction and target differ in shape: [2x3] and [3x2]"},
};

START_TEST(bad_input_fails_with_message)
{
    operands o = {
        .x23 = tu_random(TG_F64, "2x3", -1, 1, 1),
        .x4 = tu_random(TG_F64, "4", -1, 1, 2),
        .x32 = tu_random(TG_F64, "3x2", -1, 1, 3),
        .f23 = tu_random(TG_F32, "2x3", -1, 1, 4),
        .i3 = i64("3", (const int64_t[]){0, 1, 2}),
        .x20 = tu_random(TG_F64, "2x0", -1, 1, 5),
        .x3 = tu_random(TG_F64, "3", -1, 1, 6),
        .z23 = tu_random(TG_F64, "2x3", -1, 1, 7),
        .lab2 = i64("2", (const int64_t[]){0, 2}),
        .labbad = i64("2", (const int64_t[]){2, 3}),
        .labneg = i64("2", (const int64_t[]){-100, 0}),
        .lab3 = i64("3", (const int64_t[]){0, 1, 2}),
    };
    const err_case *c = &err_cases[_i];
    tg_tape *tp = tg_tape_new();
    ck_assert_ptr_null(c->record(tp, &o));
    tu_expect_failed(tp, c->status, c->msg, _i);
    tu_expect_still_failed(tp, c->status, c->msg);
    ck_assert_ptr_null(c->record(NULL, &o)); /* no tape: NULL, nothing to report to */
    tg_tape_free(tp);
    tg_tensor *all[] = {o.x23, o.x4,  o.x32,  o.f23,    o.i3,   o.x20,
                        o.x3,  o.z23, o.lab2, o.labbad, o.labneg, o.lab3};
    for (int k = 0; k < N(all); k++) tg_tensor_free(all[k]);
}
END_TEST

static Suite *ops_more_suite(void)
{
    Suite *s = suite_create("ops_more");
    TCase *tc = tcase_create("more");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, unary_matches_torch, 0, 2 * N(torch_unary_cases));
    tcase_add_loop_test(tc, maximum_minimum_match_torch, 0, 2);
    tcase_add_loop_test(tc, axis_ops_match_torch, 0, 2 * N(torch_axis_cases));
    tcase_add_loop_test(tc, argmax_and_nan_match_torch, 0, 2);
    tcase_add_loop_test(tc, losses_match_torch, 0, 2);
    tcase_add_loop_test(tc, empty_reductions_and_losses, 0, 2);
    tcase_add_loop_test(tc, logsumexp_of_infinities, 0, 2);
    tcase_add_loop_test(tc, large_inputs_saturate, 0, 2);
    tcase_add_loop_test(tc, exact_rules_at_kinks, 0, 2);
    tcase_add_loop_test(tc, replay_equals_fresh_recording, 0, 2);
    tcase_add_loop_test(tc, bad_label_at_replay_fails_the_tape, 0, 2);
    tcase_add_loop_test(tc, bad_input_fails_with_message, 0, N(err_cases));
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run(ops_more_suite()); }
