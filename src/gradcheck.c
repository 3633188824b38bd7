/*
 * tg_gradcheck: the tape's gradient against central differences, element by
 * element. The function is recorded once; every perturbed evaluation is a
 * replay of that recording, so the check costs 2 forward passes per element
 * and allocates nothing per element.
 */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static bool seen_before(tg_tensor *const *inputs, int i)
{
    for (int j = 0; j < i; j++)
        if (inputs[j] == inputs[i]) return true;
    return false;
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
    double worst_excess = -INFINITY;
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
            if (s != TG_OK) return s;

            double numeric = (fp - fm) / (hi - lo); /* the step actually taken */
            double analytic = x->grad ? tg__get(x->grad, k) : 0.0;
            double err = fabs(analytic - numeric);
            double scale = fmax(fabs(analytic), fabs(numeric));
            double rel = scale > 0 ? err / scale : 0.0;
            double excess = err - (o->atol + o->rtol * fabs(numeric));
            if (!(excess <= 0)) r->passed = false; /* NaN fails too */
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
    return TG_OK;
}

tg_status tg_gradcheck(tg_fn f, tg_tensor *const *inputs, int n_inputs, void *ctx,
                       const tg_gradcheck_opts *opts, tg_gradcheck_report *report)
{
    if (!f || !inputs || n_inputs < 1 || !report) return TG_ERR_ARG;
    bool any = false;
    for (int i = 0; i < n_inputs; i++) {
        if (!inputs[i] || inputs[i]->tape_owned || inputs[i]->is_grad) return TG_ERR_ARG;
        any |= inputs[i]->requires_grad;
    }
    if (!any) return TG_ERR_ARG; /* a check of nothing would pass vacuously */
    tg_gradcheck_opts o = {1e-6, 1e-5, 1e-3};
    if (opts) {
        if (opts->eps < 0 || opts->atol < 0 || opts->rtol < 0) return TG_ERR_ARG;
        if (opts->eps > 0) o.eps = opts->eps;
        if (opts->atol > 0) o.atol = opts->atol;
        if (opts->rtol > 0) o.rtol = opts->rtol;
    }
    *report = (tg_gradcheck_report){.passed = true, .worst_input = -1, .worst_index = -1};

    /* Set the inputs' gradients aside so the tape's gradient starts from zero;
     * they are put back untouched at the end. */
    tg_tensor *saved[64];
    tg_tensor **kept = n_inputs <= 64 ? saved : tg__malloc((size_t)n_inputs * sizeof *kept);
    if (!kept) return TG_ERR_NOMEM;
    for (int i = 0; i < n_inputs; i++) {
        kept[i] = inputs[i]->grad;
        if (!seen_before(inputs, i)) inputs[i]->grad = NULL;
    }

    tg_status s = TG_ERR_NOMEM;
    tg_tape *tp = tg_tape_new();
    if (tp) {
        tg_tensor *y = f(tp, inputs, ctx);
        s = tg_tape_status(tp);
        if (s == TG_OK && !y) s = TG_ERR_ARG;
        if (s == TG_OK && y->numel != 1) s = TG_ERR_SHAPE;
        if (s == TG_OK) s = tg_backward(tp, y);
        if (s == TG_OK) s = compare(tp, y, inputs, n_inputs, &o, report);
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
