"""grad-cam against captum for this project's maps (a command, not a test; docs/explain.md records its output).

For a small VGG-7 and the conv-tokenizer ViT trained on the sanity tests' planted-cue task
(tests/unit/test_explain.py), and each method: the share of the map's mass on the cue, the mean Spearman
correlation with the maps of the same network re-initialised, and the time for 1,000 faces of a width-32
VGG-7 (the cpu.yaml contender's size). captum has no HiResCAM; its ``LayerGradientXActivation`` summed over
channels is the same quantity, drawn here by hand (upsampling, ReLU, scaling) as grad-cam does it.

Usage: python scripts/compare_cam_libraries.py [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fercore.explain.cam import target_layer  # noqa: E402
from fercore.models import build_cnn  # noqa: E402
from tests.unit.test_explain import cue_mass, planted, small_conv_vit, train  # noqa: E402


def _scale(maps: torch.Tensor) -> np.ndarray:
    """ReLU, upsample to 48x48, min-max per face (what grad-cam does to every method's map)."""
    maps = F.interpolate(maps.clamp(min=0).unsqueeze(1), size=(48, 48), mode="bilinear", align_corners=False)[:, 0]
    lo, hi = maps.amin((1, 2), keepdim=True), maps.amax((1, 2), keepdim=True)
    return ((maps - lo) / (hi - lo).clamp(min=1e-7)).detach().numpy()


def gradcam_lib(method: str, model, layer, reshape, x: torch.Tensor, classes) -> np.ndarray:
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    for p in model.parameters():  # as fercore.explain.cam does: gradients to the input, none into the weights
        p.requires_grad_(False)
    try:
        with getattr(pytorch_grad_cam, method)(model=model, target_layers=[layer], reshape_transform=reshape) as cam:
            return cam(input_tensor=x.clone().requires_grad_(True), targets=[ClassifierOutputTarget(int(c)) for c in classes])
    finally:
        for p in model.parameters():
            p.requires_grad_(True)


def captum_lib(method: str, model, layer, reshape, x: torch.Tensor, classes) -> np.ndarray:
    from captum.attr import LayerGradCam, LayerGradientXActivation

    target = torch.as_tensor(np.asarray(classes, dtype=np.int64))
    if method == "LayerGradCam":  # 4-D layer outputs only
        return _scale(LayerGradCam(model, layer).attribute(x, target=target, relu_attributions=True)[:, 0])
    attr = LayerGradientXActivation(model, layer).attribute(x, target=target)
    grid = reshape(attr) if reshape is not None else attr  # ViT tokens -> (B, D, g, g)
    return _scale(grid.sum(1))


METHODS = {"grad-cam HiResCAM (chosen)": (gradcam_lib, "HiResCAM", "ours"),
           "grad-cam GradCAM, last layer": (gradcam_lib, "GradCAM", "last"),
           "captum LayerGradientXActivation": (captum_lib, "LayerGradientXActivation", "ours"),
           "captum LayerGradCam, last layer": (captum_lib, "LayerGradCam", "last")}


def layer_of(model, where: str):
    layer, reshape = target_layer(model)
    if where == "last" and reshape is None:  # a CNN's last layer before global pooling
        layer = [m for m in model if isinstance(m, torch.nn.ReLU)][-1]
    return layer, reshape


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    trained = {"vgg7 (width 8)": train(build_cnn("vgg7", width=8, dropout=0.0)),
               "conv ViT": train(small_conv_vit(), epochs=8)}
    torch.manual_seed(123)
    fresh = {"vgg7 (width 8)": build_cnn("vgg7", width=8, dropout=0.0).eval(), "conv ViT": small_conv_vit().eval()}
    images, labels = planted(120, seed=7)
    cue = torch.from_numpy(images[labels == 1]).float().div(255).unsqueeze(1)
    some = torch.from_numpy(images[:60]).float().div(255).unsqueeze(1)
    big = build_cnn("vgg7", width=32).eval()
    faces = torch.rand(1000, 1, 48, 48)
    print("| method | model | mass on the cue | Spearman vs re-initialised | s per 1,000 faces (VGG-7 width 32) |")
    print("| --- | --- | ---: | ---: | ---: |")
    for name, (draw, method, where) in METHODS.items():
        layer, _ = layer_of(big, where)
        start = time.perf_counter()
        for chunk in faces.split(64):
            draw(method, big, layer, None, chunk, np.zeros(len(chunk), int))
        seconds = time.perf_counter() - start
        for model_name, model in trained.items():
            layer, reshape = layer_of(model, where)
            if reshape is not None and method == "LayerGradCam":
                print(f"| {name} | {model_name} | — | — | (takes 4-D layers only) |")
                continue
            mass = cue_mass(draw(method, model, layer, reshape, cue, np.ones(len(cue), int)))
            a = draw(method, model, layer, reshape, some, labels[:60])
            f_layer, _ = layer_of(fresh[model_name], where)
            b = draw(method, fresh[model_name], f_layer, reshape, some, labels[:60])
            rho = np.mean([spearmanr(p.ravel(), q.ravel()).statistic for p, q in zip(a, b) if p.std() and q.std()])
            print(f"| {name} | {model_name} | {mass:.2f} | {rho:.2f} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
