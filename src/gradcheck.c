/*
 * tg_gradcheck: the tape's gradient against central differences, element by
 * element. The function is recorded once; every perturbed evaluation is a
 * replay of that recording, so the check costs 2 forward passes per element
 * and allocates nothing per element.
 *
 * A check never reports a pass it did not earn: the report starts as failed
 * with a message, and only a comparison of every element sets it to passed.
 */
#include "internal.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static bool seen_before(tg_tensor *const *inputs, int i)
{
    for (int j = 0; j < i; j++)
        if (inputs[j] == inputs[i]) return true;
    return false;
}

/* Records why the check failed in the report and as the thread's last error,
 * and returns s. */
TG__PRINTF(3, 4) static tg_status refuse(tg_gradcheck_report *r, tg_status s, const char *fmt, ...)
{
    char msg[sizeof r->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (r) {
        r->passed = false;
        memcpy(r->msg, msg, sizeof msg);
    }
    if (s != TG_OK) tg__fail_call(s, "%s", msg);
    return s;
}

/* The tape's message, or the status's text when the tape kept none. */
static const char *tape_reason(const tg_tape *tp, tg_status s)
{
    const char *msg = tg_tape_error(tp);
    return *msg ? msg : tg_status_str(s);
}

/* Evaluates the recorded function after a change of input data. */
static tg_status eval(tg_tape *tp, const tg_tensor *y, double *value)
{
    tg_status s = tg_tape_replay(tp);
    *value = tg_tensor_item(y);
    return s;
}

static tg_status compare(tg_tape *tp, const tg_tensor *y, tg_tensor *const *inputs, int n_inputs,
                         const tg_gradcheck_opts *o, tg_gradcheck_report *r)
{
    double worst_excess = -(double)INFINITY;
    bool passed = true;
    for (int i = 0; i < n_inputs; i++) {
        tg_tensor *x = inputs[i];
        if (!x->requires_grad || seen_before(inputs, i)) continue;
        for (int64_t k = 0; k < x->numel; k++) {
            /* Save the raw bytes so the restore is bit-exact whatever rounding did. */
            unsigned char orig[sizeof(double)];
            size_t esz = tg__dtype_size(x->dtype);
            memcpy(orig, (char *)x->data + k * (int64_t)esz, esz);
            double x0 = tg__get(x, k), fp, fm;
            double hi = tg__put(x, k, x0 + o->eps);
            tg_status s = eval(tp, y, &fp);
            double lo = tg__put(x, k, x0 - o->eps);
            if (s == TG_OK) s = eval(tp, y, &fm);
            memcpy((char *)x->data + k * (int64_t)esz, orig, esz);
            if (s != TG_OK)
                return refuse(r, s,
                              "gradcheck: replaying f with input %d element %lld moved "
                              "failed: %s",
                              i, (long long)k, tape_reason(tp, s));

            double numeric = (fp - fm) / (hi - lo); /* the step actually taken */
            double analytic = x->grad ? tg__get(x->grad, k) : 0.0;
            double err = fabs(analytic - numeric);
            double scale = fmax(fabs(analytic), fabs(numeric));
            double rel = scale > 0 ? err / scale : 0.0;
            double excess = err - (o->atol + o->rtol * fabs(numeric));
            if (!(excess <= 0)) passed = false; /* NaN fails too */
            if (err > r->max_abs_err || isnan(err)) r->max_abs_err = err;
            if (rel > r->max_rel_err || isnan(rel)) r->max_rel_err = rel;
            if (excess > worst_excess || (isnan(excess) && !isnan(worst_excess))) {
                worst_excess = excess;
                r->worst_input = i;
                r->worst_index = k;
                r->analytic = analytic;
                r->numeric = numeric;
            }
            r->n_checked++;
        }
    }
    if (!passed)
        return refuse(r, TG_OK,
                      "gradcheck: input %d element %lld: analytic %.9g, numeric %.9g: |difference| "
                      "%.3g exceeds atol %.3g + rtol %.3g * |numeric| (eps %.3g)",
                      r->worst_input, (long long)r->worst_index, r->analytic, r->numeric,
                      fabs(r->analytic - r->numeric), o->atol, o->rtol, o->eps);
    r->passed = true;
    r->msg[0] = '\0';
    return TG_OK;
}

/* The options in force: the caller's, with a zero field (not flagged in
 * 'set') taking the default of the precision checked. F32 arithmetic is about
 * 1e-7 relative, so the F64 step of 1e-6 would drown the difference in
 * rounding: the step is cbrt(FLT_EPSILON), which balances the O(eps^2)
 * truncation error against the O(FLT_EPSILON / eps) rounding error, and the
 * tolerances widen to match. */
static tg_status resolve_opts(const tg_gradcheck_opts *in, bool f32, tg_gradcheck_opts *o,
                              tg_gradcheck_report *r)
{
    *o = f32 ? (tg_gradcheck_opts){TG_GRADCHECK_F32_EPS, TG_GRADCHECK_F32_ATOL,
                                   TG_GRADCHECK_F32_RTOL, 0}
             : (tg_gradcheck_opts){TG_GRADCHECK_F64_EPS, TG_GRADCHECK_F64_ATOL,
                                   TG_GRADCHECK_F64_RTOL, 0};
    if (!in) return TG_OK;
    if (!(in->eps >= 0) || !(in->atol >= 0) || !(in->rtol >= 0) || !isfinite(in->eps) ||
        !isfinite(in->atol) || !isfinite(in->rtol))
        return refuse(r, TG_ERR_ARG,
                      "gradcheck: eps %g, atol %g, rtol %g: each must be finite and >= 0", in->eps,
                      in->atol, in->rtol);
    if (in->set & ~(unsigned)(TG_GRADCHECK_SET_ATOL | TG_GRADCHECK_SET_RTOL))
        return refuse(r, TG_ERR_ARG, "gradcheck: unknown bits 0x%x in 'set'", in->set);
    if (in->eps > 0) o->eps = in->eps;
    if (in->atol > 0 || (in->set & TG_GRADCHECK_SET_ATOL)) o->atol = in->atol;
    if (in->rtol > 0 || (in->set & TG_GRADCHECK_SET_RTOL)) o->rtol = in->rtol;
    return TG_OK;
}

tg_status tg_gradcheck(tg_fn f, tg_tensor *const *inputs, int n_inputs, void *ctx,
                       const tg_gradcheck_opts *opts, tg_gradcheck_report *report)
{
    if (report)
        *report = (tg_gradcheck_report){.passed = false, .worst_input = -1, .worst_index = -1};
    if (!f || !inputs || n_inputs < 1 || !report)
        return refuse(report, TG_ERR_ARG, "gradcheck: NULL f, inputs or report, or no inputs");
    bool any = false, f32 = false;
    for (int i = 0; i < n_inputs; i++) {
        if (!inputs[i] || inputs[i]->tape_owned || inputs[i]->is_grad)
            return refuse(report, TG_ERR_ARG,
                          "gradcheck: input %d is %s; inputs must be the caller's leaves", i,
                          !inputs[i]           ? "NULL"
                          : inputs[i]->is_grad ? "a gradient"
                                               : "tape-owned");
        any |= inputs[i]->requires_grad;
        f32 |= inputs[i]->requires_grad && inputs[i]->dtype == TG_F32;
    }
    /* A check of nothing would pass vacuously. */
    if (!any) return refuse(report, TG_ERR_ARG, "gradcheck: no input requires grad");
    tg_gradcheck_opts o;
    tg_status s = resolve_opts(opts, f32, &o, report);
    if (s != TG_OK) return s;

    /* Set the inputs' gradients aside so the tape's gradient starts from zero;
     * they are put back untouched at the end. */
    tg_tensor *saved[64];
    tg_tensor **kept = n_inputs <= 64 ? saved : tg__malloc((size_t)n_inputs * sizeof *kept);
    if (!kept) return refuse(report, TG_ERR_NOMEM, "gradcheck: out of memory");
    for (int i = 0; i < n_inputs; i++) {
        kept[i] = inputs[i]->grad;
        if (!seen_before(inputs, i)) inputs[i]->grad = NULL;
    }

    tg_tape *tp = tg_tape_new();
    if (!tp) {
        s = refuse(report, TG_ERR_NOMEM, "gradcheck: out of memory for the tape");
    } else {
        tg_tensor *y = f(tp, inputs, ctx);
        char shape[TG__SHAPE_STR_MAX];
        if ((s = tg_tape_status(tp)) != TG_OK)
            refuse(report, s, "gradcheck: f failed to record: %s", tg_tape_error(tp));
        else if (!y)
            s = refuse(report, TG_ERR_ARG, "gradcheck: f returned NULL on a healthy tape");
        else if (y->numel != 1)
            s = refuse(report, TG_ERR_SHAPE,
                       "gradcheck: f returned a %s tensor; it must have one element",
                       tg__shape_str(y, shape, sizeof shape));
        else if ((s = tg_backward(tp, y)) != TG_OK)
            refuse(report, s, "gradcheck: backward of f failed: %s", tape_reason(tp, s));
        else
            s = compare(tp, y, inputs, n_inputs, &o, report);
        tg_tape_free(tp);
    }
    for (int i = 0; i < n_inputs; i++) {
        if (seen_before(inputs, i)) continue;
        if (inputs[i]->grad) {
            free(inputs[i]->grad->data);
            free(inputs[i]->grad);
        }
        inputs[i]->grad = kept[i];
    }
    if (kept != saved) free(kept);
    return s;
}

/* ====== tg_gradgradcheck: tg_gradcheck of a contraction of the gradient ====== */

typedef struct gg_ctx {
    tg_fn f;
    void *ctx;
    int n;
    tg_tensor **r;    /* per input that requires grad: the fixed direction */
    tg_tensor **wrt;  /* scratch: the inputs that require grad */
    tg_tensor **grad; /* scratch: their gradients */
} gg_ctx;

/* h(x) = Σ_i <d f/d x_i, r_i> + Σ_i 0 · Σ x_i. The zero terms keep h
 * depending on every input even where f is linear in it (its gradient is
 * then a constant): the check then compares 0 with 0 instead of refusing. */
static tg_tensor *gg_fn(tg_tape *tp, tg_tensor *const *inputs, void *ctx)
{
    gg_ctx *c = ctx;
    tg_tensor *y = c->f(tp, inputs, c->ctx);
    if (!y) return NULL;
    int k = 0;
    for (int i = 0; i < c->n; i++)
        if (inputs[i]->requires_grad && !seen_before(inputs, i)) c->wrt[k++] = inputs[i];
    tg_status s = tg_grad(tp, y, NULL, c->wrt, k, c->grad, true);
    if (s) {
        if (!tg_tape_status(tp)) { /* a refused call: make it the recording's failure */
            char why[sizeof tp->msg];
            snprintf(why, sizeof why, "%s", tg_tape_error(tp));
            tg__fail(tp, s, "%s", why);
        }
        return NULL;
    }
    tg_tensor *h = NULL;
    for (int i = 0; i < k; i++) {
        tg_tensor *term = tg_add(tp, tg_sum(tp, tg_mul(tp, c->grad[i], c->r[i])),
                                 tg_sum(tp, tg_scale(tp, c->wrt[i], 0.0)));
        h = h ? tg_add(tp, h, term) : term;
    }
    return h;
}

/* The recorded first derivative (create_graph) against the fused one: the
 * check of h only compares h's derivatives with h itself, so a vjp_graph
 * that disagreed with its op's vjp would pass it. Fills the report on a
 * disagreement; returns TG_OK when the comparison could run. */
static tg_status recorded_matches_fused(gg_ctx *c, tg_tensor *const *inputs,
                                        const tg_gradcheck_opts *opts, tg_gradcheck_report *r)
{
    bool f32 = false;
    for (int i = 0; i < c->n; i++) f32 |= inputs[i]->requires_grad && inputs[i]->dtype == TG_F32;
    tg_gradcheck_opts o;
    tg_status s = resolve_opts(opts, f32, &o, r);
    if (s) return s;
    tg_tape *tp = tg_tape_new();
    if (!tp) return refuse(r, TG_ERR_NOMEM, "gradgradcheck: out of memory for the tape");
    tg_tensor *y = c->f(tp, inputs, c->ctx), **fused = NULL;
    int k = 0;
    for (int i = 0; i < c->n; i++)
        if (inputs[i]->requires_grad && !seen_before(inputs, i)) c->wrt[k++] = inputs[i];
    if (!y) {
        s = tg_tape_status(tp) ? tg_tape_status(tp) : TG_ERR_ARG;
        refuse(r, s, "gradgradcheck: f failed to record: %s", tape_reason(tp, s));
    } else if (!(fused = tg__calloc((size_t)k, sizeof *fused))) {
        s = refuse(r, TG_ERR_NOMEM, "gradgradcheck: out of memory");
    } else if ((s = tg_grad(tp, y, NULL, c->wrt, k, fused, false)) ||
               (s = tg_grad(tp, y, NULL, c->wrt, k, c->grad, true))) {
        refuse(r, s, "gradgradcheck: f failed to record: %s", tape_reason(tp, s));
    }
    bool agree = true;
    for (int i = 0; !s && agree && i < k; i++) {
        for (int64_t e = 0; agree && e < fused[i]->numel; e++) {
            double ga = tg__get(c->grad[i], e), gb = tg__get(fused[i], e);
            if (fabs(ga - gb) <= o.atol + o.rtol * fabs(gb)) continue;
            agree = false;
            r->analytic = ga, r->numeric = gb;
            refuse(r, TG_OK,
                   "gradgradcheck: the recorded gradient (create_graph) of wrt %d element %lld is "
                   "%.9g, the first-order one %.9g",
                   i, (long long)e, ga, gb);
        }
    }
    free(fused);
    tg_tape_free(tp);
    return s;
}

tg_status tg_gradgradcheck(tg_fn f, tg_tensor *const *inputs, int n_inputs, void *ctx,
                           const tg_gradcheck_opts *opts, tg_gradcheck_report *report)
{
    if (report)
        *report = (tg_gradcheck_report){.passed = false, .worst_input = -1, .worst_index = -1};
    if (!f || !inputs || n_inputs < 1 || !report)
        return refuse(report, TG_ERR_ARG, "gradgradcheck: NULL f, inputs or report, or no inputs");
    for (int i = 0; i < n_inputs; i++)
        if (!inputs[i])
            return refuse(report, TG_ERR_ARG, "gradgradcheck: input %d is NULL", i);
    gg_ctx c = {.f = f, .ctx = ctx, .n = n_inputs};
    c.r = tg__calloc((size_t)n_inputs, sizeof *c.r);
    c.wrt = tg__calloc((size_t)n_inputs, sizeof *c.wrt);
    c.grad = tg__calloc((size_t)n_inputs, sizeof *c.grad);
    tg_status s = TG_OK;
    if (!c.r || !c.wrt || !c.grad) {
        s = refuse(report, TG_ERR_NOMEM, "gradgradcheck: out of memory");
        goto done;
    }
    /* The directions: uniform in [-1, 1] from a fixed seed, one per distinct
     * input that requires grad, in input order. */
    tg_rng rng;
    tg_rng_seed(&rng, 0x67726164ull);
    for (int i = 0, k = 0; i < n_inputs; i++) {
        const tg_tensor *x = inputs[i];
        if (!x->requires_grad || seen_before(inputs, i)) continue;
        if (!(c.r[k] = tg__tensor_alloc(x->dtype, x->rank, x->shape))) {
            s = refuse(report, TG_ERR_NOMEM, "gradgradcheck: out of memory");
            goto done;
        }
        for (int64_t e = 0; e < x->numel; e++)
            tg__put(c.r[k], e, 2 * tg_rng_uniform(&rng) - 1);
        k++;
    }
    s = tg_gradcheck(gg_fn, inputs, n_inputs, &c, opts, report);
    if (s == TG_OK && report->passed) {
        tg_gradcheck_report second = *report;
        if ((s = recorded_matches_fused(&c, inputs, opts, report)) == TG_OK && report->msg[0] == '\0')
            *report = second;
    }
    if (!strncmp(report->msg, "gradcheck:", 10)) { /* say which check it was */
        char msg[sizeof report->msg];
        snprintf(msg, sizeof msg, "gradgradcheck:%s", report->msg + 10);
        memcpy(report->msg, msg, sizeof msg);
    }
done:
    for (int i = 0; c.r && i < n_inputs; i++)
        tg_tensor_free(c.r[i]);
    free(c.r), free(c.wrt), free(c.grad);
    return s;
}
