/*
 * Second and third derivatives against PyTorch. tests/data/torch_higher_ref.json,
 * written by tools/torch_higher_ref.py with Debian's python3-torch, holds per
 * case a function of named float64 inputs (some requiring grad: the wrt
 * list), directions v and u for every wrt input, and two points. At each
 * point a scalar case has torch's value f, gradient g, Hessian-vector product
 * H v (the gradient of <g, v>) and third derivative T[v, u] (the gradient of
 * <H v, u>), all from torch.autograd.grad with create_graph=True; a tensor
 * case has its output and the forward-mode product J v.
 *
 * Here each case's function is recorded through the public API from the
 * table below at the first point; g, H v and T[v, u] come from tg_grad with
 * create_graph (so all three are recorded ops), J v from tg_jvp. Then the
 * second point's values are written into the leaves and the tape replayed:
 * the recorded derivatives must follow. Every element must agree within
 * REF_RTOL of torch's value, with an absolute floor of REF_RTOL times
 * REF_FLOOR times the largest element of the tensor (elements that cancel to
 * near zero carry the rounding of the large terms they came from). CI needs
 * no torch: the numbers are committed data.
 */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define REF_RTOL  1e-12
#define REF_FLOOR 1e-2

#define MAX_INPUTS 8

static json_t *ref_doc;
static int n_cases;

/* ====== The functions, as in tools/torch_higher_ref.py ====== */

/* in[] follows the order of the case's "inputs". */
typedef tg_tensor *(*ref_fn)(tg_tape *tp, tg_tensor *const *in);

static tg_tensor *mlp_out(tg_tape *tp, tg_tensor *const *in)
{
    tg_tensor *h = tg_tanh(tp, tg_add(tp, tg_matmul(tp, in[0], in[1]), in[2]));
    return tg_add(tp, tg_matmul(tp, h, in[3]), in[4]);
}

static tg_tensor *mlp_loss(tg_tape *tp, tg_tensor *const *in)
{
    tg_tensor *r = tg_sub(tp, tg_tanh(tp, mlp_out(tp, in)), in[5]);
    return tg_mean(tp, tg_mul(tp, r, r));
}

static tg_tensor *tanh_cube_x(tg_tape *tp, tg_tensor *const *in)
{
    tg_tensor *t = tg_tanh(tp, in[0]);
    return tg_sum(tp, tg_mul(tp, tg_mul(tp, tg_mul(tp, t, t), t), in[0]));
}

static tg_tensor *matmul_chain(tg_tape *tp, tg_tensor *const *in)
{
    tg_tensor *ab = tg_matmul(tp, in[0], in[1]);
    tg_tensor *first = tg_sum(tp, tg_mul(tp, tg_tanh(tp, tg_matmul(tp, ab, in[2])), in[3]));
    return tg_add(tp, first, tg_scale(tp, tg_sum(tp, tg_mul(tp, ab, ab)), 0.5));
}

static tg_tensor *broadcast(tg_tape *tp, tg_tensor *const *in)
{
    tg_tensor *t = tg_tanh(tp, tg_add(tp, tg_mul(tp, in[0], in[1]), in[2]));
    return tg_mean(tp, tg_mul(tp, t, tg_sub(tp, in[0], in[2])));
}

static tg_tensor *w2_like(tg_tape *tp, tg_tensor *const *in)
{
    tg_tensor *h = tg_relu(tp, tg_add(tp, tg_matmul(tp, in[0], in[1]), in[2]));
    return tg_softmax_cross_entropy(tp, tg_add(tp, tg_matmul(tp, h, in[3]), in[4]), in[5]);
}

static tg_tensor *smooth(tg_tape *tp, tg_tensor *const *in)
{
    tg_tensor *x = in[0];
    tg_tensor *a = tg_sum(tp, tg_mul(tp, tg_sigmoid(tp, x), tg_exp(tp, tg_scale(tp, x, 0.5))));
    return tg_add(tp, a, tg_sum(tp, tg_log(tp, tg_add_scalar(tp, tg_mul(tp, x, x), 1.0))));
}

static tg_tensor *softmax_lse(tg_tape *tp, tg_tensor *const *in)
{
    tg_tensor *a = tg_sum(tp, tg_mul(tp, tg_softmax(tp, in[0]), in[1]));
    return tg_add(tp, a, tg_sum(tp, tg_logsumexp(tp, in[0], 0, false)));
}

static const struct {
    const char *name;
    ref_fn fn;
} fns[] = {
    {"mlp_loss", mlp_loss},         {"mlp_loss_x", mlp_loss}, {"tanh_cube_x", tanh_cube_x},
    {"matmul_chain", matmul_chain}, {"broadcast", broadcast}, {"mlp_out", mlp_out},
    {"mlp_out_x", mlp_out},         {"w2_like", w2_like},     {"smooth", smooth},
    {"softmax_lse", softmax_lse},
};
#define N_FNS ((int)(sizeof fns / sizeof *fns))

static ref_fn fn_of(const char *name)
{
    for (int i = 0; i < N_FNS; i++)
        if (strcmp(fns[i].name, name) == 0) return fns[i].fn;
    return NULL;
}

/* ====== Reading a case ====== */

typedef struct ref_case {
    const json_t *j;
    const char *name;
    int n, n_wrt;
    const char *names[MAX_INPUTS];
    tg_tensor *in[MAX_INPUTS];
    tg_tensor *wrt[MAX_INPUTS]; /* the inputs requiring grad, in order */
    const char *wrt_names[MAX_INPUTS];
} ref_case;

static const json_t *get(const json_t *j, const char *key, const char *where)
{
    const json_t *v = json_object_get(j, key);
    ck_assert_msg(v != NULL, "%s: no '%s'", where, key);
    return v;
}

/* Copies a JSON array of numbers into t, which must have as many elements. */
static void fill(tg_tensor *t, const json_t *a, const char *what)
{
    ck_assert_msg(json_is_array(a) && (int64_t)json_array_size(a) == tg_tensor_numel(t),
                  "%s: %zu values for %lld elements", what, json_array_size(a),
                  (long long)tg_tensor_numel(t));
    double *d = tg_tensor_data(t);
    for (size_t k = 0; k < json_array_size(a); k++)
        d[k] = json_number_value(json_array_get(a, k));
}

/* A leaf shaped like t holding the values of a. */
static tg_tensor *leaf_like(const tg_tensor *t, const json_t *a, const char *what)
{
    tg_tensor *x = tg_tensor_new(TG_F64, tg_tensor_rank(t), tg_tensor_shape(t));
    ck_assert_ptr_nonnull(x);
    fill(x, a, what);
    return x;
}

static void load_case(ref_case *c, int k)
{
    memset(c, 0, sizeof *c);
    c->j = json_array_get(json_object_get(ref_doc, "cases"), (size_t)k);
    c->name = json_string_value(get(c->j, "name", "case"));
    const json_t *inputs = get(c->j, "inputs", c->name);
    c->n = (int)json_array_size(inputs);
    ck_assert_int_le(c->n, MAX_INPUTS);
    for (int i = 0; i < c->n; i++) {
        const json_t *ij = json_array_get(inputs, (size_t)i), *sh = get(ij, "shape", c->name);
        int64_t shape[TG_MAX_RANK];
        for (size_t d = 0; d < json_array_size(sh); d++)
            shape[d] = json_integer_value(json_array_get(sh, d));
        c->names[i] = json_string_value(get(ij, "name", c->name));
        c->in[i] = tg_tensor_new(TG_F64, (int)json_array_size(sh), shape);
        ck_assert_ptr_nonnull(c->in[i]);
        tg_tensor_set_name(c->in[i], c->names[i]);
        if (json_is_true(get(ij, "requires_grad", c->name))) {
            tg_tensor_set_requires_grad(c->in[i], true);
            c->wrt_names[c->n_wrt] = c->names[i];
            c->wrt[c->n_wrt++] = c->in[i];
        }
    }
}

/* Writes a point's input values into the leaves. */
static void set_point(ref_case *c, const json_t *pt)
{
    const json_t *data = get(pt, "data", c->name);
    for (int i = 0; i < c->n; i++)
        fill(c->in[i], get(data, c->names[i], c->name), c->names[i]);
}

static void free_case(ref_case *c)
{
    for (int i = 0; i < c->n; i++)
        tg_tensor_free(c->in[i]);
}

/* ====== Comparing ====== */

static double worst_rel; /* the case's worst |a - b| / max(|b|, floor) */

static void expect_close(const tg_tensor *got, const json_t *want, const char *what)
{
    ck_assert_ptr_nonnull(got);
    ck_assert_msg((int64_t)json_array_size(want) == tg_tensor_numel(got), "%s: %zu values, %lld",
                  what, json_array_size(want), (long long)tg_tensor_numel(got));
    const double *a = tg_tensor_cdata(got);
    double big = 0;
    for (size_t k = 0; k < json_array_size(want); k++)
        big = fmax(big, fabs(json_number_value(json_array_get(want, k))));
    for (size_t k = 0; k < json_array_size(want); k++) {
        double b = json_number_value(json_array_get(want, k));
        double scale = fmax(fabs(b), REF_FLOOR * big), err = fabs(a[k] - b);
        if (scale > 0) worst_rel = fmax(worst_rel, err / scale);
        ck_assert_msg(err <= REF_RTOL * scale || (scale == 0 && a[k] == 0),
                      "%s[%zu]: tapegrad %.17g, torch %.17g (difference %.3g)", what, k, a[k], b,
                      err);
    }
}

/* A direction per wrt input ("v" or "u"), as leaves. */
static void directions(ref_case *c, const char *key, tg_tensor **d)
{
    const json_t *j = get(c->j, key, c->name);
    for (int i = 0; i < c->n_wrt; i++)
        d[i] = leaf_like(c->wrt[i], get(j, c->wrt_names[i], key), key);
}

/* Σ_i sum(a_i ⊙ b_i), recorded. */
static tg_tensor *inner(tg_tape *tp, tg_tensor *const *a, tg_tensor *const *b, int n)
{
    tg_tensor *s = NULL;
    for (int i = 0; i < n; i++) {
        tg_tensor *t = tg_sum(tp, tg_mul(tp, a[i], b[i]));
        s = s ? tg_add(tp, s, t) : t;
    }
    return s;
}

/* ====== The test ====== */

START_TEST(agrees_with_torch)
{
    ref_case c;
    load_case(&c, _i);
    ref_fn fn = fn_of(c.name);
    worst_rel = 0;
    ck_assert_msg(fn != NULL, "case '%s' has no function here", c.name);
    const json_t *points = get(c.j, "points", c.name);
    bool scalar = strcmp(json_string_value(get(c.j, "kind", c.name)), "scalar") == 0;
    tg_tensor *v[MAX_INPUTS], *u[MAX_INPUTS] = {0};
    tg_tensor *g[MAX_INPUTS], *h[MAX_INPUTS], *t[MAX_INPUTS], *jv = NULL;
    directions(&c, "v", v);
    if (scalar) directions(&c, "u", u);
    set_point(&c, json_array_get(points, 0));
    tg_tape *tp = tg_tape_new();
    tg_tensor *f = fn(tp, c.in);
    ck_assert_msg(f != NULL, "%s: %s", c.name, tg_tape_error(tp));
    if (scalar) {
        ck_assert_int_eq(tg_grad(tp, f, NULL, c.wrt, c.n_wrt, g, true), TG_OK);
        ck_assert_int_eq(tg_grad(tp, inner(tp, g, v, c.n_wrt), NULL, c.wrt, c.n_wrt, h, true),
                         TG_OK);
        tg_status s = tg_grad(tp, inner(tp, h, u, c.n_wrt), NULL, c.wrt, c.n_wrt, t, true);
        ck_assert_msg(s == TG_OK, "%s: %s", c.name, tg_tape_error(tp));
    } else {
        tg_status s = tg_jvp(tp, f, c.wrt, c.n_wrt, v, &jv);
        ck_assert_msg(s == TG_OK, "%s: %s", c.name, tg_tape_error(tp));
    }
    size_t nodes = tg_tape_size(tp);
    for (size_t p = 0; p < json_array_size(points); p++) {
        const json_t *pt = json_array_get(points, p);
        char what[128];
        if (p > 0) { /* new values in the leaves; the recorded derivatives follow */
            set_point(&c, pt);
            ck_assert_int_eq(tg_tape_replay(tp), TG_OK);
            ck_assert_uint_eq(tg_tape_size(tp), nodes);
        }
        if (!scalar) {
            snprintf(what, sizeof what, "%s point %zu out", c.name, p);
            expect_close(f, get(pt, "out", c.name), what);
            snprintf(what, sizeof what, "%s point %zu jvp", c.name, p);
            expect_close(jv, get(pt, "jvp", c.name), what);
            continue;
        }
        snprintf(what, sizeof what, "%s point %zu f", c.name, p);
        json_t *fv = json_pack("[f]", json_number_value(get(pt, "f", c.name)));
        expect_close(f, fv, what);
        json_decref(fv);
        const char *keys[3] = {"grad", "hvp", "third"};
        tg_tensor **res[3] = {g, h, t};
        for (int r = 0; r < 3; r++)
            for (int i = 0; i < c.n_wrt; i++) {
                snprintf(what, sizeof what, "%s point %zu %s %s", c.name, p, keys[r],
                         c.wrt_names[i]);
                expect_close(res[r][i], get(get(pt, keys[r], c.name), c.wrt_names[i], what), what);
            }
    }
    printf("# %s: worst relative difference from torch %.3g\n", c.name, worst_rel);
    tg_tape_free(tp);
    for (int i = 0; i < c.n_wrt; i++)
        tg_tensor_free(v[i]), tg_tensor_free(u[i]);
    free_case(&c);
}
END_TEST

/* Every case of the file has a function here and every function a case. */
START_TEST(json_and_table_agree)
{
    for (int i = 0; i < N_FNS; i++) {
        bool found = false;
        for (int k = 0; k < n_cases && !found; k++) {
            const json_t *j = json_array_get(json_object_get(ref_doc, "cases"), (size_t)k);
            found = strcmp(json_string_value(json_object_get(j, "name")), fns[i].name) == 0;
        }
        ck_assert_msg(found, "function '%s' has no case in torch_higher_ref.json", fns[i].name);
    }
    ck_assert_int_eq(n_cases, N_FNS);
}
END_TEST

static Suite *higher_ref_suite(void)
{
    Suite *s = suite_create("higher_ref");
    TCase *tc = tcase_create("table");
    tcase_add_test(tc, json_and_table_agree);
    suite_add_tcase(s, tc);
    tc = tcase_create("cases");
    tcase_add_loop_test(tc, agrees_with_torch, 0, n_cases);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    json_error_t err;
    ref_doc = json_load_file(TG_TEST_DATA "/torch_higher_ref.json", 0, &err);
    if (!ref_doc) {
        fprintf(stderr, "torch_higher_ref.json line %d: %s\n", err.line, err.text);
        return 1;
    }
    n_cases = (int)json_array_size(json_object_get(ref_doc, "cases"));
    int rc = tu_run(higher_ref_suite());
    json_decref(ref_doc);
    return rc;
}
