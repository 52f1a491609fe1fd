"""The command line as a user meets it: real subprocesses, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hwnas.arch import Arch
from hwnas.presets import get_space


def hwnas(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hwnas", *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_space_sample_prints_valid_seeded_strings() -> None:
    result = hwnas("space", "sample", "--preset", "default", "--seed", "0", "-n", "5")
    assert result.returncode == 0
    lines = result.stdout.split()
    assert len(lines) == 5 and len(set(lines)) == 5
    for line in lines:
        get_space("default").validate(Arch.parse(line))
    assert hwnas("space", "sample", "--preset", "default", "--seed", "0", "-n", "5").stdout.split() == lines


def test_space_count_and_show_json() -> None:
    counts = json.loads(hwnas("space", "count", "--preset", "proxylessnas", "--json").stdout)
    assert counts["op_keys"] == 72 and counts["architectures"] == get_space("proxylessnas").count()
    shown = json.loads(hwnas("space", "show", "--preset", "default", "--json").stdout)
    assert shown["hash"] == get_space("default").hash and len(shown["stages"]) == 4


def test_arch_info_reports_flops_params_and_layers() -> None:
    arch = get_space("default").sample(0)
    info = json.loads(hwnas("arch", "info", arch.format(), "--json").stdout)
    assert info["arch"] == arch.format() and info["flops"] > 0 and info["params"] > 0
    assert len(info["op_keys"]) == len(get_space("default").op_keys(arch))


def test_malformed_architecture_is_one_line_with_the_bad_token() -> None:
    assert_one_line_error(hwnas("arch", "info", "default:r32_c16[k3q3]_c32[k3e3]"), "'k3q3'")
    assert_one_line_error(hwnas("train", "--arch", "default:r32_c16[k3e3]_c32[k3e9]_c48[k3e3h]_c80[k3e3h]"), "'k3e9'")


def test_unknown_recipe_field_and_out_of_range_value() -> None:
    arch = get_space("default").sample(0).format()
    assert_one_line_error(hwnas("train", "--arch", arch, "--set", "momentum=0.9"), "'momentum'")
    assert_one_line_error(hwnas("train", "--arch", arch, "--set", "lr=-1"), "out of range")


def test_missing_data_path(tmp_path: Path) -> None:
    arch = get_space("default").sample(0).format()
    assert_one_line_error(hwnas("train", "--arch", arch, "--data", str(tmp_path / "nowhere")), "does not exist")


def test_unknown_preset() -> None:
    assert_one_line_error(hwnas("space", "sample", "--preset", "imagenet"), "unknown search space")


@pytest.mark.slow
def test_train_one_epoch_on_embedded_data_beats_sixty_percent(tmp_path: Path) -> None:
    arch = hwnas("space", "sample", "--preset", "default", "--seed", "0", "-n", "5").stdout.split()[0]
    result = hwnas("train", "--arch", arch, "--epochs", "1", "--out", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["val_accuracy"] > 0.60
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["val_accuracy"] == report["val_accuracy"] and (tmp_path / "model.pt").stat().st_size > 0


@pytest.mark.slow
def test_run_keeps_everything_in_its_run_folder(tmp_path: Path) -> None:
    result = hwnas("run", "--out", str(tmp_path / "run"), "--epochs", "1", "--json")
    assert result.returncode == 0, result.stderr
    run = tmp_path / "run"
    config = json.loads((run / "config.json").read_text())
    report = json.loads((run / "result.json").read_text())
    assert config["arch"] == report["arch"] and report["test_accuracy"] > 0.5
    card = json.loads((run / "export" / "model_card.json").read_text())
    exports = {item["format"]: item for item in card["exports"]}
    assert exports["onnx"]["verification"]["passed"] and exports["onnx"]["verification"]["file_accuracy"] > 0.5
    assert exports["onnx"]["latency"][0]["median_ms"] > 0
    assert json.loads(result.stdout)["result"]["arch"] == config["arch"]
