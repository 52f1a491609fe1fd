"""OpKey: what a latency lookup table is indexed by.

A network is a chain of layers; each layer is fully described by an :class:`OpKey` (its type, input
size and channels, output channels and the block's choices). Every architecture decomposes into
OpKeys and a search space enumerates every OpKey it can produce, so a device profile measures
exactly what a search can ask for.

Layer types, named as in the Once-for-All / ProxylessNAS latency tables so public tables can be
read:

``Conv``           stem: k x k convolution, BN, activation
``expanded_conv``  inverted residual (MBConv): [1x1 expand, BN, act], k x k depthwise, BN, act,
                   [squeeze-excite], 1x1 project, BN, identity skip when shapes allow
``Conv_1``         1x1 convolution, BN, activation (the "final expand" layer)
``Conv_2``         global average pool, then 1x1 convolution with bias and activation, no BN
                   (MobileNetV3's "feature mix" layer)
``Logits``         global average pool when the input is larger than 1x1, then a linear classifier

Keys of networks outside a search space (torchvision models, pruned networks) need two more
things, both optional so that every key of a space keeps its old form:

- an explicit ``mid_channels`` (pruning turns an expansion's 96 channels into 61) and
  ``se_channels`` (the squeeze width). Left at 0 they are derived from ``expansion`` as before; a
  value equal to the derived one is the same key, so the shipped tables still match;
- activations beyond ReLU / h-swish: ``relu6`` (MobileNetV2) and ``silu`` (EfficientNet, whose
  squeeze-excite also differs: squeeze to a quarter of the *input* channels, SiLU, sigmoid gate;
  every other block uses MobileNetV3's: a quarter of the mid channels rounded to 8, ReLU,
  hard-sigmoid gate).

:meth:`OpKey.describe` adds ``-ratio:``, ``-sech:`` or ``-act:`` only for keys that need them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from hwnas.errors import UserError

OP_TYPES = ("Conv", "expanded_conv", "Conv_1", "Conv_2", "Logits")
LAYER_ACTIVATIONS = ("relu", "relu6", "hswish", "silu")
_OFA_ACTIVATIONS = ("relu", "hswish")  # what an OFA key's ``-hs:`` can say
PublicStyle = Literal["ofa", "proxyless"]

_PUBLIC_KEY_RE = re.compile(
    r"(?P<op>Conv|expanded_conv|Conv_1|Conv_2|Logits)"
    r"-input:(?P<ih>\d+)x(?P<iw>\d+)x(?P<ic>\d+)"
    r"-output:(?:(?P<oh>\d+)x(?P<ow>\d+)x)?(?P<oc>\d+)"
    r"(?:-expand:(?P<expand>\d+)-kernel:(?P<kernel>\d+)-stride:(?P<stride>\d+)-idskip:(?P<idskip>[01])"
    r"(?:-se:(?P<se>[01])-hs:(?P<hs>[01]))?)?"
)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor`` without losing more than 10% (as MobileNet does)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


@dataclass(frozen=True, order=True)
class OpKey:
    """One layer, as a latency table sees it. Square inputs only (``in_size`` x ``in_size``).

    ``mid_channels`` / ``se_channels`` of 0 mean "derived from the expansion" and are filled in on
    construction, so ``OpKey(..., expansion=6)`` and ``OpKey(..., expansion=6, mid_channels=144)``
    are one key. An explicit mid count that no expansion ratio gives (a pruned block) keeps an
    ``expansion`` of ``round(mid / in)`` (at least 2: it only says an expansion convolution exists).
    """

    op: str
    in_size: int
    in_channels: int
    out_channels: int
    kernel: int = 1
    stride: int = 1
    expansion: int = 1
    se: bool = False
    act: str = "relu"
    mid_channels: int = 0
    se_channels: int = 0

    def __post_init__(self) -> None:
        if self.op not in OP_TYPES:
            raise UserError(f"unknown layer type {self.op!r}; expected one of {OP_TYPES}")
        if self.act not in LAYER_ACTIVATIONS:
            raise UserError(f"unknown activation {self.act!r}; expected one of {LAYER_ACTIVATIONS}")
        if min(self.in_size, self.in_channels, self.out_channels, self.kernel, self.stride, self.expansion) < 1:
            raise UserError(f"layer sizes must be positive: {self!r}")
        if self.expansion == 1 and self.mid_channels not in (0, self.in_channels):
            raise UserError(f"a block without expansion convolution has mid channels = input channels, not {self.mid_channels}")
        if self.mid_channels not in (0, self.derived_mid_channels):
            object.__setattr__(self, "expansion", max(2, round(self.mid_channels / self.in_channels)))
        object.__setattr__(self, "mid_channels", self.mid_channels or self.derived_mid_channels)
        if self.se and self.op == "expanded_conv":
            object.__setattr__(self, "se_channels", self.se_channels or self.derived_se_channels)
        elif self.se_channels:
            raise UserError("se_channels given for a layer without squeeze-excite")

    @property
    def out_size(self) -> int:
        if self.op in ("Conv_2", "Logits"):
            return 1
        return (self.in_size - 1) // self.stride + 1

    @property
    def derived_mid_channels(self) -> int:
        """The mid channels ``expansion`` gives (what a space's key has)."""
        return self.in_channels if self.expansion == 1 else make_divisible(self.in_channels * self.expansion)

    @property
    def derived_se_channels(self) -> int:
        """EfficientNet squeezes to a quarter of the block's input; MobileNetV3 / OFA to a quarter of mid, rounded to 8."""
        if self.act == "silu":
            return max(1, self.in_channels // 4)
        return make_divisible(self.mid_channels // 4)

    @property
    def has_skip(self) -> bool:
        return self.op == "expanded_conv" and self.stride == 1 and self.in_channels == self.out_channels

    def describe(self) -> str:
        """Canonical, human-readable, unique key: the OFA key plus what OFA keys leave implicit."""
        text = self.to_public(style="ofa")
        if self.op == "Conv":
            text += f"-kernel:{self.kernel}-stride:{self.stride}"
        if self.op in ("Conv", "Conv_1", "Conv_2"):
            text += f"-hs:{int(self.act == 'hswish')}"
        if self.op == "expanded_conv" and self.mid_channels != self.derived_mid_channels:
            text += f"-ratio:{self.expansion}"
        if self.se and self.se_channels != self.derived_se_channels:
            text += f"-sech:{self.se_channels}"
        if self.act not in _OFA_ACTIVATIONS and self.op != "Logits":
            text += f"-act:{self.act}"
        return text

    def to_json(self) -> dict[str, Any]:
        """Field values; derived channel counts are left out, so a space's key writes what it always wrote."""
        data = dict(self.__dict__)
        if self.mid_channels == self.derived_mid_channels:
            del data["mid_channels"]
        if not self.se or self.se_channels == self.derived_se_channels:
            del data["se_channels"]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OpKey:
        return cls(**data)

    def to_public(self, style: PublicStyle = "ofa") -> str:
        """The OFA (``expand`` = mid channels, ``-se/-hs`` suffix) or ProxylessNAS key string."""
        text = f"{self.op}-input:{self.in_size}x{self.in_size}x{self.in_channels}-output:"
        if self.op == "Logits":
            return text + f"{self.out_channels}"
        text += f"{self.out_size}x{self.out_size}x{self.out_channels}"
        if self.op != "expanded_conv":
            return text
        expand = self.mid_channels if style == "ofa" else self.expansion
        text += f"-expand:{expand}-kernel:{self.kernel}-stride:{self.stride}-idskip:{int(self.has_skip)}"
        if style == "ofa":
            text += f"-se:{int(self.se)}-hs:{int(self.act == 'hswish')}"
        return text

    @classmethod
    def from_public(cls, key: str, style: PublicStyle = "ofa", act: str = "relu", kernel: int = 3) -> OpKey:
        """Read an OFA or ProxylessNAS key.

        Public keys leave out what their table held fixed (the stem kernel, activations when the key
        has no ``-hs``): ``act`` and ``kernel`` supply those.
        """
        match = _PUBLIC_KEY_RE.fullmatch(key.strip())
        if match is None:
            raise UserError(f"unrecognised latency-table key {key!r}")
        parts = match.groupdict()
        if parts["ih"] != parts["iw"]:
            raise UserError(f"non-square input in key {key!r} is not supported")
        op, in_size, in_c, out_c = parts["op"], int(parts["ih"]), int(parts["ic"]), int(parts["oc"])
        if op == "expanded_conv":
            return _expanded_conv_from_public(parts, in_size, in_c, out_c, style, act, key)
        if op == "Conv":
            stride = in_size // int(parts["oh"]) if parts["oh"] else 1
            return cls(op, in_size, in_c, out_c, kernel=kernel, stride=stride, act=act)
        return cls(op, in_size, in_c, out_c, act=act if op != "Logits" else "relu")


def _expanded_conv_from_public(
    parts: dict[str, str | None], in_size: int, in_c: int, out_c: int, style: PublicStyle, act: str, key: str
) -> OpKey:
    if parts["expand"] is None:
        raise UserError(f"expanded_conv key without expand/kernel/stride: {key!r}")
    expand, kernel, stride = int(parts["expand"]), int(parts["kernel"]), int(parts["stride"])  # type: ignore[arg-type]
    se = parts["se"] == "1"
    if parts["hs"] is not None:
        act = "hswish" if parts["hs"] == "1" else "relu"
    expansion = expand if style == "proxyless" else _ratio_from_mid(in_c, expand, key)
    op_key = OpKey("expanded_conv", in_size, in_c, out_c, kernel, stride, expansion, se, act)
    if int(parts["idskip"] or 0) != int(op_key.has_skip):
        raise UserError(f"key {key!r} says idskip:{parts['idskip']}, but its shapes say otherwise")
    return op_key


def _ratio_from_mid(in_channels: int, mid: int, key: str) -> int:
    if mid == in_channels:
        return 1
    for ratio in range(2, 13):
        if make_divisible(in_channels * ratio) == mid:
            return ratio
    raise UserError(f"key {key!r}: expand:{mid} is no whole expansion ratio of {in_channels} channels")
