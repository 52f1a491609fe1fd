"""Build plain ``nn.Module``s from OpKeys and architectures, and count their FLOPs and parameters.

A network is literally the chain of its layers: ``build_model`` is an ``nn.Sequential`` of
``build_op(key)`` for every key of ``space.op_keys(arch)``. That is what makes "latency of a
network ~ sum of its layers' latencies" and "FLOPs of a network == sum of its layers' FLOPs" hold
by construction rather than by a second, hand-written description of the same network.
FLOPs come from ``torch.utils.flop_counter`` (one multiply-add counts as 2 FLOPs), run on the
``meta`` device so counting a 224x224 layer allocates nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.ops import StochasticDepth
from torchvision.ops.misc import Conv2dNormActivation, SqueezeExcitation

from hwnas.arch import Arch
from hwnas.opkey import OpKey
from hwnas.space import SearchSpace

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hswish": nn.Hardswish, "silu": nn.SiLU}


def squeeze_excite(key: OpKey) -> SqueezeExcitation:
    """The block's squeeze-excite as the network it comes from has it (see :mod:`hwnas.opkey`)."""
    if key.act == "silu":  # EfficientNet: SiLU inside, sigmoid gate
        return SqueezeExcitation(key.mid_channels, key.se_channels, activation=nn.SiLU)
    return SqueezeExcitation(key.mid_channels, key.se_channels, scale_activation=nn.Hardsigmoid)


class InvertedResidual(nn.Module):
    """MBConv: [1x1 expand] -> k x k depthwise -> [squeeze-excite] -> 1x1 project, skip when shapes allow."""

    def __init__(self, key: OpKey, drop_path: float = 0.0) -> None:
        super().__init__()
        activation = _ACTIVATIONS[key.act]
        mid = key.mid_channels
        layers: list[nn.Module] = []
        if key.expansion != 1:
            layers.append(Conv2dNormActivation(key.in_channels, mid, 1, activation_layer=activation))
        layers.append(Conv2dNormActivation(mid, mid, key.kernel, key.stride, groups=mid, activation_layer=activation))
        if key.se:
            layers.append(squeeze_excite(key))
        layers.append(Conv2dNormActivation(mid, key.out_channels, 1, activation_layer=None))
        self.block = nn.Sequential(*layers)
        self.use_skip = key.has_skip
        self.drop_path = StochasticDepth(drop_path, "row") if self.use_skip and drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + self.drop_path(out) if self.use_skip else out


class Classifier(nn.Module):
    """Global average pool (when the input is larger than 1x1), dropout, linear."""

    def __init__(self, key: OpKey, dropout: float = 0.0) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1) if key.in_size > 1 else nn.Identity()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.linear = nn.Linear(key.in_channels, key.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(torch.flatten(self.pool(x), 1)))


def build_op(key: OpKey, dropout: float = 0.0, drop_path: float = 0.0) -> nn.Module:
    """A single layer as a module: the unit a device profile measures."""
    activation = _ACTIVATIONS[key.act]
    if key.op == "expanded_conv":
        return InvertedResidual(key, drop_path)
    if key.op == "Conv":
        return Conv2dNormActivation(key.in_channels, key.out_channels, key.kernel, key.stride, activation_layer=activation)
    if key.op == "Conv_1":
        return Conv2dNormActivation(key.in_channels, key.out_channels, 1, activation_layer=activation)
    if key.op == "Conv_2":
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(key.in_channels, key.out_channels, 1), activation())
    return Classifier(key, dropout)


def build_model(space: SearchSpace, arch: Arch, dropout: float = 0.0, drop_path: float = 0.0) -> nn.Sequential:
    """The network of ``arch``; ``drop_path`` is the last block's stochastic-depth rate (linear ramp)."""
    keys = space.op_keys(arch)
    block_count = sum(key.op == "expanded_conv" for key in keys)
    modules, block_index = [], 0
    for key in keys:
        rate = drop_path * block_index / max(block_count - 1, 1) if key.op == "expanded_conv" else 0.0
        block_index += key.op == "expanded_conv"
        modules.append(build_op(key, dropout=dropout, drop_path=rate))
    return nn.Sequential(*modules)


def input_shape(space: SearchSpace, arch: Arch, batch: int = 1) -> tuple[int, int, int, int]:
    return (batch, space.in_channels, arch.resolution, arch.resolution)


def count_flops(module: nn.Module, shape: tuple[int, ...]) -> int:
    """FLOPs of one forward pass (torch's counter: a multiply-add is 2 FLOPs)."""
    was_training = module.training
    module.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(torch.zeros(shape, device=_device_of(module)))
    module.train(was_training)
    return int(counter.get_total_flops())


def count_params(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def _device_of(module: nn.Module) -> torch.device:
    parameter = next(module.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


@dataclass(frozen=True)
class OpCost:
    flops: int
    params: int


@lru_cache(maxsize=65536)
def op_cost(key: OpKey) -> OpCost:
    """FLOPs and parameters of one layer, counted on the meta device (cached: keys repeat a lot)."""
    with torch.device("meta"):
        module = build_op(key)
    return OpCost(count_flops(module, (1, key.in_channels, key.in_size, key.in_size)), count_params(module))


def arch_cost(space: SearchSpace, arch: Arch) -> OpCost:
    """FLOPs and parameters of ``arch`` as the sum over its layers (equal to the built model's)."""
    costs = [op_cost(key) for key in space.op_keys(arch)]
    return OpCost(sum(c.flops for c in costs), sum(c.params for c in costs))


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, images: torch.Tensor, batch: int = 64) -> nn.Module:
    """Re-estimate BatchNorm statistics from real images (cumulative average), then switch to eval.

    An untrained network's BatchNorm layers hold mean 0 / variance 1, so its activations fade to
    nothing and every input gives the same output: comparing an exported file with PyTorch on
    such a network proves little. With statistics from real images the outputs depend on the input.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    model.train()
    with torch.random.fork_rng():  # dropout here must not shift a training run's random stream
        for start in range(0, len(images), batch):
            model(images[start : start + batch])
    for norm, momentum in zip(norms, momenta, strict=True):  # later training keeps its usual running average
        norm.momentum = momentum
    return model.eval()
