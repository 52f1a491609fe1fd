"""The elastic supernet runs every architecture of a space exactly as the network ``build_model`` builds for it."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hwnas.arch import Arch
from hwnas.builder import build_model, recalibrate_batchnorm
from hwnas.errors import ArchError
from hwnas.presets import get_space
from hwnas.space import SearchSpace, StageSpace
from hwnas.supernet import DynamicBatchNorm2d, Supernet
from hwnas.supernet.elastic import sliced

from conftest import PRESETS

SAMPLES = 8  # seeded random architectures per preset, besides the largest and the smallest
CASES = ["largest", "smallest", *(f"sample{seed}" for seed in range(SAMPLES))]


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Two threads on a busy two-core machine make a 224x224 forward pass seconds instead of milliseconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> None:
    """Random BatchNorm weights and biases, and random changes to every running mean and variance."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for norm in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
            size = norm.num_features
            norm.weight.copy_(torch.rand(size, generator=generator) + 0.5)
            norm.bias.copy_((torch.rand(size, generator=generator) - 0.5) * 0.4)
            norm.running_mean.add_(torch.randn(size, generator=generator) * 0.2 * norm.running_var.sqrt())
            norm.running_var.mul_(torch.rand(size, generator=generator) + 0.5)


_SUPERNETS: dict[str, Supernet] = {}


def supernet(preset: str) -> Supernet:
    """One supernet per preset, shared by this file's tests."""
    if preset not in _SUPERNETS:
        torch.manual_seed(0)
        _SUPERNETS[preset] = Supernet(get_space(preset))
    return _SUPERNETS[preset]


def images(batch: int, channels: int, resolution: int, seed: int = 1) -> torch.Tensor:
    """Noise plus a coarse random pattern: after global pooling, images of pure noise all look alike."""
    generator = torch.Generator().manual_seed(seed)
    coarse = F.interpolate(torch.randn(batch, channels, 4, 4, generator=generator), size=resolution, mode="bilinear")
    return coarse + 0.5 * torch.randn(batch, channels, resolution, resolution, generator=generator)


def case_arch(net: Supernet, case: str) -> Arch:
    if case == "largest":
        return net.largest_arch()
    if case == "smallest":
        return net.smallest_arch()
    return net.sample_arch(random.Random(int(case.removeprefix("sample"))))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("preset", PRESETS)
def test_extract_is_the_builders_network_and_computes_what_the_supernet_does(preset: str, case: str) -> None:
    net = supernet(preset)
    check_extract_and_forward(net, case_arch(net, case))


def check_extract_and_forward(net: Supernet, arch: Arch) -> None:
    """``extract(arch)`` is ``build_model(space, arch)``, and computes what the supernet computes with ``arch`` active."""
    space = net.space
    # BatchNorm statistics of this arch's own activations, then randomized: statistics far from the
    # activations' own make them fade to a constant, and every input would give the same output
    net.set_active(arch)
    recalibrate_batchnorm(net, images(4, space.in_channels, arch.resolution, seed=0), batch=4)
    randomize_batchnorm(net)

    extracted = net.extract(arch)
    with torch.device("meta"):
        reference = build_model(space, arch)
    assert str(extracted) == str(reference)
    assert [type(m) for m in extracted.modules()] == [type(m) for m in reference.modules()]
    shapes = {name: tuple(tensor.shape) for name, tensor in extracted.state_dict().items()}
    assert shapes == {name: tuple(tensor.shape) for name, tensor in reference.state_dict().items()}

    x = images(2, space.in_channels, arch.resolution)
    with torch.no_grad():
        expected = extracted.eval()(x)
        actual = net.eval()(x)
    assert actual.shape == (2, space.num_classes)
    assert (expected[0] - expected[1]).abs().max() > 1e-2 * expected.abs().max()  # the output depends on the input
    assert torch.allclose(actual, expected, atol=1e-5), (actual - expected).abs().max()


MIXED = SearchSpace(
    name="mixed",
    description="what the presets leave out: expansion 1 among others, SE and activation choices in one stage, "
    "stride-1 stages whose first block has a skip only for some widths, feature mix without final expand",
    in_channels=3,
    num_classes=5,
    resolutions=(16, 24),
    stem_channels=16,
    stem_stride=1,
    stem_kernel=5,
    stages=(
        StageSpace(1, (16, 24), (1, 2, 3), (3, 5), (1, 3, 6), (False, True), ("relu", "hswish")),
        StageSpace(2, (24, 32), (1, 2), (3, 7), (1, 4), (False, True), ("relu", "hswish")),
        StageSpace(1, (24, 32, 40), (2, 3), (5,), (2, 6), (True,), ("hswish",)),
    ),
    feature_mix=64,
)


def _with_kernel_transform(seed: int) -> Supernet:
    """A default-space supernet with OFA's kernel transformation, its matrices moved away from the identity."""
    torch.manual_seed(seed)
    net = Supernet(get_space("default"), kernel_transform=True)
    with torch.no_grad():
        for name, matrix in net.named_parameters():
            if ".transform_" in name:
                matrix.add_(0.2 * torch.randn_like(matrix))
    return net


@pytest.mark.parametrize("case", ["largest", "smallest", "sample0", "sample1", "sample2"])
def test_a_kernel_transformed_supernet_extracts_the_builders_network_with_the_transformed_kernels(case: str) -> None:
    net = _with_kernel_transform(0)
    check_extract_and_forward(net, case_arch(net, case))


def test_the_kernel_transformation_starts_as_the_centre_crop_and_chains_down_to_the_kernel() -> None:
    torch.manual_seed(0)
    fresh = Supernet(get_space("default"), kernel_transform=True)
    conv = fresh.stages[1][0].depthwise.conv  # kernels 3, 5 and 7
    assert conv.transformed == (5, 3)
    assert {name for name, _ in conv.named_parameters()} == {"weight", "transform_7to5", "transform_5to3"}
    for kernel in (3, 5, 7):
        assert torch.equal(conv.kernel_weight((8, 1, kernel, kernel)), sliced(conv.weight, (8, 1, kernel, kernel)))
    moved = _with_kernel_transform(0).stages[1][0].depthwise.conv
    centre = sliced(moved.weight, (8, 1, 5, 5))
    five = F.linear(centre.reshape(8, 25), moved.transform_7to5).reshape(8, 1, 5, 5)
    three = F.linear(sliced(five, (8, 1, 3, 3)).reshape(8, 9), moved.transform_5to3).reshape(8, 1, 3, 3)
    assert torch.allclose(moved.kernel_weight((8, 1, 5, 5)), five) and torch.allclose(moved.kernel_weight((8, 1, 3, 3)), three)
    assert torch.equal(moved.kernel_weight((8, 1, 7, 7)), sliced(moved.weight, (8, 1, 7, 7)))
    plain = Supernet(get_space("default"))
    assert not any(".transform_" in name for name in plain.state_dict())  # off by default: the shipped supernet's keys


@pytest.mark.parametrize("seed", range(6))
def test_a_space_file_with_every_kind_of_choice(seed: int) -> None:
    torch.manual_seed(seed)
    net = Supernet(SearchSpace.from_json(MIXED.to_json()))
    rng = random.Random(seed)
    for arch in (net.largest_arch(), net.smallest_arch(), *(net.sample_arch(rng) for _ in range(4))):
        check_extract_and_forward(net, arch)


def test_extracted_weights_are_copies() -> None:
    net = supernet("default")
    arch = net.smallest_arch()
    extracted = net.extract(arch)
    before = net.state_dict()["stages.0.0.depthwise.conv.weight"].clone()
    with torch.no_grad():
        for parameter in extracted.parameters():
            parameter.add_(1.0)
    assert torch.equal(net.state_dict()["stages.0.0.depthwise.conv.weight"], before)


def _bn_channels_seen(net: Supernet, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, int]]:
    """Forward ``x``, recording how many channels each elastic BatchNorm was given."""
    seen: dict[str, int] = {}
    hooks = [
        module.register_forward_pre_hook(lambda _m, args, name=name: seen.__setitem__(name, args[0].size(1)))
        for name, module in net.named_modules()
        if isinstance(module, DynamicBatchNorm2d)
    ]
    try:
        return net(x), seen
    finally:
        for hook in hooks:
            hook.remove()


@pytest.mark.parametrize("preset", ["default", "ofa-mbv3"])
def test_training_forward_updates_only_the_active_slices_of_the_running_statistics(preset: str) -> None:
    torch.manual_seed(0)
    net = Supernet(get_space(preset))
    randomize_batchnorm(net, seed=3)
    net.train()
    partial = 0
    for seed, arch in enumerate((net.smallest_arch(), net.sample_arch(random.Random(5)))):
        reference = net.extract(arch)  # in training mode, holding the statistics before this step
        before = {name: buffer.clone() for name, buffer in net.named_buffers()}
        net.set_active(arch)
        x = images(4, net.space.in_channels, arch.resolution, seed)
        out, seen = _bn_channels_seen(net, x)
        assert torch.allclose(out, reference(x), atol=1e-5)
        for name, norm in net.named_modules():
            if not isinstance(norm, DynamicBatchNorm2d):
                continue
            channels = seen.get(name, 0)
            partial += 0 < channels < norm.num_features
            for stat in ("running_mean", "running_var"):
                new, old = getattr(norm, stat), before[f"{name}.{stat}"]
                assert torch.equal(new[channels:], old[channels:]), f"{name}.{stat} changed outside its first {channels} channels"
                assert (new[:channels] != old[:channels]).all(), f"{name}.{stat} not updated in its first {channels} channels"
            assert int(norm.num_batches_tracked) == int(before[f"{name}.num_batches_tracked"]) + (channels > 0)
        # the updated slices are the statistics the extracted network computed for itself
        updated = net.extract(arch).state_dict()
        for name, tensor in reference.state_dict().items():
            assert torch.allclose(updated[name], tensor, atol=1e-6), name
    assert partial > 0  # some BatchNorm really ran on a strict slice


def test_recalibrating_the_supernet_equals_recalibrating_the_extracted_network() -> None:
    torch.manual_seed(0)
    net = Supernet(get_space("default"))
    arch = net.sample_arch(random.Random(2))
    net.set_active(arch)
    batch = images(12, 1, arch.resolution, seed=4)
    extracted = recalibrate_batchnorm(net.extract(arch), batch, batch=4)
    recalibrate_batchnorm(net, batch, batch=4)  # cumulative averages (momentum None) over the slices
    for name, tensor in net.extract(arch).state_dict().items():
        assert torch.allclose(tensor, extracted.state_dict()[name], atol=1e-5), name


@pytest.mark.parametrize("preset", PRESETS)
def test_largest_smallest_and_sampled_archs_belong_to_the_space(preset: str) -> None:
    net = supernet(preset)
    space = net.space
    largest, smallest = space.validate(net.largest_arch()), space.validate(net.smallest_arch())
    assert largest.resolution == max(space.resolutions) and smallest.resolution == min(space.resolutions)
    for big, small, spec in zip(largest.stages, smallest.stages, space.stages, strict=True):
        assert (big.width, big.depth, small.width, small.depth) == (
            max(spec.widths),
            max(spec.depths),
            min(spec.widths),
            min(spec.depths),
        )
        assert big.blocks[0].kernel == max(spec.kernels) and small.blocks[0].expansion == min(spec.expansions)
        assert big.blocks[0].se == any(spec.se) and small.blocks[0].se == all(spec.se)
    assert net.sample_arch(7) == space.sample(7)


def test_an_arch_of_another_space_is_refused() -> None:
    net = supernet("default")
    with pytest.raises(ArchError):
        net.set_active(supernet("ofa-mbv3").largest_arch())
    with pytest.raises(ArchError):
        net.extract(supernet("ofa-mbv3").largest_arch())
