#!/usr/bin/env bash
# Runs the CPU benchmarks of docs/BENCHMARKS.md one after another on a quiet machine.
# Usage: bash scripts/run_benchmarks.sh ../shared/data/fer2013/fer2013.tar.gz   (logs and JSON in $OUT_DIR, default /tmp/fer-bench)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:?usage: run_benchmarks.sh DATA}
OUT_DIR=${OUT_DIR:-/tmp/fer-bench}
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT_DIR"
# 1. Training throughput: the project's Trainer vs a bare PyTorch loop, same model and batch size.
$PY scripts/benchmark_cnn.py --data "$DATA" --config configs/cpu.yaml --skip-training --out "$OUT_DIR/cnn_throughput.json" \
    > "$OUT_DIR/throughput.log" 2>&1
# 2. The main command on the real data (cpu.yaml: the contest of vgg7, resnet and convvit, then promotion).
/usr/bin/time -v make train DATA="$DATA" > "$OUT_DIR/train_all.log" 2>&1
# 3. Inference: the pyfunc against a bare loop.
$PY scripts/benchmark_inference.py --config configs/cpu.yaml --data "$DATA" --out "$OUT_DIR/inference_cpu.json" \
    > "$OUT_DIR/inference.log" 2>&1
echo done > "$OUT_DIR/done"
