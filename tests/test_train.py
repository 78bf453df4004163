"""Models, augmentation, the training loop: learning, early stopping, checkpoint resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fercore.config import CnnConfig
from fercore.dataset import FerDataset
from fercore.models import build_cnn, count_parameters, load_model, save_model
from fercore.rebalance import rebalance
from fercore.split import split_validation
from fercore.train import BatchAugmenter, Trainer, predict_proba
from tests.conftest import face


def synthetic(per_class: int = 30, test_per_class: int = 10, seed: int = 0) -> FerDataset:
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.repeat(np.arange(7), per_class), np.repeat(np.arange(7), test_per_class)])
    splits = np.array(["train"] * (7 * per_class) + ["test"] * (7 * test_per_class))
    images = np.stack([face(int(y), rng) for y in labels])
    ds = FerDataset(images, labels, splits, np.array([f"s/{i}" for i in range(len(labels))]), np.array(["PublicTest"] * len(labels)))
    ds.metadata["sha256"] = "synthetic"
    return split_validation(ds, 0.2, seed=0)


def small_cfg(**kw) -> CnnConfig:
    base = dict(architecture="vgg7", width=8, epochs=3, batch_size=32, learning_rate=3e-3, patience=5,
                scheduler="onecycle", augment={"rotation_degrees": 5, "crop_padding": 2})
    return CnnConfig(**{**base, **kw})


@pytest.mark.parametrize("arch", ["v1", "v2_1", "vgg7"])
def test_architectures_shape_and_save_load(arch, tmp_path):
    model = build_cnn(arch).eval()
    x = torch.rand(3, 1, 48, 48)
    assert model(x).shape == (3, 7) and count_parameters(model) > 100_000
    save_model(model, tmp_path)
    assert torch.allclose(load_model(tmp_path)(x), model(x), atol=1e-6)


def test_augmenter_is_seeded_and_keeps_shape():
    x = torch.rand(16, 1, 48, 48)
    cfg = CnnConfig().augment.model_copy(update={"erasing": 0.5})
    a = BatchAugmenter(cfg, torch.Generator().manual_seed(1))(x)
    b = BatchAugmenter(cfg, torch.Generator().manual_seed(1))(x)
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x)


def test_training_learns_a_learnable_task(tmp_path):
    ds = synthetic()
    model = build_cnn("vgg7", width=8)
    result = Trainer(model, small_cfg(epochs=6), tmp_path).fit(ds, rebalance(ds, "resample", 0))
    test = ds.split("test")
    acc = (predict_proba(model, test.images).argmax(1) == test.labels).mean()
    assert acc > 0.6, f"accuracy {acc} on an easy synthetic task"
    assert len(result.history) == 6 and result.train_images_per_s > 0
    assert not any(tmp_path.iterdir()), "a finished run leaves no checkpoint behind"


def test_early_stopping_restores_the_best_weights(tmp_path, monkeypatch):
    ds = synthetic(per_class=8, test_per_class=2)
    losses = iter([1.0, 0.5, 0.9, 0.95, 0.99, 1.2, 1.3])
    monkeypatch.setattr(Trainer, "_validate", lambda self, val: (next(losses), 0.5))
    snapshots = {}
    model = build_cnn("vgg7", width=8)
    cb = lambda epoch, m: snapshots.__setitem__(epoch, {k: v.clone() for k, v in model.state_dict().items()})  # noqa: E731
    result = Trainer(model, small_cfg(epochs=7, patience=3), tmp_path, on_epoch_end=cb).fit(ds, rebalance(ds, "none", 0))
    assert result.stopped_early and result.best_epoch == 2 and len(result.history) == 5
    for k, v in model.state_dict().items():
        assert torch.equal(v, snapshots[2][k]), k


class Interrupt(Exception):
    pass


def test_interrupted_run_resumes_from_its_checkpoint(tmp_path):
    ds = synthetic(per_class=10, test_per_class=2)
    plan = rebalance(ds, "resample", 0)
    cfg = small_cfg(epochs=3)

    torch.manual_seed(0)
    reference = build_cnn("vgg7", width=8)
    Trainer(reference, cfg, tmp_path / "a").fit(ds, plan)

    def stop_after_two(epoch, metrics):
        if epoch == 2:
            raise Interrupt

    torch.manual_seed(0)
    with pytest.raises(Interrupt):
        Trainer(build_cnn("vgg7", width=8), cfg, tmp_path / "b", on_epoch_end=stop_after_two).fit(ds, plan)
    assert list((tmp_path / "b").rglob("last.pt")), "no checkpoint after an interrupted epoch"

    resumed = build_cnn("vgg7", width=8)  # fresh weights: all state must come from the checkpoint
    result = Trainer(resumed, cfg, tmp_path / "b").fit(ds, plan)
    assert result.resumed_from_epoch == 2 and [h["epoch"] for h in result.history] == [1, 2, 3]
    for (k, v), w in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(v.float(), w.float(), atol=1e-5), k
