"""Retention's decisions: which versions and runs ``run.py gc`` keeps, each with its reason."""

from __future__ import annotations

from fercore.promotion.retention import RunRecord, VersionRecord, runs_to_delete, versions_to_keep


def _store() -> list[VersionRecord]:
    """12 versions: vgg7 v1-v5 and v9, resnet v6-v8 and v10, a routed ensemble v11 (routes to v2 and v7) and an
    averaging ensemble v12 (members v9, v10); champion on v2, challenger on v12, champion-happy on v4."""
    vgg7 = [VersionRecord(str(v), "vgg7") for v in (1, 3, 5, 9)]
    resnet = [VersionRecord(str(v), "resnet") for v in (6, 7, 8, 10)]
    return [*vgg7, VersionRecord("2", "vgg7", aliases=("champion",)), VersionRecord("4", "vgg7", aliases=(
        "champion-happy",)), *resnet, VersionRecord("11", "routed", members=("2", "7")),
        VersionRecord("12", "averaged", aliases=("challenger",), members=("9", "10"))]


def test_the_last_n_of_each_contender_and_ensemble_kind_the_alias_holders_and_kept_ensembles_members_stay():
    assert versions_to_keep(_store(), keep_last=2) == {
        "2": "holds @champion", "4": "holds @champion-happy", "12": "holds @challenger",
        "9": "one of the last 2 of vgg7", "5": "one of the last 2 of vgg7",
        "10": "one of the last 2 of resnet", "8": "one of the last 2 of resnet",
        "11": "one of the last 2 of routed",
        "7": "member of kept ensemble v11"}  # v2, v9, v10 are members too, but kept already for another reason
    assert set(versions_to_keep(_store(), keep_last=1)) == {"2", "4", "12", "9", "10", "11", "7"}


def test_an_ensemble_of_ensembles_keeps_its_members_members():
    records = [VersionRecord("1", "a"), VersionRecord("2", "a"), VersionRecord("3", "b"),
               VersionRecord("4", "routed", members=("1", "3")), VersionRecord("5", "routed"),
               VersionRecord("6", "meta", aliases=("champion",), members=("4",))]
    assert versions_to_keep(records, keep_last=1) == {
        "6": "holds @champion", "2": "one of the last 1 of a", "3": "one of the last 1 of b",
        "5": "one of the last 1 of routed", "4": "member of kept ensemble v6", "1": "member of kept ensemble v4"}


def test_runs_beyond_the_newest_are_deleted_unless_needed_running_or_reused_by_a_kept_run():
    runs = [RunRecord("a", "train", "completed", 1), RunRecord("b", "train", "completed", 2),
            RunRecord("c", "train", "failed", 3), RunRecord("d", "train", "completed", 4, needs=("b",)),
            RunRecord("e", "train", "running", 0.5), RunRecord("f", "train", "completed", 5)]
    gone = runs_to_delete(runs, needed={"a"}, keep_last=1, in_progress={"running"})
    # f: newest; a: needed; e: in progress; b: d reused its steps, but d goes, so b goes too
    assert [r.run_id for r in gone] == ["b", "c", "d"]
    gone = runs_to_delete(runs, needed=set(), keep_last=2, in_progress={"running"})
    assert [r.run_id for r in gone] == ["a", "c"]  # d (kept) needs b


def test_per_pipeline_the_newest_stay_and_a_kept_run_protects_the_run_of_another_pipeline_it_reused():
    runs = [RunRecord("i1", "fer_ingest", "completed", 1), RunRecord("i2", "fer_ingest", "completed", 2),
            RunRecord("t1", "fer_train_all", "completed", 3, needs=("i1",)),  # its ingest step came from i1's cache
            RunRecord("t2", "fer_train_all", "completed", 4, needs=("i1",))]
    gone = runs_to_delete(runs, needed=set(), keep_last=1, in_progress=set(), per_name=True)
    assert [r.run_id for r in gone] == ["t1"]  # i2 newest of ingest, t2 newest of train_all, i1 needed by t2


def test_the_versions_a_kept_pipeline_run_registered_stay():
    records = [VersionRecord("1", "vgg7", zenml_run_id="z1"), VersionRecord("2", "vgg7", zenml_run_id="z2"),
               VersionRecord("3", "vgg7", zenml_run_id="z3")]
    assert versions_to_keep(records, keep_last=1, kept_runs={"z1"}) == {
        "1": "registered by a kept pipeline run (its steps are ZenML's cache)", "3": "one of the last 1 of vgg7"}
