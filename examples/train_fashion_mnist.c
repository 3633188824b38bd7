/*
 * train_fashion_mnist: trains a 784-256-128-10 ReLU network (or, with
 * --model cnn, a convolutional network with batch norm and dropout) with
 * softmax cross-entropy and Adam on Fashion-MNIST (28x28 grey images of ten
 * kinds of clothing: 60,000 to train on, 10,000 to test on).
 *
 * It trains the way tapegrad is meant to be used. The step
 * "x -> logits -> loss" is RECORDED ONCE on a tape for the batch shape; every
 * mini-batch after that is copied into the tape's input leaves and the tape is
 * REPLAYED (no allocation), followed by backward and an optimizer step. The
 * last, short batch of an epoch runs on the same tape: the batcher's row
 * weights make its loss and gradient the mean over its real rows. The test set
 * is evaluated by replaying a second tape recorded for 1000 rows; for the CNN
 * that tape is recorded in eval mode (batch norm uses its running statistics,
 * dropout is left out), the training tape in training mode: one tape per mode,
 * sharing the parameters.
 *
 * The learning rate follows a cosine schedule (tg_sched) with an optional
 * linear warm-up, set per batch from the step count, so a resumed run picks it
 * up where it stopped; biases and batch norm's parameters take no weight decay
 * (a parameter group). The evaluation tape is recorded without gradients.
 *
 * Each epoch prints a line on stdout and saves a safetensors checkpoint (the
 * parameters, the optimizer's state and the epochs done with their log), so
 * --resume continues an interrupted run; the best test accuracy's checkpoint
 * is kept beside it, and --patience stops a run that no longer improves. At
 * the end it prints a per-class report and writes a CSV log and an SVG chart.
 *
 * Built with tapegrad_dist (MPI found) and started by mpirun (tools/train
 * --np N), it trains as N ranks of one data-parallel job: every rank holds
 * the model, takes its part of each global batch and averages the gradients
 * with the others (docs/distributed.md); rank 0 prints and writes the files.
 * Started alone, it runs exactly as without MPI.
 */
#include <tapegrad/tapegrad.h>
#ifdef TG_HAVE_ONNX
#include <tapegrad/onnx.h>
#endif

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef TG_HAVE_DIST
#include <tapegrad/dist.h>

#include <signal.h>
#endif

#define N_CLASSES  10
#define MAX_HIDDEN 8
#define EVAL_ROWS  1000

enum { TRAIN_LOSS, TEST_LOSS, TEST_ACC, SECONDS, N_COLS }; /* columns of the per-epoch log */

typedef enum model_kind { MODEL_MLP, MODEL_CNN } model_kind;

typedef struct options {
    const char *data, *checkpoint, *log, *chart, *onnx;
    model_kind model;
    int epochs, threads, n_hidden, warmup, patience;
    int64_t batch, hidden[MAX_HIDDEN];
    double lr, weight_decay;
    uint64_t seed;
    bool resume;
} options;

/* One recorded step: input leaves x [rows, features], y [rows, classes] (one-hot) and
 * the row weights w [rows, 1] (tg_batcher_weights), the network's logits and 'loss',
 * the cross-entropy averaged over the batch's real rows, all on tape 'tp'. */
typedef struct step {
    tg_tape *tp;
    tg_tensor *x, *y, *w, *logits, *loss;
} step;

/* The CNN: two blocks of 3x3 convolution, batch norm, ReLU and 2x2 max pooling
 * (1 -> 32 -> 64 channels, 28x28 -> 14x14 -> 7x7), then dropout, a 3136-128
 * ReLU layer, dropout and a 128-10 layer. */
typedef struct cnn {
    tg_conv_layer conv[2];
    tg_batch_norm_layer bn[2];
    tg_linear fc[2];
    tg_rng drop; /* dropout's masks; reseeded from (seed, epoch) so a resumed run repeats them */
} cnn;

#define CNN_DROPOUT 0.25

typedef struct run {
    options o;
    tg_tensor *x_train, *y_train, *x_test, *y_test;
    tg_params *params;
    tg_mlp *mlp;
    cnn cnn;
    tg_optim *opt;
    tg_sched sched;
    step train, eval;
    tg_tensor *confusion;   /* I64 [10, 10] of the last evaluation */
    double (*hist)[N_COLS]; /* one row per epoch done */
    int n_done;
    int rank, ranks; /* of the processes training together: 0 and 1 alone */
#ifdef TG_HAVE_DIST
    tg_dist *dist; /* NULL unless started by mpirun */
#endif
} run;

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* True in a run of several processes (tools/train --np N). */
static bool distributed(const run *r)
{
#ifdef TG_HAVE_DIST
    return r->dist != NULL;
#else
    (void)r;
    return false;
#endif
}

/* ====== Command line ====== */

static const char usage_text[] =
    "Usage: %s [options]\n"
    "Trains a ReLU MLP or a CNN with softmax cross-entropy and Adam on Fashion-MNIST. The\n"
    "training step is recorded on a tape once and replayed for every mini-batch.\n"
    "\n"
    "  --model mlp|cnn    the network: an MLP of --hidden layers, or two conv/batch-norm/\n"
    "                     ReLU/max-pool blocks (32 and 64 channels), dropout %g and a\n"
    "                     128-unit layer [mlp]\n"
    "  --data DIR         folder with train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,\n"
    "                     t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz (or unzipped)\n"
    "                     [/usr/share/datasets/fashion-mnist]\n"
    "  --epochs N         epochs in all, resumed ones included [10]\n"
    "  --batch N          mini-batch rows [64; cnn 100: batch norm needs whole batches, so it\n"
    "                     must divide the 60,000 training images]\n"
    "  --lr X             AdamW's peak learning rate, decayed to 0 along a cosine [0.001]\n"
    "  --warmup N         epochs of linear warm-up from lr/10 before the cosine [0]\n"
    "  --weight-decay X   AdamW's decoupled weight decay, not applied to biases and batch\n"
    "                     norm's parameters [0]\n"
    "  --patience N       stop after N epochs without a better test accuracy [0: never]\n"
    "  --hidden LIST      hidden layer widths, comma-separated [256,128]\n"
    "  --seed N           seed of the initialisation and of the shuffles [1]\n"
    "  --threads N        BLAS threads, 0 for all cores [0]\n"
    "  --checkpoint PATH  safetensors checkpoint, saved after every epoch\n"
    "                     [fashion_mnist.safetensors]; the best test accuracy's is kept\n"
    "                     beside it, PATH without .safetensors + .best.safetensors\n"
    "  --resume           load the parameters, Adam's state and the log from the checkpoint\n"
    "                     and continue after its last epoch\n"
    "  --log PATH         CSV log: epoch,train_loss,test_loss,test_acc,seconds\n"
    "                     [fashion_mnist_log.csv]\n"
    "  --chart PATH       SVG chart of the losses and the test accuracy [fashion_mnist.svg]\n"
    "  --onnx PATH        export the trained model as ONNX: input 'pixels' [batch, 784],\n"
    "                     output 'logits' [batch, 10], batch norm in eval form (when built\n"
    "                     with the ONNX component)\n"
    "  -h, --help         show this text\n"
    "\n"
    "Denormal floats are flushed to zero (FTZ/DAZ): tiny weights and gradients would\n"
    "otherwise slow training several-fold.\n"
#ifdef TG_HAVE_DIST
    "\n"
    "Started by mpirun (tools/train --np N), the processes train one model together: each\n"
    "takes its part of every batch of --batch rows and the gradients are averaged; rank 0\n"
    "prints and writes the files. --threads 0 then gives each process its share of the\n"
    "cores. See docs/distributed.md.\n"
#endif
    ;

static bool parse_ll(const char *s, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

static bool parse_hidden(const char *s, options *o)
{
    o->n_hidden = 0;
    for (;;) {
        long long w;
        char *end = strchr(s, ',');
        char item[32];
        size_t len = end ? (size_t)(end - s) : strlen(s);
        if (len >= sizeof item || o->n_hidden == MAX_HIDDEN) return false;
        memcpy(item, s, len);
        item[len] = '\0';
        if (!parse_ll(item, 1, 1 << 16, &w)) return false;
        o->hidden[o->n_hidden++] = w;
        if (!end) return true;
        s = end + 1;
    }
}

/* 0 to go on, 1 after --help, -1 on a bad option (already reported). */
static int parse_args(int argc, char **argv, options *o)
{
    static const struct option longopts[] = {
        {"data", required_argument, NULL, 'd'},
        {"epochs", required_argument, NULL, 'e'},
        {"batch", required_argument, NULL, 'b'},
        {"model", required_argument, NULL, 'm'},
        {"lr", required_argument, NULL, 'l'},
        {"warmup", required_argument, NULL, 'w'},
        {"weight-decay", required_argument, NULL, 'W'},
        {"patience", required_argument, NULL, 'p'},
        {"hidden", required_argument, NULL, 'H'},
        {"seed", required_argument, NULL, 's'},
        {"threads", required_argument, NULL, 't'},
        {"checkpoint", required_argument, NULL, 'c'},
        {"resume", no_argument, NULL, 'r'},
        {"log", required_argument, NULL, 'L'},
        {"chart", required_argument, NULL, 'C'},
        {"onnx", required_argument, NULL, 'O'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c, li = 0;
    while ((c = getopt_long(argc, argv, "h", longopts, &li)) != -1) {
        long long v = 0;
        char *end;
        bool ok = true;
        switch (c) {
        case 'd':
            o->data = optarg;
            break;
        case 'e':
            ok = parse_ll(optarg, 1, 100000, &v);
            o->epochs = (int)v;
            break;
        case 'b':
            ok = parse_ll(optarg, 1, 1 << 20, &v);
            o->batch = v;
            break;
        case 'l':
            errno = 0;
            o->lr = strtod(optarg, &end);
            ok = !errno && end != optarg && !*end && o->lr > 0 && isfinite(o->lr);
            break;
        case 'w':
            ok = parse_ll(optarg, 0, 100000, &v);
            o->warmup = (int)v;
            break;
        case 'W':
            errno = 0;
            o->weight_decay = strtod(optarg, &end);
            ok = !errno && end != optarg && !*end && o->weight_decay >= 0 &&
                 isfinite(o->weight_decay);
            break;
        case 'p':
            ok = parse_ll(optarg, 0, 100000, &v);
            o->patience = (int)v;
            break;
        case 'H':
            ok = parse_hidden(optarg, o);
            break;
        case 'm':
            ok = !strcmp(optarg, "mlp") || !strcmp(optarg, "cnn");
            o->model = !strcmp(optarg, "cnn") ? MODEL_CNN : MODEL_MLP;
            break;
        case 's':
            ok = parse_ll(optarg, 0, INT64_MAX, &v);
            o->seed = (uint64_t)v;
            break;
        case 't':
            ok = parse_ll(optarg, 0, 1024, &v);
            o->threads = (int)v;
            break;
        case 'c':
            o->checkpoint = optarg;
            break;
        case 'r':
            o->resume = true;
            break;
        case 'L':
            o->log = optarg;
            break;
        case 'C':
            o->chart = optarg;
            break;
        case 'O':
            o->onnx = optarg;
            break;
        case 'h':
            return 1;
        default:
            fprintf(stderr, "Try '%s --help'.\n", argv[0]);
            return -1;
        }
        if (!ok) {
            fprintf(stderr, "%s: invalid value '%s' for --%s\n", argv[0], optarg,
                    longopts[li].name);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s'\n", argv[0], argv[optind]);
        return -1;
    }
    return 0;
}

/* ====== Data ====== */

/* Loads "<prefix>-images-idx3-ubyte[.gz]" as x [n, 784] scaled to [0,1] and the
 * labels as one-hot y [n, 10]. */
static bool load_set(const char *dir, const char *prefix, tg_tensor **x, tg_tensor **y)
{
    static const char *const kinds[] = {"images-idx3", "labels-idx1"};
    tg_tensor *loaded[2] = {NULL, NULL};
    tg_error err = {0};
    char path[4096];
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof path - 3, "%s/%s-%s-ubyte", dir, prefix, kinds[k]);
        if (access(path, F_OK) != 0) strcat(path, ".gz"); /* as Debian ships them */
        if (tg_idx_load(path, TG_F32, k == 0 ? 1.0 / 255 : 1.0, &loaded[k], &err) != TG_OK) {
            fprintf(stderr, "error: %s\n", err.msg[0] ? err.msg : tg_status_str(err.status));
            goto fail;
        }
    }
    int64_t n = tg_tensor_shape(loaded[0])[0];
    if (tg_tensor_rank(loaded[0]) < 2 || tg_tensor_rank(loaded[1]) != 1 || n < 1 ||
        tg_tensor_shape(loaded[1])[0] != n) {
        fprintf(stderr, "error: %s: images and labels do not match (%lld images)\n", path,
                (long long)n);
        goto fail;
    }
    if (tg_tensor_reshape(loaded[0], 2, (int64_t[]){n, tg_tensor_numel(loaded[0]) / n}) != TG_OK ||
        !(*y = tg_one_hot(loaded[1], N_CLASSES, TG_F32))) {
        fprintf(stderr, "error: %s: labels must be 0..%d\n", path, N_CLASSES - 1);
        goto fail;
    }
    *x = loaded[0];
    tg_tensor_free(loaded[1]);
    return true;
fail:
    tg_tensor_free(loaded[0]);
    tg_tensor_free(loaded[1]);
    return false;
}

/* ====== Steps: recorded once, replayed per batch ====== */

/* In a distributed run, marks a layer's parameters on the training tape just
 * before the layer, so that their gradients are averaged while the backward
 * sweep goes on (tg_dist_mark); nothing otherwise. A mark that fails costs
 * only that overlap: unmarked gradients are averaged after the sweep. */
static void mark_layer(run *r, tg_tape *tp, bool training, tg_tensor *w, tg_tensor *b)
{
#ifdef TG_HAVE_DIST
    tg_error err = {0};
    if (r->dist && training && tg_dist_mark(r->dist, tp, (tg_tensor *[]){w, b}, 2, &err) != TG_OK)
        fprintf(stderr, "warning: %s\n", err.msg);
#else
    (void)r, (void)tp, (void)training, (void)w, (void)b;
#endif
}

/* The CNN's logits for x [rows, 784]; 'training' picks batch statistics and dropout. */
static tg_tensor *cnn_forward(tg_tape *tp, run *r, tg_tensor *x, bool training)
{
    cnn *m = &r->cnn;
    int64_t rows = tg_tensor_shape(x)[0];
    tg_tensor *h = tg_reshape(tp, x, 4, (int64_t[]){rows, 1, 28, 28});
    for (int b = 0; b < 2; b++) {
        mark_layer(r, tp, training, m->conv[b].weight, m->conv[b].bias);
        h = tg_conv_layer_forward(tp, &m->conv[b], h);
        mark_layer(r, tp, training, m->bn[b].weight, m->bn[b].bias);
        h = tg_relu(tp, tg_batch_norm_layer_forward(tp, &m->bn[b], h, training));
        h = tg_max_pool2d(tp, h, (const int[]){2, 2}, NULL, NULL);
    }
    h = tg_reshape(tp, h, 2, (int64_t[]){rows, -1});
    if (training) h = tg_dropout(tp, h, CNN_DROPOUT, &m->drop);
    mark_layer(r, tp, training, m->fc[0].weight, m->fc[0].bias);
    h = tg_relu(tp, tg_linear_forward(tp, &m->fc[0], h));
    if (training) h = tg_dropout(tp, h, CNN_DROPOUT, &m->drop);
    mark_layer(r, tp, training, m->fc[1].weight, m->fc[1].bias);
    return tg_linear_forward(tp, &m->fc[1], h);
}

/* The MLP's ops as tg_mlp_forward records them, layer by layer, so that a
 * distributed run can mark each layer's parameters before it. */
static tg_tensor *mlp_forward_marked(tg_tape *tp, run *r, tg_tensor *x)
{
    tg_tensor *h = x;
    for (int l = 0; l <= r->o.n_hidden; l++) {
        char name[32];
        snprintf(name, sizeof name, "mlp.%d.weight", l);
        tg_tensor *w = tg_params_get(r->params, name);
        snprintf(name, sizeof name, "mlp.%d.bias", l);
        tg_tensor *b = tg_params_get(r->params, name);
        mark_layer(r, tp, true, w, b);
        h = tg_activate(tp, tg_dense(tp, h, w, b), l < r->o.n_hidden ? TG_ACT_RELU : TG_ACT_NONE);
    }
    return h;
}

/* Registers the CNN's parameters with PyTorch's initialisation. */
static bool cnn_init(cnn *m, tg_params *ps, tg_rng *r)
{
    tg_error err = {0};
    const tg_conv_opts same = {.padding = {1, 1}};
    bool ok = !tg_conv_layer_init(&m->conv[0], ps, "conv.0", 2, 1, 32, (const int[]){3, 3},
                                  &same, true, TG_F32, r, &err) &&
              !tg_batch_norm_layer_init(&m->bn[0], ps, "bn.0", 32, TG_F32, &err) &&
              !tg_conv_layer_init(&m->conv[1], ps, "conv.1", 2, 32, 64, (const int[]){3, 3},
                                  &same, true, TG_F32, r, &err) &&
              !tg_batch_norm_layer_init(&m->bn[1], ps, "bn.1", 64, TG_F32, &err) &&
              !tg_linear_init(&m->fc[0], ps, "fc.0", 64 * 7 * 7, 128, true, TG_F32, r, &err) &&
              !tg_linear_init(&m->fc[1], ps, "fc.1", 128, N_CLASSES, true, TG_F32, r, &err);
    if (!ok) fprintf(stderr, "error: cannot build the network: %s\n", err.msg);
    return ok;
}

static bool step_record(step *s, const char *what, run *r, int64_t rows, int64_t features,
                        bool training)
{
    s->tp = tg_tape_new();
    /* The evaluation step never meets a backward: no gradient state (torch.no_grad). */
    tg_tape_set_grad(s->tp, training);
    s->x = tg_tensor_new(TG_F32, 2, (int64_t[]){rows, features});
    s->y = tg_tensor_new(TG_F32, 2, (int64_t[]){rows, N_CLASSES});
    s->w = tg_tensor_new(TG_F32, 2, (int64_t[]){rows, 1});
    if (!s->tp || !s->x || !s->y || !s->w) {
        fprintf(stderr, "error: recording the %s step: %s\n", what, tg_last_error()->msg);
        return false;
    }
    s->logits = r->o.model == MODEL_CNN      ? cnn_forward(s->tp, r, s->x, training)
                : distributed(r) && training ? mlp_forward_marked(s->tp, r, s->x)
                                             : tg_mlp_forward(s->tp, r->mlp, s->x);
    /* Cross-entropy is linear in its target: weighting a row's target weights its
     * term, so rows / batch of real rows at weight batch / rows give their exact mean,
     * and the zeroed rows a short batch leaves over, at weight 0, count for nothing. */
    s->loss = tg_softmax_cross_entropy(s->tp, s->logits, tg_mul(s->tp, s->y, s->w));
#ifdef TG_HAVE_DIST
    if (r->dist && training) s->loss = tg_dist_loss(r->dist, s->tp, s->loss); /* marks joined */
#endif
    if (tg_tape_status(s->tp) != TG_OK) {
        fprintf(stderr, "error: recording the %s step: %s\n", what, tg_tape_error(s->tp));
        return false;
    }
    return true;
}

/* Writes the evaluation tape (batch norm in eval mode, no dropout) from the
 * pixels to the logits as an ONNX model whose batch is symbolic. */
static bool export_onnx(run *r, const char *path)
{
#ifdef TG_HAVE_ONNX
    tg_error err;
    tg_tensor_set_name(r->eval.x, "pixels");
    tg_tensor_set_name(r->eval.logits, "logits");
    if (tg_onnx_export(path, r->eval.tp, &r->eval.x, 1, &r->eval.logits, 1, &r->params, 1,
                       &(tg_onnx_opts){.graph_name = "fashion_mnist", .batch = 1}, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        return false;
    }
    printf("wrote %s\n", path);
    return true;
#else
    (void)r;
    fprintf(stderr, "error: --onnx %s: this build has no ONNX export (meson -Donnx=enabled)\n",
            path);
    return false;
#endif
}

static void step_free(step *s)
{
    tg_tape_free(s->tp);
    tg_tensor_free(s->x);
    tg_tensor_free(s->y);
    tg_tensor_free(s->w);
}

/* The training set's batches: all of each for one process, this rank's part
 * of each in a distributed run. */
typedef struct batches {
    tg_batcher *one;
#ifdef TG_HAVE_DIST
    tg_dist_batcher *part;
#endif
} batches;

/* An epoch's batches, shuffled from 'seed'; false (said why) on failure. */
static bool batches_new(run *r, batches *bt, uint64_t seed)
{
    *bt = (batches){0};
#ifdef TG_HAVE_DIST
    tg_error err = {0};
    if (r->dist) {
        bt->part =
            tg_dist_batcher_new(r->dist, r->x_train, r->y_train, r->o.batch, true, seed, &err);
        if (!bt->part) fprintf(stderr, "error: %s\n", err.msg);
        return bt->part != NULL;
    }
#endif
    bt->one = tg_batcher_new(r->x_train, r->y_train, r->o.batch, true, seed);
    if (!bt->one) fprintf(stderr, "error: %s\n", tg_last_error()->msg);
    return bt->one != NULL;
}

static void batches_free(batches *bt)
{
    tg_batcher_free(bt->one);
#ifdef TG_HAVE_DIST
    tg_dist_batcher_free(bt->part);
#endif
}

static int64_t batches_count(const batches *bt)
{
#ifdef TG_HAVE_DIST
    if (bt->part) return tg_dist_batcher_batches(bt->part);
#endif
    return tg_batcher_batches(bt->one);
}

/* The next batch (this rank's rows of it) and its row weights into the step's
 * leaves: the batch's rows over every rank, 0 at the end of the epoch, -1
 * with the reason in 'why'. */
static int64_t batches_next(batches *bt, step *s, char *why, size_t size)
{
    int64_t rows;
#ifdef TG_HAVE_DIST
    if (bt->part) {
        rows = tg_dist_batcher_next(bt->part, s->x, s->y);
        if (rows > 0 && tg_dist_batcher_weights(bt->part, s->w) != TG_OK) rows = -1;
        if (rows < 0) snprintf(why, size, "%s", tg_dist_batcher_error(bt->part));
        return rows;
    }
#endif
    rows = tg_batcher_next(bt->one, s->x, s->y);
    if (rows > 0 && tg_batcher_weights(bt->one, s->w) != TG_OK) rows = -1;
    if (rows < 0) snprintf(why, size, "%s", tg_last_error()->msg);
    return rows;
}

/* The forward pass on the batch, backward and, in a distributed run, the
 * gradients averaged over the ranks; *loss is the batch's mean loss. */
static tg_status step_backward(run *r, step *s, double *loss, char *why, size_t size)
{
    tg_status st = tg_tape_replay(s->tp);
#ifdef TG_HAVE_DIST
    if (r->dist) {
        /* Every rank takes part even when its replay failed, so none waits for it. */
        tg_error err = {0};
        tg_params_zero_grad(r->params);
        st = tg_dist_backward(r->dist, s->tp, s->loss, loss, &err);
        if (st != TG_OK) snprintf(why, size, "%s", err.msg);
        return st;
    }
#endif
    if (st == TG_OK) {
        tg_params_zero_grad(r->params);
        st = tg_backward(s->tp, s->loss);
    }
    if (st != TG_OK) snprintf(why, size, "%s", tg_tape_error(s->tp));
    *loss = tg_tensor_item(s->loss);
    return st;
}

/* The live line of a terminal: a bar of the epoch, the batch, the running
 * loss, the rate and the time the run has left at that rate. */
static void show_progress(const run *r, int epoch, int64_t i, int64_t n_batches, double loss,
                          int64_t done, double seconds)
{
    enum { WIDTH = 24 };
    int64_t n = tg_tensor_shape(r->x_train)[0];
    double rate = (double)done / seconds;
    double left = (double)(n - done + (int64_t)(r->o.epochs - epoch - 1) * n) / rate;
    char bar[WIDTH + 1];
    int fill = (int)(WIDTH * done / n);
    for (int k = 0; k < WIDTH; k++)
        bar[k] = k < fill ? '=' : k == fill ? '>' : ' ';
    bar[WIDTH] = '\0';
    fprintf(stderr,
            "\r\033[Kepoch %d/%d [%s] batch %lld/%lld  loss %.4f  %.0f samples/s  ETA %d:%02d",
            epoch + 1, r->o.epochs, bar, (long long)i, (long long)n_batches, loss, rate,
            (int)left / 60, (int)left % 60);
}

/* One pass over the shuffled training set; *mean_loss is the mean over its rows. */
static bool train_epoch(run *r, int epoch, double *mean_loss)
{
    const options *o = &r->o;
    bool tty = r->rank == 0 && isatty(fileno(stderr)), ok = false;
    int64_t n = tg_tensor_shape(r->x_train)[0], done = 0, rows, i = 0;
    double sum = 0, start = now_seconds(), drawn = 0, loss;
    char why[1024] = "";
    /* The shuffle depends on (seed, epoch) alone: a resumed run sees the same batches. */
    batches bt;
    if (!batches_new(r, &bt, o->seed + (uint64_t)epoch)) return false;
    int64_t n_batches = batches_count(&bt);
    step *s = &r->train;
    /* Rank 0 draws the masks one process does; the others their own. */
    tg_rng_seed(&r->cnn.drop,
                o->seed * 1000003u + (uint64_t)epoch + (uint64_t)r->rank * 0x9E3779B97F4A7C15u);
    /* The last, short batch is not dropped: its weights make the loss the mean over
     * its real rows (the full batch's are all 1). */
    while ((rows = batches_next(&bt, s, why, sizeof why)) > 0) {
        tg_status st = tg_sched_apply(&r->sched, r->opt, epoch * n_batches + i++);
        if (st != TG_OK) {
            fprintf(stderr, "\nerror: epoch %d: %s\n", epoch + 1, tg_last_error()->msg);
            goto out;
        }
        if (step_backward(r, s, &loss, why, sizeof why) != TG_OK) {
            fprintf(stderr, "\nerror: epoch %d, batch %lld: %s\n", epoch + 1, (long long)i, why);
            goto out;
        }
        if ((st = tg_optim_step(r->opt)) != TG_OK) {
            fprintf(stderr, "\nerror: optimizer step: %s\n", tg_status_str(st));
            goto out;
        }
        sum += loss * (double)rows;
        done += rows;
        double now = now_seconds();
        if (tty && (now - drawn >= 0.1 || done == n)) {
            show_progress(r, epoch, i, n_batches, sum / (double)done, done, now - start);
            drawn = now;
        }
    }
    if (rows < 0) {
        fprintf(stderr, "\nerror: %s\n", why);
        goto out;
    }
    double secs = now_seconds() - start;
    if (tty)
        fputs("\r\033[K", stderr);
    else if (r->rank == 0)
        fprintf(stderr, "epoch %d/%d: %lld batches, loss %.4f, %.0f samples/s, %.1f s\n", epoch + 1,
                o->epochs, (long long)n_batches, sum / (double)n, (double)n / secs, secs);
    *mean_loss = sum / (double)n;
    ok = true;
out:
    batches_free(&bt);
    return ok;
}

/* Test loss and accuracy by replaying the evaluation tape; no backward. With the row
 * weights each batch's loss is the mean over its real rows, so loss * rows summed over
 * the batches, over n, is the exact mean. */
static bool evaluate(run *r, double *loss, double *acc)
{
    step *ev = &r->eval;
    int64_t cap = tg_tensor_shape(ev->x)[0], n = tg_tensor_shape(r->x_test)[0], rows, correct = 0;
    double sum = 0;
    memset(tg_tensor_data(r->confusion), 0, N_CLASSES * N_CLASSES * sizeof(int64_t));
    tg_batcher *bt = tg_batcher_new(r->x_test, r->y_test, cap, false, 0);
    if (!bt) {
        fprintf(stderr, "error: %s\n", tg_last_error()->msg);
        return false;
    }
    /* In a distributed run each rank evaluates every ranks-th batch, and the sums
     * are added up below. */
    for (int64_t k = 0; (rows = tg_batcher_next(bt, ev->x, ev->y)) > 0; k++) {
        if (k % r->ranks != r->rank) continue;
        if (tg_batcher_weights(bt, ev->w) != TG_OK || tg_tape_replay(ev->tp) != TG_OK) break;
        sum += tg_tensor_item(ev->loss) * (double)rows;
        int64_t hits = tg_topk_correct(ev->logits, ev->y, 1, rows);
        if (hits < 0 || tg_confusion_add(r->confusion, ev->logits, ev->y, rows) != TG_OK) break;
        correct += hits;
    }
    tg_batcher_free(bt);
    if (rows != 0) {
        fprintf(stderr, "error: evaluation: %s\n",
                tg_tape_status(ev->tp) != TG_OK ? tg_tape_error(ev->tp) : tg_last_error()->msg);
        return false;
    }
#ifdef TG_HAVE_DIST
    if (r->dist) {
        tg_error err = {0};
        tg_tensor *sums =
            tg_tensor_from(TG_F64, 1, (int64_t[]){2}, (double[]){sum, (double)correct});
        tg_status st = tg_dist_sum(r->dist, sums, &err);
        if (st == TG_OK) st = tg_dist_sum(r->dist, r->confusion, &err);
        if (st == TG_OK) {
            sum = ((const double *)tg_tensor_cdata(sums))[0];
            correct = (int64_t)((const double *)tg_tensor_cdata(sums))[1];
        }
        tg_tensor_free(sums);
        if (st != TG_OK) {
            fprintf(stderr, "error: evaluation: %s\n", err.msg);
            return false;
        }
    }
#endif
    *loss = sum / (double)n;
    *acc = (double)correct / (double)n;
    return true;
}

/* Precision, recall and F1 per class of the last evaluation, as sklearn's
 * classification_report. */
static void print_class_report(const run *r)
{
    static const char *const names[N_CLASSES] = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                                 "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                                 "Bag",         "Ankle boot"};
    double p[N_CLASSES], rc[N_CLASSES], f1[N_CLASSES];
    int64_t support[N_CLASSES];
    if (tg_class_report(r->confusion, p, rc, f1, support) != TG_OK) return;
    printf("\n%-12s %9s %9s %9s %8s\n", "class", "precision", "recall", "f1", "support");
    for (int c = 0; c < N_CLASSES; c++)
        printf("%-12s %9.4f %9.4f %9.4f %8lld\n", names[c], p[c], rc[c], f1[c],
               (long long)support[c]);
}

/* ====== Checkpoint: parameters, the optimizer's state, and a 'train' registry ====== */

/* A registry with the epochs done as a rank-0 tensor and, if 'hist', their log [n, N_COLS]. */
static tg_params *train_registry(int n_done, double (*hist)[N_COLS])
{
    tg_params *meta = tg_params_new();
    tg_tensor *epochs = meta ? tg_params_add(meta, "train.epoch", TG_F64, 0, (int64_t[]){1}) : NULL;
    tg_tensor *log = epochs && n_done > 0 ? tg_params_add(meta, "train.history", TG_F64, 2,
                                                          (int64_t[]){n_done, N_COLS})
                                          : NULL;
    if (!epochs || (n_done > 0 && !log)) {
        tg_params_free(meta);
        return NULL;
    }
    *(double *)tg_tensor_data(epochs) = n_done;
    if (hist) memcpy(tg_tensor_data(log), hist, (size_t)n_done * sizeof *hist);
    return meta;
}

/* A checkpoint saved or loaded: by this process alone, or in a distributed run
 * written and read by rank 0, which sends what it read to the others. */
static tg_status load_or_save(const run *r, const char *path, tg_params *const *sets, int n_sets,
                              tg_error *err, bool save)
{
#ifdef TG_HAVE_DIST
    if (r->dist)
        return save ? tg_dist_checkpoint_save(r->dist, path, sets, n_sets, err)
                    : tg_dist_checkpoint_load(r->dist, path, sets, n_sets, err);
#else
    (void)r;
#endif
    return save ? tg_checkpoint_save(path, sets, n_sets, err)
                : tg_checkpoint_load(path, sets, n_sets, err);
}

/* "<path>.best.safetensors", or "<path minus .safetensors>.best.safetensors". */
static void best_path(const char *path, char *out, size_t size)
{
    size_t len = strlen(path), ext = strlen(".safetensors");
    if (len >= ext && !strcmp(path + len - ext, ".safetensors")) len -= ext;
    snprintf(out, size, "%.*s.best.safetensors", (int)len, path);
}

static bool save_checkpoint(const run *r, const char *path)
{
    tg_error err = {0};
    tg_params *meta = train_registry(r->n_done, r->hist);
    tg_params *sets[] = {r->params, tg_optim_state(r->opt), meta};
    tg_status st = !meta ? TG_ERR_NOMEM : load_or_save(r, path, sets, 3, &err, true);
    tg_params_free(meta);
    if (st != TG_OK)
        fprintf(stderr, "error: saving the checkpoint: %s\n",
                err.msg[0] ? err.msg : tg_status_str(st));
    return st == TG_OK;
}

/* Reads the epoch count first (it gives the log's shape), then everything at once. */
static bool resume(run *r)
{
    tg_error err = {0};
    tg_params *meta = train_registry(0, NULL);
    tg_status st = meta ? load_or_save(r, r->o.checkpoint, &meta, 1, &err, false) : TG_ERR_NOMEM;
    double n_done = meta ? tg_tensor_item(tg_params_get(meta, "train.epoch")) : 0;
    tg_params_free(meta);
    meta = NULL;
    if (st == TG_OK && !(n_done >= 1 && n_done <= 100000)) {
        st = TG_ERR_FORMAT;
        snprintf(err.msg, sizeof err.msg, "%s: bad epoch count %g", r->o.checkpoint, n_done);
    }
    if (st == TG_OK) {
        r->n_done = (int)n_done;
        meta = train_registry(r->n_done, NULL);
        tg_params *sets[] = {r->params, tg_optim_state(r->opt), meta};
        st = meta ? load_or_save(r, r->o.checkpoint, sets, 3, &err, false) : TG_ERR_NOMEM;
    }
    int cap = r->n_done > r->o.epochs ? r->n_done : r->o.epochs;
    if (st == TG_OK && !(r->hist = calloc((size_t)cap, sizeof *r->hist))) st = TG_ERR_NOMEM;
    if (st == TG_OK)
        memcpy(r->hist, tg_tensor_data(tg_params_get(meta, "train.history")),
               (size_t)r->n_done * sizeof *r->hist);
    tg_params_free(meta);
    if (st != TG_OK)
        fprintf(stderr, "error: resuming: %s\n", err.msg[0] ? err.msg : tg_status_str(st));
    return st == TG_OK;
}

/* ====== CSV log and SVG chart ====== */

static bool close_file(FILE *f, const char *path)
{
    bool ok = !ferror(f);
    if (fclose(f) != 0) ok = false;
    if (!ok) fprintf(stderr, "error: writing %s: %s\n", path, strerror(errno));
    return ok;
}

static bool write_csv(const char *path, double (*hist)[N_COLS], int n)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "error: cannot create %s: %s\n", path, strerror(errno));
        return false;
    }
    fputs("epoch,train_loss,test_loss,test_acc,seconds\n", f);
    for (int e = 0; e < n; e++)
        fprintf(f, "%d,%.6f,%.6f,%.4f,%.3f\n", e + 1, hist[e][TRAIN_LOSS], hist[e][TEST_LOSS],
                hist[e][TEST_ACC], hist[e][SECONDS]);
    return close_file(f, path);
}

typedef struct panel {
    double left, top, width, height; /* plot area in pixels */
    double x_max, y_min, y_max;      /* epochs 0..x_max across, y_min..y_max up */
} panel;

static double px(const panel *p, double x) { return p->left + p->width * x / p->x_max; }
static double py(const panel *p, double y)
{
    return p->top + p->height * (p->y_max - y) / (p->y_max - p->y_min);
}

/* A step of 1, 2 or 5 times a power of ten that cuts 'span' into about 'n' parts. */
static double nice_step(double span, int n)
{
    double raw = span / n, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return mag * (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10);
}

static void svg_axes(FILE *f, const panel *p, double y_step, const char *title, const char *y_label)
{
    int decimals = y_step >= 1 ? 0 : (int)ceil(-log10(y_step) - 1e-9);
    int n_y = (int)lround((p->y_max - p->y_min) / y_step), x_step = (int)ceil(p->x_max / 10);
    double right = p->left + p->width, bottom = p->top + p->height;
    for (int k = 0; k <= n_y; k++) {
        double v = p->y_min + k * y_step;
        fprintf(f, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' class='grid'/>\n", p->left,
                py(p, v), right, py(p, v));
        fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='end'>%.*f</text>\n", p->left - 8,
                py(p, v) + 4, decimals, v);
    }
    for (int e = 0; e <= (int)p->x_max; e += x_step) {
        fprintf(f, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' class='axis'/>\n", px(p, e),
                bottom, px(p, e), bottom + 5);
        fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='middle'>%d</text>\n", px(p, e),
                bottom + 19, e);
    }
    fprintf(f, "<polyline points='%.1f,%.1f %.1f,%.1f %.1f,%.1f' class='axis' fill='none'/>\n",
            p->left, p->top, p->left, bottom, right, bottom);
    fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='middle' font-weight='bold'>%s</text>\n",
            p->left + p->width / 2, p->top - 10, title);
    fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='middle'>epoch</text>\n",
            p->left + p->width / 2, bottom + 38);
    fprintf(f,
            "<text transform='translate(%.1f %.1f) rotate(-90)' text-anchor='middle'>%s</text>\n",
            p->left - 52, p->top + p->height / 2, y_label);
}

/* One column of the log as a line with dots, and its legend entry 'legend_y' pixels down. */
static void svg_series(FILE *f, const panel *p, double (*hist)[N_COLS], int n, int col,
                       const char *color, const char *label, double legend_y)
{
    fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='2' points='", color);
    for (int e = 0; e < n; e++)
        fprintf(f, "%.1f,%.1f ", px(p, e + 1), py(p, hist[e][col]));
    fputs("'/>\n", f);
    for (int e = 0; e < n; e++)
        fprintf(f, "<circle cx='%.1f' cy='%.1f' r='3' fill='%s'/>\n", px(p, e + 1),
                py(p, hist[e][col]), color);
    double lx = p->left + p->width - 120, ly = p->top + legend_y;
    fprintf(f, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='%s' stroke-width='2'/>\n", lx,
            ly, lx + 24, ly, color);
    fprintf(f, "<text x='%.1f' y='%.1f'>%s</text>\n", lx + 30, ly + 4, label);
}

static bool write_svg(const char *path, const char *title, double (*hist)[N_COLS], int n)
{
    double max_loss = 1e-3, min_acc = 1, max_acc = 0;
    int best = 0;
    for (int e = 0; e < n; e++) {
        max_loss = fmax(max_loss, fmax(hist[e][TRAIN_LOSS], hist[e][TEST_LOSS]));
        min_acc = fmin(min_acc, hist[e][TEST_ACC]);
        max_acc = fmax(max_acc, hist[e][TEST_ACC]);
        if (hist[e][TEST_ACC] > hist[best][TEST_ACC]) best = e;
    }
    double x_max = n > 1 ? n : 1, ls = nice_step(max_loss, 5);
    double as = nice_step(fmax(max_acc - min_acc, 0.02), 5);
    panel loss = {80, 70, 360, 290, x_max, 0, ceil(max_loss / ls) * ls};
    panel acc = {560, 70, 360, 290, x_max, floor(min_acc / as) * as, ceil(max_acc / as) * as};
    if (acc.y_max <= acc.y_min) acc.y_max = acc.y_min + as;

    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "error: cannot create %s: %s\n", path, strerror(errno));
        return false;
    }
    fprintf(f,
            "<svg xmlns='http://www.w3.org/2000/svg' width='960' height='430' "
            "font-family='sans-serif' font-size='12'>\n"
            "<style>.grid{stroke:#e4e4e4} .axis{stroke:#333}</style>\n"
            "<rect width='100%%' height='100%%' fill='white'/>\n"
            "<text x='480' y='28' text-anchor='middle' font-size='16' font-weight='bold'>"
            "%s</text>\n",
            title);
    svg_axes(f, &loss, ls, "Cross-entropy loss", "loss");
    svg_series(f, &loss, hist, n, TRAIN_LOSS, "#1f77b4", "train loss", 16);
    svg_series(f, &loss, hist, n, TEST_LOSS, "#d62728", "test loss", 36);
    svg_axes(f, &acc, as, "Test accuracy", "accuracy");
    svg_series(f, &acc, hist, n, TEST_ACC, "#2ca02c", "test accuracy", acc.height - 40);
    if (n > 0)
        fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='end'>best %.4f at epoch %d</text>\n",
                acc.left + acc.width - 8, acc.top + acc.height - 10, hist[best][TEST_ACC],
                best + 1);
    fputs("</svg>\n", f);
    return close_file(f, path);
}

#ifdef TG_HAVE_DIST
/* ====== A rank of a distributed run ====== */

static char stopped_msg[4400];

/* mpirun ends every rank with SIGTERM when one of them dies: say so, and what
 * to do, before going (write and _exit are safe in a handler). */
static void on_sigterm(int sig)
{
    (void)!write(STDERR_FILENO, stopped_msg, strlen(stopped_msg));
    _exit(128 + sig);
}

/* True when mpirun (Open MPI's, or another PMI launcher) started this process. */
static bool started_by_mpirun(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
}

/* MPI up, this rank's place, and --threads 0 read as this process's share of
 * the machine's cores. */
static void dist_start(run *r, int *argc, char ***argv)
{
    MPI_Init(argc, argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &r->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &r->ranks);
    snprintf(stopped_msg, sizeof stopped_msg,
             "rank %d: stopped by mpirun: another rank failed or the job was interrupted; the "
             "last checkpoint is %s (tools/train --np %d ... --resume continues from it)\n",
             r->rank, r->o.checkpoint, r->ranks);
    signal(SIGTERM, on_sigterm);
    if (!r->o.threads) {
        MPI_Comm node;
        int local = 1;
        if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) ==
            MPI_SUCCESS) {
            MPI_Comm_size(node, &local);
            MPI_Comm_free(&node);
        }
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        r->o.threads = cores / local > 1 ? (int)(cores / local) : 1;
    }
}
#endif

/* ====== Main ====== */

static void run_free(run *r)
{
    step_free(&r->train);
    step_free(&r->eval);
    tg_optim_free(r->opt);
    tg_tensor_free(r->confusion);
    tg_mlp_free(r->mlp);
    tg_params_free(r->params);
    tg_tensor_free(r->x_train);
    tg_tensor_free(r->y_train);
    tg_tensor_free(r->x_test);
    tg_tensor_free(r->y_test);
    free(r->hist);
#ifdef TG_HAVE_DIST
    tg_dist_free(r->dist);
#endif
}

int main(int argc, char **argv)
{
    run r = {.o = {.data = "/usr/share/datasets/fashion-mnist",
                   .checkpoint = "fashion_mnist.safetensors",
                   .log = "fashion_mnist_log.csv",
                   .chart = "fashion_mnist.svg",
                   .epochs = 10,
                   .lr = 1e-3,
                   .n_hidden = 2,
                   .hidden = {256, 128},
                   .seed = 1},
             .ranks = 1};
    const options *o = &r.o;
    int status = EXIT_FAILURE;
    switch (parse_args(argc, argv, &r.o)) {
    case 1:
        printf(usage_text, argv[0], CNN_DROPOUT);
        return EXIT_SUCCESS;
    case -1:
        return EXIT_FAILURE;
    }
    if (!r.o.batch) r.o.batch = r.o.model == MODEL_CNN ? 100 : 64;
#ifdef TG_HAVE_DIST
    bool by_mpirun = started_by_mpirun();
    if (by_mpirun) dist_start(&r, &argc, &argv);
#endif
    bool flushing = tg_set_flush_denormals(true);
    tg_set_num_threads(o->threads);
    if (!load_set(o->data, "train", &r.x_train, &r.y_train) ||
        !load_set(o->data, "t10k", &r.x_test, &r.y_test))
        goto out;
    int64_t n_train = tg_tensor_shape(r.x_train)[0], n_test = tg_tensor_shape(r.x_test)[0];
    int64_t features = tg_tensor_shape(r.x_train)[1];
    if (tg_tensor_shape(r.x_test)[1] != features) {
        fprintf(stderr, "error: train and test images differ in size\n");
        goto out;
    }

    /* The network: features -> hidden... -> 10 logits, ReLU after every hidden layer. */
    int64_t sizes[MAX_HIDDEN + 2] = {features};
    tg_activation acts[MAX_HIDDEN + 1];
    char arch[160];
    int len = snprintf(arch, sizeof arch, "%lld", (long long)features);
    for (int l = 0; l <= o->n_hidden; l++) {
        sizes[l + 1] = l < o->n_hidden ? o->hidden[l] : N_CLASSES;
        acts[l] = l < o->n_hidden ? TG_ACT_RELU : TG_ACT_NONE;
        len += snprintf(arch + len, sizeof arch - (size_t)len, "-%lld", (long long)sizes[l + 1]);
    }
    if (o->model == MODEL_CNN) {
        snprintf(arch, sizeof arch, "conv32-bn-pool-conv64-bn-pool-128-10");
        if (features != 28 * 28) {
            fprintf(stderr, "error: --model cnn needs 28x28 images, not %lld values\n",
                    (long long)features);
            goto out;
        }
        if (n_train % o->batch) {
            fprintf(stderr,
                    "error: --model cnn: batch %lld does not divide %lld training images; batch "
                    "norm would count the padding of the short last batch in its statistics\n",
                    (long long)o->batch, (long long)n_train);
            goto out;
        }
        if (o->batch % r.ranks) {
            fprintf(stderr,
                    "error: --model cnn: batch %lld does not divide into %d equal parts, one per "
                    "process; batch norm would count the padding in its statistics\n",
                    (long long)o->batch, r.ranks);
            goto out;
        }
    }
    tg_rng rng;
    tg_rng_seed(&rng, o->seed);
    r.params = tg_params_new();
    bool built = r.params && (o->model == MODEL_CNN
                                  ? cnn_init(&r.cnn, r.params, &rng)
                                  : (r.mlp = tg_mlp_new(r.params, "mlp", o->n_hidden + 1, sizes,
                                                        acts, TG_F32, &rng)) != NULL);
    /* AdamW (Adam when the decay is 0) with no decay on biases and batch norm's parameters. */
    tg_param_group no_decay = {.name = "no_decay",
                               .match = (const char *[]){"*.bias", "bn.*", NULL},
                               .set = TG_GROUP_SET_WEIGHT_DECAY};
    r.opt = built ? tg_optim_new_groups(r.params,
                                        &(tg_optim_opts){.kind = TG_OPTIM_ADAMW,
                                                         .lr = o->lr,
                                                         .weight_decay = o->weight_decay},
                                        &no_decay, 1)
                  : NULL;
    int64_t n_batches = (n_train + o->batch - 1) / o->batch;
    tg_sched_opts cosine = {.kind = TG_SCHED_COSINE,
                            .warmup_steps = o->warmup * n_batches,
                            .warmup_start = 0.1,
                            .total_steps = o->epochs * n_batches};
    if (r.opt && o->warmup >= o->epochs) {
        fprintf(stderr, "error: --warmup %d leaves no epoch of the %d to decay over\n", o->warmup,
                o->epochs);
        goto out;
    }
    if (r.opt && (tg_sched_init(&r.sched, &cosine, r.opt) != TG_OK ||
                  !(r.confusion = tg_tensor_new(TG_I64, 2, (int64_t[]){N_CLASSES, N_CLASSES})))) {
        fprintf(stderr, "error: %s\n", tg_last_error()->msg);
        goto out;
    }
    if (!r.opt) {
        if (o->model == MODEL_MLP || built)
            fprintf(stderr, "error: cannot build the network: %s\n", tg_last_error()->msg);
        goto out;
    }
#ifdef TG_HAVE_DIST
    /* Every rank starts from rank 0's parameters, whatever its own initialisation. */
    tg_error dist_err = {0};
    if (by_mpirun && !(r.dist = tg_dist_new(MPI_COMM_WORLD, r.params, NULL, &dist_err))) {
        fprintf(stderr, "error: %s\n", dist_err.msg);
        goto out;
    }
#endif
    /* Each process's part of a batch: ceil(batch / processes) rows. */
    int64_t train_rows = (o->batch + r.ranks - 1) / r.ranks;

    /* Record each step ONCE: training on 'batch' rows (a short last batch included) and
     * evaluation on up to 1000 rows. */
    if (!step_record(&r.train, "training", &r, train_rows, features, true) ||
        !step_record(&r.eval, "evaluation", &r, n_test < EVAL_ROWS ? n_test : EVAL_ROWS, features,
                     false))
        goto out;

    if (o->resume && !resume(&r)) goto out;
    if (!r.hist && !(r.hist = calloc((size_t)o->epochs, sizeof *r.hist))) {
        fprintf(stderr, "error: out of memory\n");
        goto out;
    }
    if (r.rank == 0) {
        printf("Fashion-MNIST: %lld train and %lld test images; %s %s, %lld parameters (f32)\n"
               "AdamW lr %g (weight decay %g) with %d warm-up epochs and cosine decay, batch %lld, "
               "epochs %d, seed %llu, BLAS threads %d, denormals %s\n",
               (long long)n_train, (long long)n_test, o->model == MODEL_CNN ? "CNN" : "MLP", arch,
               (long long)tg_params_numel(r.params), o->lr, o->weight_decay, o->warmup,
               (long long)o->batch, o->epochs, (unsigned long long)o->seed, tg_get_num_threads(),
               flushing ? "flushed to zero" : "kept (no flush on this CPU)");
#ifdef TG_HAVE_DIST
        if (distributed(&r))
            printf("distributed: %d processes of %lld rows per batch, gradients averaged in %d "
                   "buckets\n",
                   r.ranks, (long long)train_rows, tg_dist_bucket_count(r.dist));
#endif
        if (o->resume) printf("resuming from %s after epoch %d\n", o->checkpoint, r.n_done);
        fflush(stdout);
    }

    /* The best epoch so far, resumed ones included: early stopping counts from it. */
    char best_file[4096];
    best_path(o->checkpoint, best_file, sizeof best_file);
    int best = -1;
    bool evaluated = false;
    for (int e = 0; e < r.n_done; e++)
        if (best < 0 || r.hist[e][TEST_ACC] > r.hist[best][TEST_ACC]) best = e;
    for (int epoch = r.n_done; epoch < o->epochs; epoch++) {
        if (o->patience && best >= 0 && epoch - 1 - best >= o->patience) {
            if (r.rank == 0)
                printf("early stop: no better test accuracy in %d epochs (best %.4f at epoch %d)\n",
                       o->patience, r.hist[best][TEST_ACC], best + 1);
            break;
        }
        double start = now_seconds();
        double *h = r.hist[epoch];
        if (!train_epoch(&r, epoch, &h[TRAIN_LOSS])) goto out;
#ifdef TG_HAVE_DIST
        /* Batch norm's running statistics, each rank's own so far, become their mean. */
        if (r.dist && tg_dist_average_buffers(r.dist, &dist_err) != TG_OK) {
            fprintf(stderr, "error: %s\n", dist_err.msg);
            goto out;
        }
#endif
        if (!evaluate(&r, &h[TEST_LOSS], &h[TEST_ACC])) goto out;
        h[SECONDS] = now_seconds() - start;
        r.n_done = epoch + 1;
        evaluated = true;
        bool better = best < 0 || h[TEST_ACC] > r.hist[best][TEST_ACC];
        if (r.rank == 0)
            printf("epoch %2d  train loss %.4f  test loss %.4f  test acc %.4f  %.1f s%s\n",
                   epoch + 1, h[TRAIN_LOSS], h[TEST_LOSS], h[TEST_ACC], h[SECONDS],
                   better ? "  (best)" : "");
        fflush(stdout);
        if (!save_checkpoint(&r, o->checkpoint)) goto out;
        if (better) {
            best = epoch;
            if (!save_checkpoint(&r, best_file)) goto out;
        }
    }
    if (evaluated && r.rank == 0) print_class_report(&r); /* of the last epoch's model */
    if (o->onnx && r.rank == 0 && !export_onnx(&r, o->onnx)) goto out;

    char title[256];
    snprintf(title, sizeof title, "Fashion-MNIST, %s %s, AdamW lr %g, batch %lld",
             o->model == MODEL_CNN ? "CNN" : "MLP", arch, o->lr, (long long)o->batch);
    if (r.rank == 0) {
        if (!write_csv(o->log, r.hist, r.n_done) || !write_svg(o->chart, title, r.hist, r.n_done))
            goto out;
        printf("wrote %s, %s, %s and %s\n", o->checkpoint, best_file, o->log, o->chart);
    }
    status = EXIT_SUCCESS;
out:
    run_free(&r);
#ifdef TG_HAVE_DIST
    /* A rank that failed leaves without MPI_Finalize: mpirun then ends the whole
     * job, where the others would wait for it in their next step. */
    if (by_mpirun && status == EXIT_SUCCESS) MPI_Finalize();
#endif
    return status;
}
