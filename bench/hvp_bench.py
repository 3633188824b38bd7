#!/usr/bin/python3
"""PyTorch side of bench/hvp_bench.c.

Times Hessian-vector products by double backward on the same networks as
hvp_bench.c (ORDER CASES: same table, float32) in eager mode, and the
forward-mode product of the tiny network's output, and prints "key median_us"
per figure on stdout:

    w2_hvp, tiny_hvp   loss, g = autograd.grad(loss, params, create_graph=True),
                       then autograd.grad(<g, v>, params)
    tiny_jvp_fwd       functorch.jvp (forward mode) of the output along one tangent per parameter
    tiny_jvp_dbl       torch.autograd.functional.jvp (double backward), the same product

Run by hvp_bench; by hand:
    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/hvp_bench.py --threads 1
"""
import argparse
import time

import torch
import torch.nn.functional as F

try:
    import functorch
except ImportError:
    functorch = None

# ORDER CASES: name, layer sizes, batch, ReLU + softmax CE (else tanh + 1/2 squared error), iterations.
CASES = (
    ("w2", (784, 256, 128, 10), 64, True, 20),
    ("tiny", (2, 3, 2), 1, False, 2000),
)


def median(xs):
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def timed(fn, iters, reps):
    for _ in range(iters):
        fn()
    per = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        per.append(1e6 * (time.perf_counter() - t0) / iters)
    return median(per)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=11)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(42)
    for name, sizes, batch, relu_ce, iters in CASES:
        x = torch.rand(batch, sizes[0]) * 2 - 1
        if relu_ce:
            y = F.one_hot(torch.randint(sizes[-1], (batch,)), sizes[-1]).float()
        else:
            y = torch.rand(batch, sizes[-1])
        params, vs = [], []
        for i, o in zip(sizes[:-1], sizes[1:]):
            bound = i ** -0.5
            params += [((torch.rand(i, o) * 2 - 1) * bound).requires_grad_(), ((torch.rand(o) * 2 - 1) * bound).requires_grad_()]
            vs += [torch.rand(i, o) * 2 - 1, torch.rand(o) * 2 - 1]

        def forward(*ps):
            h = x
            for l in range(len(ps) // 2):
                h = h @ ps[2 * l] + ps[2 * l + 1]
                if l + 1 < len(ps) // 2:
                    h = torch.relu(h) if relu_ce else torch.tanh(h)
            return h

        def loss(*ps):
            out = forward(*ps)
            if relu_ce:
                return -(y * F.log_softmax(out, dim=1)).sum() / batch
            return 0.5 * ((out - y) ** 2).sum()

        def hvp():
            g = torch.autograd.grad(loss(*params), params, create_graph=True)
            gv = sum((gi * vi).sum() for gi, vi in zip(g, vs))
            return torch.autograd.grad(gv, params)

        print("%s_hvp %.4f" % (name, timed(hvp, iters, a.reps)), flush=True)
        if name == "tiny":
            ps = tuple(p.detach() for p in params)
            if functorch is not None:
                fwd = lambda: functorch.jvp(forward, ps, tuple(vs))
                print("tiny_jvp_fwd %.4f" % timed(fwd, iters, a.reps), flush=True)
            dbl = lambda: torch.autograd.functional.jvp(forward, ps, tuple(vs))
            print("tiny_jvp_dbl %.4f" % timed(dbl, iters, a.reps), flush=True)


if __name__ == "__main__":
    main()
