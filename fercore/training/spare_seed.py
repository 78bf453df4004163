"""The spare seed: the minutes a run leaves unused train another seed of the leading contender.

Early stopping and the contest's stopped contenders leave part of the run's budget (the sum of the contenders'
``max_train_minutes``) unused. ``contest.spare_seed`` spends it on one more model: the contender of ``of`` that
leads on validation after the last rung trains again from scratch, from a seed none of its versions used. A
second independent model of the best design is what an averaging ensemble gains most from (a continued model is
a near-copy of its parent; issue 41's measurements); the spare is registered as a version of that contender, so
the ensemble library holds it and the next night's ``continue_from: latest`` continues it with the whole budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fercore.config import Config
from fercore.data.dataset import FerDataset
from fercore.data.rebalance import Rebalanced
from fercore.evaluation.significance import metric_score
from fercore.training.trainer import TrainJob
from fercore.training.warm_start import build_contender, new_seed, seeded


@dataclass(frozen=True)
class SparePlan:
    """What the spare seed trains: ``contender``'s config from ``seed`` for ``minutes``, and why (one line)."""

    contender: str
    seed: int
    minutes: float
    reason: str


def unused_minutes(config: Config, trainings: dict[str, dict[str, Any]]) -> float:
    """The run's budget (every enabled contender's ``max_train_minutes``) less the minutes they trained in this run."""
    budget = sum(c.max_train_minutes or 0.0 for c in config.enabled_contenders().values())
    used = sum(t.get("wall_s", 0.0) for t in trainings.values()) / 60
    return max(0.0, budget - used)


def pick_leader(of: list[str], val_probs: dict[str, np.ndarray], trainings: dict[str, dict[str, Any]],
                labels: np.ndarray, metric: str) -> tuple[str, str]:
    """The contender of ``of`` that leads on validation after the last rung, and how it was chosen.

    Those that trained to the end have validation probabilities (their test-time views, as promotion scores them)
    and are ranked by ``metric``; one the contest stopped has none and ranks behind them, by its best validation
    loss (when every one of ``of`` stopped, the leader is the least bad of them).
    """
    scored = {n: metric_score(labels, np.asarray(val_probs[n]).argmax(1), metric) for n in of if len(val_probs.get(n, []))}
    if scored:
        best = max(of, key=lambda n: scored.get(n, -1.0))
        rest = ", ".join(f"{n} {v:.4f}" for n, v in sorted(scored.items(), key=lambda kv: -kv[1]) if n != best)
        return best, f"{best} leads on validation {metric} ({scored[best]:.4f}" + (f"; {rest})" if rest else ")")
    best = min(of, key=lambda n: trainings[n].get("best_val_loss", float("inf")))
    return best, (f"every one of {', '.join(of)} stopped at a rung: {best} has the lowest validation loss "
                  f"({trainings[best].get('best_val_loss', float('nan')):.4f})")


def plan_spare_seed(config: Config, trainings: dict[str, dict[str, Any]], leader: str, why: str,
                    registered_seeds: list[int]) -> SparePlan:
    """The spare seed's plan: ``leader`` (:func:`pick_leader`) from a new seed, for the unused minutes or
    ``contest.spare_seed.min_minutes``, whichever is longer.

    Args:
        trainings: every enabled contender's training record after the last rung.
        registered_seeds: the seeds of ``leader``'s registered versions (their ``seed`` tags).
    """
    spare = config.contest.spare_seed
    seed = new_seed([*registered_seeds, int(trainings[leader].get("seed", config.contenders[leader].seed))])
    unused = unused_minutes(config, trainings)
    minutes = max(unused, spare.min_minutes)
    budget = (f"the {unused:.1f} minutes the run left unused" if unused >= spare.min_minutes else
              f"{spare.min_minutes:g} minutes (contest.spare_seed.min_minutes; {unused:.1f} were left unused)")
    return SparePlan(leader, seed, round(minutes, 2), f"spare seed {seed} of {leader}, trained for {budget}: {why}")


def plan_for_run(config: Config, trainings: dict[str, dict[str, Any]], val_probs: dict[str, np.ndarray],
                 labels: np.ndarray, tracking_uri: str) -> SparePlan:
    """:func:`plan_spare_seed` for this run: the leader of ``contest.spare_seed.of`` (:func:`pick_leader`), above
    every seed of its registered versions."""
    from fercore.tracking import registry

    leader, why = pick_leader(config.contest.spare_seed.of, val_probs, trainings, labels, config.promotion.metric)
    versions = registry.versions(tracking_uri, config.registry.model_name, contender=leader)
    seeds = [int(v.tags["seed"]) for v in versions if v.tags.get("seed", "").isdigit()]
    return plan_spare_seed(config, trainings, leader, why, seeds)


def spare_job(config: Config, plan: SparePlan, dataset: FerDataset, rebalanced: Rebalanced) -> TrainJob:
    """The spare's training job: the leader's contender config with the plan's seed and minutes (the schedule
    anneals within them), its network drawn from that seed (a pretrained ViT unfreezes on its schedule)."""
    cfg = config.contenders[plan.contender].model_copy(update={"seed": plan.seed, "max_train_minutes": plan.minutes})
    model = seeded(lambda: build_contender(cfg), {"seed": plan.seed})
    schedule = None
    if cfg.family == "vit" and cfg.checkpoint:
        from fercore.models.vit import UnfreezeSchedule

        schedule = UnfreezeSchedule(cfg, 0)
    return TrainJob(model, cfg, dataset, rebalanced, on_epoch_start=schedule)
