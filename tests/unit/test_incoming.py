"""Incoming labelled batches: added to the training split only, counted per batch and class, and
refused when they hold test images."""

from __future__ import annotations

import tarfile

import numpy as np
import pytest

from fercore.constants import CLASS_NAMES
from fercore.data.incoming import INCOMING_SUBSET, add_incoming, batch_paths, fingerprint, incoming_tag
from fercore.data.rebalance import rebalance
from fercore.data.sources import ingest
from fercore.data.split import split_validation
from fercore.errors import DataError
from tests.conftest import face, jpeg_bytes


def _batch(folder, per_class: dict[str, int], seed: int = 7):
    rng = np.random.default_rng(seed)
    for label, name in enumerate(CLASS_NAMES):
        for i in range(per_class.get(name, 0)):
            (folder / name).mkdir(parents=True, exist_ok=True)
            (folder / name / f"new_{i}.jpg").write_bytes(jpeg_bytes(face(label, rng)))
    return folder


def test_batches_join_the_training_split_only_and_are_counted(fer_tree, cache_dir, tmp_path):
    drops = tmp_path / "incoming"
    _batch(drops / "2026-12-01", {"disgust": 3, "happy": 2})
    second = _batch(tmp_path / "b2", {"fear": 4}, seed=8)
    with tarfile.open(drops / "2026-12-08.tar.gz", "w:gz") as tf:
        tf.add(second, arcname="batch")
    base = ingest(fer_tree, cache_dir)
    batches = batch_paths([str(drops)])
    assert [b.name for b in batches] == ["2026-12-01", "2026-12-08.tar.gz"]
    ds = add_incoming(base, batches)
    assert len(ds) == len(base) + 9
    report = {b["name"]: b for b in ds.metadata["incoming"]}
    assert report["2026-12-01"]["counts"]["disgust"] == 3 and report["2026-12-01"]["counts"]["happy"] == 2
    assert report["2026-12-08.tar.gz"]["images"] == 4 and len(report["2026-12-08.tar.gz"]["sha256"]) == 64
    assert ds.counts()["train"]["fear"] == base.counts()["train"]["fear"] + 4
    incoming = ds.subsets == INCOMING_SUBSET
    assert incoming.sum() == 9 and set(ds.splits[incoming]) == {"train"}
    for seed in range(5):  # whatever the split seed, the batches never land in validation
        split = split_validation(ds, 0.3, seed)
        assert set(split.splits[incoming]) == {"train"}
        assert (split.splits == "val").sum() == (split_validation(base, 0.3, seed).splits == "val").sum()
    plan = rebalance(split_validation(ds, 0.3, 0), "none", 0)
    assert set(np.flatnonzero(incoming)) <= set(plan.indices.tolist())  # and they are trained on
    assert incoming_tag(ds.metadata).startswith("2026-12-01:")


def test_a_batch_holding_a_test_image_is_refused_by_name(fer_tree, cache_dir, tmp_path):
    batch = _batch(tmp_path / "leaky", {"angry": 2})
    test_image = next((fer_tree / "test" / "sad").iterdir())
    (batch / "sad").mkdir()
    (batch / "sad" / "copied.jpg").write_bytes(test_image.read_bytes())
    with pytest.raises(DataError, match=r"leaky holds 1 exact copies of test images \(e.g. sad/copied.jpg"):
        add_incoming(ingest(fer_tree, cache_dir), batch_paths([str(batch)]))


def test_the_fingerprint_changes_when_a_batch_arrives(tmp_path):
    drops = tmp_path / "incoming"
    drops.mkdir()
    empty = fingerprint("abc", [str(drops)])
    _batch(drops / "first", {"happy": 1})
    assert fingerprint("abc", [str(drops)]) != empty
    assert fingerprint("abc", []) == "abc"


def test_bad_locations_are_named(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        batch_paths([str(tmp_path / "nowhere")])
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="neither class folders"):
        batch_paths([str(tmp_path / "junk")])
    stray = tmp_path / "stray"
    (stray / "happy").mkdir(parents=True)
    (stray / "img.jpg").write_bytes(b"")
    (stray / "happy" / "a.jpg").write_bytes(jpeg_bytes(face(3, np.random.default_rng(0))))
    from fercore.data.incoming import read_batch

    with pytest.raises(DataError, match="not inside a class folder"):
        read_batch(stray)


def test_a_batch_named_twice_is_refused(tmp_path):
    drops = tmp_path / "incoming"
    batch = _batch(drops / "2026-12-01", {"happy": 1})
    with pytest.raises(DataError, match=r"names the batch .*2026-12-01 twice .* trained on twice"):
        batch_paths([str(drops), str(batch)])  # once through its folder of batches, once directly
    with pytest.raises(DataError, match="twice"):
        batch_paths([str(batch), str(batch) + "/"])


def test_a_copy_of_a_batch_under_another_name_is_refused(fer_tree, cache_dir, tmp_path):
    import shutil

    first = _batch(tmp_path / "drops" / "a", {"happy": 2})
    shutil.copytree(first, tmp_path / "drops" / "b")
    with pytest.raises(DataError, match=r"incoming batches .*a and .*b have the same content"):
        add_incoming(ingest(fer_tree, cache_dir), batch_paths([str(tmp_path / "drops")]))


def test_converted_batch_images_are_counted(fer_tree, cache_dir, tmp_path):
    from PIL import Image

    batch = _batch(tmp_path / "mixed", {"sad": 2})
    rng = np.random.default_rng(3)
    Image.fromarray(np.repeat(face(5, rng)[:, :, None], 3, axis=2)).save(batch / "sad" / "rgb.png")  # RGB
    Image.fromarray(face(5, rng, size=96)).save(batch / "sad" / "big.png")  # 96x96
    ds = add_incoming(ingest(fer_tree, cache_dir), batch_paths([str(batch)]))
    assert ds.metadata["incoming"][0]["images"] == 4 and ds.metadata["incoming"][0]["converted"] == 2


def test_a_batch_cut_short_is_named_with_the_batch_fix(tmp_path):
    from fercore.data.incoming import check_batches

    source = _batch(tmp_path / "b", {"fear": 30})
    archive = tmp_path / "drops" / "2026-12-08.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(source, arcname="batch")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DataError) as err:
        check_batches([str(archive.parent)])
    message = str(err.value)
    assert f"{archive}: the archive ends early" in message
    assert f"replace the incoming batch {archive}, or take it out of data.incoming" in message
    assert "--data" not in message
