"""How a contender should go on after a rung: a warm restart of its schedule, or one schedule paused (a command).

Trains one CNN contender for ``--minutes`` two ways, on the full FER-2013:

- ``one schedule``: one one-cycle schedule over the whole budget (what pausing it at the rung and
  resuming gives, the pause aside); the figures at the rung are those of the epoch that ends it;
- ``warm restart``: the rung's share with its own schedule, then the rest with a new schedule from the
  rung's kept weights (what ``contest.rungs`` does).

It reports validation accuracy, loss and macro-F1 at the rung (what the contest would judge) and at the end,
and the test accuracy at the end (reported, never used to choose).

Usage:
    python scripts/benchmark_rungs.py --data ../shared/data/fer2013/fer2013.tar.gz --minutes 6 --rung 0.25 \
        [--contender vgg7] [--out docs/benchmarks/rungs_vgg7.json]
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

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fercore.config import load_config  # noqa: E402
from fercore.data.rebalance import rebalance  # noqa: E402
from fercore.data.sources import ingest  # noqa: E402
from fercore.data.split import split_validation  # noqa: E402
from fercore.evaluation.metrics import evaluate_predictions  # noqa: E402
from fercore.models import build_cnn  # noqa: E402
from fercore.models.inference import centre_crop, predict_proba  # noqa: E402
from fercore.training.job_keys import weights_digest  # noqa: E402
from fercore.training.trainer import Trainer  # noqa: E402


def scores(model, ds, split: str, crop: int | None) -> dict[str, float]:
    part = ds.split(split)
    ev = evaluate_predictions(part.labels, predict_proba(model, centre_crop(part.images, crop)).argmax(1))
    return {"accuracy": round(ev.overall["accuracy"], 4), "macro_f1": round(ev.overall["macro_f1"], 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--config", default="configs/cpu.yaml")
    parser.add_argument("--contender", default="vgg7")
    parser.add_argument("--minutes", type=float, default=6.0)
    parser.add_argument("--rung", type=float, default=0.25, help="the first rung's share of the budget")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config = load_config(args.config, {"data.source": args.data})
    cfg = config.contenders[args.contender].model_copy(update={"max_train_minutes": args.minutes})
    ds = split_validation(ingest(args.data, config.data.cache_dir), config.data.val_fraction, config.data.seed)
    plan = rebalance(ds, config.rebalance.method, config.rebalance.seed, config.rebalance.size, config.rebalance.power)
    crop = cfg.augment.crop_size
    report = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores, torch {torch.__version__}", "contender": args.contender,
              "minutes": args.minutes, "rung": args.rung}

    # one schedule: the rung's figures are the epoch that ends at or after the rung's share of the budget
    model, at_rung, t0 = build_cnn(cfg.architecture, **cfg.model_kwargs()), {}, time.perf_counter()

    def record(epoch: int, metrics: dict[str, float]) -> None:
        if not at_rung and time.perf_counter() - t0 >= args.rung * args.minutes * 60:
            at_rung.update(epoch=epoch, val_accuracy=round(metrics["val_accuracy"], 4),
                           val_loss=round(metrics["val_loss"], 4))

    with tempfile.TemporaryDirectory() as tmp:
        result = Trainer(model, cfg, tmp, on_epoch_end=record).fit(ds, plan)
    report["one_schedule"] = {"at_rung": at_rung, "epochs": len(result.history), "kept": result.kept_weights,
                              "val": scores(model, ds, "val", crop), "test": scores(model, ds, "test", crop)}
    print(json.dumps(report, indent=2), flush=True)

    # warm restart: the rung, then the rest from its kept weights with a new schedule
    model = build_cnn(cfg.architecture, **cfg.model_kwargs())
    first = cfg.model_copy(update={"max_train_minutes": args.minutes * args.rung})
    rest = cfg.model_copy(update={"max_train_minutes": args.minutes * (1 - args.rung)})
    with tempfile.TemporaryDirectory() as tmp:
        r1 = Trainer(model, first, tmp).fit(ds, plan)
        rung_val = scores(model, ds, "val", crop)
        r2 = Trainer(model, rest, tmp, start_digest=weights_digest(model)).fit(ds, plan)
    report["warm_restart"] = {"at_rung": {"epochs": len(r1.history), "kept": r1.kept_weights, **rung_val,
                                          "val_loss": round(r1.best_val_loss, 4)},
                              "epochs": len(r1.history) + len(r2.history), "kept": r2.kept_weights,
                              "val": scores(model, ds, "val", crop), "test": scores(model, ds, "test", crop)}
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
