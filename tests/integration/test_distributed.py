"""Data-parallel training (two gloo processes on the CPU) and checkpoints on a non-local filesystem."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
import torch

from fercore.config import VitConfig
from fercore.data.rebalance import rebalance
from fercore.errors import ConfigError
from fercore.models import build_cnn
from fercore.models.vit import UnfreezeSchedule, build_vit
from fercore.training import distributed
from fercore.training.checkpoints import CheckpointStore
from fercore.training.job_keys import job_key
from fercore.training.trainer import Trainer, TrainJob
from tests.conftest import Interrupt, small_cfg, synthetic


def tiny_vit_cfg(**kw) -> VitConfig:
    """A patch-tokenizer ViT without dropout or batch norm and no augmentation: nothing random but the
    batch order, which the processes share, so two processes must follow one."""
    base = dict(checkpoint=None, head_hidden=[], head_dropout=0.0, epochs=2, batch_size=32, learning_rate=2e-3,
                scheduler="onecycle", patience=5, mixed_precision="fp32", label_smoothing=0.0, ema_decay=0.9,
                scratch={"tokenizer": "patch", "patch_size": 12, "hidden_size": 16, "layers": 1, "heads": 2,
                         "mlp_dim": 32, "pooling": "mean"},
                augment={"hflip": False, "crop_padding": 0, "rotation_degrees": 0})
    return VitConfig(**{**base, **kw})


class RankLog:
    """An ``on_epoch_end`` callback that writes which rank called it (picklable: it travels to the workers)."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __call__(self, epoch: int, metrics: dict[str, float]) -> None:
        with open(self.path, "a") as f:
            f.write(f"{os.environ.get('RANK', 'single')} {epoch}\n")


class RecordingStore(CheckpointStore):
    """A local checkpoint store that logs the rank of every write."""

    def __init__(self, root: Path, log: Path):
        super().__init__(root)
        self.log = str(log)

    def save(self, key, state):
        with open(self.log, "a") as f:
            f.write(os.environ.get("RANK", "single") + "\n")
        super().save(key, state)


@pytest.mark.slow
def test_two_gloo_processes_train_like_one(tmp_path):
    ds = synthetic(per_class=12, test_per_class=2)  # 67 train rows: the odd one is dropped under DDP
    plan = rebalance(ds, "none", 0)
    cfg = tiny_vit_cfg()
    plan.indices = plan.indices[:64]  # an even number of rows: the two runs see the same batches
    torch.manual_seed(0)
    single = build_vit(cfg)
    ddp = build_vit(cfg)
    ddp.load_state_dict(single.state_dict())

    ref = distributed.train_in_processes(TrainJob(single, cfg, ds, plan), processes=1)
    result = distributed.train_in_processes(TrainJob(ddp, cfg, ds, plan, checkpoints=RecordingStore(tmp_path / "ck",
                             tmp_path / "saves.log"), on_epoch_end=RankLog(tmp_path / "epochs.log")), processes=2)

    for (k, a), b in zip(single.state_dict().items(), ddp.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4), k
    assert [h["epoch"] for h in result.history] == [1, 2]
    for h_ref, h in zip(ref.history, result.history):
        assert h["train_loss"] == pytest.approx(h_ref["train_loss"], rel=1e-4)
        assert h["val_loss"] == pytest.approx(h_ref["val_loss"], rel=1e-4)
    assert (tmp_path / "saves.log").read_text().split() == ["0", "0"], "only rank 0 writes checkpoints"
    assert (tmp_path / "epochs.log").read_text().splitlines() == ["0 1", "0 2"], "only rank 0 logs epochs"
    assert not list((tmp_path / "ck").rglob("last.pt")), "the finished job's checkpoint is removed"


@pytest.mark.slow
def test_ddp_follows_a_pretrained_vits_gradual_unfreezing(tiny_vit_dir):
    """The blocks unfrozen after DDP was built must be reduced too (DDP is built again): else each process
    would step its own gradients and rank 0 would drift from the single-process run."""
    ds = synthetic(per_class=12, test_per_class=2)
    # no validation images: the weights of the last epoch are kept, so whether the top block moved does not depend
    # on which epoch happened to validate best (an earlier one, before it was unfrozen, sometimes did)
    ds.splits[ds.splits == "val"] = "train"
    plan = rebalance(ds, "none", 0)
    plan.indices = plan.indices[:64]
    # SGD: attention's key bias gets only rounding-noise gradients, which Adam would scale up to full steps
    cfg = tiny_vit_cfg(checkpoint=str(tiny_vit_dir), head_hidden=[16], epochs=3, ema_decay=None, optimizer="sgd",
                       learning_rate=0.05,
                       freeze={"initial_trainable_blocks": 0, "unfreeze_every_epochs": 1, "blocks_per_unfreeze": 1})
    torch.manual_seed(0)
    single, ddp = build_vit(cfg), build_vit(cfg)
    ddp.load_state_dict(single.state_dict())
    before = {k: v.clone() for k, v in single.state_dict().items()}
    distributed.train_in_processes(TrainJob(single, cfg, ds, plan, on_epoch_start=UnfreezeSchedule(cfg)), processes=1)
    distributed.train_in_processes(TrainJob(ddp, cfg, ds, plan, on_epoch_start=UnfreezeSchedule(cfg)), processes=2)
    moved = [k for k, v in single.state_dict().items() if "layers.2." in k and not torch.equal(v, before[k])]
    assert moved, "the top block was unfrozen and trained"
    for (k, a), b in zip(single.state_dict().items(), ddp.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4), k


class CheckpointSeen:
    """An ``on_epoch_end`` callback that writes whether the epoch's checkpoint is in ``store``."""

    def __init__(self, store: CheckpointStore, key: str, log: Path):
        self.store, self.key, self.log = store, key, str(log)

    def __call__(self, epoch: int, metrics: dict[str, float]) -> None:
        with open(self.log, "a") as f:
            f.write(f"{epoch} {self.store.exists(self.key)}\n")


@pytest.mark.slow
def test_ddp_workers_checkpoint_through_the_stacks_artifact_store(tmp_path):
    """The store the steps use on a remote stack: each worker finds the ZenML artifact store again."""
    from zenml.client import Client

    from steps.common import ArtifactStoreFS

    ds = synthetic(per_class=8, test_per_class=1)
    plan = rebalance(ds, "none", 0)
    cfg = tiny_vit_cfg(epochs=2)
    model = build_vit(cfg)
    root = f"{Client().active_stack.artifact_store.path}/test-checkpoints/{tmp_path.name}/vit"
    store = CheckpointStore(root, ArtifactStoreFS())
    key = job_key(model, cfg, ds, plan)
    job = TrainJob(model, cfg, ds, plan, store, on_epoch_end=CheckpointSeen(store, key, tmp_path / "seen"))
    distributed.train_in_processes(job, 2)
    assert (tmp_path / "seen").read_text().split("\n")[:2] == ["1 True", "2 True"]
    assert not store.exists(key)


def test_ddp_batch_must_split_over_the_processes():
    ds = synthetic(per_class=5, test_per_class=1)
    with pytest.raises(ConfigError, match="batch_size 33 does not split over 2"):
        distributed.train_in_processes(
            TrainJob(build_vit(tiny_vit_cfg()), tiny_vit_cfg(batch_size=33), ds, rebalance(ds, "none", 0)), 2)


def test_resolve_processes():
    assert distributed.resolve_processes(3) == 3
    assert distributed.resolve_processes("all_gpus") == max(torch.cuda.device_count(), 1)


class MemoryFS:
    """An object store in a dict, with ``zenml.io.fileio``'s interface (no local paths)."""

    def __init__(self):
        self.files: dict[str, bytes] = {}

    def open(self, path, mode="r"):
        fs = self

        class Writer(io.BytesIO):
            def close(self):
                fs.files[path] = self.getvalue()
                super().close()

        return Writer() if "w" in mode else io.BytesIO(self.files[path])

    def exists(self, path):
        return path in self.files or any(f.startswith(path.rstrip("/") + "/") for f in self.files)

    def rename(self, src, dst, overwrite=False):
        self.files[dst] = self.files.pop(src)

    def makedirs(self, path):
        pass

    def rmtree(self, path):
        for f in [f for f in self.files if f.startswith(path.rstrip("/") + "/")]:
            del self.files[f]


def test_an_interrupted_run_resumes_from_a_remote_store(tmp_path):
    ds = synthetic(per_class=10, test_per_class=2)
    plan = rebalance(ds, "resample", 0)
    cfg = small_cfg(epochs=3)
    fs = MemoryFS()
    store = CheckpointStore("s3://bucket/zenml/checkpoints/cnn", fs)

    def stop_after_one(epoch, metrics):
        if epoch == 1:
            raise Interrupt

    torch.manual_seed(0)
    model = build_cnn("vgg7", width=8)
    key = job_key(model, cfg, ds, plan)
    with pytest.raises(Interrupt):
        Trainer(model, cfg, store, on_epoch_end=stop_after_one).fit(ds, plan)
    assert list(fs.files) == [f"s3://bucket/zenml/checkpoints/cnn/{key}/last.pt"]
    assert not list(tmp_path.iterdir()), "nothing is written locally"

    result = Trainer(build_cnn("vgg7", width=8), cfg, store).fit(ds, plan)
    assert result.resumed_from_epoch == 1 and [h["epoch"] for h in result.history] == [1, 2, 3]
    assert fs.files == {}, "a finished job leaves no checkpoint"


def test_checkpoints_go_to_the_artifact_store_on_a_remote_stack(monkeypatch):
    from types import SimpleNamespace

    from steps import common

    def stack(flavor, path):
        store = SimpleNamespace(flavor=flavor, path=path)
        monkeypatch.setattr(common, "Client", lambda: SimpleNamespace(active_stack=SimpleNamespace(
            artifact_store=store)))

    stack("local", "/home/u/.config/zenml/local_stores/x")
    local = common.checkpoint_store("checkpoints", "cnn")
    assert local.root == str(Path("checkpoints") / "cnn") and type(local.fs).__name__ == "LocalFS"
    stack("s3", "s3://bucket/zenml/")
    remote = common.checkpoint_store("checkpoints", "vit")
    assert remote.root == "s3://bucket/zenml/checkpoints/vit" and isinstance(remote.fs, common.ArtifactStoreFS)
    assert common.checkpoint_store("gs://other/ck", "cnn").root == "gs://other/ck/cnn"
