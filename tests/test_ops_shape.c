/*
 * Shape and indexing ops (src/ops/shape.c), what the op list's generic
 * checks (tests/oplist.h: gradchecks in F64 on 1-sized and 0-sized dims,
 * negative axes, broadcasting and repeated indices, and replay) leave out:
 * values and gradients against PyTorch (tools/shape_torch_ref.py made the
 * table), Python's slice rules, F32 sums kept in double, replay on new
 * indices, a bad index at recording and at replay, the explain rules, the
 * recorded VJPs of tg_grad with create_graph (exact to fourth order, replayed
 * as a Hessian-vector product), and every error with its status and message.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ====== One row describes an op call; one function records it ====== */

enum kind {
    K_RESHAPE,
    K_PERMUTE,
    K_SLICE,
    K_CONCAT,
    K_STACK,
    K_EXPAND,
    K_PAD,
    K_INDEX_SELECT,
    K_EMBEDDING,
    K_WHERE,     /* cond = relu(input 0), so about half of it is 0; a = input 1, b = input 2 */
    K_WHERE_I64, /* cond = the row's I64 idx; a = input 0, b = input 1 */
};

typedef struct shape_row {
    const char *name;
    enum kind kind;
    int axis;
    int rank;        /* reshape, expand: the target's rank; permute: the perm's length */
    int64_t dims[4]; /* reshape, expand: the target; permute: the perm */
    int64_t start, stop, step;
    int64_t before[4], after[4];
    double value;
    int n;                 /* concat, stack: the inputs */
    const char *shapes;    /* the float inputs' shapes, "a;b;..." ("" is rank 0) */
    const char *idx_shape; /* the I64 input of index_select, embedding and where_i64 */
    int64_t idx[8];
} shape_row;

/* The row's I64 input, made by the test before it records the row. */
static tg_tensor *cur_idx;

static tg_tensor *make_idx(const shape_row *r)
{
    int64_t shape[TG_MAX_RANK];
    int rank = tu_parse_shape(r->idx_shape, shape);
    ck_assert_int_ge(rank, 0);
    tg_tensor *t = tg_tensor_from(TG_I64, rank, shape, r->idx);
    ck_assert_ptr_nonnull(t);
    return t;
}

static tg_tensor *run_row(tg_tape *tp, tg_tensor *const *in, const void *row)
{
    const shape_row *r = row;
    int perm[4];
    for (int i = 0; i < 4; i++)
        perm[i] = (int)r->dims[i];
    switch (r->kind) {
    case K_RESHAPE:
        return tg_reshape(tp, in[0], r->rank, r->dims);
    case K_PERMUTE:
        return tg_permute(tp, in[0], perm);
    case K_SLICE:
        return tg_slice(tp, in[0], r->axis, r->start, r->stop, r->step);
    case K_CONCAT:
        return tg_concat(tp, in, r->n, r->axis);
    case K_STACK:
        return tg_stack(tp, in, r->n, r->axis);
    case K_EXPAND:
        return tg_expand(tp, in[0], r->rank, r->dims);
    case K_PAD:
        return tg_pad(tp, in[0], r->before, r->after, r->value);
    case K_INDEX_SELECT:
        return tg_index_select(tp, in[0], r->axis, cur_idx);
    case K_EMBEDDING:
        return tg_embedding(tp, in[0], cur_idx);
    case K_WHERE:
        return tg_where(tp, tg_relu(tp, in[0]), in[1], in[2]);
    case K_WHERE_I64:
        return tg_where(tp, cur_idx, in[0], in[1]);
    }
    return NULL;
}

static bool has_idx(const shape_row *r)
{
    return r->kind == K_INDEX_SELECT || r->kind == K_EMBEDDING || r->kind == K_WHERE_I64;
}

/* ====== Values and gradients against PyTorch ======
 * Float input i holds x[k] = cos(1.3 k + 2.1 i + 0.4) and the seed is
 * dG[k] = sin(0.9 k + 0.2); the table is the output of
 * tools/shape_torch_ref.py (torch 1.13, float64). */

typedef struct ref_case {
    shape_row row;
    const char *out;
    const double *y;
    const double *g[4]; /* the gradient of each float input */
} ref_case;

#define REF(...) (const double[]) __VA_ARGS__
static const ref_case ref_cases[] = {
    {{"reshape 2x3x4 -> 4x-1", K_RESHAPE, .rank = 2, .dims = {4, -1}, .shapes = "2x3x4"},
     "4x6",
     REF({0.9210609940028851,  -0.12884449429552486, -0.9899924966004454,  -0.4007991720799746,
          0.7755658785102502,  0.8157251001253568,   -0.33915486098383624, -0.9971721561963784,
          -0.1943299064553348, 0.8932061115093233,   0.6721930835534681,   -0.5335843865891192,
          -0.9576594803233847, 0.021238808173646012, 0.969022192939049,    0.4971857948712053,
          -0.7030289574653861, -0.8733046400935156,  0.2358130209505226,   0.9994640538508953,
          0.2988979063644716,  -0.8395543741892202,  -0.7480575296890003,  0.43934534831800104}),
     {REF({0.19866933079506122, 0.8912073600614354,  0.9092974268256817,  0.23924932921398198,
           -0.6118578909427193, -0.9999232575641008, -0.6312666378723208, 0.21511998808781552,
           0.8987080958116269,  0.9021718337562941,  0.22288991410024764, -0.6250706488928821,
           -0.9999902065507035, -0.6181371122370333, 0.23150982510153723, 0.9059547423084618,
           0.8947911721405042,  0.2064674819377966,  -0.6381066823479474, -0.9997744310730111,
           -0.6048328224062841, 0.24783420798295983, 0.9129452507276277,  0.8871575286923511})}},
    {{"reshape 6 -> 1x-1x1", K_RESHAPE, .rank = 3, .dims = {1, -1, 1}, .shapes = "6"},
     "1x6x1",
     REF({0.9210609940028851, -0.12884449429552486, -0.9899924966004454, -0.4007991720799746,
          0.7755658785102502, 0.8157251001253568}),
     {REF({0.19866933079506122, 0.8912073600614354, 0.9092974268256817, 0.23924932921398198,
           -0.6118578909427193, -0.9999232575641008})}},
    {{"permute 2x3x4 (2,0,1)", K_PERMUTE, .rank = 3, .dims = {2, 0, 1}, .shapes = "2x3x4"},
     "4x2x3",
     REF({0.9210609940028851,  0.7755658785102502,   -0.1943299064553348,  -0.9576594803233847,
          -0.7030289574653861, 0.2988979063644716,   -0.12884449429552486, 0.8157251001253568,
          0.8932061115093233,  0.021238808173646012, -0.8733046400935156,  -0.8395543741892202,
          -0.9899924966004454, -0.33915486098383624, 0.6721930835534681,   0.969022192939049,
          0.2358130209505226,  -0.7480575296890003,  -0.4007991720799746,  -0.9971721561963784,
          -0.5335843865891192, 0.4971857948712053,   0.9994640538508953,   0.43934534831800104}),
     {REF({0.19866933079506122, -0.6312666378723208, -0.9999902065507035, -0.6381066823479474,
           0.8912073600614354,  0.21511998808781552, -0.6181371122370333, -0.9997744310730111,
           0.9092974268256817,  0.8987080958116269,  0.23150982510153723, -0.6048328224062841,
           0.23924932921398198, 0.9021718337562941,  0.9059547423084618,  0.24783420798295983,
           -0.6118578909427193, 0.22288991410024764, 0.8947911721405042,  0.9129452507276277,
           -0.9999232575641008, -0.6250706488928821, 0.2064674819377966,  0.8871575286923511})}},
    {{"permute 2x1x3x2 (-1,-3,-4,-2)", K_PERMUTE, .rank = 4, .dims = {-1, -3, -4, -2},
      .shapes = "2x1x3x2"},
     "2x1x2x3",
     REF({0.9210609940028851, -0.9899924966004454, 0.7755658785102502, -0.33915486098383624,
          -0.1943299064553348, 0.6721930835534681, -0.12884449429552486, -0.4007991720799746,
          0.8157251001253568, -0.9971721561963784, 0.8932061115093233, -0.5335843865891192}),
     {REF({0.19866933079506122, -0.6312666378723208, 0.8912073600614354, 0.21511998808781552,
           0.9092974268256817, 0.8987080958116269, 0.23924932921398198, 0.9021718337562941,
           -0.6118578909427193, 0.22288991410024764, -0.9999232575641008, -0.6250706488928821})}},
    {{"slice 5x4 axis 0 [-4:100:2]", K_SLICE, .axis = 0, .start = -4, .stop = 100, .step = 2,
      .shapes = "5x4"},
     "2x4",
     REF({0.7755658785102502, 0.8157251001253568, -0.33915486098383624, -0.9971721561963784,
          -0.9576594803233847, 0.021238808173646012, 0.969022192939049, 0.4971857948712053}),
     {REF({0.0,
           0.0,
           0.0,
           0.0,
           0.19866933079506122,
           0.8912073600614354,
           0.9092974268256817,
           0.23924932921398198,
           0.0,
           0.0,
           0.0,
           0.0,
           -0.6118578909427193,
           -0.9999232575641008,
           -0.6312666378723208,
           0.21511998808781552,
           0.0,
           0.0,
           0.0,
           0.0})}},
    {{"slice 5x4 axis -1 [1:-1]", K_SLICE, .axis = -1, .start = 1, .stop = -1, .step = 1,
      .shapes = "5x4"},
     "5x2",
     REF({-0.12884449429552486, -0.9899924966004454, 0.8157251001253568, -0.33915486098383624,
          0.8932061115093233, 0.6721930835534681, 0.021238808173646012, 0.969022192939049,
          -0.8733046400935156, 0.2358130209505226}),
     {REF({0.0, 0.19866933079506122, 0.8912073600614354,  0.0,
           0.0, 0.9092974268256817,  0.23924932921398198, 0.0,
           0.0, -0.6118578909427193, -0.9999232575641008, 0.0,
           0.0, -0.6312666378723208, 0.21511998808781552, 0.0,
           0.0, 0.8987080958116269,  0.9021718337562941,  0.0})}},
    {{"slice 2x7x2 axis 1 [-100:6:3]", K_SLICE, .axis = 1, .start = -100, .stop = 6, .step = 3,
      .shapes = "2x7x2"},
     "2x2x2",
     REF({0.9210609940028851, -0.12884449429552486, -0.33915486098383624, -0.9971721561963784,
          0.969022192939049, 0.4971857948712053, 0.2988979063644716, -0.8395543741892202}),
     {REF({0.19866933079506122,
           0.8912073600614354,
           0.0,
           0.0,
           0.0,
           0.0,
           0.9092974268256817,
           0.23924932921398198,
           0.0,
           0.0,
           0.0,
           0.0,
           0.0,
           0.0,
           -0.6118578909427193,
           -0.9999232575641008,
           0.0,
           0.0,
           0.0,
           0.0,
           -0.6312666378723208,
           0.21511998808781552,
           0.0,
           0.0,
           0.0,
           0.0,
           0.0,
           0.0})}},
    {{"concat 2x3, 2x1, 2x2 axis 1", K_CONCAT, .axis = 1, .n = 3, .shapes = "2x3;2x1;2x2"},
     "2x6",
     REF({0.9210609940028851, -0.12884449429552486, -0.9899924966004454, -0.8011436155469337,
          -0.11215252693505398, 0.9274784307440359, -0.4007991720799746, 0.7755658785102502,
          0.8157251001253568, -0.7909677119144165, 0.6083513145322538, -0.6020119026848251}),
     {REF({0.19866933079506122, 0.8912073600614354, 0.9092974268256817, -0.6312666378723208,
           0.21511998808781552, 0.8987080958116269}),
      REF({0.23924932921398198, 0.9021718337562941}),
      REF({-0.6118578909427193, -0.9999232575641008, 0.22288991410024764, -0.6250706488928821})}},
    {{"concat 1x3, 2x3 axis -2", K_CONCAT, .axis = -2, .n = 2, .shapes = "1x3;2x3"},
     "3x3",
     REF({0.9210609940028851, -0.12884449429552486, -0.9899924966004454, -0.8011436155469337,
          -0.7909677119144165, 0.37797774271298107, 0.9931849187581926, 0.15337386203786346,
          -0.9111302618846769}),
     {REF({0.19866933079506122, 0.8912073600614354, 0.9092974268256817}),
      REF({0.23924932921398198, -0.6118578909427193, -0.9999232575641008, -0.6312666378723208,
           0.21511998808781552, 0.8987080958116269})}},
    {{"stack 2x3, 2x3 axis 0", K_STACK, .axis = 0, .n = 2, .shapes = "2x3;2x3"},
     "2x2x3",
     REF({0.9210609940028851, -0.12884449429552486, -0.9899924966004454, -0.4007991720799746,
          0.7755658785102502, 0.8157251001253568, -0.8011436155469337, -0.7909677119144165,
          0.37797774271298107, 0.9931849187581926, 0.15337386203786346, -0.9111302618846769}),
     {REF({0.19866933079506122, 0.8912073600614354, 0.9092974268256817, 0.23924932921398198,
           -0.6118578909427193, -0.9999232575641008}),
      REF({-0.6312666378723208, 0.21511998808781552, 0.8987080958116269, 0.9021718337562941,
           0.22288991410024764, -0.6250706488928821})}},
    {{"stack 3 x 2x2 axis -1", K_STACK, .axis = -1, .n = 3, .shapes = "2x2;2x2;2x2"},
     "2x2x3",
     REF({0.9210609940028851, -0.8011436155469337, -0.11215252693505398, -0.12884449429552486,
          -0.7909677119144165, 0.9274784307440359, -0.9899924966004454, 0.37797774271298107,
          0.6083513145322538, -0.4007991720799746, 0.9931849187581926, -0.6020119026848251}),
     {REF({0.19866933079506122, 0.23924932921398198, -0.6312666378723208, 0.9021718337562941}),
      REF({0.8912073600614354, -0.6118578909427193, 0.21511998808781552, 0.22288991410024764}),
      REF({0.9092974268256817, -0.9999232575641008, 0.8987080958116269, -0.6250706488928821})}},
    {{"expand 3x1 -> 2x3x4", K_EXPAND, .rank = 3, .dims = {2, 3, 4}, .shapes = "3x1"},
     "2x3x4",
     REF({0.9210609940028851,   0.9210609940028851,   0.9210609940028851,   0.9210609940028851,
          -0.12884449429552486, -0.12884449429552486, -0.12884449429552486, -0.12884449429552486,
          -0.9899924966004454,  -0.9899924966004454,  -0.9899924966004454,  -0.9899924966004454,
          0.9210609940028851,   0.9210609940028851,   0.9210609940028851,   0.9210609940028851,
          -0.12884449429552486, -0.12884449429552486, -0.12884449429552486, -0.12884449429552486,
          -0.9899924966004454,  -0.9899924966004454,  -0.9899924966004454,  -0.9899924966004454}),
     {REF({1.757760695518423, -2.564550257633983, 2.841803359771941})}},
    {{"expand 1x4 -> 3x-1", K_EXPAND, .rank = 2, .dims = {3, -1}, .shapes = "1x4"},
     "3x4",
     REF({0.9210609940028851, -0.12884449429552486, -0.9899924966004454, -0.4007991720799746,
          0.9210609940028851, -0.12884449429552486, -0.9899924966004454, -0.4007991720799746,
          0.9210609940028851, -0.12884449429552486, -0.9899924966004454, -0.4007991720799746}),
     {REF({0.4855195356639689, 0.7934559362536286, 0.5009207030536085, -0.17070133159108458})}},
    {{"pad 2x3 (1,0) (0,2) -1.5", K_PAD, .before = {1, 0}, .after = {0, 2}, .value = -1.5,
      .shapes = "2x3"},
     "3x5",
     REF({-1.5, -1.5, -1.5, -1.5, -1.5, 0.9210609940028851, -0.12884449429552486,
          -0.9899924966004454, -1.5, -1.5, -0.4007991720799746, 0.7755658785102502,
          0.8157251001253568, -1.5, -1.5}),
     {REF({-0.9999232575641008, -0.6312666378723208, 0.21511998808781552, 0.22288991410024764,
           -0.6250706488928821, -0.9999902065507035})}},
    {{"index_select 3x4 axis 0 [2,0,2,-1]", K_INDEX_SELECT, .axis = 0, .shapes = "3x4",
      .idx_shape = "4", .idx = {2, 0, 2, -1}},
     "4x4",
     REF({-0.1943299064553348, 0.8932061115093233, 0.6721930835534681, -0.5335843865891192,
          0.9210609940028851, -0.12884449429552486, -0.9899924966004454, -0.4007991720799746,
          -0.1943299064553348, 0.8932061115093233, 0.6721930835534681, -0.5335843865891192,
          -0.1943299064553348, 0.8932061115093233, 0.6721930835534681, -0.5335843865891192}),
     {REF({-0.6118578909427193, -0.9999232575641008, -0.6312666378723208, 0.21511998808781552, 0.0,
           0.0, 0.0, 0.0, 0.09738722005598455, 1.1752420815806963, 1.3636971660274666,
           0.5201334226295617})}},
    {{"index_select 2x4x3 axis -2 [3,3,1]", K_INDEX_SELECT, .axis = -2, .shapes = "2x4x3",
      .idx_shape = "3", .idx = {3, 3, 1}},
     "2x3x3",
     REF({0.8932061115093233, 0.6721930835534681, -0.5335843865891192, 0.8932061115093233,
          0.6721930835534681, -0.5335843865891192, -0.4007991720799746, 0.7755658785102502,
          0.8157251001253568, -0.8395543741892202, -0.7480575296890003, 0.43934534831800104,
          -0.8395543741892202, -0.7480575296890003, 0.43934534831800104, 0.4971857948712053,
          -0.7030289574653861, -0.8733046400935156}),
     {REF({0.0, 0.0, 0.0, -0.6312666378723208,  0.21511998808781552,  0.8987080958116269,
           0.0, 0.0, 0.0, 0.4379186600090432,   0.27934946911871616,  -0.09062583073841912,
           0.0, 0.0, 0.0, 0.9059547423084618,   0.8947911721405042,   0.2064674819377966,
           0.0, 0.0, 0.0, -0.09781837279440941, -0.39524719813678566, -0.3935608237913449})}},
    {{"embedding 5x3 [[1,4],[1,-5]]", K_EMBEDDING, .shapes = "5x3", .idx_shape = "2x2",
      .idx = {1, 4, 1, -5}},
     "2x2x3",
     REF({-0.4007991720799746, 0.7755658785102502, 0.8157251001253568, -0.9576594803233847,
          0.021238808173646012, 0.969022192939049, -0.4007991720799746, 0.7755658785102502,
          0.8157251001253568, 0.9210609940028851, -0.12884449429552486, -0.9899924966004454}),
     {REF({0.9021718337562941, 0.22288991410024764, -0.6250706488928821, -0.43259730707725963,
           1.106327348149251, 1.8080055226373086, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.23924932921398198,
           -0.6118578909427193, -0.9999232575641008})}},
    {{"embedding 5x3 scalar 3", K_EMBEDDING, .shapes = "5x3", .idx_shape = "", .idx = {3}},
     "3",
     REF({0.8932061115093233, 0.6721930835534681, -0.5335843865891192}),
     {REF({0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.19866933079506122, 0.8912073600614354,
           0.9092974268256817, 0.0, 0.0, 0.0})}},
    {{"where relu(3x1) 1x4 3x4", K_WHERE, .shapes = "3x1;1x4;3x4"},
     "3x4",
     REF({-0.8011436155469337, -0.7909677119144165, 0.37797774271298107, 0.9931849187581926,
          -0.9304262721047533, 0.10423602686569687, 0.9861923022788637, 0.42337454445066386,
          -0.7596879128588224, -0.8298057980706491, 0.31574375491923995, 0.9987279672435017}),
     {REF({0.0, 0.0, 0.0}),
      REF({0.19866933079506122, 0.8912073600614354, 0.9092974268256817, 0.23924932921398198}),
      REF({0.0, 0.0, 0.0, 0.0, -0.6118578909427193, -0.9999232575641008, -0.6312666378723208,
           0.21511998808781552, 0.8987080958116269, 0.9021718337562941, 0.22288991410024764,
           -0.6250706488928821})}},
    {{"where i64 2x1x3 4x1 scalar", K_WHERE_I64, .shapes = "4x1;", .idx_shape = "2x1x3",
      .idx = {0, 5, -1, 0, 0, 2}},
     "2x4x3",
     REF({-0.8011436155469337,  0.9210609940028851,   0.9210609940028851,  -0.8011436155469337,
          -0.12884449429552486, -0.12884449429552486, -0.8011436155469337, -0.9899924966004454,
          -0.9899924966004454,  -0.8011436155469337,  -0.4007991720799746, -0.4007991720799746,
          -0.8011436155469337,  -0.8011436155469337,  0.9210609940028851,  -0.8011436155469337,
          -0.8011436155469337,  -0.12884449429552486, -0.8011436155469337, -0.8011436155469337,
          -0.9899924966004454,  -0.8011436155469337,  -0.8011436155469337, -0.4007991720799746}),
     {REF({2.032014611988654, -1.4053136665690236, 0.5089952614931582, 0.4849767938997166}),
      REF({0.4143407968438748})}},
};
#define N_REF (int)(sizeof ref_cases / sizeof *ref_cases)

/* The float inputs of 'shapes' ("a;b", "" is rank 0) filled as the torch script fills them. */
static int ref_inputs(tg_dtype dt, const char *shapes, tg_tensor **in)
{
    char buf[64];
    int n = 0;
    snprintf(buf, sizeof buf, "%s", shapes);
    for (char *tok = buf, *next; tok; tok = next, n++) {
        if ((next = strchr(tok, ';'))) *next++ = '\0';
        in[n] = tu_random(dt, tok, 0, 1, 1);
        ck_assert_ptr_nonnull(in[n]);
        for (int64_t k = 0; k < tg_tensor_numel(in[n]); k++)
            tu_put(in[n], k, cos(1.3 * (double)k + 2.1 * n + 0.4));
        tg_tensor_set_requires_grad(in[n], true);
    }
    return n;
}

/* Every ref case in F64 (to 1e-15 relative) and F32 (to float rounding). */
START_TEST(matches_torch)
{
    const ref_case *c = &ref_cases[_i / 2];
    tg_dtype dt = tu_loop_dtype(_i % 2);
    double tol = dt == TG_F64 ? 1e-15 : 1e-6;
    tg_tensor *in[4] = {NULL};
    int n = ref_inputs(dt, c->row.shapes, in);
    if (has_idx(&c->row)) cur_idx = make_idx(&c->row);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = run_row(tp, in, &c->row);
    ck_assert_msg(y != NULL, "%s: %s", c->row.name, tg_tape_error(tp));
    tg_tensor *want = tu_lit(dt, c->out, c->y), *seed = tu_lit(dt, c->out, c->y);
    for (int64_t k = 0; k < tg_tensor_numel(seed); k++)
        tu_put(seed, k, sin(0.9 * (double)k + 0.2));
    int64_t bad;
    ck_assert_int_eq(tg_tensor_rank(y), tg_tensor_rank(want));
    for (int d = 0; d < tg_tensor_rank(y); d++)
        ck_assert_int_eq(tg_tensor_shape(y)[d], tg_tensor_shape(want)[d]);
    ck_assert_msg(tu_close(y, want, tol, &bad), "%s %s: y[%lld] = %.17g, torch %.17g", c->row.name,
                  tu_dtype_name(dt), (long long)bad, tu_at(y, bad), c->y[bad]);
    ck_assert_int_eq(tg_backward_seed(tp, y, seed), TG_OK);
    for (int i = 0; i < n; i++) {
        tg_tensor *g = tg_tensor_grad(in[i]);
        ck_assert_ptr_nonnull(g);
        for (int64_t k = 0; k < tg_tensor_numel(g); k++)
            ck_assert_msg(fabs(tu_at(g, k) - c->g[i][k]) <= tol * fmax(1, fabs(c->g[i][k])),
                          "%s %s: d input %d [%lld] = %.17g, torch %.17g", c->row.name,
                          tu_dtype_name(dt), i, (long long)k, tu_at(g, k), c->g[i][k]);
    }
    tg_tape_free(tp);
    tg_tensor_free(want);
    tg_tensor_free(seed);
    for (int i = 0; i < n; i++)
        tg_tensor_free(in[i]);
    tg_tensor_free(cur_idx);
    cur_idx = NULL;
}
END_TEST

/* ====== Exact values where no rounding happens ====== */

START_TEST(slices_follow_python)
{
    /* x = 0..9; each slice as Python's list(range(10))[start:stop:step] gives it. */
    static const struct {
        int64_t start, stop, step;
        const char *out;
        double want[10];
    } c[] = {
        {0, 10, 1, "10", {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}},
        {-3, 100, 1, "3", {7, 8, 9}},
        {-100, 3, 2, "2", {0, 2}},
        {8, 2, 1, "0", {0}},
        {10, 20, 1, "0", {0}},
        {-1, -1, 1, "0", {0}},
        {1, -1, 3, "3", {1, 4, 7}},
        {INT64_MIN, INT64_MAX, INT64_MAX, "1", {0}},
        {INT64_MAX, INT64_MIN, 1, "0", {0}},
        {9, 10, 5, "1", {9}},
    };
    double v[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    tg_dtype dt = tu_loop_dtype(_i);
    tg_tensor *x = tu_lit(dt, "10", v);
    tg_tape *tp = tg_tape_new();
    for (size_t k = 0; k < sizeof c / sizeof *c; k++) {
        char what[96];
        snprintf(what, sizeof what, "x[%lld:%lld:%lld]", (long long)c[k].start,
                 (long long)c[k].stop, (long long)c[k].step);
        tu_expect_exact(tg_slice(tp, x, 0, c[k].start, c[k].stop, c[k].step), c[k].out, c[k].want,
                        what);
    }
    tg_tape_free(tp);
    tg_tensor_free(x);
}
END_TEST

START_TEST(reshape_infers_and_keeps_order)
{
    double v[6] = {1, 2, 3, 4, 5, 6};
    tg_dtype dt = tu_loop_dtype(_i);
    tg_tensor *x = tu_lit(dt, "2x3", v), *e = tu_lit(dt, "0x4", v);
    tg_tape *tp = tg_tape_new();
    tu_expect_exact(tg_reshape(tp, x, 3, (int64_t[]){3, -1, 1}), "3x2x1", v, "reshape 3x-1x1");
    tu_expect_exact(tg_reshape(tp, x, 1, (int64_t[]){-1}), "6", v, "flatten");
    tu_expect_exact(tg_reshape(tp, e, 3, (int64_t[]){2, -1, 2}), "2x0x2", v, "reshape of empty");
    tu_expect_exact(tg_reshape(tp, e, 2, (int64_t[]){0, 7}), "0x7", v, "empty to empty");
    tu_expect_exact(tg_permute(tp, x, (int[]){1, 0}), "3x2", (double[]){1, 4, 2, 5, 3, 6},
                    "permute as transpose");
    tu_expect_exact(tg_pad(tp, x, (int64_t[]){0, 1}, (int64_t[]){1, 0}, 9), "3x4",
                    (double[]){9, 1, 2, 3, 9, 4, 5, 6, 9, 9, 9, 9}, "pad");
    tu_expect_exact(tg_pad(tp, e, (int64_t[]){1, 0}, (int64_t[]){0, 1}, -2), "1x5",
                    (double[]){-2, -2, -2, -2, -2}, "pad of empty");
    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_tensor_free(e);
}
END_TEST

/* 1e8 + 1 == 1e8 in float: summed in float, the sixteen ones would vanish. */
static const double big_ones[18] = {1e8, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, -1e8};

START_TEST(f32_gradient_sums_in_double)
{
    tg_tensor *one = tu_lit(TG_F32, "1", (double[]){0.5}),
              *row = tu_lit(TG_F32, "1x1", (double[]){2});
    tg_tensor *seed = tu_lit(TG_F32, "18", big_ones),
              *idx = tg_tensor_new(TG_I64, 1, (int64_t[]){18});
    tg_tensor *s2 = tu_lit(TG_F32, "18x1", big_ones);
    tg_tensor *cond = tu_lit(TG_F32, "18", big_ones), *b = tu_lit(TG_F32, "18", big_ones);
    ck_assert_ptr_nonnull(idx);
    tg_tensor_set_requires_grad(one, true);
    tg_tensor_set_requires_grad(row, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = tg_expand(tp, one, 1, (int64_t[]){18});
    ck_assert_int_eq(tg_backward_seed(tp, y, seed), TG_OK);
    tu_expect_exact(tg_tensor_grad(one), "1", (double[]){16}, "expand's sum");
    tg_tensor_zero_grad(one);
    y = tg_index_select(tp, row, 0, idx); /* idx is 18 zeros: one row picked 18 times */
    ck_assert_int_eq(tg_backward_seed(tp, y, s2), TG_OK);
    tu_expect_exact(tg_tensor_grad(row), "1x1", (double[]){16}, "index_select's sum");
    ck_assert_int_eq(tg_backward_seed(tp, y, s2), TG_OK); /* the buffer was left clean */
    tu_expect_exact(tg_tensor_grad(row), "1x1", (double[]){32}, "index_select's second sum");
    tg_tensor_zero_grad(row);
    tg_tensor *idx36 = tg_tensor_new(TG_I64, 2, (int64_t[]){3, 6});
    y = tg_embedding(tp, row, idx36);
    tg_tensor *s3 = tu_lit(TG_F32, "3x6x1", big_ones);
    ck_assert_int_eq(tg_backward_seed(tp, y, s3), TG_OK);
    tu_expect_exact(tg_tensor_grad(row), "1x1", (double[]){16}, "embedding's sum");
    y = tg_where(tp, cond, one, b); /* cond is never 0: every element picks the scalar a */
    tg_tensor_zero_grad(one);
    ck_assert_int_eq(tg_backward_seed(tp, y, seed), TG_OK);
    tu_expect_exact(tg_tensor_grad(one), "1", (double[]){16}, "where's sum");
    tg_tape_free(tp);
    tg_tensor *all[] = {one, row, seed, idx, s2, cond, b, idx36, s3};
    for (size_t k = 0; k < sizeof all / sizeof *all; k++)
        tg_tensor_free(all[k]);
}
END_TEST

/* ====== Replay: new data and new indices give what a fresh recording gives ====== */

static tg_tensor *chain(tg_tape *tp, tg_tensor *x, tg_tensor *idx, tg_tensor *rows, tg_tensor *cond)
{
    tg_tensor *p = tg_permute(tp, x, (int[]){1, 0}); /* [4x3] */
    tg_tensor *s = tg_slice(tp, p, 0, -3, 4, 2);     /* [2x3] */
    tg_tensor *e =
        tg_expand(tp, tg_reshape(tp, s, 3, (int64_t[]){2, 1, 3}), 3, (int64_t[]){2, 2, 3});
    tg_tensor *st = tg_stack(tp, (tg_tensor *[]){s, s}, 2, 1);                         /* [2x2x3] */
    tg_tensor *cat = tg_concat(tp, (tg_tensor *[]){e, st}, 2, -1);                     /* [2x2x6] */
    tg_tensor *pd = tg_pad(tp, cat, (int64_t[]){0, 1, 1}, (int64_t[]){1, 0, 0}, 0.25); /* [3x3x7] */
    tg_tensor *is = tg_index_select(tp, pd, 2, idx);                                   /* [3x3x3] */
    tg_tensor *em = tg_embedding(tp, x, rows);                                         /* [2x4] */
    tg_tensor *w = tg_where(tp, cond, is, tg_scale(tp, is, -2));
    return tg_add(tp, tg_sum(tp, tg_square(tp, w)), tg_sum(tp, tg_square(tp, em)));
}

START_TEST(replay_matches_fresh_recording)
{
    tg_dtype dt = tu_loop_dtype(_i);
    tg_tensor *x = tu_random(dt, "3x4", -2, 2, 41), *x2 = tu_random(dt, "3x4", -2, 2, 42);
    tg_tensor *idx = tg_tensor_from(TG_I64, 1, (int64_t[]){3}, (int64_t[]){0, 6, -2});
    tg_tensor *rows = tg_tensor_from(TG_I64, 1, (int64_t[]){2}, (int64_t[]){2, 2});
    tg_tensor *cond = tg_tensor_from(TG_I64, 3, (int64_t[]){3, 1, 1}, (int64_t[]){1, 0, 1});
    ck_assert(x && x2 && idx && rows && cond);
    tg_tensor_set_requires_grad(x, true);
    tg_tensor_set_requires_grad(x2, true);
    tg_tape *tp = tg_tape_new(), *fresh = tg_tape_new();
    tg_tensor *y = chain(tp, x, idx, rows, cond);
    ck_assert_msg(y != NULL, "%s", tg_tape_error(tp));
    /* New data, new indices (a repeat, a negative one), a new condition. */
    memcpy(tg_tensor_data(x), tg_tensor_data(x2), (size_t)12 * (dt == TG_F64 ? 8 : 4));
    memcpy(tg_tensor_data(idx), (int64_t[]){3, 3, -7}, 3 * sizeof(int64_t));
    memcpy(tg_tensor_data(rows), (int64_t[]){-1, 0}, 2 * sizeof(int64_t));
    memcpy(tg_tensor_data(cond), (int64_t[]){0, 7, 0}, 3 * sizeof(int64_t));
    ck_assert_int_eq(tg_tape_replay(tp), TG_OK);
    ck_assert_int_eq(tg_backward(tp, y), TG_OK);
    tg_tensor *want = chain(fresh, x2, idx, rows, cond);
    ck_assert_ptr_nonnull(want);
    ck_assert_int_eq(tg_backward(fresh, want), TG_OK);
    ck_assert_msg(tg_tensor_item(y) == tg_tensor_item(want), "replay %.17g, fresh %.17g",
                  tg_tensor_item(y), tg_tensor_item(want));
    tg_tensor *g = tg_tensor_grad(x), *gw = tg_tensor_grad(x2);
    for (int64_t k = 0; k < 12; k++)
        ck_assert_msg(tu_at(g, k) == tu_at(gw, k), "dx[%lld]: replay %.17g, fresh %.17g",
                      (long long)k, tu_at(g, k), tu_at(gw, k));
    tg_tape_free(tp);
    tg_tape_free(fresh);
    tg_tensor *all[] = {x, x2, idx, rows, cond};
    for (size_t k = 0; k < sizeof all / sizeof *all; k++)
        tg_tensor_free(all[k]);
}
END_TEST

/* An index written out of range after recording fails the replay, naming
 * the op, the node, the position and the value; the tape stays failed. */
START_TEST(bad_index_at_replay)
{
    tg_tensor *x = tu_lit(TG_F64, "3x2", (double[]){1, 2, 3, 4, 5, 6});
    tg_tensor *idx = tg_tensor_from(TG_I64, 1, (int64_t[]){3}, (int64_t[]){0, 1, 2});
    tg_tensor *ids = tg_tensor_from(TG_I64, 2, (int64_t[]){2, 2}, (int64_t[]){0, 1, 2, -3});
    ck_assert(x && idx && ids);
    static const struct {
        int which; /* 0: idx of index_select, 1: ids of embedding */
        int64_t pos, value;
        const char *msg;
    } c[] = {
        {0, 1, 3,
         "index_select: index 3 at position 1 of idx [3] is out of range [-3, 3) for axis 1 of x "
         "[2x3] (replay of node 1)"},
        {0, 2, -4,
         "index_select: index -4 at position 2 of idx [3] is out of range [-3, 3) for axis 1 of x "
         "[2x3] (replay of node 1)"},
        {1, 3, INT64_MIN,
         "embedding: index -9223372036854775808 at position 3 of idx [2x2] is out of range [-3, 3) "
         "for the rows of table [3x2] (replay of node 2)"},
        {1, 0, 3,
         "embedding: index 3 at position 0 of idx [2x2] is out of range [-3, 3) for the rows of "
         "table [3x2] (replay of node 2)"},
    };
    for (size_t k = 0; k < sizeof c / sizeof *c; k++) {
        tg_tape *tp = tg_tape_new();
        tg_tensor *t = tg_permute(tp, x, (int[]){1, 0});
        ck_assert_ptr_nonnull(tg_index_select(tp, t, -1, idx));
        ck_assert_ptr_nonnull(tg_embedding(tp, x, ids));
        ck_assert_int_eq(tg_tape_replay(tp), TG_OK);
        int64_t *v = tg_tensor_data(c[k].which ? ids : idx), keep = v[c[k].pos];
        v[c[k].pos] = c[k].value;
        ck_assert_int_eq(tg_tape_replay(tp), TG_ERR_ARG);
        ck_assert_str_eq(tg_tape_error(tp), c[k].msg);
        v[c[k].pos] = keep; /* fixing the index does not heal the tape */
        ck_assert_int_eq(tg_tape_replay(tp), TG_ERR_ARG);
        ck_assert_str_eq(tg_tape_error(tp), c[k].msg);
        tg_tape_free(tp);
    }
    tg_tensor_free(x);
    tg_tensor_free(idx);
    tg_tensor_free(ids);
}
END_TEST

/* ====== Recorded VJPs (tg_grad with create_graph) ======
 * Every op here is linear, so each order of derivative is a linear map of
 * the previous seed with a closed form: with fixed W, q (the output's shape)
 * and r, p (the inputs'), and op_0 the op with pad's value 0 (its linear
 * part), the chain
 *     g   = d<W, op(x)>/dx         = the first-order VJP of seed W
 *     dW  = d<g, r>/dW             = op_0(r)
 *     dr  = d<dW, q>/dr            = the first-order VJP of seed q
 *     dq  = d<dr, p>/dq            = op_0(p)
 * records each line from the one above it (the op's vjp_graph, then its
 * transposed op's, then the op's again on the transposed op's output), and
 * each must equal its closed form exactly: only copies and the same sums
 * happen on both sides. */

/* A leaf shaped like t, filled with cos(0.37 k + phase). */
static tg_tensor *shaped_like(const tg_tensor *t, double phase, bool grad)
{
    tg_tensor *l = tg_tensor_new(tg_tensor_dtype(t), tg_tensor_rank(t), tg_tensor_shape(t));
    ck_assert_ptr_nonnull(l);
    for (int64_t k = 0; k < tg_tensor_numel(l); k++)
        tu_put(l, k, cos(0.37 * (double)k + phase));
    tg_tensor_set_requires_grad(l, grad);
    return l;
}

/* Σ_j <a_j, b_j>, recorded. */
static tg_tensor *inner(tg_tape *tp, tg_tensor *const *a, tg_tensor *const *b, int n)
{
    tg_tensor *s = NULL;
    for (int j = 0; j < n; j++) {
        tg_tensor *t = tg_sum(tp, tg_mul(tp, a[j], b[j]));
        s = s ? tg_add(tp, s, t) : t;
    }
    ck_assert_msg(s != NULL, "%s", tg_tape_error(tp));
    return s;
}

static void expect_equal(const tg_tensor *got, const tg_tensor *want, const char *what,
                         const shape_row *r, tg_dtype dt)
{
    ck_assert_msg(got && want, "%s %s: %s missing", r->name, tu_dtype_name(dt), what);
    ck_assert_int_eq(tg_tensor_rank(got), tg_tensor_rank(want));
    for (int d = 0; d < tg_tensor_rank(got); d++)
        ck_assert_int_eq(tg_tensor_shape(got)[d], tg_tensor_shape(want)[d]);
    for (int64_t k = 0; k < tg_tensor_numel(got); k++)
        ck_assert_msg(tu_at(got, k) == tu_at(want, k), "%s %s: %s[%lld] = %.17g, want %.17g",
                      r->name, tu_dtype_name(dt), what, (long long)k, tu_at(got, k),
                      tu_at(want, k));
}

START_TEST(recorded_vjps_to_fourth_order)
{
    const ref_case *c = &ref_cases[_i / 2];
    if (c->row.kind == K_WHERE || c->row.kind == K_WHERE_I64) return; /* tests/test_higher.c */
    tg_dtype dt = tu_loop_dtype(_i % 2);
    tg_tensor *in[4] = {NULL}, *r[4], *p[4], *g[4], *g1[4], *dr[4], *dr1[4], *dw, *dq;
    int n = ref_inputs(dt, c->row.shapes, in);
    if (has_idx(&c->row)) cur_idx = make_idx(&c->row);
    shape_row lin = c->row;
    lin.value = 0;
    tg_tape *tp = tg_tape_new();
    tg_tensor *y = run_row(tp, in, &c->row);
    ck_assert_msg(y != NULL, "%s: %s", c->row.name, tg_tape_error(tp));
    tg_tensor *w = shaped_like(y, 0.5, true), *q = shaped_like(y, 1.5, true);
    for (int j = 0; j < n; j++) {
        r[j] = shaped_like(in[j], 2.5 + j, true);
        p[j] = shaped_like(in[j], 3.5 + j, false);
    }
    ck_assert_int_eq(tg_grad(tp, y, w, in, n, g1, false), TG_OK);
    ck_assert_int_eq(tg_grad(tp, y, q, in, n, dr1, false), TG_OK);
    ck_assert_int_eq(tg_grad(tp, y, w, in, n, g, true), TG_OK);
    for (int j = 0; j < n; j++) {
        ck_assert(tg_tensor_requires_grad(g[j]));
        expect_equal(g[j], g1[j], "g", &c->row, dt);
    }
    ck_assert_int_eq(tg_grad(tp, inner(tp, g, r, n), NULL, &w, 1, &dw, true), TG_OK);
    expect_equal(dw, run_row(tp, r, &lin), "dW", &c->row, dt);
    ck_assert_int_eq(tg_grad(tp, inner(tp, &dw, &q, 1), NULL, r, n, dr, true), TG_OK);
    for (int j = 0; j < n; j++)
        expect_equal(dr[j], dr1[j], "dr", &c->row, dt);
    ck_assert_int_eq(tg_grad(tp, inner(tp, dr, p, n), NULL, &q, 1, &dq, true), TG_OK);
    expect_equal(dq, run_row(tp, p, &lin), "dq", &c->row, dt);
    tg_tape_free(tp);
    for (int j = 0; j < n; j++) {
        tg_tensor_free(in[j]);
        tg_tensor_free(r[j]);
        tg_tensor_free(p[j]);
    }
    tg_tensor_free(w);
    tg_tensor_free(q);
    tg_tensor_free(cur_idx);
    cur_idx = NULL;
}
END_TEST

/* The recorded sums of expand and of repeated indices run in double in F32
 * too, as the first-order ones do (see f32_gradient_sums_in_double). */
START_TEST(recorded_f32_sums_in_double)
{
    tg_tensor *one = tu_lit(TG_F32, "1", (double[]){0.5}),
              *row = tu_lit(TG_F32, "1x1", (double[]){2});
    tg_tensor *seed = tu_lit(TG_F32, "18", big_ones), *s2 = tu_lit(TG_F32, "18x1", big_ones);
    tg_tensor *idx = tg_tensor_new(TG_I64, 1, (int64_t[]){18}); /* 18 zeros */
    ck_assert_ptr_nonnull(idx);
    tg_tensor_set_requires_grad(one, true);
    tg_tensor_set_requires_grad(row, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *g;
    ck_assert_int_eq(tg_grad(tp, tg_expand(tp, one, 1, (int64_t[]){18}), seed, &one, 1, &g, true),
                     TG_OK);
    tu_expect_exact(g, "1", (double[]){16}, "expand's recorded sum");
    ck_assert_int_eq(tg_grad(tp, tg_index_select(tp, row, 0, idx), s2, &row, 1, &g, true), TG_OK);
    tu_expect_exact(g, "1x1", (double[]){16}, "index_select's recorded sum");
    ck_assert_int_eq(tg_tape_replay(tp), TG_OK); /* the double buffers were left clean */
    tu_expect_exact(g, "1x1", (double[]){16}, "index_select's recorded sum, replayed");
    tg_tape_free(tp);
    tg_tensor *all[] = {one, row, seed, s2, idx};
    for (size_t k = 0; k < sizeof all / sizeof *all; k++)
        tg_tensor_free(all[k]);
}
END_TEST

/* Every op of the family in one nonlinear function of x (products only, whose
 * recorded VJPs are products again). */
static tg_tensor *chain_hv(tg_tape *tp, tg_tensor *x, tg_tensor *idx, tg_tensor *rows)
{
    tg_tensor *p = tg_permute(tp, x, (int[]){1, 0}); /* [4x3] */
    tg_tensor *s = tg_slice(tp, p, 0, -3, 4, 2);     /* [2x3] */
    tg_tensor *e =
        tg_expand(tp, tg_reshape(tp, s, 3, (int64_t[]){2, 1, 3}), 3, (int64_t[]){2, 2, 3});
    tg_tensor *st = tg_stack(tp, (tg_tensor *[]){s, s}, 2, 1);                         /* [2x2x3] */
    tg_tensor *cat = tg_concat(tp, (tg_tensor *[]){e, st}, 2, -1);                     /* [2x2x6] */
    tg_tensor *pd = tg_pad(tp, cat, (int64_t[]){0, 1, 1}, (int64_t[]){1, 0, 0}, 0.25); /* [3x3x7] */
    tg_tensor *t = tg_index_select(tp, pd, 2, idx);                                    /* [3x3x3] */
    tg_tensor *em = tg_embedding(tp, x, rows);                                         /* [2x4] */
    tg_tensor *cubes = tg_add(tp, tg_sum(tp, tg_mul(tp, tg_mul(tp, t, t), t)),
                              tg_sum(tp, tg_mul(tp, tg_mul(tp, em, em), em)));
    return tg_mul(tp, cubes, cubes);
}

static tg_tensor *cur_rows;

static tg_tensor *chain_fn(tg_tape *tp, tg_tensor *const *in, void *ctx)
{
    (void)ctx;
    return chain_hv(tp, in[0], cur_idx, cur_rows);
}

/* The Hessian-vector product H v of chain_hv at x, recorded. */
static tg_tensor *record_hv(tg_tape *tp, tg_tensor *x, tg_tensor *v, tg_tensor *idx,
                            tg_tensor *rows)
{
    tg_tensor *loss = chain_hv(tp, x, idx, rows), *g, *hv;
    ck_assert_msg(loss != NULL, "%s", tg_tape_error(tp));
    ck_assert_int_eq(tg_grad(tp, loss, NULL, &x, 1, &g, true), TG_OK);
    tg_status s = tg_grad(tp, tg_sum(tp, tg_mul(tp, g, v)), NULL, &x, 1, &hv, true);
    ck_assert_msg(s == TG_OK, "%s", tg_tape_error(tp));
    return hv;
}

/* gradgradcheck of the chain, and its recorded H v replayed on new data and
 * new indices equals a fresh recording, bit for bit. */
START_TEST(hessian_vector_product_replays)
{
    tg_dtype dt = tu_loop_dtype(_i);
    tg_tensor *x = tu_random(dt, "3x4", -2, 2, 41), *x2 = tu_random(dt, "3x4", -2, 2, 42);
    tg_tensor *v = tu_random(dt, "3x4", -1, 1, 43);
    cur_idx = tg_tensor_from(TG_I64, 1, (int64_t[]){3}, (int64_t[]){0, 6, -2});
    cur_rows = tg_tensor_from(TG_I64, 1, (int64_t[]){2}, (int64_t[]){2, 2});
    ck_assert(x && x2 && v && cur_idx && cur_rows);
    tg_tensor_set_requires_grad(x, true);
    tg_tensor_set_requires_grad(x2, true);
    if (dt == TG_F64) {
        tg_gradcheck_report rep;
        ck_assert_int_eq(tg_gradgradcheck(chain_fn, &x, 1, NULL, NULL, &rep), TG_OK);
        ck_assert_msg(rep.passed, "%s", rep.msg);
    }
    tg_tape *tp = tg_tape_new(), *fresh = tg_tape_new();
    tg_tensor *hv = record_hv(tp, x, v, cur_idx, cur_rows);
    size_t esz = dt == TG_F64 ? 8 : 4;
    memcpy(tg_tensor_data(x), tg_tensor_data(x2), 12 * esz);
    memcpy(tg_tensor_data(cur_idx), (int64_t[]){3, 3, -7}, 3 * sizeof(int64_t));
    memcpy(tg_tensor_data(cur_rows), (int64_t[]){-1, 0}, 2 * sizeof(int64_t));
    ck_assert_int_eq(tg_tape_replay(tp), TG_OK);
    tg_tensor *want = record_hv(fresh, x2, v, cur_idx, cur_rows);
    for (int64_t k = 0; k < 12; k++)
        ck_assert_msg(tu_at(hv, k) == tu_at(want, k), "Hv[%lld]: replay %.17g, fresh %.17g",
                      (long long)k, tu_at(hv, k), tu_at(want, k));
    tg_tape_free(tp);
    tg_tape_free(fresh);
    tg_tensor *all[] = {x, x2, v, cur_idx, cur_rows};
    for (size_t k = 0; k < sizeof all / sizeof *all; k++)
        tg_tensor_free(all[k]);
    cur_idx = cur_rows = NULL;
}
END_TEST

/* Indices written between the op and tg_grad fail the recording of its
 * index_add (nothing reads out of range); written later, the replay fails
 * at the index op itself, with its own message, before the index_add. */
START_TEST(recorded_vjp_checks_indices)
{
    tg_tensor *x = tu_lit(TG_F64, "3x2", (double[]){1, 2, 3, 4, 5, 6});
    tg_tensor *idx = tg_tensor_from(TG_I64, 1, (int64_t[]){3}, (int64_t[]){0, 1, 2});
    tg_tensor *ids = tg_tensor_from(TG_I64, 2, (int64_t[]){2, 2}, (int64_t[]){0, 1, 2, -3});
    ck_assert(x && idx && ids);
    tg_tensor_set_requires_grad(x, true);
    static const struct {
        bool embedding, before_grad;
        int64_t pos, value;
        const char *msg;
    } c[] = {
        {false, true, 1, 3,
         "index_add: index 3 at position 1 of idx [3] is out of range [-3, 3) for axis 0 of x "
         "[3x2]"},
        {true, true, 3, -4,
         "index_add: index -4 at position 3 of idx [2x2] is out of range [-3, 3) for the rows of "
         "table [3x2]"},
        {false, false, 2, -4,
         "index_select: index -4 at position 2 of idx [3] is out of range [-3, 3) for axis 0 of x "
         "[3x2] (replay of node 0)"},
        {true, false, 0, 3,
         "embedding: index 3 at position 0 of idx [2x2] is out of range [-3, 3) for the rows of "
         "table [3x2] (replay of node 0)"},
    };
    for (size_t k = 0; k < sizeof c / sizeof *c; k++) {
        tg_tape *tp = tg_tape_new();
        tg_tensor *y = c[k].embedding ? tg_embedding(tp, x, ids) : tg_index_select(tp, x, 0, idx);
        tg_tensor *loss = tg_sum(tp, tg_mul(tp, y, y)), *g;
        int64_t *v = tg_tensor_data(c[k].embedding ? ids : idx), keep = v[c[k].pos];
        if (c[k].before_grad) v[c[k].pos] = c[k].value;
        tg_status s = tg_grad(tp, loss, NULL, &x, 1, &g, true);
        if (c[k].before_grad) {
            ck_assert_int_eq(s, TG_ERR_ARG);
        } else {
            ck_assert_int_eq(s, TG_OK);
            v[c[k].pos] = c[k].value;
            ck_assert_int_eq(tg_tape_replay(tp), TG_ERR_ARG);
        }
        ck_assert_str_eq(tg_tape_error(tp), c[k].msg);
        v[c[k].pos] = keep;
        tg_tape_free(tp);
    }
    tg_tensor_free(x);
    tg_tensor_free(idx);
    tg_tensor_free(ids);
}
END_TEST

/* A recorded gradient lists its transposed ops by name. */
START_TEST(explain_names_the_recorded_vjps)
{
    tg_tensor *x = tu_operand("3x2", TG_F64, 5);
    tg_tensor *idx = tg_tensor_from(TG_I64, 1, (int64_t[]){3}, (int64_t[]){2, 0, 2});
    tg_tensor_set_name(x, "X");
    tg_tensor_set_requires_grad(x, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *s = tg_slice(tp, x, 0, 1, 3, 1);
    tg_tensor *e = tg_expand(tp, s, 3, (int64_t[]){2, 2, 2});
    tg_tensor *pd = tg_pad(tp, e, (int64_t[]){0, 1, 0}, (int64_t[]){0, 0, 1}, 1.0);
    tg_tensor *y = tg_index_select(tp, pd, 1, idx), *g;
    ck_assert_int_eq(tg_grad(tp, tg_sum(tp, tg_mul(tp, y, y)), NULL, &x, 1, &g, true), TG_OK);
    char buf[4096] = "";
    FILE *f = fmemopen(buf, sizeof buf - 1, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(tg_tape_explain(tp, f, TG_EXPLAIN_FORWARD), TG_OK);
    fclose(f);
    static const char *want[] = {"= index_add(", "[2x2x2] = crop(", "[2x2] = sum_to(",
                                 "dX [3x2] = slice_scatter("};
    for (size_t k = 0; k < sizeof want / sizeof *want; k++)
        ck_assert_msg(strstr(buf, want[k]), "no '%s' in:\n%s", want[k], buf);
    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_tensor_free(idx);
}
END_TEST

/* ====== Errors: status and exact message; the tape stays failed ====== */

typedef struct err_case {
    shape_row row;     /* the call; row.shapes unused */
    const char *in[4]; /* float operand shapes; NULL passes a NULL tensor */
    tg_dtype dt[4];    /* their dtypes (F32, the enum's 0, unless given) */
    bool float_idx;    /* the index operand holds its values as idx_dt, not I64 */
    tg_dtype idx_dt;
    bool null_param; /* pass NULL for the shape, perm, before (after with n = 1) or xs */
    tg_status want;
    const char *msg;
} err_case;

static const err_case err_cases[] = {
    /* reshape */
    {{.kind = K_RESHAPE, .rank = 2, .dims = {4, 2}},
     {"2x3"},
     .want = TG_ERR_SHAPE,
     .msg = "reshape: [2x3] holds 6 elements, [4x2] does not fit them"},
    {{.kind = K_RESHAPE, .rank = 2, .dims = {-1, 4}},
     {"2x3"},
     .want = TG_ERR_SHAPE,
     .msg = "reshape: [2x3] holds 6 elements, [-1x4] does not fit them"},
    {{.kind = K_RESHAPE, .rank = 2, .dims = {-1, -1}},
     {"2x3"},
     .want = TG_ERR_ARG,
     .msg = "reshape: dim 1 is a second -1; only one dim is inferred; x is [2x3]"},
    {{.kind = K_RESHAPE, .rank = 1, .dims = {-2}},
     {"2x3"},
     .want = TG_ERR_ARG,
     .msg = "reshape: dim 0 is -2; dims are >= 0, or -1 to infer one; x is [2x3]"},
    {{.kind = K_RESHAPE, .rank = 3, .dims = {0, -1, 2}},
     {"0x3"},
     .want = TG_ERR_SHAPE,
     .msg = "reshape: the -1 in [0x-1x2] could be any size (the other dims hold no elements); "
            "x is [0x3]"},
    {{.kind = K_RESHAPE, .rank = 5},
     {"2x3"},
     .want = TG_ERR_ARG,
     .msg = "reshape: rank 5 is not a shape of rank 0..4; x is [2x3]"},
    {{.kind = K_RESHAPE, .rank = 2},
     {"2x3"},
     .null_param = true,
     .want = TG_ERR_ARG,
     .msg = "reshape: rank 2 with no dims is not a shape of rank 0..4; x is [2x3]"},
    {{.kind = K_RESHAPE, .rank = 4, .dims = {INT64_MAX, INT64_MAX, 2, 2}},
     {"2x3"},
     .want = TG_ERR_SHAPE,
     .msg = "reshape: [2x3] holds 6 elements, [9223372036854775807x9223372036854775807x2x2] "
            "does not fit them"},
    {{.kind = K_RESHAPE, .rank = 1, .dims = {6}},
     {NULL},
     .want = TG_ERR_ARG,
     .msg = "reshape: input 0 is NULL"},
    {{.kind = K_RESHAPE, .rank = 1, .dims = {6}},
     {"2x3"},
     .dt = {TG_I64},
     .want = TG_ERR_DTYPE,
     .msg = "reshape: input 0 [2x3] is i64; this op takes f32 or f64 there"},
    /* permute */
    {{.kind = K_PERMUTE, .dims = {0, 0}},
     {"2x3"},
     .want = TG_ERR_ARG,
     .msg = "permute: perm[1] = 0 is repeated; x is [2x3]"},
    {{.kind = K_PERMUTE, .dims = {1, -3}},
     {"2x3"},
     .want = TG_ERR_ARG,
     .msg = "permute: perm[1] = -3 is out of range; x is [2x3]"},
    {{.kind = K_PERMUTE, .dims = {2, 0}},
     {"2x3"},
     .want = TG_ERR_ARG,
     .msg = "permute: perm[0] = 2 is out of range; x is [2x3]"},
    {{.kind = K_PERMUTE},
     {"2x3"},
     .null_param = true,
     .want = TG_ERR_ARG,
     .msg = "permute: perm is NULL; x is [2x3]"},
    /* slice */
    {{.kind = K_SLICE, .axis = 2, .step = 1},
     {"2x3"},
     .want = TG_ERR_ARG,
     .msg = "slice: axis 2 out of range; x is [2x3]"},
    {{.kind = K_SLICE, .axis = -1, .step = 1},
     {""},
     .want = TG_ERR_ARG,
     .msg = "slice: axis -1 out of range; x is []"},
    {{.kind = K_SLICE, .axis = 0, .step = 0},
     {"2x3"},
     .want = TG_ERR_ARG,
     .msg = "slice: step 0 must be >= 1; x is [2x3]"},
    {{.kind = K_SLICE, .axis = 0, .step = -1},
     {"2x3"},
     .want = TG_ERR_ARG,
     .msg = "slice: step -1 must be >= 1; x is [2x3]"},
    /* concat */
    {{.kind = K_CONCAT, .axis = 1, .n = 2},
     {"2x3", "3x3"},
     .want = TG_ERR_SHAPE,
     .msg = "concat: input 1 differs from input 0 off axis 1; inputs [2x3], [3x3]"},
    {{.kind = K_CONCAT, .axis = 0, .n = 3},
     {"2x3", "1x3", "2"},
     .want = TG_ERR_SHAPE,
     .msg = "concat: input 2 differs from input 0 off axis 0; inputs [2x3], [1x3], [2]"},
    {{.kind = K_CONCAT, .axis = -3, .n = 2},
     {"2x3", "2x3"},
     .want = TG_ERR_ARG,
     .msg = "concat: axis -3 out of range; inputs [2x3], [2x3]"},
    {{.kind = K_CONCAT, .axis = 0, .n = 2},
     {"", ""},
     .want = TG_ERR_SHAPE,
     .msg = "concat: rank-0 inputs have no axis; inputs [], []"},
    {{.kind = K_CONCAT, .axis = 0, .n = 0},
     {"2x3"},
     .want = TG_ERR_ARG,
     .msg = "concat: needs at least one input, got 0"},
    {{.kind = K_CONCAT, .axis = 0, .n = 2},
     {"2x3"},
     .null_param = true,
     .want = TG_ERR_ARG,
     .msg = "concat: needs at least one input, got 0"},
    {{.kind = K_CONCAT, .axis = 0, .n = 2},
     {"2x3", NULL},
     .want = TG_ERR_ARG,
     .msg = "concat: input 1 is NULL"},
    {{.kind = K_CONCAT, .axis = 0, .n = 2},
     {"2x3", "2x3"},
     .dt = {TG_F64, TG_F32},
     .want = TG_ERR_DTYPE,
     .msg = "concat: inputs differ in dtype: f64 [2x3] and f32 [2x3]"},
    /* stack */
    {{.kind = K_STACK, .axis = 0, .n = 2},
     {"2x3", "3x2"},
     .want = TG_ERR_SHAPE,
     .msg = "stack: input 1 differs from input 0; inputs [2x3], [3x2]"},
    {{.kind = K_STACK, .axis = 3, .n = 2},
     {"2x3", "2x3"},
     .want = TG_ERR_ARG,
     .msg = "stack: axis 3 out of range for a result of rank 3; inputs [2x3], [2x3]"},
    {{.kind = K_STACK, .axis = -4, .n = 2},
     {"2x3", "2x3"},
     .want = TG_ERR_ARG,
     .msg = "stack: axis -4 out of range for a result of rank 3; inputs [2x3], [2x3]"},
    {{.kind = K_STACK, .axis = 0, .n = 2},
     {"1x2x3x4", "1x2x3x4"},
     .want = TG_ERR_SHAPE,
     .msg = "stack: the result would have rank 5 > 4; inputs [1x2x3x4], [1x2x3x4]"},
    {{.kind = K_STACK, .axis = 0, .n = -1},
     {"2x3"},
     .want = TG_ERR_ARG,
     .msg = "stack: needs at least one input, got -1"},
    /* expand */
    {{.kind = K_EXPAND, .rank = 2, .dims = {2, 4}},
     {"2x3"},
     .want = TG_ERR_SHAPE,
     .msg = "expand: cannot broadcast to [2x4]: dim 1 is 3, not 1; x is [2x3]"},
    {{.kind = K_EXPAND, .rank = 1, .dims = {3}},
     {"1x3"},
     .want = TG_ERR_ARG,
     .msg = "expand: rank 1; the target needs rank 2..4; x is [1x3]"},
    {{.kind = K_EXPAND, .rank = 3, .dims = {-1, 2, 3}},
     {"2x3"},
     .want = TG_ERR_ARG,
     .msg = "expand: dim 0 of [-1x2x3] is -1 (-1 keeps one of x's dims only); x is [2x3]"},
    {{.kind = K_EXPAND, .rank = 2, .dims = {-2, 3}},
     {"1x3"},
     .want = TG_ERR_ARG,
     .msg = "expand: dim 0 of [-2x3] is -2 (-1 keeps one of x's dims only); x is [1x3]"},
    {{.kind = K_EXPAND, .rank = 2},
     {"1x3"},
     .null_param = true,
     .want = TG_ERR_ARG,
     .msg = "expand: rank 2 with no dims; the target needs rank 2..4; x is [1x3]"},
    /* pad */
    {{.kind = K_PAD, .before = {1, -1}, .after = {0, 0}},
     {"2x3"},
     .want = TG_ERR_ARG,
     .msg = "pad: axis 1 pads -1 before and 0 after; both must be >= 0; x is [2x3]"},
    {{.kind = K_PAD, .before = {0, 0}, .after = {0, INT64_MAX}},
     {"2x3"},
     .want = TG_ERR_SHAPE,
     .msg = "pad: axis 1 grows past 2^63 elements; x is [2x3]"},
    {{.kind = K_PAD},
     {"2x3"},
     .null_param = true,
     .want = TG_ERR_ARG,
     .msg = "pad: before is NULL; x is [2x3]"},
    {{.kind = K_PAD, .n = 1},
     {"2x3"},
     .null_param = true,
     .want = TG_ERR_ARG,
     .msg = "pad: after is NULL; x is [2x3]"},
    /* index_select */
    {{.kind = K_INDEX_SELECT, .axis = 0, .idx_shape = "3", .idx = {0, 3, 1}},
     {"3x2"},
     .want = TG_ERR_ARG,
     .msg = "index_select: index 3 at position 1 of idx [3] is out of range [-3, 3) for axis 0 "
            "of x [3x2]"},
    {{.kind = K_INDEX_SELECT, .axis = -1, .idx_shape = "2", .idx = {-3, 0}},
     {"3x2"},
     .want = TG_ERR_ARG,
     .msg = "index_select: index -3 at position 0 of idx [2] is out of range [-2, 2) for axis 1 "
            "of x [3x2]"},
    {{.kind = K_INDEX_SELECT, .axis = 1, .idx_shape = "1", .idx = {0}},
     {"2x0"},
     .want = TG_ERR_ARG,
     .msg = "index_select: index 0 at position 0 of idx [1] is out of range [0, 0) for axis 1 of "
            "x [2x0]"},
    {{.kind = K_INDEX_SELECT, .axis = 2, .idx_shape = "1", .idx = {0}},
     {"3x2"},
     .want = TG_ERR_ARG,
     .msg = "index_select: axis 2 out of range for x [3x2]"},
    {{.kind = K_INDEX_SELECT, .axis = 0, .idx_shape = "1x2", .idx = {0, 1}},
     {"3x2"},
     .want = TG_ERR_SHAPE,
     .msg = "index_select: idx must have rank 1, got [1x2]; x is [3x2]"},
    {{.kind = K_INDEX_SELECT, .axis = 0, .idx_shape = "2", .idx = {0, 1}},
     {"3x2"},
     .float_idx = true,
     .idx_dt = TG_F64,
     .want = TG_ERR_DTYPE,
     .msg = "index_select: idx [2] must be i64, is f64; x is [3x2]"},
    {{.kind = K_INDEX_SELECT, .axis = 0, .idx_shape = "2", .idx = {0, 1}},
     {"3x2"},
     .dt = {TG_I64},
     .want = TG_ERR_DTYPE,
     .msg = "index_select: input 0 [3x2] is i64; this op takes f32 or f64 there"},
    {{.kind = K_INDEX_SELECT, .axis = 0, .idx_shape = "2", .idx = {0, 1}},
     {NULL},
     .want = TG_ERR_ARG,
     .msg = "index_select: input 0 is NULL"},
    /* embedding */
    {{.kind = K_EMBEDDING, .idx_shape = "2x2", .idx = {0, 1, 5, 2}},
     {"5x2"},
     .want = TG_ERR_ARG,
     .msg = "embedding: index 5 at position 2 of idx [2x2] is out of range [-5, 5) for the rows "
            "of table [5x2]"},
    {{.kind = K_EMBEDDING, .idx_shape = "2", .idx = {0, 1}},
     {"5"},
     .want = TG_ERR_SHAPE,
     .msg = "embedding: needs table [V,D] and idx of rank 0..3, got [5] and [2]"},
    {{.kind = K_EMBEDDING, .idx_shape = "1x1x1x1", .idx = {0}},
     {"5x2"},
     .want = TG_ERR_SHAPE,
     .msg = "embedding: needs table [V,D] and idx of rank 0..3, got [5x2] and [1x1x1x1]"},
    {{.kind = K_EMBEDDING, .idx_shape = "2", .idx = {0, 1}},
     {"5x2"},
     .float_idx = true,
     .idx_dt = TG_F32,
     .want = TG_ERR_DTYPE,
     .msg = "embedding: idx [2] must be i64, is f32; table is [5x2]"},
    /* where */
    {{.kind = K_WHERE},
     {"2x3", "3x2", "1"},
     .want = TG_ERR_SHAPE,
     .msg = "where: shapes do not broadcast: cond [2x3], a [3x2], b [1]"},
    {{.kind = K_WHERE},
     {"2x1", "1x3", "3x3"},
     .want = TG_ERR_SHAPE,
     .msg = "where: shapes do not broadcast: cond [2x1], a [1x3], b [3x3]"},
    {{.kind = K_WHERE},
     {"2", "2", "2"},
     .dt = {TG_F32, TG_F64, TG_F64},
     .want = TG_ERR_DTYPE,
     .msg = "where: inputs differ in dtype: f32 [2] and f64 [2]"},
    {{.kind = K_WHERE},
     {"2", "2", "2"},
     .dt = {TG_F64, TG_F64, TG_F32},
     .want = TG_ERR_DTYPE,
     .msg = "where: inputs differ in dtype: f64 [2] and f32 [2]"},
    {{.kind = K_WHERE_I64, .idx_shape = "2", .idx = {1, 0}},
     {"2", "2"},
     .dt = {TG_I64, TG_F64},
     .want = TG_ERR_DTYPE,
     .msg = "where: input 1 [2] is i64; this op takes f32 or f64 there"},
    {{.kind = K_WHERE}, {"2", NULL, "2"}, .want = TG_ERR_ARG, .msg = "where: input 1 is NULL"},
};

static tg_tensor *err_run(tg_tape *tp, const err_case *c, tg_tensor *const *in, tg_tensor *idx)
{
    const shape_row *r = &c->row;
    if (!c->null_param) {
        cur_idx = idx;
        tg_tensor *y = r->kind == K_WHERE ? tg_where(tp, in[0], in[1], in[2]) : run_row(tp, in, r);
        cur_idx = NULL;
        return y;
    }
    switch (r->kind) {
    case K_RESHAPE:
        return tg_reshape(tp, in[0], r->rank, NULL);
    case K_PERMUTE:
        return tg_permute(tp, in[0], NULL);
    case K_EXPAND:
        return tg_expand(tp, in[0], r->rank, NULL);
    case K_PAD:
        return r->n ? tg_pad(tp, in[0], r->before, NULL, 0) : tg_pad(tp, in[0], NULL, r->after, 0);
    case K_CONCAT:
        return tg_concat(tp, NULL, r->n, r->axis);
    default:
        return NULL;
    }
}

START_TEST(bad_input_fails_with_message)
{
    const err_case *c = &err_cases[_i];
    tg_tensor *in[4] = {NULL}, *idx = NULL;
    for (int i = 0; i < 4; i++) {
        if (!c->in[i]) continue;
        int64_t shape[TG_MAX_RANK];
        int rank = tu_parse_shape(c->in[i], shape);
        in[i] = tg_tensor_new(c->dt[i], rank, shape); /* zeros: where's cond picks b */
        ck_assert_ptr_nonnull(in[i]);
    }
    if (c->row.idx_shape) {
        idx = make_idx(&c->row);
        if (c->float_idx) { /* the same values in a float tensor */
            tg_tensor *f = tg_tensor_new(c->idx_dt, tg_tensor_rank(idx), tg_tensor_shape(idx));
            for (int64_t k = 0; k < tg_tensor_numel(idx); k++)
                tu_put(f, k, (double)c->row.idx[k]);
            tg_tensor_free(idx);
            idx = f;
        }
    }
    tg_tensor *ok = tu_operand("2x2", TG_F64, 3);
    tg_tape *tp = tg_tape_new();
    ck_assert_ptr_null(err_run(tp, c, in, idx));
    tu_expect_failed(tp, c->want, c->msg, _i);
    /* Sticky: a valid op now records nothing and the first message stays. */
    ck_assert_ptr_null(tg_reshape(tp, ok, 1, (int64_t[]){4}));
    tu_expect_still_failed(tp, c->want, c->msg);
    ck_assert_ptr_null(err_run(NULL, c, in, idx)); /* no tape: NULL, and nothing to record into */
    tg_tape_free(tp);
    for (int i = 0; i < 4; i++)
        tg_tensor_free(in[i]);
    tg_tensor_free(idx);
    tg_tensor_free(ok);
}
END_TEST

/* ====== Explain: each op's rule text reaches tg_tape_explain ====== */

START_TEST(explain_shows_the_rules)
{
    tg_tensor *x = tu_operand("3x2", TG_F64, 5), *y = tu_operand("1x2", TG_F64, 6);
    tg_tensor *idx = tg_tensor_from(TG_I64, 1, (int64_t[]){2}, (int64_t[]){2, 2});
    tg_tensor_set_name(x, "X");
    tg_tensor_set_name(y, "Y");
    tg_tensor_set_requires_grad(x, true);
    tg_tensor_set_requires_grad(y, true);
    tg_tape *tp = tg_tape_new();
    tg_tensor *c = tg_concat(tp, (tg_tensor *[]){x, y}, 2, 0);
    tg_tensor *s = tg_index_select(tp, c, 0, idx);
    ck_assert_int_eq(tg_backward(tp, tg_sum(tp, s)), TG_OK);
    char buf[2048] = "";
    FILE *f = fmemopen(buf, sizeof buf - 1, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(tg_tape_explain(tp, f, 0), TG_OK);
    fclose(f);
    static const char *want[] = {"added into zeros of [4x2] at the indices",
                                 "dX [3x2] = its block of", "dY [1x2] = its block of"};
    for (size_t k = 0; k < sizeof want / sizeof *want; k++)
        ck_assert_msg(strstr(buf, want[k]), "no '%s' in:\n%s", want[k], buf);
    tg_tape_free(tp);
    tg_tensor_free(x);
    tg_tensor_free(y);
    tg_tensor_free(idx);
}
END_TEST

static Suite *shape_suite(void)
{
    Suite *s = suite_create("ops_shape");
    TCase *tc = tcase_create("values"); /* loops over dtypes run F64, then F32 */
    tcase_add_loop_test(tc, matches_torch, 0, 2 * N_REF);
    tcase_add_loop_test(tc, slices_follow_python, 0, 2);
    tcase_add_loop_test(tc, reshape_infers_and_keeps_order, 0, 2);
    tcase_add_test(tc, f32_gradient_sums_in_double);
    tcase_add_loop_test(tc, replay_matches_fresh_recording, 0, 2);
    tcase_add_test(tc, bad_index_at_replay);
    tcase_add_test(tc, explain_shows_the_rules);
    suite_add_tcase(s, tc);

    tc = tcase_create("higher order");
    tcase_add_loop_test(tc, recorded_vjps_to_fourth_order, 0, 2 * N_REF);
    tcase_add_test(tc, recorded_f32_sums_in_double);
    tcase_add_loop_test(tc, hessian_vector_product_replays, 0, 2);
    tcase_add_test(tc, recorded_vjp_checks_indices);
    tcase_add_test(tc, explain_names_the_recorded_vjps);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_loop_test(tc, bad_input_fails_with_message, 0,
                        (int)(sizeof err_cases / sizeof *err_cases));
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run(shape_suite()); }
