#!/usr/bin/python3
"""PyTorch side of the tapegrad benchmark.

Runs the same workloads as bench/tg_bench.c (same shapes, float32, same
steps per repetition, same warm-up) in eager mode and prints one JSON object
per line on stdout; tg_bench merges them into its table. Progress goes to
stderr. The workload constants below must stay in step with the ones at the
top of tg_bench.c (ORDER WORKLOADS).

Run by tg_bench --torch (or bench/run.sh); by hand:
    /usr/bin/python3 bench/torch_bench.py --threads 1 --workloads w0,w1
"""
import argparse
import gzip
import json
import os
import resource
import sys
import time

# ORDER WORKLOADS: (warm-up steps, steps per repetition), as in tg_bench.c.
W0_WARMUP, W0_STEPS = 2000, 2000
W1_WARMUP, W1_STEPS = 500, 1000
W2_WARMUP = 100
W3_WARMUP, W3_STEPS = 3, 3
W4_WARMUP, W4_STEPS = 2, 3
W5_WARMUP, W5_STEPS = 3, 5
W4_BATCH, W4_POOL = 100, 4
W5_T, W5_BATCH, W5_EMBED, W5_HIDDEN, W5_VOCAB = 32, 32, 32, 128, 80
W1_BATCH, W1_POOL = 32, 16
W2_BATCH = 64
W3_BATCH = 256
W3_SIZES = (784, 1024, 1024, 10)


def emit(rec):
    print(json.dumps(rec), flush=True)


def log(msg):
    print("torch_bench: " + msg, file=sys.stderr, flush=True)


def maxrss_kb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def median(xs):
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def timed_reps(step, warmup, steps, reps):
    """Seconds per step: median (and spread) over 'reps' runs of 'steps' steps."""
    for i in range(warmup):
        step(i)
    per = []
    k = warmup
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(steps):
            step(k)
            k += 1
        per.append((time.perf_counter() - t0) / steps)
    return per


def record(args, workload, metric, samples, **extra):
    rec = {"engine": "torch", "workload": workload, "threads": args.threads,
           "ftz": args.ftz, "metric": metric, "median": median(samples),
           "min": min(samples), "max": max(samples), "reps": len(samples)}
    rec.update(extra)
    emit(rec)


def init_like_tapegrad(torch, linears, acts):
    """He-uniform weights before a ReLU, Xavier-uniform otherwise, zero biases
    (tg_mlp_new's rule), so both engines start from the same distribution."""
    for lin, act in zip(linears, acts):
        if act == "relu":
            torch.nn.init.kaiming_uniform_(lin.weight, nonlinearity="relu")
        else:
            torch.nn.init.xavier_uniform_(lin.weight)
        torch.nn.init.zeros_(lin.bias)


def mlp(torch, sizes, acts):
    layers, linears = [], []
    mods = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid}
    for i, act in enumerate(acts):
        lin = torch.nn.Linear(sizes[i], sizes[i + 1])
        linears.append(lin)
        layers.append(lin)
        if act != "none":
            layers.append(mods[act]())
    init_like_tapegrad(torch, linears, acts)
    return torch.nn.Sequential(*layers)


def w0(torch, args):
    """2-3-2 network, sigmoid hidden, linear out, C = 1/2 ||y - a||^2, one sample per SGD step."""
    torch.manual_seed(args.seed)
    F = torch.nn.functional
    net = mlp(torch, (2, 3, 2), ("sigmoid", "none"))
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(args.seed)
    xs = [torch.rand(1, 2, generator=g) for _ in range(10)]
    ys = [torch.tensor([[1.0, 0.0]]) if x[0, 0] > x[0, 1] else torch.tensor([[0.0, 1.0]])
          for x in xs]

    def step(i):
        x, y = xs[i % 10], ys[i % 10]
        opt.zero_grad(set_to_none=True)
        loss = 0.5 * F.mse_loss(net(x), y, reduction="sum")
        loss.backward()
        opt.step()

    per = timed_reps(step, W0_WARMUP, W0_STEPS, args.reps)
    record(args, "w0", "s_per_step", per, steps_per_rep=W0_STEPS)


def w1(torch, args):
    """MLP 64-32-10, tanh, MSE, batch 32, SGD."""
    torch.manual_seed(args.seed)
    F = torch.nn.functional
    net = mlp(torch, (64, 32, 10), ("tanh", "none"))
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(args.seed)
    xs = [torch.randn(W1_BATCH, 64, generator=g) for _ in range(W1_POOL)]
    ys = [torch.randn(W1_BATCH, 10, generator=g) for _ in range(W1_POOL)]

    def step(i):
        x, y = xs[i % W1_POOL], ys[i % W1_POOL]
        opt.zero_grad(set_to_none=True)
        loss = F.mse_loss(net(x), y)
        loss.backward()
        opt.step()

    per = timed_reps(step, W1_WARMUP, W1_STEPS, args.reps)
    record(args, "w1", "s_per_step", per, steps_per_rep=W1_STEPS)


def load_idx(np, path, offset):
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


def w2(torch, args):
    """MLP 784-256-128-10, ReLU, softmax CE, Adam lr 1e-3, batch 64, on Fashion-MNIST."""
    import numpy as np
    F = torch.nn.functional
    d = args.data
    try:
        xtr = load_idx(np, os.path.join(d, "train-images-idx3-ubyte.gz"), 16).reshape(-1, 784)
        ytr = load_idx(np, os.path.join(d, "train-labels-idx1-ubyte.gz"), 8)
        xte = load_idx(np, os.path.join(d, "t10k-images-idx3-ubyte.gz"), 16).reshape(-1, 784)
        yte = load_idx(np, os.path.join(d, "t10k-labels-idx1-ubyte.gz"), 8)
    except OSError as e:
        emit({"engine": "torch", "workload": "w2", "threads": args.threads, "error": str(e)})
        return
    n = min(args.w2_train, xtr.shape[0]) if args.w2_train > 0 else xtr.shape[0]
    X = torch.from_numpy(xtr[:n].astype(np.float32) / np.float32(255))
    Y = torch.from_numpy(ytr[:n].astype(np.int64))
    Xte = torch.from_numpy(xte.astype(np.float32) / np.float32(255))
    Yte = torch.from_numpy(yte.astype(np.int64))
    nb = n // W2_BATCH  # the last partial batch is dropped, as in tg_bench.c

    def fresh():
        torch.manual_seed(args.seed)
        net = mlp(torch, (784, 256, 128, 10), ("relu", "relu", "none"))
        return net, torch.optim.Adam(net.parameters(), lr=1e-3)

    def run(net, opt, gen, steps):
        perm = torch.randperm(n, generator=gen)
        for i in range(steps):
            idx = perm[i * W2_BATCH:(i + 1) * W2_BATCH]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(net(X[idx]), Y[idx])
            loss.backward()
            opt.step()

    net, opt = fresh()
    run(net, opt, torch.Generator().manual_seed(args.seed), min(W2_WARMUP, nb))
    per, acc = [], 0.0
    for _ in range(args.w2_reps):
        net, opt = fresh()
        gen = torch.Generator().manual_seed(args.seed)
        for _ in range(args.w2_epochs):
            t0 = time.perf_counter()
            run(net, opt, gen, nb)
            per.append(time.perf_counter() - t0)
        with torch.no_grad():
            acc = (net(Xte).argmax(1) == Yte).float().mean().item()
        log("w2 threads=%d: %.3f s/epoch, test accuracy %.4f" % (args.threads, per[-1], acc))
    record(args, "w2", "s_per_epoch", per, accuracy=acc, epochs=args.w2_epochs,
           train_rows=nb * W2_BATCH, steps_per_epoch=nb, maxrss_kb=maxrss_kb(),
           base_rss_kb=args.base_rss)


def w3(torch, args):
    """MLP 784-1024-1024-10, ReLU, softmax CE, SGD, batch 256, random data."""
    torch.manual_seed(args.seed)
    F = torch.nn.functional
    net = mlp(torch, W3_SIZES, ("relu", "relu", "none"))
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    x = torch.rand(W3_BATCH, W3_SIZES[0])
    y = torch.randint(0, W3_SIZES[-1], (W3_BATCH,))

    def step(_):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()

    per = timed_reps(step, W3_WARMUP, W3_STEPS, args.reps)
    flop = 0
    for i in range(len(W3_SIZES) - 1):
        flop += (3 if i else 2) * 2 * W3_BATCH * W3_SIZES[i] * W3_SIZES[i + 1]
    record(args, "w3", "s_per_step", per, steps_per_rep=W3_STEPS,
           gflops=flop / median(per) / 1e9, maxrss_kb=maxrss_kb(), base_rss_kb=args.base_rss)


def w4(torch, args):
    """The CNN of examples/train_fashion_mnist.c --model cnn, training mode, batch 100,
    Adam 1e-3, on random images."""
    torch.manual_seed(args.seed)
    nn, F = torch.nn, torch.nn.functional
    net = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.25), nn.Linear(3136, 128), nn.ReLU(), nn.Dropout(0.25),
        nn.Linear(128, 10))
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(args.seed)
    xs = [torch.rand(W4_BATCH, 1, 28, 28, generator=g) for _ in range(W4_POOL)]
    ys = [torch.randint(0, 10, (W4_BATCH,), generator=g) for _ in range(W4_POOL)]

    def step(i):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(xs[i % W4_POOL]), ys[i % W4_POOL])
        loss.backward()
        opt.step()

    per = timed_reps(step, W4_WARMUP, W4_STEPS, args.reps)
    record(args, "w4", "s_per_step", per, steps_per_rep=W4_STEPS, maxrss_kb=maxrss_kb(),
           base_rss_kb=args.base_rss)


def w5(torch, args, workload="w5"):
    """The character LSTM of examples/char_lstm.c: embedding, LSTMCell unrolled over
    32 characters of 32 windows, linear head, cross-entropy, Adam 3e-3. Eager mode
    records the graph at every step, so w5r is the same program."""
    torch.manual_seed(args.seed)
    nn, F = torch.nn, torch.nn.functional
    emb = nn.Embedding(W5_VOCAB, W5_EMBED)
    cell = nn.LSTMCell(W5_EMBED, W5_HIDDEN)
    head = nn.Linear(W5_HIDDEN, W5_VOCAB)
    params = list(emb.parameters()) + list(cell.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=3e-3)
    g = torch.Generator().manual_seed(args.seed)

    def step(_):
        x = torch.randint(0, W5_VOCAB, (W5_T, W5_BATCH), generator=g)
        y = torch.randint(0, W5_VOCAB, (W5_T * W5_BATCH,), generator=g)
        opt.zero_grad(set_to_none=True)
        state, logits = None, []
        for t in range(W5_T):
            state = cell(emb(x[t]), state)
            logits.append(head(state[0]))
        loss = F.cross_entropy(torch.cat(logits), y)
        loss.backward()
        opt.step()

    per = timed_reps(step, W5_WARMUP, W5_STEPS, args.reps)
    record(args, workload, "s_per_step", per, steps_per_rep=W5_STEPS, maxrss_kb=maxrss_kb(),
           base_rss_kb=args.base_rss)


def w5r(torch, args):
    w5(torch, args, "w5r")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workloads", default="w0,w1,w2,w3,w4,w5,w5r")
    ap.add_argument("--reps", type=int, default=11)
    ap.add_argument("--w2-reps", type=int, default=7)
    ap.add_argument("--w2-epochs", type=int, default=1)
    ap.add_argument("--w2-train", type=int, default=0, help="training rows used (0: all)")
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--ftz", type=int, default=1, help="1: flush denormals to zero")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--growth-max", type=int, default=0, help="ignored (tapegrad only)")
    args = ap.parse_args()
    args.ftz = bool(args.ftz)
    wanted = [w for w in args.workloads.split(",") if w]
    try:
        import torch
    except Exception as e:  # any import failure means: no PyTorch column
        emit({"engine": "torch", "error": "cannot import torch with %s: %s" % (sys.executable, e)})
        return 3
    args.base_rss = maxrss_kb()
    torch.set_num_threads(args.threads)
    ftz_ok = torch.set_flush_denormal(args.ftz)
    emit({"engine": "torch", "info": True, "version": torch.__version__,
          "threads": args.threads, "torch_threads": torch.get_num_threads(),
          "openblas_threads_env": os.environ.get("OPENBLAS_NUM_THREADS", ""),
          "omp_wait_policy_env": os.environ.get("OMP_WAIT_POLICY", ""),
          "ftz": args.ftz and ftz_ok})
    table = {"w0": w0, "w1": w1, "w2": w2, "w3": w3, "w4": w4, "w5": w5, "w5r": w5r}
    for w in wanted:
        if w not in table:
            log("unknown workload %r" % w)
            return 2
        log("%s threads=%d" % (w, args.threads))
        table[w](torch, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
