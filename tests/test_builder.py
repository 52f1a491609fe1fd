from __future__ import annotations

import pytest
import torch
import torchvision
from hypothesis import given, settings

from hwnas.arch import Arch
from hwnas.builder import InvertedResidual, arch_cost, build_model, build_op, count_flops, count_params, input_shape, op_cost
from hwnas.opkey import OpKey
from hwnas.presets import get_space

from strategies import preset_archs

# MobileNetV3-Large in the OFA space. Stage by stage as in torchvision's mobilenet_v3_large; its
# fractional expansions 200/80 = 2.5 and 184/80 = 2.3 (stage 4, blocks 2-4) become 3, the nearest
# OFA choice; everything else (kernels, SE, h-swish, widths, depths 2/3/4/2/3) is exact.
MBV3_LARGE = (
    "ofa-mbv3:r224_c16[k3e1]_c24[k3e4,k3e3]_c40[k5e3s,k5e3s,k5e3s]_c80[k3e6h,k3e3h,k3e3h,k3e3h]"
    "_c112[k3e6sh,k3e6sh]_c160[k5e6sh,k5e6sh,k5e6sh]"
)


@settings(max_examples=60, deadline=None)
@given(preset_archs())
def test_model_flops_and_params_equal_the_sum_over_its_layers(arch: Arch) -> None:
    space = get_space(arch.space)
    with torch.device("meta"):
        model = build_model(space, arch)
    cost = arch_cost(space, arch)
    assert count_flops(model, input_shape(space, arch)) == cost.flops
    assert count_params(model) == cost.params
    assert cost.flops == sum(op_cost(key).flops for key in space.op_keys(arch))


@settings(max_examples=40, deadline=None)
@given(preset_archs())
def test_output_shape_is_batch_by_classes(arch: Arch) -> None:
    space = get_space(arch.space)
    with torch.device("meta"):
        model = build_model(space, arch).eval()
        out = model(torch.zeros(input_shape(space, arch, batch=3)))
    assert tuple(out.shape) == (3, space.num_classes)


@settings(max_examples=15, deadline=None)
@given(preset_archs(("default",)))
def test_default_models_run_for_real(arch: Arch) -> None:
    space = get_space(arch.space)
    model = build_model(space, arch, dropout=0.2, drop_path=0.1)
    out = model(torch.randn(input_shape(space, arch, batch=2)))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.sum().backward()


def test_each_layer_output_shape_matches_its_key() -> None:
    space = get_space("default")
    arch = space.sample(0)
    x = torch.randn(input_shape(space, arch))
    for key in space.op_keys(arch):
        assert x.shape[1] == key.in_channels and x.shape[-1] == key.in_size
        x = build_op(key).eval()(x)
        assert x.shape[1] == key.out_channels
        if x.ndim == 4:
            assert x.shape[-1] == key.out_size


def test_residual_only_when_shapes_allow() -> None:
    assert InvertedResidual(OpKey("expanded_conv", 8, 16, 16, 3, 1, 3)).use_skip
    assert not InvertedResidual(OpKey("expanded_conv", 8, 16, 16, 3, 2, 3)).use_skip
    assert not InvertedResidual(OpKey("expanded_conv", 8, 16, 24, 3, 1, 3)).use_skip


def test_expansion_one_has_no_expand_convolution() -> None:
    block = InvertedResidual(OpKey("expanded_conv", 8, 16, 24, 3, 1, 1))
    convs = [m for m in block.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 2 and convs[0].groups == 16


def test_ofa_preset_builds_mobilenet_v3_large_within_five_percent() -> None:
    space = get_space("ofa-mbv3")
    ours = count_params(build_model(space, space.parse(MBV3_LARGE)))
    reference = count_params(torchvision.models.mobilenet_v3_large())
    assert abs(ours - reference) / reference < 0.05


def test_flop_counter_is_torchs_counting_multiply_adds_twice() -> None:
    key = OpKey("Conv_1", 4, 8, 16)
    assert op_cost(key).flops == 2 * 4 * 4 * 8 * 16


@pytest.mark.parametrize("op", ["Conv", "Conv_1", "Conv_2", "Logits"])
def test_head_and_stem_layers_build(op: str) -> None:
    key = OpKey(op, 8, 16, 32, kernel=3 if op == "Conv" else 1, stride=2 if op == "Conv" else 1, act="hswish")
    out = build_op(key).eval()(torch.randn(1, 16, 8, 8))
    assert out.shape[:2] == (1, 32)
