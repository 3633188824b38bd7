/*
 * Watching the tape: tg_tape_explain prints the last backward sweep as a
 * derivation, one line per VJP in the order the sweep applied them, and
 * tg_tape_to_dot draws the recorded graph for Graphviz. Like the sweep, this
 * file knows no op: each line's rule is the template in the op's own
 * tg_op_def ('rules'), so a new op explains itself where it is defined.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* ====== Names: the user's, else t<k> for the k-th op's output, x<k> for the k-th leaf ======
 * One entry per distinct tensor on the tape, sorted by address for lookup.
 * A tensor made by another tape counts as a leaf here. */

typedef struct name_ref {
    const tg_tensor *t;
    size_t pos;      /* first appearance, in recording order */
    size_t node;     /* the node that made t, or SIZE_MAX for a leaf */
    size_t leaf;     /* leaf number, in order of first appearance */
    int n_contrib;   /* VJP contributions to t's gradient in the last sweep */
    int n_done;      /* of those, printed so far; the DOT writer's "drawn" mark */
    size_t drawn_at; /* DOT: the node next to which this leaf was last drawn */
    int copies;      /* DOT: the leaf's dashed copies drawn so far */
} name_ref;

typedef struct names {
    name_ref *refs;
    size_t n;
} names;

#define NO_NODE      SIZE_MAX
#define NAME_MAX_LEN 72 /* a tensor name (63 bytes) or "t<index>", plus "d" */

static int cmp_addr(const tg_tensor *a, const tg_tensor *b)
{
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return (x > y) - (x < y);
}

static int by_addr_then_pos(const void *pa, const void *pb)
{
    const name_ref *a = pa, *b = pb;
    int c = cmp_addr(a->t, b->t);
    return c ? c : (a->pos > b->pos) - (a->pos < b->pos);
}

static int by_pos(const void *pa, const void *pb)
{
    const name_ref *a = pa, *b = pb;
    return (a->pos > b->pos) - (a->pos < b->pos);
}

static int by_addr_key(const void *key, const void *elem)
{
    return cmp_addr(key, ((const name_ref *)elem)->t);
}

static tg_status names_build(names *nm, const tg_tape *tp)
{
    size_t m = 0;
    for (size_t k = 0; k < tp->n_nodes; k++)
        m += 1 + (size_t)tp->nodes[k].n_in;
    nm->refs = NULL;
    nm->n = 0;
    if (m == 0) return TG_OK;
    if (m > SIZE_MAX / sizeof *nm->refs || !(nm->refs = tg__malloc(m * sizeof *nm->refs)))
        return TG_ERR_NOMEM;
    name_ref *r = nm->refs;
    size_t pos = 0;
    for (size_t k = 0; k < tp->n_nodes; k++) {
        const tg__node *nd = &tp->nodes[k];
        for (int j = 0; j < nd->n_in; j++, pos++)
            r[pos] = (name_ref){.t = nd->in[j], .pos = pos, .node = NO_NODE};
        r[pos] = (name_ref){.t = nd->out, .pos = pos, .node = k};
        pos++;
    }
    /* Keep each tensor's first appearance, marked with the node that made it if any. */
    qsort(r, m, sizeof *r, by_addr_then_pos);
    size_t n = 0;
    for (size_t i = 0; i < m; i++) {
        if (n && r[n - 1].t == r[i].t) {
            if (r[i].node != NO_NODE) r[n - 1].node = r[i].node;
            continue;
        }
        r[n++] = r[i];
    }
    qsort(r, n, sizeof *r, by_pos);
    size_t leaves = 0;
    for (size_t i = 0; i < n; i++)
        if (r[i].node == NO_NODE) r[i].leaf = leaves++;
    qsort(r, n, sizeof *r, by_addr_then_pos);
    nm->n = n;
    return TG_OK;
}

static name_ref *names_find(const names *nm, const tg_tensor *t)
{
    return nm->n ? bsearch(t, nm->refs, nm->n, sizeof *nm->refs, by_addr_key) : NULL;
}

/* The name of t, prefixed with "d" for its gradient, or wrapped as d(...)
 * when t is itself part of a recorded gradient (dW2's is d(dW2)); buf has
 * NAME_MAX_LEN bytes. */
static const char *name_of(const names *nm, const tg_tensor *t, bool grad, char *buf)
{
    const name_ref *r = names_find(nm, t);
    bool wrap = grad && t->grad_node;
    const char *d = wrap ? "d(" : grad ? "d" : "", *end = wrap ? ")" : "";
    if (t->name[0])
        snprintf(buf, NAME_MAX_LEN, "%s%s%s", d, t->name, end);
    else if (!r)
        snprintf(buf, NAME_MAX_LEN, "%s?%s", d, end);
    else if (r->node != NO_NODE)
        snprintf(buf, NAME_MAX_LEN, "%st%zu%s", d, r->node, end);
    else
        snprintf(buf, NAME_MAX_LEN, "%sx%zu%s", d, r->leaf, end);
    return buf;
}

static void put_shape(FILE *f, const tg_tensor *t, bool transposed)
{
    fputc('[', f);
    for (int i = 0; i < t->rank; i++)
        fprintf(f, i ? "x%lld" : "%lld", (long long)t->shape[transposed ? t->rank - 1 - i : i]);
    fputc(']', f);
}

/* ====== Rule templates ====== */

typedef struct line_ctx {
    FILE *f;
    const names *nm;
    const tg__node *nd;
    int j; /* the input whose gradient the line writes */
} line_ctx;

/* Writes one placeholder (the text between braces, without them); false if
 * it is not one, and then nothing is written. */
static bool put_placeholder(const line_ctx *lc, const char *ph, size_t len)
{
    char ref[8] = "", mod[8] = "";
    const char *colon = memchr(ph, ':', len);
    size_t ref_len = colon ? (size_t)(colon - ph) : len;
    size_t mod_len = colon ? len - ref_len - 1 : 0;
    if (ref_len == 0 || ref_len >= sizeof ref || mod_len >= sizeof mod) return false;
    memcpy(ref, ph, ref_len);
    if (colon) memcpy(mod, colon + 1, mod_len);

    const tg__node *nd = lc->nd;
    if (!strcmp(ref, "c")) {
        if (mod[0] || !nd->ctx) return false;
        fprintf(lc->f, "%g", *(const double *)nd->ctx);
        return true;
    }
    if (!strcmp(ref, "bcast")) {
        if (mod[0]) return false;
        if (!tg__same_shape(nd->in[lc->j], nd->out)) fputs("Σ_bcast ", lc->f);
        return true;
    }
    const tg_tensor *t;
    bool grad = false;
    if (!strcmp(ref, "y")) {
        t = nd->out;
    } else if (!strcmp(ref, "dy")) {
        t = nd->out;
        grad = true;
    } else {
        char *end;
        long i = strtol(ref, &end, 10);
        if (*end || ref[0] < '0' || ref[0] > '9' || i >= nd->n_in) return false;
        t = nd->in[i];
    }
    char name[NAME_MAX_LEN];
    name_of(lc->nm, t, grad, name);
    if (!mod[0]) {
        fputs(name, lc->f);
    } else if (!strcmp(mod, "s")) {
        fprintf(lc->f, "%s ", name);
        put_shape(lc->f, t, false);
    } else if (!strcmp(mod, "T")) {
        fprintf(lc->f, "%sᵀ ", name);
        put_shape(lc->f, t, true);
    } else if (!strcmp(mod, "shape")) {
        put_shape(lc->f, t, false);
    } else if (!strcmp(mod, "rows")) {
        fprintf(lc->f, "%lld", (long long)(t->rank ? t->shape[0] : 1));
    } else {
        return false;
    }
    return true;
}

/* Copies the template, replacing placeholders; anything else in braces is kept as written. */
static void put_rule(const line_ctx *lc, const char *rule)
{
    for (const char *p = rule; *p; p++) {
        const char *close = *p == '{' ? strchr(p, '}') : NULL;
        if (close && put_placeholder(lc, p + 1, (size_t)(close - p - 1))) {
            p = close;
            continue;
        }
        fputc(*p, lc->f);
    }
}

/* rules[j] if the op's NULL-terminated list reaches input j, else NULL. */
static const char *rule_for(const tg_op_def *def, int j)
{
    if (!def->rules) return NULL;
    for (int i = 0; i < j; i++)
        if (!def->rules[i]) return NULL;
    return def->rules[j];
}

/* ====== Values ====== */

/* Rows of the last axis, each "[ v v v ]" with the values right-aligned. */
static void put_values(FILE *f, const tg_tensor *t)
{
    if (!t || t->numel == 0 || t->numel > TG_EXPLAIN_MAX_VALUES) return;
    char text[TG_EXPLAIN_MAX_VALUES][32];
    int width = 0;
    for (int64_t i = 0; i < t->numel; i++) {
        int w = snprintf(text[i], sizeof text[i], "%.6g", tg__get(t, i));
        width = w > width ? w : width;
    }
    int64_t cols = t->rank ? t->shape[t->rank - 1] : 1;
    for (int64_t i = 0; i < t->numel; i++) {
        fprintf(f, "%s%*s", i % cols ? "  " : "      [ ", width, text[i]);
        if (i % cols == cols - 1) fputs(" ]\n", f);
    }
}

/* ====== Explain ====== */

static bool all_ones(const tg_tensor *t)
{
    for (int64_t i = 0; i < t->numel; i++)
        if (tg__get(t, i) != 1.0) return false;
    return true;
}

static void explain_forward(FILE *f, const tg_tape *tp, const names *nm, unsigned flags)
{
    char name[NAME_MAX_LEN];
    fputs("forward, in recording order:\n", f);
    for (size_t k = 0; k < tp->n_nodes; k++) {
        const tg__node *nd = &tp->nodes[k];
        fprintf(f, "%s ", name_of(nm, nd->out, false, name));
        put_shape(f, nd->out, false);
        fprintf(f, " = %s(", nd->def->name ? nd->def->name : "custom");
        for (int j = 0; j < nd->n_in; j++) {
            fprintf(f, "%s%s ", j ? ", " : "", name_of(nm, nd->in[j], false, name));
            put_shape(f, nd->in[j], false);
        }
        fputs(")\n", f);
        if (flags & TG_EXPLAIN_VALUES) put_values(f, nd->out);
    }
}

static void explain_line(FILE *f, const names *nm, const tg__node *nd, int j, unsigned flags)
{
    char name[NAME_MAX_LEN];
    const tg_tensor *x = nd->in[j];
    name_ref *r = names_find(nm, x);
    fprintf(f, "%s ", name_of(nm, x, true, name));
    put_shape(f, x, false);
    fputs(r->n_done++ ? " += " : " = ", f);
    const char *rule = rule_for(nd->def, j);
    if (rule) {
        put_rule(&(line_ctx){f, nm, nd, j}, rule);
    } else {
        fprintf(f, "vjp_%s(%s", nd->def->name ? nd->def->name : "custom",
                name_of(nm, nd->out, true, name));
        for (int i = 0; i < nd->n_in; i++)
            fprintf(f, ", %s", name_of(nm, nd->in[i], false, name));
        fputc(')', f);
    }
    fputc('\n', f);
    if ((flags & TG_EXPLAIN_VALUES) && r->n_done == r->n_contrib) put_values(f, x->grad);
}

/* Whether the last sweep ran this node's VJP; its 'gin' is only meaningful then. */
static bool applied(const tg__node *nd) { return nd->out->reached && nd->def->vjp; }

tg_status tg_tape_explain(const tg_tape *tp, FILE *out, unsigned flags)
{
    if (!tp || !out || (flags & ~(TG_EXPLAIN_FORWARD | TG_EXPLAIN_VALUES))) return TG_ERR_ARG;
    if (tp->status) return tp->status;
    names nm;
    if (names_build(&nm, tp) != TG_OK) return TG_ERR_NOMEM;
    if (flags & TG_EXPLAIN_FORWARD) explain_forward(out, tp, &nm, flags);

    /* The sweep reaches no node recorded after the one it started from, so
     * that node is the last one reached; the gradients it wrote are counted
     * first so that fan-out shows as "=" then "+=". */
    size_t start = tp->n_nodes;
    for (size_t k = tp->n_nodes; k-- > 0;) {
        const tg__node *nd = &tp->nodes[k];
        if (nd->out->reached && start == tp->n_nodes) start = k;
        if (!applied(nd)) continue;
        for (int j = 0; j < nd->n_in; j++)
            if (nd->gin[j]) names_find(&nm, nd->in[j])->n_contrib++;
    }
    char name[NAME_MAX_LEN];
    if (flags & TG_EXPLAIN_FORWARD) fputs("backward, in the order the VJPs were applied:\n", out);
    if (start == tp->n_nodes) {
        fputs("no backward sweep has reached this tape since it was recorded\n", out);
    } else {
        const tg_tensor *seed = tp->nodes[start].out;
        bool ones = all_ones(seed->grad);
        fprintf(out, "%s ", name_of(&nm, seed, true, name));
        put_shape(out, seed, false);
        fputs(ones ? " = 1\n" : " = seed\n", out);
        if ((flags & TG_EXPLAIN_VALUES) && !ones) put_values(out, seed->grad);
        for (size_t k = start + 1; k-- > 0;) {
            const tg__node *nd = &tp->nodes[k];
            if (!applied(nd)) continue;
            for (int j = 0; j < nd->n_in; j++)
                if (nd->gin[j]) explain_line(out, &nm, nd, j, flags);
        }
    }
    free(nm.refs);
    return ferror(out) ? TG_ERR_IO : TG_OK;
}

/* ====== Graphviz ====== */

/* A DOT string body: quotes and backslashes escaped. */
static void put_dot_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        fputc(*s, f);
    }
}

static const char *dtype_name(tg_dtype dt) { return tg__dt(dt)->name; }

/* Leaves are boxes, ops ellipses; the loss (leaf or op) a bold red box. A
 * leaf's copy (below) has the same colours and a dashed outline. */
static const char colors_loss[] = "fillcolor=\"#f6c1bb\", color=\"#a93226\"";
static const char colors_param[] = "fillcolor=\"#fde9a6\", color=\"#9a7d0a\"";
static const char colors_input[] = "fillcolor=\"#ececec\", color=\"#7b7d7d\"";
static const char style_op[] =
    "shape=ellipse, style=filled, fillcolor=\"#dceaf7\", color=\"#2e6da4\"";
/* An op recorded by tg_grad with create_graph: part of a gradient. */
static const char style_grad_op[] =
    "shape=ellipse, style=\"filled,dashed\", fillcolor=\"#e8daef\", color=\"#6c3483\"";

/* A leaf used again this many nodes after it was last drawn is drawn again,
 * dashed, beside that use. One box feeding every step of an unrolled loop
 * makes edges that span the whole graph, and Graphviz's ranking and
 * crossing passes grow with the square of their length: a 50-step RNN took
 * minutes. With copies no leaf edge spans more than this many nodes. */
#define LEAF_REACH 16

/* Draws leaf r beside node k if it is not drawn yet or was last drawn too far
 * back, and writes its DOT id ("L3", or "L3_2" for its second copy) into id. */
static void dot_leaf(FILE *f, const names *nm, name_ref *r, const tg_tensor *loss, size_t k,
                     char *id, size_t id_size)
{
    bool copy = r->n_done && k - r->drawn_at > LEAF_REACH;
    if (r->n_done && !copy) {
        if (r->copies)
            snprintf(id, id_size, "L%zu_%d", r->leaf, r->copies);
        else
            snprintf(id, id_size, "L%zu", r->leaf);
        return;
    }
    if (copy) {
        r->copies++;
        snprintf(id, id_size, "L%zu_%d", r->leaf, r->copies);
    } else {
        snprintf(id, id_size, "L%zu", r->leaf);
    }
    r->n_done = 1;
    r->drawn_at = k;
    char name[NAME_MAX_LEN];
    const tg_tensor *t = r->t;
    bool is_loss = t == loss, param = t->requires_grad;
    fprintf(f, "  %s [shape=box, style=\"rounded,filled%s%s\", %s, label=\"", id,
            is_loss ? ",bold" : "", copy ? ",dashed" : "",
            is_loss ? colors_loss
            : param ? colors_param
                    : colors_input);
    put_dot_text(f, name_of(nm, t, false, name));
    fputs("\\n", f);
    put_shape(f, t, false);
    fprintf(f, " %s\\n%s\"];\n", dtype_name(t->dtype),
            is_loss ? "loss"
            : param ? "parameter"
                    : "input");
}

tg_status tg_tape_to_dot(const tg_tape *tp, FILE *out, const tg_tensor *loss)
{
    if (!tp || !out) return TG_ERR_ARG;
    names nm;
    if (names_build(&nm, tp) != TG_OK) return TG_ERR_NOMEM;
    for (size_t k = tp->n_nodes; !loss && k-- > 0;)
        if (tp->nodes[k].out->reached) loss = tp->nodes[k].out;
    if (!loss && tp->n_nodes) loss = tp->nodes[tp->n_nodes - 1].out;

    /* The layout limits bound Graphviz's network-simplex and crossing passes,
     * which otherwise grow faster than the graph; a tape is drawn in
     * recording order, which needs no more. */
    fputs("digraph tape {\n"
          "  graph [rankdir=TB, nodesep=0.25, ranksep=0.35, fontname=\"Helvetica\", "
          "nslimit=2, nslimit1=2, mclimit=0.5, remincross=false];\n"
          "  node [fontname=\"Helvetica\", fontsize=11, penwidth=1.2];\n"
          "  edge [color=\"#566573\", arrowsize=0.7, labelfontsize=9, "
          "labelfontcolor=\"#2e6da4\", labeldistance=1.6, labelangle=-40];\n",
          out);
    char name[NAME_MAX_LEN], id[48];
    /* Leaves are drawn where they are used, so the file (and the layout)
     * depends on the recording only, never on addresses. */
    for (size_t k = 0; k < tp->n_nodes; k++) {
        const tg__node *nd = &tp->nodes[k];
        bool is_loss = nd->out == loss;
        for (int j = 0; j < nd->n_in; j++) {
            name_ref *r = names_find(&nm, nd->in[j]);
            if (r->node == NO_NODE) dot_leaf(out, &nm, r, loss, k, id, sizeof id);
        }
        if (is_loss)
            fprintf(out, "  N%zu [shape=box, style=\"rounded,filled,bold\", %s, label=\"", k,
                    colors_loss);
        else
            fprintf(out, "  N%zu [%s, label=\"", k,
                    nd->out->grad_node ? style_grad_op : style_op);
        put_dot_text(out, nd->def->name ? nd->def->name : "custom");
        fputs("\\n", out);
        put_dot_text(out, name_of(&nm, nd->out, false, name));
        fputc(' ', out);
        put_shape(out, nd->out, false);
        fprintf(out, " %s%s%s\"];\n", dtype_name(nd->out->dtype), is_loss ? "\\nloss" : "",
                nd->out->grad_node ? "\\ngradient" : "");
        /* Operand order matters (sub, div, matmul...): with several inputs,
         * each edge says which one it is. */
        for (int j = 0; j < nd->n_in; j++) {
            name_ref *r = names_find(&nm, nd->in[j]);
            if (r->node == NO_NODE)
                dot_leaf(out, &nm, r, loss, k, id, sizeof id);
            else
                snprintf(id, sizeof id, "N%zu", r->node);
            if (nd->n_in > 1)
                fprintf(out, "  %s -> N%zu [headlabel=\"%d\"];\n", id, k, j);
            else
                fprintf(out, "  %s -> N%zu;\n", id, k);
        }
    }
    fputs("}\n", out);
    free(nm.refs);
    return ferror(out) ? TG_ERR_IO : TG_OK;
}
