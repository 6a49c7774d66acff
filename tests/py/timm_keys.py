"""The state_dict keys (and shapes) of timm models built without weights, as JSON.

Usage: timm_keys.py OUT.json NAME [NAME ...]
"""
import json
import sys

import timm


def main():
    out = {}
    for name in sys.argv[2:]:
        model = timm.create_model(name, pretrained=False)
        out[name] = {k: list(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    with open(sys.argv[1], "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
