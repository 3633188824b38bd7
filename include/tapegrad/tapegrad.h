/**
 * @file
 * tapegrad: reverse-mode automatic differentiation on a tape, in C11.
 *
 * Ops compute their result at once and record a node on a tape. tg_backward
 * walks the tape in reverse and applies each node's vector-Jacobian product
 * (VJP); gradients accumulate into every leaf that requires grad. The tape can
 * be replayed on new leaf data with no allocation.
 *
 *     tg_tape *tp = tg_tape_new();
 *     tg_tensor *x = tg_tensor_from(TG_F64, 1, (int64_t[]){3}, (double[]){1, 2, 3});
 *     tg_tensor_set_requires_grad(x, true);
 *     tg_tensor *y = tg_sum(tp, tg_square(tp, x));        y = sum x^2
 *     if (tg_backward(tp, y) == TG_OK)                     dy/dx = 2x
 *         printf("%g\n", ((double *)tg_tensor_data(tg_tensor_grad(x)))[2]);   6
 *     tg_tape_free(tp);
 *     tg_tensor_free(x);
 *
 * Errors on a tape are sticky: the first failing op records a status and a
 * message naming the op and the shapes, returns NULL, and every later op
 * passes NULL through. Check once, at the end. Nothing here aborts, exits or
 * prints. docs/design.md has the long story; docs/ops.md the VJP of each op.
 *
 * Ownership: tensors the caller makes (tg_tensor_new, tg_tensor_from, and the
 * loaders) are the caller's to free; every op's result and every
 * intermediate's gradient belong to the tape and live until tg_tape_reset or
 * tg_tape_free. Every op (tg_matmul ... tg_softmax_cross_entropy, tg_custom,
 * tg_dense, tg_mlp_forward) returns such a tape-owned tensor, or NULL with the
 * tape's error set: TG_ERR_ARG for a NULL input or a gradient (backward
 * rewrites it), TG_ERR_STATE for a result of another tape or of this one
 * before its last tg_tape_reset (leaves may be used on any tape),
 * TG_ERR_SHAPE or TG_ERR_DTYPE for operands that do not fit, TG_ERR_NOMEM; on
 * a tape that has already failed it records nothing and returns NULL.
 * Messages name operands by their tg_tensor_set_name name where set. Ops cost
 * one pass over their operands (the matrix product O(n k m)), and so does
 * their VJP.
 */
#ifndef TAPEGRAD_H
#define TAPEGRAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/** TG_API marks the exported functions: default visibility while the library
 * is built (everything else is hidden), nothing for its users. */
#if defined(TG_BUILDING) && defined(__GNUC__)
#define TG_API __attribute__((visibility("default")))
#else
#define TG_API
#endif

#define TG_VERSION_MAJOR  0 /**< Incremented for changes that break the API or ABI. */
#define TG_VERSION_MINOR  1 /**< Incremented for additions. */
#define TG_VERSION_PATCH  0 /**< Incremented for fixes. */
/** The header's version as one comparable number, MAJOR * 10000 + MINOR * 100 + PATCH. */
#define TG_VERSION_NUMBER (TG_VERSION_MAJOR * 10000 + TG_VERSION_MINOR * 100 + TG_VERSION_PATCH)

/** TG_VERSION_NUMBER of the library actually linked, which may differ from
 * the header's when a program runs against another shared library. */
TG_API int tg_version_number(void);
/** The linked library's version as "MAJOR.MINOR.PATCH"; static, never NULL. */
TG_API const char *tg_version_string(void);

/* ====== Errors ====== */

/** What a call returns: TG_OK, or the reason it failed. */
typedef enum tg_status {
    TG_OK = 0,      /**< success */
    TG_ERR_ARG,     /**< NULL or out-of-range argument */
    TG_ERR_SHAPE,   /**< shapes do not fit the op */
    TG_ERR_DTYPE,   /**< mixed or unsupported dtypes */
    TG_ERR_NOMEM,   /**< an allocation failed */
    TG_ERR_STATE,   /**< wrong order of calls (such as backward on a failed tape), or a
                         tensor of another tape or of an earlier recording */
    TG_ERR_IO,      /**< open/read/write failed */
    TG_ERR_FORMAT,  /**< malformed or truncated file */
    TG_ERR_NUMERIC, /**< anomaly mode found a NaN or an infinity */
} tg_status;

/** Static text for a status; never NULL, never allocates. */
TG_API const char *tg_status_str(tg_status s);

/** Functions that have no tape (files, optimizers) return a status and, when
 * given a non-NULL 'err', also fill it with the status and a message naming
 * the file and the line or byte offset. */
typedef struct tg_error {
    tg_status status; /**< the status the function returned */
    char msg[512];    /**< what failed, with the path and the line or byte offset */
} tg_error;

/** The reason for the calling thread's last failed call of a function that
 * has no tape: every one of them (tg_tensor_new, tg_tensor_from,
 * tg_tensor_reshape, tg_tape_new, tg_gradcheck, and in nn.h the registries,
 * initialisation, tg_mlp_new, the optimizers, the data readers, tg_one_hot,
 * tg_split, the batcher and the checkpoints) records its status and a message
 * naming the function and what was wrong here when it returns NULL, -1 or a
 * status other than TG_OK. Calls that succeed leave it alone, as with errno,
 * so read it right after the failure. Never NULL; { TG_OK, "" } before any
 * failure. Thread-local: threads do not see each other's errors. Ops report
 * on their tape instead (tg_tape_error). */
TG_API const tg_error *tg_last_error(void);

/* ====== Tensors ====== */

/** Element type: TG_F32 (float), TG_F64 (double), or TG_I64 (int64_t) for
 * indices and labels. I64 tensors never require grad and are accepted only
 * where an op says so (index_select, embedding, cross_entropy's labels, and
 * ops whose tg_op_def marks an input as an index); elsewhere TG_ERR_DTYPE. */
typedef enum tg_dtype { TG_F32, TG_F64, TG_I64 } tg_dtype;
#define TG_MAX_RANK 4 /**< Tensors have rank 0 (a scalar) to TG_MAX_RANK. */
/** A tensor: shape, dtype, data, an optional gradient and name; opaque. */
typedef struct tg_tensor tg_tensor;

/** A new zero-filled leaf owned by the caller; NULL for a bad rank (0..4), a
 * negative dimension, an impossible size (TG_ERR_ARG), an unknown dtype
 * (TG_ERR_DTYPE) or no memory (TG_ERR_NOMEM), with the reason in
 * tg_last_error. */
TG_API tg_tensor *tg_tensor_new(tg_dtype dt, int rank, const int64_t *shape);
/** Like tg_tensor_new, then copies numel elements of dtype 'dt' from 'data'
 * (NULL 'data' for a non-empty shape is TG_ERR_ARG in tg_last_error). */
TG_API tg_tensor *tg_tensor_from(tg_dtype dt, int rank, const int64_t *shape, const void *data);
/** Frees a leaf and its gradient. NULL is fine; tape-owned tensors and
 * gradients are left alone (a harmless no-op). */
TG_API void tg_tensor_free(tg_tensor *t);
/** The element type of t; TG_F32 for NULL. */
TG_API tg_dtype tg_tensor_dtype(const tg_tensor *t);
/** The number of dimensions, 0 to TG_MAX_RANK; 0 for NULL. */
TG_API int tg_tensor_rank(const tg_tensor *t);
/** The rank dimensions of t, owned by t (valid while t keeps its shape); NULL for NULL. */
TG_API const int64_t *tg_tensor_shape(const tg_tensor *t);
/** The number of elements, the product of the dimensions (1 for rank 0); 0 for NULL. */
TG_API int64_t tg_tensor_numel(const tg_tensor *t);
/** The elements, row-major and contiguous, as float, double or int64_t by dtype; owned
 * by t and writable (writing into a recorded leaf is how tg_tape_replay gets
 * new data). NULL for NULL. */
TG_API void *tg_tensor_data(tg_tensor *t);
/** The elements, read-only; NULL for NULL. */
TG_API const void *tg_tensor_cdata(const tg_tensor *t);
/** The value of a one-element tensor as a double (an I64 converted); NaN for NULL or more elements. */
TG_API double tg_tensor_item(const tg_tensor *t);
/** Asks for dC/dt: backward then gives t a gradient (a leaf's accumulates
 * across calls) and ops recorded later on t carry gradients back to it.
 * Ignored for NULL, for gradient tensors and for TG_I64 tensors. */
TG_API void tg_tensor_set_requires_grad(tg_tensor *t, bool on);
/** Whether backward computes dC/dt: set on a leaf, or inherited by an op's
 * result from its inputs. false for NULL. */
TG_API bool tg_tensor_requires_grad(const tg_tensor *t);
/** dC/dt after a backward reached t, else NULL. Owned by t (a leaf) or by the
 * tape (an intermediate, and then only that tape may read it as a seed); never
 * free it. Ops refuse a gradient as an input (TG_ERR_ARG): backward rewrites
 * it while the node that reads it runs. Copy it into a tensor of your own. */
TG_API tg_tensor *tg_tensor_grad(const tg_tensor *t);
/** Sets t's gradient to zero if it has one. */
TG_API void tg_tensor_zero_grad(tg_tensor *t);
/** Gives a leaf a new shape with the same number of elements (no data moves).
 * TG_ERR_ARG for a tape-owned tensor or a bad rank, TG_ERR_SHAPE for another
 * element count, with the reason in tg_last_error. A tape that recorded the
 * leaf with its old shape refuses tg_tape_replay and tg_backward
 * (TG_ERR_SHAPE) until it has that shape back. */
TG_API tg_status tg_tensor_reshape(tg_tensor *t, int rank, const int64_t *shape);
/** Optional name used in error messages ("matmul: inner dimensions differ:
 * W1 [2x3] x x [2x2]"), anomaly reports and explanations; copied (truncated to
 * 63 bytes). NULL clears it. */
TG_API void tg_tensor_set_name(tg_tensor *t, const char *name);
/** The name given by tg_tensor_set_name, owned by t; "" when unnamed or NULL. */
TG_API const char *tg_tensor_name(const tg_tensor *t);

/* ====== Tape ====== */

/** A tape: the recorded nodes, the arena that holds their tensors, and the
 * sticky error; opaque. Use one from one thread at a time. */
typedef struct tg_tape tg_tape;

/** A new empty tape, the caller's to free with tg_tape_free; NULL when out of
 * memory (TG_ERR_NOMEM in tg_last_error). */
TG_API tg_tape *tg_tape_new(void);
/** Frees the tape and everything it owns (op results, their gradients, the
 * nodes); the leaves it recorded are the caller's and stay. NULL is fine. */
TG_API void tg_tape_free(tg_tape *tp);
/** Forgets the nodes, releases the intermediates (their memory is kept for the
 * next recording) and clears the error. Results of the forgotten recording
 * are refused by ops and backward afterwards (TG_ERR_STATE), as long as the
 * arena has not handed their memory to a new result; never keep them. */
TG_API void tg_tape_reset(tg_tape *tp);
/** TG_OK, or the first error recorded since the tape was made or reset;
 * TG_ERR_ARG for NULL. A refused call of tg_backward, tg_backward_seed or
 * tg_tape_replay (bad arguments, or leaves that changed shape) returns its
 * status but leaves this one TG_OK. */
TG_API tg_status tg_tape_status(const tg_tape *tp);
/** The first error's message on a failed tape. On a healthy one, the message
 * of a refused call (see tg_tape_status) until the next call on the tape
 * (op, replay, backward, reset), else "". Valid until the next call on the tape. */
TG_API const char *tg_tape_error(const tg_tape *tp);
/** The number of nodes (ops) recorded since the tape was made or reset; 0 for NULL. */
TG_API size_t tg_tape_size(const tg_tape *tp);
/** Recomputes every node in recording order from the leaves' current data,
 * with no allocation. Returns the tape's status, or refuses the call with
 * TG_ERR_SHAPE (before anything runs, the tape staying healthy) when a leaf
 * no longer has the shape or dtype a node recorded: "matmul: input 0 was
 * [2x3] when recorded, is now [3x2]". */
TG_API tg_status tg_tape_replay(tg_tape *tp);
/** Seeds dloss = 1 (loss has one element) and sweeps the tape in reverse,
 * each node adding its VJP into its inputs' gradients (fan-out is summed).
 * Intermediates' gradients restart from zero at every sweep; leaves'
 * accumulate until tg_tensor_zero_grad. Returns TG_OK, the error already
 * stored on a failed tape, or the status of a refused call, which writes
 * nothing and leaves the tape usable (tg_tape_error has the message):
 * TG_ERR_ARG for a NULL loss, TG_ERR_SHAPE for a loss of several elements or
 * a leaf that changed shape since it was recorded, TG_ERR_STATE for a loss
 * that depends on nothing that requires grad or belongs to another tape or
 * an earlier recording. Failures while it runs stay on the tape: TG_ERR_NOMEM,
 * a failing VJP, TG_ERR_NUMERIC in anomaly mode. Costs about one forward pass;
 * allocates gradient buffers on its first run only. */
TG_API tg_status tg_backward(tg_tape *tp, tg_tensor *loss);
/** Like tg_backward with the seed dC/d'out' given: 'seed' has out's shape
 * and dtype (else the call is refused with TG_ERR_SHAPE, TG_ERR_DTYPE) and is
 * only read, before any gradient is zeroed, so it may be a gradient of this
 * tape, out's own included (tg_tensor_grad(out) seeds with its current
 * value). A seed of another tape is refused like out (TG_ERR_STATE); in
 * anomaly mode a NaN or Inf in it is refused with TG_ERR_NUMERIC. */
TG_API tg_status tg_backward_seed(tg_tape *tp, tg_tensor *out, const tg_tensor *seed);
/** Anomaly mode, off by default and kept across resets: after each node's
 * forward (recording and replay) and each VJP, the output or the gradients
 * just written are scanned; the first NaN or Inf fails the tape with
 * TG_ERR_NUMERIC and a message naming the node, the op, the tensor (by name
 * where set) and the inputs' names and shapes. One extra pass over every
 * buffer, so it is for debugging. NULL is ignored. */
TG_API void tg_tape_set_anomaly(tg_tape *tp, bool on);
/** Whether the ops recorded from now on track gradients (on by default;
 * tg_tape_reset keeps the setting), like torch.set_grad_enabled. With it off
 * no recorded output requires grad, so a backward through them is refused
 * (TG_ERR_STATE), no node keeps gradient slots and no gradient buffer is ever
 * made; forward values are unchanged. Replays of such a tape cost only the
 * forward. NULL is ignored. */
TG_API void tg_tape_set_grad(tg_tape *tp, bool on);

/* ====== Ops ======
 * All return a tape-owned tensor, or NULL with the tape error set. Binary ops
 * need one dtype; the elementwise ones broadcast like NumPy. */

/** The matrix product a b as torch.matmul for ranks 2 to 4: [..., n, k] x
 * [..., k, m] -> [..., n, m], the batch dimensions (all but the last two)
 * broadcast like NumPy, so a rank-2 operand serves every batch; the VJP sums
 * over broadcast batch dimensions. TG_ERR_SHAPE for a rank below 2, inner
 * dimensions that differ or batch dimensions that do not broadcast.
 * O(batch n k m), one BLAS GEMM per batch (a single one when b is the same
 * matrix for every batch). */
TG_API tg_tensor *tg_matmul(tg_tape *tp, tg_tensor *a, tg_tensor *b);
/** The transpose of a rank-2 tensor, [n,m] -> [m,n] (a copy). */
TG_API tg_tensor *tg_transpose(tg_tape *tp, tg_tensor *a);
/** a + b, elementwise with NumPy broadcasting (shapes aligned at the right,
 * a dimension of 1 stretches); TG_ERR_SHAPE when they do not broadcast. */
TG_API tg_tensor *tg_add(tg_tape *tp, tg_tensor *a, tg_tensor *b);
/** a - b, elementwise with broadcasting. */
TG_API tg_tensor *tg_sub(tg_tape *tp, tg_tensor *a, tg_tensor *b);
/** a ⊙ b, the elementwise (Hadamard) product, with broadcasting. */
TG_API tg_tensor *tg_mul(tg_tape *tp, tg_tensor *a, tg_tensor *b);
/** a / b, elementwise with broadcasting; division by zero gives IEEE infinities or NaN. */
TG_API tg_tensor *tg_div(tg_tape *tp, tg_tensor *a, tg_tensor *b);
/** x [n,m] + b [m], b added to every row; its gradient is dG summed over the
 * rows. TG_ERR_SHAPE for other shapes. */
TG_API tg_tensor *tg_add_bias(tg_tape *tp, tg_tensor *x, tg_tensor *b);
/** s x for a constant s (copied into the tape). */
TG_API tg_tensor *tg_scale(tg_tape *tp, tg_tensor *x, double s);
/** -x. */
TG_API tg_tensor *tg_neg(tg_tape *tp, tg_tensor *x);
/** The logistic function 1 / (1 + e^-x), elementwise; saturates to exactly 0
 * or 1 without overflow. Its VJP uses the saved output: dx = dG y (1 - y). */
TG_API tg_tensor *tg_sigmoid(tg_tape *tp, tg_tensor *x);
/** tanh x, elementwise; dx = dG (1 - y^2). */
TG_API tg_tensor *tg_tanh(tg_tape *tp, tg_tensor *x);
/** max(x, 0), elementwise; the derivative at 0 is taken as 0. */
TG_API tg_tensor *tg_relu(tg_tape *tp, tg_tensor *x);
/** e^x, elementwise. */
TG_API tg_tensor *tg_exp(tg_tape *tp, tg_tensor *x);
/** The natural logarithm, elementwise; IEEE values at 0 (-inf) and below (NaN). */
TG_API tg_tensor *tg_log(tg_tape *tp, tg_tensor *x);
/** x^2, elementwise. */
TG_API tg_tensor *tg_square(tg_tape *tp, tg_tensor *x);
/** The sum of all elements, rank 0 (F32 data is summed in double). */
TG_API tg_tensor *tg_sum(tg_tape *tp, tg_tensor *x);
/** The mean of all elements, rank 0 (NaN for no elements). */
TG_API tg_tensor *tg_mean(tg_tape *tp, tg_tensor *x);
/** The sum over one axis (negative counts from the end), which disappears, or
 * stays with size 1 when keepdim. TG_ERR_ARG for an axis out of range. */
TG_API tg_tensor *tg_sum_axis(tg_tape *tp, tg_tensor *x, int axis, bool keepdim);
/** e^x / sum e^x along the last axis, the row maximum subtracted first so
 * large logits do not overflow; TG_ERR_SHAPE for rank 0. */
TG_API tg_tensor *tg_softmax(tg_tape *tp, tg_tensor *x);
/** x - log sum e^x along the last axis, computed stably; TG_ERR_SHAPE for rank 0. */
TG_API tg_tensor *tg_log_softmax(tg_tape *tp, tg_tensor *x);
/** ||pred - target||_F^2, the sum of squared differences, rank 0;
 * TG_ERR_SHAPE unless the shapes are equal. */
TG_API tg_tensor *tg_frobenius_loss(tg_tape *tp, tg_tensor *pred, tg_tensor *target);
/** The mean of (pred - target)^2 over all elements, rank 0; TG_ERR_SHAPE
 * unless the shapes are equal. */
TG_API tg_tensor *tg_mse_loss(tg_tape *tp, tg_tensor *pred, tg_tensor *target);
/** -1/n sum_i sum_c target[i,c] log softmax(logits)[i,c], rank 0, through
 * log-sum-exp; logits and target (probabilities, one-hot for labels) both [n,c]. */
TG_API tg_tensor *tg_softmax_cross_entropy(tg_tape *tp, tg_tensor *logits, tg_tensor *target);

/* ====== Seeded portable RNG (dropout's masks, initialisation, shuffles) ====== */

/** xoshiro256**, seeded by splitmix64: the same seed gives the same numbers on
 * every machine. A plain struct so it can live on the stack. */
typedef struct tg_rng {
    uint64_t s[4]; /**< the generator's state */
} tg_rng;

/** Sets r's state from one 64-bit seed (through splitmix64). */
TG_API void tg_rng_seed(tg_rng *r, uint64_t seed);
/** The next 64 random bits. */
TG_API uint64_t tg_rng_u64(tg_rng *r);
/** A uniform double in [0, 1), from 53 random bits. */
TG_API double tg_rng_uniform(tg_rng *r);
/** Standard normal by Box-Muller from two uniforms, keeping only the cosine
 * half, so no value is cached outside the four words of state. */
TG_API double tg_rng_normal(tg_rng *r);
/** A uniform integer in [0, n), without modulo bias; 0 for n = 0. */
TG_API uint64_t tg_rng_below(tg_rng *r, uint64_t n);

/* ====== Shape and indexing ops (ops/shape.c) ======
 * Results are copies (no views); each VJP adds dG back to where the elements
 * came from. Axes may be negative (counted from the end); an axis out of
 * range is TG_ERR_ARG. Each op costs one pass over its output, and so does
 * its VJP; none allocates at replay. */

/** x with a new shape of the same number of elements (row-major order kept).
 * One entry may be -1 and is inferred (refused next to a 0 dim, where any
 * size would fit). TG_ERR_ARG for a bad rank or an entry below -1 or a second
 * -1, TG_ERR_SHAPE for another element count. */
TG_API tg_tensor *tg_reshape(tg_tape *tp, tg_tensor *x, int rank, const int64_t *shape);
/** torch.permute: output axis i is input axis perm[i]; perm has rank(x)
 * entries, each axis once (negative allowed), else TG_ERR_ARG. */
TG_API tg_tensor *tg_permute(tg_tape *tp, tg_tensor *x, const int *perm);
/** x[..., start:stop:step, ...] along 'axis', with Python's rules for negative
 * and out-of-range start and stop (an empty range gives a 0 dim); step >= 1,
 * else TG_ERR_ARG. */
TG_API tg_tensor *tg_slice(tg_tape *tp, tg_tensor *x, int axis, int64_t start, int64_t stop,
                           int64_t step);
/** torch.cat of n >= 1 tensors of one rank >= 1 along 'axis'; every other
 * dimension must agree (TG_ERR_SHAPE, naming every input's shape). */
TG_API tg_tensor *tg_concat(tg_tape *tp, tg_tensor *const *xs, int n, int axis);
/** torch.stack of n >= 1 tensors of one shape along a new axis in
 * [-(rank+1), rank]; result rank <= 4, else TG_ERR_SHAPE. */
TG_API tg_tensor *tg_stack(tg_tape *tp, tg_tensor *const *xs, int n, int axis);
/** Broadcasts x to 'shape' (NumPy rules: aligned at the right, a dim of 1
 * stretches, new leading dims; -1 keeps one of x's dims); the VJP sums dG
 * over the stretched axes (F32 in double). TG_ERR_SHAPE when x does not
 * broadcast, TG_ERR_ARG for a rank below x's or a negative size. */
TG_API tg_tensor *tg_expand(tg_tape *tp, tg_tensor *x, int rank, const int64_t *shape);
/** Constant padding: before[i] and after[i] elements of 'value' around axis i
 * (one entry per axis, each >= 0, else TG_ERR_ARG; both may be NULL for a
 * rank-0 x). The padding gets no gradient. */
TG_API tg_tensor *tg_pad(tg_tape *tp, tg_tensor *x, const int64_t *before, const int64_t *after,
                         double value);
/** The entries idx (I64, rank 1, repeats allowed) of x along 'axis'; an
 * index in [-n, 0) counts from the end (torch.index_select refuses those).
 * The VJP adds dG back at each index (index_add; repeats sum, F32 in double).
 * An index outside [-n, n) is TG_ERR_ARG here and fails the tape at replay,
 * naming the position and the value; a non-I64 idx is TG_ERR_DTYPE. */
TG_API tg_tensor *tg_index_select(tg_tape *tp, tg_tensor *x, int axis, tg_tensor *idx);
/** Rows of table [V,D] picked by idx (I64 of rank 0..3, values in [-V, V),
 * negative from the end): idx.shape + [D]. The VJP adds each row of dG into
 * its row of dtable (repeats sum). Index errors as tg_index_select. */
TG_API tg_tensor *tg_embedding(tg_tape *tp, tg_tensor *table, tg_tensor *idx);
/** cond != 0 ? a : b elementwise, broadcasting over all three (TG_ERR_SHAPE
 * otherwise). cond is I64, or a float tensor of a's dtype (NaN picks a); it
 * gets no gradient (zero if it requires one). */
TG_API tg_tensor *tg_where(tg_tape *tp, tg_tensor *cond, tg_tensor *a, tg_tensor *b);

/* ====== More elementwise ops (ops/elementwise.c) ======
 * PyTorch's values and derivatives, including at the kinks; IEEE values (NaN,
 * infinities) are results, not errors. The result has x's shape (the binary
 * ones broadcast like tg_add); one pass over x, and one for the VJP. A
 * parameter that would make every output NaN is TG_ERR_ARG. */

/** x + s for a constant s. */
TG_API tg_tensor *tg_add_scalar(tg_tape *tp, tg_tensor *x, double s);
/** torch.pow(x, p) with a float exponent: p = 0 gives 1 everywhere (gradient
 * 0), x = 0 with p < 1 an infinite derivative, a negative x with a
 * non-integer p NaN. TG_ERR_ARG for a NaN p. */
TG_API tg_tensor *tg_pow(tg_tape *tp, tg_tensor *x, double p);
/** |x|; the derivative at 0 is 0. */
TG_API tg_tensor *tg_abs(tg_tape *tp, tg_tensor *x);
/** The square root; NaN below 0, an infinite derivative at 0. */
TG_API tg_tensor *tg_sqrt(tg_tape *tp, tg_tensor *x);
/** sin x. */
TG_API tg_tensor *tg_sin(tg_tape *tp, tg_tensor *x);
/** cos x. */
TG_API tg_tensor *tg_cos(tg_tape *tp, tg_tensor *x);
/** min(max(x, lo), hi); the gradient passes where lo <= x <= hi, bounds
 * included (torch.clamp). lo > hi gives hi everywhere; either bound may be
 * infinite; TG_ERR_ARG for a NaN bound. */
TG_API tg_tensor *tg_clamp(tg_tape *tp, tg_tensor *x, double lo, double hi);
/** The larger of a and b, broadcasting; ties split the gradient in half, a
 * NaN in either gives NaN and the whole gradient to both (torch.maximum). */
TG_API tg_tensor *tg_maximum(tg_tape *tp, tg_tensor *a, tg_tensor *b);
/** The smaller of a and b, broadcasting; ties split the gradient in half. */
TG_API tg_tensor *tg_minimum(tg_tape *tp, tg_tensor *a, tg_tensor *b);
/** x for x > 0, slope x otherwise; the derivative at x <= 0 is 'slope'
 * (finite, any sign, else TG_ERR_ARG). */
TG_API tg_tensor *tg_leaky_relu(tg_tape *tp, tg_tensor *x, double slope);
/** x for x > 0, alpha (e^x - 1) otherwise (alpha finite, else TG_ERR_ARG). */
TG_API tg_tensor *tg_elu(tg_tape *tp, tg_tensor *x, double alpha);
/** torch's gelu: x Φ(x) through erf (approximate="none"), or its tanh
 * approximation (approximate="tanh"), each with its exact derivative. */
TG_API tg_tensor *tg_gelu(tg_tape *tp, tg_tensor *x, bool tanh_approx);
/** x σ(x), without overflow for large |x|. */
TG_API tg_tensor *tg_silu(tg_tape *tp, tg_tensor *x);
/** log(1 + e^x) as max(x, 0) + log1p(e^-|x|): stable for large |x| (beta 1,
 * no threshold cut); the derivative is σ(x). */
TG_API tg_tensor *tg_softplus(tg_tape *tp, tg_tensor *x);

/* ====== Reductions along an axis (ops/reduce.c) ======
 * The axis may be negative (counted from the end); it disappears from the
 * result, or stays with size 1 with keepdim. TG_ERR_ARG for an axis out of
 * range (rank 0 has none). One pass over x, one for the VJP; F32 sums
 * accumulate in double. */

/** The mean over one axis; an empty axis gives NaN (0/0), as in torch. */
TG_API tg_tensor *tg_mean_axis(tg_tape *tp, tg_tensor *x, int axis, bool keepdim);
/** The values of torch.max(x, axis); the gradient goes to the first maximum,
 * and a NaN counts as the maximum. TG_ERR_SHAPE for an empty axis. */
TG_API tg_tensor *tg_max_axis(tg_tape *tp, tg_tensor *x, int axis, bool keepdim);
/** The values of torch.min(x, axis); the gradient goes to the first minimum,
 * and a NaN counts as the minimum. TG_ERR_SHAPE for an empty axis. */
TG_API tg_tensor *tg_min_axis(tg_tape *tp, tg_tensor *x, int axis, bool keepdim);
/** The index (I64) of the first maximum along 'axis' (of the first NaN if
 * any); no gradient. TG_ERR_SHAPE for an empty axis. */
TG_API tg_tensor *tg_argmax(tg_tape *tp, tg_tensor *x, int axis, bool keepdim);
/** log Σ e^x along 'axis', the maximum subtracted first; as torch, a row of
 * -inf (or an empty axis) gives -inf and a +inf gives +inf. */
TG_API tg_tensor *tg_logsumexp(tg_tape *tp, tg_tensor *x, int axis, bool keepdim);

/* ====== Neural-network ops (ops/conv.c, ops/norm.c) ====== */

/** Convolution options; zero fields mean stride 1, padding 0, dilation 1, groups 1. */
typedef struct tg_conv_opts {
    int stride[2];   /**< per spatial axis (conv1d uses index 0) */
    int padding[2];  /**< zeros added on both sides */
    int dilation[2]; /**< spacing of kernel taps */
    int groups;      /**< C and O are split into this many groups */
} tg_conv_opts;

/** torch.nn.functional.conv1d: x [N,C,L], w [O,C/g,K], b [O] or NULL ->
 * [N,O,L'], L' = floor((L + 2 p - d (K - 1) - 1) / s) + 1, with index 0 of
 * o's arrays (o may be NULL: all defaults). As tg_conv2d with H = 1. */
TG_API tg_tensor *tg_conv1d(tg_tape *tp, tg_tensor *x, tg_tensor *w, tg_tensor *b,
                            const tg_conv_opts *o);
/** torch.nn.functional.conv2d: x [N,C,H,W], w [O,C/g,KH,KW], b [O] or NULL
 * -> [N,O,H',W'], each output size floor((L + 2 p - d (k - 1) - 1) / s) + 1;
 * o may be NULL (all defaults). TG_ERR_ARG for a negative option;
 * TG_ERR_SHAPE for other ranks, g not dividing C and O, w's second dimension
 * not C/g, an empty kernel or an empty output. im2col into a one-sample
 * scratch buffer made at recording, then one GEMM per sample and group;
 * the VJP costs two such GEMMs. */
TG_API tg_tensor *tg_conv2d(tg_tape *tp, tg_tensor *x, tg_tensor *w, tg_tensor *b,
                            const tg_conv_opts *o);
/** Max pooling of x [N,C,H,W] -> [N,C,H',W'], H' = floor((H + 2 p - k) / s) + 1;
 * stride NULL means kernel, padding NULL means 0 (padding counts as -inf).
 * Ties send the gradient to the first maximum in row-major order; a NaN
 * wins its window. TG_ERR_ARG for a NULL kernel, kernel or stride < 1, or
 * padding outside [0, kernel/2]; TG_ERR_SHAPE for another rank, H or W of 0,
 * or an empty output. One pass over each window. */
TG_API tg_tensor *tg_max_pool2d(tg_tape *tp, tg_tensor *x, const int kernel[2],
                                const int stride[2], const int padding[2]);
/** Average pooling of x [N,C,H,W], sizes and errors as tg_max_pool2d; every
 * window is divided by kernel[0] kernel[1], padding included
 * (count_include_pad = true). */
TG_API tg_tensor *tg_avg_pool2d(tg_tape *tp, tg_tensor *x, const int kernel[2],
                                const int stride[2], const int padding[2]);
/** Layer normalisation over the last axis (torch.nn.functional.layer_norm with
 * normalized_shape [D]): each row of D elements becomes
 * (x - mean) / sqrt(var + eps) ⊙ gamma + beta, with the biased variance. x has
 * rank 1 to 4 and D is its last dimension; gamma and beta are [D] in x's dtype
 * or NULL, each on its own (NULL acts as 1 and 0). eps must be finite and
 * >= 0; 0 is allowed, and a constant row then gives NaN, as in PyTorch.
 * TG_ERR_SHAPE for rank 0 or a gamma or beta that is not [D], TG_ERR_DTYPE for
 * an x that is not f32 or f64 or a gamma or beta of another dtype, TG_ERR_ARG
 * for a bad eps. Statistics and the VJP are computed in double; two passes
 * over x forward and two backward. */
TG_API tg_tensor *tg_layer_norm(tg_tape *tp, tg_tensor *x, tg_tensor *gamma, tg_tensor *beta,
                                double eps);
/** torch.nn.functional.batch_norm for x [N,C], [N,C,L] or [N,C,H,W]: each
 * channel is normalised over its M = N L (N H W) values, then scaled by gamma
 * and shifted by beta ([C] or NULL each; NULL acts as 1 and 0).
 * Training mode normalises with the batch's mean and biased variance and
 * updates running_mean and running_var ([C] each, or NULL to keep none) to
 * (1 - momentum) r + momentum s, with s the batch's mean and UNBIASED
 * variance; this happens at recording and at every replay, so exactly once
 * per forward (a batch of no elements leaves them alone). M = 1 is
 * TG_ERR_SHAPE, as PyTorch refuses it. Eval mode normalises with
 * running_mean and running_var, read at every forward and required
 * (TG_ERR_ARG when NULL), and leaves them alone; N = 1 is fine there.
 * The running statistics are written in place, so they must be the caller's
 * leaves (not an op's result or a gradient), must not require grad, and must
 * be tensors of their own, not gamma, beta or each other (TG_ERR_ARG); they
 * never get a gradient. momentum must be in [0, 1] and eps finite and >= 0
 * (TG_ERR_ARG). For training and evaluation, record one tape of each mode on
 * the same parameters and statistics and replay each (docs/ops.md). Two
 * passes over x forward and two backward, in double. */
TG_API tg_tensor *tg_batch_norm(tg_tape *tp, tg_tensor *x, tg_tensor *gamma, tg_tensor *beta,
                                tg_tensor *running_mean, tg_tensor *running_var, bool training,
                                double momentum, double eps);
/** Inverted dropout: each element is kept with probability 1 - p and scaled by
 * 1 / (1 - p), or zeroed; zeroing is a product with 0, so NaN and Inf give NaN
 * there, as in PyTorch. The mask is drawn from 'rng', one tg_rng_uniform per
 * element in order (kept when u >= p), at recording and at every replay: each
 * forward gets a fresh mask and the sequence of masks depends on the rng's
 * seed alone. The rng is the caller's and must outlive the tape's recording.
 * The VJP multiplies dG by the mask of the latest forward. p = 0 is the
 * identity: it still records a node (so training and eval tapes have the same
 * nodes), copies x, draws nothing and accepts a NULL rng. TG_ERR_ARG for p
 * outside [0, 1) or a NULL rng with p > 0, TG_ERR_DTYPE for an x that is not
 * f32 or f64. One pass; the mask takes one byte per element in the arena. */
TG_API tg_tensor *tg_dropout(tg_tape *tp, tg_tensor *x, double p, tg_rng *rng);

/* ====== More losses (ops/loss.c), rank 0, mean over the batch ======
 * A mean over no elements is NaN, as in torch. Sums accumulate in double; one
 * pass over the inputs, one for the VJP. */

/** Cross-entropy of logits [N,C] against class labels (I64 [N], each in
 * [0, C); no ignore_index): -1/N Σ_i log_softmax(logits)[i, labels[i]].
 * TG_ERR_SHAPE for other shapes; a label out of range is TG_ERR_ARG when
 * recorded and fails the tape at replay, naming its position and value. */
TG_API tg_tensor *tg_cross_entropy(tg_tape *tp, tg_tensor *logits, tg_tensor *labels);
/** Binary cross-entropy on logits, mean of max(x, 0) - x t + log(1 + e^-|x|)
 * over every element; same shapes (TG_ERR_SHAPE otherwise), stable for large
 * |logits|; the target gets a gradient (-x/N) too. */
TG_API tg_tensor *tg_bce_with_logits(tg_tape *tp, tg_tensor *logits, tg_tensor *target);
/** The mean of |pred - target|; the derivative at pred = target is 0. Same
 * shapes, TG_ERR_SHAPE otherwise. */
TG_API tg_tensor *tg_l1_loss(tg_tape *tp, tg_tensor *pred, tg_tensor *target);
/** The mean Huber loss: 0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta),
 * d = pred - target (torch's huber_loss). TG_ERR_ARG unless delta > 0. */
TG_API tg_tensor *tg_huber_loss(tg_tape *tp, tg_tensor *pred, tg_tensor *target, double delta);

/* ====== Custom ops (how users extend the graph, and how built-ins are defined) ====== */

/** The ONNX graph an op's export hook writes into (tapegrad/onnx_graph.h); opaque. */
typedef struct tg_onnx_graph tg_onnx_graph;

/** An op as tg_custom records it; every built-in op is one too. Define it
 * 'static const' with designated initializers. */
typedef struct tg_op_def {
    const char *name; /**< in messages, explanations and graphs; NULL reads "custom" */
    /** write out's values from the inputs; out already has its shape and dtype */
    tg_status (*forward)(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx);
    /** add this op's vector-Jacobian product into grad_in[i]; grad_in[i] is NULL
       where input i needs no gradient */
    tg_status (*vjp)(const tg_tensor *grad_out, const tg_tensor *out, tg_tensor *const *in,
                     tg_tensor **grad_in, int n_in, void *ctx);
    /** Optional: the same VJP written with tapegrad ops recorded on 'tp', which
       tg_grad with create_graph calls so that the gradient can itself be
       differentiated (and replayed). For each i with need[i], set grad_in[i]
       to a tensor of input i's shape and dtype computed from dy (dC/d out,
       out's shape), out, the inputs and ctx by ops on 'tp', or leave it NULL
       for a zero contribution; grad_in[i] enters NULL. Return
       tg_tape_status(tp). A custom op without it cannot be differentiated
       twice: tg_grad with create_graph refuses it (TG_ERR_STATE). */
    tg_status (*vjp_graph)(tg_tape *tp, tg_tensor *dy, tg_tensor *out, tg_tensor *const *in,
                           const bool *need, tg_tensor **grad_in, int n_in, void *ctx);
    /** Optional, read only by tg_tape_explain: rules[i] is the VJP into input i
       as text, the list ends with NULL. Placeholders: {0}, {1}... input i's
       name, {y} the output's, {dy} its gradient's (d and the output's name);
       suffix :s adds the shape ("{dy:s}" is "dZ2 [64x10]"), :T the transpose
       ("{0:T}" is "X1ᵀ [128x64]"), :shape the shape alone, :rows the first
       dimension. {c} is the double ctx points at (ctx must be one), {bcast}
       is "Σ_bcast " where the input was broadcast, else empty. Matrix
       product: {"{dy:s} · {1:T}", "{0:T} · {dy:s}", NULL}. */
    const char *const *rules;
    /** Optional: bit i set makes input i an index tensor, which must be TG_I64
       and gets no gradient (grad_in[i] is always NULL); the other inputs
       share one float dtype. Inputs without the bit must be F32 or F64. */
    uint32_t index_inputs;
    /** Optional: the output is TG_I64 (indices or counts, never requiring
       grad) instead of the float inputs' dtype. */
    bool index_output;
    /** Optional, read only by tg_onnx_export (tapegrad/onnx.h): adds the ONNX
       nodes that compute tg_onnx_value(g, out) from the values of the inputs
       (tapegrad/onnx_graph.h) and returns tg_onnx_status(g). NULL: the op has
       no ONNX form, and exporting a tape that uses it fails, naming it. */
    tg_status (*onnx)(tg_onnx_graph *g, const tg_tensor *out, tg_tensor *const *in, int n_in,
                      void *ctx);
} tg_op_def;

/** Records a node running 'def' on n_in >= 1 inputs of one float dtype (and
 * the I64 index inputs def->index_inputs names); the output has that dtype
 * (TG_I64 with def->index_output) and the given shape. 'def' and 'ctx' must outlive the tape's
 * recording (until reset or free). A NULL 'vjp' makes the output constant.
 * Returns the tape-owned output, or NULL with TG_ERR_ARG (no forward, no
 * inputs, a NULL input or a gradient as input, a rank outside 0..4 or a NULL
 * shape), TG_ERR_SHAPE (a negative dimension, or more elements than memory
 * can hold; the message gives the shape and the inputs'), TG_ERR_STATE (an
 * input of another tape or an earlier recording), TG_ERR_DTYPE (float inputs
 * differ, an I64 input where no index is expected or the reverse),
 * TG_ERR_NOMEM or the status 'forward' returned. */
TG_API tg_tensor *tg_custom(tg_tape *tp, const tg_op_def *def, tg_tensor *const *in, int n_in,
                            int out_rank, const int64_t *out_shape, void *ctx);

/* ====== Derivatives of derivatives ====== */

/** A constant of x's shape and dtype filled with 'value' (torch.full_like);
 * it carries no gradient. */
TG_API tg_tensor *tg_full_like(tg_tape *tp, tg_tensor *x, double value);

/** torch.autograd.grad: grads[i] = d(seed · out)/d wrt[i] for i < n_wrt, as
 * tape-owned tensors of wrt[i]'s shape (zeros where out does not depend on
 * wrt[i]). 'seed' has out's shape and dtype, or is NULL for a one-element
 * out (then 1). Leaves' .grad are not touched; intermediates' .grad may be
 * rewritten, as by tg_backward.
 *
 * Without create_graph the sweep runs the ops' fused VJP kernels, only on
 * the nodes between wrt and out, and the results are constants. With
 * create_graph each VJP is recorded on the tape as ordinary ops (each op's
 * tg_op_def.vjp_graph), so grads[i] require grad, feed further ops,
 * tg_backward, tg_grad again (third order and up), and tg_tape_replay
 * recomputes them from new leaf data with no allocation. The recorded
 * gradient tensors are named "d<name>" after named wrt tensors and marked
 * as gradients for tg_tape_explain and tg_tape_to_dot.
 *
 * Refused (nothing recorded, the tape stays healthy, tg_tape_error has the
 * reason): TG_ERR_ARG for NULL arguments, n_wrt < 1, a gradient buffer as
 * seed or wrt; TG_ERR_STATE for out, seed or wrt of another tape or an
 * earlier recording, a wrt that does not require grad, an out that depends on
 * nothing requiring grad, or (create_graph) an op on the way whose
 * definition has no vjp_graph, named in the message; TG_ERR_SHAPE and
 * TG_ERR_DTYPE for a seed that does not match out or a NULL seed with out of
 * several elements. Costs about one backward pass (recorded: the nodes it
 * adds, about as many as the forward). */
TG_API tg_status tg_grad(tg_tape *tp, tg_tensor *out, const tg_tensor *seed,
                         tg_tensor *const *wrt, int n_wrt, tg_tensor **grads, bool create_graph);

/** Forward mode (torch.func.jvp): *out_tangent = Σ_i (d out / d wrt[i]) ·
 * tangents[i], a tape-owned tensor of out's shape (zeros when out does not
 * depend on any wrt). tangents[i] has wrt[i]'s shape and dtype. Built from
 * the reverse machinery: out_tangent = d/du <J(u), t> with J(u) = tg_grad of
 * u · out, which is linear in u; so it costs two recorded reverse sweeps,
 * works for every op that supports create_graph, is differentiable and
 * replays. Errors as tg_grad's; TG_ERR_SHAPE or TG_ERR_DTYPE for a tangent
 * that does not match its wrt. */
TG_API tg_status tg_jvp(tg_tape *tp, tg_tensor *out, tg_tensor *const *wrt, int n_wrt,
                        tg_tensor *const *tangents, tg_tensor **out_tangent);

/* ====== Explaining a tape ====== */

#define TG_EXPLAIN_FORWARD    1u /**< tg_tape_explain: list the recorded ops first */
#define TG_EXPLAIN_VALUES     2u /**< tg_tape_explain: print the values of small tensors */
#define TG_EXPLAIN_MAX_VALUES 16 /**< the most elements a tensor has for its values to print */

/** Writes the last backward sweep of 'tp' to 'out' as a derivation, one line
 * per VJP in the order the sweep applied them, such as
 * "dW2 [128x10] = X1ᵀ [128x64] · dZ2 [64x10]", starting with the seed line
 * "dC [] = 1"; a tensor that gets several contributions (fan-out) gets "=",
 * then "+=". Names come from tg_tensor_set_name, else t<k> for the output of
 * the k-th op and x<k> for the k-th leaf, both counted in recording order.
 * The rule text comes from each op's tg_op_def 'rules'; an op without them
 * gets "dX [shape] = vjp_<op>(dY, inputs...)". TG_EXPLAIN_FORWARD lists the
 * recorded ops first; with TG_EXPLAIN_VALUES the values of tensors of at most
 * TG_EXPLAIN_MAX_VALUES elements follow their line (a gradient's after its
 * last contribution). Before any backward it says so in one line. TG_ERR_ARG
 * for NULL or unknown flags; the tape's status on a failed tape (nothing is
 * written); TG_ERR_NOMEM; TG_ERR_IO when 'out' reports an error. O(N log N)
 * for N recorded nodes and inputs, with a temporary table of N entries. */
TG_API tg_status tg_tape_explain(const tg_tape *tp, FILE *out, unsigned flags);
/** Writes the recorded graph in Graphviz DOT: one node per op (op, output name,
 * shape and dtype) and per leaf, with inputs, parameters (leaves that require
 * grad) and the loss drawn apart. Edges into an op with several inputs are
 * labelled with the operand's position (0, 1, ...). A leaf used again more
 * than 16 nodes after it was last drawn is drawn again, dashed, beside that
 * use, so that shared weights of an unrolled loop do not make edges across
 * the whole graph: a 1000-node recurrent network renders in seconds. 'loss'
 * may be NULL: then the output the last backward started from, or without
 * one the last op's output. Works on a failed tape too (the ops recorded
 * before the error). TG_ERR_ARG for NULL tape or file, TG_ERR_NOMEM,
 * TG_ERR_IO. Render with "dot -Tsvg". */
TG_API tg_status tg_tape_to_dot(const tg_tape *tp, FILE *out, const tg_tensor *loss);

/* ====== Gradient check ====== */

/** The function tg_gradcheck differentiates: records ops on 'inputs' and returns a scalar. */
typedef tg_tensor *(*tg_fn)(tg_tape *tp, tg_tensor *const *inputs, void *ctx);

/* The defaults of tg_gradcheck, by the precision checked: the F32 ones when
 * any input that requires grad is TG_F32, else the F64 ones. F32 arithmetic
 * is about 1e-7 relative, so a step of 1e-6 would leave only rounding noise
 * in the difference; its step, cbrt(FLT_EPSILON) ~ 4.9e-3, balances the
 * O(eps^2) error of the central difference against the O(FLT_EPSILON / eps)
 * error of rounding, and the tolerances widen to match. */
#define TG_GRADCHECK_F64_EPS  1e-6                /**< default step for F64 inputs */
#define TG_GRADCHECK_F64_ATOL 1e-5                /**< default atol for F64 inputs */
#define TG_GRADCHECK_F64_RTOL 1e-3                /**< default rtol for F64 inputs */
#define TG_GRADCHECK_F32_EPS  4.92156660115185e-3 /**< cbrt(FLT_EPSILON), for F32 inputs */
#define TG_GRADCHECK_F32_ATOL 1e-2                /**< default atol for F32 inputs */
#define TG_GRADCHECK_F32_RTOL 1e-2                /**< default rtol for F32 inputs */

#define TG_GRADCHECK_SET_ATOL 1u /**< tg_gradcheck_opts.set: take atol as written, 0 included */
#define TG_GRADCHECK_SET_RTOL 2u /**< tg_gradcheck_opts.set: take rtol as written, 0 included */

/** Tolerances of tg_gradcheck. A field left 0 takes the default of the
 * precision checked (TG_GRADCHECK_F64_* or TG_GRADCHECK_F32_*); atol and rtol
 * can be asked to be 0 by setting their bit in 'set'. A step of 0 is never
 * valid, so eps has no bit. Negative or non-finite values are TG_ERR_ARG. */
typedef struct tg_gradcheck_opts {
    double eps;   /**< central-difference step; 0: 1e-6 (F64), cbrt(FLT_EPSILON) (F32) */
    double atol;  /**< 0: 1e-5 (F64), 1e-2 (F32), unless TG_GRADCHECK_SET_ATOL */
    double rtol;  /**< 0: 1e-3 (F64), 1e-2 (F32), unless TG_GRADCHECK_SET_RTOL */
    unsigned set; /**< TG_GRADCHECK_SET_* bits: those fields are taken as written, 0 included */
} tg_gradcheck_opts;

/** What tg_gradcheck found. */
typedef struct tg_gradcheck_report {
    bool passed;         /**< every element passed; false whenever the check could not run */
    int worst_input;     /**< index into inputs */
    int64_t worst_index; /**< flat element index */
    double analytic;     /**< the tape's gradient at the worst element */
    double numeric;      /**< the central difference there */
    double max_abs_err;  /**< over every element checked */
    double max_rel_err;  /**< over every element checked */
    int64_t n_checked;   /**< elements compared */
    /** "" when passed; otherwise why not: the input, element, both values and
     * the tolerance for a failed comparison, or the error that stopped the
     * check (f failed to record, returned NULL or a result of several
     * elements, backward or a replay failed, a bad argument) */
    char msg[256];
} tg_gradcheck_report;

/** Compares the tape's gradient of f with central differences for every
 * element of every input that requires grad. Returns TG_OK when it could run
 * (pass or fail is in 'report'); the inputs' data and gradients are left
 * exactly as they were. opts may be NULL. When it cannot run it returns the
 * reason, with report->passed false and the message in report->msg (and in
 * tg_last_error): TG_ERR_ARG for NULL f, inputs or report, an input that is
 * NULL, tape-owned or a gradient, no input requiring grad, bad options, or f
 * returning NULL on a healthy tape; TG_ERR_SHAPE for a result of other than
 * one element; otherwise the status of a failed recording, backward or
 * replay. Runs f 2 N + 1 times for N checked elements. */
TG_API tg_status tg_gradcheck(tg_fn f, tg_tensor *const *inputs, int n_inputs, void *ctx,
                              const tg_gradcheck_opts *opts, tg_gradcheck_report *report);

/** torch.autograd.gradgradcheck: checks the second derivatives of f by
 * central differences of its first derivatives. It runs tg_gradcheck on
 * h(x) = Σ_i <d f/d x_i, r_i>, the first derivatives recorded by tg_grad with
 * create_graph and contracted with fixed pseudo-random r_i (uniform in
 * [-1, 1], the same every run), so the comparison is that of the
 * Hessian-vector products H r with their finite differences, element by
 * element. Same options, report and errors as tg_gradcheck; TG_ERR_STATE when
 * an op of f cannot be differentiated twice (named in the message). */
TG_API tg_status tg_gradgradcheck(tg_fn f, tg_tensor *const *inputs, int n_inputs, void *ctx,
                                  const tg_gradcheck_opts *opts, tg_gradcheck_report *report);

/* ====== Runtime ====== */

/** Threads used by matrix products (BLAS) and by the library's own passes
 * over large tensors (elementwise ops and their VJPs, bias, gradient zeroing,
 * optimizer updates); n <= 0 means all cores. Until it is called, as many as
 * BLAS uses (one without BLAS). The library's passes split along independent
 * elements, so they give the same bits at any thread count; OpenBLAS's own
 * products may differ in the last bits between thread counts. Call it while
 * no other thread runs an op. */
TG_API void tg_set_num_threads(int n);
/** The number of threads set by tg_set_num_threads (BLAS's before any call). */
TG_API int tg_get_num_threads(void);
/** Flush-to-zero and denormals-are-zero for the calling thread (x86 MXCSR)
 * and for OpenBLAS's worker threads, whose pool a change restarts: call it
 * while no other thread runs a matrix product. Denormal floats slow training
 * several-fold once weights get small; the training helpers turn this on.
 * Returns false where unsupported. */
TG_API bool tg_set_flush_denormals(bool on);

#ifdef __cplusplus
}
#endif

/* The nn part (registries, layers, optimizers, data, checkpoints) has its own header. */
#include <tapegrad/nn.h>

#endif /* TAPEGRAD_H */
