"""Distillation's soft targets: a teacher's probabilities on the training rows, computed once.

The teacher is another contender of the same run (its model in memory) or a registered version
(``distill.teacher: models:/NAME@ALIAS``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from fercore.config import VitContender
from fercore.data.dataset import FerDataset
from fercore.models.inference import autocast_dtype, pick_device, predict_proba, prepare_for_inference

logger = logging.getLogger(__name__)



def teacher_probabilities(predict: Callable[[np.ndarray], np.ndarray], dataset: FerDataset,
                          batch_size: int = 2048) -> np.ndarray:
    """A teacher's probabilities ``(N, 7)`` for the train rows of ``dataset`` (uniform elsewhere).

    Computed once, on the un-augmented images, so distillation costs one inference pass instead of a
    teacher forward per training batch.

    Args:
        predict: uint8 images ``(B, 48, 48)`` -> probabilities ``(B, 7)``.
        dataset: the split dataset.
        batch_size: images per ``predict`` call.
    """
    probs = np.full((len(dataset), 7), 1 / 7, np.float32)
    rows = np.flatnonzero(dataset.splits == "train")
    for start in tqdm(range(0, len(rows), batch_size), desc="teacher", unit="batch", dynamic_ncols=True):
        chunk = rows[start:start + batch_size]
        probs[chunk] = predict(dataset.images[chunk])
    return probs


def soft_targets(config: VitContender, dataset: FerDataset, teacher: nn.Module | None,
                 tracking_uri: str) -> tuple[np.ndarray | None, str | None]:
    """The teacher's probabilities on the train rows and the teacher's name, when ``config`` distills.

    Args:
        config: the student's contender config (``distill.teacher`` names a contender or a ``models:/`` URI).
        dataset: the split dataset.
        teacher: the teacher contender's trained model, when the teacher is one of this run's.
        tracking_uri: the MLflow store a ``models:/`` teacher is registered in.
    """
    if not config.distill.enabled:
        return None, None
    if config.distill.teacher.startswith("models:/"):
        from fercore.tracking.loading import load_predictor

        predict, name = load_predictor(config.distill.teacher, tracking_uri)  # never unpickled
    elif teacher is None:
        raise ValueError(f"distill.teacher is the contender '{config.distill.teacher}', but no teacher model was "
                         "passed in")
    else:
        device = pick_device()
        model, amp = prepare_for_inference(teacher, device), autocast_dtype(device, config.mixed_precision)
        predict, name = (lambda x: predict_proba(model, x, tta="hflip", amp=amp)), f"{config.distill.teacher} (this run)"
    logger.info("Distilling from %s", name)
    return teacher_probabilities(predict, dataset), name


def distillation_loss(student_logits: torch.Tensor, teacher_log_probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton et al.'s soft-target loss: ``T^2 * KL(teacher_T || student_T)``, averaged over the batch.

    The teacher's log-probabilities divided by ``T`` are its logits at temperature ``T`` (up to a
    constant that the softmax removes).
    """
    t = temperature
    return F.kl_div(F.log_softmax(student_logits / t, -1), F.log_softmax(teacher_log_probs / t, -1),
                    log_target=True, reduction="batchmean") * t * t
