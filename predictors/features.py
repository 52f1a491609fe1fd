"""Architecture features for latency prediction, computed from the search space and a latency table.

Why these: a sum of per-layer medians misses what happens *between* layers. Each layer measured
alone pays the runtime's per-call overhead once, so the LUT sum over-counts it about once per
layer (``layers``); fused or cache-friendly neighbours run faster together than apart, which grows
with the activation and weight bytes moved (``act_mb``, ``weight_mb``); and the error differs by
stage because spatial size and channel counts differ (per-stage LUT sums). FLOPs, parameters and
resolution are the classic proxies. Every feature is a plain float, named, so the list a
predictor was trained with is recorded in its sidecar and checked on load.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hwnas.arch import Arch
from hwnas.builder import op_cost
from hwnas.errors import UserError
from hwnas.opkey import OpKey
from hwnas.space import SearchSpace

BYTES_PER_VALUE = 4  # fp32 activations and weights


def feature_names(space: SearchSpace) -> list[str]:
    """The feature list for ``space`` (its length depends on the number of stages)."""
    stages = [f"lut_stage{index}" for index in range(1, len(space.stages) + 1)]
    return [
        "lut_sum",
        "lut_stem",
        *stages,
        "lut_head",
        "layers",
        "blocks",
        "skips",
        "se_blocks",
        "hswish_blocks",
        "mflops",
        "mparams",
        "resolution",
        "act_mb",
        "weight_mb",
    ]


def _activation_values(key: OpKey) -> int:
    """Values a layer reads and writes (input, output, and the expanded tensors inside an MBConv)."""
    inputs = key.in_size * key.in_size * key.in_channels
    outputs = key.out_size * key.out_size * key.out_channels
    if key.op != "expanded_conv":
        return inputs + outputs
    mid = key.mid_channels
    expanded = key.in_size * key.in_size * mid if key.expansion != 1 else 0
    depthwise = key.out_size * key.out_size * mid
    return inputs + outputs + 2 * expanded + 2 * depthwise


def arch_features(space: SearchSpace, entries: dict[OpKey, float], arch: Arch) -> dict[str, float]:
    """Named features of ``arch``; ``entries`` maps each layer to its LUT median (ms)."""
    keys = space.op_keys(arch)
    try:
        lut = [entries[key] for key in keys]
    except KeyError as error:
        raise UserError(f"latency table has no entry for layer {error.args[0].describe()} of {arch.format()}") from None
    features = dict.fromkeys(feature_names(space), 0.0)
    features["lut_sum"] = float(sum(lut))
    features["lut_stem"] = float(lut[0])
    position = 1
    for index, stage in enumerate(arch.stages, start=1):
        features[f"lut_stage{index}"] = float(sum(lut[position : position + stage.depth]))
        position += stage.depth
    features["lut_head"] = float(sum(lut[position:]))
    blocks = [key for key in keys if key.op == "expanded_conv"]
    features["layers"] = float(len(keys))
    features["blocks"] = float(len(blocks))
    features["skips"] = float(sum(key.has_skip for key in blocks))
    features["se_blocks"] = float(sum(key.se for key in blocks))
    features["hswish_blocks"] = float(sum(key.act == "hswish" for key in blocks))
    costs = [op_cost(key) for key in keys]
    features["mflops"] = sum(cost.flops for cost in costs) / 1e6
    features["mparams"] = sum(cost.params for cost in costs) / 1e6
    features["resolution"] = float(arch.resolution)
    features["act_mb"] = sum(_activation_values(key) for key in keys) * BYTES_PER_VALUE / 1e6
    features["weight_mb"] = features["mparams"] * BYTES_PER_VALUE
    return features


def feature_matrix(space: SearchSpace, entries: dict[OpKey, float], archs: Sequence[Arch], names: Sequence[str]) -> np.ndarray:
    """Rows of ``names`` features, one per architecture."""
    rows = []
    for arch in archs:
        features = arch_features(space, entries, arch)
        rows.append([features[name] for name in names])
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(names))
