from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings

from hwnas.arch import Arch
from hwnas.errors import ArchError, UserError
from hwnas.presets import get_space, list_spaces, register_space
from hwnas.space import SearchSpace, StageSpace

from strategies import PRESETS, preset_archs


def tiny_space() -> SearchSpace:
    return SearchSpace(
        name="tiny",
        description="for counting by brute force",
        in_channels=1,
        num_classes=3,
        resolutions=(8, 16),
        stem_channels=8,
        stem_stride=1,
        stages=(StageSpace(2, (8, 16), (1, 2), (3, 5), (1, 3)), StageSpace(1, (16,), (1,), (3,), (3,), (False, True))),
        final_expand=32,
    )


def all_archs(space: SearchSpace) -> set[Arch]:
    """Every architecture, by brute force (only for tiny spaces)."""
    per_stage = []
    for spec in space.stages:
        options = []
        for width, depth in itertools.product(spec.widths, spec.depths):
            for blocks in itertools.product(spec.block_choices(), repeat=depth):
                options.append((width, blocks))
        per_stage.append(options)
    from hwnas.arch import Stage

    return {
        Arch(space.name, resolution, tuple(Stage(w, b) for w, b in stages))
        for resolution in space.resolutions
        for stages in itertools.product(*per_stage)
    }


def test_count_matches_brute_force_enumeration() -> None:
    space = tiny_space()
    assert space.count() == len(all_archs(space)) == 2 * (2 * (4 + 16)) * 2


def test_enumerated_op_keys_are_exactly_the_union_over_all_architectures() -> None:
    space = tiny_space()
    union = {key for arch in all_archs(space) for key in space.op_keys(arch)}
    assert set(space.enumerate_op_keys()) == union


@pytest.mark.parametrize("preset", PRESETS)
def test_samples_are_members_and_covered_by_enumeration(preset: str) -> None:
    space = get_space(preset)
    enumerated = set(space.enumerate_op_keys())
    rng = random.Random(7)
    for _ in range(50):
        arch = space.sample(rng)
        assert space.validate(arch) is arch
        assert set(space.op_keys(arch)) <= enumerated


def test_sampling_is_seeded() -> None:
    space = get_space("default")
    assert [space.sample(3) for _ in range(3)] == [space.sample(3)] * 3
    assert len({space.sample(seed) for seed in range(20)}) > 15


@settings(max_examples=100, deadline=None)
@given(preset_archs())
def test_mutation_changes_something_and_stays_in_space(arch: Arch) -> None:
    space = get_space(arch.space)
    child = space.mutate(arch, random.Random(0))
    assert child != arch
    space.validate(child)


@settings(max_examples=100, deadline=None)
@given(preset_archs(("default", "ofa-mbv3")), preset_archs(("default", "ofa-mbv3")))
def test_crossover_takes_each_stage_from_a_parent(first: Arch, second: Arch) -> None:
    if first.space != second.space:
        return
    space = get_space(first.space)
    child = space.crossover(first, second, random.Random(1))
    space.validate(child)
    for index, stage in enumerate(child.stages):
        assert stage in (first.stages[index], second.stages[index])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("default:r64_c16[k3e3]_c32[k3e3]_c48[k3e3h]_c80[k3e3h]", "resolution token 'r64'"),
        ("default:r32_c17[k3e3]_c32[k3e3]_c48[k3e3h]_c80[k3e3h]", "width token 'c17'"),
        ("default:r32_c16[k3e3]_c32[k3e3]_c48[k3e3]_c80[k3e3h]", "block token 'k3e3'"),
        ("default:r32_c16[k3e3,k3e3,k3e3]_c32[k3e3]_c48[k3e3h]_c80[k3e3h]", "depth 3"),
        ("default:r32_c16[k3e3]", "has 4 stages"),
        ("ofa-mbv3:r224_c16[k3e1]", "not 'default'"),
    ],
)
def test_validate_names_what_does_not_fit(text: str, message: str) -> None:
    with pytest.raises(ArchError, match=message):
        get_space("default").parse(text)


def test_registry_refuses_duplicates_and_lists_by_pattern() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_space(get_space("default"))
    assert list_spaces("ofa*") == ["ofa-mbv3", "ofa-mbv3-w12"]
    assert set(PRESETS) <= set(list_spaces())
    with pytest.raises(UserError, match="unknown search space"):
        get_space("nope")


@pytest.mark.parametrize("preset", PRESETS)
def test_space_json_round_trip_keeps_hash(preset: str) -> None:
    space = get_space(preset)
    again = SearchSpace.from_json(space.to_json())
    assert again == space and again.hash == space.hash


def test_ofa_space_matches_the_paper() -> None:
    space = get_space("ofa-mbv3")
    searched = space.stages[1:]
    assert all(s.kernels == (3, 5, 7) and s.expansions == (3, 4, 6) and s.depths == (2, 3, 4) for s in searched)
    assert [s.se == (True,) for s in searched] == [False, True, False, True, True]
    assert [s.acts == ("hswish",) for s in searched] == [False, False, True, True, True]
    assert min(space.resolutions) == 128 and max(space.resolutions) == 224


def test_stage_space_rejects_empty_choices() -> None:
    with pytest.raises(UserError, match="empty"):
        StageSpace(1, (), (1,))
