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
    free(tp->leaves);
    free(tp);
}

void tg_tape_reset(tg_tape *tp)
{
    if (!tp) return;
    tp->n_nodes = 0;
    tp->n_leaves = 0;
    tp->status = TG_OK;
    tp->msg[0] = '\0';
    tp->gen++; /* every result recorded so far is now stale */
    tg__arena_rewind(&tp->arena);
}

tg_status tg_tape_status(const tg_tape *tp) { return tp ? tp->status : TG_ERR_ARG; }
const char *tg_tape_error(const tg_tape *tp) { return tp ? tp->msg : "no tape"; }
size_t tg_tape_size(const tg_tape *tp) { return tp ? tp->n_nodes : 0; }

void *tg__tape_copy(tg_tape *tp, const void *src, size_t size)
{
    void *p = tg__arena_alloc_small(&tp->arena, size);
    if (!p) {
        tg__fail(tp, TG_ERR_NOMEM, "out of memory copying op parameters (%zu bytes)", size);
        return NULL;
    }
    memcpy(p, src, size);
    return p;
}

/* Why t cannot be used on tp, or NULL when it can. A leaf (and a leaf's
 * gradient) can be used on any tape; a tape's own tensor only on that tape and
 * in the recording that made it, since a reset lets the arena hand its memory
 * out again and freeing the tape frees it. Under ASan a tensor whose bytes
 * the arena has taken back (or the C library freed) is poisoned and is refused
 * before it is read. Elsewhere such memory is read as it is: a stale pointer
 * is refused unless the arena has since put a new result of this tape at the
 * same address, and then it is that result. */
const char *tg__misuse_of(const tg_tape *tp, const tg_tensor *t)
{
#ifdef TG__ASAN
    if (__asan_region_is_poisoned((void *)(uintptr_t)t, sizeof *t))
        return "was freed, or recorded before the tape's last reset";
#endif
    if (!t->tape) return NULL;
    if (t->tape != tp) return "belongs to another tape";
    if (t->gen != tp->gen) return "was recorded before the tape's last reset";
    return NULL;
}

bool tg__guard(tg_tape *tp, const char *op, int n, tg_tensor *const *in)
{
    if (!tp || tp->status) return false;
    for (int i = 0; i < n; i++) {
        const char *why;
        if (!in[i]) {
            tg__fail(tp, TG_ERR_ARG, "%s: input %d is NULL", op, i);
            return false;
        }
        if ((why = tg__misuse_of(tp, in[i]))) {
            tg__fail(tp, TG_ERR_STATE, "%s: input %d %s", op, i, why);
            return false;
        }
        if (in[i]->is_grad) {
            char s[TG__SHAPE_STR_MAX];
            tg__fail(tp, TG_ERR_ARG,
                     "%s: input %d %s is a gradient, which every backward rewrites; copy it "
                     "into a tensor of your own first",
                     op, i, tg__dims_str(in[i]->rank, in[i]->shape, s, sizeof s));
            return false;
        }
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

void tg_tape_set_grad(tg_tape *tp, bool on)
{
    if (tp) tp->no_grad = !on;
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

/* The inputs as "x [2x3], [3]" (names where set), as much as fits in buf. */
static const char *inputs_str(tg_tensor *const *in, int n_in, char *buf, size_t size)
{
    char s[TG__SHAPE_STR_MAX];
    buf[0] = '\0';
    for (int j = 0, len = 0; j < n_in && len < (int)size; j++)
        len += snprintf(buf + len, size - (size_t)len, "%s%s", j ? ", " : "",
                        tg__shape_str(in[j], s, sizeof s));
    return buf;
}

/* Fails the tape with TG_ERR_NUMERIC when 't', written by node 'node' running
 * 'op' on 'in', holds a NaN or Inf. 't' is the node's output (grad_of < 0) or
 * the gradient of input 'grad_of'; either is named when the user named it.
 * Returns the tape's status. */
static tg_status check_finite(tg_tape *tp, const char *op, size_t node, tg_tensor *const *in,
                              int n_in, const tg_tensor *out, const tg_tensor *t, int grad_of)
{
    double bad;
    if (!find_nonfinite(t, &bad)) return TG_OK;
    char where[128], shapes[320];
    const char *name = grad_of < 0 ? out->name : in[grad_of]->name;
    int len = grad_of < 0 ? snprintf(where, sizeof where, "its output")
                          : snprintf(where, sizeof where, "the gradient of its input %d", grad_of);
    if (name[0]) snprintf(where + len, sizeof where - (size_t)len, " (%s)", name);
    return tg__fail(tp, TG_ERR_NUMERIC, "anomaly: %s (node %zu) produced %s in %s; inputs %s", op,
                    node, nonfinite_name(bad), where, inputs_str(in, n_in, shapes, sizeof shapes));
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

/* Room for 'more' leaf uses, made before the node runs so that recording it
 * cannot fail afterwards. */
static bool grow_leaves(tg_tape *tp, size_t more)
{
    if (tp->cap_leaves - tp->n_leaves >= more) return true;
    size_t cap = tp->cap_leaves ? tp->cap_leaves : 64;
    while (cap - tp->n_leaves < more) {
        if (cap > SIZE_MAX / 2 / sizeof(tg__leaf_use)) return false;
        cap *= 2;
    }
    tg__leaf_use *leaves = tg__realloc(tp->leaves, cap * sizeof *leaves);
    if (!leaves) return false;
    tp->leaves = leaves;
    tp->cap_leaves = cap;
    return true;
}

tg_tensor *tg_custom(tg_tape *tp, const tg_op_def *def, tg_tensor *const *in, int n_in,
                     int out_rank, const int64_t *out_shape, void *ctx)
{
    if (!tp || tp->status) return NULL;
    tp->msg[0] = '\0'; /* a refused call's message lasts until the next call */
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
    if (out_rank < 0 || out_rank > TG_MAX_RANK || (out_rank > 0 && !out_shape)) {
        tg__fail(tp, TG_ERR_ARG, "%s: output rank %d is not 0 to %d with a shape", op, out_rank,
                 TG_MAX_RANK);
        return NULL;
    }
    if (tg__numel(out_rank, out_shape) < 0) {
        char so[TG__SHAPE_STR_MAX], si[320];
        bool negative = false;
        for (int k = 0; k < out_rank; k++)
            negative |= out_shape[k] < 0;
        tg__fail(tp, TG_ERR_SHAPE, "%s: output shape %s %s; inputs %s", op,
                 tg__dims_str(out_rank, out_shape, so, sizeof so),
                 negative ? "has a negative dimension" : "has more elements than memory can hold",
                 inputs_str(in, n_in, si, sizeof si));
        return NULL;
    }
    size_t n_leaf_in = 0;
    for (int i = 0; i < n_in; i++)
        n_leaf_in += !in[i]->tape;
    tg_tensor *out = tg__tensor_arena(tp, dt, out_rank, out_shape);
    /* The inputs and, after them, the gradient slots, in one small block; a
     * node recorded without gradients never meets a backward: no slots. */
    tg_tensor **ins = tg__arena_alloc_small(&tp->arena, (size_t)n_in * (tp->no_grad ? 1 : 2) *
                                                            sizeof *ins);
    tg_tensor **gin = tp->no_grad || !ins ? NULL : ins + n_in;
    if (!out || !ins || (!gin && !tp->no_grad) || !grow_nodes(tp) ||
        !grow_leaves(tp, n_leaf_in)) {
        tg__fail(tp, TG_ERR_NOMEM, "%s: out of memory recording the node", op);
        return NULL;
    }
    memcpy(ins, in, (size_t)n_in * sizeof *ins);
    for (int i = 0; i < n_in; i++) out->requires_grad |= in[i]->requires_grad;
    out->requires_grad &= def->vjp != NULL && !def->index_output && !tp->no_grad;

    tg_status s = def->forward(out, ins, n_in, ctx);
    if (s != TG_OK) {
        tg__fail(tp, s, "%s: forward failed: %s", op, tg_status_str(s));
        return NULL;
    }
    if (tp->anomaly && check_finite(tp, op, tp->n_nodes, ins, n_in, out, out, -1)) return NULL;
    for (int i = 0; i < n_in; i++) {
        if (in[i]->tape) continue;
        tg__leaf_use *u = &tp->leaves[tp->n_leaves++];
        *u = (tg__leaf_use){.leaf = in[i],
                            .node = tp->n_nodes,
                            .input = i,
                            .rank = in[i]->rank,
                            .dtype = in[i]->dtype};
        memcpy(u->shape, in[i]->shape, sizeof u->shape);
    }
    out->node = tp->n_nodes + 1;
    tp->nodes[tp->n_nodes++] = (tg__node){def, ins, gin, n_in, out, ctx};
    return out;
}

/* ====== Leaves that changed under the tape ====== */

/* Whether the leaf still has the shape and dtype the node recorded. A leaf
 * that was never reshaped since is the common case and costs one comparison;
 * one reshaped back to the recorded shape is compared in full and then
 * remembered as matching. */
static bool leaf_unchanged(tg__leaf_use *u)
{
    const tg_tensor *x = u->leaf;
    if (x->reshapes == u->reshapes) return true;
    if (x->rank != u->rank || x->dtype != u->dtype) return false;
    for (int k = 0; k < u->rank; k++)
        if (x->shape[k] != u->shape[k]) return false;
    u->reshapes = x->reshapes;
    return true;
}

/* Refuses the call (TG_ERR_SHAPE) when a leaf no longer has the shape and
 * dtype a node recorded: every node's output and saved buffers were sized
 * from them, so running forward or VJP on the new shape would write past
 * them. Checked before anything runs, so a refused call changes nothing and
 * the tape works again once the leaf has its old shape back. */
tg_status tg__check_leaves(tg_tape *tp)
{
    for (size_t i = 0; i < tp->n_leaves; i++) {
        tg__leaf_use *u = &tp->leaves[i];
        if (leaf_unchanged(u)) continue;
        const tg_tensor *x = u->leaf;
        char was[TG__SHAPE_STR_MAX], now[TG__SHAPE_STR_MAX], name[80] = "";
        bool dt = x->dtype != u->dtype;
        if (x->name[0]) snprintf(name, sizeof name, " (%s)", x->name);
        return tg__refuse(
            tp, TG_ERR_SHAPE, "%s: input %d%s was %s%s%s when recorded, is now %s%s%s",
            op_name(tp->nodes[u->node].def), u->input, name, dt ? tg__dt(u->dtype)->name : "",
            dt ? " " : "", tg__dims_str(u->rank, u->shape, was, sizeof was),
            dt ? tg__dt(x->dtype)->name : "", dt ? " " : "",
            tg__dims_str(x->rank, x->shape, now, sizeof now));
    }
    return TG_OK;
}

/* ====== Replay ====== */

tg_status tg_tape_replay(tg_tape *tp)
{
    if (!tp) return TG_ERR_ARG;
    if (tp->status) return tp->status;
    tp->msg[0] = '\0';
    tg_status s = tg__check_leaves(tp);
    if (s != TG_OK) return s;
    for (size_t i = 0; i < tp->n_nodes; i++) {
        tg__node *nd = &tp->nodes[i];
        s = nd->def->forward(nd->out, nd->in, nd->n_in, nd->ctx);
        if (s != TG_OK)
            return tg__fail(tp, s, "%s: forward failed in replay of node %zu: %s", op_name(nd->def),
                            i, tg_status_str(s));
        if (tp->anomaly &&
            (s = check_finite(tp, op_name(nd->def), i, nd->in, nd->n_in, nd->out, nd->out, -1)))
            return s;
    }
    return TG_OK;
}

/* ====== Backward sweep ====== */

/* The checks of a backward call. Each refuses the call and leaves the tape as
 * it was: a mistaken call must not cost the caller a recording that is fine. */
tg_status tg__check_seed(tg_tape *tp, const char *fn, const tg_tensor *out, const tg_tensor *seed)
{
    char s0[TG__SHAPE_STR_MAX], s1[TG__SHAPE_STR_MAX];
    const char *why;
    if (!out || !seed)
        return tg__refuse(tp, TG_ERR_ARG, "%s: %s is NULL", fn, out ? "seed" : "output");
    if ((why = tg__misuse_of(tp, out)))
        return tg__refuse(tp, TG_ERR_STATE, "%s: the output %s", fn, why);
    if ((why = tg__misuse_of(tp, seed)))
        return tg__refuse(tp, TG_ERR_STATE, "%s: the seed %s", fn, why);
    if (seed->dtype != out->dtype)
        return tg__refuse(tp, TG_ERR_DTYPE, "%s: seed %s is %s, the output %s is %s", fn,
                          tg__shape_str(seed, s0, sizeof s0), tg__dt(seed->dtype)->name,
                          tg__shape_str(out, s1, sizeof s1), tg__dt(out->dtype)->name);
    if (!tg__same_shape(seed, out))
        return tg__refuse(tp, TG_ERR_SHAPE, "%s: seed %s does not match output %s", fn,
                          tg__shape_str(seed, s0, sizeof s0), tg__shape_str(out, s1, sizeof s1));
    if (!out->requires_grad)
        return tg__refuse(tp, TG_ERR_STATE,
                          "%s: the output %s does not depend on any tensor that requires grad", fn,
                          tg__shape_str(out, s0, sizeof s0));
    double bad;
    if (tp->anomaly && find_nonfinite(seed, &bad))
        return tg__refuse(tp, TG_ERR_NUMERIC, "anomaly: the seed of %s holds %s", fn,
                          nonfinite_name(bad));
    return tg__check_leaves(tp);
}

/* ====== What tg_grad differentiates: the nodes between wrt and out ====== */

bool tg__wanted(const tg_tape *tp, const bool *dep, size_t n, tg_tensor *const *wrt, int n_wrt,
                const tg_tensor *x, int *k)
{
    *k = -1;
    if (!x->requires_grad) return false;
    for (int i = 0; i < n_wrt; i++)
        if (wrt[i] == x) {
            *k = i;
            return true;
        }
    return x->tape == tp && x->node && x->node <= n && dep[x->node - 1];
}

bool *tg__deps(const tg_tape *tp, size_t n, tg_tensor *const *wrt, int n_wrt)
{
    bool *dep = tg__calloc(n ? n : 1, sizeof *dep);
    if (!dep) return NULL;
    for (size_t i = 0; i < n; i++) {
        const tg__node *nd = &tp->nodes[i];
        if (!nd->def->vjp || !nd->gin || !nd->out->requires_grad) continue;
        for (int j = 0, k; j < nd->n_in && !dep[i]; j++)
            dep[i] = tg__wanted(tp, dep, n, wrt, n_wrt, nd->in[j], &k);
    }
    return dep;
}

/* A gradient slot for input x of node nd: its .grad, or with 'req' the
 * slot of a wrt leaf; NULL (no gradient) where x needs none. */
static tg_status slot_of(tg_tape *tp, const tg__grad_req *req, tg_tensor *x, tg_tensor **slot)
{
    *slot = NULL;
    if (!x->requires_grad) return TG_OK;
    if (req) {
        int k;
        if (!tg__wanted(tp, req->dep, tp->n_nodes, req->wrt, req->n_wrt, x, &k)) return TG_OK;
        if (!x->tape) {
            *slot = req->slots[k];
            return TG_OK;
        }
    }
    if (!(*slot = tg__grad_get(tp, x)))
        return tg__fail(tp, TG_ERR_NOMEM, "backward: out of memory for a gradient");
    if (x->tape) x->reached = true;
    return TG_OK;
}

tg_status tg__sweep(tg_tape *tp, tg_tensor *out, const tg_tensor *seed, const tg__grad_req *req)
{
    tg_status s;

    /* The seed goes into the output's gradient before any gradient is zeroed,
     * since it may be one of them (tg_tensor_grad of the output, say). The
     * output's own gradient is the seed; a leaf's accumulates it. */
    tg_tensor *g = tg__grad_get(tp, out);
    if (!g) return tg__fail(tp, TG_ERR_NOMEM, "backward: out of memory for a gradient");
    if (out->tape) {
        if (g->data != seed->data)
            memmove(g->data, seed->data, (size_t)out->numel * tg__dtype_size(out->dtype));
    } else {
#define ADD_SEED(T)                          \
    for (int64_t k = 0; k < out->numel; k++) \
    ((T *)g->data)[k] += ((const T *)seed->data)[k]
        TG__FLOAT_SWITCH(out->dtype, ADD_SEED, TG_ERR_DTYPE);
#undef ADD_SEED
    }
    /* Intermediates' gradients restart from zero at every sweep; leaves' accumulate. */
    for (size_t i = 0; i < tp->n_nodes; i++) {
        tg_tensor *y = tp->nodes[i].out;
        y->reached = false;
        if (y->grad && y != out)
            tg__zero(y->grad->data, (size_t)y->numel * tg__dtype_size(y->dtype));
    }
    out->reached = true;

    for (size_t i = tp->n_nodes; i-- > 0;) {
        tg__node *nd = &tp->nodes[i];
        /* Skip a node that does not lead to 'out', and a constant one (no VJP) or
         * one recorded without gradients even when the caller has since marked its
         * output as requiring grad. */
        if (!nd->out->reached || !nd->def->vjp || !nd->gin || (req && !req->dep[i])) continue;
        for (int j = 0; j < nd->n_in; j++)
            if ((s = slot_of(tp, req, nd->in[j], &nd->gin[j]))) return s;
        s = nd->def->vjp(nd->out->grad, nd->out, nd->in, nd->gin, nd->n_in, nd->ctx);
        if (s != TG_OK)
            return tg__fail(tp, s, "%s: vjp failed at node %zu: %s", op_name(nd->def), i,
                            tg_status_str(s));
        for (int j = 0; tp->anomaly && j < nd->n_in; j++)
            if (nd->gin[j] && (s = check_finite(tp, op_name(nd->def), i, nd->in, nd->n_in, nd->out,
                                                nd->gin[j], j)))
                return s;
    }
    return TG_OK;
}

tg_status tg_backward_seed(tg_tape *tp, tg_tensor *out, const tg_tensor *seed)
{
    if (!tp) return TG_ERR_ARG;
    if (tp->status) return tp->status;
    tp->msg[0] = '\0';
    tg_status s = tg__check_seed(tp, "backward", out, seed);
    return s ? s : tg__sweep(tp, out, seed, NULL);
}

tg_status tg_backward(tg_tape *tp, tg_tensor *loss)
{
    if (!tp) return TG_ERR_ARG;
    if (tp->status) return tp->status;
    tp->msg[0] = '\0';
    const char *why;
    if (!loss) return tg__refuse(tp, TG_ERR_ARG, "backward: loss is NULL");
    if ((why = tg__misuse_of(tp, loss)))
        return tg__refuse(tp, TG_ERR_STATE, "backward: the loss %s", why);
    if (loss->numel != 1) {
        char s0[TG__SHAPE_STR_MAX];
        return tg__refuse(tp, TG_ERR_SHAPE, "backward: loss must have one element, got %s",
                          tg__shape_str(loss, s0, sizeof s0));
    }
    /* The seed dloss = 1, on the stack: backward allocates nothing after its first run. */
    double one64 = 1.0;
    float one32 = 1.0f;
    tg_tensor seed = {.dtype = loss->dtype, .rank = loss->rank, .numel = 1,
                      .data = loss->dtype == TG_F64 ? (void *)&one64 : (void *)&one32};
    memcpy(seed.shape, loss->shape, sizeof seed.shape);
    tg_status s = tg__check_seed(tp, "backward", loss, &seed);
    return s ? s : tg__sweep(tp, loss, &seed, NULL);
}
