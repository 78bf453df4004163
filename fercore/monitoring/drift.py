"""Drift reports with Evidently (0.7 API): image statistics, embeddings, and predictions."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from scipy.ndimage import laplace

# Evidently is imported where a report is made: it takes seconds to import, and reading new images does not need it

STAT_COLUMNS = ["brightness", "contrast", "sharpness", "dark_fraction", "bright_fraction"]
EMBEDDING_THRESHOLD = 0.55  # ROC AUC of a classifier telling reference from current embeddings
# Fewer rows per side give the embedding classifier nothing to learn from, and Evidently's t-SNE plot of
# the embeddings fails below 31 rows in all (perplexity 30): the embedding test is left out then.
MIN_EMBEDDING_ROWS = 50


@dataclass
class Distribution:
    """A column's reference and current counts over shared bins (numeric: ``labels`` are the bins' edges) or over
    its categories (``labels`` are the categories), for the light view (:mod:`fercore.monitoring.drift_view`)."""

    labels: list[str]
    reference: np.ndarray
    current: np.ndarray
    numeric: bool = True


def numeric_distribution(reference: np.ndarray, current: np.ndarray, bins: int = 20) -> Distribution:
    edges = np.histogram_bin_edges(np.concatenate([reference, current]), bins=bins)
    return Distribution([f"{e:.3g}" for e in edges], np.histogram(reference, edges)[0], np.histogram(current, edges)[0])


def categorical_distribution(reference: list[str], current: list[str]) -> Distribution:
    categories = sorted(set(reference) | set(current))
    count = lambda values: np.array([values.count(c) for c in categories])  # noqa: E731
    return Distribution(categories, count(list(reference)), count(list(current)), numeric=False)


@dataclass
class DriftResult:
    """One Evidently report: its HTML, the figures that gate a promotion, and each column's distributions."""

    html: str
    drift_share: float
    dataset_drift: bool
    embedding_drift_score: float | None = None
    embedding_drift: bool | None = None
    columns: list[ColumnDrift] = field(default_factory=list)
    about: str = ""  # what the reference and the current data are
    distributions: dict[str, Distribution] = field(default_factory=dict)

    @property
    def drifted(self) -> bool:
        return bool(self.dataset_drift or self.embedding_drift)

    def summary(self) -> dict[str, float | bool | None]:
        return {"drift_share": self.drift_share, "dataset_drift": self.dataset_drift,
                "embedding_drift_score": self.embedding_drift_score, "embedding_drift": self.embedding_drift}

    def markdown(self, title: str) -> str:
        """A light view of the report (the dashboard shows it where the HTML's scripts do not run): what is
        compared, each column's test and whether it drifted, the overall verdict."""
        rows = [f"| {c.column} | {c.method} | {c.value:.3g} | {c.threshold:g} | {'yes' if c.drifted else 'no'} |"
                for c in self.columns]
        table = "\n".join(["| column | test | value | threshold | drifted |", "|---|---|---|---|---|", *rows]) if rows else ""
        verdict = "drift" if self.embedding_drift else "no drift"
        emb = ("" if self.embedding_drift_score is None else f" Embeddings: classifier ROC AUC "
               f"{self.embedding_drift_score:.3f} (drift above {EMBEDDING_THRESHOLD}): {verdict}.")
        return (f"### {title}\n\n{self.about}\n\n{table}\n\nShare of drifted columns {self.drift_share:.2f}: "
                f"{'drift' if self.dataset_drift else 'no drift'}.{emb} The whole Evidently report is the HTML artifact "
                "beside this one (open it in a browser if the dashboard shows it blank: it needs JavaScript).\n")


@dataclass
class ColumnDrift:
    """One column's drift test in an Evidently report."""

    column: str
    method: str
    threshold: float
    value: float

    @property
    def drifted(self) -> bool:
        return self.value < self.threshold if "p_value" in self.method else self.value >= self.threshold


def column_drifts(snapshot_metrics: list[dict]) -> list[ColumnDrift]:
    """The ``ValueDrift(column=...,method=...,threshold=...)`` results of a report's metrics."""
    out = []
    for m in snapshot_metrics:
        name = m.get("metric_name", "")
        if name.startswith("ValueDrift(") and isinstance(m.get("value"), (int, float)):
            args = dict(part.split("=", 1) for part in name[len("ValueDrift("):-1].split(",") if "=" in part)
            out.append(ColumnDrift(args.get("column", "?"), args.get("method", "?"), float(args.get("threshold", "nan")),
                                   float(m["value"])))
    return out


def image_statistics(images: np.ndarray) -> pd.DataFrame:
    """Per-image brightness, contrast, sharpness (variance of the Laplacian) and clipped shares."""
    x = images.astype(np.float32) / 255.0
    flat = x.reshape(len(x), -1)
    sharpness = np.array([laplace(img).var() for img in x]) if len(x) else np.zeros(0)
    return pd.DataFrame({
        "brightness": flat.mean(1), "contrast": flat.std(1), "sharpness": sharpness,
        "dark_fraction": (flat < 0.125).mean(1), "bright_fraction": (flat > 0.875).mean(1),
    })


@torch.inference_mode()
def embeddings(model: torch.nn.Module, images: np.ndarray, amp: torch.dtype | None = None) -> np.ndarray:
    """Penultimate features of a project model: the CNN before its last layer, the ViT's pooled token.

    Images are cut to the window size the model trained on; ``amp`` as in ``predict_proba``.
    """
    from fercore.models.inference import BATCH_SIZE, centre_crop, to_batch, uses_channels_last

    model.eval()
    device = next(model.parameters()).device
    images = centre_crop(images, getattr(model, "fer_spec", {}).get("input_size"))
    fmt = torch.channels_last if uses_channels_last(model) else torch.contiguous_format
    forward = model.features if hasattr(model, "features") else model[:-1]  # FerViT, else the CNN's Sequential
    out = []
    with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
        for start in range(0, len(images), BATCH_SIZE):
            x = to_batch(np.ascontiguousarray(images[start:start + BATCH_SIZE]), device)
            out.append(forward(x.contiguous(memory_format=fmt)).float().cpu())
    return torch.cat(out).numpy()


def sample_rows(n: int, limit: int, seed: int) -> np.ndarray:
    """``limit`` of ``n`` row indices, drawn at random and sorted (all of them when ``n <= limit``)."""
    return np.sort(np.random.default_rng(seed).permutation(n)[:limit])


def data_drift(reference: np.ndarray, current: np.ndarray, ref_embeddings: np.ndarray | None = None,
               cur_embeddings: np.ndarray | None = None, drift_share: float = 0.5, max_images: int = 3000,
               seed: int = 0, about: tuple[str, str] = ("", "")) -> DriftResult:
    """Drift of image statistics (and embeddings, when given) from ``reference`` to ``current``.

    Args:
        reference: uint8 images the models were trained on.
        current: uint8 images they are evaluated or served on.
        ref_embeddings: embeddings of ``reference`` (same rows), optional; used when both sides have
            ``MIN_EMBEDDING_ROWS`` rows.
        cur_embeddings: embeddings of ``current``, optional.
        drift_share: share of drifted statistics that flags the whole dataset.
        max_images: random rows used per side (the embedding test trains a classifier).
        seed: sampling seed.
        about: what the reference and the current images are, for the report's light view.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import EmbeddingsDrift
    from evidently.metrics.embeddings import ModelDriftMethod
    from evidently.presets import DataDriftPreset

    ri, ci = sample_rows(len(reference), max_images, seed), sample_rows(len(current), max_images, seed + 1)
    ref, cur = image_statistics(reference[ri]), image_statistics(current[ci])
    metrics = [DataDriftPreset(columns=STAT_COLUMNS, drift_share=drift_share)]
    emb_cols: list[str] = []
    if ref_embeddings is not None and cur_embeddings is not None and min(len(ri), len(ci)) >= MIN_EMBEDDING_ROWS:
        emb_cols = [f"emb_{i}" for i in range(ref_embeddings.shape[1])]
        ref = pd.concat([ref, pd.DataFrame(ref_embeddings[ri], columns=emb_cols)], axis=1)
        cur = pd.concat([cur, pd.DataFrame(cur_embeddings[ci], columns=emb_cols)], axis=1)
        metrics.append(EmbeddingsDrift(embeddings_name="embeddings",
                                       drift_method=ModelDriftMethod(threshold=EMBEDDING_THRESHOLD)))
    definition = DataDefinition(numerical_columns=STAT_COLUMNS, embeddings={"embeddings": emb_cols} if emb_cols else None)
    snapshot = Report(metrics).run(Dataset.from_pandas(cur, data_definition=definition),
                                   Dataset.from_pandas(ref, data_definition=definition))
    share, emb_score, metrics = 0.0, None, snapshot.dict()["metrics"]
    for m in metrics:
        name = m.get("metric_name", "")
        if name.startswith("DriftedColumnsCount"):
            share = float(m["value"]["share"])
        elif name.startswith("EmbeddingsDrift"):
            emb_score = float(m["value"])
    return DriftResult(snapshot.get_html_str(as_iframe=False), share, share >= drift_share, emb_score,
                       None if emb_score is None else emb_score > EMBEDDING_THRESHOLD, column_drifts(metrics),
                       f"Reference: {about[0] or f'{len(ri)} images'}; current: {about[1] or f'{len(ci)} images'}.",
                       {c: numeric_distribution(ref[c].to_numpy(), cur[c].to_numpy()) for c in STAT_COLUMNS})


def prediction_drift(reference_labels: list[str], current_labels: list[str], about: tuple[str, str] = ("", "")
                     ) -> DriftResult:
    """Drift of predicted classes between two models on the same images (e.g. champion vs candidate)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import DriftedColumnsCount, ValueDrift

    definition = DataDefinition(categorical_columns=["prediction"])
    ref = Dataset.from_pandas(pd.DataFrame({"prediction": reference_labels}), data_definition=definition)
    cur = Dataset.from_pandas(pd.DataFrame({"prediction": current_labels}), data_definition=definition)
    snapshot = Report([ValueDrift(column="prediction"), DriftedColumnsCount(columns=["prediction"])]).run(cur, ref)
    share, metrics = 0.0, snapshot.dict()["metrics"]
    for m in metrics:
        if m.get("metric_name", "").startswith("DriftedColumnsCount"):
            share = float(m["value"]["share"])
    return DriftResult(snapshot.get_html_str(as_iframe=False), share, share > 0, columns=column_drifts(metrics),
                       about=f"Reference: {about[0] or 'the reference predictions'}; current: {about[1] or 'the current ones'}.",
                       distributions={"prediction": categorical_distribution(reference_labels, current_labels)})
