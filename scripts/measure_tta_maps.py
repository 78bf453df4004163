"""Does averaging a face's map over the model's test-time views denoise it? A command, not a test.

For each single-model version in a registry: the validation faces it classifies right (up to ``--faces`` per emotion,
a seeded sample of the run's own validation split: never a test image), each face's map drawn twice, on the plain
face (one view) and averaged over the views the version predicts with (``tta`` in its pyfunc config). The figure
of merit is the Spearman rank correlation of one face's map with the mean map of its emotion (the other faces',
leave-one-out): a map nearer its emotion's summary carries less noise of its own. Also how steady an emotion's
mean map is (the correlation of two halves' means: ``--faces 100`` gives halves of 50) and the time per face.
With ``--photo``: its first face's map per model, before and after, into ``--figure``.

Usage: python scripts/measure_tta_maps.py --tracking-uri sqlite:///mlflow.db --data ARCHIVE
       [--config configs/cpu.yaml] [--faces 40] [--json OUT.json] [--threads 2] [--photo PHOTO --figure OUT.png]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fercore.config import load_config  # noqa: E402
from fercore.constants import CLASS_NAMES  # noqa: E402
from fercore.data.sources import ingest  # noqa: E402
from fercore.data.split import split_validation  # noqa: E402
from fercore.explain.cam import class_activation_maps  # noqa: E402
from fercore.models.inference import predict_proba, registered_tta  # noqa: E402
from fercore.models.io import load_model  # noqa: E402
from fercore.tracking.copies import cache_folder, copy_version, network_folder, pyfunc_spec  # noqa: E402


def single_versions(name: str, tracking_uri: str) -> list[tuple[str, str]]:
    """(version, contender) of every single-model version of ``name``."""
    from fercore.tracking.registry import versions

    return [(v.version, v.tags.get("contender", "")) for v in versions(tracking_uri, name) if v.tags.get("family") != "ensemble"]


def loo_correlation(maps: np.ndarray, labels: np.ndarray) -> float:
    """Mean Spearman correlation of each map with the mean of the other maps of its class, over the face's central
    44x44 pixels: the window every mode sees (one centre view leaves a 2-px border at zero, ties that would agree
    with the mean's zeros and inflate its figure)."""
    maps, rhos = maps[:, 2:46, 2:46], []
    for c in np.unique(labels):
        group = maps[labels == c]
        total = group.sum(0)
        for m in group:
            rest = (total - m) / max(len(group) - 1, 1)
            if m.std() > 0 and rest.std() > 0:
                rhos.append(spearmanr(m.ravel(), rest.ravel()).statistic)
    return float(np.mean(rhos))


def split_half(maps: np.ndarray, labels: np.ndarray) -> float:
    """How steady an emotion's mean map is: the Spearman correlation of the means of two disjoint halves of its
    faces (central 44x44), averaged over the emotions with at least 10 faces."""
    maps, rhos = maps[:, 2:46, 2:46], []
    for c in np.unique(labels):
        group = maps[labels == c]
        if len(group) >= 10:
            half = len(group) // 2
            rhos.append(spearmanr(group[:half].mean(0).ravel(), group[half:2 * half].mean(0).ravel()).statistic)
    return float(np.mean(rhos))


def measure(model, tta: str, images: np.ndarray, labels: np.ndarray) -> dict:
    out = {}
    for mode in ("none", tta):
        start = time.perf_counter()
        maps = class_activation_maps(model, images, labels, tta=mode)
        out[mode] = {"ms_per_face": round(1000 * (time.perf_counter() - start) / len(images), 1),
                     "spearman_to_emotion_mean": round(loo_correlation(maps, labels), 3),
                     "split_half_of_mean_map": round(split_half(maps, labels), 3)}
    return out


def before_after(models: dict[str, tuple], photo: Path, out: Path) -> None:
    """The first face of ``photo``: each model's map of the label it predicts, one view (before) and averaged over
    its test-time views (after), each with its colour scale."""
    import matplotlib.pyplot as plt

    from fercore.explain.overlay import overlay, with_colour_scale
    from fercore.serving.faces import find_faces, load_photo

    face = find_faces(load_photo(photo))[0].crop
    fig, axes = plt.subplots(len(models), 2, figsize=(6.4, 2.9 * len(models)), squeeze=False)
    for row, (label, (model, tta)) in zip(axes, models.items()):
        probs = predict_proba(model, face[None], tta=tta)[0]
        c = int(probs.argmax())
        for ax, mode in zip(row, ("none", tta)):
            cam = class_activation_maps(model, face[None], [c], tta=mode)[0]
            ax.imshow(with_colour_scale(overlay(face, cam)))
            ax.set_title(f"{label}: {CLASS_NAMES[c]} {probs[c]:.0%}\n"
                         + ("one view (before)" if mode == "none" else f"averaged over its {tta} views (after)"), fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--model-name", default="fer2013-emotion")
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--config", default="configs/cpu.yaml")
    parser.add_argument("--faces", type=int, default=40, help="right validation faces per emotion")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--photo", type=Path, help="a photo whose first face's maps go into --figure")
    parser.add_argument("--figure", type=Path, default=Path("maps_before_after.png"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_config(args.config).data
    val = split_validation(ingest(args.data), data.val_fraction, data.seed).split("val")
    rng = np.random.default_rng(0)
    results, models = {}, {}
    for version, contender in single_versions(args.model_name, args.tracking_uri):
        folder = copy_version(args.model_name, version, args.tracking_uri, cache_folder())
        model, tta = load_model(network_folder(folder)), registered_tta(pyfunc_spec(folder)[0].get("config"))
        models[f"v{version} ({contender})"] = (model, tta)
        right = predict_proba(model, val.images, tta=tta).argmax(1) == val.labels
        rows = np.concatenate([rng.permutation(np.flatnonzero(right & (val.labels == c)))[:args.faces]
                               for c in range(len(CLASS_NAMES))])
        results[f"v{version} ({contender})"] = {"tta": tta, "faces": len(rows),
                                                **measure(model, tta, val.images[rows], val.labels[rows])}
        print(f"v{version} ({contender}): {json.dumps(results[f'v{version} ({contender})'])}", flush=True)
    if args.photo:
        before_after(models, args.photo, args.figure)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
