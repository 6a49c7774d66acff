"""References for the models whose torchvision defaults differ from their pretrained form.

GoogLeNet and Inception v3: torchvision builds `transform_input=False` unless it loads weights,
while its checkpoints (and the zoo's registry models) use `transform_input=True`. Registry
`googlenet` is the pretrained model as torchvision returns it, without auxiliary heads;
`googlenet_aux` keeps them, for the zoo's `googlenet_with_aux`. Models with auxiliary heads also
export their train-mode outputs (`train_logits`, `aux1`/`aux2` or `aux`), from a copy of the
model (train-mode batch norm updates running statistics, and the saved weights must be those
that produced the eval logits) with every dropout at p=0 so the result is deterministic.
"""
import copy
import sys

import torch
import torchvision

Ref = getattr(sys.modules.get("__main__"), "Ref", None)
if Ref is None:  # imported from elsewhere than reference.py
    from reference import Ref  # noqa: E402


def train_outputs(model, x, names):
    m = copy.deepcopy(model)
    m.train()
    for mod in m.modules():
        if isinstance(mod, torch.nn.Dropout):
            mod.p = 0.0
    with torch.no_grad():
        out = m(x)
    return {name: t for name, t in zip(["train_logits", *names], out)}


def variance_preserving(model):
    # torchvision's own init (truncated normal, std 0.1 or 0.01 whatever the fan-in) with the
    # exporter's random batch-norm statistics makes eval logits explode (Inception v3: ~1e13,
    # so the relative tolerance means nothing) or vanish (GoogLeNet: ~0.1). He init keeps
    # every stage, and so the logits, at unit scale.
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
    return model


def googlenet(aux):
    return variance_preserving(
        torchvision.models.googlenet(weights=None, aux_logits=aux, transform_input=True, init_weights=False)
    )


def inception_v3():
    return variance_preserving(
        torchvision.models.inception_v3(weights=None, transform_input=True, init_weights=False)
    )


def googlenet_extra(model, x):
    # torchvision returns (logits, aux2, aux1).
    return train_outputs(model, x, ["aux2", "aux1"])


MODELS = {
    "googlenet": Ref(build=lambda: googlenet(False), size=112),
    "googlenet_aux": Ref(build=lambda: googlenet(True), size=112, extra=googlenet_extra),
    # 299: the auxiliary head needs a 17x17 Mixed_6e map (5x5/3 pool, then a 5x5 conv).
    "inception_v3": Ref(
        build=inception_v3,
        size=299,
        extra=lambda model, x: train_outputs(model, x, ["aux"]),
    ),
}
