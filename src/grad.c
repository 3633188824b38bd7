/*
 * Gradients as tensors: tg_grad (torch.autograd.grad), forward mode
 * (tg_jvp) and the second-order check (tg_gradgradcheck).
 *
 * tg_grad without create_graph is the backward sweep of tape.c restricted to
 * the nodes between wrt and out, writing into fresh tensors instead of the
 * leaves' .grad. With create_graph it is a second sweep, written here, that
 * calls each node's tg_op_def.vjp_graph: the VJP as ordinary ops recorded on
 * the same tape. Gradients that meet (fan-out) are summed with tg_add. The
 * recorded gradient is then a graph like any other: tg_backward and tg_grad
 * differentiate it again and tg_tape_replay recomputes it. Like the first
 * sweep, this one knows no particular op.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* The ONNX forms of the ops, at the end of the file. */
static TG__ONNX_HOOK(full_like_onnx);

/* ====== full_like: the seeds and zeros of tg_grad ====== */

#define FILL(T)                                 \
    for (int64_t i = 0; i < out->numel; i++) \
    ((T *)out->data)[i] = (T)v

static tg_status full_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)in, (void)n_in;
    double v = *(const double *)ctx;
    TG__FLOAT_SWITCH(out->dtype, FILL, TG_ERR_DTYPE);
    return TG_OK;
}

static const tg_op_def full_like_def = {.name = "full_like", .forward = full_forward,
                                        .onnx = full_like_onnx};

tg_tensor *tg_full_like(tg_tape *tp, tg_tensor *x, double value)
{
    if (!tg__guard(tp, "full_like", 1, &x)) return NULL;
    double *c = tg__tape_copy(tp, &value, sizeof value);
    return c ? tg_custom(tp, &full_like_def, &x, 1, x->rank, x->shape, c) : NULL;
}

/* ====== Checks shared by tg_grad and tg_jvp ====== */

static tg_status check_wrt(tg_tape *tp, const char *fn, tg_tensor *const *wrt, int n_wrt)
{
    char s0[TG__SHAPE_STR_MAX];
    if (!wrt || n_wrt < 1)
        return tg__refuse(tp, TG_ERR_ARG, "%s: needs at least one wrt tensor, got %d", fn,
                          wrt ? n_wrt : 0);
    for (int i = 0; i < n_wrt; i++) {
        const char *why;
        if (!wrt[i]) return tg__refuse(tp, TG_ERR_ARG, "%s: wrt %d is NULL", fn, i);
        if ((why = tg__misuse_of(tp, wrt[i])))
            return tg__refuse(tp, TG_ERR_STATE, "%s: wrt %d %s", fn, i, why);
        if (wrt[i]->is_grad)
            return tg__refuse(tp, TG_ERR_ARG, "%s: wrt %d %s is a gradient buffer", fn, i,
                              tg__shape_str(wrt[i], s0, sizeof s0));
        if (!wrt[i]->requires_grad)
            return tg__refuse(tp, TG_ERR_STATE, "%s: wrt %d %s does not require grad", fn, i,
                              tg__shape_str(wrt[i], s0, sizeof s0));
    }
    return TG_OK;
}

/* A tensor recorded before node n (or a leaf), which must be copied to be a
 * result of this call. */
static bool older(const tg_tensor *t, size_t n) { return !t->tape || t->node <= n; }

/* Names a gradient recorded by this call "d<name>" after a named x. */
static void name_grad(tg_tensor *g, const tg_tensor *x, size_t n)
{
    if (!older(g, n) && x->name[0] && !g->name[0])
        snprintf(g->name, sizeof g->name, "d%.62s", x->name);
}

/* ====== create_graph: the recorded sweep ====== */

/* Adds contribution g into *acc, recorded. */
static void accumulate(tg_tape *tp, tg_tensor **acc, tg_tensor *g)
{
    *acc = *acc ? tg_add(tp, *acc, g) : g;
}

/* Checks what vjp_graph of node i gave input j: a tensor of this tape with
 * the input's shape and dtype. */
static tg_status check_contribution(tg_tape *tp, const tg__node *nd, size_t i, int j,
                                    const tg_tensor *g)
{
    const tg_tensor *x = nd->in[j];
    const char *op = nd->def->name ? nd->def->name : "custom", *why = tg__misuse_of(tp, g);
    char s0[TG__SHAPE_STR_MAX], s1[TG__SHAPE_STR_MAX];
    if (why)
        return tg__fail(tp, TG_ERR_STATE, "%s: vjp_graph (node %zu) gave input %d a gradient that %s",
                        op, i, j, why);
    if (g->dtype == x->dtype && tg__same_shape(g, x)) return TG_OK;
    return tg__fail(tp, g->dtype != x->dtype ? TG_ERR_DTYPE : TG_ERR_SHAPE,
                    "%s: vjp_graph (node %zu) gave input %d %s %s a gradient %s %s", op, i, j,
                    tg__dt(x->dtype)->name, tg__shape_str(x, s0, sizeof s0),
                    tg__dt(g->dtype)->name, tg__shape_str(g, s1, sizeof s1));
}

typedef struct graph_sweep {
    size_t n;         /* nodes recorded before the call: the ones differentiated */
    bool *dep, *live; /* per node: between wrt and out; reached from out */
    tg_tensor **acc;  /* per node: the gradient of its output, recorded */
    tg_tensor **wacc; /* per wrt: the gradient of a wrt leaf */
    bool *need;       /* per input of the node being differentiated */
    tg_tensor **gin;
} graph_sweep;

static void graph_sweep_free(graph_sweep *w)
{
    free(w->dep), free(w->live), free(w->acc), free(w->wacc), free(w->need), free(w->gin);
}

/* Marks the nodes the sweep will differentiate and refuses the call, before
 * anything is recorded, when one of them has no vjp_graph. */
static tg_status plan_graph(tg_tape *tp, graph_sweep *w, tg_tensor *out, tg_tensor *const *wrt,
                            int n_wrt)
{
    size_t n = w->n, n_in_max = 1;
    w->dep = tg__deps(tp, n, wrt, n_wrt);
    w->live = tg__calloc(n, sizeof *w->live);
    w->acc = tg__calloc(n, sizeof *w->acc);
    w->wacc = tg__calloc((size_t)n_wrt, sizeof *w->wacc);
    if (!w->dep || !w->live || !w->acc || !w->wacc)
        return tg__refuse(tp, TG_ERR_NOMEM, "grad: out of memory planning the sweep");
    w->live[out->node - 1] = true;
    for (size_t i = n; i-- > 0;) {
        const tg__node *nd = &tp->nodes[i];
        if (!w->live[i] || !w->dep[i]) continue;
        if (!nd->def->vjp_graph)
            return tg__refuse(tp, TG_ERR_STATE,
                              "grad: %s (node %zu) cannot be differentiated twice: its "
                              "tg_op_def has no vjp_graph, which create_graph needs",
                              nd->def->name ? nd->def->name : "custom", i);
        if ((size_t)nd->n_in > n_in_max) n_in_max = (size_t)nd->n_in;
        for (int j = 0, k; j < nd->n_in; j++) {
            const tg_tensor *x = nd->in[j];
            if (tg__wanted(tp, w->dep, n, wrt, n_wrt, x, &k) && x->tape) w->live[x->node - 1] = true;
        }
    }
    w->need = tg__calloc(n_in_max, sizeof *w->need);
    w->gin = tg__calloc(n_in_max, sizeof *w->gin);
    if (!w->need || !w->gin) return tg__refuse(tp, TG_ERR_NOMEM, "grad: out of memory");
    return TG_OK;
}

static tg_status run_graph(tg_tape *tp, graph_sweep *w, tg_tensor *out, tg_tensor *seed,
                           tg_tensor *const *wrt, int n_wrt)
{
    size_t n = w->n;
    w->acc[out->node - 1] = seed;
    for (size_t i = n; i-- > 0;) {
        tg__node node = tp->nodes[i], *nd = &node; /* a copy: recording moves tp->nodes */
        if (!w->live[i] || !w->dep[i] || !w->acc[i]) continue;
        name_grad(w->acc[i], nd->out, n);
        for (int j = 0, k; j < nd->n_in; j++) {
            w->need[j] = tg__wanted(tp, w->dep, n, wrt, n_wrt, nd->in[j], &k);
            w->gin[j] = NULL;
        }
        tg_status s =
            nd->def->vjp_graph(tp, w->acc[i], nd->out, nd->in, w->need, w->gin, nd->n_in, nd->ctx);
        if (tp->status) return tp->status;
        if (s)
            return tg__fail(tp, s, "%s: vjp_graph failed at node %zu: %s",
                            nd->def->name ? nd->def->name : "custom", i, tg_status_str(s));
        for (int j = 0, k; j < nd->n_in; j++) {
            tg_tensor *x = nd->in[j], *g = w->gin[j];
            if (!g || !w->need[j]) continue;
            if ((s = check_contribution(tp, nd, i, j, g))) return s;
            tg__wanted(tp, w->dep, n, wrt, n_wrt, x, &k);
            accumulate(tp, x->tape ? &w->acc[x->node - 1] : &w->wacc[k], g);
        }
        if (tp->status) return tp->status;
    }
    return TG_OK;
}

/* grads[i] for every wrt after the recorded sweep: a tensor recorded by this
 * call (a copy where the gradient is an older tensor, such as the seed),
 * zeros where out does not depend on wrt[i]. */
static tg_status graph_results(tg_tape *tp, graph_sweep *w, tg_tensor *const *wrt, int n_wrt,
                               tg_tensor **grads)
{
    for (int i = 0; i < n_wrt; i++) {
        tg_tensor *x = wrt[i], *g = NULL;
        int k;
        if (x->tape) {
            g = x->node && x->node <= w->n ? w->acc[x->node - 1] : NULL;
        } else {
            tg__wanted(tp, w->dep, w->n, wrt, n_wrt, x, &k);
            g = w->wacc[k];
        }
        if (!g) g = tg_full_like(tp, x, 0.0);
        else if (older(g, w->n)) g = tg_scale(tp, g, 1.0);
        if (!g) return tp->status;
        name_grad(g, x, w->n);
        grads[i] = g;
    }
    return TG_OK;
}

static tg_status grad_graph(tg_tape *tp, tg_tensor *out, const tg_tensor *seed,
                            tg_tensor *const *wrt, int n_wrt, tg_tensor **grads)
{
    graph_sweep w = {.n = tp->n_nodes};
    tg_status s = TG_OK;
    if (out->tape && (s = plan_graph(tp, &w, out, wrt, n_wrt))) goto done;
    tg_tensor *sd = seed ? (tg_tensor *)seed : tg_full_like(tp, out, 1.0);
    if (!sd) goto done;
    if (!out->tape) { /* a leaf: its own gradient is the seed, every other wrt's zero */
        for (int i = 0; i < n_wrt && !tp->status; i++) {
            grads[i] = wrt[i] == out ? (sd == seed ? tg_scale(tp, sd, 1.0) : sd)
                                     : tg_full_like(tp, wrt[i], 0.0);
            if (grads[i]) name_grad(grads[i], wrt[i], w.n);
        }
        s = tp->status;
        goto done;
    }
    if (!(s = run_graph(tp, &w, out, sd, wrt, n_wrt))) s = graph_results(tp, &w, wrt, n_wrt, grads);
done:
    for (size_t i = w.n; i < tp->n_nodes; i++) /* for explain and DOT: gradient nodes */
        tp->nodes[i].out->grad_node = true;
    graph_sweep_free(&w);
    return s ? s : tp->status;
}

/* ====== Without create_graph: the fused kernels, into fresh tensors ====== */

static tg_status grad_values(tg_tape *tp, tg_tensor *out, const tg_tensor *seed,
                             tg_tensor *const *wrt, int n_wrt, tg_tensor **grads)
{
    size_t n = tp->n_nodes;
    tg_tensor **res = tg__calloc((size_t)n_wrt, sizeof *res);
    bool *dep = tg__deps(tp, n, wrt, n_wrt);
    tg_status s = TG_OK;
    if (!res || !dep) {
        s = tg__refuse(tp, TG_ERR_NOMEM, "grad: out of memory");
        goto done;
    }
    for (int i = 0; i < n_wrt; i++) {
        if (!(res[i] = tg__tensor_arena(tp, wrt[i]->dtype, wrt[i]->rank, wrt[i]->shape))) {
            s = tg__fail(tp, TG_ERR_NOMEM, "grad: out of memory for a gradient");
            goto done;
        }
    }
    size_t bytes = (size_t)out->numel * tg__dtype_size(out->dtype);
    if (!out->tape) { /* a leaf: its own gradient is the seed, every other wrt's zero */
        for (int i = 0; i < n_wrt; i++)
            if (wrt[i] == out) memcpy(res[i]->data, seed->data, bytes);
    } else {
        tg__grad_req req = {wrt, n_wrt, dep, res};
        if ((s = tg__sweep(tp, out, seed, &req))) goto done;
        for (int i = 0; i < n_wrt; i++) /* a wrt of the tape: its .grad */
            if (wrt[i]->tape && wrt[i]->reached && wrt[i]->grad)
                memcpy(res[i]->data, wrt[i]->grad->data,
                       (size_t)wrt[i]->numel * tg__dtype_size(wrt[i]->dtype));
    }
    memcpy(grads, res, (size_t)n_wrt * sizeof *grads);
done:
    free(res);
    free(dep);
    return s;
}

/* ====== tg_grad ====== */

tg_status tg_grad(tg_tape *tp, tg_tensor *out, const tg_tensor *seed, tg_tensor *const *wrt,
                  int n_wrt, tg_tensor **grads, bool create_graph)
{
    if (!tp) return TG_ERR_ARG;
    if (tp->status) return tp->status;
    tp->msg[0] = '\0';
    if (!grads) return tg__refuse(tp, TG_ERR_ARG, "grad: grads is NULL");
    tg_status s = check_wrt(tp, "grad", wrt, n_wrt);
    if (s) return s;
    /* The seed 1 of a one-element out, on the stack for the check and the fused sweep. */
    double one64 = 1.0;
    float one32 = 1.0f;
    tg_tensor one = {.numel = 1};
    if (!seed && out) {
        if (out->numel != 1) {
            char s0[TG__SHAPE_STR_MAX];
            return tg__refuse(tp, TG_ERR_SHAPE,
                              "grad: a NULL seed needs an output of one element, got %s",
                              tg__shape_str(out, s0, sizeof s0));
        }
        one.dtype = out->dtype, one.rank = out->rank;
        one.data = out->dtype == TG_F64 ? (void *)&one64 : (void *)&one32;
        memcpy(one.shape, out->shape, sizeof one.shape);
    }
    if ((s = tg__check_seed(tp, "grad", out, seed ? seed : &one))) return s;
    if (create_graph && seed && seed->is_grad)
        return tg__refuse(tp, TG_ERR_ARG,
                          "grad: with create_graph the seed is recorded as an op input, so it "
                          "cannot be a gradient buffer, which every backward rewrites");
    return create_graph ? grad_graph(tp, out, seed, wrt, n_wrt, grads)
                        : grad_values(tp, out, seed ? seed : &one, wrt, n_wrt, grads);
}

/* ====== tg_jvp: forward mode from two reverse sweeps ====== */

tg_status tg_jvp(tg_tape *tp, tg_tensor *out, tg_tensor *const *wrt, int n_wrt,
                 tg_tensor *const *tangents, tg_tensor **out_tangent)
{
    if (!tp) return TG_ERR_ARG;
    if (tp->status) return tp->status;
    tp->msg[0] = '\0';
    char s0[TG__SHAPE_STR_MAX], s1[TG__SHAPE_STR_MAX];
    tg_status s = check_wrt(tp, "jvp", wrt, n_wrt);
    if (s) return s;
    if (!out || !tangents || !out_tangent)
        return tg__refuse(tp, TG_ERR_ARG, "jvp: %s is NULL",
                          !out ? "out" : !tangents ? "tangents" : "out_tangent");
    const char *why;
    if ((why = tg__misuse_of(tp, out))) return tg__refuse(tp, TG_ERR_STATE, "jvp: out %s", why);
    for (int i = 0; i < n_wrt; i++) {
        const tg_tensor *t = tangents[i];
        if (!t) return tg__refuse(tp, TG_ERR_ARG, "jvp: tangent %d is NULL", i);
        if ((why = tg__misuse_of(tp, t)))
            return tg__refuse(tp, TG_ERR_STATE, "jvp: tangent %d %s", i, why);
        if (t->is_grad)
            return tg__refuse(tp, TG_ERR_ARG, "jvp: tangent %d is a gradient buffer", i);
        if (t->dtype != wrt[i]->dtype)
            return tg__refuse(tp, TG_ERR_DTYPE, "jvp: tangent %d %s is %s, wrt %d %s is %s", i,
                              tg__shape_str(t, s0, sizeof s0), tg__dt(t->dtype)->name, i,
                              tg__shape_str(wrt[i], s1, sizeof s1),
                              tg__dt(wrt[i]->dtype)->name);
        if (!tg__same_shape(t, wrt[i]))
            return tg__refuse(tp, TG_ERR_SHAPE, "jvp: tangent %d %s does not match wrt %d %s", i,
                              tg__shape_str(t, s0, sizeof s0), i,
                              tg__shape_str(wrt[i], s1, sizeof s1));
    }
    if (!tg_tensor_requires_grad(out)) { /* depends on no wrt: the tangent is zero */
        *out_tangent = tg_full_like(tp, out, 0.0);
        return tp->status;
    }
    /* J(u) = d<u, out>/d wrt is linear in u, so <J(u), t> = <u, J t> and its
     * gradient with respect to u is the tangent J t, whatever u is. */
    tg_tensor *u = tg_full_like(tp, out, 0.0);
    if (!u) return tp->status;
    u->requires_grad = true;
    tg_tensor **g = tg__calloc((size_t)n_wrt, sizeof *g);
    if (!g) return tg__refuse(tp, TG_ERR_NOMEM, "jvp: out of memory");
    s = tg_grad(tp, out, u, wrt, n_wrt, g, true);
    tg_tensor *dot = NULL;
    for (int i = 0; !s && i < n_wrt && !tp->status; i++) {
        tg_tensor *term = tg_sum(tp, tg_mul(tp, g[i], tangents[i]));
        dot = dot ? tg_add(tp, dot, term) : term;
    }
    free(g);
    if (s) return s;
    if (!dot) return tp->status;
    if (!dot->requires_grad) { /* every J(u) was a constant zero */
        *out_tangent = tg_full_like(tp, out, 0.0);
        return tp->status;
    }
    return tg_grad(tp, dot, NULL, &u, 1, out_tangent, true);
}

/* ====== Helpers for the ops' vjp_graph ====== */

tg_tensor *tg__sum_to(tg_tape *tp, tg_tensor *g, const tg_tensor *like)
{
    if (!g) return NULL;
    int off = g->rank - like->rank;
    bool reduced = false;
    for (int d = 0; d < g->rank && g; d++) {
        int64_t want = d < off ? 1 : like->shape[d - off];
        if (want == 1 && g->shape[d] != 1) {
            g = tg_sum_axis(tp, g, d, true);
            reduced = true;
        }
    }
    if (!g || (!reduced && g->rank == like->rank)) return g;
    return tg_reshape(tp, g, like->rank, like->shape);
}

/* ====== ONNX forms ====== */

/* full_like: the value expanded to x's shape, read at run time so a
 * symbolic batch stays symbolic. */
static TG__ONNX_HOOK(full_like_onnx)
{
    (void)n_in;
    const char *shape = tg__onnx_out(tg__onnx_op(g, "Shape", NULL, 1, tg_onnx_value(g, in[0])));
    const char *v = tg_onnx_scalar(g, out->dtype, *(const double *)ctx);
    tg__onnx_op(g, "Expand", tg_onnx_value(g, out), 2, v, shape);
    return tg_onnx_status(g);
}
