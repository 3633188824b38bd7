/**
 * @file
 * tapegrad's data-parallel training over MPI: the optional library
 * tapegrad_dist (pkg-config tapegrad-dist), built when Meson finds MPI.
 * tapegrad.h never includes this header, so the core needs no mpi.h.
 *
 * Every rank holds the whole model and trains on its own part of each
 * mini-batch. tg_dist_new checks that the ranks registered the same
 * parameters and copies rank 0's values to the others; after each backward
 * sweep tg_dist_backward averages the gradients over the ranks, packed into
 * buckets that are reduced with MPI_Iallreduce, as PyTorch's
 * DistributedDataParallel does. Each rank then takes the same optimizer
 * step, so the models stay bit-identical. tg_dist_mark lets a bucket start
 * while the sweep is still running, as soon as its gradients are final.
 * tg_dist_batcher hands each rank its part of every global batch, and the
 * row weights keep the gradient the exact mean over the global batch.
 *
 * Every function here that takes a tg_dist is collective: every rank of the
 * communicator calls it, in the same order, with the same kind of arguments
 * (tg_dist_batcher_* and the getters are local). Failures are statuses
 * with a message in 'err' (which may be NULL), the same on every rank when
 * the cause was agreed (a parameter that differs between ranks, a
 * checkpoint rank 0 could not read); nothing here prints, exits or calls
 * MPI_Abort. The library works on a duplicate of the caller's communicator
 * with MPI_ERRORS_RETURN, leaving the caller's error handler alone.
 *
 * A rank that stops calling the collective functions (it failed, or was
 * killed) leaves the others waiting in their next collective: a program
 * whose step fails on one rank should exit with a non-zero status without
 * MPI_Finalize, and mpirun then ends the whole job. docs/distributed.md
 * says what to do next (resume from the last checkpoint).
 */
#ifndef TAPEGRAD_DIST_H
#define TAPEGRAD_DIST_H

#include <mpi.h>
#include <tapegrad/tapegrad.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Gradient bytes per bucket when tg_dist_opts.bucket_bytes is 0. */
#define TG_DIST_BUCKET_BYTES ((size_t)1 << 20)

/** A data-parallel context: a duplicate of the caller's communicator, the
 * parameters it reduces and their buckets. */
typedef struct tg_dist tg_dist;

/** Options of tg_dist_new; NULL or zero fields take the defaults. */
typedef struct tg_dist_opts {
    /** the gradient bytes one bucket holds, before a new one starts; 0 means
     * TG_DIST_BUCKET_BYTES. A parameter larger than this has a bucket of its own. */
    size_t bucket_bytes;
    /** reduce every bucket after the sweep, even those tg_dist_mark made ready
     * during it (for measuring what overlap gains) */
    bool no_overlap;
} tg_dist_opts;

/** Collective over 'comm' (MPI_COMM_WORLD, or any communicator the caller
 * made): checks that every rank registered the same parameters in 'ps'
 * (names, order, dtypes, shapes, which ones require grad), then sets every
 * rank's values to rank 0's (tg_dist_broadcast), so the ranks start
 * identical whatever their seeds. The buckets hold the gradients of the
 * float parameters that require grad, last registered first (the order the
 * backward sweep finishes them in). NULL on failure, on every rank, with
 * 'err' naming the first parameter that differs ("dist_new: parameter
 * 'fc.weight' is F32 [3x4] on rank 0 but F32 [4x3] on rank 1"; TG_ERR_SHAPE,
 * TG_ERR_DTYPE, or TG_ERR_ARG for names and counts), TG_ERR_STATE when MPI is
 * not initialised, TG_ERR_ARG for a NULL ps or MPI_COMM_NULL, TG_ERR_NOMEM,
 * or TG_ERR_IO when an MPI call fails (its text in the message). 'ps' must
 * outlive the context and gain no parameters. */
TG_API tg_dist *tg_dist_new(MPI_Comm comm, tg_params *ps, const tg_dist_opts *opts, tg_error *err);
/** Frees the context and its communicator (call it before MPI_Finalize);
 * NULL is fine. Local. */
TG_API void tg_dist_free(tg_dist *d);
/** This process's rank in the communicator; -1 for NULL. */
TG_API int tg_dist_rank(const tg_dist *d);
/** The number of ranks; 0 for NULL. */
TG_API int tg_dist_size(const tg_dist *d);
/** The number of gradient buckets; 0 for NULL. */
TG_API int tg_dist_bucket_count(const tg_dist *d);

/* ====== Parameters across ranks ====== */

/** Sets every tensor of the n_sets registries (parameters, optimizer state,
 * batch norm's running statistics) on every rank to rank 0's values, after
 * checking that the ranks' registries agree as tg_dist_new does. Nothing
 * changes on failure. */
TG_API tg_status tg_dist_broadcast(tg_dist *d, tg_params *const *sets, int n_sets, tg_error *err);
/** Checks that the registries agree and hold bit-identical values on every
 * rank; TG_ERR_STATE naming the first tensor that differs and a rank where it
 * does ("dist_verify: 'fc.bias' on rank 2 differs from rank 0"). */
TG_API tg_status tg_dist_verify(tg_dist *d, tg_params *const *sets, int n_sets, tg_error *err);
/** Replaces t (F32, F64 or I64, a leaf) on every rank with its sum over the
 * ranks: counts and loss sums of a sharded evaluation. TG_ERR_SHAPE when the
 * ranks' tensors differ in dtype or element count (then nothing changes). */
TG_API tg_status tg_dist_sum(tg_dist *d, tg_tensor *t, tg_error *err);

/** Replaces every float tensor of the context's registry that requires no
 * grad (batch norm's running statistics) with its mean over the ranks. Each
 * rank updates its running statistics from its own part of the batch; the
 * mean of the ranks' running means is the running mean of the global
 * batches' means (equal parts), and the mean of their variances is the
 * within-rank part of the global variance. Call it before an evaluation or
 * a checkpoint, so every rank holds the same model. */
TG_API tg_status tg_dist_average_buffers(tg_dist *d, tg_error *err);

/* ====== Gradient averaging ======
 * The usual step:
 *
 *     tg_tape_replay(tp);               // the forward pass on this rank's rows
 *     tg_params_zero_grad(ps);
 *     tg_dist_backward(d, tp, loss, &mean, &err);  // the sweep, the buckets
 *     tg_optim_step(opt);               // the same step on every rank
 *
 * With marks (tg_dist_mark, tg_dist_loss) the buckets start during the
 * sweep; without them, after it. The result is the same either way. */

/** Records on tp, before the first op that reads any of params[0..n), a
 * marker of them: when the backward sweep reaches the marker, every op
 * recorded after it has run its VJP, so those gradients are final and their
 * bucket may start reducing while the sweep goes on. Mark each parameter once,
 * before its first use (a layer's weight and bias just before the layer);
 * tg_dist_loss then joins the markers to the loss. A parameter that gains
 * gradient after its marker ran (a use recorded before the marker) is found
 * by the first tg_dist_backward of the tape's marks, which then fails on
 * every rank (the later steps replay the same recording). The marker costs no
 * copy: its value is a zero scalar. TG_ERR_ARG for a NULL argument, n < 1, a
 * tensor that is not one of the context's reduced parameters or one marked
 * on this tape already; TG_ERR_DTYPE for params of different dtypes; the
 * tape's status if recording failed. The context owns what it records until
 * tg_dist_forget or tg_dist_free. Local. */
TG_API tg_status tg_dist_mark(tg_dist *d, tg_tape *tp, tg_tensor *const *params, int n,
                              tg_error *err);
/** The loss to run tg_dist_backward on: 'loss' (rank 0, same dtype as the
 * marked parameters) with this tape's markers joined to it, so that the
 * sweep reaches them. Its value is the loss's. Like an op: NULL with the
 * tape's error set, or NULL for NULL d. Local. */
TG_API tg_tensor *tg_dist_loss(tg_dist *d, tg_tape *tp, tg_tensor *loss);
/** Forgets the markers recorded on tp: call it after tg_tape_reset or
 * tg_tape_free of a tape that has marks (the tape's tensors are gone).
 * Local; NULL is fine. */
TG_API void tg_dist_forget(tg_dist *d, const tg_tape *tp);

/** tg_backward(tp, loss), then every reduced parameter's gradient replaced by
 * its mean over the ranks; with 'mean_loss' not NULL, the mean of the ranks'
 * loss values (with tg_dist_batcher_weights, the global batch's mean loss).
 * Buckets whose markers the sweep passed start during the sweep, the others
 * after it. A parameter with no gradient on any rank keeps none; one that has
 * a gradient on some ranks only is TG_ERR_STATE naming it. When the tape has
 * failed on some rank (or its sweep fails there) the collectives still run,
 * so that no rank waits forever, and every rank returns an error: the failed
 * ranks the tape's, the others TG_ERR_STATE "the step failed on N of M
 * ranks"; then no gradient is averaged (those the sweep made stay as they
 * are). TG_ERR_IO when an MPI call fails. */
TG_API tg_status tg_dist_backward(tg_dist *d, tg_tape *tp, tg_tensor *loss, double *mean_loss,
                                  tg_error *err);
/** Averages the current gradients over the ranks, as tg_dist_backward does
 * after its sweep: for gradients made another way (tg_backward_seed, or
 * several sweeps accumulated). */
TG_API tg_status tg_dist_allreduce_grads(tg_dist *d, tg_error *err);

/* ====== Checkpoints ====== */

/** Rank 0 writes the registries with tg_checkpoint_save (atomically: a
 * temporary file, fsync, rename); the other ranks' sets are not read. Every
 * rank returns rank 0's status and message, after the file is in place. */
TG_API tg_status tg_dist_checkpoint_save(tg_dist *d, const char *path, tg_params *const *sets,
                                         int n_sets, tg_error *err);
/** Rank 0 reads 'path' with tg_checkpoint_load, then every rank receives its
 * values (tg_dist_broadcast), so only rank 0 needs the file. Every rank
 * returns rank 0's status and message; on failure no tensor changes on any
 * rank. */
TG_API tg_status tg_dist_checkpoint_load(tg_dist *d, const char *path, tg_params *const *sets,
                                         int n_sets, tg_error *err);

/* ====== Sharded mini-batches ====== */

/** Each rank's part of every global batch of rows of x and y. */
typedef struct tg_dist_batcher tg_dist_batcher;

/** The same row order as tg_batcher_new(x, y, global_batch, shuffle, seed)
 * on every rank (the permutation depends on the seed alone, reshuffled at
 * each epoch's end as tg_batcher does); of each global batch of R rows, rank
 * r of N takes rows [r R / N, (r + 1) R / N), so the ranks' parts are
 * disjoint and together the whole batch. The local leaves hold
 * tg_dist_batcher_local rows, ceil(global_batch / N). Local: it needs only
 * the context's rank and size. x and y (may be NULL) must outlive it. NULL
 * with TG_ERR_ARG in 'err' for a NULL d or x, global_batch < 1, rank-0
 * tensors or y with another row count; TG_ERR_NOMEM. */
TG_API tg_dist_batcher *tg_dist_batcher_new(const tg_dist *d, const tg_tensor *x,
                                            const tg_tensor *y, int64_t global_batch, bool shuffle,
                                            uint64_t seed, tg_error *err);
/** Frees the batcher (not x or y); NULL is fine. */
TG_API void tg_dist_batcher_free(tg_dist_batcher *b);
/** The rows of the local leaves xb, yb and w: ceil(global_batch / ranks); 0 for NULL. */
TG_API int64_t tg_dist_batcher_local(const tg_dist_batcher *b);
/** Copies this rank's rows of the next global batch into xb / yb (yb may be
 * NULL), zeroing the rows left over, and returns the global batch's row
 * count R (global_batch except for a short last batch); 0 at the end of the
 * epoch (the next call starts the next, reshuffled epoch); -1 for leaves
 * of another shape or dtype (the reason in tg_dist_batcher_error). A rank may
 * get no row of a short batch; it still takes part in the step. */
TG_API int64_t tg_dist_batcher_next(tg_dist_batcher *b, tg_tensor *xb, tg_tensor *yb);
/** Why the last tg_dist_batcher_next or tg_dist_batcher_weights failed; "" before. */
TG_API const char *tg_dist_batcher_error(const tg_dist_batcher *b);
/** The rows this rank received from the last tg_dist_batcher_next (0 before it, and at an epoch's
 * end). */
TG_API int64_t tg_dist_batcher_rows(const tg_dist_batcher *b);
/** Writes the row weights of the last batch into w, a float tensor of
 * tg_dist_batcher_local elements: N L / R on this rank's real rows (N
 * ranks, L local rows, R global rows) and 0 on the rest. A loss averaged
 * over the L local rows with its terms weighted so, averaged over the ranks
 * by tg_dist_backward, is the exact mean over the R rows of the global batch,
 * in value and gradient. With one rank this is tg_batcher_weights. TG_ERR_ARG
 * for NULL or another w (the reason in tg_dist_batcher_error). */
TG_API tg_status tg_dist_batcher_weights(tg_dist_batcher *b, tg_tensor *w);
/** Global batches per epoch, the short last one included; 0 for NULL. */
TG_API int64_t tg_dist_batcher_batches(const tg_dist_batcher *b);

#ifdef __cplusplus
}
#endif

#endif /* TAPEGRAD_DIST_H */
