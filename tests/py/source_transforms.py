"""The eval preprocessing that timm and pytorchcv themselves publish for the weights the manifest
takes from them, for tests/weights.rs and tests/parity_pytorchcv.rs (cached by
tests/common/mod.rs per script and library versions).

- timm: `timm.data.create_transform(**resolve_data_config(pretrained_cfg=...))`, the library's own
  eval transform, read off its Resize / CenterCrop / Normalize steps.
- pytorchcv: its shipped `models/common/model_metainfos.csv` (img_size, img_scale, net_weights,
  checksum); the resize is imgclsmob's `calc_val_resize_value`,
  int(ceil(img_size / img_scale)), with the ImageNet mean/std defaults of its
  `imagenet_val_transform` and torchvision's default bilinear Resize (imgclsmob's evaluation
  code; pytorchcv ships the models only, so this formula is written out here).

Usage: source_transforms.py OUT.json
Writes {"timm": {name: {...}}, "pytorchcv": {name: {...}}}.
"""
import csv
import json
import math
import os
import sys

TIMM = [
    "inception_v4.tf_in1k",
    "inception_resnet_v2.tf_in1k",
    "legacy_xception.tf_in1k",
    "mobilenetv1_100.ra4_e3600_r224_in1k",
]


def timm_transforms():
    import timm
    import timm.data
    from torchvision import transforms as T

    out = {}
    for name in TIMM:
        cfg = timm.models.get_pretrained_cfg(name).to_dict()
        tf = timm.data.create_transform(**timm.data.resolve_data_config(pretrained_cfg=cfg))
        row = {}
        for step in tf.transforms:
            if isinstance(step, T.Resize):
                row["resize"] = step.size if isinstance(step.size, int) else step.size[0]
                row["interpolation"] = step.interpolation.value
            elif isinstance(step, T.CenterCrop):
                row["crop"] = list(step.size)
            elif isinstance(step, T.Normalize):
                row["mean"] = [float(v) for v in step.mean]
                row["std"] = [float(v) for v in step.std]
        out[name] = row
    return out


def pytorchcv_transforms():
    import pytorchcv

    path = os.path.join(os.path.dirname(pytorchcv.__file__), "models", "common", "model_metainfos.csv")
    out = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            if r["test_dataset"] != "in1k" or not (r["net_weights"] + r["img_size"]).isdigit():
                continue
            size, scale = int(r["img_size"]), float(r["img_scale"])
            out[r["model_name"]] = {
                "params": int(r["net_weights"]),
                "sha1": r["checksum"],
                "resize": int(math.ceil(size / scale)),
                "crop": [size, size],
                "interpolation": "bilinear",
                "mean": [0.485, 0.456, 0.406],
                "std": [0.229, 0.224, 0.225],
            }
    return out


if __name__ == "__main__":
    with open(sys.argv[1], "w") as f:
        json.dump({"timm": timm_transforms(), "pytorchcv": pytorchcv_transforms()}, f, indent=1)
