#!/usr/bin/python3
"""Reference values for tests/test_ops_more.c from PyTorch (float64).

Prints C initialisers: for each case the forward output and the gradient of
sum(out * w) for a fixed weight w, for the elementwise ops, the axis
reductions and the losses. Run with Debian's python3-torch:

    /usr/bin/python3 tools/ewops_torch_ref.py > /tmp/ref.txt

and paste the tables into the test (CI has no torch).
"""
import math

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)


def c(v):
    v = float(v)
    if math.isnan(v):
        return "NAN"
    if math.isinf(v):
        return "INFINITY" if v > 0 else "-INFINITY"
    return repr(v)


def arr(t):
    return "{" + ", ".join(c(v) for v in t.reshape(-1).tolist()) + "}"


X = [-2.5, -1.0, -0.3, 0.0, 0.4, 1.0, 3.0]
W = [0.5, -1.25, 2.0, 0.75, -0.5, 1.5, 1.0]

UNARY = [
    ("add_scalar 0.75", lambda x: x + 0.75),
    ("pow 0", lambda x: x.pow(0.0)),
    ("pow 1", lambda x: x.pow(1.0)),
    ("pow 2", lambda x: x.pow(2.0)),
    ("pow 3", lambda x: x.pow(3.0)),
    ("pow -2", lambda x: x.pow(-2.0)),
    ("pow 0.5", lambda x: x.pow(0.5)),
    ("pow -0.5", lambda x: x.pow(-0.5)),
    ("pow -1", lambda x: x.pow(-1.0)),
    ("pow 2.5", lambda x: x.pow(2.5)),
    ("pow 0.3", lambda x: x.pow(0.3)),
    ("pow -1.7", lambda x: x.pow(-1.7)),
    ("abs", torch.abs),
    ("sqrt", torch.sqrt),
    ("sin", torch.sin),
    ("cos", torch.cos),
    ("clamp -1 1", lambda x: torch.clamp(x, -1.0, 1.0)),
    ("clamp 0.5 -0.5", lambda x: torch.clamp(x, 0.5, -0.5)),
    ("leaky_relu 0.1", lambda x: F.leaky_relu(x, 0.1)),
    ("leaky_relu -0.5", lambda x: F.leaky_relu(x, -0.5)),
    ("elu 1", lambda x: F.elu(x, 1.0)),
    ("elu 0.5", lambda x: F.elu(x, 0.5)),
    ("gelu", lambda x: F.gelu(x)),
    ("gelu tanh", lambda x: F.gelu(x, approximate="tanh")),
    ("silu", F.silu),
    ("softplus", lambda x: F.softplus(x, beta=1, threshold=1e9)),
]

print("/* Unary ops on X = %s with weights W = %s */" % (X, W))
for name, f in UNARY:
    x = torch.tensor(X, requires_grad=True)
    y = f(x)
    (y * torch.tensor(W)).sum().backward()
    print('    {"%s", %s,\n     %s},' % (name, arr(y.detach()), arr(x.grad)))

# maximum / minimum: a [2x3], b [3] broadcast, with ties and a NaN.
A = [[1.0, 2.0, -1.0], [0.5, float("nan"), 3.0]]
B = [1.0, 2.5, -1.0]
WB = [[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]]
for name, f in [("maximum", torch.maximum), ("minimum", torch.minimum)]:
    a = torch.tensor(A, requires_grad=True)
    b = torch.tensor(B, requires_grad=True)
    y = f(a, b)
    (y * torch.tensor(WB)).sum().backward()
    print('/* %s */ %s, %s, %s' % (name, arr(y.detach()), arr(a.grad), arr(b.grad)))

# Reductions of a [2x3x4] with ties along every axis, weights cos(0.7k + 0.3).
XR = [[[1.0, 3, 3, -2], [0, 5, 5, 1], [2, 3, -1, 1]],
      [[4, 4, 0, 0], [-3, 2, 7, 7], [4, 1, 0, -5]]]
for name, f in [("max_axis 1", lambda x: x.max(1).values),
                ("max_axis -1 keepdim", lambda x: x.max(-1, keepdim=True).values),
                ("min_axis 0", lambda x: x.min(0).values),
                ("min_axis -2", lambda x: x.min(-2).values),
                ("mean_axis 1", lambda x: x.mean(1)),
                ("mean_axis -1 keepdim", lambda x: x.mean(-1, keepdim=True)),
                ("logsumexp 2", lambda x: torch.logsumexp(x / 3, 2)),
                ("logsumexp 0 keepdim", lambda x: torch.logsumexp(x / 3, 0, keepdim=True))]:
    x = torch.tensor(XR, requires_grad=True)
    y = f(x)
    w = torch.cos(0.7 * torch.arange(y.numel()) + 0.3).reshape(y.shape)
    (y * w).sum().backward()
    print('/* %s %s */ %s,\n     %s' % (name, list(y.shape), arr(y.detach()), arr(x.grad)))
x = torch.tensor(XR)
print("/* argmax 1 */", arr(x.argmax(1)), "/* argmax -1 */", arr(x.argmax(-1)))
xn = torch.tensor([[1.0, float("nan"), 3.0, float("nan")], [-1.0, 2.0, 2.0, 0.0]], requires_grad=True)
y = xn.max(1).values
(y * torch.tensor([2.0, 3.0])).sum().backward()
print("/* max with NaN */", arr(y.detach()), arr(xn.grad), arr(xn.detach().argmax(1)),
      arr(xn.detach().min(1).values))
xi = torch.tensor([[float("-inf"), float("-inf")], [float("inf"), 1.0], [1000.0, 1000.0]])
print("/* logsumexp of infinities */", arr(torch.logsumexp(xi, 1)))
print("/* logsumexp of empty */", arr(torch.logsumexp(torch.zeros(2, 0), 1)),
      "mean", arr(torch.zeros(2, 0).mean(1)))

# Losses.
Z = [[0.2, -1.0, 3.0, 0.5], [1.5, 1.5, -0.5, 0.0], [-2.0, 0.3, 0.7, 4.0]]
L = [2, 0, 3]
z = torch.tensor(Z, requires_grad=True)
y = F.cross_entropy(z, torch.tensor(L))
(y * 1.5).backward()
print("/* cross_entropy x1.5 */", c(y), arr(z.grad))
XB = [[0.3, -2.0, 40.0], [-0.7, 1.2, 0.0]]
TB = [[1.0, 0.25, 0.0], [0.0, 0.5, 1.0]]
xb = torch.tensor(XB, requires_grad=True)
tb = torch.tensor(TB, requires_grad=True)
y = F.binary_cross_entropy_with_logits(xb, tb)
(y * 1.5).backward()
print("/* bce x1.5 */", c(y), arr(xb.grad), arr(tb.grad))
P = [[0.5, -1.0, 2.0], [1.0, 3.0, -0.25]]
T = [[0.0, -1.0, 0.5], [2.0, 0.5, 0.25]]
for name, f in [("l1", F.l1_loss), ("huber 1", lambda p, t: F.huber_loss(p, t, delta=1.0)),
                ("huber 0.5", lambda p, t: F.huber_loss(p, t, delta=0.5))]:
    p = torch.tensor(P, requires_grad=True)
    t = torch.tensor(T, requires_grad=True)
    y = f(p, t)
    (y * 1.5).backward()
    print("/* %s x1.5 */" % name, c(y), arr(p.grad), arr(t.grad))
e = torch.zeros(0, requires_grad=True)
print("/* empty losses */", c(F.l1_loss(e, e)), c(F.huber_loss(e, e)),
      c(F.binary_cross_entropy_with_logits(e, e)),
      c(F.cross_entropy(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))))
