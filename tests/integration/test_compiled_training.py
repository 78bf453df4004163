"""torch.compile in training: it starts a C++ compiler (a subprocess), so it is not a unit test."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from fercore.data.rebalance import rebalance
from fercore.models import build_cnn
from fercore.training.trainer import Trainer
from tests.conftest import small_cfg, synthetic


@pytest.mark.skipif(shutil.which("g++") is None, reason="torch.compile on CPUs needs g++")
def test_compiled_training_learns_and_saves_plain_weights(tmp_path):
    ds = synthetic(per_class=12, test_per_class=2)
    model = build_cnn("v1")
    trainer = Trainer(model, small_cfg(architecture="v1", epochs=2, compile=True), tmp_path)
    assert trainer.train_forward is not model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = trainer.fit(ds, rebalance(ds, "none", 0))
    assert all(not k.startswith("_orig_mod") for k in model.state_dict())
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert np.isfinite(result.history[-1]["train_loss"])
