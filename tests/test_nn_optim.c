/*
 * Optimizers against updates worked out by hand. Every expected value below is
 * literal arithmetic on the parameters and gradients of the case, written from
 * the textbook rule (PyTorch's documentation), not from the library's code.
 */
#include "testutil.h"

#include "internal.h"

#include <math.h>
#include <string.h>

/* Parameters of every case: w = [1, -2, 0.5] and two fixed gradients. */
static const double w0[3] = {1.0, -2.0, 0.5};
static const double g1[3] = {0.1, -0.3, 0.2};
static const double g2[3] = {-0.2, 0.1, 0.4};

static tg_tensor *add_param(tg_params *ps, const char *name, tg_dtype dt, int64_t n,
                            const double *v)
{
    tg_tensor *t = tg_params_add(ps, name, dt, 1, &n);
    ck_assert_ptr_nonnull(t);
    for (int64_t k = 0; k < n; k++)
        tu_put(t, k, v[k]);
    return t;
}

/* Writes a gradient as a backward sweep would leave it. */
static void set_grad(tg_tensor *t, const double *v)
{
    tg_tape *tp = tg_tape_new();
    tg_tensor *g = tg__grad_get(tp, t);
    ck_assert_ptr_nonnull(g);
    for (int64_t k = 0; k < g->numel; k++)
        tu_put(g, k, v[k]);
    tg_tape_free(tp);
}

static void expect(const tg_tensor *t, const double *want, double tol, const char *what)
{
    for (int64_t k = 0; k < tg_tensor_numel(t); k++) {
        double got = tu_at(t, k);
        ck_assert_msg(fabs(got - want[k]) <= tol, "%s[%lld]: got %.17g, want %.17g", what,
                      (long long)k, got, want[k]);
    }
}

/* Runs 'steps' (1 or 2) updates of w with g1 then g2 and returns the optimizer. */
static tg_optim *run(tg_params *ps, tg_tensor *w, const tg_optim_opts *opts, int steps)
{
    tg_optim *o = tg_optim_new(ps, opts);
    ck_assert_ptr_nonnull(o);
    set_grad(w, g1);
    ck_assert_int_eq(tg_optim_step(o), TG_OK);
    if (steps > 1) {
        set_grad(w, g2);
        ck_assert_int_eq(tg_optim_step(o), TG_OK);
    }
    return o;
}

/* ====== One case, one row: the parameters after one or two steps ====== */

typedef struct step_case {
    const char *what;
    tg_dtype dt;
    tg_optim_opts opts;
    int steps; /* 1: g1; 2: g1 then g2 */
    double want[3], tol;
    const char *state; /* a state tensor to check as well, or NULL */
    double state_want[3], state_tol;
} step_case;

/* Runs row c and checks w (and the named state tensor) against its values. */
static void check_steps(const step_case *c)
{
    tg_params *ps = tg_params_new();
    tg_tensor *w = add_param(ps, "w", c->dt, 3, w0);
    tg_optim *o = run(ps, w, &c->opts, c->steps);
    expect(w, c->want, c->tol, c->what);
    if (c->state)
        expect(tg_params_get(tg_optim_state(o), c->state), c->state_want, c->state_tol, "buffer");
    tg_optim_free(o);
    tg_params_free(ps);
}

/* ====== SGD ====== */

static const step_case sgd_cases[] = {
    {
        .what = "sgd",
        .dt = TG_F64,
        .opts = {.kind = TG_OPTIM_SGD, .lr = 0.1},
        .steps = 1,
        /* p -= lr g */
        .want = {1.0 - 0.1 * 0.1, -2.0 - 0.1 * -0.3, 0.5 - 0.1 * 0.2},
        .tol = 0,
    },
    {
        .what = "momentum",
        .dt = TG_F64,
        .opts = {.kind = TG_OPTIM_SGD, .lr = 0.1, .momentum = 0.9},
        .steps = 2,
        /* step 1: buf = g1, p -= 0.1 buf; step 2: buf = 0.9 g1 + g2, p -= 0.1 buf */
        .want = {1.0 - 0.1 * 0.1 - 0.1 * (0.9 * 0.1 - 0.2),
                 -2.0 + 0.1 * 0.3 - 0.1 * (0.9 * -0.3 + 0.1),
                 0.5 - 0.1 * 0.2 - 0.1 * (0.9 * 0.2 + 0.4)},
        .tol = 1e-15,
        .state = "optim.sgd.momentum.w",
        .state_want = {0.9 * 0.1 - 0.2, 0.9 * -0.3 + 0.1, 0.9 * 0.2 + 0.4},
        .state_tol = 1e-16,
    },
    {
        .what = "nesterov",
        .dt = TG_F64,
        .opts = {.kind = TG_OPTIM_SGD, .lr = 0.1, .momentum = 0.9, .nesterov = true},
        .steps = 2,
        /* step 1: buf = g1, p -= 0.1 (g1 + 0.9 g1); step 2: buf = 0.9 g1 + g2,
         * p -= 0.1 (g2 + 0.9 buf) */
        .want = {1.0 - 0.1 * 1.9 * 0.1 - 0.1 * (-0.2 + 0.9 * (0.9 * 0.1 - 0.2)),
                 -2.0 - 0.1 * 1.9 * -0.3 - 0.1 * (0.1 + 0.9 * (0.9 * -0.3 + 0.1)),
                 0.5 - 0.1 * 1.9 * 0.2 - 0.1 * (0.4 + 0.9 * (0.9 * 0.2 + 0.4))},
        .tol = 1e-15,
    },
    {
        .what = "weight decay",
        .dt = TG_F64,
        .opts = {.kind = TG_OPTIM_SGD, .lr = 0.1, .weight_decay = 0.01},
        .steps = 1,
        /* p -= lr (g + wd p) */
        .want = {1.0 - 0.1 * (0.1 + 0.01 * 1.0), -2.0 - 0.1 * (-0.3 + 0.01 * -2.0),
                 0.5 - 0.1 * (0.2 + 0.01 * 0.5)},
        .tol = 1e-15,
    },
    {
        .what = "dampening",
        .dt = TG_F64,
        .opts = {.kind = TG_OPTIM_SGD, .lr = 0.1, .momentum = 0.9, .dampening = 0.5},
        .steps = 2,
        /* The first step copies g1 into the buffer undamped; then buf = 0.9 g1 + 0.5 g2. */
        .want = {1.0 - 0.1 * 0.1 - 0.1 * (0.9 * 0.1 + 0.5 * -0.2),
                 -2.0 + 0.1 * 0.3 - 0.1 * (0.9 * -0.3 + 0.5 * 0.1),
                 0.5 - 0.1 * 0.2 - 0.1 * (0.9 * 0.2 + 0.5 * 0.4)},
        .tol = 1e-15,
    },
    {
        .what = "momentum f32",
        .dt = TG_F32,
        .opts = {.kind = TG_OPTIM_SGD, .lr = 0.1, .momentum = 0.9},
        .steps = 2,
        .want = {1.0 - 0.1 * 0.1 - 0.1 * (0.9 * 0.1 - 0.2),
                 -2.0 + 0.1 * 0.3 - 0.1 * (0.9 * -0.3 + 0.1),
                 0.5 - 0.1 * 0.2 - 0.1 * (0.9 * 0.2 + 0.4)},
        .tol = 1e-6,
    },
};

START_TEST(sgd_by_hand) { check_steps(&sgd_cases[_i]); }
END_TEST

START_TEST(sgd_momentum_weight_decay_two_steps)
{
    tg_params *ps = tg_params_new();
    tg_tensor *w = add_param(ps, "w", TG_F64, 3, w0);
    tg_optim *o = run(
        ps, w,
        &(tg_optim_opts){.kind = TG_OPTIM_SGD, .lr = 0.1, .momentum = 0.5, .weight_decay = 0.2}, 2);
    /* d1 = g1 + 0.2 p0, p1 = p0 - 0.1 d1; d2 = g2 + 0.2 p1, p2 = p1 - 0.1 (0.5 d1 + d2) */
    double p1[3], want[3];
    for (int k = 0; k < 3; k++) {
        double d1 = g1[k] + 0.2 * w0[k];
        p1[k] = w0[k] - 0.1 * d1;
        double d2 = g2[k] + 0.2 * p1[k];
        want[k] = p1[k] - 0.1 * (0.5 * d1 + d2);
    }
    expect(w, want, 1e-15, "momentum with weight decay");
    tg_optim_free(o);
    tg_params_free(ps);
}
END_TEST

/* ====== Adam and AdamW (beta1 0.9, beta2 0.999, eps 1e-8 unless stated) ====== */

/* Step 1: m = 0.1 g1 and v = 0.001 g1^2, so mhat = g1 and sqrt(vhat) = |g1|.
 * Step 2: m = 0.9 m + 0.1 g2, v = 0.999 v + 0.001 g2^2, bc1 = 1 - 0.9^2, bc2 = 1 - 0.999^2. */
static const double m2[3] = {0.9 * 0.01 + 0.1 * -0.2, 0.9 * -0.03 + 0.1 * 0.1,
                             0.9 * 0.02 + 0.1 * 0.4};
static const double v2[3] = {0.999 * 0.001 * 0.01 + 0.001 * 0.04,
                             0.999 * 0.001 * 0.09 + 0.001 * 0.01,
                             0.999 * 0.001 * 0.04 + 0.001 * 0.16};
#define BC1 (1 - 0.9 * 0.9)
#define BC2 (1 - 0.999 * 0.999)

START_TEST(adam_two_steps)
{
    tg_dtype dt = tu_loop_dtype(_i);
    tg_params *ps = tg_params_new();
    tg_tensor *w = add_param(ps, "w", dt, 3, w0);
    tg_optim *o = run(ps, w, &(tg_optim_opts){.kind = TG_OPTIM_ADAM, .lr = 0.01}, 2);
    /* p -= lr mhat / (sqrt(vhat) + eps) */
    const double p1[3] = {1.0 - 0.01 * 0.1 / (0.1 + 1e-8), -2.0 - 0.01 * -0.3 / (0.3 + 1e-8),
                          0.5 - 0.01 * 0.2 / (0.2 + 1e-8)};
    double want[3];
    for (int k = 0; k < 3; k++)
        want[k] = p1[k] - 0.01 * (m2[k] / BC1) / (sqrt(v2[k] / BC2) + 1e-8);
    expect(w, want, dt == TG_F64 ? 1e-14 : 1e-6, "adam");
    expect(tg_params_get(tg_optim_state(o), "optim.adam.m.w"), m2, dt == TG_F64 ? 1e-16 : 1e-8,
           "m");
    expect(tg_params_get(tg_optim_state(o), "optim.adam.v.w"), v2, dt == TG_F64 ? 1e-18 : 1e-10,
           "v");
    ck_assert(tg_tensor_item(tg_params_get(tg_optim_state(o), "optim.step")) == 2.0);
    tg_optim_free(o);
    tg_params_free(ps);
}
END_TEST

static const step_case adam_cases[] = {
    {
        .what = "adam eps 0, asked for",
        .dt = TG_F64,
        .opts = {.kind = TG_OPTIM_ADAM, .lr = 0.01, .set = TG_OPTIM_SET_EPS},
        .steps = 1,
        /* One step gives mhat = g and sqrt(vhat) = |g|; with eps 0, p -= lr sign(g). */
        .want = {1.0 - 0.01, -2.0 + 0.01, 0.5 - 0.01},
        .tol = 1e-15,
    },
    {
        .what = "adam eps",
        .dt = TG_F64,
        .opts = {.kind = TG_OPTIM_ADAM, .lr = 0.01, .beta1 = 0.5, .beta2 = 0.75, .eps = 0.1},
        .steps = 1,
        /* With beta1 0.5, beta2 0.75 and a large eps one step gives mhat = g, sqrt(vhat) = |g|:
         * p -= lr g / (|g| + 0.1). eps inside the sqrt or before the correction would not. */
        .want = {1.0 - 0.01 * 0.1 / (0.1 + 0.1), -2.0 + 0.01 * 0.3 / (0.3 + 0.1),
                 0.5 - 0.01 * 0.2 / (0.2 + 0.1)},
        .tol = 1e-15,
    },
    {
        .what = "adam weight decay",
        .dt = TG_F64,
        .opts = {.kind = TG_OPTIM_ADAM, .lr = 0.01, .weight_decay = 0.1},
        .steps = 1,
        /* g' = g + 0.1 p, then one Adam step: p -= lr g' / (|g'| + eps) */
        .want = {1.0 - 0.01 * 0.2 / (0.2 + 1e-8), -2.0 + 0.01 * 0.5 / (0.5 + 1e-8),
                 0.5 - 0.01 * 0.25 / (0.25 + 1e-8)},
        .tol = 1e-15,
    },
};

START_TEST(adam_by_hand) { check_steps(&adam_cases[_i]); }
END_TEST

START_TEST(adamw_two_steps)
{
    tg_dtype dt = tu_loop_dtype(_i);
    tg_params *ps = tg_params_new();
    tg_tensor *w = add_param(ps, "w", dt, 3, w0);
    tg_optim *o =
        run(ps, w, &(tg_optim_opts){.kind = TG_OPTIM_ADAMW, .lr = 0.01, .weight_decay = 0.1}, 2);
    /* p *= 1 - lr wd = 0.999 first, then the Adam step on the undecayed gradient */
    const double p1[3] = {1.0 * 0.999 - 0.01 * 0.1 / (0.1 + 1e-8),
                          -2.0 * 0.999 - 0.01 * -0.3 / (0.3 + 1e-8),
                          0.5 * 0.999 - 0.01 * 0.2 / (0.2 + 1e-8)};
    double want[3];
    for (int k = 0; k < 3; k++)
        want[k] = p1[k] * 0.999 - 0.01 * (m2[k] / BC1) / (sqrt(v2[k] / BC2) + 1e-8);
    expect(w, want, dt == TG_F64 ? 1e-14 : 1e-6, "adamw");
    ck_assert_ptr_nonnull(tg_params_get(tg_optim_state(o), "optim.adamw.m.w"));
    ck_assert_ptr_nonnull(tg_params_get(tg_optim_state(o), "optim.adamw.v.w"));
    tg_optim_free(o);
    tg_params_free(ps);
}
END_TEST

/* ====== Skipping, options, learning rate, state ====== */

START_TEST(params_without_gradient_are_skipped)
{
    tg_optim_kind kind = (tg_optim_kind)_i;
    tg_params *ps = tg_params_new();
    tg_tensor *w = add_param(ps, "w", TG_F64, 3, w0);
    tg_tensor *b = add_param(ps, "b", TG_F32, 2, (double[]){0.25, -0.75});
    tg_optim *o = run(
        ps, w, &(tg_optim_opts){.kind = kind, .lr = 0.1, .momentum = 0.9, .weight_decay = 0.5}, 2);
    ck_assert(tu_at(w, 0) != 1.0);
    ck_assert(tu_at(b, 0) == 0.25 && tu_at(b, 1) == -0.75); /* not even weight decay */
    tg_params *st = tg_optim_state(o);
    for (size_t i = 0; i < tg_params_count(st); i++) {
        const char *name;
        tg_tensor *t = tg_params_at(st, i, &name);
        if (strcmp(name + strlen(name) - 2, ".b") != 0) continue;
        for (int64_t k = 0; k < tg_tensor_numel(t); k++)
            ck_assert(tu_at(t, k) == 0.0);
    }
    /* Once it has a gradient, b moves against it. */
    set_grad(b, (double[]){1.0, -1.0});
    ck_assert_int_eq(tg_optim_step(o), TG_OK);
    ck_assert(tu_at(b, 0) < 0.25 && tu_at(b, 1) > -0.75);
    tg_optim_free(o);
    tg_params_free(ps);
}
END_TEST

START_TEST(zero_betas_can_be_asked_for)
{
    tg_params *ps = tg_params_new();
    tg_tensor *w = add_param(ps, "w", TG_F64, 3, w0);
    /* beta1 = beta2 = 0: m = g and v = g^2 of the step alone, no bias correction left. */
    const tg_optim_opts opts = {
        .kind = TG_OPTIM_ADAM, .lr = 0.01, .set = TG_OPTIM_SET_BETA1 | TG_OPTIM_SET_BETA2};
    tg_optim *o = run(ps, w, &opts, 2);
    double want[3];
    for (int k = 0; k < 3; k++) {
        double p1 = w0[k] - 0.01 * g1[k] / (fabs(g1[k]) + 1e-8);
        want[k] = p1 - 0.01 * g2[k] / (fabs(g2[k]) + 1e-8);
    }
    expect(w, want, 1e-15, "adam betas 0");
    expect(tg_params_get(tg_optim_state(o), "optim.adam.m.w"), g2, 0, "m = g");
    tg_optim_free(o);

    /* The same fields left 0 without their bits take the defaults, 0.9 and 0.999. */
    tg_tensor *m_default;
    for (int k = 0; k < 3; k++)
        tu_put(w, k, w0[k]);
    o = run(ps, w, &(tg_optim_opts){.kind = TG_OPTIM_ADAM, .lr = 0.01, .beta1 = 0, .beta2 = 0}, 2);
    m_default = tg_params_get(tg_optim_state(o), "optim.adam.m.w");
    for (int k = 0; k < 3; k++)
        ck_assert_double_eq_tol(tu_at(m_default, k), 0.9 * 0.1 * g1[k] + 0.1 * g2[k], 1e-16);
    tg_optim_free(o);
    tg_params_free(ps);
}
END_TEST

static const struct {
    const char *what;
    tg_optim_opts o;
    const char *msg;
} bad_opts[] = {
    {"negative lr", {.kind = TG_OPTIM_ADAM, .lr = -0.1}, "optim_new: learning rate -0.1"},
    {"NaN lr", {.kind = TG_OPTIM_SGD, .lr = NAN}, "optim_new: learning rate nan"},
    {"infinite lr", {.kind = TG_OPTIM_ADAMW, .lr = INFINITY}, "optim_new: learning rate inf"},
    {"negative momentum", {.kind = TG_OPTIM_SGD, .lr = 0.1, .momentum = -0.5}, "momentum -0.5"},
    {"NaN momentum", {.kind = TG_OPTIM_SGD, .lr = 0.1, .momentum = NAN}, "momentum nan"},
    {"nesterov without momentum",
     {.kind = TG_OPTIM_SGD, .lr = 0.1, .nesterov = true},
     "Nesterov needs momentum > 0"},
    {"nesterov with dampening",
     {.kind = TG_OPTIM_SGD, .lr = 0.1, .momentum = 0.9, .dampening = 0.1, .nesterov = true},
     "dampening 0.1"},
    {"NaN dampening",
     {.kind = TG_OPTIM_SGD, .lr = 0.1, .momentum = 0.9, .dampening = NAN},
     "dampening nan is not finite"},
    {"negative weight decay",
     {.kind = TG_OPTIM_SGD, .lr = 0.1, .weight_decay = -0.01},
     "weight decay -0.01"},
    {"NaN weight decay",
     {.kind = TG_OPTIM_ADAMW, .lr = 0.1, .weight_decay = NAN},
     "weight decay nan"},
    {"beta1 1", {.kind = TG_OPTIM_ADAM, .lr = 0.1, .beta1 = 1.0}, "betas 1 and 0.999"},
    {"beta1 negative", {.kind = TG_OPTIM_ADAM, .lr = 0.1, .beta1 = -0.1}, "betas -0.1 and"},
    {"beta1 NaN", {.kind = TG_OPTIM_ADAMW, .lr = 0.1, .beta1 = NAN}, "betas nan and"},
    {"beta2 above 1", {.kind = TG_OPTIM_ADAMW, .lr = 0.1, .beta2 = 1.5}, "betas 0.9 and 1.5"},
    {"beta2 1", {.kind = TG_OPTIM_ADAM, .lr = 0.1, .beta2 = 1.0}, "betas 0.9 and 1,"},
    {"negative eps", {.kind = TG_OPTIM_ADAM, .lr = 0.1, .eps = -1e-8}, "eps -1e-08"},
    {"NaN eps", {.kind = TG_OPTIM_ADAM, .lr = 0.1, .eps = NAN}, "eps nan"},
    {"infinite eps", {.kind = TG_OPTIM_ADAM, .lr = 0.1, .eps = INFINITY}, "eps inf"},
    {"flagged beta1 1",
     {.kind = TG_OPTIM_ADAM, .lr = 0.1, .beta1 = 1, .set = TG_OPTIM_SET_BETA1},
     "betas 1 and"},
    {"unknown bit", {.kind = TG_OPTIM_ADAM, .lr = 0.1, .set = 8}, "unknown bits 0x8 in 'set'"},
    {"unknown kind", {.kind = (tg_optim_kind)7, .lr = 0.1}, "optim_new: unknown kind 7"},
};

START_TEST(bad_options_are_refused)
{
    tg_params *ps = tg_params_new();
    add_param(ps, "w", TG_F64, 3, w0);
    ck_assert_msg(!tg_optim_new(ps, &bad_opts[_i].o), "%s accepted", bad_opts[_i].what);
    ck_assert_int_eq(tg_last_error()->status, TG_ERR_ARG);
    ck_assert_msg(strstr(tg_last_error()->msg, bad_opts[_i].msg), "%s: message '%s'",
                  bad_opts[_i].what, tg_last_error()->msg);
    tg_params_free(ps);
}
END_TEST

START_TEST(null_arguments)
{
    tg_params *ps = tg_params_new();
    tg_optim_opts opts = {.kind = TG_OPTIM_SGD, .lr = 0.1};
    ck_assert_ptr_null(tg_optim_new(NULL, &opts));
    ck_assert_str_eq(tg_last_error()->msg, "optim_new: NULL registry");
    ck_assert_ptr_null(tg_optim_new(ps, NULL));
    ck_assert_str_eq(tg_last_error()->msg, "optim_new: NULL options");
    ck_assert_int_eq(tg_optim_step(NULL), TG_ERR_ARG);
    ck_assert_str_eq(tg_last_error()->msg, "optim_step: NULL optimizer");
    ck_assert_ptr_null(tg_optim_state(NULL));
    ck_assert_int_eq(tg_optim_set_lr(NULL, 0.1), TG_ERR_ARG);
    ck_assert_str_eq(tg_last_error()->msg, "optim_set_lr: NULL optimizer");
    tg_optim_free(NULL);
    /* An empty registry gives an optimizer with nothing to do. */
    tg_optim *o = tg_optim_new(ps, &opts);
    ck_assert_ptr_nonnull(o);
    ck_assert_int_eq(tg_optim_step(o), TG_OK);
    tg_optim_free(o);
    tg_params_free(ps);
}
END_TEST

START_TEST(set_lr_changes_the_step)
{
    tg_params *ps = tg_params_new();
    tg_tensor *w = add_param(ps, "w", TG_F64, 3, w0);
    tg_optim *o = tg_optim_new(ps, &(tg_optim_opts){.kind = TG_OPTIM_SGD, .lr = 0.1});
    ck_assert_int_eq(tg_optim_set_lr(o, 0.5), TG_OK);
    set_grad(w, g1);
    ck_assert_int_eq(tg_optim_step(o), TG_OK);
    const double want1[3] = {1.0 - 0.5 * 0.1, -2.0 + 0.5 * 0.3, 0.5 - 0.5 * 0.2};
    expect(w, want1, 0, "lr 0.5");
    /* Negative, infinite and NaN rates are refused and change nothing. */
    const double refused[] = {-1, -0.0 - 1e-300, INFINITY, -INFINITY, NAN};
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        ck_assert_int_eq(tg_optim_set_lr(o, refused[i]), TG_ERR_ARG);
        ck_assert_int_eq(tg_last_error()->status, TG_ERR_ARG);
        ck_assert_msg(strstr(tg_last_error()->msg, "optim_set_lr: learning rate "), "message '%s'",
                      tg_last_error()->msg);
    }
    ck_assert_int_eq(tg_optim_step(o), TG_OK);
    const double want2[3] = {want1[0] - 0.5 * 0.1, want1[1] + 0.5 * 0.3, want1[2] - 0.5 * 0.2};
    expect(w, want2, 0, "lr still 0.5");
    /* 0 is a rate like any other: the step after it moves nothing. */
    ck_assert_int_eq(tg_optim_set_lr(o, 0), TG_OK);
    ck_assert_int_eq(tg_optim_step(o), TG_OK);
    expect(w, want2, 0, "lr 0");
    tg_optim_free(o);
    tg_params_free(ps);
}
END_TEST

/* A warm-up from 0: the optimizer is made with lr 0, its first step moves
 * nothing (the state still advances, as in PyTorch), the next runs at the rate set. */
START_TEST(warm_up_from_zero)
{
    tg_optim_kind kind = (tg_optim_kind)_i;
    tg_params *ps = tg_params_new();
    tg_tensor *w = add_param(ps, "w", TG_F64, 3, w0);
    tg_optim *o = tg_optim_new(ps, &(tg_optim_opts){.kind = kind, .lr = 0, .momentum = 0.5});
    ck_assert_ptr_nonnull(o);
    set_grad(w, g1);
    ck_assert_int_eq(tg_optim_step(o), TG_OK);
    expect(w, w0, 0, "lr 0");
    ck_assert(tg_tensor_item(tg_params_get(tg_optim_state(o), "optim.step")) == 1.0);
    ck_assert_int_eq(tg_optim_set_lr(o, 0.1), TG_OK);
    ck_assert_int_eq(tg_optim_step(o), TG_OK);
    for (int k = 0; k < 3; k++)
        ck_assert_msg(tu_at(w, k) != w0[k], "w[%d] did not move at lr 0.1", k);
    tg_optim_free(o);
    tg_params_free(ps);
}
END_TEST

/* A parameter registered after tg_optim_new would never be updated: the step
 * refuses, updates nothing, and names it. */
START_TEST(parameter_added_later_is_refused)
{
    tg_params *ps = tg_params_new();
    tg_tensor *w = add_param(ps, "w", TG_F64, 3, w0);
    tg_optim *o = tg_optim_new(ps, &(tg_optim_opts){.kind = TG_OPTIM_SGD, .lr = 0.1});
    tg_tensor *late = add_param(ps, "late.bias", TG_F64, 3, w0);
    set_grad(w, g1);
    set_grad(late, g1);
    ck_assert_int_eq(tg_optim_step(o), TG_ERR_STATE);
    ck_assert_int_eq(tg_last_error()->status, TG_ERR_STATE);
    ck_assert_str_eq(tg_last_error()->msg,
                     "optim_step: the registry has 2 parameters, the optimizer was made for 1 "
                     "('late.bias' was added after tg_optim_new and would never be updated); "
                     "make a new optimizer");
    expect(w, w0, 0, "w untouched");
    expect(late, w0, 0, "late untouched");
    ck_assert(tg_tensor_item(tg_params_get(tg_optim_state(o), "optim.step")) == 0.0);
    tg_optim_free(o);
    /* A new optimizer covers both. */
    o = tg_optim_new(ps, &(tg_optim_opts){.kind = TG_OPTIM_SGD, .lr = 0.1});
    ck_assert_int_eq(tg_optim_step(o), TG_OK);
    ck_assert(tu_at(late, 0) != w0[0]);
    tg_optim_free(o);
    tg_params_free(ps);
}
END_TEST

static const struct {
    tg_optim_opts o;
    const char *names[5]; /* in registration order, NULL-terminated */
} state_cases[] = {
    {{.kind = TG_OPTIM_SGD, .lr = 0.1}, {"optim.step"}},
    {{.kind = TG_OPTIM_SGD, .lr = 0.1, .momentum = 0.9},
     {"optim.step", "optim.sgd.momentum.w", "optim.sgd.momentum.layer.b"}},
    {{.kind = TG_OPTIM_ADAM, .lr = 0.1},
     {"optim.step", "optim.adam.m.w", "optim.adam.v.w", "optim.adam.m.layer.b",
      "optim.adam.v.layer.b"}},
    {{.kind = TG_OPTIM_ADAMW, .lr = 0.1},
     {"optim.step", "optim.adamw.m.w", "optim.adamw.v.w", "optim.adamw.m.layer.b",
      "optim.adamw.v.layer.b"}},
};

START_TEST(state_has_expected_names)
{
    tg_params *ps = tg_params_new();
    tg_tensor *w = add_param(ps, "w", TG_F64, 3, w0);
    add_param(ps, "layer.b", TG_F32, 2, (double[]){1, 2});
    tg_optim *o = tg_optim_new(ps, &state_cases[_i].o);
    ck_assert_ptr_nonnull(o);
    tg_params *st = tg_optim_state(o);
    size_t n = 0;
    while (n < 5 && state_cases[_i].names[n])
        n++;
    ck_assert_uint_eq(tg_params_count(st), n);
    for (size_t i = 0; i < n; i++) {
        const char *name;
        tg_tensor *t = tg_params_at(st, i, &name);
        ck_assert_str_eq(name, state_cases[_i].names[i]);
        ck_assert(!tg_tensor_requires_grad(t));
        if (i == 0) continue;
        size_t len = strlen(name);
        tg_tensor *p = tg_params_get(ps, strcmp(name + len - 2, ".w") == 0 ? "w" : "layer.b");
        ck_assert_ptr_nonnull(p);
        ck_assert_int_eq(tg_tensor_dtype(t), tg_tensor_dtype(p));
        ck_assert_int_eq(tg_tensor_numel(t), tg_tensor_numel(p));
    }
    tg_tensor *step = tg_params_get(st, "optim.step");
    ck_assert_int_eq(tg_tensor_rank(step), 0);
    ck_assert_int_eq(tg_tensor_dtype(step), TG_F64);
    ck_assert(tg_tensor_item(step) == 0.0);
    for (int s = 1; s <= 3; s++) {
        set_grad(w, g1);
        ck_assert_int_eq(tg_optim_step(o), TG_OK);
        ck_assert(tg_tensor_item(step) == s);
    }
    tg_optim_free(o);
    tg_params_free(ps);
}
END_TEST

/* Copies every state tensor of 'from' into 'to' by name, as a checkpoint load would. */
static void copy_state(tg_optim *to, tg_optim *from)
{
    tg_params *dst = tg_optim_state(to), *src = tg_optim_state(from);
    ck_assert_uint_eq(tg_params_count(dst), tg_params_count(src));
    for (size_t i = 0; i < tg_params_count(src); i++) {
        const char *name;
        tg_tensor *s = tg_params_at(src, i, &name), *d = tg_params_get(dst, name);
        ck_assert_ptr_nonnull(d);
        memcpy(tg_tensor_data(d), tg_tensor_data(s),
               (size_t)tg_tensor_numel(s) * (tg_tensor_dtype(s) == TG_F64 ? 8 : 4));
    }
}

START_TEST(restored_state_continues_exactly)
{
    const tg_optim_opts opts[] = {
        {.kind = TG_OPTIM_SGD, .lr = 0.1, .momentum = 0.9, .dampening = 0.3},
        {.kind = TG_OPTIM_ADAM, .lr = 0.01},
        {.kind = TG_OPTIM_ADAMW, .lr = 0.01, .weight_decay = 0.1},
    };
    tg_params *pa = tg_params_new(), *pb = tg_params_new();
    tg_tensor *a = add_param(pa, "w", TG_F64, 3, w0);
    tg_tensor *b = add_param(pb, "w", TG_F64, 3, w0);
    tg_optim *oa = run(pa, a, &opts[_i], 2);
    /* b resumes from a's parameters and state, as after a checkpoint */
    tg_optim *ob = tg_optim_new(pb, &opts[_i]);
    memcpy(tg_tensor_data(b), tg_tensor_data(a), sizeof w0);
    copy_state(ob, oa);
    set_grad(a, g1);
    set_grad(b, g1);
    ck_assert_int_eq(tg_optim_step(oa), TG_OK);
    ck_assert_int_eq(tg_optim_step(ob), TG_OK);
    ck_assert(memcmp(tg_tensor_data(a), tg_tensor_data(b), sizeof w0) == 0);
    /* A fresh optimizer (no state) would have taken another step. */
    tg_optim *oc = tg_optim_new(pb, &opts[_i]);
    memcpy(tg_tensor_data(b), tg_tensor_data(a), sizeof w0);
    set_grad(a, g2);
    set_grad(b, g2);
    ck_assert_int_eq(tg_optim_step(oa), TG_OK);
    ck_assert_int_eq(tg_optim_step(oc), TG_OK);
    ck_assert(memcmp(tg_tensor_data(a), tg_tensor_data(b), sizeof w0) != 0);
    tg_optim_free(oa);
    tg_optim_free(ob);
    tg_optim_free(oc);
    tg_params_free(pa);
    tg_params_free(pb);
}
END_TEST

static Suite *nn_optim_suite(void)
{
    Suite *s = suite_create("nn_optim");
    TCase *tc = tcase_create("sgd");
    tcase_add_loop_test(tc, sgd_by_hand, 0, sizeof sgd_cases / sizeof *sgd_cases);
    tcase_add_test(tc, sgd_momentum_weight_decay_two_steps);
    suite_add_tcase(s, tc);

    tc = tcase_create("adam");
    tcase_add_loop_test(tc, adam_two_steps, 0, 2); /* F64, F32 */
    tcase_add_loop_test(tc, adam_by_hand, 0, sizeof adam_cases / sizeof *adam_cases);
    tcase_add_loop_test(tc, adamw_two_steps, 0, 2);
    tcase_add_test(tc, zero_betas_can_be_asked_for);
    suite_add_tcase(s, tc);

    tc = tcase_create("common");
    tcase_add_loop_test(tc, params_without_gradient_are_skipped, TG_OPTIM_SGD, TG_OPTIM_ADAMW + 1);
    tcase_add_loop_test(tc, bad_options_are_refused, 0, sizeof bad_opts / sizeof *bad_opts);
    tcase_add_test(tc, null_arguments);
    tcase_add_test(tc, set_lr_changes_the_step);
    tcase_add_loop_test(tc, warm_up_from_zero, TG_OPTIM_SGD, TG_OPTIM_ADAMW + 1);
    tcase_add_test(tc, parameter_added_later_is_refused);
    tcase_add_loop_test(tc, state_has_expected_names, 0, sizeof state_cases / sizeof *state_cases);
    tcase_add_loop_test(tc, restored_state_continues_exactly, 0, 3);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run(nn_optim_suite()); }
