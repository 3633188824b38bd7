#!/usr/bin/python3
"""Writes tests/data/torch_ref.json: PyTorch's values and gradients for every op.

tests/test_torch_ref.c records each case through the tapegrad C API and compares
against these numbers, so CI checks agreement with PyTorch without needing it.
Run with Debian's python3-torch:

    /usr/bin/python3 tools/torch_ref.py            (writes tests/data/torch_ref.json)

Each case holds the op's inputs (short decimals, so the C side parses exactly
the same doubles), its parameters, the forward output, a weight W of the
output's shape, and the gradients of sum(out * W) with respect to every float
input that requires grad, all in float64. Inputs and W come from a seeded
random.Random, so a rerun writes the same file.
"""

import json
import math
import os
import random
import sys

import torch
import torch.nn.functional as F

F64 = torch.float64
CASES = []
RNG = random.Random(20260218)


def vals(n, lo=-1.0, hi=1.0, digits=4):
    """n short decimals uniform in [lo, hi)."""
    return [round(RNG.uniform(lo, hi), digits) for _ in range(n)]


def rand(shape, lo=-1.0, hi=1.0, digits=4):
    return torch.tensor(vals(math.prod(shape), lo, hi, digits), dtype=F64).reshape(shape)


def lit(shape, data):
    return torch.tensor(data, dtype=F64).reshape(shape)


def idx(shape, data):
    return torch.tensor(data, dtype=torch.int64).reshape(shape)


def enc(t):
    """A tensor as {"shape", "data"} (row-major), with "dtype": "i64" for integers."""
    t = t.detach().contiguous()
    j = {"shape": list(t.shape), "data": t.reshape(-1).tolist()}
    if t.dtype == torch.int64:
        j["dtype"] = "i64"
    else:
        assert t.dtype == F64
    return j


def case(op, name, inputs, fn, params=None, frozen=(), after=()):
    """Records one case. inputs: list of (name, tensor); float inputs require grad
    unless named in frozen. fn(*leaves) returns the output. after names inputs
    that fn updates in place (batch_norm's running statistics): their values
    after the call go into the case."""
    leaves = []
    for n, t in inputs:
        leaf = t.clone()
        if leaf.dtype == F64 and n not in frozen:
            leaf.requires_grad_(True)
        leaves.append(leaf)
    out = fn(*leaves)
    c = {"op": op, "name": name, "params": params or {}, "inputs": [], "out": enc(out)}
    for (n, t), leaf in zip(inputs, leaves):
        j = enc(t)
        j["name"] = n
        j["requires_grad"] = leaf.requires_grad
        c["inputs"].append(j)
    if after:
        c["after"] = {n: enc(leaf) for (n, _), leaf in zip(inputs, leaves) if n in after}
    wrt = [(n, leaf) for (n, _), leaf in zip(inputs, leaves) if leaf.requires_grad]
    if out.dtype == F64 and wrt:
        w = rand(out.shape)
        gs = torch.autograd.grad(out, [leaf for _, leaf in wrt], grad_outputs=w,
                                 allow_unused=True)
        c["weight"] = enc(w)
        c["grads"] = {n: enc(g if g is not None else torch.zeros_like(leaf))
                      for (n, leaf), g in zip(wrt, gs)}
    CASES.append(c)


def unary(op, name, x, fn, params=None):
    case(op, name, [("x", x)], fn, params)


# ====== API.md: the v0.1 ops ======

case("matmul", "2d", [("a", rand([3, 4])), ("b", rand([4, 2]))], torch.matmul)
case("matmul", "batched_3x2", [("a", rand([2, 3, 4])), ("b", rand([4, 5]))], torch.matmul)
case("matmul", "batched_2x3", [("a", rand([3, 4])), ("b", rand([2, 4, 2]))], torch.matmul)
case("matmul", "batched_broadcast_4x3", [("a", rand([2, 1, 3, 4])), ("b", rand([3, 4, 2]))],
     torch.matmul)

unary("transpose", "3x4", rand([3, 4]), torch.t)
unary("transpose", "1x5", rand([1, 5]), torch.t)

for op, f in (("add", torch.add), ("sub", torch.sub), ("mul", torch.mul)):
    case(op, "same", [("a", rand([2, 3])), ("b", rand([2, 3]))], f)
    case(op, "row", [("a", rand([2, 3])), ("b", rand([3]))], f)
    case(op, "both_stretch", [("a", rand([2, 1, 3])), ("b", rand([4, 1]))], f)
    case(op, "scalar", [("a", rand([])), ("b", rand([2, 2]))], f)
case("div", "same", [("a", rand([2, 3])), ("b", rand([2, 3], 0.5, 2.0))], torch.div)
case("div", "row", [("a", rand([2, 3])), ("b", lit([3], [-1.25, 0.75, 1.5]))], torch.div)
case("div", "both_stretch", [("a", rand([2, 1, 3])), ("b", rand([4, 1], 0.5, 2.0))], torch.div)

case("add_bias", "3x4", [("x", rand([3, 4])), ("b", rand([4]))], torch.add)
case("add_bias", "1x2", [("x", rand([1, 2])), ("b", rand([2]))], torch.add)

unary("scale", "pos", rand([2, 3]), lambda x: x * 2.5, {"s": 2.5})
unary("scale", "neg", rand([4]), lambda x: x * -0.3, {"s": -0.3})
unary("neg", "2x3", rand([2, 3]), torch.neg)
unary("neg", "scalar", rand([]), torch.neg)
unary("sigmoid", "wide", rand([2, 5], -8, 8), torch.sigmoid)
unary("sigmoid", "saturated", lit([4], [-40.0, -1.0, 0.0, 40.0]), torch.sigmoid)
unary("tanh", "wide", rand([2, 5], -4, 4), torch.tanh)
unary("tanh", "saturated", lit([3], [-25.0, 0.0, 25.0]), torch.tanh)
unary("relu", "with_zeros", lit([2, 3], [-1.5, 0.0, 0.25, 0.0, 2.0, -0.125]), torch.relu)
unary("relu", "random", rand([3, 4]), torch.relu)
unary("exp", "2x3", rand([2, 3], -3, 3), torch.exp)
unary("exp", "large", lit([3], [-700.0, 0.0, 700.0]), torch.exp)
unary("log", "2x3", rand([2, 3], 0.05, 5), torch.log)
unary("log", "wide", lit([3], [1e-300, 1.0, 1e300]), torch.log)
unary("square", "2x3", rand([2, 3], -2, 2), torch.square)
unary("square", "scalar", rand([]), torch.square)

unary("sum", "2x3x4", rand([2, 3, 4]), torch.sum)
unary("sum", "empty", rand([0, 3]), torch.sum)
unary("sum", "scalar", rand([]), torch.sum)
unary("mean", "2x3", rand([2, 3]), torch.mean)
unary("mean", "5", rand([5]), torch.mean)
for name, shape, axis, keep in (("mid", [2, 3, 4], 1, False), ("last_keepdim", [2, 3, 4], -1, True),
                                ("rank1", [3], 0, False), ("empty", [0, 3], 1, False)):
    unary("sum_axis", name, rand(shape), lambda x: torch.sum(x, axis, keep),
          {"axis": axis, "keepdim": keep})
for op, f in (("softmax", F.softmax), ("log_softmax", F.log_softmax)):
    unary(op, "2x5", rand([2, 5], -3, 3), lambda x: f(x, -1))
    unary(op, "rank1", rand([3], -3, 3), lambda x: f(x, -1))
    unary(op, "huge", lit([2, 3], [1000.0, 999.5, -1000.0, -5e4, -5e4 + 1, -5e4 - 2]),
          lambda x: f(x, -1))

case("frobenius_loss", "2x3", [("pred", rand([2, 3])), ("target", rand([2, 3]))],
     lambda p, t: ((p - t) ** 2).sum())
case("frobenius_loss", "rank1", [("pred", rand([5])), ("target", rand([5]))],
     lambda p, t: ((p - t) ** 2).sum())
case("mse_loss", "2x3", [("pred", rand([2, 3])), ("target", rand([2, 3]))], F.mse_loss)
case("mse_loss", "4", [("pred", rand([4])), ("target", rand([4]))], F.mse_loss)


def probs(n, c):
    p = rand([n, c], 0.05, 1)
    return p / p.sum(1, keepdim=True)


def soft_ce(x, t):
    return -(t * F.log_softmax(x, -1)).sum() / x.shape[0]


case("softmax_cross_entropy", "3x4", [("logits", rand([3, 4], -3, 3)), ("target", probs(3, 4))],
     soft_ce)
case("softmax_cross_entropy", "one_hot",
     [("logits", rand([2, 3], -3, 3)), ("target", lit([2, 3], [0, 1, 0, 1, 0, 0]))], soft_ce)

# ====== API-2.md: shape and indexing ops ======

for name, shape, new in (("infer", [2, 3, 4], [4, -1]), ("split", [6], [3, 1, 2]),
                         ("to_scalar", [1, 1], [])):
    unary("reshape", name, rand(shape), lambda x: x.reshape(new), {"shape": new})
for name, shape, perm in (("3d", [2, 3, 4], [2, 0, 1]), ("4d", [2, 1, 3, 2], [3, 1, 0, 2]),
                          ("negative", [2, 3, 2], [-1, 0, 1])):
    unary("permute", name, rand(shape), lambda x: x.permute(perm), {"perm": perm})


def py_slice(x, axis, start, stop, step):
    return x[(slice(None),) * (axis % x.dim()) + (slice(start, stop, step),)]


for name, shape, axis, start, stop, step in (
        ("plain", [5, 4], 0, 1, 4, 1),
        ("negative_start_out_of_range_stop", [3, 6], -1, -4, 100, 2),
        ("out_of_range_start_negative_stop", [7, 2], 0, -100, -1, 3),
        ("empty", [2, 5, 2], 1, 3, 1, 1)):
    unary("slice", name, rand(shape), lambda x: py_slice(x, axis, start, stop, step),
          {"axis": axis, "start": start, "stop": stop, "step": step})

case("concat", "three_axis0", [("x0", rand([2, 3])), ("x1", rand([1, 3])), ("x2", rand([3, 3]))],
     lambda *xs: torch.cat(xs, 0), {"axis": 0})
case("concat", "last_axis", [("x0", rand([2, 1])), ("x1", rand([2, 3]))],
     lambda *xs: torch.cat(xs, -1), {"axis": -1})
case("concat", "empty_piece", [("x0", rand([2, 0, 2])), ("x1", rand([2, 2, 2]))],
     lambda *xs: torch.cat(xs, 1), {"axis": 1})
case("stack", "axis0", [("x0", rand([2, 3])), ("x1", rand([2, 3]))],
     lambda *xs: torch.stack(xs, 0), {"axis": 0})
case("stack", "last_axis", [("x0", rand([2, 3])), ("x1", rand([2, 3])), ("x2", rand([2, 3]))],
     lambda *xs: torch.stack(xs, -1), {"axis": -1})
case("stack", "middle", [("x0", rand([3, 2, 2])), ("x1", rand([3, 2, 2]))],
     lambda *xs: torch.stack(xs, 1), {"axis": 1})

for name, shape, new in (("new_axes", [3, 1], [2, 3, 4]), ("keep", [1, 4], [3, -1]),
                         ("scalar", [], [2, 2])):
    unary("expand", name, rand(shape), lambda x: x.expand(new), {"shape": new})


def torch_pad(before, after):
    """F.pad takes (before, after) pairs from the last axis backwards."""
    pairs = []
    for b, a in reversed(list(zip(before, after))):
        pairs += [b, a]
    return pairs


for name, shape, before, after, value in (("2d", [2, 3], [1, 0], [0, 2], 0.5),
                                          ("3d", [2, 2, 2], [0, 1, 0], [1, 0, 2], 0.0),
                                          ("empty_input", [0, 2], [1, 1], [1, 0], -1.0)):
    unary("pad", name, rand(shape),
          lambda x: F.pad(x, torch_pad(before, after), value=value),
          {"before": before, "after": after, "value": value})


def select(x, axis, i):
    """torch's advanced indexing, which (unlike index_select) wraps negative indices."""
    return x[(slice(None),) * (axis % x.dim()) + (i,)]


for name, shape, axis, ids in (("repeats_axis0", [4, 3], 0, [2, 0, 2, 3]),
                               ("last_axis", [2, 3], -1, [1, 1, 0, 1, 2]),
                               ("negative_index", [2, 3, 2], 1, [2, -1, -3])):
    case("index_select", name, [("x", rand(shape)), ("idx", idx([len(ids)], ids))],
         lambda x, i: select(x, axis, i), {"axis": axis})

case("embedding", "repeats", [("table", rand([5, 3])), ("idx", idx([4], [1, 4, 1, 0]))],
     lambda t, i: F.embedding(i, t))
case("embedding", "scalar_index", [("table", rand([4, 2])), ("idx", idx([], [2]))],
     lambda t, i: F.embedding(i, t))
case("embedding", "2d_index", [("table", rand([6, 4])), ("idx", idx([2, 3], [5, 0, 3, 3, 2, 5]))],
     lambda t, i: F.embedding(i, t))


def where(c, a, b):
    return torch.where(c != 0, a, b)


case("where", "same_shape",
     [("cond", lit([2, 3], [1, 0, -2, 0, 0.5, 1])), ("a", rand([2, 3])), ("b", rand([2, 3]))],
     where, frozen=("cond",))
case("where", "broadcast_all",
     [("cond", lit([1, 3], [0, 1, 1])), ("a", rand([2, 1])), ("b", rand([]))],
     where, frozen=("cond",))

# ====== API-2.md: elementwise ops ======

unary("add_scalar", "pos", rand([2, 3]), lambda x: x + 1.5, {"s": 1.5})
unary("add_scalar", "neg", rand([3]), lambda x: x + -0.25, {"s": -0.25})
unary("pow", "square_with_zero", lit([2, 3], [-1.5, 0.0, 0.5, 1.25, -0.75, 2.0]),
      lambda x: torch.pow(x, 2.0), {"p": 2.0})
unary("pow", "cube_negative", rand([4], -2, 2), lambda x: torch.pow(x, 3.0), {"p": 3.0})
unary("pow", "sqrt", rand([2, 3], 0.1, 4), lambda x: torch.pow(x, 0.5), {"p": 0.5})
unary("pow", "negative_fraction", rand([5], 0.2, 3), lambda x: torch.pow(x, -1.5), {"p": -1.5})
# torch's derivative of x^0 is 0 everywhere, x = 0 included (not 0 * 0^-1).
unary("pow", "zero_exponent", lit([4], [-1.5, 0.0, 0.5, 2.0]), lambda x: torch.pow(x, 0.0),
      {"p": 0.0})
unary("abs", "with_zero", lit([5], [-1.5, 0.0, 0.25, -0.0, 3.0]), torch.abs)
unary("abs", "random", rand([2, 3]), torch.abs)
unary("sqrt", "2x3", rand([2, 3], 0.01, 9), torch.sqrt)
unary("sqrt", "wide", lit([3], [1e-200, 2.0, 1e200]), torch.sqrt)
unary("sin", "2x3", rand([2, 3], -4, 4), torch.sin)
unary("sin", "large", lit([2], [100.0, -1000.5]), torch.sin)
unary("cos", "2x3", rand([2, 3], -4, 4), torch.cos)
unary("cos", "large", lit([2], [100.0, -1000.5]), torch.cos)
unary("clamp", "at_bounds", lit([7], [-1.0, -0.5, -0.25, 0.0, 0.5, 0.75, 0.4999]),
      lambda x: torch.clamp(x, -0.5, 0.5), {"lo": -0.5, "hi": 0.5})
unary("clamp", "random", rand([3, 4], -3, 3), lambda x: torch.clamp(x, -1.0, 2.0),
      {"lo": -1.0, "hi": 2.0})
for op, f in (("maximum", torch.maximum), ("minimum", torch.minimum)):
    case(op, "ties", [("a", lit([5], [1.0, 2.0, -3.0, 0.0, 0.5])),
                      ("b", lit([5], [1.0, 1.5, -3.0, 0.25, 0.5]))], f)
    case(op, "broadcast_ties", [("a", lit([2, 3], [0.5, -1.0, 2.0, 0.25, 0.0, -2.0])),
                                ("b", lit([3], [0.5, 0.0, -2.0]))], f)
    case(op, "random", [("a", rand([2, 1, 3])), ("b", rand([4, 1]))], f)
unary("leaky_relu", "with_zero", lit([5], [-2.0, -0.5, 0.0, 0.5, 2.0]),
      lambda x: F.leaky_relu(x, 0.01), {"slope": 0.01})
unary("leaky_relu", "slope_0.2", rand([2, 3]), lambda x: F.leaky_relu(x, 0.2), {"slope": 0.2})
unary("elu", "with_zero", lit([5], [-3.0, -0.5, 0.0, 0.5, 2.0]), lambda x: F.elu(x, 1.0),
      {"alpha": 1.0})
unary("elu", "alpha_0.5", rand([2, 3], -3, 3), lambda x: F.elu(x, 0.5), {"alpha": 0.5})
for tanh in (False, True):
    unary("gelu", "tanh" if tanh else "erf", rand([3, 4], -5, 5),
          lambda x: F.gelu(x, approximate="tanh" if tanh else "none"), {"tanh_approx": tanh})
    unary("gelu", ("tanh" if tanh else "erf") + "_tails", lit([4], [-12.0, -6.5, 0.0, 9.0]),
          lambda x: F.gelu(x, approximate="tanh" if tanh else "none"), {"tanh_approx": tanh})
unary("silu", "2x3", rand([2, 3], -6, 6), F.silu)
unary("silu", "tails", lit([3], [-50.0, 0.0, 50.0]), F.silu)
# The contract's softplus has no threshold cut (torch's default switches to x
# above 20, an error of up to e^-20 there): log(e^0 + e^x) is its exact value.
softplus = lambda x: torch.logaddexp(x, torch.zeros_like(x))
unary("softplus", "2x3", rand([2, 3], -5, 5), softplus)
unary("softplus", "tails", lit([4], [-40.0, -20.5, 25.0, 40.0]), softplus)

# ====== API-2.md: reductions along an axis ======

for name, shape, axis, keep in (("mid", [2, 3, 4], 1, False), ("last_keepdim", [2, 3, 4], -1, True),
                                ("empty_rows", [0, 3], 1, False)):
    unary("mean_axis", name, rand(shape), lambda x: torch.mean(x, axis, keep),
          {"axis": axis, "keepdim": keep})

TIES = lit([3, 4], [1.0, 3.0, 3.0, -1.0, 2.0, 2.0, 2.0, 2.0, -0.5, 0.0, 0.0, -0.5])


def first_extreme(x, axis, largest):
    """torch.max/min along an axis, checked to pick the first extreme among ties,
    which is what the contract promises."""
    v, i = (torch.max if largest else torch.min)(x, axis)
    m = x.detach().movedim(axis, -1).reshape(-1, x.shape[axis])
    for row, k in zip(m.tolist(), i.reshape(-1).tolist()):
        want = max(row) if largest else min(row)
        assert k == row.index(want), "torch picked a later extreme"
    return v, i


for op, largest in (("max_axis", True), ("min_axis", False)):
    for name, x, axis, keep in (("ties_last", TIES, -1, False), ("ties_first", TIES, 0, True),
                                ("random", rand([2, 3, 4]), 1, False)):
        unary(op, name, x,
              lambda x: (first_extreme(x, axis, largest)[0].unsqueeze(axis) if keep
                         else first_extreme(x, axis, largest)[0]),
              {"axis": axis, "keepdim": keep})
for name, x, axis, keep in (("ties_last", TIES, -1, False), ("ties_first", TIES, 0, True),
                            ("random", rand([2, 3, 4]), -2, False)):
    unary("argmax", name, x,
          lambda x: (first_extreme(x, axis, True)[1].unsqueeze(axis) if keep
                     else first_extreme(x, axis, True)[1]),
          {"axis": axis, "keepdim": keep})
for name, x, axis, keep in (("2x5", rand([2, 5], -3, 3), -1, False),
                            ("keepdim_axis0", rand([3, 2, 2], -3, 3), 0, True),
                            ("huge", lit([2, 3], [1000.0, 1000.5, 999.0, -800.0, -801.0, 0.0]), 1,
                             False)):
    unary("logsumexp", name, x, lambda x: torch.logsumexp(x, axis, keep),
          {"axis": axis, "keepdim": keep})

# ====== API-2.md: neural-network ops ======


def conv_params(stride, padding, dilation, groups):
    return {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}


case("conv1d", "plain", [("x", rand([1, 2, 5])), ("w", rand([3, 2, 2]))],
     lambda x, w: F.conv1d(x, w), conv_params([1], [0], [1], 1))
case("conv1d", "stride_pad_dilation_groups_bias",
     [("x", rand([2, 4, 9])), ("w", rand([6, 2, 3])), ("b", rand([6]))],
     lambda x, w, b: F.conv1d(x, w, b, 2, 1, 2, 2), conv_params([2], [1], [2], 2))
case("conv1d", "depthwise_bias", [("x", rand([1, 3, 6])), ("w", rand([3, 1, 3])), ("b", rand([3]))],
     lambda x, w, b: F.conv1d(x, w, b, 1, 2, 1, 3), conv_params([1], [2], [1], 3))
case("conv2d", "plain", [("x", rand([1, 1, 4, 4])), ("w", rand([2, 1, 3, 3]))],
     lambda x, w: F.conv2d(x, w), conv_params([1, 1], [0, 0], [1, 1], 1))
case("conv2d", "stride_pad_dilation_groups_bias",
     [("x", rand([2, 4, 6, 5])), ("w", rand([4, 2, 3, 2])), ("b", rand([4]))],
     lambda x, w, b: F.conv2d(x, w, b, (2, 1), (1, 0), (1, 2), 2),
     conv_params([2, 1], [1, 0], [1, 2], 2))
case("conv2d", "groups3_pad_bias", [("x", rand([1, 3, 5, 5])), ("w", rand([6, 1, 2, 2])),
                                    ("b", rand([6]))],
     lambda x, w, b: F.conv2d(x, w, b, 1, 1, 1, 3), conv_params([1, 1], [1, 1], [1, 1], 3))

# One decimal in [-1, 1) gives many ties inside the pooling windows.
for op, f in (("max_pool2d", F.max_pool2d), ("avg_pool2d", F.avg_pool2d)):
    unary(op, "kernel2_default_stride", rand([1, 2, 5, 5], digits=1), lambda x: f(x, (2, 2)),
          {"kernel": [2, 2], "stride": None, "padding": None})
    unary(op, "stride_padding", rand([2, 1, 5, 4], digits=1),
          lambda x: f(x, (3, 2), (2, 1), (1, 1)),
          {"kernel": [3, 2], "stride": [2, 1], "padding": [1, 1]})
unary("max_pool2d", "all_equal", lit([1, 1, 3, 3], [0.5] * 9), lambda x: F.max_pool2d(x, 2, 1),
      {"kernel": [2, 2], "stride": [1, 1], "padding": None})

case("layer_norm", "affine", [("x", rand([2, 3, 4])), ("gamma", rand([4])), ("beta", rand([4]))],
     lambda x, g, b: F.layer_norm(x, (4,), g, b, 1e-5), {"eps": 1e-5})
case("layer_norm", "plain", [("x", rand([3, 5], -3, 3))],
     lambda x: F.layer_norm(x, (5,), None, None, 1e-3), {"eps": 1e-3})


def batch_norm(training, momentum, eps):
    return lambda x, g, b, rm, rv: F.batch_norm(x, rm, rv, g, b, training, momentum, eps)


for name, shape, training, momentum in (("train_2d", [4, 3], True, 0.1),
                                        ("train_4d", [2, 3, 2, 2], True, 0.2),
                                        ("eval_4d", [2, 3, 2, 2], False, 0.1)):
    case("batch_norm", name,
         [("x", rand(shape, -2, 2)), ("gamma", rand([3], 0.5, 1.5)), ("beta", rand([3])),
          ("running_mean", rand([3])), ("running_var", rand([3], 0.5, 2))],
         batch_norm(training, momentum, 1e-5),
         {"training": training, "momentum": momentum, "eps": 1e-5},
         frozen=("running_mean", "running_var"), after=("running_mean", "running_var"))

# torch's dropout masks come from its own generator, so only p = 0 can match.
unary("dropout", "p0_identity", rand([2, 3]), lambda x: F.dropout(x, 0.0, True), {"p": 0.0})

# ====== API-2.md: losses ======

case("cross_entropy", "4x5", [("logits", rand([4, 5], -3, 3)), ("labels", idx([4], [1, 0, 4, 1]))],
     F.cross_entropy)
case("cross_entropy", "huge_logits",
     [("logits", lit([2, 3], [1000.0, -1000.0, 999.0, -5.0, 30.0, 29.5])),
      ("labels", idx([2], [2, 0]))], F.cross_entropy)
case("bce_with_logits", "2x3", [("logits", rand([2, 3], -4, 4)), ("target", rand([2, 3], 0, 1))],
     F.binary_cross_entropy_with_logits)
case("bce_with_logits", "large_logits",
     [("logits", lit([4], [-40.0, -0.5, 35.0, 800.0])), ("target", lit([4], [0.0, 1.0, 0.25, 1.0]))],
     F.binary_cross_entropy_with_logits)
case("l1_loss", "with_tie", [("pred", lit([2, 3], [0.5, -1.0, 2.0, 0.25, 0.0, 1.5])),
                             ("target", lit([2, 3], [0.5, 1.0, -2.0, 0.75, 0.0, 1.0]))], F.l1_loss)
case("l1_loss", "random", [("pred", rand([5])), ("target", rand([5]))], F.l1_loss)
case("huber_loss", "delta1_at_boundary",
     [("pred", lit([6], [0.0, 1.0, -2.5, 0.5, 3.0, -1.0])),
      ("target", lit([6], [1.0, 0.0, 0.0, 0.25, 1.0, -1.0]))],
     lambda p, t: F.huber_loss(p, t, delta=1.0), {"delta": 1.0})
case("huber_loss", "delta0.5", [("pred", rand([2, 3], -2, 2)), ("target", rand([2, 3], -2, 2))],
     lambda p, t: F.huber_loss(p, t, delta=0.5), {"delta": 0.5})
case("full_like", "2x3", [("x", rand([2, 3]))], lambda x: torch.full_like(x, 2.5), {"value": 2.5},
     frozen=("x",))


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "tests", "data",
                                                              "torch_ref.json")
    doc = {"generator": "tools/torch_ref.py", "torch": torch.__version__, "cases": CASES}
    with open(path, "w") as f:
        json.dump(doc, f, separators=(",", ":"), allow_nan=False)
        f.write("\n")
    ops = sorted({c["op"] for c in CASES})
    print("%s: %d cases of %d ops, %d bytes" % (path, len(CASES), len(ops), os.path.getsize(path)))


if __name__ == "__main__":
    main()
