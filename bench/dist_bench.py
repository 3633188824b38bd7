#!/usr/bin/python3
"""PyTorch side of bench/dist_bench.c: DistributedDataParallel with gloo.

W2 (784-256-128-10 on Fashion-MNIST, Adam 1e-3, global batch 64, full batches
only) on --np processes of one thread each, started by
torch.multiprocessing on this machine's loopback: every process takes its
slice of each global batch from the same seeded permutation, as
tapegrad_dist's batcher does. Then, with 2 processes or more, one all_reduce
of W3's 1,863,690 floats. Rank 0 prints one JSON object per line on stdout;
dist_bench merges them into its table. By hand:
    /usr/bin/python3 bench/dist_bench.py --np 2 --reps 3
"""
import argparse
import gzip
import json
import os
import socket
import sys
import time

W2_BATCH, W2_WARMUP = 64, 100
W3_FLOATS = 784 * 1024 + 1024 + 1024 * 1024 + 1024 + 1024 * 10 + 10
REDUCE_REPS = 20


def median(xs):
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def load_idx(np, path, offset):
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


def worker(rank, args, port):
    import numpy as np
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    F = torch.nn.functional
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=args.np)
    emit = (lambda rec: print(json.dumps(rec), flush=True)) if rank == 0 else (lambda rec: None)

    d = args.data
    x = load_idx(np, os.path.join(d, "train-images-idx3-ubyte.gz"), 16).reshape(-1, 784)
    y = load_idx(np, os.path.join(d, "train-labels-idx1-ubyte.gz"), 8)
    X = torch.from_numpy(x.astype(np.float32) / np.float32(255))
    Y = torch.from_numpy(y.astype(np.int64))
    n = X.shape[0]
    steps = n // W2_BATCH
    local = W2_BATCH // args.np

    def fresh():
        torch.manual_seed(1)
        net = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(),
                                  torch.nn.Linear(256, 128), torch.nn.ReLU(),
                                  torch.nn.Linear(128, 10))
        model = DDP(net)  # broadcasts rank 0's parameters
        return model, torch.optim.Adam(model.parameters(), lr=1e-3)

    def run(model, opt, count):
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(1))
        for i in range(count):
            idx = perm[i * W2_BATCH + rank * local:i * W2_BATCH + (rank + 1) * local]
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(X[idx]), Y[idx]).backward()
            opt.step()

    model, opt = fresh()
    run(model, opt, W2_WARMUP)
    per = []
    for _ in range(args.reps):
        model, opt = fresh()
        dist.barrier()
        t0 = time.perf_counter()
        run(model, opt, steps)
        dist.barrier()
        per.append(time.perf_counter() - t0)
    emit({"engine": "torch", "workload": "w2", "ranks": args.np, "s_per_epoch": median(per),
          "min": min(per), "max": max(per), "steps": steps})

    if args.np > 1:
        buf = torch.zeros(W3_FLOATS)
        times = []
        for rep in range(REDUCE_REPS + 2):
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_reduce(buf)
            if rep >= 2:
                times.append(time.perf_counter() - t0)
        emit({"engine": "torch", "workload": "allreduce", "ranks": args.np, "s": median(times),
              "floats": W3_FLOATS})
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--np", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    args = ap.parse_args()
    try:
        import torch.multiprocessing as mp
    except ImportError as e:
        print(json.dumps({"engine": "torch", "error": str(e)}), flush=True)
        return 1
    with socket.socket() as s:  # a free port on the loopback
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(worker, args=(args, port), nprocs=args.np, join=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
