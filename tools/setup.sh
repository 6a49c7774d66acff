#!/usr/bin/env bash
# One-time, idempotent set-up: the project virtualenv (.venv) with the torch wheel that provides
# libtorch, the Python reference implementations used by the parity tests, and the Debian
# packages (the data set, and the JPEG library's build tools). A stamp file records the inputs;
# a second run with the same inputs does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

stamp=.setup-stamp
want=$(cat tools/setup.sh tools/requirements-ref.txt tools/requirements-nodeps.txt | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x .venv/bin/python ]; then
  exit 0
fi

# The torch wheel and the CUDA libraries it depends on take about 6 GiB once installed, and the
# release build and test fixtures another 6 GiB. Say so up front rather than failing half-way.
need_gib=12
free_kib=$(df -Pk . | awk 'NR == 2 { print $4 }')
if [ "${free_kib:-0}" -lt $((need_gib * 1024 * 1024)) ]; then
  echo "zoo setup: only $((free_kib / 1024)) MiB free on $(df -P . | awk 'NR == 2 { print $6 }');" \
    "set-up, the build and the tests need about ${need_gib} GiB. Free some space and run it again." >&2
  exit 1
fi

echo "zoo setup: installing the Python side into .venv (torch 2.11.0 provides libtorch)"
# No pip cache: a second copy of every wheel would double the disk this needs.
export PIP_NO_CACHE_DIR=1
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install --quiet --upgrade-strategy only-if-needed -r tools/requirements-ref.txt
# Reference implementations whose own pins would replace our torch: no dependencies.
.venv/bin/pip install --quiet --no-deps -r tools/requirements-nodeps.txt

# Debian packages: Fashion-MNIST, the real data set of the training tests; cmake and nasm, with
# which the turbojpeg-sys crate builds the libjpeg-turbo that decodes JPEGs as PIL does.
missing=()
for pkg in dataset-fashion-mnist cmake nasm; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "zoo setup: please run 'sudo apt-get install ${missing[*]}'" >&2
  fi
fi

# Gloo's headers (the torch wheel ships none): build.rs compiles zoo/dist/c10d.cpp, the
# data-parallel training shim, against them and the wheel's libtorch_cpu.
if ! dpkg -s libgloo-dev >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libgloo-dev >/dev/null
  else
    echo "zoo setup: please run 'sudo apt-get install libgloo-dev' (distributed training)" >&2
  fi
fi

.venv/bin/python -c 'import torch, torchvision; print("zoo setup: torch", torch.__version__, "torchvision", torchvision.__version__)'
echo "$want" > "$stamp"
