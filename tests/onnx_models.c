/*
 * onnx_models DIR: exports models to DIR for the ONNX checker
 * (tests/onnx/check_models.py) and ONNX Runtime (tests/onnx/run_models.mjs),
 * and writes beside each <name>.onnx a <name>.json with fresh inputs and the
 * outputs tapegrad's forward gives on them:
 *
 *     {"tol": 1e-5, "inputs": [{"name", "dtype", "shape", "data"}, ...],
 *      "outputs": [{"name", "dtype", "shape", "data"}, ...]}
 *
 * "Fresh" means other values than the tape was recorded with: the leaves are
 * refilled and the tape replayed, or, for a model exported with a symbolic
 * batch, the same parameters are recorded on a batch of another size. The
 * models: the 2-3-2 seed network (F32 and F64), the Fashion-MNIST MLP, the
 * CNN (conv, batch norm in eval mode, pooling), one LSTM step, a transformer
 * block, and one model per shape list of every row of tests/oplist.h that
 * has no empty operand. Data is written with %.9g (F32) or %.17g (F64),
 * which round-trips; NaN and infinities as the strings "nan", "inf", "-inf".
 * The folder is made if missing. Exits 1 on the first failure, naming it.
 */
#include <tapegrad/onnx.h>
#include <tapegrad/tapegrad.h>

#include "oplist.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define TOL_F32 1e-5
#define TOL_F64 1e-12

static const char *dir;
static int n_models;

static void die(const char *what, const char *why)
{
    fprintf(stderr, "onnx_models: %s: %s\n", what, why);
    exit(1);
}

/* ====== JSON ====== */

static void put_number(FILE *f, tg_dtype dt, double v)
{
    if (isnan(v))
        fputs("\"nan\"", f);
    else if (isinf(v))
        fputs(v > 0 ? "\"inf\"" : "\"-inf\"", f);
    else if (dt == TG_I64)
        fprintf(f, "%lld", (long long)v);
    else
        fprintf(f, dt == TG_F32 ? "%.9g" : "%.17g", v);
}

static const char *dtype_str(tg_dtype dt)
{
    return dt == TG_F32 ? "float32" : dt == TG_F64 ? "float64" : "int64";
}

static void put_tensor(FILE *f, const char *name, const tg_tensor *t)
{
    fprintf(f, "{\"name\": \"%s\", \"dtype\": \"%s\", \"shape\": [", name,
            dtype_str(tg_tensor_dtype(t)));
    for (int d = 0; d < tg_tensor_rank(t); d++)
        fprintf(f, "%s%lld", d ? ", " : "", (long long)tg_tensor_shape(t)[d]);
    fputs("], \"data\": [", f);
    for (int64_t k = 0; k < tg_tensor_numel(t); k++) {
        if (k) fputs(", ", f);
        put_number(f, tg_tensor_dtype(t), tu_at(t, k));
    }
    fputs("]}", f);
}

/* The name a tensor gets in the model: its own, else the default. */
static const char *io_name(const tg_tensor *t, const char *fallback, int i, char *buf, size_t n)
{
    if (tg_tensor_name(t)[0]) return tg_tensor_name(t);
    snprintf(buf, n, "%s%d", fallback, i);
    return buf;
}

/* <name>.json with the inputs 'in' (the values to feed) and outputs 'out'
 * (the values expected). */
static void write_case(const char *name, double tol, tg_tensor *const *in, int n_in,
                       tg_tensor *const *out, int n_out)
{
    char path[512], buf[32];
    snprintf(path, sizeof path, "%s/%s.json", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) die(path, "cannot write");
    fprintf(f, "{\"tol\": %g, \"inputs\": [", tol);
    for (int i = 0; i < n_in; i++) {
        if (i) fputs(", ", f);
        put_tensor(f, io_name(in[i], "input", i, buf, sizeof buf), in[i]);
    }
    fputs("], \"outputs\": [", f);
    for (int i = 0; i < n_out; i++) {
        if (i) fputs(", ", f);
        put_tensor(f, io_name(out[i], "output", i, buf, sizeof buf), out[i]);
    }
    fputs("]}\n", f);
    if (fclose(f)) die(path, "cannot write");
    n_models++;
}

static void export(const char *name, tg_tape *tp, tg_tensor *const *in, int n_in,
                   tg_tensor *const *out, int n_out, tg_params *ps, const tg_onnx_opts *o)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s.onnx", dir, name);
    tg_error err;
    if (tg_tape_status(tp)) die(name, tg_tape_error(tp));
    if (tg_onnx_export(path, tp, in, n_in, out, n_out, ps ? &ps : NULL, ps ? 1 : 0, o, &err))
        die(name, err.msg);
}

/* Fills a float leaf from U(lo, hi) with a seed of its own. */
static void refill(tg_tensor *t, double lo, double hi, uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 7;
    for (int64_t k = 0; k < tg_tensor_numel(t); k++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        tu_put(t, k, lo + (hi - lo) * (double)(x >> 11) / 9007199254740992.0);
    }
}

static void fill_ints(tg_tensor *t, int64_t below, uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 3;
    int64_t *v = tg_tensor_data(t);
    for (int64_t k = 0; k < tg_tensor_numel(t); k++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        v[k] = (int64_t)((x >> 11) % (uint64_t)below);
    }
}

/* ====== The 2-3-2 seed network ====== */

static void seed_network(tg_dtype dt, const char *name, double tol)
{
    tg_params *ps = tg_params_new();
    tg_tensor *w2 = tg_params_add(ps, "W2", dt, 2, (int64_t[]){2, 3});
    tg_tensor *b2 = tg_params_add(ps, "b2", dt, 1, (int64_t[]){3});
    tg_tensor *w3 = tg_params_add(ps, "W3", dt, 2, (int64_t[]){3, 2});
    tg_tensor *b3 = tg_params_add(ps, "b3", dt, 1, (int64_t[]){2});
    const double wv2[] = {0.1, -0.4, 0.7, 0.3, 0.2, -0.6}, bv2[] = {0.05, -0.1, 0.2};
    const double wv3[] = {0.6, -0.3, -0.8, 0.5, 0.4, 0.9}, bv3[] = {-0.2, 0.1};
    for (int k = 0; k < 6; k++)
        tu_put(w2, k, wv2[k]), tu_put(w3, k, wv3[k]);
    for (int k = 0; k < 3; k++)
        tu_put(b2, k, bv2[k]);
    for (int k = 0; k < 2; k++)
        tu_put(b3, k, bv3[k]);
    tg_tensor *x = tu_from(dt, "1x2", (double[]){0.5, -1.2});
    tg_tensor_set_name(x, "x");
    tg_tape *tp = tg_tape_new();
    tg_tensor *a3 = tg_sigmoid(
        tp,
        tg_add_bias(
            tp, tg_matmul(tp, tg_sigmoid(tp, tg_add_bias(tp, tg_matmul(tp, x, w2), b2)), w3), b3));
    tg_tensor_set_name(a3, "a3");
    export(name, tp, &x, 1, &a3, 1, ps, NULL);
    refill(x, -2, 2, 11);
    if (tg_tape_replay(tp)) die(name, tg_tape_error(tp));
    write_case(name, tol, &x, 1, &a3, 1);
    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_params_free(ps);
}

/* ====== Models exported with a symbolic batch ======
 * Each records 'fwd' on a batch of rec_b rows for the export and on one of
 * run_b rows for the expected outputs, the same parameters in both. */

typedef struct batch_model {
    const char *name;
    tg_params *ps;
    void *m;
    int n_in, n_out;
    int64_t rec_b, run_b;
    /* Makes the inputs for a batch of b rows (seeded by seed) into in. */
    void (*inputs)(const struct batch_model *bm, int64_t b, uint64_t seed, tg_tensor **in);
    /* Records the model on in, writing its outputs into out. */
    void (*fwd)(const struct batch_model *bm, tg_tape *tp, tg_tensor *const *in, tg_tensor **out);
    tg_onnx_opts opts;
} batch_model;

static void run_batch_model(const batch_model *bm)
{
    tg_tensor *in[4], *out[4], *in2[4], *out2[4];
    tg_tape *tp = tg_tape_new(), *tp2 = tg_tape_new();
    bm->inputs(bm, bm->rec_b, 1, in);
    bm->fwd(bm, tp, in, out);
    export(bm->name, tp, in, bm->n_in, out, bm->n_out, bm->ps, &bm->opts);
    bm->inputs(bm, bm->run_b, 2, in2);
    bm->fwd(bm, tp2, in2, out2);
    if (tg_tape_status(tp2)) die(bm->name, tg_tape_error(tp2));
    for (int i = 0; i < bm->n_out; i++)
        tg_tensor_set_name(out2[i], tg_tensor_name(out[i]));
    write_case(bm->name, TOL_F32, in2, bm->n_in, out2, bm->n_out);
    for (int i = 0; i < bm->n_in; i++)
        tg_tensor_free(in[i]), tg_tensor_free(in2[i]);
    tg_tape_free(tp);
    tg_tape_free(tp2);
}

/* The Fashion-MNIST MLP, 784-256-128-10 with ReLU. */
static void mlp_inputs(const batch_model *bm, int64_t b, uint64_t seed, tg_tensor **in)
{
    (void)bm;
    in[0] = tg_tensor_new(TG_F32, 2, (int64_t[]){b, 784});
    refill(in[0], 0, 1, seed);
    tg_tensor_set_name(in[0], "pixels");
}

static void mlp_fwd(const batch_model *bm, tg_tape *tp, tg_tensor *const *in, tg_tensor **out)
{
    out[0] = tg_mlp_forward(tp, bm->m, in[0]);
    tg_tensor_set_name(out[0], "logits");
}

/* The CNN of tools/train --model cnn, narrower: conv 1->8 and 8->16 (3x3,
 * padding 1), each with batch norm in eval mode, ReLU and a 2x2 max pool,
 * then 784-32 ReLU and 32-10. */
typedef struct cnn {
    tg_conv_layer conv[2];
    tg_batch_norm_layer bn[2];
    tg_linear fc1, fc2;
} cnn;

static void cnn_fwd(const batch_model *bm, tg_tape *tp, tg_tensor *const *in, tg_tensor **out)
{
    const cnn *m = bm->m;
    int64_t b = tg_tensor_shape(in[0])[0];
    tg_tensor *h = tg_reshape(tp, in[0], 4, (int64_t[]){b, 1, 28, 28});
    for (int i = 0; i < 2; i++) {
        h = tg_batch_norm_layer_forward(tp, &m->bn[i], tg_conv_layer_forward(tp, &m->conv[i], h),
                                        false);
        h = tg_max_pool2d(tp, tg_relu(tp, h), (int[]){2, 2}, NULL, NULL);
    }
    h = tg_reshape(tp, h, 2, (int64_t[]){b, 16 * 7 * 7});
    h = tg_relu(tp, tg_linear_forward(tp, &m->fc1, h));
    out[0] = tg_linear_forward(tp, &m->fc2, h);
    tg_tensor_set_name(out[0], "logits");
}

static void cnn_init(cnn *m, tg_params *ps, tg_rng *r)
{
    tg_error err;
    const tg_conv_opts pad = {.padding = {1, 1}};
    if (tg_conv_layer_init(&m->conv[0], ps, "conv.0", 2, 1, 8, (int[]){3, 3}, &pad, true, TG_F32, r,
                           &err) ||
        tg_conv_layer_init(&m->conv[1], ps, "conv.1", 2, 8, 16, (int[]){3, 3}, &pad, true, TG_F32,
                           r, &err) ||
        tg_batch_norm_layer_init(&m->bn[0], ps, "bn.0", 8, TG_F32, &err) ||
        tg_batch_norm_layer_init(&m->bn[1], ps, "bn.1", 16, TG_F32, &err) ||
        tg_linear_init(&m->fc1, ps, "fc1", 784, 32, true, TG_F32, r, &err) ||
        tg_linear_init(&m->fc2, ps, "fc2", 32, 10, true, TG_F32, r, &err))
        die("cnn", err.msg);
    /* Trained-looking statistics and affine parameters, so eval mode matters. */
    for (int i = 0; i < 2; i++) {
        refill(m->bn[i].running_mean, -0.5, 0.5, 20 + (uint64_t)i);
        refill(m->bn[i].running_var, 0.5, 2, 30 + (uint64_t)i);
        refill(m->bn[i].weight, 0.5, 1.5, 40 + (uint64_t)i);
        refill(m->bn[i].bias, -0.2, 0.2, 50 + (uint64_t)i);
    }
}

/* One step of the character LSTM of examples/char_lstm.c: embedding, LSTM
 * cell, linear head, softmax; inputs the characters and the state. */
#define LSTM_V 20
#define LSTM_E 8
#define LSTM_H 16
typedef struct lstm_model {
    tg_tensor *embed;
    tg_lstm_cell cell;
    tg_linear head;
} lstm_model;

static void lstm_inputs(const batch_model *bm, int64_t b, uint64_t seed, tg_tensor **in)
{
    (void)bm;
    in[0] = tg_tensor_new(TG_I64, 1, (int64_t[]){b});
    fill_ints(in[0], LSTM_V, seed);
    in[1] = tg_tensor_new(TG_F32, 2, (int64_t[]){b, LSTM_H});
    in[2] = tg_tensor_new(TG_F32, 2, (int64_t[]){b, LSTM_H});
    refill(in[1], -1, 1, seed + 100);
    refill(in[2], -1, 1, seed + 200);
    tg_tensor_set_name(in[0], "char");
    tg_tensor_set_name(in[1], "h");
    tg_tensor_set_name(in[2], "c");
}

static void lstm_fwd(const batch_model *bm, tg_tape *tp, tg_tensor *const *in, tg_tensor **out)
{
    const lstm_model *m = bm->m;
    out[1] = tg_lstm_cell_forward(tp, &m->cell, tg_embedding(tp, m->embed, in[0]), in[1], in[2],
                                  &out[2]);
    out[0] = tg_softmax(tp, tg_linear_forward(tp, &m->head, out[1]));
    tg_tensor_set_name(out[0], "probs");
    tg_tensor_set_name(out[1], "h_next");
    tg_tensor_set_name(out[2], "c_next");
}

/* The transformer block of examples/transformer_block.c: token and position
 * embeddings, pre-norm causal self-attention and a GELU MLP, each with a
 * residual, then the logits of every position as [B T, V]. */
#define TF_V 11
#define TF_T 5
#define TF_D 8
typedef struct tf_model {
    tg_tensor *tok, *pos, *mask;
    tg_layer_norm_layer ln1, ln2;
    tg_mha attn;
    tg_linear ff1, ff2, out;
} tf_model;

static void tf_inputs(const batch_model *bm, int64_t b, uint64_t seed, tg_tensor **in)
{
    (void)bm;
    in[0] = tg_tensor_new(TG_I64, 2, (int64_t[]){b, TF_T});
    fill_ints(in[0], TF_V, seed);
    tg_tensor_set_name(in[0], "tokens");
}

static void tf_fwd(const batch_model *bm, tg_tape *tp, tg_tensor *const *in, tg_tensor **out)
{
    const tf_model *m = bm->m;
    int64_t b = tg_tensor_shape(in[0])[0];
    tg_tensor *x = tg_add(tp, tg_embedding(tp, m->tok, in[0]), m->pos);
    x = tg_add(tp, x,
               tg_mha_forward(tp, &m->attn, tg_layer_norm_layer_forward(tp, &m->ln1, x), m->mask));
    tg_tensor *ff = tg_gelu(
        tp, tg_linear_forward(tp, &m->ff1, tg_layer_norm_layer_forward(tp, &m->ln2, x)), false);
    x = tg_add(tp, x, tg_linear_forward(tp, &m->ff2, ff));
    out[0] = tg_reshape(tp, tg_linear_forward(tp, &m->out, x), 2, (int64_t[]){b * TF_T, TF_V});
    tg_tensor_set_name(out[0], "logits");
}

static void networks(void)
{
    tg_rng r;
    tg_rng_seed(&r, 5);
    tg_error err;

    tg_params *ps = tg_params_new();
    tg_mlp *mlp = tg_mlp_new(ps, "mlp", 3, (int64_t[]){784, 256, 128, 10},
                             (tg_activation[]){TG_ACT_RELU, TG_ACT_RELU, TG_ACT_NONE}, TG_F32, &r);
    if (!mlp) die("mlp", tg_last_error()->msg);
    run_batch_model(
        &(batch_model){"fashion_mlp", ps, mlp, 1, 1, 8, 5, mlp_inputs, mlp_fwd, {.batch = 1}});
    tg_mlp_free(mlp);
    tg_params_free(ps);

    cnn c;
    ps = tg_params_new();
    cnn_init(&c, ps, &r);
    run_batch_model(&(batch_model){"cnn", ps, &c, 1, 1, 3, 2, mlp_inputs, cnn_fwd, {.batch = 1}});
    tg_params_free(ps);

    lstm_model l;
    ps = tg_params_new();
    if (!(l.embed = tg_params_add(ps, "embed", TG_F32, 2, (int64_t[]){LSTM_V, LSTM_E})) ||
        tg_init_tensor(l.embed, TG_INIT_XAVIER_NORMAL, LSTM_V, LSTM_E, &r) ||
        tg_lstm_cell_init(&l.cell, ps, "lstm", LSTM_E, LSTM_H, TG_F32, &r, &err) ||
        tg_linear_init(&l.head, ps, "head", LSTM_H, LSTM_V, true, TG_F32, &r, &err))
        die("lstm", tg_last_error()->msg);
    run_batch_model(
        &(batch_model){"lstm_step", ps, &l, 3, 3, 4, 3, lstm_inputs, lstm_fwd, {.batch = 7}});
    tg_params_free(ps);

    tf_model t;
    ps = tg_params_new();
    t.tok = tg_params_add(ps, "tok", TG_F32, 2, (int64_t[]){TF_V, TF_D});
    t.pos = tg_params_add(ps, "pos", TG_F32, 2, (int64_t[]){TF_T, TF_D});
    if (!t.tok || !t.pos || tg_init_tensor(t.tok, TG_INIT_XAVIER_NORMAL, TF_V, TF_D, &r) ||
        tg_init_tensor(t.pos, TG_INIT_XAVIER_NORMAL, TF_T, TF_D, &r) ||
        tg_layer_norm_layer_init(&t.ln1, ps, "ln1", TF_D, TG_F32, &err) ||
        tg_mha_init(&t.attn, ps, "attn", TF_D, 2, TG_F32, &r, &err) ||
        tg_layer_norm_layer_init(&t.ln2, ps, "ln2", TF_D, TG_F32, &err) ||
        tg_linear_init(&t.ff1, ps, "ff1", TF_D, 4 * TF_D, true, TG_F32, &r, &err) ||
        tg_linear_init(&t.ff2, ps, "ff2", 4 * TF_D, TF_D, true, TG_F32, &r, &err) ||
        tg_linear_init(&t.out, ps, "out", TF_D, TF_V, true, TG_F32, &r, &err))
        die("transformer", err.msg);
    /* Biases and norms away from their initial zeros and ones. */
    for (size_t i = 0; i < tg_params_count(ps); i++) {
        tg_tensor *p = tg_params_at(ps, i, NULL);
        for (int64_t k = 0; k < tg_tensor_numel(p); k++)
            tu_put(p, k, tu_at(p, k) + 0.1 * tg_rng_normal(&r));
    }
    t.mask = tg_causal_mask(TF_T, TG_F32);
    tg_tensor_set_name(t.mask, "causal_mask");
    run_batch_model(&(batch_model){"transformer_block",
                                   ps,
                                   &t,
                                   1,
                                   1,
                                   3,
                                   2,
                                   tf_inputs,
                                   tf_fwd,
                                   {.batch = 1, .constants = true}});
    tg_tensor_free(t.mask);
    tg_params_free(ps);
}

/* ====== One model per shape list of every op row ====== */

static bool has_empty(const char *shapes)
{
    for (const char *p = shapes; *p; p++)
        if (*p == '0' && (p == shapes || strchr(";x:", p[-1])) && (!p[1] || strchr(";x@", p[1])))
            return true;
    return false;
}

static void op_models(void)
{
    for (int o = 0; o < tu_n_ops; o++) {
        const tu_op *op = &tu_ops[o];
        /* Rows that reseed the test's rng go through a test-only op, which
         * has no ONNX form; dropout_p05 below stands for them. */
        if (strstr(op->id, "dropout") && strcmp(op->id, "dropout_p0")) continue;
        char shapes[256], name[128];
        for (int s = 0; tu_op_shape_list(op, s, shapes, sizeof shapes); s++) {
            if (has_empty(shapes)) continue;
            tg_tensor *in[TU_MAX_INPUTS], *fresh[TU_MAX_INPUTS];
            int n = tu_op_inputs(op, shapes, TG_F32, 500 + (uint64_t)s, in);
            if (n < 0 || tu_op_inputs(op, shapes, TG_F32, 900 + (uint64_t)s, fresh) != n)
                die(op->id, "cannot make the inputs");
            snprintf(name, sizeof name, "op_%s_%d", op->id, s);
            tg_tape *tp = tg_tape_new();
            tg_tensor *y = op->record(tp, in);
            export(name, tp, in, n, &y, 1, NULL, NULL);
            for (int i = 0; i < n; i++) {
                memcpy(tg_tensor_data(in[i]), tg_tensor_cdata(fresh[i]),
                       (size_t)tg_tensor_numel(in[i]) * (tg_tensor_dtype(in[i]) == TG_F32 ? 4 : 8));
                tg_tensor_free(fresh[i]);
            }
            if (tg_tape_replay(tp)) die(name, tg_tape_error(tp));
            write_case(name, TOL_F32, in, n, &y, 1);
            tg_tape_free(tp);
            for (int i = 0; i < n; i++)
                tg_tensor_free(in[i]);
        }
    }
    /* Dropout is the identity in an ONNX model run for inference: the
     * expected output is the input itself. */
    tg_tensor *x = tu_random(TG_F32, "3x4", -1, 1, 3);
    tg_rng r;
    tg_rng_seed(&r, 1);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_dropout(tp, x, 0.5, &r);
    export("op_dropout_p05", tp, &x, 1, &y, 1, NULL, NULL);
    write_case("op_dropout_p05", TOL_F32, &x, 1, &x, 1);
    tg_tape_free(tp);
    tg_tensor_free(x);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    dir = argv[1];
    mkdir(dir, 0777); /* an existing folder is fine; anything else fails at the first file */
    seed_network(TG_F32, "seed_2_3_2", TOL_F32);
    seed_network(TG_F64, "seed_2_3_2_f64", TOL_F64);
    networks();
    op_models();
    printf("onnx_models: %d models written to %s\n", n_models, dir);
    return 0;
}
