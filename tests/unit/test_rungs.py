"""The contest's rungs: the config, the judgement after a rung, where the minutes go, warm restarts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fercore.config import parse_config
from fercore.data.rebalance import rebalance
from fercore.errors import ConfigError
from fercore.models import build_cnn
from fercore.training.checkpoints import CheckpointStore
from fercore.training.contest import initial_state, judge, merge_rung, rung_config
from fercore.training.job_keys import job_key, weights_digest
from fercore.training.progress import TrainResult
from fercore.training.trainer import Trainer
from tests.conftest import small_cfg, synthetic

LABELS = np.repeat(np.arange(7), 100)


def _config(rungs=(0.25, 1.0), minutes=(10, 10, 20)):
    contenders = {name: {"family": "cnn", "epochs": 30, "max_train_minutes": m} for name, m in zip("abc", minutes)}
    return parse_config({"contest": {"rungs": list(rungs)}, "contenders": contenders})


def _probs(n_wrong_per_class: dict[int, int] | int, offset: int = 0) -> np.ndarray:
    """One-hot probabilities of the labels, with ``n`` images of each class (from the ``offset``-th) predicted as
    the next class. Contenders with other offsets make different errors; with the same, nested ones."""
    wrong = n_wrong_per_class if isinstance(n_wrong_per_class, dict) else dict.fromkeys(range(7), n_wrong_per_class)
    predicted = LABELS.copy()
    for c, n in wrong.items():
        rows = np.flatnonzero(LABELS == c)[offset:offset + n]
        predicted[rows] = (c + 1) % 7
    return np.eye(7)[predicted]


@pytest.mark.parametrize(("rungs", "message"), [
    ([], "is empty"), ([0.5, 0.25, 1.0], "does not increase"), ([0.5, 1.5], "exceeds"), ([0.25, 0.5], "ends at 0.5"),
    ([0.0, 1.0], "in (0, 1]"),
])
def test_bad_rungs_fail_at_load_time_naming_the_key(rungs, message):
    with pytest.raises(ConfigError) as err:
        _config(rungs)
    assert "contest.rungs" in str(err.value) and message in str(err.value)


def test_rungs_with_one_contender_or_a_teacher_of_this_run():
    one = parse_config({"contest": {"rungs": [0.5, 1.0]}, "contenders": {"a": {"family": "cnn"}}})
    assert not one.has_rungs()  # one contender: nothing to judge, trains as without rungs
    assert _config().has_rungs() and not _config((1.0,)).has_rungs()
    student = {"family": "vit", "checkpoint": None, "distill": {"enabled": True, "teacher": "a"}}
    with pytest.raises(ConfigError, match=r"contenders.s.distill.teacher 'a' trains in this run's rungs"):
        parse_config({"contest": {"rungs": [0.5, 1.0]}, "contenders": {"a": {"family": "cnn"}, "s": student}})


def test_without_minutes_everywhere_the_budget_moves_in_shares_of_epochs():
    config = parse_config({"contest": {"rungs": [0.2, 1.0]}, "contenders": {
        "a": {"family": "cnn", "epochs": 60}, "b": {"family": "cnn", "epochs": 40, "max_train_minutes": 9}}})
    state = initial_state(config)
    assert rung_config(config.contenders["a"], state, "a").epochs == 12
    after, _ = judge(state, {"a": _probs(5), "b": _probs(70)}, LABELS, resamples=300)
    assert not after["contenders"]["b"]["active"] and after["contenders"]["a"]["scale"] == pytest.approx(2.0)
    last = rung_config(config.contenders["a"], after, "a")
    assert last.epochs == 96 and last.max_train_minutes is None  # 60 * 0.8 * 2: b's share of its own budget


def test_the_first_rung_gets_its_share_of_each_budget():
    config = _config()
    state = initial_state(config)
    a = rung_config(config.contenders["a"], state, "a")
    c = rung_config(config.contenders["c"], state, "c")
    assert (a.max_train_minutes, a.epochs) == (2.5, 8) and (c.max_train_minutes, c.epochs) == (5.0, 8)


def test_a_contender_behind_on_every_emotion_stops_and_its_minutes_go_to_the_others():
    config = _config()
    state = initial_state(config)
    probs = {"a": _probs(10), "b": _probs(12, offset=30), "c": _probs(60)}  # c: 60 of 100 wrong in every class
    after, rows = judge(state, probs, LABELS, resamples=300)
    c = after["contenders"]["c"]
    assert not c["active"] and c["stopped_after_rung"] == 1
    assert c["reason"].startswith("stopped after rung 1 of 2: significantly behind on every emotion and macro_f1")
    assert after["contenders"]["a"]["active"] and after["contenders"]["b"]["active"]
    # c had 15 of its 20 minutes left; a and b had 7.5 each: each gets half, so their last rung doubles
    assert after["contenders"]["a"]["scale"] == pytest.approx(2.0)
    last_a = rung_config(config.contenders["a"], after, "a")
    assert last_a.max_train_minutes == pytest.approx(15.0) and last_a.epochs == 45
    total = sum(config.contenders[n].max_train_minutes * 0.25 for n in "abc") + 2 * last_a.max_train_minutes
    assert total == pytest.approx(40.0)  # the config's budget, all of it, none over
    assert {r["contender"]: r["goes on"] for r in rows} == {"a": True, "b": True, "c": False}


def test_a_contender_that_leads_one_emotion_goes_on_though_behind_on_the_rest():
    state = initial_state(_config())
    # angry and disgust all right (so no false disgust); neutral's errors fall on angry, whose F1 suffers
    expert = {c: 60 for c in range(2, 7)} | {0: 0, 1: 0}
    probs = {"a": _probs({c: 10 for c in range(7)} | {1: 40}), "b": _probs(12, offset=30), "c": _probs(expert)}
    after, _ = judge(state, probs, LABELS, resamples=300)
    reason = after["contenders"]["c"]["reason"]
    assert after["contenders"]["c"]["active"] and reason == "may still win after rung 1: disgust"
    assert all(e["scale"] == 1.0 for e in after["contenders"].values())  # nobody stopped: no minutes move


def test_a_lead_inside_the_noise_stops_nobody():
    after, _ = judge(initial_state(_config()), {"a": _probs(20), "b": _probs(22, 30), "c": _probs(24, 60)}, LABELS,
                     resamples=300)
    assert all(e["active"] for e in after["contenders"].values())


def test_merged_rungs_number_their_epochs_on_and_add_their_time():
    first = TrainResult(history=[{"epoch": 1, "val_loss": 1.0}, {"epoch": 2, "val_loss": 0.9}], best_epoch=2,
                        wall_s=60.0, kept_weights="ema")
    second = TrainResult(history=[{"epoch": 1, "val_loss": 0.8}], best_epoch=1, wall_s=30.0, kept_weights="raw")
    cfg = small_cfg(max_train_minutes=0.5)
    merged = merge_rung(merge_rung(None, first, 0, cfg), second, 1, cfg)
    assert [h["epoch"] for h in merged["history"]] == [1, 2, 3] and merged["best_epoch"] == 3
    assert merged["wall_s"] == 90.0 and [r["kept_weights"] for r in merged["rungs"]] == ["ema", "raw"]


def test_a_warm_restart_keeps_its_start_weights_when_no_epoch_beats_them(tmp_path, monkeypatch):
    ds = synthetic(per_class=8, test_per_class=2)
    model = build_cnn("vgg7", width=8)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    losses = iter([0.5, 0.9, 0.8])  # the start weights, then two epochs that do worse
    monkeypatch.setattr(Trainer, "_validate", lambda self, val, m=None: (next(losses), 0.5))
    result = Trainer(model, small_cfg(epochs=2), tmp_path, start_digest=weights_digest(model)).fit(
        ds, rebalance(ds, "none", 0))
    assert result.kept_weights == "start" and result.best_epoch == 0 and result.best_val_loss == 0.5
    assert all(torch.equal(v, start[k]) for k, v in model.state_dict().items())


def test_a_corrupt_checkpoint_restarts_the_job_and_says_so(tmp_path, caplog):
    ds = synthetic(per_class=8, test_per_class=2)
    plan, cfg = rebalance(ds, "none", 0), small_cfg(epochs=1)
    model = build_cnn("vgg7", width=8)
    store = CheckpointStore(tmp_path)
    key = job_key(model, cfg, ds, plan)
    path = tmp_path / key / "last.pt"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    result = Trainer(model, cfg, store).fit(ds, plan)
    assert result.resumed_from_epoch == 0 and len(result.history) == 1
    assert "is unreadable" in caplog.text and str(path) in caplog.text
