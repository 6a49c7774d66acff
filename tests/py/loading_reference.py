"""References for tests/loading.rs: checkpoints no manifest entry knows (random init, batch norms
calibrated as reference.py does), synthetic PNG images, and what torchvision / timm give on them
with the eval transform of weights nothing describes (torchvision's `ImageClassification` at its
defaults: resize 256, crop 224, bilinear, ImageNet mean/std; for the Inception v4 family resize
342, crop 299, mean/std 0.5).

Usage: loading_reference.py OUT_DIR NAME [NAME ...]
NAME is a torchvision classifier (saved in the legacy format, as torchvision's own files are),
`timm_inception_v4` / `timm_inception_resnet_v2` (timm's state_dict, torch.save's zip format),
or `tiny` (mobilenet_v3_small, also written as safetensors, for the cache and import tests).
Writes OUT_DIR/NAME/{weights.pth, io.safetensors, DONE} and OUT_DIR/images/*.png; a NAME whose
DONE matches this script's hash is skipped.
"""
import hashlib
import os
import sys

import numpy as np
import timm
import torch
import torchvision
from PIL import Image
from safetensors.torch import save_file
from torchvision.transforms._presets import ImageClassification

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import reference  # noqa: E402  (randomise_bn, calibrate, check_informative)

HALF = dict(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def images(out_dir, side):
    """Two smooth synthetic images side x side (the resize is then exact), as PNG files."""
    paths = []
    rng = np.random.default_rng(side)
    for i in range(2):
        y, x = np.mgrid[0:side, 0:side] / side
        base = np.stack([np.sin(6 * x + i), np.cos(5 * y - 2 * i), np.sin(4 * (x + y) + 3 * i)], -1)
        cells = -(-side // 8)
        noise = rng.normal(0, 0.15, (cells, cells, 3)).repeat(8, 0).repeat(8, 1)[:side, :side]
        arr = np.clip((base * 0.4 + 0.5 + noise) * 255, 0, 255).astype(np.uint8)
        path = os.path.join(out_dir, "images", f"s{side}_{i}.png")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(arr).save(path)
        paths.append(path)
    return paths


def batch(paths, transform):
    return torch.stack([transform(Image.open(p).convert("RGB")) for p in paths])


def build(name):
    if name == "timm_inception_v4":
        return timm.create_model("inception_v4", pretrained=False), 299
    if name == "timm_inception_resnet_v2":
        return timm.create_model("inception_resnet_v2", pretrained=False), 299
    if name == "tiny":
        return torchvision.models.mobilenet_v3_small(weights=None), 224
    return getattr(torchvision.models, name)(weights=None), 224


def export(out_dir, name, stamp):
    d = os.path.join(out_dir, name)
    done = os.path.join(d, "DONE")
    if os.path.exists(done) and open(done).read() == stamp:
        return
    os.makedirs(d, exist_ok=True)
    torch.manual_seed(0)
    model, crop = build(name)
    with torch.no_grad():
        reference.randomise_bn(model, torch.Generator().manual_seed(1))
    # Calibrated on noise at half the size: the statistics are informative and the big
    # networks calibrate quickly.
    reference.calibrate(model, (8, 3, crop // 2, crop // 2))
    model.eval()
    if crop == 299:
        paths, tf = images(out_dir, 342), ImageClassification(crop_size=299, resize_size=342, **HALF)
    else:
        paths, tf = images(out_dir, 256), ImageClassification(crop_size=224)
    out = {"input": batch(paths, tf)}
    with torch.no_grad():
        out["logits"] = model(out["input"])
        reference.check_informative(name, out["logits"])
        if name == "resnet50":
            # The overrides: --mean 0.5 --std 0.5, and --crop 192.
            out["logits_half"] = model(batch(paths, ImageClassification(crop_size=224, **HALF)))
            out["logits_crop192"] = model(batch(paths, ImageClassification(crop_size=192)))
    sd = model.state_dict()
    path = os.path.join(d, "weights.pth")
    if name.startswith("timm_"):
        torch.save(sd, path)
    else:
        torch.save(sd, path, _use_new_zipfile_serialization=False)
    if name == "tiny":
        save_file({k: v.contiguous() for k, v in sd.items()}, os.path.join(d, "model.safetensors"))
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(d, "io.safetensors"))
    with open(done, "w") as f:
        f.write(stamp)


def main():
    out_dir = sys.argv[1]
    sources = [open(__file__, "rb").read(), open(os.path.join(HERE, "reference.py"), "rb").read()]
    stamp = hashlib.sha256(b"".join(sources)).hexdigest()[:16]
    torch.set_num_threads(2)
    for name in sys.argv[2:]:
        export(out_dir, name, stamp)
        print(f"loading reference {name}: ok", file=sys.stderr)


if __name__ == "__main__":
    main()
