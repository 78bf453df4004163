"""Models, augmentation, the training loop: learning, early stopping, checkpoint resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fercore.training.lr_schedule as lr_schedule
import fercore.training.trainer as train_module
from fercore.config import AugmentConfig, CnnConfig
from fercore.data.rebalance import rebalance
from fercore.models import build_cnn, count_parameters, load_model, save_model
from fercore.models.inference import centre_crop, predict_proba, tta_views
from fercore.training.augment import BatchAugmenter
from fercore.training.lr_schedule import ProgressSchedule
from fercore.training.trainer import Trainer
from tests.conftest import Interrupt, small_cfg, synthetic


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


def test_augmenter_crops_at_native_scale():
    x = torch.rand(4, 1, 48, 48)
    plain = AugmentConfig(hflip=False, crop_padding=0, rotation_degrees=0, crop_size=44)
    assert torch.allclose(BatchAugmenter(plain, torch.Generator())(x), x[..., 2:46, 2:46], atol=1e-5)
    moved = BatchAugmenter(plain.model_copy(update={"crop_padding": 2}), torch.Generator().manual_seed(0))(x)
    assert moved.shape == (4, 1, 44, 44) and not torch.allclose(moved, x[..., 2:46, 2:46])


def test_centre_crop_of_arrays_and_tensors():
    images = np.arange(2 * 48 * 48).reshape(2, 48, 48)
    assert np.array_equal(centre_crop(images, 44), images[:, 2:46, 2:46])
    assert centre_crop(images, 45).shape == (2, 45, 45) and centre_crop(images, None).shape == (2, 48, 48)
    assert torch.equal(centre_crop(torch.ones(1, 1, 48, 48), 40), torch.ones(1, 1, 40, 40))


def test_training_learns_a_learnable_task(tmp_path):
    ds = synthetic()
    model = build_cnn("vgg7", width=8)
    result = Trainer(model, small_cfg(epochs=6), tmp_path).fit(ds, rebalance(ds, "resample", 0))
    test = ds.split("test")
    acc = (predict_proba(model, test.images).argmax(1) == test.labels).mean()
    assert acc > 0.6, f"accuracy {acc} on an easy synthetic task"
    assert len(result.history) == 6 and result.train_images_per_s > 0
    assert not any(tmp_path.iterdir()), "a finished run leaves no checkpoint behind"


def test_crop_trained_model_learns_and_validates_on_its_window(tmp_path, monkeypatch):
    ds = synthetic()
    seen: list[tuple[int, ...]] = []
    real_predict = train_module.predict_proba

    def recording_predict(model, images, **kw):
        seen.append(images.shape)
        return real_predict(model, images, **kw)

    monkeypatch.setattr(train_module, "predict_proba", recording_predict)
    model = build_cnn("vgg7", width=8)
    cfg = small_cfg(epochs=6, augment={"rotation_degrees": 5, "crop_padding": 2, "crop_size": 44})
    Trainer(model, cfg, tmp_path).fit(ds, rebalance(ds, "resample", 0))
    assert seen and all(shape[1:] == (44, 44) for shape in seen)
    assert model.fer_spec["input_size"] == 44  # saved with the model, so predictions use 44x44 views
    test = ds.split("test")
    acc = (predict_proba(model, test.images, tta="tencrop").argmax(1) == test.labels).mean()
    assert acc > 0.6, f"ten-crop accuracy {acc} on an easy synthetic task"


def test_tta_views_are_cut_to_the_models_input_size(tmp_path):
    x = torch.rand(2, 1, 48, 48)
    centre = x[..., 4:44, 4:44]
    assert torch.equal(tta_views(x, "none", size=40)[0], centre)
    assert torch.equal(tta_views(x, "hflip", size=40)[1], centre.flip(-1))
    crops = tta_views(x, "tencrop", size=40)
    assert all(v.shape[-2:] == (40, 40) for v in crops) and torch.equal(crops[4], centre)
    assert torch.equal(crops[0], x[..., :40, :40])
    grid = tta_views(x, "grid", size=44, shift=2)  # offsets 0, 2, 4 in both directions, then mirrors
    assert len(grid) == 18 and all(v.shape[-2:] == (44, 44) for v in grid)
    assert torch.equal(grid[0], x[..., :44, :44]) and torch.equal(grid[4], x[..., 2:46, 2:46])
    assert torch.equal(grid[5], x[..., 2:46, 4:48]) and torch.equal(grid[17], x[..., 4:, 4:].flip(-1))
    assert len(tta_views(x, "grid", size=41, shift=2)) == 2 * 5 * 5  # offsets 0, 2, 4, 6 and the far edge, 7
    shifted = tta_views(x, "shift", size=40, shift=2)
    assert torch.equal(shifted[1], x[..., 6:46, 4:44]) and torch.equal(shifted[9], x[..., 4:44, 2:42].flip(-1))
    model = build_cnn("vgg7", width=8).eval()
    model.fer_spec["input_size"] = 40
    seen: list[tuple[int, ...]] = []
    model.register_forward_pre_hook(lambda _, args: seen.append(tuple(args[0].shape)))
    images = (x[:, 0] * 255).to(torch.uint8).numpy()
    probs = predict_proba(model, images, tta="tencrop")
    assert seen == [(20, 1, 40, 40)]  # two faces' ten views in one forward pass
    seen.clear()
    assert np.allclose(predict_proba(model, images, tta="tencrop", batch_size=8), probs, atol=1e-6)
    assert seen == [(8, 1, 40, 40), (8, 1, 40, 40), (4, 1, 40, 40)]  # never more than batch_size rows at a time
    with torch.no_grad():  # the views' mean of each view's softmax, as one view at a time computes it
        views = tta_views(torch.from_numpy(images).float().div(255).unsqueeze(1), "tencrop", size=40)
        expected = torch.stack([model(v).softmax(-1) for v in views]).mean(0).numpy()
    assert np.allclose(probs, expected, atol=1e-6)
    assert load_model(save_model(model, tmp_path / "m")).fer_spec["input_size"] == 40


def test_early_stopping_restores_the_best_weights(tmp_path, monkeypatch):
    ds = synthetic(per_class=8, test_per_class=2)
    losses = iter([1.0, 0.5, 0.9, 0.95, 0.99, 1.2, 1.3])
    monkeypatch.setattr(Trainer, "_validate", lambda self, val, model=None: (next(losses), 0.5))
    snapshots = {}
    model = build_cnn("vgg7", width=8)
    cb = lambda epoch, m: snapshots.__setitem__(epoch, {k: v.clone() for k, v in model.state_dict().items()})  # noqa: E731
    cfg = small_cfg(epochs=7, patience=3, scheduler="none")  # no schedule: patience counts from the start
    result = Trainer(model, cfg, tmp_path, on_epoch_end=cb).fit(ds, rebalance(ds, "none", 0))
    assert result.stopped_early and result.best_epoch == 2 and len(result.history) == 5
    for k, v in model.state_dict().items():
        assert torch.equal(v, snapshots[2][k]), k


@pytest.mark.parametrize(("scheduler", "epochs_run"), [("none", 3), ("onecycle", 8)])
def test_early_stopping_counts_its_patience_once_the_rate_is_below_half_its_peak(tmp_path, monkeypatch, scheduler,
                                                                               epochs_run):
    """Best at epoch 1, then worse: without a schedule the patience of 2 stops after epoch 3; under one-cycle
    over 10 epochs the rate is above half its peak until 60 % of the steps (epoch 6), so epochs 7 and 8 use
    up the patience."""
    ds = synthetic(per_class=8, test_per_class=2)
    losses = iter([0.5] + [0.9] * 20)
    monkeypatch.setattr(Trainer, "_validate", lambda self, val, model=None: (next(losses), 0.5))
    cfg = small_cfg(epochs=10, patience=2, scheduler=scheduler)
    result = Trainer(build_cnn("vgg7", width=8), cfg, tmp_path).fit(ds, rebalance(ds, "none", 0))
    assert result.stopped_early and len(result.history) == epochs_run and result.best_epoch == 1


def test_ema_returns_the_moving_average_of_weights_and_batch_norm_statistics(tmp_path, monkeypatch):
    ds = synthetic()
    model = build_cnn("vgg7", width=8)
    trainer = Trainer(model, small_cfg(epochs=6, ema_decay=0.8, patience=10), tmp_path)
    real_validate = Trainer._validate  # the average validates better here, so it is what the fit keeps
    monkeypatch.setattr(Trainer, "_validate", lambda self, val, m=None: (
        real_validate(self, val, m)[0] - (1.0 if m is self.ema.module else 0.0), real_validate(self, val, m)[1]))
    raw_steps = []
    real_update = trainer.ema.update_parameters
    trainer.ema.update_parameters = lambda m: (raw_steps.append({k: v.clone() for k, v in m.state_dict().items()}),
                                               real_update(m))
    result = trainer.fit(ds, rebalance(ds, "resample", 0))
    assert result.best_epoch == 6, "the synthetic task keeps improving; the test needs the last epoch's average"
    expected = {}
    for step in raw_steps:  # the first update copies, then each one moves 20 % of the way to the raw weights
        for k, v in step.items():
            expected[k] = v.float() if k not in expected else 0.8 * expected[k] + 0.2 * v.float()
    for k, v in model.state_dict().items():
        if v.is_floating_point():
            assert torch.allclose(v, expected[k], atol=1e-5), k
    assert not torch.equal(model.state_dict()["2.running_var"], raw_steps[-1]["2.running_var"])
    assert result.kept_weights == "ema" and result.history[-1]["val_loss"] == result.best_val_loss
    assert result.history[-1]["ema_val_loss"] == result.best_val_loss < result.history[-1]["raw_val_loss"]
    test = ds.split("test")
    assert (predict_proba(model, test.images).argmax(1) == test.labels).mean() > 0.6


def test_a_lagging_moving_average_is_not_kept_over_better_raw_weights(tmp_path):
    """A budget far shorter than the average's horizon (decay 0.999: ~1000 steps, the run has ~10): the
    average stays near the random initialisation, and the raw weights, better on validation, are kept."""
    ds = synthetic()
    model = build_cnn("vgg7", width=8)
    result = Trainer(model, small_cfg(epochs=5, ema_decay=0.999, patience=10), tmp_path).fit(ds, rebalance(ds, "resample", 0))
    last = result.history[-1]
    assert last["raw_val_loss"] < last["ema_val_loss"] and last["raw_val_accuracy"] > last["ema_val_accuracy"]
    assert result.kept_weights == "raw" and result.best_val_loss == min(h["raw_val_loss"] for h in result.history)
    val = ds.split("val")
    kept_acc = (predict_proba(model, val.images).argmax(1) == val.labels).mean()
    assert kept_acc == pytest.approx(result.history[result.best_epoch - 1]["raw_val_accuracy"], abs=1e-6)


@pytest.mark.parametrize("ema_decay", [None, 0.9])
def test_interrupted_run_resumes_from_its_checkpoint(tmp_path, ema_decay):
    ds = synthetic(per_class=10, test_per_class=2)
    plan = rebalance(ds, "resample", 0)
    cfg = small_cfg(epochs=3, ema_decay=ema_decay)

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


def test_tta_views_and_their_average():
    x = torch.rand(3, 1, 48, 48)
    assert [len(tta_views(x, m)) for m in ("none", "hflip", "shift", "tencrop")] == [1, 2, 10, 10]
    crops = tta_views(x, "tencrop")
    assert all(v.shape == (3, 1, 44, 44) for v in crops)
    assert torch.equal(crops[4], x[..., 2:46, 2:46]) and torch.equal(crops[9], x.flip(-1)[..., 2:46, 2:46])
    views = tta_views(x, "shift", shift=2)
    assert all(v.shape == x.shape for v in views)
    assert torch.equal(views[0], x) and torch.equal(views[5], x.flip(-1))
    assert torch.equal(views[2][..., 2:, :], x[..., :-2, :])  # moved down by 2 pixels
    assert torch.equal(views[3][..., :, :-2], x[..., :, 2:])  # moved left by 2 pixels
    with pytest.raises(ValueError, match="unknown test-time augmentation"):
        tta_views(x, "crops")
    model = build_cnn("vgg7", width=8).eval()
    images = (x[:, 0] * 255).to(torch.uint8).numpy()
    probs = {m: predict_proba(model, images, tta=m) for m in ("none", "hflip", "shift", "tencrop")}
    assert all(np.allclose(p.sum(1), 1, atol=1e-5) for p in probs.values())
    with torch.no_grad():
        x8 = torch.from_numpy(images).unsqueeze(1).float() / 255
        mirrored = (model(x8).softmax(-1) + model(x8.flip(-1)).softmax(-1)) / 2
    assert np.allclose(probs["hflip"], mirrored.numpy(), atol=1e-5)


def _opt() -> torch.optim.Optimizer:
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)


def test_progress_schedule_follows_onecycle_when_time_is_no_constraint():
    ours, ref_opt = _opt(), _opt()
    mine = ProgressSchedule(ours, "onecycle", 0.01, total_steps=200)
    ref = torch.optim.lr_scheduler.OneCycleLR(ref_opt, max_lr=0.01, total_steps=200, pct_start=0.2)
    for _ in range(199):
        assert ours.param_groups[0]["lr"] == pytest.approx(ref_opt.param_groups[0]["lr"], abs=3e-4)
        assert ours.param_groups[0]["betas"][0] == pytest.approx(ref_opt.param_groups[0]["betas"][0], abs=0.01)
        ref_opt.step()  # no gradients: a no-op that keeps torch's step order
        mine.step()
        ref.step()
    assert not mine.finished()
    mine.step()
    assert mine.finished() and ours.param_groups[0]["lr"] == pytest.approx(0.01 / 25 / 1e4)


def test_progress_schedule_anneals_within_the_time_budget_and_resumes(monkeypatch):
    clock = {"now": 100.0}
    monkeypatch.setattr(lr_schedule.time, "perf_counter", lambda: clock["now"])
    opt = _opt()
    sched = ProgressSchedule(opt, "onecycle", 0.01, total_steps=10_000, budget_s=60.0)
    lrs = []
    for second in range(1, 61):
        clock["now"] = 100.0 + second
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert sched.finished() and sched.steps == 60  # 60 of 10,000 steps, but the minute is up
    assert max(lrs) == pytest.approx(0.01, rel=0.01) and lrs[-1] == pytest.approx(0.01 / 25 / 1e4)
    assert lrs.index(max(lrs)) in range(10, 14)  # warm-up: the first 20 % of the budget
    # Resuming carries the time already used: 30 s into a 60 s budget is the middle of the annealing.
    resumed = ProgressSchedule(_opt(), "onecycle", 0.01, total_steps=10_000, budget_s=60.0)
    resumed.load_state_dict({"steps": 30, "elapsed_s": 30.0})
    assert resumed.progress() == pytest.approx(0.5) and not resumed.finished()


def test_max_train_minutes_ends_training_with_the_rate_annealed(tmp_path, monkeypatch):
    ticks = iter(range(10**9))
    monkeypatch.setattr(lr_schedule.time, "perf_counter", lambda: next(ticks) * 0.05)  # a clock read moves 50 ms
    ds = synthetic(per_class=40, test_per_class=2)
    cfg = small_cfg(epochs=50, batch_size=8, max_train_minutes=0.05)  # 3 s of that clock for 50 epochs
    result = Trainer(build_cnn("vgg7", width=8), cfg, tmp_path).fit(ds, rebalance(ds, "none", 0))
    assert 1 < len(result.history) < 50 and not result.stopped_early  # the budget, not the epochs, ended it
    assert result.history[-1]["lr"] == pytest.approx(cfg.learning_rate / 25 / 1e4)  # annealed to its end


def test_compile_falls_back_to_eager_without_a_compiler(monkeypatch, caplog):
    monkeypatch.setattr(train_module.shutil, "which", lambda _: None)
    monkeypatch.setattr(train_module, "pick_device", lambda: torch.device("cpu"))  # on CUDA, Triton needs none
    trainer = Trainer(build_cnn("v1"), small_cfg(architecture="v1", compile=True))
    assert trainer.train_forward is trainer.model and "C++ compiler" in caplog.text


def test_budget_running_out_between_steps_ends_at_the_final_rate(monkeypatch):
    clock = {"now": 0.0}
    monkeypatch.setattr(lr_schedule.time, "perf_counter", lambda: clock["now"])
    opt = _opt()
    sched = ProgressSchedule(opt, "onecycle", 0.01, total_steps=10_000, budget_s=60.0)
    clock["now"] = 59.9
    sched.step()
    clock["now"] = 61.0  # the budget ran out after the last step applied its rate
    assert not sched.finished() and opt.param_groups[0]["lr"] > 0.01 / 25 / 1e4
    sched.step()
    assert sched.finished() and opt.param_groups[0]["lr"] == pytest.approx(0.01 / 25 / 1e4)


@pytest.mark.parametrize("size", [48, 44])
def test_the_residual_cnn_trains_in_channels_last_at_either_input_size(size):
    """Its downsampling shortcut avoids the strided 1x1 conv whose channels-last backward crashed PyTorch."""
    model = build_cnn("resnet", width=8).to(memory_format=torch.channels_last)
    x = torch.rand(16, 1, size, size).contiguous(memory_format=torch.channels_last)
    loss = torch.nn.functional.cross_entropy(model(x), torch.arange(16) % 7)
    loss.backward()
    assert model(x).shape == (16, 7) and all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("height, width, size", [(48, 48, 44), (48, 49, 43), (47, 47, 44)])
def test_ten_crop_gives_torchvisions_views_without_importing_it_at_inference(height, width, size):
    from torchvision.transforms.v2 import functional as TF

    from fercore.models.inference import ten_crop

    x = torch.randn(3, 1, height, width)
    ours, theirs = ten_crop(x, size), TF.ten_crop(x, [size, size])
    assert len(ours) == len(theirs) == 10 and all(torch.equal(a, b) for a, b in zip(ours, theirs))
