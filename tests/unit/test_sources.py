"""Ingest from every source, the cache, and every bad-input case."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fercore.constants import CLASS_NAMES
from fercore.data import sources as ingest_mod
from fercore.data.images import ImageLimits
from fercore.data.sources import ingest
from fercore.errors import DataError
from tests.conftest import face, jpeg_bytes

CSV_ORDER = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def _cache_entries(cache_dir: Path) -> list[Path]:
    folder = cache_dir / "ingest"
    return sorted(folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize("source", ["fer_tree", "fer_tar", "fer_zip"])
def test_every_layout_source_gives_the_same_dataset(source, request, cache_dir):
    ds = ingest(request.getfixturevalue(source), cache_dir)
    assert ds.images.shape == (7 * 9, 48, 48) and ds.images.dtype == np.uint8
    assert ds.counts() == {"train": dict.fromkeys(CLASS_NAMES, 6), "test": dict.fromkeys(CLASS_NAMES, 3)}
    assert all(i.split("/")[0] in ("train", "test") and len(i.split("/")) == 3 for i in ds.ids)
    assert set(ds.subsets[ds.splits == "test"]) == {"PublicTest", "PrivateTest"}
    assert set(ds.subsets[ds.splits == "train"]) == {"Training"}
    assert len(ds.metadata["sha256"]) == 64
    # labels follow the folder names in the one class order
    for i in np.flatnonzero(ds.splits == "train")[:10]:
        assert CLASS_NAMES[ds.labels[i]] == ds.ids[i].split("/")[1]


def test_rerun_reuses_the_cache(fer_tar, cache_dir, monkeypatch):
    first = ingest(fer_tar, cache_dir)
    monkeypatch.setattr(ingest_mod, "read_source", lambda path: pytest.fail("decoded again"))
    second = ingest(fer_tar, cache_dir)
    assert np.array_equal(first.images, second.images) and list(first.ids) == list(second.ids)


def test_non_48_grayscale_images_are_converted(fer_tree, cache_dir):
    rgb = np.stack([face(3, np.random.default_rng(1), size=96)] * 3, axis=-1)
    Image.fromarray(rgb).save(fer_tree / "train" / "happy" / "Training_big.png")
    ds = ingest(fer_tree, cache_dir)
    assert ds.metadata["converted_images"] == 1
    assert ds.images[list(ds.ids).index("train/happy/Training_big.png")].shape == (48, 48)


def test_same_file_name_in_two_class_folders_keeps_both(fer_tree, cache_dir):
    for cls in ("neutral", "surprise"):
        (fer_tree / "train" / cls / "Training_52789098.jpg").write_bytes(jpeg_bytes(face(0, np.random.default_rng())))
    ds = ingest(fer_tree, cache_dir)
    assert {"train/neutral/Training_52789098.jpg", "train/surprise/Training_52789098.jpg"} <= set(ds.ids)


def _write_csv(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["emotion", "pixels", "Usage"])
        w.writerows(rows)
    return path


def _csv_rows() -> list[tuple[str, str, str]]:
    rng = np.random.default_rng(0)
    rows = []
    for usage in ("Training", "Training", "PublicTest", "PrivateTest"):
        for csv_label, name in enumerate(CSV_ORDER):
            pixels = face(CLASS_NAMES.index(name), rng)
            rows.append((str(csv_label), " ".join(map(str, pixels.ravel())), usage))
    return rows


def test_csv_source_maps_labels_and_usage(tmp_path, cache_dir):
    ds = ingest(_write_csv(tmp_path / "fer2013.csv", _csv_rows()), cache_dir)
    assert ds.counts() == {"train": dict.fromkeys(CLASS_NAMES, 2), "test": dict.fromkeys(CLASS_NAMES, 2)}
    # CSV label 4 is 'sad', 6 is 'neutral' in the original release
    assert CLASS_NAMES[ds.labels[4]] == "sad" and CLASS_NAMES[ds.labels[6]] == "neutral"
    assert sorted(set(ds.subsets)) == ["PrivateTest", "PublicTest", "Training"]
    # a folder holding fer2013.csv works too
    assert len(ingest(tmp_path, cache_dir)) == len(ds)


# --- bad input: a clear error naming the problem, and nothing half-written in the cache ------


def _assert_fails(source, cache_dir, *fragments):
    with pytest.raises(DataError) as err:
        ingest(source, cache_dir)
    for fragment in fragments:
        assert fragment in str(err.value)
    assert _cache_entries(cache_dir) == [], "a failed ingest left files in the cache"


def test_missing_path(tmp_path, cache_dir):
    _assert_fails(tmp_path / "nope", cache_dir, "does not exist", "--data")


def test_empty_directory(tmp_path, cache_dir):
    (tmp_path / "empty").mkdir()
    _assert_fails(tmp_path / "empty", cache_dir, "no images found")


def test_unknown_class_folder(fer_tree, cache_dir):
    (fer_tree / "train" / "contempt").mkdir()
    (fer_tree / "train" / "contempt" / "x.jpg").write_bytes(jpeg_bytes(face(0, np.random.default_rng())))
    _assert_fails(fer_tree, cache_dir, "unknown class folder 'contempt'", "train/contempt/x.jpg")


def test_missing_class_folder(fer_tree, cache_dir):
    for f in (fer_tree / "test" / "disgust").iterdir():
        f.unlink()
    (fer_tree / "test" / "disgust").rmdir()
    _assert_fails(fer_tree, cache_dir, "test has no images of disgust", "Found train: angry 6")


def test_missing_test_split(fer_tree, cache_dir):
    import shutil

    shutil.rmtree(fer_tree / "test")
    _assert_fails(fer_tree, cache_dir, "no test images", "test: angry 0")


def test_corrupt_image_is_named(fer_tree, cache_dir):
    (fer_tree / "train" / "fear" / "Training_bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    _assert_fails(fer_tree, cache_dir, "train/fear/Training_bad.jpg", "not a readable image")


def test_non_image_file_is_named(fer_tree, cache_dir):
    (fer_tree / "test" / "sad" / "notes.txt").write_text("hello")
    _assert_fails(fer_tree, cache_dir, "test/sad/notes.txt", "not an image file")


def test_corrupt_archive(tmp_path, cache_dir):
    bad = tmp_path / "fer.tar.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
    _assert_fails(bad, cache_dir, "corrupt or unreadable archive")


def test_csv_malformed_pixels(tmp_path, cache_dir):
    rows = _csv_rows()
    rows[3] = (rows[3][0], "1 2 x 4", rows[3][2])
    _assert_fails(_write_csv(tmp_path / "fer2013.csv", rows), cache_dir, "line 5", "space-separated integers")


def test_csv_wrong_pixel_count(tmp_path, cache_dir):
    rows = _csv_rows()
    rows[0] = (rows[0][0], "1 2 3", rows[0][2])
    _assert_fails(_write_csv(tmp_path / "fer2013.csv", rows), cache_dir, "line 2", "got 3 values")


def test_csv_label_out_of_range(tmp_path, cache_dir):
    rows = _csv_rows()
    rows[1] = ("7", rows[1][1], rows[1][2])
    _assert_fails(_write_csv(tmp_path / "fer2013.csv", rows), cache_dir, "line 3", "emotion '7'")


def test_csv_missing_column(tmp_path, cache_dir):
    path = tmp_path / "fer2013.csv"
    path.write_text("emotion,Usage\n0,Training\n")
    _assert_fails(path, cache_dir, "missing column(s) ['pixels']")


# --- Kaggle ---------------------------------------------------------------------------------


@pytest.fixture
def no_kaggle_credentials(tmp_path, monkeypatch):
    for var in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "kaggle-config"))


def test_kaggle_missing_credentials(no_kaggle_credentials, cache_dir):
    _assert_fails("kaggle", cache_dir, "Kaggle credentials are missing", "KAGGLE_USERNAME", "--data PATH")


class _FakeApi:
    error: Exception | None = None
    calls = 0

    def authenticate(self):
        pass

    def dataset_download_files(self, dataset, path, unzip, quiet):
        type(self).calls += 1
        if self.error:
            raise self.error
        from tests.conftest import write_tree

        write_tree(Path(path), train_per_class=2, test_per_class=1)


@pytest.fixture
def fake_kaggle(monkeypatch):
    from kaggle.api import kaggle_api_extended

    monkeypatch.setenv("KAGGLE_USERNAME", "user")
    monkeypatch.setenv("KAGGLE_KEY", "key")
    _FakeApi.error, _FakeApi.calls = None, 0
    monkeypatch.setattr(kaggle_api_extended, "KaggleApi", _FakeApi)
    return _FakeApi


def test_kaggle_download_is_cached_and_reused(fake_kaggle, cache_dir):
    ds = ingest("kaggle", cache_dir)
    assert len(ds) == 7 * 3 and ds.metadata["source"] == "kaggle"
    ingest("kaggle", cache_dir)
    assert fake_kaggle.calls == 1
    assert (cache_dir / "kaggle" / "msambare__fer2013" / ".complete").exists()


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (RuntimeError("401 Client Error: Unauthorized"), "Kaggle rejected the credentials"),
        (ConnectionError("Max retries exceeded: Name or service not known"), "Kaggle is unreachable"),
    ],
)
def test_kaggle_failures_leave_no_partial_download(fake_kaggle, cache_dir, error, message):
    fake_kaggle.error = error
    _assert_fails("kaggle", cache_dir, message)
    assert not (cache_dir / "kaggle").exists() or list((cache_dir / "kaggle").iterdir()) == []


# --- partial downloads, splits without a class, image sizes ---------------------------------


def _truncated(path: Path, keep: float) -> Path:
    data = path.read_bytes()
    cut = path.with_name("cut-" + path.name)
    cut.write_bytes(data[: int(len(data) * keep)])
    return cut


@pytest.mark.parametrize("archive, keep", [("fer_tar", 0.6), ("fer_tar", 0.999), ("fer_zip", 0.6)])
def test_a_partial_download_is_named_as_such(archive, keep, request, cache_dir):
    cut = _truncated(request.getfixturevalue(archive), keep)
    with pytest.raises(DataError) as err:
        ingest_mod.check_source(str(cut))  # before any pipeline work
    message = str(err.value)
    assert str(cut) in message and "download it again" in message.lower()
    if archive == "fer_tar":
        assert "the archive ends early" in message
    _assert_fails(cut, cache_dir, str(cut))


def test_a_member_cut_short_is_named(fer_tar, cache_dir, monkeypatch):
    """Should the up-front check pass (a file cut between two reads), decoding names the member."""
    cut = _truncated(fer_tar, 0.6)
    monkeypatch.setattr(ingest_mod, "check_archive", lambda path: None)
    with pytest.raises(DataError, match="the archive ends early") as err:
        ingest(cut, cache_dir)
    assert str(cut) in str(err.value) and _cache_entries(cache_dir) == []


def test_csv_without_test_rows_is_rejected_with_counts(tmp_path, cache_dir):
    rows = [r for r in _csv_rows() if r[2] == "Training"]
    _assert_fails(_write_csv(tmp_path / "fer2013.csv", rows), cache_dir, "no test images",
                  "Usage Training, PublicTest, PrivateTest", "train: angry 2, disgust 2", "test: angry 0")


def test_csv_without_a_class_in_train_is_rejected(tmp_path, cache_dir):
    rows = [r for r in _csv_rows() if not (r[2] == "Training" and r[0] == "1")]
    _assert_fails(_write_csv(tmp_path / "fer2013.csv", rows), cache_dir, "train has no images of disgust",
                  "train: angry 2, disgust 0")


@pytest.mark.parametrize("size, fragment", [((1, 1), "1x1 pixels, below the minimum side of 16"),
                                            ((10000, 10000), "10000x10000 pixels, above the maximum")])
def test_tiny_and_huge_images_are_refused_by_name(fer_tree, cache_dir, size, fragment, recwarn):
    Image.new("L", size).save(fer_tree / "train" / "sad" / "Training_odd.png")
    _assert_fails(fer_tree, cache_dir, "train/sad/Training_odd.png", fragment, "data.on_bad_size: skip")
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


def test_refused_images_can_be_skipped_and_counted(fer_tree, cache_dir):
    Image.new("L", (1, 1)).save(fer_tree / "train" / "sad" / "Training_tiny.png")
    Image.new("L", (3000, 3000)).save(fer_tree / "test" / "fear" / "PublicTest_huge.png")
    limits = ImageLimits(on_violation="skip")
    ds = ingest(fer_tree, cache_dir, limits=limits)
    assert ds.metadata["skipped_images"]["count"] == 2 and len(ds) == 7 * 9
    assert "train/sad/Training_tiny.png" in ds.metadata["skipped_images"]["examples"]
    with pytest.raises(DataError, match="(Training_tiny|PublicTest_huge).png"):  # another cache entry
        ingest(fer_tree, cache_dir)
    small = ingest(fer_tree, cache_dir, limits=ImageLimits(min_side=1, max_pixels=10_000_000))
    assert len(small) == 7 * 9 + 2


def test_a_16_bit_image_is_scaled_like_its_8_bit_original(fer_tree, cache_dir):
    original = np.asarray(Image.open(next((fer_tree / "train" / "happy").iterdir())))
    (fer_tree / "train" / "happy" / "Training_wide.png").unlink(missing_ok=True)
    Image.fromarray(original.astype(np.uint16) * 257).save(fer_tree / "train" / "happy" / "Training_wide.png")
    ds = ingest(fer_tree, cache_dir)
    row = list(ds.ids).index("train/happy/Training_wide.png")
    np.testing.assert_array_equal(ds.images[row], original)  # Pillow's convert("L") would give all 255
    assert ds.metadata["converted_images"] == 1
