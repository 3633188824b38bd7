/* The nn layers: names, shapes and PyTorch's initialisation, values against
 * PyTorch (tools/torch_layers_ref.py), gradients through tg_gradcheck, and
 * their errors. */
#include "testutil.h"

#include <math.h>
#include <string.h>

/* ====== PyTorch's numbers (tools/torch_layers_ref.py, float64) ====== */

static const double lstm_h[] = {-0.048731261667832745, -0.17027558538162141, -0.31423935088527549,
                                -0.44834371578837329,  -0.53274594355010729, -0.11935745707183087,
                                -0.15589388399834925,  -0.1860147087900689,  -0.20221676715688619,
                                -0.19681642479950071,  -0.14913002124308844, -0.10054500003415473,
                                -0.026591294777346224, 0.063110731857934019, 0.13963878021968798};
static const double lstm_c[] = {-0.20719313765031119,  -0.57248507226603729, -0.83912265619632631,
                                -0.96937621530390272,  -0.96415853067741908, -0.36105563887838865,
                                -0.44023786727081221,  -0.46775848208150239, -0.44151131298852264,
                                -0.37397591132757674,  -0.26227825906838831, -0.16227367350751115,
                                -0.040868386084233016, 0.096298142102417633, 0.22041691716973738};
static const double lstm_h_zero[] = {
    -0.080883357522605975, -0.16127533471277131,  -0.24933246960026467, -0.32555473358936166,
    -0.36542004624868646,  -0.051452948464525909, -0.10573889048632977, -0.16115994030270309,
    -0.20598418616632794,  -0.22608480101472422,  -0.1401373396214006,  -0.17868007544872089,
    -0.1954526937176084,   -0.17866643463432919,  -0.12193767142633438};
static const double gru_h[] = {0.2703966642075043,    0.20784251285912567,  0.11296362484515209,
                               0.0018698082098607474, -0.10635087207814581, -0.33237304467639933,
                               -0.49543538329925385,  -0.5951683466572868,  -0.63496251693536532,
                               -0.61606860938379215,  -0.35608537829489328, -0.32037207184964289,
                               -0.30275476492869913,  -0.32077782915534025, -0.33678019462173164};
static const double gru_h_zero[] = {
    -0.10048729331977484, -0.095338908729094313, -0.070779634514564288, -0.028173524717068899,
    0.022713024344673337, -0.030873358552247029, -0.11104006528733429,  -0.18547003854909211,
    -0.24664031136725351, -0.28357583254605706,  -0.093952360589464934, -0.17731016426944834,
    -0.26941860723213917, -0.37996940073228958,  -0.48336608573229267};
static const double mha_causal[] = {
    -0.2432533045302942,  -0.40406384291920894, -0.51018623571818367, -0.54725731490452967,
    -0.22733666763450466, -0.38940492678451188, -0.49876905587532627, -0.54062713308483068,
    -0.22627539810991654, -0.41143958235131034, -0.54091734927178714, -0.59718449052632583,
    -0.25459815662036966, -0.49531582475667701, -0.66899481964374174, -0.75212850408859877,
    -0.25409761277000364, -0.46005578183475082, -0.60374755904739907, -0.66572493645081832,
    -0.24146284031057288, -0.42806249699761761, -0.5567259028479854,  -0.61003906946715392};
static const double mha_plain[] = {
    -0.2263674779325856,  -0.40995298048489698, -0.53805327030494587, -0.59333057411121659,
    -0.2260198070561909,  -0.41011710776663401, -0.53870698188718735, -0.59438539319800587,
    -0.22627539810991654, -0.41143958235131034, -0.54091734927178714, -0.59718449052632583,
    -0.24411558893990487, -0.43163750736744211, -0.56073931407587863, -0.61394768517118359,
    -0.2424044910792279,  -0.42830366113041912, -0.55623393991091086, -0.60888056433583382,
    -0.24146284031057288, -0.42806249699761761, -0.5567259028479854,  -0.61003906946715392};

/* The reference script's fill: element k of a tensor is sin(0.37 k + salt) / 2. */
static void fill(tg_tensor *t, double salt)
{
    for (int64_t k = 0; k < tg_tensor_numel(t); k++)
        tu_put(t, k, sin(0.37 * (double)k + salt) / 2);
}

static tg_tensor *filled(const char *shape, double salt)
{
    tg_tensor *t = tu_random(TG_F64, shape, 0, 1, 1);
    ck_assert_ptr_nonnull(t);
    fill(t, salt);
    return t;
}

/* Asserts y equals want (n values) to 1e-12 relative. */
static void expect_close(const tg_tensor *y, const double *want, int64_t n, const char *what)
{
    ck_assert_msg(y != NULL, "%s: no result", what);
    ck_assert_int_eq(tg_tensor_numel(y), n);
    for (int64_t k = 0; k < n; k++)
        ck_assert_msg(fabs(tu_at(y, k) - want[k]) <= 1e-12 * fmax(1, fabs(want[k])),
                      "%s[%lld] = %.17g, torch %.17g", what, (long long)k, tu_at(y, k), want[k]);
}

enum { N = 3, IN = 4, H = 5 };

/* ====== Registration and initialisation ====== */

START_TEST(linear_registers_torch_names_and_bounds)
{
    tg_params *ps = tg_params_new();
    tg_rng r;
    tg_rng_seed(&r, 1);
    tg_linear l;
    tg_error err = {0};
    ck_assert_int_eq(tg_linear_init(&l, ps, "fc", 400, 30, true, TG_F32, &r, &err), TG_OK);
    ck_assert_ptr_eq(tg_params_get(ps, "fc.weight"), l.weight);
    ck_assert_ptr_eq(tg_params_get(ps, "fc.bias"), l.bias);
    ck_assert_int_eq(tg_tensor_shape(l.weight)[0], 400);
    ck_assert_int_eq(tg_tensor_shape(l.weight)[1], 30);
    double a = 1 / sqrt(400.0), lo = 0, hi = 0;
    for (int64_t k = 0; k < tg_tensor_numel(l.weight); k++) {
        lo = fmin(lo, tu_at(l.weight, k));
        hi = fmax(hi, tu_at(l.weight, k));
    }
    ck_assert(lo >= -a && hi <= a && lo < -0.9 * a && hi > 0.9 * a); /* fills U(-a, a) */
    /* Without bias, and a name already taken: nothing more is registered. */
    tg_linear l2;
    ck_assert_int_eq(tg_linear_init(&l2, ps, "fc2", 3, 2, false, TG_F64, &r, NULL), TG_OK);
    ck_assert_ptr_null(l2.bias);
    ck_assert_int_eq(tg_params_count(ps), 3);
    ck_assert_int_eq(tg_linear_init(&l2, ps, "fc", 3, 2, true, TG_F64, &r, &err), TG_ERR_ARG);
    ck_assert_str_eq(err.msg, "fc: the registry already has a parameter 'fc.weight'");
    ck_assert_int_eq(tg_params_count(ps), 3);
    ck_assert_int_eq(tg_linear_init(&l2, ps, "fc3", 0, 2, true, TG_F64, &r, &err), TG_ERR_ARG);
    ck_assert_str_eq(err.msg, "linear: sizes 0 -> 2 must be >= 1");
    ck_assert_int_eq(tg_linear_init(&l2, ps, "fc3", 1, 2, true, TG_I64, &r, &err), TG_ERR_DTYPE);
    ck_assert_int_eq(tg_linear_init(&l2, NULL, "fc3", 1, 2, true, TG_F64, &r, &err), TG_ERR_ARG);
    ck_assert_int_eq(tg_params_count(ps), 3);
    tg_params_free(ps);
}
END_TEST

START_TEST(conv_and_norm_layers_register_torch_state)
{
    tg_params *ps = tg_params_new();
    tg_rng r;
    tg_rng_seed(&r, 2);
    tg_conv_layer cv;
    tg_error err = {0};
    ck_assert_int_eq(tg_conv_layer_init(&cv, ps, "conv1", 2, 4, 6, (const int[]){3, 5},
                                        &(tg_conv_opts){.groups = 2}, true, TG_F32, &r, &err),
                     TG_OK);
    const int64_t *ws = tg_tensor_shape(cv.weight);
    ck_assert(ws[0] == 6 && ws[1] == 2 && ws[2] == 3 && ws[3] == 5);
    double a = 1 / sqrt(2.0 * 3 * 5);
    for (int64_t k = 0; k < tg_tensor_numel(cv.weight); k++)
        ck_assert(fabs(tu_at(cv.weight, k)) <= a);
    ck_assert_int_eq(tg_conv_layer_init(&cv, ps, "conv2", 2, 5, 6, (const int[]){3, 3},
                                        &(tg_conv_opts){.groups = 2}, true, TG_F32, &r, &err),
                     TG_ERR_ARG);
    tg_conv_layer c1;
    ck_assert_int_eq(tg_conv_layer_init(&c1, ps, "conv1d", 1, 3, 2, (const int[]){4, 0}, NULL,
                                        false, TG_F64, &r, &err),
                     TG_OK);
    ck_assert_int_eq(tg_tensor_rank(c1.weight), 3);

    tg_batch_norm_layer bn;
    ck_assert_int_eq(tg_batch_norm_layer_init(&bn, ps, "bn", 3, TG_F32, &err), TG_OK);
    ck_assert_ptr_eq(tg_params_get(ps, "bn.running_var"), bn.running_var);
    ck_assert(tg_tensor_requires_grad(bn.weight) && !tg_tensor_requires_grad(bn.running_mean) &&
              !tg_tensor_requires_grad(bn.running_var));
    for (int k = 0; k < 3; k++) {
        ck_assert(tu_at(bn.weight, k) == 1 && tu_at(bn.bias, k) == 0);
        ck_assert(tu_at(bn.running_mean, k) == 0 && tu_at(bn.running_var, k) == 1);
    }
    ck_assert(bn.momentum == 0.1 && bn.eps == 1e-5);
    tg_layer_norm_layer ln;
    ck_assert_int_eq(tg_layer_norm_layer_init(&ln, ps, "ln", 4, TG_F64, &err), TG_OK);
    ck_assert(tu_at(ln.weight, 3) == 1 && tu_at(ln.bias, 3) == 0 && ln.eps == 1e-5);
    tg_params_free(ps);
}
END_TEST

/* ====== Values against PyTorch ====== */

START_TEST(lstm_cell_matches_torch)
{
    tg_params *ps = tg_params_new();
    tg_rng r;
    tg_rng_seed(&r, 3);
    tg_lstm_cell cell;
    ck_assert_int_eq(tg_lstm_cell_init(&cell, ps, "lstm", IN, H, TG_F64, &r, NULL), TG_OK);
    fill(cell.w_ih, 4), fill(cell.w_hh, 5), fill(cell.b_ih, 6), fill(cell.b_hh, 7);
    tg_tensor *x = filled("3x4", 1), *h = filled("3x5", 2), *c = filled("3x5", 3), *c2, *c0;
    tg_tape *tp = tg_tape_new();
    tg_tensor *h2 = tg_lstm_cell_forward(tp, &cell, x, h, c, &c2);
    tg_tensor *h0 = tg_lstm_cell_forward(tp, &cell, x, NULL, NULL, &c0);
    ck_assert_msg(tg_tape_status(tp) == TG_OK, "%s", tg_tape_error(tp));
    expect_close(h2, lstm_h, N * H, "h'");
    expect_close(c2, lstm_c, N * H, "c'");
    expect_close(h0, lstm_h_zero, N * H, "h' from a zero state");
    tg_tape_free(tp);
    tg_tensor_free(x), tg_tensor_free(h), tg_tensor_free(c);
    tg_params_free(ps);
}
END_TEST

START_TEST(gru_cell_matches_torch)
{
    tg_params *ps = tg_params_new();
    tg_rng r;
    tg_rng_seed(&r, 4);
    tg_gru_cell cell;
    ck_assert_int_eq(tg_gru_cell_init(&cell, ps, "gru", IN, H, TG_F64, &r, NULL), TG_OK);
    fill(cell.w_ih, 4), fill(cell.w_hh, 5), fill(cell.b_ih, 6), fill(cell.b_hh, 7);
    tg_tensor *x = filled("3x4", 1), *h = filled("3x5", 2);
    tg_tape *tp = tg_tape_new();
    tg_tensor *h2 = tg_gru_cell_forward(tp, &cell, x, h);
    tg_tensor *h0 = tg_gru_cell_forward(tp, &cell, x, NULL);
    ck_assert_msg(tg_tape_status(tp) == TG_OK, "%s", tg_tape_error(tp));
    expect_close(h2, gru_h, N * H, "h'");
    expect_close(h0, gru_h_zero, N * H, "h' from a zero state");
    tg_tape_free(tp);
    tg_tensor_free(x), tg_tensor_free(h);
    tg_params_free(ps);
}
END_TEST

START_TEST(mha_matches_torch)
{
    tg_params *ps = tg_params_new();
    tg_rng r;
    tg_rng_seed(&r, 5);
    tg_mha m;
    ck_assert_int_eq(tg_mha_init(&m, ps, "attn", 4, 2, TG_F64, &r, NULL), TG_OK);
    ck_assert_ptr_eq(tg_params_get(ps, "attn.out.bias"), m.out.bias);
    for (int k = 0; k < 4; k++)
        ck_assert(tu_at(m.q.bias, k) == 0 && tu_at(m.out.bias, k) == 0);
    fill(m.q.weight, 9), fill(m.k.weight, 10), fill(m.v.weight, 11), fill(m.out.weight, 15);
    fill(m.q.bias, 12), fill(m.k.bias, 13), fill(m.v.bias, 14), fill(m.out.bias, 16);
    tg_tensor *x = filled("2x3x4", 8), *mask = tg_causal_mask(3, TG_F64);
    ck_assert(tu_at(mask, 1) == -(double)INFINITY && tu_at(mask, 3) == 0 && tu_at(mask, 8) == 0);
    tg_tape *tp = tg_tape_new();
    tg_tensor *yc = tg_mha_forward(tp, &m, x, mask);
    tg_tensor *yp = tg_mha_forward(tp, &m, x, NULL);
    ck_assert_msg(tg_tape_status(tp) == TG_OK, "%s", tg_tape_error(tp));
    expect_close(yc, mha_causal, 24, "causal attention");
    expect_close(yp, mha_plain, 24, "attention");
    tg_tape_free(tp);
    tg_tensor_free(x), tg_tensor_free(mask);
    tg_params_free(ps);
}
END_TEST

/* ====== Gradients ====== */

typedef struct cells {
    tg_lstm_cell lstm;
    tg_gru_cell gru;
    tg_mha mha;
    tg_tensor *mask;
} cells;

/* Two steps of each cell, so the state's gradient flows through a step, then
 * attention over the stacked states; a weighted sum as the scalar. */
static tg_tensor *cells_loss(tg_tape *tp, tg_tensor *const *in, void *ctx)
{
    const cells *m = ctx;
    tg_tensor *c, *c2;
    tg_tensor *h = tg_lstm_cell_forward(tp, &m->lstm, in[0], NULL, NULL, &c);
    h = tg_lstm_cell_forward(tp, &m->lstm, in[1], h, c, &c2);
    tg_tensor *g = tg_gru_cell_forward(tp, &m->gru, in[0], NULL);
    g = tg_gru_cell_forward(tp, &m->gru, in[1], g);
    tg_tensor *seq = tg_stack(tp, (tg_tensor *const[]){h, g, c2}, 3, 1); /* [3,3,5]: B=3, T=3 */
    tg_tensor *seq4 = tg_slice(tp, seq, 2, 0, 4, 1);                     /* D = 4 */
    tg_tensor *y = tg_mha_forward(tp, &m->mha, seq4, m->mask);
    return tg_sum(tp, tg_mul(tp, tg_tanh(tp, y), y));
}

START_TEST(cells_and_attention_pass_gradcheck)
{
    tg_params *ps = tg_params_new();
    tg_rng r;
    tg_rng_seed(&r, 6);
    cells m;
    ck_assert_int_eq(tg_lstm_cell_init(&m.lstm, ps, "lstm", IN, H, TG_F64, &r, NULL), TG_OK);
    ck_assert_int_eq(tg_gru_cell_init(&m.gru, ps, "gru", IN, H, TG_F64, &r, NULL), TG_OK);
    ck_assert_int_eq(tg_mha_init(&m.mha, ps, "attn", 4, 2, TG_F64, &r, NULL), TG_OK);
    m.mask = tg_causal_mask(3, TG_F64);
    tg_tensor *in[64];
    in[0] = tu_random(TG_F64, "3x4", -1, 1, 11);
    in[1] = tu_random(TG_F64, "3x4", -1, 1, 12);
    tg_tensor_set_requires_grad(in[0], true);
    tg_tensor_set_requires_grad(in[1], true);
    int n = 2;
    for (size_t i = 0; i < tg_params_count(ps); i++)
        in[n++] = tg_params_at(ps, i, NULL);
    tg_gradcheck_report rep;
    ck_assert_int_eq(tg_gradcheck(cells_loss, in, n, &m, NULL, &rep), TG_OK);
    ck_assert_msg(rep.passed, "worst input %d [%lld]: analytic %g numeric %g", rep.worst_input,
                  (long long)rep.worst_index, rep.analytic, rep.numeric);
    ck_assert_int_gt(rep.n_checked, 300);
    tg_tensor_free(in[0]), tg_tensor_free(in[1]), tg_tensor_free(m.mask);
    tg_params_free(ps);
}
END_TEST

/* ====== Errors ====== */

START_TEST(layer_errors_name_the_layer)
{
    tg_params *ps = tg_params_new();
    tg_rng r;
    tg_rng_seed(&r, 7);
    tg_lstm_cell cell;
    tg_mha m;
    tg_error err = {0};
    ck_assert_int_eq(tg_lstm_cell_init(&cell, ps, "lstm", IN, H, TG_F64, &r, NULL), TG_OK);
    ck_assert_int_eq(tg_mha_init(&m, ps, "attn", 6, 4, TG_F64, &r, &err), TG_ERR_ARG);
    ck_assert_str_eq(err.msg, "mha: 4 heads do not divide d_model 6");
    ck_assert_int_eq(tg_params_count(ps), 4);
    tg_tensor *x = tu_random(TG_F64, "3x5", -1, 1, 1), *c;
    tg_tape *tp = tg_tape_new();
    ck_assert_ptr_null(tg_lstm_cell_forward(tp, &cell, x, NULL, NULL, &c));
    ck_assert_ptr_null(c);
    ck_assert_str_eq(tg_tape_error(tp), "lstm_cell: input [3x5] is not [N x 4]");
    tg_tape_reset(tp);
    tg_tensor *x4 = tu_random(TG_F64, "3x4", -1, 1, 2), *h = tu_random(TG_F64, "2x5", -1, 1, 3);
    ck_assert_ptr_null(tg_lstm_cell_forward(tp, &cell, x4, h, h, &c));
    ck_assert_str_eq(tg_tape_error(tp),
                     "lstm_cell: state [2x5] does not fit input [3x4] and hidden size 5");
    tg_tape_reset(tp);
    ck_assert_ptr_null(tg_lstm_cell_forward(tp, &cell, x4, h, NULL, &c));
    ck_assert_int_eq(tg_tape_status(tp), TG_ERR_ARG);
    tg_tape_reset(tp);
    ck_assert_ptr_null(tg_linear_forward(tp, NULL, x4));
    ck_assert_str_eq(tg_tape_error(tp), "linear: layer is NULL");
    ck_assert_ptr_null(tg_causal_mask(-1, TG_F64));
    ck_assert_ptr_null(tg_causal_mask(3, TG_I64));
    tg_tape_free(tp);
    tg_tensor_free(x), tg_tensor_free(x4), tg_tensor_free(h);
    tg_params_free(ps);
}
END_TEST

static Suite *nn_layers_suite(void)
{
    Suite *s = suite_create("nn_layers");
    TCase *tc = tcase_create("layers");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, linear_registers_torch_names_and_bounds);
    tcase_add_test(tc, conv_and_norm_layers_register_torch_state);
    tcase_add_test(tc, lstm_cell_matches_torch);
    tcase_add_test(tc, gru_cell_matches_torch);
    tcase_add_test(tc, mha_matches_torch);
    tcase_add_test(tc, cells_and_attention_pass_gradcheck);
    tcase_add_test(tc, layer_errors_name_the_layer);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run(nn_layers_suite()); }
