"""The supernet of a search space: its largest network, running (or handing out) any of its architectures.

:class:`Supernet` holds one elastic block per block position of the space, each as large as any
architecture needs there. :meth:`Supernet.set_active` picks a subnetwork (per stage its width and
its first ``depth`` blocks, per block kernel, expansion, squeeze-excite and activation; the
resolution is just the input size), ``forward`` runs it, and :meth:`Supernet.extract` copies it out
as exactly the network :func:`hwnas.builder.build_model` builds, so it is an ordinary hwnas network.

Every block is configured from the :class:`~hwnas.opkey.OpKey` that ``space.op_keys(arch)`` gives
for it, so strides, skips and channel counts (rounded mid and squeeze widths) are the builder's by
construction rather than derived a second time.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hwnas.arch import ACTIVATIONS, Arch, Block, Stage
from hwnas.builder import build_model, build_op
from hwnas.opkey import OpKey
from hwnas.space import Rng, SearchSpace, StageSpace
from hwnas.supernet.elastic import (
    ACTIVATION_FUNCTIONS,
    DynamicConv2d,
    DynamicConvBN,
    DynamicLinear,
    DynamicMBConv,
    Sources,
    permute_along,
    sliced,
)


class Supernet(nn.Module):
    """Once-for-All style weight-sharing network over every architecture of ``space``. See the module docstring."""

    def __init__(self, space: SearchSpace, kernel_transform: bool = False) -> None:
        super().__init__()
        self.space = space
        self.kernel_transform = kernel_transform  # OFA's kernel transformation (DynamicConv2d), recorded in supernet.json
        self.stem = build_op(space.op_keys(self.largest_arch())[0])  # nothing of the stem is searched
        stages, in_widths = [], (space.stem_channels,)
        for spec in space.stages:
            blocks = [
                _largest_block(spec, in_widths if position == 0 else spec.widths, position, kernel_transform)
                for position in range(max(spec.depths))
            ]
            stages.append(nn.ModuleList(blocks))
            in_widths = spec.widths
        self.stages = nn.ModuleList(stages)
        channels = max(in_widths)
        self.final_expand = None if space.final_expand is None else DynamicConvBN(channels, space.final_expand)
        channels = space.final_expand or channels
        self.feature_mix = None if space.feature_mix is None else DynamicConv2d(channels, space.feature_mix, bias=True)
        self.classifier = DynamicLinear(space.feature_mix or channels, space.num_classes)
        self.set_active(self.largest_arch())

    # ---- choosing and running a subnetwork ------------------------------------------------
    def set_active(self, arch: Arch) -> None:
        """Run ``arch`` from now on (it must belong to the space: ArchError otherwise)."""
        self._active_keys: tuple[tuple[OpKey, ...], ...] = self._stage_keys(arch)
        self.active_arch: Arch = arch

    def _stage_keys(self, arch: Arch) -> tuple[tuple[OpKey, ...], ...]:
        """The ``expanded_conv`` keys of ``arch``, stage by stage (``op_keys`` validates ``arch``)."""
        blocks = iter(key for key in self.space.op_keys(arch) if key.op == "expanded_conv")
        stage_keys = tuple(tuple(itertools.islice(blocks, stage.depth)) for stage in arch.stages)
        for modules, keys in zip(self.stages, stage_keys, strict=True):
            for block, key in zip(modules, keys, strict=False):
                block.check(key)
        return stage_keys

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for modules, keys in zip(self.stages, self._active_keys, strict=True):
            for block, key in zip(modules, keys, strict=False):  # the first `depth` blocks
                x = block(x, key)
        if self.final_expand is not None:
            x = self.final_expand(x, act=self.space.head_act)
        if self.feature_mix is not None:
            x = ACTIVATION_FUNCTIONS[self.space.head_act](self.feature_mix(F.adaptive_avg_pool2d(x, 1)))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    # ---- copying a subnetwork out -----------------------------------------------------------
    @torch.no_grad()
    def extract(self, arch: Arch) -> nn.Sequential:
        """``build_model(space, arch)`` holding this supernet's weights and BatchNorm statistics for ``arch``.

        The network is built by the builder and filled with ``load_state_dict(strict=True)``, so
        its structure is the builder's and every one of its tensors comes from the supernet. It is
        on the supernet's device and in its training mode; the supernet's active arch is unchanged.
        """
        model = build_model(self.space, arch)
        state: dict[str, torch.Tensor] = {}
        for prefix, source in self._sources(arch):
            own = source.state_dict()
            for name, tensor in model.get_submodule(prefix).state_dict().items():
                convolution = name == "weight" and isinstance(source, DynamicConv2d)  # a kernel possibly transformed
                state[f"{prefix}.{name}"] = source.kernel_weight(tensor.shape) if convolution else sliced(own[name], tensor.shape)
        model.load_state_dict(state, strict=True)
        return model.to(self.classifier.weight.device).train(self.training)

    def _sources(self, arch: Arch) -> Sources:
        """(name in ``build_model``'s Sequential, module of the supernet its tensors are sliced from), layer by layer."""
        sources: Sources = [("0", self.stem)]
        index = 1
        for modules, keys in zip(self.stages, self._stage_keys(arch), strict=True):
            for block, key in zip(modules, keys, strict=False):
                sources += block.sources(key, str(index))
                index += 1
        if self.final_expand is not None:
            sources += self.final_expand.sources(str(index))
            index += 1
        if self.feature_mix is not None:
            sources.append((f"{index}.1", self.feature_mix))  # Conv_2 is Sequential(pool, conv, act)
            index += 1
        sources.append((f"{index}.linear", self.classifier))
        return sources

    # ---- training ------------------------------------------------------------------------------
    def sort_channels(self, optimizer: torch.optim.Optimizer | None = None) -> int:
        """Reorder every block's expansion channels by importance (:meth:`DynamicMBConv.sort_mid_channels`), and
        ``optimizer``'s per-parameter state (momentum, Adam's moments) with them, so training goes on as if nothing
        moved; the largest subnetwork computes the same function. Returns how many blocks were reordered."""
        moved = [entry for stage in self.stages for block in stage for entry in block.sort_mid_channels()]
        state = optimizer.state if optimizer is not None else {}
        with torch.no_grad():
            for tensor, dim, order in moved:
                for value in state.get(tensor, {}).values():
                    if isinstance(value, torch.Tensor) and value.shape == tensor.shape:
                        permute_along(value, dim, order)
        return len({id(order) for _, _, order in moved})

    # ---- architectures ------------------------------------------------------------------------
    def sample_arch(self, rng: Rng = None) -> Arch:
        """A uniformly sampled architecture, as ``SearchSpace.sample`` draws it."""
        return self.space.sample(rng)

    def largest_arch(self) -> Arch:
        """Largest choice everywhere: resolution, width, depth, kernel, expansion, SE on, h-swish (when allowed)."""
        return _extreme_arch(self.space, max)

    def smallest_arch(self) -> Arch:
        """Smallest choice everywhere: resolution, width, depth, kernel, expansion, SE off, ReLU (when allowed)."""
        return _extreme_arch(self.space, min)


def _largest_block(spec: StageSpace, in_widths: tuple[int, ...], position: int, kernel_transform: bool) -> DynamicMBConv:
    """The block at ``position`` of a stage, sized for every key the space can put there.

    Channel counts come from OpKey itself over all (input width, width, expansion, SE, activation)
    choices, so the rounding of mid and squeeze channels is exactly the keys' (and the builder's).
    """
    stride = spec.stride if position == 0 else 1  # as SearchSpace.op_keys
    keys = [
        OpKey("expanded_conv", 1, in_c, out_c, max(spec.kernels), stride, expansion, se, act)
        for in_c, out_c, expansion, se, act in itertools.product(in_widths, spec.widths, spec.expansions, spec.se, spec.acts)
    ]
    squeeze = max((key.se_channels for key in keys if key.se), default=None)
    expand = any(key.expansion != 1 for key in keys)
    mid = max(key.mid_channels for key in keys)
    sortable = 1 not in spec.expansions
    transformed = spec.kernels if kernel_transform else ()
    return DynamicMBConv(max(in_widths), mid, max(spec.widths), max(spec.kernels), stride, expand, squeeze, sortable, transformed)


def _extreme_arch(space: SearchSpace, pick: Callable[..., Any]) -> Arch:
    """Every choice ``pick``-ed (activations ordered as ``ACTIVATIONS``: ReLU before h-swish)."""
    stages = []
    for spec in space.stages:
        block = Block(pick(spec.kernels), pick(spec.expansions), pick(spec.se), pick(spec.acts, key=ACTIVATIONS.index))
        stages.append(Stage(pick(spec.widths), (block,) * pick(spec.depths)))
    return Arch(space.name, pick(space.resolutions), tuple(stages))
