"""A network's prunable layers, as Torch-Pruning's dependency graph couples them, and their cost.

Channel pruning never edits a module by hand: Torch-Pruning traces the network, finds every set
of coupled channels (a *group*: an MBConv's expansion channels run through the 1x1 expand
convolution, its BatchNorm, the depthwise convolution, squeeze-excite and the 1x1 projection's
input; a stage's residual channels run through every block of the stage), and removes a channel
from all of them at once. Each group is one decision for the agent: how many of its channels to
keep. Its state is the group's *producer*, the first convolution in forward order whose output
channels the group removes.

FLOPs and parameters of a pruned network are a sum of per-layer terms, each a product of the
layer's kept input and output channel counts, so :class:`PruningGraph` evaluates them for any
policy without building the network: the agent clips thousands of actions against a budget per
search. ``tests/test_pruning.py`` checks the formula against ``torch.utils.flop_counter`` on the
really pruned networks.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from hwnas.errors import UserError

ROUND_TO = 8  # channel counts are multiples of 8 by default: odd widths run slower on real runtimes
MIN_RATIO = 0.2  # AMC's lower bound on a layer's preserve ratio


@dataclass(frozen=True)
class PrunableLayer:
    """One group of coupled channels and the convolution that produces them."""

    index: int
    name: str  # the producer's module name
    channels: int
    choices: tuple[int, ...]  # kept-channel counts allowed, ascending
    kind: str  # "conv", "depthwise" or "linear"
    in_channels: int
    stride: int
    kernel: int
    in_size: int

    def count(self, ratio: float) -> int:
        """The allowed count nearest to ``ratio`` of the channels (never below the smallest choice)."""
        target = ratio * self.channels
        return min(self.choices, key=lambda c: (abs(c - target), -c))

    def largest_at_most(self, limit: int) -> int:
        return max((c for c in self.choices if c <= limit), default=self.choices[0])


@dataclass(frozen=True)
class _Term:
    """One module's share of FLOPs and parameters, as a function of its groups' kept channels."""

    out_groups: tuple[int, ...]  # layers whose channels are (slices of) this module's outputs
    in_groups: tuple[int, ...]  # ... of its inputs (several after a concatenation)
    out_full: int
    in_full: int
    kind: str  # conv, linear, norm, other
    kernel_area: int = 1
    groups: int = 1
    depthwise: bool = False
    positions: int = 1  # output positions (H x W), or rows of a linear layer
    bias: bool = False
    fixed_params: int = 0
    group_channels: tuple[int, ...] = ()  # every prunable layer's full channel count


@dataclass
class PruningGraph:
    """The prunable groups of ``module`` and an analytic FLOPs / parameter model over kept counts."""

    layers: list[PrunableLayer]
    terms: list[_Term] = field(repr=False)
    input_shape: tuple[int, ...]
    rankings: list[list[int]] = field(repr=False)  # per layer: channel indices, most important first
    norm: str = "l1"

    @property
    def full_counts(self) -> list[int]:
        return [layer.channels for layer in self.layers]

    @property
    def min_counts(self) -> list[int]:
        return [layer.choices[0] for layer in self.layers]

    def counts(self, ratios: Sequence[float]) -> list[int]:
        return [layer.count(ratio) for layer, ratio in zip(self.layers, ratios, strict=True)]

    def flops(self, counts: Sequence[int]) -> int:
        return sum(_term_flops(term, counts) for term in self.terms)

    def params(self, counts: Sequence[int]) -> int:
        return sum(_term_params(term, counts) for term in self.terms)

    def layer_flops(self, index: int, counts: Sequence[int] | None = None) -> int:
        """FLOPs of every module whose input or output channels belong to layer ``index``."""
        counts = counts or self.full_counts
        return sum(_term_flops(t, counts) for t in self.terms if index in t.out_groups + t.in_groups)

    def layer_params(self, index: int, counts: Sequence[int] | None = None) -> int:
        counts = counts or self.full_counts
        return sum(_term_params(t, counts) for t in self.terms if index in t.out_groups + t.in_groups)


def _size(term: _Term, counts: Sequence[int]) -> tuple[int, int]:
    """Kept outputs and inputs: the full count less what each of the module's layers removes."""
    out = term.out_full - sum(term.group_channels[g] - counts[g] for g in term.out_groups)
    inp = term.in_full - sum(term.group_channels[g] - counts[g] for g in term.in_groups)
    return out, inp


def _term_flops(term: _Term, counts: Sequence[int]) -> int:
    out, inp = _size(term, counts)
    if term.kind == "conv":
        per_out = 1 if term.depthwise else inp // term.groups
        return 2 * out * per_out * term.kernel_area * term.positions
    if term.kind == "linear":
        return 2 * out * inp * term.positions
    return 0


def _term_params(term: _Term, counts: Sequence[int]) -> int:
    out, inp = _size(term, counts)
    if term.kind == "conv":
        per_out = 1 if term.depthwise else inp // term.groups
        return out * per_out * term.kernel_area + (out if term.bias else 0)
    if term.kind == "linear":
        return out * inp + (out if term.bias else 0)
    if term.kind == "norm":
        return 2 * out if term.bias else 0  # affine weight and bias
    return term.fixed_params


def classifier_of(module: nn.Module) -> nn.Module:
    """The last linear (or 1x1 convolution) layer: its outputs are the classes, never pruned."""
    last = None
    for child in module.modules():
        if isinstance(child, nn.Linear | nn.Conv2d):
            last = child
    if last is None:
        raise UserError("the model has no convolution or linear layer to prune")
    return last


def build_dependency_graph(module: nn.Module, example: torch.Tensor) -> tp.DependencyGraph:
    """Torch-Pruning's traced graph; a network it cannot trace is the user's model, said in one line."""
    try:
        with torch.enable_grad():
            return tp.DependencyGraph().build_dependency(module, example_inputs=example, verbose=False)
    except Exception as error:  # tracing runs arbitrary user modules: any failure means "cannot prune this"
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"Torch-Pruning cannot trace this model's dependency graph ({type(error).__name__}: {first})") from None


def _groups(graph: tp.DependencyGraph, module: nn.Module) -> list[Any]:
    ignored = [classifier_of(module)]
    return list(graph.get_all_groups(ignored_layers=ignored, root_module_types=[nn.Conv2d, nn.Linear]))


def _forward_order(module: nn.Module, example: torch.Tensor) -> tuple[dict[nn.Module, int], dict[nn.Module, tuple]]:
    """Each leaf module's first call index and its (input shape, output shape) on ``example``."""
    order: dict[nn.Module, int] = {}
    shapes: dict[nn.Module, tuple] = {}

    def hook(mod: nn.Module, inputs: tuple, output: Any) -> None:
        if mod not in order and isinstance(output, torch.Tensor) and inputs and isinstance(inputs[0], torch.Tensor):
            order[mod] = len(order)
            shapes[mod] = (tuple(inputs[0].shape), tuple(output.shape))

    leaves = [m for m in module.modules() if not list(m.children())]
    handles = [leaf.register_forward_hook(hook) for leaf in leaves]
    try:
        with torch.no_grad():
            module.eval()(example)
    finally:
        for handle in handles:
            handle.remove()
    return order, shapes


def analyse(
    module: nn.Module, example: torch.Tensor, round_to: int = ROUND_TO, min_ratio: float = MIN_RATIO, norm: str = "l1"
) -> PruningGraph:
    """The prunable layers of ``module`` (forward order), its cost terms and channel rankings; ``module`` is unchanged.

    Channels are ranked once, on the unpruned weights (as AMC does): groups are disjoint, so
    pruning one group never renumbers another's channels, and every policy of a search ranks alike.
    """
    scorer = importance(norm)
    graph = build_dependency_graph(module, example)
    order, shapes = _forward_order(module, example)
    names = {m: n for n, m in module.named_modules()}
    _refuse_grouped(module)
    producers = []
    out_group: dict[nn.Module, list[int]] = {}
    in_group: dict[nn.Module, list[int]] = {}
    for group in _groups(graph, module):
        outs = [dep.target.module for dep, _ in group if graph.is_out_channel_pruning_fn(dep.handler)]
        ins = [dep.target.module for dep, _ in group if graph.is_in_channel_pruning_fn(dep.handler)]
        convs = [m for m in outs if isinstance(m, nn.Conv2d | nn.Linear) and m in order]
        if not convs:
            continue
        producer = min(convs, key=order.__getitem__)
        with torch.no_grad():
            scores = scorer(group)
        # the group's root may not be its producer, but every member shares the channel numbering
        ranking = [int(i) for i in torch.argsort(scores, descending=True, stable=True)]
        producers.append((producer, outs, ins, ranking))
    producers.sort(key=lambda item: order[item[0]])
    layers, rankings = [], []
    for index, (producer, outs, ins, ranking) in enumerate(producers):
        rankings.append(ranking)
        for m in outs:
            out_group.setdefault(m, []).append(index)
        for m in ins:
            if isinstance(m, nn.Module):
                in_group.setdefault(m, []).append(index)
        for m in outs:  # a depthwise convolution's input channels are its output channels
            if _is_depthwise(m):
                in_group.setdefault(m, []).append(index)
        layers.append(_layer(index, names[producer], producer, shapes[producer], round_to, min_ratio))
    channels = tuple(layer.channels for layer in layers)
    terms = [
        _term(m, shapes.get(m), tuple(dict.fromkeys(out_group.get(m, []))), tuple(dict.fromkeys(in_group.get(m, []))), channels)
        for m in module.modules()
        if not list(m.children())
    ]
    return PruningGraph(layers, [t for t in terms if t is not None], tuple(example.shape), rankings, norm)


def _is_depthwise(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups == module.in_channels == module.out_channels


def _layer(index: int, name: str, producer: nn.Module, shape: tuple, round_to: int, min_ratio: float) -> PrunableLayer:
    channels = producer.out_channels if isinstance(producer, nn.Conv2d) else producer.out_features
    kind = "linear" if isinstance(producer, nn.Linear) else ("depthwise" if _is_depthwise(producer) else "conv")
    in_channels = producer.in_channels if isinstance(producer, nn.Conv2d) else producer.in_features
    in_size = shape[0][-1] if len(shape[0]) == 4 else 1
    stride = producer.stride[0] if isinstance(producer, nn.Conv2d) else 1
    kernel = producer.kernel_size[0] if isinstance(producer, nn.Conv2d) else 1
    return PrunableLayer(
        index, name, channels, channel_choices(channels, round_to, min_ratio), kind, in_channels, stride, kernel, in_size
    )


def channel_choices(channels: int, round_to: int, min_ratio: float) -> tuple[int, ...]:
    """Counts a layer may keep: multiples of ``round_to`` from ``min_ratio`` of the channels up, and all of them."""
    step = max(1, round_to)
    if channels <= step:
        return (channels,)
    lowest = max(step, math.ceil(min_ratio * channels / step) * step)
    choices = set(range(lowest, channels + 1, step)) | {channels}
    return tuple(sorted(choices))


def _refuse_grouped(module: nn.Module) -> None:
    """Grouped (not depthwise) convolutions need per-layer group hints Torch-Pruning cannot infer: refused by name."""
    for name, child in module.named_modules():
        if isinstance(child, nn.Conv2d) and child.groups > 1 and not _is_depthwise(child):
            raise UserError(
                f"layer {name} is a grouped convolution ({child.groups} groups): Torch-Pruning's dependency graph "
                "cannot keep its groups consistent, so this model cannot be pruned"
            )


def _term(
    module: nn.Module, shape: tuple | None, out_g: tuple[int, ...], in_g: tuple[int, ...], channels: tuple[int, ...]
) -> _Term | None:
    groups = {"out_groups": out_g, "in_groups": in_g, "group_channels": channels}
    if isinstance(module, nn.Conv2d):
        return _Term(
            out_full=module.out_channels,
            in_full=module.in_channels,
            kind="conv",
            kernel_area=module.kernel_size[0] * module.kernel_size[1],
            groups=module.groups,
            depthwise=_is_depthwise(module),
            positions=math.prod(shape[1][2:]) if shape else 0,
            bias=module.bias is not None,
            **groups,
        )
    if isinstance(module, nn.Linear):
        rows = math.prod(shape[0][1:-1]) if shape else 1
        return _Term(
            out_full=module.out_features, in_full=module.in_features, kind="linear", positions=rows, bias=module.bias is not None,
            **groups,
        )  # fmt: skip
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return _Term(out_g, (), module.num_features, 0, "norm", bias=module.affine, group_channels=channels)
    own = sum(p.numel() for p in module.parameters(recurse=False))
    return _Term((), (), 0, 0, "other", fixed_params=own) if own else None


# ---- applying a policy ---------------------------------------------------------------------------


@dataclass
class Pruned:
    """A physically pruned copy: the module, Torch-Pruning's history (replayable), and kept channels per module."""

    module: nn.Module
    history: list[list[Any]]
    kept_out: dict[str, list[int]]
    kept_in: dict[str, list[int]]


def importance(norm: str) -> tp.importance.Importance:
    """L1 or L2 magnitude summed over every layer of a group (Torch-Pruning's group magnitude)."""
    if norm not in ("l1", "l2"):
        raise UserError(f"importance must be l1 or l2, got {norm!r}")
    return tp.importance.GroupMagnitudeImportance(p=1 if norm == "l1" else 2, group_reduction="mean", normalizer=None)


def apply_counts(module: nn.Module, graph: PruningGraph, counts: Sequence[int]) -> Pruned:
    """Prune a deep copy of ``module`` so layer ``i`` keeps ``counts[i]`` channels, the least important removed."""
    pruned = copy.deepcopy(module).eval()
    example = torch.zeros(graph.input_shape)
    dependency = build_dependency_graph(pruned, example)
    by_name = dict(pruned.named_modules())
    names = {m: n for n, m in pruned.named_modules()}
    kept_out: dict[str, list[int]] = {}
    kept_in: dict[str, list[int]] = {}
    for layer, keep, ranking in zip(graph.layers, counts, graph.rankings, strict=True):
        if keep >= layer.channels:
            continue
        producer = by_name[layer.name]
        pruner = dependency.get_pruner_of_module(producer)
        removed = sorted(ranking[keep:])
        group = dependency.get_pruning_group(producer, pruner.prune_out_channels, removed)
        _record_kept(group, dependency, names, kept_out, kept_in)
        group.prune()
    history = [[name, bool(is_out), [int(i) for i in idxs]] for name, is_out, idxs in dependency.pruning_history()]
    return Pruned(pruned, history, kept_out, kept_in)


def _record_kept(group: Any, dependency: tp.DependencyGraph, names: dict, kept_out: dict, kept_in: dict) -> None:
    """Which of each module's original channels survive this group's pruning (indices of the unpruned module)."""
    for dep, idxs in group:
        target = dep.target.module
        if not isinstance(target, nn.Conv2d | nn.Linear):
            continue
        name = names[target]
        out = dependency.is_out_channel_pruning_fn(dep.handler)
        store = kept_out if out else kept_in
        size = (
            (target.out_channels if out else target.in_channels)
            if isinstance(target, nn.Conv2d)
            else (target.out_features if out else target.in_features)
        )
        current = store.get(name, list(range(size)))
        drop = {int(i) for i in idxs}
        store[name] = [c for position, c in enumerate(current) if position not in drop]
        if _is_depthwise(target) and out:
            kept_in[name] = store[name]
