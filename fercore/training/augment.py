"""Augmentation of a training batch on its device, in one batched call per transform."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from fercore.config import AugmentConfig


class BatchAugmenter:
    """Random flips, rotations and shifts (one affine resample), and erasing, per image of a batch."""

    def __init__(self, cfg: AugmentConfig, generator: torch.Generator):
        self.cfg, self.gen = cfg, generator

    def _rand(self, n: int, device: torch.device) -> torch.Tensor:
        return torch.rand(n, generator=self.gen).to(device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        cfg, dev = self.cfg, x.device
        if cfg.hflip:
            flip = self._rand(n, dev) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        size = min(cfg.crop_size or w, h, w)
        if cfg.rotation_degrees or cfg.crop_padding or size < w:
            angle = (self._rand(n, dev) * 2 - 1) * math.radians(cfg.rotation_degrees)
            shift = (torch.rand(n, 2, generator=self.gen).to(dev) * 2 - 1) * (2 * cfg.crop_padding / w)
            # scaling the rotation by size/w samples a size x size window at the input's own pixel scale
            cos, sin = torch.cos(angle) * size / w, torch.sin(angle) * size / w
            theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
            grid = F.affine_grid(theta, [n, x.shape[1], size, size], align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        if cfg.erasing:
            x = self._erase(x)
        return x

    def _erase(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        size = (torch.rand(n, 2, generator=self.gen) * 0.3 + 0.1) * torch.tensor([h, w])
        corner = torch.rand(n, 2, generator=self.gen) * (torch.tensor([h, w]) - size)
        rows, cols = torch.arange(h)[None, :], torch.arange(w)[None, :]
        inside_r = (rows >= corner[:, :1]) & (rows < corner[:, :1] + size[:, :1])
        inside_c = (cols >= corner[:, 1:]) & (cols < corner[:, 1:] + size[:, 1:])
        active = torch.rand(n, generator=self.gen) < self.cfg.erasing
        mask = (inside_r[:, :, None] & inside_c[:, None, :] & active[:, None, None]).to(x.device)
        return x.masked_fill(mask[:, None], 0.5)
