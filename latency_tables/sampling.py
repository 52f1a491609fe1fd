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
"""

from __future__ import annotations

import math
import random

from hwnas.opkey import LAYER_ACTIVATIONS, OpKey, make_divisible

WIDTH_CAP = 12_000  # max (spatial size x mid channels); MobileNetV2 / EfficientNet at 224 peak at 112 x 96 = 10,752
MAX_MID = 1600
OVERHEAD_KEY = OpKey("Logits", 1, 8, 8)  # a layer that does almost nothing: what one call costs the runtime
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
