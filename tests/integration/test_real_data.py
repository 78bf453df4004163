"""The real FER-2013 archive (skipped when ../shared/data/fer2013/fer2013.tar.gz is absent)."""

from __future__ import annotations

import pytest

from fercore.data.sources import ingest

pytestmark = pytest.mark.real_data

EXPECTED = {
    "train": {"angry": 3995, "disgust": 436, "fear": 4097, "happy": 7215, "neutral": 4965, "sad": 4830, "surprise": 3171},
    "test": {"angry": 958, "disgust": 111, "fear": 1024, "happy": 1774, "neutral": 1233, "sad": 1247, "surprise": 831},
}


@pytest.fixture(scope="module")
def real(request, tmp_path_factory):
    archive = request.getfixturevalue("real_archive")
    return ingest(archive, tmp_path_factory.mktemp("real-cache"))


def test_all_split_class_counts(real):
    assert real.counts() == EXPECTED
    assert real.metadata["sha256"] == "2cc9f8b04e12ac3d3631cb38c080e592224528363ca516ee93cdf508696fe17a"


def test_subsets_and_ids(real):
    test = real.splits == "test"
    assert (real.subsets[test] == "PublicTest").sum() == 3589
    assert (real.subsets[test] == "PrivateTest").sum() == 3589
    assert len(set(real.ids)) == len(real)  # unique even though two file names repeat


def test_duplicates_match_the_dataset_readme(real):
    dup = real.metadata["duplicates"]
    assert dup["distinct_images"] == 34034
    assert dup["within_train"] == {"groups": 1035, "images": 2271, "extra_copies": 1236, "groups_with_conflicting_labels": 39}
    assert dup["within_test"] == {"groups": 81, "images": 167, "extra_copies": 86, "groups_with_conflicting_labels": 4}
    assert dup["cross_split"] == {"distinct_images": 531, "test_images": 568, "train_images": 703,
                                  "test_images_without_same_label_in_train": 16}
    assert dup["all_black_images"] == 12
