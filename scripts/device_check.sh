#!/usr/bin/env bash
# GPU check, run once on a CUDA machine: the Trainer's CUDA path (unit tests), GPU throughput of the
# CNNs and of ViT-B/16, and the CNN contenders trained at GPU budgets on the full FER-2013, side by side.
# The sweep is ranked by validation accuracy (the kept epoch's); test accuracy is reported beside it only.
#
# Usage: scripts/device_check.sh DATA_ARCHIVE OUT_DIR [TOTAL_BUDGET_S]
set -uo pipefail
DATA=$1 OUT=$2 BUDGET=${3:-500}
export PYTHONUNBUFFERED=1 FER_CACHE_DIR=/tmp/fer-cache HF_HUB_OFFLINE=1
mkdir -p "$OUT" logs
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee logs/gpu.txt
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a logs/gpu.txt

echo "== 1. CUDA smoke: Trainer, ViT and conv-ViT unit tests on the GPU"
timeout 150 python3 -m pytest -q -p no:cacheprovider -x tests/unit/test_train.py tests/unit/test_vit.py \
    tests/unit/test_convvit.py 2>&1 | tail -15 | tee logs/pytest.txt

echo "== 2. ViT-B/16 fine-tuning throughput at 224 px (random weights: the hub is unreachable)"
for bs in 64 256; do
    timeout 60 python3 scripts/benchmark_vit_gpu.py --batch-size $bs --steps 30 --out "logs/vit_b16_bs$bs.json" 2>&1 | tail -4
done

echo "== 3. CNN throughput (Trainer vs bare loop, bf16 autocast); fills the dataset cache"
timeout 150 python3 scripts/benchmark_cnn.py --data "$DATA" --config configs/cpu.yaml --skip-training \
    --throughput-batches 100 --out logs/cnn_throughput.json 2>&1 | tail -8

SWEEP_TIMEOUT=$((BUDGET - SECONDS - 10))
TRAIN_MINUTES=$(python3 -c "print(round(($SWEEP_TIMEOUT - 50) / 60, 2))")
echo "== 4. Sweep: CNN contenders at GPU budgets, one process each, ${TRAIN_MINUTES} training minutes (${SWEEP_TIMEOUT}s left)"
run() {  # name, contender, overrides...
    local name=$1 contender=$2; shift 2
    local sets=(--set contenders.$contender.max_train_minutes=$TRAIN_MINUTES)
    for s in "$@"; do sets+=(--set "$s"); done
    OMP_NUM_THREADS=2 timeout "$SWEEP_TIMEOUT" python3 scripts/benchmark_cnn.py --data "$DATA" --contender "$contender" \
        --config configs/cpu.yaml --throughput-batches 2 --throughput-repeats 1 "${sets[@]}" --out "logs/sweep_$name.json" \
        >"logs/sweep_$name.log" 2>&1 &
}
run vgg7_cpu vgg7
run vgg7_ep60 vgg7 contenders.vgg7.epochs=60 contenders.vgg7.patience=12
run vgg7_w64_ep60 vgg7 contenders.vgg7.width=64 contenders.vgg7.epochs=60 contenders.vgg7.patience=12
run resnet_cpu resnet
run resnet_w32_ep60 resnet contenders.resnet.width=32 contenders.resnet.epochs=60 contenders.resnet.patience=12
run resnet_w48_ep60 resnet contenders.resnet.width=48 contenders.resnet.epochs=60 contenders.resnet.patience=12
run resnet_w32_ep60_p1 resnet contenders.resnet.width=32 contenders.resnet.epochs=60 contenders.resnet.patience=12 rebalance.power=1.0
wait
python3 - "$OUT/sweep.json" <<'PY'
import glob, json, sys
rows = {}
for path in sorted(glob.glob("logs/sweep_*.json")):
    r = json.load(open(path))
    rows[path[len("logs/sweep_"):-5]] = {k: r.get(k) for k in (
        "overrides", "parameters", "val_accuracy", "test_accuracy", "test_macro_f1", "per_class_accuracy",
        "best_epoch", "epochs_run", "train_wall_s", "train_images_per_s", "history")}
json.dump(rows, open(sys.argv[1], "w"), indent=1)
print("ranked by validation accuracy (test reported only):")
for name, r in sorted(rows.items(), key=lambda kv: -(kv[1]["val_accuracy"] or 0)):
    print(f"{name:20s} val {r['val_accuracy']} test {r['test_accuracy']} f1 {r['test_macro_f1']} "
          f"best {r['best_epoch']}/{r['epochs_run']} {r['train_wall_s']}s {r['train_images_per_s']} img/s")
PY
tar czf "$OUT/logs.tgz" logs
