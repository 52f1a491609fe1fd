"""What ``hwnas export MODEL`` exports: resolve MODEL into a module, its inputs and real images.

MODEL is one of:

- a run folder (``result.json`` + ``model.pt``, as written by ``hwnas train --out`` / ``hwnas run``);
- a pruned run folder (``pruned.json`` + ``model.pt``, as written by ``hwnas prune``): the base network is
  rebuilt, its recorded channel pruning replayed through Torch-Pruning, then the state dict loaded
  (``weights_only=True``: no module is ever unpickled);
- an architecture string, with ``--checkpoint model.pt`` for trained weights;
- ``torchvision:NAME`` (e.g. ``torchvision:mobilenet_v2``), built with seeded random weights (nothing is
  downloaded).

Verification images are real: the validation split of the data (``--data``), resized and
channel-matched to the model's input. An untrained model (no checkpoint, or torchvision) gets its
BatchNorm statistics re-estimated on training images first, so its outputs depend on its input.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from torch import nn
from torch.utils.data import Dataset

from hwnas.arch import Arch
from hwnas.builder import arch_cost, build_model, count_flops, count_params, recalibrate_batchnorm
from hwnas.data import ImageSplits, load_data
from hwnas.errors import UserError
from hwnas.exporters import ExportRequest
from hwnas.fileio import check_archive, read_json
from hwnas.formats import FORMATS
from hwnas.presets import get_space
from hwnas.trainer import Prepared

# what torch.load raises on a file that is no state dict (empty, text, truncated zip, a foreign pickle)
_NOT_A_STATE_DICT = (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, IndexError, ValueError, TypeError)


def read_state_dict(path: Path) -> dict[str, Any]:
    """The tensors of a ``.pt`` file, read with ``weights_only=True`` (no object is unpickled).

    A missing, empty or foreign file is one line naming it; whether the tensors fit a model is the
    caller's question (``load_state_dict``).
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise UserError(f"checkpoint {path} is a folder, not a model.pt file")
    if path.stat().st_size == 0:
        raise UserError(f"checkpoint {path} is empty (0 bytes): an interrupted save? Train again or pass another file")
    check_archive(path, "checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as error:
        raise UserError(f"cannot read checkpoint {path}: {error.strerror or error}") from None
    except _NOT_A_STATE_DICT as error:
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"checkpoint {path} is not a PyTorch state dict ({detail})") from None
    if not isinstance(state, dict):
        raise UserError(f"checkpoint {path} holds a {type(state).__name__}, not a PyTorch state dict")
    return state


@dataclass(frozen=True)
class ResolvedModel:
    module: nn.Module
    channels: int
    resolution: int
    info: dict[str, Any]
    trained: bool


def resolve_model(model: str, checkpoint: Path | None = None) -> ResolvedModel:
    if model.startswith("torchvision:"):
        return _torchvision(model.split(":", 1)[1])
    path = Path(model)
    if path.is_dir():
        return _pruned_run_folder(path) if (path / PRUNED_FILE).exists() else _run_folder(path)
    if path.exists():
        raise UserError(f"{model} is a file; MODEL is a run folder, an architecture string or torchvision:NAME")
    return _arch(model, checkpoint)


RANDOM_WEIGHTS_SEED = 0


@contextmanager
def _seeded() -> Iterator[None]:
    """Seeded random weights, so the same command exports the same file and a verification can be reproduced."""
    with torch.random.fork_rng():
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        yield


def _torchvision(text: str) -> ResolvedModel:
    """``NAME`` or ``NAME?width=W&resolution=R`` (width: the models :mod:`hwnas.decompose` reads)."""
    from hwnas.decompose import parse_torchvision, torchvision_model

    name, width, resolution = parse_torchvision(text)
    resolution = resolution or 224
    try:
        if width is not None:
            module = torchvision_model(name, width)
        else:
            with _seeded():
                module = torchvision.models.get_model(name, weights=None)
    except ValueError:
        raise UserError(f"unknown torchvision model {name!r}") from None
    source = f"torchvision:{text} (random weights, seed {RANDOM_WEIGHTS_SEED})"
    info = {"name": name, "width": width, "source": source, "input_shape": [1, 3, resolution, resolution]}
    return ResolvedModel(module.eval(), 3, resolution, info, trained=False)


def _run_folder(path: Path) -> ResolvedModel:
    result_file, weights = path / "result.json", path / "model.pt"
    if not result_file.exists() or not weights.exists():
        raise UserError(f"{path} is not a run folder (needs result.json and model.pt)")
    result = read_json(result_file, "run result")
    if isinstance(result, dict):
        FORMATS["run-result"].check(result, result_file)
    if not isinstance(result, dict) or not isinstance(result.get("arch"), str):
        raise UserError(f"{result_file} names no architecture (expected an 'arch' string, as hwnas train writes)")
    resolved = _arch(result["arch"], weights)
    info = resolved.info | {
        "recipe": result.get("recipe"),
        "dataset": result.get("dataset"),
        "val_accuracy": result.get("val_accuracy"),
        "test_accuracy": result.get("test_accuracy"),
        "source": str(path),
    }
    return ResolvedModel(resolved.module, resolved.channels, resolved.resolution, info, trained=True)


PRUNED_FILE = "pruned.json"


def build_base(base: dict[str, Any]) -> nn.Module:
    """The unpruned network a pruned run folder names: ``{"arch": ...}``, ``{"torchvision": ..., "num_classes": ...}``
    or ``{"pruned": <another pruned.json's base, history and input_shape>}`` (a pruned model pruned again)."""
    with _seeded():
        if isinstance(base.get("arch"), str):
            arch = Arch.parse(base["arch"])
            space = get_space(arch.space)
            space.validate(arch)
            return build_model(space, arch)
        if isinstance(base.get("torchvision"), str):
            try:
                return torchvision.models.get_model(base["torchvision"], weights=None, num_classes=int(base["num_classes"]))
            except (ValueError, KeyError, TypeError):
                raise UserError(f"unknown torchvision model or class count in {base!r}") from None
    if isinstance(base.get("pruned"), dict):
        return build_pruned(base["pruned"])
    raise UserError(f"pruned model names no base network it can build: {base!r}")


def build_pruned(spec: dict[str, Any]) -> nn.Module:
    """Rebuild ``spec["base"]`` and replay ``spec["history"]`` (Torch-Pruning's pruning history) on it."""
    import torch_pruning as tp

    module = build_base(spec["base"]).eval()
    graph = tp.DependencyGraph().build_dependency(module, example_inputs=torch.zeros(tuple(spec["input_shape"])), verbose=False)
    graph.load_pruning_history([[name, bool(is_out), [int(i) for i in idxs]] for name, is_out, idxs in spec["history"]])
    return module


def _pruned_run_folder(path: Path) -> ResolvedModel:
    weights = path / "model.pt"
    spec = read_json(path / PRUNED_FILE, "pruned model description")
    if isinstance(spec, dict):
        FORMATS["pruned-model"].check(spec, path / PRUNED_FILE)
    if not isinstance(spec, dict) or not {"base", "history", "input_shape"} <= set(spec) or not weights.exists():
        raise UserError(f"{path} is not a pruned run folder (needs {PRUNED_FILE} with base, history, input_shape, and model.pt)")
    state = read_state_dict(weights)
    try:
        module = build_pruned(spec)
        module.load_state_dict(state)
    except (pickle.UnpicklingError, RuntimeError, KeyError, EOFError, TypeError, ValueError, IndexError, AttributeError) as error:
        # AttributeError: a history naming a layer the base network does not have (an edited pruned.json)
        raise UserError(f"{path}: the pruned model does not rebuild ({str(error).splitlines()[0]})") from None
    shape = [int(v) for v in spec["input_shape"]]
    info = {
        key: spec.get(key) for key in ("name", "source", "recipe", "dataset", "val_accuracy", "test_accuracy", "flops", "params")
    } | {"input_shape": shape, "pruned": {"method": spec.get("method"), "budget": spec.get("budget"), "base": spec["base"]}}
    info["name"] = info["name"] or path.name
    info["source"] = str(path)
    return ResolvedModel(module.eval(), shape[1], shape[-1], info, trained=True)


def _arch(text: str, checkpoint: Path | None) -> ResolvedModel:
    arch = Arch.parse(text)
    space = get_space(arch.space)
    space.validate(arch)
    with _seeded():
        module = build_model(space, arch)
    if checkpoint is not None:
        state = read_state_dict(checkpoint)
        try:
            module.load_state_dict(state)
        except (RuntimeError, KeyError, EOFError, TypeError, AttributeError) as error:
            raise UserError(f"checkpoint {checkpoint} does not fit {arch.format()} ({str(error).splitlines()[0]})") from None
    cost = arch_cost(space, arch)
    info = {
        "name": arch.id,
        "arch": arch.format(),
        "source": str(checkpoint) if checkpoint else f"random weights, seed {RANDOM_WEIGHTS_SEED}",
        "input_shape": [1, space.in_channels, arch.resolution, arch.resolution],
        "flops": cost.flops,
        "params": cost.params,
    }
    return ResolvedModel(module.eval(), space.in_channels, arch.resolution, info, trained=checkpoint is not None)


def _stack(dataset: Dataset, count: int) -> tuple[np.ndarray, np.ndarray]:
    count = min(count, len(dataset))  # type: ignore[arg-type]
    pairs = [dataset[i] for i in range(count)]
    return np.stack([image.numpy() for image, _ in pairs]).astype(np.float32), np.array([label for _, label in pairs])


def build_request(resolved: ResolvedModel, data: str | ImageSplits | None, images: int, calibration: int) -> ExportRequest:
    """Verification images (validation split) and calibration images (training split) for ``resolved``; ``data`` is a
    source to load (``--data``) or images already loaded (a caller exporting many models loads them once)."""
    splits = data if isinstance(data, ImageSplits) else load_data(data)
    val_images, val_labels = _stack(Prepared(splits.val, resolved.resolution, resolved.channels), images)
    train_images, _ = _stack(Prepared(splits.train, resolved.resolution, resolved.channels), calibration)
    module = resolved.module
    info = dict(resolved.info)
    if not resolved.trained:
        recalibrate_batchnorm(module, torch.from_numpy(train_images))
        info["batchnorm"] = f"statistics re-estimated on {len(train_images)} training images of {splits.name} (untrained weights)"
    output_size = module(torch.from_numpy(val_images[:1])).shape[-1]
    labels_meaningful = resolved.trained and output_size == splits.num_classes
    example = torch.from_numpy(val_images[:1]).clone()
    info |= {
        "dataset": info.get("dataset") or splits.name,
        "verification_images": len(val_images),
        "params": info.get("params") or count_params(module),
        "flops": info.get("flops") or count_flops(module, tuple(example.shape)),
    }
    return ExportRequest(module, example, val_images, val_labels if labels_meaningful else None, train_images, info)
