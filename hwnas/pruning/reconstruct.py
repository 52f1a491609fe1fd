"""AMC's least-squares reconstruction of the layer after a pruned one.

Removing input channels of a 1x1 convolution (an MBConv's projection, the next block's
expansion) or of the classifier changes what it computes. AMC refits such a layer's remaining
weights so its output on real images stays as close as possible to the unpruned layer's: with
``X`` the unpruned network's input features (kept channels only) and ``Y`` its output features
(kept output channels), ``W = argmin ||X W^T - Y||^2``. Both are sampled once per search from the
unpruned network at a few spatial positions per image, so a policy's reconstruction is one small
linear solve per layer (as in AMC's code; it too handles 1x1 convolutions and linear layers only).

Whether it helps is measured, not assumed: ``benchmarks/prune_reconstruction.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

RIDGE = 1e-4  # relative to the mean diagonal of X^T X: keeps the solve stable when kept channels are collinear


@dataclass
class LayerFeatures:
    """Sampled input rows (positions x in_channels) and output rows (positions x out_channels, no bias)."""

    inputs: torch.Tensor
    outputs: torch.Tensor


def _reconstructable(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return True
    return isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1) and module.groups == 1 and module.stride == (1, 1)


@torch.no_grad()
def collect_features(
    module: nn.Module, images: torch.Tensor, names: set[str], points: int = 8, seed: int = 0, batch: int = 128
) -> dict[str, LayerFeatures]:
    """Input and output features of the named 1x1 convolutions / linear layers of the unpruned ``module``."""
    generator = torch.Generator().manual_seed(seed)
    targets = {n: m for n, m in module.named_modules() if n in names and _reconstructable(m)}
    collected: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {n: [] for n in targets}

    def hook_for(name: str, layer: nn.Module):
        def hook(_: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            x = inputs[0]
            y = output - layer.bias.view(1, -1, *([1] * (output.ndim - 2))) if layer.bias is not None else output
            if x.ndim == 4:
                n, c, h, w = x.shape
                picks = torch.randint(0, h * w, (n, min(points, h * w)), generator=generator)
                x = x.flatten(2).gather(2, picks.unsqueeze(1).expand(-1, c, -1)).permute(0, 2, 1).reshape(-1, c)
                y = y.flatten(2).gather(2, picks.unsqueeze(1).expand(-1, y.shape[1], -1)).permute(0, 2, 1).reshape(-1, y.shape[1])
            collected[name].append((x.reshape(-1, x.shape[-1]).clone(), y.reshape(-1, y.shape[-1]).clone()))

        return hook

    handles = [layer.register_forward_hook(hook_for(name, layer)) for name, layer in targets.items()]
    try:
        module.eval()
        for start in range(0, len(images), batch):
            module(images[start : start + batch])
    finally:
        for handle in handles:
            handle.remove()
    return {
        name: LayerFeatures(torch.cat([x for x, _ in rows]), torch.cat([y for _, y in rows])) for name, rows in collected.items()
    }


@torch.no_grad()
def reconstruct(
    pruned: nn.Module, features: dict[str, LayerFeatures], kept_in: dict[str, list[int]], kept_out: dict[str, list[int]]
) -> list[str]:
    """Refit every sampled layer whose input channels were pruned; returns the names refitted."""
    layers = dict(pruned.named_modules())
    refitted = []
    for name, kept in kept_in.items():
        sample = features.get(name)
        layer = layers.get(name)
        if sample is None or layer is None or not _reconstructable(layer):
            continue
        full_out = sample.outputs.shape[1]
        outs = kept_out.get(name, list(range(full_out)))
        x = sample.inputs[:, kept].double()
        y = sample.outputs[:, outs].double()
        gram = x.T @ x
        gram += RIDGE * gram.diagonal().mean().clamp_min(1e-12) * torch.eye(len(kept), dtype=gram.dtype)
        weight = torch.linalg.solve(gram, x.T @ y).T.float()
        layer.weight.copy_(weight.view_as(layer.weight))
        refitted.append(name)
    return refitted
