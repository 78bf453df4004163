#!/usr/bin/env bash
# Runs every CPU benchmark of docs/BENCHMARKS.md one after another; logs go to $OUT_DIR (default /tmp/fer-bench).
# Usage: bash scripts/run_benchmarks.sh ../shared/data/fer2013/fer2013.tar.gz
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:?usage: run_benchmarks.sh DATA}
OUT_DIR=${OUT_DIR:-/tmp/fer-bench}
mkdir -p "$OUT_DIR" docs/benchmarks
PY=${PY:-.venv/bin/python}
# 1. Trainer vs bare PyTorch loop, same model and batch size.
$PY scripts/benchmark_cnn.py --data "$DATA" --skip-training --out docs/benchmarks/cnn_throughput.json > "$OUT_DIR/throughput.log" 2>&1
# 2. The README's main command on the real data: train_all with the cpu config (CNN + small ViT).
/usr/bin/time -v $PY run.py --pipeline train_all --config configs/cpu.yaml --data "$DATA" > "$OUT_DIR/train_all.log" 2>&1
# 3. The paper's V2.1 CNN under the same settings.
$PY scripts/benchmark_cnn.py --data "$DATA" --set cnn.architecture=v2_1 --set cnn.dropout=0.5 \
    --out docs/benchmarks/cnn_v2_1_cpu.json > "$OUT_DIR/v2_1.log" 2>&1
echo done > "$OUT_DIR/done"
