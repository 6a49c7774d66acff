#!/usr/bin/env python3
"""Reference side of tests/images.rs: torchvision's eval transform and PIL's conversions.

Two commands, both writing plain files that the Rust tests read back:

  preprocess --specs SPECS.json --out DIR IMAGE...
      For every spec k (a JSON list of zoo `Preprocess` objects) and image i, runs
      ImageOps.exif_transpose(PIL.Image.open(IMAGE)).convert("RGB") (then .convert("L") when channels == 1) through
      transforms.Compose([Resize(resize, interpolation), CenterCrop(crop), ToTensor(),
      (x * 255 when value_range == 255), (channel flip when channel_order == "bgr"),
      Normalize(mean, std)]) and writes DIR/spec{k}_img{i}.f32: the CHW float32 tensor,
      little-endian, no header. DIR/manifest.json lists the files and their shapes.

  jpegs --specs SPECS.json --out DIR [--draft D] [--extra FILE...] CHELSEA COFFEE
      Writes JPEGs of every kind (baseline and progressive; 4:4:4, 4:2:2, 4:2:0; qualities
      75-95; grayscale; CMYK with and without the Adobe marker; RGB-stored; restart markers;
      EXIF orientations; big photos) made with PIL from two photos, and for each of them and of
      the --extra files: NAME.rgb and NAME.l (PIL's decode, as in `fixtures`), NAME.draft.rgb
      (the same after draft("RGB", (D, D))) and NAME.specK.f32 (as in `preprocess`).
      DIR/jpegs.json describes each file.

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


def open_rgb(path, draft=None):
    """What zoo decodes: the EXIF orientation applied, then PIL's convert("RGB"). `draft`:
    PIL's draft("RGB", (draft, draft)) first (JPEG decoded smaller in the DCT domain)."""
    img = Image.open(path)
    if draft is not None:
        img.draft("RGB", (draft, draft))
    return ImageOps.exif_transpose(img).convert("RGB")


def reference_tensor(img, spec, tf):
    """torchvision's eval transform `tf` of spec on an RGB PIL image, as a CHW float32 array."""
    if int(spec.get("channels", 3)) == 1:
        img = img.convert("L")
    return tf(img).contiguous().numpy().astype("<f4")


def cmd_preprocess(args):
    with open(args.specs) as f:
        specs = json.load(f)
    os.makedirs(args.out, exist_ok=True)
    manifest = []
    for k, spec in enumerate(specs):
        tf = build_transform(spec)
        for i, path in enumerate(args.images):
            t = reference_tensor(open_rgb(path), spec, tf)
            name = f"spec{k}_img{i}.f32"
            t.tofile(os.path.join(args.out, name))
            manifest.append({"spec": k, "image": path, "file": name, "shape": list(t.shape)})
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


# --------------------------------------------------------------------------- jpegs


def strip_adobe_marker(data):
    """The JPEG without its APP14 "Adobe" segment: a CMYK file as some non-Adobe encoders write
    it (PIL still reads it as inverted, Adobe-style, CMYK)."""
    i = 2
    while data[i] == 0xFF and data[i + 1] != 0xDA:
        n = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if data[i + 1] == 0xEE and data[i + 4 : i + 9] == b"Adobe":
            return data[:i] + data[i + 2 + n :]
        i += 2 + n
    raise ValueError("no Adobe segment")


def jpeg_variants(photos):
    """(name, what, PIL image, save options | raw bytes) for every kind of JPEG the tests cover,
    made from the photos (PNG) and enlarged copies (for the DCT-domain scaling of draft())."""
    chelsea, coffee = (Image.open(p).convert("RGB") for p in photos[:2])
    out = []
    for tag, img in (("chelsea", chelsea), ("coffee", coffee)):
        for sub, sub_name in ((0, "444"), (1, "422"), (2, "420")):
            for q in (75, 90, 95):
                for progressive in (False, True):
                    kind = "progressive" if progressive else "baseline"
                    out.append((f"{tag}_{sub_name}_q{q}_{kind}", f"{kind} 4:{sub_name[1]}:{sub_name[2]} q{q}",
                                img, dict(quality=q, subsampling=sub, progressive=progressive)))
        for progressive in (False, True):
            kind = "progressive" if progressive else "baseline"
            out.append((f"{tag}_gray_q85_{kind}", f"grayscale {kind} q85", img.convert("L"),
                        dict(quality=85, progressive=progressive)))
        out.append((f"{tag}_cmyk_q90", "CMYK (Adobe-inverted, as PIL writes it) q90", img.convert("CMYK"),
                    dict(quality=90)))
    buf = io.BytesIO()
    chelsea.convert("CMYK").save(buf, "JPEG", quality=90)
    out.append(("chelsea_cmyk_no_adobe", "CMYK without an Adobe marker q90", None, strip_adobe_marker(buf.getvalue())))
    out.append(("chelsea_rgb_q90", "stored as RGB (Adobe transform 0) q90", chelsea, dict(quality=90, keep_rgb=True)))
    out.append(("chelsea_restarts_q90", "4:2:0 q90 with restart markers", chelsea,
                dict(quality=90, restart_marker_blocks=7)))
    out.append(("coffee_optimized_q80", "4:2:0 q80 optimised Huffman tables", coffee, dict(quality=80, optimize=True)))
    for orientation in (3, 6, 8):
        exif = Image.Exif()
        exif[0x0112] = orientation
        out.append((f"chelsea_exif{orientation}_q90", f"4:2:0 q90 EXIF orientation {orientation}", chelsea,
                    dict(quality=90, exif=exif.tobytes())))
    # Big photos: draft() scales them by 2, 4 and 8 for a 256 resize.
    for tag, img, size in (("coffee_x2", coffee, (1200, 800)), ("coffee_x4", coffee, (2400, 1600)),
                           ("chelsea_x8", chelsea, (3100, 2062))):
        out.append((f"{tag}_420_q90", f"{size[0]}x{size[1]} 4:2:0 q90", img.resize(size, Image.BICUBIC),
                    dict(quality=90)))
    out.append(("coffee_x4_444_q85_progressive", "2400x1600 progressive 4:4:4 q85",
                coffee.resize((2400, 1600), Image.BICUBIC), dict(quality=85, subsampling=0, progressive=True)))
    return out


def cmd_jpegs(args):
    """JPEGs of every kind made with PIL from the photos, plus `--extra` files made elsewhere;
    for each: PIL's RGB and L decode, its decode after draft("RGB", (D, D)) for `--draft D`,
    and torchvision's eval transform for every spec."""
    with open(args.specs) as f:
        specs = json.load(f)
    transforms_ = [build_transform(spec) for spec in specs]
    out = args.out
    os.makedirs(out, exist_ok=True)
    files = []
    for name, what, img, opts in jpeg_variants(args.photos):
        path = os.path.join(out, f"{name}.jpg")
        if isinstance(opts, bytes):
            with open(path, "wb") as f:
                f.write(opts)
        else:
            img.save(path, "JPEG", **opts)
        files.append((path, what))
    files += [(p, "made by the test (libjpeg-turbo encoder)") for p in args.extra]
    cases = []
    for path, what in files:
        name = os.path.basename(path)
        src = Image.open(path)
        rgb = open_rgb(path)
        np.asarray(rgb).tofile(os.path.join(out, f"{name}.rgb"))
        np.asarray(rgb.convert("L")).tofile(os.path.join(out, f"{name}.l"))
        drafted = open_rgb(path, draft=args.draft)
        np.asarray(drafted).tofile(os.path.join(out, f"{name}.draft.rgb"))
        tensors = []
        for k, (spec, tf) in enumerate(zip(specs, transforms_)):
            t = reference_tensor(rgb, spec, tf)
            t.tofile(os.path.join(out, f"{name}.spec{k}.f32"))
            tensors.append({"spec": k, "file": f"{name}.spec{k}.f32", "shape": list(t.shape)})
        cases.append({
            "file": name,
            "what": what,
            "pil_mode": src.mode,
            "layers": getattr(src, "layers", None),
            "progressive": bool(src.info.get("progressive")),
            "size": list(rgb.size),
            "draft_size": list(drafted.size),
            "tensors": tensors,
        })
    with open(os.path.join(out, "jpegs.json"), "w") as f:
        json.dump(cases, f, indent=1)


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

    # JPEG: zoo decodes with libjpeg-turbo as PIL does, so not "lossy": identical pixels.
    add("rgb444_q95", "jpg", Image.fromarray(rgb, "RGB"), quality=95, subsampling=0)
    add("rgb420_q90", "jpg", Image.fromarray(rgb, "RGB"), quality=90, subsampling=2)
    add("progressive", "jpg", Image.fromarray(rgb, "RGB"), quality=90, progressive=True)
    add("gray", "jpg", Image.fromarray(rgb[..., 0], "L"), quality=95)
    cmyk = Image.fromarray(rgb, "RGB").convert("CMYK")
    add("cmyk", "jpg", cmyk, quality=95, subsampling=0)
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        add(
            f"exif_orientation{orientation}",
            "jpg",
            Image.fromarray(rgb, "RGB"),
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
    j = sub.add_parser("jpegs")
    j.add_argument("--specs", required=True)
    j.add_argument("--out", required=True)
    j.add_argument("--draft", type=int, default=256)
    j.add_argument("--extra", nargs="*", default=[])
    j.add_argument("photos", nargs=2, help="two photos (chelsea, coffee) to make the JPEGs from")
    args = ap.parse_args()
    {"preprocess": cmd_preprocess, "fixtures": cmd_fixtures, "jpegs": cmd_jpegs}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
