#!/usr/bin/env bash
# Builds tapegrad in release mode (build-bench/) and runs the benchmark with
# PyTorch side by side at 1 and 2 threads: W0-W5 against PyTorch, W0 against
# FANN, W1 against a hand-written C step, W2-W4 against their GEMM floors,
# the growth sweep of recording, replay and backward, and peak memory; then
# hvp_bench with its defaults.
# Arguments go to tg_bench (see build-bench/bench/tg_bench --help), e.g.
# --workloads w0,w1 or --json results.jsonl.
# "bench/run.sh conv [args]" runs conv_bench instead (the CNN's convolution
# and pooling layers, forward + backward, against PyTorch and the GEMM floor).
# "bench/run.sh hvp [args]" runs hvp_bench (Hessian-vector and forward-mode
# products against PyTorch's double backward).
# "bench/run.sh dist [args]" runs dist_bench (data-parallel training over MPI
# against PyTorch DDP; docs/distributed.md); skipped without MPI.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f build-bench/build.ninja ] || meson setup build-bench --buildtype=release >/dev/null
if [ "${1:-}" = conv ]; then
    shift
    meson compile -C build-bench -j 2 bench/conv_bench >/dev/null
    exec build-bench/bench/conv_bench "$@"
fi
if [ "${1:-}" = hvp ]; then
    shift
    meson compile -C build-bench -j 2 bench/hvp_bench >/dev/null
    exec build-bench/bench/hvp_bench "$@"
fi
if [ "${1:-}" = dist ]; then
    shift
    if ! grep -q dist_bench build-bench/build.ninja; then
        echo "bench/run.sh dist: skipped: tapegrad_dist is not built (MPI not found; Debian:" \
            "libopenmpi-dev openmpi-bin, then meson setup --reconfigure build-bench)"
        exit 0
    fi
    meson compile -C build-bench -j 2 bench/dist_bench >/dev/null
    exec build-bench/bench/dist_bench "$@"
fi
# The default: every workload of tg_bench, then the Hessian-vector products.
meson compile -C build-bench -j 2 bench/tg_bench bench/hvp_bench >/dev/null
build-bench/bench/tg_bench --torch "$@"
echo
exec build-bench/bench/hvp_bench
