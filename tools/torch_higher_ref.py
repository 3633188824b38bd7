#!/usr/bin/python3
"""Writes tests/data/torch_higher_ref.json: PyTorch's second and third derivatives.

tests/test_higher_ref.c records each case through the tapegrad C API, takes
its derivatives with tg_grad(create_graph) and tg_jvp, and compares them with
these numbers, so CI checks higher-order agreement with PyTorch without it.
Run with Debian's python3-torch:

    /usr/bin/python3 tools/torch_higher_ref.py     (writes tests/data/torch_higher_ref.json)

A case is a function (named "fn"; the C side has a table of the same
functions) of named float64 inputs, some requiring grad (the wrt list), and
two points: the second has new values for every input, which the C side
writes into its leaves before it replays the tape it recorded at the first.
For a scalar function, with fixed directions v and u for every wrt input,
each point holds

    f      the value
    grad   g_i = df/dx_i                   (autograd.grad, create_graph=True)
    hvp    h_i = d<g, v>/dx_i = (H v)_i     (autograd.grad of the above, create_graph=True)
    third  t_i = d<h, u>/dx_i = T[v, u]_i   (the third derivative along v and u)

and for a tensor-valued one, out and jvp = J v (autograd.functional.jvp,
which is double backward, and functorch.jvp, forward mode; both are checked
to agree here). Inputs and directions are short decimals (4 digits) from a
seeded random.Random, so the C side parses exactly the same doubles and a
rerun writes the same file.
"""

import json
import math
import os
import random
import sys

import torch
import torch.nn.functional as F

try:
    import functorch
except ImportError:  # only the cross-check of the jvp needs it
    functorch = None

F64 = torch.float64
RNG = random.Random(20261202)
CASES = []


def rand(shape, lo=-1.0, hi=1.0):
    n = math.prod(shape)
    return torch.tensor([round(RNG.uniform(lo, hi), 4) for _ in range(n)], dtype=F64).reshape(
        shape
    )


def one_hot(n, c):
    t = torch.zeros(n, c, dtype=F64)
    for i in range(n):
        t[i, RNG.randrange(c)] = 1.0
    return t


def enc(t):
    return t.detach().contiguous().reshape(-1).tolist()


def zeros_for(ts, xs):
    return [torch.zeros_like(x) if t is None else t for t, x in zip(ts, xs)]


def scalar_point(fn, names, values, wrt, v, u):
    leaves = [val.clone().requires_grad_(n in wrt) for n, val in zip(names, values)]
    xs = [leaf for n, leaf in zip(names, leaves) if n in wrt]
    f = fn(*leaves)
    g = torch.autograd.grad(f, xs, create_graph=True)
    gv = sum((gi * vi).sum() for gi, vi in zip(g, v))
    h = zeros_for(torch.autograd.grad(gv, xs, create_graph=True, allow_unused=True), xs)
    hu = sum((hi * ui).sum() for hi, ui in zip(h, u))
    t = hu.requires_grad and torch.autograd.grad(hu, xs, allow_unused=True)
    t = zeros_for(t, xs) if t else [torch.zeros_like(x) for x in xs]
    wn = [n for n in names if n in wrt]
    return {
        "data": {n: enc(val) for n, val in zip(names, values)},
        "f": f.item(),
        "grad": {n: enc(x) for n, x in zip(wn, g)},
        "hvp": {n: enc(x) for n, x in zip(wn, h)},
        "third": {n: enc(x) for n, x in zip(wn, t)},
    }


def jvp_point(fn, names, values, wrt, v):
    def of_wrt(*xs):
        it = iter(xs)
        return fn(*[next(it) if n in wrt else val for n, val in zip(names, values)])

    xs = tuple(val for n, val in zip(names, values) if n in wrt)
    out, jv = torch.autograd.functional.jvp(of_wrt, xs, tuple(v), create_graph=False)
    if functorch is not None:
        out2, jv2 = functorch.jvp(of_wrt, xs, tuple(v))
        assert torch.allclose(jv, jv2, rtol=1e-13, atol=1e-15), "double backward and forward mode differ"
        assert torch.allclose(out, out2, rtol=0, atol=0)
    return {"data": {n: enc(val) for n, val in zip(names, values)}, "out": enc(out), "jvp": enc(jv)}


def case(name, fn, inputs, wrt, make, kind="scalar"):
    """inputs: list of (name, shape); make(shape, name) draws a value."""
    names = [n for n, _ in inputs]
    shapes = dict(inputs)
    wn = [n for n in names if n in wrt]
    v = [rand(shapes[n]) for n in wn]
    u = [rand(shapes[n]) for n in wn]
    points = []
    for _ in range(2):
        values = [make(n, s) for n, s in inputs]
        if kind == "scalar":
            points.append(scalar_point(fn, names, values, wrt, v, u))
        else:
            points.append(jvp_point(fn, names, values, wrt, v))
    c = {
        "name": name,
        "kind": kind,
        "inputs": [{"name": n, "shape": list(s), "requires_grad": n in wrt} for n, s in inputs],
        "v": {n: enc(x) for n, x in zip(wn, v)},
        "points": points,
    }
    if kind == "scalar":
        c["u"] = {n: enc(x) for n, x in zip(wn, u)}
    CASES.append(c)


def uniform(n, s):
    return rand(s)


# ====== Functions of add, sub, mul, scale, tanh, sum, mean, matmul ======
# The C side (tests/test_higher_ref.c) has a record function per name below.


def mlp_loss(x, w1, b1, w2, b2, y):
    h = torch.tanh(x @ w1 + b1)
    r = torch.tanh(h @ w2 + b2) - y
    return (r * r).mean()


def mlp_out(x, w1, b1, w2, b2):
    return torch.tanh(x @ w1 + b1) @ w2 + b2


def tanh_cube_x(x):
    t = torch.tanh(x)
    return (t * t * t * x).sum()


def matmul_chain(a, b, c, k):
    ab = a @ b
    return (torch.tanh(ab @ c) * k).sum() + 0.5 * (ab * ab).sum()


def broadcast(x, b, c):
    return (torch.tanh(x * b + c) * (x - c)).mean()


# ====== Functions of the other op families ======


def w2_like(x, w1, b1, w2, b2, t):
    """The W2 benchmark's network in small: ReLU hidden, softmax cross-entropy."""
    z = F.relu(x @ w1 + b1) @ w2 + b2
    return -(t * F.log_softmax(z, dim=1)).sum() / z.shape[0]


def smooth(x):
    return (torch.sigmoid(x) * torch.exp(0.5 * x)).sum() + torch.log(x * x + 1.0).sum()


def softmax_lse(x, k):
    return (torch.softmax(x, dim=1) * k).sum() + torch.logsumexp(x, dim=0).sum()


def main():
    mlp_in = [("x", (6, 3)), ("w1", (3, 5)), ("b1", (5,)), ("w2", (5, 2)), ("b2", (2,))]
    params = {"w1", "b1", "w2", "b2"}
    case("mlp_loss", mlp_loss, mlp_in + [("y", (6, 2))], params, uniform)
    case("mlp_loss_x", mlp_loss, mlp_in + [("y", (6, 2))], params | {"x"}, uniform)
    case("tanh_cube_x", tanh_cube_x, [("x", (7,))], {"x"}, lambda n, s: rand(s, -2.0, 2.0))
    case(
        "matmul_chain",
        matmul_chain,
        [("a", (3, 4)), ("b", (4, 5)), ("c", (5, 2)), ("k", (3, 2))],
        {"a", "b", "c"},
        uniform,
    )
    case("broadcast", broadcast, [("x", (4, 3)), ("b", (3,)), ("c", (4, 1))], {"x", "b", "c"}, uniform)
    case("mlp_out", mlp_out, mlp_in, params, uniform, kind="jvp")
    case("mlp_out_x", mlp_out, mlp_in, params | {"x"}, uniform, kind="jvp")
    case(
        "w2_like",
        w2_like,
        mlp_in[:1] + [("w1", (3, 6)), ("b1", (6,)), ("w2", (6, 4)), ("b2", (4,)), ("t", (6, 4))],
        params,
        lambda n, s: one_hot(*s) if n == "t" else rand(s),
    )
    case("smooth", smooth, [("x", (2, 5))], {"x"}, lambda n, s: rand(s, -2.0, 2.0))
    case("softmax_lse", softmax_lse, [("x", (3, 4)), ("k", (3, 4))], {"x"}, uniform)

    doc = {"generator": "tools/torch_higher_ref.py", "torch": torch.__version__, "cases": CASES}
    here = os.path.dirname(os.path.abspath(__file__))
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "tests", "data", "torch_higher_ref.json")
    with open(path, "w") as f:
        json.dump(doc, f, separators=(",", ":"), allow_nan=False)
        f.write("\n")
    print("wrote %d cases to %s" % (len(CASES), os.path.normpath(path)))


if __name__ == "__main__":
    main()
