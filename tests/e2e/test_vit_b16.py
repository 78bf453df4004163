"""The ViT-B/16 path at its real shapes on a CPU: a randomly initialised ViT-B/16 (``ViTConfig()``
defaults: 224 px, 16-px patches, 12 blocks of width 768) saved with ``save_pretrained`` stands in for
``google/vit-base-patch16-224``; ``train_all`` fine-tunes it for two batches with gradual unfreezing,
then evaluates, registers and promotes it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from mlflow import MlflowClient

from tests.conftest import ROOT, write_tree


@pytest.fixture(scope="module")
def vit_b16_dir(tmp_path_factory):
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    path = tmp_path_factory.mktemp("vit-b16")
    config = ViTConfig(num_labels=1000)
    assert (config.image_size, config.patch_size, config.hidden_size, config.num_hidden_layers) == (224, 16, 768, 12)
    ViTForImageClassification(config).save_pretrained(path)
    ViTImageProcessor().save_pretrained(path)  # 224x224, mean and std 0.5: the checkpoint's processor
    return path


def test_vit_b16_trains_two_batches_with_unfreezing_and_is_registered_and_promoted(vit_b16_dir, tmp_path):
    data = write_tree(tmp_path / "fer", train_per_class=3, test_per_class=1)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = tmp_path / "b16.yaml"
    config.write_text(f"""
data: {{validation: carve, val_fraction: 0.34, cache_dir: {tmp_path / 'cache'}}}
contenders:
  vit_b16:
    family: vit
    checkpoint: {vit_b16_dir}
    head_hidden: [1024, 512, 256, 128]
    epochs: 2
    batch_size: 2
    max_train_images: 2  # one batch per epoch: two in all
    tta: none
    freeze: {{initial_trainable_blocks: 0, unfreeze_every_epochs: 1, blocks_per_unfreeze: 4}}
registry: {{tracking_uri: {uri}, model_name: fer-b16}}
promotion: {{drift_max_images: 50}}
checkpoint_dir: {tmp_path / 'ckpt'}
""")
    result = subprocess.run([sys.executable, "run.py", "--pipeline", "train_all", "--config", str(config), "--data",
                             str(data)], cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True, timeout=600)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert "Epoch 1: top 0 encoder blocks + head trainable" in log
    assert "Epoch 2: top 4 encoder blocks + head trainable" in log
    client = MlflowClient(uri, registry_uri=uri)  # not an earlier test's mlflow.set_registry_uri
    (version,) = client.search_model_versions("name='fer-b16'")
    assert version.tags["contender"] == "vit_b16" and version.tags["checkpoint"] == str(vit_b16_dir)
    assert client.get_registered_model("fer-b16").aliases["champion"] == version.version
    history = client.get_metric_history(version.run_id, "loss/train")
    assert [m.step for m in history] == [1, 2]
