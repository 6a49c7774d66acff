#!/usr/bin/env bash
# `make bench`: zoo against PyTorch side by side (tools/bench.py), then JPEG decoding and
# --fast-decode (tools/bench_jpeg.py); writes BENCHMARKS.md. ZOO_BEFORE=path/to/old/zoo adds an
# older build's classify speed to the JPEG section.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python tools/bench.py "$PWD/target/release/zoo" build/bench "${BENCH_THREADS:-2}"
.venv/bin/python tools/bench_jpeg.py "$PWD/target/release/zoo" build/bench "${BENCH_THREADS:-2}" \
  ${ZOO_BEFORE:+--before "$ZOO_BEFORE"}
# zoo's engines beside PyTorch, ONNX Runtime and OpenVINO (the "CPU engines" section).
.venv/bin/python tools/bench_engines.py "$PWD/target/release/zoo" build/bench-engines "${BENCH_THREADS:-2}"
# What the engines and precisions do to a pretrained network's predictions on real photos.
.venv/bin/python tools/bench_precision.py "$PWD/target/release/zoo" build/bench-precision "${BENCH_THREADS:-2}"
# Data-parallel training at world size 1 and 2 (appends its section to BENCHMARKS.md).
.venv/bin/python tools/bench_dist.py "$PWD/target/release/zoo" build/bench-dist
