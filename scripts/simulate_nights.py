"""Months of nights, simulated with the real decision: false alias moves when no candidate is better in truth,
and the nights a truly better model takes to hold champion (fercore/promotion/simulation.py).

The spread between seeds is measured from two trained models' validation predictions: their accuracies, the
share of images one gets right and the other wrong, and the first one's confusions.

Usage:
    python scripts/simulate_nights.py --dataset SPLIT.npz --predictions A.npz B.npz [--nights 100] [--trials 5]

``SPLIT.npz`` is the ``split_data`` step's ``arrays.npz`` and ``A.npz``/``B.npz`` two ``evaluate_<name>`` steps'
``predictions.npz`` of the same run (the files of those ZenML artifacts: ``zenml artifact version list``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fercore.constants import NUM_CLASSES  # noqa: E402
from fercore.promotion.simulation import Spread, simulate  # noqa: E402


def measured_spread(dataset: Path, a: Path, b: Path) -> tuple[np.ndarray, Spread]:
    """The validation labels, and the spread of two trained models' validation predictions."""
    arrays = np.load(dataset)
    labels = arrays["labels"][arrays["splits"] == "val"]
    pa, pb = (np.load(path)["val"].argmax(1) for path in (a, b))
    if not len(pa) == len(pb) == len(labels):
        sys.exit(f"error: {a} and {b} hold {len(pa)} and {len(pb)} validation predictions, {dataset} "
                 f"{len(labels)} validation labels: take all three from the same run")
    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), int)
    np.add.at(confusion, (labels, pa), 1)
    accuracy = float(((pa == labels).mean() + (pb == labels).mean()) / 2)
    return labels, Spread(accuracy, float(((pa == labels) != (pb == labels)).mean()), confusion)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--predictions", type=Path, nargs=2, required=True)
    parser.add_argument("--nights", type=int, default=100)
    parser.add_argument("--trials", type=int, default=5, help="independent simulations of each kind")
    parser.add_argument("--contenders", type=int, default=2, help="new candidates a night")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples, as promotion's default")
    parser.add_argument("--min-margin", type=float, default=0.0)
    args = parser.parse_args(argv)
    labels, spread = measured_spread(args.dataset, *args.predictions)
    print(f"validation images {len(labels)}; measured: accuracy {spread.accuracy:.4f}, one right and the other wrong "
          f"on {spread.disagreement:.4f}")
    started = time.monotonic()
    moves = Counter()
    for trial in range(args.trials):
        moves.update(simulate(labels, spread, args.nights, args.contenders, trial, args.resamples,
                              args.min_margin).moves)
    print(f"\nEqual in truth, {args.contenders} new candidates a night, {args.trials} x {args.nights} nights: false "
          "moves per alias per 100 nights")
    for alias in sorted(moves):
        print(f"  {alias:<18} {100 * moves[alias] / (args.trials * args.nights):.2f}")
    if not moves:
        print("  none")
    found = [simulate(labels, spread, args.nights, args.contenders, 1000 + trial, args.resamples, args.min_margin,
                      better_from=2).better_champion_night for trial in range(args.trials)]
    waits = [n - 1 for n in found if n is not None]  # it arrives on night 2
    print(f"\nOne contender a night truly better by 1 point from night 2: nights until it holds champion: "
          f"{sorted(waits)}" + (f", {len(found) - len(waits)} of {len(found)} never in {args.nights} nights"
                                 if len(waits) < len(found) else ""))
    print(f"\n({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
