"""Per-class evaluation with scikit-learn: the paper's metrics, overall and per original subset."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from fercore.constants import CLASS_NAMES, NUM_CLASSES


@dataclass
class Evaluation:
    """Metrics of one model on one labelled image set.

    Attributes:
        overall: accuracy, macro/weighted F1, macro precision/recall, images.
        per_class: one row per class: precision, recall, f1, support, accuracy (the paper's
            per-category accuracy: share of that class's images classified correctly) and
            ovr_accuracy (one-vs-rest: (TP + TN) / N).
        confusion: counts, rows = true class, columns = predicted class.
        subsets: ``overall`` metrics per original subset (PublicTest, PrivateTest).
        history: per-epoch training curves of the model, for the loss-curve figure.
        contender: whose model it is ("" when not said), named in the figures' titles.
        split: which images (``val``, ``test``, ...; "" when not said).
    """

    overall: dict[str, float]
    per_class: pd.DataFrame
    confusion: np.ndarray
    subsets: dict[str, dict[str, float]] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    contender: str = ""
    split: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "overall": self.overall,
            "per_class": self.per_class.reset_index().to_dict(orient="records"),
            "confusion": self.confusion.tolist(),
            "subsets": self.subsets,
            "history": self.history,
            "contender": self.contender,
            "split": self.split,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Evaluation:
        return cls(d["overall"], pd.DataFrame(d["per_class"]).set_index("emotion"), np.asarray(d["confusion"]),
                   d.get("subsets", {}), d.get("history", []), d.get("contender", ""), d.get("split", ""))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def markdown(self) -> str:
        """The per-class table as markdown, headline figures first."""
        o = self.overall
        head = f"accuracy {o['accuracy']:.4f}, macro-F1 {o['macro_f1']:.4f} on {int(o['images'])} images"
        subs = "; ".join(f"{k} accuracy {v['accuracy']:.4f}" for k, v in self.subsets.items())
        rows = ["| emotion | precision | recall | F1 | accuracy | support |", "|---|---:|---:|---:|---:|---:|"]
        for name, r in self.per_class.iterrows():
            rows.append(f"| {name} | {r.precision:.3f} | {r.recall:.3f} | {r.f1:.3f} | {r.accuracy:.3f} | {int(r.support)} |")
        return "\n".join([head + (f" ({subs})" if subs else ""), "", *rows])


def overall_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    labels = list(range(NUM_CLASSES))
    p, r, _, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average="macro", zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)),
        "macro_precision": float(p),
        "macro_recall": float(r),
        "images": float(len(y_true)),
    }


def evaluate_predictions(y_true: np.ndarray, y_pred: np.ndarray, subsets: np.ndarray | None = None) -> Evaluation:
    """Computes every metric of :class:`Evaluation` from true and predicted class indices."""
    labels = list(range(NUM_CLASSES))
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    p, r, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    n = cm.sum()
    tp = np.diag(cm)
    tn = n - cm.sum(0) - cm.sum(1) + tp
    per_class = pd.DataFrame(
        {
            "precision": p, "recall": r, "f1": f1, "support": support.astype(int),
            "accuracy": np.divide(tp, support, out=np.zeros(NUM_CLASSES), where=support > 0),
            "ovr_accuracy": (tp + tn) / max(n, 1),
        },
        index=pd.Index(CLASS_NAMES, name="emotion"),
    )
    by_subset = {}
    if subsets is not None:
        for name in ("PublicTest", "PrivateTest"):
            mask = subsets == name
            if mask.any():
                by_subset[name] = overall_metrics(y_true[mask], y_pred[mask])
    return Evaluation(overall_metrics(y_true, y_pred), per_class, cm, by_subset)


def flat_metrics(ev: Evaluation, prefix: str = "test") -> dict[str, float]:
    """Flat ``name -> value`` dict for MLflow: headline, per-class and per-subset figures."""
    out = {f"{prefix}_{k}": v for k, v in ev.overall.items() if k != "images"}
    for name, row in ev.per_class.iterrows():
        for col in ("precision", "recall", "f1", "accuracy"):
            out[f"{prefix}_{name}_{col}"] = float(row[col])
    for subset, metrics in ev.subsets.items():
        out[f"{prefix}_{subset}_accuracy"] = metrics["accuracy"]
        out[f"{prefix}_{subset}_macro_f1"] = metrics["macro_f1"]
    return out
