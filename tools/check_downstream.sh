#!/usr/bin/env bash
# zoo as a library (issue #17): tests/downstream depends on zoo with default-features = false.
# Its dependency tree must hold none of the command line's crates, and it must build and run
# (a model as a tch module, and inside nn::seq_t). Run by `make test` after `cargo test`; it
# shares target/, so only zoo itself is compiled again (without its default features).
set -euo pipefail
cd "$(dirname "$0")/.."
manifest=tests/downstream/Cargo.toml
tree=$(cargo tree --manifest-path "$manifest" -e normal --prefix none | sed "s/ (\*)$//" | sort -u)
for crate in clap clap_complete reqwest plotters indicatif; do
  if grep -q "^$crate v" <<<"$tree"; then
    echo "tests/downstream: zoo with default-features = false still pulls $crate" >&2
    exit 1
  fi
done
CARGO_TARGET_DIR="$PWD/target" cargo build --release --quiet --manifest-path "$manifest"
# A downstream binary finds libtorch as the README says: through LD_LIBRARY_PATH (zoo's own
# binaries carry an rpath instead).
torch_lib=$(python -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
  target/release/zoo-downstream assets/weights/lenet5-fashion_mnist.safetensors
echo "tests/downstream: $(grep -c . <<<"$tree") crates in the tree, none of clap, reqwest, plotters, indicatif"
