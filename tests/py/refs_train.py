"""Training-step references: one forward (train mode), cross-entropy and backward on the same
weights and input, for `tests/parity_train.rs`. Names end in `_train`; the zoo architecture is
the name without it. Dropout is off on both sides (its random masks cannot agree).

Extra outputs: `train:logits`, `train:loss`, `grad:<parameter>` for a spread of parameters
(the first three, every seventh, the last three) and `buffer:<running_mean>` of the batch norms
after the step (train mode updates them).
"""
import copy
import sys

import torch
import torchvision

Ref = getattr(sys.modules.get("__main__"), "Ref", None)
if Ref is None:  # imported from elsewhere than reference.py
    from reference import Ref  # noqa: E402


def timm_xception():
    import timm

    return timm.create_model("legacy_xception", pretrained=False, drop_rate=0.0)


def spread(names):
    return [n for i, n in enumerate(names) if i < 3 or i % 7 == 0 or i >= len(names) - 3]


def train_step(model, x):
    m = copy.deepcopy(model)
    m.train()
    y = torch.tensor([3, 7])
    logits = m(x)
    loss = torch.nn.functional.cross_entropy(logits, y)
    loss.backward()
    out = {"train:logits": logits.detach(), "train:loss": loss.detach()}
    params = dict(m.named_parameters())
    for n in spread(list(params)):
        out[f"grad:{n}"] = params[n].grad
    buffers = dict(m.named_buffers())
    for n in spread([n for n in buffers if n.endswith("running_mean")]):
        out[f"buffer:{n}"] = buffers[n]
    return out


tv = torchvision.models
BUILDS = {
    "resnet18": lambda: tv.resnet18(),
    "mobilenet_v2": lambda: tv.mobilenet_v2(dropout=0.0),
    "mobilenet_v3_small": lambda: tv.mobilenet_v3_small(dropout=0.0),
    "shufflenet_v2_x0_5": lambda: tv.shufflenet_v2_x0_5(),
    "densenet121": lambda: tv.densenet121(),
    "squeezenet1_1": lambda: tv.squeezenet1_1(dropout=0.0),
    "xception": timm_xception,
}

MODELS = {f"{name}_train": Ref(build=build, extra=train_step, legacy=False) for name, build in BUILDS.items()}
