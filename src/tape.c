/*
 * The tape: recording (tg_custom), the backward sweep, replay, reset. Nothing
 * in this file knows any particular op; each op's tg_op_def carries its
 * forward and its vector-Jacobian product.
 */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

tg_tape *tg_tape_new(void)
{
    tg_tape *tp = tg__calloc(1, sizeof(tg_tape));
    if (!tp) tg__fail_call(TG_ERR_NOMEM, "tape_new: out of memory");
    return tp;
}

void tg_tape_free(tg_tape *tp)
{
    if (!tp) return;
    tg__arena_free(&tp->arena);
    free(tp->nodes);
    free(tp);
}

void tg_tape_reset(tg_tape *tp)
{
    if (!tp) return;
    tp->n_nodes = 0;
    tp->status = TG_OK;
    tp->msg[0] = '\0';
    tg__arena_rewind(&tp->arena);
}

tg_status tg_tape_status(const tg_tape *tp) { return tp ? tp->status : TG_ERR_ARG; }
const char *tg_tape_error(const tg_tape *tp) { return tp ? tp->msg : "no tape"; }
size_t tg_tape_size(const tg_tape *tp) { return tp ? tp->n_nodes : 0; }

void *tg__tape_copy(tg_tape *tp, const void *src, size_t size)
{
    void *p = tg__arena_alloc(&tp->arena, size);
    if (!p) {
        tg__fail(tp, TG_ERR_NOMEM, "out of memory copying op parameters (%zu bytes)", size);
        return NULL;
    }
    memcpy(p, src, size);
    return p;
}

bool tg__guard(tg_tape *tp, const char *op, int n, tg_tensor *const *in)
{
    if (!tp || tp->status) return false;
    for (int i = 0; i < n; i++)
        if (!in[i]) {
            tg__fail(tp, TG_ERR_ARG, "%s: input %d is NULL", op, i);
            return false;
        }
    return true;
}

/* A user's op may have no name; messages then say "custom". */
static const char *op_name(const tg_op_def *def) { return def->name ? def->name : "custom"; }

/* ====== Anomaly mode: the first NaN or Inf a node writes fails the tape ====== */

void tg_tape_set_anomaly(tg_tape *tp, bool on)
{
    if (tp) tp->anomaly = on;
}

/* The first element of t that is NaN or Inf, as a double in *bad; false if
 * none, and for index tensors, which hold neither. */
#define FIND_NONFINITE(T)                                  \
    do {                                                   \
        const T *v = t->data;                              \
        for (int64_t i = 0; i < t->numel; i++)             \
            if (!isfinite(v[i])) {                         \
                *bad = (double)v[i];                       \
                return true;                               \
            }                                              \
    } while (0)

static bool find_nonfinite(const tg_tensor *t, double *bad)
{
    TG__FLOAT_SWITCH(t->dtype, FIND_NONFINITE, false);
    return false;
}

static const char *nonfinite_name(double v) { return isnan(v) ? "nan" : v > 0 ? "inf" : "-inf"; }

/* Fails the tape when 't', written by node 'node' running 'op' on 'in', holds
 * a NaN or Inf. 't' is the node's output (grad_of < 0) or the gradient of
 * input 'grad_of'. Returns the tape's status. */
static tg_status check_finite(tg_tape *tp, const char *op, size_t node, tg_tensor *const *in,
                              int n_in, const tg_tensor *t, int grad_of)
{
    double bad;
    if (!find_nonfinite(t, &bad)) return TG_OK;
    char where[48] = "its output", shapes[160] = "", s[TG__SHAPE_STR_MAX];
    if (grad_of >= 0) snprintf(where, sizeof where, "the gradient of its input %d", grad_of);
    for (int j = 0, len = 0; j < n_in && len < (int)sizeof shapes; j++)
        len += snprintf(shapes + len, sizeof shapes - (size_t)len, "%s%s", j ? ", " : "",
                        tg__shape_str(in[j], s, sizeof s));
    return tg__fail(tp, TG_ERR_STATE, "anomaly: %s (node %zu) produced %s in %s; inputs %s", op,
                    node, nonfinite_name(bad), where, shapes);
}

/* ====== Recording ====== */

/* Checks the inputs' dtypes against what 'def' expects: I64 exactly where
 * index_inputs has a bit (bits past 31 are never indices), one float dtype
 * everywhere else. Sets the output's dtype. */
static bool input_dtypes(tg_tape *tp, const tg_op_def *def, const char *op, tg_tensor *const *in,
                         int n_in, tg_dtype *out)
{
    char s0[TG__SHAPE_STR_MAX], si[TG__SHAPE_STR_MAX];
    const tg_tensor *first = NULL; /* the first float input */
    for (int i = 0; i < n_in; i++) {
        bool index = i < 32 && (def->index_inputs >> i & 1u);
        const tg__dtype_info *d = tg__dt(in[i]->dtype);
        if (index && in[i]->dtype != TG_I64) {
            tg__fail(tp, TG_ERR_DTYPE, "%s: input %d %s must be i64 indices, is %s", op, i,
                     tg__shape_str(in[i], si, sizeof si), d->name);
            return false;
        }
        if (index) continue;
        if (!d->is_float) {
            tg__fail(tp, TG_ERR_DTYPE, "%s: input %d %s is %s; this op takes f32 or f64 there", op,
                     i, tg__shape_str(in[i], si, sizeof si), d->name);
            return false;
        }
        if (!first) {
            first = in[i];
        } else if (in[i]->dtype != first->dtype) {
            tg__fail(tp, TG_ERR_DTYPE, "%s: inputs differ in dtype: %s %s and %s %s", op,
                     tg__dt(first->dtype)->name, tg__shape_str(first, s0, sizeof s0), d->name,
                     tg__shape_str(in[i], si, sizeof si));
            return false;
        }
    }
    if (def->index_output) {
        *out = TG_I64;
    } else if (first) {
        *out = first->dtype;
    } else {
        tg__fail(tp, TG_ERR_DTYPE, "%s: every input is an index, so the output has no float dtype",
                 op);
        return false;
    }
    return true;
}

static bool grow_nodes(tg_tape *tp)
{
    if (tp->n_nodes < tp->cap_nodes) return true;
    size_t cap = tp->cap_nodes ? tp->cap_nodes * 2 : 64;
    if (cap > SIZE_MAX / sizeof(tg__node)) return false;
    tg__node *nodes = tg__realloc(tp->nodes, cap * sizeof *nodes);
    if (!nodes) return false;
    tp->nodes = nodes;
    tp->cap_nodes = cap;
    return true;
}

tg_tensor *tg_custom(tg_tape *tp, const tg_op_def *def, tg_tensor *const *in, int n_in,
                     int out_rank, const int64_t *out_shape, void *ctx)
{
    if (!tp || tp->status) return NULL;
    const char *op = def ? op_name(def) : "custom";
    if (!def || !def->forward) {
        tg__fail(tp, TG_ERR_ARG, "%s: op definition has no forward", op);
        return NULL;
    }
    if (n_in < 1 || !in) {
        tg__fail(tp, TG_ERR_ARG, "%s: needs at least one input, got %d", op, n_in);
        return NULL;
    }
    if (!tg__guard(tp, op, n_in, in)) return NULL;
    tg_dtype dt;
    if (!input_dtypes(tp, def, op, in, n_in, &dt)) return NULL;
    if (tg__numel(out_rank, out_shape) < 0) {
        tg__fail(tp, TG_ERR_ARG, "%s: bad output shape (rank %d)", op, out_rank);
        return NULL;
    }
    tg_tensor *out = tg__tensor_arena(&tp->arena, dt, out_rank, out_shape);
    tg_tensor **ins = tg__arena_alloc(&tp->arena, (size_t)n_in * sizeof *ins);
    tg_tensor **gin = tg__arena_alloc(&tp->arena, (size_t)n_in * sizeof *gin);
    if (!out || !ins || !gin || !grow_nodes(tp)) {
        tg__fail(tp, TG_ERR_NOMEM, "%s: out of memory recording the node", op);
        return NULL;
    }
    memcpy(ins, in, (size_t)n_in * sizeof *ins);
    for (int i = 0; i < n_in; i++) out->requires_grad |= in[i]->requires_grad;
    out->requires_grad &= def->vjp != NULL && !def->index_output;

    tg_status s = def->forward(out, ins, n_in, ctx);
    if (s != TG_OK) {
        tg__fail(tp, s, "%s: forward failed: %s", op, tg_status_str(s));
        return NULL;
    }
    if (tp->anomaly && check_finite(tp, op, tp->n_nodes, ins, n_in, out, -1)) return NULL;
    tp->nodes[tp->n_nodes++] = (tg__node){def, ins, gin, n_in, out, ctx};
    return out;
}

/* ====== Replay ====== */

tg_status tg_tape_replay(tg_tape *tp)
{
    if (!tp) return TG_ERR_ARG;
    if (tp->status) return tp->status;
    for (size_t i = 0; i < tp->n_nodes; i++) {
        tg__node *nd = &tp->nodes[i];
        tg_status s = nd->def->forward(nd->out, nd->in, nd->n_in, nd->ctx);
        if (s != TG_OK)
            return tg__fail(tp, s, "%s: forward failed in replay of node %zu: %s", op_name(nd->def),
                            i, tg_status_str(s));
        if (tp->anomaly &&
            (s = check_finite(tp, op_name(nd->def), i, nd->in, nd->n_in, nd->out, -1)))
            return s;
    }
    return TG_OK;
}

/* ====== Backward sweep ====== */

static tg_status sweep(tg_tape *tp, tg_tensor *out, const tg_tensor *seed)
{
    char s0[TG__SHAPE_STR_MAX], s1[TG__SHAPE_STR_MAX];
    if (!tp) return TG_ERR_ARG;
    if (tp->status) return tp->status;
    if (!out || !seed) return tg__fail(tp, TG_ERR_ARG, "backward: %s is NULL", out ? "seed" : "output");
    if (seed->dtype != out->dtype)
        return tg__fail(tp, TG_ERR_DTYPE, "backward: seed dtype differs from the output's");
    if (!tg__same_shape(seed, out))
        return tg__fail(tp, TG_ERR_SHAPE, "backward: seed %s does not match output %s",
                        tg__shape_str(seed, s0, sizeof s0), tg__shape_str(out, s1, sizeof s1));
    if (!out->requires_grad)
        return tg__fail(tp, TG_ERR_STATE,
                        "backward: the output does not depend on any tensor that requires grad");
    double bad;
    if (tp->anomaly && find_nonfinite(seed, &bad))
        return tg__fail(tp, TG_ERR_STATE, "anomaly: the seed of backward holds %s",
                        nonfinite_name(bad));

    /* Intermediates' gradients restart from zero at every sweep; leaves' accumulate. */
    for (size_t i = 0; i < tp->n_nodes; i++) {
        tg_tensor *y = tp->nodes[i].out;
        y->reached = false;
        if (y->grad) memset(y->grad->data, 0, (size_t)y->numel * tg__dtype_size(y->dtype));
    }
    tg_tensor *g = tg__grad_get(tp, out);
    if (!g) return tg__fail(tp, TG_ERR_NOMEM, "backward: out of memory for a gradient");
#define ADD_SEED(T)                                                                   \
    for (int64_t k = 0; k < out->numel; k++) ((T *)g->data)[k] += ((const T *)seed->data)[k]
    TG__FLOAT_SWITCH(out->dtype, ADD_SEED, TG_ERR_DTYPE);
#undef ADD_SEED
    out->reached = true;

    for (size_t i = tp->n_nodes; i-- > 0;) {
        tg__node *nd = &tp->nodes[i];
        /* Skip a node that does not lead to 'out', and a constant one (no VJP) even
         * when the caller has since marked its output as requiring grad. */
        if (!nd->out->reached || !nd->def->vjp) continue;
        for (int j = 0; j < nd->n_in; j++) {
            tg_tensor *x = nd->in[j];
            nd->gin[j] = NULL;
            if (!x->requires_grad) continue;
            if (!(nd->gin[j] = tg__grad_get(tp, x)))
                return tg__fail(tp, TG_ERR_NOMEM, "backward: out of memory for a gradient");
            x->reached = true;
        }
        tg_status s = nd->def->vjp(nd->out->grad, nd->out, nd->in, nd->gin, nd->n_in, nd->ctx);
        if (s != TG_OK)
            return tg__fail(tp, s, "%s: vjp failed at node %zu: %s", op_name(nd->def), i,
                            tg_status_str(s));
        for (int j = 0; tp->anomaly && j < nd->n_in; j++)
            if (nd->gin[j] &&
                (s = check_finite(tp, op_name(nd->def), i, nd->in, nd->n_in, nd->gin[j], j)))
                return s;
    }
    return TG_OK;
}

tg_status tg_backward_seed(tg_tape *tp, tg_tensor *out, const tg_tensor *seed)
{
    return sweep(tp, out, seed);
}

tg_status tg_backward(tg_tape *tp, tg_tensor *loss)
{
    if (!tp) return TG_ERR_ARG;
    if (tp->status) return tp->status;
    if (!loss) return tg__fail(tp, TG_ERR_ARG, "backward: loss is NULL");
    if (loss->numel != 1) {
        char s0[TG__SHAPE_STR_MAX];
        return tg__fail(tp, TG_ERR_SHAPE, "backward: loss must have one element, got %s",
                        tg__shape_str(loss, s0, sizeof s0));
    }
    /* The seed dloss = 1, on the stack: backward allocates nothing after its first run. */
    double one64 = 1.0;
    float one32 = 1.0f;
    tg_tensor seed = {.dtype = loss->dtype, .rank = loss->rank, .numel = 1,
                      .data = loss->dtype == TG_F64 ? (void *)&one64 : (void *)&one32};
    memcpy(seed.shape, loss->shape, sizeof seed.shape);
    return sweep(tp, loss, &seed);
}
