"""``run.py predict``: the emotions of the faces in photos, from a registered model, on the console.

Imports only what it needs when it needs it: it never imports ZenML, and MLflow only when the model's
local copy is out of date (:mod:`fercore.tracking.loading`). Results stream: each photo's lines (and
its ``--json`` line) are written as soon as its batch of faces is classified.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import TextIO

from fercore.errors import FerError


def parse_args(argv: list[str]) -> argparse.Namespace:
    from fercore.serving.predict import DEFAULT_MODEL

    parser = argparse.ArgumentParser(prog="run.py predict", description="Emotions of the faces in photos: each "
                                     "face is found, cropped to 48x48 grayscale and classified by a registered model.")
    parser.add_argument("photos", nargs="+", help="photo files or folders of photos")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"registered model URI (default {DEFAULT_MODEL})")
    parser.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)")
    parser.add_argument("--json", type=Path, help="write the results as JSON lines, one photo per line, as they come")
    parser.add_argument("--annotate", type=Path, metavar="DIR", help="write each photo with boxes and labels")
    parser.add_argument("--explain", type=Path, metavar="DIR", help="write each photo with every face's class "
                        "activation map (where the model looked for the label it gave) under its box and label")
    parser.add_argument("--margin", type=float, default=0.1, help="crop margin around a detected face, per side")
    parser.add_argument("--trust-model", action="store_true", help="load a model that is not one of this project's "
                        "wrappers through mlflow.pyfunc, which unpickles it: only for models you trust")
    parser.add_argument("--verbose", action="store_true", help="show library warnings and this project's log")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    """``run.py predict``: exit 0, or 2 when a photo or an output could not be read or written (the other
    photos still get their results)."""
    args = parse_args(argv)
    if not args.verbose:  # the answer, or what went wrong: nothing else on the console
        quiet_libraries()
    from fercore.serving.faces import photo_paths
    from fercore.serving.predict import HEADER, format_result, predict_photos, write_json_line
    from fercore.tracking.locations import resolve_tracking_uri

    problems: list[str] = []
    photos = faces = 0
    try:
        paths = photo_paths(args.photos)
        if not paths:
            raise FerError(f"no photos found in {' '.join(args.photos)}")
        tracking_uri = existing_store(args.tracking_uri or resolve_tracking_uri())
        with ExitStack() as stack:
            out = open_json(args.json, problems, stack)
            annotate_dir = writable_folder(args.annotate, problems, "--annotate")
            explain_dir = writable_folder(args.explain, problems, "--explain")
            # the model loads (mostly importing torch) while OpenCV, which releases the GIL, finds the faces
            pool = stack.enter_context(ThreadPoolExecutor(1))
            loading = pool.submit(load_models, args.model, tracking_uri, args.trust_model, explain_dir is not None)
            results = predict_photos(paths, lambda batch: loading.result()[0](batch), args.margin, annotate_dir,
                                     explain_dir=explain_dir, explain=lambda faces, classes: loading.result()[2](faces, classes))
            print(HEADER, flush=True)
            for r in progress(results, len(paths)):
                photos, faces = photos + 1, faces + len(r.faces)
                _print_lines(format_result(r))
                if out is not None:
                    write_json_line(r, out, f"{loading.result()[1]} ({args.model})")
                if r.error:
                    problems.append(r.error)
            label = loading.result()[1]  # a model that does not load is reported even when no photo had a face
    except FerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{photos} photos, {faces} faces: {label} ({args.model})")
    for what, folder in (("annotated photos", annotate_dir), ("photos with their maps", explain_dir)):
        if folder is not None:
            print(f"{what} written to {folder}")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 2 if problems else 0


def load_models(uri: str, tracking_uri: str, trust: bool, explain: bool):
    """The model's ``images -> probabilities``, its name and version, and with ``explain`` what draws its maps."""
    from fercore.explain.registered import load_explainer
    from fercore.tracking.copies import local_copy
    from fercore.tracking.loading import load_copy

    folder, label = local_copy(uri, tracking_uri)
    return load_copy(folder, trust), label, load_explainer(folder) if explain else None


def quiet_libraries() -> None:
    """No library warnings, logs or loading bars (:func:`fercore.quiet.quiet_libraries`), and no log of this
    project either: the answer, or what went wrong."""
    from fercore.quiet import quiet_libraries as quiet

    quiet()
    logging.getLogger().setLevel(logging.ERROR)
    logging.getLogger("fercore").setLevel(logging.ERROR)


def existing_store(tracking_uri: str) -> str:
    """``tracking_uri``, refused when it is a SQLite file that does not exist (opening it would create an empty
    store, and predict would answer "no model" from a stray ``mlflow.db`` in the current folder)."""
    from fercore.tracking.locations import local_store_path, redact

    path = local_store_path(tracking_uri)
    if tracking_uri.startswith("sqlite:///") and path is not None and not path.exists():
        raise FerError(f"no MLflow store at {redact(tracking_uri)}: run predict in the project folder (where `make "
                       "train` wrote mlflow.db), or pass --tracking-uri / set MLFLOW_TRACKING_URI")
    return tracking_uri


def open_json(path: Path | None, problems: list[str], stack: ExitStack) -> TextIO | None:
    """``--json``'s file, opened for writing; when it cannot be, the problem is noted and results still print."""
    if path is None:
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return stack.enter_context(path.open("w"))
    except OSError as exc:
        problems.append(f"--json {path}: cannot be written ({exc.strerror or exc}); pass a file path in a folder "
                        "you can write")
        return None


def writable_folder(folder: Path | None, problems: list[str], flag: str) -> Path | None:
    """``--annotate``'s or ``--explain``'s folder, made and checked writable; when it is not, the problem is noted
    and no photo is written there (the results still print)."""
    if folder is None:
        return None
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
        return folder
    except OSError as exc:
        problems.append(f"{flag} {folder}: cannot write there ({exc.strerror or exc}); pass a folder you can "
                        "write")
        return None


def progress(results: Iterator, total: int) -> Iterator:
    """``results``, with a bar of photos and faces per second on a terminal's stderr (from the second second on:
    a few photos show none)."""
    from tqdm import tqdm

    faces = 0
    with tqdm(total=total, unit="photo", desc="predict", file=sys.stderr, disable=None, delay=2,
              dynamic_ncols=True) as bar:
        for r in results:
            faces += len(r.faces)
            bar.update(1)
            if bar.format_dict["elapsed"] > 0:
                bar.set_postfix_str(f"{faces / bar.format_dict['elapsed']:.1f} faces/s", refresh=False)
            yield r


def _print_lines(lines: list[str]) -> None:
    from tqdm import tqdm

    for line in lines:
        tqdm.write(line, file=sys.stdout)  # above the bar, which stays on the last line
