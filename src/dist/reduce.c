/*
 * Gradient averaging: buckets, markers and the step.
 *
 * The gradients of the reduced parameters are packed into buckets, last
 * registered first, each reduced by one MPI_Iallreduce (a sum, then divided
 * by the number of ranks). A bucket can start once every gradient in it is
 * final. The backward sweep runs the nodes in reverse recording order, so
 * when it reaches a node, every node recorded after it has run its VJP: a
 * marker recorded just before a layer (tg_dist_mark) is reached only once
 * the layer's parameters have all their gradient. Its VJP adds nothing; it
 * tells the reducer, which starts every bucket that is complete, in bucket
 * order (MPI matches collectives by their order, so every rank starts them
 * in the same one whatever the timing), and gives MPI a chance to progress
 * the ones under way. The markers are zero scalars that tg_dist_loss adds to
 * the loss, which is how the sweep reaches them without copying a tensor.
 *
 * MPI progresses a non-blocking collective only inside MPI calls unless the
 * library runs a thread of its own, so each marker's VJP calls MPI_Test.
 */
#include "dist_internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* ====== Buckets ====== */

tg_status tg__dist_plan_buckets(tg_dist *d, size_t bucket_bytes, tg_error *err)
{
    d->buckets = calloc(d->n_params ? (size_t)d->n_params : 1, sizeof *d->buckets);
    if (!d->buckets) return tg__dist_fail(err, TG_ERR_NOMEM, "dist_new: out of memory");
    size_t bytes = 0;
    int64_t grads = 0;
    for (int i = 0; i < d->n_params; i++) {
        dist_param *p = &d->params[i];
        tg_dtype dt = tg_tensor_dtype(p->t);
        size_t size = (size_t)p->numel * tg__dist_dtype_size(dt);
        dist_bucket *b = d->n_buckets ? &d->buckets[d->n_buckets - 1] : NULL;
        /* The elements of a bucket, flags included, must fit an int (MPI's count). */
        if (!b || b->dt != dt || bytes + size > bucket_bytes ||
            grads + p->numel + b->n_params + 1 > INT_MAX) {
            if (p->numel + 1 > INT_MAX)
                return tg__dist_fail(err, TG_ERR_ARG,
                                     "dist_new: parameter '%s' has %lld elements, more than one "
                                     "MPI message can count",
                                     p->name, (long long)p->numel);
            b = &d->buckets[d->n_buckets++];
            *b = (dist_bucket){.dt = dt, .first = i, .req = MPI_REQUEST_NULL};
            bytes = 0;
            grads = 0;
        }
        p->bucket = d->n_buckets - 1;
        p->offset = grads;
        grads += p->numel;
        bytes += size;
        b->n_params++;
        b->count = grads + b->n_params;
    }
    for (int k = 0; k < d->n_buckets; k++) {
        dist_bucket *b = &d->buckets[k];
        size_t size = (size_t)b->count * tg__dist_dtype_size(b->dt);
        b->send = malloc(size);
        b->recv = malloc(size);
        if (!b->send || !b->recv)
            return tg__dist_fail(err, TG_ERR_NOMEM, "dist_new: out of memory");
    }
    return TG_OK;
}

void tg__dist_free_reducer(tg_dist *d)
{
    for (dist_mark *m = d->marks, *next; m; m = next) {
        next = m->next;
        free(m);
    }
    d->marks = NULL;
    for (int k = 0; k < d->n_buckets; k++) {
        /* A reduction still under way (an MPI call failed before its wait)
         * may yet write its buffers: they are left to it. */
        if (d->buckets[k].req != MPI_REQUEST_NULL) continue;
        free(d->buckets[k].send);
        free(d->buckets[k].recv);
    }
    free(d->buckets);
    d->buckets = NULL;
    d->n_buckets = 0;
}

/* Bucket k's gradients and flags into its send buffer, and its reduction started. */
static tg_status launch(tg_dist *d, int k, const char *fn, tg_error *err)
{
    dist_bucket *b = &d->buckets[k];
    size_t size = tg__dist_dtype_size(b->dt);
    int64_t n_grads = b->count - b->n_params;
    for (int j = 0; j < b->n_params; j++) {
        const dist_param *p = &d->params[b->first + j];
        const tg_tensor *g = tg_tensor_grad(p->t);
        char *dst = (char *)b->send + (size_t)p->offset * size;
        if (g)
            memcpy(dst, tg_tensor_cdata(g), (size_t)p->numel * size);
        else
            memset(dst, 0, (size_t)p->numel * size);
        if (b->dt == TG_F32)
            ((float *)b->send)[n_grads + j] = g ? 1.0f : 0.0f;
        else
            ((double *)b->send)[n_grads + j] = g ? 1.0 : 0.0;
    }
    int rc = MPI_Iallreduce(b->send, b->recv, (int)b->count, tg__dist_mpi_type(b->dt), MPI_SUM,
                            d->comm, &b->req);
    if (rc != MPI_SUCCESS) return tg__dist_mpi_fail(err, fn, "MPI_Iallreduce", rc);
    b->launched = true;
    b->in_sweep = d->armed != NULL;
    return TG_OK;
}

/* Starts the complete buckets in order, then lets MPI progress those under way. */
static tg_status launch_ready(tg_dist *d, const char *fn, tg_error *err)
{
    while (d->next_launch < d->n_buckets && d->buckets[d->next_launch].waiting == 0) {
        tg_status s = launch(d, d->next_launch++, fn, err);
        if (s != TG_OK) return s;
    }
    for (int k = 0; k < d->next_launch; k++) {
        if (d->buckets[k].req == MPI_REQUEST_NULL) continue;
        /* One test drives MPI's progress engine for every request under way. */
        int done, rc = MPI_Test(&d->buckets[k].req, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return tg__dist_mpi_fail(err, fn, "MPI_Test", rc);
        break;
    }
    return TG_OK;
}

/* ====== Markers ====== */

static tg_status mark_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)in, (void)n_in, (void)ctx;
    memset(tg_tensor_data(out), 0, tg__dist_dtype_size(tg_tensor_dtype(out)));
    return TG_OK;
}

/* d(0)/dparams = 0, so nothing is added; the marked parameters are final. */
static tg_status mark_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                          tg_tensor **gin, int n_in, void *ctx)
{
    (void)gout, (void)out, (void)in, (void)gin, (void)n_in;
    dist_mark *m = ctx;
    tg_dist *d = m->d;
    if (d->armed != m->tp) return TG_OK; /* a sweep outside tg_dist_backward */
    for (int k = 0; k < m->n; k++) {
        dist_param *p = &d->params[m->idx[k]];
        if (p->pending > 0 && --p->pending == 0) d->buckets[p->bucket].waiting--;
    }
    return launch_ready(d, "dist_backward", &d->hook_err);
}

static const tg_op_def mark_def = {.name = "dist_mark", .forward = mark_forward, .vjp = mark_vjp};

tg_status tg_dist_mark(tg_dist *d, tg_tape *tp, tg_tensor *const *params, int n, tg_error *err)
{
    if (!d || !tp || !params || n < 1)
        return tg__dist_fail(err, TG_ERR_ARG, "dist_mark: %s",
                             !d    ? "NULL context"
                             : !tp ? "NULL tape"
                                   : "no parameters");
    dist_mark *m = malloc(sizeof *m + (size_t)n * sizeof *m->idx);
    if (!m) return tg__dist_fail(err, TG_ERR_NOMEM, "dist_mark: out of memory");
    *m = (dist_mark){.d = d, .tp = tp, .n = n};
    tg_status s = TG_OK;
    for (int k = 0; k < n && s == TG_OK; k++) {
        int i = 0;
        while (i < d->n_params && d->params[i].t != params[k])
            i++;
        if (i == d->n_params) {
            s = tg__dist_fail(err, TG_ERR_ARG,
                              "dist_mark: tensor %d is not a parameter the context reduces (a "
                              "float parameter of its registry that requires grad)",
                              k);
            break;
        }
        m->idx[k] = i;
        if (tg_tensor_dtype(params[k]) != tg_tensor_dtype(params[0]))
            s = tg__dist_fail(err, TG_ERR_DTYPE, "dist_mark: '%s' is %s, '%s' %s",
                              d->params[i].name, tg__dist_dtype_name(tg_tensor_dtype(params[k])),
                              d->params[m->idx[0]].name,
                              tg__dist_dtype_name(tg_tensor_dtype(params[0])));
        for (const dist_mark *o = d->marks; o && s == TG_OK; o = o->next)
            for (int j = 0; j < o->n && o->tp == tp; j++)
                if (o->idx[j] == i)
                    s = tg__dist_fail(err, TG_ERR_ARG,
                                      "dist_mark: '%s' is marked on this tape already",
                                      d->params[i].name);
        for (int j = 0; j < k && s == TG_OK; j++)
            if (m->idx[j] == i)
                s = tg__dist_fail(err, TG_ERR_ARG, "dist_mark: '%s' is given twice",
                                  d->params[i].name);
    }
    if (s == TG_OK && !(m->out = tg_custom(tp, &mark_def, params, n, 0, NULL, m)))
        s = tg__dist_fail(err, tg_tape_status(tp), "dist_mark: %s", tg_tape_error(tp));
    if (s != TG_OK) {
        free(m);
        return s;
    }
    m->next = d->marks;
    d->marks = m;
    return TG_OK;
}

/* ====== The loss with the markers joined ====== */

static tg_status join_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in, (void)ctx;
    if (tg_tensor_numel(in[0]) != 1) return TG_ERR_SHAPE; /* the loss must be one number */
    memcpy(tg_tensor_data(out), tg_tensor_cdata(in[0]), tg__dist_dtype_size(tg_tensor_dtype(out)));
    return TG_OK;
}

/* y = loss + 0 markers: dloss += dy; the markers need only to be reached. */
static tg_status join_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                          tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)in, (void)n_in, (void)ctx;
    if (!gin[0]) return TG_OK;
    if (tg_tensor_dtype(gout) == TG_F32)
        *(float *)tg_tensor_data(gin[0]) += *(const float *)tg_tensor_cdata(gout);
    else
        *(double *)tg_tensor_data(gin[0]) += *(const double *)tg_tensor_cdata(gout);
    return TG_OK;
}

static const tg_op_def join_def = {.name = "dist_loss", .forward = join_forward, .vjp = join_vjp};

tg_tensor *tg_dist_loss(tg_dist *d, tg_tape *tp, tg_tensor *loss)
{
    if (!d || !tp || !loss || tg_tape_status(tp) != TG_OK) return NULL;
    int n = 1;
    for (const dist_mark *m = d->marks; m; m = m->next)
        n += m->tp == tp;
    tg_tensor **in = malloc((size_t)n * sizeof *in);
    if (!in) return NULL;
    in[0] = loss;
    n = 1;
    for (const dist_mark *m = d->marks; m; m = m->next)
        if (m->tp == tp) in[n++] = m->out;
    tg_tensor *y = tg_custom(tp, &join_def, in, n, 0, NULL, NULL);
    free(in);
    return y;
}

void tg_dist_forget(tg_dist *d, const tg_tape *tp)
{
    if (!d) return;
    for (dist_mark **at = &d->marks; *at;) {
        dist_mark *m = *at;
        if (m->tp == tp) {
            *at = m->next;
            free(m);
        } else {
            at = &m->next;
        }
    }
}

/* ====== The step ====== */

/* Sets the counts for a sweep of tp (NULL: no sweep, every bucket after it). */
static void begin_step(tg_dist *d, const tg_tape *tp)
{
    for (int i = 0; i < d->n_params; i++)
        d->params[i].marks = 0;
    for (const dist_mark *m = d->marks; m && tp; m = m->next)
        for (int k = 0; k < m->n && m->tp == tp; k++)
            d->params[m->idx[k]].marks++;
    for (int i = 0; i < d->n_params; i++)
        d->params[i].pending = d->params[i].marks;
    for (int k = 0; k < d->n_buckets; k++) {
        dist_bucket *b = &d->buckets[k];
        b->waiting = b->n_params;
        b->launched = b->in_sweep = false;
    }
    d->next_launch = 0;
    d->hook_err = (tg_error){0};
}

/* Element i of a bucket's buffer as a double: the flags and their sums. */
static double flag_at(const dist_bucket *b, const void *buf, int64_t i)
{
    return b->dt == TG_F32 ? (double)((const float *)buf)[i] : ((const double *)buf)[i];
}

/* True when a gradient changed after its bucket was packed: a use of the
 * parameter recorded before its marker. Sets *name to the first one. */
static bool late_gradient(const tg_dist *d, const char **name)
{
    for (int k = 0; k < d->n_buckets; k++) {
        const dist_bucket *b = &d->buckets[k];
        if (!b->in_sweep) continue;
        size_t size = tg__dist_dtype_size(b->dt);
        int64_t n_grads = b->count - b->n_params;
        for (int j = 0; j < b->n_params; j++) {
            const dist_param *p = &d->params[b->first + j];
            const tg_tensor *g = tg_tensor_grad(p->t);
            double flag = flag_at(b, b->send, n_grads + j);
            const char *packed = (const char *)b->send + (size_t)p->offset * size;
            if ((g != NULL) != (flag != 0) ||
                (g && memcmp(packed, tg_tensor_cdata(g), (size_t)p->numel * size))) {
                *name = p->name;
                return true;
            }
        }
    }
    return false;
}

/* True when tp has marks that no step has checked yet. */
static bool unchecked_marks(const tg_dist *d, const tg_tape *tp)
{
    for (const dist_mark *m = d->marks; m; m = m->next)
        if (m->tp == tp && !m->checked) return true;
    return false;
}

/* The buckets not started yet, the step's status over the ranks, and the
 * averaged gradients written back when every rank succeeded. A gradient that
 * arrives after its bucket left comes from a use recorded before the marker:
 * a property of the recording, which replays do not change, so only the first
 * step of a tape's marks compares the buckets with the gradients ('check'),
 * and the steps after it cost no extra pass over them. */
static tg_status finish_step(tg_dist *d, tg_status local, double loss, double *mean_loss,
                             bool check, const char *fn, tg_error *err)
{
    for (int k = d->next_launch; k < d->n_buckets; k++)
        d->buckets[k].waiting = 0;
    tg_status s = launch_ready(d, fn, err);
    if (s != TG_OK) return s;
    const char *late = NULL;
    bool is_late = local == TG_OK && check && late_gradient(d, &late);
    d->status_send[0] = local == TG_OK ? loss : 0.0;
    d->status_send[1] = local != TG_OK;
    d->status_send[2] = is_late;
    int rc = MPI_Iallreduce(d->status_send, d->status_recv, 3, MPI_DOUBLE, MPI_SUM, d->comm,
                            &d->status_req);
    if (rc != MPI_SUCCESS) return tg__dist_mpi_fail(err, fn, "MPI_Iallreduce", rc);
    for (int k = 0; k < d->n_buckets; k++)
        if ((rc = MPI_Wait(&d->buckets[k].req, MPI_STATUS_IGNORE)) != MPI_SUCCESS)
            return tg__dist_mpi_fail(err, fn, "MPI_Wait", rc);
    if ((rc = MPI_Wait(&d->status_req, MPI_STATUS_IGNORE)) != MPI_SUCCESS)
        return tg__dist_mpi_fail(err, fn, "MPI_Wait", rc);

    int failed = (int)d->status_recv[1], n_late = (int)d->status_recv[2];
    if (failed) {
        if (local != TG_OK) return local;
        return tg__dist_fail(err, TG_ERR_STATE, "%s: the step failed on %d of %d ranks", fn, failed,
                             d->size);
    }
    if (n_late) {
        if (is_late)
            return tg__dist_fail(err, TG_ERR_STATE,
                                 "%s: '%s' gained gradient after its marker ran: mark it before "
                                 "its first use on the tape",
                                 fn, late);
        return tg__dist_fail(err, TG_ERR_STATE,
                             "%s: on %d of %d ranks a parameter gained gradient after its marker "
                             "ran",
                             fn, n_late, d->size);
    }
    /* Every rank sees the same counts, so every rank refuses the same parameter. */
    for (int k = 0; k < d->n_buckets; k++) {
        const dist_bucket *b = &d->buckets[k];
        int64_t n_grads = b->count - b->n_params;
        for (int j = 0; j < b->n_params; j++) {
            double ranks = flag_at(b, b->recv, n_grads + j);
            if (ranks != 0 && ranks != d->size)
                return tg__dist_fail(err, TG_ERR_STATE,
                                     "%s: parameter '%s' has a gradient on %g of %d ranks", fn,
                                     d->params[b->first + j].name, ranks, d->size);
        }
    }
    for (int k = 0; k < d->n_buckets; k++) {
        const dist_bucket *b = &d->buckets[k];
        for (int j = 0; j < b->n_params; j++) {
            const dist_param *p = &d->params[b->first + j];
            tg_tensor *g = tg_tensor_grad(p->t);
            if (!g) continue; /* no rank has one */
            if (b->dt == TG_F32) {
                const float *sum = (const float *)b->recv + p->offset;
                float *out = tg_tensor_data(g), n = (float)d->size;
                for (int64_t i = 0; i < p->numel; i++)
                    out[i] = sum[i] / n;
            } else {
                const double *sum = (const double *)b->recv + p->offset;
                double *out = tg_tensor_data(g), n = (double)d->size;
                for (int64_t i = 0; i < p->numel; i++)
                    out[i] = sum[i] / n;
            }
        }
    }
    if (mean_loss) *mean_loss = d->status_recv[0] / (double)d->size;
    return TG_OK;
}

tg_status tg_dist_backward(tg_dist *d, tg_tape *tp, tg_tensor *loss, double *mean_loss,
                           tg_error *err)
{
    if (!d) return tg__dist_fail(err, TG_ERR_ARG, "dist_backward: NULL context");
    tg_status local = TG_OK;
    if (!tp || !loss)
        local = tg__dist_fail(err, TG_ERR_ARG, "dist_backward: NULL %s", !tp ? "tape" : "loss");
    else if (tg_tape_status(tp) != TG_OK)
        local = tg__dist_fail(err, tg_tape_status(tp), "dist_backward: %s", tg_tape_error(tp));
    bool check = local == TG_OK && unchecked_marks(d, tp);
    /* One rank alone has nothing to average (x / 1 is x): once its marks are
     * checked, a step is the sweep. */
    if (d->size == 1 && local == TG_OK && !check) {
        if ((local = tg_backward(tp, loss)) != TG_OK)
            return tg__dist_fail(err, local, "dist_backward: %s", tg_tape_error(tp));
        if (mean_loss) *mean_loss = tg_tensor_item(loss);
        return TG_OK;
    }
    begin_step(d, local == TG_OK ? tp : NULL);
    if (local == TG_OK) {
        d->armed = d->no_overlap ? NULL : tp;
        local = tg_backward(tp, loss);
        d->armed = NULL;
        /* A marker's VJP that failed in MPI says why better than the tape can. */
        if (d->hook_err.status != TG_OK) {
            if (err) *err = d->hook_err;
            return d->hook_err.status;
        }
        if (local != TG_OK) tg__dist_fail(err, local, "dist_backward: %s", tg_tape_error(tp));
    }
    double value = local == TG_OK ? tg_tensor_item(loss) : 0.0;
    tg_status s = finish_step(d, local, value, mean_loss, check, "dist_backward", err);
    for (dist_mark *m = d->marks; m && s == TG_OK; m = m->next)
        m->checked |= m->tp == tp;
    return s;
}

tg_status tg_dist_allreduce_grads(tg_dist *d, tg_error *err)
{
    if (!d) return tg__dist_fail(err, TG_ERR_ARG, "dist_allreduce_grads: NULL context");
    if (d->size == 1) return TG_OK; /* the mean over one rank */
    begin_step(d, NULL);
    return finish_step(d, TG_OK, 0.0, NULL, false, "dist_allreduce_grads", err);
}
