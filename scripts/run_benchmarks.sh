#!/usr/bin/env bash
# Runs the CPU benchmarks of docs/BENCHMARKS.md one after another on a quiet machine.
# Usage: bash scripts/run_benchmarks.sh ../shared/data/fer2013/fer2013.tar.gz   (logs in $OUT_DIR, default /tmp/fer-bench)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:?usage: run_benchmarks.sh DATA}
OUT_DIR=${OUT_DIR:-/tmp/fer-bench}
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT_DIR" docs/benchmarks
# 1. Training throughput: the project's Trainer vs a bare PyTorch loop, same model and batch size.
$PY scripts/benchmark_cnn.py --data "$DATA" --skip-training --out docs/benchmarks/cnn_throughput.json > "$OUT_DIR/throughput.log" 2>&1
# 2. The README's main command on the real data (cpu config: VGG-7 CNN + small ViT, then promotion).
/usr/bin/time -v make train DATA="$DATA" > "$OUT_DIR/train_all.log" 2>&1
# 3. The paper's V2.1 CNN with the same data, rebalancing and schedule.
$PY scripts/benchmark_cnn.py --data "$DATA" --set cnn.architecture=v2_1 --set cnn.dropout=0.5 \
    --out docs/benchmarks/cnn_v2_1_cpu.json > "$OUT_DIR/v2_1.log" 2>&1
echo done > "$OUT_DIR/done"
