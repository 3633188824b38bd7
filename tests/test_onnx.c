/*
 * tg_onnx_export: what the file holds (read back with protobuf-c), the
 * symbolic batch, custom ops with and without a hook, and every refusal:
 * a failed tape, an output not on the tape, an op with no ONNX form, a leaf
 * that is neither an input nor a parameter, I/O and memory failures. A
 * refused or failed export leaves no file and no temporary file, and an old
 * file at the path as it was. Running the models is tests/onnx/'s job.
 */
#include <tapegrad/onnx.h>

#include "internal.h"
#include "onnx.pb-c.h"
#include "testutil.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void faults_off(void)
{
    tg__io_fail_after = -1;
    tg__alloc_fail_after = -1;
}

static void scratch_make(void)
{
    faults_off();
    tu_scratch_make("tg_onnx");
}

static void scratch_remove(void)
{
    faults_off();
    tu_scratch_remove();
}

/* The number of entries in the scratch folder: a refused export adds none. */
static int files_in_scratch(void)
{
    DIR *d = opendir(tu_scratch());
    ck_assert_ptr_nonnull(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

static Onnx__ModelProto *read_model(const char *path)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    static uint8_t buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    ck_assert_uint_lt(n, sizeof buf);
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, n, buf);
    ck_assert_ptr_nonnull(m);
    return m;
}

static const Onnx__TensorProto *initializer(const Onnx__ModelProto *m, const char *name)
{
    for (size_t i = 0; i < m->graph->n_initializer; i++)
        if (!strcmp(m->graph->initializer[i]->name, name)) return m->graph->initializer[i];
    return NULL;
}

/* Asserts dimension d of a graph input's or output's type: a size, or the
 * symbolic "batch" for size -1, or unknown for -2. */
static void expect_dim(const Onnx__ValueInfoProto *v, size_t d, int64_t size)
{
    const Onnx__TensorShapeProto *s = v->type->tensor_type->shape;
    ck_assert_uint_gt(s->n_dim, d);
    const Onnx__TensorShapeProto__Dimension *dim = s->dim[d];
    if (size == -1) {
        ck_assert_int_eq(dim->value_case, ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM);
        ck_assert_str_eq(dim->dim_param, "batch");
    } else if (size == -2) {
        ck_assert_int_eq(dim->value_case, ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE__NOT_SET);
    } else {
        ck_assert_int_eq(dim->value_case, ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE);
        ck_assert_int_eq(dim->dim_value, size);
    }
}

/* ====== The 2-3-2 network, as the file holds it ====== */

typedef struct seed_net {
    tg_params *ps;
    tg_tensor *w2, *b2, *w3, *b3, *x;
    tg_tape *tp;
    tg_tensor *y;
} seed_net;

static void seed_make(seed_net *n)
{
    n->ps = tg_params_new();
    n->w2 = tg_params_add(n->ps, "W2", TG_F32, 2, (int64_t[]){2, 3});
    n->b2 = tg_params_add(n->ps, "b2", TG_F32, 1, (int64_t[]){3});
    n->w3 = tg_params_add(n->ps, "W3", TG_F32, 2, (int64_t[]){3, 2});
    n->b3 = tg_params_add(n->ps, "b3", TG_F32, 1, (int64_t[]){2});
    const float w2[] = {0.1f, -0.4f, 0.7f, 0.3f, 0.2f, -0.6f};
    memcpy(tg_tensor_data(n->w2), w2, sizeof w2);
    n->x = tu_lit(TG_F32, "1x2", (double[]){0.5, -1.2});
    tg_tensor_set_name(n->x, "x");
    n->tp = tg_tape_new();
    tg_tensor *a2 = tg_sigmoid(n->tp, tg_add_bias(n->tp, tg_matmul(n->tp, n->x, n->w2), n->b2));
    n->y = tg_sigmoid(n->tp, tg_add_bias(n->tp, tg_matmul(n->tp, a2, n->w3), n->b3));
    tg_tensor_set_name(n->y, "a3");
    ck_assert_int_eq(tg_tape_status(n->tp), TG_OK);
}

static void seed_free(seed_net *n)
{
    tg_tape_free(n->tp);
    tg_tensor_free(n->x);
    tg_params_free(n->ps);
}

static tg_status seed_export(seed_net *n, const char *path, tg_error *err)
{
    return tg_onnx_export(path, n->tp, &n->x, 1, &n->y, 1, &n->ps, 1, NULL, err);
}

START_TEST(seed_network_file)
{
    seed_net n;
    seed_make(&n);
    const char *path = tu_in_scratch("seed.onnx");
    tg_error err;
    ck_assert_int_eq(seed_export(&n, path, &err), TG_OK);
    ck_assert_int_eq(files_in_scratch(), 1);
    Onnx__ModelProto *m = read_model(path);
    ck_assert_int_eq(m->ir_version, 8);
    ck_assert_uint_eq(m->n_opset_import, 1);
    ck_assert_str_eq(m->opset_import[0]->domain, "");
    ck_assert_int_eq(m->opset_import[0]->version, 17);
    ck_assert_str_eq(m->producer_name, "tapegrad");
    const Onnx__GraphProto *g = m->graph;
    ck_assert_str_eq(g->name, "tapegrad");
    const char *ops[] = {"MatMul", "Add", "Sigmoid", "MatMul", "Add", "Sigmoid"};
    ck_assert_uint_eq(g->n_node, 6);
    for (size_t i = 0; i < 6; i++)
        ck_assert_str_eq(g->node[i]->op_type, ops[i]);
    ck_assert_str_eq(g->node[0]->input[0], "x");
    ck_assert_str_eq(g->node[0]->input[1], "W2");
    ck_assert_str_eq(g->node[5]->output[0], "a3");
    /* Parameters are initializers by registry name, with their values. */
    ck_assert_uint_eq(g->n_initializer, 4);
    const Onnx__TensorProto *w2 = initializer(m, "W2");
    ck_assert_ptr_nonnull(w2);
    ck_assert_int_eq(w2->data_type, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT);
    ck_assert_uint_eq(w2->n_dims, 2);
    ck_assert_int_eq(w2->dims[0], 2);
    ck_assert_int_eq(w2->dims[1], 3);
    ck_assert_uint_eq(w2->raw_data.len, 6 * sizeof(float));
    ck_assert_mem_eq(w2->raw_data.data, tg_tensor_cdata(n.w2), 6 * sizeof(float));
    ck_assert_ptr_nonnull(initializer(m, "b3"));
    ck_assert_uint_eq(g->n_input, 1);
    ck_assert_str_eq(g->input[0]->name, "x");
    ck_assert_int_eq(g->input[0]->type->tensor_type->elem_type,
                     ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT);
    expect_dim(g->input[0], 0, 1);
    expect_dim(g->input[0], 1, 2);
    ck_assert_uint_eq(g->n_output, 1);
    ck_assert_str_eq(g->output[0]->name, "a3");
    expect_dim(g->output[0], 1, 2);
    onnx__model_proto__free_unpacked(m, NULL);
    seed_free(&n);
}
END_TEST

/* Unnamed tensors: input0 and output0; the graph's name from the options. */
START_TEST(default_names)
{
    tg_tensor *x = tu_operand("2x3", TG_F64, 1);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_exp(tp, x);
    const char *path = tu_in_scratch("exp.onnx");
    ck_assert_int_eq(
        tg_onnx_export(path, tp, &x, 1, &y, 1, NULL, 0, &(tg_onnx_opts){.graph_name = "g"}, NULL),
        TG_OK);
    Onnx__ModelProto *m = read_model(path);
    ck_assert_str_eq(m->graph->name, "g");
    ck_assert_str_eq(m->graph->input[0]->name, "input0");
    ck_assert_int_eq(m->graph->input[0]->type->tensor_type->elem_type,
                     ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE);
    ck_assert_str_eq(m->graph->output[0]->name, "output0");
    ck_assert_str_eq(m->graph->node[0]->output[0], "output0");
    onnx__model_proto__free_unpacked(m, NULL);
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

/* ====== The symbolic batch ====== */

START_TEST(symbolic_batch)
{
    tg_params *ps = tg_params_new();
    tg_tensor *w = tg_params_add(ps, "w", TG_F32, 2, (int64_t[]){12, 5});
    tg_tensor *x = tu_operand("4x3x4", TG_F32, 2);
    tg_tensor_set_name(x, "x");
    tg_tape *tp = tg_tape_new();
    /* [4,3,4] -> [4,12] -> [4,5], and a sum over the batch that loses it. */
    tg_tensor *flat = tg_reshape(tp, x, 2, (int64_t[]){4, 12});
    tg_tensor *y = tg_relu(tp, tg_matmul(tp, flat, w));
    tg_tensor *s = tg_sum_axis(tp, y, 0, false);
    tg_tensor *outs[2] = {y, s};
    const char *path = tu_in_scratch("batch.onnx");
    ck_assert_int_eq(
        tg_onnx_export(path, tp, &x, 1, outs, 2, &ps, 1, &(tg_onnx_opts){.batch = 1}, NULL), TG_OK);
    Onnx__ModelProto *m = read_model(path);
    const Onnx__GraphProto *g = m->graph;
    expect_dim(g->input[0], 0, -1);
    expect_dim(g->input[0], 1, 3);
    expect_dim(g->output[0], 0, -1);
    expect_dim(g->output[0], 1, 5);
    expect_dim(g->output[1], 0, 5);
    /* Reshape infers the batch: its shape is [-1, 12]. */
    ck_assert_str_eq(g->node[0]->op_type, "Reshape");
    const Onnx__TensorProto *shape = initializer(m, g->node[0]->input[1]);
    ck_assert_ptr_nonnull(shape);
    ck_assert_int_eq(shape->data_type, ONNX__TENSOR_PROTO__DATA_TYPE__INT64);
    int64_t dims[2];
    ck_assert_uint_eq(shape->raw_data.len, sizeof dims);
    memcpy(dims, shape->raw_data.data, sizeof dims);
    ck_assert_int_eq(dims[0], -1);
    ck_assert_int_eq(dims[1], 12);
    onnx__model_proto__free_unpacked(m, NULL);
    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_params_free(ps);
}
END_TEST

/* An output whose batch axis holds more than the batch ([B T, V]) has that
 * dimension unknown, not "batch". */
START_TEST(folded_batch_is_unknown)
{
    tg_tensor *x = tu_operand("4x3x2", TG_F32, 3);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_reshape(tp, x, 2, (int64_t[]){12, 2});
    const char *path = tu_in_scratch("fold.onnx");
    ck_assert_int_eq(
        tg_onnx_export(path, tp, &x, 1, &y, 1, NULL, 0, &(tg_onnx_opts){.batch = 1}, NULL), TG_OK);
    Onnx__ModelProto *m = read_model(path);
    expect_dim(m->graph->output[0], 0, -2);
    expect_dim(m->graph->output[0], 1, 2);
    onnx__model_proto__free_unpacked(m, NULL);
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

/* A batch moved off axis 0 and then merged with another axis has no axis of
 * its own to become -1 in: the export fails, naming the reshape. */
START_TEST(batch_that_cannot_stay_symbolic)
{
    tg_tensor *x = tu_operand("4x3", TG_F32, 4);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_reshape(tp, tg_transpose(tp, x), 1, (int64_t[]){12});
    const char *path = tu_in_scratch("t.onnx");
    tg_error err;
    ck_assert_int_eq(
        tg_onnx_export(path, tp, &x, 1, &y, 1, NULL, 0, &(tg_onnx_opts){.batch = 1}, &err),
        TG_ERR_SHAPE);
    ck_assert_msg(strstr(err.msg, "reshape (node 1): the batch axis 1"), "%s", err.msg);
    ck_assert_int_eq(files_in_scratch(), 0);
    /* Without a symbolic batch the same tape exports. */
    ck_assert_int_eq(tg_onnx_export(path, tp, &x, 1, &y, 1, NULL, 0, NULL, &err), TG_OK);
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

/* ====== Refusals: clear status, no file ====== */

/* Asserts the export failed with 'want', that err and tg_last_error say
 * 'text', and that nothing was written. */
static void expect_refused(tg_status got, tg_status want, const tg_error *err, const char *text)
{
    ck_assert_msg(got == want, "status %s, want %s (%s)", tg_status_str(got), tg_status_str(want),
                  err->msg);
    ck_assert_int_eq(err->status, want);
    ck_assert_msg(strstr(err->msg, text), "'%s' does not say '%s'", err->msg, text);
    ck_assert_str_eq(tg_last_error()->msg, err->msg);
    ck_assert_int_eq(files_in_scratch(), 0);
}

START_TEST(failed_tape)
{
    seed_net n;
    seed_make(&n);
    tg_tensor *bad = tu_operand("3x3", TG_F32, 5);
    ck_assert_ptr_null(tg_matmul(n.tp, n.x, bad)); /* [1,2] x [3,3] fails the tape */
    tg_error err;
    expect_refused(seed_export(&n, tu_in_scratch("f.onnx"), &err), TG_ERR_STATE, &err,
                   "onnx_export: ");
    ck_assert_msg(strstr(err.msg, "the tape has failed: matmul: inner dimensions differ"), "%s",
                  err.msg);
    tg_tensor_free(bad);
    seed_free(&n);
}
END_TEST

START_TEST(output_not_on_the_tape)
{
    seed_net n;
    seed_make(&n);
    tg_error err;
    const char *path = tu_in_scratch("o.onnx");
    /* A leaf. */
    expect_refused(tg_onnx_export(path, n.tp, &n.x, 1, &n.x, 1, &n.ps, 1, NULL, &err), TG_ERR_ARG,
                   &err, "output 0 x [1x2] is a leaf, which no node of the tape computes");
    /* Another tape's result. */
    tg_tape *other = tg_tape_new();
    tg_tensor *y2 = tg_exp(other, n.x);
    expect_refused(tg_onnx_export(path, n.tp, &n.x, 1, &y2, 1, &n.ps, 1, NULL, &err), TG_ERR_ARG,
                   &err,
                   "output 0 belongs to another tape: only results of the tape's current "
                   "recording can be exported");
    /* A result of the recording before a reset. */
    tg_tape_reset(other);
    expect_refused(tg_onnx_export(path, other, &n.x, 1, &y2, 1, &n.ps, 1, NULL, &err), TG_ERR_ARG,
                   &err, "recorded before the tape's last reset");
    tg_tape_free(other);
    seed_free(&n);
}
END_TEST

/* ====== Custom ops ====== */

static tg_status sq_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in, (void)ctx;
    for (int64_t k = 0; k < tg_tensor_numel(out); k++)
        tu_put(out, k, tu_at(in[0], k) * tu_at(in[0], k));
    return TG_OK;
}

static tg_status sq_onnx(tg_onnx_graph *g, const tg_tensor *out, tg_tensor *const *in, int n_in,
                         void *ctx)
{
    (void)n_in, (void)ctx;
    const char *x = tg_onnx_value(g, in[0]), *y = tg_onnx_value(g, out);
    const char *two = tg_onnx_scalar(g, tg_tensor_dtype(out), 2);
    const char *ins[2] = {x, two};
    tg_onnx_node *n = tg_onnx_node_add(g, "Pow", ins, 2, &y, 1);
    ck_assert_ptr_nonnull(n);
    return tg_onnx_status(g);
}

static tg_status bad_onnx(tg_onnx_graph *g, const tg_tensor *out, tg_tensor *const *in, int n_in,
                          void *ctx)
{
    (void)out, (void)in, (void)n_in, (void)ctx;
    return tg_onnx_fail(g, TG_ERR_SHAPE, "cannot write a [%d] form", 7);
}

static tg_status idle_onnx(tg_onnx_graph *g, const tg_tensor *out, tg_tensor *const *in, int n_in,
                           void *ctx)
{
    (void)g, (void)out, (void)in, (void)n_in, (void)ctx;
    return TG_OK;
}

static const tg_op_def sq_def = {.name = "sq", .forward = sq_forward, .onnx = sq_onnx};
static const tg_op_def sq_bare_def = {.name = "sq_bare", .forward = sq_forward};
static const tg_op_def sq_bad_def = {.name = "sq_bad", .forward = sq_forward, .onnx = bad_onnx};
static const tg_op_def sq_idle_def = {.name = "sq_idle", .forward = sq_forward, .onnx = idle_onnx};

START_TEST(custom_op_with_a_hook)
{
    tg_tensor *x = tu_operand("2x2", TG_F32, 6);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_custom(tp, &sq_def, &x, 1, 2, tg_tensor_shape(x), NULL);
    const char *path = tu_in_scratch("sq.onnx");
    ck_assert_int_eq(tg_onnx_export(path, tp, &x, 1, &y, 1, NULL, 0, NULL, NULL), TG_OK);
    Onnx__ModelProto *m = read_model(path);
    ck_assert_uint_eq(m->graph->n_node, 1);
    ck_assert_str_eq(m->graph->node[0]->op_type, "Pow");
    ck_assert_str_eq(m->graph->node[0]->name, "sq_0");
    onnx__model_proto__free_unpacked(m, NULL);
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

START_TEST(custom_op_without_a_hook)
{
    tg_tensor *x = tu_operand("2x2", TG_F32, 7);
    tg_tape *tp = tg_tape_new();
    tg_tensor *h = tg_tanh(tp, x);
    tg_tensor *y = tg_exp(tp, tg_custom(tp, &sq_bare_def, &h, 1, 2, tg_tensor_shape(x), NULL));
    tg_error err;
    expect_refused(tg_onnx_export(tu_in_scratch("b.onnx"), tp, &x, 1, &y, 1, NULL, 0, NULL, &err),
                   TG_ERR_STATE, &err,
                   "sq_bare (node 1): the op 'sq_bare' has no ONNX form: its tg_op_def has no "
                   "'onnx' hook");
    /* A node the outputs do not need is not exported, hook or not. */
    ck_assert_int_eq(tg_onnx_export(tu_in_scratch("h.onnx"), tp, &x, 1, &h, 1, NULL, 0, NULL, &err),
                     TG_OK);
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

START_TEST(hook_failures)
{
    tg_tensor *x = tu_operand("2x2", TG_F32, 8);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_custom(tp, &sq_bad_def, &x, 1, 2, tg_tensor_shape(x), NULL);
    tg_tensor *z = tg_custom(tp, &sq_idle_def, &x, 1, 2, tg_tensor_shape(x), NULL);
    tg_error err;
    const char *path = tu_in_scratch("k.onnx");
    expect_refused(tg_onnx_export(path, tp, &x, 1, &y, 1, NULL, 0, NULL, &err), TG_ERR_SHAPE, &err,
                   "sq_bad (node 0): cannot write a [7] form");
    expect_refused(tg_onnx_export(path, tp, &x, 1, &z, 1, NULL, 0, NULL, &err), TG_ERR_STATE, &err,
                   "sq_idle (node 1): the export hook wrote no node for the output");
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

/* ====== Leaves and names ====== */

START_TEST(leaf_neither_input_nor_parameter)
{
    tg_tensor *x = tu_operand("2x3", TG_F32, 9), *c = tu_operand("3", TG_F32, 10);
    tg_tensor_set_name(c, "shift");
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_add(tp, x, c);
    tg_error err;
    const char *path = tu_in_scratch("l.onnx");
    expect_refused(tg_onnx_export(path, tp, &x, 1, &y, 1, NULL, 0, NULL, &err), TG_ERR_ARG, &err,
                   "leaf shift [3], input 1 of add (node 0), is neither an input nor a parameter");
    /* As a constant, with its current values, under its name. */
    ck_assert_int_eq(
        tg_onnx_export(path, tp, &x, 1, &y, 1, NULL, 0, &(tg_onnx_opts){.constants = true}, &err),
        TG_OK);
    Onnx__ModelProto *m = read_model(path);
    const Onnx__TensorProto *t = initializer(m, "shift");
    ck_assert_ptr_nonnull(t);
    ck_assert_mem_eq(t->raw_data.data, tg_tensor_cdata(c), 3 * sizeof(float));
    onnx__model_proto__free_unpacked(m, NULL);
    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_tensor_free(c);
}
END_TEST

START_TEST(bad_arguments)
{
    seed_net n;
    seed_make(&n);
    tg_error err;
    const char *p = tu_in_scratch("a.onnx");
    tg_tensor *two[2] = {n.y, n.y}, *xx[2] = {n.x, n.x}, *s = tu_operand("scalar", TG_F32, 1);
    expect_refused(tg_onnx_export(NULL, n.tp, &n.x, 1, &n.y, 1, &n.ps, 1, NULL, &err), TG_ERR_ARG,
                   &err, "onnx_export: the path is NULL or empty");
    expect_refused(tg_onnx_export(p, NULL, &n.x, 1, &n.y, 1, &n.ps, 1, NULL, &err), TG_ERR_ARG,
                   &err, "the tape is NULL");
    expect_refused(tg_onnx_export(p, n.tp, &n.x, 1, NULL, 0, &n.ps, 1, NULL, &err), TG_ERR_ARG,
                   &err, "no outputs");
    expect_refused(tg_onnx_export(p, n.tp, &n.x, 1, two, 2, &n.ps, 1, NULL, &err), TG_ERR_ARG, &err,
                   "output 1 a3 [1x2] repeats output 0");
    expect_refused(tg_onnx_export(p, n.tp, xx, 2, &n.y, 1, &n.ps, 1, NULL, &err), TG_ERR_ARG, &err,
                   "input 1 x [1x2] repeats input 0");
    expect_refused(tg_onnx_export(p, n.tp, &n.y, 1, &n.y, 1, &n.ps, 1, NULL, &err), TG_ERR_ARG,
                   &err, "input 0 a3 [1x2] is not a leaf");
    expect_refused(
        tg_onnx_export(p, n.tp, &s, 1, &n.y, 1, &n.ps, 1, &(tg_onnx_opts){.batch = 1}, &err),
        TG_ERR_ARG, &err, "input 0 [] has rank 0, so it has no batch axis");
    expect_refused(
        tg_onnx_export(p, n.tp, &n.x, 1, &n.y, 1, &n.ps, 1, &(tg_onnx_opts){.batch = 2}, &err),
        TG_ERR_ARG, &err, "the batch bits name inputs past the 1 given");
    /* The same registry twice, and an input named like a parameter. */
    tg_params *twice[2] = {n.ps, n.ps};
    expect_refused(tg_onnx_export(p, n.tp, &n.x, 1, &n.y, 1, twice, 2, NULL, &err), TG_ERR_ARG,
                   &err, "the parameter 'W2' is in two registries");
    tg_tensor_set_name(n.x, "W2");
    expect_refused(seed_export(&n, p, &err), TG_ERR_ARG, &err, "the name 'W2' is given twice");
    tg_tensor_free(s);
    seed_free(&n);
}
END_TEST

/* An input the outputs do not read is still an input of the graph. */
START_TEST(unread_input)
{
    seed_net n;
    seed_make(&n);
    tg_tensor *extra = tu_operand("4", TG_F32, 11);
    tg_tensor_set_name(extra, "unused");
    tg_tensor *in[2] = {n.x, extra};
    const char *path = tu_in_scratch("u.onnx");
    ck_assert_int_eq(tg_onnx_export(path, n.tp, in, 2, &n.y, 1, &n.ps, 1, NULL, NULL), TG_OK);
    Onnx__ModelProto *m = read_model(path);
    ck_assert_uint_eq(m->graph->n_input, 2);
    ck_assert_str_eq(m->graph->input[1]->name, "unused");
    onnx__model_proto__free_unpacked(m, NULL);
    tg_tensor_free(extra);
    seed_free(&n);
}
END_TEST

/* ====== Failures while writing ====== */

/* Every I/O step fails in turn: TG_ERR_IO naming the step, no file, and an
 * old file at the path unchanged. */
START_TEST(interrupted_write_keeps_the_old_file)
{
    seed_net n;
    seed_make(&n);
    const char *path = tu_in_scratch("w.onnx");
    tu_write_file(path, "old", 3);
    int step;
    for (step = 0;; step++) {
        tg_error err;
        tg__io_fail_after = step;
        tg_status s = seed_export(&n, path, &err);
        if (tg__io_fail_after >= 0) { /* fewer steps than 'step': the export ran to the end */
            tg__io_fail_after = -1;
            ck_assert_int_eq(s, TG_OK);
            break;
        }
        ck_assert_int_eq(s, TG_ERR_IO);
        ck_assert_msg(strstr(err.msg, "w.onnx: cannot "), "%s", err.msg);
        ck_assert_int_eq(files_in_scratch(), 1);
        FILE *f = fopen(path, "rb");
        char buf[8] = {0};
        ck_assert_uint_eq(fread(buf, 1, sizeof buf, f), 3);
        fclose(f);
        ck_assert_str_eq(buf, "old");
    }
    ck_assert_int_ge(step, 5); /* create, write, flush, sync, close, rename */
    ck_assert_int_eq(files_in_scratch(), 1);
    Onnx__ModelProto *m = read_model(path);
    ck_assert_uint_eq(m->graph->n_node, 6);
    onnx__model_proto__free_unpacked(m, NULL);
    seed_free(&n);
}
END_TEST

/* Every allocation of the export fails in turn: a failure, never a crash or
 * a leak, and no file. */
START_TEST(out_of_memory)
{
    seed_net n;
    seed_make(&n);
    const char *path = tu_in_scratch("m.onnx");
    long k;
    for (k = 0;; k++) {
        tg_error err;
        tg__alloc_refused = 0;
        tg__alloc_fail_after = k;
        tg_status s = seed_export(&n, path, &err);
        tg__alloc_fail_after = -1;
        if (s == TG_OK) {
            ck_assert_int_eq(tg__alloc_refused, 0);
            break;
        }
        ck_assert_msg(s == TG_ERR_NOMEM, "k = %ld: %s", k, err.msg);
        ck_assert_int_eq(files_in_scratch(), 0);
    }
    ck_assert_int_gt(k, 10);
    seed_free(&n);
}
END_TEST

static Suite *onnx_suite(void)
{
    Suite *s = suite_create("onnx");
    TCase *tc = tcase_create("export");
    tcase_add_checked_fixture(tc, scratch_make, scratch_remove);
    tcase_add_test(tc, seed_network_file);
    tcase_add_test(tc, default_names);
    tcase_add_test(tc, symbolic_batch);
    tcase_add_test(tc, folded_batch_is_unknown);
    tcase_add_test(tc, batch_that_cannot_stay_symbolic);
    tcase_add_test(tc, failed_tape);
    tcase_add_test(tc, output_not_on_the_tape);
    tcase_add_test(tc, custom_op_with_a_hook);
    tcase_add_test(tc, custom_op_without_a_hook);
    tcase_add_test(tc, hook_failures);
    tcase_add_test(tc, leaf_neither_input_nor_parameter);
    tcase_add_test(tc, bad_arguments);
    tcase_add_test(tc, unread_input);
    tcase_add_test(tc, interrupted_write_keeps_the_old_file);
    tcase_add_test(tc, out_of_memory);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run(onnx_suite()); }
