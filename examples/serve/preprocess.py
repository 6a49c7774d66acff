"""The preprocessing a zoo export carries in its metadata, applied with PIL and NumPy as
torchvision's eval transform does: Resize(shorter side), CenterCrop, ToTensor, Normalize."""
import numpy as np
from PIL import Image

RESAMPLE = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


def preprocess(path, p):
    image = Image.open(path).convert("L" if p["channels"] == 1 else "RGB")
    w, h = image.size
    short = min(w, h)
    # torchvision's Resize(int): the longer side truncated, not rounded.
    size = (p["resize"], int(p["resize"] * h / w)) if w == short else (int(p["resize"] * w / h), p["resize"])
    image = image.resize(size, RESAMPLE[p["interpolation"]])
    (ch, cw), (w, h) = p["crop"], image.size
    left, top = int(round((w - cw) / 2.0)), int(round((h - ch) / 2.0))
    x = np.asarray(image.crop((left, top, left + cw, top + ch)), dtype=np.float32) / 255.0 * p["value_range"]
    x = x[:, :, None] if x.ndim == 2 else x
    if p["channel_order"] == "bgr":
        x = x[:, :, ::-1]
    x = (x - np.array(p["mean"][: x.shape[2]], np.float32)) / np.array(p["std"][: x.shape[2]], np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))[None]


def top5(logits, classes):
    z = logits - logits.max()
    probs = np.exp(z) / np.exp(z).sum()
    return [(classes[i], float(probs[i])) for i in np.argsort(-probs)[:5]]
