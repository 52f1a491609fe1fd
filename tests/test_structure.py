"""The shape of the code the pipeline and the CLI are made of: small functions, typed stage results, no type-ignores.

These are the rules a reader relies on (issue 20): every stage of ``hwnas run`` is a module of
``hwnas.pipeline.stages`` with a declared result type, and the orchestration stays readable.
"""

from __future__ import annotations

import ast
import importlib
import json
import pkgutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 60
OLD_RUN = REPO / "tests" / "data" / "run-2026-12-02"  # records of a --quick run made by main before the typed stages


def long_functions(folder: Path, limit: int) -> list[str]:
    """``file:line name (N lines)`` for every function in ``folder`` longer than ``limit`` lines (decorators excluded)."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > limit:
                    found.append(f"{path.relative_to(folder)}:{node.lineno} {node.name} ({length} lines)")
    return found


@pytest.mark.parametrize("folder", ["hwnas/pipeline", "hwnas/cli"])
def test_no_function_in_the_pipeline_or_the_cli_is_over_60_lines(folder: str) -> None:
    assert long_functions(REPO / folder, MAX_FUNCTION_LINES) == []


def test_the_checker_finds_a_long_function(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (tmp_path / "long.py").write_text(f"def long():\n{body}\n")
    (tmp_path / "short.py").write_text("def short():\n    return 1\n")
    assert [line.split(" ")[1] for line in long_functions(tmp_path, MAX_FUNCTION_LINES)] == ["long"]


def test_the_pipeline_has_no_type_ignore() -> None:
    offenders = [
        f"{path.relative_to(REPO)}:{number}"
        for path in sorted((REPO / "hwnas" / "pipeline").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if "type: ignore" in line
    ]
    assert offenders == []


def test_every_stage_module_declares_one_stage_with_a_typed_result_in_pipeline_order() -> None:
    from hwnas.pipeline import stages
    from hwnas.pipeline.stage import Stage, StageResult

    modules = sorted(info.name for info in pkgutil.iter_modules(stages.__path__))
    declared = {}
    for name in modules:
        module = importlib.import_module(f"hwnas.pipeline.stages.{name}")
        stage = module.STAGE
        assert isinstance(stage, Stage) and stage.name == name and issubclass(stage.result_type, StageResult)
        assert name == stage.result_type.STAGE and callable(stage.run)
        declared[name] = stage
    assert sorted(stages.STAGE_NAMES) == modules and [s.name for s in stages.STAGES] == list(stages.STAGE_NAMES)
    seen: set[str] = set()
    for stage in stages.STAGES:  # a stage reads only stages that ran before it
        assert set(stage.requires) <= seen, stage.name
        seen.add(stage.name)


def test_the_records_main_wrote_before_the_typed_stages_read_back_as_their_types_and_round_trip() -> None:
    from hwnas.pipeline.records import Records
    from hwnas.pipeline.stage import Skipped
    from hwnas.pipeline.stages import STAGES

    records = Records(OLD_RUN)
    for stage in STAGES:
        value = records.read_value(stage)
        assert isinstance(value, stage.result_type | Skipped), stage.name
        if not isinstance(value, Skipped):
            stored = json.loads((OLD_RUN / "stages" / f"{stage.name}.json").read_text())["result"]
            assert stage.result_type.from_json(value.to_json()) == value
            assert set(value.to_json()) >= set(stored) - {"from"}, stage.name  # nothing the old record held is dropped
