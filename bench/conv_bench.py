#!/usr/bin/python3
"""PyTorch side of bench/conv_bench.c.

Times forward + backward of the same layers as conv_bench.c (ORDER CASES:
same table, batch 100, float32) in eager mode and prints "name median_ms"
per layer on stdout. Every step sets the gradients to None, runs the layer
and backward from a fixed seed dC/dY.

Run by conv_bench; by hand:
    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/conv_bench.py --threads 1
"""
import argparse
import time

import torch
import torch.nn.functional as F

BATCH = 100
# ORDER CASES: name, input channels, plane side, output channels (0: pool), x needs grad.
CASES = (
    ("conv1", 1, 28, 32, False),
    ("conv2", 32, 14, 64, True),
    ("pool1", 32, 28, 0, True),
    ("pool2", 64, 14, 0, True),
)


def median(xs):
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=11)
    ap.add_argument("--warmup", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(42)
    for name, c, h, o, x_grad in CASES:
        x = (torch.rand(BATCH, c, h, h) * 2 - 1).requires_grad_(x_grad)
        params = []
        if o:
            w = (torch.rand(o, c, 3, 3) * 2 - 1).requires_grad_()
            b = (torch.rand(o) * 2 - 1).requires_grad_()
            params = [w, b]
            seed = torch.rand(BATCH, o, h, h) * 2 - 1
        else:
            seed = torch.rand(BATCH, c, h // 2, h // 2) * 2 - 1

        def step():
            for t in params + [x]:
                t.grad = None
            y = F.conv2d(x, w, b, padding=1) if o else F.max_pool2d(x, 2)
            y.backward(seed)

        for _ in range(a.warmup):
            step()
        per = []
        for _ in range(a.reps):
            t0 = time.perf_counter()
            step()
            per.append(1e3 * (time.perf_counter() - t0))
        print("%s %.4f" % (name, median(per)), flush=True)


if __name__ == "__main__":
    main()
