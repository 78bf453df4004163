"""ViT-B/16 fine-tuning throughput at 224 px: images/s and peak GPU memory (a command, not a test).

Uses the project's FerViT wrapper and Trainer settings (48x48 grayscale in, resized on the device,
5-layer MLP head, bf16/fp16 autocast on CUDA). Loads ``--checkpoint`` when it is reachable or cached;
otherwise builds the same architecture with random weights (throughput does not depend on them).

Usage:
    python scripts/benchmark_vit_gpu.py [--checkpoint google/vit-base-patch16-224] [--batch-size 64] [--steps 30]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fercore.config import VitConfig  # noqa: E402
from fercore.errors import ConfigError  # noqa: E402
from fercore.models import count_parameters  # noqa: E402
from fercore.models.inference import autocast_dtype, pick_device  # noqa: E402
from fercore.models.vit import FerViT, FerViTForImageClassification, build_vit, set_trainable_blocks  # noqa: E402


def vit_b16_random(head_hidden: list[int]) -> FerViT:
    """ViT-B/16 (224 px, 12 layers, 768 wide) with random weights and the project's head."""
    from transformers import ViTConfig, ViTImageProcessor

    from fercore.constants import CLASS_NAMES

    config = ViTConfig(image_size=224, patch_size=16, num_channels=3, hidden_size=768, num_hidden_layers=12,
                       num_attention_heads=12, intermediate_size=3072, num_labels=len(CLASS_NAMES),
                       fer_head_hidden=head_hidden, fer_head_dropout=0.1)
    processor = ViTImageProcessor(size={"height": 224, "width": 224}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    return FerViT(FerViTForImageClassification(config), processor, "random-vit-b16")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="google/vit-base-patch16-224")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--trainable-blocks", type=int, default=12, help="top encoder blocks that train")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    cfg = VitConfig(checkpoint=args.checkpoint)
    try:
        model, weights = build_vit(cfg), args.checkpoint
    except ConfigError as exc:
        print(f"note: {exc}\nUsing random weights of the same architecture.", file=sys.stderr)
        model, weights = vit_b16_random(cfg.head_hidden), "random"
    device = pick_device()
    model = model.to(device).train()
    set_trainable_blocks(model, args.trainable_blocks)
    amp = autocast_dtype(device, "auto")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    x = torch.rand(args.batch_size, 1, 48, 48, device=device)
    y = torch.randint(0, 7, (args.batch_size,), device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    report = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "weights": weights, "parameters": count_parameters(model), "image_size": model.size[0],
        "batch_size": args.batch_size, "autocast": str(amp), "trainable_blocks": args.trainable_blocks,
        "images_per_s": round(args.steps * args.batch_size / elapsed, 1),
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.type == "cuda" else None,
    }
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
