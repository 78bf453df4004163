#!/usr/bin/env bash
# GPU check, run once on a CUDA machine: the Trainer's CUDA path (unit tests), GPU throughput of the
# CNN and of ViT-B/16, and a sweep of CNN settings trained side by side on the full FER-2013.
# Accuracy does not depend on the device, so the sweep picks settings for the 2-core CPU budget.
#
# Usage: scripts/device_check.sh DATA_ARCHIVE OUT_DIR [TOTAL_BUDGET_S]
set -uo pipefail
DATA=$1 OUT=$2 BUDGET=${3:-560}
export PYTHONUNBUFFERED=1 FER_CACHE_DIR=/tmp/fer-cache HF_HUB_OFFLINE=1
mkdir -p "$OUT" logs
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee logs/gpu.txt
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a logs/gpu.txt

echo "== 1. CUDA smoke: Trainer and ViT unit tests on the GPU"
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/unit/test_train.py tests/unit/test_vit.py 2>&1 | tail -15 | tee logs/pytest.txt

echo "== 2. ViT-B/16 fine-tuning throughput (random weights: the hub is unreachable)"
timeout 60 python3 scripts/benchmark_vit_gpu.py --batch-size 64 --steps 40 --out "$OUT/vit_b16_gpu.json" 2>&1 | tail -12

echo "== 3. CNN throughput alone (bf16 autocast), fills the dataset cache"
timeout 180 python3 scripts/benchmark_cnn.py --data "$DATA" --config configs/cpu.yaml --skip-training \
    --throughput-batches 100 --out "$OUT/cnn_gpu_throughput.json" 2>&1 | tail -12

SWEEP_TIMEOUT=$((BUDGET - SECONDS - 15))
TRAIN_MINUTES=$(python3 -c "print(round(($SWEEP_TIMEOUT - 45) / 60, 2))")
echo "== 4. Sweep: cpu.yaml's 21 epochs, fp32 like the CPU, one process per setting (${SWEEP_TIMEOUT}s left)"
run() {  # name, overrides...
    local name=$1; shift
    local sets=(--set contenders.vgg7.mixed_precision=fp32 --set contenders.vgg7.max_train_minutes=$TRAIN_MINUTES)
    for s in "$@"; do sets+=(--set "$s"); done
    OMP_NUM_THREADS=1 timeout "$SWEEP_TIMEOUT" python3 scripts/benchmark_cnn.py --data "$DATA" \
        --config configs/cpu.yaml --throughput-batches 2 "${sets[@]}" --out "logs/sweep_$name.json" \
        >"logs/sweep_$name.log" 2>&1 &
}
run base
run p05 rebalance.power=0.5
run p05_seed7 rebalance.power=0.5 contenders.vgg7.seed=7
run p03 rebalance.power=0.3
run none rebalance.method=none
run p05_ep24 rebalance.power=0.5 contenders.vgg7.epochs=24
run p05_lr3e-3 rebalance.power=0.5 contenders.vgg7.learning_rate=0.003
run p05_erase rebalance.power=0.5 contenders.vgg7.augment.erasing=0.25
run p05_ls0 rebalance.power=0.5 contenders.vgg7.label_smoothing=0.0
wait
python3 - "$OUT/sweep.json" <<'EOF'
import glob, json, sys
rows = {}
for path in sorted(glob.glob("logs/sweep_*.json")):
    r = json.load(open(path))
    rows[path[len("logs/sweep_"):-5]] = {k: r.get(k) for k in (
        "overrides", "test_accuracy", "test_macro_f1", "test_accuracy_by_tta", "subsets", "per_class_accuracy",
        "best_epoch", "epochs_run", "train_wall_s", "history")}
json.dump(rows, open(sys.argv[1], "w"), indent=1)
for name, r in sorted(rows.items(), key=lambda kv: -kv[1]["test_accuracy"]):
    print(f"{name:14s} acc {r['test_accuracy']:.4f} f1 {r['test_macro_f1']:.4f} tta {r['test_accuracy_by_tta']} "
          f"best {r['best_epoch']}/{r['epochs_run']} {r['train_wall_s']}s")
EOF
tar czf "$OUT/logs.tgz" logs
