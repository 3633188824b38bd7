/*
 * Layers built from graph ops. Nothing here has a backward pass of its own:
 * a dense layer is a matmul and an add-bias on the tape, so its gradients
 * come from those ops' VJPs, the same sweep as any other graph.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

tg_tensor *tg_dense(tg_tape *tp, tg_tensor *x, tg_tensor *w, tg_tensor *b)
{
    return tg_add_bias(tp, tg_matmul(tp, x, w), b);
}

tg_tensor *tg_activate(tg_tape *tp, tg_tensor *x, tg_activation act)
{
    if (!tg__guard(tp, "activate", 1, &x)) return NULL;
    switch (act) {
    case TG_ACT_NONE:
        return x;
    case TG_ACT_RELU:
        return tg_relu(tp, x);
    case TG_ACT_TANH:
        return tg_tanh(tp, x);
    case TG_ACT_SIGMOID:
        return tg_sigmoid(tp, x);
    }
    tg__fail(tp, TG_ERR_ARG, "activate: unknown activation %d", (int)act);
    return NULL;
}

/* ====== Multi-layer perceptron ====== */

typedef struct mlp_layer {
    tg_tensor *w, *b; /* owned by the registry */
    tg_activation act;
} mlp_layer;

struct tg_mlp {
    int n_layers;
    mlp_layer layer[];
};

static bool valid_act(tg_activation act) { return (unsigned)act <= TG_ACT_SIGMOID; }

tg_mlp *tg_mlp_new(tg_params *ps, const char *prefix, int n_layers, const int64_t *sizes,
                   const tg_activation *acts, tg_dtype dt, tg_rng *r)
{
    if (!ps || !prefix || !*prefix || !sizes || !acts || !r) {
        tg__fail_call(TG_ERR_ARG, "mlp_new: NULL registry, sizes, activations or rng, or an "
                                  "empty prefix");
        return NULL;
    }
    if (n_layers < 1) {
        tg__fail_call(TG_ERR_ARG, "mlp_new: %d layers, at least 1 needed", n_layers);
        return NULL;
    }
    if (dt != TG_F32 && dt != TG_F64) {
        tg__fail_call(TG_ERR_DTYPE, "mlp_new: dtype %d, not f32 or f64", (int)dt);
        return NULL;
    }
    for (int l = 0; l <= n_layers; l++)
        if (sizes[l] < 1) {
            tg__fail_call(TG_ERR_ARG, "mlp_new: sizes[%d] is %lld, must be >= 1", l,
                          (long long)sizes[l]);
            return NULL;
        }
    for (int l = 0; l < n_layers; l++)
        if (!valid_act(acts[l])) {
            tg__fail_call(TG_ERR_ARG, "mlp_new: acts[%d] is %d, not an activation", l,
                          (int)acts[l]);
            return NULL;
        }

    /* Room for "<prefix>.<l>.weight" with l of up to 10 digits. */
    size_t name_size = strlen(prefix) + sizeof ".2147483647.weight";
    char *name = tg__malloc(name_size);
    tg_mlp *m = tg__calloc(1, sizeof *m + (size_t)n_layers * sizeof(mlp_layer));
    size_t n_before = tg_params_count(ps);
    if (!name || !m) {
        tg__fail_call(TG_ERR_NOMEM, "mlp_new: out of memory");
        goto fail;
    }
    m->n_layers = n_layers;
    for (int l = 0; l < n_layers; l++) {
        mlp_layer *ly = &m->layer[l];
        snprintf(name, name_size, "%s.%d.weight", prefix, l);
        ly->w = tg_params_add(ps, name, dt, 2, (int64_t[]){sizes[l], sizes[l + 1]});
        snprintf(name, name_size, "%s.%d.bias", prefix, l);
        ly->b = ly->w ? tg_params_add(ps, name, dt, 1, &sizes[l + 1]) : NULL; /* zero-filled */
        ly->act = acts[l];
        /* tg_params_add said why (a name taken, a size too large, no memory);
         * the message is kept, with this function's name in front. */
        if (!ly->b) {
            tg_error inner = *tg_last_error();
            tg__fail_call(inner.status, "mlp_new: layer %d: %s", l, inner.msg);
            goto fail;
        }
        /* He keeps the variance of ReLU layers (which zero half their inputs);
         * Xavier suits the symmetric tanh and sigmoid and a linear output.
         * With the arguments checked above it cannot fail. */
        tg_init kind = ly->act == TG_ACT_RELU ? TG_INIT_HE_UNIFORM : TG_INIT_XAVIER_UNIFORM;
        tg_init_tensor(ly->w, kind, sizes[l], sizes[l + 1], r);
    }
    free(name);
    return m;
fail:
    tg__params_truncate(ps, n_before); /* a duplicate name or no memory: register nothing */
    free(name);
    free(m);
    return NULL;
}

void tg_mlp_free(tg_mlp *m) { free(m); }

tg_tensor *tg_mlp_forward(tg_tape *tp, const tg_mlp *m, tg_tensor *x)
{
    if (!tg__guard(tp, "mlp", 1, &x)) return NULL;
    if (!m) {
        tg__fail(tp, TG_ERR_ARG, "mlp: network is NULL");
        return NULL;
    }
    int64_t in = m->layer[0].w->shape[0];
    if (x->rank != 2 || x->shape[1] != in) {
        char s0[TG__SHAPE_STR_MAX];
        tg__fail(tp, TG_ERR_SHAPE, "mlp: input %s is not [batch x %lld]",
                 tg__shape_str(x, s0, sizeof s0), (long long)in);
        return NULL;
    }
    tg_tensor *h = x;
    for (int l = 0; l < m->n_layers; l++)
        h = tg_activate(tp, tg_dense(tp, h, m->layer[l].w, m->layer[l].b), m->layer[l].act);
    return h;
}
