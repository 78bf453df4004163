"""Accuracy benchmark of the config's ViT, and training throughput of both models in fp32 and bf16.

Trains the ViT exactly as the ``train_vit`` step does (same Trainer, rebalancing, evaluation) and
reports test accuracy and per-emotion F1. ``--teacher DIR`` distils from a model saved with
``save_model`` (e.g. ``scripts/benchmark_cnn.py --model-out DIR``). ``--precision`` only measures
the training images/s of the config's CNN and ViT under fp32 and bf16 autocast, alternated.

Usage:
    python scripts/benchmark_vit.py --data ../shared/data/fer2013/fer2013.tar.gz --config configs/cpu.yaml \
        [--set contenders.convvit.max_train_minutes=3] [--teacher DIR] [--out docs/benchmarks/vit.json]
    python scripts/benchmark_vit.py --data ... --precision --out docs/benchmarks/precision.json
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fercore.config import load_config  # noqa: E402
from fercore.constants import CLASS_NAMES  # noqa: E402
from fercore.data.rebalance import rebalance  # noqa: E402
from fercore.data.sources import ingest  # noqa: E402
from fercore.data.split import split_validation  # noqa: E402
from fercore.evaluation.metrics import evaluate_predictions  # noqa: E402
from fercore.models import build_cnn, count_parameters, load_model, save_model  # noqa: E402
from fercore.models.inference import autocast_dtype, cpu_has_native_bf16, pick_device, predict_proba, to_batch
from fercore.models.vit import build_vit, vit_variant  # noqa: E402
from fercore.training.augment import BatchAugmenter
from fercore.training.distill import teacher_probabilities
from fercore.training.trainer import Trainer


def train_images_per_s(model: torch.nn.Module, cfg, images: np.ndarray, amp: torch.dtype | None, batches: int) -> float:
    """Images/s of augmented forward + backward + AdamW steps, after two warm-up batches."""
    device = pick_device()
    model = model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    augment = BatchAugmenter(cfg.augment, torch.Generator().manual_seed(0))
    y = torch.zeros(cfg.batch_size, dtype=torch.long, device=device)
    for j in range(batches + 2):
        if j == 2:
            start = time.perf_counter()
        x = augment(to_batch(images[j * cfg.batch_size:(j + 1) * cfg.batch_size], device, cfg.channels_last))
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y[:len(x)])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return batches * cfg.batch_size / (time.perf_counter() - start)


def cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), platform.machine())


def precision_rows(config, images: np.ndarray, batches: int, repeats: int) -> list[dict]:
    rows = []
    for kind, cfg in config.enabled_contenders().items():
        build = (lambda c=cfg: build_cnn(c.architecture, **c.model_kwargs())) if cfg.family == "cnn" else \
            (lambda c=cfg: build_vit(c))
        best = {"fp32": 0.0, "bf16": 0.0}
        for _ in range(repeats):  # alternated, best of `repeats`: the host's speed drifts
            for name, amp in (("fp32", None), ("bf16", torch.bfloat16)):
                torch.manual_seed(0)
                best[name] = max(best[name], train_images_per_s(build(), cfg, images, amp, batches))
        rows.append({"model": kind, "batch_size": cfg.batch_size, **{f"{k}_images_per_s": round(v, 1)
                     for k, v in best.items()}, "bf16_speedup": round(best["bf16"] / best["fp32"], 3)})
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--config", default="configs/cpu.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--contender", default="convvit", help="a ViT contender of the config")
    parser.add_argument("--teacher", type=Path, help="distil from this saved model (sets distill.enabled)")
    parser.add_argument("--precision", action="store_true", help="only measure fp32 vs bf16 training throughput")
    parser.add_argument("--batches", type=int, default=30, help="timed batches per throughput measurement")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--model-out", type=Path, help="save the trained ViT here (save_model format)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    if args.teacher:
        overrides[f"contenders.{args.contender}.distill.enabled"] = True
    config = load_config(args.config, {"data.source": args.data, **overrides})
    cfg = config.contenders[args.contender]
    t0 = time.perf_counter()
    ds = split_validation(ingest(args.data, config.data.cache_dir), config.data.val_fraction, config.data.seed)
    report = {"command": " ".join(sys.argv), "machine": cpu_model(),
              "native_bf16": cpu_has_native_bf16(), "torch": torch.__version__, "threads": torch.get_num_threads(),
              "date": time.strftime("%Y-%m-%d")}
    if args.precision:
        report["throughput"] = precision_rows(config, ds.split("train").images, args.batches, args.repeats)
    else:
        plan = rebalance(ds, config.rebalance.method, config.rebalance.seed, config.rebalance.size,
                         config.rebalance.power)
        teacher_probs = None
        if args.teacher:
            teacher = load_model(args.teacher, pick_device())
            teacher_probs = teacher_probabilities(lambda x: predict_proba(teacher, x, tta="hflip"), ds)
        prep_s = time.perf_counter() - t0
        model = build_vit(cfg)
        result = Trainer(model, cfg, teacher_probs=teacher_probs).fit(ds, plan)
        test = ds.split("test")
        t1 = time.perf_counter()
        probs = predict_proba(model, test.images, tta=cfg.tta, amp=autocast_dtype(pick_device(), cfg.mixed_precision))
        ev = evaluate_predictions(test.labels, probs.argmax(1), test.subsets)
        report.update(
            variant=vit_variant(cfg), parameters=count_parameters(model), prepare_s=round(prep_s, 1),
            train_s=round(result.wall_s, 1), evaluate_s=round(time.perf_counter() - t1, 1),
            epochs_run=len(result.history), best_epoch=result.best_epoch,
            train_images_per_s=round(result.train_images_per_s, 1),
            precision=str(autocast_dtype(pick_device(), cfg.mixed_precision) or "fp32"),
            test_accuracy=round(ev.overall["accuracy"], 4), test_macro_f1=round(ev.overall["macro_f1"], 4),
            subsets={k: round(v["accuracy"], 4) for k, v in ev.subsets.items()},
            per_class_f1={c: round(float(ev.per_class.loc[c, "f1"]), 4) for c in CLASS_NAMES},
            history=result.history,
        )
        if args.model_out:
            save_model(model, args.model_out)
    print(json.dumps({k: v for k, v in report.items() if k != "history"}, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
