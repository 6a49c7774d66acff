"""References for the architectures torchvision lacks: Xception and MobileNet v1 from timm,
ShuffleNet v1 (and MobileNet v1 with the paper's ReLU) from pytorchcv.

- `xception`: timm's `legacy_xception` (Cadene's port of the Keras model; head `fc`).
- `mobilenet_v1*`: timm's `mobilenetv1_100` layout (`_gen_mobilenet_v1`) at width 1.0, 0.75,
  0.5, 0.25 — the width is `_gen_mobilenet_v1`'s channel multiplier, as in `mobilenetv1_125`.
- `shufflenet_v1_g{g}_x{s}`: pytorchcv's `get_shufflenet(g, s)` (`shufflenet_g3_w1`, ...).
  pytorchcv ends with a fixed 7x7 average pool, so these run at 224 (where it is global).
- `pytorchcv_mobilenet_w1`: pytorchcv's `mobilenet_w1` (plain ReLU, its own key names, 7x7
  final pool: 224), loaded by the zoo through key rules.
"""
import sys

Ref = getattr(sys.modules.get("__main__"), "Ref", None)
if Ref is None:  # imported from elsewhere than reference.py
    from reference import Ref  # noqa: E402


def timm_xception():
    import timm

    return timm.create_model("legacy_xception", pretrained=False)


def timm_mobilenet_v1(width):
    from timm.models.efficientnet import _gen_mobilenet_v1

    return _gen_mobilenet_v1("mobilenetv1_100", width, pretrained=False)


def pytorchcv_shufflenet(groups, width):
    from pytorchcv.models.shufflenet import get_shufflenet

    return get_shufflenet(groups=groups, width_scale=width)


def pytorchcv_mobilenet_w1():
    from pytorchcv.models.mobilenet import mobilenet_w1

    return mobilenet_w1()


# (zoo name suffix, groups, width): the registered ShuffleNet v1 rows.
SHUFFLENET_V1 = [
    ("g1_x1_0", 1, 1.0),
    ("g2_x1_0", 2, 1.0),
    ("g3_x1_0", 3, 1.0),
    ("g4_x1_0", 4, 1.0),
    ("g8_x1_0", 8, 1.0),
    ("g1_x0_25", 1, 0.25),
    ("g1_x0_5", 1, 0.5),
    ("g1_x0_75", 1, 0.75),
    ("g3_x0_25", 3, 0.25),
    ("g3_x0_5", 3, 0.5),
    ("g3_x0_75", 3, 0.75),
    ("g3_x1_5", 3, 1.5),
    ("g3_x2_0", 3, 2.0),
]

# The legacy (pre-1.6) file format is written for one model of each family.
MODELS = {
    "xception": Ref(build=timm_xception, size=112),
    "mobilenet_v1": Ref(build=lambda: timm_mobilenet_v1(1.0), size=96),
    "mobilenet_v1_x0_75": Ref(build=lambda: timm_mobilenet_v1(0.75), size=96, legacy=False),
    "mobilenet_v1_x0_5": Ref(build=lambda: timm_mobilenet_v1(0.5), size=96, legacy=False),
    "mobilenet_v1_x0_25": Ref(build=lambda: timm_mobilenet_v1(0.25), size=96, legacy=False),
    "pytorchcv_mobilenet_w1": Ref(build=pytorchcv_mobilenet_w1, size=224, legacy=False),
}
for suffix, g, w in SHUFFLENET_V1:
    MODELS[f"shufflenet_v1_{suffix}"] = Ref(
        build=lambda g=g, w=w: pytorchcv_shufflenet(g, w), size=224, legacy=suffix == "g3_x1_0"
    )
