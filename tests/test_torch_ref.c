/*
 * Every op against PyTorch. tests/data/torch_ref.json, written by
 * tools/torch_ref.py with Debian's python3-torch, holds per case an op's
 * inputs and parameters, torch's float64 output, a weight W of the output's
 * shape and torch's gradients of sum(out * W) with respect to every float input
 * (batch_norm's cases also hold the running statistics after the call). Each
 * case is recorded here through the public API from the table below, seeded
 * with W through tg_backward_seed (the same VJP as backward of sum(out * W)),
 * and compared within REF_RTOL relative plus REF_ATOL absolute, the output
 * again after tg_tape_replay. The JSON and
 * the table must name the same ops, so a new op needs both a row here and
 * cases in the generator. CI needs no torch: the numbers are committed data.
 */
#include "oplist.h"
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* float64 sums of a few terms reordered differ by a few ulps of the largest
 * term, so an element that cancels to near zero needs the absolute floor. */
#define REF_RTOL 1e-12
#define REF_ATOL 1e-14

#define REF_MAX_INPUTS 8

/* One case's leaves, made from its "inputs" in order, and its parameters. */
typedef struct ref_case {
    const json_t *j;
    const char *op, *name;
    int n;
    const char *names[REF_MAX_INPUTS];
    tg_tensor *in[REF_MAX_INPUTS];
    tg_rng rng; /* dropout's; it must outlive the tape */
} ref_case;

/* Records the case's op on tp from c's leaves and parameters. */
typedef tg_tensor *(*ref_record_fn)(tg_tape *tp, ref_case *c);

typedef struct ref_op {
    const char *name;
    ref_record_fn record;
} ref_op;

static json_t *ref_doc; /* the whole JSON file, loaded once in main */
static int n_cases;

/* ====== Reading the case ====== */

/* The leaf named 'name', or NULL when the case has none (an optional operand). */
static tg_tensor *opt_in(const ref_case *c, const char *name)
{
    for (int i = 0; i < c->n; i++)
        if (strcmp(c->names[i], name) == 0) return c->in[i];
    return NULL;
}

static tg_tensor *in(const ref_case *c, const char *name)
{
    tg_tensor *t = opt_in(c, name);
    ck_assert_msg(t != NULL, "%s/%s: no input '%s'", c->op, c->name, name);
    return t;
}

static const json_t *param(const ref_case *c, const char *key)
{
    const json_t *v = json_object_get(json_object_get(c->j, "params"), key);
    ck_assert_msg(v != NULL, "%s/%s: no parameter '%s'", c->op, c->name, key);
    return v;
}

static double p_double(const ref_case *c, const char *key)
{
    const json_t *v = param(c, key);
    ck_assert_msg(json_is_number(v), "%s/%s: '%s' is not a number", c->op, c->name, key);
    return json_number_value(v);
}

static int p_int(const ref_case *c, const char *key)
{
    const json_t *v = param(c, key);
    ck_assert_msg(json_is_integer(v), "%s/%s: '%s' is not an integer", c->op, c->name, key);
    return (int)json_integer_value(v);
}

static bool p_bool(const ref_case *c, const char *key)
{
    const json_t *v = param(c, key);
    ck_assert_msg(json_is_boolean(v), "%s/%s: '%s' is not a boolean", c->op, c->name, key);
    return json_is_true(v);
}

/* The integer array 'key' into out (at most max entries); returns its length. */
static int p_i64s(const ref_case *c, const char *key, int64_t *out, int max)
{
    const json_t *v = param(c, key);
    ck_assert_msg(json_is_array(v) && (int)json_array_size(v) <= max,
                  "%s/%s: '%s' is not an array of at most %d", c->op, c->name, key, max);
    for (size_t i = 0; i < json_array_size(v); i++) {
        const json_t *e = json_array_get(v, i);
        ck_assert_msg(json_is_integer(e), "%s/%s: '%s'[%zu] is not an integer", c->op, c->name, key,
                      i);
        out[i] = json_integer_value(e);
    }
    return (int)json_array_size(v);
}

static int p_ints(const ref_case *c, const char *key, int *out, int max)
{
    int64_t v[TG_MAX_RANK];
    ck_assert_int_le(max, TG_MAX_RANK);
    int n = p_i64s(c, key, v, max);
    for (int i = 0; i < n; i++)
        out[i] = (int)v[i];
    return n;
}

/* A tensor from {"shape", "data", "dtype"?}: F64, or I64 for "dtype": "i64". */
static tg_tensor *tensor_of(const json_t *j, const char *what)
{
    const json_t *shape = json_object_get(j, "shape"), *data = json_object_get(j, "data");
    ck_assert_msg(json_is_array(shape) && json_is_array(data), "%s: no shape or data", what);
    int64_t dims[TG_MAX_RANK];
    int rank = (int)json_array_size(shape);
    ck_assert_msg(rank <= TG_MAX_RANK, "%s: rank %d", what, rank);
    for (int i = 0; i < rank; i++)
        dims[i] = json_integer_value(json_array_get(shape, (size_t)i));
    bool is_i64 = json_is_string(json_object_get(j, "dtype"));
    tg_tensor *t = tg_tensor_new(is_i64 ? TG_I64 : TG_F64, rank, dims);
    ck_assert_msg(t != NULL, "%s: tensor not made", what);
    ck_assert_msg((int64_t)json_array_size(data) == tg_tensor_numel(t), "%s: %zu values for %lld",
                  what, json_array_size(data), (long long)tg_tensor_numel(t));
    for (int64_t k = 0; k < tg_tensor_numel(t); k++) {
        const json_t *e = json_array_get(data, (size_t)k);
        if (is_i64)
            ((int64_t *)tg_tensor_data(t))[k] = json_integer_value(e);
        else
            ((double *)tg_tensor_data(t))[k] = json_number_value(e);
    }
    return t;
}

/* ====== Recording functions, one per op ====== */

/* Ops of one input "x" and no parameter, and of two inputs with no parameter. */
#define REF_UNARY(op) \
    static tg_tensor *rec_##op(tg_tape *tp, ref_case *c) { return tg_##op(tp, in(c, "x")); }
#define REF_BINARY(op, a, b) \
    static tg_tensor *rec_##op(tg_tape *tp, ref_case *c) { return tg_##op(tp, in(c, a), in(c, b)); }
/* Ops of one input "x", an axis and keepdim. */
#define REF_AXIS(op)                                                            \
    static tg_tensor *rec_##op(tg_tape *tp, ref_case *c)                        \
    {                                                                           \
        return tg_##op(tp, in(c, "x"), p_int(c, "axis"), p_bool(c, "keepdim")); \
    }

/* The v0.1 ops, matmul now batched. */
REF_BINARY(matmul, "a", "b")
REF_UNARY(transpose)
REF_BINARY(add, "a", "b")
REF_BINARY(sub, "a", "b")
REF_BINARY(mul, "a", "b")
REF_BINARY(div, "a", "b")
REF_BINARY(add_bias, "x", "b")
REF_UNARY(neg)
REF_UNARY(sigmoid)
REF_UNARY(tanh)
REF_UNARY(relu)
REF_UNARY(exp)
REF_UNARY(log)
REF_UNARY(square)
REF_UNARY(sum)
REF_UNARY(mean)
REF_AXIS(sum_axis)
REF_UNARY(softmax)
REF_UNARY(log_softmax)
REF_BINARY(frobenius_loss, "pred", "target")
REF_BINARY(mse_loss, "pred", "target")
REF_BINARY(softmax_cross_entropy, "logits", "target")

static tg_tensor *rec_scale(tg_tape *tp, ref_case *c)
{
    return tg_scale(tp, in(c, "x"), p_double(c, "s"));
}

static tg_tensor *rec_reshape(tg_tape *tp, ref_case *c)
{
    int64_t shape[TG_MAX_RANK];
    int rank = p_i64s(c, "shape", shape, TG_MAX_RANK);
    return tg_reshape(tp, in(c, "x"), rank, shape);
}

static tg_tensor *rec_permute(tg_tape *tp, ref_case *c)
{
    int perm[TG_MAX_RANK];
    p_ints(c, "perm", perm, TG_MAX_RANK);
    return tg_permute(tp, in(c, "x"), perm);
}

static tg_tensor *rec_slice(tg_tape *tp, ref_case *c)
{
    return tg_slice(tp, in(c, "x"), p_int(c, "axis"), p_int(c, "start"), p_int(c, "stop"),
                    p_int(c, "step"));
}

/* concat and stack take every input of the case, in order. */
static tg_tensor *rec_concat(tg_tape *tp, ref_case *c)
{
    return tg_concat(tp, c->in, c->n, p_int(c, "axis"));
}

static tg_tensor *rec_stack(tg_tape *tp, ref_case *c)
{
    return tg_stack(tp, c->in, c->n, p_int(c, "axis"));
}

static tg_tensor *rec_expand(tg_tape *tp, ref_case *c)
{
    int64_t shape[TG_MAX_RANK];
    int rank = p_i64s(c, "shape", shape, TG_MAX_RANK);
    return tg_expand(tp, in(c, "x"), rank, shape);
}

static tg_tensor *rec_pad(tg_tape *tp, ref_case *c)
{
    int64_t before[TG_MAX_RANK], after[TG_MAX_RANK];
    tg_tensor *x = in(c, "x");
    ck_assert_int_eq(p_i64s(c, "before", before, TG_MAX_RANK), tg_tensor_rank(x));
    ck_assert_int_eq(p_i64s(c, "after", after, TG_MAX_RANK), tg_tensor_rank(x));
    return tg_pad(tp, x, before, after, p_double(c, "value"));
}

static tg_tensor *rec_index_select(tg_tape *tp, ref_case *c)
{
    return tg_index_select(tp, in(c, "x"), p_int(c, "axis"), in(c, "idx"));
}

REF_BINARY(embedding, "table", "idx")

static tg_tensor *rec_where(tg_tape *tp, ref_case *c)
{
    return tg_where(tp, in(c, "cond"), in(c, "a"), in(c, "b"));
}

static tg_tensor *rec_add_scalar(tg_tape *tp, ref_case *c)
{
    return tg_add_scalar(tp, in(c, "x"), p_double(c, "s"));
}

static tg_tensor *rec_pow(tg_tape *tp, ref_case *c)
{
    return tg_pow(tp, in(c, "x"), p_double(c, "p"));
}

REF_UNARY(abs)
REF_UNARY(sqrt)
REF_UNARY(sin)
REF_UNARY(cos)

static tg_tensor *rec_clamp(tg_tape *tp, ref_case *c)
{
    return tg_clamp(tp, in(c, "x"), p_double(c, "lo"), p_double(c, "hi"));
}

REF_BINARY(maximum, "a", "b")
REF_BINARY(minimum, "a", "b")

static tg_tensor *rec_leaky_relu(tg_tape *tp, ref_case *c)
{
    return tg_leaky_relu(tp, in(c, "x"), p_double(c, "slope"));
}

static tg_tensor *rec_elu(tg_tape *tp, ref_case *c)
{
    return tg_elu(tp, in(c, "x"), p_double(c, "alpha"));
}

static tg_tensor *rec_gelu(tg_tape *tp, ref_case *c)
{
    return tg_gelu(tp, in(c, "x"), p_bool(c, "tanh_approx"));
}

REF_UNARY(silu)
REF_UNARY(softplus)
REF_AXIS(mean_axis)
REF_AXIS(max_axis)
REF_AXIS(min_axis)
REF_AXIS(argmax)
REF_AXIS(logsumexp)
REF_BINARY(cross_entropy, "logits", "labels")

static tg_tensor *rec_full_like(tg_tape *tp, ref_case *c)
{
    return tg_full_like(tp, in(c, "x"), p_double(c, "value"));
}
REF_BINARY(bce_with_logits, "logits", "target")
REF_BINARY(l1_loss, "pred", "target")

static tg_tensor *rec_huber_loss(tg_tape *tp, ref_case *c)
{
    return tg_huber_loss(tp, in(c, "pred"), in(c, "target"), p_double(c, "delta"));
}

/* Convolution options from the case; conv1d's arrays have one entry. */
static tg_conv_opts conv_opts(const ref_case *c)
{
    tg_conv_opts o = {.groups = p_int(c, "groups")};
    int n = p_ints(c, "stride", o.stride, 2);
    ck_assert_int_eq(p_ints(c, "padding", o.padding, 2), n);
    ck_assert_int_eq(p_ints(c, "dilation", o.dilation, 2), n);
    return o;
}

static tg_tensor *rec_conv1d(tg_tape *tp, ref_case *c)
{
    tg_conv_opts o = conv_opts(c);
    return tg_conv1d(tp, in(c, "x"), in(c, "w"), opt_in(c, "b"), &o);
}

static tg_tensor *rec_conv2d(tg_tape *tp, ref_case *c)
{
    tg_conv_opts o = conv_opts(c);
    return tg_conv2d(tp, in(c, "x"), in(c, "w"), opt_in(c, "b"), &o);
}

/* Pooling's stride and padding: NULL for a JSON null (the op's default), else out. */
static const int *p_pair_or_null(const ref_case *c, const char *key, int out[2])
{
    if (json_is_null(param(c, key))) return NULL;
    ck_assert_int_eq(p_ints(c, key, out, 2), 2);
    return out;
}

static tg_tensor *rec_max_pool2d(tg_tape *tp, ref_case *c)
{
    int kernel[2], stride[2], padding[2];
    ck_assert_int_eq(p_ints(c, "kernel", kernel, 2), 2);
    return tg_max_pool2d(tp, in(c, "x"), kernel, p_pair_or_null(c, "stride", stride),
                         p_pair_or_null(c, "padding", padding));
}

static tg_tensor *rec_avg_pool2d(tg_tape *tp, ref_case *c)
{
    int kernel[2], stride[2], padding[2];
    ck_assert_int_eq(p_ints(c, "kernel", kernel, 2), 2);
    return tg_avg_pool2d(tp, in(c, "x"), kernel, p_pair_or_null(c, "stride", stride),
                         p_pair_or_null(c, "padding", padding));
}

static tg_tensor *rec_layer_norm(tg_tape *tp, ref_case *c)
{
    return tg_layer_norm(tp, in(c, "x"), opt_in(c, "gamma"), opt_in(c, "beta"), p_double(c, "eps"));
}

static tg_tensor *rec_batch_norm(tg_tape *tp, ref_case *c)
{
    return tg_batch_norm(tp, in(c, "x"), in(c, "gamma"), in(c, "beta"), in(c, "running_mean"),
                         in(c, "running_var"), p_bool(c, "training"), p_double(c, "momentum"),
                         p_double(c, "eps"));
}

/* torch's masks come from its own generator; the JSON has only p = 0, the identity. */
static tg_tensor *rec_dropout(tg_tape *tp, ref_case *c)
{
    tg_rng_seed(&c->rng, 7);
    return tg_dropout(tp, in(c, "x"), p_double(c, "p"), &c->rng);
}

static const ref_op ops[] = {
    {"matmul", rec_matmul},
    {"transpose", rec_transpose},
    {"add", rec_add},
    {"sub", rec_sub},
    {"mul", rec_mul},
    {"div", rec_div},
    {"add_bias", rec_add_bias},
    {"scale", rec_scale},
    {"neg", rec_neg},
    {"sigmoid", rec_sigmoid},
    {"tanh", rec_tanh},
    {"relu", rec_relu},
    {"exp", rec_exp},
    {"log", rec_log},
    {"square", rec_square},
    {"sum", rec_sum},
    {"mean", rec_mean},
    {"sum_axis", rec_sum_axis},
    {"softmax", rec_softmax},
    {"log_softmax", rec_log_softmax},
    {"frobenius_loss", rec_frobenius_loss},
    {"mse_loss", rec_mse_loss},
    {"softmax_cross_entropy", rec_softmax_cross_entropy},
    {"reshape", rec_reshape},
    {"permute", rec_permute},
    {"slice", rec_slice},
    {"concat", rec_concat},
    {"stack", rec_stack},
    {"expand", rec_expand},
    {"pad", rec_pad},
    {"index_select", rec_index_select},
    {"embedding", rec_embedding},
    {"where", rec_where},
    {"add_scalar", rec_add_scalar},
    {"pow", rec_pow},
    {"abs", rec_abs},
    {"sqrt", rec_sqrt},
    {"sin", rec_sin},
    {"cos", rec_cos},
    {"clamp", rec_clamp},
    {"maximum", rec_maximum},
    {"minimum", rec_minimum},
    {"leaky_relu", rec_leaky_relu},
    {"elu", rec_elu},
    {"gelu", rec_gelu},
    {"silu", rec_silu},
    {"softplus", rec_softplus},
    {"mean_axis", rec_mean_axis},
    {"max_axis", rec_max_axis},
    {"min_axis", rec_min_axis},
    {"argmax", rec_argmax},
    {"full_like", rec_full_like},
    {"logsumexp", rec_logsumexp},
    {"cross_entropy", rec_cross_entropy},
    {"bce_with_logits", rec_bce_with_logits},
    {"l1_loss", rec_l1_loss},
    {"huber_loss", rec_huber_loss},
    {"conv1d", rec_conv1d},
    {"conv2d", rec_conv2d},
    {"max_pool2d", rec_max_pool2d},
    {"avg_pool2d", rec_avg_pool2d},
    {"layer_norm", rec_layer_norm},
    {"batch_norm", rec_batch_norm},
    {"dropout", rec_dropout},
};
#define N_OPS ((int)(sizeof ops / sizeof *ops))

static const ref_op *op_row(const char *name)
{
    for (int i = 0; i < N_OPS; i++)
        if (strcmp(ops[i].name, name) == 0) return &ops[i];
    return NULL;
}

static const json_t *case_at(int k) { return json_array_get(json_object_get(ref_doc, "cases"), k); }

static const char *case_str(const json_t *j, const char *key)
{
    const char *s = json_string_value(json_object_get(j, key));
    return s ? s : "?";
}

/* ====== Comparing with torch ====== */

/* Asserts that got has want's shape and dtype and that every element is within
 * REF_ATOL + REF_RTOL |torch| (I64 exactly); a NULL got stands for zeros (a
 * gradient backward never reached). The message names the case, the tensor,
 * the first bad element, both values and how many elements are off. */
static void expect_close(const ref_case *c, const char *what, const tg_tensor *got,
                         const json_t *want)
{
    tg_tensor *w = tensor_of(want, what);
    if (got) {
        ck_assert_msg(tg_tensor_dtype(got) == tg_tensor_dtype(w), "%s/%s %s: dtype %d, torch %d",
                      c->op, c->name, what, (int)tg_tensor_dtype(got), (int)tg_tensor_dtype(w));
        bool same = tg_tensor_rank(got) == tg_tensor_rank(w);
        for (int i = 0; same && i < tg_tensor_rank(w); i++)
            same = tg_tensor_shape(got)[i] == tg_tensor_shape(w)[i];
        ck_assert_msg(same, "%s/%s %s: rank %d numel %lld, torch rank %d numel %lld", c->op,
                      c->name, what, tg_tensor_rank(got), (long long)tg_tensor_numel(got),
                      tg_tensor_rank(w), (long long)tg_tensor_numel(w));
    }
    int64_t n_bad = 0, first = -1;
    double first_got = 0, first_want = 0;
    for (int64_t k = 0; k < tg_tensor_numel(w); k++) {
        double g, t;
        bool ok;
        if (tg_tensor_dtype(w) == TG_I64) {
            int64_t gi = ((const int64_t *)tg_tensor_cdata(got))[k];
            int64_t ti = ((const int64_t *)tg_tensor_cdata(w))[k];
            ok = gi == ti, g = (double)gi, t = (double)ti;
        } else {
            g = got ? ((const double *)tg_tensor_cdata(got))[k] : 0.0;
            t = ((const double *)tg_tensor_cdata(w))[k];
            ok = fabs(g - t) <= REF_ATOL + REF_RTOL * fabs(t);
        }
        if (!ok && n_bad++ == 0) first = k, first_got = g, first_want = t;
    }
    tg_tensor_free(w);
    ck_assert_msg(n_bad == 0,
                  "%s/%s %s[%lld]: %.17g, torch %.17g (diff %.3g, rel %.3g); %lld of %lld off",
                  c->op, c->name, what, (long long)first, first_got, first_want,
                  first_got - first_want, fabs(first_got - first_want) / fabs(first_want),
                  (long long)n_bad, (long long)(got ? tg_tensor_numel(got) : 0));
}

START_TEST(agrees_with_torch)
{
    ref_case c = {.j = case_at(_i)};
    c.op = case_str(c.j, "op");
    c.name = case_str(c.j, "name");
    const json_t *inputs = json_object_get(c.j, "inputs");
    c.n = (int)json_array_size(inputs);
    ck_assert_int_le(c.n, REF_MAX_INPUTS);
    for (int i = 0; i < c.n; i++) {
        const json_t *ij = json_array_get(inputs, (size_t)i);
        c.names[i] = case_str(ij, "name");
        c.in[i] = tensor_of(ij, c.names[i]);
        tg_tensor_set_requires_grad(c.in[i], json_is_true(json_object_get(ij, "requires_grad")));
    }

    tg_tape *tp = tg_tape_new();
    ck_assert_ptr_nonnull(tp);
    tg_tensor *out = op_row(c.op)->record(tp, &c);
    ck_assert_msg(out != NULL, "%s/%s: %s", c.op, c.name, tg_tape_error(tp));
    expect_close(&c, "out", out, json_object_get(c.j, "out"));

    /* batch_norm's running statistics, updated in place by the forward. */
    const char *key;
    const json_t *v;
    json_object_foreach(json_object_get(c.j, "after"), key, v)
        expect_close(&c, key, in(&c, key), v);

    const json_t *weight = json_object_get(c.j, "weight");
    if (weight) {
        tg_tensor *w = tensor_of(weight, "weight");
        tg_status st = tg_backward_seed(tp, out, w);
        ck_assert_msg(st == TG_OK, "%s/%s backward: %s", c.op, c.name, tg_tape_error(tp));
        json_object_foreach(json_object_get(c.j, "grads"), key, v)
        {
            char what[80];
            snprintf(what, sizeof what, "d%s", key);
            expect_close(&c, what, tg_tensor_grad(in(&c, key)), v);
        }
        tg_tensor_free(w);
    }
    /* Replay on the same leaves must give torch's output again (batch_norm's
     * running statistics move once more, but its output does not read them in
     * training mode, and in eval mode they stay). */
    ck_assert_msg(tg_tape_replay(tp) == TG_OK, "%s/%s replay: %s", c.op, c.name, tg_tape_error(tp));
    expect_close(&c, "replayed out", out, json_object_get(c.j, "out"));
    tg_tape_free(tp);
    for (int i = 0; i < c.n; i++)
        tg_tensor_free(c.in[i]);
}
END_TEST

/* The JSON and the table name the same ops, every case has what the runner
 * reads, and every gradient torch gives belongs to an input that requires grad. */
START_TEST(json_and_table_agree)
{
    const json_t *cases = json_object_get(ref_doc, "cases");
    int count[N_OPS] = {0};
    for (size_t k = 0; k < json_array_size(cases); k++) {
        const json_t *j = json_array_get(cases, k);
        const char *name = case_str(j, "op");
        const ref_op *op = op_row(name);
        ck_assert_msg(op != NULL, "case %zu: op '%s' has no row in the table", k, name);
        count[op - ops]++;
        ck_assert_msg(json_is_array(json_object_get(j, "inputs")) &&
                          json_is_object(json_object_get(j, "out")),
                      "case %zu (%s): no inputs or out", k, name);
        json_t *grads = json_object_get(j, "grads");
        ck_assert_msg((grads != NULL) == (json_object_get(j, "weight") != NULL),
                      "case %zu (%s): weight and grads come together", k, name);
        const char *key;
        const json_t *v;
        json_object_foreach(grads, key, v)
        {
            bool found = false;
            const json_t *inputs = json_object_get(j, "inputs");
            for (size_t i = 0; i < json_array_size(inputs); i++) {
                const json_t *ij = json_array_get(inputs, i);
                if (strcmp(case_str(ij, "name"), key) == 0)
                    found = json_is_true(json_object_get(ij, "requires_grad"));
            }
            ck_assert_msg(found, "case %zu (%s): gradient of '%s', no such input requiring grad", k,
                          name, key);
        }
    }
    for (int i = 0; i < N_OPS; i++)
        ck_assert_msg(count[i] > 0, "op '%s' has no case in torch_ref.json", ops[i].name);
}
END_TEST

/* The table covers the ops of the op list (tests/oplist.h), which the docs
 * check holds to the header, and no other: an op added there needs torch
 * cases too. */
START_TEST(table_ops_are_the_listed_ops)
{
    for (int i = 0; i < tu_n_ops; i++)
        ck_assert_msg(op_row(tu_ops[i].name) != NULL,
                      "op '%s' of the op list has no row here (nor torch cases)", tu_ops[i].name);
    for (int i = 0; i < N_OPS; i++) {
        bool listed = false;
        for (int k = 0; k < tu_n_ops && !listed; k++)
            listed = strcmp(tu_ops[k].name, ops[i].name) == 0;
        ck_assert_msg(listed, "op '%s' has a row here but is not in the op list", ops[i].name);
    }
}
END_TEST

static Suite *torch_ref_suite(void)
{
    Suite *s = suite_create("torch_ref");
    TCase *tc = tcase_create("table");
    tcase_add_test(tc, json_and_table_agree);
    tcase_add_test(tc, table_ops_are_the_listed_ops);
    suite_add_tcase(s, tc);
    tc = tcase_create("cases");
    tcase_add_loop_test(tc, agrees_with_torch, 0, n_cases);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    json_error_t err;
    ref_doc = json_load_file(TG_TEST_DATA "/torch_ref.json", 0, &err);
    if (!ref_doc) {
        fprintf(stderr, "torch_ref.json line %d: %s\n", err.line, err.text);
        return 1;
    }
    n_cases = (int)json_array_size(json_object_get(ref_doc, "cases"));
    int rc = tu_run(torch_ref_suite());
    json_decref(ref_doc);
    return rc;
}
