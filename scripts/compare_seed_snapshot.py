"""What a converged contender's next night should train: a new seed, or a snapshot after a low-rate restart (a command).

Issue 41, item 3: a contender whose continuation kept its start weights has converged; the next night can start it
fresh from a new seed (what the pipeline does), or restart it from its weights at a low learning rate and keep the
snapshot (snapshot ensembles, Huang et al. 2017). Both get the same ``--minutes``; each is judged as the library
would use it: alone, and in the averaging ensemble (temperatures and greedy selection fitted on validation, judged
out of fold, as promotion does) with the registered version it would join. Validation (PublicTest) decides; test
(PrivateTest) is reported.

Usage:
    python scripts/compare_seed_snapshot.py --data ../shared/data/fer2013/fer2013.tar.gz \
        --tracking-uri sqlite:///mlflow.db --version 3 --minutes 6 [--lr-factor 0.1] \
        [--out docs/benchmarks/seed_vs_snapshot.json]
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fercore.config import load_config  # noqa: E402
from fercore.data.rebalance import rebalance  # noqa: E402
from fercore.data.sources import ingest  # noqa: E402
from fercore.data.split import split_validation  # noqa: E402
from fercore.evaluation.metrics import evaluate_predictions  # noqa: E402
from fercore.models.inference import autocast_dtype, predict_proba  # noqa: E402
from fercore.models.io import load_model  # noqa: E402
from fercore.promotion.ensembles import out_of_fold  # noqa: E402
from fercore.tracking import registry  # noqa: E402
from fercore.tracking.copies import cache_folder, copy_version, network_folder  # noqa: E402
from fercore.training.job_keys import weights_digest  # noqa: E402
from fercore.training.trainer import Trainer  # noqa: E402
from fercore.training.warm_start import build_contender, seeded  # noqa: E402


def figures(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    ev = evaluate_predictions(labels, probs.argmax(1))
    return {"accuracy": round(ev.overall["accuracy"], 4), "macro_f1": round(ev.overall["macro_f1"], 4)}


def judged(ds, base: dict[str, np.ndarray], new: dict[str, np.ndarray]) -> tuple[dict[str, dict], np.ndarray]:
    """The new model alone, and the ensemble with the base on validation (out of fold) and on test (fitted on all
    of validation, applied to test); and the ensemble's out-of-fold validation probabilities (for the verdict)."""
    from fercore.promotion.ensembles import fit_averaging

    val, test = ds.split("val").labels, ds.split("test").labels
    pair_val = {"base": base["val"], "new": new["val"]}
    fit = fit_averaging(pair_val, val)
    oof = out_of_fold(pair_val, val)
    return {"alone": {"val": figures(val, new["val"]), "test": figures(test, new["test"])},
            "with_base": {"weights": {k: round(v, 3) for k, v in fit.weights.items()},
                          "val_out_of_fold": figures(val, oof),
                          "test": figures(test, fit.apply({"base": base["test"], "new": new["test"]}))}}, oof


def verdict(labels: np.ndarray, new_seed: np.ndarray, snapshot: np.ndarray) -> dict[str, str | None]:
    """Which arm's ensemble with the base leads on validation (out-of-fold probabilities), by the paired bootstrap
    promotion uses (:class:`fercore.evaluation.significance.Bootstrap`): a lead whose 95 % interval holds zero is
    noise, and names no arm."""
    from fercore.evaluation.significance import Bootstrap

    lead = Bootstrap(labels).lead(new_seed.argmax(1), snapshot.argmax(1))
    better = lead.leader("new_seed", "low_rate_snapshot")
    return {"new_seed_lead_macro_f1": str(lead), "better_by_validation": better,
            "verdict": f"{better} leads beyond the noise" if better else "inside the noise: neither arm leads"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--config", default="configs/cpu.yaml")
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--model-name", default="fer2013-emotion")
    parser.add_argument("--version", required=True, help="the converged version (a single model)")
    parser.add_argument("--minutes", type=float, default=6.0)
    parser.add_argument("--lr-factor", type=float, default=0.1, help="the snapshot's peak rate, times the contender's")
    parser.add_argument("--seed", type=int, default=1000, help="the new seed")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    tags = registry.get_version(args.tracking_uri, args.model_name, args.version).tags
    contender = tags["contender"]
    config = load_config(args.config, {"data.source": args.data})
    cfg = config.contenders[contender].model_copy(update={"max_train_minutes": args.minutes})
    ds = split_validation(ingest(args.data, config.data.cache_dir), config.data.val_fraction, config.data.seed,
                          config.data.validation)
    plan = rebalance(ds, config.rebalance.method, config.rebalance.seed, config.rebalance.size, config.rebalance.power)

    def probs(model) -> dict[str, np.ndarray]:  # as promotion scores it: the test-time views, the training precision
        amp = autocast_dtype(torch.device("cpu"), cfg.mixed_precision)
        return {s: predict_proba(model, ds.split(s).images, tta=cfg.tta, amp=amp) for s in ("val", "test")}

    def base_model():
        folder = copy_version(args.model_name, args.version, args.tracking_uri, cache_folder())
        return load_model(network_folder(folder))

    base = base_model()
    report = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores, torch {torch.__version__}", "version": args.version, "contender": contender,
              "minutes": args.minutes, "lr_factor": args.lr_factor, "validation": ds.metadata.get("validation"),
              "test": ds.metadata.get("test_subset", "test")}
    base_probs = probs(base)
    report["base"] = {"val": figures(ds.split("val").labels, base_probs["val"]),
                      "test": figures(ds.split("test").labels, base_probs["test"])}
    low_rate = cfg.model_copy(update={"learning_rate": cfg.learning_rate * args.lr_factor})
    arms = {"new_seed": (seeded(lambda: build_contender(cfg), {"seed": args.seed}),
                         cfg.model_copy(update={"seed": args.seed}), False),
            "low_rate_snapshot": (base_model(), low_rate, True)}  # kept only if an epoch beats the start weights
    oof: dict[str, np.ndarray] = {}
    for arm, (model, arm_cfg, from_base) in arms.items():
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            result = Trainer(model, arm_cfg, tmp, start_digest=weights_digest(model) if from_base else "").fit(ds, plan)
        figures_of_arm, oof[arm] = judged(ds, base_probs, probs(model))
        report[arm] = {"epochs": len(result.history), "kept": result.kept_weights,
                       "minutes": round((time.perf_counter() - t) / 60, 1), **figures_of_arm}
        print(json.dumps(report, indent=2), flush=True)
    report.update(verdict(ds.split("val").labels, oof["new_seed"], oof["low_rate_snapshot"]))
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
