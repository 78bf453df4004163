"""The ViT: loading through the real path, the MLP head, freezing, and the offline error."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from fercore.config import VitConfig
from fercore.errors import ConfigError
from fercore.models import load_model, save_model
from fercore.models.vit import (
    FerViTForImageClassification,
    UnfreezeSchedule,
    build_vit,
    check_checkpoint,
    encoder_blocks,
    set_trainable_blocks,
)


def _vit(tiny_vit_dir, **kw):
    return build_vit(VitConfig(checkpoint=str(tiny_vit_dir), head_hidden=[16, 16, 16, 16], **kw))


def test_pretrained_weights_load_and_head_is_a_5_layer_mlp(tiny_vit_dir):
    model = _vit(tiny_vit_dir)
    saved = load_file(str(tiny_vit_dir / "model.safetensors"))
    key = "vit.embeddings.patch_embeddings.projection.weight"
    assert torch.equal(model.vit.state_dict()[key], saved[key])
    linears = [m for m in model.vit.classifier if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 5 and linears[-1].out_features == 7
    assert any(isinstance(m, torch.nn.Dropout) for m in model.vit.classifier)
    assert model.vit.config.id2label[1] == "disgust"
    assert model(torch.rand(2, 1, 48, 48)).shape == (2, 7)  # resized to 32 px and 3 channels inside


def test_save_load_and_from_pretrained(tiny_vit_dir, tmp_path):
    model = _vit(tiny_vit_dir, image_size=48).eval()  # fed at 48 px: position embeddings interpolated
    x = torch.rand(3, 1, 48, 48)
    save_model(model, tmp_path)
    assert torch.allclose(load_model(tmp_path)(x), model(x), atol=1e-5)
    hf = FerViTForImageClassification.from_pretrained(tmp_path)  # the transformers way
    assert isinstance(hf.classifier, torch.nn.Sequential)
    assert (tmp_path / "preprocessor_config.json").exists()


def test_freeze_schedule_changes_which_parameters_get_gradients(tiny_vit_dir):
    model = _vit(tiny_vit_dir)
    blocks = encoder_blocks(model.vit)

    def grads_after_step(trainable: int):
        set_trainable_blocks(model, trainable)
        model.zero_grad(set_to_none=True)
        model(torch.rand(2, 1, 48, 48)).sum().backward()
        return {
            "head": model.vit.classifier[0].weight.grad is not None,
            "top": next(blocks[-1].parameters()).grad is not None,
            "bottom": next(blocks[0].parameters()).grad is not None,
            "embeddings": model.vit.vit.embeddings.patch_embeddings.projection.weight.grad is not None,
        }

    assert grads_after_step(0) == {"head": True, "top": False, "bottom": False, "embeddings": False}
    assert grads_after_step(1) == {"head": True, "top": True, "bottom": False, "embeddings": False}
    assert grads_after_step(3) == {"head": True, "top": True, "bottom": True, "embeddings": True}
    cfg = VitConfig().freeze
    assert [cfg.trainable_blocks(e) for e in range(3)] == [0, 2, 4]


def test_a_later_rung_goes_on_unfreezing_instead_of_freezing_the_encoder_again(tiny_vit_dir):
    model, config = _vit(tiny_vit_dir), VitConfig(freeze={"blocks_per_unfreeze": 1})
    trainable = lambda: sum(p.requires_grad for p in model.parameters())  # noqa: E731
    UnfreezeSchedule(config)(0, model)
    head_only = trainable()
    UnfreezeSchedule(config, epochs_before=1)(0, model)  # the first epoch of rung 2, after one epoch in rung 1
    one_block = trainable()
    UnfreezeSchedule(config)(1, model)
    assert one_block > head_only and one_block == trainable()


def test_unreachable_hub_fails_fast_without_random_weights(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="not in the Hugging Face cache.*save_pretrained"):
        check_checkpoint("google/vit-base-patch16-224")
    with pytest.raises(ConfigError, match="No random weights"):
        build_vit(VitConfig(checkpoint="google/vit-base-patch16-224"))


def test_scratch_vit_for_cpu():
    model = build_vit(VitConfig(checkpoint=None, scratch={"hidden_size": 32, "layers": 2, "heads": 2, "mlp_dim": 64}))
    assert model.vit.config.num_channels == 1 and model.vit.config.image_size == 48
    assert model(torch.rand(2, 1, 48, 48)).shape == (2, 7)


def test_mlp_head_keeps_the_signal_alive(tiny_vit_dir):
    """The ViT's std-0.02 init would shrink the signal ~10x per head layer; the head uses He init."""
    for model in (_vit(tiny_vit_dir), build_vit(VitConfig(checkpoint=None))):
        first = model.vit.classifier[0]
        assert float(first.weight.std()) == pytest.approx((2 / first.in_features) ** 0.5, rel=0.2)
        assert float(model(torch.rand(16, 1, 48, 48)).std()) > 0.1


def test_mean_pooling_classifies_the_mean_patch_token(tmp_path):
    cfg = VitConfig(checkpoint=None, head_hidden=[], scratch={"hidden_size": 32, "layers": 2, "heads": 2, "mlp_dim": 64,
                                                              "pooling": "mean"})
    model = build_vit(cfg).eval()
    x = torch.rand(3, 1, 48, 48)
    tokens = model.vit.vit(pixel_values=model.pixel_values(x)).last_hidden_state
    assert torch.allclose(model.features(x), tokens[:, 1:].mean(1), atol=1e-6)
    assert torch.allclose(model(x), model.vit.classifier(tokens[:, 1:].mean(1)), atol=1e-5)
    save_model(model, tmp_path)
    reloaded = load_model(tmp_path)
    assert reloaded.vit.config.fer_pooling == "mean"
    assert torch.allclose(reloaded(x), model(x), atol=1e-5)
