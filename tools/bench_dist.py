"""`make bench`, data-parallel part: training-step images/s of `zoo train` at world size 1 and 2
on the CPU (Gloo, one libtorch thread per process, the same batch per process), and the scaling
efficiency (images/s at W=2 over twice that at W=1). Appends (or replaces) its section of
BENCHMARKS.md, after tools/bench.py has written the rest.

usage: bench_dist.py ZOO_BINARY WORK_DIR
"""

import csv
import os
import re
import shutil
import socket
import subprocess
import sys
import time

FMNIST = "/usr/share/datasets/fashion-mnist"
MODEL, INPUT, BATCH, PER_CLASS, ROUNDS = "resnet18", 64, 16, 32, 2
SECTION = "## Data-parallel training (CPU, Gloo)"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def export(zoo, work):
    data = os.path.join(work, "fmnist")
    if not os.path.isdir(os.path.join(data, "train")):
        subprocess.run(
            [zoo, "dataset", "export-idx", "--limit-per-class", str(PER_CLASS), "--out", data,
             "--images", f"{FMNIST}/train-images-idx3-ubyte.gz",
             "--labels", f"{FMNIST}/train-labels-idx1-ubyte.gz"],
            check=True, stdout=subprocess.DEVNULL)
    return data


def train(zoo, work, data, world):
    """One epoch on `world` processes; images/s of the training phase as rank 0 reports it."""
    out = os.path.join(work, f"w{world}")
    shutil.rmtree(out, ignore_errors=True)
    args = [zoo, "train", MODEL, "--data", data, "--out", out, "--epochs", "1", "--val-split", "0",
            "--batch-size", str(BATCH), "--input-size", str(INPUT), "--no-augment", "--threads", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1", ZOO_OFFLINE="1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    procs = []
    if world == 1:
        procs.append(subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    else:
        port = str(free_port())
        for rank in range(world):
            e = dict(env, RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                     MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
            procs.append(subprocess.Popen(args, env=e, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    for p in procs:
        _, err = p.communicate(timeout=1800)
        if p.returncode != 0:
            sys.exit(f"bench_dist: zoo train at W={world} failed:\n{err.decode()}")
    with open(os.path.join(out, "metrics.csv")) as f:
        row = list(csv.DictReader(f))[-1]
    return float(row["images_per_second"])


def main():
    zoo, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    data = export(zoo, work)
    best = {}
    for _ in range(ROUNDS):
        for world in (1, 2):
            best[world] = max(best.get(world, 0.0), train(zoo, work, data, world))
    eff = best[2] / (2 * best[1])
    import torch

    lines = [
        SECTION,
        "",
        f"Measured by `make bench` (tools/bench_dist.py), {time.strftime('%Y-%m-%d')}, torch {torch.__version__}: "
        f"`zoo train {MODEL}` at {INPUT}x{INPUT} on {PER_CLASS * 10} Fashion-MNIST images, one epoch, batch "
        f"{BATCH} per process, one libtorch thread per process, best of {ROUNDS} rounds; world size 2 is two "
        "processes on 127.0.0.1 (Gloo, gradients all-reduced in buckets during backward).",
        "",
        "| world size | training images/s | scaling efficiency |",
        "|---|---|---|",
        f"| 1 | {best[1]:.1f} | 1.00 |",
        f"| 2 | {best[2]:.1f} | {eff:.2f} |",
        "",
    ]
    path = "BENCHMARKS.md"
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    # Replace an earlier section of ours (up to the next "## " heading), else append.
    text = re.sub(rf"\n{re.escape(SECTION)}\n.*?(?=\n## |\Z)", "", text, flags=re.S).rstrip("\n")
    open(path, "w").write(text + "\n\n" + "\n".join(lines))
    print(f"bench_dist: W=1 {best[1]:.1f} images/s, W=2 {best[2]:.1f} images/s, efficiency {eff:.2f}")


if __name__ == "__main__":
    main()
