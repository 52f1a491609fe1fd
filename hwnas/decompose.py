"""Any supported network -> the chain of OpKeys a latency table and the layer models answer for.

A network built by hwnas is its OpKeys by construction; a torchvision MobileNetV2 / V3, MnasNet or
EfficientNet, or a network whose channels were pruned, is not. :func:`decompose` runs the module
once with a forward hook on every block and leaf, then reads the layers off what ran, in order:

- *blocks* (inverted residuals of hwnas, torchvision's MobileNetV2 / V3, MnasNet, EfficientNet) become
  one ``expanded_conv`` each: expansion, depthwise kernel and stride, squeeze-excite (and its width),
  activation and mid channels are read from the block's own convolutions, so a pruned block's
  61 mid channels are 61, not the 96 its expansion ratio would say;
- a convolution + BatchNorm + activation outside a block is the stem ``Conv`` (or ``Conv_1`` when
  it is 1x1, stride 1); MnasNet's flat depthwise-separable stem convolution is an ``expanded_conv``
  without expansion;
- after global pooling, a linear or 1x1 convolution followed by an activation is ``Conv_2``
  (MobileNetV3's "feature mix"), and a final linear is ``Logits``.

Hooks see modules, not functional calls; MnasNet and MobileNetV2 pool with ``x.mean`` /
``adaptive_avg_pool2d`` in ``forward``, which shows up as a linear whose input is the previous
layer's channels: that is a global pool, and the only gap between layers that is accepted. Any
other gap, or a module of another kind, is refused naming the first layer it cannot read. Last,
the parameters of the layers read must add up to the module's own: a decomposition that missed
something is refused rather than predicted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torchvision.ops import SqueezeExcitation, StochasticDepth

from hwnas.builder import InvertedResidual, count_params, op_cost
from hwnas.errors import UserError
from hwnas.opkey import OpKey

ACTIVATION_NAMES: dict[type[nn.Module], str] = {nn.ReLU: "relu", nn.ReLU6: "relu6", nn.Hardswish: "hswish", nn.SiLU: "silu"}
_PASS_THROUGH = (nn.Dropout, nn.Identity, nn.Flatten, StochasticDepth)
_SKIP_ATTRIBUTES = ("use_skip", "use_res_connect", "apply_residual")  # hwnas, torchvision MobileNet/EfficientNet, MnasNet


TORCHVISION_MODELS = (
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "mnasnet0_5",
    "mnasnet0_75",
    "mnasnet1_0",
    "mnasnet1_3",
    "efficientnet_b0",
)
RANDOM_WEIGHTS_SEED = 0


def torchvision_model(name: str, width: float | None = None) -> nn.Module:
    """A torchvision network with seeded random weights (nothing is downloaded), in eval mode.

    ``width`` is the width multiplier: MobileNets' ``width_mult``, MnasNet's ``alpha`` (replacing
    the one in its name) and EfficientNet's ``width_mult`` (b0's block configuration, any width).
    """
    import torchvision
    from torchvision.models import efficientnet, mnasnet

    if name not in TORCHVISION_MODELS:
        raise UserError(f"torchvision model {name!r} is not one decompose reads; supported: {', '.join(TORCHVISION_MODELS)}")
    if width is not None and not 0.05 <= width <= 4.0:
        raise UserError(f"width multiplier {width} is out of range (0.05-4)")
    with torch.random.fork_rng():
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        if width is None:
            module = torchvision.models.get_model(name, weights=None)
        elif name.startswith("mobilenet"):
            module = torchvision.models.get_model(name, weights=None, width_mult=width)
        elif name.startswith("mnasnet"):
            module = mnasnet.MNASNet(width)
        else:
            setting, last_channel = efficientnet._efficientnet_conf("efficientnet_b0", width_mult=width, depth_mult=1.0)
            module = efficientnet.EfficientNet(setting, dropout=0.2, last_channel=last_channel)
    return module.eval()


def parse_torchvision(text: str) -> tuple[str, float | None, int | None]:
    """``NAME[?width=W&resolution=R]`` (the part after ``torchvision:``) -> (name, width, resolution)."""
    name, _, query = text.partition("?")
    values: dict[str, str] = {}
    for part in filter(None, query.split("&")):
        field_name, sep, value = part.partition("=")
        if not sep or field_name not in ("width", "resolution") or field_name in values:
            raise UserError(f"bad torchvision query {part!r} in {text!r}: expected width=W and/or resolution=R, once each")
        values[field_name] = value
    try:
        width = float(values["width"]) if "width" in values else None
        resolution = int(values["resolution"]) if "resolution" in values else None
    except ValueError:
        raise UserError(f"bad torchvision query in {text!r}: width is a number, resolution a whole number") from None
    if resolution is not None and not 8 <= resolution <= 1024:
        raise UserError(f"resolution {resolution} is out of range (8-1024)")
    return name, width, resolution


def block_types() -> tuple[type[nn.Module], ...]:
    """Inverted-residual block classes read as one ``expanded_conv`` each."""
    from torchvision.models.efficientnet import MBConv
    from torchvision.models.mnasnet import _InvertedResidual
    from torchvision.models.mobilenetv2 import InvertedResidual as MobileNetV2Block
    from torchvision.models.mobilenetv3 import InvertedResidual as MobileNetV3Block

    return (InvertedResidual, MobileNetV2Block, MobileNetV3Block, MBConv, _InvertedResidual)


@dataclass(frozen=True)
class Unit:
    """One block or leaf module as it ran: its qualified name, the module, input and output shapes."""

    name: str
    module: nn.Module
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]

    @property
    def label(self) -> str:
        return f"{self.name or '(root)'} ({type(self.module).__name__})"


def decompose(module: nn.Module, input_shape: Sequence[int]) -> list[OpKey]:
    """The layers of ``module`` for an input of ``input_shape`` (N, C, H, W; square), stem to classifier."""
    shape = tuple(int(value) for value in input_shape)
    if len(shape) != 4 or shape[2] != shape[3]:
        raise UserError(f"input shape must be (N, C, H, W) with H == W, got {list(shape)}")
    units = record_units(module, shape)
    keys = _Reader(units, shape).read()
    _check_parameters(module, keys)
    return keys


def record_units(module: nn.Module, shape: tuple[int, ...]) -> list[Unit]:
    """Blocks and leaves outside blocks, in the order they ran on zeros of ``shape``."""
    blocks = block_types()
    inside: set[int] = set()
    watched: list[tuple[str, nn.Module]] = []
    for name, child in module.named_modules():
        if id(child) in inside:
            continue
        if isinstance(child, blocks):
            inside.update(id(grandchild) for grandchild in child.modules() if grandchild is not child)
            watched.append((name, child))
        elif not any(True for _ in child.children()):
            watched.append((name, child))
    units: list[Unit] = []
    handles = [
        child.register_forward_hook(lambda mod, args, out, name=name: units.append(_unit(name, mod, args, out)))
        for name, child in watched
    ]
    was_training = module.training
    try:
        module.eval()
        with torch.no_grad():
            module(torch.zeros(shape, device=_device_of(module)))
    except (RuntimeError, ValueError, TypeError) as error:
        raise UserError(f"module does not run on an input of shape {list(shape)}: {str(error).splitlines()[0]}") from None
    finally:
        for handle in handles:
            handle.remove()
        module.train(was_training)
    return units


def _unit(name: str, module: nn.Module, args: tuple[object, ...], out: object) -> Unit:
    first = args[0] if args else None
    in_shape = tuple(first.shape) if isinstance(first, torch.Tensor) else ()
    out_shape = tuple(out.shape) if isinstance(out, torch.Tensor) else ()
    return Unit(name, module, in_shape, out_shape)


def _device_of(module: nn.Module) -> torch.device:
    parameter = next(module.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _unsupported(unit: Unit, why: str = "") -> UserError:
    return UserError(f"cannot decompose the network: unsupported layer {unit.label}" + (f" ({why})" if why else ""))


class _Reader:
    """Reads OpKeys off the recorded units, tracking the current feature map (channels, size)."""

    def __init__(self, units: list[Unit], shape: tuple[int, ...]) -> None:
        self.units, self.position = units, 0
        self.channels, self.size = shape[1], shape[2]
        self.pooled_from: int | None = None  # spatial size before a global pool module, until a linear/conv reads it
        self.keys: list[OpKey] = []

    def read(self) -> list[OpKey]:
        while self.position < len(self.units):
            unit = self.units[self.position]
            self._check_continuity(unit)
            if isinstance(unit.module, block_types()):
                self._emit(block_key(unit))
            elif isinstance(unit.module, _PASS_THROUGH):
                self.position += 1
            elif isinstance(unit.module, nn.Conv2d):
                self._convolution(unit)
            elif isinstance(unit.module, nn.AdaptiveAvgPool2d | nn.AvgPool2d):
                self._global_pool(unit)
            elif isinstance(unit.module, nn.Linear):
                self._linear(unit)
            else:
                raise _unsupported(unit)
        if not self.keys:
            raise UserError("cannot decompose the network: it has no layers decompose can read")
        return self.keys

    # ---- bookkeeping ----------------------------------------------------------------------
    def _check_continuity(self, unit: Unit) -> None:
        """A unit must consume what the previous one made; only a global pool may happen unseen."""
        if isinstance(unit.module, _PASS_THROUGH) or not unit.in_shape:
            return
        if len(unit.in_shape) == 4:
            here = (unit.in_shape[1], unit.in_shape[2])
            if unit.in_shape[2] != unit.in_shape[3]:
                raise _unsupported(unit, f"non-square input {list(unit.in_shape)}")
            if here != (self.channels, self.size):
                raise _unsupported(unit, f"its input {list(unit.in_shape)} is not what the layer before made")
        elif len(unit.in_shape) == 2 and unit.in_shape[1] != self.channels:
            raise _unsupported(unit, f"its input {list(unit.in_shape)} is not what the layer before made")

    def _emit(self, key: OpKey, consumed: int = 1) -> None:
        self.keys.append(key)
        self.position += consumed
        self.channels = key.out_channels
        self.size = key.out_size

    def _peek(self, offset: int) -> Unit | None:
        index = self.position + offset
        return self.units[index] if index < len(self.units) else None

    def _activation_at(self, offset: int) -> str | None:
        unit = self._peek(offset)
        return ACTIVATION_NAMES.get(type(unit.module)) if unit is not None else None

    # ---- layer kinds ----------------------------------------------------------------------
    def _convolution(self, unit: Unit) -> None:
        conv: nn.Conv2d = unit.module  # type: ignore[assignment]
        kernel, stride = _square(unit, conv.kernel_size, "kernel"), _square(unit, conv.stride, "stride")
        if conv.dilation not in ((1, 1), 1):
            raise _unsupported(unit, "dilated convolution")
        if self.pooled_from is not None:  # pooled -> 1x1 conv with bias -> activation: Conv_2
            act = self._activation_at(1)
            if kernel != 1 or act is None:
                raise _unsupported(unit, "after global pooling only a 1x1 convolution with an activation is read")
            key = OpKey("Conv_2", self.pooled_from, conv.in_channels, conv.out_channels, act=act)
            self.pooled_from = None
            self._emit(key, consumed=2)
            return
        if conv.groups > 1:
            self._separable(unit, conv, kernel, stride)
            return
        act = self._activation_at(2)
        if not isinstance(getattr(self._peek(1), "module", None), nn.BatchNorm2d) or act is None:
            raise _unsupported(unit, "a convolution outside a block must be followed by BatchNorm and an activation")
        op = "Conv_1" if kernel == 1 and stride == 1 else "Conv"
        key = OpKey(op, self.size, conv.in_channels, conv.out_channels, kernel=kernel, stride=stride, act=act)
        self._emit(key, consumed=3)

    def _separable(self, unit: Unit, depthwise: nn.Conv2d, kernel: int, stride: int) -> None:
        """MnasNet's stem: depthwise conv, BN, act, 1x1 conv, BN (an expanded_conv without expansion)."""
        parts = [self._peek(offset) for offset in range(1, 5)]
        kinds = (nn.BatchNorm2d, None, nn.Conv2d, nn.BatchNorm2d)
        act = self._activation_at(2)
        shaped = all(
            part is not None and (kind is None or isinstance(part.module, kind)) for part, kind in zip(parts, kinds, strict=True)
        )
        if not (depthwise.groups == depthwise.in_channels == depthwise.out_channels) or not shaped or act is None:
            raise _unsupported(unit, "grouped convolution that is not a depthwise-separable convolution")
        project: nn.Conv2d = parts[2].module  # type: ignore[union-attr,assignment]
        if project.kernel_size != (1, 1) or project.groups != 1:
            raise _unsupported(unit, "depthwise convolution not followed by a 1x1 projection")
        following = self._activation_at(5)
        if following is not None:
            raise _unsupported(parts[3], "a projection with an activation is not an inverted residual")  # type: ignore[arg-type]
        key = OpKey("expanded_conv", self.size, depthwise.in_channels, project.out_channels, kernel, stride, 1, act=act)
        if key.has_skip:
            raise _unsupported(unit, "a flat depthwise-separable convolution has no residual, but its shapes allow one")
        self._emit(key, consumed=5)

    def _global_pool(self, unit: Unit) -> None:
        if len(unit.out_shape) != 4 or unit.out_shape[2:] != (1, 1):
            raise _unsupported(unit, "only global pooling (to 1x1) is read")
        self.pooled_from = self.size
        self.size = 1
        self.position += 1

    def _linear(self, unit: Unit) -> None:
        linear: nn.Linear = unit.module  # type: ignore[assignment]
        in_size = self.pooled_from if self.pooled_from is not None else self.size  # a functional pool leaves no unit
        self.pooled_from = None
        act = self._activation_at(1)
        if act is not None:  # MobileNetV3's classifier: Linear + h-swish on pooled features = feature mix
            key = OpKey("Conv_2", in_size, linear.in_features, linear.out_features, act=act)
            self._emit(key, consumed=2)
            return
        self._emit(OpKey("Logits", in_size, linear.in_features, linear.out_features))


def _square(unit: Unit, value: int | tuple[int, ...] | str, what: str) -> int:
    values = (value, value) if isinstance(value, int) else tuple(value)
    if len(values) != 2 or values[0] != values[1] or not isinstance(values[0], int):
        raise _unsupported(unit, f"non-square {what} {value}")
    return int(values[0])


def block_key(unit: Unit) -> OpKey:
    """One inverted-residual block as an ``expanded_conv`` OpKey, read from its own layers."""
    block = unit.module
    se_modules = [module for module in block.modules() if isinstance(module, SqueezeExcitation)]
    in_se = {id(inner) for se in se_modules for inner in se.modules()}
    _refuse_unknown_leaves(unit, in_se)
    convs = [module for module in block.modules() if isinstance(module, nn.Conv2d) and id(module) not in in_se]
    if len(convs) not in (2, 3) or len(se_modules) > 1:
        raise _unsupported(
            unit, f"{len(convs)} convolutions and {len(se_modules)} squeeze-excite; expected [expand], depthwise, project"
        )
    expand, depthwise, project = (convs[0], convs[1], convs[2]) if len(convs) == 3 else (None, convs[0], convs[1])
    if not (depthwise.groups == depthwise.in_channels == depthwise.out_channels):
        raise _unsupported(unit, "its middle convolution is not depthwise")
    if expand is not None and (expand.kernel_size != (1, 1) or expand.groups != 1):
        raise _unsupported(unit, "its expansion convolution is not 1x1")
    act = _block_activation(unit, in_se)
    in_channels = expand.in_channels if expand is not None else depthwise.in_channels
    se_channels = _se_channels(unit, se_modules[0], act) if se_modules else 0
    key = OpKey(
        "expanded_conv",
        unit.in_shape[2],
        in_channels,
        project.out_channels,
        kernel=_square(unit, depthwise.kernel_size, "kernel"),
        stride=_square(unit, depthwise.stride, "stride"),
        expansion=1 if expand is None else 6,
        se=bool(se_modules),
        act=act,
        mid_channels=depthwise.in_channels,
        se_channels=se_channels,
    )
    skip = next((getattr(block, name) for name in _SKIP_ATTRIBUTES if hasattr(block, name)), None)
    if skip is not None and bool(skip) != key.has_skip:
        raise _unsupported(unit, f"its residual connection is {'on' if skip else 'off'}, its shapes say otherwise")
    return key


def _refuse_unknown_leaves(unit: Unit, in_se: set[int]) -> None:
    known = (nn.Conv2d, nn.BatchNorm2d, *ACTIVATION_NAMES, *_PASS_THROUGH)
    for name, module in unit.module.named_modules():
        if id(module) in in_se or any(True for _ in module.children()):
            continue
        if not isinstance(module, known):
            inner = Unit(f"{unit.name}.{name}", module, (), ())
            raise _unsupported(inner)


def _block_activation(unit: Unit, in_se: set[int]) -> str:
    names = {ACTIVATION_NAMES[type(m)] for m in unit.module.modules() if type(m) in ACTIVATION_NAMES and id(m) not in in_se}
    if len(names) != 1:
        raise _unsupported(unit, f"expected one activation type in the block, found {sorted(names) or 'none'}")
    return names.pop()


def _se_channels(unit: Unit, se: SqueezeExcitation, act: str) -> int:
    """The squeeze width; the SE's activations must be the style its block's activation implies."""
    inner, gate = type(se.activation), type(se.scale_activation)
    expected = (nn.SiLU, nn.Sigmoid) if act == "silu" else (nn.ReLU, nn.Hardsigmoid)
    if (inner, gate) != expected:
        raise _unsupported(
            unit,
            f"squeeze-excite with {inner.__name__}/{gate.__name__} in a {act} block (expected {expected[0].__name__}/"
            f"{expected[1].__name__})",
        )
    return int(se.fc1.out_channels)


def _check_parameters(module: nn.Module, keys: list[OpKey]) -> None:
    """The layers read must hold exactly the module's parameters, or something was missed."""
    read = sum(op_cost(key).params for key in keys)
    actual = count_params(module)
    if read != actual:
        raise UserError(
            f"cannot decompose the network: its layers as read hold {read:,} parameters, the module {actual:,} "
            "(it contains layers decompose does not see)"
        )
