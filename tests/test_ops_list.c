/*
 * Every row of the op list (tests/oplist.h), with no per-op code: the VJP
 * against central differences in F64 on each shape list, replay on new data
 * equal bit for bit to a fresh recording (values and gradients, F64 and F32),
 * the F32 forward within rounding of the F64 one on the same values, and an
 * explain rule for every float input of every node the row records. The
 * op-specific checks (exact values, messages) stay in the family suites.
 */
#include "testutil.h"

#include "oplist.h"

#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static void free_all(tg_tensor **t, int n)
{
    for (int i = 0; i < n; i++) tg_tensor_free(t[i]);
}

static size_t bytes_of(const tg_tensor *t)
{
    return (size_t)tg_tensor_numel(t) * (tg_tensor_dtype(t) == TG_F32 ? 4 : 8);
}

/* Inputs of op's shape list s in dtype dt from 'seed', asserted to exist. */
static int make_inputs(const tu_op *op, int s, tg_dtype dt, uint64_t seed, tg_tensor **in,
                       char *shapes, size_t size)
{
    ck_assert(tu_op_shape_list(op, s, shapes, size));
    int n = tu_op_inputs(op, shapes, dt, seed, in);
    ck_assert_msg(n >= 1, "%s: malformed shape list \"%s\"", op->id, shapes);
    return n;
}

/* ====== Gradient check ====== */

/* Whether op's result on shape list s carries a gradient (an I64 or constant one does not). */
static bool differentiable(const tu_op *op, int s)
{
    char shapes[256];
    tg_tensor *in[TU_MAX_INPUTS];
    int n = make_inputs(op, s, TG_F64, 1000 + 10 * (uint64_t)s, in, shapes, sizeof shapes);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = op->record(tp, in);
    ck_assert_msg(y != NULL, "%s on %s: %s", op->id, shapes, tg_tape_error(tp));
    bool d = tg_tensor_requires_grad(y);
    tg_tape_free(tp);
    free_all(in, n);
    return d;
}

START_TEST(gradcheck_row)
{
    const tu_op *op = &tu_ops[_i];
    char shapes[256];
    int64_t checked = 0;
    bool any = false;
    for (int s = 0; tu_op_shape_list(op, s, shapes, sizeof shapes); s++) {
        if (!differentiable(op, s)) continue;
        any = true;
        tg_gradcheck_report r;
        tg_status st = tu_op_gradcheck(op, s, &r);
        ck_assert_msg(st == TG_OK, "%s on %s: gradcheck returned %s", op->id, shapes,
                      tg_status_str(st));
        ck_assert_msg(r.passed, "%s on %s: input %d[%lld] analytic %.17g numeric %.17g", op->id,
                      shapes, r.worst_input, (long long)r.worst_index, r.analytic, r.numeric);
        checked += r.n_checked;
    }
    ck_assert_msg(!any || checked > 0, "%s: no element gradchecked", op->id);
}
END_TEST

/* ====== Second order: every op's recorded VJP (vjp_graph) ====== */

START_TEST(gradgradcheck_row)
{
    const tu_op *op = &tu_ops[_i];
    char shapes[256];
    /* A row drawn with ties sits where maximum's and minimum's first
     * derivatives jump (the ½ rule is the mean of the one-sided slopes), so
     * there is no second derivative for differences to approach; the rows
     * off ties check those ops, test_ops_elementwise.c the recorded VJP at ties. */
    if (op->values.step > 0) return;
    for (int s = 0; tu_op_shape_list(op, s, shapes, sizeof shapes); s++) {
        if (!differentiable(op, s)) continue;
        tg_gradcheck_report r;
        tg_status st = tu_op_gradgradcheck(op, s, &r);
        ck_assert_msg(st == TG_OK, "%s on %s: gradgradcheck returned %s: %s", op->id, shapes,
                      tg_status_str(st), r.msg);
        ck_assert_msg(r.passed, "%s on %s: %s", op->id, shapes, r.msg);
    }
}
END_TEST

/* ====== Replay on new data equals a fresh recording ====== */

/* Records op on in (and the probe and a backward when it has a gradient);
 * returns the output. */
static tg_tensor *record_and_sweep(tg_tape *tp, const tu_op *op, tg_tensor **in, tg_tensor **loss)
{
    tg_tensor *y = op->record(tp, in);
    ck_assert_msg(y != NULL, "%s: %s", op->id, tg_tape_error(tp));
    *loss = tg_tensor_requires_grad(y) ? tu_probe(tp, y) : NULL;
    if (*loss) ck_assert_int_eq(tg_backward(tp, *loss), TG_OK);
    return y;
}

static void expect_same_bits(const tg_tensor *a, const tg_tensor *b, const char *what,
                             const tu_op *op, const char *shapes, tg_dtype dt)
{
    ck_assert_msg(a && b && tg_tensor_numel(a) == tg_tensor_numel(b), "%s %s %s: %s missing",
                  op->id, shapes, tu_dtype_name(dt), what);
    ck_assert_msg(memcmp(tg_tensor_cdata(a), tg_tensor_cdata(b), bytes_of(a)) == 0,
                  "%s %s %s: %s after replay differs from a fresh recording", op->id, shapes,
                  tu_dtype_name(dt), what);
}

static void replay_case(const tu_op *op, int s, tg_dtype dt)
{
    char shapes[256];
    tg_tensor *in[TU_MAX_INPUTS], *next[TU_MAX_INPUTS], *grads[TU_MAX_INPUTS] = {NULL};
    int n = make_inputs(op, s, dt, 2000 + 10 * (uint64_t)s, in, shapes, sizeof shapes);
    make_inputs(op, s, dt, 3000 + 10 * (uint64_t)s, next, shapes, sizeof shapes);
    tg_tape *rec = tg_tape_new(), *fresh = tg_tape_new();
    tg_tensor *loss, *loss2;
    tg_tensor *y = record_and_sweep(rec, op, in, &loss);

    for (int i = 0; i < n; i++) { /* the next mini-batch */
        memcpy(tg_tensor_data(in[i]), tg_tensor_cdata(next[i]), bytes_of(in[i]));
        tg_tensor_zero_grad(in[i]);
    }
    tu_rng(); /* a row drawing from it draws what a fresh recording draws */
    ck_assert_int_eq(tg_tape_replay(rec), TG_OK);
    if (loss) ck_assert_int_eq(tg_backward(rec, loss), TG_OK);
    for (int i = 0; i < n; i++) {
        const tg_tensor *g = tg_tensor_grad(in[i]);
        if (g) grads[i] = tg_tensor_from(dt, tg_tensor_rank(g), tg_tensor_shape(g),
                                         tg_tensor_cdata(g));
        tg_tensor_zero_grad(in[i]);
    }

    tg_tensor *y2 = record_and_sweep(fresh, op, in, &loss2);
    expect_same_bits(y, y2, "the output", op, shapes, dt);
    for (int i = 0; i < n; i++)
        if (grads[i]) expect_same_bits(grads[i], tg_tensor_grad(in[i]), "a gradient", op, shapes, dt);
    tg_tape_free(rec);
    tg_tape_free(fresh);
    free_all(in, n);
    free_all(next, n);
    for (int i = 0; i < n; i++) tg_tensor_free(grads[i]);
}

START_TEST(replay_row)
{
    const tu_op *op = &tu_ops[_i];
    char shapes[256];
    for (int s = 0; tu_op_shape_list(op, s, shapes, sizeof shapes); s++) {
        replay_case(op, s, TG_F64);
        replay_case(op, s, TG_F32);
    }
}
END_TEST

/* ====== F32 and F64 agree ====== */

START_TEST(f32_matches_f64)
{
    const tu_op *op = &tu_ops[_i];
    char shapes[256];
    for (int s = 0; tu_op_shape_list(op, s, shapes, sizeof shapes); s++) {
        tg_tensor *in32[TU_MAX_INPUTS], *in64[TU_MAX_INPUTS];
        uint64_t seed = 4000 + 10 * (uint64_t)s;
        int n = make_inputs(op, s, TG_F32, seed, in32, shapes, sizeof shapes);
        make_inputs(op, s, TG_F64, seed, in64, shapes, sizeof shapes);
        for (int i = 0; i < n; i++) /* the same numbers in both: the F32 ones */
            for (int64_t k = 0; k < tg_tensor_numel(in64[i]); k++)
                tu_put(in64[i], k, tu_at(in32[i], k));
        tg_tape *t32 = tg_tape_new(), *t64 = tg_tape_new();
        tg_tensor *y32 = op->record(t32, in32), *y64 = op->record(t64, in64);
        ck_assert_msg(y32 && y64, "%s on %s: %s%s", op->id, shapes, tg_tape_error(t32),
                      tg_tape_error(t64));
        int64_t bad;
        ck_assert_msg(tu_close(y32, y64, 1e-5, &bad), "%s on %s: [%lld] f32 %.9g, f64 %.17g",
                      op->id, shapes, (long long)bad, bad >= 0 ? tu_at(y32, bad) : 0.0,
                      bad >= 0 ? tu_at(y64, bad) : 0.0);
        tg_tape_free(t32);
        tg_tape_free(t64);
        free_all(in32, n);
        free_all(in64, n);
    }
}
END_TEST

/* ====== Explain rules ====== */

/* Every node the row records that has a VJP names a rule for each float input,
 * and the explained sweep falls back to "vjp_<op>(...)" nowhere. */
START_TEST(explain_rules_for_every_input)
{
    const tu_op *op = &tu_ops[_i];
    char shapes[256];
    tg_tensor *in[TU_MAX_INPUTS];
    int n = make_inputs(op, 0, TG_F64, 5000, in, shapes, sizeof shapes);
    tg_tape *tp = tg_tape_new();
    tg_tensor *loss, *y = record_and_sweep(tp, op, in, &loss);
    (void)y;
    size_t own = tg_tape_size(tp) - (loss ? 1 : 0); /* the probe is last */
    for (size_t k = 0; k < own; k++) {
        const tg_op_def *def = tp->nodes[k].def;
        if (!def->vjp) continue;
        int n_rules = 0;
        while (def->rules && def->rules[n_rules]) n_rules++;
        for (int j = 0; j < tp->nodes[k].n_in; j++)
            ck_assert_msg((def->index_inputs >> j & 1u) || j < n_rules,
                          "%s: op %s has no explain rule for input %d", op->id, def->name, j);
    }
    if (loss) {
        FILE *f = tmpfile();
        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(tg_tape_explain(tp, f, 0), TG_OK);
        rewind(f);
        char line[1024];
        while (fgets(line, sizeof line, f))
            ck_assert_msg(!strstr(line, "vjp_"), "%s: explained without a rule: %s", op->id, line);
        fclose(f);
    }
    tg_tape_free(tp);
    free_all(in, n);
}
END_TEST

static Suite *ops_list_suite(void)
{
    Suite *s = suite_create("ops_list");
    TCase *tc = tcase_create("list");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, gradcheck_row, 0, tu_n_ops);
    tcase_add_loop_test(tc, gradgradcheck_row, 0, tu_n_ops);
    tcase_add_loop_test(tc, replay_row, 0, tu_n_ops);
    tcase_add_loop_test(tc, f32_matches_f64, 0, tu_n_ops);
    tcase_add_loop_test(tc, explain_rules_for_every_input, 0, tu_n_ops);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run(ops_list_suite()); }
