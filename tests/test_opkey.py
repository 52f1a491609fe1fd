from __future__ import annotations

from pathlib import Path

import pytest

from hwnas.errors import UserError
from hwnas.opkey import OpKey, make_divisible
from hwnas.presets import get_space

from conftest import SHARED_DATA
from strategies import PRESETS

PIXEL1_TABLE = SHARED_DATA / "lut" / "proxylessnas_mobile_pixel1.yaml"


@pytest.mark.parametrize("preset", PRESETS)
def test_ofa_key_round_trip_for_every_layer_of_every_preset(preset: str) -> None:
    space = get_space(preset)
    for key in space.enumerate_op_keys():
        text = key.to_public("ofa")
        act = key.act if key.op != "Conv" else space.stem_act
        assert OpKey.from_public(text, "ofa", act=act, kernel=space.stem_kernel) == key, text


def test_proxyless_keys_use_the_ratio_and_ofa_keys_the_mid_channels() -> None:
    key = OpKey("expanded_conv", 112, 24, 32, kernel=3, stride=2, expansion=6)
    assert (
        key.to_public("ofa") == "expanded_conv-input:112x112x24-output:56x56x32-expand:144-kernel:3-stride:2-idskip:0-se:0-hs:0"
    )
    assert key.to_public("proxyless") == "expanded_conv-input:112x112x24-output:56x56x32-expand:6-kernel:3-stride:2-idskip:0"
    assert OpKey.from_public(key.to_public("proxyless"), "proxyless") == key


def test_the_example_key_from_the_issue_parses() -> None:
    key = OpKey.from_public("expanded_conv-input:112x112x24-output:56x56x32-expand:144-kernel:3-stride:2-idskip:0-se:0-hs:0")
    assert (key.in_size, key.in_channels, key.out_channels, key.expansion, key.kernel, key.stride) == (112, 24, 32, 6, 3, 2)


def table_keys(path: Path) -> list[str]:
    return [line.rstrip(":\n") for line in path.read_text().splitlines() if line and not line.startswith(" ")]


@pytest.mark.skipif(not PIXEL1_TABLE.exists(), reason="../shared/data is not present")
def test_pixel1_table_keys_are_exactly_the_proxylessnas_preset_layers() -> None:
    keys = table_keys(PIXEL1_TABLE)
    assert len(keys) == 72
    parsed = {OpKey.from_public(key, "proxyless") for key in keys}
    assert parsed == set(get_space("proxylessnas").enumerate_op_keys())
    assert {key.to_public("proxyless") for key in parsed} == set(keys)


@pytest.mark.parametrize(
    "bad",
    [
        "expanded_conv-input:112x112x24-output:56x56x32-expand:145-kernel:3-stride:2-idskip:0-se:0-hs:0",
        "expanded_conv-input:56x56x24-output:56x56x24-expand:144-kernel:3-stride:1-idskip:0-se:0-hs:0",
        "Pool-input:7x7x320-output:1x1x320",
        "Conv-input:224x200x3-output:112x112x32",
    ],
)
def test_bad_public_keys_are_user_errors(bad: str) -> None:
    with pytest.raises(UserError):
        OpKey.from_public(bad)


def test_make_divisible_never_drops_more_than_ten_percent() -> None:
    for value in range(1, 2000):
        rounded = make_divisible(value)
        assert rounded % 8 == 0 and rounded >= 0.9 * value
