"""References for tests/cli.rs, computed by the libraries the zoo must agree with.

  cli_reference.py features WEIGHTS OUT.safetensors IMAGE [IMAGE ...]
      torchvision's resnet18 with the state_dict WEIGHTS, on each image through torchvision's own
      eval transform of ResNet18_Weights.IMAGENET1K_V1 (PIL decode, resize 256, centre crop 224,
      ImageNet mean/std): `pre_logits` (node `flatten` of create_feature_extractor) and `layer3`
      avg- and max-pooled (torch's adaptive pools), one row per image in the order given.
  cli_reference.py idx IMAGES.gz LABELS.gz FOLDER OUT.json
      Reads the IDX files with gzip + numpy (the format of LeCun's MNIST page) and checks every PNG
      of FOLDER/<class>/<index>.png against the image at <index>: writes the labels seen per class,
      the files compared and the mismatches.
  cli_reference.py stages ARCH OUT.json
      timm's feature_info of ARCH (module, channels, reduction), random weights.
"""
import gzip
import json
import os
import sys

import numpy as np


def features(weights, out, images):
    import torch
    import torchvision
    from PIL import Image
    from safetensors.torch import save_file
    from torchvision.models.feature_extraction import create_feature_extractor

    model = torchvision.models.resnet18(weights=None)
    model.load_state_dict(torch.load(weights, map_location="cpu"), strict=True)
    model.eval()
    tf = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms()
    x = torch.stack([tf(Image.open(p).convert("RGB")) for p in images])
    fx = create_feature_extractor(model, return_nodes=["flatten", "layer3"]).eval()
    with torch.no_grad():
        got = fx(x)
    layer3 = got["layer3"]
    save_file(
        {
            "pre_logits": got["flatten"].contiguous(),
            "layer3_avg": torch.nn.functional.adaptive_avg_pool2d(layer3, 1).flatten(1).contiguous(),
            "layer3_max": torch.nn.functional.adaptive_max_pool2d(layer3, 1).flatten(1).contiguous(),
            "input": x.contiguous(),
        },
        out,
    )


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def idx(images, labels, folder, out):
    from PIL import Image

    imgs, labs = read_idx(images), read_idx(labels)
    classes = sorted(os.listdir(folder))
    seen, compared, mismatches = {}, 0, []
    for c in classes:
        for name in sorted(os.listdir(os.path.join(folder, c))):
            i = int(name.split(".")[0])
            seen.setdefault(c, []).append(int(labs[i]))
            px = np.asarray(Image.open(os.path.join(folder, c, name)))
            compared += 1
            if px.shape != imgs[i].shape or not np.array_equal(px, imgs[i]):
                mismatches.append(f"{c}/{name}")
    with open(out, "w") as f:
        json.dump({"labels": seen, "compared": compared, "mismatches": mismatches, "total": int(len(labs))}, f)


def stages(arch, out):
    import timm

    info = timm.create_model(arch, pretrained=False, features_only=True).feature_info
    with open(out, "w") as f:
        json.dump([{"module": m, "channels": c, "reduction": r} for m, c, r in zip(info.module_name(), info.channels(), info.reduction())], f)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "features":
        features(args[0], args[1], args[2:])
    elif cmd == "idx":
        idx(*args)
    elif cmd == "stages":
        stages(*args)
    else:
        raise SystemExit(f"unknown command {cmd}")
