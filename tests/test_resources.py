"""The machine's limits: a full disk, a file-size limit (``ulimit -f``) or too little memory (``ulimit -v``) during a
verb is one line saying what ran out and that nothing stored was lost, never a traceback; the same command run again
without the limit completes (issue 21)."""

from __future__ import annotations

import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from hwnas.presets import get_space

from inputs import write_idx_folder

ARCH = get_space("default").sample(0).format()
NOTHING_LOST = "nothing stored before was lost"


def limited(kind: int, value: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(kind, (value, value))

    return apply


def hwnas(*args: str, limit: Callable[[], None] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hwnas", *args], capture_output=True, text=True, timeout=timeout, preexec_fn=limit
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr and len(lines) >= 1, result.stderr[-2000:]
    return lines[-1]


def test_a_file_size_limit_while_a_search_creates_its_study_is_one_line(tmp_path: Path) -> None:
    args = ("search", "--device", "host-ort", "--budget-ms", "5", "--trials", "1", "--no-measure", "--out", str(tmp_path / "s"))
    result = hwnas(*args, limit=limited(resource.RLIMIT_FSIZE, 16 * 1024))
    assert result.returncode == 1, result.stderr[-2000:]
    line = one_line(result)
    assert line.startswith("error: ") and "file-size limit" in line and NOTHING_LOST in line


@pytest.mark.slow
def test_a_file_size_limit_while_training_is_one_line_and_the_rerun_completes(tmp_path: Path) -> None:
    out = tmp_path / "model"
    data = write_idx_folder(tmp_path / "data", train=400, test=100)  # an epoch of 400 images: the limit is what is tested
    args = ("train", "--arch", ARCH, "--epochs", "1", "--data", str(data), "--out", str(out), "--json")
    result = hwnas(*args, limit=limited(resource.RLIMIT_FSIZE, 256 * 1024))  # the checkpoint is ~2 MB
    assert result.returncode == 1, result.stderr[-2000:]
    line = one_line(result)
    assert "file-size limit was reached) writing" in line and "checkpoint.pt" in line and NOTHING_LOST in line
    again = hwnas(*args)
    assert again.returncode == 0 and (out / "model.pt").stat().st_size > 0, again.stderr[-2000:]


def test_too_little_memory_to_load_torch_is_one_line() -> None:
    result = hwnas("train", "--arch", ARCH, "--epochs", "1", limit=limited(resource.RLIMIT_AS, 1_500_000_000))
    assert result.returncode == 1, result.stderr[-2000:]
    assert one_line(result).startswith("error: out of memory: ")
