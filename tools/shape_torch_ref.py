#!/usr/bin/python3
"""Reference values for tests/test_ops_shape.c from PyTorch (float64).

Prints the ref_cases table of the test: for each case, the output and the
gradient of every float input for the seed dG[k] = sin(0.9 k + 0.2). Float
input i holds x[k] = cos(1.3 k + 2.1 i + 0.4); index inputs are given. The
rows mirror the test's shape_row fields. Negative indices are wrapped here
(idx % n) because torch.index_select and embedding refuse them, where
tapegrad accepts [-n, n). Run: /usr/bin/python3 tools/shape_torch_ref.py
"""
import math

import torch

torch.set_default_dtype(torch.float64)


def leaf(shape, i):
    n = math.prod(shape)
    v = [math.cos(1.3 * k + 2.1 * i + 0.4) for k in range(n)]
    return torch.tensor(v).reshape(shape).requires_grad_(True)


def fmt(vals):
    return "{" + ", ".join(repr(float(v)) for v in vals) + "}"


def shp(s):
    return "x".join(str(d) for d in s)


CASES = [
    # name, kind, field initialisers (C), input shapes, function of the float leaves and idx
    ("reshape 2x3x4 -> 4x-1", "K_RESHAPE", ".rank = 2, .dims = {4, -1}", [(2, 3, 4)], None,
     lambda x, i: x[0].reshape(4, -1)),
    ("reshape 6 -> 1x-1x1", "K_RESHAPE", ".rank = 3, .dims = {1, -1, 1}", [(6,)], None,
     lambda x, i: x[0].reshape(1, -1, 1)),
    ("permute 2x3x4 (2,0,1)", "K_PERMUTE", ".rank = 3, .dims = {2, 0, 1}", [(2, 3, 4)], None,
     lambda x, i: x[0].permute(2, 0, 1)),
    ("permute 2x1x3x2 (-1,-3,-4,-2)", "K_PERMUTE", ".rank = 4, .dims = {-1, -3, -4, -2}",
     [(2, 1, 3, 2)], None, lambda x, i: x[0].permute(-1, -3, -4, -2)),
    ("slice 5x4 axis 0 [-4:100:2]", "K_SLICE", ".axis = 0, .start = -4, .stop = 100, .step = 2",
     [(5, 4)], None, lambda x, i: x[0][-4:100:2]),
    ("slice 5x4 axis -1 [1:-1]", "K_SLICE", ".axis = -1, .start = 1, .stop = -1, .step = 1",
     [(5, 4)], None, lambda x, i: x[0][:, 1:-1]),
    ("slice 2x7x2 axis 1 [-100:6:3]", "K_SLICE", ".axis = 1, .start = -100, .stop = 6, .step = 3",
     [(2, 7, 2)], None, lambda x, i: x[0][:, -100:6:3]),
    ("concat 2x3, 2x1, 2x2 axis 1", "K_CONCAT", ".axis = 1, .n = 3", [(2, 3), (2, 1), (2, 2)],
     None, lambda x, i: torch.cat(x, 1)),
    ("concat 1x3, 2x3 axis -2", "K_CONCAT", ".axis = -2, .n = 2", [(1, 3), (2, 3)], None,
     lambda x, i: torch.cat(x, -2)),
    ("stack 2x3, 2x3 axis 0", "K_STACK", ".axis = 0, .n = 2", [(2, 3), (2, 3)], None,
     lambda x, i: torch.stack(x, 0)),
    ("stack 3 x 2x2 axis -1", "K_STACK", ".axis = -1, .n = 3", [(2, 2), (2, 2), (2, 2)], None,
     lambda x, i: torch.stack(x, -1)),
    ("expand 3x1 -> 2x3x4", "K_EXPAND", ".rank = 3, .dims = {2, 3, 4}", [(3, 1)], None,
     lambda x, i: x[0].expand(2, 3, 4)),
    ("expand 1x4 -> 3x-1", "K_EXPAND", ".rank = 2, .dims = {3, -1}", [(1, 4)], None,
     lambda x, i: x[0].expand(3, -1)),
    ("pad 2x3 (1,0) (0,2) -1.5", "K_PAD", ".before = {1, 0}, .after = {0, 2}, .value = -1.5",
     [(2, 3)], None,
     lambda x, i: torch.nn.functional.pad(x[0], (0, 2, 1, 0), value=-1.5)),
    ("index_select 3x4 axis 0 [2,0,2,-1]", "K_INDEX_SELECT", ".axis = 0", [(3, 4)],
     ("4", [2, 0, 2, -1]), lambda x, i: torch.index_select(x[0], 0, i % 3)),
    ("index_select 2x4x3 axis -2 [3,3,1]", "K_INDEX_SELECT", ".axis = -2", [(2, 4, 3)],
     ("3", [3, 3, 1]), lambda x, i: torch.index_select(x[0], -2, i)),
    ("embedding 5x3 [[1,4],[1,-5]]", "K_EMBEDDING", "", [(5, 3)], ("2x2", [1, 4, 1, -5]),
     lambda x, i: torch.nn.functional.embedding(i % 5, x[0])),
    ("embedding 5x3 scalar 3", "K_EMBEDDING", "", [(5, 3)], ("", [3]),
     lambda x, i: torch.nn.functional.embedding(i, x[0])),
    ("where relu(3x1) 1x4 3x4", "K_WHERE", "", [(3, 1), (1, 4), (3, 4)], None,
     lambda x, i: torch.where(torch.relu(x[0]) != 0, x[1], x[2])),
    ("where i64 2x1x3 4x1 scalar", "K_WHERE_I64", "", [(4, 1), ()], ("2x1x3", [0, 5, -1, 0, 0, 2]),
     lambda x, i: torch.where(i != 0, x[0], x[1])),
]

for name, kind, fields, shapes, idx, fn in CASES:
    xs = [leaf(s, k) for k, s in enumerate(shapes)]
    it = None
    if idx is not None:
        dims = [int(d) for d in idx[0].split("x")] if idx[0] else []
        it = torch.tensor(idx[1], dtype=torch.int64).reshape(dims)
    y = fn(xs, it)
    seed = torch.tensor([math.sin(0.9 * k + 0.2) for k in range(y.numel())]).reshape(y.shape)
    y.backward(seed)
    init = f'{{{{"{name}", {kind}'
    if fields:
        init += ", " + fields
    init += ', .shapes = "' + ";".join(shp(s) for s in shapes) + '"'
    if idx is not None:
        init += f', .idx_shape = "{idx[0]}", .idx = {{{", ".join(str(v) for v in idx[1])}}}'
    init += "},\n"
    init += f'     "{shp(y.shape)}",\n     {fmt(y.detach().flatten().tolist())},\n     {{'
    # where's condition is cut off from the graph (torch compares it): a zero gradient.
    grads = [x.grad if x.grad is not None else torch.zeros_like(x) for x in xs]
    init += ",\n      ".join(fmt(g.flatten().tolist()) for g in grads)
    init += "}},"
    print("    " + init)
