/*
 * Shape and indexing ops: reshape, permute, slice, concat, stack, expand,
 * pad, index_select, embedding and where. Results are copies, never views,
 * so every other op can keep assuming contiguous row-major data.
 *
 * All of them but where only move elements, so one kernel serves them: a
 * strided copy between two views of one index space of up to four dims, an
 * odometer over the outer dims around a plain inner loop (a memcpy when both
 * views are contiguous there). The forward copies from the input's view into
 * the output's; the VJP moves the same elements back, walking them in the
 * input's order, and adds. Plans are
 * made when the op is recorded and simplified then (size-1 dims dropped,
 * dims that run on contiguously in both views merged), so a reshape is one
 * memcpy and a slice of whole rows one memcpy per block of rows.
 *
 * Where a VJP sums several elements into one (expand's stretched axes,
 * repeated indices, where's broadcast operands), F32 gradients are summed in
 * a double buffer made at recording and added to the gradient once.
 * To add an op: forward and vjp side by side, a tg_op_def, a constructor.
 */
#include "internal.h"

#include <string.h>

/* The ONNX forms of the ops, at the end of the file. */
static TG__ONNX_HOOK(reshape_onnx);
static TG__ONNX_HOOK(permute_onnx);
static TG__ONNX_HOOK(slice_onnx);
static TG__ONNX_HOOK(expand_onnx);
static TG__ONNX_HOOK(pad_onnx);
static TG__ONNX_HOOK(concat_onnx);
static TG__ONNX_HOOK(stack_onnx);
static TG__ONNX_HOOK(index_select_onnx);
static TG__ONNX_HOOK(embedding_onnx);
static TG__ONNX_HOOK(where_onnx);

/* ====== The strided copy ====== */

/* One index space walked in row-major order (dim[0] outermost) with two
 * element strides per dim: sd in the destination of the forward copy (the
 * output), ss in its source (an input). n counts the elements; with n == 0
 * nothing moves and the other fields are unset. */
typedef struct copy_plan {
    int rank;
    int64_t n;
    int64_t dim[TG_MAX_RANK];
    int64_t sd[TG_MAX_RANK], ss[TG_MAX_RANK];
} copy_plan;

/* Builds p from 'rank' dims with their strides in both views. Size-1 dims
 * are dropped and a dim is merged into the one inside it when both views run
 * on contiguously across the boundary. */
static void plan_make(copy_plan *p, int rank, const int64_t *dim, const int64_t *sd,
                      const int64_t *ss)
{
    p->rank = 0;
    p->n = 0;
    for (int d = 0; d < rank; d++)
        if (dim[d] == 0) return; /* the other dims may be huge: never multiply them */
    p->n = 1;
    for (int d = 0; d < rank; d++) {
        p->n *= dim[d];
        if (dim[d] == 1) continue;
        int k = p->rank - 1;
        if (k >= 0 && p->sd[k] == sd[d] * dim[d] && p->ss[k] == ss[d] * dim[d]) {
            p->dim[k] *= dim[d], p->sd[k] = sd[d], p->ss[k] = ss[d];
            continue;
        }
        p->dim[p->rank] = dim[d], p->sd[p->rank] = sd[d], p->ss[p->rank] = ss[d];
        p->rank++;
    }
}

/* The plan of the VJP, which walks p's elements in the order of the input's
 * layout: dims by descending input stride, so the adds into dX run on
 * contiguously innermost (a permute's VJP then writes in order and reads
 * with a stride, rather than the reverse), and stride-0 dims (expand's
 * stretched ones) outermost, so the inner loop still streams while dX's
 * block is summed over them. */
static void plan_back(const copy_plan *p, copy_plan *q)
{
    int order[TG_MAX_RANK];
    for (int d = 0; d < p->rank; d++)
        order[d] = d;
    for (int i = 1; i < p->rank; i++) /* insertion sort of at most four dims, stable */
        for (int k = i; k > 0; k--) {
            int64_t a = p->ss[order[k - 1]], b = p->ss[order[k]];
            if ((a ? a : INT64_MAX) >= (b ? b : INT64_MAX)) break;
            int t = order[k];
            order[k] = order[k - 1], order[k - 1] = t;
        }
    int64_t dim[TG_MAX_RANK], sd[TG_MAX_RANK], ss[TG_MAX_RANK];
    for (int d = 0; d < p->rank; d++)
        dim[d] = p->dim[order[d]], sd[d] = p->sd[order[d]], ss[d] = p->ss[order[d]];
    plan_make(q, p->rank, dim, sd, ss);
    q->n = p->n;
}

/* Row-major element strides of a shape; all 0 for an empty one, whose
 * dims may be too large to multiply and whose plans move nothing, and for
 * one too large to exist, which tg_custom refuses before anything moves. */
static void strides_of(int rank, const int64_t *shape, int64_t *st)
{
    bool empty = tg__numel(rank, shape) <= 0;
    int64_t s = 1;
    for (int d = rank - 1; d >= 0; d--) {
        st[d] = empty ? 0 : s;
        if (!empty) s *= shape[d];
    }
}

/* One innermost run of n elements: 'to' at stride a, 'from' at stride b. The two never
 * overlap (an output and an input, or two gradients), hence restrict. */
typedef void (*run_fn)(void *to, void *from, int64_t n, int64_t a, int64_t b);

/* to = from, one dtype. */
#define SET_RUN(T)                                                               \
    static void set_##T(void *to_, void *from_, int64_t n, int64_t a, int64_t b) \
    {                                                                            \
        T *to = to_;                                                             \
        const T *from = from_;                                                   \
        if (a == 1 && b == 1)                                                    \
            memcpy(to, from, (size_t)n * sizeof(T));                             \
        else                                                                     \
            for (int64_t i = 0; i < n; i++)                                      \
                to[i * a] = from[i * b];                                         \
    }
/* to += from; TT is double when F32 terms are summed in a double buffer. */
#define ADD_RUN(name, TT, TF)                                                 \
    static void name(void *to_, void *from_, int64_t n, int64_t a, int64_t b) \
    {                                                                         \
        TT *restrict to = to_;                                                \
        const TF *restrict from = from_;                                      \
        if (a == 1 && b == 1)                                                 \
            for (int64_t i = 0; i < n; i++)                                   \
                to[i] += (TT)from[i];                                         \
        else                                                                  \
            for (int64_t i = 0; i < n; i++)                                   \
                to[i * a] += (TT)from[i * b];                                 \
    }

SET_RUN(float)
SET_RUN(double)
ADD_RUN(add_float, float, float)
ADD_RUN(add_double, double, double)
ADD_RUN(add_float_into_double, double, float)

/* The F32 gradient += its double sums, rounded once; the sums go back to 0
 * so the buffer is clean for the next sweep (a repeated index then adds 0). */
static void flush_double_into_float(void *to_, void *from_, int64_t n, int64_t a, int64_t b)
{
    float *restrict to = to_;
    double *restrict from = from_;
    if (a == 1 && b == 1) {
        for (int64_t i = 0; i < n; i++)
            to[i] += (float)from[i];
        memset(from, 0, (size_t)n * sizeof *from);
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        to[i * a] += (float)from[i * b];
        from[i * b] = 0;
    }
}

/* Runs fn over every innermost run of p: 'to' (elements of tsz bytes) walked
 * with strides st, 'from' (fsz bytes) with sf; st and sf are p's sd and ss,
 * or ss and sd for a VJP, which copies back. */
static void walk(const copy_plan *p, void *to, size_t tsz, const int64_t *st, void *from,
                 size_t fsz, const int64_t *sf, run_fn fn)
{
    if (p->n == 0) return;
    int r = p->rank;
    int64_t n = r ? p->dim[r - 1] : 1, a = r ? st[r - 1] : 0, b = r ? sf[r - 1] : 0;
    int64_t idx[TG_MAX_RANK] = {0}, it = 0, jf = 0;
    for (int64_t k = 0; k < p->n; k += n) {
        fn((char *)to + (size_t)it * tsz, (char *)from + (size_t)jf * fsz, n, a, b);
        for (int d = r - 2; d >= 0; d--) { /* odometer over the outer dims */
            it += st[d], jf += sf[d];
            if (++idx[d] < p->dim[d]) break;
            it -= st[d] * p->dim[d], jf -= sf[d] * p->dim[d];
            idx[d] = 0;
        }
    }
}

/* The forward copy: the output's view of p (at element offset od) = the
 * input's (at os). */
static tg_status copy_forward(const copy_plan *p, tg_tensor *out, int64_t od, const tg_tensor *x,
                              int64_t os)
{
    size_t esz = tg__dtype_size(out->dtype);
    run_fn fn;
#define PICK_SET(T) fn = set_##T
    TG__FLOAT_SWITCH(out->dtype, PICK_SET, TG_ERR_DTYPE);
#undef PICK_SET
    walk(p, (char *)out->data + (size_t)od * esz, esz, p->sd, (char *)x->data + (size_t)os * esz,
         esz, p->ss, fn);
    return TG_OK;
}

/* The VJP of copy_forward, given p's plan_back: gx's view (at os) += dG's (at od). */
static tg_status copy_vjp(const copy_plan *p, tg_tensor *gx, int64_t os, const tg_tensor *gout,
                          int64_t od)
{
    size_t esz = tg__dtype_size(gout->dtype);
    run_fn fn;
#define PICK_ADD(T) fn = add_##T
    TG__FLOAT_SWITCH(gout->dtype, PICK_ADD, TG_ERR_DTYPE);
#undef PICK_ADD
    walk(p, (char *)gx->data + (size_t)os * esz, esz, p->ss, (char *)gout->data + (size_t)od * esz,
         esz, p->sd, fn);
    return TG_OK;
}

/* For the transposed ops of the recorded VJPs: 'to' (from element ot, with
 * strides st) = 'from' (from of, strides sf) over p's elements, or += with
 * 'add'; st and sf are p's sd and ss in either order. */
static tg_status move(const copy_plan *p, tg_tensor *to, int64_t ot, const int64_t *st,
                      const tg_tensor *from, int64_t of, const int64_t *sf, bool add)
{
    size_t esz = tg__dtype_size(to->dtype);
    run_fn fn;
#define PICK_RUN(T) fn = add ? add_##T : set_##T
    TG__FLOAT_SWITCH(to->dtype, PICK_RUN, TG_ERR_DTYPE);
#undef PICK_RUN
    walk(p, (char *)to->data + (size_t)ot * esz, esz, st, (char *)from->data + (size_t)of * esz,
         esz, sf, fn);
    return TG_OK;
}

/* out = 0, before a transposed op adds its terms in. */
static void zero(tg_tensor *out)
{
    if (out->numel) memset(out->data, 0, (size_t)out->numel * tg__dtype_size(out->dtype));
}

/* Messages name the op and every operand's shape. */
static tg_tensor *fail1(tg_tape *tp, tg_status s, const char *op, const char *what,
                        const tg_tensor *x)
{
    char sx[TG__SHAPE_STR_MAX];
    tg__fail(tp, s, "%s: %s; x is %s", op, what, tg__shape_str(x, sx, sizeof sx));
    return NULL;
}

/* An axis in [-rank, rank) counted from the end when negative; -1 when out of range. */
static int norm_axis(int axis, int rank)
{
    if (axis < -rank || axis >= rank) return -1;
    return axis < 0 ? axis + rank : axis;
}

/* ====== One input viewed: reshape, permute, slice, expand ======
 * G = the input's view of p at offset os, copied out contiguously;
 * dX (its view) += dG. expand's view repeats elements (stride 0), so its VJP
 * sums: F32 terms go through 'acc', x's numel doubles, then into dX once. */

typedef struct view_ctx {
    copy_plan p, back;     /* the forward's plan and the VJP's (plan_back) */
    int64_t os;            /* where the view starts in the input */
    double *acc;           /* expand in F32 only */
    int perm[TG_MAX_RANK]; /* permute: the axes, counted from 0 */
} view_ctx;

static tg_status view_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in;
    const view_ctx *c = ctx;
    return copy_forward(&c->p, out, 0, in[0], c->os);
}

static tg_status view_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                          tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)in, (void)n_in;
    const view_ctx *c = ctx;
    if (!gin[0]) return TG_OK;
    if (!c->acc) return copy_vjp(&c->back, gin[0], c->os, gout, 0);
    /* dX += Σ dG over the stretched axes, summed in double; acc starts and ends at 0. */
    walk(&c->back, c->acc, sizeof(double), c->back.ss, gout->data, sizeof(float), c->back.sd,
         add_float_into_double);
    flush_double_into_float(gin[0]->data, c->acc, gin[0]->numel, 1, 1);
    return TG_OK;
}

/* The recorded VJPs. reshape's is a reshape back and permute's the inverse
 * permute. slice's and expand's are the transposed ops below, recorded with
 * the op's own ctx: dX = dG put into zeros of X's shape (slice_scatter) or
 * summed over the stretched axes (sum_to), the first-order VJP as an op,
 * whose own recorded VJP is the slice or expand again with that ctx. */
static tg_status reshape_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                                   const bool *need, tg_tensor **gin, int n_in, void *ctx);
static tg_status permute_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                                   const bool *need, tg_tensor **gin, int n_in, void *ctx);
static tg_status slice_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                                 const bool *need, tg_tensor **gin, int n_in, void *ctx);
static tg_status expand_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                                  const bool *need, tg_tensor **gin, int n_in, void *ctx);
static tg_status slice_scatter_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out,
                                         tg_tensor *const *in, const bool *need, tg_tensor **gin,
                                         int n_in, void *ctx);
static tg_status sum_to_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                                  const bool *need, tg_tensor **gin, int n_in, void *ctx);

/* The transposed ops: out = 0, then the view's VJP adds dG (input 0) into
 * it; their VJP takes the view of the gradient again. */
static tg_status unview_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    zero(out);
    return view_vjp(in[0], out, in, &out, n_in, ctx);
}

static tg_status unview_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                            tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)in, (void)n_in;
    const view_ctx *c = ctx;
    return gin[0] ? move(&c->p, gin[0], 0, c->p.sd, gout, c->os, c->p.ss, true) : TG_OK;
}

static const tg_op_def reshape_def = {
    .name = "reshape",
    .forward = view_forward,
    .vjp = view_vjp,
    .vjp_graph = reshape_vjp_graph,
    .rules = (const char *const[]){"{dy:s} reshaped to {0:shape}", NULL},
    .onnx = reshape_onnx};
static const tg_op_def permute_def = {
    .name = "permute",
    .forward = view_forward,
    .vjp = view_vjp,
    .vjp_graph = permute_vjp_graph,
    .rules = (const char *const[]){"{dy:s} permuted back to {0:shape}", NULL},
    .onnx = permute_onnx};
static const tg_op_def slice_def = {
    .name = "slice",
    .forward = view_forward,
    .vjp = view_vjp,
    .vjp_graph = slice_vjp_graph,
    .rules = (const char *const[]){"{dy:s} put back into zeros of {0:shape}", NULL},
    .onnx = slice_onnx};
static const tg_op_def expand_def = {
    .name = "expand",
    .forward = view_forward,
    .vjp = view_vjp,
    .vjp_graph = expand_vjp_graph,
    .rules = (const char *const[]){"{dy:s} summed over the stretched axes to {0:shape}", NULL},
    .onnx = expand_onnx};
static const tg_op_def slice_scatter_def = {
    .name = "slice_scatter",
    .forward = unview_forward,
    .vjp = unview_vjp,
    .vjp_graph = slice_scatter_vjp_graph,
    .rules = (const char *const[]){"{dy:s} sliced again to {0:shape}", NULL}};
static const tg_op_def sum_to_def = {
    .name = "sum_to",
    .forward = unview_forward,
    .vjp = unview_vjp,
    .vjp_graph = sum_to_vjp_graph,
    .rules = (const char *const[]){"{dy:s} broadcast to {0:shape}", NULL}};

/* <from>_vjp_graph records <to>_def on dy with X's shape and the same ctx. */
#define VIEW_VJP_GRAPH(from, to)                                                                \
    static tg_status from##_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out,               \
                                      tg_tensor *const *in, const bool *need, tg_tensor **gin,  \
                                      int n_in, void *ctx)                                      \
    {                                                                                           \
        (void)out, (void)n_in;                                                                  \
        if (need[0]) gin[0] = tg_custom(tp, &to##_def, &dy, 1, in[0]->rank, in[0]->shape, ctx); \
        return tg_tape_status(tp);                                                              \
    }
VIEW_VJP_GRAPH(slice, slice_scatter)
VIEW_VJP_GRAPH(slice_scatter, slice)
VIEW_VJP_GRAPH(expand, sum_to)
VIEW_VJP_GRAPH(sum_to, expand)
#undef VIEW_VJP_GRAPH

static tg_status reshape_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                                   const bool *need, tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)n_in, (void)ctx;
    if (need[0]) gin[0] = tg_reshape(tp, dy, in[0]->rank, in[0]->shape);
    return tg_tape_status(tp);
}

static tg_status permute_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                                   const bool *need, tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)n_in;
    const view_ctx *c = ctx;
    int inv[TG_MAX_RANK] = {0};
    for (int k = 0; k < in[0]->rank; k++)
        inv[c->perm[k]] = k;
    if (need[0]) gin[0] = tg_permute(tp, dy, inv);
    return tg_tape_status(tp);
}

/* The plan of a contiguous output of 'shape' read from an input view with strides ss. */
static void out_plan(copy_plan *p, int rank, const int64_t *shape, const int64_t *ss)
{
    int64_t sd[TG_MAX_RANK];
    strides_of(rank, shape, sd);
    plan_make(p, rank, shape, sd, ss);
}

/* Records def on x with the plan p reading x from offset os; 'sums' when the
 * VJP adds several elements of dG into one of dX. */
static tg_tensor *record_view(tg_tape *tp, const tg_op_def *def, tg_tensor *x, int rank,
                              const int64_t *shape, const copy_plan *p, int64_t os, bool sums,
                              const int *perm)
{
    view_ctx *ctx = tg__tape_copy(tp, &(view_ctx){.p = *p, .os = os}, sizeof(view_ctx));
    if (!ctx) return NULL;
    if (perm) memcpy(ctx->perm, perm, (size_t)x->rank * sizeof *perm);
    plan_back(p, &ctx->back);
    if (sums && x->dtype == TG_F32 &&
        !(ctx->acc = tg__arena_alloc(&tp->arena, (size_t)x->numel * sizeof(double)))) {
        fail1(tp, TG_ERR_NOMEM, def->name, "out of memory for the gradient's sums", x);
        return NULL;
    }
    return tg_custom(tp, def, &x, 1, rank, shape, ctx);
}

/* ====== reshape: G = X in row-major order with a new shape;  dX += dG reshaped ====== */

tg_tensor *tg_reshape(tg_tape *tp, tg_tensor *x, int rank, const int64_t *shape)
{
    if (!tg__guard(tp, "reshape", 1, &x)) return NULL;
    char sx[TG__SHAPE_STR_MAX], what[160];
    if (rank < 0 || rank > TG_MAX_RANK || (rank > 0 && !shape)) {
        snprintf(what, sizeof what, "rank %d%s is not a shape of rank 0..%d", rank,
                 rank > 0 && !shape ? " with no dims" : "", TG_MAX_RANK);
        return fail1(tp, TG_ERR_ARG, "reshape", what, x);
    }
    int64_t out[TG_MAX_RANK];
    int infer = -1;
    for (int i = 0; i < rank; i++) {
        out[i] = shape[i];
        if (shape[i] >= 0) continue;
        if (shape[i] < -1 || infer >= 0) {
            if (shape[i] < -1)
                snprintf(what, sizeof what, "dim %d is %lld; dims are >= 0, or -1 to infer one", i,
                         (long long)shape[i]);
            else
                snprintf(what, sizeof what, "dim %d is a second -1; only one dim is inferred", i);
            return fail1(tp, TG_ERR_ARG, "reshape", what, x);
        }
        infer = i;
        out[i] = 1;
    }
    /* The product of the given dims; -1 when it overflows, which no tensor can match. */
    int64_t known = tg__numel(rank, out);
    char req[TG__SHAPE_STR_MAX];
    tg_tensor want = {.rank = rank};
    for (int i = 0; i < rank; i++)
        want.shape[i] = shape[i];
    tg__shape_str(&want, req, sizeof req);
    if (infer >= 0 && known == 0) {
        snprintf(what, sizeof what,
                 "the -1 in %s could be any size (the other dims hold no elements)", req);
        return fail1(tp, TG_ERR_SHAPE, "reshape", what, x);
    }
    if (infer >= 0 && known > 0 && x->numel % known == 0) {
        out[infer] = x->numel / known;
        known = x->numel;
    }
    if (known != x->numel) {
        tg__fail(tp, TG_ERR_SHAPE, "reshape: %s holds %lld elements, %s does not fit them",
                 tg__shape_str(x, sx, sizeof sx), (long long)x->numel, req);
        return NULL;
    }
    /* Row-major order is kept, so the whole copy is one contiguous run. */
    copy_plan p;
    int64_t one = 1, n = x->numel;
    plan_make(&p, 1, &n, &one, &one);
    return record_view(tp, &reshape_def, x, rank, out, &p, 0, false, NULL);
}

/* ====== permute: G[i_0..] = X with axis perm[k] of X as axis k;  dX += dG permuted back ====== */

tg_tensor *tg_permute(tg_tape *tp, tg_tensor *x, const int *perm)
{
    if (!tg__guard(tp, "permute", 1, &x)) return NULL;
    char what[160];
    if (x->rank > 0 && !perm) return fail1(tp, TG_ERR_ARG, "permute", "perm is NULL", x);
    int64_t xs[TG_MAX_RANK], shape[TG_MAX_RANK], ss[TG_MAX_RANK];
    strides_of(x->rank, x->shape, xs);
    bool seen[TG_MAX_RANK] = {false};
    int axes[TG_MAX_RANK] = {0};
    for (int k = 0; k < x->rank; k++) {
        int ax = axes[k] = norm_axis(perm[k], x->rank);
        if (ax < 0 || seen[ax]) {
            snprintf(what, sizeof what, "perm[%d] = %d is %s", k, perm[k],
                     ax < 0 ? "out of range" : "repeated");
            return fail1(tp, TG_ERR_ARG, "permute", what, x);
        }
        seen[ax] = true;
        shape[k] = x->shape[ax], ss[k] = xs[ax];
    }
    copy_plan p;
    out_plan(&p, x->rank, shape, ss);
    return record_view(tp, &permute_def, x, x->rank, shape, &p, 0, false, axes);
}

/* ====== slice: G = X[..., start:stop:step, ...];  dX[..., start:stop:step, ...] += dG ====== */

/* Python's rule for a slice bound of a dim of n with step >= 1: negative
 * counts from the end, then clamped to [0, n]. */
static int64_t slice_bound(int64_t v, int64_t n)
{
    if (v < 0) v = v < -n ? 0 : v + n;
    return v > n ? n : v;
}

tg_tensor *tg_slice(tg_tape *tp, tg_tensor *x, int axis, int64_t start, int64_t stop, int64_t step)
{
    if (!tg__guard(tp, "slice", 1, &x)) return NULL;
    char what[160];
    int ax = norm_axis(axis, x->rank);
    if (ax < 0) {
        snprintf(what, sizeof what, "axis %d out of range", axis);
        return fail1(tp, TG_ERR_ARG, "slice", what, x);
    }
    if (step < 1) {
        snprintf(what, sizeof what, "step %lld must be >= 1", (long long)step);
        return fail1(tp, TG_ERR_ARG, "slice", what, x);
    }
    int64_t n = x->shape[ax], b = slice_bound(start, n), e = slice_bound(stop, n);
    int64_t len = e > b ? (e - b - 1) / step + 1 : 0;
    int64_t shape[TG_MAX_RANK], ss[TG_MAX_RANK] = {0};
    strides_of(x->rank, x->shape, ss);
    memcpy(shape, x->shape, sizeof shape);
    shape[ax] = len;
    /* Only a slice of two or more elements steps: step * stride stays below x's numel then. */
    int64_t os = b * ss[ax];
    ss[ax] = len > 1 ? step * ss[ax] : 0;
    copy_plan p;
    out_plan(&p, x->rank, shape, ss);
    return record_view(tp, &slice_def, x, x->rank, shape, &p, p.n ? os : 0, false, NULL);
}

/* ====== expand: G = X broadcast to a shape;  dX += Σ dG over the stretched axes ====== */

tg_tensor *tg_expand(tg_tape *tp, tg_tensor *x, int rank, const int64_t *shape)
{
    if (!tg__guard(tp, "expand", 1, &x)) return NULL;
    char what[200], req[TG__SHAPE_STR_MAX];
    if (rank < x->rank || rank > TG_MAX_RANK || (rank > 0 && !shape)) {
        snprintf(what, sizeof what, "rank %d%s; the target needs rank %d..%d", rank,
                 rank > 0 && !shape ? " with no dims" : "", x->rank, TG_MAX_RANK);
        return fail1(tp, TG_ERR_ARG, "expand", what, x);
    }
    tg_tensor want = {.rank = rank};
    for (int i = 0; i < rank; i++)
        want.shape[i] = shape[i];
    tg__shape_str(&want, req, sizeof req);
    int64_t xs[TG_MAX_RANK], out[TG_MAX_RANK], ss[TG_MAX_RANK];
    strides_of(x->rank, x->shape, xs);
    int lead = rank - x->rank; /* new leading axes, aligned at the right like NumPy */
    for (int d = 0; d < rank; d++) {
        int64_t have = d >= lead ? x->shape[d - lead] : 1;
        out[d] = shape[d] == -1 && d >= lead ? have : shape[d];
        if (out[d] < 0) {
            snprintf(what, sizeof what, "dim %d of %s is %lld (-1 keeps one of x's dims only)", d,
                     req, (long long)shape[d]);
            return fail1(tp, TG_ERR_ARG, "expand", what, x);
        }
        if (have != out[d] && have != 1) {
            snprintf(what, sizeof what, "cannot broadcast to %s: dim %d is %lld, not 1", req, d,
                     (long long)have);
            return fail1(tp, TG_ERR_SHAPE, "expand", what, x);
        }
        ss[d] = d >= lead && have == out[d] ? xs[d - lead] : 0; /* 0: stretched */
    }
    copy_plan p;
    out_plan(&p, rank, out, ss);
    return record_view(tp, &expand_def, x, rank, out, &p, 0, true, NULL);
}

/* ====== pad: G = X with before[i] and after[i] elements of a value around axis i;
 * dX += dG's interior ====== */

typedef struct pad_ctx {
    copy_plan p, back; /* X into G's interior, and its plan_back */
    int64_t od;        /* where the interior starts in G */
    double value;
} pad_ctx;

#define PAD_FILL(T)                              \
    do {                                         \
        T *y = out->data, v = (T)c->value;       \
        for (int64_t i = 0; i < out->numel; i++) \
            y[i] = v;                            \
    } while (0)

static tg_status pad_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in;
    const pad_ctx *c = ctx;
    TG__FLOAT_SWITCH(out->dtype, PAD_FILL, TG_ERR_DTYPE);
    return copy_forward(&c->p, out, c->od, in[0], 0);
}

static tg_status pad_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                         tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)in, (void)n_in;
    const pad_ctx *c = ctx;
    return gin[0] ? copy_vjp(&c->back, gin[0], 0, gout, c->od) : TG_OK;
}

/* The recorded VJP: crop, dX = dG's interior, an op of its own with pad's
 * ctx; crop's recorded VJP is the pad again with the value 0, pad's linear
 * part. */
static tg_status crop_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in;
    const pad_ctx *c = ctx;
    return move(&c->p, out, 0, c->p.ss, in[0], c->od, c->p.sd, false);
}

static tg_status crop_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                          tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)in, (void)n_in;
    const pad_ctx *c = ctx;
    return gin[0] ? move(&c->back, gin[0], c->od, c->back.sd, gout, 0, c->back.ss, true) : TG_OK;
}

static tg_status pad_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                               const bool *need, tg_tensor **gin, int n_in, void *ctx);
static tg_status crop_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                                const bool *need, tg_tensor **gin, int n_in, void *ctx);

static const tg_op_def pad_def = {.name = "pad",
                                  .forward = pad_forward,
                                  .vjp = pad_vjp,
                                  .vjp_graph = pad_vjp_graph,
                                  .rules =
                                      (const char *const[]){"{dy:s} without the padding", NULL},
                                  .onnx = pad_onnx};
static const tg_op_def crop_def = {
    .name = "crop",
    .forward = crop_forward,
    .vjp = crop_vjp,
    .vjp_graph = crop_vjp_graph,
    .rules = (const char *const[]){"{dy:s} padded with zeros to {0:shape}", NULL}};

static tg_status pad_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                               const bool *need, tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)n_in;
    if (need[0]) gin[0] = tg_custom(tp, &crop_def, &dy, 1, in[0]->rank, in[0]->shape, ctx);
    return tg_tape_status(tp);
}

static tg_status crop_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                                const bool *need, tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)n_in;
    if (!need[0]) return tg_tape_status(tp);
    pad_ctx *z = tg__tape_copy(tp, ctx, sizeof *z);
    if (z) z->value = 0;
    if (z) gin[0] = tg_custom(tp, &pad_def, &dy, 1, in[0]->rank, in[0]->shape, z);
    return tg_tape_status(tp);
}

tg_tensor *tg_pad(tg_tape *tp, tg_tensor *x, const int64_t *before, const int64_t *after,
                  double value)
{
    if (!tg__guard(tp, "pad", 1, &x)) return NULL;
    char what[160];
    if (x->rank > 0 && (!before || !after))
        return fail1(tp, TG_ERR_ARG, "pad", before ? "after is NULL" : "before is NULL", x);
    int64_t shape[TG_MAX_RANK], ys[TG_MAX_RANK], xs[TG_MAX_RANK];
    for (int i = 0; i < x->rank; i++) {
        if (before[i] < 0 || after[i] < 0) {
            snprintf(what, sizeof what,
                     "axis %d pads %lld before and %lld after; both must be >= 0", i,
                     (long long)before[i], (long long)after[i]);
            return fail1(tp, TG_ERR_ARG, "pad", what, x);
        }
        if (before[i] > INT64_MAX - x->shape[i] - after[i] || after[i] > INT64_MAX - x->shape[i]) {
            snprintf(what, sizeof what, "axis %d grows past 2^63 elements", i);
            return fail1(tp, TG_ERR_SHAPE, "pad", what, x);
        }
        shape[i] = before[i] + x->shape[i] + after[i];
    }
    strides_of(x->rank, shape, ys);
    strides_of(x->rank, x->shape, xs);
    pad_ctx c = {.value = value};
    plan_make(&c.p, x->rank, x->shape, ys, xs);
    plan_back(&c.p, &c.back);
    for (int i = 0; i < x->rank && c.p.n; i++)
        c.od += before[i] * ys[i];
    pad_ctx *ctx = tg__tape_copy(tp, &c, sizeof c);
    return ctx ? tg_custom(tp, &pad_def, &x, 1, x->rank, shape, ctx) : NULL;
}

/* ====== concat and stack: G = the inputs side by side along an axis;
 * dX_j += its part of dG ======
 * Input j fills a block of G: its own dims at G's strides, from element od.
 * stack is concat along a new axis of size 1 inserted into each input. */

typedef struct join_part {
    copy_plan p, back;
    int64_t od;
} join_part;

typedef struct join_ctx {
    int n;
    int axis;      /* of the output, counted from 0 */
    bool new_axis; /* stack */
    join_part *part;
} join_ctx;

static tg_status join_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    const join_ctx *c = ctx;
    for (int j = 0; j < n_in; j++) {
        tg_status s = copy_forward(&c->part[j].p, out, c->part[j].od, in[j], 0);
        if (s) return s;
    }
    return TG_OK;
}

static tg_status join_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                          tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)in;
    const join_ctx *c = ctx;
    for (int j = 0; j < n_in; j++) {
        if (!gin[j]) continue;
        tg_status s = copy_vjp(&c->part[j].back, gin[j], 0, gout, c->part[j].od);
        if (s) return s;
    }
    return TG_OK;
}

/* The recorded VJP: dX_j = tg_slice of dG along the axis (for stack its
 * index j, reshaped to drop the axis). */
static tg_status join_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                                const bool *need, tg_tensor **gin, int n_in, void *ctx)
{
    (void)out;
    const join_ctx *c = ctx;
    int64_t off = 0;
    for (int j = 0; j < n_in; j++) {
        int64_t len = c->new_axis ? 1 : in[j]->shape[c->axis];
        if (need[j]) {
            tg_tensor *g = tg_slice(tp, dy, c->axis, off, off + len, 1);
            gin[j] = c->new_axis ? tg_reshape(tp, g, in[j]->rank, in[j]->shape) : g;
        }
        off += len;
    }
    return tg_tape_status(tp);
}

/* tg_tape_explain reads rules[j] for input j; one text fits every input, and
 * past the 32nd it falls back to naming the VJP. */
#define JOIN_RULE4(r) r, r, r, r
#define JOIN_RULES(r)                                                                         \
    JOIN_RULE4(r), JOIN_RULE4(r), JOIN_RULE4(r), JOIN_RULE4(r), JOIN_RULE4(r), JOIN_RULE4(r), \
        JOIN_RULE4(r), JOIN_RULE4(r)
static const tg_op_def concat_def = {
    .name = "concat",
    .forward = join_forward,
    .vjp = join_vjp,
    .vjp_graph = join_vjp_graph,
    .rules = (const char *const[]){JOIN_RULES("its block of {dy:s} along the axis"), NULL},
    .onnx = concat_onnx};
static const tg_op_def stack_def = {
    .name = "stack",
    .forward = join_forward,
    .vjp = join_vjp,
    .vjp_graph = join_vjp_graph,
    .rules = (const char *const[]){JOIN_RULES("its slice of {dy:s} along the new axis"), NULL},
    .onnx = stack_onnx};

/* "[2x3], [2x4]": the inputs' shapes, cut short to fit buf. */
static const char *shape_list(tg_tensor *const *xs, int n, char *buf, size_t size)
{
    char s[TG__SHAPE_STR_MAX];
    size_t len = 0;
    buf[0] = '\0';
    for (int j = 0; j < n && len < size; j++) {
        int w = snprintf(buf + len, size - len, "%s%s", j ? ", " : "",
                         tg__shape_str(xs[j], s, sizeof s));
        if (w < 0 || (size_t)w >= size - len) {
            if (size > 4) memcpy(buf + size - 4, "...", 4);
            break;
        }
        len += (size_t)w;
    }
    return buf;
}

static tg_tensor *join_fail(tg_tape *tp, tg_status s, const char *op, const char *what,
                            tg_tensor *const *xs, int n)
{
    char list[160];
    tg__fail(tp, s, "%s: %s; inputs %s", op, what, shape_list(xs, n, list, sizeof list));
    return NULL;
}

/* Shared by concat and stack once the inputs are checked: input j's block of
 * the output (of 'rank' dims) starts at off[j] along 'axis' and has the dims
 * of 'dims[j]' (its own, or with the new axis of 1 for stack). */
static tg_tensor *record_join(tg_tape *tp, const tg_op_def *def, tg_tensor *const *xs, int n,
                              int rank, const int64_t *shape, int axis, bool new_axis)
{
    int64_t ys[TG_MAX_RANK];
    strides_of(rank, shape, ys);
    join_ctx *ctx = tg__tape_copy(tp, &(join_ctx){.n = n, .axis = axis, .new_axis = new_axis},
                                  sizeof(join_ctx));
    if (!ctx) return NULL;
    if (!(ctx->part = tg__arena_alloc(&tp->arena, (size_t)n * sizeof *ctx->part))) {
        join_fail(tp, TG_ERR_NOMEM, def->name, "out of memory for the input plans", xs, n);
        return NULL;
    }
    int64_t off = 0;
    for (int j = 0; j < n; j++) {
        int64_t dims[TG_MAX_RANK], xs_st[TG_MAX_RANK];
        for (int d = 0, k = 0; d < rank; d++)
            dims[d] = new_axis && d == axis ? 1 : xs[j]->shape[k++];
        strides_of(rank, dims, xs_st);
        plan_make(&ctx->part[j].p, rank, dims, ys, xs_st);
        plan_back(&ctx->part[j].p, &ctx->part[j].back);
        ctx->part[j].od = ctx->part[j].p.n ? off * ys[axis] : 0;
        off += dims[axis];
    }
    return tg_custom(tp, def, xs, n, rank, shape, ctx);
}

tg_tensor *tg_concat(tg_tape *tp, tg_tensor *const *xs, int n, int axis)
{
    if (!tp || tp->status) return NULL;
    if (n < 1 || !xs) {
        tg__fail(tp, TG_ERR_ARG, "concat: needs at least one input, got %d", xs ? n : 0);
        return NULL;
    }
    if (!tg__guard(tp, "concat", n, xs)) return NULL;
    char what[96];
    int rank = xs[0]->rank, ax = norm_axis(axis, rank);
    if (rank == 0)
        return join_fail(tp, TG_ERR_SHAPE, "concat", "rank-0 inputs have no axis", xs, n);
    if (ax < 0) {
        snprintf(what, sizeof what, "axis %d out of range", axis);
        return join_fail(tp, TG_ERR_ARG, "concat", what, xs, n);
    }
    int64_t shape[TG_MAX_RANK];
    memcpy(shape, xs[0]->shape, sizeof shape);
    shape[ax] = 0;
    for (int j = 0; j < n; j++) {
        bool fits = xs[j]->rank == rank;
        for (int d = 0; d < rank && fits; d++)
            fits = d == ax || xs[j]->shape[d] == shape[d];
        if (!fits) {
            snprintf(what, sizeof what, "input %d differs from input 0 off axis %d", j, ax);
            return join_fail(tp, TG_ERR_SHAPE, "concat", what, xs, n);
        }
        if (xs[j]->shape[ax] > INT64_MAX - shape[ax])
            return join_fail(tp, TG_ERR_SHAPE, "concat", "the axis grows past 2^63", xs, n);
        shape[ax] += xs[j]->shape[ax];
    }
    return record_join(tp, &concat_def, xs, n, rank, shape, ax, false);
}

tg_tensor *tg_stack(tg_tape *tp, tg_tensor *const *xs, int n, int axis)
{
    if (!tp || tp->status) return NULL;
    if (n < 1 || !xs) {
        tg__fail(tp, TG_ERR_ARG, "stack: needs at least one input, got %d", xs ? n : 0);
        return NULL;
    }
    if (!tg__guard(tp, "stack", n, xs)) return NULL;
    char what[96];
    int rank = xs[0]->rank + 1, ax = norm_axis(axis, rank);
    if (rank > TG_MAX_RANK) {
        snprintf(what, sizeof what, "the result would have rank %d > %d", rank, TG_MAX_RANK);
        return join_fail(tp, TG_ERR_SHAPE, "stack", what, xs, n);
    }
    if (ax < 0) {
        snprintf(what, sizeof what, "axis %d out of range for a result of rank %d", axis, rank);
        return join_fail(tp, TG_ERR_ARG, "stack", what, xs, n);
    }
    for (int j = 1; j < n; j++)
        if (!tg__same_shape(xs[j], xs[0])) {
            snprintf(what, sizeof what, "input %d differs from input 0", j);
            return join_fail(tp, TG_ERR_SHAPE, "stack", what, xs, n);
        }
    int64_t shape[TG_MAX_RANK];
    for (int d = 0, k = 0; d < rank; d++)
        shape[d] = d == ax ? n : xs[0]->shape[k++];
    return record_join(tp, &stack_def, xs, n, rank, shape, ax, true);
}

/* ====== index_select: G[o,i,r] = X[o,idx[i],r] along one axis;  dX[o,idx[i],r] += dG[o,i,r]
 * embedding: G[k,:] = T[idx[k],:], index_select of the table's rows by idx flattened ======
 * X is seen as [outer, n, inner] around the axis and G as [outer, m, inner]
 * for m indices; each index copies one [outer, inner] block with the plan p,
 * which runs in the order of both layouts and so serves the VJP as it is.
 * Indices in [-n, n) are accepted, negative ones counting from the end (the
 * "after negative wrap" of the API; torch.index_select itself refuses them).
 * Each forward checks every index before it copies, so new indices written
 * into idx are checked at replay: a bad one fails the tape with the op, the
 * node, the position and the value, which the forward records on the tape
 * itself through 'tp' (tape.c's own message only knows the status). Repeated
 * indices add their rows of dG together (index_add); in F32 through 'acc',
 * X's numel doubles, kept at 0 between sweeps. */

typedef struct index_ctx {
    tg_tape *tp;
    size_t node; /* this node's position on the tape, for replay's message */
    int axis;    /* as given, for messages */
    int64_t n, inner, m;
    copy_plan p;
    double *acc; /* F32 only */
} index_ctx;

/* The first position of idx whose value is outside [-n, n), or -1. */
static int64_t bad_index(const tg_tensor *idx, int64_t n)
{
    const int64_t *v = idx->data;
    for (int64_t i = 0; i < idx->numel; i++)
        if (v[i] < -n || v[i] >= n) return i;
    return -1;
}

/* Fails the tape over idx's bad entry at 'pos', at recording or at replay. */
static tg_status index_fail(const index_ctx *c, const char *op, tg_tensor *const *in, int64_t pos,
                            bool replay)
{
    char sx[TG__SHAPE_STR_MAX], si[TG__SHAPE_STR_MAX], at[64] = "", of[64];
    const tg_tensor *x = in[0], *idx = in[1];
    if (replay) snprintf(at, sizeof at, " (replay of node %zu)", c->node);
    if (c->axis >= 0)
        snprintf(of, sizeof of, "axis %d of x %s", c->axis, tg__shape_str(x, sx, sizeof sx));
    else
        snprintf(of, sizeof of, "the rows of table %s", tg__shape_str(x, sx, sizeof sx));
    return tg__fail(c->tp, TG_ERR_ARG,
                    "%s: index %lld at position %lld of idx %s is out of range "
                    "[%lld, %lld) for %s%s",
                    op, (long long)((const int64_t *)idx->data)[pos], (long long)pos,
                    tg__shape_str(idx, si, sizeof si), (long long)-c->n, (long long)c->n, of, at);
}

static inline int64_t wrap(int64_t v, int64_t n) { return v < 0 ? v + n : v; }

static tg_status index_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in;
    const index_ctx *c = ctx;
    int64_t pos = bad_index(in[1], c->n);
    if (pos >= 0) return index_fail(c, c->axis >= 0 ? "index_select" : "embedding", in, pos, true);
    const int64_t *idx = in[1]->data;
    for (int64_t i = 0; i < c->m && c->p.n; i++) {
        tg_status s = copy_forward(&c->p, out, i * c->inner, in[0], wrap(idx[i], c->n) * c->inner);
        if (s) return s;
    }
    return TG_OK;
}

static tg_status index_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                           tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)n_in;
    const index_ctx *c = ctx;
    if (!gin[0] || !c->p.n) return TG_OK;
    const int64_t *idx = in[1]->data;
    if (!c->acc) {
        for (int64_t i = 0; i < c->m; i++) {
            tg_status s =
                copy_vjp(&c->p, gin[0], wrap(idx[i], c->n) * c->inner, gout, i * c->inner);
            if (s) return s;
        }
        return TG_OK;
    }
    /* F32: every block of dG summed into acc in double, then each touched block
     * of acc added to dX once and cleared (a repeat finds zeros). */
    for (int64_t i = 0; i < c->m; i++)
        walk(&c->p, c->acc + wrap(idx[i], c->n) * c->inner, sizeof(double), c->p.ss,
             (float *)gout->data + i * c->inner, sizeof(float), c->p.sd, add_float_into_double);
    for (int64_t i = 0; i < c->m; i++) {
        int64_t o = wrap(idx[i], c->n) * c->inner;
        walk(&c->p, (float *)gin[0]->data + o, sizeof(float), c->p.ss, c->acc + o, sizeof(double),
             c->p.ss, flush_double_into_float);
    }
    return TG_OK;
}

/* The recorded VJP: index_add, dX = dG added into zeros of X's shape at the
 * indices, the first-order VJP as an op of its own (F32 sums in the op's
 * double buffer). Its forward checks the indices at every replay like the
 * op's, and its recorded VJP is the index_select (or embedding) again. */
static tg_status index_add_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    const index_ctx *c = ctx;
    int64_t pos = bad_index(in[1], c->n);
    if (pos >= 0) return index_fail(c, "index_add", (tg_tensor *[]){out, in[1]}, pos, true);
    zero(out);
    return index_vjp(in[0], out, in, &out, n_in, ctx);
}

/* dG (X's shape) gathered at the indices, added into the gradient of input 0. */
static tg_status index_add_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                               tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)n_in;
    const index_ctx *c = ctx;
    if (!gin[0] || !c->p.n) return TG_OK;
    const int64_t *idx = in[1]->data;
    for (int64_t i = 0; i < c->m; i++) {
        tg_status s = move(&c->p, gin[0], i * c->inner, c->p.sd, gout,
                           wrap(idx[i], c->n) * c->inner, c->p.ss, true);
        if (s) return s;
    }
    return TG_OK;
}

static tg_status index_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                                 const bool *need, tg_tensor **gin, int n_in, void *ctx);
static tg_status index_add_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out,
                                     tg_tensor *const *in, const bool *need, tg_tensor **gin,
                                     int n_in, void *ctx);

static const tg_op_def index_select_def = {
    .name = "index_select",
    .forward = index_forward,
    .vjp = index_vjp,
    .vjp_graph = index_vjp_graph,
    .index_inputs = 2u,
    .rules =
        (const char *const[]){"{dy:s} added into zeros of {0:shape} at the indices {1}", NULL},
    .onnx = index_select_onnx};
static const tg_op_def embedding_def = {
    .name = "embedding",
    .forward = index_forward,
    .vjp = index_vjp,
    .vjp_graph = index_vjp_graph,
    .index_inputs = 2u,
    .rules =
        (const char *const[]){"rows of {dy:s} added into zeros of {0:shape} at rows {1}", NULL},
    .onnx = embedding_onnx};
static const tg_op_def index_add_def = {
    .name = "index_add",
    .forward = index_add_forward,
    .vjp = index_add_vjp,
    .vjp_graph = index_add_vjp_graph,
    .index_inputs = 2u,
    .rules = (const char *const[]){"{dy:s} gathered at the indices {1}", NULL}};

static tg_status index_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                                 const bool *need, tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)n_in;
    if (!need[0]) return tg_tape_status(tp);
    index_ctx *c = tg__tape_copy(tp, ctx, sizeof *c); /* the op's, for this node's messages */
    if (!c) return tg_tape_status(tp);
    c->node = tp->n_nodes;
    int64_t pos = bad_index(in[1], c->n); /* indices written since the op was recorded */
    if (pos >= 0) {
        index_fail(c, "index_add", in, pos, false);
        return tg_tape_status(tp);
    }
    gin[0] =
        tg_custom(tp, &index_add_def, (tg_tensor *[]){dy, in[1]}, 2, in[0]->rank, in[0]->shape, c);
    return tg_tape_status(tp);
}

/* Records an index op on x seen as [outer, n, inner], picking m blocks; the
 * output's shape is given. axis < 0 marks embedding in messages. */
static tg_tensor *record_index(tg_tape *tp, const tg_op_def *def, tg_tensor *x, tg_tensor *idx,
                               int axis, int64_t outer, int64_t n, int64_t inner, int rank,
                               const int64_t *shape)
{
    tg_tensor *in[2] = {x, idx};
    index_ctx c = {
        .tp = tp, .node = tp->n_nodes, .axis = axis, .n = n, .inner = inner, .m = idx->numel};
    int64_t pos = bad_index(idx, n);
    if (pos >= 0) {
        index_fail(&c, def->name, in, pos, false);
        return NULL;
    }
    if (tg__numel(rank, shape) > 0) /* else the extents may overflow; nothing moves anyway */
        plan_make(&c.p, 2, (int64_t[]){outer, inner}, (int64_t[]){c.m * inner, 1},
                  (int64_t[]){n * inner, 1});
    index_ctx *ctx = tg__tape_copy(tp, &c, sizeof c);
    if (!ctx) return NULL;
    if (x->dtype == TG_F32 && c.p.n &&
        !(ctx->acc = tg__arena_alloc(&tp->arena, (size_t)x->numel * sizeof(double)))) {
        fail1(tp, TG_ERR_NOMEM, def->name, "out of memory for the gradient's sums", x);
        return NULL;
    }
    return tg_custom(tp, def, in, 2, rank, shape, ctx);
}

/* idx must be I64 before its values are read; tg_custom checks the rest. */
static bool index_dtype(tg_tape *tp, const char *op, const char *xname, const tg_tensor *x,
                        const tg_tensor *idx)
{
    if (idx->dtype == TG_I64) return true;
    char sx[TG__SHAPE_STR_MAX], si[TG__SHAPE_STR_MAX];
    tg__fail(tp, TG_ERR_DTYPE, "%s: idx %s must be i64, is %s; %s is %s", op,
             tg__shape_str(idx, si, sizeof si), tg__dt(idx->dtype)->name, xname,
             tg__shape_str(x, sx, sizeof sx));
    return false;
}

static tg_status index_add_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out,
                                     tg_tensor *const *in, const bool *need, tg_tensor **gin,
                                     int n_in, void *ctx)
{
    (void)out, (void)n_in;
    const index_ctx *c = ctx;
    if (!need[0]) return tg_tape_status(tp);
    /* The op again on dy, seen as the op saw X: [outer, n, inner] around the axis. */
    const tg_tensor *g = in[0];
    int64_t block = c->m * c->inner, outer = block > 0 ? g->numel / block : 0;
    gin[0] = record_index(tp, c->axis >= 0 ? &index_select_def : &embedding_def, dy, in[1], c->axis,
                          outer, c->n, c->inner, g->rank, g->shape);
    return tg_tape_status(tp);
}

tg_tensor *tg_index_select(tg_tape *tp, tg_tensor *x, int axis, tg_tensor *idx)
{
    tg_tensor *in[2] = {x, idx};
    if (!tg__guard(tp, "index_select", 2, in)) return NULL;
    char sx[TG__SHAPE_STR_MAX], si[TG__SHAPE_STR_MAX];
    int ax = norm_axis(axis, x->rank);
    if (ax < 0) {
        tg__fail(tp, TG_ERR_ARG, "index_select: axis %d out of range for x %s", axis,
                 tg__shape_str(x, sx, sizeof sx));
        return NULL;
    }
    if (!index_dtype(tp, "index_select", "x", x, idx)) return NULL;
    if (idx->rank != 1) {
        tg__fail(tp, TG_ERR_SHAPE, "index_select: idx must have rank 1, got %s; x is %s",
                 tg__shape_str(idx, si, sizeof si), tg__shape_str(x, sx, sizeof sx));
        return NULL;
    }
    int64_t shape[TG_MAX_RANK];
    memcpy(shape, x->shape, sizeof shape);
    shape[ax] = idx->numel;
    int64_t outer = 0, inner = 0;
    if (tg__numel(x->rank, shape) > 0) {
        outer = tg__numel(ax, x->shape);
        inner = tg__numel(x->rank - ax - 1, x->shape + ax + 1);
    }
    return record_index(tp, &index_select_def, x, idx, ax, outer, x->shape[ax], inner, x->rank,
                        shape);
}

tg_tensor *tg_embedding(tg_tape *tp, tg_tensor *table, tg_tensor *idx)
{
    tg_tensor *in[2] = {table, idx};
    if (!tg__guard(tp, "embedding", 2, in)) return NULL;
    char st[TG__SHAPE_STR_MAX], si[TG__SHAPE_STR_MAX];
    if (table->rank != 2 || idx->rank > 3) {
        tg__fail(tp, TG_ERR_SHAPE,
                 "embedding: needs table [V,D] and idx of rank 0..3, got %s "
                 "and %s",
                 tg__shape_str(table, st, sizeof st), tg__shape_str(idx, si, sizeof si));
        return NULL;
    }
    if (!index_dtype(tp, "embedding", "table", table, idx)) return NULL;
    int64_t shape[TG_MAX_RANK];
    memcpy(shape, idx->shape, (size_t)idx->rank * sizeof *shape);
    shape[idx->rank] = table->shape[1];
    return record_index(tp, &embedding_def, table, idx, -1, 1, table->shape[0], table->shape[1],
                        idx->rank + 1, shape);
}

/* ====== where: G = cond != 0 ? A : B, broadcasting over all three;
 * dA += Σ_bcast dG where cond != 0,  dB += Σ_bcast dG where cond == 0; cond gets none ======
 * cond is a float tensor of A's dtype (any nonzero, NaN included, picks A) or
 * an I64 one, which the second tg_op_def marks as an index input. G's index
 * space is walked like the elementwise ops', with a stride per operand that
 * is 0 where it is broadcast. F32 gradients are summed in double in 'acc'. */

typedef struct where_ctx {
    int rank;
    int64_t n;
    int64_t dim[TG_MAX_RANK];
    int64_t st[3][TG_MAX_RANK]; /* element strides of cond, a and b; 0 where broadcast */
    double *acc[2];             /* F32 only: sums for dA and dB, each of its operand's numel */
} where_ctx;

/* Odometer over ctx's outer dims around BODY, which runs the innermost
 * loop of n elements at offsets k (in G), i0, i1, i2 (in cond, a, b). */
#define WHERE_WALK(c, BODY)                                                                     \
    do {                                                                                        \
        int r_ = (c)->rank;                                                                     \
        int64_t n = r_ ? (c)->dim[r_ - 1] : 1, idx_[TG_MAX_RANK] = {0}, i0 = 0, i1 = 0, i2 = 0; \
        int64_t s0 = r_ ? (c)->st[0][r_ - 1] : 0, s1 = r_ ? (c)->st[1][r_ - 1] : 0;             \
        int64_t s2 = r_ ? (c)->st[2][r_ - 1] : 0;                                               \
        for (int64_t k = 0; k < (c)->n; k += n) {                                               \
            BODY;                                                                               \
            for (int d = r_ - 2; d >= 0; d--) {                                                 \
                i0 += (c)->st[0][d], i1 += (c)->st[1][d], i2 += (c)->st[2][d];                  \
                if (++idx_[d] < (c)->dim[d]) break;                                             \
                i0 -= (c)->st[0][d] * (c)->dim[d], i1 -= (c)->st[1][d] * (c)->dim[d];           \
                i2 -= (c)->st[2][d] * (c)->dim[d];                                              \
                idx_[d] = 0;                                                                    \
            }                                                                                   \
        }                                                                                       \
    } while (0)

#define WHERE_FWD(T, TC)                                                           \
    do {                                                                           \
        const TC *cd = in[0]->data;                                                \
        const T *a = in[1]->data, *b = in[2]->data;                                \
        T *y = out->data;                                                          \
        WHERE_WALK(c, for (int64_t i = 0; i < n; i++) y[k + i] =                   \
                          cd[i0 + i * s0] != 0 ? a[i1 + i * s1] : b[i2 + i * s2]); \
    } while (0)

/* w (the sums for operand op: 1 is A, 2 is B) += dG where the condition picks it. */
#define WHERE_VJP(T, TC)                                                                     \
    do {                                                                                     \
        const TC *cd = in[0]->data;                                                          \
        const T *g = gout->data;                                                             \
        WHERE_WALK(c, {                                                                      \
            int64_t io = op == 1 ? i1 : i2;                                                  \
            int64_t so = op == 1 ? s1 : s2;                                                  \
            for (int64_t i = 0; i < n; i++)                                                  \
                if ((cd[i0 + i * s0] != 0) == (op == 1)) w[io + i * so] += (double)g[k + i]; \
        });                                                                                  \
    } while (0)

static tg_status where_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in;
    const where_ctx *c = ctx;
    if (c->n == 0) return TG_OK;
    bool i64 = in[0]->dtype == TG_I64;
#define WHERE_FWD_T(T)             \
    do {                           \
        if (i64)                   \
            WHERE_FWD(T, int64_t); \
        else                       \
            WHERE_FWD(T, T);       \
    } while (0)
    TG__FLOAT_SWITCH(out->dtype, WHERE_FWD_T, TG_ERR_DTYPE);
#undef WHERE_FWD_T
    return TG_OK;
}

static tg_status where_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                           tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)n_in;
    const where_ctx *c = ctx;
    bool i64 = in[0]->dtype == TG_I64;
    for (int op = 1; op <= 2; op++) {
        if (!gin[op] || c->n == 0) continue;
        double *w = c->acc[op - 1] ? c->acc[op - 1] : gin[op]->data;
#define WHERE_VJP_T(T)             \
    do {                           \
        if (i64)                   \
            WHERE_VJP(T, int64_t); \
        else                       \
            WHERE_VJP(T, T);       \
    } while (0)
        TG__FLOAT_SWITCH(gout->dtype, WHERE_VJP_T, TG_ERR_DTYPE);
#undef WHERE_VJP_T
        if (c->acc[op - 1])
            flush_double_into_float(gin[op]->data, c->acc[op - 1], gin[op]->numel, 1, 1);
    }
    return TG_OK;
}

/* dA = Σ_bcast where(cond, dG, 0), dB = Σ_bcast where(cond, 0, dG), recorded
 * with this op on the same condition, whose own VJP is then the same again. */
static tg_status where_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                                 const bool *need, tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)n_in, (void)ctx;
    if (!need[1] && !need[2]) return tg_tape_status(tp);
    tg_tensor *zero = tg_full_like(tp, dy, 0.0);
    if (need[1]) gin[1] = tg__sum_to(tp, tg_where(tp, in[0], dy, zero), in[1]);
    if (need[2]) gin[2] = tg__sum_to(tp, tg_where(tp, in[0], zero, dy), in[2]);
    return tg_tape_status(tp);
}

static const tg_op_def where_def = {
    .name = "where",
    .forward = where_forward,
    .vjp = where_vjp,
    .vjp_graph = where_vjp_graph,
    .rules = (const char *const[]){"0 (no gradient to a condition)", "{bcast}{dy} where {0} ≠ 0",
                                   "{bcast}{dy} where {0} = 0", NULL},
    .onnx = where_onnx};
static const tg_op_def where_i64_def = {
    .name = "where",
    .forward = where_forward,
    .vjp = where_vjp,
    .vjp_graph = where_vjp_graph,
    .index_inputs = 1u,
    .rules = (const char *const[]){"0 (no gradient to a condition)", "{bcast}{dy} where {0} ≠ 0",
                                   "{bcast}{dy} where {0} = 0", NULL},
    .onnx = where_onnx};

tg_tensor *tg_where(tg_tape *tp, tg_tensor *cond, tg_tensor *a, tg_tensor *b)
{
    tg_tensor *in[3] = {cond, a, b};
    if (!tg__guard(tp, "where", 3, in)) return NULL;
    /* NumPy's rule over three shapes: aligned at the right, each dim equal or 1. */
    int rank = 0;
    for (int j = 0; j < 3; j++)
        rank = in[j]->rank > rank ? in[j]->rank : rank;
    int64_t shape[TG_MAX_RANK];
    for (int d = 0; d < rank; d++) {
        int64_t n = 1;
        for (int j = 0; j < 3; j++) {
            int k = in[j]->rank - rank + d;
            int64_t nj = k >= 0 ? in[j]->shape[k] : 1;
            if (nj != 1 && n != 1 && nj != n) {
                char s0[TG__SHAPE_STR_MAX], s1[TG__SHAPE_STR_MAX], s2[TG__SHAPE_STR_MAX];
                tg__fail(tp, TG_ERR_SHAPE, "where: shapes do not broadcast: cond %s, a %s, b %s",
                         tg__shape_str(cond, s0, sizeof s0), tg__shape_str(a, s1, sizeof s1),
                         tg__shape_str(b, s2, sizeof s2));
                return NULL;
            }
            n = nj != 1 ? nj : n;
        }
        shape[d] = n;
    }
    where_ctx c = {.n = tg__numel(rank, shape)};
    if (c.n > 0) {
        /* Size-1 dims of G are dropped; a dim merges into the one inside it when
         * all three operands run on contiguously (or stay put) across it. */
        int64_t js[3][TG_MAX_RANK];
        for (int j = 0; j < 3; j++)
            strides_of(in[j]->rank, in[j]->shape, js[j]);
        for (int d = 0; d < rank; d++) {
            if (shape[d] == 1) continue;
            int64_t s[3];
            for (int j = 0; j < 3; j++) {
                int k = in[j]->rank - rank + d;
                s[j] = k >= 0 && in[j]->shape[k] != 1 ? js[j][k] : 0;
            }
            int q = c.rank - 1;
            if (q >= 0 && c.st[0][q] == s[0] * shape[d] && c.st[1][q] == s[1] * shape[d] &&
                c.st[2][q] == s[2] * shape[d]) {
                c.dim[q] *= shape[d];
                for (int j = 0; j < 3; j++)
                    c.st[j][q] = s[j];
                continue;
            }
            c.dim[c.rank] = shape[d];
            for (int j = 0; j < 3; j++)
                c.st[j][c.rank] = s[j];
            c.rank++;
        }
    }
    where_ctx *ctx = tg__tape_copy(tp, &c, sizeof c);
    if (!ctx) return NULL;
    for (int j = 1; j < 3 && c.n > 0 && a->dtype == TG_F32; j++)
        if (!(ctx->acc[j - 1] =
                  tg__arena_alloc(&tp->arena, (size_t)in[j]->numel * sizeof(double)))) {
            char s0[TG__SHAPE_STR_MAX], s1[TG__SHAPE_STR_MAX], s2[TG__SHAPE_STR_MAX];
            tg__fail(tp, TG_ERR_NOMEM,
                     "where: out of memory for the gradient's sums: cond %s, "
                     "a %s, b %s",
                     tg__shape_str(cond, s0, sizeof s0), tg__shape_str(a, s1, sizeof s1),
                     tg__shape_str(b, s2, sizeof s2));
            return NULL;
        }
    const tg_op_def *def = cond->dtype == TG_I64 ? &where_i64_def : &where_def;
    return tg_custom(tp, def, in, 3, rank, shape, ctx);
}

/* ====== ONNX forms ======
 * reshape is Reshape, permute Transpose, slice Slice, expand Expand, pad Pad
 * (constant mode), concat Concat, stack Unsqueeze and Concat, index_select
 * and embedding Gather (whose negative indices count from the end, as
 * here), where a Where on cond ≠ 0. The view ops keep only their copy plan,
 * which fully determines what they compute; their parameters are found
 * again as the ones whose plan is that plan. A shape written as a constant
 * keeps a symbolic batch: Reshape infers the batch's axis (-1) and Expand
 * leaves it at 1. */

/* Whether two plans move the same elements. */
static bool same_plan(const copy_plan *a, const copy_plan *b)
{
    if (a->n != b->n) return false;
    if (a->n == 0) return true;
    if (a->rank != b->rank) return false;
    for (int d = 0; d < a->rank; d++)
        if (a->dim[d] != b->dim[d] || a->sd[d] != b->sd[d] || a->ss[d] != b->ss[d]) return false;
    return true;
}

/* The output axis where Reshape puts -1 for x's batch axis b: the first axis
 * with as many elements before it as x has before b, not of size 1 unless
 * none other is; -1 when there is none. */
static int reshape_batch_axis(const tg_tensor *x, int b, const tg_tensor *out)
{
    int64_t before = tg__numel(b, x->shape), prod = 1;
    int first = -1;
    for (int d = 0; d < out->rank; prod *= out->shape[d], d++) {
        if (prod != before) continue;
        if (out->shape[d] != 1) return d;
        if (first < 0) first = d;
    }
    return first;
}

static TG__ONNX_HOOK(reshape_onnx)
{
    (void)n_in, (void)ctx;
    const tg_tensor *x = in[0];
    int64_t shape[TG_MAX_RANK];
    for (int d = 0; d < out->rank; d++)
        shape[d] = out->shape[d];
    int b = tg_onnx_batch_axis(g, x), bo = -1;
    if (b >= 0) {
        bo = reshape_batch_axis(x, b, out);
        if (bo < 0)
            return tg_onnx_fail(g, TG_ERR_SHAPE,
                                "the batch axis %d of %s has no axis of its own in %s, so the "
                                "batch cannot stay symbolic",
                                b, x->name[0] ? x->name : "x", out->name[0] ? out->name : "y");
        shape[bo] = -1;
    }
    const char *s = tg_onnx_ints(g, shape, out->rank);
    tg__onnx_op(g, "Reshape", tg_onnx_value(g, out), 2, tg_onnx_value(g, x), s);
    tg_onnx_set_batch_axis(g, out, bo);
    return tg_onnx_status(g);
}

/* Finds a perm of x's axes whose plan is the node's; the first in
 * lexicographic order when several are (axes of size 1 can swap). */
static bool find_perm(const view_ctx *c, const tg_tensor *x, const tg_tensor *y, int *perm)
{
    int r = x->rank, idx[TG_MAX_RANK];
    int64_t xs[TG_MAX_RANK];
    strides_of(r, x->shape, xs);
    int total = 1;
    for (int k = 2; k <= r; k++)
        total *= k;
    for (int code = 0; code < total; code++) {
        /* The code-th permutation in lexicographic order (factorial number system). */
        bool used[TG_MAX_RANK] = {false};
        int rest = code, fact = total;
        for (int k = 0; k < r; k++) {
            fact /= r - k;
            int pick = rest / fact, j = -1;
            rest %= fact;
            while (pick >= 0)
                if (!used[++j]) pick--;
            used[j] = true, idx[k] = j;
        }
        int64_t shape[TG_MAX_RANK], ss[TG_MAX_RANK];
        bool fits = true;
        for (int k = 0; k < r && fits; k++) {
            shape[k] = x->shape[idx[k]], ss[k] = xs[idx[k]];
            fits = shape[k] == y->shape[k];
        }
        copy_plan p;
        if (!fits) continue;
        out_plan(&p, r, shape, ss);
        if (!same_plan(&p, &c->p)) continue;
        for (int k = 0; k < r; k++)
            perm[k] = idx[k];
        return true;
    }
    return false;
}

static TG__ONNX_HOOK(permute_onnx)
{
    (void)n_in;
    const tg_tensor *x = in[0];
    int perm[TG_MAX_RANK];
    if (!find_perm(ctx, x, out, perm))
        return tg_onnx_fail(g, TG_ERR_STATE, "no permutation of the axes matches the recording");
    int64_t p64[TG_MAX_RANK];
    int b = tg_onnx_batch_axis(g, x), bo = -1;
    for (int k = 0; k < x->rank; k++) {
        p64[k] = perm[k];
        if (perm[k] == b) bo = k;
    }
    tg_onnx_node *n = tg__onnx_op(g, x->rank ? "Transpose" : "Identity", tg_onnx_value(g, out), 1,
                                  tg_onnx_value(g, x));
    if (x->rank) tg_onnx_attr_ints(n, "perm", p64, x->rank);
    tg_onnx_set_batch_axis(g, out, bo);
    return tg_onnx_status(g);
}

/* Finds the axis, start and step of a slice whose plan is the node's. */
static bool find_slice(const view_ctx *c, const tg_tensor *x, const tg_tensor *y, int *axis,
                       int64_t *start, int64_t *step)
{
    int64_t xs[TG_MAX_RANK];
    strides_of(x->rank, x->shape, xs);
    for (int a = 0; a < x->rank; a++) {
        bool others = true;
        for (int d = 0; d < x->rank && others; d++)
            others = d == a || y->shape[d] == x->shape[d];
        if (!others) continue;
        *axis = a, *start = 0, *step = 1;
        int64_t len = y->shape[a], n = x->shape[a];
        if (c->p.n == 0) return true; /* nothing moves: an empty slice of any axis */
        if (xs[a] == 0 || c->os % xs[a] != 0) continue;
        *start = c->os / xs[a];
        for (int64_t st = 1; st <= (len > 1 ? n : 1); st++) {
            int64_t ss[TG_MAX_RANK];
            memcpy(ss, xs, sizeof ss);
            ss[a] = len > 1 ? st * xs[a] : 0;
            copy_plan p;
            out_plan(&p, x->rank, y->shape, ss);
            if (*start + (len - 1) * st < n && same_plan(&p, &c->p)) {
                *step = st;
                return true;
            }
        }
    }
    return false;
}

static TG__ONNX_HOOK(slice_onnx)
{
    (void)n_in;
    const tg_tensor *x = in[0];
    int axis;
    int64_t start, step;
    if (!find_slice(ctx, x, out, &axis, &start, &step))
        return tg_onnx_fail(g, TG_ERR_STATE, "no slice of the input matches the recording");
    int64_t len = out->shape[axis];
    int64_t end = len ? start + (len - 1) * step + 1 : start, ax = axis;
    /* The whole batch axis stays whole whatever the batch. */
    if (axis == tg_onnx_batch_axis(g, x) && start == 0 && step == 1 && len == x->shape[axis])
        end = INT64_MAX;
    const char *starts = tg_onnx_ints(g, &start, 1), *ends = tg_onnx_ints(g, &end, 1);
    const char *axes = tg_onnx_ints(g, &ax, 1), *steps = tg_onnx_ints(g, &step, 1);
    tg__onnx_op(g, "Slice", tg_onnx_value(g, out), 5, tg_onnx_value(g, x), starts, ends, axes,
                steps);
    return tg_onnx_status(g);
}

static TG__ONNX_HOOK(expand_onnx)
{
    (void)n_in, (void)ctx;
    const tg_tensor *x = in[0];
    int64_t shape[TG_MAX_RANK];
    for (int d = 0; d < out->rank; d++)
        shape[d] = out->shape[d];
    int b = tg_onnx_batch_axis(g, x);
    if (b >= 0) shape[b + out->rank - x->rank] = 1; /* broadcast keeps x's size there */
    const char *s = tg_onnx_ints(g, shape, out->rank);
    tg__onnx_op(g, "Expand", tg_onnx_value(g, out), 2, tg_onnx_value(g, x), s);
    return tg_onnx_status(g);
}

static TG__ONNX_HOOK(pad_onnx)
{
    (void)n_in;
    const pad_ctx *c = ctx;
    const tg_tensor *x = in[0];
    const char *xv = tg_onnx_value(g, x), *y = tg_onnx_value(g, out);
    if (x->rank == 0) {
        tg__onnx_op(g, "Identity", y, 1, xv);
        return tg_onnx_status(g);
    }
    /* The interior starts at od = Σ before[i] ys[i], with before[i] < the output's dim i. */
    int64_t ys[TG_MAX_RANK], pads[2 * TG_MAX_RANK];
    strides_of(out->rank, out->shape, ys);
    for (int i = 0; i < x->rank; i++) {
        int64_t before = c->p.n && ys[i] ? c->od / ys[i] % out->shape[i] : 0;
        pads[i] = before;
        pads[x->rank + i] = out->shape[i] - x->shape[i] - before;
    }
    const char *p = tg_onnx_ints(g, pads, 2 * x->rank);
    tg__onnx_op(g, "Pad", y, 3, xv, p, tg_onnx_scalar(g, out->dtype, c->value));
    return tg_onnx_status(g);
}

/* Concat of 'names' along 'axis' into out. */
static tg_status concat_names(tg_onnx_graph *g, const tg_tensor *out, const char **names, int n,
                              int axis)
{
    const char *y = tg_onnx_value(g, out);
    tg_onnx_node *node = tg_onnx_node_add(g, "Concat", names, n, &y, 1);
    return tg_onnx_attr_int(node, "axis", axis);
}

static TG__ONNX_HOOK(concat_onnx)
{
    (void)ctx;
    /* The axis along which the inputs' sizes add up to the output's and all
     * other sizes agree; two axes pass only for an empty output. */
    int axis = 0;
    for (int a = out->rank - 1; a >= 0; a--) {
        int64_t sum = 0;
        bool fits = true;
        for (int j = 0; j < n_in && fits; j++) {
            sum += in[j]->shape[a];
            for (int d = 0; d < out->rank && fits; d++)
                fits = d == a || in[j]->shape[d] == out->shape[d];
        }
        if (fits && sum == out->shape[a]) axis = a;
    }
    const char **names = tg__onnx_scratch(g, (size_t)n_in * sizeof *names);
    for (int j = 0; names && j < n_in; j++)
        names[j] = tg_onnx_value(g, in[j]);
    return concat_names(g, out, names, n_in, axis);
}

/* Each input unsqueezed at the new axis, then concatenated along it. The
 * axis is where the output has n_in elements and input 1 starts (its
 * offset is that axis's stride); with one input, where a 1 was inserted. */
static TG__ONNX_HOOK(stack_onnx)
{
    const join_ctx *c = ctx;
    int64_t ys[TG_MAX_RANK], axis = 0;
    strides_of(out->rank, out->shape, ys);
    for (int a = out->rank - 1; a >= 0; a--) {
        bool fits = out->shape[a] == n_in;
        for (int d = 0, k = 0; d < out->rank && fits; d++)
            if (d != a) fits = out->shape[d] == in[0]->shape[k++];
        if (fits && (n_in == 1 || c->part[1].p.n == 0 || c->part[1].od == ys[a])) axis = a;
    }
    const char **names = tg__onnx_scratch(g, (size_t)n_in * sizeof *names);
    const char *axes = tg_onnx_ints(g, &axis, 1);
    for (int j = 0; names && j < n_in; j++)
        names[j] =
            tg__onnx_out(tg__onnx_op(g, "Unsqueeze", NULL, 2, tg_onnx_value(g, in[j]), axes));
    int b = tg_onnx_batch_axis(g, in[0]);
    tg_status s = concat_names(g, out, names, n_in, (int)axis);
    tg_onnx_set_batch_axis(g, out, b < 0 ? -1 : b + (b >= axis));
    return s;
}

static TG__ONNX_HOOK(index_select_onnx)
{
    (void)n_in;
    const index_ctx *c = ctx;
    int axis = norm_axis(c->axis, in[0]->rank);
    tg_onnx_node *n = tg__onnx_op(g, "Gather", tg_onnx_value(g, out), 2, tg_onnx_value(g, in[0]),
                                  tg_onnx_value(g, in[1]));
    if (axis == tg_onnx_batch_axis(g, in[0])) tg_onnx_set_batch_axis(g, out, -1);
    return tg_onnx_attr_int(n, "axis", axis);
}

/* Gather of the table's rows; the output is idx's shape then D. */
static TG__ONNX_HOOK(embedding_onnx)
{
    (void)n_in, (void)ctx;
    tg__onnx_op(g, "Gather", tg_onnx_value(g, out), 2, tg_onnx_value(g, in[0]),
                tg_onnx_value(g, in[1]));
    tg_onnx_set_batch_axis(g, out, tg_onnx_batch_axis(g, in[1]));
    return tg_onnx_status(g);
}

/* Where(cond ≠ 0, a, b): Equal then Not, so a NaN condition picks a, as here. */
static TG__ONNX_HOOK(where_onnx)
{
    (void)n_in, (void)ctx;
    const char *zero = tg_onnx_scalar(g, in[0]->dtype, 0);
    const char *eq = tg__onnx_out(tg__onnx_op(g, "Equal", NULL, 2, tg_onnx_value(g, in[0]), zero));
    const char *cond = tg__onnx_out(tg__onnx_op(g, "Not", NULL, 1, eq));
    tg__onnx_op(g, "Where", tg_onnx_value(g, out), 3, cond, tg_onnx_value(g, in[1]),
                tg_onnx_value(g, in[2]));
    return tg_onnx_status(g);
}
