"""The Python pipeline `zoo classify` must agree with: PIL decoding with convert("RGB"),
torchvision's eval transform with the weights entry's preprocessing, the reference
EfficientNet-Lite0 (`efficientnet-lite-pytorch`) with the real checkpoint, softmax, top-5.

Usage: classify_reference.py CHECKPOINT OUT.json IMAGE [IMAGE ...]
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
            results[path] = {"index": top.indices.tolist(), "prob": top.values.tolist()}
    with open(out, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
