"""CNNs trained from scratch: the paper's V1 and V2.1, a VGG-7, and a residual network for 48x48 faces."""

from __future__ import annotations

import torch
from torch import nn

from fercore.constants import NUM_CLASSES

# Mean and spread of FER-2013 train pixels in [0, 1]; normalisation lives inside the model so that
# every consumer (pyfunc, predict CLI) only divides uint8 pixels by 255.
PIXEL_MEAN, PIXEL_STD = 0.508, 0.255


class Normalize(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - PIXEL_MEAN) / PIXEL_STD


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def cnn_v1(dropout: float = 0.0, **_: object) -> nn.Sequential:
    """The paper's V1: two conv layers with max-pooling and a fully connected head."""
    return nn.Sequential(
        Normalize(),
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 12 * 12, 128), nn.ReLU(inplace=True), nn.Dropout(dropout),
        nn.Linear(128, NUM_CLASSES),
    )


def cnn_v2_1(dropout: float = 0.5, **_: object) -> nn.Sequential:
    """The paper's V2.1: four conv layers (32, 64, 128, 256), batch norm, ReLU, 2x2 max-pooling, dropout 0.5."""
    layers: list[nn.Module] = [Normalize()]
    for cin, cout in ((1, 32), (32, 64), (64, 128), (128, 256)):
        layers += [*_conv_bn(cin, cout), nn.MaxPool2d(2)]
    return nn.Sequential(
        *layers, nn.Flatten(), nn.Dropout(dropout), nn.Linear(256 * 3 * 3, 256), nn.ReLU(inplace=True),
        nn.Dropout(dropout), nn.Linear(256, NUM_CLASSES),
    )


def cnn_vgg7(width: int = 32, dropout: float = 0.3, **_: object) -> nn.Sequential:
    """VGG-style: 3x3 conv+BN+ReLU stages of w, 2w, 4w, 8w channels (one conv at full resolution,
    two in each later stage), max-pooling between stages, global average pooling, linear head.

    Plain convolutions and a single full-resolution conv keep it fast on CPUs (1.4x the throughput
    of two convs there, measured); with ``width=32`` it has 1.16 M parameters.
    """
    layers: list[nn.Module] = [Normalize()]
    cin = 1
    for stage in range(4):
        cout = width * 2**stage
        layers += _conv_bn(cin, cout) if stage == 0 else [*_conv_bn(cin, cout), *_conv_bn(cout, cout)]
        layers.append(nn.MaxPool2d(2) if stage < 3 else nn.AdaptiveAvgPool2d(1))
        cin = cout
    return nn.Sequential(*layers, nn.Flatten(), nn.Dropout(dropout), nn.Linear(cin, NUM_CLASSES))


class BasicBlock(nn.Module):
    """ResNet's basic block (He et al. 2016): two 3x3 conv+BN, the input added back; when the shape
    changes, through 2x2 average pooling and a 1x1 conv+BN (the "ResNet-D" shortcut of He et al. 2019).

    Not a strided 1x1 conv: its backward pass in channels-last memory crashes PyTorch 2.14 on CPUs
    (a segmentation fault for 48x48 input, seen with oneDNN), and it drops three quarters of the input.
    """

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout),
        )
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            *([nn.AvgPool2d(stride, ceil_mode=True, count_include_pad=False)] if stride > 1 else []),
            nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


def cnn_resnet(width: int = 32, dropout: float = 0.3, **_: object) -> nn.Sequential:
    """A residual network sized for 48x48 input: one 3x3 conv at full resolution, then three stages of
    two basic blocks (2w, 4w, 8w channels) that each halve the resolution, global average pooling and
    a linear head. Twice VGG-7's convolutions per stage; 2.8 M parameters at ``width=32``, 1.6 M at 24."""
    layers: list[nn.Module] = [Normalize(), *_conv_bn(1, width)]
    cin = width
    for stage in range(1, 4):
        cout = width * 2**stage
        layers += [BasicBlock(cin, cout, stride=2), BasicBlock(cout, cout)]
        cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                         nn.Linear(cin, NUM_CLASSES))


ARCHITECTURES = {"v1": cnn_v1, "v2_1": cnn_v2_1, "vgg7": cnn_vgg7, "resnet": cnn_resnet}


def build_cnn(architecture: str, **kwargs: object) -> nn.Module:
    """Builds a CNN by name (``v1``, ``v2_1``, ``vgg7``, ``resnet``)."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown CNN architecture {architecture!r}; choose one of {sorted(ARCHITECTURES)}")
    model = ARCHITECTURES[architecture](**kwargs)
    model.fer_spec = {"family": "cnn", "architecture": architecture, "kwargs": dict(kwargs)}
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
