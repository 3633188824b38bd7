/*
 * transformer_block: a small decoder-only transformer block, built from the
 * public API, whose gradients pass tg_gradcheck end to end in F64.
 *
 *     tokens [B,T] -> embedding + learned positions -> x
 *     x = x + attention(layer_norm(x), causal mask)
 *     x = x + W2 gelu(W1 layer_norm(x))
 *     loss = cross_entropy(x Wout, next tokens)
 *
 * Every parameter (about a thousand numbers) is perturbed by ±eps and the
 * central difference compared with the tape's gradient: embedding's
 * index_add, the heads' reshape and permute, the batched products, the mask,
 * softmax, layer norm, GELU and the I64-labelled loss all have to be right for
 * the check to pass. Exits 1 if it fails.
 */
#include <tapegrad/tapegrad.h>

#include <stdio.h>

enum { B = 2, T = 5, V = 7, D = 8, HEADS = 2 };

typedef struct block {
    tg_params *ps;
    tg_tensor *tok, *pos; /* [V,D], [T,D] */
    tg_layer_norm_layer ln1, ln2;
    tg_mha attn;
    tg_linear ff1, ff2, out;
    tg_tensor *tokens, *next, *mask; /* I64 [B,T], I64 [B*T], [T,T] */
} block;

/* The loss of the block; 'inputs' are the registry's parameters, which the
 * block's handles point at, so the check perturbs exactly what is used. */
static tg_tensor *loss_fn(tg_tape *tp, tg_tensor *const *inputs, void *ctx)
{
    (void)inputs;
    const block *m = ctx;
    tg_tensor *x = tg_add(tp, tg_embedding(tp, m->tok, m->tokens), m->pos);
    x = tg_add(tp, x,
               tg_mha_forward(tp, &m->attn, tg_layer_norm_layer_forward(tp, &m->ln1, x), m->mask));
    tg_tensor *ff = tg_gelu(
        tp, tg_linear_forward(tp, &m->ff1, tg_layer_norm_layer_forward(tp, &m->ln2, x)), false);
    x = tg_add(tp, x, tg_linear_forward(tp, &m->ff2, ff));
    tg_tensor *logits =
        tg_reshape(tp, tg_linear_forward(tp, &m->out, x), 2, (const int64_t[]){B * T, V});
    return tg_cross_entropy(tp, logits, m->next);
}

int main(void)
{
    block m = {.ps = tg_params_new()};
    tg_rng rng;
    tg_rng_seed(&rng, 7);
    tg_error err = {0};
    if (!m.ps) return 1;
    m.tok = tg_params_add(m.ps, "tok", TG_F64, 2, (const int64_t[]){V, D});
    m.pos = tg_params_add(m.ps, "pos", TG_F64, 2, (const int64_t[]){T, D});
    if (!m.tok || !m.pos || tg_init_tensor(m.tok, TG_INIT_XAVIER_NORMAL, V, D, &rng) ||
        tg_init_tensor(m.pos, TG_INIT_XAVIER_NORMAL, T, D, &rng) ||
        tg_layer_norm_layer_init(&m.ln1, m.ps, "ln1", D, TG_F64, &err) ||
        tg_mha_init(&m.attn, m.ps, "attn", D, HEADS, TG_F64, &rng, &err) ||
        tg_layer_norm_layer_init(&m.ln2, m.ps, "ln2", D, TG_F64, &err) ||
        tg_linear_init(&m.ff1, m.ps, "ff1", D, 4 * D, true, TG_F64, &rng, &err) ||
        tg_linear_init(&m.ff2, m.ps, "ff2", 4 * D, D, true, TG_F64, &rng, &err) ||
        tg_linear_init(&m.out, m.ps, "out", D, V, true, TG_F64, &rng, &err)) {
        fprintf(stderr, "model: %s\n", err.msg[0] ? err.msg : "out of memory");
        return 1;
    }
    /* Layer norms start at gamma 1, beta 0; move them off that so their own
     * gradients are checked at a general point. */
    for (size_t i = 0; i < tg_params_count(m.ps); i++) {
        tg_tensor *p = tg_params_at(m.ps, i, NULL);
        double *v = tg_tensor_data(p);
        for (int64_t k = 0; k < tg_tensor_numel(p); k++)
            v[k] += 0.1 * tg_rng_normal(&rng);
    }
    int64_t tokens[B * T], next[B * T];
    for (int i = 0; i < B * T; i++)
        tokens[i] = (int64_t)tg_rng_below(&rng, V);
    for (int i = 0; i < B * T; i++)
        next[i] = i % T < T - 1 ? tokens[i + 1] : tokens[i - T + 1];
    m.tokens = tg_tensor_from(TG_I64, 2, (const int64_t[]){B, T}, tokens);
    m.next = tg_tensor_from(TG_I64, 1, (const int64_t[]){B * T}, next);
    m.mask = tg_causal_mask(T, TG_F64);
    if (!m.tokens || !m.next || !m.mask) return 1;

    tg_tensor *inputs[32];
    int n = (int)tg_params_count(m.ps);
    for (int i = 0; i < n; i++)
        inputs[i] = tg_params_at(m.ps, i, NULL);
    tg_gradcheck_report rep;
    tg_status s = tg_gradcheck(loss_fn, inputs, n, &m, NULL, &rep);
    const char *worst = "";
    if (s == TG_OK) tg_params_at(m.ps, (size_t)rep.worst_input, &worst);
    printf("transformer block: %d parameter tensors, %lld numbers checked\n", n,
           (long long)rep.n_checked);
    printf("max |analytic - numeric| = %.2e, max relative = %.2e (worst: %s[%lld])\n",
           rep.max_abs_err, rep.max_rel_err, worst, (long long)rep.worst_index);
    printf("%s\n", s == TG_OK && rep.passed ? "gradcheck passed" : "gradcheck FAILED");

    tg_tensor_free(m.tokens);
    tg_tensor_free(m.next);
    tg_tensor_free(m.mask);
    tg_params_free(m.ps);
    return s == TG_OK && rep.passed ? 0 : 1;
}
