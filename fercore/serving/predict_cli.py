"""``run.py predict``: the emotions of the faces in photos, from a registered model, on the console.

Imports only what it needs when it needs it: it never imports ZenML, and MLflow only when the model's
local copy is out of date (:mod:`fercore.serving.local_models`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fercore.errors import FerError


def parse_args(argv: list[str]) -> argparse.Namespace:
    from fercore.serving.predict import DEFAULT_MODEL

    parser = argparse.ArgumentParser(prog="run.py predict", description="Emotions of the faces in photos: each "
                                     "face is found, cropped to 48x48 grayscale and classified by a registered model.")
    parser.add_argument("photos", nargs="+", help="photo files or folders of photos")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"registered model URI (default {DEFAULT_MODEL})")
    parser.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)")
    parser.add_argument("--json", type=Path, help="write the results as JSON")
    parser.add_argument("--annotate", type=Path, metavar="DIR", help="write each photo with boxes and labels")
    parser.add_argument("--margin", type=float, default=0.1, help="crop margin around a detected face, per side")
    parser.add_argument("--verbose", action="store_true", help="show library warnings and this project's log")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    """``run.py predict``: exit 0, or 2 when a photo could not be read (the others still get results)."""
    args = parse_args(argv)
    if not args.verbose:  # the answer, or what went wrong: nothing else on the console
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        warnings.simplefilter("ignore")
        logging.getLogger().setLevel(logging.ERROR)
        logging.getLogger("fercore").setLevel(logging.ERROR)
    from fercore.serving.faces import photo_paths
    from fercore.serving.local_models import load_predictor
    from fercore.serving.predict import format_results, predict_photos, write_json
    from fercore.stores import resolve_tracking_uri

    try:
        paths = photo_paths(args.photos)
        if not paths:
            raise FerError(f"no photos found in {' '.join(args.photos)}")
        # the model loads (mostly importing torch) while OpenCV, which releases the GIL, finds the faces
        with ThreadPoolExecutor(1) as pool:
            loading = pool.submit(load_predictor, args.model, args.tracking_uri or resolve_tracking_uri())
            results = predict_photos(paths, lambda faces: loading.result()[0](faces), args.margin, args.annotate)
            loading.result()  # a model that does not load is reported even when no photo had a face
    except FerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_results(results))
    if args.json:
        write_json(results, args.json)
    for r in results:
        if r.error:
            print(f"error: {r.error}", file=sys.stderr)
    return 2 if any(r.error for r in results) else 0
