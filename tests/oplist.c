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
