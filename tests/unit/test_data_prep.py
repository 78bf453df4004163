"""Duplicates, validation split, rebalancing and config checks."""

from __future__ import annotations

import numpy as np
import pytest

from fercore.config import load_config, parse_config
from fercore.constants import CLASS_NAMES, NUM_CLASSES
from fercore.data.dataset import FerDataset, limit_per_class
from fercore.data.duplicates import drop_train_copies_of_test, duplicate_report
from fercore.data.rebalance import rebalance
from fercore.data.split import split_validation
from fercore.errors import ConfigError
from tests.conftest import ROOT


def _dataset(per_class=(50, 5, 40, 80, 60, 55, 30), test_per_class=10, seed=0) -> FerDataset:
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(per_class)] + [np.repeat(np.arange(7), test_per_class)])
    n_train = sum(per_class)
    splits = np.array(["train"] * n_train + ["test"] * (len(labels) - n_train))
    images = rng.integers(0, 256, size=(len(labels), 48, 48), dtype=np.uint8)
    ids = np.array([f"x/{i}" for i in range(len(labels))])
    return FerDataset(images, labels, splits, ids, np.array(["Training"] * len(labels)))


def test_duplicate_report_counts_groups_conflicts_and_leakage():
    ds = _dataset()
    train = np.flatnonzero(ds.splits == "train")
    test = np.flatnonzero(ds.splits == "test")
    ds.images[train[1]] = ds.images[train[0]]  # same label (class 0)
    ds.images[train[60]] = ds.images[train[0]]  # group of 3, conflicting label
    ds.images[train[2]] = ds.images[test[0]]  # leak, same label as test[0]? test[0] is class 0
    ds.images[train[70]] = ds.images[test[5]]  # leak with another label
    ds.images[test[6]] = 0
    ds.images[test[7]] = 0
    rep = duplicate_report(ds)
    assert rep["within_train"] == {"groups": 1, "images": 3, "extra_copies": 2, "groups_with_conflicting_labels": 1}
    assert rep["within_test"]["groups"] == 1 and rep["within_test"]["extra_copies"] == 1
    assert rep["cross_split"] == {
        "distinct_images": 2, "test_images": 2, "train_images": 2, "test_images_without_same_label_in_train": 1,
    }
    assert rep["all_black_images"] == 2
    cleaned, dropped = drop_train_copies_of_test(ds)
    assert dropped == 2 and duplicate_report(cleaned)["cross_split"]["test_images"] == 0
    assert cleaned.class_counts("test") == ds.class_counts("test")


def test_validation_split_is_stratified_seeded_and_leaves_test_alone():
    ds = _dataset()
    a, b = split_validation(ds, 0.2, seed=3), split_validation(ds, 0.2, seed=3)
    assert np.array_equal(a.splits, b.splits)
    assert not np.array_equal(a.splits, split_validation(ds, 0.2, seed=4).splits)
    assert (a.splits == "val").sum() == round(0.2 * (ds.splits == "train").sum())
    assert np.array_equal(a.splits == "test", ds.splits == "test")
    val = a.class_counts("val")
    assert val["happy"] == 16 and val["disgust"] == 1  # 20% of 80 and of 5
    with pytest.raises(ConfigError, match="val_fraction"):
        split_validation(ds, 1.5, seed=0)


def test_the_literatures_protocol_trains_on_all_of_training_chooses_on_publictest_and_reports_privatetest():
    from fercore.data.split import validation_label

    ds = _dataset()
    subsets = ds.subsets.astype("<U16")
    test = np.flatnonzero(ds.splits == "test")
    subsets[test[::2]], subsets[test[1::2]] = "PublicTest", "PrivateTest"
    subsets[:3] = "Incoming"  # a newly arrived batch: it trains
    ds = FerDataset(ds.images, ds.labels, ds.splits, ds.ids, subsets)
    out = split_validation(ds, 0.1, seed=0, validation="public_test")
    assert set(out.subsets[out.splits == "val"]) == {"PublicTest"} and (out.splits == "val").sum() == 35
    assert set(out.subsets[out.splits == "test"]) == {"PrivateTest"} and (out.splits == "test").sum() == 35
    assert (out.splits == "train").sum() == 320 and set(out.subsets[out.splits == "train"]) == {"Training", "Incoming"}
    assert validation_label(out) == "PublicTest" and sum(out.metadata["counts"]["val"].values()) == 35
    assert validation_label(split_validation(ds, 0.1, seed=0)) == "10% carved out of Training (seed 0)"
    with pytest.raises(ConfigError, match="this source has none. Set data.validation: carve"):
        split_validation(_dataset(), 0.1, seed=0, validation="public_test")  # no PublicTest images
    assert parse_config({}).data.validation == "public_test"  # the default


def test_resample_balances_train_only_and_is_seeded():
    ds = split_validation(_dataset(), 0.1, seed=0)
    plan = rebalance(ds, "resample", seed=1)
    train = np.flatnonzero(ds.splits == "train")
    assert np.array_equal(plan.indices, train) and plan.epoch_size == len(train)
    assert plan.counts_before == ds.class_counts("train")
    epochs = [plan.epoch_rows(e) for e in range(30)]
    assert all(len(r) == len(train) and set(ds.splits[r]) == {"train"} for r in epochs)
    drawn = np.bincount(ds.labels[np.concatenate(epochs)], minlength=NUM_CLASSES)
    assert drawn.min() > 0.8 * drawn.mean() and drawn.max() < 1.2 * drawn.mean()  # balanced
    after = np.array(list(plan.counts_after.values()))
    assert np.all(np.abs(after - len(train) / NUM_CLASSES) <= 1)  # expected rows per class per epoch
    assert np.array_equal(plan.epoch_rows(3), rebalance(ds, "resample", seed=1).epoch_rows(3))  # seeded
    assert not np.array_equal(epochs[0], epochs[1])  # a fresh draw each epoch ...
    assert set(np.concatenate(epochs)) == set(train)  # ... so every image is seen, not a fixed subset
    assert len(rebalance(ds, "resample", seed=1, size=1000).epoch_rows(0)) == 1000
    assert len(plan.epoch_rows(0, limit=7)) == 7


def test_resample_power_moves_between_natural_and_balanced():
    ds = split_validation(_dataset(), 0.1, seed=0)
    natural = np.array(list(ds.class_counts("train").values()), dtype=float)
    share = {p: np.array(list(rebalance(ds, "resample", seed=0, power=p).counts_after.values()))
             for p in (0.0, 0.5, 1.0)}
    assert np.allclose(share[0.0], natural, atol=1)  # power 0: the natural frequencies
    assert np.ptp(share[1.0]) <= 1  # power 1: balanced
    half = np.sqrt(natural) / np.sqrt(natural).sum() * natural.sum()
    assert np.allclose(share[0.5], half, atol=1)  # power 0.5: proportional to sqrt(count)


def test_class_weights_and_none():
    ds = split_validation(_dataset(), 0.1, seed=0)
    weighted = rebalance(ds, "class_weights", seed=0)
    counts = np.array(list(weighted.counts_before.values()))
    assert np.allclose(weighted.class_weights, counts.sum() / (NUM_CLASSES * counts), rtol=1e-5)
    assert weighted.counts_after == weighted.counts_before
    plain = rebalance(ds, "none", seed=0)
    assert np.all(plain.class_weights == 1) and plain.counts_after == plain.counts_before


def test_limit_per_class():
    small = limit_per_class(_dataset(), 3, seed=0)
    assert small.counts() == {"train": dict.fromkeys(CLASS_NAMES, 3), "test": dict.fromkeys(CLASS_NAMES, 3)}


def test_dataset_save_load_roundtrip(tmp_path):
    ds = _dataset()
    ds.metadata["sha256"] = "abc"
    ds.save(tmp_path)
    back = FerDataset.load(tmp_path)
    assert np.array_equal(back.images, ds.images) and list(back.ids) == list(ds.ids)
    assert back.metadata == {"sha256": "abc"}
    assert not list(tmp_path.glob("*.partial"))


def test_dataset_rejects_wrong_shapes():
    from fercore.errors import DataError

    with pytest.raises(DataError, match="shape"):
        FerDataset(np.zeros((2, 32, 32), np.uint8), [0, 1], ["train"] * 2, ["a", "b"], ["Training"] * 2)


def test_config_unknown_key_and_bad_value_are_named(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.sourse: unknown key"):
        parse_config({"data": {"sourse": "x"}})
    with pytest.raises(ConfigError, match=r"data\.val_fraction"):
        parse_config({"data": {"val_fraction": 2}})
    with pytest.raises(ConfigError, match=r"rebalance\.method"):
        parse_config({"rebalance": {"method": "smote"}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_contenders_are_named_entries_of_a_known_family(tmp_path):
    with pytest.raises(ConfigError, match=r"contenders\.big: Input tag 'rnn' found using 'family' does not match any "
                                          r"of the expected tags: 'cnn', 'vit'"):
        parse_config({"contenders": {"big": {"family": "rnn"}}})
    with pytest.raises(ConfigError, match=r"contenders\.vgg7\.widht: unknown key"):
        parse_config({"contenders": {"vgg7": {"family": "cnn", "widht": 64}}})
    with pytest.raises(ConfigError, match="contenders 'VGG' and 'vgg' would both name steps train_vgg"):
        parse_config({"contenders": {"VGG": {"family": "cnn"}, "vgg": {"family": "cnn"}}})
    with pytest.raises(ConfigError, match="contender name 'res net' must start with a letter"):
        parse_config({"contenders": {"res net": {"family": "cnn"}}})


def test_the_old_cnn_and_vit_sections_are_refused_with_the_new_form(tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text("cnn:\n  epochs: 5\nvit:\n  checkpoint: null\n")
    with pytest.raises(ConfigError) as err:
        load_config(old)
    assert str(err.value) == (
        f"{old}: the cnn: and vit: sections are no longer read: every model is an entry of contenders:, named, with "
        "its family. The same settings in the new form:\n\ncontenders:\n  cnn: {family: cnn, epochs: 5}\n"
        "  vit: {family: vit, checkpoint: null}\n\n(--set cnn.KEY=VALUE becomes --set contenders.cnn.KEY=VALUE)")
    with pytest.raises(ConfigError, match=r"--set cnn\.KEY=VALUE becomes --set contenders\.cnn\.KEY=VALUE"):
        load_config(ROOT / "configs" / "smoke.yaml", {"cnn.epochs": 3})


def test_shipped_configs_are_valid():

    configs = sorted((ROOT / "configs").glob("*.yaml"))
    assert configs
    for path in configs:
        load_config(path, {"data.source": "x"})


def test_the_configuration_reference_is_current():
    from fercore.config import reference_markdown

    page = ROOT / "docs" / "configuration.md"
    assert page.read_text() == reference_markdown(), "run: python scripts/config_reference.py"
