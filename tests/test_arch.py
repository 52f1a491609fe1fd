from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwnas.arch import Arch, Block, Stage
from hwnas.errors import ArchError

from strategies import preset_archs


@settings(max_examples=200, deadline=None)
@given(preset_archs())
def test_format_parse_round_trip(arch: Arch) -> None:
    text = arch.format()
    assert Arch.parse(text) == arch
    assert Arch.parse(text).format() == text


@settings(max_examples=200, deadline=None)
@given(preset_archs())
def test_json_round_trip(arch: Arch) -> None:
    assert Arch.from_json(json.loads(json.dumps(arch.to_json()))) == arch


@settings(max_examples=50, deadline=None)
@given(preset_archs(), preset_archs())
def test_id_is_stable_and_distinguishes(first: Arch, second: Arch) -> None:
    assert first.id == Arch.parse(first.format()).id
    assert len(first.id) == 12
    if first != second:
        assert first.id != second.id


def test_grammar_example() -> None:
    arch = Arch.parse("default:r32_c16[k3e1]_c24[k3e3,k5e6s]_c40[k7e6sh]")
    assert arch.resolution == 32
    assert arch.stages[1] == Stage(24, (Block(3, 3), Block(5, 6, se=True)))
    assert arch.stages[2].blocks[0] == Block(7, 6, se=True, act="hswish")
    assert hash(arch) == hash(Arch.parse(arch.format()))


@pytest.mark.parametrize(
    ("text", "bad_token"),
    [
        ("default:r32_c16[k3e3x]", "k3e3x"),
        ("default:r32_c16[k3e3,k05e3]", "k05e3"),
        ("default:r32_c16[k3e3hs]", "k3e3hs"),
        ("default:x32_c16[k3e3]", "x32"),
        ("default:r32_d16[k3e3]", "d16[k3e3]"),
        ("default:r32_c16[]", "''"),
        ("Default:r32_c16[k3e3]", "Default"),
    ],
)
def test_malformed_strings_name_the_bad_token(text: str, bad_token: str) -> None:
    with pytest.raises(ArchError, match=bad_token.replace("[", r"\[")):
        Arch.parse(text)


def test_missing_space_prefix_is_an_error() -> None:
    with pytest.raises(ArchError, match="expected SPACE"):
        Arch.parse("r32_c16[k3e3]")


@given(st.text(max_size=40))
def test_parse_accepts_only_canonical_text_and_fails_only_with_arch_error(text: str) -> None:
    try:
        arch = Arch.parse(text)
    except ArchError:
        return
    assert arch.format() == text.strip()


def test_json_with_unknown_block_field_is_rejected() -> None:
    data = Arch.parse("default:r32_c16[k3e3]").to_json()
    data["stages"][0]["blocks"][0]["dilation"] = 2
    with pytest.raises(ArchError, match="dilation"):
        Arch.from_json(data)


def test_a_five_thousand_digit_number_is_a_bad_token_not_a_crash() -> None:
    with pytest.raises(ArchError, match="bad stage token"):
        Arch.parse("default:r32_c" + "9" * 5000 + "[k3e3]")
    with pytest.raises(ArchError, match="bad resolution token"):
        Arch.parse("default:r" + "1" * 5000 + "_c16[k3e3]")
