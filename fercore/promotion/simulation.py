"""Months of nights, simulated: how often the decision moves an alias when no candidate is better in truth, and how
many nights a truly better model takes to become champion.

Each night brings ``contenders`` new candidates. A candidate's predictions on the (fixed) validation images are
drawn as a new training seed's would be: image ``i`` is right with probability ``p_i``, the image's difficulty,
shared by every seed (a Beta distribution whose mean is the accuracy and whose spread makes two seeds disagree on
``disagreement`` of the images, as measured between two trained networks); a wrong answer is drawn from the
measured confusion of its true class. The nights then run the real :func:`fercore.promotion.decision.decide`,
with its bootstrap, against the aliases the earlier nights left.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fercore.constants import NUM_CLASSES
from fercore.evaluation.metrics import evaluate_predictions
from fercore.evaluation.significance import Bootstrap
from fercore.promotion.decision import Candidate, decide


@dataclass(frozen=True)
class Spread:
    """How candidates that are equal in truth differ on the validation images.

    Attributes:
        accuracy: a candidate's expected validation accuracy.
        disagreement: the share of images one of two such candidates gets right and the other wrong.
        confusion: ``(7, 7)`` counts of true class x predicted class (the diagonal is not used): where a wrong
            answer goes.
    """

    accuracy: float
    disagreement: float
    confusion: np.ndarray

    def difficulty(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Each image's chance of being right, ``Beta(a, b)``: mean ``accuracy``, and E[2p(1-p)] = ``disagreement``
        (for a Beta of mean m and a + b = s, E[p(1-p)] = m(1-m) s/(s+1))."""
        m = self.accuracy
        ratio = self.disagreement / (2 * m * (1 - m))
        if not 0 < ratio < 1:
            raise ValueError(f"a disagreement of {self.disagreement} is impossible at accuracy {m} (at most "
                             f"{2 * m * (1 - m):.3f})")
        s = ratio / (1 - ratio)
        return rng.beta(m * s, (1 - m) * s, n)


def draw(labels: np.ndarray, p: np.ndarray, spread: Spread, rng: np.random.Generator, gain: float = 0.0) -> np.ndarray:
    """One seed's predicted classes: right with probability ``p`` raised by ``gain`` of the way to 1 (a better
    model), else a class drawn from its true class's measured confusions."""
    right = rng.random(len(labels)) < p + gain * (1 - p)
    off = spread.confusion.astype(float).copy()
    np.fill_diagonal(off, 0)
    off = (off + 1e-9) / (off + 1e-9).sum(1, keepdims=True)
    wrong = (rng.random(len(labels))[:, None] > np.cumsum(off[labels], 1)).sum(1)
    return np.where(right, labels, np.minimum(wrong, NUM_CLASSES - 1))


def gain_for(points: float, p: np.ndarray) -> float:
    """The ``gain`` that raises the expected accuracy by ``points`` (0.01: one point)."""
    return points / float((1 - p).mean())


@dataclass
class Nights:
    """What a simulation saw: alias moves after the first night (each one false when nobody is better in truth),
    the nights run, and the night a better model first held champion (the simulation ends there; None: never)."""

    moves: dict[str, int]
    nights: int
    better_champion_night: int | None = None


def simulate(labels: np.ndarray, spread: Spread, nights: int, contenders: int = 2, seed: int = 0,
             resamples: int = 1000, min_margin: float = 0.0, better_from: int | None = None,
             better_points: float = 0.01) -> Nights:
    """``nights`` promotions, each of ``contenders`` new seeds plus the alias holders.

    Args:
        labels: the validation labels.
        better_from: from this night on, one contender a night is truly better by ``better_points``.
    """
    rng = np.random.default_rng(seed)
    p = spread.difficulty(len(labels), rng)
    gain = gain_for(better_points, p)
    boot = Bootstrap(labels, resamples, seed=seed)
    holders: dict[str, str | None] = {}
    pool: dict[str, Candidate] = {}
    better: set[str] = set()
    moves: dict[str, int] = {}
    count = 0
    for night in range(1, nights + 1):
        new = []
        for k in range(contenders):
            count += 1
            version = str(count)
            is_better = better_from is not None and night >= better_from and k == 0
            predicted = draw(labels, p, spread, rng, gain if is_better else 0.0)
            new.append(Candidate(version, "cnn", evaluate_predictions(labels, predicted), np.eye(NUM_CLASSES)[predicted]))
            if is_better:
                better.add(version)
        pool.update({c.version: c for c in new})
        cands = new + [pool[v] for v in sorted(set(v for v in holders.values() if v), key=int)]
        for move in decide(cands, holders, min_margin=min_margin, bootstrap=boot).moves:
            if night > 1 and move.alias != "previous-champion":
                moves[move.alias] = moves.get(move.alias, 0) + 1
            holders[move.alias] = move.version
        if holders.get("champion") in better:
            return Nights(moves, night, night)  # what was asked is answered
        _forget_the_unheld(pool, holders)
    return Nights(moves, nights)


def _forget_the_unheld(pool: dict[str, Candidate], holders: dict[str, str | None]) -> None:
    """Candidates that hold no alias never compete again (as in promotion): their bootstrap scores may go."""
    for version in [v for v in pool if v not in holders.values()]:
        del pool[version]
