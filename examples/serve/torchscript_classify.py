"""Classifies images with a TorchScript file `zoo export` wrote, through `torch.jit.load` (as a
TorchServe handler would), using the preprocessing and class names in its `extra/zoo.json`.

    python examples/serve/torchscript_classify.py lite0.pt assets/photos/coffee.png
"""
import json
import sys

import torch

from preprocess import preprocess, top5

extra = {"zoo.json": ""}
module = torch.jit.load(sys.argv[1], map_location="cpu", _extra_files=extra).eval()
meta = json.loads(extra["zoo.json"])
for path in sys.argv[2:]:
    with torch.no_grad():
        logits = module(torch.from_numpy(preprocess(path, meta["preprocess"])))
    print(path, ", ".join(f"{name} {p:.2%}" for name, p in top5(logits[0].numpy(), meta["classes"])))
