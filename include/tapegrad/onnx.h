/**
 * @file
 * Exporting a recorded forward graph as an ONNX model (the optional ONNX
 * component: built with -Donnx=enabled, or auto when libprotobuf-c and
 * protoc-c are there; tapegrad.pc then lists libprotobuf-c).
 *
 *     tg_tensor *logits = tg_mlp_forward(tp, mlp, x);      recorded as usual
 *     tg_tensor_set_name(x, "pixels");
 *     tg_tensor_set_name(logits, "logits");
 *     tg_error err;
 *     if (tg_onnx_export("mlp.onnx", tp, &x, 1, &logits, 1, &params, 1,
 *                        &(tg_onnx_opts){.batch = 1}, &err))
 *         fprintf(stderr, "%s\n", err.msg);
 *
 * The model uses the default ONNX domain at opset TG_ONNX_OPSET (17) and IR
 * version TG_ONNX_IR_VERSION (8), so ONNX 1.12 and ONNX Runtime 1.12 and
 * later read it. docs/onnx.md lists the ONNX form of every op.
 */
#ifndef TAPEGRAD_ONNX_H
#define TAPEGRAD_ONNX_H

#include <tapegrad/onnx_graph.h>
#include <tapegrad/tapegrad.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Options of tg_onnx_export; all fields 0 is a fixed-shape graph named
 * "tapegrad" in which every leaf must be an input or a parameter. */
typedef struct tg_onnx_opts {
    const char *graph_name; /**< the graph's name; NULL: "tapegrad" */
    /** bit i (i < 32): axis 0 of inputs[i] is the symbolic dimension "batch",
     * and so is every axis whose size follows it (tg_onnx_batch_axis); record
     * the tape with a batch unlike the other dimensions, and above 1 */
    uint32_t batch;
    /** write leaves that are neither inputs nor parameters (a causal mask,
     * say) as constants with their current values; without it they are an
     * error, so that a forgotten input is not frozen into the model */
    bool constants;
} tg_onnx_opts;

/** Writes the part of tape 'tp' that computes 'outputs' from 'inputs' as an
 * ONNX model at 'path': the nodes the outputs depend on, each written by its
 * op's tg_op_def 'onnx' hook, in recording order. The inputs (leaves, in
 * order) become the graph's inputs and the outputs its outputs, named by
 * their tensor names (tg_tensor_set_name), else "input<i>" and "output<i>".
 * Every other leaf read must be a parameter of one of the n_params
 * registries, written as an initializer under its registry name with its
 * current values (opts->constants widens this to any leaf). An intermediate
 * keeps its tensor name where set. opts may be NULL.
 *
 * The file is written as checkpoints are: a temporary file beside it,
 * synced and renamed, so a failed export leaves no file and an old one in
 * place. Returns TG_OK or, with the reason in 'err' (may be NULL) and
 * tg_last_error, naming the op and node where one is at fault: TG_ERR_ARG
 * for NULL or empty arguments, an output that is not a result of this tape's
 * current recording (a leaf, another tape's or an earlier recording's), a
 * repeated output or input, an input that is not a leaf, a batch bit on a
 * rank-0 input, a leaf that is neither an input nor a parameter, or a name
 * given twice; TG_ERR_STATE for a failed tape, or an op without an ONNX form
 * (a custom op with no 'onnx' hook), naming it; a hook's own status (such as
 * TG_ERR_SHAPE for a reshape that cannot keep the batch symbolic);
 * TG_ERR_NOMEM; TG_ERR_IO naming the step that failed. The tape is only
 * read. */
TG_API tg_status tg_onnx_export(const char *path, const tg_tape *tp, tg_tensor *const *inputs,
                                int n_inputs, tg_tensor *const *outputs, int n_outputs,
                                tg_params *const *params, int n_params, const tg_onnx_opts *opts,
                                tg_error *err);

#ifdef __cplusplus
}
#endif

#endif /* TAPEGRAD_ONNX_H */
