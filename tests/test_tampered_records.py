"""Stage records edited by anyone: any JSON value in any field of a finished run's records gives ``hwnas report`` exit 0
or one line, never a traceback (issue 21). The run is a real ``--quick`` run's records (tests/data/run-2026-12-02)."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

RUN = Path(__file__).parent / "data" / "run-2026-12-02"
STAGES = ("device", "table", "predictor", "search", "train", "prune", "export", "references")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**20), 10**20) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def field_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``value`` (dict keys and list indexes), the value itself included."""
    paths = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            paths += field_paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value[:3]):
            paths += field_paths(item, (*prefix, index))
    return paths


RECORDS = {stage: json.loads((RUN / "stages" / f"{stage}.json").read_text()) for stage in STAGES}
PATHS = [(stage, path) for stage in STAGES for path in field_paths(RECORDS[stage])]


def replaced(record: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copy = json.loads(json.dumps(record))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return copy


def run_report(folder: Path) -> tuple[int, str]:
    from hwnas.cli import main

    stderr = io.StringIO()
    with (
        mock.patch.object(sys, "argv", ["hwnas", "report", str(folder)]),
        contextlib.redirect_stderr(stderr),
        contextlib.redirect_stdout(io.StringIO()),
        pytest.raises(SystemExit) as exit_info,
    ):
        main()
    return int(exit_info.value.code or 0), stderr.getvalue()


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(where=st.sampled_from(PATHS), value=json_values)
@example(where=("prune", ("result", "models")), value={"\x1e": None})  # a control character in a key: found by hypothesis
def test_any_json_value_in_any_field_of_a_stage_record_is_exit_0_or_one_line(where: tuple[str, tuple], value: Any) -> None:
    stage, path = where
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp) / "run"
        shutil.copytree(RUN, folder)
        (folder / "stages" / f"{stage}.json").write_text(json.dumps(replaced(RECORDS[stage], path, value)))
        code, stderr = run_report(folder)
    assert code in (0, 2), stderr
    if code == 2:
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), stderr


def test_an_untouched_run_renders_and_a_wrong_type_is_one_line_naming_file_and_field(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    shutil.copytree(RUN, folder)
    assert run_report(folder)[0] == 0
    record = replaced(RECORDS["train"], ("result", "val_accuracy"), "high")
    (folder / "stages" / "train.json").write_text(json.dumps(record))
    code, stderr = run_report(folder)
    assert code == 2 and "train.json: result.val_accuracy: expected a number, found 'high'" in stderr


@pytest.mark.parametrize(
    ("stage", "path", "value", "message"),
    [
        ("train", ("result", "val_accuracy"), 1e308, "result.val_accuracy: 1e+308 is not in [0, 1]"),
        ("prune", ("result", "models", "amc", "latency_ms", "host-cpu-tflite-xnnpack"), -1e308, "is not above 0"),
        ("table", ("result", "budget_ms"), 0, "result.budget_ms: 0.0 is not above 0"),
        ("export", ("result", "measured_ms"), [], "result.measured_ms: expected an object, found []"),
        ("search", ("result", "trials", 0, "accuracy"), "high", "result.trials[0].accuracy: expected a number, found 'high'"),
        ("train", ("result",), None, "result: expected an object, found None"),
        ("device", ("seconds",), "abc", "seconds: expected a number, found 'abc'"),
    ],
)
def test_values_out_of_range_or_of_another_type_are_one_line(
    tmp_path: Path, stage: str, path: tuple, value: Any, message: str
) -> None:
    folder = tmp_path / "run"
    shutil.copytree(RUN, folder)
    (folder / "stages" / f"{stage}.json").write_text(json.dumps(replaced(RECORDS[stage], path, value)))
    code, stderr = run_report(folder)
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.rstrip().endswith(f"remake the run folder with: hwnas run --quick --out {folder} --fresh"), stderr
