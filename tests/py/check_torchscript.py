"""Loads a TorchScript file `zoo export` wrote, in Python, beside the reference implementation
built from the same checkpoint, and checks what a user of the file relies on.

Usage: check_torchscript.py MODEL.pt NAME WEIGHTS.pth
- `state_dict()` keys are the reference module's (GoogLeNet: less the auxiliary heads, which
  zoo's inference build leaves out), and each tensor equals the checkpoint's (the batch
  counters `num_batches_tracked`, which zoo does not keep, are zero);
- outputs equal the reference's within 1e-4 relative (on the whole and on the part that depends
  on the input) at two input sizes and batch sizes other than the one zoo traced at;
- `extra/zoo.json` names the model and carries its preprocessing and class names;
- one SGD step in train mode runs and moves the parameters.
Exits non-zero with the reason on the first failure.
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference import load_refs, torchvision_ref  # noqa: E402

OPTIONAL = {"googlenet": ("aux1.", "aux2.")}
TOL = 1e-4


def relative(a, b):
    a, b = a.double(), b.double()
    full = (a - b).abs().max() / b.abs().max()
    ca, cb = a - a.mean(0, keepdim=True), b - b.mean(0, keepdim=True)
    varying = (ca - cb).abs().max() / cb.abs().max()
    return full.item(), varying.item()


def main():
    path, name, weights = sys.argv[1:4]
    extra = {"zoo.json": ""}
    module = torch.jit.load(path, map_location="cpu", _extra_files=extra)
    meta = json.loads(extra["zoo.json"])
    assert meta["model"] == name, f"zoo.json names {meta['model']}, not {name}"
    assert "preprocess" in meta and len(meta["classes"]) == meta["num_classes"], meta.keys()

    refs, _ = load_refs()
    ref = (refs.get(name) or torchvision_ref(name)).build()
    sd = torch.load(weights, map_location="cpu")
    ref.load_state_dict(sd)
    if name == "googlenet":
        # The reference was built with transform_input on; the file does not say so, and zoo
        # loads a GoogLeNet file it does not know as torchvision builds one without weights.
        ref.transform_input = False
    ref.eval()
    module.eval()

    skip = OPTIONAL.get(name, ())
    want = {k for k in ref.state_dict() if not k.startswith(skip)}
    got = set(module.state_dict())
    if want != got:
        raise SystemExit(f"{name}: state_dict keys differ: missing {sorted(want - got)[:8]}, extra {sorted(got - want)[:8]}")
    for k, v in module.state_dict().items():
        # zoo keeps no count of training batches (a zero stands in); everything else is the file's.
        if not k.endswith("num_batches_tracked") and not torch.equal(v, sd[k].to(v.dtype)):
            raise SystemExit(f"{name}: {k} differs from the checkpoint's")

    gen = torch.Generator().manual_seed(5)
    for batch, size in ((3, 224), (4, 160 if name != "xception" else 192)):
        x = torch.randn(batch, 3, size, size, generator=gen)
        with torch.no_grad():
            full, varying = relative(module(x), ref(x))
        print(f"{name}: batch {batch} at {size}x{size}: relative error {full:.2e} (input-dependent {varying:.2e})")
        if not (full <= TOL and varying <= TOL):
            raise SystemExit(f"{name}: at {size}x{size} the TorchScript file differs from the reference by {full:.2e}")

    module.train()
    params = [p for p in module.parameters() if p.requires_grad]
    assert params, f"{name}: no trainable parameters in the TorchScript module"
    before = [p.detach().clone() for p in params]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    x = torch.randn(2, 3, 224, 224, generator=gen)
    loss = torch.nn.functional.cross_entropy(module(x), torch.tensor([1, 2]))
    loss.backward()
    opt.step()
    moved = sum(not torch.equal(a, p.detach()) for a, p in zip(before, params))
    assert torch.isfinite(loss) and moved > len(params) // 2, f"{name}: an SGD step moved {moved} of {len(params)}"
    print(f"{name}: SGD step, loss {loss.item():.4f}, {moved} of {len(params)} parameter tensors moved")


if __name__ == "__main__":
    main()
