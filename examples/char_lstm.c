/*
 * char_lstm: a character-level language model, an LSTM trained through
 * replay on a text file and then sampled.
 *
 * The text is every Debian system's copy of the GNU GPL version 3
 * (/usr/share/common-licenses/GPL-3, from base-files), about 35 kB of English.
 * The network reads one character at a time: embedding -> LSTM cell -> linear
 * to logits over the characters the text uses, and learns to predict the next
 * one. The training step unrolls the cell over --steps characters of --batch
 * windows; it is RECORDED ONCE (a few hundred nodes: the same twenty ops per
 * character) and REPLAYED for every batch, with backward and Adam after each.
 * Sampling uses a second tape of one cell step, replayed once per character
 * with the state copied from its outputs back into its input leaves.
 *
 *     char_lstm [--text FILE] [--iters N] [--steps T] [--batch B] [--hidden H]
 *               [--sample N] [--seed S] [--onnx PATH]
 *
 * --onnx writes the sampling step as an ONNX model: inputs 'char' (int64
 * [batch], a character's index in the vocabulary), 'h' and 'c' [batch, H];
 * outputs 'probs' [batch, V], 'h_next' and 'c_next'.
 *
 * It prints the mean loss every 50 iterations and a sample at the end, and
 * exits with status 1 if the loss did not fall, so a test can run it short.
 */
#include <tapegrad/tapegrad.h>
#ifdef TG_HAVE_ONNX
#include <tapegrad/onnx.h>
#endif

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TEXT (1 << 22)

typedef struct options {
    const char *text, *onnx;
    long iters, steps, batch, hidden, sample;
    unsigned long long seed;
} options;

/* 1 to run, 0 after --help, -1 for bad arguments. */
static int parse_args(int argc, char **argv, options *o)
{
    *o = (options){"/usr/share/common-licenses/GPL-3", NULL, 1500, 32, 32, 128, 400, 1};
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (!strcmp(a, "--help")) {
            printf("usage: %s [--text FILE] [--iters N] [--steps T] [--batch B] [--hidden H] "
                   "[--sample N] [--seed S] [--onnx PATH]\n",
                   argv[0]);
            return 0;
        }
        long *n = !strcmp(a, "--iters")    ? &o->iters
                  : !strcmp(a, "--steps")  ? &o->steps
                  : !strcmp(a, "--batch")  ? &o->batch
                  : !strcmp(a, "--hidden") ? &o->hidden
                  : !strcmp(a, "--sample") ? &o->sample
                                           : NULL;
        char *end;
        bool ok = false;
        if (v && !strcmp(a, "--text")) {
            o->text = v;
            ok = true;
        } else if (v && !strcmp(a, "--onnx")) {
            o->onnx = v;
            ok = true;
        } else if (v && !strcmp(a, "--seed")) {
            o->seed = strtoull(v, &end, 10);
            ok = *v && !*end;
        } else if (v && n) {
            *n = strtol(v, &end, 10);
            ok = *v && !*end && *n >= (n == &o->sample ? 0 : 1);
        }
        if (!ok) {
            fprintf(stderr, "%s: bad argument near '%s' (try --help)\n", argv[0], a);
            return -1;
        }
    }
    return 1;
}

/* The file's bytes, and the table of distinct bytes it uses (the vocabulary). */
static long read_text(const char *path, unsigned char **text, int *vocab, int index[256])
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    unsigned char *buf = malloc(MAX_TEXT);
    long n = buf ? (long)fread(buf, 1, MAX_TEXT, f) : -1;
    fclose(f);
    if (n < 2) {
        fprintf(stderr, "%s: empty or unreadable\n", path);
        free(buf);
        return -1;
    }
    *vocab = 0;
    for (int c = 0; c < 256; c++)
        index[c] = -1;
    for (long i = 0; i < n; i++)
        if (index[buf[i]] < 0) index[buf[i]] = (*vocab)++;
    *text = buf;
    return n;
}

/* ====== The model: embedding -> LSTM cell -> linear ====== */

typedef struct model {
    tg_params *ps;
    tg_tensor *embed; /* [V, E] */
    tg_lstm_cell cell;
    tg_linear head; /* H -> V */
} model;

/* The logits of one cell step on character indices x_t [B], from state (h, c). */
static tg_tensor *cell_step(tg_tape *tp, const model *m, tg_tensor *x_t, tg_tensor *h, tg_tensor *c,
                            tg_tensor **h_out, tg_tensor **c_out)
{
    *h_out = tg_lstm_cell_forward(tp, &m->cell, tg_embedding(tp, m->embed, x_t), h, c, c_out);
    return tg_linear_forward(tp, &m->head, *h_out);
}

/* Writes the sampling step as an ONNX model with a symbolic batch. */
static bool export_step(tg_tape *sp, const model *m, tg_tensor *x, tg_tensor *h, tg_tensor *c,
                        tg_tensor *probs, tg_tensor *h2, tg_tensor *c2, const char *path)
{
#ifdef TG_HAVE_ONNX
    tg_tensor *in[3] = {x, h, c}, *out[3] = {probs, h2, c2};
    const char *in_names[3] = {"char", "h", "c"}, *out_names[3] = {"probs", "h_next", "c_next"};
    for (int i = 0; i < 3; i++) {
        tg_tensor_set_name(in[i], in_names[i]);
        tg_tensor_set_name(out[i], out_names[i]);
    }
    tg_error err;
    if (tg_onnx_export(path, sp, in, 3, out, 3, &m->ps, 1,
                       &(tg_onnx_opts){.graph_name = "char_lstm", .batch = 7}, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return false;
    }
    printf("wrote %s\n", path);
    return true;
#else
    (void)sp, (void)m, (void)x, (void)h, (void)c, (void)probs, (void)h2, (void)c2;
    fprintf(stderr, "--onnx %s: this build has no ONNX export (meson -Donnx=enabled)\n", path);
    return false;
#endif
}

int main(int argc, char **argv)
{
    options o;
    int pr = parse_args(argc, argv, &o);
    if (pr <= 0) return pr < 0 ? 2 : 0;
    unsigned char *text;
    int vocab, index[256], chars[256];
    long n_text = read_text(o.text, &text, &vocab, index);
    if (n_text < 0) return 1;
    for (int c = 0; c < 256; c++)
        if (index[c] >= 0) chars[index[c]] = c;
    if (n_text <= o.steps + 1) {
        fprintf(stderr, "%s: shorter than one window of %ld characters\n", o.text, o.steps + 1);
        return 1;
    }
    tg_set_flush_denormals(true);

    model m = {.ps = tg_params_new()};
    tg_rng rng;
    tg_rng_seed(&rng, o.seed);
    tg_error err = {0};
    const int64_t emb = 32;
    if (!m.ps || !(m.embed = tg_params_add(m.ps, "embed", TG_F32, 2, (int64_t[]){vocab, emb})) ||
        tg_init_tensor(m.embed, TG_INIT_XAVIER_NORMAL, vocab, emb, &rng) ||
        tg_lstm_cell_init(&m.cell, m.ps, "lstm", emb, o.hidden, TG_F32, &rng, &err) ||
        tg_linear_init(&m.head, m.ps, "head", o.hidden, vocab, true, TG_F32, &rng, &err)) {
        fprintf(stderr, "model: %s\n", err.msg[0] ? err.msg : "out of memory");
        return 1;
    }

    /* The training step, recorded once: inputs x[t] [B] for each of the T
     * characters and targets y [T*B] (the next characters), I64 leaves
     * rewritten for every batch. */
    const int64_t T = o.steps, B = o.batch;
    tg_tensor **x = calloc((size_t)T, sizeof *x);
    tg_tensor **logits = calloc((size_t)T, sizeof *logits);
    tg_tensor *y = tg_tensor_new(TG_I64, 1, (int64_t[]){T * B});
    tg_tape *tp = tg_tape_new();
    if (!x || !y || !tp || !logits) return 1;
    tg_tensor *h = NULL, *c = NULL;
    for (int64_t t = 0; t < T; t++) {
        if (!(x[t] = tg_tensor_new(TG_I64, 1, (int64_t[]){B}))) return 1;
        logits[t] = cell_step(tp, &m, x[t], h, c, &h, &c);
    }
    tg_tensor *loss = tg_cross_entropy(tp, tg_concat(tp, logits, (int)T, 0), y);
    tg_optim *opt = tg_optim_new(m.ps, &(tg_optim_opts){.kind = TG_OPTIM_ADAM, .lr = 3e-3});
    if (tg_tape_status(tp) || !opt) {
        fprintf(stderr, "recording: %s\n", tg_tape_error(tp));
        return 1;
    }
    printf("%s: %ld characters, %d distinct; %lld nodes per step (%lld characters x %lld "
           "windows)\n",
           o.text, n_text, vocab, (long long)tg_tape_size(tp), (long long)T, (long long)B);

    int64_t *ys = tg_tensor_data(y);
    double first = NAN, recent = 0;
    int n_recent = 0;
    for (long it = 1; it <= o.iters; it++) {
        for (int64_t b = 0; b < B; b++) { /* B random windows of T + 1 characters */
            long at = (long)tg_rng_below(&rng, (uint64_t)(n_text - T - 1));
            for (int64_t t = 0; t < T; t++) {
                ((int64_t *)tg_tensor_data(x[t]))[b] = index[text[at + t]];
                ys[t * B + b] = index[text[at + t + 1]];
            }
        }
        tg_params_zero_grad(m.ps);
        if (tg_tape_replay(tp) || tg_backward(tp, loss) || tg_optim_step(opt)) {
            fprintf(stderr, "step %ld: %s\n", it, tg_tape_error(tp));
            return 1;
        }
        recent += tg_tensor_item(loss), n_recent++;
        if (it % 50 == 0 || it == o.iters) {
            printf("iter %5ld  loss %.4f\n", it, recent / n_recent);
            fflush(stdout);
            if (isnan(first)) first = recent / n_recent;
            recent = 0, n_recent = 0;
        }
    }
    double last = tg_tensor_item(loss);

    /* Sampling: one cell step for one window, replayed per character. */
    tg_tape *sp = tg_tape_new();
    tg_tensor *sx = tg_tensor_new(TG_I64, 1, (int64_t[]){1});
    tg_tensor *sh = tg_tensor_new(TG_F32, 2, (int64_t[]){1, o.hidden});
    tg_tensor *sc = tg_tensor_new(TG_F32, 2, (int64_t[]){1, o.hidden});
    tg_tensor *h2, *c2;
    tg_tensor *probs = tg_softmax(sp, cell_step(sp, &m, sx, sh, sc, &h2, &c2));
    if (tg_tape_status(sp)) {
        fprintf(stderr, "sampling: %s\n", tg_tape_error(sp));
        return 1;
    }
    if (o.onnx && !export_step(sp, &m, sx, sh, sc, probs, h2, c2, o.onnx)) return 1;
    printf("sample:\n%c", text[0]);
    *(int64_t *)tg_tensor_data(sx) = index[text[0]];
    for (long i = 0; i < o.sample; i++) {
        if (tg_tape_replay(sp)) break;
        const float *p = tg_tensor_data(probs);
        double u = tg_rng_uniform(&rng), acc = 0;
        int k = 0;
        while (k < vocab - 1 && (acc += (double)p[k]) <= u)
            k++;
        putchar(chars[k]);
        *(int64_t *)tg_tensor_data(sx) = k;
        memcpy(tg_tensor_data(sh), tg_tensor_data(h2), (size_t)o.hidden * sizeof(float));
        memcpy(tg_tensor_data(sc), tg_tensor_data(c2), (size_t)o.hidden * sizeof(float));
    }
    printf("\n");

    tg_tape_free(sp);
    tg_tensor_free(sx);
    tg_tensor_free(sh);
    tg_tensor_free(sc);
    tg_optim_free(opt);
    tg_tape_free(tp);
    for (int64_t t = 0; t < T; t++)
        tg_tensor_free(x[t]);
    tg_tensor_free(y);
    free(x);
    free(logits);
    tg_params_free(m.ps);
    free(text);
    if (!(last < first)) {
        fprintf(stderr, "the loss did not fall: %.4f at first, %.4f at the end\n", first, last);
        return 1;
    }
    return 0;
}
