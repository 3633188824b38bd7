/*
 * newton: Newton's method with Hessian-vector products from the tape, on a
 * small nonlinear least-squares problem whose Hessian has a closed form.
 *
 *     L(w) = 1/(2N) Σ_i (tanh(x_i · w) - y_i)^2 + λ/2 |w|^2,   w in R^D
 *
 * With z = X w, t = tanh z and r = t - y, the gradient is
 *     ∇L = Xᵀ (r ⊙ (1 - t²)) / N + λ w
 * and the Hessian
 *     H = Xᵀ diag(a) X / N + λ I,   a = (1 - t²)² - 2 r ⊙ t ⊙ (1 - t²).
 *
 * The tape records L, its gradient g = tg_grad(L, w, create_graph) and the
 * Hessian-vector product Hv = tg_grad(<g, v>, w, create_graph) once. Every
 * later evaluation writes new values into the leaves w and v and replays the
 * tape, which recomputes L, g and Hv with no allocation. Each Newton step
 * solves H p = -g by conjugate gradients on those products (Hessian-free: H
 * is never formed by the solver); the example also builds H column by column
 * from D products and checks it, the gradient and the step against the
 * closed forms above. Exits with 1 unless every check holds and the gradient
 * norm falls below 1e-12 with quadratic convergence.
 */
#include <tapegrad/tapegrad.h>

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define N      64   /* samples */
#define D      4    /* parameters */
#define LAMBDA 1e-2 /* L2 weight */

/* ====== The closed forms ====== */

/* The gradient and Hessian of L at w, straight from the formulas above. */
/* scale[k] (may be NULL) is the sum of the magnitudes of the terms of g[k]:
 * near the minimum g is their cancellation, so its rounding error is
 * relative to that, not to g. */
static void closed_form(const double *x, const double *y, const double *w, double *g,
                        double h[D][D], double *scale)
{
    double sc[D];
    memset(h, 0, sizeof(double[D][D]));
    for (int k = 0; k < D; k++)
        g[k] = LAMBDA * w[k], sc[k] = fabs(g[k]);
    for (int i = 0; i < N; i++) {
        double z = 0;
        for (int k = 0; k < D; k++)
            z += x[i * D + k] * w[k];
        double t = tanh(z), s = 1 - t * t, r = t - y[i];
        double a = s * s - 2 * r * t * s;
        for (int k = 0; k < D; k++) {
            g[k] += x[i * D + k] * r * s / N;
            sc[k] += fabs(x[i * D + k] * r * s / N);
            for (int l = 0; l < D; l++)
                h[k][l] += x[i * D + k] * a * x[i * D + l] / N;
        }
    }
    for (int k = 0; k < D; k++)
        h[k][k] += LAMBDA;
    if (scale) memcpy(scale, sc, sizeof sc);
}

/* Solves h p = b by Cholesky (h symmetric positive definite); false if it is not. */
static bool cholesky_solve(double h[D][D], const double *b, double *p)
{
    double l[D][D] = {{0}}, u[D];
    for (int j = 0; j < D; j++) {
        double d = h[j][j];
        for (int k = 0; k < j; k++)
            d -= l[j][k] * l[j][k];
        if (!(d > 0)) return false;
        l[j][j] = sqrt(d);
        for (int i = j + 1; i < D; i++) {
            double s = h[i][j];
            for (int k = 0; k < j; k++)
                s -= l[i][k] * l[j][k];
            l[i][j] = s / l[j][j];
        }
    }
    for (int i = 0; i < D; i++) { /* L u = b */
        double s = b[i];
        for (int k = 0; k < i; k++)
            s -= l[i][k] * u[k];
        u[i] = s / l[i][i];
    }
    for (int i = D; i-- > 0;) { /* Lᵀ p = u */
        double s = u[i];
        for (int k = i + 1; k < D; k++)
            s -= l[k][i] * p[k];
        p[i] = s / l[i][i];
    }
    return true;
}

static double dot(const double *a, const double *b)
{
    double s = 0;
    for (int k = 0; k < D; k++)
        s += a[k] * b[k];
    return s;
}

static double max_abs(const double *a, int n)
{
    double m = 0;
    for (int k = 0; k < n; k++)
        m = fmax(m, fabs(a[k]));
    return m;
}

/* ====== The recorded problem ====== */

typedef struct problem {
    tg_tape *tp;
    tg_tensor *x, *y, *w, *v; /* leaves: data, targets, parameters, direction */
    tg_tensor *loss, *g, *hv; /* recorded: L, ∇L, H v */
} problem;

/* Records L, g and Hv once; false with the tape's message on failure. */
static bool record(problem *p)
{
    tg_tape *tp = p->tp;
    tg_tensor *r = tg_sub(tp, tg_tanh(tp, tg_matmul(tp, p->x, p->w)), p->y);
    tg_tensor *fit = tg_scale(tp, tg_mean(tp, tg_mul(tp, r, r)), 0.5);
    p->loss = tg_add(tp, fit, tg_scale(tp, tg_sum(tp, tg_mul(tp, p->w, p->w)), 0.5 * LAMBDA));
    if (!p->loss) return false;
    if (tg_grad(tp, p->loss, NULL, &p->w, 1, &p->g, true) != TG_OK) return false;
    tg_tensor *gv = tg_sum(tp, tg_mul(tp, p->g, p->v));
    return gv && tg_grad(tp, gv, NULL, &p->w, 1, &p->hv, true) == TG_OK;
}

/* H v at the current w by a replay of the recorded tape. */
static bool hvp(problem *p, const double *v, double *out)
{
    memcpy(tg_tensor_data(p->v), v, D * sizeof *v);
    if (tg_tape_replay(p->tp) != TG_OK) return false;
    memcpy(out, tg_tensor_cdata(p->hv), D * sizeof *out);
    return true;
}

/* Solves H s = -g by conjugate gradients, one replayed product per
 * iteration; D iterations solve it exactly in exact arithmetic. */
static bool newton_cg(problem *p, const double *g, double *s, int *iters)
{
    double r[D], d[D], hd[D];
    memset(s, 0, D * sizeof *s);
    for (int k = 0; k < D; k++)
        r[k] = -g[k], d[k] = r[k];
    double rr = dot(r, r), rr0 = rr;
    for (*iters = 0; *iters < 2 * D && rr > 1e-30 * rr0; ++*iters) {
        if (!hvp(p, d, hd)) return false;
        double dhd = dot(d, hd);
        if (!(dhd > 0)) return false; /* H not positive definite along d */
        double alpha = rr / dhd;
        for (int k = 0; k < D; k++)
            s[k] += alpha * d[k], r[k] -= alpha * hd[k];
        double rr1 = dot(r, r);
        for (int k = 0; k < D; k++)
            d[k] = r[k] + rr1 / rr * d[k];
        rr = rr1;
    }
    return true;
}

/* L and ∇L at w (written into the leaf) by a replay. */
static bool evaluate(problem *p, const double *w, double *loss, double *g)
{
    memcpy(tg_tensor_data(p->w), w, D * sizeof *w);
    if (tg_tape_replay(p->tp) != TG_OK) return false;
    *loss = tg_tensor_item(p->loss);
    memcpy(g, tg_tensor_cdata(p->g), D * sizeof *g);
    return true;
}

/* The Hessian from D replayed products against the closed form (the worst
 * difference relative to its largest entry), and the gradient (relative to
 * the magnitude of its terms). */
static bool check_against_closed_form(problem *p, const double *w, const double *g, double *herr,
                                      double *gerr)
{
    const double *x = tg_tensor_cdata(p->x), *y = tg_tensor_cdata(p->y);
    double gc[D], hc[D][D], h[D][D], scale[D];
    closed_form(x, y, w, gc, hc, scale);
    for (int k = 0; k < D; k++) {
        double e[D] = {0};
        e[k] = 1;
        if (!hvp(p, e, h[k])) return false; /* column k = row k: H is symmetric */
    }
    double dh = 0, dg = 0;
    for (int k = 0; k < D; k++) {
        dg = fmax(dg, fabs(g[k] - gc[k]));
        for (int l = 0; l < D; l++)
            dh = fmax(dh, fabs(h[k][l] - hc[k][l]));
    }
    *herr = dh / max_abs(&hc[0][0], D * D), *gerr = dg / max_abs(scale, D);
    return true;
}

int main(void)
{
    const double w_true[D] = {0.8, -1.2, 0.5, 0.3};
    problem p = {.tp = tg_tape_new()};
    p.x = tg_tensor_new(TG_F64, 2, (int64_t[]){N, D});
    p.y = tg_tensor_new(TG_F64, 2, (int64_t[]){N, 1});
    p.w = tg_tensor_new(TG_F64, 2, (int64_t[]){D, 1});
    p.v = tg_tensor_new(TG_F64, 2, (int64_t[]){D, 1});
    if (!p.tp || !p.x || !p.y || !p.w || !p.v) return fprintf(stderr, "out of memory\n"), 1;
    tg_tensor_set_requires_grad(p.w, true);
    tg_tensor_set_name(p.w, "w");
    /* Data: x ~ N(0, 1), y = tanh(x · w_true) + noise of 0.05. */
    tg_rng rng;
    tg_rng_seed(&rng, 12);
    double *x = tg_tensor_data(p.x), *y = tg_tensor_data(p.y);
    for (int i = 0; i < N; i++) {
        double z = 0;
        for (int k = 0; k < D; k++)
            x[i * D + k] = tg_rng_normal(&rng), z += x[i * D + k] * w_true[k];
        y[i] = tanh(z) + 0.05 * tg_rng_normal(&rng);
    }
    bool ok = record(&p);
    if (!ok) fprintf(stderr, "newton: %s\n", tg_tape_error(p.tp));
    size_t nodes = tg_tape_size(p.tp);
    printf("recorded %zu nodes: L, g = dL/dw and H v\n", nodes);
    printf("%4s %22s %10s %10s %10s %4s %10s\n", "it", "L", "|g|", "g err", "H err", "cg",
           "step err");

    double w[D] = {0}, g[D], loss, gnorm[17] = {0}, worst_g = 0, worst_h = 0, worst_step = 0;
    int it = 0;
    for (; ok && it < 16; it++) {
        double s[D], sc[D], hc[D][D], gc[D], herr = 0, gerr = 0;
        int cg = 0;
        ok = evaluate(&p, w, &loss, g) && check_against_closed_form(&p, w, g, &herr, &gerr);
        worst_g = fmax(worst_g, gerr), worst_h = fmax(worst_h, herr);
        gnorm[it] = sqrt(dot(g, g));
        if (!ok || gnorm[it] < 1e-12) {
            if (ok) printf("%4d %22.16f %10.3e %10.2e %10.2e\n", it, loss, gnorm[it], gerr, herr);
            break;
        }
        ok = newton_cg(&p, g, s, &cg);
        /* The Newton step with the closed-form Hessian, by Cholesky, for the
         * same gradient (its rounding, relative to |g|, grows as g vanishes). */
        closed_form(x, y, w, gc, hc, NULL);
        double neg[D];
        for (int k = 0; k < D; k++)
            neg[k] = -g[k];
        ok = ok && cholesky_solve(hc, neg, sc);
        double dstep = 0;
        for (int k = 0; k < D; k++)
            dstep = fmax(dstep, fabs(s[k] - sc[k]));
        dstep /= max_abs(sc, D);
        worst_step = fmax(worst_step, dstep);
        printf("%4d %22.16f %10.3e %10.2e %10.2e %4d %10.2e\n", it, loss, gnorm[it], gerr, herr, cg,
               dstep);
        for (int k = 0; k < D; k++)
            w[k] += s[k];
    }
    if (!ok) fprintf(stderr, "newton: %s\n", tg_tape_error(p.tp));
    /* Quadratic convergence: once |g| is small, |g_next| <= C |g|^2 with a modest C. */
    bool quadratic = false;
    for (int k = 1; k < it; k++)
        if (gnorm[k] < 1e-3 && gnorm[k + 1] < 1e-12 + 10 * gnorm[k] * gnorm[k]) quadratic = true;
    printf("w = [%.10f, %.10f, %.10f, %.10f] after %d Newton steps (w_true = [%g, %g, %g, %g])\n",
           w[0], w[1], w[2], w[3], it, w_true[0], w_true[1], w_true[2], w_true[3]);
    printf("worst relative differences from the closed forms: gradient %.2e, Hessian %.2e, "
           "Newton step %.2e; tape size after all replays %zu\n",
           worst_g, worst_h, worst_step, tg_tape_size(p.tp));
    ok = ok && it < 16 && gnorm[it] < 1e-12 && quadratic && worst_g < 1e-13 && worst_h < 1e-12 &&
         worst_step < 1e-12 && tg_tape_size(p.tp) == nodes;
    tg_tape_free(p.tp);
    tg_tensor_free(p.x), tg_tensor_free(p.y), tg_tensor_free(p.w), tg_tensor_free(p.v);
    puts(ok ? "converged" : "FAILED");
    return ok ? 0 : 1;
}
