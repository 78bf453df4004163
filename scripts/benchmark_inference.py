"""Inference speed: a bare ``torch.inference_mode`` forward loop vs the registered pyfunc, side by side.

For the config's CNN and ViT (random weights: speed does not depend on them, or ``--model-dir``
folders written by ``save_model``), on the same images and host:

- the bare loop: the network prepared as the pyfunc prepares it (eval mode, channels-last CNN),
  ``BATCH_SIZE`` images per forward, the centre window the model trained on, no test-time views;
- the pyfunc: the model logged and loaded through MLflow (``tta: none``), ``predict`` on the whole array;
- the pyfunc with the config's test-time views (what a registered model of that config does);
- a batch-size sweep of the bare loop.

Each precision the host computes natively is measured (fp32 always; bf16 where the CPU has native
bf16), alternating bare and pyfunc, best of ``--repeats``.

Usage:
    python scripts/benchmark_inference.py --config configs/cpu.yaml [--data ../shared/data/fer2013/fer2013.tar.gz]
        [--out docs/benchmarks/inference_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fercore.config import load_config  # noqa: E402
from fercore.models import build_cnn, load_model, save_model  # noqa: E402
from fercore.models.inference import (  # noqa: E402
    BATCH_SIZE,
    centre_crop,
    cpu_has_native_bf16,
    pick_device,
    prepare_for_inference,
    to_batch,
    uses_channels_last,
)
from fercore.models.vit import build_vit  # noqa: E402


@torch.inference_mode()
def bare_loop(model: torch.nn.Module, images: np.ndarray, amp: torch.dtype | None,
              batch_size: int = BATCH_SIZE) -> float:
    """Faces/s of plain forward passes (softmax included), the model's own window, no test-time views."""
    device = next(model.parameters()).device
    fmt = torch.channels_last if uses_channels_last(model) else torch.contiguous_format
    window = centre_crop(images, model.fer_spec.get("input_size"))
    start = time.perf_counter()
    with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
        for i in range(0, len(window), batch_size):
            x = to_batch(np.ascontiguousarray(window[i:i + batch_size]), device).contiguous(memory_format=fmt)
            model(x).float().softmax(-1).cpu()
    return len(images) / (time.perf_counter() - start)


def pyfunc_model(model: torch.nn.Module, tta: str, precision: str, folder: Path):
    """The model logged as the project's pyfunc in a throwaway MLflow store, and loaded back."""
    from fercore.serving.pyfunc import FerEmotionModel
    from fercore.tracking.copies import cache_folder, copy_version
    from fercore.tracking.registry import load_pyfunc, log_and_register
    from fercore.tracking.runs import one_off_run
    from fercore.tracking.store import RunInfo

    model_dir = save_model(model.cpu(), folder / f"model-{time.monotonic_ns()}")
    example = np.zeros((2, 48, 48), np.uint8)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with one_off_run(RunInfo(uri, "benchmark", "benchmark"), "bench", {}, {}) as run_id:
        version = log_and_register(uri, run_id, FerEmotionModel(), {"model": str(model_dir)}, "bench", {"family": "bench"},
                                   "", example, model_config={"tta": tta, "precision": precision})
    copy = copy_version("bench", version, uri, cache_folder(folder / "cache"))
    return load_pyfunc(copy)  # through MLflow's loader, as mlflow models serve loads it


def timed(fn, images: np.ndarray) -> float:
    start = time.perf_counter()
    fn(images)
    return len(images) / (time.perf_counter() - start)


def measure(name: str, model: torch.nn.Module, tta: str, images: np.ndarray, repeats: int, folder: Path) -> dict:
    precisions = {"fp32": None, **({"bf16": torch.bfloat16} if cpu_has_native_bf16() else {})}
    out: dict = {}
    for label, amp in precisions.items():
        net = prepare_for_inference(load_model_copy(model, folder), pick_device())
        plain = pyfunc_model(load_model_copy(model, folder), "none", label, folder)
        viewed = pyfunc_model(load_model_copy(model, folder), tta, label, folder)
        bare_loop(net, images[:512], amp)  # warm-up (oneDNN kernels)
        plain.predict(images[:512])
        bare, pyf, views = [], [], []
        for _ in range(repeats):
            bare.append(bare_loop(net, images, amp))
            pyf.append(timed(plain.predict, images))
        for _ in range(max(1, repeats // 2)):
            views.append(timed(viewed.predict, images[:2048]))
        out[label] = {"bare_faces_per_s": round(max(bare), 1), "pyfunc_faces_per_s": round(max(pyf), 1),
                      "pyfunc_over_bare": round(max(pyf) / max(bare), 3),
                      f"pyfunc_{tta}_faces_per_s": round(max(views), 1)}
        print(f"{name} {label}: bare {max(bare):.0f} faces/s, pyfunc {max(pyf):.0f} ({max(pyf) / max(bare):.1%}), "
              f"pyfunc with {tta} {max(views):.0f}", flush=True)
    amp = precisions.get("bf16")
    net = prepare_for_inference(load_model_copy(model, folder), pick_device())
    out["batch_size_sweep"] = {str(bs): round(max(bare_loop(net, images, amp, bs) for _ in range(2)), 1)
                               for bs in (64, 128, 256, 512)}
    print(f"{name} batch sizes ({'bf16' if amp else 'fp32'}): {out['batch_size_sweep']}", flush=True)
    return out


def load_model_copy(model: torch.nn.Module, folder: Path) -> torch.nn.Module:
    """A fresh copy through save/load, so every measurement starts from the same state."""
    path = save_model(model.cpu(), folder / f"copy-{time.monotonic_ns()}")
    return load_model(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/cpu.yaml")
    parser.add_argument("--data", help="score the real test images of this source (default: random images)")
    parser.add_argument("--images", type=int, default=7178, help="images per measurement (test split size)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    cfg = load_config(args.config)
    if args.data:
        from fercore.data.sources import ingest

        images = ingest(args.data).split("test").images[:args.images]
    else:
        images = np.random.default_rng(0).integers(0, 256, (args.images, 48, 48), dtype=np.uint8)
    models = {name: (build_cnn(c.architecture, **c.model_kwargs()) if c.family == "cnn" else build_vit(c), c)
              for name, c in cfg.enabled_contenders().items()}
    for model, training in models.values():
        if training.augment.crop_size:
            model.fer_spec["input_size"] = training.augment.crop_size
    report = {"host": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
              "native_bf16": cpu_has_native_bf16(), "torch": torch.__version__, "threads": torch.get_num_threads(),
              "images": len(images), "date": time.strftime("%Y-%m-%d")}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (model, training) in models.items():
            report[name] = measure(name, model, training.tta, images, args.repeats, Path(tmp))
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
