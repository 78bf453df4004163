"""Figures of the paper, drawn with matplotlib into PNG bytes (no display needed)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fercore.constants import CLASS_NAMES  # noqa: E402
from fercore.evaluation.metrics import Evaluation  # noqa: E402


def png_bytes(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def class_frequency_png(counts: dict[str, dict[str, int]], title: str = "FER-2013 class frequency") -> bytes:
    """Grouped bar chart of images per class and split (the paper's Figure 1)."""
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / max(len(counts), 1)
    x = np.arange(len(CLASS_NAMES))
    for i, (split, per_class) in enumerate(counts.items()):
        values = [per_class.get(c, 0) for c in CLASS_NAMES]
        bars = ax.bar(x + i * width, values, width, label=split)
        ax.bar_label(bars, fontsize=7)
    ax.set_xticks(x + width * (len(counts) - 1) / 2, CLASS_NAMES)
    ax.set_ylabel("images")
    ax.set_title(title)
    ax.legend()
    return png_bytes(fig)


def sample_grid_png(images: np.ndarray, labels: np.ndarray, per_class: int = 8, seed: int = 0) -> bytes:
    """A row of random sample faces per class."""
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(len(CLASS_NAMES), per_class, figsize=(per_class, len(CLASS_NAMES) * 1.05))
    for row, name in enumerate(CLASS_NAMES):
        idx = np.flatnonzero(labels == row)
        pick = rng.choice(idx, size=min(per_class, len(idx)), replace=False) if len(idx) else []
        for col in range(per_class):
            ax = axes[row, col]
            ax.axis("off")
            if col < len(pick):
                ax.imshow(images[pick[col]], cmap="gray", vmin=0, vmax=255)
        axes[row, 0].set_title(name, fontsize=8, loc="left")
    return png_bytes(fig)


def confusion_matrix_png(matrix: np.ndarray, title: str = "Confusion matrix (row-normalised)") -> bytes:
    """Heat map of a confusion matrix, rows = true class (the paper's Figure 6)."""
    norm = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(matrix)):
        for j in range(len(matrix)):
            ax.text(j, i, f"{norm[i, j]:.2f}\n({matrix[i, j]})", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(CLASS_NAMES)), CLASS_NAMES, rotation=45)
    ax.set_yticks(range(len(CLASS_NAMES)), CLASS_NAMES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(im, ax=ax)
    return png_bytes(fig)


def loss_curves_png(history: list[dict[str, float]], title: str = "Training curves") -> bytes:
    """Training and validation loss and accuracy per epoch, train and validation on one chart per quantity
    (the paper's Figure 3)."""
    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    fig.suptitle(title)
    for key in ("train_loss", "val_loss"):
        ax1.plot(epochs, [h[key] for h in history], marker="o", label=key)
    for key in ("train_accuracy", "val_accuracy"):
        ax2.plot(epochs, [h[key] for h in history], marker="o", label=key)
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy")
    ax1.legend()
    ax2.legend()
    return png_bytes(fig)


def evaluation_figures(ev: Evaluation) -> dict[str, bytes]:
    """An evaluation's figures by file name, titled with its contender and split: the confusion matrix, and the
    training curves when it carries them."""
    who = " ".join(x for x in (ev.contender, {"val": "validation"}.get(ev.split, ev.split)) if x)
    prefix = f"{who}: " if who else ""
    figures = {"confusion_matrix.png": confusion_matrix_png(ev.confusion, f"{prefix}confusion matrix (row-normalised)")}
    if ev.history:
        figures["loss_curves.png"] = loss_curves_png(ev.history, f"{ev.contender or 'model'}: training curves by epoch")
    return figures
