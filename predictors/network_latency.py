"""Latency of any network on a profiled device: table entries where they exist, layer models for the rest.

``network_latency(module, input_shape, table)`` decomposes the module into OpKeys
(:func:`hwnas.decompose.decompose`), looks every layer up in the device's table, and asks the
device's layer models (:mod:`hwnas.predictors.layer_models`, fitted on that table's measured
layers) for the layers the table does not hold. The answer says, per layer, where its figure
came from, and how many layers were looked up and how many modelled.

Each layer in a table was timed alone, so each paid the runtime's per-call cost (entering the
runtime, binding input and output) once; a network pays it once in all. When the table measured
the near-empty layer :data:`~hwnas.latency_tables.sampling.OVERHEAD_KEY` (``profile --layers``
always does), that cost is taken off every layer but one (``call_overhead_ms``). Without it, the
sum is the plain table sum, which overestimates small networks.

Whole networks add something beyond their layers, and what they add differs by family (a network-level
correction fitted on FLOPs, parameters or activations did not carry from one torchvision family to another
on the host). So a table that measured a family's networks at sampled widths and resolutions
(``hwnas profile --zoo-networks N``: its ``zoo_networks``) corrects that family: ``family_factor`` is the
geometric mean of measured / predicted-from-layers over the family's measured networks, and a network of that
family (``network_latency(..., family="mobilenet_v2")``; ``hwnas latency torchvision:NAME`` passes it) is
multiplied by it. Networks of other families, and tables without zoo networks, get factor 1.

A network with modelled layers also gets an 80% interval (``low_ms``, ``high_ms``): each modelled
layer's interval from its model's held-out errors (:meth:`LayerLatencyModel.predict_interval`),
summed as if their errors went together (one device's layer models err alike, so they do not
cancel), looked-up layers taken as measured.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from hwnas.decompose import decompose
from hwnas.latency_tables.sampling import OVERHEAD_KEY, ZooNetwork, zoo_family
from hwnas.latency_tables.table import LatencyTable
from hwnas.opkey import OpKey
from hwnas.predictors.layer_models import LayerLatencyModel


@dataclass(frozen=True)
class LayerLatency:
    key: OpKey
    ms: float
    source: str  # "table" or "model"
    how: str = ""  # for a modelled layer, which model answered (LayerLatencyModel.how)


@dataclass(frozen=True)
class NetworkLatency:
    """``total_ms`` = (sum of the layers' ``ms`` - (layers - 1) x ``call_overhead_ms``) x ``family_factor`` x ``scale``."""

    total_ms: float
    layers: tuple[LayerLatency, ...]
    looked_up: int
    modelled: int
    call_overhead_ms: float = 0.0
    scale: float = 1.0
    low_ms: float | None = None  # the 80% interval (None: every layer looked up)
    high_ms: float | None = None
    family_factor: float = 1.0  # measured / predicted over the table's zoo networks of this network's family
    family_networks: int = 0  # how many of them

    @property
    def looked_up_share(self) -> float:
        return self.looked_up / len(self.layers) if self.layers else 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "total_ms": self.total_ms,
            "looked_up": self.looked_up,
            "modelled": self.modelled,
            "call_overhead_ms": self.call_overhead_ms,
            "scale": self.scale,
            "interval_ms": None if self.low_ms is None else [self.low_ms, self.high_ms],
            "family_factor": self.family_factor,
            "family_networks": self.family_networks,
            "layers": [
                {"key": layer.key.describe(), "ms": layer.ms, "source": layer.source, **({"how": layer.how} if layer.how else {})}
                for layer in self.layers
            ],
        }


_MODELS: dict[int, tuple[LatencyTable, LayerLatencyModel]] = {}


def layer_model(table: LatencyTable) -> LayerLatencyModel:
    """The layer models fitted on ``table``'s entries (fitted once per table object in this process)."""
    cached = _MODELS.get(id(table))
    if cached is not None and cached[0] is table:
        return cached[1]
    entries = [entry for key, entry in table.entries.items() if key != OVERHEAD_KEY]
    model = LayerLatencyModel().fit([entry.op for entry in entries], [entry.median_ms for entry in entries])
    if len(_MODELS) > 8:
        _MODELS.clear()
    _MODELS[id(table)] = (table, model)
    return model


def call_overhead(table: LatencyTable) -> float:
    """The runtime's per-call cost as the table measured it (0 when it did not)."""
    entry = table.entries.get(OVERHEAD_KEY)
    return entry.median_ms if entry is not None else 0.0


def keys_latency(keys: Sequence[OpKey], table: LatencyTable, *, scale: float = 1.0, family: str | None = None) -> NetworkLatency:
    """Latency of a chain of layers; ``scale`` multiplies the result (a drift ratio, ``--rescale``), ``family`` (a
    torchvision model name) applies that family's correction when the table measured networks of it."""
    factor, measured_networks = family_factors(table).get(zoo_family(family), (1.0, 0)) if family else (1.0, 0)
    return _layers_latency(keys, table, scale * factor, factor, measured_networks)


def _layers_latency(
    keys: Sequence[OpKey], table: LatencyTable, multiplier: float, factor: float = 1.0, measured_networks: int = 0
) -> NetworkLatency:
    keys = list(keys)
    missing = list(dict.fromkeys(key for key in keys if key not in table.entries))
    models = layer_model(table) if missing else None
    answers = models.predict_with_interval(missing) if models is not None else ((), (), ())
    modelled, lows, highs = (dict(zip(missing, column, strict=True)) for column in answers)
    hows = dict(zip(missing, models.how(missing), strict=True)) if models is not None else {}
    layers = tuple(
        LayerLatency(key, table.entries[key].median_ms, "table")
        if key in table.entries
        else LayerLatency(key, float(modelled[key]), "model", hows[key])
        for key in keys
    )
    overhead = call_overhead(table)
    shared = overhead * max(len(layers) - 1, 0)
    total = sum(layer.ms for layer in layers) - shared
    looked_up = sum(layer.source == "table" for layer in layers)
    low = high = None
    if missing:
        measured = sum(layer.ms for layer in layers if layer.source == "table") - shared
        low = (measured + sum(float(lows[layer.key]) for layer in layers if layer.source == "model")) * multiplier
        high = (measured + sum(float(highs[layer.key]) for layer in layers if layer.source == "model")) * multiplier
    scale = multiplier / factor
    return NetworkLatency(
        total * multiplier, layers, looked_up, len(layers) - looked_up, overhead, scale, low, high, factor, measured_networks
    )


_FACTORS: dict[int, tuple[LatencyTable, dict[str, tuple[float, int]]]] = {}


def family_factors(table: LatencyTable) -> dict[str, tuple[float, int]]:
    """Per family, the geometric mean of measured / predicted-from-layers over the table's zoo networks, and their
    count (computed once per table object in this process)."""
    cached = _FACTORS.get(id(table))
    if cached is not None and cached[0] is table:
        return cached[1]
    logs: dict[str, list[float]] = {}
    for network in table.zoo_networks:
        zoo = ZooNetwork(network["family"], float(network["width"]), int(network["resolution"]))
        predicted = _layers_latency(zoo.layers(), table, 1.0).total_ms
        logs.setdefault(zoo_family(zoo.family), []).append(math.log(network["median_ms"] / predicted))
    factors = {family: (math.exp(sum(values) / len(values)), len(values)) for family, values in logs.items()}
    if len(_FACTORS) > 8:
        _FACTORS.clear()
    _FACTORS[id(table)] = (table, factors)
    return factors


def network_latency(
    module: nn.Module,
    input_shape: tuple[int, int, int, int],
    table: LatencyTable,
    *,
    scale: float = 1.0,
    family: str | None = None,
) -> NetworkLatency:
    """Latency of ``module`` on ``table``'s device for an input of ``input_shape`` (batch 1)."""
    return keys_latency(decompose(module, input_shape), table, scale=scale, family=family)
