/*
 * The data-parallel context: a duplicate of the caller's communicator, the
 * check that every rank registered the same parameters, and what moves whole
 * tensors between ranks (broadcast, verify, sum, checkpoints).
 *
 * Every collective here first agrees on whether each rank can go on: a rank
 * that fails on its own (a NULL argument, no memory, a file it cannot read)
 * still takes part in that agreement, so the others return an error too
 * instead of waiting for it in the next collective.
 */
#include "dist_internal.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ====== Errors and types ====== */

tg_status tg__dist_fail(tg_error *err, tg_status s, const char *fmt, ...)
{
    if (err) {
        err->status = s;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return s;
}

tg_status tg__dist_mpi_fail(tg_error *err, const char *fn, const char *call, int rc)
{
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) snprintf(text, sizeof text, "code %d", rc);
    return tg__dist_fail(err, TG_ERR_IO, "%s: %s failed: %s", fn, call, text);
}

MPI_Datatype tg__dist_mpi_type(tg_dtype dt)
{
    return dt == TG_F32 ? MPI_FLOAT : dt == TG_F64 ? MPI_DOUBLE : MPI_INT64_T;
}

size_t tg__dist_dtype_size(tg_dtype dt) { return dt == TG_F32 ? 4 : 8; }

const char *tg__dist_dtype_name(tg_dtype dt)
{
    return dt == TG_F32 ? "F32" : dt == TG_F64 ? "F64" : "I64";
}

/* ====== Agreement between ranks ====== */

/* Every rank says whether it can go on; TG_OK when all can. A rank that
 * failed keeps its own status and message; the others get TG_ERR_STATE
 * naming the first rank that failed. */
static tg_status agree(MPI_Comm comm, tg_status local, const char *fn, tg_error *err)
{
    int rank;
    MPI_Comm_rank(comm, &rank);
    struct {
        int failed, rank;
    } in = {local != TG_OK, rank}, out;
    /* MAXLOC keeps the lowest rank among those with the largest value. */
    int rc = MPI_Allreduce(&in, &out, 1, MPI_2INT, MPI_MAXLOC, comm);
    if (rc != MPI_SUCCESS) return tg__dist_mpi_fail(err, fn, "MPI_Allreduce", rc);
    if (!out.failed) return TG_OK;
    if (local != TG_OK) return local;
    return tg__dist_fail(err, TG_ERR_STATE, "%s: failed on rank %d (its own error says why)", fn,
                         out.rank);
}

/* Bytes from rank 0 to every rank, in pieces an int can count. */
static int bcast_bytes(MPI_Comm comm, void *data, size_t bytes)
{
    for (size_t off = 0; off < bytes;) {
        size_t n = bytes - off < (size_t)1 << 30 ? bytes - off : (size_t)1 << 30;
        int rc = MPI_Bcast((char *)data + off, (int)n, MPI_BYTE, 0, comm);
        if (rc != MPI_SUCCESS) return rc;
        off += n;
    }
    return MPI_SUCCESS;
}

/* One tensor of the registries, as the ranks compare them. */
typedef struct entry {
    const char *name;
    char desc[128]; /* "F32 [3x4]", with " (no grad)" for one that requires none */
} entry;

static void describe(tg_tensor *t, char *out, size_t size)
{
    int len = snprintf(out, size, "%s [", tg__dist_dtype_name(tg_tensor_dtype(t)));
    const int64_t *shape = tg_tensor_shape(t);
    for (int k = 0; k < tg_tensor_rank(t) && len > 0 && (size_t)len < size; k++)
        len += snprintf(out + len, size - (size_t)len, k ? "x%lld" : "%lld", (long long)shape[k]);
    if (len > 0 && (size_t)len < size)
        snprintf(out + len, size - (size_t)len, "]%s",
                 tg_tensor_requires_grad(t) ? "" : " (no grad)");
}

/* The tensors of the registries in order, each serialised as name NUL desc NUL. */
static char *serialise(tg_params *const *sets, int n_sets, size_t *len)
{
    size_t total = 1;
    for (int s = 0; s < n_sets; s++)
        for (size_t i = 0; i < tg_params_count(sets[s]); i++) {
            const char *name;
            tg_params_at(sets[s], i, &name);
            total += strlen(name) + 1 + sizeof((entry *)0)->desc;
        }
    char *blob = malloc(total);
    if (!blob) return NULL;
    size_t at = 0;
    for (int s = 0; s < n_sets; s++)
        for (size_t i = 0; i < tg_params_count(sets[s]); i++) {
            const char *name;
            tg_tensor *t = tg_params_at(sets[s], i, &name);
            size_t n = strlen(name) + 1;
            memcpy(blob + at, name, n);
            at += n;
            describe(t, blob + at, sizeof((entry *)0)->desc);
            at += strlen(blob + at) + 1;
        }
    *len = at;
    return blob;
}

/* The k-th entry of a serialised list, or false when it has fewer. */
static bool entry_at(const char *blob, size_t len, int k, entry *e)
{
    size_t at = 0;
    for (int i = 0; at < len; i++) {
        const char *name = blob + at, *desc = name + strlen(name) + 1;
        if (i == k) {
            e->name = name;
            snprintf(e->desc, sizeof e->desc, "%s", desc);
            return true;
        }
        at = (size_t)(desc + strlen(desc) + 1 - blob);
    }
    return false;
}

/* The index of the first entry where two lists differ, INT_MAX when they do not. */
static int first_difference(const char *a, size_t len_a, const char *b, size_t len_b)
{
    entry ea, eb;
    for (int k = 0;; k++) {
        bool has_a = entry_at(a, len_a, k, &ea), has_b = entry_at(b, len_b, k, &eb);
        if (!has_a && !has_b) return INT_MAX;
        if (has_a != has_b || strcmp(ea.name, eb.name) || strcmp(ea.desc, eb.desc)) return k;
    }
}

/* Checks that every rank's registries hold the same tensors as rank 0's, and
 * says which tensor differs first, the same message on every rank. */
static tg_status agree_layout(MPI_Comm comm, tg_params *const *sets, int n_sets, const char *fn,
                              tg_error *err)
{
    int rank;
    MPI_Comm_rank(comm, &rank);
    size_t len = 0;
    char *mine = serialise(sets, n_sets, &len), *root = NULL;
    tg_status s = mine ? TG_OK : tg__dist_fail(err, TG_ERR_NOMEM, "%s: out of memory", fn);
    if ((s = agree(comm, s, fn, err)) != TG_OK) goto out;

    unsigned long long root_len = len;
    int rc = MPI_Bcast(&root_len, 1, MPI_UNSIGNED_LONG_LONG, 0, comm);
    if (rc != MPI_SUCCESS) {
        s = tg__dist_mpi_fail(err, fn, "MPI_Bcast", rc);
        goto out;
    }
    root = rank == 0 ? mine : malloc(root_len ? (size_t)root_len : 1);
    s = root ? TG_OK : tg__dist_fail(err, TG_ERR_NOMEM, "%s: out of memory", fn);
    if ((s = agree(comm, s, fn, err)) != TG_OK) goto out;
    if ((rc = bcast_bytes(comm, root, (size_t)root_len)) != MPI_SUCCESS) {
        s = tg__dist_mpi_fail(err, fn, "MPI_Bcast", rc);
        goto out;
    }

    struct {
        int index, rank;
    } in = {first_difference(root, (size_t)root_len, mine, len), rank}, worst;
    if ((rc = MPI_Allreduce(&in, &worst, 1, MPI_2INT, MPI_MINLOC, comm)) != MPI_SUCCESS) {
        s = tg__dist_mpi_fail(err, fn, "MPI_Allreduce", rc);
        goto out;
    }
    if (worst.index == INT_MAX) goto out;

    /* The rank that differs first sends its entry (an empty name when it has none). */
    entry e0, eb = {0};
    char theirs[sizeof eb.desc + 512] = "";
    bool has0 = entry_at(root, (size_t)root_len, worst.index, &e0);
    if (rank == worst.rank && entry_at(mine, len, worst.index, &eb))
        snprintf(theirs, sizeof theirs, "%.511s%c%s", eb.name, '\0', eb.desc);
    if ((rc = MPI_Bcast(theirs, (int)sizeof theirs, MPI_CHAR, worst.rank, comm)) != MPI_SUCCESS) {
        s = tg__dist_mpi_fail(err, fn, "MPI_Bcast", rc);
        goto out;
    }
    bool has_b = theirs[0] != '\0';
    const char *name_b = theirs, *desc_b = theirs + strlen(theirs) + 1;
    if (has0 && has_b && !strcmp(e0.name, name_b))
        s = tg__dist_fail(err,
                          strncmp(e0.desc, desc_b, 3) ? TG_ERR_DTYPE
                          : strcspn(e0.desc, "]") != strcspn(desc_b, "]") ||
                                  strncmp(e0.desc, desc_b, strcspn(e0.desc, "]"))
                              ? TG_ERR_SHAPE
                              : TG_ERR_ARG,
                          "%s: parameter '%s' is %s on rank 0 but %s on rank %d", fn, e0.name,
                          e0.desc, desc_b, worst.rank);
    else if (has0 && has_b)
        s = tg__dist_fail(err, TG_ERR_ARG,
                          "%s: tensor %d is '%s' %s on rank 0 but '%s' %s on rank %d", fn,
                          worst.index, e0.name, e0.desc, name_b, desc_b, worst.rank);
    else if (has0)
        s = tg__dist_fail(err, TG_ERR_ARG,
                          "%s: rank %d has %d tensors; rank 0 has more, the next '%s' %s", fn,
                          worst.rank, worst.index, e0.name, e0.desc);
    else
        s = tg__dist_fail(err, TG_ERR_ARG,
                          "%s: rank %d has a tensor '%s' %s after the %d of rank 0", fn, worst.rank,
                          name_b, desc_b, worst.index);
out:
    if (root != mine) free(root);
    free(mine);
    return s;
}

/* Local checks of a list of registries. */
static tg_status check_sets(tg_params *const *sets, int n_sets, const char *fn, tg_error *err)
{
    if (n_sets < 0 || (n_sets > 0 && !sets))
        return tg__dist_fail(err, TG_ERR_ARG, "%s: %d sets at %p", fn, n_sets, (void *)sets);
    for (int s = 0; s < n_sets; s++)
        if (!sets[s]) return tg__dist_fail(err, TG_ERR_ARG, "%s: set %d is NULL", fn, s);
    return TG_OK;
}

/* Rank 0's values into every rank's tensors; the layout is agreed already. */
static tg_status bcast_values(MPI_Comm comm, tg_params *const *sets, int n_sets, const char *fn,
                              tg_error *err)
{
    for (int s = 0; s < n_sets; s++)
        for (size_t i = 0; i < tg_params_count(sets[s]); i++) {
            tg_tensor *t = tg_params_at(sets[s], i, NULL);
            size_t bytes = (size_t)tg_tensor_numel(t) * tg__dist_dtype_size(tg_tensor_dtype(t));
            int rc = bcast_bytes(comm, tg_tensor_data(t), bytes);
            if (rc != MPI_SUCCESS) return tg__dist_mpi_fail(err, fn, "MPI_Bcast", rc);
        }
    return TG_OK;
}

/* ====== The context ====== */

tg_dist *tg_dist_new(MPI_Comm comm, tg_params *ps, const tg_dist_opts *opts, tg_error *err)
{
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (!init || fin) {
        tg__dist_fail(err, TG_ERR_STATE, "dist_new: MPI is %s",
                      fin ? "finalised already" : "not initialised (call MPI_Init first)");
        return NULL;
    }
    if (comm == MPI_COMM_NULL) {
        tg__dist_fail(err, TG_ERR_ARG, "dist_new: the communicator is MPI_COMM_NULL");
        return NULL;
    }
    /* The duplicate keeps our messages apart from the caller's, and our error
     * handler off the caller's communicator. */
    MPI_Comm dup;
    int rc = MPI_Comm_dup(comm, &dup);
    if (rc != MPI_SUCCESS) {
        tg__dist_mpi_fail(err, "dist_new", "MPI_Comm_dup", rc);
        return NULL;
    }
    tg_status s = TG_OK;
    if ((rc = MPI_Comm_set_errhandler(dup, MPI_ERRORS_RETURN)) != MPI_SUCCESS)
        s = tg__dist_mpi_fail(err, "dist_new", "MPI_Comm_set_errhandler", rc);
    tg_dist *d = calloc(1, sizeof *d);
    if (d) {
        d->comm = MPI_COMM_NULL;
        d->status_req = MPI_REQUEST_NULL;
    }
    if (s == TG_OK && !d) s = tg__dist_fail(err, TG_ERR_NOMEM, "dist_new: out of memory");
    if (s == TG_OK && !ps) s = tg__dist_fail(err, TG_ERR_ARG, "dist_new: NULL parameter registry");
    if (s == TG_OK) {
        d->comm = dup;
        d->ps = ps;
        d->no_overlap = opts && opts->no_overlap;
        MPI_Comm_rank(dup, &d->rank);
        MPI_Comm_size(dup, &d->size);
        size_t n = tg_params_count(ps);
        d->params = calloc(n ? n : 1, sizeof *d->params);
        if (!d->params) s = tg__dist_fail(err, TG_ERR_NOMEM, "dist_new: out of memory");
        /* Last registered first: the order the backward sweep finishes them in. */
        for (size_t i = n; s == TG_OK && i-- > 0;) {
            const char *name;
            tg_tensor *t = tg_params_at(ps, i, &name);
            if (tg_tensor_dtype(t) == TG_I64 || !tg_tensor_requires_grad(t)) continue;
            d->params[d->n_params++] =
                (dist_param){.t = t, .name = name, .numel = tg_tensor_numel(t)};
        }
    }
    if (s == TG_OK)
        s = tg__dist_plan_buckets(
            d, opts && opts->bucket_bytes ? opts->bucket_bytes : TG_DIST_BUCKET_BYTES, err);
    if ((s = agree(dup, s, "dist_new", err)) == TG_OK &&
        (s = agree_layout(dup, &ps, 1, "dist_new", err)) == TG_OK)
        s = bcast_values(dup, &ps, 1, "dist_new", err);
    if (s != TG_OK) {
        if (d && d->comm == dup) d->comm = MPI_COMM_NULL;
        tg_dist_free(d);
        MPI_Comm_free(&dup);
        return NULL;
    }
    return d;
}

void tg_dist_free(tg_dist *d)
{
    if (!d) return;
    tg__dist_free_reducer(d);
    free(d->params);
    int fin = 0;
    MPI_Finalized(&fin);
    if (d->comm != MPI_COMM_NULL && !fin) MPI_Comm_free(&d->comm);
    free(d);
}

int tg_dist_rank(const tg_dist *d) { return d ? d->rank : -1; }
int tg_dist_size(const tg_dist *d) { return d ? d->size : 0; }
int tg_dist_bucket_count(const tg_dist *d) { return d ? d->n_buckets : 0; }

/* ====== Whole tensors across ranks ====== */

tg_status tg_dist_broadcast(tg_dist *d, tg_params *const *sets, int n_sets, tg_error *err)
{
    if (!d) return tg__dist_fail(err, TG_ERR_ARG, "dist_broadcast: NULL context");
    tg_status s = check_sets(sets, n_sets, "dist_broadcast", err);
    if ((s = agree(d->comm, s, "dist_broadcast", err)) != TG_OK) return s;
    if ((s = agree_layout(d->comm, sets, n_sets, "dist_broadcast", err)) != TG_OK) return s;
    return bcast_values(d->comm, sets, n_sets, "dist_broadcast", err);
}

/* FNV-1a over a tensor's bytes: equal bits give equal hashes. */
static uint64_t hash_bytes(const void *data, size_t n)
{
    const unsigned char *p = data;
    uint64_t h = 1469598103934665603u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211u;
    return h;
}

tg_status tg_dist_verify(tg_dist *d, tg_params *const *sets, int n_sets, tg_error *err)
{
    if (!d) return tg__dist_fail(err, TG_ERR_ARG, "dist_verify: NULL context");
    tg_status s = check_sets(sets, n_sets, "dist_verify", err);
    if ((s = agree(d->comm, s, "dist_verify", err)) != TG_OK) return s;
    if ((s = agree_layout(d->comm, sets, n_sets, "dist_verify", err)) != TG_OK) return s;
    size_t n = 0;
    for (int k = 0; k < n_sets; k++)
        n += tg_params_count(sets[k]);
    uint64_t *mine = malloc((n ? n : 1) * sizeof *mine), *root = malloc((n ? n : 1) * sizeof *root);
    s = mine && root ? TG_OK : tg__dist_fail(err, TG_ERR_NOMEM, "dist_verify: out of memory");
    if ((s = agree(d->comm, s, "dist_verify", err)) != TG_OK) goto out;
    size_t at = 0;
    for (int k = 0; k < n_sets; k++)
        for (size_t i = 0; i < tg_params_count(sets[k]); i++) {
            const tg_tensor *t = tg_params_at(sets[k], i, NULL);
            mine[at++] =
                hash_bytes(tg_tensor_cdata(t),
                           (size_t)tg_tensor_numel(t) * tg__dist_dtype_size(tg_tensor_dtype(t)));
        }
    memcpy(root, mine, n * sizeof *root);
    int rc = bcast_bytes(d->comm, root, n * sizeof *root);
    if (rc != MPI_SUCCESS) {
        s = tg__dist_mpi_fail(err, "dist_verify", "MPI_Bcast", rc);
        goto out;
    }
    struct {
        int index, rank;
    } in = {INT_MAX, d->rank}, worst;
    for (size_t i = 0; i < n && in.index == INT_MAX; i++)
        if (mine[i] != root[i]) in.index = (int)i;
    if ((rc = MPI_Allreduce(&in, &worst, 1, MPI_2INT, MPI_MINLOC, d->comm)) != MPI_SUCCESS) {
        s = tg__dist_mpi_fail(err, "dist_verify", "MPI_Allreduce", rc);
        goto out;
    }
    if (worst.index != INT_MAX) {
        const char *name = "?";
        for (int k = 0, left = worst.index; k < n_sets; k++) {
            if ((size_t)left < tg_params_count(sets[k])) {
                tg_params_at(sets[k], (size_t)left, &name);
                break;
            }
            left -= (int)tg_params_count(sets[k]);
        }
        s = tg__dist_fail(err, TG_ERR_STATE, "dist_verify: '%s' on rank %d differs from rank 0",
                          name, worst.rank);
    }
out:
    free(mine);
    free(root);
    return s;
}

tg_status tg_dist_sum(tg_dist *d, tg_tensor *t, tg_error *err)
{
    if (!d) return tg__dist_fail(err, TG_ERR_ARG, "dist_sum: NULL context");
    /* One reduction agrees on all three: that every rank has a tensor, and its
     * dtype and element count (the maxima of x and -x are equal when all are). */
    long long n = t ? tg_tensor_numel(t) : 0, dt = t ? (long long)tg_tensor_dtype(t) : 0;
    long long in[5] = {!t, n, -n, dt, -dt}, out[5];
    int rc = MPI_Allreduce(in, out, 5, MPI_LONG_LONG, MPI_MAX, d->comm);
    if (rc != MPI_SUCCESS) return tg__dist_mpi_fail(err, "dist_sum", "MPI_Allreduce", rc);
    if (!t) return tg__dist_fail(err, TG_ERR_ARG, "dist_sum: NULL tensor");
    if (out[0]) return tg__dist_fail(err, TG_ERR_ARG, "dist_sum: a NULL tensor on another rank");
    if (out[1] != -out[2] || out[3] != -out[4])
        return tg__dist_fail(err, TG_ERR_SHAPE,
                             "dist_sum: the ranks' tensors differ: %lld to %lld elements, "
                             "dtypes %s and %s",
                             -out[2], out[1], tg__dist_dtype_name((tg_dtype)-out[4]),
                             tg__dist_dtype_name((tg_dtype)out[3]));
    char *data = tg_tensor_data(t);
    size_t size = tg__dist_dtype_size(tg_tensor_dtype(t));
    for (long long off = 0; off < n;) {
        int k = n - off < INT_MAX / 2 ? (int)(n - off) : INT_MAX / 2;
        rc = MPI_Allreduce(MPI_IN_PLACE, data + (size_t)off * size, k,
                           tg__dist_mpi_type(tg_tensor_dtype(t)), MPI_SUM, d->comm);
        if (rc != MPI_SUCCESS) return tg__dist_mpi_fail(err, "dist_sum", "MPI_Allreduce", rc);
        off += k;
    }
    return TG_OK;
}

tg_status tg_dist_average_buffers(tg_dist *d, tg_error *err)
{
    if (!d) return tg__dist_fail(err, TG_ERR_ARG, "dist_average_buffers: NULL context");
    /* The registry's layout was agreed by tg_dist_new and cannot have grown. */
    for (size_t i = 0; i < tg_params_count(d->ps); i++) {
        tg_tensor *t = tg_params_at(d->ps, i, NULL);
        tg_dtype dt = tg_tensor_dtype(t);
        if (dt == TG_I64 || tg_tensor_requires_grad(t)) continue;
        int64_t n = tg_tensor_numel(t);
        if (n > INT_MAX)
            return tg__dist_fail(err, TG_ERR_ARG, "dist_average_buffers: a tensor of %lld elements",
                                 (long long)n);
        int rc = MPI_Allreduce(MPI_IN_PLACE, tg_tensor_data(t), (int)n, tg__dist_mpi_type(dt),
                               MPI_SUM, d->comm);
        if (rc != MPI_SUCCESS)
            return tg__dist_mpi_fail(err, "dist_average_buffers", "MPI_Allreduce", rc);
        if (dt == TG_F32) {
            float *v = tg_tensor_data(t), size = (float)d->size;
            for (int64_t k = 0; k < n; k++)
                v[k] /= size;
        } else {
            double *v = tg_tensor_data(t), size = (double)d->size;
            for (int64_t k = 0; k < n; k++)
                v[k] /= size;
        }
    }
    return TG_OK;
}

/* ====== Checkpoints ====== */

/* Rank 0's status and message, to every rank. */
static tg_status share_root_status(tg_dist *d, tg_status s, tg_error *err, const char *fn)
{
    struct {
        int status;
        char msg[sizeof err->msg];
    } shared = {.status = s};
    if (d->rank == 0 && s != TG_OK && err) memcpy(shared.msg, err->msg, sizeof shared.msg);
    int rc = bcast_bytes(d->comm, &shared, sizeof shared);
    if (rc != MPI_SUCCESS) return tg__dist_mpi_fail(err, fn, "MPI_Bcast", rc);
    if (shared.status != TG_OK && d->rank != 0)
        tg__dist_fail(err, (tg_status)shared.status, "%s", shared.msg);
    return (tg_status)shared.status;
}

tg_status tg_dist_checkpoint_save(tg_dist *d, const char *path, tg_params *const *sets, int n_sets,
                                  tg_error *err)
{
    if (!d) return tg__dist_fail(err, TG_ERR_ARG, "dist_checkpoint_save: NULL context");
    tg_error mine = {0};
    tg_status s = d->rank == 0 ? tg_checkpoint_save(path, sets, n_sets, &mine) : TG_OK;
    if (s != TG_OK) tg__dist_fail(err, s, "%s", mine.msg);
    return share_root_status(d, s, err, "dist_checkpoint_save");
}

tg_status tg_dist_checkpoint_load(tg_dist *d, const char *path, tg_params *const *sets, int n_sets,
                                  tg_error *err)
{
    if (!d) return tg__dist_fail(err, TG_ERR_ARG, "dist_checkpoint_load: NULL context");
    const char *fn = "dist_checkpoint_load";
    tg_status s = check_sets(sets, n_sets, fn, err);
    if ((s = agree(d->comm, s, fn, err)) != TG_OK) return s;
    /* The layout first: rank 0 changes nothing unless every rank can take its values. */
    if ((s = agree_layout(d->comm, sets, n_sets, fn, err)) != TG_OK) return s;
    tg_error mine = {0};
    s = d->rank == 0 ? tg_checkpoint_load(path, sets, n_sets, &mine) : TG_OK;
    if (s != TG_OK) tg__dist_fail(err, s, "%s", mine.msg);
    if ((s = share_root_status(d, s, err, fn)) != TG_OK) return s;
    return bcast_values(d->comm, sets, n_sets, fn, err);
}
