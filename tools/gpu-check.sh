#!/usr/bin/env bash
# Runs on a GPU machine (the `device` tool), from the repository root, with build/gpu/ carried:
# zoo and the step bench built here, the real EfficientNet-Lite0 checkpoint, and the reference
# package. Checks CUDA inference against the CPU, --half/--bf16, forward and training-step
# throughput against PyTorch eager on the same card, and a short fine-tuning run on CUDA (fp32 and
# --amp) against the same run on the CPU.
# Writes $OUT/gpu-report.txt.
set -uo pipefail
G=build/gpu
TORCH_LIB=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib
export LD_LIBRARY_PATH=$TORCH_LIB:${LD_LIBRARY_PATH:-}
export PYTHONPATH=$G/py:${PYTHONPATH:-} ZOO_HOME=$G/home ZOO_OFFLINE=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
R=$OUT/gpu-report.txt
W=$G/efficientnet-lite0-57934424.pth
{
  echo "## card"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c 'import torch;print("torch", torch.__version__, "cuda", torch.version.cuda)'
  for mode in cpu cuda half bf16; do
    case $mode in cpu) flags="--device cpu";; cuda) flags="--device cuda";; half) flags="--device cuda --half";; bf16) flags="--device cuda --bf16";; esac
    $G/zoo classify efficientnet_lite0 --weights $W assets/photos --format jsonl --top-k 5 $flags > "$OUT/$mode.jsonl" 2> "$OUT/$mode.err"
    echo "classify $mode: exit $? $(tail -n1 "$OUT/$mode.err")"
  done
  python3 tools/gpu_compare.py "$OUT" $W
  echo "## zoo step bench (forward batch 64 at 224; train step batch 32)"
  $G/step $G 16 cuda f32
  $G/step $G 16 cuda f16
  echo "## fine-tuning on CUDA against the CPU: same data, seed and schedule, no augmentation"
  T="finetune efficientnet_lite0 --weights $W --data $G/data --epochs 2 --batch-size 30 --input-size 112 --no-augment --seed 0 --bn-momentum 0.1"
  for mode in cpu cuda amp; do
    case $mode in cpu) flags="--device cpu";; cuda) flags="--device cuda";; amp) flags="--device cuda --amp";; esac
    s=$SECONDS
    $G/zoo $T $flags --out "$OUT/ft-$mode" > "$OUT/ft-$mode.log" 2>&1
    echo "finetune $mode: exit $? in $((SECONDS - s)) s"; cat "$OUT/ft-$mode/metrics.csv"
  done
} > "$R" 2>&1
cat "$R"
