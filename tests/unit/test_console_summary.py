"""The end of a train_all on the console: exact lines from a promotion summary."""

from fercore.promotion.console import console_summary, run_metadata

SUMMARY = {
    "candidates": [
        {"label": "v3 (vgg7)", "new": True, "minutes": "23.7", "val_accuracy": 0.6512, "test_accuracy": 0.6843},
        {"label": "v2 (resnet)", "new": False, "minutes": "", "val_accuracy": 0.6401, "test_accuracy": 0.6622}],
    "per_emotion": [
        {"emotion": "angry", "winner": "v3 (vgg7)", "lead": "+0.0213", "interval": "[+0.004, +0.039]",
         "significant": "yes", "decision": "move"},
        {"emotion": "disgust", "winner": "v2 (resnet)", "lead": "—", "interval": "—", "significant": "—",
         "decision": "keep"}],
    "moves": [{"alias": "champion", "version": "3", "previous": "2", "reason": "macro_f1 0.6400 vs v2 0.6300"},
              {"alias": "champion-angry", "version": "3", "previous": None, "reason": "angry F1 0.6000"}],
    "aliases": {"champion": "3"},
}


def test_the_summary_names_contenders_winners_moves_and_where_to_look():
    text = console_summary(SUMMARY, "fer2013-emotion", "http://127.0.0.1:5000/#/experiments/1/runs/abc",
                           "fer_train_all-2026_12_04")
    assert text.splitlines() == [
        "",
        "Promotion of fer2013-emotion: decided on validation, test reported",
        "",
        "  candidate                 minutes  val acc  test acc",
        "  v3 (vgg7)                    23.7   65.12%    68.43%",
        "  v2 (resnet) (holder)            —   64.01%    66.22%",
        "",
        "  emotion   winner             lead on runner-up [95 % interval]    significant  decision",
        "  angry     v3 (vgg7)          +0.0213 [+0.004, +0.039]             yes          move",
        "  disgust   v2 (resnet)        —                                    —            keep",
        "",
        "Aliases moved: 2",
        "  @champion: v2 -> v3   macro_f1 0.6400 vs v2 0.6300",
        "  @champion-angry: -> v3 (no holder yet)   angry F1 0.6000",
        "",
        "Where to look:",
        "  MLflow   make mlflow-ui, then http://127.0.0.1:5000/#/experiments/1/runs/abc (the promotion run: tables, "
        "drift reports)",
        "  ZenML    .venv/bin/zenml login --local, then the run fer_train_all-2026_12_04",
        "  predict  .venv/bin/python run.py predict PHOTO_OR_FOLDER   (models:/fer2013-emotion@champion = v3)"]


def test_commands_are_printed_as_they_run_from_the_project_folder(tmp_path):
    from fercore.promotion.console import as_typed

    assert as_typed(tmp_path / ".venv" / "bin" / "python", tmp_path) == ".venv/bin/python"
    assert as_typed("/usr/bin/python3", tmp_path) == "/usr/bin/python3"  # outside the folder: the whole path
    assert as_typed("/opt/my env/bin/python", tmp_path) == "'/opt/my env/bin/python'"


def test_the_validation_images_left_out_are_said_under_the_heading():
    lines = console_summary({**SUMMARY, "validation_images": 2661, "left_out_seen_in_training": 210}, "m", "u",
                            "r").splitlines()
    assert lines[1:3] == ["Promotion of m: decided on validation, test reported",
                          "  on 2661 validation images: 210 others were in a candidate's training data (FER-2013's own "
                          "duplicates, or a holder trained on another split) and were left out"]


def test_no_move_says_every_holder_kept_its_alias_and_why_the_champion_stays():
    kept = "keep v2: best candidate v3 macro_f1 0.6400 leads 0.6300 by +0.010 [-0.004, +0.024], inside the noise"
    lines = console_summary({**SUMMARY, "moves": [], "reasons": {"champion": kept}}, "m", "url", "run").splitlines()
    assert "Aliases moved: 0 (every holder kept its alias)" in lines
    assert lines[lines.index("Aliases moved: 0 (every holder kept its alias)") + 2] == f"Champion: {kept}"


def test_the_runs_metadata_names_the_champion_the_holders_and_each_accuracy():
    assert run_metadata({**SUMMARY, "aliases": {"champion": "3", "champion-disgust": "2", "challenger": "9"}}) == {
        "champion": "v3 (vgg7)",
        "aliases": {"challenger": "v9", "champion": "v3 (vgg7)", "champion-disgust": "v2 (resnet)"},
        "accuracy": {"v3 (vgg7)": {"validation": 0.6512, "test": 0.6843},
                     "v2 (resnet)": {"validation": 0.6401, "test": 0.6622}},
        "aliases_moved": 2, "why": {}}
    why = {"champion": "move: ...", "ensemble": "v5 leads the best single model v3 by +0.005 [-0.01, +0.02]: noise"}
    assert run_metadata({**SUMMARY, "reasons": {**why, "champion-angry": "move: ..."}})["why"] == why


def test_the_heading_names_the_splits_it_decided_and_reported_on():
    lines = console_summary({**SUMMARY, "validation_split": "PublicTest", "test_split": "PrivateTest"}, "m", "u",
                            "r").splitlines()
    assert lines[1] == "Promotion of m: decided on validation (PublicTest), test (PrivateTest) reported"
