"""Accuracy and throughput benchmark of a CNN on the full FER-2013 (a command, not a test).

Trains the config's CNN exactly as the ``train_cnn`` step does (same Trainer, rebalancing and
evaluation), and measures the Trainer's throughput against a bare PyTorch loop on the same model.

Usage:
    python scripts/benchmark_cnn.py --data ../shared/data/fer2013/fer2013.tar.gz --config configs/cpu.yaml \
        [--contender vgg7] [--set contenders.vgg7.architecture=v2_1] [--out docs/benchmarks/cnn.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fercore.config import load_config  # noqa: E402
from fercore.data.rebalance import rebalance  # noqa: E402
from fercore.data.sources import ingest  # noqa: E402
from fercore.data.split import split_validation  # noqa: E402
from fercore.evaluation.metrics import evaluate_predictions  # noqa: E402
from fercore.models import build_cnn, count_parameters, save_model  # noqa: E402
from fercore.models.inference import TTA_MODES, centre_crop, pick_device, predict_proba, to_batch  # noqa: E402
from fercore.training.trainer import Trainer  # noqa: E402


def bare_loop_images_per_s(cfg, images: np.ndarray, labels: np.ndarray, batches: int) -> float:
    """The same model, batch size and optimizer in the plainest loop: no augmentation, no bookkeeping."""
    device = pick_device()
    model = build_cnn(cfg.architecture, **cfg.model_kwargs()).to(device).train()
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    x_all = to_batch(images[: batches * cfg.batch_size], device, cfg.channels_last)
    x_all = centre_crop(x_all, cfg.augment.crop_size).contiguous(  # the Trainer's input size
        memory_format=torch.channels_last if cfg.channels_last else torch.contiguous_format)
    y_all = torch.as_tensor(labels[: batches * cfg.batch_size], device=device)
    # Timed like the Trainer's epoch: every batch from a cold start (oneDNN warm-up included in both).
    start = time.perf_counter()
    for j in range(batches):
        x, y = x_all[j * cfg.batch_size:(j + 1) * cfg.batch_size], y_all[j * cfg.batch_size:(j + 1) * cfg.batch_size]
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return batches * cfg.batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--config", default="configs/cpu.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--contender", default="vgg7", help="a CNN contender of the config")
    parser.add_argument("--throughput-batches", type=int, default=40)
    parser.add_argument("--throughput-repeats", type=int, default=2)
    parser.add_argument("--skip-training", action="store_true", help="only measure throughput")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--model-out", type=Path, help="save the trained model here (save_model format)")
    parser.add_argument("--compare-tta", action="store_true", help="also evaluate every other test-time mode")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    config = load_config(args.config, {"data.source": args.data, **overrides})
    cfg = config.contenders[args.contender]
    t0 = time.perf_counter()
    ds = split_validation(ingest(args.data, config.data.cache_dir), config.data.val_fraction, config.data.seed)
    plan = rebalance(ds, config.rebalance.method, config.rebalance.seed, config.rebalance.size,
                     config.rebalance.power)
    prep_s = time.perf_counter() - t0
    report = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores, torch {torch.__version__}, device {pick_device()}",
              "config": args.config, "overrides": overrides, "architecture": cfg.architecture,
              "parameters": count_parameters(build_cnn(cfg.architecture, **cfg.model_kwargs()))}

    # Throughput, side by side: the Trainer on the same number of rows as the bare loop, alternated
    # and repeated (best of each): the first batches of a process are slow (oneDNN kernel selection,
    # allocator warm-up), and a shared host's speed drifts.
    n = args.throughput_batches * cfg.batch_size
    # Eager in both loops: this compares the Trainer's overhead, not torch.compile (its ~40 s of
    # compilation would swamp 40 batches); the training run below uses the config's setting.
    short = cfg.model_copy(update={"epochs": 1, "max_train_images": n, "max_train_minutes": None, "compile": False})
    # The same shuffled rows as training: the train rows are sorted by class, and a single-class batch
    # stream drives gradients into denormals, which are many times slower on CPUs.
    rows = np.random.default_rng(cfg.seed).permutation(plan.epoch_rows(0))
    bare_images, bare_labels = ds.images[rows], ds.labels[rows]
    trainer_runs, bare_runs = [], []
    for _ in range(args.throughput_repeats):
        bare_runs.append(bare_loop_images_per_s(cfg, bare_images, bare_labels, args.throughput_batches))
        with tempfile.TemporaryDirectory() as tmp:
            model = build_cnn(cfg.architecture, **cfg.model_kwargs())
            trainer_runs.append(Trainer(model, short, tmp).fit(ds, plan).train_images_per_s)
    report.update(trainer_images_per_s=round(max(trainer_runs), 1), bare_loop_images_per_s=round(max(bare_runs), 1),
                  throughput_ratio=round(max(trainer_runs) / max(bare_runs), 3),
                  throughput_runs={"trainer": [round(v, 1) for v in trainer_runs],
                                   "bare_loop": [round(v, 1) for v in bare_runs]})
    print(json.dumps(report, indent=2), flush=True)
    if not args.skip_training:
        model = build_cnn(cfg.architecture, **cfg.model_kwargs())
        with tempfile.TemporaryDirectory() as tmp:
            result = Trainer(model, cfg, tmp).fit(ds, plan)
        if args.model_out:  # kept for later evaluation (e.g. other test-time views) without retraining
            save_model(model, args.model_out)
        test = ds.split("test")
        by_tta, eval_s = {}, {}
        for mode in TTA_MODES if args.compare_tta else (cfg.tta,):  # the config's mode is what the pipeline runs
            t_eval = time.perf_counter()
            by_tta[mode] = predict_proba(model, test.images, tta=mode).argmax(1)
            eval_s[mode] = round(time.perf_counter() - t_eval, 1)
        ev = evaluate_predictions(test.labels, by_tta[cfg.tta], test.subsets)
        report.update(
            wall_s=round(time.perf_counter() - t0, 1), train_wall_s=round(result.wall_s, 1),
            # what the pipeline's own path costs: data preparation, training, evaluation in the config's mode
            prepare_train_evaluate_s=round(prep_s + result.wall_s + eval_s[cfg.tta], 1), eval_s_by_tta=eval_s,
            train_images_per_s=round(result.train_images_per_s, 1), epochs_run=len(result.history),
            best_epoch=result.best_epoch,
            # the kept epoch's validation accuracy: what a sweep ranks by (the test split only reports)
            val_accuracy=round(result.history[result.best_epoch - 1]["val_accuracy"], 4) if result.best_epoch else None,
            test_accuracy=round(ev.overall["accuracy"], 4),
            test_macro_f1=round(ev.overall["macro_f1"], 4), tta=cfg.tta,
            test_accuracy_by_tta={m: round(float((p == test.labels).mean()), 4) for m, p in by_tta.items()},
            subsets={k: round(v["accuracy"], 4) for k, v in ev.subsets.items()},
            per_class_accuracy={k: round(float(v), 4) for k, v in ev.per_class["accuracy"].items()},
            per_class_f1={k: round(float(v), 4) for k, v in ev.per_class["f1"].items()},
            kept_weights=result.kept_weights,  # with ema_decay: raw or averaged, whichever validated better
            history=result.history,
        )
        print(ev.markdown())
    print(json.dumps({k: v for k, v in report.items() if k != "history"}, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
