/*
 * The max_abs_err column of docs/ops.md: tg_gradcheck with default options in
 * F64 on every row of the op list (tests/oplist.h) and every shape list of
 * the row, printing the largest error per op over its rows. Each op's output
 * goes through tu_probe, a fixed weighted sum, so every element of every
 * input's gradient is compared, with weights that would expose a transposed
 * or permuted VJP. Fails when any check fails. Run it with
 *
 *     meson test -C build gradcheck_report -v
 */
#include "testutil.h"

#include "oplist.h"

#include <stdio.h>
#include <string.h>

/* Whether op's result on 'shapes' carries a gradient: an I64 or constant result
 * (argmax, full_like) has none to check. A row that fails to record counts as
 * differentiable, so its gradcheck reports the failure. */
static bool differentiable(const tu_op *op, const char *shapes)
{
    tg_tensor *in[TU_MAX_INPUTS];
    int n = tu_op_inputs(op, shapes, TG_F64, 1, in);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = n >= 0 && tp ? op->record(tp, in) : NULL;
    bool d = !y || tg_tensor_requires_grad(y);
    tg_tape_free(tp);
    for (int i = 0; i < n; i++) tg_tensor_free(in[i]);
    return d;
}

/* Gradchecks every shape list of op into *worst; returns the failures. */
static int check_row(const tu_op *op, tg_gradcheck_report *worst)
{
    int failures = 0;
    char shapes[256];
    for (int s = 0; tu_op_shape_list(op, s, shapes, sizeof shapes); s++) {
        if (!differentiable(op, shapes)) continue;
        tg_gradcheck_report r = {0};
        tg_status st = tu_op_gradcheck(op, s, &r);
        if (st != TG_OK || !r.passed) {
            printf("FAIL %s on %s: %s\n", op->id, shapes, tg_status_str(st));
            failures++;
        }
        if (r.max_abs_err > worst->max_abs_err) worst->max_abs_err = r.max_abs_err;
        if (r.max_rel_err > worst->max_rel_err) worst->max_rel_err = r.max_rel_err;
        worst->n_checked += r.n_checked;
    }
    return failures;
}

int main(void)
{
    int failures = 0;
    for (int i = 0; i < tu_n_ops; i++) {
        bool first = true; /* the op's first row: the rows of an op follow each other or not */
        for (int j = 0; j < i && first; j++) first = strcmp(tu_ops[j].name, tu_ops[i].name) != 0;
        if (!first) continue;
        tg_gradcheck_report worst = {0};
        int rows = 0;
        for (int j = i; j < tu_n_ops; j++)
            if (strcmp(tu_ops[j].name, tu_ops[i].name) == 0) {
                failures += check_row(&tu_ops[j], &worst);
                rows++;
            }
        printf("%-24s max_abs_err %.1e  max_rel_err %.1e  (%lld elements, %d rows)\n",
               tu_ops[i].name, worst.max_abs_err, worst.max_rel_err, (long long)worst.n_checked,
               rows);
    }
    return failures != 0;
}
