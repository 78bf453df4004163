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


def test_a_folder_of_batches_takes_no_link_to_a_batch_elsewhere(tmp_path):
    drops = tmp_path / "incoming"
    _batch(drops / "2026-12-01", {"happy": 1})
    outside = _batch(tmp_path / "elsewhere", {"sad": 1}, seed=9)
    (drops / "2026-12-02").symlink_to(outside, target_is_directory=True)
    with pytest.raises(DataError, match=rf"incoming/2026-12-02 is a link to {outside}, outside {drops}: .*Copy the "
                                        rf"batch in, or list {outside} in data.incoming itself"):
        batch_paths([str(drops)])
    assert batch_paths([str(outside)]) == [outside]  # named directly, it is read


def test_a_copy_of_a_batch_under_another_name_is_refused(fer_tree, cache_dir, tmp_path):
    import shutil

    first = _batch(tmp_path / "drops" / "a", {"happy": 2})
    shutil.copytree(first, tmp_path / "drops" / "b")
    with pytest.raises(DataError, match=r"incoming batches .*a and .*b hold the same labelled images"):
        add_incoming(ingest(fer_tree, cache_dir), batch_paths([str(tmp_path / "drops")]))
    with tarfile.open(tmp_path / "again.tar", "w") as tf:  # the same images as an archive, under another name
        tf.add(first, arcname="renamed")
    with pytest.raises(DataError, match=r"incoming batches .*a and .*again.tar hold the same labelled images"):
        add_incoming(ingest(fer_tree, cache_dir), batch_paths([str(first), str(tmp_path / "again.tar")]))


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


def _tar_with(path, *members):
    """A .tar holding a real image at happy/ok.jpg, then ``members`` (tarfile.TarInfo, bytes or None)."""
    import io

    good = jpeg_bytes(face(3, np.random.default_rng(0)))
    with tarfile.open(path, "w") as tf:
        info = tarfile.TarInfo("batch/happy/ok.jpg")
        info.size = len(good)
        tf.addfile(info, io.BytesIO(good))
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _info(name, kind=tarfile.REGTYPE, size=0, link=""):
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, size, link
    return info


@pytest.mark.parametrize(("member", "named"), [
    ((_info("batch/../../happy/up.jpg", size=3), b"abc"), "the member batch/../../happy/up.jpg points outside the archive"),
    ((_info("/etc/happy/abs.jpg", size=3), b"abc"), "the member /etc/happy/abs.jpg points outside the archive"),
    ((_info("batch/happy/l.jpg", tarfile.SYMTYPE, link="/etc/passwd"), None), "the member batch/happy/l.jpg is a link"),
    ((_info("batch/happy/h.jpg", tarfile.LNKTYPE, link="batch/happy/ok.jpg"), None), "the member batch/happy/h.jpg is a link"),
    ((_info("batch/happy/dev.jpg", tarfile.CHRTYPE), None), "the member batch/happy/dev.jpg is a device or special file"),
])
def test_archive_members_that_leave_it_or_are_not_files_are_refused_by_name(tmp_path, member, named):
    from fercore.data.incoming import read_batch

    archive = _tar_with(tmp_path / "hostile.tar", member)
    with pytest.raises(DataError, match=f"hostile.tar: {named}"):
        read_batch(archive)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hostile.tar"]  # nothing written anywhere


def test_a_huge_member_is_refused_from_its_header_without_reading_it(tmp_path):
    import gzip
    import resource

    from fercore.data.images import MAX_MEMBER_BYTES
    from fercore.data.incoming import read_batch

    archive = tmp_path / "bomb.tar.gz"
    with gzip.open(archive, "wb") as gz, tarfile.open(fileobj=gz, mode="w") as tf:
        tf.addfile(_info("batch/happy/huge.png", size=512 * 1024 * 1024), io_zeros(512 * 1024 * 1024))
    assert archive.stat().st_size < 2 * 1024 * 1024
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(DataError, match=f"batch/happy/huge.png declares 536,870,912 bytes, above {MAX_MEMBER_BYTES:,}"):
        read_batch(archive)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # kB: never read into memory


class io_zeros:  # noqa: N801 (a file of zeros, read in chunks: the archive is written without the bytes in memory)
    def __init__(self, n):
        self.left = n

    def read(self, size=-1):
        size = self.left if size < 0 else min(size, self.left)
        self.left -= size
        return bytes(size)


def test_a_link_that_leaves_a_folder_batch_is_refused_by_name(tmp_path):
    from fercore.data.incoming import read_batch

    batch = _batch(tmp_path / "linked", {"happy": 1})
    outside = _batch(tmp_path / "elsewhere", {"sad": 1}, seed=9)
    (batch / "happy" / "passwd.jpg").symlink_to("/etc/passwd")
    with pytest.raises(DataError, match="linked: happy/passwd.jpg is a link to /etc/passwd, outside the folder"):
        read_batch(batch)
    (batch / "happy" / "passwd.jpg").unlink()
    (batch / "sad").symlink_to(outside / "sad", target_is_directory=True)
    with pytest.raises(DataError, match=f"linked: sad is a link to {outside / 'sad'}, outside the folder"):
        read_batch(batch)
    (batch / "sad").unlink()
    (batch / "happy" / "again.jpg").symlink_to(batch / "happy" / "new_0.jpg")  # inside the batch: read
    assert len(read_batch(batch)[0]) == 2


def test_max_per_class_caps_the_source_and_keeps_incoming_batches_whole(fer_tree, cache_dir, tmp_path):
    from fercore.config import DataConfig
    from fercore.data.prepare import prepare

    batch = _batch(tmp_path / "drop", {"fear": 4, "happy": 2})
    ds = prepare(DataConfig(source=str(fer_tree), cache_dir=str(cache_dir), incoming=[str(batch)], max_per_class=1),
                 "digest")
    incoming = ds.subsets == INCOMING_SUBSET
    assert int(incoming.sum()) == 6
    assert ds.counts()["train"]["fear"] == 1 + 4 and ds.counts()["train"]["angry"] == 1
