"""Baselines at the same budget as the agent: uniform pruning and Torch-Pruning's global magnitude pruning.

Both are sized against the same resource model as the agent, by bisection on their one knob
(the shared preserve ratio; MetaPruner's global pruning ratio), to the largest network that meets
the budget.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch_pruning as tp
from torch import nn

from hwnas.pruning.budget import Resource
from hwnas.pruning.structure import Pruned, PruningGraph, classifier_of

BISECTION_STEPS = 14


def uniform_counts(graph: PruningGraph, resource: Resource, target: float) -> list[int]:
    """The same preserve ratio for every layer: the largest that meets ``target``."""
    low, high = 0.0, 1.0
    if resource.cost(graph.full_counts) <= target:
        return graph.full_counts
    for _ in range(BISECTION_STEPS * 2):
        middle = (low + high) / 2
        if resource.cost(graph.counts([middle] * len(graph.layers))) <= target:
            low = middle
        else:
            high = middle
    return graph.counts([low] * len(graph.layers))


def global_magnitude(
    module: nn.Module, graph: PruningGraph, resource: Resource, target: float, round_to: int, max_ratio: float, norm: str
) -> Pruned:
    """``MetaPruner(global_pruning=True)``, its ratio bisected to ``target``.

    Importance is group magnitude with Torch-Pruning's default mean normaliser: global ranking
    compares channels across layers, which raw norms of differently sized layers would bias.
    """

    def prune(ratio: float) -> tuple[Pruned, list[int]]:
        copy_ = copy.deepcopy(module).eval()
        importance = tp.importance.GroupMagnitudeImportance(p=1 if norm == "l1" else 2)
        with torch.enable_grad():
            pruner = tp.pruner.MetaPruner(
                copy_,
                torch.zeros(graph.input_shape),
                importance=importance,
                global_pruning=True,
                pruning_ratio=ratio,
                max_pruning_ratio=max_ratio,
                ignored_layers=[classifier_of(copy_)],
                round_to=round_to,
            )
            pruner.step()
        history = [[n, bool(o), [int(i) for i in idx]] for n, o, idx in pruner.DG.pruning_history()]
        return Pruned(copy_, history, {}, {}), counts_of(copy_, graph)

    return _bisect(prune, resource, target)


def _bisect(prune: Callable[[float], tuple[Pruned, list[int]]], resource: Resource, target: float) -> Pruned:
    low, high = 0.0, 1.0
    best, _ = prune(0.0)
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2
        candidate, counts = prune(middle)
        if resource.cost(counts) <= target:
            low, best = middle, candidate
        else:
            high = middle
    return best


def counts_of(module: nn.Module, graph: PruningGraph) -> list[int]:
    """Kept channels per prunable layer of a pruned copy (read off each layer's producer)."""
    layers = dict(module.named_modules())
    counts = []
    for layer in graph.layers:
        producer = layers[layer.name]
        counts.append(producer.out_channels if isinstance(producer, nn.Conv2d) else producer.out_features)
    return counts
