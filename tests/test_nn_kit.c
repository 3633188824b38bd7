/*
 * The training kit against PyTorch's numbers (tests/kit_reference.h, written
 * by tools/kit_reference.py): learning-rate schedules step by step on two
 * parameter groups, gradient clipping, SGD and Adam(W) with parameter groups
 * that decay some parameters and not others, their state saved and resumed
 * per group; tapes recorded without gradients; metrics with exact values.
 */
#include "testutil.h"

#include "internal.h"
#include "kit_reference.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

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

static tg_tensor *add(tg_params *ps, const char *name, tg_dtype dt, const char *shape,
                      const double *v)
{
    int64_t sh[TG_MAX_RANK];
    int rank = tu_parse_shape(shape, sh);
    tg_tensor *t = tg_params_add(ps, name, dt, rank, sh);
    ck_assert_ptr_nonnull(t);
    for (int64_t k = 0; v && k < t->numel; k++)
        tu_put(t, k, v[k]);
    return t;
}

/* |got - want| <= tol * max(1, |want|), NaN only against NaN, inf only against the same inf. */
static void near(double got, double want, double tol, const char *what, int i)
{
    bool ok = isnan(want)   ? isnan(got)
              : isinf(want) ? got == want
                            : fabs(got - want) <= tol * fmax(1, fabs(want));
    ck_assert_msg(ok, "%s[%d]: got %.17g, want %.17g", what, i, got, want);
}

static void expect_error(tg_status got, tg_status want, const char *msg)
{
    ck_assert_int_eq(got, want);
    ck_assert_str_eq(tg_last_error()->msg, msg);
}

/* ====== Schedules: two groups, base rates 0.1 ("a") and 0.03 (the default group) ====== */

static tg_optim *two_group_optim(tg_params **ps)
{
    *ps = tg_params_new();
    add(*ps, "a", TG_F64, "1", NULL);
    add(*ps, "b", TG_F64, "1", NULL);
    tg_param_group g = {.name = "a",
                        .params = (const char *[]){"a", NULL},
                        .lr = sched_base[0],
                        .set = TG_GROUP_SET_LR};
    tg_optim *o = tg_optim_new_groups(
        *ps, &(tg_optim_opts){.kind = TG_OPTIM_SGD, .lr = sched_base[1]}, &g, 1);
    ck_assert_ptr_nonnull(o);
    ck_assert_int_eq(tg_optim_group_count(o), 2);
    return o;
}

typedef struct sched_case {
    const char *what;
    tg_sched_opts opts;
    const double *want; /* group "a" at steps 0..n-1, then the default group */
    int steps;
    const double *metric; /* PLATEAU */
} sched_case;

static const sched_case sched_cases[] = {
    {"constant", {.kind = TG_SCHED_CONSTANT}, sched_constant, SCHED_STEPS, NULL},
    {"constant, warm-up",
     {.kind = TG_SCHED_CONSTANT, .warmup_steps = 4, .warmup_start = 0.25},
     sched_constant_warm,
     SCHED_STEPS,
     NULL},
    {"step", {.kind = TG_SCHED_STEP, .step_size = 3, .gamma = 0.5}, sched_step, SCHED_STEPS, NULL},
    {"exponential, warm-up",
     {.kind = TG_SCHED_EXPONENTIAL, .gamma = 0.8, .warmup_steps = 2, .warmup_start = 0.1},
     sched_exp_warm,
     SCHED_STEPS,
     NULL},
    {"cosine",
     {.kind = TG_SCHED_COSINE, .total_steps = 10, .min_lr = 0.001},
     sched_cosine,
     SCHED_STEPS,
     NULL},
    {"cosine, warm-up",
     {.kind = TG_SCHED_COSINE, .total_steps = 11, .warmup_steps = 3, .warmup_start = 0.1},
     sched_cosine_warm,
     SCHED_STEPS,
     NULL},
    {"one-cycle",
     {.kind = TG_SCHED_ONE_CYCLE, .total_steps = SCHED_STEPS},
     sched_one_cycle,
     SCHED_STEPS,
     NULL},
    {"one-cycle b",
     {.kind = TG_SCHED_ONE_CYCLE,
      .total_steps = 10,
      .pct_start = 0.25,
      .div_factor = 10,
      .final_div_factor = 100},
     sched_one_cycle_b,
     10,
     NULL},
    {"one-cycle linear",
     {.kind = TG_SCHED_ONE_CYCLE, .total_steps = 12, .pct_start = 0.5, .anneal_linear = true},
     sched_one_cycle_lin,
     12,
     NULL},
    {"plateau min",
     {.kind = TG_SCHED_PLATEAU,
      .factor = 0.5,
      .patience = 2,
      .threshold = 0.01,
      .cooldown = 1,
      .min_lr = 0.01},
     plateau_min,
     PLATEAU_STEPS,
     plateau_metric},
    {"plateau max abs",
     {.kind = TG_SCHED_PLATEAU,
      .maximize = true,
      .threshold_abs = true,
      .factor = 0.1,
      .patience = 1,
      .threshold = 0.001},
     plateau_max_abs,
     PLATEAU_STEPS,
     plateau_metric},
    {"plateau defaults",
     {.kind = TG_SCHED_PLATEAU},
     plateau_default,
     PLATEAU_STEPS,
     plateau_metric},
};

START_TEST(test_schedule_steps)
{
    const sched_case *c = &sched_cases[_i];
    tg_params *ps;
    tg_optim *o = two_group_optim(&ps);
    tg_sched s;
    ck_assert_int_eq(tg_sched_init(&s, &c->opts, o), TG_OK);
    for (int t = 0; t < c->steps; t++) {
        for (int g = 0; g < 2; g++) {
            double want = c->want[g * c->steps + t];
            near(tg_optim_group_lr(o, g), want, 1e-13, c->what, t);
            if (!c->metric) near(tg_sched_lr(&s, sched_base[g], t), want, 1e-13, c->what, t);
        }
        ck_assert_int_eq(tg_optim_step(o), TG_OK);
        /* plateau_max_abs watches the negated metric, as an accuracy rises. */
        double m = c->metric ? (c->opts.maximize ? -c->metric[t] : c->metric[t]) : 0;
        ck_assert_int_eq(tg_sched_step(&s, o, m), TG_OK);
    }
    ck_assert_int_eq(s.step, c->steps);
    /* A one-cycle stepped past its last step keeps the final rate (PyTorch's
     * extrapolation would be negative for the linear one), and refuses more. */
    for (int g = 0; c->opts.kind == TG_SCHED_ONE_CYCLE && g < 2; g++)
        near(tg_optim_group_lr(o, g), c->want[g * c->steps + c->steps - 1], 1e-13, c->what, -1);
    if (c->opts.kind == TG_SCHED_ONE_CYCLE) ck_assert_int_eq(tg_sched_step(&s, o, 0), TG_ERR_ARG);
    tg_optim_free(o);
    tg_params_free(ps);
}
END_TEST

/* A resumed run calls tg_sched_apply with its step count and goes on as if never stopped. */
START_TEST(test_schedule_resume)
{
    tg_params *ps;
    tg_optim *o = two_group_optim(&ps);
    tg_sched s;
    const sched_case *c = &sched_cases[5]; /* cosine with warm-up */
    ck_assert_int_eq(tg_sched_init(&s, &c->opts, o), TG_OK);
    ck_assert_int_eq(tg_sched_apply(&s, o, 6), TG_OK);
    ck_assert_int_eq(s.step, 6);
    for (int t = 6; t < SCHED_STEPS; t++) {
        near(tg_optim_group_lr(o, 0), c->want[t], 1e-13, "resumed a", t);
        near(tg_optim_group_lr(o, 1), c->want[SCHED_STEPS + t], 1e-13, "resumed default", t);
        ck_assert_int_eq(tg_sched_step(&s, o, 0), TG_OK);
    }
    tg_optim_free(o);
    tg_params_free(ps);
}
END_TEST

START_TEST(test_schedule_errors)
{
    tg_params *ps;
    tg_optim *o = two_group_optim(&ps);
    tg_sched s;
    expect_error(tg_sched_init(&s, &(tg_sched_opts){.kind = 9}, o), TG_ERR_ARG,
                 "sched_init: unknown kind 9");
    expect_error(tg_sched_init(&s, &(tg_sched_opts){.kind = TG_SCHED_STEP}, o), TG_ERR_ARG,
                 "sched_init: step_size 0, must be >= 1");
    expect_error(tg_sched_init(&s, &(tg_sched_opts){.kind = TG_SCHED_EXPONENTIAL, .gamma = -1}, o),
                 TG_ERR_ARG, "sched_init: gamma -1, must be > 0");
    expect_error(
        tg_sched_init(
            &s, &(tg_sched_opts){.kind = TG_SCHED_COSINE, .total_steps = 4, .warmup_steps = 4}, o),
        TG_ERR_ARG, "sched_init: total_steps 4 leaves no cosine step after 4 warm-up steps");
    expect_error(
        tg_sched_init(
            &s, &(tg_sched_opts){.kind = TG_SCHED_CONSTANT, .warmup_steps = 2, .warmup_start = 1.5},
            o),
        TG_ERR_ARG, "sched_init: warmup_start 1.5, must be in (0, 1]");
    expect_error(
        tg_sched_init(
            &s, &(tg_sched_opts){.kind = TG_SCHED_ONE_CYCLE, .total_steps = 10, .pct_start = 0.1},
            o),
        TG_ERR_ARG,
        "sched_init: pct_start 0.1 of 10 steps makes a warm-up phase of one step, whose "
        "rate PyTorch computes as 0/0");
    expect_error(tg_sched_init(&s, &(tg_sched_opts){.kind = TG_SCHED_PLATEAU, .factor = 1}, o),
                 TG_ERR_ARG, "sched_init: factor 1, must be in (0, 1)");
    expect_error(tg_sched_init(&s, &(tg_sched_opts){.kind = TG_SCHED_PLATEAU, .set = 64}, o),
                 TG_ERR_ARG, "sched_init: unknown bits 0x40 in 'set'");
    /* patience 0 asked for with its bit: a reduction at the first bad step. */
    ck_assert_int_eq(
        tg_sched_init(&s, &(tg_sched_opts){.kind = TG_SCHED_PLATEAU, .set = TG_SCHED_SET_PATIENCE},
                      o),
        TG_OK);
    ck_assert_int_eq(s.o.patience, 0);
    ck_assert_int_eq(tg_sched_step(&s, o, 1.0), TG_OK);
    ck_assert_int_eq(tg_sched_step(&s, o, 2.0), TG_OK);
    near(tg_optim_group_lr(o, 0), sched_base[0] * 0.1, 1e-15, "patience 0", 0);
    ck_assert(isnan(tg_sched_lr(&s, 1, 0)));
    ck_assert_str_eq(tg_last_error()->msg,
                     "sched_lr: a plateau schedule's rate is no function of the step");
    /* One-cycle past its steps: refused, the rates left alone. */
    ck_assert_int_eq(
        tg_sched_init(&s, &(tg_sched_opts){.kind = TG_SCHED_ONE_CYCLE, .total_steps = 4}, o),
        TG_OK);
    double before = tg_optim_group_lr(o, 0);
    expect_error(tg_sched_apply(&s, o, 5), TG_ERR_ARG,
                 "sched_apply: step 5 past the one-cycle's 4 steps");
    ck_assert(tg_optim_group_lr(o, 0) == before);
    ck_assert_int_eq(s.step, 0);
    expect_error(tg_sched_step(NULL, o, 0), TG_ERR_ARG, "sched_step: NULL schedule");
    tg_optim_free(o);
    tg_params_free(ps);
}
END_TEST

/* ====== Gradient clipping: a [2,3] and b [4], as PyTorch's clip_grad_norm_ ====== */

typedef struct clip_case {
    const char *what;
    double max_norm, norm_type;
    const double *want; /* the norm, then a's and b's gradients after clipping */
    int bad_a, bad_b;   /* an element of a or b replaced (-1: none) */
    double bad;
} clip_case;

static const clip_case clip_cases[] = {
    {"l2", 1.0, 2.0, clip_l2, -1, -1, 0},
    {"l2 loose", 100.0, 2.0, clip_l2_loose, -1, -1, 0},
    {"inf", 0.5, INFINITY, clip_inf, -1, -1, 0},
    {"l1", 2.0, 1.0, clip_l1, -1, -1, 0},
    {"p3", 0.7, 3.0, clip_p3, -1, -1, 0},
    {"zero", 0.0, 2.0, clip_zero, -1, -1, 0},
    {"inf grad", 1.0, 2.0, clip_inf_grad, 1, -1, INFINITY},
    {"nan grad", 1.0, 2.0, clip_nan_grad, -1, 2, NAN},
};

START_TEST(test_clip_norm)
{
    const clip_case *c = &clip_cases[_i % 8];
    tg_dtype dt = _i < 8 ? TG_F64 : TG_F32;
    double tol = dt == TG_F64 ? 1e-14 : 1e-6;
    double ga[6], gb[4];
    memcpy(ga, clip_ga, sizeof ga);
    memcpy(gb, clip_gb, sizeof gb);
    if (c->bad_a >= 0) ga[c->bad_a] = c->bad;
    if (c->bad_b >= 0) gb[c->bad_b] = c->bad;
    tg_params *ps = tg_params_new();
    tg_tensor *a = add(ps, "a", dt, "2x3", NULL);
    add(ps, "frozen", dt, "5", NULL); /* no gradient: left out */
    tg_tensor *b = add(ps, "b", dt, "4", NULL);
    set_grad(a, ga);
    set_grad(b, gb);
    near(tg_clip_grad_norm(ps, c->max_norm, c->norm_type), c->want[0], tol, c->what, 0);
    for (int k = 0; k < 6; k++)
        near(tu_at(tg_tensor_grad(a), k), c->want[1 + k], tol, c->what, 1 + k);
    for (int k = 0; k < 4; k++)
        near(tu_at(tg_tensor_grad(b), k), c->want[7 + k], tol, c->what, 7 + k);
    tg_params_free(ps);
}
END_TEST

START_TEST(test_clip_value_and_errors)
{
    tg_params *ps = tg_params_new();
    tg_tensor *a = add(ps, "a", TG_F64, "2x3", NULL);
    ck_assert(tg_clip_grad_norm(ps, 1, 2) == 0); /* no gradient yet: norm 0, as PyTorch */
    tg_tensor *b = add(ps, "b", TG_F64, "4", NULL);
    set_grad(a, clip_ga);
    set_grad(b, clip_gb);
    ck_assert_int_eq(tg_clip_grad_value(ps, 0.75), TG_OK);
    for (int k = 0; k < 6; k++)
        near(tu_at(tg_tensor_grad(a), k), clip_value[k], 0, "value a", k);
    for (int k = 0; k < 4; k++)
        near(tu_at(tg_tensor_grad(b), k), clip_value[6 + k], 0, "value b", k);
    ck_assert(tg_clip_grad_norm(ps, -1, 2) == -1);
    ck_assert_str_eq(tg_last_error()->msg, "clip_grad_norm: max_norm -1, must be >= 0");
    ck_assert(tg_clip_grad_norm(ps, 1, 0) == -1);
    ck_assert_str_eq(tg_last_error()->msg,
                     "clip_grad_norm: norm_type 0, must be > 0 (INFINITY for the largest "
                     "magnitude)");
    ck_assert(tg_clip_grad_norm(NULL, 1, 2) == -1);
    ck_assert_str_eq(tg_last_error()->msg, "clip_grad_norm: NULL registry");
    expect_error(tg_clip_grad_value(ps, NAN), TG_ERR_ARG,
                 "clip_grad_value: clip nan, must be >= 0");
    for (int k = 0; k < 6; k++) /* the refused calls left the gradients alone */
        near(tu_at(tg_tensor_grad(a), k), clip_value[k], 0, "untouched a", k);
    tg_params_free(ps);
}
END_TEST

/* ====== Parameter groups: w decayed, b and norm.weight not ====== */

/* The registry of the group cases, in the reference's order. */
static tg_params *group_params(tg_tensor **w, tg_tensor **b, tg_tensor **n)
{
    tg_params *ps = tg_params_new();
    *w = add(ps, "w", TG_F64, "2x3", pg_w0);
    *b = add(ps, "b", TG_F64, "3", pg_b0);
    *n = add(ps, "norm.weight", TG_F64, "3", pg_n0);
    return ps;
}

/* "no_decay" takes b by name and norm.weight by pattern; w stays in "default". */
static tg_optim *group_optim(tg_params *ps, tg_optim_kind kind)
{
    static const double lr[] = {
        [TG_OPTIM_SGD] = 0.1, [TG_OPTIM_ADAM] = 0.01, [TG_OPTIM_ADAMW] = 0.01};
    static const double rest[] = {
        [TG_OPTIM_SGD] = 0.2, [TG_OPTIM_ADAM] = 0.03, [TG_OPTIM_ADAMW] = 0.03};
    tg_optim_opts opts = {.kind = kind,
                          .lr = lr[kind],
                          .weight_decay = kind == TG_OPTIM_SGD ? 0.05 : 0.1,
                          .momentum = kind == TG_OPTIM_SGD ? 0.9 : 0};
    tg_param_group g = {.name = "no_decay",
                        .match = (const char *[]){"*.bias", "norm.*", NULL},
                        .params = (const char *[]){"b", NULL},
                        .lr = rest[kind],
                        .set = TG_GROUP_SET_LR | TG_GROUP_SET_WEIGHT_DECAY};
    tg_optim *o = tg_optim_new_groups(ps, &opts, &g, 1);
    ck_assert_ptr_nonnull(o);
    return o;
}

static void group_step(tg_optim *o, tg_tensor *w, tg_tensor *b, tg_tensor *n, int t)
{
    const double *g = pg_grads + t * 12;
    set_grad(w, g);
    set_grad(b, g + 6);
    set_grad(n, g + 9);
    ck_assert_int_eq(tg_optim_step(o), TG_OK);
}

static void expect_group_result(tg_tensor *w, tg_tensor *b, tg_tensor *n, const double *want,
                                const char *what)
{
    for (int k = 0; k < 6; k++)
        near(tu_at(w, k), want[k], 1e-14, what, k);
    for (int k = 0; k < 3; k++) {
        near(tu_at(b, k), want[6 + k], 1e-14, what, 6 + k);
        near(tu_at(n, k), want[9 + k], 1e-14, what, 9 + k);
    }
}

START_TEST(test_group_steps)
{
    static const double *const want[] = {pg_sgd, pg_adam, pg_adamw};
    tg_tensor *w, *b, *n;
    tg_params *ps = group_params(&w, &b, &n);
    tg_optim *o = group_optim(ps, (tg_optim_kind)_i);
    ck_assert_str_eq(tg_optim_group_name(o, 0), "no_decay");
    ck_assert_str_eq(tg_optim_group_name(o, 1), "default");
    ck_assert_int_eq(tg_optim_group_of(o, "w"), 1);
    ck_assert_int_eq(tg_optim_group_of(o, "b"), 0);
    ck_assert_int_eq(tg_optim_group_of(o, "norm.weight"), 0);
    for (int t = 0; t < 3; t++)
        group_step(o, w, b, n, t);
    expect_group_result(w, b, n, want[_i], "group step");
    tg_optim_free(o);
    tg_params_free(ps);
}
END_TEST

/* Adam over two runs, saved and resumed after the first step, with the
 * no-decay group's rate changed in between (as a plateau would) and put
 * back: the state, the group rates included, comes back from the file. */
START_TEST(test_group_resume)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/opt.safetensors", tu_scratch());
    tg_tensor *w, *b, *n;
    tg_params *ps = group_params(&w, &b, &n);
    tg_optim *o = group_optim(ps, TG_OPTIM_ADAM);
    group_step(o, w, b, n, 0);
    ck_assert_int_eq(tg_optim_set_group_lr(o, 0, 0.5), TG_OK);
    tg_params *sets[2] = {ps, tg_optim_state(o)};
    tg_error err = {0};
    ck_assert_ptr_nonnull(tg_params_get(sets[1], "optim.group.no_decay.lr"));
    ck_assert_ptr_nonnull(tg_params_get(sets[1], "optim.group.default.lr"));
    ck_assert_int_eq(tg_checkpoint_save(path, sets, 2, &err), TG_OK);

    tg_tensor *w2, *b2, *n2;
    tg_params *ps2 = group_params(&w2, &b2, &n2);
    tg_optim *o2 = group_optim(ps2, TG_OPTIM_ADAM);
    tg_params *sets2[2] = {ps2, tg_optim_state(o2)};
    ck_assert_int_eq(tg_checkpoint_load(path, sets2, 2, &err), TG_OK);
    ck_assert(tg_optim_group_lr(o2, 0) == 0.5);
    ck_assert(tg_optim_group_base_lr(o2, 0) == 0.03);
    ck_assert(tg_optim_group_lr(o2, 1) == 0.01);
    ck_assert_int_eq(tg_optim_set_group_lr(o2, 0, 0.03), TG_OK);
    for (int t = 1; t < 3; t++)
        group_step(o2, w2, b2, n2, t);
    expect_group_result(w2, b2, n2, pg_adam, "resumed");
    tg_optim_free(o);
    tg_optim_free(o2);
    tg_params_free(ps);
    tg_params_free(ps2);
}
END_TEST

START_TEST(test_group_errors)
{
    tg_tensor *w, *b, *n;
    tg_params *ps = group_params(&w, &b, &n);
    const tg_optim_opts adam = {.kind = TG_OPTIM_ADAM, .lr = 0.01};
    const char *const both[] = {"b", NULL}, *const ghost[] = {"bias", NULL};
    struct {
        tg_param_group g[2];
        int n;
        const char *msg;
    } cases[] = {
        {{{.name = ""}}, 1, "optim_new: group 0 has no name"},
        {{{.name = "default"}},
         1,
         "optim_new: group 0 is called 'default', the name of the group of the parameters no "
         "group takes"},
        {{{.name = "x"}, {.name = "x"}}, 2, "optim_new: groups 0 and 1 are both 'x'"},
        {{{.name = "x", .params = ghost}},
         1,
         "optim_new: group 'x' lists 'bias', which is not in the registry"},
        {{{.name = "x", .params = both}, {.name = "y", .params = both}},
         2,
         "optim_new: 'b' is listed by groups 'x' and 'y'; a parameter belongs to one group"},
        {{{.name = "x", .lr = -1, .set = TG_GROUP_SET_LR}},
         1,
         "optim_new: group 'x': learning rate -1, must be finite and >= 0"},
        {{{.name = "x", .weight_decay = NAN, .set = TG_GROUP_SET_WEIGHT_DECAY}},
         1,
         "optim_new: group 'x': weight decay nan, must be finite and >= 0"},
        {{{.name = "x", .set = 4}}, 1, "optim_new: group 'x': unknown bits 0x4 in 'set'"},
        {{{.name = "x"}}, -1, "optim_new: -1 parameter groups"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ck_assert_ptr_null(tg_optim_new_groups(ps, &adam, cases[i].g, cases[i].n));
        ck_assert_int_eq(tg_last_error()->status, TG_ERR_ARG);
        ck_assert_str_eq(tg_last_error()->msg, cases[i].msg);
    }
    tg_optim *o = tg_optim_new(ps, &adam);
    ck_assert_int_eq(tg_optim_group_count(o), 1);
    ck_assert_uint_eq(tg_params_count(tg_optim_state(o)), 7); /* step, m and v: no rate */
    ck_assert(isnan(tg_optim_group_lr(o, 1)));
    ck_assert_str_eq(tg_last_error()->msg, "optim_group_lr: group 1, the optimizer has 1");
    ck_assert_int_eq(tg_optim_group_of(o, "nope"), -1);
    ck_assert_str_eq(tg_last_error()->msg, "optim_group_of: the optimizer has no parameter 'nope'");
    expect_error(tg_optim_set_group_lr(o, 0, INFINITY), TG_ERR_ARG,
                 "optim_set_group_lr: learning rate inf, must be finite and >= 0");
    ck_assert_int_eq(tg_optim_set_lr(o, 0.5), TG_OK);
    ck_assert(tg_optim_group_lr(o, 0) == 0.5 && tg_optim_group_base_lr(o, 0) == 0.01);
    tg_optim_free(o);
    tg_params_free(ps);
}
END_TEST

/* ====== No-grad tapes ====== */

/* x [64, 32] -> 128 ReLU -> 10, softmax cross-entropy; returns the loss. */
static tg_tensor *record_mlp(tg_tape *tp, tg_mlp *m, tg_tensor *x, tg_tensor *y)
{
    tg_tensor *loss = tg_softmax_cross_entropy(tp, tg_mlp_forward(tp, m, x), y);
    ck_assert_int_eq(tg_tape_status(tp), TG_OK);
    return loss;
}

START_TEST(test_no_grad_tape)
{
    tg_rng r;
    tg_rng_seed(&r, 5);
    tg_params *ps = tg_params_new();
    tg_mlp *m = tg_mlp_new(ps, "mlp", 2, (const int64_t[]){32, 128, 10},
                           (const tg_activation[]){TG_ACT_RELU, TG_ACT_NONE}, TG_F64, &r);
    ck_assert_ptr_nonnull(m);
    tg_tensor *x = tu_random(TG_F64, "64x32", -1, 1, 3);
    tg_tensor *y = tu_random(TG_F64, "64x10", 0, 0.2, 4);
    tg_tape *train = tg_tape_new(), *eval = tg_tape_new();
    tg_tensor *loss = record_mlp(train, m, x, y);
    ck_assert_int_eq(tg_backward(train, loss), TG_OK);
    tg_tape_set_grad(eval, false);
    tg_tensor *eloss = record_mlp(eval, m, x, y);
    ck_assert(tu_at(eloss, 0) == tu_at(loss, 0));
    ck_assert(!tg_tensor_requires_grad(eloss));

    /* Backward is refused and makes no gradient buffer. */
    tg_params_zero_grad(ps);
    ck_assert_int_eq(tg_backward(eval, eloss), TG_ERR_STATE);
    ck_assert_str_eq(tg_tape_error(eval),
                     "backward: the output [] does not depend on any tensor that requires grad");
    ck_assert_ptr_null(tg_tensor_grad(eloss));
    ck_assert_int_eq(tg_tape_status(eval), TG_OK); /* refused, not failed: still replayable */
    for (size_t i = 0; i < eval->n_nodes; i++) {
        ck_assert_ptr_null(eval->nodes[i].gin);
        ck_assert_ptr_null(eval->nodes[i].out->grad);
    }

    /* Its memory: the outputs only, against outputs, gradients and slots. */
    size_t train_bytes = tg__arena_bytes(&train->arena), eval_bytes = tg__arena_bytes(&eval->arena);
    ck_assert_msg(eval_bytes * 3 < train_bytes * 2, "eval %zu bytes, train %zu", eval_bytes,
                  train_bytes);

    /* Replay on new data gives the training tape's forward values. */
    tg_tape_reset(eval);
    eloss = record_mlp(eval, m, x, y); /* the setting outlives a reset */
    ck_assert(!tg_tensor_requires_grad(eloss));
    double *xv = tg_tensor_data(x);
    for (int64_t k = 0; k < tg_tensor_numel(x); k++)
        xv[k] = -xv[k];
    ck_assert_int_eq(tg_tape_replay(train), TG_OK);
    ck_assert_int_eq(tg_tape_replay(eval), TG_OK);
    ck_assert(tu_at(eloss, 0) == tu_at(loss, 0));

    /* Turned back on, later ops track gradients again, past the nodes recorded without. */
    tg_tape_set_grad(eval, true);
    tg_tensor *w = tg_params_at(ps, 0, NULL);
    tg_tensor *s = tg_sum(eval, tg_mul(eval, w, w));
    ck_assert(tg_tensor_requires_grad(s));
    tg_params_zero_grad(ps);
    ck_assert_int_eq(tg_backward(eval, s), TG_OK);
    ck_assert(tu_at(tg_tensor_grad(w), 0) == 2 * tu_at(w, 0));
    tg_tape_free(train);
    tg_tape_free(eval);
    tg_tensor_free(x);
    tg_tensor_free(y);
    tg_mlp_free(m);
    tg_params_free(ps);
}
END_TEST

/* ====== Metrics ====== */

START_TEST(test_metrics_reference)
{
    tg_tensor *s = tu_lit(TG_F64, "12x5", metric_scores);
    tg_tensor *y = tg_tensor_from(TG_I64, 1, (const int64_t[]){12}, metric_labels);
    for (int k = 1; k <= 3; k++)
        ck_assert_int_eq(tg_topk_correct(s, y, k, -1), metric_topk_correct[k - 1]);
    ck_assert(tg_accuracy(s, y) == (double)metric_topk_correct[0] / 12);
    tg_tensor *cm = tg_tensor_new(TG_I64, 2, (const int64_t[]){5, 5});
    ck_assert_int_eq(tg_confusion_add(cm, s, y, -1), TG_OK);
    const int64_t *c = tg_tensor_cdata(cm);
    for (int k = 0; k < 25; k++)
        ck_assert_int_eq(c[k], metric_confusion[k]);
    /* The same labels one-hot give the same counts. */
    tg_tensor *oh = tg_one_hot(y, 5, TG_F32);
    ck_assert_int_eq(tg_topk_correct(s, oh, 2, -1), metric_topk_correct[1]);
    tg_tensor_free(cm);
    tg_tensor_free(oh);
    tg_tensor_free(s);
    tg_tensor_free(y);
}
END_TEST

/* Ties go to the lower class, NaN ranks highest, 'rows' limits the count. */
START_TEST(test_metrics_exact)
{
    static const double v[] = {
        1, 3,   3, 0, /* tie of 1 and 2: argmax 1 */
        2, 2,   2, 2, /* all tied: argmax 0 */
        0, NAN, 5, 1, /* NaN counts as the largest */
        4, 3,   2, 1, /* a padded row past 'rows' in the second half */
    };
    tg_tensor *s = tu_lit(TG_F32, "4x4", v);
    tg_tensor *y = tg_tensor_from(TG_I64, 1, (const int64_t[]){4}, (const int64_t[]){2, 3, 1, 3});
    ck_assert_int_eq(tg_topk_correct(s, y, 1, 3), 1);  /* row 2 */
    ck_assert_int_eq(tg_topk_correct(s, y, 2, 3), 2);  /* + row 0's label 2 ranks second */
    ck_assert_int_eq(tg_topk_correct(s, y, 3, -1), 2); /* row 1's label 3 ranks 4th; row 3's 4th */
    ck_assert_int_eq(tg_topk_correct(s, y, 4, -1), 4);
    ck_assert(tg_accuracy(s, y) == 0.25);
    tg_tensor *cm = tg_tensor_new(TG_I64, 2, (const int64_t[]){4, 4});
    ck_assert_int_eq(tg_confusion_add(cm, s, y, 3), TG_OK);
    ck_assert_int_eq(tg_confusion_add(cm, s, y, 3), TG_OK); /* accumulates */
    const int64_t *c = tg_tensor_cdata(cm);
    static const int64_t want[16] = {0, 0, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 2, 0, 0, 0};
    for (int k = 0; k < 16; k++)
        ck_assert_int_eq(c[k], want[k]);
    double p[4], r[4], f[4];
    int64_t n[4];
    ck_assert_int_eq(tg_class_report(cm, p, r, f, n), TG_OK);
    /* class 0: predicted twice, never right; class 1: 2 right of 4 predicted and 2 true;
     * classes 2 and 3: never predicted, 2 true each */
    static const double wp[4] = {0, 0.5, 0, 0}, wr[4] = {0, 1, 0, 0}, wf[4] = {0, 2.0 / 3, 0, 0};
    static const int64_t wn[4] = {0, 2, 2, 2};
    for (int k = 0; k < 4; k++) {
        ck_assert(p[k] == wp[k] && r[k] == wr[k] && fabs(f[k] - wf[k]) < 1e-15);
        ck_assert_int_eq(n[k], wn[k]);
    }
    tg_tensor_free(cm);
    tg_tensor_free(s);
    tg_tensor_free(y);
}
END_TEST

START_TEST(test_metrics_report_values)
{
    /* 3 classes: precision 3/4, 1/2, 0/1; recall 3/5, 1/1, 0/1. */
    static const int64_t m[9] = {3, 1, 1, 0, 1, 0, 1, 0, 0};
    tg_tensor *cm = tg_tensor_from(TG_I64, 2, (const int64_t[]){3, 3}, m);
    double p[3], r[3], f[3];
    ck_assert_int_eq(tg_class_report(cm, p, r, f, NULL), TG_OK);
    ck_assert(p[0] == 0.75 && p[1] == 0.5 && p[2] == 0);
    ck_assert(r[0] == 0.6 && r[1] == 1 && r[2] == 0);
    ck_assert(fabs(f[0] - 2 * 0.75 * 0.6 / 1.35) < 1e-15 && fabs(f[1] - 2.0 / 3) < 1e-15);
    ck_assert(f[2] == 0);
    tg_tensor_free(cm);
}
END_TEST

START_TEST(test_metrics_errors)
{
    tg_tensor *s = tu_random(TG_F64, "3x4", -1, 1, 1);
    tg_tensor *y = tg_tensor_from(TG_I64, 1, (const int64_t[]){3}, (const int64_t[]){0, 4, 1});
    tg_tensor *y2 = tg_tensor_new(TG_I64, 1, (const int64_t[]){2});
    tg_tensor *cm = tg_tensor_new(TG_I64, 2, (const int64_t[]){4, 4});
    tg_tensor *cm_bad = tg_tensor_new(TG_F64, 2, (const int64_t[]){4, 4});
    ck_assert_int_eq(tg_topk_correct(s, y, 1, -1), -1);
    ck_assert_str_eq(tg_last_error()->msg, "topk_correct: label 4 of row 1 outside [0, 4)");
    ck_assert_int_ge(tg_topk_correct(s, y, 1, 1), 0); /* the bad row left out */
    ck_assert_int_eq(tg_topk_correct(s, y, 5, 1), -1);
    ck_assert_str_eq(tg_last_error()->msg, "topk_correct: k 5 outside 1..4");
    ck_assert_int_eq(tg_topk_correct(s, y, 1, 4), -1);
    ck_assert_str_eq(tg_last_error()->msg, "topk_correct: rows 4 outside 0..3 (or -1 for all)");
    ck_assert(tg_accuracy(s, y2) == -1);
    ck_assert_str_eq(tg_last_error()->msg,
                     "topk_correct: labels i64 [2] do not fit scores [3x4]: i64 [N] indices or "
                     "a one-hot [N, C] of the scores' N and C");
    expect_error(tg_confusion_add(cm, s, y, -1), TG_ERR_ARG,
                 "confusion_add: label 4 of row 1 outside [0, 4)");
    const int64_t *c = tg_tensor_cdata(cm);
    for (int k = 0; k < 16; k++) /* refused: untouched */
        ck_assert_int_eq(c[k], 0);
    expect_error(tg_confusion_add(cm_bad, s, y, 1), TG_ERR_ARG,
                 "confusion_add: the matrix [4x4] must be i64 [4, 4]");
    expect_error(tg_class_report(cm_bad, NULL, NULL, NULL, NULL), TG_ERR_ARG,
                 "class_report: the matrix [4x4] must be i64 [C, C]");
    ck_assert_int_eq(tg_topk_correct(y, y, 1, -1), -1);
    ck_assert_str_eq(tg_last_error()->msg,
                     "topk_correct: scores i64 [3] must be f32 or f64 [N, C] with C >= 1");
    tg_tensor_free(s);
    tg_tensor_free(y);
    tg_tensor_free(y2);
    tg_tensor_free(cm);
    tg_tensor_free(cm_bad);
}
END_TEST

static void scratch_setup(void) { tu_scratch_make("tg_kit"); }

int main(void)
{
    Suite *s = suite_create("nn_kit");
    TCase *tc = tcase_create("schedules");
    tcase_add_loop_test(tc, test_schedule_steps, 0, sizeof sched_cases / sizeof *sched_cases);
    tcase_add_test(tc, test_schedule_resume);
    tcase_add_test(tc, test_schedule_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("clipping");
    tcase_add_loop_test(tc, test_clip_norm, 0, 16);
    tcase_add_test(tc, test_clip_value_and_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("groups");
    tcase_add_checked_fixture(tc, scratch_setup, tu_scratch_remove);
    tcase_add_loop_test(tc, test_group_steps, 0, 3);
    tcase_add_test(tc, test_group_resume);
    tcase_add_test(tc, test_group_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("no_grad");
    tcase_add_test(tc, test_no_grad_tape);
    suite_add_tcase(s, tc);
    tc = tcase_create("metrics");
    tcase_add_test(tc, test_metrics_reference);
    tcase_add_test(tc, test_metrics_exact);
    tcase_add_test(tc, test_metrics_report_values);
    tcase_add_test(tc, test_metrics_errors);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
