"""A Vision Transformer with a convolutional tokenizer, for training from scratch on 48x48 faces.

A ViT that patchifies 48x48 faces into 8x8 patches learns FER-2013 poorly from scratch (about 40 %
test accuracy on the CPU profile). Small stride-2 convolutions in front of the encoder ("Early
Convolutions Help Transformers See Better", Xiao et al. 2021; Compact Convolutional Transformers,
Hassani et al. 2021) give it the locality a small dataset cannot teach, and a 6x6 token grid keeps
self-attention cheap on CPUs. The model is a ``transformers`` :class:`PreTrainedModel`, so
``save_pretrained`` / ``from_pretrained`` work as for any Hugging Face model.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import ImageClassifierOutput


class FerConvViTConfig(PretrainedConfig):
    """Configuration of :class:`FerConvViTForImageClassification`.

    Args:
        image_size: input height and width.
        num_channels: input channels.
        stem_channels: channels of the stride-2 conv layers before the last one, which outputs
            ``hidden_size``; ``len(stem_channels) + 1`` halvings of the image give the token grid.
        hidden_size: token width.
        num_hidden_layers: transformer encoder layers (pre-norm).
        num_attention_heads: attention heads per layer.
        intermediate_size: width of each layer's MLP.
        hidden_dropout_prob: dropout in the encoder layers.
        drop_path_rate: stochastic depth of the last layer (linearly less in earlier layers).
        pooling: ``seq`` (CCT's attention-weighted sequence pooling) or ``mean`` of the tokens.
    """

    model_type = "fer-conv-vit"

    def __init__(self, image_size: int = 48, num_channels: int = 1, stem_channels: list[int] | None = None,
                 hidden_size: int = 128, num_hidden_layers: int = 4, num_attention_heads: int = 4,
                 intermediate_size: int = 256, hidden_dropout_prob: float = 0.1, drop_path_rate: float = 0.1,
                 pooling: str = "seq", **kwargs: Any):
        super().__init__(**kwargs)
        self.image_size, self.num_channels = image_size, num_channels
        self.stem_channels = list(stem_channels if stem_channels is not None else [32, 64])
        self.hidden_size, self.num_hidden_layers = hidden_size, num_hidden_layers
        self.num_attention_heads, self.intermediate_size = num_attention_heads, intermediate_size
        self.hidden_dropout_prob, self.drop_path_rate, self.pooling = hidden_dropout_prob, drop_path_rate, pooling

    @property
    def grid_size(self) -> int:
        """Tokens per side: each stride-2 conv (padding 1) halves the side, rounding up."""
        side = self.image_size
        for _ in range(len(self.stem_channels) + 1):
            side = (side + 1) // 2
        return side


class DropPath(nn.Module):
    """Stochastic depth: drops a residual branch per sample while training."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand(x.shape[0], *([1] * (x.dim() - 1)), device=x.device) >= self.p
        return x * keep.to(x.dtype) / (1 - self.p)


class EncoderLayer(nn.Module):
    """Pre-norm transformer layer: ``x + attn(norm(x))``, then ``x + mlp(norm(x))``.

    ``nn.MultiheadAttention`` runs PyTorch's fused scaled-dot-product attention.
    """

    def __init__(self, config: FerConvViTConfig, drop_path: float):
        super().__init__()
        d, p = config.hidden_size, config.hidden_dropout_prob
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, config.num_attention_heads, dropout=p, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d, config.intermediate_size), nn.GELU(), nn.Dropout(p),
                                 nn.Linear(config.intermediate_size, d), nn.Dropout(p))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.drop_path(self.attn(h, h, h, need_weights=False)[0])
        return x + self.drop_path(self.mlp(self.norm2(x)))


class FerConvViTModel(nn.Module):
    """Conv tokenizer -> position embeddings -> pre-norm encoder -> final norm: tokens ``(B, T, D)``."""

    def __init__(self, config: FerConvViTConfig):
        super().__init__()
        layers: list[nn.Module] = []
        cin = config.num_channels
        for cout in [*config.stem_channels, config.hidden_size]:
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            cin = cout
        self.stem = nn.Sequential(*layers)
        self.position_embeddings = nn.Parameter(torch.zeros(1, config.grid_size**2, config.hidden_size))
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        n = config.num_hidden_layers
        self.layers = nn.ModuleList(EncoderLayer(config, config.drop_path_rate * i / max(n - 1, 1)) for i in range(n))
        self.layernorm = nn.LayerNorm(config.hidden_size)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        tokens = self.stem(pixel_values).flatten(2).transpose(1, 2)
        if tokens.shape[1] != self.position_embeddings.shape[1]:
            raise ValueError(f"input {tuple(pixel_values.shape[-2:])} gives {tokens.shape[1]} tokens; this model "
                             f"was built for {self.position_embeddings.shape[1]}")
        x = self.dropout(tokens + self.position_embeddings)
        for layer in self.layers:
            x = layer(x)
        return self.layernorm(x)


class FerConvViTForImageClassification(PreTrainedModel):
    """The conv-tokenizer ViT with a pooled linear classifier."""

    config_class = FerConvViTConfig
    base_model_prefix = "vit"
    main_input_name = "pixel_values"

    def __init__(self, config: FerConvViTConfig):
        super().__init__(config)
        self.vit = FerConvViTModel(config)
        self.attention_pool = nn.Linear(config.hidden_size, 1) if config.pooling == "seq" else None
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        elif isinstance(module, (nn.LayerNorm, nn.BatchNorm2d)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, FerConvViTModel):
            nn.init.trunc_normal_(module.position_embeddings, std=0.02)

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """The image embedding: attention-weighted sum (``seq``) or mean of the tokens."""
        if self.attention_pool is None:
            return tokens.mean(1)
        weights = self.attention_pool(tokens).softmax(dim=1)
        return (weights * tokens).sum(1)

    def features(self, pixel_values: torch.Tensor, **_: Any) -> torch.Tensor:
        return self.pool(self.vit(pixel_values))

    def forward(self, pixel_values: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                **_: Any) -> ImageClassifierOutput:
        logits = self.classifier(self.features(pixel_values))
        loss = None if labels is None else nn.functional.cross_entropy(logits, labels)
        return ImageClassifierOutput(loss=loss, logits=logits)
