"""The command line as a user meets it: real subprocesses, exit codes, one-line errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hwnas.arch import Arch
from hwnas.presets import get_space

from inputs import write_idx_folder


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


def test_malformed_architecture_is_one_line_with_the_bad_token(hwnas_in_process) -> None:
    assert_one_line_error(hwnas_in_process("arch", "info", "default:r32_c16[k3q3]_c32[k3e3]"), "'k3q3'")
    assert_one_line_error(hwnas_in_process("train", "--arch", "default:r32_c16[k3e3]_c32[k3e9]_c48[k3e3h]_c80[k3e3h]"), "'k3e9'")


def test_unknown_recipe_field_and_out_of_range_value(hwnas_in_process) -> None:
    arch = get_space("default").sample(0).format()
    assert_one_line_error(hwnas_in_process("train", "--arch", arch, "--set", "momentum=0.9"), "'momentum'")
    assert_one_line_error(hwnas_in_process("train", "--arch", arch, "--set", "lr=-1"), "out of range")


def test_missing_data_path(tmp_path: Path, hwnas_in_process) -> None:
    arch = get_space("default").sample(0).format()
    assert_one_line_error(hwnas_in_process("train", "--arch", arch, "--data", str(tmp_path / "nowhere")), "does not exist")


def test_unknown_preset(hwnas_in_process) -> None:
    assert_one_line_error(hwnas_in_process("space", "sample", "--preset", "imagenet"), "unknown search space")


@pytest.mark.slow
def test_train_one_epoch_on_embedded_data_beats_sixty_percent(tmp_path: Path) -> None:
    arch = hwnas("space", "sample", "--preset", "default", "--seed", "0", "-n", "5").stdout.split()[0]
    data = write_idx_folder(tmp_path / "data", train=3000, test=300)  # a user's MNIST-format folder, a third the size
    result = hwnas("train", "--arch", arch, "--epochs", "1", "--data", str(data), "--out", str(tmp_path / "run"))  # no --json
    assert result.returncode == 0, result.stderr
    bar = re.search(r"training\s.*?(\d+)/(\d+)\s+loss", result.stdout + result.stderr)
    assert bar and bar.group(1) == bar.group(2) and int(bar.group(2)) > 10, result.stdout  # the bar ran to its end
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["val_accuracy"] > 0.60 and f"{saved['val_accuracy']:.4f}" in result.stdout
    assert (tmp_path / "run" / "model.pt").stat().st_size > 0


# ---- user mistakes found by review: each once printed a traceback with exit code 1 ---------------
# In-process (the ``hwnas_in_process`` fixture), so a dozen cases cost one torch import, not twelve.


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


TINY = get_space("default").sample(0).format()
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def truncated_idx_folder(tmp: Path) -> Path:
    for name in IDX_FILES:
        write(tmp / "mnist" / name, bytes(30))  # headers promise more images than there are bytes
    return tmp / "mnist"


def empty_cifar_folder(tmp: Path) -> Path:
    (tmp / "cifar-10-batches-py").mkdir()
    return tmp


def run_folder_without_arch(tmp: Path) -> Path:
    write(tmp / "run" / "model.pt", b"")
    write(tmp / "run" / "result.json", "{}")
    return tmp / "run"


MISTAKES: dict[str, tuple[Callable[[Path], list[Any]], str]] = {
    "missing option": (lambda tmp: ["train"], "Missing option '--arch'"),
    "unknown command": (lambda tmp: ["bogus"], "No such command 'bogus'"),
    "zero threads": (lambda tmp: ["train", "--threads", "0", "--arch", TINY], "'--threads'"),
    "checkpoint not torch": (
        lambda tmp: ["export", TINY, "--checkpoint", write(tmp / "w.pt", "not a pickle")],
        "not a PyTorch state dict",
    ),
    "run folder without arch": (lambda tmp: ["export", run_folder_without_arch(tmp)], "names no architecture"),
    "cores not a list": (
        lambda tmp: ["devices", "check", write(tmp / "d.toml", 'name = "d"\nbackend = "onnxruntime"\ncores = 3\n')],
        "cores must be a list",
    ),
    "empty cifar folder": (
        lambda tmp: ["train", "--arch", TINY, "--data", empty_cifar_folder(tmp)],
        "not a dataset hwnas can read",
    ),
    "truncated idx files": (
        lambda tmp: ["train", "--arch", TINY, "--data", truncated_idx_folder(tmp)],
        "not a dataset hwnas can read",
    ),
    "recipe not a mapping": (
        lambda tmp: ["train", "--arch", TINY, "--recipe", write(tmp / "r.json", "5")],
        "a recipe is a mapping",
    ),
    "space file holding a list": (
        lambda tmp: ["lut", "import", write(tmp / "t.yaml", "a: 1\n"), "--space", write(tmp / "s.json", "[1, 2]")],
        "must hold a JSON object",
    ),
    "public table with a word for a number": (
        lambda tmp: [
            "lut",
            "import",
            write(tmp / "t.yaml", "Conv-input:224x224x3-output:112x112x32: {count: 1, mean: fast, std: 0.1}\n"),
            "--space",
            "proxylessnas",
        ],
        "not a number",
    ),
}


@pytest.mark.parametrize("case", sorted(MISTAKES))
def test_user_mistakes_are_one_line_errors_with_exit_code_2(case: str, tmp_path: Path, hwnas_in_process) -> None:
    make_args, fragment = MISTAKES[case]
    done = hwnas_in_process(*make_args(tmp_path))
    code, stderr = done.returncode, done.stderr
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], stderr


def test_bare_group_shows_its_help(hwnas_in_process) -> None:
    done = hwnas_in_process("lut")
    assert done.returncode == 2 and "import" in done.stdout + done.stderr and "Traceback" not in done.stderr


def test_printed_architecture_keeps_its_block_lists(capsys: pytest.CaptureFixture[str]) -> None:
    """rich reads ``[k3e3]`` as markup and wraps at 80 columns; the printed line must parse back to the same architecture."""
    from hwnas.cli.common import show_training

    arch = "default:r32_c16[k3e3]_c40[k5e6,k5e3,k7e6s]_c48[k7e3h,k7e6h,k5e3h]_c80[k3e3sh,k7e6sh]"  # > 80 columns
    result = {"arch": arch, "val_accuracy": 0.8, "dataset": "x[bold]", "resolution": 32, "curve": [{}], "params": 1000}
    show_training(result | {"flops": 2e6, "wall_time_s": 1.0, "threads": 1, "test_accuracy": None})
    printed = capsys.readouterr().out.splitlines()
    assert Arch.parse(printed[0]) == Arch.parse(arch) and "x[bold]" in printed[1]
