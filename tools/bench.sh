#!/usr/bin/env bash
# `make bench`: zoo against PyTorch side by side (tools/bench.py); writes BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python tools/bench.py "$PWD/target/release/zoo" build/bench "${BENCH_THREADS:-2}"
# Data-parallel training at world size 1 and 2 (appends its section to BENCHMARKS.md).
.venv/bin/python tools/bench_dist.py "$PWD/target/release/zoo" build/bench-dist
