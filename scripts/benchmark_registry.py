"""The registry at volume: the lookups promotion, gc and ``run.py predict`` make, with 10 and with 300 versions.

Usage: python scripts/benchmark_registry.py [--versions 10 300] [--repeats 5] [--out FILE]

One tiny CNN is logged and registered; the other versions are made from its logged model
(``create_model_version``, tagged as contenders vgg7 / resnet / convvit in turns), in a fresh SQLite store.
The champion alias is on the first version. Each figure is the median of ``--repeats`` calls, in ms.
``promote`` is a whole promotion of one new contender on a small synthetic dataset, after one untimed
warm-up promotion (its holders are scored through their pyfunc, the same at any volume).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
NAME = "fer-volume"


def make_store(folder: Path, n: int) -> str:
    import torch

    from fercore.models import build_cnn, save_model
    from fercore.serving.pyfunc import FerEmotionModel
    from fercore.tracking.registry import get_version, log_and_register
    from fercore.tracking.store import client as tracking_client, connect

    uri = f"sqlite:///{folder / 'mlflow.db'}"
    experiment = connect(uri, "volume")
    client = tracking_client(uri)
    torch.manual_seed(0)
    run_id = client.create_run(experiment, run_name="train-0").info.run_id
    model = save_model(build_cnn("vgg7", width=8).eval(), folder / "model")
    first = log_and_register(uri, run_id, FerEmotionModel(), {"model": str(model)}, NAME,
                             {"family": "cnn", "contender": "vgg7"}, "", np.zeros((2, 48, 48), np.uint8),
                             model_config={"tta": "none"})
    client.set_terminated(run_id)
    source = get_version(uri, NAME, first).source
    for i in range(1, n):
        run = client.create_run(experiment, run_name=f"train-{i}").info.run_id
        client.create_model_version(NAME, source, run_id=run, tags={
            "family": "cnn", "contender": ("vgg7", "resnet", "convvit")[i % 3], "zenml_run_id": ""})
        client.set_terminated(run)
    client.set_registered_model_alias(NAME, "champion", first)
    return uri


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 1)


def measure(n: int, repeats: int) -> dict:
    from fercore.config import PromotionConfig
    from fercore.evaluation.predictions import Predictions
    from fercore.promotion.apply import registered_ensembles
    from fercore.promotion.promote import promote
    from fercore.promotion.retention import registry_plan
    from fercore.tracking import registry
    from fercore.tracking.loading import load_predictor
    from fercore.tracking.store import RunInfo
    from tests.conftest import synthetic

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        uri = make_store(folder, n)
        dataset = synthetic(per_class=12, test_per_class=4)
        rng = np.random.default_rng(0)
        probs = lambda k: rng.dirichlet(np.ones(7), k)  # noqa: E731
        new = [({"version": str(n), "family": "cnn", "contender": "vgg7"},
                Predictions(probs(len(dataset.split("val"))), probs(len(dataset.split("test")))))]
        config = PromotionConfig(ensemble=False, averaging=False, drift_max_images=60)

        def predict_lookup():  # a cold process's lookup: resolve the alias, reuse the copy
            load_predictor(f"models:/{NAME}@champion", uri, folder / "cache")
            (folder / "cache" / "models" / "resolved.json").unlink()

        run = lambda: promote(NAME, dataset, new, config, RunInfo(uri, "volume", "bench"))  # noqa: E731
        run()  # warm-up (imports, the first alias moves): the timed calls decide on the same holders
        return {"versions": n,
                "aliases_ms": timed(lambda: registry.aliases(uri, NAME), repeats),
                "versions_of_a_contender_ms": timed(lambda: registry.versions(uri, NAME, contender="vgg7"), repeats),
                "registered_ensembles_ms": timed(lambda: registered_ensembles(uri, NAME), repeats),
                "predict_alias_lookup_ms": timed(predict_lookup, repeats),
                "gc_plan_ms": timed(lambda: registry_plan(uri, NAME, "volume", 5, 10), repeats),
                "promote_ms": timed(run, max(1, repeats // 2))}


def main() -> None:
    import logging

    logging.disable(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, nargs="+", default=[10, 300])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = []
    for n in args.versions:
        results.append(measure(n, args.repeats))
        print(json.dumps(results[-1]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
