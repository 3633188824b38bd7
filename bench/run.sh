#!/usr/bin/env bash
# Builds tapegrad in release mode (build-bench/) and runs the benchmark with
# PyTorch side by side: W0-W3 at 1 and 2 threads, one table. Arguments go to
# tg_bench (see build-bench/bench/tg_bench --help), e.g. --json results.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f build-bench/build.ninja ] || meson setup build-bench --buildtype=release >/dev/null
meson compile -C build-bench -j 2 bench/tg_bench >/dev/null
exec build-bench/bench/tg_bench --torch "$@"
