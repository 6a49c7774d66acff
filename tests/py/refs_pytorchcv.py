"""References for pytorchcv's checkpoints that the zoo loads through the manifest's key rules:
`inceptionv4`, `inceptionresnetv2`, `xception`, `bninception`, `mobilenet_w1` and `zfnet`, each
built by `pytorchcv.model_provider.get_model(name, pretrained=False)` (random weights, pytorchcv's
own key names). `tests/parity_pytorchcv.rs` reads the saved state_dict, applies the key rules of
the manifest entry `ARCH.pytorchcv_in1k` and loads it strictly into the zoo model.

pytorchcv ends these networks with a fixed-size average pool (8×8 for Inception v4 and
Inception-ResNet v2 at 299, 10×10 for Xception at 299, 7×7 for BN-Inception and MobileNet at 224)
and flattens its output. Each is swapped for a global average pool, which is what it computes at
the native size and what the zoo's models do at any size: parameter-free, so the saved state_dict
is unchanged, and the references then run at small inputs that keep the suite fast (107 leaves a
2×2 map after the Inception line's last stage; BN-Inception takes 100, a side its ceil-mode pools
accept). ZFNet has no such pool to swap: it flattens the 6×6 map of a 224 input into its first
fully connected layer, so it runs at 224.

Names carry a `pcv_` prefix: references of other files use the zoo's names.
"""
import sys

import torch

Ref = getattr(sys.modules.get("__main__"), "Ref", None)
if Ref is None:  # imported from elsewhere than reference.py
    from reference import Ref  # noqa: E402


def pytorchcv(name, pool=None):
    """pytorchcv's `name` with random weights; the module at dotted `pool` (its final fixed-size
    average pool) becomes a global average pool."""
    from pytorchcv.model_provider import get_model

    model = get_model(name, pretrained=False)
    if pool is not None:
        parent = model
        *parents, last = pool.split(".")
        for part in parents:
            parent = getattr(parent, part)
        assert isinstance(getattr(parent, last), torch.nn.AvgPool2d), f"{name}: {pool} is not an average pool"
        setattr(parent, last, torch.nn.AdaptiveAvgPool2d(1))
    return model


# The legacy (pre-1.6) file format is written for MobileNet only (small); the others keep one.
MODELS = {
    "pcv_inceptionv4": Ref(build=lambda: pytorchcv("inceptionv4", "features.final_pool"), size=107, legacy=False),
    "pcv_inceptionresnetv2": Ref(
        build=lambda: pytorchcv("inceptionresnetv2", "features.final_pool"), size=107, legacy=False
    ),
    "pcv_xception": Ref(build=lambda: pytorchcv("xception", "features.final_block.pool"), size=112, legacy=False),
    "pcv_bninception": Ref(build=lambda: pytorchcv("bninception", "features.final_pool"), size=100, legacy=False),
    "pcv_mobilenet_w1": Ref(build=lambda: pytorchcv("mobilenet_w1", "features.final_pool"), size=96),
    "pcv_zfnet": Ref(build=lambda: pytorchcv("zfnet"), size=224, legacy=False),
}
