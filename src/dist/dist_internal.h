/* Shared between the files of tapegrad_dist; not installed. The library is
 * written against the public API of tapegrad alone, as any user of it is. */
#ifndef TG_DIST_INTERNAL_H
#define TG_DIST_INTERNAL_H

#include <tapegrad/dist.h>
#include <tapegrad/nn.h>

#if defined(__GNUC__)
#define TG__DIST_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define TG__DIST_PRINTF(f, a)
#endif

/* A reduced parameter: a float tensor of the registry that requires grad. */
typedef struct dist_param {
    tg_tensor *t;
    const char *name; /* the registry's */
    int bucket;
    int64_t offset; /* of its gradient in the bucket, in elements */
    int64_t numel;
    int marks;   /* markers of it on the tape being swept */
    int pending; /* of those, the ones the sweep has not reached yet */
} dist_param;

/* Gradients packed for one MPI_Iallreduce: the parameters' gradients, then one
 * element per parameter, 1 where the rank had a gradient for it, so the sum
 * counts the ranks that had one. */
typedef struct dist_bucket {
    tg_dtype dt;
    int first, n_params; /* d->params[first .. first + n_params) */
    int64_t count;       /* elements: gradients, then the n_params flags */
    void *send, *recv;
    MPI_Request req;
    int waiting;   /* parameters not yet final in this sweep */
    bool launched; /* in this step */
    bool in_sweep; /* launched before the sweep ended: checked for late gradients */
} dist_bucket;

/* What tg_dist_mark recorded: the ctx of one marker node. */
typedef struct dist_mark {
    struct dist_mark *next;
    tg_dist *d;
    const tg_tape *tp;
    tg_tensor *out; /* the marker's zero scalar */
    bool checked;   /* a step of its tape found no gradient late (see finish_step) */
    int n;
    int idx[]; /* into d->params */
} dist_mark;

struct tg_dist {
    MPI_Comm comm;
    int rank, size;
    tg_params *ps;
    dist_param *params;
    int n_params;
    dist_bucket *buckets;
    int n_buckets, next_launch;
    bool no_overlap;
    dist_mark *marks;
    const tg_tape *armed;                  /* the tape tg_dist_backward is sweeping, else NULL */
    tg_error hook_err;                     /* why a marker's VJP failed */
    double status_send[3], status_recv[3]; /* loss, failed, late gradients */
    MPI_Request status_req;
};

/* Fills 'err' (may be NULL) and returns s. */
TG__DIST_PRINTF(3, 4) tg_status tg__dist_fail(tg_error *err, tg_status s, const char *fmt, ...);
/* TG_ERR_IO for a failed MPI call, with MPI's text for 'rc'. */
tg_status tg__dist_mpi_fail(tg_error *err, const char *fn, const char *call, int rc);
/* The MPI datatype of a dtype. */
MPI_Datatype tg__dist_mpi_type(tg_dtype dt);
/* Bytes per element of a dtype. */
size_t tg__dist_dtype_size(tg_dtype dt);
/* "F32", "F64", "I64". */
const char *tg__dist_dtype_name(tg_dtype dt);
/* Plans the buckets of d->params; TG_ERR_NOMEM or TG_ERR_ARG (a bucket over INT_MAX elements). */
tg_status tg__dist_plan_buckets(tg_dist *d, size_t bucket_bytes, tg_error *err);
/* Frees the buckets and the marks. */
void tg__dist_free_reducer(tg_dist *d);

#endif /* TG_DIST_INTERNAL_H */
