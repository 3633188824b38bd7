/* The op list of oplist.h as a table: one recording function per row. */
#include "oplist.h"

#include <stdio.h>
#include <string.h>

#define TU_RECORD_FN(id, name, values, shapes, ...)                            \
    static tg_tensor *record_##id(tg_tape *tp, tg_tensor *const *in)           \
    {                                                                          \
        return __VA_ARGS__;                                                    \
    }
TU_OPLIST(TU_RECORD_FN)

#define TU_ROW(id, name, values, shapes, ...) {#id, name, values, shapes, record_##id},
const tu_op tu_ops[] = {TU_OPLIST(TU_ROW)};
const int tu_n_ops = (int)(sizeof tu_ops / sizeof *tu_ops);

bool tu_op_shape_list(const tu_op *op, int s, char *buf, size_t size)
{
    const char *p = op->shapes;
    for (;;) {
        p += strspn(p, " ");
        if (!*p) return false;
        size_t n = strcspn(p, " ");
        if (s-- == 0) {
            snprintf(buf, size, "%.*s", (int)n, p);
            return true;
        }
        p += n;
    }
}

int tu_op_arity(const tu_op *op)
{
    char buf[256];
    if (!tu_op_shape_list(op, 0, buf, sizeof buf)) return 0;
    int n = 1;
    for (const char *c = buf; *c; c++) n += *c == ';';
    return n;
}

tg_rng *tu_rng(void)
{
    static tg_rng r;
    tg_rng_seed(&r, 20240611);
    return &r;
}

/* ====== reseed: y = x, and tu_rng() at every forward;  dx += dG ====== */

static tg_status reseed_forward(tg_tensor *out, tg_tensor *const *in, int n_in, void *ctx)
{
    (void)n_in, (void)ctx;
    tu_rng();
    memcpy(tg_tensor_data(out), tg_tensor_cdata(in[0]),
           (size_t)tg_tensor_numel(out) * (tg_tensor_dtype(out) == TG_F32 ? 4 : 8));
    return TG_OK;
}

static tg_status reseed_vjp(const tg_tensor *gout, const tg_tensor *out, tg_tensor *const *in,
                            tg_tensor **gin, int n_in, void *ctx)
{
    (void)out, (void)in, (void)n_in, (void)ctx;
    if (!gin[0]) return TG_OK;
    const void *g = tg_tensor_cdata(gout);
    void *dx = tg_tensor_data(gin[0]);
    for (int64_t k = 0; k < tg_tensor_numel(gout); k++) /* dx += dG */
        if (tg_tensor_dtype(gout) == TG_F32)
            ((float *)dx)[k] += ((const float *)g)[k];
        else
            ((double *)dx)[k] += ((const double *)g)[k];
    return TG_OK;
}

static tg_status reseed_vjp_graph(tg_tape *tp, tg_tensor *dy, tg_tensor *out,
                                  tg_tensor *const *in, const bool *need, tg_tensor **gin,
                                  int n_in, void *ctx)
{
    (void)out, (void)in, (void)need, (void)n_in, (void)ctx;
    gin[0] = dy; /* dx = dG */
    return tg_tape_status(tp);
}

static const tg_op_def reseed_def = {.name = "reseed", .forward = reseed_forward,
                                     .vjp = reseed_vjp, .vjp_graph = reseed_vjp_graph,
                                     .rules = (const char *const[]){"{dy}", NULL}};

tg_tensor *tu_reseed(tg_tape *tp, tg_tensor *x)
{
    return tg_custom(tp, &reseed_def, &x, 1, tg_tensor_rank(x), tg_tensor_shape(x), NULL);
}
