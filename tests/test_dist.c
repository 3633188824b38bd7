/*
 * tapegrad_dist under MPI. One program in three roles:
 *
 *   test_dist [np2|np3|failure]   the driver: a Check suite whose tests start
 *                                 the ranks with mpirun (and one rank
 *                                 without it), each with a time limit, and
 *                                 read their exit status and output;
 *   test_dist --ranks DIR         a rank of the suite that checks the library
 *                                 (equivalence with one process, mismatched
 *                                 models, sharding, checkpoints, errors);
 *   test_dist --train DIR ...     a rank of a small training run with
 *                                 checkpoints, which one rank can kill itself
 *                                 in, and which can resume.
 *
 * The ranks' suite runs Check without fork (MPI does not survive one). Every
 * test does its collective calls on every rank and records what failed
 * without leaving the test (EXPECT), then the ranks agree: the test fails on
 * every rank, with the message of the first rank that saw a failure, so the
 * ranks never fall out of step and rank 0's report covers all of them.
 *
 * Run under valgrind (meson test --setup=valgrind), the driver starts the
 * ranks under valgrind too, with tests/dist/openmpi.supp for what Open MPI
 * itself never frees. Under AddressSanitizer the ranks run without leak
 * detection (see driver_main).
 */
#define _XOPEN_SOURCE 700 /* realpath */
#include <tapegrad/dist.h>
#include <tapegrad/nn.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef TG_HAVE_VALGRIND_H
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0
#endif

#ifndef TG_MPIRUN
#define TG_MPIRUN "mpirun"
#endif
#ifndef TG_DIST_SUPP_DIR
#define TG_DIST_SUPP_DIR "tests/dist"
#endif

/* ====== The ranks' side: agreed expectations ====== */

static int my_rank, n_ranks;
static char fail_msg[1024];
static bool failed_here;

/* Records the first failed expectation of this rank; the test goes on. */
#define EXPECT(cond, ...)                                     \
    do {                                                      \
        if (!(cond) && !failed_here) {                        \
            failed_here = true;                               \
            snprintf(fail_msg, sizeof fail_msg, __VA_ARGS__); \
        }                                                     \
    } while (0)

/* The end of every ranks' test: the test fails on every rank when it failed
 * on any, with the first such rank's message. */
static void agree_on_result(void)
{
    struct {
        int failed, rank;
    } in = {failed_here, my_rank}, out;
    MPI_Allreduce(&in, &out, 1, MPI_2INT, MPI_MAXLOC, MPI_COMM_WORLD);
    char msg[sizeof fail_msg];
    memcpy(msg, fail_msg, sizeof msg);
    if (out.failed) MPI_Bcast(msg, (int)sizeof msg, MPI_CHAR, out.rank, MPI_COMM_WORLD);
    failed_here = false;
    fail_msg[0] = '\0';
    ck_assert_msg(!out.failed, "rank %d of %d: %s", out.rank, n_ranks, msg);
}

static const char *test_dir = ".";

/* ====== Models and data ====== */

typedef enum model_kind { MODEL_MLP, MODEL_CNN } model_kind;

/* A small network whose parameters come from 'seed'. MLP: 6-8-3 with tanh;
 * CNN: a 3x3 convolution of 1 to 4 channels on 8x8 images, ReLU, 2x2 max
 * pooling and a 64-3 layer. */
typedef struct model {
    model_kind kind;
    tg_dtype dt;
    tg_params *ps;
    tg_tensor *w[2], *b[2];
    tg_conv_layer conv;
    tg_linear fc;
} model;

enum { MLP_IN = 6, MLP_HIDDEN = 8, CLASSES = 3, IMAGE = 8 };

static int64_t model_features(model_kind kind)
{
    return kind == MODEL_MLP ? MLP_IN : IMAGE * IMAGE;
}

static bool model_init(model *m, model_kind kind, tg_dtype dt, uint64_t seed)
{
    *m = (model){.kind = kind, .dt = dt, .ps = tg_params_new()};
    tg_rng r;
    tg_rng_seed(&r, seed);
    if (!m->ps) return false;
    if (kind == MODEL_CNN) {
        const tg_conv_opts same = {.padding = {1, 1}};
        return !tg_conv_layer_init(&m->conv, m->ps, "conv", 2, 1, 4, (const int[]){3, 3}, &same,
                                   true, dt, &r, NULL) &&
               !tg_linear_init(&m->fc, m->ps, "fc", 4 * (IMAGE / 2) * (IMAGE / 2), CLASSES, true,
                               dt, &r, NULL);
    }
    const int64_t sizes[] = {MLP_IN, MLP_HIDDEN, CLASSES};
    for (int l = 0; l < 2; l++) {
        char name[32];
        snprintf(name, sizeof name, "l%d.weight", l);
        m->w[l] = tg_params_add(m->ps, name, dt, 2, (int64_t[]){sizes[l], sizes[l + 1]});
        snprintf(name, sizeof name, "l%d.bias", l);
        m->b[l] = tg_params_add(m->ps, name, dt, 1, &sizes[l + 1]);
        if (!m->w[l] || !m->b[l] ||
            tg_init_tensor(m->w[l], TG_INIT_XAVIER_UNIFORM, sizes[l], sizes[l + 1], &r) ||
            tg_init_tensor(m->b[l], TG_INIT_XAVIER_UNIFORM, sizes[l], sizes[l + 1], &r))
            return false;
    }
    return true;
}

/* Marks two parameters before the layer that reads them, when there is a context. */
static void mark(tg_dist *d, tg_tape *tp, tg_tensor *a, tg_tensor *b)
{
    tg_error err = {0};
    if (d) EXPECT(tg_dist_mark(d, tp, (tg_tensor *[]){a, b}, 2, &err) == TG_OK, "%s", err.msg);
}

/* The loss over x [rows, features], y [rows, classes] weighted by w [rows, 1];
 * with 'd', each layer's parameters marked before it and the markers joined. */
static tg_tensor *model_record(tg_tape *tp, model *m, tg_dist *d, tg_tensor *x, tg_tensor *y,
                               tg_tensor *w)
{
    int64_t rows = tg_tensor_shape(x)[0];
    tg_tensor *h;
    if (m->kind == MODEL_CNN) {
        mark(d, tp, m->conv.weight, m->conv.bias);
        h = tg_reshape(tp, x, 4, (int64_t[]){rows, 1, IMAGE, IMAGE});
        h = tg_relu(tp, tg_conv_layer_forward(tp, &m->conv, h));
        h = tg_max_pool2d(tp, h, (const int[]){2, 2}, NULL, NULL);
        h = tg_reshape(tp, h, 2, (int64_t[]){rows, -1});
        mark(d, tp, m->fc.weight, m->fc.bias);
        h = tg_linear_forward(tp, &m->fc, h);
    } else {
        h = x;
        for (int l = 0; l < 2; l++) {
            mark(d, tp, m->w[l], m->b[l]);
            h = tg_dense(tp, h, m->w[l], m->b[l]);
            if (l == 0) h = tg_tanh(tp, h);
        }
    }
    tg_tensor *loss = tg_softmax_cross_entropy(tp, h, tg_mul(tp, y, w));
    return d ? tg_dist_loss(d, tp, loss) : loss;
}

/* n rows of a classification set, the same on every rank: x standard
 * normal, the class the largest of three fixed projections of the row. */
static void make_data(int64_t n, int64_t features, tg_dtype dt, tg_tensor **x, tg_tensor **y)
{
    *x = tg_tensor_new(dt, 2, (int64_t[]){n, features});
    *y = tg_tensor_new(dt, 2, (int64_t[]){n, CLASSES});
    tg_rng r;
    tg_rng_seed(&r, 11);
    for (int64_t i = 0; i < n; i++) {
        double score[CLASSES] = {0};
        for (int64_t k = 0; k < features; k++) {
            double v = tg_rng_normal(&r);
            for (int c = 0; c < CLASSES; c++)
                score[c] += v * cos((double)(c * features + k));
            if (dt == TG_F32)
                ((float *)tg_tensor_data(*x))[i * features + k] = (float)v;
            else
                ((double *)tg_tensor_data(*x))[i * features + k] = v;
        }
        int best = 0;
        for (int c = 1; c < CLASSES; c++)
            if (score[c] > score[best]) best = c;
        if (dt == TG_F32)
            ((float *)tg_tensor_data(*y))[i * CLASSES + best] = 1;
        else
            ((double *)tg_tensor_data(*y))[i * CLASSES + best] = 1;
    }
}

static double max_abs_diff(tg_params *a, tg_params *b)
{
    double worst = 0;
    for (size_t i = 0; i < tg_params_count(a); i++) {
        const tg_tensor *ta = tg_params_at(a, i, NULL), *tb = tg_params_at(b, i, NULL);
        for (int64_t k = 0; k < tg_tensor_numel(ta); k++) {
            double va = tg_tensor_dtype(ta) == TG_F32
                            ? (double)((const float *)tg_tensor_cdata(ta))[k]
                            : ((const double *)tg_tensor_cdata(ta))[k];
            double vb = tg_tensor_dtype(tb) == TG_F32
                            ? (double)((const float *)tg_tensor_cdata(tb))[k]
                            : ((const double *)tg_tensor_cdata(tb))[k];
            worst = fmax(worst, fabs(va - vb));
        }
    }
    return worst;
}

/* ====== Equivalence with one process ====== */

typedef struct train_case {
    const char *name;
    model_kind kind;
    tg_dtype dt;
    tg_optim_kind optim;
    bool marks;
    size_t bucket_bytes;
    double tol; /* max |dist - one process| over the parameters after training */
} train_case;

enum { EQ_ROWS = 50, EQ_BATCH = 12, EQ_EPOCHS = 2, EQ_SEED = 5 };

/* Trains the case's model twice: on every rank with the global batch split
 * over the ranks (starting from each rank's own initialisation, which the
 * context replaces with rank 0's), and in this process alone on whole
 * batches from rank 0's initialisation. 50 rows in batches of 12 leave a
 * short last batch of 2, which some ranks get no row of. */
static void train_equivalence(const train_case *c)
{
    tg_error err = {0};
    tg_tensor *x, *y;
    int64_t features = model_features(c->kind);
    make_data(EQ_ROWS, features, c->dt, &x, &y);
    tg_optim_opts oo = {.kind = c->optim,
                        .lr = c->optim == TG_OPTIM_SGD ? 0.1 : 0.01,
                        .momentum = c->optim == TG_OPTIM_SGD ? 0.9 : 0};
    model dm, rm;
    EXPECT(model_init(&dm, c->kind, c->dt, 100 + (uint64_t)my_rank), "model_init failed");
    EXPECT(model_init(&rm, c->kind, c->dt, 100), "model_init failed");

    /* Distributed. */
    tg_dist *d =
        tg_dist_new(MPI_COMM_WORLD, dm.ps, &(tg_dist_opts){.bucket_bytes = c->bucket_bytes}, &err);
    EXPECT(d, "tg_dist_new: %s", err.msg);
    tg_optim *dopt = tg_optim_new(dm.ps, &oo);
    tg_dist_batcher *db = tg_dist_batcher_new(d, x, y, EQ_BATCH, true, EQ_SEED, &err);
    int64_t local = tg_dist_batcher_local(db);
    tg_tensor *xb = tg_tensor_new(c->dt, 2, (int64_t[]){local, features});
    tg_tensor *yb = tg_tensor_new(c->dt, 2, (int64_t[]){local, CLASSES});
    tg_tensor *wb = tg_tensor_new(c->dt, 2, (int64_t[]){local, 1});
    tg_tape *tp = tg_tape_new();
    tg_tensor *loss = model_record(tp, &dm, c->marks ? d : NULL, xb, yb, wb);
    EXPECT(loss, "recording: %s", tg_tape_error(tp));
    double dist_loss = 0, ref_loss = 0;
    for (int e = 0; e < EQ_EPOCHS; e++) {
        int64_t rows;
        while ((rows = tg_dist_batcher_next(db, xb, yb)) > 0) {
            double mean = 0;
            tg_dist_batcher_weights(db, wb);
            tg_tape_replay(tp);
            tg_params_zero_grad(dm.ps);
            EXPECT(tg_dist_backward(d, tp, loss, &mean, &err) == TG_OK, "dist_backward: %s",
                   err.msg);
            tg_optim_step(dopt);
            dist_loss += mean * (double)rows;
        }
        EXPECT(rows == 0, "dist_batcher_next: %s", tg_dist_batcher_error(db));
    }
    EXPECT(tg_dist_verify(d, &dm.ps, 1, &err) == TG_OK, "after training: %s", err.msg);

    /* One process, whole batches. */
    tg_batcher *rb = tg_batcher_new(x, y, EQ_BATCH, true, EQ_SEED);
    tg_optim *ropt = tg_optim_new(rm.ps, &oo);
    tg_tensor *rx = tg_tensor_new(c->dt, 2, (int64_t[]){EQ_BATCH, features});
    tg_tensor *ry = tg_tensor_new(c->dt, 2, (int64_t[]){EQ_BATCH, CLASSES});
    tg_tensor *rw = tg_tensor_new(c->dt, 2, (int64_t[]){EQ_BATCH, 1});
    tg_tape *rtp = tg_tape_new();
    tg_tensor *rloss = model_record(rtp, &rm, NULL, rx, ry, rw);
    for (int e = 0; e < EQ_EPOCHS; e++) {
        int64_t rows;
        while ((rows = tg_batcher_next(rb, rx, ry)) > 0) {
            tg_batcher_weights(rb, rw);
            tg_tape_replay(rtp);
            tg_params_zero_grad(rm.ps);
            EXPECT(tg_backward(rtp, rloss) == TG_OK, "backward: %s", tg_tape_error(rtp));
            tg_optim_step(ropt);
            ref_loss += tg_tensor_item(rloss) * (double)rows;
        }
    }
    double diff = max_abs_diff(dm.ps, rm.ps), loss_diff = fabs(dist_loss - ref_loss);
    if (my_rank == 0)
        printf("# %s, %d ranks: max |one process - distributed| = %.3g over the parameters, "
               "%.3g on the summed loss\n",
               c->name, n_ranks, diff, loss_diff);
    /* With one rank nothing is split: the same bits. */
    double tol = n_ranks == 1 ? 0 : c->tol;
    EXPECT(diff <= tol, "%s: parameters differ by %.17g > %g", c->name, diff, tol);
    EXPECT(loss_diff <= tol * EQ_ROWS * EQ_EPOCHS, "%s: summed losses %.17g and %.17g", c->name,
           dist_loss, ref_loss);

    tg_tape_free(tp);
    tg_tape_free(rtp);
    tg_dist_forget(d, tp);
    tg_dist_batcher_free(db);
    tg_batcher_free(rb);
    tg_optim_free(dopt);
    tg_optim_free(ropt);
    tg_dist_free(d);
    tg_params_free(dm.ps);
    tg_params_free(rm.ps);
    tg_tensor *leaves[] = {x, y, xb, yb, wb, rx, ry, rw};
    for (size_t i = 0; i < sizeof leaves / sizeof *leaves; i++)
        tg_tensor_free(leaves[i]);
    agree_on_result();
}

/* F64 with SGD: the sums differ in order only, so the models agree to a few
 * ulps. F32 Adam: its step divides by the root of the squared gradients, so
 * a rounding difference in a tiny gradient moves a weight by up to the
 * learning rate's order times that relative difference. */
static const train_case train_cases[] = {
    {"mlp f64 sgd, marks, a bucket per parameter", MODEL_MLP, TG_F64, TG_OPTIM_SGD, true, 1, 1e-12},
    {"mlp f64 sgd, no marks, one bucket", MODEL_MLP, TG_F64, TG_OPTIM_SGD, false, 0, 1e-12},
    {"mlp f32 adam, marks, 256-byte buckets", MODEL_MLP, TG_F32, TG_OPTIM_ADAM, true, 256, 1e-5},
    {"cnn f64 sgd, marks, a bucket per parameter", MODEL_CNN, TG_F64, TG_OPTIM_SGD, true, 1, 1e-12},
    {"cnn f32 adam, marks, one bucket", MODEL_CNN, TG_F32, TG_OPTIM_ADAM, true, 0, 1e-5},
};

START_TEST(equivalence) { train_equivalence(&train_cases[_i]); }
END_TEST

/* ====== Start: mismatched models, the broadcast ====== */

/* Registers "fc.weight" [3x4] and "fc.bias" [4], F32 with values from the
 * seed; 'variant' (on the last rank) changes one thing. */
static tg_params *mismatch_params(int variant, uint64_t seed)
{
    tg_params *ps = tg_params_new();
    tg_rng r;
    tg_rng_seed(&r, seed);
    int64_t rows = variant == 1 ? 4 : 3, cols = variant == 1 ? 3 : 4;
    tg_tensor *w =
        tg_params_add(ps, "fc.weight", variant == 2 ? TG_F64 : TG_F32, 2, (int64_t[]){rows, cols});
    tg_init_tensor(w, TG_INIT_XAVIER_UNIFORM, 3, 4, &r);
    if (variant != 3) tg_params_add(ps, variant == 4 ? "fc.b" : "fc.bias", TG_F32, 1, &cols);
    return ps;
}

/* What tg_dist_new says when the last rank registered mismatch_params(v). */
static tg_status mismatch_message(int v, int last, char *msg, size_t size)
{
    switch (v) {
    case 1:
        snprintf(msg, size,
                 "dist_new: parameter 'fc.weight' is F32 [3x4] on rank 0 but F32 [4x3] on rank %d",
                 last);
        return TG_ERR_SHAPE;
    case 2:
        snprintf(msg, size,
                 "dist_new: parameter 'fc.weight' is F32 [3x4] on rank 0 but F64 [3x4] on rank %d",
                 last);
        return TG_ERR_DTYPE;
    case 3:
        snprintf(msg, size,
                 "dist_new: rank %d has 1 tensors; rank 0 has more, the next 'fc.bias' F32 [4]",
                 last);
        return TG_ERR_ARG;
    case 4:
        snprintf(msg, size,
                 "dist_new: tensor 1 is 'fc.bias' F32 [4] on rank 0 but 'fc.b' F32 [4] on rank %d",
                 last);
        return TG_ERR_ARG;
    }
    msg[0] = '\0';
    return TG_OK;
}

START_TEST(mismatched_models)
{
    int last = n_ranks - 1;
    for (int v = 0; v < 5; v++) {
        tg_params *ps = mismatch_params(my_rank == last ? v : 0, 1);
        tg_error err = {0};
        tg_dist *d = tg_dist_new(MPI_COMM_WORLD, ps, NULL, &err);
        char msg[256];
        tg_status st = mismatch_message(v, last, msg, sizeof msg);
        if (n_ranks == 1 || st == TG_OK) { /* one rank cannot differ from itself */
            EXPECT(d && err.status == TG_OK, "variant %d: %s", v, err.msg);
        } else {
            EXPECT(!d && err.status == st && !strcmp(err.msg, msg),
                   "variant %d: got status %d \"%s\", want %d \"%s\"", v, err.status, err.msg, st,
                   msg);
        }
        tg_dist_free(d);
        tg_params_free(ps);
    }
    agree_on_result();
}
END_TEST

START_TEST(start_from_rank_0)
{
    tg_params *ps = mismatch_params(0, 10 + (uint64_t)my_rank), *rank0 = mismatch_params(0, 10);
    tg_error err = {0};
    tg_dist *d = tg_dist_new(MPI_COMM_WORLD, ps, NULL, &err);
    EXPECT(d, "dist_new: %s", err.msg);
    EXPECT(max_abs_diff(ps, rank0) == 0, "the parameters are not rank 0's");
    EXPECT(tg_dist_verify(d, &ps, 1, &err) == TG_OK, "verify: %s", err.msg);
    /* One rank changes a value: verify names it, on every rank. */
    if (n_ranks > 1 && my_rank == n_ranks - 1)
        ((float *)tg_tensor_data(tg_params_get(ps, "fc.bias")))[2] = 1;
    tg_status st = tg_dist_verify(d, &ps, 1, &err);
    char want[128];
    snprintf(want, sizeof want, "dist_verify: 'fc.bias' on rank %d differs from rank 0",
             n_ranks - 1);
    if (n_ranks > 1)
        EXPECT(st == TG_ERR_STATE && !strcmp(err.msg, want), "verify: %d \"%s\", want \"%s\"", st,
               err.msg, want);
    /* And the broadcast puts rank 0's value back. */
    EXPECT(tg_dist_broadcast(d, &ps, 1, &err) == TG_OK, "broadcast: %s", err.msg);
    EXPECT(max_abs_diff(ps, rank0) == 0, "broadcast: not rank 0's values");
    tg_dist_free(d);
    tg_params_free(ps);
    tg_params_free(rank0);
    agree_on_result();
}
END_TEST

START_TEST(bad_arguments)
{
    tg_error err = {0};
    tg_params *ps = mismatch_params(0, 1);
    EXPECT(!tg_dist_new(MPI_COMM_NULL, ps, NULL, &err) && err.status == TG_ERR_ARG &&
               !strcmp(err.msg, "dist_new: the communicator is MPI_COMM_NULL"),
           "MPI_COMM_NULL: %s", err.msg);
    /* A NULL registry on the last rank only: it says why, the others name it. */
    bool null_here = my_rank == n_ranks - 1;
    tg_dist *d = tg_dist_new(MPI_COMM_WORLD, null_here ? NULL : ps, NULL, &err);
    char want[128];
    snprintf(want, sizeof want, "dist_new: failed on rank %d (its own error says why)",
             n_ranks - 1);
    EXPECT(!d, "NULL registry on rank %d: made a context", n_ranks - 1);
    if (null_here)
        EXPECT(err.status == TG_ERR_ARG && !strcmp(err.msg, "dist_new: NULL parameter registry"),
               "%s", err.msg);
    else
        EXPECT(err.status == TG_ERR_STATE && !strcmp(err.msg, want), "%s", err.msg);

    /* Marks: a tensor the context does not reduce, twice the same, on another dtype. */
    d = tg_dist_new(MPI_COMM_WORLD, ps, NULL, &err);
    tg_tape *tp = tg_tape_new();
    tg_tensor *w = tg_params_get(ps, "fc.weight"), *b = tg_params_get(ps, "fc.bias");
    tg_tensor *other = tg_tensor_new(TG_F32, 1, (int64_t[]){4});
    EXPECT(tg_dist_mark(d, tp, &other, 1, &err) == TG_ERR_ARG &&
               strstr(err.msg, "tensor 0 is not a parameter the context reduces"),
           "foreign tensor: %s", err.msg);
    EXPECT(tg_dist_mark(d, tp, (tg_tensor *[]){w, w}, 2, &err) == TG_ERR_ARG &&
               !strcmp(err.msg, "dist_mark: 'fc.weight' is given twice"),
           "twice: %s", err.msg);
    EXPECT(tg_dist_mark(d, tp, &w, 1, &err) == TG_OK, "%s", err.msg);
    EXPECT(tg_dist_mark(d, tp, (tg_tensor *[]){b, w}, 2, &err) == TG_ERR_ARG &&
               !strcmp(err.msg, "dist_mark: 'fc.weight' is marked on this tape already"),
           "marked again: %s", err.msg);
    EXPECT(tg_dist_mark(d, tp, NULL, 1, &err) == TG_ERR_ARG, "NULL params");
    EXPECT(!tg_dist_loss(NULL, tp, w), "NULL context");
    tg_tape_free(tp);
    tg_dist_forget(d, tp);
    tg_tensor_free(other);
    tg_dist_free(d);
    tg_params_free(ps);
    agree_on_result();
}
END_TEST

/* ====== Steps that fail ====== */

/* W [3x4] and b [4] on x [2x3]: sum((x W + b)^2), recorded with W marked
 * after its use when 'late', so its gradient arrives after its marker. */
START_TEST(failed_steps)
{
    tg_error err = {0};
    tg_params *ps = mismatch_params(0, 3);
    tg_dist *d = tg_dist_new(MPI_COMM_WORLD, ps, NULL, &err);
    tg_tensor *w = tg_params_get(ps, "fc.weight"), *b = tg_params_get(ps, "fc.bias");
    tg_tensor *x = tg_tensor_from(TG_F32, 2, (int64_t[]){2, 3}, (float[]){1, 2, 3, -1, 0.5f, 2});
    tg_tape *tp = tg_tape_new();
    /* Both in one bucket, marked after the layer: the bucket starts before the
     * layer's VJP adds their gradients. The bias is first in the bucket. */
    tg_tensor *z = tg_dense(tp, x, w, b);
    EXPECT(tg_dist_mark(d, tp, (tg_tensor *[]){w, b}, 2, &err) == TG_OK, "%s", err.msg);
    tg_tensor *loss = tg_dist_loss(d, tp, tg_sum(tp, tg_square(tp, z)));
    tg_params_zero_grad(ps);
    tg_status st = tg_dist_backward(d, tp, loss, NULL, &err);
    EXPECT(st == TG_ERR_STATE && !strcmp(err.msg, "dist_backward: 'fc.bias' gained gradient "
                                                  "after its marker ran: mark it before its first "
                                                  "use on the tape"),
           "late gradient: %d \"%s\"", st, err.msg);
    tg_dist_forget(d, tp);
    tg_tape_free(tp);

    /* A step that fails on the last rank alone (no loss): every rank fails,
     * and no gradient is averaged (the others' sweeps added to theirs). */
    tp = tg_tape_new();
    loss = tg_sum(tp, tg_square(tp, tg_dense(tp, x, w, b)));
    tg_params_zero_grad(ps);
    EXPECT(tg_backward(tp, loss) == TG_OK, "%s", tg_tape_error(tp));
    float before = ((const float *)tg_tensor_cdata(tg_tensor_grad(w)))[0];
    bool fail_here = my_rank == n_ranks - 1;
    st = tg_dist_backward(d, tp, fail_here ? NULL : loss, NULL, &err);
    char want[128];
    snprintf(want, sizeof want, "dist_backward: the step failed on 1 of %d ranks", n_ranks);
    if (fail_here)
        EXPECT(st == TG_ERR_ARG && !strcmp(err.msg, "dist_backward: NULL loss"), "%s", err.msg);
    else
        EXPECT(st == TG_ERR_STATE && !strcmp(err.msg, want), "%s", err.msg);
    float after = ((const float *)tg_tensor_cdata(tg_tensor_grad(w)))[0];
    EXPECT(after == (fail_here ? before : 2 * before), "gradient %g after a failed step, %g before",
           (double)after, (double)before);
    tg_tape_free(tp);

    /* A parameter with a gradient on rank 0 only (a fresh one: a gradient
     * once made stays, zeroed or not). */
    if (n_ranks > 1) {
        tg_params *fresh = mismatch_params(0, 3);
        tg_dist *d2 = tg_dist_new(MPI_COMM_WORLD, fresh, NULL, &err);
        tg_tensor *fw = tg_params_get(fresh, "fc.weight"), *fb = tg_params_get(fresh, "fc.bias");
        tp = tg_tape_new();
        tg_tensor *h = tg_matmul(tp, x, fw);
        loss = tg_sum(tp, my_rank == 0 ? tg_add_bias(tp, h, fb) : h);
        st = tg_dist_backward(d2, tp, loss, NULL, &err);
        snprintf(want, sizeof want,
                 "dist_backward: parameter 'fc.bias' has a gradient on 1 of %d "
                 "ranks",
                 n_ranks);
        EXPECT(st == TG_ERR_STATE && !strcmp(err.msg, want), "partial gradient: %d \"%s\"", st,
               err.msg);
        tg_tape_free(tp);
        tg_dist_free(d2);
        tg_params_free(fresh);
    }
    tg_tensor_free(x);
    tg_dist_free(d);
    tg_params_free(ps);
    agree_on_result();
}
END_TEST

/* ====== Sharding ====== */

/* 37 rows in global batches of 8, two epochs: each rank's rows are its
 * slice of the batch tg_batcher gives one process with the same seed, and
 * the weights are N L / R on them. */
START_TEST(sharding)
{
    enum { N = 37, B = 8 };
    tg_error err = {0};
    tg_params *ps = mismatch_params(0, 1);
    tg_dist *d = tg_dist_new(MPI_COMM_WORLD, ps, NULL, &err);
    tg_tensor *x = tg_tensor_new(TG_F64, 2, (int64_t[]){N, 2});
    for (int64_t i = 0; i < 2 * N; i++)
        ((double *)tg_tensor_data(x))[i] = (double)i;
    tg_dist_batcher *db = tg_dist_batcher_new(d, x, NULL, B, true, 42, &err);
    tg_batcher *rb = tg_batcher_new(x, NULL, B, true, 42);
    int64_t local = (B + n_ranks - 1) / n_ranks;
    EXPECT(tg_dist_batcher_local(db) == local, "local rows %lld",
           (long long)tg_dist_batcher_local(db));
    EXPECT(tg_dist_batcher_batches(db) == 5, "batches");
    tg_tensor *xb = tg_tensor_new(TG_F64, 2, (int64_t[]){local, 2});
    tg_tensor *wb = tg_tensor_new(TG_F32, 1, (int64_t[]){local});
    tg_tensor *rx = tg_tensor_new(TG_F64, 2, (int64_t[]){B, 2});
    tg_tensor *count = tg_tensor_new(TG_I64, 1, (int64_t[]){1});
    for (int e = 0; e < 2; e++) {
        int64_t total, ref;
        while ((ref = tg_batcher_next(rb, rx, NULL)) > 0) {
            total = tg_dist_batcher_next(db, xb, NULL);
            int64_t lo = total * my_rank / n_ranks, hi = total * (my_rank + 1) / n_ranks;
            int64_t rows = tg_dist_batcher_rows(db);
            EXPECT(total == ref && rows == hi - lo, "epoch %d: %lld global rows, %lld here", e,
                   (long long)total, (long long)rows);
            EXPECT(!memcmp(tg_tensor_cdata(xb), (const double *)tg_tensor_cdata(rx) + 2 * lo,
                           (size_t)rows * 2 * sizeof(double)),
                   "epoch %d: not rows %lld..%lld of the batch", e, (long long)lo, (long long)hi);
            for (int64_t i = rows * 2; i < local * 2; i++)
                EXPECT(((const double *)tg_tensor_cdata(xb))[i] == 0, "a left-over row not zeroed");
            EXPECT(tg_dist_batcher_weights(db, wb) == TG_OK, "%s", tg_dist_batcher_error(db));
            float real = (float)((double)n_ranks * (double)local / (double)total);
            for (int64_t i = 0; i < local; i++)
                EXPECT(((const float *)tg_tensor_cdata(wb))[i] == (i < rows ? real : 0.0f),
                       "weight %lld is %g", (long long)i,
                       (double)((const float *)tg_tensor_cdata(wb))[i]);
            /* Together the ranks took the whole batch. */
            *(int64_t *)tg_tensor_data(count) = rows;
            EXPECT(tg_dist_sum(d, count, &err) == TG_OK, "%s", err.msg);
            EXPECT(*(const int64_t *)tg_tensor_cdata(count) == total, "the ranks took %lld of %lld",
                   (long long)*(const int64_t *)tg_tensor_cdata(count), (long long)total);
        }
        EXPECT(tg_dist_batcher_next(db, xb, NULL) == 0, "the epoch does not end with tg_batcher's");
    }
    tg_tensor *other = tg_tensor_new(TG_F32, 2, (int64_t[]){local, 2});
    EXPECT(tg_dist_batcher_next(db, other, NULL) == -1 &&
               strstr(tg_dist_batcher_error(db), "xb must hold"),
           "wrong leaf: %s", tg_dist_batcher_error(db));
    EXPECT(!tg_dist_batcher_new(d, x, NULL, 0, true, 1, &err) && err.status == TG_ERR_ARG &&
               !strcmp(err.msg, "dist_batcher_new: global_batch must be >= 1"),
           "%s", err.msg);
    tg_tensor *leaves[] = {x, xb, wb, rx, count, other};
    for (size_t i = 0; i < sizeof leaves / sizeof *leaves; i++)
        tg_tensor_free(leaves[i]);
    tg_dist_batcher_free(db);
    tg_batcher_free(rb);
    tg_dist_free(d);
    tg_params_free(ps);
    agree_on_result();
}
END_TEST

START_TEST(sums)
{
    tg_error err = {0};
    tg_params *ps = mismatch_params(0, 1);
    tg_dist *d = tg_dist_new(MPI_COMM_WORLD, ps, NULL, &err);
    tg_tensor *t = tg_tensor_from(TG_F64, 1, (int64_t[]){2}, (double[]){1, (double)my_rank});
    EXPECT(tg_dist_sum(d, t, &err) == TG_OK, "%s", err.msg);
    const double *v = tg_tensor_cdata(t);
    EXPECT(v[0] == n_ranks && v[1] == n_ranks * (n_ranks - 1) / 2.0, "sum %g %g", v[0], v[1]);
    /* The last rank's tensor is longer: every rank refuses, nothing changes. */
    tg_tensor *u = tg_tensor_new(TG_F32, 1, (int64_t[]){my_rank == n_ranks - 1 ? 3 : 2});
    tg_status st = tg_dist_sum(d, u, &err);
    if (n_ranks > 1)
        EXPECT(st == TG_ERR_SHAPE &&
                   !strcmp(err.msg, "dist_sum: the ranks' tensors differ: 2 to 3 elements, "
                                    "dtypes F32 and F32"),
               "%d \"%s\"", st, err.msg);
    tg_tensor_free(t);
    tg_tensor_free(u);
    tg_dist_free(d);
    tg_params_free(ps);

    /* Batch norm's running statistics: each rank's own, then their mean; the
     * parameters that require grad are left alone. */
    tg_params *bn_ps = tg_params_new();
    tg_batch_norm_layer bn;
    EXPECT(tg_batch_norm_layer_init(&bn, bn_ps, "bn", 2, TG_F32, &err) == TG_OK, "%s", err.msg);
    d = tg_dist_new(MPI_COMM_WORLD, bn_ps, NULL, &err);
    float *mean = tg_tensor_data(bn.running_mean), *gamma = tg_tensor_data(bn.weight);
    mean[0] = (float)my_rank;
    gamma[0] = (float)my_rank;
    EXPECT(tg_dist_average_buffers(d, &err) == TG_OK, "%s", err.msg);
    EXPECT(mean[0] == (float)(n_ranks - 1) / 2 && mean[1] == 0 && gamma[0] == (float)my_rank &&
               ((const float *)tg_tensor_cdata(bn.running_var))[1] == 1,
           "averaged buffers: mean %g %g, weight %g", (double)mean[0], (double)mean[1],
           (double)gamma[0]);
    tg_dist_free(d);
    tg_params_free(bn_ps);
    agree_on_result();
}
END_TEST

/* ====== Checkpoints ====== */

START_TEST(checkpoints)
{
    tg_error err = {0};
    model m, ref;
    model_init(&m, MODEL_MLP, TG_F32, 7);
    model_init(&ref, MODEL_MLP, TG_F32, 7);
    tg_dist *d = tg_dist_new(MPI_COMM_WORLD, m.ps, NULL, &err);
    tg_optim *opt = tg_optim_new(m.ps, &(tg_optim_opts){.kind = TG_OPTIM_ADAM, .lr = 1e-3});
    tg_params *sets[] = {m.ps, tg_optim_state(opt)};
    /* Optimizer state that differs from zero: one step on a gradient of ones. */
    for (size_t i = 0; i < tg_params_count(m.ps); i++) {
        tg_tensor *p = tg_params_at(m.ps, i, NULL);
        tg_tape *tp = tg_tape_new();
        tg_backward(tp, tg_sum(tp, p));
        tg_tape_free(tp);
    }
    tg_optim_step(opt);
    tg_params *saved = tg_params_new();
    for (int s = 0; s < 2; s++)
        for (size_t i = 0; i < tg_params_count(sets[s]); i++) {
            const char *name;
            tg_tensor *t = tg_params_at(sets[s], i, &name), *c;
            c = tg_params_add(saved, name, tg_tensor_dtype(t), tg_tensor_rank(t),
                              tg_tensor_shape(t));
            memcpy(tg_tensor_data(c), tg_tensor_cdata(t),
                   (size_t)tg_tensor_numel(t) * (tg_tensor_dtype(t) == TG_F32 ? 4 : 8));
        }
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/ckpt_%d.safetensors", test_dir, n_ranks);
    EXPECT(tg_dist_checkpoint_save(d, path, sets, 2, &err) == TG_OK, "save: %s", err.msg);
    /* Every rank scrambles its copy; the load brings back rank 0's file. */
    for (int s = 0; s < 2; s++)
        for (size_t i = 0; i < tg_params_count(sets[s]); i++) {
            tg_tensor *t = tg_params_at(sets[s], i, NULL);
            memset(tg_tensor_data(t), 0x40 + my_rank,
                   (size_t)tg_tensor_numel(t) * (tg_tensor_dtype(t) == TG_F32 ? 4 : 8));
        }
    EXPECT(tg_dist_checkpoint_load(d, path, sets, 2, &err) == TG_OK, "load: %s", err.msg);
    size_t at = 0;
    for (int s = 0; s < 2; s++)
        for (size_t i = 0; i < tg_params_count(sets[s]); i++, at++) {
            const char *name;
            tg_tensor *t = tg_params_at(sets[s], i, &name);
            EXPECT(!memcmp(tg_tensor_cdata(t), tg_tensor_cdata(tg_params_at(saved, at, NULL)),
                           (size_t)tg_tensor_numel(t) * (tg_tensor_dtype(t) == TG_F32 ? 4 : 8)),
                   "'%s' is not what was saved", name);
        }
    /* Failures are rank 0's, reported on every rank. */
    char missing[PATH_MAX + 32];
    snprintf(missing, sizeof missing, "%s/no/such/dir/c.safetensors", test_dir);
    tg_status st = tg_dist_checkpoint_load(d, missing, sets, 2, &err);
    EXPECT(st == TG_ERR_IO && strstr(err.msg, missing), "load of a missing file: %d \"%s\"", st,
           err.msg);
    st = tg_dist_checkpoint_save(d, missing, sets, 2, &err);
    EXPECT(st == TG_ERR_IO && strstr(err.msg, "no/such/dir"),
           "save into a missing folder: %d \"%s\"", st, err.msg);
    tg_optim_free(opt);
    tg_dist_free(d);
    tg_params_free(m.ps);
    tg_params_free(ref.ps);
    tg_params_free(saved);
    agree_on_result();
}
END_TEST

static int ranks_main(int argc, char **argv)
{
    /* The driver's Check settings are not the ranks': no fork, no TAP file
     * shared by all of them, every case. */
    unsetenv("CK_TAP_LOG_FILE_NAME");
    unsetenv("CK_RUN_CASE");
    unsetenv("CK_RUN_SUITE");
    if (argc > 2) test_dir = argv[2];
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &my_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &n_ranks);
    Suite *s = suite_create("dist_ranks");
    TCase *tc = tcase_create("ranks");
    tcase_set_timeout(tc, 0);
    tcase_add_test(tc, mismatched_models);
    tcase_add_test(tc, start_from_rank_0);
    tcase_add_test(tc, bad_arguments);
    tcase_add_test(tc, failed_steps);
    tcase_add_test(tc, sharding);
    tcase_add_test(tc, sums);
    tcase_add_test(tc, checkpoints);
    tcase_add_loop_test(tc, equivalence, 0, (int)(sizeof train_cases / sizeof *train_cases));
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, my_rank == 0 ? CK_NORMAL : CK_SILENT);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    fflush(stdout);
    MPI_Finalize();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* ====== A training run to kill and resume ====== */

static volatile sig_atomic_t term_rank;

/* mpirun ends the other ranks with SIGTERM when one dies: say so before going. */
static void on_sigterm(int sig)
{
    char msg[160];
    int n = snprintf(msg, sizeof msg,
                     "rank %d: stopped by mpirun (signal %d): another rank failed; resume from the "
                     "last checkpoint\n",
                     (int)term_rank, sig);
    if (n > 0) (void)!write(STDERR_FILENO, msg, (size_t)n);
    _exit(128 + sig);
}

/* test_dist --train DIR STEPS EVERY [--die-at S] [--resume]: Adam on the MLP
 * (F32), global batches of 16 over 90 rows (6 a epoch, the last short),
 * marks and 128-byte buckets; a checkpoint DIR/ckpt.safetensors (parameters,
 * Adam's state, the step) every EVERY steps, the model in
 * DIR/final.safetensors at the end. With --die-at, the last rank kills itself
 * (SIGKILL) as step S starts. */
static int train_main(int argc, char **argv)
{
    if (argc < 5) return EXIT_FAILURE;
    const char *dir = argv[2];
    int steps = atoi(argv[3]), every = atoi(argv[4]), die_at = -1;
    bool resume = false;
    for (int i = 5; i < argc; i++) {
        if (!strcmp(argv[i], "--die-at") && i + 1 < argc) die_at = atoi(argv[++i]);
        if (!strcmp(argv[i], "--resume")) resume = true;
    }
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &my_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &n_ranks);
    term_rank = my_rank;
    signal(SIGTERM, on_sigterm);

    enum { ROWS = 90, BATCH = 16 };
    tg_error err = {0};
    tg_tensor *x, *y;
    make_data(ROWS, MLP_IN, TG_F32, &x, &y);
    model m;
    model_init(&m, MODEL_MLP, TG_F32, 200 + (uint64_t)my_rank);
    tg_params *meta = tg_params_new();
    tg_tensor *step_t = tg_params_add(meta, "train.step", TG_F64, 0, (int64_t[]){1});
    tg_dist *d = tg_dist_new(MPI_COMM_WORLD, m.ps, &(tg_dist_opts){.bucket_bytes = 128}, &err);
    tg_optim *opt =
        d ? tg_optim_new(m.ps, &(tg_optim_opts){.kind = TG_OPTIM_ADAM, .lr = 0.01}) : NULL;
    tg_params *sets[] = {m.ps, tg_optim_state(opt), meta};
    char ckpt[PATH_MAX], final[PATH_MAX];
    snprintf(ckpt, sizeof ckpt, "%s/ckpt.safetensors", dir);
    snprintf(final, sizeof final, "%s/final.safetensors", dir);
    if (!d || !opt || !step_t) goto fail;
    if (resume && tg_dist_checkpoint_load(d, ckpt, sets, 3, &err) != TG_OK) goto fail;
    int step = (int)*(const double *)tg_tensor_cdata(step_t);
    if (my_rank == 0 && resume) printf("resuming at step %d\n", step);

    tg_dist_batcher *db = NULL;
    int64_t local = (BATCH + n_ranks - 1) / n_ranks, per_epoch = (ROWS + BATCH - 1) / BATCH;
    tg_tensor *xb = tg_tensor_new(TG_F32, 2, (int64_t[]){local, MLP_IN});
    tg_tensor *yb = tg_tensor_new(TG_F32, 2, (int64_t[]){local, CLASSES});
    tg_tensor *wb = tg_tensor_new(TG_F32, 2, (int64_t[]){local, 1});
    tg_tape *tp = tg_tape_new();
    tg_tensor *loss = model_record(tp, &m, d, xb, yb, wb);
    bool ok = loss != NULL && !failed_here;
    for (; ok && step < steps; step++) {
        /* The order of an epoch depends on (seed, epoch) alone, so a run
         * resumed in the middle of one skips the batches it did. */
        if (!db || step % per_epoch == 0) {
            tg_dist_batcher_free(db);
            db = tg_dist_batcher_new(d, x, y, BATCH, true, 1000 + (uint64_t)(step / per_epoch),
                                     &err);
            for (int k = 0; db && k < step % per_epoch; k++)
                tg_dist_batcher_next(db, xb, yb);
        }
        if (step == die_at && my_rank == n_ranks - 1) raise(SIGKILL);
        ok = db && tg_dist_batcher_next(db, xb, yb) > 0 &&
             tg_dist_batcher_weights(db, wb) == TG_OK && tg_tape_replay(tp) == TG_OK;
        tg_params_zero_grad(m.ps);
        ok =
            tg_dist_backward(d, tp, loss, NULL, &err) == TG_OK && ok && tg_optim_step(opt) == TG_OK;
        *(double *)tg_tensor_data(step_t) = step + 1;
        if (ok && (step + 1) % every == 0) ok = !tg_dist_checkpoint_save(d, ckpt, sets, 3, &err);
    }
    if (ok) ok = !tg_dist_verify(d, sets, 2, &err);
    if (ok) ok = !tg_dist_checkpoint_save(d, final, sets, 2, &err);
    tg_dist_forget(d, tp);
    tg_tape_free(tp);
    tg_dist_batcher_free(db);
    tg_tensor_free(xb);
    tg_tensor_free(yb);
    tg_tensor_free(wb);
    if (!ok) goto fail;
    tg_optim_free(opt);
    tg_dist_free(d);
    tg_params_free(m.ps);
    tg_params_free(meta);
    tg_tensor_free(x);
    tg_tensor_free(y);
    MPI_Finalize();
    return EXIT_SUCCESS;
fail:
    /* No MPI_Finalize: mpirun ends the job when a rank exits without it. */
    fprintf(stderr, "rank %d: %s\n", my_rank, err.msg[0] ? err.msg : "training failed");
    return EXIT_FAILURE;
}

/* ====== The driver ====== */

static char self[PATH_MAX];
static char work_dir[] = "/tmp/tg_dist_XXXXXX";
static char rank_asan_options[512]; /* see driver_main */

/* Runs argv with its output into 'log' and a time limit; the exit status,
 * 128 + the signal, or -1 when it was stopped at the limit. */
static int run(char *const argv[], const char *log, double limit, double *seconds)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        setenv("ASAN_OPTIONS", rank_asan_options, 1);
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    if (pid < 0) return -2;
    setpgid(pid, pid);
    int st = 0, result = -1;
    for (;;) {
        pid_t got = waitpid(pid, &st, WNOHANG);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        *seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        if (got == pid) {
            result = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            break;
        }
        if (*seconds > limit) { /* mpirun forwards TERM to its ranks; KILL ends the rest */
            kill(-pid, SIGTERM);
            sleep(2);
            kill(-pid, SIGKILL);
            waitpid(pid, &st, 0);
            break;
        }
        nanosleep(&(struct timespec){0, 20000000}, NULL);
    }
    return result;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return strdup("");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)(n > 0 ? n : 0) + 1);
    size_t got = s ? fread(s, 1, (size_t)(n > 0 ? n : 0), f) : 0;
    fclose(f);
    if (s) s[got] = '\0';
    return s;
}

/* The time limits scale with valgrind, which runs the ranks 20-50 times slower. */
static double limit(double seconds) { return RUNNING_ON_VALGRIND ? 40 * seconds : seconds; }

/* Runs 'np' ranks of this program with the given arguments (np 0: one
 * process without mpirun), echoes their output to stderr for the test log,
 * and returns the exit status (see run); *out gets the output. */
static int run_ranks(int np, const char *const *args, double max_s, double *seconds, char **out)
{
    const char *argv[64];
    int n = 0;
    char np_s[16];
    snprintf(np_s, sizeof np_s, "%d", np);
    if (np > 0) {
        argv[n++] = TG_MPIRUN;
        if (geteuid() == 0) argv[n++] = "--allow-run-as-root";
        argv[n++] = "--oversubscribe"; /* 3 ranks on a 2-core machine */
        argv[n++] = "--bind-to";
        argv[n++] = "none";
        argv[n++] = "-np";
        argv[n++] = np_s;
    }
    if (RUNNING_ON_VALGRIND) {
        argv[n++] = "/usr/bin/valgrind";
        argv[n++] = "--error-exitcode=1";
        argv[n++] = "--leak-check=full";
        argv[n++] = "--errors-for-leak-kinds=definite,indirect,possible";
        argv[n++] = "--quiet";
        argv[n++] = "--num-callers=40";
        argv[n++] = "--suppressions=" TG_DIST_SUPP_DIR "/openmpi.supp";
    }
    argv[n++] = self;
    for (int i = 0; args[i]; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    char log[PATH_MAX];
    snprintf(log, sizeof log, "%s/out.log", work_dir);
    int st = run((char *const *)argv, log, limit(max_s), seconds);
    *out = slurp(log);
    fprintf(stderr, "$");
    for (int i = 0; argv[i]; i++)
        fprintf(stderr, " %s", argv[i]);
    fprintf(stderr, "\n%s(exit %d after %.1f s)\n", *out, st, *seconds);
    return st;
}

static void expect_ranks_pass(int np)
{
    double s;
    char *out;
    int st = run_ranks(np, (const char *[]){"--ranks", work_dir, NULL}, 60, &s, &out);
    ck_assert_msg(st == 0, "%d ranks: exit %d%s; their output:\n%s", np ? np : 1, st,
                  st == -1 ? " (stopped at the time limit)" : "", out);
    free(out);
}

START_TEST(one_rank) { expect_ranks_pass(0); }
END_TEST

START_TEST(two_ranks) { expect_ranks_pass(2); }
END_TEST

START_TEST(three_ranks) { expect_ranks_pass(3); }
END_TEST

static bool same_file(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    bool same = fa && fb;
    while (same) {
        int ca = getc(fa), cb = getc(fb);
        same = ca == cb;
        if (ca == EOF) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

/* An uninterrupted run; a run whose last rank dies at step 25 (of 40, with a
 * checkpoint every 10, so in the middle of the fifth epoch of 6 steps); the
 * job must end within the limit, with a message from the rank left; the run
 * resumed from step 20 must end with the uninterrupted run's model, bit for
 * bit. */
START_TEST(kill_and_resume)
{
    char a[PATH_MAX], b[PATH_MAX], fa[PATH_MAX + 32], fb[PATH_MAX + 32];
    snprintf(a, sizeof a, "%s/whole", work_dir);
    snprintf(b, sizeof b, "%s/killed", work_dir);
    ck_assert(mkdir(a, 0755) == 0 && mkdir(b, 0755) == 0);
    double s;
    char *out;
    int st = run_ranks(2, (const char *[]){"--train", a, "40", "10", NULL}, 60, &s, &out);
    ck_assert_msg(st == 0, "uninterrupted run: exit %d:\n%s", st, out);
    free(out);

    st = run_ranks(2, (const char *[]){"--train", b, "40", "10", "--die-at", "25", NULL}, 30, &s,
                   &out);
    ck_assert_msg(st != -1, "a rank was killed and the job still ran after %.0f s:\n%s", s, out);
    ck_assert_msg(st != 0, "a rank was killed and mpirun exited 0:\n%s", out);
    ck_assert_msg(strstr(out, "exited on signal 9"), "no word from mpirun on the killed rank:\n%s",
                  out);
    ck_assert_msg(strstr(out, "rank 0: stopped by mpirun"), "no word from the rank left:\n%s", out);
    free(out);

    st = run_ranks(2, (const char *[]){"--train", b, "40", "10", "--resume", NULL}, 60, &s, &out);
    ck_assert_msg(st == 0 && strstr(out, "resuming at step 20"), "resumed run: exit %d:\n%s", st,
                  out);
    free(out);
    snprintf(fa, sizeof fa, "%s/final.safetensors", a);
    snprintf(fb, sizeof fb, "%s/final.safetensors", b);
    ck_assert_msg(same_file(fa, fb), "%s and %s differ", fa, fb);
}
END_TEST

static int driver_main(int argc, char **argv)
{
    if (!realpath(argv[0], self) || !mkdtemp(work_dir)) {
        perror("test_dist");
        return EXIT_FAILURE;
    }
    /* Under AddressSanitizer the ranks would report as leaks what Open MPI
     * keeps until exit, and Open MPI, built without frame pointers, leaves
     * LeakSanitizer's fast unwinder stacks that no suppression can name (the
     * slow one makes a run five times longer). So the ranks run without leak
     * detection there; valgrind checks them for leaks, with
     * tests/dist/openmpi.supp. The driver keeps its own leak check. */
    const char *asan = getenv("ASAN_OPTIONS");
    snprintf(rank_asan_options, sizeof rank_asan_options, "%s%sdetect_leaks=0", asan ? asan : "",
             asan && *asan ? ":" : "");

    const char *group = argc > 1 ? argv[1] : "all";
    Suite *s = suite_create("dist");
    TCase *tc = tcase_create("mpirun");
    tcase_set_timeout(tc, 0); /* each run has its own limit */
    bool all = !strcmp(group, "all");
    if (all || !strcmp(group, "np2")) {
        tcase_add_test(tc, one_rank);
        tcase_add_test(tc, two_ranks);
    }
    if (all || !strcmp(group, "np3")) tcase_add_test(tc, three_ranks);
    if (all || !strcmp(group, "failure")) tcase_add_test(tc, kill_and_resume);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", work_dir);
    if (system(cmd) != 0) fprintf(stderr, "test_dist: could not remove %s\n", work_dir);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--ranks")) return ranks_main(argc, argv);
    if (argc > 1 && !strcmp(argv[1], "--train")) return train_main(argc, argv);
    return driver_main(argc, argv);
}
