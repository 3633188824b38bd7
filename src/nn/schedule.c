/*
 * Learning-rate schedules with the rules of torch.optim.lr_scheduler (1.13):
 * constant, step decay, exponential, cosine annealing (each after an optional
 * linear warm-up, PyTorch's SequentialLR of LinearLR and the rule), one-cycle
 * and reduce-on-plateau.
 *
 * PyTorch computes most of these recursively, multiplying the previous rate;
 * the closed forms below are the same functions of the step (its own
 * _get_closed_form_lr), equal to its numbers to rounding, and need no history:
 * a resumed run only needs its step count.
 */
#include "internal.h"

#include <math.h>

#define PI 3.14159265358979323846

static tg_status bad(const char *what, double v, const char *want)
{
    return tg__fail_call(TG_ERR_ARG, "sched_init: %s %g, must be %s", what, v, want);
}

/* A field left 0 takes its default unless its 'set' bit asks for 0. */
static double dflt(double v, unsigned set, unsigned bit, double d)
{
    return v != 0 || (set & bit) ? v : d;
}

/* Fills the defaults of o and checks every field the kind reads. */
static tg_status check(tg_sched_opts *o)
{
    const unsigned known =
        TG_SCHED_SET_PATIENCE | TG_SCHED_SET_THRESHOLD | TG_SCHED_SET_EPS | TG_SCHED_SET_PCT_START;
    if ((unsigned)o->kind > TG_SCHED_PLATEAU)
        return tg__fail_call(TG_ERR_ARG, "sched_init: unknown kind %d", (int)o->kind);
    if (o->set & ~known)
        return tg__fail_call(TG_ERR_ARG, "sched_init: unknown bits 0x%x in 'set'", o->set);
    o->warmup_start = dflt(o->warmup_start, 0, 0, 1.0 / 3);
    o->gamma = dflt(o->gamma, 0, 0, 0.1);
    o->pct_start = dflt(o->pct_start, o->set, TG_SCHED_SET_PCT_START, 0.3);
    o->div_factor = dflt(o->div_factor, 0, 0, 25);
    o->final_div_factor = dflt(o->final_div_factor, 0, 0, 1e4);
    o->factor = dflt(o->factor, 0, 0, 0.1);
    o->patience = (int64_t)dflt((double)o->patience, o->set, TG_SCHED_SET_PATIENCE, 10);
    o->threshold = dflt(o->threshold, o->set, TG_SCHED_SET_THRESHOLD, 1e-4);
    o->eps = dflt(o->eps, o->set, TG_SCHED_SET_EPS, 1e-8);

    bool warm = o->kind <= TG_SCHED_COSINE;
    if (warm && o->warmup_steps < 0) return bad("warmup_steps", (double)o->warmup_steps, ">= 0");
    if (warm && o->warmup_steps > 0 && !(o->warmup_start > 0 && o->warmup_start <= 1))
        return bad("warmup_start", o->warmup_start, "in (0, 1]");
    if (!(o->min_lr >= 0 && isfinite(o->min_lr))) return bad("min_lr", o->min_lr, ">= 0");
    switch (o->kind) {
    case TG_SCHED_CONSTANT:
        break;
    case TG_SCHED_STEP:
    case TG_SCHED_EXPONENTIAL:
        if (o->kind == TG_SCHED_STEP && o->step_size < 1)
            return bad("step_size", (double)o->step_size, ">= 1");
        if (!(o->gamma > 0 && isfinite(o->gamma))) return bad("gamma", o->gamma, "> 0");
        break;
    case TG_SCHED_COSINE:
        if (o->total_steps - o->warmup_steps < 1)
            return tg__fail_call(TG_ERR_ARG,
                                 "sched_init: total_steps %lld leaves no cosine step after %lld "
                                 "warm-up steps",
                                 (long long)o->total_steps, (long long)o->warmup_steps);
        break;
    case TG_SCHED_ONE_CYCLE:
        if (o->total_steps < 1) return bad("total_steps", (double)o->total_steps, ">= 1");
        if (!(o->pct_start >= 0 && o->pct_start <= 1))
            return bad("pct_start", o->pct_start, "in [0, 1]");
        if (!(o->div_factor > 0 && isfinite(o->div_factor)))
            return bad("div_factor", o->div_factor, "> 0");
        if (!(o->final_div_factor > 0 && isfinite(o->final_div_factor)))
            return bad("final_div_factor", o->final_div_factor, "> 0");
        if (o->pct_start * (double)o->total_steps == 1)
            return tg__fail_call(TG_ERR_ARG,
                                 "sched_init: pct_start %g of %lld steps makes a warm-up phase of "
                                 "one step, whose rate PyTorch computes as 0/0",
                                 o->pct_start, (long long)o->total_steps);
        break;
    case TG_SCHED_PLATEAU:
        if (!(o->factor > 0 && o->factor < 1)) return bad("factor", o->factor, "in (0, 1)");
        if (o->patience < 0) return bad("patience", (double)o->patience, ">= 0");
        if (!(o->threshold >= 0 && isfinite(o->threshold)))
            return bad("threshold", o->threshold, ">= 0");
        if (o->cooldown < 0) return bad("cooldown", (double)o->cooldown, ">= 0");
        if (!(o->eps >= 0 && isfinite(o->eps))) return bad("eps", o->eps, ">= 0");
        break;
    }
    return TG_OK;
}

/* OneCycleLR's two phases: from base / div up to base by step pct_start total
 * - 1, then down to base / div / final_div by step total - 1. Step total, the
 * rate after the last planned step, keeps the final rate: PyTorch extrapolates
 * the annealing there, which for the linear one is below zero, a rate no
 * optimizer takes, and no update uses it. */
static double one_cycle(const tg_sched_opts *o, double base, int64_t t)
{
    if (t == o->total_steps) t--;
    double initial = base / o->div_factor, min = initial / o->final_div_factor;
    double end1 = o->pct_start * (double)o->total_steps - 1, end2 = (double)o->total_steps - 1;
    double from = initial, to = base, pct = (double)t / end1;
    if ((double)t > end1) {
        from = base;
        to = min;
        pct = ((double)t - end1) / (end2 - end1);
    }
    if (o->anneal_linear) return (to - from) * pct + from;
    return to + (from - to) / 2.0 * (cos(PI * pct) + 1);
}

/* The rule itself at its own step u (after the warm-up). */
static double rule(const tg_sched_opts *o, double base, int64_t u)
{
    switch (o->kind) {
    case TG_SCHED_STEP:
        return base * pow(o->gamma, (double)(u / o->step_size));
    case TG_SCHED_EXPONENTIAL:
        return base * pow(o->gamma, (double)u);
    case TG_SCHED_COSINE: {
        double span = (double)(o->total_steps - o->warmup_steps);
        return o->min_lr + (base - o->min_lr) * (1 + cos(PI * (double)u / span)) / 2;
    }
    case TG_SCHED_ONE_CYCLE:
        return one_cycle(o, base, u);
    default:
        return base;
    }
}

/* True, with the reason in tg_last_error, when step t has no rate. */
static bool refuse_step(const tg_sched *s, int64_t t, const char *fn)
{
    if (!s)
        tg__fail_call(TG_ERR_ARG, "%s: NULL schedule", fn);
    else if (s->o.kind == TG_SCHED_PLATEAU)
        tg__fail_call(TG_ERR_ARG, "%s: a plateau schedule's rate is no function of the step", fn);
    else if (t < 0)
        tg__fail_call(TG_ERR_ARG, "%s: step %lld", fn, (long long)t);
    else if (s->o.kind == TG_SCHED_ONE_CYCLE && t > s->o.total_steps)
        tg__fail_call(TG_ERR_ARG, "%s: step %lld past the one-cycle's %lld steps", fn, (long long)t,
                      (long long)s->o.total_steps);
    else
        return false;
    return true;
}

double tg_sched_lr(const tg_sched *s, double base, int64_t t)
{
    if (refuse_step(s, t, "sched_lr")) return (double)NAN;
    const tg_sched_opts *o = &s->o;
    if (o->kind != TG_SCHED_ONE_CYCLE && t < o->warmup_steps) {
        double sf = o->warmup_start;
        return base * (sf + (1 - sf) * (double)t / (double)o->warmup_steps);
    }
    return rule(o, base, o->kind == TG_SCHED_ONE_CYCLE ? t : t - o->warmup_steps);
}

tg_status tg_sched_apply(tg_sched *s, tg_optim *opt, int64_t t)
{
    if (!opt) return tg__fail_call(TG_ERR_ARG, "sched_apply: NULL optimizer");
    if (refuse_step(s, t, "sched_apply")) return TG_ERR_ARG;
    for (int g = 0, n = tg_optim_group_count(opt); g < n; g++) {
        double lr = tg_sched_lr(s, tg_optim_group_base_lr(opt, g), t);
        /* A rate the optimizer refuses (negative: a min_lr above the base) fails here. */
        if (tg_optim_set_group_lr(opt, g, lr) != TG_OK) return tg_last_error()->status;
    }
    s->step = t;
    return TG_OK;
}

tg_status tg_sched_init(tg_sched *s, const tg_sched_opts *opts, tg_optim *opt)
{
    if (!s || !opts)
        return tg__fail_call(TG_ERR_ARG, "sched_init: NULL %s", s ? "options" : "schedule");
    tg_sched_opts o = *opts;
    tg_status st = check(&o);
    if (st != TG_OK) return st;
    *s = (tg_sched){.o = o, .best = o.maximize ? -(double)INFINITY : (double)INFINITY};
    if (opt && o.kind != TG_SCHED_PLATEAU) return tg_sched_apply(s, opt, 0);
    return TG_OK;
}

/* ReduceLROnPlateau.is_better. */
static bool better(const tg_sched_opts *o, double a, double best)
{
    if (o->threshold_abs) return o->maximize ? a > best + o->threshold : a < best - o->threshold;
    return o->maximize ? a > best * (1 + o->threshold) : a < best * (1 - o->threshold);
}

tg_status tg_sched_step(tg_sched *s, tg_optim *opt, double metric)
{
    if (!s || !opt)
        return tg__fail_call(TG_ERR_ARG, "sched_step: NULL %s", s ? "optimizer" : "schedule");
    if (s->o.kind != TG_SCHED_PLATEAU) return tg_sched_apply(s, opt, s->step + 1);
    /* ReduceLROnPlateau.step: a NaN metric is never better, so it counts as bad. */
    const tg_sched_opts *o = &s->o;
    s->step++;
    if (better(o, metric, s->best)) {
        s->best = metric;
        s->bad_steps = 0;
    } else {
        s->bad_steps++;
    }
    if (s->cooldown_left > 0) {
        s->cooldown_left--;
        s->bad_steps = 0; /* bad steps in the cooldown do not count */
    }
    if (s->bad_steps > o->patience) {
        for (int g = 0, n = tg_optim_group_count(opt); g < n; g++) {
            double old = tg_optim_group_lr(opt, g), lr = fmax(old * o->factor, o->min_lr);
            if (old - lr > o->eps) tg_optim_set_group_lr(opt, g, lr);
        }
        s->cooldown_left = o->cooldown;
        s->bad_steps = 0;
    }
    return TG_OK;
}
