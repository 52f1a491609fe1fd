"""Elastic layers: one set of weights (the largest), sliced to whatever configuration is active.

As in Once-for-All (``ofa/.../elastic_nn/modules/dynamic_op.py``), a smaller layer is the *first*
channels of the largest one and a smaller kernel its *centre* crop, so every subnetwork shares the
weights of the supernet and can be copied out of it as an ordinary network. A layer's active input
channels are simply those of the tensor it receives; the parent passes the active output channels
and kernel size. :func:`sliced` is the one slicing rule, used both by ``forward`` and by
:meth:`hwnas.supernet.Supernet.extract`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hwnas.opkey import OpKey, make_divisible

ACTIVATION_FUNCTIONS = {"relu": F.relu, "relu6": F.relu6, "hswish": F.hardswish, "silu": F.silu}  # as hwnas.builder's


def sliced(tensor: torch.Tensor, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """The part of ``tensor`` a smaller layer of ``shape`` uses: first entries along dims 0-1, centre crop along the rest."""
    if tensor.dim() != len(shape):
        raise ValueError(f"cannot slice a tensor of shape {tuple(tensor.shape)} to {tuple(shape)}")
    index: list[slice] = []
    for dim, (have, want) in enumerate(zip(tensor.shape, shape, strict=True)):
        if want > have:
            raise ValueError(f"cannot slice a tensor of shape {tuple(tensor.shape)} to the larger {tuple(shape)}")
        start = 0 if dim < 2 else (have - want) // 2
        index.append(slice(start, start + want))
    return tensor[tuple(index)]


def permute_along(tensor: torch.Tensor, dim: int, order: torch.Tensor) -> None:
    """Reorder ``tensor`` along ``dim`` by ``order``, in place (same storage and memory layout: an optimizer holding
    it, or a channels-last training step, sees the same tensor)."""
    tensor.copy_(tensor.index_select(dim, order.to(tensor.device)))


class DynamicConv2d(nn.Module):
    """A convolution over the first in/out channels and the centre crop of its largest kernel.

    The depthwise variant (``depthwise=True``) has one filter per channel, so its output channels
    and groups are the active input channels; its kernel is what varies.
    """

    def __init__(
        self,
        max_in: int,
        max_out: int,
        max_kernel: int = 1,
        stride: int = 1,
        depthwise: bool = False,
        bias: bool = False,
        transformed_kernels: tuple[int, ...] = (),
    ) -> None:
        super().__init__()
        if depthwise and max_in != max_out:
            raise ValueError(f"a depthwise convolution maps channels to themselves, not {max_in} to {max_out}")
        self.max_in, self.max_out, self.max_kernel = max_in, max_out, max_kernel
        self.stride, self.depthwise = stride, depthwise
        self.weight = nn.Parameter(torch.empty(max_out, 1 if depthwise else max_in, max_kernel, max_kernel))
        self.bias = nn.Parameter(torch.empty(max_out)) if bias else None
        # OFA's kernel transformation: each smaller kernel is a learned linear map (identity at first, one per layer
        # and size, shared by the channels) of the next larger one's centre, instead of the centre itself
        self.transformed = tuple(sorted({k for k in transformed_kernels if k < max_kernel}, reverse=True))
        for big, small in zip((max_kernel, *self.transformed), self.transformed, strict=False):
            self.register_parameter(f"transform_{big}to{small}", nn.Parameter(torch.eye(small * small)))
        self.reset_parameters()

    def kernel_weight(self, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
        """The weight a layer of ``shape`` uses: the first channels; a smaller kernel the centre crop of the largest, or
        with the kernel transformation the chain of maps from the largest down to it."""
        weight = sliced(self.weight, (*shape[:2], self.max_kernel, self.max_kernel))
        size = self.max_kernel
        for small in self.transformed:
            if small < shape[-1]:
                break
            centre = sliced(weight, (*shape[:2], small, small))
            matrix = getattr(self, f"transform_{size}to{small}")
            weight, size = F.linear(centre.reshape(-1, small * small), matrix).reshape(centre.shape), small
        return sliced(weight, shape)

    def reset_parameters(self) -> None:
        """MobileNetV3's initialisation (as torchvision's and OFA's): He normal over fan-out, zero bias."""
        nn.init.kaiming_normal_(self.weight, mode="fan_out")
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor, out_channels: int | None = None, kernel: int | None = None) -> torch.Tensor:
        in_channels = x.size(1)
        out_channels = in_channels if self.depthwise else out_channels or self.max_out
        kernel = kernel or self.max_kernel
        weight = self.kernel_weight((out_channels, 1 if self.depthwise else in_channels, kernel, kernel))
        bias = None if self.bias is None else self.bias[:out_channels]
        groups = in_channels if self.depthwise else 1
        return F.conv2d(x, weight, bias, self.stride, (kernel - 1) // 2, groups=groups)  # padding as Conv2dNormActivation's

    def extra_repr(self) -> str:
        kind = "depthwise, " if self.depthwise else ""
        return f"{kind}max_in={self.max_in}, max_out={self.max_out}, max_kernel={self.max_kernel}, stride={self.stride}"


class DynamicBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the first channels of its weight, bias and running statistics.

    In training mode ``F.batch_norm`` gets *views* of the running statistics, so it updates the
    active slice in place and leaves the other channels alone. Being an ``nn.BatchNorm2d``, it is
    reset and recalibrated by :func:`hwnas.builder.recalibrate_batchnorm` like any other.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.size(1)
        factor = 0.0
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch_stats = self.training or self.running_mean is None
        running_mean = None if self.running_mean is None else self.running_mean[:channels]
        running_var = None if self.running_var is None else self.running_var[:channels]
        weight = None if self.weight is None else self.weight[:channels]
        bias = None if self.bias is None else self.bias[:channels]
        return F.batch_norm(x, running_mean, running_var, weight, bias, use_batch_stats, factor, self.eps)


class DynamicLinear(nn.Linear):
    """A linear layer over the first input features (what a narrower last stage feeds it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight[:, : x.size(1)], self.bias)


class DynamicSE(nn.Module):
    """MobileNetV3 squeeze-excite (ReLU, hard-sigmoid gate) over the first channels.

    Its squeeze width follows the active channels as :attr:`hwnas.opkey.OpKey.derived_se_channels`
    derives it (a quarter, rounded to 8), not in proportion to the largest one, so the extracted
    block is the one :func:`hwnas.builder.squeeze_excite` builds. ``fc1`` / ``fc2`` are named as in
    torchvision's ``SqueezeExcitation``.
    """

    def __init__(self, max_channels: int, max_squeeze: int) -> None:
        super().__init__()
        self.fc1 = DynamicConv2d(max_channels, max_squeeze, bias=True)
        self.fc2 = DynamicConv2d(max_squeeze, max_channels, bias=True)

    @staticmethod
    def squeeze_channels(channels: int) -> int:
        return make_divisible(channels // 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.size(1)
        scale = F.adaptive_avg_pool2d(x, 1)
        scale = F.relu(self.fc1(scale, self.squeeze_channels(channels)))
        return F.hardsigmoid(self.fc2(scale, channels)) * x


Sources = list[tuple[str, nn.Module]]  # (name of a layer in the built network, the elastic layer it is sliced from)


class DynamicConvBN(nn.Module):
    """Convolution, BatchNorm and an optional activation: an elastic ``Conv2dNormActivation``."""

    def __init__(
        self,
        max_in: int,
        max_out: int,
        max_kernel: int = 1,
        stride: int = 1,
        depthwise: bool = False,
        transformed_kernels: tuple[int, ...] = (),
    ) -> None:
        super().__init__()
        self.conv = DynamicConv2d(max_in, max_out, max_kernel, stride, depthwise, transformed_kernels=transformed_kernels)
        self.bn = DynamicBatchNorm2d(max_out)

    def forward(
        self, x: torch.Tensor, out_channels: int | None = None, kernel: int | None = None, act: str | None = None
    ) -> torch.Tensor:
        x = self.bn(self.conv(x, out_channels, kernel))
        return x if act is None else ACTIVATION_FUNCTIONS[act](x)

    def sources(self, prefix: str) -> Sources:
        """``Conv2dNormActivation`` calls its convolution ``0`` and its BatchNorm ``1``."""
        return [(f"{prefix}.0", self.conv), (f"{prefix}.1", self.bn)]


class DynamicMBConv(nn.Module):
    """The largest inverted residual of one block position, running the block an :class:`OpKey` describes.

    The key (from ``SearchSpace.op_keys``, so channels are derived exactly as the builder derives
    them) gives the mid and output channels, kernel, squeeze-excite, activation and skip; the
    input channels are those of the tensor. Expansion 1 skips the expand convolution, so the
    depthwise runs on the block's input channels, as :class:`hwnas.builder.InvertedResidual` does.
    The stride is the position's: a stage's first block may have stride 2, the others have 1.
    """

    def __init__(
        self,
        max_in: int,
        max_mid: int,
        max_out: int,
        max_kernel: int,
        stride: int,
        expand: bool,
        max_squeeze: int | None,
        sortable: bool = False,
        transformed_kernels: tuple[int, ...] = (),
    ) -> None:
        super().__init__()
        self.expand = DynamicConvBN(max_in, max_mid) if expand else None
        self.depthwise = DynamicConvBN(max_mid, max_mid, max_kernel, stride, True, transformed_kernels)
        self.se = DynamicSE(max_mid, max_squeeze) if max_squeeze else None
        self.project = DynamicConvBN(max_mid, max_out)
        self.stride = stride
        # its expansion channels may be reordered (sort_mid_channels): it expands for every key it runs; with
        # expansion 1 the depthwise runs on the block's input channels in their own order
        self.sortable = sortable and expand

    def sort_mid_channels(self) -> list[tuple[torch.Tensor, int, torch.Tensor]]:
        """Reorder the expansion channels by importance, most important first (Once-for-All's
        ``re_organize_middle_weights``): a smaller expansion, which takes the first channels, then keeps those that
        matter most. Importance is the L1 norm of the projection's weights reading the channel. The largest block
        computes the same function afterwards (every layer touching the channels is permuted alike, BatchNorm
        statistics too). Returns each (parameter, dimension, order) reordered, for an optimizer's state to follow.
        """
        if not self.sortable or self.expand is None:
            return []
        importance = self.project.conv.weight.detach().abs().sum(dim=(0, 2, 3))
        order = torch.argsort(importance, descending=True, stable=True)
        norms = (self.expand.bn, self.depthwise.bn)
        moved: list[tuple[torch.Tensor, int]] = [(self.expand.conv.weight, 0), (self.depthwise.conv.weight, 0)]
        moved += [(tensor, 0) for bn in norms for tensor in (bn.weight, bn.bias)]
        moved.append((self.project.conv.weight, 1))
        if self.se is not None:
            moved += [(self.se.fc1.weight, 1), (self.se.fc2.weight, 0), (self.se.fc2.bias, 0)]  # type: ignore[list-item]
        statistics = [(tensor, 0) for bn in norms for tensor in (bn.running_mean, bn.running_var)]
        with torch.no_grad():
            for tensor, dim in moved + statistics:  # type: ignore[operator]
                permute_along(tensor, dim, order)
        return [(tensor, dim, order) for tensor, dim in moved]

    def check(self, key: OpKey) -> None:
        """Refuse a key this block cannot run as the builder would (it would compute something else)."""
        fits = key.stride == self.stride and (key.expansion == 1 or self.expand is not None)
        if key.se:
            fits = fits and self.se is not None and self.se.squeeze_channels(key.mid_channels) == key.se_channels
        if not fits:
            raise ValueError(f"block {key.describe()} does not fit this supernet block (stride {self.stride})")

    def forward(self, x: torch.Tensor, key: OpKey) -> torch.Tensor:
        out = x
        if key.expansion != 1:
            out = self.expand(out, key.mid_channels, act=key.act)  # type: ignore[misc]
        out = self.depthwise(out, kernel=key.kernel, act=key.act)
        if key.se:
            out = self.se(out)  # type: ignore[misc]
        out = self.project(out, key.out_channels)
        return x + out if key.has_skip else out

    def sources(self, key: OpKey, prefix: str) -> Sources:
        """Where the layers of ``InvertedResidual(key)`` come from; its ``block`` numbers only the parts present."""
        self.check(key)
        parts: list[nn.Module] = [self.expand] if key.expansion != 1 else []  # type: ignore[list-item]
        parts += [self.depthwise, self.se] if key.se else [self.depthwise]  # type: ignore[list-item]
        parts.append(self.project)
        sources: Sources = []
        for index, part in enumerate(parts):
            name = f"{prefix}.block.{index}"
            sources += part.sources(name) if isinstance(part, DynamicConvBN) else [(name, part)]
        return sources
