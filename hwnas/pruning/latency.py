"""The latency resource model: the device's predicted latency of the pruned network, for any policy.

``hwnas.predictors.network_latency`` answers for a module: it decomposes it into OpKeys (pruned
widths included), looks each up in the device's table and asks the layer models for widths the
table does not hold. The agent needs the answer for thousands of policies per search, so the
module is decomposed once, and each OpKey channel field (input, output, mid, squeeze) is tied to
the prunable layer whose channels it counts, by pruning each layer once and seeing which fields
move. A policy's latency is then the same sum ``keys_latency`` makes (table or layer model per
key, the runtime's per-call overhead counted once), over keys with the policy's widths; per-key
answers are cached. ``tests/test_pruning.py`` checks it equals ``network_latency`` of the really
pruned module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from torch import nn

from hwnas.decompose import decompose
from hwnas.errors import UserError
from hwnas.latency_tables.table import LatencyTable
from hwnas.opkey import OpKey
from hwnas.predictors.network_latency import call_overhead, keys_latency
from hwnas.pruning.budget import Resource
from hwnas.pruning.structure import PruningGraph, apply_counts

FIELDS = ("in_channels", "out_channels", "mid_channels", "se_channels")


def _with_channels(key: OpKey, channels: dict[str, int]) -> OpKey:
    """``key`` with other widths, built as ``decompose`` builds a block's key (expansion 6 when an expand conv exists,
    the explicit mid count then decides), so it equals the key of the really pruned block."""
    expansion = {"expansion": 6} if key.op == "expanded_conv" and key.expansion != 1 else {}
    return dataclasses.replace(key, **expansion, **channels)


class PredictedLatency:
    """``cost(counts)`` in ms on ``table``'s device, plus how many layers the table held (the rest modelled)."""

    def __init__(self, module: nn.Module, graph: PruningGraph, table: LatencyTable) -> None:
        self.table = table
        self.shape = tuple(graph.input_shape)
        self.keys = decompose(module, self.shape)
        self.links = self._link_fields(module, graph)
        self.overhead = call_overhead(table)
        self._cache: dict[OpKey, float] = {}

    def _link_fields(self, module: nn.Module, graph: PruningGraph) -> dict[tuple[int, str], int]:
        """``(key index, field) -> layer index`` for every channel field a prunable layer changes."""
        links: dict[tuple[int, str], int] = {}
        for layer in graph.layers:
            if len(layer.choices) < 2:
                continue
            probed = self._probe(module, graph, layer.index, layer.choices)
            for position, (before, after) in enumerate(zip(self.keys, probed, strict=True)):
                for name in FIELDS:
                    if getattr(before, name) != getattr(after, name):
                        links[(position, name)] = layer.index
        return links

    def _probe(self, module: nn.Module, graph: PruningGraph, index: int, choices: tuple[int, ...]) -> list[OpKey]:
        """The keys with layer ``index`` pruned; a count that ``decompose`` cannot read (a block whose pruned input
        and output widths happen to match, though it has no residual) is swapped for another."""
        failure: UserError | None = None
        for count in dict.fromkeys((choices[0], choices[len(choices) // 2], choices[-2])):
            counts = graph.full_counts
            counts[index] = count
            try:
                return decompose(apply_counts(module, graph, counts).module, self.shape)
            except UserError as error:
                failure = error
        raise UserError(f"latency budget: {failure}")

    def keys_for(self, counts: Sequence[int]) -> list[OpKey]:
        changes: dict[int, dict[str, int]] = {}
        for (position, name), layer in self.links.items():
            changes.setdefault(position, {})[name] = counts[layer]
        return [_with_channels(key, changes[i]) if i in changes else key for i, key in enumerate(self.keys)]

    def cost(self, counts: Sequence[int]) -> float:
        keys = self.keys_for(counts)
        missing = list(dict.fromkeys(key for key in keys if key not in self._cache))
        if missing:  # one call: the layer models predict all new widths at once
            self._cache.update((layer.key, layer.ms) for layer in keys_latency(missing, self.table).layers)
        return sum(self._cache[key] for key in keys) - self.overhead * max(len(keys) - 1, 0)

    def looked_up(self, counts: Sequence[int]) -> tuple[int, int]:
        """(layers found in the table, layers in all) for a policy."""
        keys = self.keys_for(counts)
        return sum(key in self.table.entries for key in keys), len(keys)

    def resource(self) -> Resource:
        device = self.table.device.get("name", "device")
        return Resource("latency", "ms", self.cost, note=f"predicted on {device}: table entries + layer models")
