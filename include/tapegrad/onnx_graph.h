/**
 * @file
 * The graph builder an op's ONNX hook writes through (tg_op_def.onnx).
 *
 * tg_onnx_export (tapegrad/onnx.h) walks a tape and calls, for each node it
 * exports, the hook of the node's op. The hook adds ONNX nodes (default
 * domain, opset TG_ONNX_OPSET) that compute the value of its output from the
 * values of its inputs, by name:
 *
 *     static tg_status softplus_onnx(tg_onnx_graph *g, const tg_tensor *out,
 *                                    tg_tensor *const *in, int n_in, void *ctx)
 *     {
 *         const char *x = tg_onnx_value(g, in[0]), *y = tg_onnx_value(g, out);
 *         tg_onnx_node_add(g, "Softplus", &x, 1, &y, 1);
 *         return tg_onnx_status(g);
 *     }
 *
 * The builder knows nothing of protobuf, so ops compile without the optional
 * ONNX component. Errors are sticky, as on a tape: the first failing call
 * records a status and a message (naming the op whose hook is running), every
 * later call returns NULL or that status, and the hook returns
 * tg_onnx_status(g) at the end. Names and nodes belong to the graph and live
 * until the export ends.
 */
#ifndef TAPEGRAD_ONNX_GRAPH_H
#define TAPEGRAD_ONNX_GRAPH_H

#include <tapegrad/tapegrad.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TG_ONNX_OPSET      17 /**< the version of the default ONNX domain the hooks write */
#define TG_ONNX_IR_VERSION 8  /**< the ONNX IR version of exported models (ONNX 1.12 and later) */

/** A node being added to the graph, for its attributes; owned by the graph. */
typedef struct tg_onnx_node tg_onnx_node;

/** The name of tensor t's value: a graph input, an initializer, the output
 * of an earlier node, or, for the output of the node being exported, the
 * name its nodes must write. NULL (TG_ERR_ARG on the graph) for a tensor that
 * is none of these, or on a failed graph. */
TG_API const char *tg_onnx_value(tg_onnx_graph *g, const tg_tensor *t);
/** A fresh name for an intermediate value, made from 'hint' (NULL: "t");
 * NULL on a failed graph or when out of memory. */
TG_API const char *tg_onnx_temp(tg_onnx_graph *g, const char *hint);
/** Adds a node of the default domain running 'op_type' on n_in input names
 * ("" for an optional input left out) into n_out output names; the strings
 * are copied. Returns the node, for its attributes, or NULL on a failed graph,
 * for a NULL name (an earlier call failed) or when out of memory. */
TG_API tg_onnx_node *tg_onnx_node_add(tg_onnx_graph *g, const char *op_type, const char *const *in,
                                      int n_in, const char *const *out, int n_out);
/** Adds an INT attribute to node n; a NULL n returns the graph's status. */
TG_API tg_status tg_onnx_attr_int(tg_onnx_node *n, const char *name, int64_t v);
/** Adds a FLOAT attribute (ONNX stores it as a 32-bit float). */
TG_API tg_status tg_onnx_attr_float(tg_onnx_node *n, const char *name, double v);
/** Adds an INTS attribute of 'count' values. */
TG_API tg_status tg_onnx_attr_ints(tg_onnx_node *n, const char *name, const int64_t *v, int count);
/** Adds a STRING attribute. */
TG_API tg_status tg_onnx_attr_string(tg_onnx_node *n, const char *name, const char *v);
/** A constant: an initializer named after 'hint' holding a copy of the
 * numel elements at 'data', of dtype dt and the given shape (rank 0..4).
 * Returns its name, or NULL on a failed graph or when out of memory. */
TG_API const char *tg_onnx_const(tg_onnx_graph *g, const char *hint, tg_dtype dt, int rank,
                                 const int64_t *shape, const void *data);
/** A rank-0 constant of dtype dt holding v (rounded to dt). */
TG_API const char *tg_onnx_scalar(tg_onnx_graph *g, tg_dtype dt, double v);
/** A rank-1 TG_I64 constant of 'count' values (shapes, axes, pads). */
TG_API const char *tg_onnx_ints(tg_onnx_graph *g, const int64_t *v, int count);
/** The axis of t whose size follows the graph's symbolic batch dimension, or
 * -1. Graph inputs exported with a symbolic batch have it at axis 0; a node's
 * output gets, before its hook runs, the axis of the first input whose batch
 * axis, aligned at the right as in broadcasting, has the same size in the
 * output. A hook whose op moves or removes that axis sets it. Hooks that
 * write shapes as constants (reshape, expand) read it to keep the batch
 * symbolic. */
TG_API int tg_onnx_batch_axis(tg_onnx_graph *g, const tg_tensor *t);
/** Sets the batch axis of t's value (-1: none); ignored for a tensor with no
 * value in the graph. */
TG_API void tg_onnx_set_batch_axis(tg_onnx_graph *g, const tg_tensor *t, int axis);
/** Fails the export with status s and a message, prefixed with the op being
 * exported and its node number; the first failure stays. Returns the graph's
 * status. */
TG_API tg_status tg_onnx_fail(tg_onnx_graph *g, tg_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/** TG_OK, or the graph's first error. */
TG_API tg_status tg_onnx_status(const tg_onnx_graph *g);

#ifdef __cplusplus
}
#endif

#endif /* TAPEGRAD_ONNX_GRAPH_H */
