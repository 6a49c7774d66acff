"""`make bench`'s JPEG section (run after tools/bench.py, whose folder and weights it reuses).

1. JPEG decode time per image on one thread: zoo (`cargo bench --bench jpeg`: libjpeg-turbo,
   full size, and `--fast-decode`'s DCT-domain scaling) against PIL (`Image.open(p).convert("RGB")`,
   and after `draft("RGB", (256, 256))`).
2. `zoo classify` whole-run images/s (EfficientNet-Lite0, the real weights) with and without
   `--fast-decode`, beside the PyTorch pipeline (torchvision ImageFolder + DataLoader, 2 workers)
   and, with `--before OLD_ZOO` (a build from before libjpeg-turbo: the image crate's zune-jpeg),
   the old binary.
3. What `--fast-decode` costs: the largest difference of any class probability, and the top-1
   agreement, against full-size decoding.
4. The whole run against the forward pass alone (`zoo benchmark`, the engine classify picks for
   160 images: onednn, float32, batch 32), and where the rest goes, from the times at which each
   batch's results reach standard output: the set-up before the first batch's (less that batch
   at the steady rate), the steady state between the first batch's and the last's (decoding
   shares the cores with the forward pass), and the exit after the last.

On two folders: bench.py's 160 JPEGs of 640x480 to 1024x768, and 24 camera-size (4032x3024)
JPEGs made here from the same photos. Replaces (or appends) the "## JPEG decoding" section of
BENCHMARKS.md.

Usage: bench_jpeg.py ZOO_BINARY OUT_DIR THREADS [--before OLD_ZOO]
"""
import argparse
import json
import os
import random
import subprocess
import sys
import time

import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (bench.py's JPEG folder, model and PyTorch pipeline)

ROOT = bench.ROOT
MODEL = "efficientnet_lite0"
BATCH = 32  # classify's batch in every run here
SIDE = 256  # the resize of the model's eval transform: what --fast-decode drafts for
SECTION = "\n## JPEG decoding"


def make_camera_jpegs(folder, n=24):
    """Camera-size JPEGs (4032x3024, quality 92, 4:2:0), enlarged from the photos."""
    sub = os.path.join(folder, "x")
    if os.path.isdir(sub) and len(os.listdir(sub)) == n:
        return
    os.makedirs(sub, exist_ok=True)
    photos = [Image.open(os.path.join(ROOT, "assets/photos", p)).convert("RGB")
              for p in sorted(os.listdir(os.path.join(ROOT, "assets/photos"))) if not p.endswith(".md")]
    rng = random.Random(1)
    for i in range(n):
        img = photos[i % len(photos)].resize((4032 + rng.randint(0, 200), 3024 + rng.randint(0, 200)), Image.BICUBIC)
        img.crop((0, 0, 4032, 3024)).save(os.path.join(sub, f"{i:04d}.jpg"), quality=92)


def files_of(folder):
    sub = os.path.join(folder, "x")
    return [os.path.join(sub, f) for f in sorted(os.listdir(sub))]


def pil_decode_ms(files, draft):
    """Best of three passes (after a warm-up) of PIL's decode, ms per image, on this thread."""
    def one_pass():
        t = time.perf_counter()
        for f in files:
            im = Image.open(f)
            if draft:
                im.draft("RGB", (SIDE, SIDE))
            im.convert("RGB")
        return time.perf_counter() - t
    one_pass()
    return min(one_pass() for _ in range(3)) * 1e3 / len(files)


def zoo_decode_ms(folder):
    """zoo's decode (benches/jpeg.rs), ms per image: {"exact": ..., "fast": ...}."""
    out = subprocess.run(["cargo", "bench", "--bench", "jpeg", "--", folder, str(SIDE)], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    return {r["decode"]: r["ms_per_image"] for r in rows}


def classify_command(zoo, folder, weights, threads, extra=()):
    """The `zoo classify` run this section measures (jsonl, batch 32, CPU) and its environment."""
    env = dict(os.environ, ZOO_OFFLINE="1", OMP_NUM_THREADS=str(threads))
    return [zoo, "classify", MODEL, "--weights", weights, folder, "--format", "jsonl", "--batch-size",
            str(BATCH), "--device", "cpu", *extra], env


def zoo_classify(zoo, folder, weights, threads, extra=()):
    """(images/s over the whole run, {path: probabilities of all classes})."""
    args, env = classify_command(zoo, folder, weights, threads, ["--top-k", "1000", *extra])
    t = time.perf_counter()
    out = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
    dt = time.perf_counter() - t
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    probs = {r["path"]: {t["index"]: t["prob"] for t in r["top"]} for r in rows}
    return len(rows) / dt, probs


def zoo_forward(zoo, threads):
    """`zoo benchmark`'s forward-pass images/s, as classify runs 160 images (onednn, float32, batch 32)."""
    out = subprocess.run([zoo, "benchmark", MODEL, "--device", "cpu", "--engine", "onednn", "--precision", "fp32",
                          "--batch-size", str(BATCH), "--threads", str(threads), "--seconds", "3", "--format", "json"],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["images_per_second"]


def zoo_classify_timeline(zoo, folder, weights, threads):
    """One `zoo classify` run timed from outside as its results arrive: (seconds in all, images,
    seconds to the first batch's results, seconds from those to the last results, seconds from
    those to the process's end)."""
    args, env = classify_command(zoo, folder, weights, threads)
    t0 = time.perf_counter()
    p = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    n, first, last = 0, None, None
    for _ in iter(p.stdout.readline, ""):
        n += 1
        last = time.perf_counter()
        if n == BATCH:
            first = last
    if p.wait() != 0 or first is None:
        raise SystemExit(f"zoo classify failed (status {p.returncode}) or gave fewer than {BATCH} results")
    end = time.perf_counter()
    return end - t0, n, first - t0, last - first, end - last


def compare(exact, fast):
    """(max |p_fast - p_exact| over every class of every image, top-1 agreement count, images)."""
    worst, same = 0.0, 0
    for path, p in exact.items():
        q = fast[path]
        worst = max(worst, max(abs(p[i] - q.get(i, 0.0)) for i in p))
        same += max(p, key=p.get) == max(q, key=q.get)
    return worst, same, len(exact)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("zoo")
    ap.add_argument("out")
    ap.add_argument("threads", type=int)
    ap.add_argument("--before", help="a zoo binary from before libjpeg-turbo, for the 'before' column")
    args = ap.parse_args()
    bench.OUT = args.out
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(args.threads)
    weights = os.path.join(args.out, f"{MODEL}.pth")
    if not os.path.exists(weights):
        torch.save(bench.MODELS[MODEL][0]().state_dict(), weights)
    folders = {"640x480 to 1024x768 (160)": os.path.join(args.out, "jpegs"),
               "4032x3024 (24)": os.path.join(args.out, "jpegs-camera")}
    bench.make_jpegs(folders["640x480 to 1024x768 (160)"])
    make_camera_jpegs(folders["4032x3024 (24)"])

    decode_rows, classify_rows, fast_rows = [], [], []
    for label, folder in folders.items():
        files = files_of(folder)
        z = zoo_decode_ms(folder)
        decode_rows.append((label, z["exact"], pil_decode_ms(files, False), z["fast"], pil_decode_ms(files, True)))
        # Two rounds, sides alternating, best of each (the machines are shared).
        runs = {"exact": [], "fast": [], "before": [], "pytorch": []}
        for _ in range(2):
            speed, exact = zoo_classify(args.zoo, folder, weights, args.threads)
            runs["exact"].append(speed)
            speed, fast = zoo_classify(args.zoo, folder, weights, args.threads, ["--fast-decode"])
            runs["fast"].append(speed)
            if args.before:
                runs["before"].append(zoo_classify(args.before, folder, weights, args.threads)[0])
            runs["pytorch"].append(bench.python_classify(MODEL, folder, BATCH))
        best = {k: max(v) if v else None for k, v in runs.items()}
        classify_rows.append((label, best))
        fast_rows.append((label, *compare(exact, fast)))

    # The whole run against the forward pass alone, on the 160 JPEGs; of the rounds, the fastest
    # run's parts.
    many = folders["640x480 to 1024x768 (160)"]
    runs, forwards = [], []
    for _ in range(4):
        runs.append(zoo_classify_timeline(args.zoo, many, weights, args.threads))
        forwards.append(zoo_forward(args.zoo, args.threads))
    total, n_many, to_first, between, exit_s = min(runs)
    forward = max(forwards)
    steady = (n_many - BATCH) / between
    setup = to_first - BATCH / steady

    cpu = "unknown CPU"
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    lines = [SECTION.strip(), "",
             f"Measured by `make bench` (tools/bench_jpeg.py) on {os.cpu_count()} cores ({cpu}), "
             f"{time.strftime('%Y-%m-%d')}. zoo decodes JPEG with libjpeg-turbo exactly as PIL does (same "
             "pixels); `--fast-decode` decodes at 1/2, 1/4 or 1/8 size in the DCT domain while the short "
             f"side stays at least the resize ({SIDE}), as PIL's `draft()`: not bit-exact with the reference.",
             "",
             "Decode to RGB, ms per image, one thread (best of 3 passes):", "",
             "| JPEGs | zoo | PIL | ratio | zoo --fast-decode | PIL draft() | ratio |",
             "|---|---|---|---|---|---|---|"]
    for label, z, p, zf, pf in decode_rows:
        lines.append(f"| {label} | {z:.2f} | {p:.2f} | {p / z:.2f}x | {zf:.2f} | {pf:.2f} | {pf / zf:.2f}x |")
    lines += ["", f"`zoo classify {MODEL}` whole run, images/s ({args.threads} threads, batch 32, best of 2; "
              "PyTorch: ImageFolder + DataLoader with 2 workers, same weights):", "",
              "| JPEGs | zoo before (zune-jpeg) | zoo | zoo --fast-decode | fast speed-up | PyTorch | zoo / PyTorch |",
              "|---|---|---|---|---|---|---|"]
    for label, b in classify_rows:
        before = f"{b['before']:.2f}" if b["before"] else "not measured"
        lines.append(f"| {label} | {before} | {b['exact']:.2f} | {b['fast']:.2f} | {b['fast'] / b['exact']:.2f}x "
                     f"| {b['pytorch']:.2f} | {b['exact'] / b['pytorch']:.2f}x |")
    lines += ["", "What `--fast-decode` changes (all 1000 probabilities of every image, against full-size "
              "decoding):", "", "| JPEGs | max probability difference | top-1 equal |", "|---|---|---|"]
    for label, worst, same, n in fast_rows:
        lines.append(f"| {label} | {worst:.2e} | {same}/{n} |")
    decode_ms = decode_rows[0][1]
    forward_core_ms = 1000 / forward * args.threads
    ideal = 1000 * args.threads / (forward_core_ms + decode_ms)
    gap = 1000 * args.threads / steady - forward_core_ms - decode_ms
    lines += ["", f"`zoo classify {MODEL}` whole run against its forward pass alone (160 JPEGs of 640x480 to "
              f"1024x768, {args.threads} threads, batch 32; the forward pass: `zoo benchmark {MODEL} --engine onednn "
              "--batch-size 32`, the engine classify picks for 160 images; the parts from the times at which the "
              "results reach standard output: the steady state between the first batch's results and the last's, "
              "the set-up before the first batch's less that batch at the steady rate, the exit after the last; "
              "the fastest of 4 runs):", "",
              "| whole run | steady state | forward alone | whole / forward | steady / forward | set-up | exit |",
              "|---|---|---|---|---|---|---|",
              f"| {n_many / total:.1f} images/s | {steady:.1f} images/s | {forward:.1f} images/s "
              f"| {n_many / total / forward:.2f} | {steady / forward:.2f} | {setup:.2f} s | {exit_s:.2f} s |", "",
              f"Where the rest goes: the set-up once a run (starting the process, reading the checkpoint, tracing, "
              f"freezing and rewriting the network while the first batch decodes, making the first call's "
              f"primitives); then decoding and resizing, "
              f"{decode_ms:.2f} ms of one core an image for the decode alone, on the same {args.threads} cores "
              f"as the forward pass ({forward_core_ms:.2f} ms of a core an image). Were the two only "
              f"sharing the cores, {ideal:.0f} images/s; the steady state's other {gap:.2f} ms of a core an image "
              "go to the resize and crop, assembling the batch, and the cores' switching between the decoding "
              "threads and libtorch's (which spin while they wait)."]
    section = "\n" + "\n".join(lines) + "\n"

    path = os.path.join(ROOT, "BENCHMARKS.md")
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    start = text.find(SECTION)
    if start >= 0:
        # In place: the sections after it stay after it.
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + section.rstrip("\n") + "\n" + (text[end:] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n" + section
    with open(path, "w") as f:
        f.write(text)
    print(section)


if __name__ == "__main__":
    main()
