"""The spare seed: the run's unused minutes, the leader it seeds again, its new seed, and the config's limits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fercore.config import parse_config
from fercore.data.rebalance import rebalance
from fercore.errors import ConfigError
from fercore.training.spare_seed import SparePlan, new_seed, pick_leader, plan_spare_seed, spare_job, unused_minutes
from tests.conftest import synthetic

LABELS = np.repeat(np.arange(7), 10)


def _config(of=("vgg7", "resnet"), min_minutes=3.0, **override):
    contenders = {
        "vgg7": {"family": "cnn", "architecture": "vgg7", "width": 8, "epochs": 30, "max_train_minutes": 16,
                 "tta": "tencrop"},
        "resnet": {"family": "cnn", "architecture": "resnet", "width": 8, "epochs": 30, "max_train_minutes": 11,
                   "tta": "tencrop"},
        "convvit": {"family": "vit", "checkpoint": None, "epochs": 24, "max_train_minutes": 9, "tta": "tencrop"},
    }
    for key, value in override.items():
        name, field = key.split("__")
        contenders[name][field] = value
    return parse_config({"contest": {"rungs": [0.25, 1.0], "spare_seed": {"of": list(of), "min_minutes": min_minutes}},
                         "contenders": contenders})


def _probs(wrong: int) -> np.ndarray:
    """One-hot probabilities of LABELS with the first ``wrong`` images of every class called the next class."""
    predicted = LABELS.copy()
    for c in range(7):
        predicted[np.flatnonzero(LABELS == c)[:wrong]] = (c + 1) % 7
    return np.eye(7)[predicted]


TRAININGS = {"vgg7": {"wall_s": 1500.0, "seed": 42, "best_val_loss": 0.95},
             "resnet": {"wall_s": 180.0, "seed": 42, "best_val_loss": 1.10},
             "convvit": {"wall_s": 150.0, "seed": 42, "best_val_loss": 1.60}}


def test_unused_minutes_are_the_budgets_less_what_the_contenders_trained():
    assert unused_minutes(_config(), TRAININGS) == pytest.approx(36 - (1500 + 180 + 150) / 60)  # 5.5
    assert unused_minutes(_config(), {n: {"wall_s": 3000.0} for n in TRAININGS}) == 0.0  # never negative


def test_the_leader_is_the_best_on_validation_and_a_stopped_contender_ranks_behind():
    leader, why = pick_leader(["vgg7", "resnet"], {"vgg7": _probs(3), "resnet": _probs(1)}, TRAININGS, LABELS,
                              "accuracy")
    assert (leader, why) == ("resnet", "resnet leads on validation accuracy (0.9000; vgg7 0.7000)")
    stopped = {"vgg7": _probs(3), "resnet": np.zeros((0, 7))}  # resnet stopped at a rung: no probabilities
    assert pick_leader(["vgg7", "resnet"], stopped, TRAININGS, LABELS, "accuracy") == \
        ("vgg7", "vgg7 leads on validation accuracy (0.7000)")


def test_when_every_candidate_stopped_the_lowest_validation_loss_leads():
    none = {"vgg7": np.zeros((0, 7)), "resnet": np.zeros((0, 7))}
    assert pick_leader(["resnet", "vgg7"], none, TRAININGS, LABELS, "macro_f1") == \
        ("vgg7", "every one of resnet, vgg7 stopped at a rung: vgg7 has the lowest validation loss (0.9500)")


def test_the_seed_is_new_and_the_minutes_are_the_unused_ones_or_the_floor():
    assert new_seed([42, 43, 7]) == 44
    plan = plan_spare_seed(_config(), TRAININGS, "vgg7", "vgg7 leads", registered_seeds=[42, 43])
    assert plan == SparePlan("vgg7", 44, 5.5, "spare seed 44 of vgg7, trained for the 5.5 minutes the run left "
                             "unused: vgg7 leads")
    busy = {n: {**t, "wall_s": t["wall_s"] + 250} for n, t in TRAININGS.items()}  # 12.5 more minutes: none left
    plan = plan_spare_seed(_config(min_minutes=4), busy, "resnet", "why", registered_seeds=[])
    assert plan == SparePlan("resnet", 43, 4.0, "spare seed 43 of resnet, trained for 4 minutes "
                             "(contest.spare_seed.min_minutes; 0.0 were left unused): why")


def test_the_spare_job_is_the_leaders_config_with_the_new_seed_minutes_and_initial_weights():
    config, dataset = _config(), synthetic(per_class=5, test_per_class=1)
    plan = rebalance(dataset, "none", seed=0)
    first, again = (spare_job(config, SparePlan("vgg7", 43, 5.5, ""), dataset, plan) for _ in range(2))
    other = spare_job(config, SparePlan("vgg7", 44, 5.5, ""), dataset, plan)
    assert (first.cfg.seed, first.cfg.max_train_minutes, first.cfg.epochs, first.cfg.tta) == (43, 5.5, 30, "tencrop")
    weights = [next(j.model.parameters()).detach() for j in (first, again, other)]
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])
    assert first.model.fer_spec["architecture"] == "vgg7"


@pytest.mark.parametrize(("of", "override", "message"), [
    (["vgg8"], {}, "names ['vgg8'], not enabled contenders"),
    (["vgg7", "convvit"], {}, "differ in family"),
    (["vgg7", "resnet"], {"resnet__tta": "hflip"}, "differ in tta"),
    (["vgg7"], {"convvit__max_train_minutes": None}, "['convvit'] have no max_train_minutes"),
])
def test_a_spare_seed_the_pipeline_cannot_wire_is_refused_with_the_reason(of, override, message):
    with pytest.raises((ConfigError, ValueError), match=message.replace("[", r"\[").replace("]", r"\]")):
        _config(of=of, **override)


def test_off_by_default_and_the_steps_name_is_reserved():
    assert parse_config({}).contest.spare_seed.of == []
    with pytest.raises((ConfigError, ValueError), match="would name the spare seed's steps"):
        parse_config({"contenders": {"spare-seed": {"family": "cnn"}}})
