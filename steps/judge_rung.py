"""Step: judge the contest after a rung (which contenders go on, where the minutes go)."""

from typing import Annotated, Any

import numpy as np
from zenml import log_metadata, step

from fercore.data.dataset import FerDataset
from fercore.training.contest import judge
from steps.cache import cache_policy


@step(cache_policy=cache_policy(__name__))
def judge_rung(
    dataset: FerDataset, contest: dict[str, Any], names: list[str], val_probabilities: list[np.ndarray],
    metric: str = "macro_f1", resamples: int = 1000,
) -> Annotated[dict[str, Any], "contest"]:
    """Decides on validation, per emotion and overall, which contenders can still win and go on
    (:func:`fercore.training.contest.judge`); the table becomes the step's metadata.

    Args:
        dataset: the split dataset (its validation labels).
        contest: the contest's state after the rung.
        names: the contenders, in the order of ``val_probabilities``.
        val_probabilities: each contender's validation probabilities after the rung (empty: stopped before).
        metric: the overall metric (``promotion.metric``).
        resamples: bootstrap resamples (``contest.resamples``).
    """
    probs = {n: p for n, p in zip(names, val_probabilities) if len(p)}
    state, rows = judge(contest, probs, dataset.split("val").labels, metric, resamples)
    log_metadata(metadata={"rung": state["rung"], "decisions": {r["contender"]: r for r in rows},
                           "reasons": {n: e["reason"] for n, e in state["contenders"].items()}},
                 infer_artifact=True, artifact_name="contest")
    return state
