"""Any supported network -> OpKeys: the layers read must rebuild the network (FLOPs, parameters, shapes)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hwnas.builder import build_model, build_op, count_flops, count_params, op_cost
from hwnas.decompose import TORCHVISION_MODELS, decompose, parse_torchvision, torchvision_model
from hwnas.errors import UserError
from hwnas.opkey import OpKey
from hwnas.presets import get_space

from strategies import PRESETS


def rebuilt(keys: list[OpKey]) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(*[build_op(key) for key in keys]).eval()


def assert_rebuilds(module: nn.Module, shape: tuple[int, int, int, int]) -> list[OpKey]:
    """The OpKey chain holds exactly the module's FLOPs and parameters and gives its output shape."""
    keys = decompose(module, shape)
    assert sum(op_cost(key).flops for key in keys) == count_flops(module, shape)
    chain = rebuilt(keys)
    assert count_params(chain) == count_params(module)
    with torch.no_grad():
        assert chain(torch.zeros(shape)).shape == module.eval()(torch.zeros(shape)).shape
    return keys


FAST_CASES = [
    ("mobilenet_v2", 0.5, 96),
    ("mobilenet_v3_small", None, 160),
    ("mobilenet_v3_large", 0.75, 96),
    ("mnasnet0_5", None, 96),
    ("mnasnet0_75", None, 128),
    ("mnasnet1_3", None, 96),
    ("efficientnet_b0", None, 96),
]


@pytest.mark.parametrize(("name", "width", "resolution"), FAST_CASES)
def test_torchvision_networks_decompose_into_layers_that_rebuild_them(name: str, width: float | None, resolution: int) -> None:
    keys = assert_rebuilds(torchvision_model(name, width), (1, 3, resolution, resolution))
    assert keys[0].op == "Conv" and keys[-1].op == "Logits" and keys[-1].out_channels == 1000


@pytest.mark.slow
@pytest.mark.parametrize("name", TORCHVISION_MODELS)
@pytest.mark.parametrize("width", [None, 0.5, 1.4])
@pytest.mark.parametrize("resolution", [96, 224])
def test_every_torchvision_model_width_and_resolution(name: str, width: float | None, resolution: int) -> None:
    assert_rebuilds(torchvision_model(name, width), (1, 3, resolution, resolution))


def test_what_the_torchvision_blocks_hold_is_read_from_them() -> None:
    v3 = decompose(torchvision_model("mobilenet_v3_small"), (1, 3, 224, 224))
    mid_88 = next(key for key in v3 if key.mid_channels == 88)  # 24 -> 88 is no whole expansion ratio
    assert mid_88.describe().endswith("-ratio:4") and not mid_88.se and mid_88.act == "relu"
    assert [key.op for key in v3[-3:]] == ["Conv_1", "Conv_2", "Logits"] and v3[-2].in_size == 7 and v3[-1].in_size == 1
    v2 = decompose(torchvision_model("mobilenet_v2"), (1, 3, 224, 224))
    assert {key.act for key in v2 if key.op != "Logits"} == {"relu6"} and v2[-1].in_size == 7
    b0 = decompose(torchvision_model("efficientnet_b0"), (1, 3, 224, 224))
    block = b0[2]  # 16 -> 24, expansion 6: the SE squeezes to a quarter of the block's *input*
    assert block.act == "silu" and block.se and block.se_channels == 4 and block.mid_channels == 96
    mnasnet = decompose(torchvision_model("mnasnet1_0"), (1, 3, 224, 224))
    assert mnasnet[1] == OpKey("expanded_conv", 112, 32, 16, 3, 1, 1)  # the flat separable stem convolution


@pytest.mark.parametrize("preset", PRESETS)
def test_an_hwnas_network_decomposes_into_exactly_its_space_keys(preset: str) -> None:
    space = get_space(preset)
    for seed in range(3):
        arch = space.sample(seed)
        module = build_model(space, arch)
        assert decompose(module, (1, space.in_channels, arch.resolution, arch.resolution)) == list(space.op_keys(arch))


def test_a_channel_pruned_network_decomposes_with_its_real_widths() -> None:
    import torch_pruning as tp

    space = get_space("default")
    arch = space.parse("default:r32_c16[k3e6]_c40[k5e6,k5e3]_c48[k7e3sh]_c80[k3e6sh]")
    torch.manual_seed(0)
    module = build_model(space, arch).eval()
    example = torch.zeros(1, 1, 32, 32)
    linear = [m for m in module.modules() if isinstance(m, nn.Linear)]
    tp.pruner.MetaPruner(
        module, example, importance=tp.importance.MagnitudeImportance(p=1), pruning_ratio=0.4, ignored_layers=linear
    ).step()
    keys = assert_rebuilds(module, (1, 1, 32, 32))
    blocks = [key for key in keys if key.op == "expanded_conv"]
    assert len(blocks) == 5 and all(key.out_channels < width for key, width in zip(blocks, (16, 40, 40, 48, 80), strict=True))
    assert any("-ratio:" in key.describe() for key in blocks)  # mid counts no expansion ratio gives
    assert not set(keys) & set(space.enumerate_op_keys())


def test_an_unsupported_network_is_refused_naming_its_first_unsupported_layer() -> None:
    import torchvision

    with pytest.raises(UserError, match=r"unsupported layer maxpool \(MaxPool2d\)"):
        decompose(torchvision.models.resnet18(weights=None), (1, 3, 64, 64))


class Doubling(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


@pytest.mark.parametrize(
    ("module", "named"),
    [
        (nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(), Doubling()), r"3 \(Doubling\)"),
        (nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU()), r"0 \(Conv2d\)"),
        (nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.GELU()), r"0 \(Conv2d\)"),
        (nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, dilation=2), nn.BatchNorm2d(8), nn.ReLU()), "dilated"),
    ],
)
def test_layers_decompose_cannot_read_are_named(module: nn.Module, named: str) -> None:
    with pytest.raises(UserError, match=named):
        decompose(module, (1, 3, 32, 32))


def test_bad_shapes_and_queries_are_user_errors() -> None:
    with pytest.raises(UserError, match="H == W"):
        decompose(torchvision_model("mnasnet0_5"), (1, 3, 96, 64))
    with pytest.raises(UserError, match="does not run"):
        decompose(torchvision_model("mnasnet0_5"), (1, 1, 96, 96))
    assert parse_torchvision("mobilenet_v2?width=0.5&resolution=160") == ("mobilenet_v2", 0.5, 160)
    assert parse_torchvision("mnasnet1_0") == ("mnasnet1_0", None, None)
    for bad in ("mobilenet_v2?depth=2", "mobilenet_v2?width=x", "mobilenet_v2?resolution=4", "mobilenet_v2?width=1&width=2"):
        with pytest.raises(UserError):
            parse_torchvision(bad)
    with pytest.raises(UserError, match="not one decompose reads"):
        torchvision_model("resnet18", 0.5)


def test_explicit_mid_channels_equal_to_the_derived_ones_are_the_same_key() -> None:
    key = OpKey("expanded_conv", 56, 24, 24, 3, 1, 6)
    assert OpKey("expanded_conv", 56, 24, 24, 3, 1, 6, mid_channels=144) == key
    assert key.to_json() == {
        "op": "expanded_conv", "in_size": 56, "in_channels": 24, "out_channels": 24,
        "kernel": 3, "stride": 1, "expansion": 6, "se": False, "act": "relu",
    }  # fmt: skip
    pruned = OpKey("expanded_conv", 56, 24, 24, 3, 1, 6, mid_channels=61)
    assert pruned.expansion == 3 and pruned.describe().endswith("-expand:61-kernel:3-stride:1-idskip:1-se:0-hs:0-ratio:3")
    assert OpKey.from_json(pruned.to_json()) == pruned
    assert sum(isinstance(m, nn.Conv2d) and m.out_channels == 61 for m in build_op(pruned).modules()) == 2
    with pytest.raises(UserError):
        OpKey("expanded_conv", 56, 24, 24, 3, 1, 1, mid_channels=40)
    with pytest.raises(UserError, match="activation"):
        OpKey("Conv", 32, 3, 16, 3, 2, act="gelu")
