"""Sampled layer configurations beyond a search space, for fitting per-layer latency models.

A table answers exactly for the layers it measured; a layer model answers for the rest, and it is
only as good as the spread of layers it was fitted on. As nn-Meter's kernel sampling does, draw
layers from the ranges real mobile networks use rather than from one space: input sizes 2-224
(log-uniform: 96-px networks end at 3x3, 224-px ones start at 224), channels 8-1280, depthwise
kernels 3/5/7, strides 1/2, expansions 1-6 (including mid channel counts no ratio gives, as pruning
leaves them), squeeze-excite on/off and every activation. A *width cap* keeps (size x channels) to
what real networks hold, so no sample is a 224x224x1280 layer no phone network has and no profile
could afford.

The list depends only on ``(count, seed)`` and is a prefix of the list for a larger count: asking
for more layers later measures only the new ones.

:func:`sample_zoo_layers` is nn-Meter's other prior: the layers of real networks (torchvision's
MobileNetV2 / V3, MnasNet and EfficientNet-B0) at random widths and resolutions. Uniform samples
spread thinly where those networks live (hundreds of channels on 3x3-7x7 maps), and that is where
the layer models erred most; zoo layers put measurements there.
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection, Iterator
from dataclasses import dataclass

from hwnas.opkey import LAYER_ACTIVATIONS, OpKey, make_divisible

WIDTH_CAP = 12_000  # max (spatial size x mid channels); MobileNetV2 / EfficientNet at 224 peak at 112 x 96 = 10,752
MAX_MID = 1600
OVERHEAD_KEY = OpKey("Logits", 1, 8, 8)  # a layer that does almost nothing: what one call costs the runtime
ZOO_FAMILIES = ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "mnasnet1_0", "efficientnet_b0")
ZOO_WIDTHS = (0.35, 1.4)  # width multipliers drawn log-uniform in this range, in steps of 0.05
ZOO_RESOLUTIONS = (64, 256)  # input sizes drawn uniform in this range, multiples of 8
_OP_WEIGHTS = (("expanded_conv", 0.70), ("Conv", 0.08), ("Conv_1", 0.10), ("Conv_2", 0.06), ("Logits", 0.06))


def sample_layers(count: int, seed: int = 0) -> list[OpKey]:
    """``count`` distinct layers; the first is always :data:`OVERHEAD_KEY` (the runtime's per-call cost)."""
    rng, keys, seen = random.Random(seed), [], set()
    if count > 0:
        keys.append(OVERHEAD_KEY)
        seen.add(OVERHEAD_KEY)
    attempts = 0
    while len(keys) < count and attempts < 100 * count:
        attempts += 1
        key = sample_layer(rng)
        if key not in seen:
            seen.add(key)
            keys.append(key)
    return keys


def sample_layer(rng: random.Random) -> OpKey:
    op = rng.choices([name for name, _ in _OP_WEIGHTS], [weight for _, weight in _OP_WEIGHTS])[0]
    return {
        "expanded_conv": _block,
        "Conv": _stem,
        "Conv_1": _pointwise,
        "Conv_2": _feature_mix,
        "Logits": _logits,
    }[op](rng)


def _log_uniform(rng: random.Random, low: float, high: float) -> int:
    return round(math.exp(rng.uniform(math.log(low), math.log(max(low, high)))))


def _channels(rng: random.Random, low: int, high: int) -> int:
    """Log-uniform channels; half of them rounded to a multiple of 8 as unpruned networks have."""
    value = _log_uniform(rng, low, high)
    return max(low, make_divisible(value)) if rng.random() < 0.5 else value


def _block(rng: random.Random) -> OpKey:
    size = _log_uniform(rng, 2, 224)
    stride = 2 if rng.random() < 0.3 and size > 2 else 1
    cap = max(8, WIDTH_CAP // size)
    in_c = _channels(rng, 8, min(640, max(8, cap // 3)))
    expansion = 1 if rng.random() < 0.15 else rng.randint(2, 6)
    mid = in_c
    if expansion != 1:
        mid = min(max(in_c * expansion + rng.randint(-in_c // 2, in_c // 2), in_c + 1), max(min(cap, MAX_MID), in_c + 1))
    out_c = in_c if stride == 1 and rng.random() < 0.35 else _channels(rng, 8, min(640, max(8, cap // 3)))
    se = rng.random() < 0.4
    act = rng.choice(LAYER_ACTIVATIONS)
    return OpKey("expanded_conv", size, in_c, out_c, rng.choice((3, 5, 7)), stride, expansion, se, act, mid_channels=mid)


def _stem(rng: random.Random) -> OpKey:
    size = _log_uniform(rng, 16, 224)
    kernel = 3 if rng.random() < 0.8 else rng.choice((5, 7))
    stride = 2 if rng.random() < 0.8 else 1
    return OpKey("Conv", size, rng.choice((1, 3)), _channels(rng, 8, 64), kernel, stride, act=rng.choice(LAYER_ACTIVATIONS))


def _pointwise(rng: random.Random) -> OpKey:
    size = _log_uniform(rng, 2, 28)
    out_c = _channels(rng, 64, min(1280, max(64, WIDTH_CAP // size)))
    return OpKey("Conv_1", size, _channels(rng, 16, 480), out_c, act=rng.choice(LAYER_ACTIVATIONS))


def _feature_mix(rng: random.Random) -> OpKey:
    size = 1 if rng.random() < 0.2 else _log_uniform(rng, 2, 14)
    act = rng.choice(LAYER_ACTIVATIONS)
    return OpKey("Conv_2", size, _channels(rng, 96, 1280), _channels(rng, 256, 1536), act=act)


def _logits(rng: random.Random) -> OpKey:
    size = 1 if rng.random() < 0.5 else _log_uniform(rng, 2, 14)
    return OpKey("Logits", size, _channels(rng, 32, 1536), rng.choice((10, 100, 1000)))


@dataclass(frozen=True)
class ZooNetwork:
    """A torchvision network at a width multiplier and an input size (seeded random weights: latency only)."""

    family: str  # a name in hwnas.decompose.TORCHVISION_MODELS
    width: float
    resolution: int

    @property
    def label(self) -> str:
        """As ``hwnas latency torchvision:LABEL`` reads it."""
        return f"{self.family}?width={self.width:g}&resolution={self.resolution}"

    def layers(self) -> list[OpKey]:
        from hwnas.decompose import decompose, torchvision_model

        return decompose(torchvision_model(self.family, self.width), (1, 3, self.resolution, self.resolution))

    def to_json(self) -> dict[str, object]:
        return {"family": self.family, "width": self.width, "resolution": self.resolution}


def zoo_family(name: str) -> str:
    """The family a torchvision model name belongs to: MnasNet's widths are one family (``mnasnet0_5`` = ``mnasnet``
    at width 0.5), every other name is its own."""
    return "mnasnet" if name.startswith("mnasnet") else name


def sample_zoo_networks(seed: int = 0) -> Iterator[ZooNetwork]:
    """Endless draws of torchvision networks at random widths and input sizes."""
    rng = random.Random(seed)
    while True:
        family = rng.choice(ZOO_FAMILIES)
        width = round(math.exp(rng.uniform(*map(math.log, ZOO_WIDTHS))) * 20) / 20
        yield ZooNetwork(family, width, 8 * rng.randint(ZOO_RESOLUTIONS[0] // 8, ZOO_RESOLUTIONS[1] // 8))


def draw_zoo_networks(count: int, seed: int = 0, exclude: Collection[tuple[str, float | None, int]] = ()) -> list[ZooNetwork]:
    """The first ``count`` distinct draws, leaving out ``exclude`` ((family, width, resolution): a benchmark's test
    networks; MnasNet names compare by family, a width of None is the model's own)."""
    left_out = {(zoo_family(name), _own_width(name, width), size) for name, width, size in exclude}
    chosen: list[ZooNetwork] = []
    for network in sample_zoo_networks(seed):
        if len(chosen) >= count:
            return chosen
        if (zoo_family(network.family), network.width, network.resolution) not in left_out and network not in chosen:
            chosen.append(network)
    return chosen


def _own_width(name: str, width: float | None) -> float:
    if width is not None:
        return width
    return float(name.removeprefix("mnasnet").replace("_", ".")) if name.startswith("mnasnet") else 1.0


def sample_zoo_layers(count: int, seed: int = 0, exclude: Collection[OpKey] = ()) -> list[OpKey]:
    """``count`` distinct layers of torchvision networks drawn by :func:`sample_zoo_networks`, in draw order.

    ``exclude`` holds layers to leave out (a benchmark's test networks, so none of their layers is
    measured for them). Like :func:`sample_layers`, the list for a count is a prefix of the list for
    a larger one. The first layer is :data:`OVERHEAD_KEY` unless excluded.
    """
    keys: list[OpKey] = []
    seen = set(exclude)
    if count > 0 and OVERHEAD_KEY not in seen:
        keys.append(OVERHEAD_KEY)
    seen.add(OVERHEAD_KEY)
    draws = sample_zoo_networks(seed)
    for _ in range(20 * count):
        if len(keys) >= count:
            break
        for key in next(draws).layers():
            if key not in seen and len(keys) < count:
                seen.add(key)
                keys.append(key)
    return keys
