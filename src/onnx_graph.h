/*
 * The ONNX graph builder's insides, shared by the builder (onnx_graph.c, in
 * the core) and the exporter that walks a tape and serializes the graph
 * (onnx/export.c, the optional component). Never installed.
 */
#ifndef TG_ONNX_GRAPH_INTERNAL_H
#define TG_ONNX_GRAPH_INTERNAL_H

#include "internal.h"

typedef enum tg__onnx_attr_kind {
    TG__ATTR_INT,
    TG__ATTR_FLOAT,
    TG__ATTR_INTS,
    TG__ATTR_STRING
} tg__onnx_attr_kind;

typedef struct tg__onnx_attr {
    const char *name;
    tg__onnx_attr_kind kind;
    int64_t i;
    double f;
    const int64_t *ints;
    int n_ints;
    const char *s;
    struct tg__onnx_attr *next; /* in the order they were added */
} tg__onnx_attr;

struct tg_onnx_node {
    tg_onnx_graph *g;
    const char *op_type;
    const char *name; /* "<op>_<node>": the tapegrad op and node it came from */
    const char **in, **out;
    int n_in, n_out;
    tg__onnx_attr *attrs, *last_attr;
    int n_attrs;
};

/* An initializer: a constant a hook made (data copied into the arena) or a
 * leaf written with its current values (data is the leaf's, read while the
 * export runs). */
typedef struct tg__onnx_init {
    const char *name;
    tg_dtype dtype;
    int rank;
    int64_t shape[TG_MAX_RANK];
    const void *data;
} tg__onnx_init;

typedef struct tg__onnx_value tg__onnx_value; /* tensor -> name, in onnx_graph.c */
typedef struct tg__onnx_name tg__onnx_name;   /* the names taken, in onnx_graph.c */

struct tg_onnx_graph {
    tg_status status;
    char msg[512];
    tg__arena arena; /* names, nodes, attributes, copied constants */
    tg_onnx_node **nodes;
    size_t n_nodes, cap_nodes;
    tg__onnx_init *inits;
    size_t n_inits, cap_inits;
    tg__onnx_value *values;
    tg__onnx_name *names;
    uint64_t n_temps;
    /* The node being exported, for messages and for the output's name. */
    const char *op;
    size_t node;
    const tg_tensor *out;
    int node_parts; /* ONNX nodes written for it so far */
};

tg_onnx_graph *tg__onnx_graph_new(void);
void tg__onnx_graph_free(tg_onnx_graph *g);
/* Gives tensor t the value 'name' exactly (a graph input or an initializer)
 * with batch axis 'batch' (-1: none); TG_ERR_ARG when the name is taken. */
tg_status tg__onnx_bind(tg_onnx_graph *g, const tg_tensor *t, const char *name, int batch);
/* Adds leaf t as an initializer under the name tg__onnx_bind gave it. */
tg_status tg__onnx_leaf_init(tg_onnx_graph *g, const tg_tensor *t);
/* Starts exporting node 'node' (op 'op'): out's value gets 'name' (NULL: the
 * tensor's own name, else a fresh one) and the default batch axis. */
tg_status tg__onnx_begin(tg_onnx_graph *g, size_t node, const char *op, const tg_tensor *out,
                         tg_tensor *const *in, int n_in, const char *name);
/* Ends it: out's value must have been written by a node. */
tg_status tg__onnx_end(tg_onnx_graph *g);
/* Whether t has a value in the graph. */
bool tg__onnx_has(tg_onnx_graph *g, const tg_tensor *t);
/* Records an error with no op prefix (argument checks of the export). */
TG__PRINTF(3, 4) tg_status tg__onnx_error(tg_onnx_graph *g, tg_status s, const char *fmt, ...);

#endif
