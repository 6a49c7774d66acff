"""GPU check, Python side: agreement of zoo's CUDA / half / bf16 results with its CPU result,
and PyTorch eager throughput on the same card for the same model and weights file.

Usage: gpu_compare.py OUT_DIR LITE0_CHECKPOINT
"""
import json
import sys
import time

import torch


def load(path):
    return {r["path"]: r for r in map(json.loads, open(path))}


def main():
    out, ckpt = sys.argv[1], sys.argv[2]
    cpu = load(f"{out}/cpu.jsonl")
    for mode in ["cuda", "half", "bf16"]:
        try:
            other = load(f"{out}/{mode}.jsonl")
        except (OSError, ValueError) as e:
            print(f"{mode}: no result ({e})")
            continue
        same_top1 = sum(other[p]["top"][0]["index"] == r["top"][0]["index"] for p, r in cpu.items())
        diff = max(abs(a["prob"] - b["prob"]) for p, r in cpu.items() for a, b in zip(r["top"], other[p]["top"])
                   if a["index"] == b["index"])
        print(f"{mode} vs cpu: top-1 equal on {same_top1}/{len(cpu)} photos, max |prob diff| {diff:.2e}")
    from efficientnet_lite_pytorch import EfficientNet
    m = EfficientNet.from_name("efficientnet-lite0")
    m.load_state_dict(torch.load(ckpt, map_location="cpu"))
    m = m.cuda().eval()
    for dtype in [torch.float32, torch.float16]:
        forward_time("efficientnet_lite0", m.to(dtype), dtype)
    try:
        import torchvision
    except ImportError:
        print("torchvision is not installed on this machine: resnet50 and training-step figures skipped")
        return
    forward_time("resnet50", torchvision.models.resnet50(weights=None).cuda().eval(), torch.float32)
    for name in ["resnet18", "mobilenet_v2"]:
        train_step_time(name, getattr(torchvision.models, name)(weights=None).cuda().train())


def timed(f, warmup=3, runs=20):
    """Median seconds of f(), synchronised, after warm-up."""
    for _ in range(warmup):
        f()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        f()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return sorted(times)[runs // 2]


def train_step_time(name, model):
    """One SGD step (momentum 0.9) at batch 32, 224x224, float32: the zoo step bench's work."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(32, 3, 224, 224, device="cuda")
    y = torch.randint(1000, (32,), device="cuda")

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    t = timed(step)
    print(f'{{"bench": "pytorch train_step", "model": "{name}", "batch": 32, "seconds": {t}}}')


def forward_time(name, model, dtype):
    """Median seconds of one forward pass at batch 64, 224x224, synchronised."""
    x = torch.randn(64, 3, 224, 224, device="cuda", dtype=dtype)
    with torch.no_grad():
        t = timed(lambda: model(x))
    print(f'{{"bench": "pytorch forward", "model": "{name}", "batch": 64, "dtype": "{dtype}", "seconds": {t}}}')


if __name__ == "__main__":
    main()
