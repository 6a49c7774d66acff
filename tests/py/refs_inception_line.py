"""References for the Inception line beyond torchvision: BN-Inception (Cadene's pretrainedmodels),
Inception v4 and Inception-ResNet v2 (timm), Inception-ResNet v1 (pytorchcv), and Cadene's
Inception v4 / Inception-ResNet v2 with their 1001-class `last_linear` heads (to load through
key rules).

Each is built with random weights (`pretrained=False`/`None`). The fixed-size final average pools of
Cadene's and pytorchcv's files (7×7 for BN-Inception at 224, 8×8 for the others at 299) are swapped
for a global average pool, which is what they compute at their native size and what the zoo
models do at any size: parameter-free, so the saved state_dict is unchanged, and the references
then run at small inputs that keep the suite fast. 107 leaves a 2×2 map at the last stage (75, the
minimum, would leave 1×1 and hide padding errors); BN-Inception takes 100, a size its ceil-mode
pools accept (31-38 modulo 32) where they round up.

Reference packages are imported when a model is built, so a missing one only fails its own models.
"""
import sys

import torch

Ref = getattr(sys.modules.get("__main__"), "Ref", None)
if Ref is None:  # imported from elsewhere than reference.py
    from reference import Ref  # noqa: E402


def global_pool(model, path):
    """Replaces the module at dotted `path` by global average pooling."""
    parent = model
    *parents, last = path.split(".")
    for name in parents:
        parent = getattr(parent, name)
    setattr(parent, last, torch.nn.AdaptiveAvgPool2d(1))
    return model


def timm_model(name):
    import timm

    return timm.create_model(name, pretrained=False)


def bninception():
    import pretrainedmodels

    return global_pool(pretrainedmodels.bninception(num_classes=1000, pretrained=None), "global_pool")


def inception_resnet_v1():
    from pytorchcv.model_provider import get_model

    return global_pool(get_model("inceptionresnetv1", pretrained=False), "features.final_pool")


def cadene(name, pool):
    import pretrainedmodels

    return global_pool(getattr(pretrainedmodels, name)(num_classes=1001, pretrained=None), pool)


MODELS = {
    "bninception": Ref(build=bninception, size=100),
    "inception_v4": Ref(build=lambda: timm_model("inception_v4"), size=107, legacy=False),
    "inception_resnet_v2": Ref(build=lambda: timm_model("inception_resnet_v2"), size=107, legacy=False),
    "inception_resnet_v1": Ref(build=inception_resnet_v1, size=107),
    # Cadene's own files: 1001 classes (row 0 is the background class), head `last_linear`.
    "cadene_inceptionv4": Ref(build=lambda: cadene("inceptionv4", "avg_pool"), size=107, legacy=False),
    "cadene_inceptionresnetv2": Ref(build=lambda: cadene("inceptionresnetv2", "avgpool_1a"), size=107, legacy=False),
}
