"""The differential oracle of tests/mutation.rs: what torch makes of each file given.

argv[1] is the JSON file to write, argv[2:] the checkpoints. `.safetensors` files are read with
safetensors' own loader, the others with torch.load(weights_only=True). The state dict is then
picked exactly as zoo documents (nested under state_dict/model/model_state_dict/net, tensor
values only, a `module.` prefix on every key stripped), and each tensor is recorded as key,
dtype (in tch's names), shape and the SHA-256 of its contiguous bytes.
"""

import hashlib
import json
import sys

import torch
from safetensors.torch import load_file

WRAPPERS = ["state_dict", "model", "model_state_dict", "net"]
DTYPES = {
    torch.float32: "Float",
    torch.float16: "Half",
    torch.bfloat16: "BFloat16",
    torch.float64: "Double",
    torch.int64: "Int64",
    torch.int32: "Int",
    torch.int16: "Int16",
    torch.int8: "Int8",
    torch.uint8: "Uint8",
    torch.bool: "Bool",
}


def state_dict(obj):
    for _ in range(4):
        if not isinstance(obj, dict):
            raise ValueError(f"a {type(obj).__name__}, not a dict")
        inner = next((obj[w] for w in WRAPPERS if isinstance(obj.get(w), dict)), None)
        if inner is None:
            break
        obj = inner
    tensors = [(k, v) for k, v in obj.items() if isinstance(v, torch.Tensor)]
    if tensors and all(isinstance(k, str) and k.startswith("module.") for k, _ in tensors):
        tensors = [(k[len("module.") :], v) for k, v in tensors]
    return tensors


def describe(t):
    t = t.detach().reshape(-1).contiguous()
    data = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
    return hashlib.sha256(data).hexdigest()


out = {}
for p in sys.argv[2:]:
    try:
        obj = load_file(p) if p.endswith(".safetensors") else torch.load(p, weights_only=True, map_location="cpu")
        tensors = state_dict(obj)
        out[p] = {
            "status": "ok",
            "tensors": [
                {"key": k, "dtype": DTYPES.get(v.dtype, str(v.dtype)), "shape": list(v.shape), "sha256": describe(v)}
                for k, v in tensors
            ],
        }
    except Exception as e:  # noqa: BLE001 - a refusal is a verdict
        out[p] = {"status": "refused", "error": (str(e).strip().splitlines() or [type(e).__name__])[0][:300]}

with open(sys.argv[1], "w") as f:
    json.dump(out, f)
