/*
 * eikonal: a loss that contains a gradient, trained through replay. A small
 * tanh network u(x) on the plane learns the signed distance to a circle of
 * radius R from the circle alone, as in implicit geometric regularisation
 * (Gropp et al., 2020):
 *
 *     loss = mean over the circle of u² + |∇u - n|²            (boundary, normals)
 *          + LAMBDA mean over the square of (|∇u|² - 1)²       (eikonal term)
 *
 * ∇u, the gradient of u with respect to its input x, comes from tg_grad with
 * create_graph, so it is made of recorded ops; tg_backward then differentiates
 * the loss, gradient terms included, with respect to the weights, and Adam
 * (nn.h) steps them. The step is recorded once: every later step draws new
 * points into the input leaves, replays the tape (the network, ∇u and the
 * loss), runs backward and steps the optimizer, with no allocation.
 *
 * The exact answer is |x| - R. The example exits with 1 unless the loss falls
 * below LOSS_BOUND, the network is within MAE_BOUND of |x| - R on average over
 * a grid of the square, and a replayed step gives bit for bit the loss and
 * weight gradients of the same step recorded afresh.
 */
#include <tapegrad/tapegrad.h>

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define R          0.5 /* the circle's radius */
#define NB         64  /* points on the circle per step */
#define NR         128 /* points in the square [-1, 1]² per step */
#define HIDDEN     32
#define LAMBDA     0.1
#define STEPS      2000
#define GRID       41 /* evaluation grid of GRID x GRID points */
#define LOSS_BOUND 4e-3
#define MAE_BOUND  0.02

static const int64_t sizes[] = {2, HIDDEN, HIDDEN, 1};
#define LAYERS 3

/* ====== The network, recorded with ops that support create_graph ====== */

/* u(x) for x [n, 2]: tanh layers, a linear last layer. */
static tg_tensor *u_of(tg_tape *tp, tg_params *ps, tg_tensor *x)
{
    char name[32];
    tg_tensor *h = x;
    for (int l = 0; l < LAYERS; l++) {
        snprintf(name, sizeof name, "u.%d.weight", l);
        tg_tensor *w = tg_params_get(ps, name);
        snprintf(name, sizeof name, "u.%d.bias", l);
        h = tg_add(tp, tg_matmul(tp, h, w), tg_params_get(ps, name));
        if (l + 1 < LAYERS) h = tg_tanh(tp, h);
    }
    return h;
}

typedef struct model {
    tg_params *ps;
    tg_tensor *xb, *nb, *xr; /* circle points, their normals, square points */
    tg_tensor *one, *ones2;  /* constants 1 [1] and [2x1] */
} model;

/* Records the loss on tp; the gradients of u with respect to the points are
 * recorded too (create_graph), so the loss depends on them. */
static tg_tensor *record_loss(tg_tape *tp, model *m)
{
    tg_tensor *ub = u_of(tp, m->ps, m->xb), *ur = u_of(tp, m->ps, m->xr), *g[2];
    tg_tensor *both = tg_add(tp, tg_sum(tp, ub), tg_sum(tp, ur));
    if (!both || tg_grad(tp, both, NULL, (tg_tensor *[]){m->xb, m->xr}, 2, g, true)) return NULL;
    tg_tensor *dn = tg_sub(tp, g[0], m->nb);
    tg_tensor *boundary =
        tg_add(tp, tg_mean(tp, tg_mul(tp, ub, ub)), tg_mean(tp, tg_mul(tp, dn, dn)));
    /* |∇u|² per point as (∇u ⊙ ∇u) [1 1]ᵀ, then its distance from 1. */
    tg_tensor *e = tg_sub(tp, tg_matmul(tp, tg_mul(tp, g[1], g[1]), m->ones2), m->one);
    return tg_add(tp, boundary, tg_scale(tp, tg_mean(tp, tg_mul(tp, e, e)), LAMBDA));
}

/* New points: NB on the circle with their outward normals, NR in the square. */
static void draw_points(model *m, tg_rng *rng)
{
    double *xb = tg_tensor_data(m->xb), *nb = tg_tensor_data(m->nb), *xr = tg_tensor_data(m->xr);
    for (int i = 0; i < NB; i++) {
        double a = 6.283185307179586 * tg_rng_uniform(rng);
        nb[2 * i] = cos(a), nb[2 * i + 1] = sin(a);
        xb[2 * i] = R * nb[2 * i], xb[2 * i + 1] = R * nb[2 * i + 1];
    }
    for (int i = 0; i < 2 * NR; i++)
        xr[i] = 2 * tg_rng_uniform(rng) - 1;
}

/* The mean |u(x) - (|x| - R)| over a GRID x GRID grid of the square. */
static double grid_error(tg_params *ps, bool *ok)
{
    tg_tensor *x = tg_tensor_new(TG_F64, 2, (int64_t[]){GRID * GRID, 2});
    tg_tape *tp = tg_tape_new();
    double err = 0;
    *ok = false;
    if (x && tp) {
        double *xd = tg_tensor_data(x);
        for (int i = 0; i < GRID * GRID; i++)
            xd[2 * i] = -1 + 2.0 * (i / GRID) / (GRID - 1),
                   xd[2 * i + 1] = -1 + 2.0 * (i % GRID) / (GRID - 1);
        tg_tape_set_grad(tp, false);
        tg_tensor *u = u_of(tp, ps, x);
        if ((*ok = u != NULL)) {
            const double *ud = tg_tensor_cdata(u);
            for (int i = 0; i < GRID * GRID; i++)
                err += fabs(ud[i] - (hypot(xd[2 * i], xd[2 * i + 1]) - R));
            err /= GRID * GRID;
        }
    }
    tg_tape_free(tp);
    tg_tensor_free(x);
    return err;
}

/* The replayed step against a fresh recording of the same step: the loss and
 * every weight gradient must be the same bits. */
static bool replay_matches_recording(model *m, tg_tape *tp, tg_tensor *loss)
{
    size_t n = tg_params_count(m->ps);
    tg_params_zero_grad(m->ps);
    if (tg_tape_replay(tp) || tg_backward(tp, loss)) return false;
    double l1 = tg_tensor_item(loss), g1[LAYERS * 2][HIDDEN * HIDDEN];
    for (size_t i = 0; i < n; i++) {
        tg_tensor *p = tg_params_at(m->ps, i, NULL);
        memcpy(g1[i], tg_tensor_cdata(tg_tensor_grad(p)),
               (size_t)tg_tensor_numel(p) * sizeof(double));
    }
    tg_params_zero_grad(m->ps);
    tg_tape *fresh = tg_tape_new();
    tg_tensor *loss2 = fresh ? record_loss(fresh, m) : NULL;
    bool same = loss2 && tg_backward(fresh, loss2) == TG_OK && tg_tensor_item(loss2) == l1;
    for (size_t i = 0; same && i < n; i++) {
        tg_tensor *p = tg_params_at(m->ps, i, NULL);
        same = memcmp(g1[i], tg_tensor_cdata(tg_tensor_grad(p)),
                      (size_t)tg_tensor_numel(p) * sizeof(double)) == 0;
    }
    printf("replayed step vs the same step recorded afresh: loss %.17g vs %.17g, weight gradients "
           "%s\n",
           l1, loss2 ? tg_tensor_item(loss2) : (double)NAN, same ? "identical" : "DIFFERENT");
    tg_tape_free(fresh);
    return same;
}

int main(void)
{
    tg_rng rng;
    tg_rng_seed(&rng, 2020);
    model m = {.ps = tg_params_new()};
    tg_mlp *mlp =
        tg_mlp_new(m.ps, "u", LAYERS, sizes,
                   (tg_activation[]){TG_ACT_TANH, TG_ACT_TANH, TG_ACT_NONE}, TG_F64, &rng);
    tg_optim *opt = tg_optim_new(m.ps, &(tg_optim_opts){.kind = TG_OPTIM_ADAM, .lr = 3e-3});
    m.xb = tg_tensor_new(TG_F64, 2, (int64_t[]){NB, 2});
    m.nb = tg_tensor_new(TG_F64, 2, (int64_t[]){NB, 2});
    m.xr = tg_tensor_new(TG_F64, 2, (int64_t[]){NR, 2});
    m.one = tg_tensor_from(TG_F64, 1, (int64_t[]){1}, (double[]){1});
    m.ones2 = tg_tensor_from(TG_F64, 2, (int64_t[]){2, 1}, (double[]){1, 1});
    tg_tape *tp = tg_tape_new();
    if (!mlp || !opt || !m.xb || !m.nb || !m.xr || !m.one || !m.ones2 || !tp)
        return fprintf(stderr, "eikonal: %s\n", tg_last_error()->msg), 1;
    tg_tensor_set_requires_grad(m.xb, true); /* ∇u is taken with respect to the points */
    tg_tensor_set_requires_grad(m.xr, true);

    draw_points(&m, &rng);
    tg_tensor *loss = record_loss(tp, &m);
    size_t nodes = tg_tape_size(tp);
    printf("recorded %zu nodes: u on %d + %d points, grad u by create_graph, the loss\n", nodes, NB,
           NR);
    tg_status s = tg_tape_status(tp);
    double first = loss ? tg_tensor_item(loss) : (double)NAN, smooth = first;
    for (int step = 0; step < STEPS && s == TG_OK; step++) {
        if (step > 0) draw_points(&m, &rng);
        tg_params_zero_grad(m.ps);
        if ((s = tg_tape_replay(tp)) || (s = tg_backward(tp, loss)) || (s = tg_optim_step(opt)))
            break;
        if (step == STEPS * 3 / 4) tg_optim_set_lr(opt, 1e-3);
        smooth = 0.95 * smooth + 0.05 * tg_tensor_item(loss); /* the points change every step */
        if (step % 250 == 249)
            printf("step %4d  loss %.6f (running mean %.6f)\n", step + 1, tg_tensor_item(loss),
                   smooth);
    }
    if (s) fprintf(stderr, "eikonal: %s\n", tg_tape_error(tp));
    bool grid_ok;
    double mae = grid_error(m.ps, &grid_ok);
    printf("loss %.6f -> %.6f (running mean; bound %g), mean |u - (|x| - R)| on a %dx%d grid "
           "%.4f (bound %g), tape %zu nodes after %d replays\n",
           first, smooth, LOSS_BOUND, GRID, GRID, mae, MAE_BOUND, tg_tape_size(tp), STEPS);
    bool ok = s == TG_OK && grid_ok && smooth < LOSS_BOUND && mae < MAE_BOUND &&
              tg_tape_size(tp) == nodes && replay_matches_recording(&m, tp, loss);
    tg_tape_free(tp);
    tg_optim_free(opt);
    tg_mlp_free(mlp);
    tg_params_free(m.ps);
    tg_tensor_free(m.xb), tg_tensor_free(m.nb), tg_tensor_free(m.xr);
    tg_tensor_free(m.one), tg_tensor_free(m.ones2);
    puts(ok ? "trained" : "FAILED");
    return ok ? 0 : 1;
}
