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
    if (!ps || !prefix || !*prefix || n_layers < 1 || !sizes || !acts || !r) return NULL;
    if (dt != TG_F32 && dt != TG_F64) return NULL;
    for (int l = 0; l <= n_layers; l++)
        if (sizes[l] < 1) return NULL;
    for (int l = 0; l < n_layers; l++)
        if (!valid_act(acts[l])) return NULL;

    /* Room for "<prefix>.<l>.weight" with l of up to 10 digits. */
    size_t name_size = strlen(prefix) + sizeof ".2147483647.weight";
    char *name = tg__malloc(name_size);
    tg_mlp *m = tg__calloc(1, sizeof *m + (size_t)n_layers * sizeof(mlp_layer));
    size_t n_before = tg_params_count(ps);
    if (!name || !m) goto fail;
    m->n_layers = n_layers;
    for (int l = 0; l < n_layers; l++) {
        mlp_layer *ly = &m->layer[l];
        snprintf(name, name_size, "%s.%d.weight", prefix, l);
        ly->w = tg_params_add(ps, name, dt, 2, (int64_t[]){sizes[l], sizes[l + 1]});
        snprintf(name, name_size, "%s.%d.bias", prefix, l);
        ly->b = tg_params_add(ps, name, dt, 1, &sizes[l + 1]); /* zero-filled */
        ly->act = acts[l];
        if (!ly->w || !ly->b) goto fail;
        /* He keeps the variance of ReLU layers (which zero half their inputs);
         * Xavier suits the symmetric tanh and sigmoid and a linear output. */
        tg_init kind = ly->act == TG_ACT_RELU ? TG_INIT_HE_UNIFORM : TG_INIT_XAVIER_UNIFORM;
        if (tg_init_tensor(ly->w, kind, sizes[l], sizes[l + 1], r) != TG_OK) goto fail;
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
