"""Data-parallel supernet training: ``torchrun --nproc_per_node=2 -m hwnas supernet train`` on two CPU processes (gloo).

Each process writes, after every step, a hash of its whole state dict (the ``HWNAS_DDP_TRACE`` debug hook of
:mod:`hwnas.supernet.train`): both must hold the same weights after every step. A run killed with ``kill -9`` after
its first checkpoint, started again, resumes from that epoch and ends with the weights of an uninterrupted run.
A tiny space and 180 embedded images (as MNIST idx files) keep each launch to seconds; one thread per process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_supernet_train import TINY

from hwnas.formats import FORMATS
from hwnas.supernet.store import INFO_FILE, WEIGHTS_FILE
from hwnas.supernet.train import TRACE_ENV
from hwnas.trainer import state_sha256

from processes import wait_until

pytestmark = pytest.mark.slow

EPOCHS = 4
TRAIN_IMAGES, TEST_IMAGES = 160, 20
STEPS_PER_EPOCH = 5  # 144 training images after the validation split: 72 a process, in batches of 32 / 2
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", "-m", "hwnas"]
RANK_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE", TRACE_ENV)


def _write_idx(folder: Path, stem: str, images: np.ndarray, labels: np.ndarray, test: bool) -> None:
    prefix = "t10k" if test else "train"
    header = np.array([0, 0, 8, 3], np.uint8).tobytes() + np.array(images.shape, ">i4").tobytes()
    (folder / f"{prefix}-images-idx3-ubyte").write_bytes(header + images.tobytes())
    header = np.array([0, 0, 8, 1], np.uint8).tobytes() + np.array([len(labels)], ">i4").tobytes()
    (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(header + labels.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def inputs(embedded_data, tmp_path_factory) -> tuple[Path, Path]:
    """(an MNIST-format folder of a few embedded images, the tiny space as a JSON file)."""
    folder = tmp_path_factory.mktemp("ddp-data")
    for test, source, count in ((False, embedded_data.train, TRAIN_IMAGES), (True, embedded_data.test, TEST_IMAGES)):
        pairs = [source[i] for i in range(count)]
        images = np.stack([image[0].numpy() for image, _ in pairs]).astype(np.uint8)
        _write_idx(folder, "images", images, np.array([label for _, label in pairs]), test)
    space = folder / "space.json"
    space.write_text(json.dumps(FORMATS["search-space"].stamp(TINY.to_json())))
    return folder, space


def _command(inputs: tuple[Path, Path], out: Path) -> list[str]:
    data, space = inputs
    train = ["supernet", "train", "--space", space, "--data", data, "--out", out, "--epochs", EPOCHS, "--subnets", "1"]
    return [*TORCHRUN, *map(str, train), "--set", "batch_size=32", "--seed", "3", "--threads", "1"]


def _environment(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in RANK_VARIABLES}
    return env | {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"} | extra


def _torchrun(inputs: tuple[Path, Path], out: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_command(inputs, out), capture_output=True, text=True, timeout=600, env=_environment(**extra))


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / WEIGHTS_FILE, weights_only=True)


@pytest.fixture(scope="module")
def ddp_uninterrupted_run(inputs, tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess[str]]:
    """(its --out folder, the trace path, the finished process) of a traced two-process run."""
    root = tmp_path_factory.mktemp("ddp-whole")
    trace = root / "trace"
    result = _torchrun(inputs, root / "out", **{TRACE_ENV: str(trace)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return root / "out", trace, result


def test_both_processes_hold_identical_weights_after_every_step(ddp_uninterrupted_run) -> None:
    out, trace, result = ddp_uninterrupted_run
    lines = {rank: Path(f"{trace}.rank{rank}").read_text().splitlines() for rank in (0, 1)}
    records = {rank: [json.loads(line) for line in text] for rank, text in lines.items()}
    assert len(records[0]) == len(records[1]) == EPOCHS * STEPS_PER_EPOCH
    for first, second in zip(records[0], records[1], strict=True):
        assert (first["epoch"], first["step"]) == (second["epoch"], second["step"])
        assert first["sha256"] == second["sha256"], f"processes differ after epoch {first['epoch']} step {first['step']}"
    hashes = [record["sha256"] for record in records[0]]
    assert len(set(hashes)) == len(hashes)  # every step changed the weights
    assert hashes[-1] == state_sha256(_weights(out))  # what the folder holds is what both processes ended with

    info = json.loads((out / INFO_FILE).read_text())
    assert info["epochs"] == EPOCHS and info["space"]["name"] == "tiny"
    output = result.stdout + result.stderr
    assert output.count(f"epoch 1/{EPOCHS}: loss") == 1  # rank 0 alone logs
    assert output.count("supernet of tiny trained") == 1


def _descendants(root: int) -> list[int]:
    """Every living process below ``root`` (torchrun starts each worker in a session of its own)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                text = (entry / "stat").read_text()
            except OSError:
                continue
            fields = text[text.rindex(")") + 2 :].split()
            if fields[0] not in ("Z", "X"):
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rindex(")") + 2 :].split()[0] not in ("Z", "X")


def test_a_killed_two_process_run_resumes_and_ends_with_the_weights_of_an_uninterrupted_one(
    inputs, ddp_uninterrupted_run, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    log = (tmp_path / "killed.log").open("w")
    process = subprocess.Popen(
        _command(inputs, out), stdout=log, stderr=subprocess.STDOUT, env=_environment(), start_new_session=True
    )
    workers: list[int] = []
    try:
        assert wait_until(lambda: (out / "checkpoint.pt").exists() or process.poll() is not None, 300)
        workers = [pid for pid in _descendants(process.pid) if pid != process.pid]
        os.killpg(process.pid, signal.SIGKILL)  # torchrun's process group: its agent (the workers are in their own)
        process.wait(timeout=30)
        # the workers die with torchrun's agent (hwnas asks Linux for a parent-death signal): none goes on writing
        assert wait_until(lambda: not any(map(_alive, workers)), 20, poll=0.1), "workers outlived the killed torchrun"
    finally:
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        log.close()
    assert not (out / WEIGHTS_FILE).exists(), "the run finished before it was killed"
    done = torch.load(out / "checkpoint.pt", weights_only=True)["epoch"]
    assert 1 <= done < EPOCHS

    resumed = _torchrun(inputs, out)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    output = resumed.stdout + resumed.stderr
    assert f"{done} epoch(s) done, from epoch {done + 1} of {EPOCHS}" in output, output[-3000:]
    assert output.count("resuming") == 1  # rank 0 alone says so

    whole_folder = ddp_uninterrupted_run[0]
    expected, got = _weights(whole_folder), _weights(out)
    assert expected.keys() == got.keys() and all(torch.equal(expected[name], got[name]) for name in expected)
    drop = lambda points: [{k: v for k, v in p.items() if k != "seconds"} for p in points]  # noqa: E731
    whole_info, info = (json.loads((folder / INFO_FILE).read_text()) for folder in (whole_folder, out))
    assert drop(info["curve"]) == drop(whole_info["curve"])
