"""Disk used by scheduled runs, with and without retention: N smoke ``train_all`` runs, each with a new
incoming batch and continuing from the latest versions (as a schedule runs), in fresh stores per arm.

Usage: python scripts/benchmark_retention.py --data ../shared/data/fer2013/fer2013.tar.gz [--runs 10]
       [--keep-versions 1] [--keep-runs 1] [--arms both|with|without] [--out FILE]

Each arm has its own ZenML config (artifact store), ZenML repository, MLflow store, caches and checkpoints
under one temporary folder, whose size (``du``) is taken after every run. The "retention" arm sets
``retention.after_run: true`` with the given ``keep_versions`` / ``keep_runs``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def new_batch(folder: Path, seed: int, per_class: int = 10) -> None:
    """A batch of labelled 48x48 faces (noise with a bar whose row says the class), new content every seed."""
    rng = np.random.default_rng(seed)
    for label, name in enumerate(CLASSES):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = rng.integers(60, 200, (48, 48), dtype=np.uint8)
            img[6 * label:6 * label + 4] = 250
            Image.fromarray(img).save(folder / name / f"{seed}_{i}.png")


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def arm(data: str, runs: int, retention: dict | None) -> list[dict]:
    out = []
    with tempfile.TemporaryDirectory(prefix="fer-retention-") as tmp:
        root = Path(tmp)
        env = {**os.environ, "ZENML_CONFIG_PATH": str(root / "zenml"), "ZENML_REPOSITORY_PATH": str(root / "repo"),
               "FER_CACHE_DIR": str(root / "cache"), "ZENML_ANALYTICS_OPT_IN": "false"}
        (root / "repo").mkdir()
        sets = {"registry.tracking_uri": f"sqlite:///{root / 'mlflow.db'}", "checkpoint_dir": str(root / "ckpt"),
                "data.cache_dir": str(root / "data-cache"), "data.incoming": f"[{root / 'incoming'}]",
                "training.continue_from": "latest"}
        if retention:
            sets.update({"retention.after_run": "true", **{f"retention.{k}": str(v) for k, v in retention.items()}})
        args = [sys.executable, "run.py", "--pipeline", "train_all", "--config", "configs/smoke.yaml", "--data", data]
        for key, value in sets.items():
            args += ["--set", f"{key}={value}"]
        for i in range(runs):
            new_batch(root / "incoming" / f"batch-{i:02d}", seed=i)
            start = time.perf_counter()
            done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit((done.stdout + done.stderr)[-3000:])
            out.append({"run": i + 1, "wall_s": round(time.perf_counter() - start, 1),
                        "disk_mb": round(du(root) / 1e6, 1),
                        "parts_mb": {p.name: round(du(p) / 1e6, 1) for p in sorted(root.iterdir()) if p.is_dir()}
                        | {"mlflow.db": round((root / "mlflow.db").stat().st_size / 1e6, 1)}})
            print(json.dumps({"retention": bool(retention), **out[-1]}), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--keep-versions", type=int, default=1)
    parser.add_argument("--keep-runs", type=int, default=1)
    parser.add_argument("--arms", choices=["both", "with", "without"], default="both")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    data = str(Path(args.data).resolve())
    retention = {"keep_versions": args.keep_versions, "keep_runs": args.keep_runs}
    results = {name: arm(data, args.runs, settings) for name, settings in (("without", None), ("with", retention))
               if args.arms in ("both", name)}
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
