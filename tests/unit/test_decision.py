"""Promotion's decision, table-driven: each case is scored candidates, the current holders and the expected
alias moves. Every case is decided in every order of its candidates and must come out the same. Then the
plan: the ensembles it weighs, and a promotion that drift blocks."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from fercore.config import PromotionConfig
from fercore.constants import CLASS_NAMES
from fercore.evaluation.metrics import Evaluation, evaluate_predictions
from fercore.evaluation.predictions import Predictions
from fercore.evaluation.significance import Bootstrap
from fercore.models.inference import route_probabilities
from fercore.promotion.decision import Candidate, candidate, decide
from fercore.promotion.plan import make_plan
from tests.conftest import synthetic

EVERY = {f"champion-{e}" for e in CLASS_NAMES}
LABELS = np.repeat(np.arange(7), 100)  # 700 validation images, 100 per class


def cand(version: str, f1: float | dict[str, float], family: str = "cnn", test: float | None = None) -> Candidate:
    """A candidate whose validation F1 is ``f1`` on every emotion (a dict: per emotion, ``*`` for the rest)."""
    f1s = {e: f1 if not isinstance(f1, dict) else f1.get(e, f1.get("*", 0.3)) for e in CLASS_NAMES}
    per_class = pd.DataFrame({"f1": f1s, "recall": f1s}, index=pd.Index(CLASS_NAMES, name="emotion"))
    macro = float(np.mean(list(f1s.values())))
    ev = Evaluation({"macro_f1": macro, "accuracy": macro}, per_class, np.zeros((7, 7), int))
    test_ev = ev if test is None else Evaluation({"macro_f1": test, "accuracy": test}, per_class, np.zeros((7, 7), int))
    return Candidate(version, family, ev, np.full((3, 7), 1 / 7), test_evaluation=test_ev)


def _with_errors(n_wrong: int, offset: int = 0) -> np.ndarray:
    """The labels, with ``n_wrong`` images (from ``offset``, spread over the classes) predicted as the next class."""
    predicted = LABELS.copy()
    rows = (offset + np.arange(n_wrong) * 97) % len(LABELS)
    predicted[rows] = (LABELS[rows] + 1) % 7
    return predicted


def judged(version: str, n_wrong: int, offset: int = 0, family: str = "cnn", members: int = 1) -> Candidate:
    """A candidate with real predictions on LABELS (for the bootstrap)."""
    predicted = _with_errors(n_wrong, offset)
    return Candidate(version, family, evaluate_predictions(LABELS, predicted), np.eye(7)[predicted],
                     members=members, contender="averaged" if family == "ensemble" else "")


HELD_BY_1 = {"champion": "1", "challenger": "2", **dict.fromkeys(EVERY, "1")}
BOOT = Bootstrap(LABELS, resamples=500)
CASES = {
    "first run: the best takes every alias": (
        [cand("1", 0.5), cand("2", 0.4)], {}, {},
        {**dict.fromkeys(EVERY, "1"), "champion": "1", "challenger": "2"}),
    "better on one emotion only: that alias moves, nothing else": (
        [cand("1", 0.5), cand("2", 0.4), cand("3", {"disgust": 0.9, "*": 0.3})], HELD_BY_1, {},
        {"champion-disgust": "3"}),
    "a lead below min_margin keeps the champion": (
        [cand("1", 0.50), cand("2", 0.52)], {"champion": "1", **dict.fromkeys(EVERY, "1")}, {"min_margin": 0.05},
        {f"champion-{e}": "2" for e in CLASS_NAMES} | {"challenger": "2"}),
    "a lead above min_margin moves it; the old champion steps down": (
        [cand("1", 0.50), cand("2", 0.56)], {"champion": "1", **dict.fromkeys(EVERY, "1")}, {"min_margin": 0.05},
        {**{f"champion-{e}": "2" for e in CLASS_NAMES}, "champion": "2", "previous-champion": "1",
         "challenger": "1"}),
    "a tie keeps every holder": (
        [cand("1", 0.5), cand("2", 0.5)], HELD_BY_1, {}, {}),
    "a tie keeps the champion when it is the newer version too": (
        [cand("1", 0.5), cand("2", 0.5)], {"champion": "2", "challenger": "1", **dict.fromkeys(EVERY, "2")}, {}, {}),
    "a tie keeps the challenger when it is the newer version too": (
        [cand("1", 0.6), cand("2", 0.4), cand("3", 0.4)], {"champion": "1", "challenger": "3", **dict.fromkeys(EVERY, "1")},
        {}, {}),
    "a lead of exactly min_margin moves the champion": (  # (binary fractions: the sums are exact)
        [cand("1", 0.5), cand("2", 0.625)], {"champion": "1", **dict.fromkeys(EVERY, "2")}, {"min_margin": 0.125},
        {"champion": "2", "previous-champion": "1", "challenger": "1"}),
    "a tie between a registered version and an ensemble still to be registered goes to the registered one": (
        [cand("1", 0.6), cand("new-averaged", 0.6, "ensemble")], {}, {},
        {**dict.fromkeys(EVERY, "1"), "champion": "1", "challenger": "new-averaged"}),
    "a tie without holders goes to the older version": (
        [cand("7", 0.5), cand("12", 0.5)], {}, {},
        {**dict.fromkeys(EVERY, "7"), "champion": "7", "challenger": "12"}),
    "best on test, worse on validation: validation decides": (
        [cand("1", 0.60, test=0.40), cand("2", 0.55, "vit", test=0.90)], {}, {},
        {**dict.fromkeys(EVERY, "1"), "champion": "1", "challenger": "2"}),
    "an ensemble can be champion, never an emotion's champion": (
        [cand("1", 0.5), cand("2", 0.7, "ensemble")], {}, {},
        {**dict.fromkeys(EVERY, "1"), "champion": "2", "challenger": "1"}),
    "a better newcomer: champion moves, the old one is challenger and previous": (
        [cand("1", 0.50), cand("2", 0.40), cand("3", 0.60, "vit")], HELD_BY_1, {},
        {**dict.fromkeys(EVERY, "3"), "champion": "3", "previous-champion": "1", "challenger": "1"}),
    "a lead inside the noise moves no alias": (
        [judged("1", 150), judged("2", 146, offset=4)], {"champion": "1", **dict.fromkeys(EVERY, "1")},
        {"bootstrap": BOOT}, {"challenger": "2"}),
    "the same lead moves aliases without significance": (
        [judged("1", 150), judged("2", 146, offset=4)], {"champion": "1", **dict.fromkeys(EVERY, "1")}, {},
        lambda cands: {"champion": "2", "previous-champion": "1", "challenger": "1",  # and each emotion it leads on
                       **{f"champion-{e}": "2" for e in CLASS_NAMES if cands[1].f1(e) > cands[0].f1(e)}}),
    "a challenger keeps its alias against a runner-up whose lead is inside the noise": (
        [judged("1", 100), judged("2", 160), judged("3", 156, offset=4)],
        {"champion": "1", "challenger": "2", **dict.fromkeys(EVERY, "1")}, {"bootstrap": BOOT}, {}),
    "the same lead moves the challenger without significance": (
        [judged("1", 100), judged("2", 160), judged("3", 156, offset=4)],
        {"champion": "1", "challenger": "2", **dict.fromkeys(EVERY, "1")}, {}, {"challenger": "3"}),
    "an ensemble that scores best is champion, whatever its lead over the best single model": (
        [judged("1", 150), judged("2", 146, offset=4, family="ensemble", members=2)], {}, {"bootstrap": BOOT},
        {**dict.fromkeys(EVERY, "1"), "champion": "2", "challenger": "1"}),
    "an ensemble above max_members is not a candidate for champion": (
        [judged("1", 150), judged("2", 146, offset=4, family="ensemble", members=3)], {},
        {"bootstrap": BOOT, "max_members": 2}, {**dict.fromkeys(EVERY, "1"), "champion": "1", "challenger": "2"}),
    "a holder keeps champion against a better ensemble whose lead is inside the noise": (
        [judged("1", 150), judged("2", 146, offset=4, family="ensemble", members=2)],
        {"champion": "1", **dict.fromkeys(EVERY, "1")}, {"bootstrap": BOOT}, {"challenger": "2"}),
    "an ensemble's significant lead makes it champion": (
        [judged("1", 150), judged("3", 60, family="ensemble")], {}, {"bootstrap": BOOT},
        {**dict.fromkeys(EVERY, "1"), "champion": "3", "challenger": "1"}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_decision(case):
    cands, holders, kwargs, expected = CASES[case]
    expected = expected(cands) if callable(expected) else expected
    outcomes = set()
    for order in itertools.permutations(cands):
        decision = decide(list(order), holders, **kwargs)
        moves = {m.alias: m.version for m in decision.moves}
        assert moves == expected, f"in the order {[c.version for c in order]}"
        outcomes.add(tuple(sorted((m.alias, m.version, m.previous) for m in decision.moves)))
    assert len(outcomes) == 1  # the order of the candidates changes nothing


def _row(decision, emotion: str) -> dict:
    return decision.table.set_index("emotion").loc[emotion].to_dict()


def test_every_move_reason_and_table_cell_of_a_decision():
    """v3 leads everywhere: every emotion, the champion (v1 steps down to previous-champion, whose holder v0 is
    recorded), and v1 becomes challenger in place of v2."""
    cands = [cand("1", 0.5), cand("2", 0.4), cand("3", {"disgust": 0.9, "*": 0.58})]
    holders = {"champion": "1", "challenger": "2", "previous-champion": "0", **dict.fromkeys(EVERY, "1")}
    decision = decide(cands, holders)
    f1 = {e: 0.9 if e == "disgust" else 0.58 for e in CLASS_NAMES}
    assert [(m.alias, m.version, m.previous, m.reason) for m in decision.moves] == [
        *((f"champion-{e}", "3", "1", f"{e} F1 {f1[e]:.4f} vs holder v1 0.5000; runner-up v1 (cnn) F1 0.5000, lead "
           f"{f1[e] - 0.5:+.4f}") for e in CLASS_NAMES),
        ("champion", "3", "1", "macro_f1 0.6257 vs v1 0.5000"),
        ("previous-champion", "1", "0", "replaced as champion by v3"),
        ("challenger", "1", "2", "runner-up macro_f1 0.5000")]
    assert decision.reasons == {**{f"champion-{e}": f"move: {e} F1 {f1[e]:.4f} vs holder v1 0.5000; runner-up v1 (cnn) "
                                   f"F1 0.5000, lead {f1[e] - 0.5:+.4f}" for e in CLASS_NAMES},
                                "champion": "move: macro_f1 0.6257 vs v1 0.5000", "challenger": "move: v1 runner-up"}
    assert decision.routes == dict.fromkeys(CLASS_NAMES, "3")
    row = _row(decision, "disgust")
    assert {k: v for k, v in row.items() if isinstance(v, str)} == {
        "winner": "v3 (cnn)", "runner_up": "v1 (cnn)", "runner_up_95ci": "—", "significant": "—", "champion_95ci": "—",
        "decision": "move"}
    assert {k: v for k, v in row.items() if not isinstance(v, str)} == pytest.approx({
        "v1 (cnn) val F1": 0.5, "v1 (cnn) val recall": 0.5, "v2 (cnn) val F1": 0.4, "v2 (cnn) val recall": 0.4,
        "v3 (cnn) val F1": 0.9, "v3 (cnn) val recall": 0.9, "margin_runner_up": 0.4, "margin_vs_champion": 0.4})
    first = decide(cands, {})  # no holders: no margin to a champion
    assert np.isnan(_row(first, "disgust")["margin_vs_champion"])
    assert _row(first, "disgust")["decision"] == "assign (no holder yet)"
    assert first.reasons["champion"] == "assign (no holder yet): macro_f1 0.6257" and first.reasons["champion-happy"] == \
        "assign (no holder yet): happy F1 0.5800; runner-up v1 (cnn) F1 0.5000, lead +0.0800"
    alone = decide([cand("1", 0.5)], {})
    assert np.isnan(_row(alone, "happy")["margin_runner_up"]) and "challenger" not in alone.reasons


def test_the_intervals_in_the_table_and_reasons_are_the_bootstraps():
    holder, close, far = judged("1", 150), judged("2", 146, offset=4), judged("3", 60)
    holders = {"champion": "1", **dict.fromkeys(EVERY, "1")}
    decision = decide([holder, close], holders, bootstrap=BOOT)
    for e in CLASS_NAMES:
        lead = BOOT.lead(close.probs.argmax(1), holder.probs.argmax(1), emotion=e)
        row, interval = _row(decision, e), f"[{lead.low:+.3f}, {lead.high:+.3f}]"
        best = close if close.f1(e) > holder.f1(e) else holder
        if best is close:  # it leads on this emotion, inside the noise: the holder keeps it
            assert row["champion_95ci"] == interval and row["runner_up_95ci"] == interval
            assert row["significant"] == "no" and row["decision"] == "keep"
            assert decision.reasons[f"champion-{e}"] == (f"keep: {e} F1 {holder.f1(e):.4f} vs holder v1 "
                                                         f"{holder.f1(e):.4f}; v2's lead {lead} is inside the noise")
    overall = BOOT.lead(close.probs.argmax(1), holder.probs.argmax(1))
    assert decision.reasons["champion"] == (f"keep v1: best candidate v2 macro_f1 {close.score('macro_f1'):.4f} "
                                            f"leads {holder.score('macro_f1'):.4f} by {overall}, inside the noise")
    by_accuracy = decide([holder, close], holders, metric="accuracy", bootstrap=BOOT)
    assert f"by {BOOT.lead(close.probs.argmax(1), holder.probs.argmax(1), 'accuracy')}, inside" in \
        by_accuracy.reasons["champion"]
    moved = decide([holder, far], holders, bootstrap=BOOT)
    lead = BOOT.lead(far.probs.argmax(1), holder.probs.argmax(1))
    assert moved.moves[-3].reason == (f"macro_f1 {far.score('macro_f1'):.4f} vs v1 {holder.score('macro_f1'):.4f} "
                                      f"(lead {lead}, 95 % interval)")
    assert set(_row(moved, "happy")[k] for k in ("significant",)) == {"yes"}
    ensemble = judged("9", 146, offset=4, family="ensemble", members=2)
    lead = BOOT.lead(ensemble.probs.argmax(1), holder.probs.argmax(1))
    assert decide([holder, ensemble], {}, bootstrap=BOOT).reasons["ensemble"] == (
        f"v9 (averaged of 2 members) leads the best single model v1 by {lead}: the champion is the best model within "
        "4 members, whatever its lead over a single model")
    lead = BOOT.lead(ensemble.probs.argmax(1), holder.probs.argmax(1), "accuracy")
    assert f"by {lead}: the champion" in decide([holder, ensemble], {}, "accuracy", bootstrap=BOOT).reasons["ensemble"]


def test_a_move_names_its_runner_up_with_the_bootstraps_interval_and_a_lone_candidate_has_none():
    far, holder = judged("3", 60), judged("1", 150)
    moved = decide([far, holder], {}, bootstrap=BOOT)
    lead = BOOT.lead(far.probs.argmax(1), holder.probs.argmax(1), emotion="happy")
    assert moved.reasons["champion-happy"] == (f"assign (no holder yet): happy F1 {far.f1('happy'):.4f}; runner-up "
                                               f"v1 (cnn) F1 {holder.f1('happy'):.4f}, lead {lead}")
    alone = decide([far], {}, bootstrap=BOOT)
    row = _row(alone, "happy")
    assert row["runner_up"] == "—" and row["runner_up_95ci"] == "—" and row["significant"] == "—"
    assert alone.reasons["champion-happy"] == f"assign (no holder yet): happy F1 {far.f1('happy'):.4f}"
    happy = next(line for line in moved.markdown().splitlines() if line.startswith("| happy |"))  # the compact view
    interval = _row(moved, "happy")["runner_up_95ci"]
    assert f"| {far.f1('happy') - holder.f1('happy'):+.3f} {interval} |" in happy and interval.startswith("[")
    assert next(line for line in alone.markdown().splitlines() if line.startswith("| happy |")) == (
        "| happy | v3 (cnn) | — | — | — | assign (no holder yet) |")


def test_why_an_ensemble_is_or_is_not_champion_is_said_in_both_aliases_reasons():
    single, ensemble = judged("1", 150), judged("9", 146, offset=4, family="ensemble", members=3)
    lead = BOOT.lead(ensemble.probs.argmax(1), single.probs.argmax(1))
    moves = {m.alias: m for m in decide([single, ensemble], {}, bootstrap=BOOT).moves}
    assert moves["champion"].version == "9" and moves["champion"].reason == (
        f"macro_f1 {ensemble.score('macro_f1'):.4f}; v9 (averaged of 3 members) leads the best single model v1 by "
        f"{lead}: the champion is the best model within 4 members, whatever its lead over a single model")
    assert moves["challenger"].reason == f"runner-up macro_f1 {single.score('macro_f1'):.4f}"  # below the champion
    too_big = (f"v9 (3 members, macro_f1 {ensemble.score('macro_f1'):.4f}) is above promotion.max_members 2: not a "
               "candidate for champion")
    moves = {m.alias: m for m in decide([single, ensemble], {}, bootstrap=BOOT, max_members=2).moves}
    assert moves["champion"].version == "1" and moves["champion"].reason == \
        f"macro_f1 {single.score('macro_f1'):.4f}; {too_big}"
    assert moves["challenger"].version == "9" and moves["challenger"].reason == (
        f"runner-up macro_f1 {ensemble.score('macro_f1'):.4f}; scores above the champion but has 3 members, above "
        "promotion.max_members 2")
    routed = judged("8", 148, offset=4, family="ensemble", members=2)
    assert decide([single, ensemble, routed], {}, bootstrap=BOOT, max_members=1).reasons["ensemble"] == \
        "promotion.max_members is 1: single models only (left out: v9, v8)"
    kept = decide([single, ensemble], {"champion": "1"}, bootstrap=BOOT)  # a holder: significance still gates
    assert kept.reasons["champion"].startswith("keep v1: best candidate v9") and "inside the noise" in \
        kept.reasons["champion"]
    assert {m.alias: m for m in kept.moves}["challenger"].reason.endswith(f"which kept its alias ({kept.reasons['champion']})")
    plain = decide([single, judged("2", 148, offset=4)], {}, bootstrap=BOOT)  # no ensemble: nothing to explain
    assert "ensemble" not in plain.reasons and "ensemble" not in {m.alias: m for m in plain.moves}["champion"].reason


def test_a_time_budget_keeps_a_slow_ensemble_from_champion_and_replaces_a_holder_it_no_longer_fits():
    from dataclasses import replace

    single = replace(judged("1", 150), predict_ms=15.0)
    ensemble = replace(judged("9", 146, offset=4, family="ensemble", members=3), predict_ms=62.0)
    score = f"macro_f1 {ensemble.score('macro_f1'):.4f}"
    fresh = decide([single, ensemble], {}, bootstrap=BOOT, max_predict_ms=40)
    assert {m.alias: m.version for m in fresh.moves if "-" not in m.alias} == {"champion": "1", "challenger": "9"}
    assert fresh.reasons["ensemble"] == (f"v9 (62 ms per face, {score}) is above promotion.max_predict_ms 40: not a "
                                         "candidate for champion")
    # the ensemble won before the budget was lowered: its lead inside the noise does not keep it there
    lowered = decide([single, ensemble], {"champion": "9"}, bootstrap=BOOT, max_predict_ms=40)
    champion = {m.alias: m for m in lowered.moves}["champion"]
    assert (champion.version, champion.previous) == ("1", "9")
    assert champion.reason.startswith(f"macro_f1 {single.score('macro_f1'):.4f}: holder v9 (62 ms per face) is above "
                                      "promotion.max_predict_ms 40, which it no longer fits")
    assert decide([single, ensemble], {"champion": "9"}, bootstrap=BOOT, max_members=2).reasons["champion"].startswith(
        f"move: macro_f1 {single.score('macro_f1'):.4f}: holder v9 (3 members) is above promotion.max_members 2")
    within = decide([single, ensemble], {"champion": "9"}, bootstrap=BOOT, max_predict_ms=80)  # fits: it stays
    assert within.reasons["champion"].startswith("keep v9")
    unmeasured = replace(ensemble, predict_ms=None)  # an older ensemble without a time: not held against it
    assert decide([single, unmeasured], {"champion": "9"}, bootstrap=BOOT, max_predict_ms=40).reasons[
        "champion"].startswith("keep v9")


def test_routes_follow_the_holders_ties_significance_and_never_an_ensemble():
    from fercore.promotion.decision import routes_of

    single, ensemble = cand("1", 0.5), cand("9", 0.9, "ensemble")
    assert routes_of([single, ensemble], {}) == dict.fromkeys(CLASS_NAMES, "1")
    tie = [cand("1", 0.5), cand("2", 0.5)]
    assert routes_of(tie, {}) == dict.fromkeys(CLASS_NAMES, "1")
    assert routes_of(tie, dict.fromkeys(EVERY, "2")) == dict.fromkeys(CLASS_NAMES, "2")  # the holder keeps a tie
    holder, close = judged("1", 150), judged("2", 146, offset=4)
    leads = {e for e in CLASS_NAMES if close.f1(e) > holder.f1(e)}
    assert leads and routes_of([holder, close], dict.fromkeys(EVERY, "1"), BOOT) == dict.fromkeys(CLASS_NAMES, "1")
    assert {e for e, v in routes_of([holder, close], dict.fromkeys(EVERY, "1")).items() if v == "2"} == leads


def test_a_candidate_is_scored_on_validation_and_keeps_its_test_figures_for_the_report():
    dataset = synthetic(per_class=10, test_per_class=4)
    c = _scored(dataset, "4", [0, 1, 2])
    val, test = dataset.split("val"), dataset.split("test")
    assert (c.version, c.family, c.new, c.overlap, c.contender, c.contest) == ("4", "cnn", True, "none", "c4", "")
    assert c.evaluation.overall["accuracy"] == pytest.approx(float(np.isin(val.labels, [0, 1, 2]).mean()))
    assert c.test_evaluation.overall["accuracy"] == pytest.approx(float(np.isin(test.labels, [0, 1, 2]).mean()))
    assert c.probs.shape == (len(val), 7) and c.test_probs.shape == (len(test), 7)
    other = candidate("5", "vit", Predictions(c.probs, c.test_probs), dataset, False, contest="x")
    assert (other.overlap, other.contender, other.contest, other.new, other.label) == ("", "", "x", False, "v5 (vit)")


def test_the_candidates_table_and_its_markdown():
    from fercore.promotion.decision import candidates_table, table_markdown

    a, b = cand("1", 0.5, test=0.4375), cand("2", 0.375)  # binary fractions: exact means
    a.contender, b.new, b.test_evaluation = "vgg7", False, None  # a new one with no overlap noted: "none"
    a.contest = "trained all 2 rungs; leads on happy: +0.031"
    b.contest = "stopped after rung 1 of 2: significantly behind; angry -0.06"
    table = candidates_table([a, b])
    assert table.to_dict("records") == [
        {"candidate": "v1 (vgg7)", "new": True, "val macro_f1": 0.5, "val accuracy": 0.5, "test macro_f1": 0.4375,
         "test accuracy": 0.4375, "validation images in its training data": "none", "contest": "trained all 2 rungs"},
        {"candidate": "v2 (cnn)", "new": False, "val macro_f1": 0.375, "val accuracy": 0.375,
         "test macro_f1": pytest.approx(float("nan"), nan_ok=True), "test accuracy": pytest.approx(float("nan"), nan_ok=True),
         "validation images in its training data": "", "contest": "stopped after rung 1 of 2"}]
    a.contest = ""
    assert "contest" not in candidates_table([a]).columns  # no rungs: no column
    assert table_markdown(table) == (
        "| candidate | new | val macro_f1 | val accuracy | test macro_f1 | test accuracy | validation images in "
        "its training data | contest |\n|---|---|---|---|---|---|---|---|\n"
        "| v1 (vgg7) | True | 0.500 | 0.500 | 0.438 | 0.438 | none | trained all 2 rungs |\n"
        "| v2 (cnn) | False | 0.375 | 0.375 | — | — |  | stopped after rung 1 of 2 |")


def test_a_kept_alias_says_why_and_the_table_shows_the_interval():
    cands, holders, kwargs, _ = CASES["a lead inside the noise moves no alias"]
    decision = decide(cands, holders, **kwargs)
    assert "inside the noise" in decision.reasons["champion"]
    assert set(decision.table["significant"]) <= {"no", "—"} and "[" in decision.table.loc[0, "runner_up_95ci"]
    tie = decide(*CASES["a tie keeps every holder"][:2])
    assert tie.reasons["champion-happy"] == "keep: happy F1 0.5000 vs holder v1 0.5000"  # no bootstrap: no interval
    margin = decide(*CASES["a lead below min_margin keeps the champion"][:2], min_margin=0.05)
    assert margin.reasons["champion"].startswith("keep v1") and "does not beat 0.5000 by 0.05" in margin.reasons["champion"]


def test_the_per_emotion_table_holds_the_margins_and_routes():
    cands, holders, _, _ = CASES["better on one emotion only: that alias moves, nothing else"]
    decision = decide(cands, holders)
    row = decision.table.set_index("emotion").loc["disgust"]
    assert row["decision"] == "move" and row["margin_vs_champion"] == pytest.approx(0.4)
    assert decision.routes == {**dict.fromkeys(CLASS_NAMES, "1"), "disgust": "3"}
    lines = decision.markdown().splitlines()  # the compact view; every candidate's F1 is in decision.table
    assert lines[0] == "| emotion | winner | runner-up | lead [95 % interval] | significant | decision |"
    assert next(line for line in lines if line.startswith("| disgust |")) == \
        "| disgust | v3 (cnn) | v1 (cnn) | +0.400 | — | move |"


def test_routed_probabilities_take_each_class_from_its_champion():
    a = np.array([[0.7, 0.3, 0, 0, 0, 0, 0]], float)
    b = np.array([[0.1, 0.9, 0, 0, 0, 0, 0]], float)
    out = route_probabilities({"a": a, "b": b}, {e: "a" for e in CLASS_NAMES} | {"disgust": "b"})
    assert out[0, :2] == pytest.approx([0.7 / 1.6, 0.9 / 1.6]) and out.sum() == pytest.approx(1.0)


# -- the plan ------------------------------------------------------------------------------------


def _scored(dataset, version: str, right_on: list[int]) -> Candidate:
    """A candidate right on the classes ``right_on`` (validation and test), wrong elsewhere."""
    def probs(split):
        labels = dataset.split(split).labels
        predicted = np.where(np.isin(labels, right_on), labels, (labels + 1) % 7)
        return np.eye(7)[predicted] * 0.9 + 0.1 / 7
    return candidate(version, "cnn", Predictions(probs("val"), probs("test")), dataset, True, "none", f"c{version}")


def test_the_plan_weighs_both_ensembles_before_one_decision():
    dataset = synthetic(per_class=30, test_per_class=10)
    new = [_scored(dataset, "1", [0, 1, 2, 3]), _scored(dataset, "2", [4, 5, 6])]
    config = PromotionConfig(require_significance=False)
    plan = make_plan("fer", new, [], {}, dataset, config, registered_ensembles={})
    assert [e.candidate.version for e in plan.ensembles] == ["new-routed", "new-averaged"]
    assert plan.ensembles[0].spec == {"model_name": "fer", "routes": plan.decision.routes}
    assert plan.decision.routes == {**{e: "1" for e in CLASS_NAMES[:4]}, **{e: "2" for e in CLASS_NAMES[4:]}}
    assert {c.version for c in plan.cands} == {"1", "2", "new-routed", "new-averaged"}
    moves = {m.alias: m for m in plan.decision.moves}
    assert moves["champion"].version in ("new-routed", "new-averaged")  # they combine two halves
    routed = next(m for m in plan.decision.moves if m.version == "new-routed")
    assert routed.routes == plan.decision.routes  # it moves only while its members hold their routes
    resolved = plan.resolve("new-routed", "9")  # a new plan: the one decided stays as it was
    assert "new-routed" not in {c.version for c in resolved.cands} | {m.version for m in resolved.decision.moves}
    assert "9" in {c.version for c in resolved.cands} and resolved.ensembles[0].candidate.version == "9"
    assert "new-routed" in {c.version for c in plan.cands} and plan.ensembles[0].candidate.version == "new-routed"
    with pytest.raises(AttributeError):  # frozen
        plan.blocked = True


def test_an_identical_registered_ensemble_is_reused_and_a_drift_block_builds_none():
    dataset = synthetic(per_class=30, test_per_class=10)
    new = [_scored(dataset, "1", [0, 1, 2, 3]), _scored(dataset, "2", [4, 5, 6])]
    config = PromotionConfig(require_significance=False, averaging=False)
    first = make_plan("fer", new, [], {}, dataset, config, registered_ensembles={})
    tag = first.ensembles[0].identity["routes"]
    again = make_plan("fer", new, [], {}, dataset, config, registered_ensembles={("routes", tag): "5"})
    assert again.ensembles[0].candidate.version == "5" and not again.ensembles[0].candidate.new
    blocked = make_plan("fer", new, [], {}, dataset, config, registered_ensembles={}, blocked=True)
    assert blocked.blocked and blocked.ensembles == [] and {c.version for c in blocked.cands} == {"1", "2"}
    assert {m.alias for m in blocked.decision.moves} >= {"champion", "challenger"}  # decided, and reported


def test_the_ensemble_reasons_exactly_at_their_edges():
    single = judged("1", 150)
    plain = {m.alias: m for m in decide([single, judged("2", 160)], {}, bootstrap=BOOT).moves}
    assert plain["champion"].reason == f"macro_f1 {single.score('macro_f1'):.4f}"  # nothing appended
    big, bigger = (judged(v, 146, offset=4, family="ensemble", members=m) for v, m in (("8", 3), ("9", 5)))
    bigger.evaluation.overall["macro_f1"] = big.score("macro_f1") + 0.01  # ranked first
    assert decide([single, big, bigger], {}, bootstrap=BOOT, max_members=2).reasons["ensemble"] == (
        f"v9 (5 members, macro_f1 {bigger.score('macro_f1'):.4f}) is above promotion.max_members 2: not a candidate for "
        f"champion; v8 (3 members, macro_f1 {big.score('macro_f1'):.4f}) is above promotion.max_members 2: not a "
        "candidate for champion")
    unnamed = Candidate("7", "ensemble", big.evaluation, big.probs, members=3)  # no contender name: "ensemble"
    at_limit = decide([single, unnamed], {}, max_members=3)  # exactly max_members: allowed; no bootstrap: a plain lead
    assert {m.alias: m.version for m in at_limit.moves}["champion"] == "7"
    assert at_limit.reasons["ensemble"] == (
        f"v7 (ensemble of 3 members) leads the best single model v1 by "
        f"{unnamed.score('macro_f1') - single.score('macro_f1'):+.4f}: the champion is the best model within 3 members, "
        "whatever its lead over a single model")
    kept = decide([single, big], {"champion": "1"}, bootstrap=BOOT, max_members=3)  # at the limit, inside the noise
    assert {m.alias: m for m in kept.moves}["challenger"].reason == (
        f"runner-up macro_f1 {big.score('macro_f1'):.4f}; scores above the champion, which kept its alias "
        f"({kept.reasons['champion']})")
    twin = judged("2", 150)  # the same predictions as the champion: a tie is not "above" it
    assert {m.alias: m for m in decide([single, twin], {}, bootstrap=BOOT).moves}["challenger"].reason == \
        f"runner-up macro_f1 {twin.score('macro_f1'):.4f}"
