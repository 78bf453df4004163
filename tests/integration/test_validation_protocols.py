"""Switching between the two validation protocols (FER-2013's PublicTest, or a carve-out of Training): no decision
ever uses an image a candidate trained on, in either direction."""

from __future__ import annotations

import numpy as np

from fercore.data.dataset import FerDataset
from fercore.data.duplicates import image_hashes
from fercore.data.split import split_validation
from fercore.promotion.candidates import judgeable, on_unseen_images
from fercore.promotion.decision import Candidate
from tests.conftest import face


def _fer_like(per_class: int = 20, test_per_class: int = 10) -> FerDataset:
    """Distinct synthetic faces in FER-2013's subsets: Training, and PublicTest / PrivateTest halves of test."""
    rng = np.random.default_rng(0)
    labels = np.concatenate([np.repeat(np.arange(7), per_class), np.repeat(np.arange(7), test_per_class)])
    images = np.stack([face(int(y), rng) for y in labels])
    images[:, 0, :8] = np.arange(len(labels))[:, None] % 256  # every face its own pixels (distinct hashes)
    images[:, 1, :8] = np.arange(len(labels))[:, None] // 256
    n_train = 7 * per_class
    splits = np.array(["train"] * n_train + ["test"] * (len(labels) - n_train))
    subsets = np.array(["Training"] * n_train + ["PublicTest", "PrivateTest"] * (7 * test_per_class // 2), dtype="<U16")
    return FerDataset(images, labels, splits, np.array([f"f/{i}" for i in range(len(labels))]), subsets)


def _trained_on(version: str, ds: FerDataset, splits: tuple[str, ...]) -> Candidate:
    images = ds.images[np.isin(ds.splits, splits)]
    return Candidate(version, "cnn", None, None, new=False, trained_on=image_hashes(images))


def test_a_holder_of_the_carve_out_protocol_is_judged_on_publictest_with_every_image():
    raw = _fer_like()
    carved = split_validation(raw, 0.2, seed=0)  # last month: trained on Training minus its carve-out
    holder = _trained_on("3", carved, ("train",))
    public = split_validation(raw, 0.2, seed=0, validation="public_test")  # tonight: PublicTest decides
    assert judgeable([holder], public) == [holder]
    new = _trained_on("4", public, ("train",))
    seen = image_hashes(public.split("val").images)
    assert not np.isin(seen, holder.trained_on).any() and not np.isin(seen, new.trained_on).any()


def test_a_holder_trained_on_all_of_training_is_never_judged_on_a_carve_out_of_it(caplog):
    raw = _fer_like()
    public = split_validation(raw, 0.2, seed=0, validation="public_test")
    holder = _trained_on("3", public, ("train",))  # last month: all of Training
    carved = split_validation(raw, 0.2, seed=0)  # tonight: a carve-out of Training decides
    new = _trained_on("4", carved, ("train",))
    kept = judgeable([new, holder], carved)
    assert kept == [new] and "v3 (cnn) was trained on 28 of this run's 28 validation images" in caplog.text
    # the others keep every validation image: the left-out holder does not shrink it
    new.evaluation, new.probs = None, np.full((28, 7), 1 / 7)
    new.test_probs = np.full(((carved.splits == "test").sum(), 7), 1 / 7)
    _, unseen, left_out = on_unseen_images(kept, carved)
    assert left_out == 0 and len(unseen.split("val")) == 28
