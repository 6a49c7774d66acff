"""Parity reference exporter: builds each reference network with a fixed seed, saves its
state_dict (zip format, and legacy pre-1.6 format), a fixed input, and the reference's outputs.
The Rust tests load the same file into the zoo model and compare.

Usage: reference.py OUT_DIR NAME [NAME ...]
Writes OUT_DIR/NAME/{weights.pth, weights_legacy.pth?, io.safetensors, DONE}. A model whose DONE
file matches the stamp (the hash of the reference scripts and the versions of every reference
library, see `load_refs`) is skipped, so references are generated once per script and library set.

Every reference is calibrated so that its outputs depend on its input (see `calibrate` and
`scale_head`): the Rust side (tests/common/mod.rs) compares the part of the logits that varies
over the batch, relative to its size, and refuses a reference where that part is under 1%.

io.safetensors holds `input`, `logits` (eval mode), `params` (the reference's parameter count)
and whatever extra outputs the model's reference module adds (auxiliary logits, features).

Models come from torchvision by default; `refs_*.py` files beside this one register others as
`MODELS = {zoo_name: Ref(build=callable, size=int, channels=3, extra=None | callable)}`.
"""
import glob
import hashlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torchvision
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from versions import library_versions  # noqa: E402


@dataclass
class Ref:
    build: Callable[[], torch.nn.Module]
    size: int = 112
    channels: int = 3
    # extra(model, x) -> {name: tensor}: more outputs to compare (aux logits, feature maps).
    extra: Optional[Callable] = None
    legacy: bool = True


# The largest VGGs keep one file format only, to bound disk use in CI (vgg11 and vgg16_bn keep both).
LEGACY_SKIP = {"vgg13", "vgg13_bn", "vgg16", "vgg19", "vgg19_bn", "vgg11_bn"}


def load_refs():
    refs = {}
    # Keyed on the reference libraries' versions as well as on the scripts (tests/py/versions.py).
    sources = [open(__file__, "rb").read(), "\n".join(library_versions()).encode()]
    for path in sorted(glob.glob(os.path.join(HERE, "refs_*.py"))):
        sources.append(open(path, "rb").read())
        spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
        refs.update(mod.MODELS)
    return refs, hashlib.sha256(b"".join(sources)).hexdigest()[:16]


def torchvision_ref(name):
    return Ref(build=lambda: getattr(torchvision.models, name)(weights=None), legacy=name not in LEGACY_SKIP)


def randomise_bn(model, gen):
    # Fresh batch norms are the identity in eval mode; give them real statistics so a missing
    # or misplaced buffer shows up in the logits.
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
            if m.weight is not None:
                m.weight.data.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.data.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)


def calibrate(model, shape):
    """Sets every batch norm's running statistics to the mean and variance of its real input on
    a batch of noise (weights and biases stay randomised). Random statistics that do not match
    the activations make deep networks' signal explode or die out, until the logits of two
    different inputs agree and parity would hardly test the convolutions."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    gen = torch.Generator().manual_seed(2)
    calib = torch.randn((8,) + tuple(shape[1:]), generator=gen)
    model.eval()
    saved = []
    for bn in bns:
        saved.append(bn.momentum)
        bn.reset_running_stats()
        bn.momentum = None  # a cumulative average: one batch gives exactly its statistics
        bn.train()
    with torch.no_grad():
        model(calib)
    for bn, momentum in zip(bns, saved):
        bn.momentum = momentum
    model.eval()


def head_layer(model):
    """The layer that produces the logits: the last Linear or Conv2d registered (torchvision,
    timm, pytorchcv and Cadene all register the classifier last; SqueezeNet's is a 1x1 conv)."""
    layers = [m for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    return layers[-1]


def logits_of(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def scale_head(model, shape):
    """Scales the weight of the last layer (not its bias) so that the logits' input-dependent
    part, their deviation from the batch mean on a noise batch, has unit standard deviation.
    Random heads give logits far below 1 that are mostly the last bias (AlexNet: 0.03, varying
    by 0.002 between two inputs); an error of a few units in 1e-4 would then hide a wrong layer."""
    gen = torch.Generator().manual_seed(3)
    calib = torch.randn((8,) + tuple(shape[1:]), generator=gen)
    model.eval()
    head = head_layer(model)
    with torch.no_grad():
        out = logits_of(model(calib))
        spread = (out - out.mean(0, keepdim=True)).std().item()
        if spread > 0:
            head.weight.mul_(1.0 / spread)


def check_informative(name, logits):
    """A reference whose outputs barely depend on the input proves nothing: refuse it (the same
    bound as tests/common/mod.rs, MIN_INPUT_DEPENDENCE)."""
    spread = (logits - logits.mean(0, keepdim=True)).abs().max().item()
    scale = logits.abs().max().item()
    if not spread >= 5e-3 * scale or scale == 0:
        raise SystemExit(f"{name}: reference logits hardly depend on the input ({spread:.2e} vs {scale:.2e})")


def export(out_dir, name, ref, stamp):
    d = os.path.join(out_dir, name)
    done = os.path.join(d, "DONE")
    if os.path.exists(done) and open(done).read() == stamp:
        return
    os.makedirs(d, exist_ok=True)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model = ref.build()
    with torch.no_grad():
        randomise_bn(model, gen)
    x = torch.randn(2, ref.channels, ref.size, ref.size, generator=gen)
    calibrate(model, x.shape)
    scale_head(model, x.shape)
    model.eval()
    out = {"input": x}
    with torch.no_grad():
        out["logits"] = model(x)
    check_informative(name, out["logits"])
    out["params"] = torch.tensor(sum(p.numel() for p in model.parameters()), dtype=torch.int64)
    if ref.extra is not None:
        out.update(ref.extra(model, x))
    sd = model.state_dict()
    torch.save(sd, os.path.join(d, "weights.pth"))
    if ref.legacy:
        torch.save(sd, os.path.join(d, "weights_legacy.pth"), _use_new_zipfile_serialization=False)
    save_file({k: v.detach().contiguous() for k, v in out.items()}, os.path.join(d, "io.safetensors"))
    with open(done, "w") as f:
        f.write(stamp)


def main():
    out_dir = sys.argv[1]
    refs, stamp = load_refs()
    for name in sys.argv[2:]:
        ref = refs.get(name) or torchvision_ref(name)
        export(out_dir, name, ref, stamp)
        print(f"reference {name}: ok", file=sys.stderr)


if __name__ == "__main__":
    main()
