"""The Python pipeline `zoo classify` must agree with: PIL decoding with convert("RGB"),
torchvision's eval transform with the weights entry's preprocessing, the reference
EfficientNet-Lite0 (`efficientnet-lite-pytorch`) with the real checkpoint, softmax, top-5.

Preprocessing, from the TensorFlow TPU repository's EfficientNet-Lite code (the checkpoint's
origin), models/official/efficientnet/lite/efficientnet_lite_builder.py: `MEAN_RGB = [127.0] * 3`
and `STDDEV_RGB = [128.0] * 3` on 0-255 pixels ("Edge models use inception-style MEAN and STDDEV
for better post-quantization"), i.e. 127/255 = 0.498 and 128/255 = 0.502 on 0-1 pixels; and
preprocessing.py's eval crop, the central 224 / (224 + CROP_PADDING 32) of the image resized to
224, which is torchvision's resize 256 + centre crop 224. The weights entry efficientnet_lite0.in1k
of weights-manifest.toml records the same figures.

Usage: classify_reference.py CHECKPOINT OUT.json IMAGE [IMAGE ...]
Writes {path: {"index": top-5 classes, "prob": their probabilities, "probs": all 1000}}.
"""
import json
import sys

import torch
from efficientnet_lite_pytorch import EfficientNet
from PIL import Image
from torchvision import transforms


def main():
    checkpoint, out, images = sys.argv[1], sys.argv[2], sys.argv[3:]
    model = EfficientNet.from_name("efficientnet-lite0")
    model.load_state_dict(torch.load(checkpoint, map_location="cpu"), strict=True)
    model.eval()
    tf = transforms.Compose(
        [
            transforms.Resize(256),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize([0.498] * 3, [0.502] * 3),
        ]
    )
    results = {}
    with torch.no_grad():
        for path in images:
            x = tf(Image.open(path).convert("RGB")).unsqueeze(0)
            p = model(x).softmax(-1)[0]
            top = p.topk(5)
            results[path] = {"index": top.indices.tolist(), "prob": top.values.tolist(), "probs": p.tolist()}
    with open(out, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
