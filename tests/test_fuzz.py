"""Fuzzing the parsers of what users type and share: each either parses or raises :class:`UserError`.

Random text and bytes, and (to get past the first ``{``) random values in the places a real file
puts them: architecture strings, recipe overrides and files, device specs, latency tables, search
spaces, public YAML tables, and the JSON / TOML / YAML readers under all of them. Any exception
other than ``UserError`` is a traceback a user would see, and fails the property.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hwnas.arch import Arch
from hwnas.errors import UserError
from hwnas.fileio import read_json, read_toml, read_yaml
from hwnas.presets import get_space, resolve_space
from hwnas.recipe import Recipe

from strategies import preset_archs

REPO = Path(__file__).resolve().parents[1]
SHIPPED_TABLE = REPO / "latency_tables" / "data" / "default-host-cpu-tflite-xnnpack.json"
EXAMPLES = int(os.environ.get("HWNAS_FUZZ_EXAMPLES", "200"))  # CI's budget; set it higher to hunt
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---- strategies ----------------------------------------------------------------------------------
numbers = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1, 10**400, True, False]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=20))
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
arch_alphabet = st.sampled_from(list("default:proxylessnas_rck0123456789[],eshx -\n"))
arch_like = st.lists(arch_alphabet, max_size=60).map("".join)
tomlish = st.lists(
    st.tuples(
        st.sampled_from(["name", "backend", "threads", "warmup", "repeats", "min_time_s", "sessions", "cores", "x", "[options]"]),
        st.sampled_from(['"dev"', '"onnxruntime"', "1", "0", "-3", "inf", "nan", "true", "[1, 2]", '"', "9" * 5000, "1e400"]),
    ),
    max_size=8,
).map(lambda pairs: "\n".join(key if key.startswith("[") else f"{key} = {value}" for key, value in pairs))


@contextmanager
def a_file(content: bytes | str, suffix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"input{suffix}"
        path.write_bytes(content.encode("utf-8", "surrogatepass") if isinstance(content, str) else content)
        yield path


def parses_or_user_error(function: Callable[[], Any]) -> Any:
    """``function()``'s value, or None when it raised UserError; any other exception fails the property."""
    try:
        return function()
    except UserError as error:
        assert str(error).strip(), "a UserError must say what is wrong"
        return None


# ---- architecture strings ------------------------------------------------------------------------
@FUZZ
@given(st.one_of(st.text(max_size=80), arch_like))
@example("default:r32_c16[k3e3]_c" + "9" * 5000 + "[k3e3]")
@example("default:r32_c16[k3e3,,]")
@example("default:r32_c16[]")
def test_arch_parse_parses_or_raises_user_error(text: str) -> None:
    arch = parses_or_user_error(lambda: Arch.parse(text))
    if arch is not None:
        assert Arch.parse(arch.format()) == arch


@FUZZ
@given(preset_archs(), st.integers(0, 200), st.sampled_from(["", "x", "9" * 4400, "[", "]", ",", "_", "k0e0"]))
def test_a_mutated_real_arch_parses_or_raises_user_error(arch: Arch, position: int, insert: str) -> None:
    text = arch.format()
    position = min(position, len(text))
    mutated = text[:position] + insert + text[position + 1 :]
    parsed = parses_or_user_error(lambda: Arch.parse(mutated))
    if parsed is not None:
        parses_or_user_error(lambda: get_space(parsed.space).validate(parsed))


# ---- recipes -------------------------------------------------------------------------------------
@FUZZ
@given(st.lists(st.one_of(st.text(max_size=30), st.sampled_from(["lr=nan", "epochs=" + "9" * 5000, "=", "lr="])), max_size=4))
def test_recipe_overrides_parse_or_raise_user_error(assignments: list[str]) -> None:
    parses_or_user_error(lambda: Recipe().with_overrides(assignments))


recipe_fields = st.sampled_from(["optimizer", "lr", "weight_decay", "epochs", "batch_size", "mixup", "ema", "randaugment", "x"])


@FUZZ
@given(st.one_of(json_values, st.dictionaries(recipe_fields, json_values, max_size=5)))
def test_recipe_from_json_values_parses_or_raises_user_error(data: Any) -> None:
    recipe = parses_or_user_error(lambda: Recipe.from_json(data))
    if recipe is not None:
        assert Recipe.from_json(recipe.to_json()) == recipe


@FUZZ
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200)), st.sampled_from([".json", ".toml"]))
def test_recipe_files_parse_or_raise_user_error(content: bytes | str, suffix: str) -> None:
    with a_file(content, suffix) as path:
        parses_or_user_error(lambda: Recipe.from_file(path))


# ---- device specs --------------------------------------------------------------------------------
spec_fields = st.sampled_from(
    ["name", "backend", "threads", "precision", "warmup", "repeats", "min_time_s", "sessions", "cores", "options", "adb"]
)


@FUZZ
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200), tomlish))
def test_device_spec_files_parse_or_raise_user_error(content: bytes | str) -> None:
    from hwnas.devices import DeviceSpec

    with a_file(content, ".toml") as path:
        parses_or_user_error(lambda: DeviceSpec.from_toml(path))


@FUZZ
@given(st.dictionaries(spec_fields, json_values, max_size=8))
def test_device_spec_values_parse_or_raise_user_error(data: dict[str, Any]) -> None:
    from hwnas.devices import DeviceSpec

    spec = parses_or_user_error(lambda: DeviceSpec.from_json(data))
    if spec is not None:  # what was accepted is sane: a folder-safe name, finite bounded timing
        assert "/" not in spec.name and ".." not in spec.name[:2]
        assert math.isfinite(spec.min_time_s) and spec.threads >= 1 and spec.repeats >= 1


# ---- latency tables ------------------------------------------------------------------------------
TABLE = json.loads(SHIPPED_TABLE.read_text())
TABLE_PLACES = [
    *(("top", key) for key in TABLE),
    *(("entry", key) for key in TABLE["entries"][0]),
    *(("op", key) for key in TABLE["entries"][0]["op"]),
    *(("network", key) for key in TABLE["networks"][0]),
]


def _mutated_table(place: tuple[str, str], value: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(TABLE))
    where, key = place
    target = {
        "top": data,
        "entry": data["entries"][0],
        "op": data["entries"][0]["op"],
        "network": data["networks"][0],
    }[where]
    target[key] = value
    return data


@FUZZ
@given(st.sampled_from(TABLE_PLACES), json_values)
@example(("entry", "median_ms"), 10**400)  # valid JSON, too large for a float: found by hypothesis in CI
def test_a_table_with_any_value_anywhere_loads_or_raises_user_error(place: tuple[str, str], value: Any) -> None:
    from hwnas.latency_tables.table import LatencyTable, positive_ms

    text = json.dumps(_mutated_table(place, value))  # NaN / Infinity are written as such: read_json refuses them
    with a_file(text, ".json") as path:
        table = parses_or_user_error(lambda: LatencyTable.load(path))
    if table is not None:
        assert all(positive_ms(entry.median_ms) for entry in table.entries.values())


@FUZZ
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300), json_values.map(json.dumps)))
def test_table_files_of_anything_load_or_raise_user_error(content: bytes | str) -> None:
    from hwnas.latency_tables.table import LatencyTable

    with a_file(content, ".json") as path:
        parses_or_user_error(lambda: LatencyTable.load(path))


PUBLIC_KEY = "Conv-input:224x224x3-output:112x112x32"
yaml_values = st.sampled_from(["0.5", "-1", ".nan", ".inf", "fast", "[1, 2]", "{}", "9" * 500, "~", "!!binary aGk=", "1e400"])


@FUZZ
@given(
    st.one_of(
        st.text(max_size=200),
        st.binary(max_size=200),
        st.tuples(yaml_values, yaml_values, yaml_values).map(
            lambda v: f"{PUBLIC_KEY}: {{count: {v[0]}, mean: {v[1]}, std: {v[2]}}}\n"
        ),
    )
)
def test_public_yaml_tables_import_or_raise_user_error(content: bytes | str) -> None:
    from hwnas.latency_tables.importer import import_public_tables
    from hwnas.latency_tables.table import positive_ms

    with a_file(content, ".yaml") as path:
        report = parses_or_user_error(lambda: import_public_tables([path], get_space("proxylessnas"), "fuzzed"))
    if report is not None:
        assert all(positive_ms(entry.median_ms) for entry in report.table.entries.values())


# ---- search spaces -------------------------------------------------------------------------------
SPACE = get_space("default").to_json()
SPACE_PLACES = [*(("top", key) for key in SPACE), *(("stage", key) for key in SPACE["stages"][0])]


@FUZZ
@given(st.sampled_from(SPACE_PLACES), json_values)
def test_a_space_file_with_any_value_anywhere_loads_or_raises_user_error(place: tuple[str, str], value: Any) -> None:
    data = json.loads(json.dumps(SPACE))
    (data if place[0] == "top" else data["stages"][0])[place[1]] = value
    with a_file(json.dumps(data), ".json") as path:
        parses_or_user_error(lambda: resolve_space(str(path)))


# ---- the readers under all of them ---------------------------------------------------------------
READERS = {".json": read_json, ".toml": read_toml, ".yaml": read_yaml}


@FUZZ
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300)), st.sampled_from(sorted(READERS)))
@example(b"\xff\xfe", ".json")
@example('{"a": 1, "a": 2}', ".json")
@example("a: 1\na: 2\n", ".yaml")
@example("x: !!python/object/apply:os.system ['true']\n", ".yaml")
@example("n = " + "9" * 5000, ".toml")
@example("n: " + "9" * 5000, ".yaml")
@example('{"n": ' + "9" * 5000 + "}", ".json")
@example("[NaN]", ".json")
def test_readers_parse_or_raise_user_error(content: bytes | str, suffix: str) -> None:
    with a_file(content, suffix) as path:
        parses_or_user_error(lambda: READERS[suffix](path, "fuzzed file"))


@pytest.mark.parametrize("suffix", sorted(READERS))
def test_the_property_can_fail(suffix: str) -> None:
    """parses_or_user_error lets any other exception through (so the properties above can fail)."""
    with pytest.raises(ZeroDivisionError):
        parses_or_user_error(lambda: 1 / 0)
    with a_file(b"\xff", suffix) as path:
        assert parses_or_user_error(lambda: READERS[suffix](path, "fuzzed file")) is None
