"""Parity reference exporter: builds each reference network with a fixed seed, saves its
state_dict (zip format, and legacy pre-1.6 format where asked), a fixed input, and the
reference's eval-mode outputs. The Rust tests load the same file into the zoo model and compare.

Usage: reference.py OUT_DIR NAME [NAME ...]
Writes OUT_DIR/NAME/{weights.pth, weights_legacy.pth?, io.safetensors, DONE}; a model whose
DONE file matches this script's hash is skipped, so references are generated once.
"""
import hashlib
import os
import sys

import torch
import torchvision
from safetensors.torch import save_file

SCRIPT_HASH = hashlib.sha256(open(__file__, "rb").read()).hexdigest()[:16]

# Models whose file is also written in the legacy format (torchvision's own download site is
# mostly legacy files). The largest VGGs keep one copy only, to bound disk use in CI.
LEGACY_SKIP = {"vgg13", "vgg13_bn", "vgg16", "vgg19", "vgg19_bn", "vgg11_bn"}


def torchvision_model(name):
    kwargs = {}
    if name in ("googlenet", "inception_v3"):
        kwargs = {"aux_logits": True, "init_weights": True, "transform_input": True}
    return getattr(torchvision.models, name)(weights=None, **kwargs)


def build(name):
    """(model, input size) for a zoo name; extended by later families."""
    sizes = {"inception_v3": 299}
    model = torchvision_model(name)
    return model, sizes.get(name, 112)


def randomise_bn(model, gen):
    # Fresh batch norms are the identity in eval mode; give them real statistics so a missing
    # or misplaced buffer shows up in the logits.
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)


def export(out_dir, name):
    d = os.path.join(out_dir, name)
    done = os.path.join(d, "DONE")
    if os.path.exists(done) and open(done).read() == SCRIPT_HASH:
        return
    os.makedirs(d, exist_ok=True)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model, size = build(name)
    with torch.no_grad():
        randomise_bn(model, gen)
    model.eval()
    channels = 3
    x = torch.randn(2, channels, size, size, generator=gen)
    with torch.no_grad():
        logits = model(x)
    sd = model.state_dict()
    torch.save(sd, os.path.join(d, "weights.pth"))
    if name not in LEGACY_SKIP:
        torch.save(sd, os.path.join(d, "weights_legacy.pth"), _use_new_zipfile_serialization=False)
    save_file({"input": x.contiguous(), "logits": logits.contiguous()}, os.path.join(d, "io.safetensors"))
    with open(done, "w") as f:
        f.write(SCRIPT_HASH)


def main():
    out_dir = sys.argv[1]
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    for name in sys.argv[2:]:
        export(out_dir, name)
        print(f"reference {name}: ok", file=sys.stderr)


if __name__ == "__main__":
    main()
