"""``make demo`` / ``run.py demo``: a local web page (Gradio) where a photo's faces are classified by the champion and
every contender, side by side, with each contender's class activation map.

Gradio is an optional extra (``pip install -e ".[demo]"``); :func:`analyse` needs none of it, so the page's logic
is tested without a browser. The page listens on 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fercore.constants import CLASS_NAMES
from fercore.errors import FerError
from fercore.explain.overlay import overlay, with_colour_scale
from fercore.explain.registered import Explain, load_explainer
from fercore.serving.faces import annotate, find_faces, load_photo
from fercore.serving.model_thread import on_model_thread, stop_model_thread
from fercore.serving.predict import classify_faces
from fercore.tracking.copies import local_copy
from fercore.tracking.loading import Predict, load_copy

logger = logging.getLogger(__name__)
MAX_FILE_MB = 20  # larger uploads are refused by the page before they reach the models
MAX_CONTENDERS = 6


@dataclass
class Contender:
    """A registered version on the page: its label (``v3 (vgg7)``), how it predicts and how its maps are drawn."""

    label: str
    predict: Predict
    explain: Explain | None


@dataclass
class Analysis:
    """What the page shows for one photo: the annotated photo (champion's labels), per face the champion's
    probabilities, a table of every contender's probabilities, and each contender's map over each face."""

    message: str
    annotated: str | None = None
    champion: list[dict[str, float]] = field(default_factory=list)
    table: list[list[str | float]] = field(default_factory=list)
    maps: list[tuple[np.ndarray, str]] = field(default_factory=list)
    seconds: float = 0.0


TABLE_HEADER = ["face", "model", "label", *CLASS_NAMES]


def demo_versions(tracking_uri: str, model_name: str) -> list[tuple[str, str]]:
    """``(version, label)`` shown on the page: what the registry holds, the champion first, then the challenger (an
    ensemble too), then the newest ready version of each contender; each label names the version, its aliases and
    its validation accuracy (``v3 (vgg7) @champion, val 68.4 %``)."""
    from fercore.tracking.registry import aliases, get_version, version_by_alias, versions
    from fercore.tracking.tags import family

    held: dict[str, list[str]] = {}
    for alias, version in sorted(aliases(tracking_uri, model_name).items()):
        held.setdefault(version, []).append(f"@{alias}")
    shown = [str(version_by_alias(tracking_uri, model_name, "champion").version)]
    challenger = aliases(tracking_uri, model_name).get("challenger")
    if challenger and challenger not in shown:
        shown.append(challenger)
    for v in versions(tracking_uri, model_name):  # newest first: one per contender
        contender = v.tags.get("contender", "")
        if (v.status == "READY" and family(v) != "ensemble" and contender and str(v.version) not in shown
                and contender not in {get_version(tracking_uri, model_name, s).tags.get("contender") for s in shown}):
            shown.append(str(v.version))
    return [(v, _label(get_version(tracking_uri, model_name, v), held.get(v, []))) for v in shown[:MAX_CONTENDERS]]


def _label(version, held: list[str]) -> str:
    accuracy = version.tags.get("val_accuracy")
    figure = f", val {float(accuracy):.1%}" if accuracy else ""
    named = f"v{version.version} ({version.tags.get('contender') or 'champion'})"
    aliases = " ".join(held[:3]) + (" ..." if len(held) > 3 else "")
    return " ".join(filter(None, (named, aliases))) + figure


def load_contenders(model_name: str, tracking_uri: str) -> list[Contender]:
    """The champion and the contenders (:func:`demo_versions`), loaded from their local copies."""
    from fercore.tracking.store import check_server

    check_server(tracking_uri)
    out = []
    for version, label in demo_versions(tracking_uri, model_name):
        folder, _ = local_copy(f"models:/{model_name}/{version}", tracking_uri)
        out.append(Contender(label, load_copy(folder), load_explainer(folder)))
    return out


def analyse(photo: str | Path | None, contenders: list[Contender], out_dir: Path) -> Analysis:
    """Finds the faces of ``photo`` and classifies each with every contender; an unreadable or empty input is a
    message, never an exception (the page keeps serving)."""
    start = time.perf_counter()
    if photo is None:
        return Analysis("Upload a photo or take one with the webcam.")
    try:
        faces = find_faces(load_photo(photo))
    except FerError as exc:  # named by its file name: the server's own paths are not the visitor's business
        return Analysis(f"That file could not be used: {str(exc).replace(str(Path(photo)), Path(photo).name)}")
    if not faces:  # the photo stays on the page, with the message
        out_dir.mkdir(parents=True, exist_ok=True)
        shown = str(annotate(Path(photo), [], [], out_dir / f"annotated-{time.time_ns()}.png"))
        return Analysis("No face found in this photo: try a frontal face, at least 32 pixels wide.", annotated=shown,
                        seconds=round(time.perf_counter() - start, 3))
    crops = np.stack([f.crop for f in faces])
    result = Analysis(f"{len(faces)} face{'s' if len(faces) > 1 else ''} found")
    for k, contender in enumerate(contenders):
        probs, labels, maps = classify_faces(crops, contender.predict, contender.explain)
        for i, p in enumerate(probs):
            result.table.append([i + 1, contender.label, CLASS_NAMES[labels[i]], *(round(float(v), 3) for v in p)])
            if maps is not None:
                result.maps.append((with_colour_scale(overlay(crops[i], maps[i])), f"face {i + 1} · {contender.label}: "
                                    f"{CLASS_NAMES[labels[i]]} {p[labels[i]]:.0%}"))
        if k == 0:  # the champion labels the photo
            result.champion = [{c: float(v) for c, v in zip(CLASS_NAMES, p)} for p in probs]
            captions = [f"{CLASS_NAMES[j]} {p[j]:.0%}" for j, p in zip(labels, probs)]
            out_dir.mkdir(parents=True, exist_ok=True)
            result.annotated = str(annotate(Path(photo), faces, captions, out_dir / f"annotated-{time.time_ns()}.png"))
    result.seconds = round(time.perf_counter() - start, 3)
    result.message += f" in {result.seconds:.2f} s"
    return result


def build_app(contenders: list[Contender], model_name: str, out_dir: Path):
    """The page: a photo (upload, or the webcam where the browser allows it) in; the annotated photo, the champion's
    probabilities, every contender's probabilities and maps out."""
    import gradio as gr

    def run(upload: str | None, webcam: str | None):
        # on the model thread (fercore.serving.model_thread; on 2 cores one photo took 0.70 s on Gradio's, 0.45 s there)
        a = on_model_thread(analyse, upload or webcam, contenders, out_dir)
        return a.message, _take_image(a.annotated), a.champion[0] if a.champion else None, a.table or None, a.maps

    # delete_cache: the uploads Gradio keeps are removed every 5 minutes once an hour old, and when the page stops
    with gr.Blocks(title="FER-2013 emotions: where each model looks", delete_cache=(300, 3600)) as app:
        gr.Markdown(f"## Facial emotion: {model_name}\nThe champion labels each face; every contender's probabilities "
                    "and its class activation map (HiResCAM: where it looked for the label it gave) are below. "
                    "Faces are found with OpenCV and cut to 48x48 grayscale, as FER-2013's were. Photos are "
                    "answered one at a time, in the order they arrive (a queue: the page shows your place).\n\n"
                    "Each model is named with its aliases and its validation accuracy. A map shows where that model "
                    "looked for the label it gave (red: most, blue: least); a clean map from a weak model is not a "
                    "better explanation, only a simpler one: read the maps of the models that are right most often.")
        with gr.Row():
            with gr.Column():
                upload = gr.File(label="Photo", file_types=["image"], type="filepath")
                webcam = gr.Image(label="Webcam", sources=["webcam"], type="filepath")
                button = gr.Button("Analyse", variant="primary")
            with gr.Column():
                message = gr.Markdown(elem_id="message")
                annotated = gr.Image(label="Faces (the champion's labels)", type="numpy")
                champion = gr.Label(label="Champion, first face", num_top_classes=7)
        table = gr.Dataframe(headers=TABLE_HEADER, label="Every contender, per face", interactive=False)
        maps = gr.Gallery(label="Where each contender looks (class activation maps)", columns=4, height="auto",
                          object_fit="contain")  # the whole map and its colour scale, not a cropped thumbnail
        outputs = [message, annotated, champion, table, maps]
        button.click(run, [upload, webcam], outputs, api_name="analyse")
        upload.upload(run, [upload, webcam], outputs)
    return app


def _take_image(path: str | None) -> np.ndarray | None:
    """The annotated photo as pixels, its file removed (the page keeps no file per request)."""
    if path is None:
        return None
    from PIL import Image

    with Image.open(path) as img:
        pixels = np.asarray(img.convert("RGB"))
    Path(path).unlink(missing_ok=True)
    return pixels


def main(argv: list[str]) -> int:
    """``run.py demo``: serves the page until interrupted; exit 2 when the models cannot be loaded. Uploads go to a
    folder of this page's own (Gradio reads ``GRADIO_TEMP_DIR`` on import), removed when it stops."""
    parser = argparse.ArgumentParser(prog="run.py demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-name", default="fer2013-emotion", help="registered model (its @champion and contenders)")
    parser.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 exposes the page)")
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args(argv)
    if os.environ.get("GRADIO_TEMP_DIR"):  # the user's choice: left as it is
        return _serve(args)
    uploads = tempfile.mkdtemp(prefix="fer-demo-uploads-")
    os.environ["GRADIO_TEMP_DIR"] = uploads
    try:
        code = _serve(args)
    finally:
        shutil.rmtree(uploads, ignore_errors=True)
    _exit_without_lingering_threads(code)
    return code


def _exit_without_lingering_threads(code: int) -> None:
    """Ends the process now when a server thread outlived the close (Python would wait for it at exit, and the
    demo would not stop on Ctrl-C); the uploads are removed by then."""
    deadline = time.monotonic() + 2.0  # an idle worker thread ends in moments
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    lingering = [t.name for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon
                 and t.is_alive()]
    if lingering:
        logger.info("Threads still running after the server closed (%s): exiting without waiting for them",
                    ", ".join(lingering))
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _serve(args: argparse.Namespace) -> int:
    from fercore.tracking.locations import default_cache_dir, resolve_tracking_uri

    try:
        import gradio  # noqa: F401
    except ImportError:
        print('error: the demo page needs Gradio: pip install -e ".[demo]" (or run make demo)', file=sys.stderr)
        return 2
    from fercore.serving.predict_cli import existing_store

    try:
        store = existing_store(args.tracking_uri or resolve_tracking_uri())
        contenders = on_model_thread(load_contenders, args.model_name, store)
    except FerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("Models: " + ", ".join(c.label for c in contenders), flush=True)
    launch(build_app(contenders, args.model_name, Path(default_cache_dir()) / "demo"), args.host, args.port)
    stop_model_thread()  # Ctrl-C: an answer still queued is not waited for
    return 0


CLOSE_TIMEOUT_S = 10.0


def launch(app, host: str = "127.0.0.1", port: int = 7860, block: bool = True) -> None:
    """Serves the page: one request at a time (torch already uses every core), uploads over MAX_FILE_MB refused.
    With ``block``, until Ctrl-C; then the server is closed, waiting at most :data:`CLOSE_TIMEOUT_S` (Gradio's own
    wait for Ctrl-C closed the server without a bound: a stream still open kept the demo running past Ctrl-C)."""
    app.queue(default_concurrency_limit=1).launch(server_name=host, server_port=port, max_file_size=f"{MAX_FILE_MB}mb",
                                                  prevent_thread_lock=True, quiet=True)
    if not block:
        return
    # our own handlers, set after the launch: a SIGINT ignored by the parent (a test runner's worker) or a handler a
    # library replaced left the demo running past Ctrl-C
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    print("Stopping the demo (Ctrl-C)", flush=True)
    closing = threading.Thread(target=app.close, name="close-demo", daemon=True)
    closing.start()
    closing.join(CLOSE_TIMEOUT_S)
    if closing.is_alive():
        logger.warning("The demo's server did not close within %.0f s: leaving it to the process's exit",
                       CLOSE_TIMEOUT_S)
