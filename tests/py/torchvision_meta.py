"""torchvision's own metadata of every classification weights enum, as torchvision publishes it
in `Weights.meta` and `Weights.transforms()`: what the manifest's torchvision entries and the
zoo's parameter and multiply-add counts are checked against (tests/common/mod.rs runs this once
per library versions and caches the JSON).

Usage: torchvision_meta.py OUT.json
Writes a list of {model, tag, url, file, num_params, gflops, acc1, acc5, file_size_mb, resize,
crop, interpolation, mean, std, num_classes, min_size, default} (default: the enum's DEFAULT is
this member).
"""
import json
import math
import sys

import torchvision.models as models
from torchvision.models import get_model_weights, list_models


def rows():
    for name in list_models(module=models):
        enum = get_model_weights(name)
        for w in enum:
            meta = w.meta
            t = w.transforms()
            metrics = meta.get("_metrics", {}).get("ImageNet-1K", {})
            yield {
                "model": name,
                "tag": w.name,
                "url": w.url,
                "file": w.url.rsplit("/", 1)[-1],
                "num_params": meta["num_params"],
                "gflops": meta.get("_ops"),
                "acc1": metrics.get("acc@1"),
                "acc5": metrics.get("acc@5"),
                "file_size_mb": meta.get("_file_size"),
                "resize": list(t.resize_size),
                "crop": list(t.crop_size),
                "interpolation": t.interpolation.value,
                "mean": list(t.mean),
                "std": list(t.std),
                "num_classes": len(meta.get("categories") or []),
                "min_size": list(meta.get("min_size", [])),
                "default": w == enum.DEFAULT,
            }


def finite(v):
    """JSON has no NaN: torchvision records the accuracy of a head-less weights as NaN."""
    return None if isinstance(v, float) and math.isnan(v) else v


if __name__ == "__main__":
    with open(sys.argv[1], "w") as f:
        json.dump([{k: finite(v) for k, v in r.items()} for r in rows()], f, indent=1, allow_nan=False)
