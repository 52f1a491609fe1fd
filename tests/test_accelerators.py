"""Accelerators (``--accelerator auto|cpu|cuda``): the CPU path runs here for real and trains what it always trained;
CUDA without a device is one line; the CUDA tests run a real training step where there is a GPU and skip, with the
reason, where there is none (never faked)."""

from __future__ import annotations

import contextlib
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_supernet_train import TINY

from hwnas.accelerator import (
    ACCELERATORS,
    Distributed,
    Precision,
    autocast_context,
    autocast_dtype,
    cuda_unavailable_reason,
    grad_scaler,
    resolve_device,
    to_cpu,
)
from hwnas.builder import build_model
from hwnas.cli.common import ACCELERATOR_CHOICES
from hwnas.errors import UserError
from hwnas.presets import get_space
from hwnas.recipe import Recipe
from hwnas.supernet.train import check_inputs, train_supernet
from hwnas.trainer import CHECKPOINT_FILE, fit_model, train

SMALL_ARCH = "default:r32_c16[k3e3]_c32[k3e3]_c48[k3e3h]_c80[k3e3h]"
HAS_CUDA = torch.cuda.is_available()
NO_CUDA = f"no CUDA device here: {cuda_unavailable_reason()}"
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason=NO_CUDA)


@pytest.fixture(scope="module")
def tiny_data(embedded_data):
    return embedded_data.head(192, 64)


def _same_state(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[name], second[name]) for name in first)


def _without_seconds(points: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{key: value for key, value in point.items() if key != "seconds"} for point in points]


# ---- the CPU path -----------------------------------------------------------------------------------
@pytest.mark.skipif(HAS_CUDA, reason="a CUDA device is here: 'auto' means the GPU, whose weights are others")
def test_cpu_and_auto_train_the_weights_the_default_trains(tiny_data) -> None:
    """One epoch, the same seed: ``accelerator="cpu"`` and ``"auto"`` (the CPU here) give exactly the default's weights.

    The default is the trainer as it was before accelerators (checked against that code when this was written:
    weights and curves bit for bit equal). EMA, MixUp and label smoothing take every branch of the training step.
    """
    space = get_space("default")
    arch = space.parse(SMALL_ARCH)
    recipe = Recipe(epochs=1, batch_size=64, lr=0.05, ema=0.99, mixup=0.2, label_smoothing=0.1)
    results = {
        name: train(space, arch, recipe, tiny_data, seed=2, threads=1, progress=False, **kwargs)
        for name, kwargs in (("default", {}), ("cpu", {"accelerator": "cpu"}), ("auto", {"accelerator": "auto"}))
    }
    reference = results["default"]
    assert next(reference.model.parameters()).device.type == "cpu"
    for name, result in results.items():
        assert _same_state(result.model.state_dict(), reference.model.state_dict()), name
        assert _without_seconds(result.curve) == _without_seconds(reference.curve), name
    assert math.isfinite(reference.curve[0]["train_loss"])


@pytest.mark.skipif(HAS_CUDA, reason="a CUDA device is here: 'auto' means the GPU, whose weights are others")
def test_supernet_training_on_cpu_and_auto_gives_the_default_weights(tiny_data) -> None:
    recipe = Recipe(epochs=1, batch_size=64, lr=0.1)
    runs = [
        train_supernet(TINY, recipe, tiny_data, seed=1, random_subnets=1, threads=1, **kwargs)
        for kwargs in ({}, {"accelerator": "cpu"}, {"accelerator": "auto"})
    ]
    for run in runs[1:]:
        assert _same_state(run.supernet.state_dict(), runs[0].supernet.state_dict())
        assert _without_seconds(run.curve) == _without_seconds(runs[0].curve)


def test_devices_and_precision_on_the_cpu() -> None:
    assert ACCELERATORS == ACCELERATOR_CHOICES  # the CLI names them without importing torch
    cpu = torch.device("cpu")
    assert resolve_device("cpu") == cpu
    assert resolve_device("auto") == (torch.device("cuda", torch.cuda.current_device()) if HAS_CUDA else cpu)
    assert autocast_dtype(cpu) is None and grad_scaler(cpu) is None and Precision.for_device(cpu).scaler is None
    assert isinstance(autocast_context(cpu), contextlib.nullcontext)
    with pytest.raises(UserError, match="not one of auto, cpu, cuda"):
        resolve_device("tpu")
    state = torch.nn.BatchNorm2d(2).state_dict()
    assert to_cpu(state) is state  # nothing off the CPU: saved as it always was


@pytest.mark.skipif(HAS_CUDA, reason="a CUDA device is here: --accelerator cuda works")
def test_cuda_without_a_device_is_one_line() -> None:
    with pytest.raises(UserError) as caught:
        resolve_device("cuda")
    message = str(caught.value)
    assert message.startswith("no CUDA device here (") and "\n" not in message and "--accelerator cpu" in message


def _hwnas(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hwnas", *map(str, args)], capture_output=True, text=True, timeout=300)


def _one_error_line(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert all(fragment in lines[0] for fragment in fragments), lines[0]


@pytest.mark.skipif(HAS_CUDA, reason="a CUDA device is here: --accelerator cuda would train")
@pytest.mark.parametrize("verb", [["train", "--arch", SMALL_ARCH], ["supernet", "train"]])
def test_the_cli_says_there_is_no_cuda_device_in_one_line(tmp_path: Path, verb: list[str], hwnas_in_process) -> None:
    _one_error_line(hwnas_in_process(*verb, "--out", tmp_path / "out", "--accelerator", "cuda"), "no CUDA device here (")
    assert not (tmp_path / "out" / CHECKPOINT_FILE).exists()


def test_an_unknown_accelerator_is_one_line(tmp_path: Path) -> None:
    result = _hwnas("supernet", "train", "--out", tmp_path / "out", "--accelerator", "tpu")
    _one_error_line(result, "--accelerator", "'tpu' is not one of auto, cpu, cuda")


# ---- what data-parallel runs check before they start ----------------------------------------------
def test_torchrun_variables_and_a_batch_that_does_not_split_evenly(tiny_data) -> None:
    assert Distributed.from_environment({}) is None and Distributed.from_environment({"WORLD_SIZE": "1"}) is None
    found = Distributed.from_environment({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"})
    assert found == Distributed(rank=1, world_size=2, local_rank=1) and not found.is_main
    with pytest.raises(UserError, match="launch with torchrun"):
        Distributed.from_environment({"WORLD_SIZE": "2"})
    with pytest.raises(UserError, match="set batch_size to a multiple of 3"):
        check_inputs(TINY, Recipe(batch_size=64), tiny_data, 1, processes=3)
    check_inputs(TINY, Recipe(batch_size=66), tiny_data, 1, processes=3)


# ---- CUDA: real steps where there is a GPU, skipped with the reason where there is none ----------------
class _Stop(Exception):
    """Raised after the first epoch's checkpoint, where a kill would stop the run."""


def _stop_after_first(point: dict[str, float]) -> None:
    raise _Stop


def _on_cpu(value: object) -> bool:
    if isinstance(value, torch.Tensor):
        return value.device.type == "cpu"
    if isinstance(value, dict):
        return all(_on_cpu(item) for item in value.values())
    if isinstance(value, list | tuple):
        return all(_on_cpu(item) for item in value)
    return True


@needs_cuda
def test_mixed_precision_on_cuda_is_bfloat16_or_float16_with_a_scaler() -> None:
    device = resolve_device("cuda")
    dtype = autocast_dtype(device)
    assert device.type == "cuda" and dtype in (torch.bfloat16, torch.float16)
    assert (grad_scaler(device) is not None) == (dtype == torch.float16)
    with autocast_context(device):
        assert torch.ones(2, 2, device=device).matmul(torch.ones(2, 2, device=device)).dtype == dtype


@needs_cuda
def test_training_on_cuda_has_a_finite_loss_and_its_checkpoint_resumes_on_the_cpu(tiny_data, tmp_path: Path) -> None:
    space = get_space("default")
    arch = space.parse(SMALL_ARCH)
    recipe = Recipe(epochs=2, batch_size=64, lr=0.05, mixup=0.2, ema=0.99)
    torch.manual_seed(0)
    model = build_model(space, arch)
    with pytest.raises(_Stop):
        fit_model(model, tiny_data, recipe, 32, 1, checkpoint=tmp_path, on_epoch=_stop_after_first, accelerator="cuda")
    saved = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)  # no map_location: its tensors are CPU tensors
    assert _on_cpu(saved) and saved["epoch"] == 1 and math.isfinite(saved["curve"][0]["train_loss"])

    lines: list[str] = []
    torch.manual_seed(0)
    resumed = fit_model(
        build_model(space, arch), tiny_data, recipe, 32, 1, checkpoint=tmp_path, log=lines.append, accelerator="cpu"
    )
    assert "1 epoch(s) done, from epoch 2 of 2" in lines[0]
    assert all(math.isfinite(point["train_loss"]) for point in resumed.points)
    assert next(resumed.model.parameters()).device.type == "cpu"


@needs_cuda
def test_supernet_training_on_cuda_has_finite_losses_and_comes_back_on_the_cpu(tiny_data, tmp_path: Path) -> None:
    recipe = Recipe(epochs=1, batch_size=64, lr=0.1)
    trained = train_supernet(TINY, recipe, tiny_data, seed=1, random_subnets=1, checkpoint=tmp_path, accelerator="cuda")
    point = trained.curve[0]
    assert math.isfinite(point["train_loss"]) and math.isfinite(point["distill_loss"])
    assert 0 <= point["largest_val_accuracy"] <= 1
    assert all(tensor.device.type == "cpu" for tensor in trained.supernet.state_dict().values())
    assert _on_cpu(torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True))
    again = train_supernet(TINY, recipe, tiny_data, seed=1, random_subnets=1, checkpoint=tmp_path, accelerator="cpu")
    assert _same_state(again.supernet.state_dict(), trained.supernet.state_dict())  # finished: the CPU reads it back
