/*
 * The ONNX graph builder that ops' export hooks write through: values named
 * by tensor, nodes with attributes, constants. Everything lives in one arena
 * freed with the graph; two uthash tables map tensors to their values and
 * keep names unique. No protobuf here: the optional component (onnx/) turns
 * the finished graph into a model file.
 */
#include "onnx_graph.h"

#include <stdarg.h>
#include <string.h>

#define HASH_NONFATAL_OOM    1
#define uthash_malloc(sz)    tg__malloc(sz)
#define uthash_free(ptr, sz) free(ptr)
#include <stdlib.h>
#include <uthash.h>

struct tg__onnx_value {
    const tg_tensor *t; /* the key */
    const char *name;
    int batch;    /* the axis that follows the symbolic batch, -1 for none */
    bool defined; /* a graph input, an initializer or a node's output */
    UT_hash_handle hh;
};

struct tg__onnx_name {
    const char *s;
    UT_hash_handle hh;
};

/* ====== Errors: sticky, the first one wins ====== */

TG__PRINTF(4, 0) static tg_status vfail(tg_onnx_graph *g, tg_status s, bool prefix, const char *fmt, va_list ap)
{
    if (g->status) return g->status;
    g->status = s;
    int n = 0;
    if (prefix && g->op) n = snprintf(g->msg, sizeof g->msg, "%s (node %zu): ", g->op, g->node);
    if (n < 0 || (size_t)n >= sizeof g->msg) n = 0;
    vsnprintf(g->msg + n, sizeof g->msg - (size_t)n, fmt, ap);
    return s;
}

tg_status tg_onnx_fail(tg_onnx_graph *g, tg_status s, const char *fmt, ...)
{
    if (!g) return TG_ERR_ARG;
    va_list ap;
    va_start(ap, fmt);
    tg_status r = vfail(g, s, true, fmt, ap);
    va_end(ap);
    return r;
}

tg_status tg__onnx_error(tg_onnx_graph *g, tg_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tg_status r = vfail(g, s, false, fmt, ap);
    va_end(ap);
    return r;
}

tg_status tg_onnx_status(const tg_onnx_graph *g) { return g ? g->status : TG_ERR_ARG; }

static void *alloc(tg_onnx_graph *g, size_t size)
{
    void *p = tg__arena_alloc(&g->arena, size ? size : 1);
    if (!p) tg_onnx_fail(g, TG_ERR_NOMEM, "out of memory building the ONNX graph");
    return p;
}

static const char *copy_str(tg_onnx_graph *g, const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = alloc(g, n);
    if (p) memcpy(p, s, n);
    return p;
}

/* ====== The graph ====== */

tg_onnx_graph *tg__onnx_graph_new(void) { return tg__calloc(1, sizeof(tg_onnx_graph)); }

void tg__onnx_graph_free(tg_onnx_graph *g)
{
    if (!g) return;
    HASH_CLEAR(hh, g->values);
    HASH_CLEAR(hh, g->names);
    free(g->nodes);
    free(g->inits);
    tg__arena_free(&g->arena);
    free(g);
}

static bool name_taken(tg_onnx_graph *g, const char *s)
{
    tg__onnx_name *e;
    HASH_FIND_STR(g->names, s, e);
    return e != NULL;
}

/* Records s (already in the arena) as taken. */
static bool take_name(tg_onnx_graph *g, const char *s)
{
    tg__onnx_name *e = alloc(g, sizeof *e);
    if (!e) return false;
    e->s = s;
    HASH_ADD_KEYPTR(hh, g->names, e->s, strlen(e->s), e);
    if (!e->hh.tbl) {
        tg_onnx_fail(g, TG_ERR_NOMEM, "out of memory building the ONNX graph");
        return false;
    }
    return true;
}

/* 'base' if it is free, else base_1, base_2, ...; taken and returned. */
static const char *unique_name(tg_onnx_graph *g, const char *base)
{
    if (g->status) return NULL;
    char buf[160];
    const char *s = base;
    for (uint64_t k = 1; name_taken(g, s); k++) {
        snprintf(buf, sizeof buf, "%.120s_%llu", base, (unsigned long long)k);
        s = buf;
    }
    s = copy_str(g, s);
    return s && take_name(g, s) ? s : NULL;
}

static tg__onnx_value *find_value(tg_onnx_graph *g, const tg_tensor *t)
{
    tg__onnx_value *v;
    HASH_FIND_PTR(g->values, &t, v);
    return v;
}

static tg__onnx_value *add_value(tg_onnx_graph *g, const tg_tensor *t, const char *name, int batch)
{
    tg__onnx_value *v = alloc(g, sizeof *v);
    if (!v) return NULL;
    *v = (tg__onnx_value){.t = t, .name = name, .batch = batch};
    HASH_ADD_PTR(g->values, t, v);
    if (!v->hh.tbl) {
        tg_onnx_fail(g, TG_ERR_NOMEM, "out of memory building the ONNX graph");
        return NULL;
    }
    return v;
}

bool tg__onnx_has(tg_onnx_graph *g, const tg_tensor *t) { return find_value(g, t) != NULL; }

tg_status tg__onnx_bind(tg_onnx_graph *g, const tg_tensor *t, const char *name, int batch)
{
    if (g->status) return g->status;
    if (name_taken(g, name))
        return tg__onnx_error(g, TG_ERR_ARG, "the name '%s' is given twice", name);
    const char *s = copy_str(g, name);
    if (!s || !take_name(g, s)) return g->status;
    tg__onnx_value *v = add_value(g, t, s, batch);
    if (v) v->defined = true;
    return g->status;
}

static bool grow(tg_onnx_graph *g, void **arr, size_t *cap, size_t n, size_t size)
{
    if (n < *cap) return true;
    size_t c = *cap ? *cap * 2 : 32;
    void *p = c <= SIZE_MAX / size ? tg__realloc(*arr, c * size) : NULL;
    if (!p) {
        tg_onnx_fail(g, TG_ERR_NOMEM, "out of memory building the ONNX graph");
        return false;
    }
    *arr = p;
    *cap = c;
    return true;
}

static tg__onnx_init *add_init(tg_onnx_graph *g, const char *name, tg_dtype dt, int rank,
                               const int64_t *shape, const void *data)
{
    if (!grow(g, (void **)&g->inits, &g->cap_inits, g->n_inits, sizeof *g->inits)) return NULL;
    tg__onnx_init *in = &g->inits[g->n_inits++];
    *in = (tg__onnx_init){.name = name, .dtype = dt, .rank = rank, .data = data};
    if (rank > 0) memcpy(in->shape, shape, (size_t)rank * sizeof *shape);
    return in;
}

tg_status tg__onnx_leaf_init(tg_onnx_graph *g, const tg_tensor *t)
{
    tg__onnx_value *v = find_value(g, t);
    if (g->status) return g->status;
    if (v) add_init(g, v->name, t->dtype, t->rank, t->shape, t->data);
    return g->status;
}

/* ====== Exporting one node ====== */

/* The axis of the first input whose batch axis, aligned at the right, keeps
 * its size in the output; -1 when none does. */
static int default_batch(tg_onnx_graph *g, const tg_tensor *out, tg_tensor *const *in, int n_in)
{
    for (int i = 0; i < n_in; i++) {
        tg__onnx_value *v = find_value(g, in[i]);
        if (!v || v->batch < 0) continue;
        int a = v->batch + out->rank - in[i]->rank;
        if (a >= 0 && a < out->rank && out->shape[a] == in[i]->shape[v->batch]) return a;
    }
    return -1;
}

tg_status tg__onnx_begin(tg_onnx_graph *g, size_t node, const char *op, const tg_tensor *out,
                         tg_tensor *const *in, int n_in, const char *name)
{
    g->op = op;
    g->node = node;
    g->out = out;
    g->node_parts = 0;
    if (g->status) return g->status;
    for (int i = 0; i < n_in; i++)
        if (!find_value(g, in[i]))
            return tg_onnx_fail(g, TG_ERR_STATE, "input %d has no value in the graph", i);
    char fresh[64];
    if (!name) {
        name = out->name;
        if (!name[0]) snprintf(fresh, sizeof fresh, "%s_%zu", op, node), name = fresh;
    }
    const char *s = unique_name(g, name);
    if (s) add_value(g, out, s, default_batch(g, out, in, n_in));
    return g->status;
}

tg_status tg__onnx_end(tg_onnx_graph *g)
{
    if (g->status) return g->status;
    tg__onnx_value *v = find_value(g, g->out);
    if (!v || !v->defined)
        return tg_onnx_fail(g, TG_ERR_STATE, "the export hook wrote no node for the output '%s'",
                            v ? v->name : "");
    return TG_OK;
}

/* ====== The hooks' API ====== */

const char *tg_onnx_value(tg_onnx_graph *g, const tg_tensor *t)
{
    if (!g || g->status) return NULL;
    tg__onnx_value *v = t ? find_value(g, t) : NULL;
    if (!v) {
        tg_onnx_fail(g, TG_ERR_ARG, "a tensor that is neither an input nor the output of the node");
        return NULL;
    }
    return v->name;
}

const char *tg_onnx_temp(tg_onnx_graph *g, const char *hint)
{
    if (!g || g->status) return NULL;
    char base[96];
    snprintf(base, sizeof base, "%s_%zu_%s", g->op ? g->op : "graph", g->node, hint ? hint : "t");
    return unique_name(g, base);
}

tg_onnx_node *tg_onnx_node_add(tg_onnx_graph *g, const char *op_type, const char *const *in,
                               int n_in, const char *const *out, int n_out)
{
    if (!g || g->status) return NULL;
    if (!op_type || n_in < 0 || n_out < 1 || (n_in && !in) || !out) {
        tg_onnx_fail(g, TG_ERR_ARG, "node_add: no op type, inputs or outputs");
        return NULL;
    }
    for (int i = 0; i < n_in; i++)
        if (!in[i]) {
            tg_onnx_fail(g, TG_ERR_ARG, "node_add: %s: input %d is NULL", op_type, i);
            return NULL;
        }
    for (int i = 0; i < n_out; i++)
        if (!out[i] || !out[i][0]) {
            tg_onnx_fail(g, TG_ERR_ARG, "node_add: %s: output %d has no name", op_type, i);
            return NULL;
        }
    tg_onnx_node *n = alloc(g, sizeof *n);
    const char **ins = alloc(g, (size_t)n_in * sizeof *ins);
    const char **outs = alloc(g, (size_t)n_out * sizeof *outs);
    if (!n || !ins || !outs) return NULL;
    /* Named after the tapegrad node it comes from: "matmul_3", then "matmul_3_1", ... */
    char name[96];
    int len = snprintf(name, sizeof name, "%s_%zu", g->op ? g->op : op_type, g->node);
    if (g->node_parts && len > 0 && (size_t)len < sizeof name)
        snprintf(name + len, sizeof name - (size_t)len, "_%d", g->node_parts);
    g->node_parts++;
    *n = (tg_onnx_node){.g = g, .in = ins, .out = outs, .n_in = n_in, .n_out = n_out};
    n->op_type = copy_str(g, op_type);
    n->name = copy_str(g, name);
    for (int i = 0; i < n_in; i++)
        ins[i] = copy_str(g, in[i]);
    for (int i = 0; i < n_out; i++)
        outs[i] = copy_str(g, out[i]);
    if (g->status || !grow(g, (void **)&g->nodes, &g->cap_nodes, g->n_nodes, sizeof *g->nodes))
        return NULL;
    g->nodes[g->n_nodes++] = n;
    /* The node's output that is the exported node's output defines its value. */
    tg__onnx_value *v = g->out ? find_value(g, g->out) : NULL;
    for (int i = 0; v && i < n_out; i++)
        if (!strcmp(out[i], v->name)) v->defined = true;
    return n;
}

static tg__onnx_attr *add_attr(tg_onnx_node *n, const char *name, tg__onnx_attr_kind kind)
{
    tg_onnx_graph *g = n->g;
    if (g->status) return NULL;
    tg__onnx_attr *a = alloc(g, sizeof *a);
    const char *s = name ? copy_str(g, name) : NULL;
    if (!name) tg_onnx_fail(g, TG_ERR_ARG, "%s: an attribute has no name", n->op_type);
    if (!a || !s) return NULL;
    *a = (tg__onnx_attr){.name = s, .kind = kind};
    if (n->last_attr)
        n->last_attr->next = a;
    else
        n->attrs = a;
    n->last_attr = a;
    n->n_attrs++;
    return a;
}

tg_status tg_onnx_attr_int(tg_onnx_node *n, const char *name, int64_t v)
{
    if (!n) return TG_ERR_STATE;
    tg__onnx_attr *a = add_attr(n, name, TG__ATTR_INT);
    if (a) a->i = v;
    return n->g->status;
}

tg_status tg_onnx_attr_float(tg_onnx_node *n, const char *name, double v)
{
    if (!n) return TG_ERR_STATE;
    tg__onnx_attr *a = add_attr(n, name, TG__ATTR_FLOAT);
    if (a) a->f = v;
    return n->g->status;
}

tg_status tg_onnx_attr_ints(tg_onnx_node *n, const char *name, const int64_t *v, int count)
{
    if (!n) return TG_ERR_STATE;
    if (count < 0 || (count && !v))
        return tg_onnx_fail(n->g, TG_ERR_ARG, "%s: attribute '%s' has no values", n->op_type,
                            name ? name : "");
    tg__onnx_attr *a = add_attr(n, name, TG__ATTR_INTS);
    int64_t *copy = a ? alloc(n->g, (size_t)count * sizeof *copy) : NULL;
    if (copy) {
        if (count) memcpy(copy, v, (size_t)count * sizeof *copy);
        a->ints = copy, a->n_ints = count;
    }
    return n->g->status;
}

tg_status tg_onnx_attr_string(tg_onnx_node *n, const char *name, const char *v)
{
    if (!n) return TG_ERR_STATE;
    if (!v)
        return tg_onnx_fail(n->g, TG_ERR_ARG, "%s: attribute '%s' is NULL", n->op_type,
                            name ? name : "");
    tg__onnx_attr *a = add_attr(n, name, TG__ATTR_STRING);
    if (a) a->s = copy_str(n->g, v);
    return n->g->status;
}

const char *tg_onnx_const(tg_onnx_graph *g, const char *hint, tg_dtype dt, int rank,
                          const int64_t *shape, const void *data)
{
    if (!g || g->status) return NULL;
    int64_t numel =
        rank >= 0 && rank <= TG_MAX_RANK && (rank == 0 || shape) ? tg__numel(rank, shape) : -1;
    if (numel < 0 || !tg__dtype_valid(dt) || (numel > 0 && !data)) {
        tg_onnx_fail(g, TG_ERR_ARG, "a constant has a bad dtype, shape or no data");
        return NULL;
    }
    size_t bytes = (size_t)numel * tg__dtype_size(dt);
    void *copy = alloc(g, bytes);
    const char *name = tg_onnx_temp(g, hint ? hint : "const");
    if (!copy || !name) return NULL;
    if (bytes) memcpy(copy, data, bytes);
    return add_init(g, name, dt, rank, shape, copy) ? name : NULL;
}

const char *tg_onnx_scalar(tg_onnx_graph *g, tg_dtype dt, double v)
{
    double d = v;
    float f = (float)v;
    int64_t i = (int64_t)v;
    const void *data = dt == TG_F64 ? (const void *)&d : dt == TG_F32 ? (const void *)&f : &i;
    return tg_onnx_const(g, "c", dt, 0, NULL, data);
}

const char *tg_onnx_ints(tg_onnx_graph *g, const int64_t *v, int count)
{
    return tg_onnx_const(g, "i", TG_I64, 1, (const int64_t[]){count}, v);
}

int tg_onnx_batch_axis(tg_onnx_graph *g, const tg_tensor *t)
{
    tg__onnx_value *v = g && t ? find_value(g, t) : NULL;
    return v ? v->batch : -1;
}

void tg_onnx_set_batch_axis(tg_onnx_graph *g, const tg_tensor *t, int axis)
{
    tg__onnx_value *v = g && t ? find_value(g, t) : NULL;
    if (v) v->batch = axis >= 0 && axis < t->rank ? axis : -1;
}

/* ====== Helpers of the built-in ops' hooks ====== */

void *tg__onnx_scratch(tg_onnx_graph *g, size_t size)
{
    return g && !g->status ? alloc(g, size) : NULL;
}

tg_status tg__onnx_same(tg_onnx_graph *g, const char *op, const tg_tensor *out,
                        tg_tensor *const *in, int n_in)
{
    const char **names = tg__onnx_scratch(g, (size_t)n_in * sizeof *names);
    if (!names) return tg_onnx_status(g);
    for (int i = 0; i < n_in; i++)
        names[i] = tg_onnx_value(g, in[i]);
    const char *y = tg_onnx_value(g, out);
    tg_onnx_node_add(g, op, names, n_in, &y, 1);
    return tg_onnx_status(g);
}

tg_onnx_node *tg__onnx_op(tg_onnx_graph *g, const char *op, const char *to, int n_in, ...)
{
    const char *names[8];
    if (n_in > 8) {
        tg_onnx_fail(g, TG_ERR_ARG, "more than 8 inputs");
        return NULL;
    }
    va_list ap;
    va_start(ap, n_in);
    for (int i = 0; i < n_in; i++)
        names[i] = va_arg(ap, const char *);
    va_end(ap);
    if (!to) to = tg_onnx_temp(g, op);
    return tg_onnx_node_add(g, op, names, n_in, &to, 1);
}

const char *tg__onnx_out(const tg_onnx_node *n) { return n ? n->out[0] : NULL; }
