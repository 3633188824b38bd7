/*
 * Internals shared across the library's files; never installed. Names that
 * cross files start with 'tg__' and are hidden by -fvisibility=hidden.
 */
#ifndef TG_INTERNAL_H
#define TG_INTERNAL_H

#include <tapegrad/onnx_graph.h>
#include <tapegrad/tapegrad.h>

#include <stdio.h>
#include <string.h>

#if defined(__GNUC__)
#define TG__PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define TG__PRINTF(fmt, args)
#endif

#define TG__ALIGN 64 /* bytes; cache line and the widest vector */

/* TG__ASAN is set in AddressSanitizer builds (gcc or clang), where the arena
 * poisons the bytes it has not handed out (arena.c). */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TG__ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(TG__ASAN)
#define TG__ASAN 1
#endif
#ifdef TG__ASAN
#include <sanitizer/asan_interface.h>
#endif

struct tg_tensor {
    tg_dtype dtype;
    int rank;
    int64_t shape[TG_MAX_RANK];
    int64_t numel;
    void *data;
    tg_tensor *grad;    /* dC/d(this), NULL until a backward reaches it */
    bool requires_grad; /* a leaf asked for it, or an input of this node has it */
    bool tape_owned;    /* in a tape's arena: tg_tensor_free leaves it alone */
    bool is_grad;       /* a gradient, owned by its tensor */
    bool reached;       /* the current backward sweep has reached it */
    bool grad_node;     /* recorded by tg_grad's create_graph sweep: part of a gradient */
    char name[64];
    /* The tape whose arena holds it (op results and their gradients) and that
     * tape's recording generation when it was made; NULL and 0 for leaves and
     * their gradients. An op refuses a tensor of another tape or of an older
     * generation, whose memory the arena may have handed out again. */
    tg_tape *tape;
    uint64_t gen;
    /* Counts tg_tensor_reshape calls, so that replay can tell with one
     * comparison that a leaf kept the shape a node recorded. */
    uint32_t reshapes;
    /* 1 + the index of the node whose output it is; 0 for leaves, gradients
     * and tape tensors made outside a node. */
    size_t node;
};

/* ====== Heap allocation (alloc.c): every malloc of the library goes through here ====== */

/* -1: off. n >= 0: the next n allocations succeed and every later one fails,
 * until a test sets the hook back to -1. Tests sweep n over 0, 1, 2, ... to
 * fail each allocation of a scenario in turn; not thread-safe, and hidden
 * from the shared library like every tg__ name. */
extern long tg__alloc_fail_after;
/* Allocations the hook has refused; a test resets it to tell a clean success
 * from a failure that was swallowed. */
extern long tg__alloc_refused;
/* True when the hook fails this allocation. The wrappers below ask it, and so
 * does the arena for each block, so every allocation of a tape is a point
 * the hook can fail, not only the ones that need a new chunk. */
bool tg__alloc_fault(void);
void *tg__malloc(size_t size);
void *tg__calloc(size_t n, size_t size);
void *tg__realloc(void *p, size_t size);
void *tg__aligned_alloc(size_t align, size_t size);

/* ====== Arena: chunked bump allocator (arena.c) ====== */

typedef struct tg__chunk tg__chunk;
typedef struct tg__arena {
    tg__chunk *head; /* chunk being filled; older chunks follow 'next' */
    tg__chunk *first;
} tg__arena;

/* Zero-filled, TG__ALIGN-aligned memory that lives until rewind or free.
 * The block owns its bytes up to the next multiple of TG__ALIGN; under
 * AddressSanitizer only 'size' are unpoisoned. */
void *tg__arena_alloc(tg__arena *a, size_t size);
/* The same at a multiple of 16 bytes, owning its bytes up to the next one:
 * for tensor headers, input lists, op parameters and data of fewer than
 * TG__ALIGN bytes, which then share cache lines instead of taking one each. */
void *tg__arena_alloc_small(tg__arena *a, size_t size);
/* Forgets every allocation and keeps the chunks for reuse. */
void tg__arena_rewind(tg__arena *a);
void tg__arena_free(tg__arena *a);
/* Bytes handed out since the last rewind (what a tape holds), padding included. */
size_t tg__arena_bytes(const tg__arena *a);

/* ====== Tape ====== */

typedef struct tg__node {
    const tg_op_def *def;
    tg_tensor **in;  /* n_in inputs, in the arena */
    tg_tensor **gin; /* n_in gradient slots handed to vjp, filled by backward */
    int n_in;
    tg_tensor *out;
    void *ctx;
} tg__node;

/* What a node recorded of one input that is not the tape's own (a leaf): the
 * caller can reshape a leaf, so replay and backward compare it with this
 * before they run anything. The tape's own tensors never change shape. */
typedef struct tg__leaf_use {
    const tg_tensor *leaf;
    uint32_t reshapes; /* the leaf's count when its shape was last seen to match */
    int input;         /* the node's input number */
    size_t node;       /* the node that reads it */
    int rank;
    tg_dtype dtype;
    int64_t shape[TG_MAX_RANK];
} tg__leaf_use;

struct tg_tape {
    tg_status status;
    char
        msg[512]; /* the sticky error's message, or the last refused call's while status is TG_OK */
    tg__node *nodes;
    size_t n_nodes, cap_nodes;
    tg__leaf_use *leaves; /* one entry per leaf input of each node, in recording order */
    size_t n_leaves, cap_leaves;
    tg__arena arena;
    uint64_t gen; /* the recording generation, bumped by tg_tape_reset */
    bool anomaly; /* tg_tape_set_anomaly: check every output and gradient for NaN and Inf */
    bool no_grad; /* tg_tape_set_grad(tp, false): outputs recorded now require no grad */
};

/* Records the first error on the tape (later ones are echoes) and returns the
 * tape's status. Every sticky tape error passes through here. */
TG__PRINTF(3, 4) tg_status tg__fail(tg_tape *tp, tg_status s, const char *fmt, ...);
/* Refuses one call (a backward or replay with bad arguments, or on leaves
 * that changed shape): writes the message that tg_tape_error shows until the
 * next call, returns s, and leaves the tape's status as it was. */
TG__PRINTF(3, 4) tg_status tg__refuse(tg_tape *tp, tg_status s, const char *fmt, ...);
/* ====== Errors of calls without a tape (status.c) ====== */

/* Records a failure of a tape-less call as the thread's tg_last_error and
 * returns s. Every tape-less function that fails passes through here or
 * tg__set_error. */
TG__PRINTF(2, 3) tg_status tg__fail_call(tg_status s, const char *fmt, ...);
/* Like tg__fail_call, and also fills 'err' (may be NULL) with the same error. */
TG__PRINTF(3, 4) tg_status tg__set_error(tg_error *err, tg_status s, const char *fmt, ...);
/* Why a leaf of this dtype and shape could not be made (the caller's
 * allocation failed): an unknown dtype, a bad rank, a negative dimension, a
 * size too large, or else no memory. Records it under 'fn' like
 * tg__fail_call and returns its status. */
tg_status tg__bad_tensor(const char *fn, tg_dtype dt, int rank, const int64_t *shape);

/* The guard every op opens with: false (and nothing new recorded) on a NULL
 * or failed tape. On a healthy tape it fails it with TG_ERR_ARG for a NULL
 * input or a gradient buffer (which backward rewrites under the node that
 * reads it), and TG_ERR_STATE for a result of another tape or of this one
 * before its last reset. */
bool tg__guard(tg_tape *tp, const char *op, int n, tg_tensor *const *in);
/* Why t cannot be used on tp (another tape, an earlier recording, freed
 * memory), or NULL when it can. */
const char *tg__misuse_of(const tg_tape *tp, const tg_tensor *t);
/* Refuses the call with TG_ERR_SHAPE when a leaf changed shape since a node
 * recorded it; TG_OK otherwise. */
tg_status tg__check_leaves(tg_tape *tp);
/* Checks a backward seed against its output (NULL, other tape, dtype, shape,
 * the output requiring grad, NaN in anomaly mode); refuses under 'fn'. */
tg_status tg__check_seed(tg_tape *tp, const char *fn, const tg_tensor *out, const tg_tensor *seed);

/* What tg_grad asks of a backward sweep: gradients of out with respect to
 * wrt alone. dep[i] says node i lies between them (tg__deps). */
typedef struct tg__grad_req {
    tg_tensor *const *wrt;
    int n_wrt;
    const bool *dep;
    tg_tensor **slots; /* a gradient buffer per wrt; used for leaves */
} tg__grad_req;
/* dep[i] for the first n nodes: node i can carry a gradient (it has a VJP and
 * was recorded with gradients) and has an input that tg__wanted. A heap
 * array the caller frees; NULL when out of memory. */
bool *tg__deps(const tg_tape *tp, size_t n, tg_tensor *const *wrt, int n_wrt);
/* Whether a gradient of x is wanted: x requires grad and is a wrt tensor or
 * the output of a node that depends on one. The index of the first wrt equal
 * to x goes to *k (-1 when none). */
bool tg__wanted(const tg_tape *tp, const bool *dep, size_t n, tg_tensor *const *wrt, int n_wrt,
                const tg_tensor *x, int *k);
/* The backward sweep of tg_backward_seed; with req, of tg_grad without
 * create_graph: only the nodes in req->dep run, and leaves' gradients go to
 * req->slots instead of their .grad. */
tg_status tg__sweep(tg_tape *tp, tg_tensor *out, const tg_tensor *seed, const tg__grad_req *req);

/* For vjp_graph: g (a gradient of a broadcast result) summed over the axes
 * where 'like' was broadcast, recorded, with like's shape. NULL passes
 * through. */
tg_tensor *tg__sum_to(tg_tape *tp, tg_tensor *g, const tg_tensor *like);

/* Copies built-in op parameters into the tape's arena so they can serve as ctx. */
void *tg__tape_copy(tg_tape *tp, const void *src, size_t size);

/* ====== Tensors (tensor.c) ====== */

/* Writes the tensor's name, if it has one, and its shape, "W1 [2x3]" or
 * "[2x3x4]" ("[]" for rank 0), into buf and returns buf: how messages name an
 * operand. A long name is shortened so that the whole shape always fits. */
const char *tg__shape_str(const tg_tensor *t, char *buf, size_t size);
/* Writes a shape alone, "[2x3]", into buf and returns buf. */
const char *tg__dims_str(int rank, const int64_t *shape, char *buf, size_t size);
/* Room for four 20-digit dimensions, or a name and a smaller shape. */
#define TG__SHAPE_STR_MAX 96
/* Number of elements of a shape, -1 for a bad rank, a negative dimension or overflow. */
int64_t tg__numel(int rank, const int64_t *shape);
/* ====== Dtypes: one table, one dispatch ======
 * Everything that differs between dtypes is a row of tg__dtypes; code that
 * needs the element type itself goes through TG__FLOAT_SWITCH, which names
 * every float dtype once and fails loudly on any other. */

typedef struct tg__dtype_info {
    const char *name; /* in messages and DOT: "f32" */
    const char *tag;  /* in files (safetensors): "F32" */
    size_t size;      /* bytes per element */
    bool is_float;    /* can carry gradients; else an index dtype */
    double (*get)(const void *data, int64_t k);
    double (*put)(void *data, int64_t k, double v); /* returns the value stored */
} tg__dtype_info;

#define TG__N_DTYPES 3
extern const tg__dtype_info tg__dtypes[TG__N_DTYPES];

static inline bool tg__dtype_valid(tg_dtype dt) { return (unsigned)dt < TG__N_DTYPES; }
/* The row of dt; dt must be valid (every tensor's is). */
static inline const tg__dtype_info *tg__dt(tg_dtype dt) { return &tg__dtypes[dt]; }
/* Bytes per element. */
static inline size_t tg__dtype_size(tg_dtype dt) { return tg__dt(dt)->size; }
/* Element k as a double, whatever the dtype. */
static inline double tg__get(const tg_tensor *t, int64_t k) { return tg__dt(t->dtype)->get(t->data, k); }
/* Stores v at element k (rounded for F32, truncated for I64) and returns the value stored. */
static inline double tg__put(tg_tensor *t, int64_t k, double v)
{
    return tg__dt(t->dtype)->put(t->data, k, v);
}

/* Runs BODY(T) with T the C type of float dtype 'dt'; any other dtype makes
 * the enclosing function return FAIL (TG_ERR_DTYPE in a tg_status function,
 * nothing in a void one: pass an empty argument). */
#define TG__FLOAT_SWITCH(dt, BODY, FAIL) \
    do {                                 \
        switch (dt) {                    \
        case TG_F32:                     \
            BODY(float);                 \
            break;                       \
        case TG_F64:                     \
            BODY(double);                \
            break;                       \
        default:                         \
            return FAIL;                 \
        }                                \
    } while (0)

/* A heap leaf whose data the caller fills (zeroed). */
tg_tensor *tg__tensor_alloc(tg_dtype dt, int rank, const int64_t *shape);
/* A tensor of tp's current recording, in its arena, zero-filled; NULL when
 * out of memory. */
tg_tensor *tg__tensor_arena(tg_tape *tp, tg_dtype dt, int rank, const int64_t *shape);
bool tg__same_shape(const tg_tensor *a, const tg_tensor *b);
/* The gradient buffer of t, created zeroed when missing (a leaf's on the heap,
 * an intermediate's in the arena). NULL when out of memory. Inline: the
 * backward sweep asks for every input of every node. */
tg_tensor *tg__grad_new(tg_tape *tp, tg_tensor *t);
static inline tg_tensor *tg__grad_get(tg_tape *tp, tg_tensor *t)
{
    return t->grad ? t->grad : tg__grad_new(tp, t);
}

/* ====== Row kernels shared by op families (ops/softmax.c) ====== */

/* y = log_softmax(x) over each of 'rows' rows of 'cols' elements (softmax when
 * 'as_prob'); stable: the row maximum is subtracted first. */
void tg__log_softmax_rows(tg_dtype dt, const void *x, void *y, int64_t rows, int64_t cols,
                          bool as_prob);

/* ====== Matrix product (gemm.c): the one place BLAS or the fallback is chosen ====== */

/* C = alpha op(A) op(B) + beta C, row-major; op(A) is [m,k], op(B) [k,n].
 * lda/ldb/ldc are the row strides of A, B, C as stored. */
void tg__gemm(tg_dtype dt, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
              double alpha, const void *a, int64_t lda, const void *b, int64_t ldb, double beta,
              void *c, int64_t ldc);

/* ====== Threads for the passes BLAS does not run (pool.c) ====== */

/* Runs part [begin, end) of a loop. */
typedef void (*tg__task_fn)(void *ctx, int64_t begin, int64_t end);
/* Runs fn over [0, n) cut into contiguous parts of at least 'grain' indices,
 * up to four per thread (tg_set_num_threads), which the threads, the calling
 * one included, claim as they come free; returns when all are done. The cut depends on the thread count, so fn must compute
 * each index the same way whichever part holds it: split along independent
 * outputs, never across the terms of one sum. Runs fn(ctx, 0, n) on the
 * calling thread when n is below two grains, with one thread, or while the
 * pool runs another job. */
void tg__parallel_for(int64_t n, int64_t grain, tg__task_fn fn, void *ctx);
/* Threads the pool uses, the caller included; set by tg_set_num_threads,
 * and until then as many as BLAS uses (tg__blas_threads, gemm.c: 1 without
 * BLAS). */
void tg__pool_set_threads(int n);
int tg__pool_threads(void);
int tg__blas_threads(void);
/* Stops the pool's threads; the next parallel pass starts them again from
 * the calling thread, whose floating-point environment (FTZ/DAZ) they then
 * inherit (tg_set_flush_denormals). */
void tg__pool_restart(void);
/* Below this many elements (or bytes, for zeroing) a pass stays on one
 * thread: the hand-off costs a few microseconds, the time of about 64 KiB of
 * memory traffic. */
#define TG__PAR_GRAIN       16384
#define TG__PAR_GRAIN_BYTES ((int64_t)1 << 17)
void tg__zero_big(void *p, size_t bytes);
/* Zeroes 'bytes' bytes of a tensor's data, which the arena or
 * tg__tensor_alloc made: both own at least the bytes up to the next multiple
 * of 16 (and, under AddressSanitizer, the arena's are poisoned past 'bytes'),
 * so outside ASan a gradient of one to four floats is cleared by one inline
 * 16-byte store instead of a call to memset; large buffers are zeroed on
 * every thread. */
static inline void tg__zero(void *p, size_t bytes)
{
#ifndef TG__ASAN
    if (bytes <= 16) {
        memset(p, 0, 16);
        return;
    }
#endif
    if (bytes >= 2 * (size_t)TG__PAR_GRAIN_BYTES)
        tg__zero_big(p, bytes);
    else
        memset(p, 0, bytes);
}

/* ====== Fault injection for checkpoint saves (checkpoint.c) ====== */

/* -1: off. n >= 0: the n-th (0-based) I/O step of the next saves fails with
 * EIO, then the hook turns itself off. Tests use it to interrupt a save at
 * every step; not thread-safe. */
extern int tg__io_fail_after;
/* Counts one I/O step; true (errno = EIO) when it is the one to fail. */
bool tg__io_fault(void);
/* Writes 'path' atomically: 'write' fills a temporary file beside it (and
 * returns false, errno set, on failure), which is flushed, synced and renamed
 * over 'path'; on any failure the temporary file is removed and 'path' is
 * left as it was. Keeps the old file's mode, or 0644. TG_ERR_IO naming the
 * step, TG_ERR_NOMEM. */
tg_status tg__write_atomic(const char *path, bool (*write)(FILE *fp, void *arg), void *arg,
                           tg_error *err);

/* ====== Parameter registries (nn/params.c) ====== */

/* Frees the parameters added after the first 'count', newest first, so a
 * constructor that registers several can undo a partial registration. */
void tg__params_truncate(tg_params *ps, size_t count);

/* ====== Helpers of the built-in ops' ONNX hooks (onnx_graph.c) ====== */

/* The signature of an op's ONNX hook (tg_op_def.onnx), for the built-in ops'
 * declarations and definitions: static TG__ONNX_HOOK(relu_onnx) { ... }. */
#define TG__ONNX_HOOK(name)                                                                        \
    tg_status name(tg_onnx_graph *g, const tg_tensor *out, tg_tensor *const *in, int n_in,         \
                   void *ctx)

/* Memory that lives as long as the graph; NULL on a failed graph. */
void *tg__onnx_scratch(tg_onnx_graph *g, size_t size);
/* One node 'op' reading the values of in[0..n_in-1] into out's. */
tg_status tg__onnx_same(tg_onnx_graph *g, const char *op, const tg_tensor *out,
                        tg_tensor *const *in, int n_in);
/* A node 'op' reading n_in (<= 8) value names, writing the value 'to' (NULL:
 * a fresh name); NULL on a failed graph. */
tg_onnx_node *tg__onnx_op(tg_onnx_graph *g, const char *op, const char *to, int n_in, ...);
/* The name of node n's first output; NULL for NULL. */
const char *tg__onnx_out(const tg_onnx_node *n);

#endif /* TG_INTERNAL_H */
