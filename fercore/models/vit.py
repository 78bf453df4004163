"""Vision Transformers from Hugging Face ``transformers``, fine-tuned the paper's way.

The 1000-class classifier of the checkpoint is replaced by a 5-layer MLP with dropout between
layers. Grayscale 48x48 batches are converted on the device, in batches, to the channels, size
and normalisation that the checkpoint's image processor specifies.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoImageProcessor, PreTrainedModel, ViTConfig, ViTForImageClassification, ViTImageProcessor
from transformers.modeling_outputs import ImageClassifierOutput

from fercore.constants import CLASS_NAMES, IMAGE_SIZE, NUM_CLASSES
from fercore.errors import ConfigError
from fercore.models.convvit import FerConvViTConfig, FerConvViTForImageClassification

logger = logging.getLogger(__name__)
DEFAULT_HEAD = (1024, 512, 256, 128)  # 4 hidden layers + the output layer = the paper's 5-layer MLP


def mlp_head(in_features: int, hidden: list[int] | tuple[int, ...], out_features: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_features, width), nn.GELU(), nn.Dropout(dropout)]
        in_features = width
    layers.append(nn.Linear(in_features, out_features))
    for layer in layers:
        if isinstance(layer, nn.Linear):
            layer._fer_head = True  # initialised by FerViTForImageClassification._init_weights
    return nn.Sequential(*layers)


def _init_head_layer(layer: nn.Linear) -> None:
    # ViT's own init (normal, std 0.02) shrinks the signal ~10x per layer of a deep MLP head, which
    # then barely trains (measured: a from-scratch ViT stuck at chance); He init keeps it alive.
    nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    nn.init.zeros_(layer.bias)


class FerViTForImageClassification(ViTForImageClassification):
    """``ViTForImageClassification`` whose classifier is an MLP (``config.fer_head_hidden``), fed the
    CLS token or, with ``config.fer_pooling = "mean"``, the mean of the patch tokens.

    ``save_pretrained`` / ``from_pretrained`` work as for any ``transformers`` model.
    """

    def __init__(self, config: ViTConfig):
        super().__init__(config)
        hidden = list(getattr(config, "fer_head_hidden", None) or [])
        if hidden:
            self.classifier = mlp_head(config.hidden_size, hidden, config.num_labels,
                                       float(getattr(config, "fer_head_dropout", 0.1)))
            self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if getattr(module, "_fer_head", False):
            _init_head_layer(module)
        else:
            super()._init_weights(module)

    def pool(self, last_hidden_state: torch.Tensor) -> torch.Tensor:
        """The image embedding: the CLS token, or the mean patch token (``fer_pooling="mean"``)."""
        if getattr(self.config, "fer_pooling", "cls") == "mean":
            return last_hidden_state[:, 1:].mean(1)
        return last_hidden_state[:, 0]

    def features(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool | None = None) -> torch.Tensor:
        """The image embedding the classifier sees."""
        out = self.vit(pixel_values=pixel_values, interpolate_pos_encoding=interpolate_pos_encoding)
        return self.pool(out.last_hidden_state)

    def forward(self, pixel_values: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                interpolate_pos_encoding: bool | None = None, **kwargs: Any) -> ImageClassifierOutput:
        out = self.vit(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding, **kwargs)
        logits = self.classifier(self.pool(out.last_hidden_state))
        loss = None if labels is None else self.loss_function(labels, logits, self.config)
        return ImageClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                     attentions=out.attentions)


class FerViT(nn.Module):
    """Maps ``(B, 1, 48, 48)`` floats in [0, 1] to logits through a ViT and its image processor's settings.

    ``vit`` is a patch ViT (:class:`FerViTForImageClassification`, pretrained or scratch) or the
    conv-tokenizer ViT (:class:`fercore.models.convvit.FerConvViTForImageClassification`).
    """

    def __init__(self, vit: PreTrainedModel, processor: ViTImageProcessor, checkpoint: str):
        super().__init__()
        self.vit, self.processor = vit, processor
        size = processor.size or {}
        self.size = (size.get("height", IMAGE_SIZE), size.get("width", IMAGE_SIZE))
        channels = vit.config.num_channels
        mean = torch.tensor(_per_channel(processor.image_mean, channels) if processor.do_normalize else [0.0] * channels)
        std = torch.tensor(_per_channel(processor.image_std, channels) if processor.do_normalize else [1.0] * channels)
        self.register_buffer("mean", mean.view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", std.view(1, -1, 1, 1), persistent=False)
        # Fed at another size than pretrained (e.g. 112 px on CPUs): interpolate position embeddings.
        self.interpolate = self.size != (vit.config.image_size, vit.config.image_size)
        self.fer_spec = {"family": "vit", "architecture": "vit", "checkpoint": checkpoint}

    def pixel_values(self, x: torch.Tensor) -> torch.Tensor:
        """The checkpoint's input: resized, channels repeated, normalised as its image processor says."""
        if tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=False)
        x = x.expand(-1, self.vit.config.num_channels, -1, -1)
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit(pixel_values=self.pixel_values(x), interpolate_pos_encoding=self.interpolate).logits

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The image embedding the classifier sees (CLS or mean patch token of the last layer)."""
        return self.vit.features(self.pixel_values(x), interpolate_pos_encoding=self.interpolate)

    def save_pretrained(self, directory: str | Path) -> None:
        self.vit.save_pretrained(directory)
        self.processor.save_pretrained(directory)


def _per_channel(values: Any, channels: int) -> list[float]:
    values = [float(v) for v in (values if isinstance(values, (list, tuple)) else [values])]
    return values * channels if len(values) == 1 else values[:channels]


def _labels() -> dict[str, Any]:
    return {"num_labels": NUM_CLASSES, "id2label": dict(enumerate(CLASS_NAMES)),
            "label2id": {c: i for i, c in enumerate(CLASS_NAMES)}}


def scratch_vit(image_size: int = 48, patch_size: int = 6, hidden_size: int = 192, layers: int = 6, heads: int = 3,
                mlp_dim: int = 384, head_hidden: tuple[int, ...] = DEFAULT_HEAD, head_dropout: float = 0.1,
                pooling: str = "cls") -> FerViT:
    """A small ViT for 48x48 grayscale input, randomly initialised (no hub needed)."""
    config = ViTConfig(image_size=image_size, patch_size=patch_size, num_channels=1, hidden_size=hidden_size,
                       num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=mlp_dim,
                       fer_head_hidden=list(head_hidden), fer_head_dropout=head_dropout, fer_pooling=pooling,
                       **_labels())
    return FerViT(FerViTForImageClassification(config), _scratch_processor(image_size), "scratch-patch")


def _scratch_processor(image_size: int) -> ViTImageProcessor:
    return ViTImageProcessor(size={"height": image_size, "width": image_size}, image_mean=[0.5], image_std=[0.5])


def scratch_conv_vit(image_size: int = 48, stem_channels: tuple[int, ...] = (32, 64), hidden_size: int = 128,
                     layers: int = 4, heads: int = 4, mlp_dim: int = 256, dropout: float = 0.1,
                     drop_path: float = 0.1, pooling: str = "seq") -> FerViT:
    """The conv-tokenizer ViT (:mod:`fercore.models.convvit`) for 48x48 grayscale input, randomly initialised."""
    config = FerConvViTConfig(image_size=image_size, num_channels=1, stem_channels=list(stem_channels),
                              hidden_size=hidden_size, num_hidden_layers=layers, num_attention_heads=heads,
                              intermediate_size=mlp_dim, hidden_dropout_prob=dropout, drop_path_rate=drop_path,
                              pooling=pooling, **_labels())
    return FerViT(FerConvViTForImageClassification(config), _scratch_processor(image_size), "scratch-conv")


def pretrained_vit(checkpoint: str, head_hidden: tuple[int, ...] = DEFAULT_HEAD, head_dropout: float = 0.1,
                   image_size: int | None = None) -> FerViT:
    """Loads a pretrained ViT from a hub name or a ``save_pretrained`` folder, with a new MLP head.

    Args:
        checkpoint: e.g. ``google/vit-base-patch16-224`` or a local folder.
        head_hidden: widths of the head's hidden layers.
        head_dropout: dropout between head layers.
        image_size: feed images at this size instead of the processor's (position embeddings are
            interpolated); smaller is faster on CPUs.

    Raises:
        ConfigError: the checkpoint is neither a local folder nor reachable/cached on the hub.
    """
    try:
        processor = AutoImageProcessor.from_pretrained(checkpoint)
        config = ViTConfig.from_pretrained(checkpoint)
        config.id2label, config.label2id = _labels()["id2label"], _labels()["label2id"]
        config.fer_head_hidden, config.fer_head_dropout = list(head_hidden), head_dropout
        vit = FerViTForImageClassification.from_pretrained(checkpoint, config=config, ignore_mismatched_sizes=True)
    except OSError as exc:
        raise ConfigError(checkpoint_error(checkpoint, exc)) from exc
    if image_size:
        processor.size = {"height": image_size, "width": image_size}
    return FerViT(vit, processor, checkpoint)


def checkpoint_error(checkpoint: str, exc: Exception) -> str:
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    return (
        f"cannot load the ViT checkpoint '{checkpoint}': it is not a local folder, and it is not in the Hugging Face "
        f"cache while the hub is {'disabled (HF_HUB_OFFLINE)' if offline else 'unreachable'} ({type(exc).__name__}). "
        "Download it where the hub is reachable (huggingface-cli download NAME) and copy the cache, or set "
        "vit.checkpoint to a folder written by save_pretrained. No random weights are used instead."
    )


def check_checkpoint(checkpoint: str | None) -> None:
    """Fails fast when a pretrained checkpoint cannot be loaded (before any pipeline work)."""
    if not checkpoint or Path(checkpoint).is_dir():
        if checkpoint and not (Path(checkpoint) / "config.json").exists():
            raise ConfigError(f"vit.checkpoint {checkpoint} is a folder without config.json; write it with save_pretrained.")
        return
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(checkpoint)
    except OSError as exc:
        raise ConfigError(checkpoint_error(checkpoint, exc)) from exc


def load_vit(directory: str | Path) -> FerViT:
    """Loads a :class:`FerViT` written by :func:`fercore.models.save_model`."""
    import json

    spec = json.loads((Path(directory) / "fer_model.json").read_text())
    model_type = json.loads((Path(directory) / "config.json").read_text()).get("model_type")
    cls = FerConvViTForImageClassification if model_type == FerConvViTConfig.model_type else FerViTForImageClassification
    vit = cls.from_pretrained(directory)
    processor = AutoImageProcessor.from_pretrained(directory)
    return FerViT(vit, processor, spec.get("checkpoint", str(directory)))


def encoder_blocks(vit: ViTForImageClassification) -> nn.ModuleList:
    """The transformer blocks (``vit.layers`` in transformers 5, ``vit.encoder.layer`` before)."""
    backbone = vit.vit
    return backbone.layers if hasattr(backbone, "layers") else backbone.encoder.layer


def set_trainable_blocks(model: FerViT, trainable_blocks: int) -> int:
    """Freezes the backbone except its top ``trainable_blocks`` encoder blocks; the head always trains.

    With every block trainable the embeddings train too. Returns the number of trainable parameters.
    """
    vit = model.vit
    blocks = encoder_blocks(vit)
    n = max(0, min(trainable_blocks, len(blocks)))
    for p in vit.vit.parameters():
        p.requires_grad = False
    for block in blocks[len(blocks) - n:]:
        for p in block.parameters():
            p.requires_grad = True
    if n == len(blocks):
        for p in vit.vit.parameters():
            p.requires_grad = True
    for p in vit.vit.layernorm.parameters():
        p.requires_grad = True
    for p in vit.classifier.parameters():
        p.requires_grad = True
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class UnfreezeSchedule:
    """A Trainer ``on_epoch_start`` callback applying ``config.freeze`` to a pretrained ViT (a class in
    the ZenML-free core: DDP workers unpickle it).

    Args:
        config: a ViT contender's config.
        epochs_before: epochs the model trained before this fit (earlier rungs, a version it continues from):
            unfreezing goes on from there instead of freezing the encoder again.
    """

    def __init__(self, config: Any, epochs_before: int = 0):
        self.freeze, self.epochs_before = config.freeze, epochs_before

    def __call__(self, epoch: int, model: FerViT) -> None:
        blocks = self.freeze.trainable_blocks(epoch + self.epochs_before)
        trainable = set_trainable_blocks(model, blocks)
        logger.info("Epoch %d: top %d encoder blocks + head trainable (%d parameters)", epoch + 1, blocks, trainable)


def build_vit(config: Any) -> FerViT:
    """Builds the ViT a :class:`fercore.config.VitConfig` describes."""
    head = tuple(config.head_hidden)
    if config.checkpoint:
        return pretrained_vit(config.checkpoint, head, config.head_dropout, config.image_size)
    s = config.scratch
    if s.tokenizer == "conv":
        return scratch_conv_vit(s.image_size, tuple(s.stem_channels), s.hidden_size, s.layers, s.heads, s.mlp_dim,
                                s.dropout, s.drop_path, s.pooling)
    return scratch_vit(s.image_size, s.patch_size, s.hidden_size, s.layers, s.heads, s.mlp_dim, head, config.head_dropout,
                       s.pooling)


def vit_variant(config: Any) -> str:
    """The ``checkpoint`` tag of a ViT: its hub name or folder, or ``scratch-patch`` / ``scratch-conv``,
    with ``+distilled`` when it learned from a teacher's soft targets."""
    name = config.checkpoint or f"scratch-{config.scratch.tokenizer}"
    return name + ("+distilled" if config.distill.enabled else "")
