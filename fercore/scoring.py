"""Scoring models on the validation and test splits: once per model, reused by every later step.

Decisions (promotion) read the validation figures; the test figures are only reported.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import mlflow
import numpy as np
import torch

from fercore.constants import CLASS_NAMES
from fercore.dataset import FerDataset
from fercore.inference import predict_proba
from fercore.metrics import Evaluation, evaluate_predictions
from fercore.promote import Candidate
from fercore.validate import image_hashes  # noqa: F401  (re-exported)

TRAIN_HASHES = "data/train_image_hashes.npy"  # logged in each model's MLflow run: which images it was trained on


@dataclass
class Predictions:
    """A model's class probabilities ``(N, 7)`` on the ``val`` and ``test`` splits of one dataset, in
    each split's row order; ``dataset_sha256`` names the dataset they belong to."""

    val: np.ndarray
    test: np.ndarray
    dataset_sha256: str = ""

    def evaluations(self, dataset: FerDataset) -> tuple[Evaluation, Evaluation]:
        """``(validation, test)`` evaluations against ``dataset``'s labels."""
        val, test = dataset.split("val"), dataset.split("test")
        if (len(self.val), len(self.test)) != (len(val), len(test)):
            raise ValueError(f"predictions for {len(self.val)} val / {len(self.test)} test images do not fit a "
                             f"dataset with {len(val)} / {len(test)}")
        return (evaluate_predictions(val.labels, self.val.argmax(1)),
                evaluate_predictions(test.labels, self.test.argmax(1), test.subsets))


def predict_splits(predict, dataset: FerDataset) -> Predictions:
    """One prediction pass over the val and test images (``predict``: uint8 images -> probabilities)."""
    val, test = dataset.split("val"), dataset.split("test")
    probs = np.asarray(predict(np.concatenate([val.images, test.images])), np.float32)
    return Predictions(probs[:len(val)], probs[len(val):], str(dataset.metadata.get("sha256", "")))


def model_predictions(model: torch.nn.Module, dataset: FerDataset, tta: str, amp: torch.dtype | None) -> Predictions:
    """A model in memory scored on val and test with its test-time views and precision."""
    return predict_splits(lambda images: predict_proba(model, images, tta=tta, amp=amp), dataset)


def load_version(model_name: str, version: str) -> mlflow.pyfunc.PyFuncModel:
    return mlflow.pyfunc.load_model(f"models:/{model_name}/{version}")


def pyfunc_predict(model: mlflow.pyfunc.PyFuncModel):
    """``images -> probabilities`` through a registered model's pyfunc interface."""
    return lambda images: model.predict(images)[list(CLASS_NAMES)].to_numpy()


def candidate(version: str, architecture: str, predictions: Predictions, dataset: FerDataset, new: bool,
              overlap: str = "", contender: str = "") -> Candidate:
    """A scored candidate: decided on its validation figures, its test figures kept for the report."""
    val_ev, test_ev = predictions.evaluations(dataset)
    return Candidate(version, architecture, val_ev, predictions.val, new, test_ev, predictions.test, overlap, contender)


def underlying_module(pyfunc_model: mlflow.pyfunc.PyFuncModel):
    """The torch model inside a project pyfunc (None for an ensemble)."""
    return getattr(pyfunc_model.unwrap_python_model(), "model", None)


# -- which images a model saw ------------------------------------------------------------------


def hash_set_digest(hashes: np.ndarray) -> str:
    """One digest of a set of image hashes (order-free): equal digests, same images."""
    return hashlib.sha256(np.sort(hashes).tobytes()).hexdigest()[:16]


def overlap_note(trained_on: np.ndarray | None, val_hashes: np.ndarray, split_train: np.ndarray) -> str:
    """How many of this run's validation images a model was trained on, in words.

    FER-2013 holds exact duplicates, so some validation images have a copy in the training split of
    any split of it: every model trained on this split has seen those, and they are named as such.
    Only images beyond them (a model trained on another split) inflate its validation figures.

    Args:
        trained_on: hashes of the images the model was trained on (None: no record).
        val_hashes: hashes of this run's validation images.
        split_train: hashes of this run's training images.
    """
    if trained_on is None:
        return "unknown (no record of its training images)"
    seen = np.isin(val_hashes, trained_on)
    if not seen.any():
        return "none"
    duplicates = int((seen & np.isin(val_hashes, split_train)).sum())
    text = f"{int(seen.sum())} of {len(val_hashes)}"
    if duplicates == seen.sum():
        return f"{text}, all FER-2013 duplicates (an exact copy is in the training split)"
    return (f"{text} validation images were in its training data, {int(seen.sum()) - duplicates} of them beyond "
            "FER-2013's duplicates: its validation figures are optimistic")


def training_hashes(client: mlflow.MlflowClient, name: str, version) -> np.ndarray | None:
    """The image hashes a registered version was trained on (an ensemble: its members'), if recorded."""
    if version.tags.get("architecture") == "ensemble":
        members = [client.get_model_version(name, v) for v in version.tags.get("members", "").split(",") if v]
        parts = [training_hashes(client, name, m) for m in members]
        return None if not parts or any(p is None for p in parts) else np.concatenate(parts)
    try:
        path = mlflow.artifacts.download_artifacts(run_id=version.run_id, artifact_path=TRAIN_HASHES)
    except Exception:  # versions registered before the record existed
        return None
    return np.load(path, allow_pickle=False)


def routed_predictions(by_version: dict[str, Candidate], routes: dict[str, str]) -> Predictions:
    """The routed ensemble's val and test probabilities from its members' (see ``route_probabilities``)."""
    from fercore.inference import route_probabilities

    members = set(routes.values())
    val = route_probabilities({v: by_version[v].probs for v in members}, routes)
    test = route_probabilities({v: by_version[v].test_probs for v in members}, routes)
    return Predictions(val, test)


def routed_out_of_fold(singles: list[Candidate], labels: np.ndarray, folds: int = 2, seed: int = 0) -> np.ndarray:
    """The routed ensemble's validation probabilities out of fold: each fold routed by the per-emotion
    winners (validation F1, ties by macro-F1) on the other folds, as promotion picks them on all of it.
    Routes picked and judged on the same images would flatter it."""
    from sklearn.metrics import f1_score

    from fercore.inference import route_probabilities

    fold = np.random.default_rng(seed).permutation(len(labels)) % folds
    out = np.empty_like(singles[0].probs, dtype=np.float64)
    for k in range(folds):
        rest, held = fold != k, fold == k
        f1 = {c.version: f1_score(labels[rest], c.probs[rest].argmax(1), labels=list(range(len(CLASS_NAMES))),
                                  average=None, zero_division=0) for c in singles}
        routes = {e: max(singles, key=lambda c: (f1[c.version][i], f1[c.version].mean())).version
                  for i, e in enumerate(CLASS_NAMES)}
        out[held] = route_probabilities({c.version: c.probs[held] for c in singles}, routes)
    return out


def routes_tag(routes: dict[str, str]) -> str:
    """The ``routes`` tag of an ensemble version: ``emotion:version`` in class order."""
    return ",".join(f"{e}:{routes[e]}" for e in CLASS_NAMES)


def parse_routes(tag: str) -> dict[str, str]:
    return dict(item.split(":") for item in tag.split(",")) if tag else {}


def holder_candidates(client: mlflow.MlflowClient, name: str, versions: list[str], known: dict[str, Candidate],
                      dataset: FerDataset) -> list[Candidate]:
    """Alias holders of earlier runs, rescored on this run's val and test splits.

    A holder ensemble whose members are all scored already is routed from their probabilities;
    every other holder is scored once through its pyfunc. Each notes how much of this run's
    validation split its training data holds.
    """
    val_hashes, split_train = image_hashes(dataset.split("val").images), image_hashes(dataset.split("train").images)
    meta = {v: client.get_model_version(name, v) for v in versions}
    singles = [v for v in versions if meta[v].tags.get("architecture") != "ensemble"]
    out, scored = [], dict(known)
    for v in singles + [v for v in versions if v not in singles]:
        mv, arch = meta[v], meta[v].tags.get("architecture", "?")
        routes = parse_routes(mv.tags.get("routes", ""))
        if arch == "ensemble" and routes and set(routes.values()) <= set(scored):
            preds = routed_predictions(scored, routes)
        else:
            preds = predict_splits(pyfunc_predict(load_version(name, v)), dataset)
        note = overlap_note(training_hashes(client, name, mv), val_hashes, split_train)
        scored[v] = candidate(v, arch, preds, dataset, False, note, mv.tags.get("contender", ""))
        out.append(scored[v])
    return out


def find_ensemble(client: mlflow.MlflowClient, name: str, identity: dict[str, str]) -> str | None:
    """A READY ensemble version whose tags hold ``identity`` (its ``routes`` or ``weights``), if any: reused,
    not registered again."""
    found = [mv for mv in client.search_model_versions(f"name='{name}'")
             if mv.tags.get("architecture") == "ensemble" and mv.status == "READY"
             and all(mv.tags.get(k) == v for k, v in identity.items())]
    return str(max(int(mv.version) for mv in found)) if found else None