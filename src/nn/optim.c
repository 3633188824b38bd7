/*
 * Optimizers: SGD (momentum, dampening, Nesterov, weight decay), Adam and
 * AdamW, with PyTorch 1.13's update rules and order of operations, over
 * parameter groups with their own learning rate and weight decay; and
 * gradient clipping, which acts on the same gradients just before a step.
 *
 * Every buffer an optimizer keeps (momentum, first and second moments) and its
 * step count live in a tg_params registry of its own, so a checkpoint saves
 * and restores them like any parameter:
 *
 *     optim.step                          rank 0, F64: steps taken so far
 *     optim.sgd.momentum.<param name>     SGD with momentum > 0
 *     optim.adam.m.<param name>           Adam (AdamW: optim.adamw.m...)
 *     optim.adam.v.<param name>
 *     optim.group.<group name>.lr         rank 0, F64: a group's rate (groups only)
 *
 * The buffers are named by parameter, not by group, so moving a parameter to
 * another group keeps its moments. The buffers are created with the
 * optimizer, so a step allocates nothing.
 */
#include "internal.h"

#include <fnmatch.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct optim_slot {
    tg_tensor *p;           /* the parameter, owned by the caller's registry */
    tg_tensor *buf1, *buf2; /* momentum, or m and v; NULL where the kind keeps none */
    int group;
} optim_slot;

typedef struct optim_group {
    char *name; /* owned copy */
    double *lr; /* the current rate: in 'own_lr', or in the state tensor */
    double own_lr, base_lr, weight_decay;
} optim_group;

struct tg_optim {
    tg_optim_opts o;     /* defaults filled in; lr and weight_decay are the default group's */
    const tg_params *ps; /* the caller's registry, to notice parameters added later */
    tg_params *state;
    tg_tensor *step; /* "optim.step" in 'state' */
    int n_groups;
    optim_group *groups;
    size_t n_slots;
    optim_slot slots[];
};

static const char *const kind_name[] = {
    [TG_OPTIM_SGD] = "sgd", [TG_OPTIM_ADAM] = "adam", [TG_OPTIM_ADAMW] = "adamw"};
_Static_assert(sizeof kind_name / sizeof *kind_name == TG_OPTIM_ADAMW + 1, "one name per kind");

/* Every rate PyTorch takes: 0 included, for schedules that warm up from 0. */
static bool valid_lr(double lr) { return lr >= 0 && isfinite(lr); } /* false for NaN */
static bool valid_beta(double b) { return b >= 0 && b < 1; }        /* false for NaN */
static bool valid_decay(double wd) { return wd >= 0 && isfinite(wd); }

/* The value of an Adam field: as written when nonzero or flagged in 'set', else its default. */
static double field(double v, unsigned set, unsigned bit, double dflt)
{
    return v != 0 || (set & bit) ? v : dflt;
}

/* Copies 'in' with the Adam defaults filled in; TG_ERR_ARG, with the reason
 * in tg_last_error, for options PyTorch would refuse. */
static tg_status check_opts(const tg_optim_opts *in, tg_optim_opts *o)
{
    *o = *in;
    if ((unsigned)o->kind > TG_OPTIM_ADAMW)
        return tg__fail_call(TG_ERR_ARG, "optim_new: unknown kind %d", (int)o->kind);
    if (!valid_lr(o->lr))
        return tg__fail_call(TG_ERR_ARG, "optim_new: learning rate %g, must be finite and >= 0",
                             o->lr);
    if (!valid_decay(o->weight_decay))
        return tg__fail_call(TG_ERR_ARG, "optim_new: weight decay %g, must be finite and >= 0",
                             o->weight_decay);
    if (o->set & ~(unsigned)(TG_OPTIM_SET_BETA1 | TG_OPTIM_SET_BETA2 | TG_OPTIM_SET_EPS))
        return tg__fail_call(TG_ERR_ARG, "optim_new: unknown bits 0x%x in 'set'", o->set);
    if (o->kind == TG_OPTIM_SGD) {
        if (!(o->momentum >= 0) || !isfinite(o->momentum))
            return tg__fail_call(TG_ERR_ARG, "optim_new: momentum %g, must be finite and >= 0",
                                 o->momentum);
        if (!isfinite(o->dampening))
            return tg__fail_call(TG_ERR_ARG, "optim_new: dampening %g is not finite", o->dampening);
        if (o->nesterov && !(o->momentum > 0 && o->dampening == 0))
            return tg__fail_call(TG_ERR_ARG,
                                 "optim_new: Nesterov needs momentum > 0 and zero "
                                 "dampening (momentum %g, dampening %g)",
                                 o->momentum, o->dampening);
        return TG_OK;
    }
    o->beta1 = field(o->beta1, o->set, TG_OPTIM_SET_BETA1, 0.9);
    o->beta2 = field(o->beta2, o->set, TG_OPTIM_SET_BETA2, 0.999);
    o->eps = field(o->eps, o->set, TG_OPTIM_SET_EPS, 1e-8);
    if (!valid_beta(o->beta1) || !valid_beta(o->beta2))
        return tg__fail_call(TG_ERR_ARG, "optim_new: betas %g and %g, each must be in [0, 1)",
                             o->beta1, o->beta2);
    if (!(o->eps >= 0) || !isfinite(o->eps))
        return tg__fail_call(TG_ERR_ARG, "optim_new: eps %g, must be finite and >= 0", o->eps);
    return TG_OK;
}

/* A zeroed state buffer shaped like 'p', named "optim.<kind>.<what>.<param name>". */
static tg_tensor *state_buffer(tg_optim *opt, const char *what, const char *pname,
                               const tg_tensor *p)
{
    const char *kind = kind_name[opt->o.kind];
    size_t len = strlen("optim...") + strlen(kind) + strlen(what) + strlen(pname) + 1;
    char *name = tg__malloc(len);
    if (!name) return NULL;
    snprintf(name, len, "optim.%s.%s.%s", kind, what, pname);
    tg_tensor *t = tg_params_add(opt->state, name, p->dtype, p->rank, p->shape);
    free(name);
    if (t) t->requires_grad = false; /* state, never a leaf of a graph */
    return t;
}

/* ====== Parameter groups ====== */

static bool in_list(const char *const *list, const char *name)
{
    for (; list && *list; list++)
        if (!strcmp(*list, name)) return true;
    return false;
}

/* Checks the groups: names, 'set' bits, rates, and every listed parameter
 * present in the registry and listed by one group only. */
static tg_status check_groups(const tg_params *ps, const tg_param_group *gs, int n)
{
    const unsigned known = TG_GROUP_SET_LR | TG_GROUP_SET_WEIGHT_DECAY;
    if (n < 0) return tg__fail_call(TG_ERR_ARG, "optim_new: %d parameter groups", n);
    if (n > 0 && !gs) return tg__fail_call(TG_ERR_ARG, "optim_new: NULL parameter groups");
    for (int g = 0; g < n; g++) {
        const tg_param_group *pg = &gs[g];
        if (!pg->name || !*pg->name)
            return tg__fail_call(TG_ERR_ARG, "optim_new: group %d has no name", g);
        if (!strcmp(pg->name, "default"))
            return tg__fail_call(TG_ERR_ARG,
                                 "optim_new: group %d is called 'default', the name of the group "
                                 "of the parameters no group takes",
                                 g);
        for (int h = 0; h < g; h++)
            if (!strcmp(gs[h].name, pg->name))
                return tg__fail_call(TG_ERR_ARG, "optim_new: groups %d and %d are both '%.200s'", h,
                                     g, pg->name);
        if (pg->set & ~known)
            return tg__fail_call(TG_ERR_ARG,
                                 "optim_new: group '%.200s': unknown bits 0x%x in 'set'", pg->name,
                                 pg->set);
        if (pg->set & TG_GROUP_SET_LR && !valid_lr(pg->lr))
            return tg__fail_call(TG_ERR_ARG,
                                 "optim_new: group '%.200s': learning rate %g, must be finite "
                                 "and >= 0",
                                 pg->name, pg->lr);
        if (pg->set & TG_GROUP_SET_WEIGHT_DECAY && !valid_decay(pg->weight_decay))
            return tg__fail_call(TG_ERR_ARG,
                                 "optim_new: group '%.200s': weight decay %g, must be finite and "
                                 ">= 0",
                                 pg->name, pg->weight_decay);
        for (const char *const *p = pg->params; p && *p; p++) {
            if (!tg_params_get(ps, *p))
                return tg__fail_call(TG_ERR_ARG,
                                     "optim_new: group '%.200s' lists '%.200s', which is not in "
                                     "the registry",
                                     pg->name, *p);
            for (int h = 0; h < g; h++)
                if (in_list(gs[h].params, *p))
                    return tg__fail_call(TG_ERR_ARG,
                                         "optim_new: '%.200s' is listed by groups '%.200s' and "
                                         "'%.200s'; a parameter belongs to one group",
                                         *p, gs[h].name, pg->name);
        }
    }
    return TG_OK;
}

/* The group of a parameter: the one that lists it, else the first pattern
 * that fits, else the default group n. */
static int group_for(const tg_param_group *gs, int n, const char *name)
{
    for (int g = 0; g < n; g++)
        if (in_list(gs[g].params, name)) return g;
    for (int g = 0; g < n; g++)
        for (const char *const *m = gs[g].match; m && *m; m++)
            if (fnmatch(*m, name, 0) == 0) return g;
    return n;
}

/* Fills the groups' names and options; with 'gs', each rate lives in a state
 * tensor "optim.group.<name>.lr" so that checkpoints keep it. */
static bool make_groups(tg_optim *opt, const tg_param_group *gs, int n)
{
    if (!(opt->groups = tg__calloc((size_t)n + 1, sizeof *opt->groups))) return false;
    opt->n_groups = n + 1;
    for (int g = 0; g <= n; g++) {
        optim_group *og = &opt->groups[g];
        const tg_param_group *pg = g < n ? &gs[g] : NULL;
        const char *name = pg ? pg->name : "default";
        if (!(og->name = tg__malloc(strlen(name) + 1))) return false;
        strcpy(og->name, name);
        og->base_lr = pg && pg->set & TG_GROUP_SET_LR ? pg->lr : opt->o.lr;
        og->weight_decay =
            pg && pg->set & TG_GROUP_SET_WEIGHT_DECAY ? pg->weight_decay : opt->o.weight_decay;
        og->own_lr = og->base_lr;
        og->lr = &og->own_lr;
        if (!gs) continue;
        size_t len = strlen("optim.group..lr") + strlen(name) + 1;
        char *sname = tg__malloc(len);
        if (!sname) return false;
        snprintf(sname, len, "optim.group.%s.lr", name);
        tg_tensor *t = tg_params_add(opt->state, sname, TG_F64, 0, NULL);
        free(sname);
        if (!t) return false;
        t->requires_grad = false;
        og->lr = t->data;
        *og->lr = og->base_lr;
    }
    return true;
}

tg_optim *tg_optim_new_groups(tg_params *ps, const tg_optim_opts *opts,
                              const tg_param_group *groups, int n_groups)
{
    tg_optim_opts o;
    if (!ps || !opts) {
        tg__fail_call(TG_ERR_ARG, "optim_new: NULL %s", !ps ? "registry" : "options");
        return NULL;
    }
    if (check_opts(opts, &o) != TG_OK || check_groups(ps, groups, n_groups) != TG_OK) return NULL;
    size_t n = tg_params_count(ps);
    tg_optim *opt = n <= (SIZE_MAX - sizeof(tg_optim)) / sizeof(optim_slot)
                        ? tg__calloc(1, sizeof *opt + n * sizeof(optim_slot))
                        : NULL;
    if (!opt) {
        tg__fail_call(TG_ERR_NOMEM, "optim_new: out of memory for %zu parameters", n);
        return NULL;
    }
    opt->o = o;
    opt->ps = ps;
    opt->n_slots = n;
    if (!(opt->state = tg_params_new())) goto fail;
    if (!(opt->step = tg_params_add(opt->state, "optim.step", TG_F64, 0, NULL))) goto fail;
    opt->step->requires_grad = false;
    if (!make_groups(opt, n_groups > 0 ? groups : NULL, n_groups)) goto fail;
    bool adam = o.kind != TG_OPTIM_SGD;
    for (size_t i = 0; i < n; i++) {
        const char *pname;
        optim_slot *s = &opt->slots[i];
        s->p = tg_params_at(ps, i, &pname);
        s->group = group_for(groups, n_groups, pname);
        if (adam) {
            s->buf1 = state_buffer(opt, "m", pname, s->p);
            s->buf2 = state_buffer(opt, "v", pname, s->p);
            if (!s->buf1 || !s->buf2) goto fail;
        } else if (o.momentum > 0) {
            if (!(s->buf1 = state_buffer(opt, "momentum", pname, s->p))) goto fail;
        }
    }
    return opt;
fail:
    tg__fail_call(TG_ERR_NOMEM, "optim_new: out of memory for the state of %zu parameters", n);
    tg_optim_free(opt);
    return NULL;
}

tg_optim *tg_optim_new(tg_params *ps, const tg_optim_opts *opts)
{
    return tg_optim_new_groups(ps, opts, NULL, 0);
}

void tg_optim_free(tg_optim *o)
{
    if (!o) return;
    for (int g = 0; o->groups && g < o->n_groups; g++)
        free(o->groups[g].name);
    free(o->groups);
    tg_params_free(o->state);
    free(o);
}

tg_status tg_optim_set_lr(tg_optim *o, double lr)
{
    if (!o) return tg__fail_call(TG_ERR_ARG, "optim_set_lr: NULL optimizer");
    if (!valid_lr(lr))
        return tg__fail_call(TG_ERR_ARG, "optim_set_lr: learning rate %g, must be finite and >= 0",
                             lr);
    for (int g = 0; g < o->n_groups; g++)
        *o->groups[g].lr = lr;
    return TG_OK;
}

tg_params *tg_optim_state(tg_optim *o) { return o ? o->state : NULL; }

int tg_optim_group_count(const tg_optim *o) { return o ? o->n_groups : 0; }

static const optim_group *group_at(const tg_optim *o, int g, const char *fn)
{
    if (!o) {
        tg__fail_call(TG_ERR_ARG, "%s: NULL optimizer", fn);
        return NULL;
    }
    if (g < 0 || g >= o->n_groups) {
        tg__fail_call(TG_ERR_ARG, "%s: group %d, the optimizer has %d", fn, g, o->n_groups);
        return NULL;
    }
    return &o->groups[g];
}

const char *tg_optim_group_name(const tg_optim *o, int g)
{
    const optim_group *og = group_at(o, g, "optim_group_name");
    return og ? og->name : NULL;
}

int tg_optim_group_of(const tg_optim *o, const char *param_name)
{
    if (!o || !param_name) {
        tg__fail_call(TG_ERR_ARG, "optim_group_of: NULL %s", o ? "name" : "optimizer");
        return -1;
    }
    const tg_tensor *p = tg_params_get(o->ps, param_name);
    for (size_t i = 0; p && i < o->n_slots; i++)
        if (o->slots[i].p == p) return o->slots[i].group;
    tg__fail_call(TG_ERR_ARG, "optim_group_of: the optimizer has no parameter '%.200s'",
                  param_name);
    return -1;
}

double tg_optim_group_lr(const tg_optim *o, int g)
{
    const optim_group *og = group_at(o, g, "optim_group_lr");
    return og ? *og->lr : (double)NAN;
}

double tg_optim_group_base_lr(const tg_optim *o, int g)
{
    const optim_group *og = group_at(o, g, "optim_group_base_lr");
    return og ? og->base_lr : (double)NAN;
}

tg_status tg_optim_set_group_lr(tg_optim *o, int g, double lr)
{
    const optim_group *og = group_at(o, g, "optim_set_group_lr");
    if (!og) return tg_last_error()->status;
    if (!valid_lr(lr))
        return tg__fail_call(TG_ERR_ARG,
                             "optim_set_group_lr: learning rate %g, must be finite and >= 0", lr);
    *og->lr = lr;
    return TG_OK;
}

/* ====== SGD: p -= lr (nesterov ? g + mu buf : buf) ======
 *
 * g = grad + wd p and buf = mu buf + (1 - dampening) g. As in PyTorch the
 * first step sets buf = g, undamped, and the scalars are rounded to the
 * parameter's dtype before use, so F32 updates are float arithmetic. */

/* One loop per combination of flags, each a constant where the loop is
 * written, so the plain cases (no momentum) are branch-free and vectorise.
 * Each runs over elements [i0, i1): a large parameter is updated on every
 * thread (tg__parallel_for), each element by the same operations. */
#define SGD_LOOP(T, DECAY, MOMENTUM)                                   \
    for (int64_t i = i0; i < i1; i++) {                                \
        T g = (DECAY) ? grad[i] + wd * p[i] : grad[i];                 \
        if (MOMENTUM) {                                                \
            buf[i] = first ? g : buf[i] * mu + keep * g;               \
            g = nesterov ? g + mu * buf[i] : buf[i];                   \
        }                                                              \
        p[i] = p[i] - lr * g;                                          \
    }

#define SGD_UPDATE(T)                                                        \
    do {                                                                     \
        T *restrict p = s->p->data;                                          \
        T *restrict buf = s->buf1 ? s->buf1->data : NULL;                    \
        const T *restrict grad = s->p->grad->data;                           \
        const T lr = (T)o->lr, wd = (T)o->weight_decay, mu = (T)o->momentum; \
        const T keep = (T)(1.0 - o->dampening);                              \
        (void)mu, (void)keep;                                                \
        if (buf)                                                             \
            SGD_LOOP(T, decay, true)                                         \
        else if (decay)                                                      \
            SGD_LOOP(T, true, false)                                         \
        else                                                                 \
            SGD_LOOP(T, false, false)                                        \
    } while (0)

/* One update of a slot, with what it needs: the options (the group's rate
 * and decay in them), the step, and for Adam t. */
typedef struct update_job {
    const tg_optim_opts *o;
    optim_slot *s;
    bool first;
    double t;
} update_job;

static void sgd_part(void *ctx, int64_t i0, int64_t i1)
{
    const update_job *u = ctx;
    const tg_optim_opts *o = u->o;
    const optim_slot *s = u->s;
    const bool first = u->first;
    /* Flags in locals: a store through 'p' could alias '*o' and stop vectorisation. */
    const bool decay = o->weight_decay != 0, nesterov = o->nesterov;
    TG__FLOAT_SWITCH(s->p->dtype, SGD_UPDATE, );
}

/* ====== Adam and AdamW: p -= lr mhat / (sqrt(vhat) + eps) ======
 *
 * m = b1 m + (1 - b1) g and v = b2 v + (1 - b2) g^2 are the moments, and
 * mhat = m / bc1, vhat = v / bc2 with bias corrections bc1 = 1 - b1^t and
 * bc2 = 1 - b2^t at step t (counted from 1). The update is computed as
 * PyTorch does: denom = sqrt(v) / sqrt(bc2) + eps, p += (-lr/bc1) m / denom.
 * Adam adds wd p to the gradient; AdamW instead decays p by (1 - lr wd) before
 * the update (decoupled weight decay). */

/* As for SGD, one loop per kind of weight decay with the flags constant. */
#define ADAM_LOOP(T, SQRT, DECOUPLED, DECAY_GRAD)                                \
    for (int64_t i = i0; i < i1; i++) {                                          \
        T g = grad[i];                                                           \
        if (DECOUPLED)                                                           \
            p[i] = p[i] * decay;                                                 \
        else if (DECAY_GRAD)                                                     \
            g = g + wd * p[i];                                                   \
        m[i] = m[i] * b1 + one_b1 * g;                                           \
        v[i] = v[i] * b2 + one_b2 * g * g;                                       \
        p[i] = p[i] + step_size * m[i] / (SQRT(v[i]) / bc2_sqrt + eps);          \
    }

#define ADAM_UPDATE(T, SQRT)                                                             \
    do {                                                                                 \
        T *restrict p = s->p->data, *restrict m = s->buf1->data;                         \
        T *restrict v = s->buf2->data;                                                   \
        const T *restrict grad = s->p->grad->data;                                       \
        const T b1 = (T)o->beta1, b2 = (T)o->beta2, wd = (T)o->weight_decay;             \
        const T one_b1 = (T)(1.0 - o->beta1), one_b2 = (T)(1.0 - o->beta2);              \
        const T step_size = (T)(-o->lr / bc1), bc2_sqrt = (T)sqrt(bc2), eps = (T)o->eps; \
        const T decay = (T)(1.0 - o->lr * o->weight_decay);                              \
        if (decoupled)                                                                   \
            ADAM_LOOP(T, SQRT, true, false)                                              \
        else if (decay_grad)                                                             \
            ADAM_LOOP(T, SQRT, false, true)                                              \
        else                                                                             \
            ADAM_LOOP(T, SQRT, false, false)                                             \
    } while (0)

/* Adam's loop is bound by its divisions and square root: AVX2's eight lanes
 * instead of SSE2's four take about half the time (measured on W2: 0.2 ms of
 * a 0.9 ms step down to 0.1 ms). Both clones do the same IEEE operations in
 * the same order, so the results are bit-identical; the loader picks one.
 * ThreadSanitizer's runtime is not up yet when the loader runs the clone
 * resolver, so its builds keep the one default version. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__) && \
    !defined(__SANITIZE_THREAD__)
#define ADAM_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define ADAM_CLONES
#endif

ADAM_CLONES static void adam_part(void *ctx, int64_t i0, int64_t i1)
{
    const update_job *u = ctx;
    const tg_optim_opts *o = u->o;
    const optim_slot *s = u->s;
    const double t = u->t;
    const bool decoupled = o->kind == TG_OPTIM_ADAMW, decay_grad = o->weight_decay != 0;
    double bc1 = 1.0 - pow(o->beta1, t), bc2 = 1.0 - pow(o->beta2, t);
    if (s->p->dtype == TG_F64)
        ADAM_UPDATE(double, sqrt);
    else
        ADAM_UPDATE(float, sqrtf);
}

tg_status tg_optim_step(tg_optim *o)
{
    if (!o) return tg__fail_call(TG_ERR_ARG, "optim_step: NULL optimizer");
    /* A registry only grows (tg_params has no removal), so a count that moved
     * means parameters this optimizer has no state for and would never update. */
    size_t n = tg_params_count(o->ps);
    if (n != o->n_slots) {
        const char *name = NULL;
        tg_params_at(o->ps, o->n_slots, &name);
        return tg__fail_call(TG_ERR_STATE,
                             "optim_step: the registry has %zu parameters, the optimizer was "
                             "made for %zu ('%.300s' was added after tg_optim_new and would "
                             "never be updated); make a new optimizer",
                             n, o->n_slots, name ? name : "");
    }
    double *step = o->step->data;
    bool first = *step == 0;
    double t = *step + 1;
    /* The group's rate and decay over the shared options, as PyTorch's
     * param_groups override its defaults; copied once, not per parameter. */
    tg_optim_opts go = o->o;
    const bool sgd = o->o.kind == TG_OPTIM_SGD;
    for (size_t i = 0; i < o->n_slots; i++) {
        optim_slot *s = &o->slots[i];
        if (!s->p->grad) continue; /* no backward reached it: nothing to apply */
        go.lr = *o->groups[s->group].lr;
        go.weight_decay = o->groups[s->group].weight_decay;
        update_job u = {&go, s, first, t};
        tg__parallel_for(s->p->numel, TG__PAR_GRAIN, sgd ? sgd_part : adam_part, &u);
    }
    *step = t;
    return TG_OK;
}

/* ====== Gradient clipping ======
 *
 * clip_grad_norm_ in PyTorch 1.13: total = ||(||g_1||_p, ..., ||g_n||_p)||_p
 * over the parameters that have a gradient (the largest magnitude for
 * p = inf), then every g *= min(1, max_norm / (total + 1e-6)). The factor is
 * applied even when it is 1 or not finite, as PyTorch applies it. */

/* sum |g|^p over one gradient (p = 2 without pow), or max |g| for p = inf,
 * accumulated in double; NaN propagates. */
#define GRAD_NORM_ACC(T)                                                   \
    do {                                                                   \
        const T *v = g->data;                                              \
        for (int64_t k = 0; k < g->numel; k++) {                           \
            double a = fabs((double)v[k]);                                 \
            if (isinf(p))                                                  \
                acc = isnan(a) || isnan(acc) ? (double)NAN : fmax(acc, a); \
            else                                                           \
                acc += p == 2 ? a * a : pow(a, p);                         \
        }                                                                  \
    } while (0)

static double grad_norm(const tg_tensor *g, double p)
{
    double acc = 0;
    TG__FLOAT_SWITCH(g->dtype, GRAD_NORM_ACC, (double)NAN);
    return isinf(p) ? acc : p == 2 ? sqrt(acc) : pow(acc, 1 / p);
}

#define GRAD_SCALE(T)                          \
    do {                                       \
        T *v = g->data;                        \
        const T c = (T)coef;                   \
        for (int64_t k = 0; k < g->numel; k++) \
            v[k] *= c;                         \
    } while (0)

double tg_clip_grad_norm(tg_params *ps, double max_norm, double norm_type)
{
    if (!ps || !(max_norm >= 0) || !(norm_type > 0)) {
        if (!ps)
            tg__fail_call(TG_ERR_ARG, "clip_grad_norm: NULL registry");
        else if (!(max_norm >= 0))
            tg__fail_call(TG_ERR_ARG, "clip_grad_norm: max_norm %g, must be >= 0", max_norm);
        else
            tg__fail_call(TG_ERR_ARG,
                          "clip_grad_norm: norm_type %g, must be > 0 (INFINITY for the largest "
                          "magnitude)",
                          norm_type);
        return -1;
    }
    double total = 0;
    size_t n = tg_params_count(ps);
    for (size_t i = 0; i < n; i++) {
        const tg_tensor *g = tg_params_at(ps, i, NULL)->grad;
        if (!g) continue;
        double x = grad_norm(g, norm_type);
        if (isinf(norm_type))
            total = isnan(x) || isnan(total) ? (double)NAN : fmax(total, x);
        else
            total += norm_type == 2 ? x * x : pow(x, norm_type);
    }
    if (!isinf(norm_type)) total = norm_type == 2 ? sqrt(total) : pow(total, 1 / norm_type);
    double coef = max_norm / (total + 1e-6);
    if (coef > 1) coef = 1; /* torch.clamp(max=1) keeps NaN */
    for (size_t i = 0; i < n; i++) {
        tg_tensor *g = tg_params_at(ps, i, NULL)->grad;
        if (g) TG__FLOAT_SWITCH(g->dtype, GRAD_SCALE, -1);
    }
    return total;
}

#define GRAD_CLAMP(T)                                                      \
    do {                                                                   \
        T *v = g->data;                                                    \
        const T hi = (T)clip, lo = (T)-clip;                               \
        for (int64_t k = 0; k < g->numel; k++)                             \
            v[k] = v[k] < lo ? lo : v[k] > hi ? hi : v[k]; /* NaN stays */ \
    } while (0)

tg_status tg_clip_grad_value(tg_params *ps, double clip)
{
    if (!ps) return tg__fail_call(TG_ERR_ARG, "clip_grad_value: NULL registry");
    if (!(clip >= 0))
        return tg__fail_call(TG_ERR_ARG, "clip_grad_value: clip %g, must be >= 0", clip);
    for (size_t i = 0, n = tg_params_count(ps); i < n; i++) {
        tg_tensor *g = tg_params_at(ps, i, NULL)->grad;
        if (g) TG__FLOAT_SWITCH(g->dtype, GRAD_CLAMP, TG_ERR_DTYPE);
    }
    return TG_OK;
}
