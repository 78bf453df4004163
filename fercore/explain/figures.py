"""Maps drawn over faces: an evaluation's mean maps and gallery, and promotion's emotion x contender figure (PNG
bytes through matplotlib, no display needed)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fercore.constants import CLASS_NAMES
from fercore.evaluation.plots import plt, png_bytes
from fercore.explain.overlay import overlay
from fercore.explain.summary import Explanation


def _stretch(mean_map: np.ndarray) -> np.ndarray:
    """A mean map scaled to [0, 1] for display (averaging faces' maps flattens their range)."""
    lo, hi = float(mean_map.min()), float(mean_map.max())
    return (mean_map - lo) / (hi - lo) if hi > lo else np.zeros_like(mean_map)


def _cell(ax, face: np.ndarray, cam: np.ndarray, title: str, colour: str | None = None) -> None:
    ax.imshow(overlay(face, cam))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=7, color=colour or "black")
    for spine in ax.spines.values():
        spine.set_visible(colour is not None)
        spine.set_color(colour or "black")
        spine.set_linewidth(3)


def mean_maps_png(expl: Explanation) -> bytes:
    """One row: per emotion, the mean map of the faces the model got right over that emotion's mean face."""
    fig, axes = plt.subplots(1, len(CLASS_NAMES), figsize=(1.6 * len(CLASS_NAMES), 2.1))
    for c, (ax, emotion) in enumerate(zip(axes, CLASS_NAMES)):
        _cell(ax, expl.mean_faces[c], _stretch(expl.mean_maps[c]), f"{emotion}\n{expl.map_counts[c]} faces, F1 "
              f"{expl.val_f1.get(emotion, float('nan')):.2f}")
    fig.suptitle(f"{expl.contender}: where it looks, per emotion (mean HiResCAM of correct validation faces)", fontsize=9)
    return png_bytes(fig)


def gallery_png(expl: Explanation) -> bytes:
    """A row per predicted emotion: its most confident correct test faces (green), then its most confident
    wrong ones (red), each with its map and "true -> predicted confidence"."""
    groups = [[np.flatnonzero((expl.gallery_pred == c) & ((expl.gallery_true == c) == correct)) for correct in (True, False)]
              for c in range(len(CLASS_NAMES))]
    k = max([len(rows) for pair in groups for rows in pair] + [1])
    fig, axes = plt.subplots(len(CLASS_NAMES), 2 * k, figsize=(1.35 * 2 * k, 1.55 * len(CLASS_NAMES)), squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    for c, pair in enumerate(groups):
        for (correct, rows), offset in zip(zip((True, False), pair), (0, k)):
            for j, i in enumerate(rows):
                _cell(axes[c, offset + j], expl.gallery_images[i], expl.gallery_maps[i],
                      f"{CLASS_NAMES[expl.gallery_true[i]]} → {CLASS_NAMES[c]} {expl.gallery_confidence[i]:.2f}",
                      "tab:green" if correct else "tab:red")
        axes[c, 0].set_ylabel(CLASS_NAMES[c] + ("" if any(len(r) for r in pair) else "\n(never predicted)"), fontsize=8)
    fig.suptitle(f"{expl.contender}: most confident correct (green) and wrong (red) test faces per predicted emotion",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return png_bytes(fig)


@dataclass
class ContestColumn:
    """One contender in promotion's figure: its label (``v3 (vgg7)``) and its evaluation's maps."""

    label: str
    explanation: Explanation


def contest_maps_png(columns: list[ContestColumn], per_emotion: list[dict[str, str]]) -> bytes:
    """A row per emotion, a column per contender: each cell the contender's mean map with its validation F1; the
    winner's cell framed (gold when its lead is significant, grey when it is not), and the row says which.

    Args:
        columns: this run's contenders with their maps.
        per_emotion: promotion's rows (``emotion``, ``winner``, ``significant``, ``decision``).
    """
    rows = {r["emotion"]: r for r in per_emotion}
    fig, axes = plt.subplots(len(CLASS_NAMES), max(len(columns), 1), squeeze=False,
                             figsize=(1.9 * max(len(columns), 1) + 1.6, 1.75 * len(CLASS_NAMES)))
    for c, emotion in enumerate(CLASS_NAMES):
        row = rows.get(emotion, {})
        significant = str(row.get("significant", "")).startswith("yes")
        for j, col in enumerate(columns):
            won = row.get("winner") == col.label
            f1 = col.explanation.val_f1.get(emotion, float("nan"))
            colour = ("gold" if significant else "grey") if won else None
            _cell(axes[c, j], col.explanation.mean_faces[c], _stretch(col.explanation.mean_maps[c]),
                  f"F1 {f1:.3f}" + (" ★" if won else ""), colour)
            if c == 0:
                axes[c, j].set_title(f"{col.label}\nF1 {f1:.3f}" + (" ★" if won else ""), fontsize=7)
        winner = row.get("winner", "—")
        axes[c, 0].set_ylabel(f"{emotion}\nwinner {winner}\n"
                              f"{'significant' if significant else 'not significant'}", fontsize=7)
    fig.suptitle("Where each contender looks, per emotion (mean HiResCAM, validation); ★ = winner, gold frame: "
                 "lead significant, grey: inside the noise", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    return png_bytes(fig)


@dataclass
class PngFigure:
    """A figure as PNG bytes, or none (``png`` empty) with the reason in ``title``."""

    png: bytes
    title: str


def contest_figure(registrations: list[dict], explanations: list[Explanation], per_emotion: list[dict[str, str]]
                   ) -> PngFigure:
    """Promotion's emotion x contender figure from this run's registrations and their evaluations' maps (no PNG
    when no contender drew maps: ``explain.enabled`` is false)."""
    columns = [ContestColumn(f"v{r['version']} ({r['contender']})", e) for r, e in zip(registrations, explanations)
               if e.enabled]
    if not columns:
        return PngFigure(b"", "no maps: explain.enabled is false")
    return PngFigure(contest_maps_png(columns, per_emotion), "mean HiResCAM per emotion and contender (validation)")
