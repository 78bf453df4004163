"""The conv-tokenizer ViT, bf16 selection by CPU capability, and distillation from a teacher."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fercore.models.inference as inference_module
import fercore.training.trainer as train_module
from fercore.config import ConfigError, VitConfig, parse_config
from fercore.data.rebalance import rebalance
from fercore.models import count_parameters, load_model, save_model
from fercore.models.convvit import FerConvViTConfig, FerConvViTForImageClassification
from fercore.models.inference import autocast_dtype, predict_proba
from fercore.models.vit import build_vit, vit_variant
from fercore.training.distill import distillation_loss, teacher_probabilities
from fercore.training.trainer import Trainer
from tests.conftest import synthetic

CPU = torch.device("cpu")


def conv_cfg(**kw) -> VitConfig:
    scratch = {"tokenizer": "conv", "stem_channels": [8, 16], "hidden_size": 32, "layers": 2, "heads": 2,
               "mlp_dim": 64, "pooling": "seq"}
    base = dict(checkpoint=None, scratch=scratch, head_hidden=[], epochs=2, batch_size=32, learning_rate=2e-3,
                patience=5, mixed_precision="fp32")
    return VitConfig(**{**base, **kw})


def test_conv_vit_tokens_and_pooling():
    model = build_vit(conv_cfg()).eval()
    hf = model.vit
    assert isinstance(hf, FerConvViTForImageClassification) and hf.config.grid_size == 6
    x = torch.rand(3, 1, 48, 48)
    tokens = hf.vit(model.pixel_values(x))
    assert tokens.shape == (3, 36, 32)
    weights = hf.attention_pool(tokens).softmax(1)  # sequence pooling: attention weights over the 36 tokens
    assert torch.allclose(model.features(x), (weights * tokens).sum(1), atol=1e-6)
    assert torch.allclose(model(x), hf.classifier(model.features(x)), atol=1e-6)
    assert model(torch.rand(2, 1, 44, 44)).shape == (2, 7)  # 44 px crops also give a 6x6 grid


def test_conv_vit_default_size_matches_the_design():
    model = build_vit(VitConfig(checkpoint=None, scratch={"tokenizer": "conv", "hidden_size": 128, "layers": 4,
                                                          "heads": 4, "mlp_dim": 256, "pooling": "seq"}))
    assert 0.6e6 < count_parameters(model) < 0.9e6


def test_conv_vit_save_pretrained_round_trip(tmp_path):
    model = build_vit(conv_cfg()).eval()
    save_model(model, tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["model_type"] == "fer-conv-vit"
    reloaded = load_model(tmp_path / "m")
    x = torch.rand(2, 1, 48, 48)
    assert torch.allclose(reloaded(x), model(x), atol=1e-6)
    hf = FerConvViTForImageClassification.from_pretrained(tmp_path / "m")  # the transformers way
    assert hf.config.id2label[1] == "disgust" and hf.config.pooling == "seq"


def test_wrong_input_size_is_named():
    hf = FerConvViTForImageClassification(FerConvViTConfig(stem_channels=[4], hidden_size=8, num_attention_heads=2,
                                                           intermediate_size=8, num_labels=7))
    with pytest.raises(ValueError, match="gives 4 tokens; this model was built for 144"):
        hf(torch.rand(1, 1, 8, 8))


@pytest.mark.parametrize("scratch, message", [
    ({"tokenizer": "patch", "pooling": "seq"}, "pooling 'seq' does not exist for the patch tokenizer"),
    ({"tokenizer": "conv", "pooling": "cls"}, "pooling 'cls' does not exist for the conv tokenizer"),
    ({"tokenizer": "conv", "pooling": "mean", "hidden_size": 30, "heads": 4}, "not divisible by heads 4"),
])
def test_scratch_config_rejects_impossible_models(scratch, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({"contenders": {"vit": {"family": "vit", "checkpoint": None, "scratch": scratch}}})


def test_variant_tag():
    assert vit_variant(conv_cfg()) == "scratch-conv"
    assert vit_variant(conv_cfg(distill={"enabled": True})) == "scratch-conv+distilled"
    assert vit_variant(VitConfig(checkpoint=None)) == "scratch-patch"
    assert vit_variant(VitConfig()) == "google/vit-base-patch16-224"


def test_a_teacher_is_another_enabled_contender_or_a_registered_model():
    student = {"family": "vit", "distill": {"enabled": True, "teacher": "vgg7"}}
    with pytest.raises(ConfigError, match=r"contenders.vit.distill.teacher 'vgg7' is not another enabled contender "
                                          r"\(enabled: vgg7b\)"):
        parse_config({"contenders": {"vgg7": {"family": "cnn", "enabled": False}, "vgg7b": {"family": "cnn"},
                                     "vit": student}})
    with pytest.raises(ConfigError, match="'vit' is not another enabled contender"):
        parse_config({"contenders": {"vit": {"family": "vit", "distill": {"enabled": True, "teacher": "vit"}}}})
    with pytest.raises(ConfigError, match="distill from each other in a cycle"):
        parse_config({"contenders": {
            "a": {"family": "vit", "distill": {"enabled": True, "teacher": "b"}},
            "b": {"family": "vit", "distill": {"enabled": True, "teacher": "a"}}}})
    config = parse_config({"contenders": {"vit": student, "vgg7": {"family": "cnn"}}})
    assert config.training_order() == ["vgg7", "vit"]  # the teacher first, whatever the config's order
    parse_config({"contenders": {"vit": {"family": "vit", "distill": {"enabled": True, "teacher": "models:/m@champion"}}}})


# -- precision ---------------------------------------------------------------------------

@pytest.mark.parametrize("native, mode, expected", [
    (True, "auto", torch.bfloat16), (False, "auto", None), (False, "bf16", torch.bfloat16),
    (True, "fp32", None),
])
def test_cpu_precision_follows_native_bf16(monkeypatch, native, mode, expected):
    monkeypatch.setattr(inference_module, "cpu_has_native_bf16", lambda: native)
    assert autocast_dtype(CPU, mode) is expected


def test_legacy_boolean_mixed_precision():
    assert VitConfig(mixed_precision=True).mixed_precision == "auto"
    assert VitConfig(mixed_precision=False).mixed_precision == "fp32"


def test_native_bf16_probe_reads_cpu_flags(monkeypatch, tmp_path):
    flags = tmp_path / "cpuinfo"
    monkeypatch.setattr(inference_module, "Path", lambda p: flags if p == "/proc/cpuinfo" else p)
    flags.write_text("flags\t\t: fpu sse avx512f avx512bw avx512_vnni\n")
    assert inference_module.cpu_has_native_bf16() is False
    flags.write_text("flags\t\t: fpu sse avx512f avx512_bf16 amx_tile\n")
    assert inference_module.cpu_has_native_bf16() is True


@pytest.mark.parametrize("native", [False, True])
def test_training_and_evaluation_run_in_both_precisions(monkeypatch, native):
    monkeypatch.setattr(inference_module, "cpu_has_native_bf16", lambda: native)
    seen = []
    real_autocast = torch.autocast

    def spy(device_type, dtype=None, enabled=True, **kw):
        seen.append(dtype if enabled else None)
        return real_autocast(device_type, dtype=dtype, enabled=enabled, **kw)

    monkeypatch.setattr(train_module.torch, "autocast", spy)
    ds = synthetic(per_class=10, test_per_class=4)
    trainer = Trainer(build_vit(conv_cfg(mixed_precision="auto", epochs=1)), conv_cfg(mixed_precision="auto", epochs=1))
    result = trainer.fit(ds, rebalance(ds, "resample", 0))
    assert trainer.amp is (torch.bfloat16 if native else None)
    assert set(seen) == {torch.bfloat16 if native else None}  # training steps and validation alike
    assert np.isfinite(result.history[0]["train_loss"]) and np.isfinite(result.history[0]["val_loss"])
    probs = predict_proba(trainer.model, ds.split("test").images, amp=trainer.amp)
    assert probs.shape == (28, 7) and np.allclose(probs.sum(1), 1, atol=1e-3)


# -- distillation ------------------------------------------------------------------------

def test_distillation_loss_is_kl_at_temperature():
    s, t = torch.randn(5, 7), torch.randn(5, 7).log_softmax(-1)
    p_t = F.softmax(t / 3, -1)
    expected = (p_t * (p_t.log() - F.log_softmax(s / 3, -1))).sum(-1).mean() * 9
    assert distillation_loss(s, t, 3.0).item() == pytest.approx(expected.item(), rel=1e-5)
    assert distillation_loss(t * 1.0, t, 1.0).item() == pytest.approx(0.0, abs=1e-6)


def test_teacher_probabilities_cover_train_rows_only():
    ds = synthetic(per_class=6, test_per_class=2)
    calls = []

    def predict(images):
        calls.append(len(images))
        return np.tile(np.eye(7, dtype=np.float32)[3], (len(images), 1))

    probs = teacher_probabilities(predict, ds, batch_size=5)
    train = ds.splits == "train"
    assert sum(calls) == train.sum() and max(calls) == 5
    assert np.array_equal(probs[train].argmax(1), np.full(train.sum(), 3))
    assert np.allclose(probs[~train], 1 / 7)


def test_distillation_learns_from_the_teacher_not_the_labels(tmp_path):
    """Train labels shifted by one class, a teacher that knows the true ones: with alpha=1 the student
    learns the teacher's mapping (right on test), with alpha=0 the labels' (wrong on test)."""
    ds = synthetic(per_class=10, test_per_class=4)
    teacher = np.eye(7, dtype=np.float32)[ds.labels] * 0.93 + 0.01
    train = ds.splits == "train"
    ds.labels[train] = (ds.labels[train] + 1) % 7
    cfg = conv_cfg(epochs=8, learning_rate=5e-3, distill={"enabled": True, "alpha": 1.0, "temperature": 1.0})
    accuracy = {}
    for alpha in (0.0, 1.0):
        cfg_a = cfg.model_copy(update={"distill": cfg.distill.model_copy(update={"alpha": alpha})})
        torch.manual_seed(0)
        model = build_vit(cfg_a)
        Trainer(model, cfg_a, tmp_path, teacher_probs=teacher).fit(ds, rebalance(ds, "resample", 0))
        test = ds.split("test")
        accuracy[alpha] = (predict_proba(model, test.images).argmax(1) == test.labels).mean()
    assert accuracy[1.0] > 0.45 and accuracy[0.0] < 0.25, accuracy  # chance: 0.14
    with pytest.raises(ValueError, match="teacher_probs are needed exactly when distill.enabled"):
        Trainer(build_vit(cfg), cfg)
