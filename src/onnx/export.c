/*
 * tg_onnx_export: a tape's forward graph as an ONNX model file.
 *
 * The walk marks the nodes the outputs depend on (reverse recording order,
 * as the backward sweep does), binds the leaves they read to graph inputs,
 * parameters' initializers or constants, and calls each marked node's
 * tg_op_def 'onnx' hook in recording order; the hooks write the graph
 * through the builder of onnx_graph.c. The finished graph is turned into
 * protobuf-c messages generated from onnx.proto (kept in this folder, under
 * its Apache 2.0 licence), packed by libprotobuf-c, and written atomically
 * like a checkpoint. Nothing here knows any op.
 */
#include "onnx_graph.h"

#include <tapegrad/onnx.h>

#include "onnx.pb-c.h"

#include <stdlib.h>
#include <string.h>

#define HASH_NONFATAL_OOM    1
#define uthash_malloc(sz)    tg__malloc(sz)
#define uthash_free(ptr, sz) free(ptr)
#include <uthash.h>

/* ====== A set of tensors (the ones the outputs need) and a map to registry names ====== */

typedef struct tensor_entry {
    const tg_tensor *t;
    const char *name; /* a parameter's registry name; NULL in the set of needed tensors */
    UT_hash_handle hh;
} tensor_entry;

typedef struct walk {
    tg_onnx_graph *g;
    tg__arena arena;      /* the hash entries and the protobuf messages */
    tensor_entry *needed; /* tensors the outputs depend on */
    tensor_entry *params; /* registry parameters by tensor */
    bool *marked;         /* per node: the outputs need it */
} walk;

static tensor_entry *find(tensor_entry *set, const tg_tensor *t)
{
    tensor_entry *e;
    HASH_FIND_PTR(set, &t, e);
    return e;
}

static bool insert(walk *w, tensor_entry **set, const tg_tensor *t, const char *name)
{
    if (find(*set, t)) return true;
    tensor_entry *e = tg__arena_alloc(&w->arena, sizeof *e);
    if (!e) return false;
    e->t = t, e->name = name;
    HASH_ADD_PTR(*set, t, e);
    return e->hh.tbl != NULL;
}

static tg_status nomem(walk *w)
{
    return tg__onnx_error(w->g, TG_ERR_NOMEM, "out of memory exporting the graph");
}

/* ====== Checks of the call ====== */

static const char *label(const tg_tensor *t, char *buf, size_t size)
{
    return tg__shape_str(t, buf, size);
}

static tg_status check_call(tg_onnx_graph *g, const tg_tape *tp, tg_tensor *const *inputs,
                            int n_inputs, tg_tensor *const *outputs, int n_outputs,
                            tg_params *const *params, int n_params, const tg_onnx_opts *o)
{
    char s[TG__SHAPE_STR_MAX];
    if (!tp) return tg__onnx_error(g, TG_ERR_ARG, "the tape is NULL");
    if (n_outputs < 1 || !outputs) return tg__onnx_error(g, TG_ERR_ARG, "no outputs");
    if (n_inputs < 0 || (n_inputs > 0 && !inputs) || n_params < 0 || (n_params > 0 && !params))
        return tg__onnx_error(g, TG_ERR_ARG, "NULL inputs or registries with a count above 0");
    if (tp->status) return tg__onnx_error(g, TG_ERR_STATE, "the tape has failed: %s", tp->msg);
    for (int i = 0; i < n_params; i++)
        if (!params[i]) return tg__onnx_error(g, TG_ERR_ARG, "registry %d is NULL", i);
    for (int i = 0; i < n_outputs; i++) {
        const tg_tensor *t = outputs[i];
        if (!t) return tg__onnx_error(g, TG_ERR_ARG, "output %d is NULL", i);
        const char *why = tg__misuse_of(tp, t); /* read first: t may be stale */
        if (why)
            return tg__onnx_error(g, TG_ERR_ARG,
                                  "output %d %s: only results of the tape's current recording "
                                  "can be exported",
                                  i, why);
        if (!t->tape)
            return tg__onnx_error(g, TG_ERR_ARG,
                                  "output %d %s is a leaf, which no node of the tape computes", i,
                                  label(t, s, sizeof s));
        for (int j = 0; j < i; j++)
            if (outputs[j] == t)
                return tg__onnx_error(g, TG_ERR_ARG, "output %d %s repeats output %d", i,
                                      label(t, s, sizeof s), j);
    }
    for (int i = 0; i < n_inputs; i++) {
        const tg_tensor *t = inputs[i];
        if (!t) return tg__onnx_error(g, TG_ERR_ARG, "input %d is NULL", i);
        if (t->tape || t->is_grad)
            return tg__onnx_error(g, TG_ERR_ARG, "input %d %s is not a leaf", i,
                                  label(t, s, sizeof s));
        if (i < 32 && (o->batch >> i & 1u) && t->rank == 0)
            return tg__onnx_error(g, TG_ERR_ARG, "input %d %s has rank 0, so it has no batch axis",
                                  i, label(t, s, sizeof s));
        for (int j = 0; j < i; j++)
            if (inputs[j] == t)
                return tg__onnx_error(g, TG_ERR_ARG, "input %d %s repeats input %d", i,
                                      label(t, s, sizeof s), j);
    }
    if (n_inputs < 32 && o->batch >> n_inputs)
        return tg__onnx_error(g, TG_ERR_ARG, "the batch bits name inputs past the %d given",
                              n_inputs);
    return TG_OK;
}

/* ====== The walk ====== */

static const char *op_name(const tg_op_def *def) { return def->name ? def->name : "custom"; }

/* Marks the nodes the outputs depend on, newest first. */
static tg_status mark(walk *w, const tg_tape *tp, tg_tensor *const *outputs, int n_outputs)
{
    for (int i = 0; i < n_outputs; i++)
        if (!insert(w, &w->needed, outputs[i], NULL)) return nomem(w);
    for (size_t k = tp->n_nodes; k-- > 0;) {
        const tg__node *nd = &tp->nodes[k];
        if (!find(w->needed, nd->out)) continue;
        w->marked[k] = true;
        for (int j = 0; j < nd->n_in; j++)
            if (!insert(w, &w->needed, nd->in[j], NULL)) return nomem(w);
    }
    return TG_OK;
}

static tg_status index_params(walk *w, tg_params *const *params, int n_params)
{
    for (int i = 0; i < n_params; i++)
        for (size_t k = 0; k < tg_params_count(params[i]); k++) {
            const char *name;
            tg_tensor *t = tg_params_at(params[i], k, &name);
            tensor_entry *e = find(w->params, t);
            if (e)
                return tg__onnx_error(w->g, TG_ERR_ARG,
                                      "the parameter '%s' is in two registries (also as '%s')",
                                      name, e->name);
            if (!insert(w, &w->params, t, name)) return nomem(w);
        }
    return TG_OK;
}

/* Binds the inputs, then every leaf the marked nodes read, in recording order. */
static tg_status bind_leaves(walk *w, const tg_tape *tp, tg_tensor *const *inputs, int n_inputs,
                             const tg_onnx_opts *o)
{
    tg_onnx_graph *g = w->g;
    char name[80], s[TG__SHAPE_STR_MAX];
    for (int i = 0; i < n_inputs; i++) {
        const tg_tensor *t = inputs[i];
        if (t->name[0])
            snprintf(name, sizeof name, "%s", t->name);
        else
            snprintf(name, sizeof name, "input%d", i);
        bool batch = i < 32 && (o->batch >> i & 1u);
        if (tg__onnx_bind(g, t, name, batch ? 0 : -1)) return g->status;
    }
    size_t n_consts = 0;
    for (size_t k = 0; k < tp->n_nodes; k++) {
        if (!w->marked[k]) continue;
        const tg__node *nd = &tp->nodes[k];
        for (int j = 0; j < nd->n_in; j++) {
            const tg_tensor *t = nd->in[j];
            if (t->tape || tg__onnx_has(g, t)) continue;
            tensor_entry *e = find(w->params, t);
            if (e) {
                if (tg__onnx_bind(g, t, e->name, -1) || tg__onnx_leaf_init(g, t)) return g->status;
                continue;
            }
            if (!o->constants)
                return tg__onnx_error(g, TG_ERR_ARG,
                                      "leaf %s, input %d of %s (node %zu), is neither an input nor "
                                      "a parameter of the registries given; list it as an input, "
                                      "or write it as a constant (tg_onnx_opts.constants)",
                                      label(t, s, sizeof s), j, op_name(nd->def), k);
            if (t->name[0])
                snprintf(name, sizeof name, "%s", t->name);
            else
                snprintf(name, sizeof name, "const%zu", n_consts);
            n_consts++;
            if (tg__onnx_bind(g, t, name, -1) || tg__onnx_leaf_init(g, t)) return g->status;
        }
    }
    return TG_OK;
}

static tg_status run_hooks(walk *w, const tg_tape *tp, tg_tensor *const *outputs, int n_outputs)
{
    tg_onnx_graph *g = w->g;
    char name[80];
    for (size_t k = 0; k < tp->n_nodes; k++) {
        if (!w->marked[k]) continue;
        const tg__node *nd = &tp->nodes[k];
        const char *op = op_name(nd->def);
        const char *out_name = NULL;
        for (int i = 0; i < n_outputs && !out_name; i++)
            if (outputs[i] == nd->out) {
                if (nd->out->name[0])
                    snprintf(name, sizeof name, "%s", nd->out->name);
                else
                    snprintf(name, sizeof name, "output%d", i);
                out_name = name;
            }
        if (tg__onnx_begin(g, k, op, nd->out, nd->in, nd->n_in, out_name)) return g->status;
        if (!nd->def->onnx)
            return tg_onnx_fail(g, TG_ERR_STATE,
                                "the op '%s' has no ONNX form: its tg_op_def has no 'onnx' hook",
                                op);
        tg_status s = nd->def->onnx(g, nd->out, nd->in, nd->n_in, nd->ctx);
        if (s && !g->status) tg_onnx_fail(g, s, "the export hook failed: %s", tg_status_str(s));
        if (tg__onnx_end(g)) return g->status;
    }
    return TG_OK;
}

/* ====== protobuf-c messages ====== */

static void *pb_alloc(walk *w, size_t size) { return tg__arena_alloc(&w->arena, size ? size : 1); }

static int32_t elem_type(tg_dtype dt)
{
    return dt == TG_F32   ? ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT
           : dt == TG_F64 ? ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE
                          : ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
}

/* Copies n elements of 'size' bytes as little-endian, the raw_data layout. */
static void copy_le(unsigned char *dst, const unsigned char *src, size_t n, size_t size)
{
    const uint16_t one = 1;
    unsigned char first;
    memcpy(&first, &one, 1);
    if (first == 1) {
        memcpy(dst, src, n * size);
        return;
    }
    for (size_t i = 0; i < n; i++)
        for (size_t b = 0; b < size; b++)
            dst[i * size + b] = src[i * size + size - 1 - b];
}

static Onnx__TensorProto *pb_tensor(walk *w, const tg__onnx_init *in)
{
    Onnx__TensorProto *t = pb_alloc(w, sizeof *t);
    int64_t *dims = pb_alloc(w, (size_t)in->rank * sizeof *dims);
    int64_t numel = tg__numel(in->rank, in->shape);
    size_t bytes = (size_t)numel * tg__dtype_size(in->dtype);
    unsigned char *raw = pb_alloc(w, bytes);
    if (!t || !dims || !raw) return NULL;
    onnx__tensor_proto__init(t);
    for (int d = 0; d < in->rank; d++)
        dims[d] = in->shape[d];
    copy_le(raw, in->data, (size_t)numel, tg__dtype_size(in->dtype));
    t->n_dims = (size_t)in->rank, t->dims = dims;
    t->has_data_type = true, t->data_type = elem_type(in->dtype);
    t->name = (char *)in->name;
    t->has_raw_data = true, t->raw_data = (ProtobufCBinaryData){bytes, raw};
    return t;
}

/* A graph input's or output's type: its dtype and shape, with the batch axis
 * as "batch" where it holds batch_size elements and unknown where it holds a
 * multiple of them (the batch folded into another axis). */
static Onnx__ValueInfoProto *pb_value_info(walk *w, const char *name, const tg_tensor *t, int batch,
                                           int64_t batch_size)
{
    Onnx__ValueInfoProto *v = pb_alloc(w, sizeof *v);
    Onnx__TypeProto *type = pb_alloc(w, sizeof *type);
    Onnx__TypeProto__Tensor *tt = pb_alloc(w, sizeof *tt);
    Onnx__TensorShapeProto *shape = pb_alloc(w, sizeof *shape);
    Onnx__TensorShapeProto__Dimension **dims = pb_alloc(w, (size_t)t->rank * sizeof *dims);
    if (!v || !type || !tt || !shape || !dims) return NULL;
    onnx__value_info_proto__init(v);
    onnx__type_proto__init(type);
    onnx__type_proto__tensor__init(tt);
    onnx__tensor_shape_proto__init(shape);
    for (int d = 0; d < t->rank; d++) {
        if (!(dims[d] = pb_alloc(w, sizeof *dims[d]))) return NULL;
        onnx__tensor_shape_proto__dimension__init(dims[d]);
        if (d == batch) {
            if (t->shape[d] != batch_size) continue;
            dims[d]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            dims[d]->dim_param = "batch";
        } else {
            dims[d]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            dims[d]->dim_value = t->shape[d];
        }
    }
    shape->n_dim = (size_t)t->rank, shape->dim = dims;
    tt->has_elem_type = true, tt->elem_type = elem_type(t->dtype);
    tt->shape = shape;
    type->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE, type->tensor_type = tt;
    v->name = (char *)name, v->type = type;
    return v;
}

static Onnx__NodeProto *pb_node(walk *w, const tg_onnx_node *n)
{
    Onnx__NodeProto *p = pb_alloc(w, sizeof *p);
    Onnx__AttributeProto **attrs = pb_alloc(w, (size_t)n->n_attrs * sizeof *attrs);
    if (!p || !attrs) return NULL;
    onnx__node_proto__init(p);
    p->n_input = (size_t)n->n_in, p->input = (char **)n->in;
    p->n_output = (size_t)n->n_out, p->output = (char **)n->out;
    p->name = (char *)n->name, p->op_type = (char *)n->op_type;
    p->domain = "";
    size_t k = 0;
    for (const tg__onnx_attr *a = n->attrs; a; a = a->next, k++) {
        Onnx__AttributeProto *pa = attrs[k] = pb_alloc(w, sizeof *pa);
        if (!pa) return NULL;
        onnx__attribute_proto__init(pa);
        pa->name = (char *)a->name;
        pa->has_type = true;
        switch (a->kind) {
        case TG__ATTR_INT:
            pa->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
            pa->has_i = true, pa->i = a->i;
            break;
        case TG__ATTR_FLOAT:
            pa->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
            pa->has_f = true, pa->f = (float)a->f;
            break;
        case TG__ATTR_INTS:
            pa->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
            pa->n_ints = (size_t)a->n_ints, pa->ints = (int64_t *)a->ints;
            break;
        case TG__ATTR_STRING:
            pa->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
            pa->has_s = true;
            pa->s = (ProtobufCBinaryData){strlen(a->s), (uint8_t *)a->s};
            break;
        }
    }
    p->n_attribute = (size_t)n->n_attrs, p->attribute = attrs;
    return p;
}

/* The model as messages in w's arena; NULL (the graph failed) when out of memory. */
static Onnx__ModelProto *pb_model(walk *w, tg_tensor *const *inputs, int n_inputs,
                                  tg_tensor *const *outputs, int n_outputs, const tg_onnx_opts *o)
{
    tg_onnx_graph *g = w->g;
    Onnx__ModelProto *m = pb_alloc(w, sizeof *m);
    Onnx__GraphProto *gp = pb_alloc(w, sizeof *gp);
    Onnx__OperatorSetIdProto *opset = pb_alloc(w, sizeof *opset);
    Onnx__OperatorSetIdProto **opsets = pb_alloc(w, sizeof *opsets);
    Onnx__NodeProto **nodes = pb_alloc(w, g->n_nodes * sizeof *nodes);
    Onnx__TensorProto **inits = pb_alloc(w, g->n_inits * sizeof *inits);
    Onnx__ValueInfoProto **ins = pb_alloc(w, (size_t)n_inputs * sizeof *ins);
    Onnx__ValueInfoProto **outs = pb_alloc(w, (size_t)n_outputs * sizeof *outs);
    if (!m || !gp || !opset || !opsets || !nodes || !inits || !ins || !outs) return NULL;
    for (size_t k = 0; k < g->n_nodes; k++)
        if (!(nodes[k] = pb_node(w, g->nodes[k]))) return NULL;
    for (size_t k = 0; k < g->n_inits; k++)
        if (!(inits[k] = pb_tensor(w, &g->inits[k]))) return NULL;
    int64_t batch_size = -1; /* as recorded: axis 0 of the first input with a symbolic batch */
    for (int i = n_inputs; i-- > 0;)
        if (tg_onnx_batch_axis(g, inputs[i]) == 0) batch_size = inputs[i]->shape[0];
    for (int i = 0; i < n_inputs; i++)
        if (!(ins[i] = pb_value_info(w, tg_onnx_value(g, inputs[i]), inputs[i],
                                     tg_onnx_batch_axis(g, inputs[i]), batch_size)))
            return NULL;
    for (int i = 0; i < n_outputs; i++)
        if (!(outs[i] = pb_value_info(w, tg_onnx_value(g, outputs[i]), outputs[i],
                                      tg_onnx_batch_axis(g, outputs[i]), batch_size)))
            return NULL;
    onnx__graph_proto__init(gp);
    gp->name = (char *)(o->graph_name ? o->graph_name : "tapegrad");
    gp->n_node = g->n_nodes, gp->node = nodes;
    gp->n_initializer = g->n_inits, gp->initializer = inits;
    gp->n_input = (size_t)n_inputs, gp->input = ins;
    gp->n_output = (size_t)n_outputs, gp->output = outs;
    onnx__operator_set_id_proto__init(opset);
    opset->domain = "";
    opset->has_version = true, opset->version = TG_ONNX_OPSET;
    opsets[0] = opset;
    onnx__model_proto__init(m);
    m->has_ir_version = true, m->ir_version = TG_ONNX_IR_VERSION;
    m->n_opset_import = 1, m->opset_import = opsets;
    m->producer_name = "tapegrad";
    m->producer_version = (char *)tg_version_string();
    m->graph = gp;
    return m;
}

/* ====== Writing ====== */

typedef struct packed {
    const uint8_t *data;
    size_t size;
} packed;

static bool write_packed(FILE *fp, void *arg)
{
    const packed *p = arg;
    return !tg__io_fault() && fwrite(p->data, 1, p->size, fp) == p->size;
}

tg_status tg_onnx_export(const char *path, const tg_tape *tp, tg_tensor *const *inputs,
                         int n_inputs, tg_tensor *const *outputs, int n_outputs,
                         tg_params *const *params, int n_params, const tg_onnx_opts *opts,
                         tg_error *err)
{
    const char *where = path ? path : "(no path)";
    if (!path || !*path)
        return tg__set_error(err, TG_ERR_ARG, "onnx_export: the path is NULL or empty");
    const tg_onnx_opts o = opts ? *opts : (tg_onnx_opts){0};
    walk w = {.g = tg__onnx_graph_new()};
    if (!w.g) return tg__set_error(err, TG_ERR_NOMEM, "onnx_export: %s: out of memory", where);
    tg_status s = check_call(w.g, tp, inputs, n_inputs, outputs, n_outputs, params, n_params, &o);
    if (!s && !(w.marked = tg__calloc(tp->n_nodes ? tp->n_nodes : 1, sizeof *w.marked)))
        s = nomem(&w);
    if (!s) s = mark(&w, tp, outputs, n_outputs);
    if (!s) s = index_params(&w, params, n_params);
    if (!s) s = bind_leaves(&w, tp, inputs, n_inputs, &o);
    if (!s) s = run_hooks(&w, tp, outputs, n_outputs);
    Onnx__ModelProto *m = NULL;
    if (!s && !(m = pb_model(&w, inputs, n_inputs, outputs, n_outputs, &o))) s = nomem(&w);
    uint8_t *buf = NULL;
    bool written = false; /* tg__write_atomic reports its own errors */
    if (!s) {
        size_t size = protobuf_c_message_get_packed_size(&m->base);
        if (!(buf = tg__malloc(size ? size : 1))) {
            s = nomem(&w);
        } else {
            packed p = {buf, protobuf_c_message_pack(&m->base, buf)};
            s = tg__write_atomic(path, write_packed, &p, err);
            written = true;
        }
    }
    if (s && !written) tg__set_error(err, s, "onnx_export: %s: %s", where, w.g->msg);
    free(buf);
    free(w.marked);
    HASH_CLEAR(hh, w.needed);
    HASH_CLEAR(hh, w.params);
    tg__arena_free(&w.arena);
    tg__onnx_graph_free(w.g);
    return s;
}
