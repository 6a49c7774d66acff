#!/usr/bin/env python3
"""Reference side of tests/images.rs: torchvision's eval transform and PIL's conversions.

Two commands, both writing plain files that the Rust tests read back:

  preprocess --specs SPECS.json --out DIR IMAGE...
      For every spec k (a JSON list of zoo `Preprocess` objects) and image i, runs
      PIL.Image.open(IMAGE).convert("RGB") (then .convert("L") when channels == 1) through
      transforms.Compose([Resize(resize, interpolation), CenterCrop(crop), ToTensor(),
      (x * 255 when value_range == 255), (channel flip when channel_order == "bgr"),
      Normalize(mean, std)]) and writes DIR/spec{k}_img{i}.f32: the CHW float32 tensor,
      little-endian, no header. DIR/manifest.json lists the files and their shapes.

  fixtures --out DIR
      Writes small test images in many modes and formats (made with PIL/numpy from a fixed
      seed) and, for each, what PIL gives: NAME.rgb (raw HWC uint8 of
      ImageOps.exif_transpose(Image.open(f)).convert("RGB")) and NAME.l (raw uint8 of
      .convert("L") of the same), NAME being the file name. DIR/fixtures.json describes each case.
"""

import argparse
import io
import json
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image, ImageOps


# --------------------------------------------------------------------------- preprocess


def build_transform(spec):
    import torch
    from torchvision import transforms

    interp = {
        "nearest": transforms.InterpolationMode.NEAREST,
        "bilinear": transforms.InterpolationMode.BILINEAR,
        "bicubic": transforms.InterpolationMode.BICUBIC,
    }[spec.get("interpolation", "bilinear")]
    steps = [
        transforms.Resize(spec["resize"], interpolation=interp),
        transforms.CenterCrop(list(spec["crop"])),
        transforms.ToTensor(),
    ]
    if float(spec.get("value_range", 1.0)) == 255.0:
        steps.append(transforms.Lambda(lambda x: x * 255.0))
    if spec.get("channel_order", "rgb") == "bgr":
        steps.append(transforms.Lambda(lambda x: torch.flip(x, dims=[0])))
    channels = int(spec.get("channels", 3))
    steps.append(transforms.Normalize(list(spec["mean"])[:channels], list(spec["std"])[:channels]))
    return transforms.Compose(steps)


def cmd_preprocess(args):
    with open(args.specs) as f:
        specs = json.load(f)
    os.makedirs(args.out, exist_ok=True)
    manifest = []
    for k, spec in enumerate(specs):
        tf = build_transform(spec)
        for i, path in enumerate(args.images):
            img = Image.open(path).convert("RGB")
            if int(spec.get("channels", 3)) == 1:
                img = img.convert("L")
            t = tf(img).contiguous()
            name = f"spec{k}_img{i}.f32"
            t.numpy().astype("<f4").tofile(os.path.join(args.out, name))
            manifest.append({"spec": k, "image": path, "file": name, "shape": list(t.shape)})
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


# --------------------------------------------------------------------------- fixtures


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def raw_png(width, height, color_type, bit_depth, rows):
    """A PNG written by hand (PIL cannot write 16-bit RGB or LA)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    raw = b"".join(b"\x00" + r for r in rows)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(raw))
        + png_chunk(b"IEND", b"")
    )


def test_pattern(h, w, seed):
    """Gradients plus noise: every channel different, no symmetry (so flips show)."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + 2 * y) % 256], -1)
    noise = rng.randint(-40, 41, (h, w, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def cmd_fixtures(args):
    out = args.out
    os.makedirs(out, exist_ok=True)
    cases = []
    h, w = 23, 37
    rgb = test_pattern(h, w, 1)
    rng = np.random.RandomState(7)

    def add(name, ext, data_or_image, lossy=None, **save):
        path = os.path.join(out, f"{name}.{ext}")
        if isinstance(data_or_image, (bytes, bytearray)):
            with open(path, "wb") as f:
                f.write(data_or_image)
        else:
            data_or_image.save(path, **save)
        src = Image.open(path)
        mode = src.mode
        fmt = src.format
        im = ImageOps.exif_transpose(src)
        rgb_out = np.asarray(im.convert("RGB"))
        l_out = np.asarray(im.convert("L"))
        rgb_out.tofile(os.path.join(out, f"{name}.{ext}.rgb"))
        l_out.tofile(os.path.join(out, f"{name}.{ext}.l"))
        cases.append(
            {
                "name": f"{name}.{ext}",
                "file": f"{name}.{ext}",
                "pil_mode": mode,
                "pil_format": fmt,
                "width": int(rgb_out.shape[1]),
                "height": int(rgb_out.shape[0]),
                "lossy": lossy,
            }
        )

    add("rgb", "png", Image.fromarray(rgb, "RGB"))
    add("gray_l", "png", Image.fromarray(rgb[..., 0], "L"))
    add("bilevel_1", "png", Image.fromarray(rgb[..., 0] > 128).convert("1"))
    la = np.stack([rgb[..., 1], rng.randint(0, 256, (h, w)).astype(np.uint8)], -1)
    add("gray_alpha_la", "png", Image.fromarray(la, "LA"))
    rgba = np.concatenate([rgb, rng.randint(0, 256, (h, w, 1)).astype(np.uint8)], -1)
    rgba[0, :, 3] = 0  # fully transparent row with non-black colour: PIL keeps the colour
    add("rgba", "png", Image.fromarray(rgba, "RGBA"))
    pal = rng.randint(0, 256, 256 * 3).astype(np.uint8).tolist()
    idx = rng.randint(0, 256, (h, w)).astype(np.uint8)
    p = Image.fromarray(idx, "P")
    p.putpalette(pal)
    add("palette_p", "png", p)
    add("palette_trns", "png", p, transparency=5)
    p16 = Image.fromarray((idx % 16).astype(np.uint8), "P")
    p16.putpalette(pal[: 16 * 3])
    add("palette_4bit", "png", p16, bits=4)
    add("palette_p", "bmp", p)
    add("rgb", "bmp", Image.fromarray(rgb, "RGB"))
    add("rgb_lzw", "tiff", Image.fromarray(rgb, "RGB"), compression="tiff_lzw")
    add("rgb_raw", "tiff", Image.fromarray(rgb, "RGB"))
    add("gray", "tiff", Image.fromarray(rgb[..., 2], "L"))
    add("rgb_lossless", "webp", Image.fromarray(rgb, "RGB"), lossless=True)
    add("rgba_lossless", "webp", Image.fromarray(rgba, "RGBA"), lossless=True)
    add("rgb_lossy", "webp", Image.fromarray(rgb, "RGB"), "webp", quality=90)

    # 16-bit: grayscale PNG (PIL mode I;16, convert("RGB") clamps at 255), RGB and LA (PIL
    # keeps the high byte). The values separate v >> 8 from round(v / 257) and from clamping.
    vals16 = [0, 1, 128, 254, 255, 256, 383, 384, 1000, 32767, 32768, 0x80FF, 0xFE80, 65280, 65534, 65535]
    g16 = np.array(vals16 * 4, dtype=np.uint16).reshape(4, 16)
    g16[2] = rng.randint(0, 65536, 16)
    g16[3] = rng.randint(0, 300, 16)
    add("gray16", "png", Image.fromarray(g16))
    rows = []
    for r in range(4):
        v = np.roll(np.array(vals16, dtype=">u2"), r)
        px = np.stack([v, v[::-1], np.roll(v, 5)], -1).astype(">u2")
        rows.append(px.tobytes())
    add("rgb16", "png", raw_png(16, 4, 2, 16, rows))
    rows = []
    for r in range(4):
        v = np.roll(np.array(vals16, dtype=">u2"), r)
        rows.append(np.stack([v, v[::-1]], -1).astype(">u2").tobytes())
    add("gray_alpha16", "png", raw_png(16, 4, 4, 16, rows))

    # JPEG: decoders legitimately differ (IDCT rounding, chroma upsampling), hence "lossy".
    add("rgb444_q95", "jpg", Image.fromarray(rgb, "RGB"), "jpeg", quality=95, subsampling=0)
    add("rgb420_q90", "jpg", Image.fromarray(rgb, "RGB"), "jpeg", quality=90, subsampling=2)
    add("progressive", "jpg", Image.fromarray(rgb, "RGB"), "jpeg", quality=90, progressive=True)
    add("gray", "jpg", Image.fromarray(rgb[..., 0], "L"), "jpeg", quality=95)
    cmyk = Image.fromarray(rgb, "RGB").convert("CMYK")
    add("cmyk", "jpg", cmyk, "jpeg", quality=95, subsampling=0)
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        add(
            f"exif_orientation{orientation}",
            "jpg",
            Image.fromarray(rgb, "RGB"),
            "jpeg",
            quality=95,
            subsampling=0,
            exif=exif.tobytes(),
        )

    # GIF: two frames; PIL's Image.open gives the first.
    f0 = Image.fromarray((idx % 64).astype(np.uint8), "P")
    f0.putpalette(pal)
    f1 = Image.fromarray(((idx // 3) % 64).astype(np.uint8), "P")
    f1.putpalette(pal)
    add("two_frames", "gif", f0, save_all=True, append_images=[f1], duration=100, loop=0)
    add("transparent", "gif", f0, transparency=3)

    with open(os.path.join(out, "fixtures.json"), "w") as f:
        json.dump(cases, f, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("preprocess")
    p.add_argument("--specs", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("images", nargs="+")
    f = sub.add_parser("fixtures")
    f.add_argument("--out", required=True)
    args = ap.parse_args()
    {"preprocess": cmd_preprocess, "fixtures": cmd_fixtures}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
