"""Whether a lead on the validation split is larger than its noise: a paired bootstrap of the images.

Every candidate is scored on the same resamples of the validation images, so the difference of two
candidates' scores on each resample is the lead's sampling distribution; its 2.5th and 97.5th
percentiles are the 95 % interval. A lead whose interval holds zero is noise: promotion moves no
alias on it (``promotion.require_significance``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fercore.constants import CLASS_NAMES, NUM_CLASSES


@dataclass(frozen=True)
class Lead:
    """``a``'s score minus ``b``'s, with its bootstrap 95 % interval."""

    value: float
    low: float
    high: float

    @property
    def significant(self) -> bool:
        return self.low > 0.0

    def __str__(self) -> str:
        return f"{self.value:+.4f} [{self.low:+.4f}, {self.high:+.4f}]"

    def leader(self, a: str, b: str) -> str | None:
        """``a`` when it leads beyond the noise, ``b`` when it trails beyond it, None when the interval holds zero."""
        if self.significant:
            return a
        return b if self.high < 0.0 else None


@dataclass
class Bootstrap:
    """Resamples of the validation images, shared by every candidate.

    Args:
        labels: the validation labels.
        resamples: how many resamples (1000 gives the 95 % interval's ends to about ±0.002 F1).
        seed: the resamples' seed (fixed: the same decision on a rerun).
    """

    labels: np.ndarray
    resamples: int = 1000
    seed: int = 0
    _rows: np.ndarray = field(init=False, repr=False)
    _scores: dict[bytes, dict[str, np.ndarray]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        n = len(self.labels)
        self._rows = np.random.default_rng(self.seed).integers(0, n, (self.resamples, n), dtype=np.int32)

    def scores(self, predicted: np.ndarray) -> dict[str, np.ndarray]:
        """Per resample: F1 per class ``(R, 7)``, macro-F1, weighted F1 and accuracy ``(R,)`` of the
        predicted classes (cached per distinct predictions)."""
        predicted = np.asarray(predicted, dtype=np.int64)
        key = predicted.tobytes()  # by content: callers pass fresh argmax arrays
        if key not in self._scores:
            y, p = self.labels[self._rows], predicted[self._rows]
            f1 = np.empty((self.resamples, NUM_CLASSES))
            support = np.empty((self.resamples, NUM_CLASSES))
            for c in range(NUM_CLASSES):
                tp = ((p == c) & (y == c)).sum(1)
                support[:, c] = (y == c).sum(1)
                denominator = (p == c).sum(1) + support[:, c]
                f1[:, c] = 2 * tp / np.maximum(denominator, 1)  # 0 when the class is neither present nor predicted
            self._scores[key] = {"f1": f1, "macro_f1": f1.mean(1), "accuracy": (p == y).mean(1),
                                 "weighted_f1": (f1 * support).sum(1) / support.sum(1)}
        return self._scores[key]

    def lead(self, a: np.ndarray, b: np.ndarray, metric: str = "macro_f1", emotion: str | None = None) -> Lead:
        """The lead of predictions ``a`` over ``b`` in ``metric``, or in ``emotion``'s F1 when given."""
        sa, sb = self.scores(a), self.scores(b)
        if emotion is None:
            diff = sa[metric] - sb[metric]
            value = metric_score(self.labels, a, metric) - metric_score(self.labels, b, metric)
        else:
            c = CLASS_NAMES.index(emotion)
            diff = sa["f1"][:, c] - sb["f1"][:, c]
            value = class_f1(self.labels, a, c) - class_f1(self.labels, b, c)
        low, high = np.percentile(diff, [2.5, 97.5])
        return Lead(float(value), float(low), float(high))


def class_f1(labels: np.ndarray, predicted: np.ndarray, c: int) -> float:
    """Class ``c``'s F1 of the predicted classes (0 when the class is neither present nor predicted)."""
    tp = int(((predicted == c) & (labels == c)).sum())
    denominator = int((predicted == c).sum() + (labels == c).sum())
    return 2 * tp / denominator if denominator else 0.0


def metric_score(labels: np.ndarray, predicted: np.ndarray, metric: str) -> float:
    """``accuracy``, ``weighted_f1`` or ``macro_f1`` of the predicted classes."""
    f1 = np.array([class_f1(labels, predicted, c) for c in range(NUM_CLASSES)])
    if metric == "accuracy":
        return float((predicted == labels).mean())
    if metric == "weighted_f1":
        support = np.bincount(labels, minlength=NUM_CLASSES)
        return float((f1 * support).sum() / support.sum())
    return float(f1.mean())
