"""The network to prune, from what ``hwnas prune MODEL`` was given, and pruned run folders.

MODEL is a run folder (``hwnas train`` / ``hwnas run`` / ``hwnas search``: ``result.json`` with an
architecture and ``model.pt``), a pruned run folder (pruned again), an architecture string with
``--checkpoint``, or ``torchvision:NAME`` (with ``--checkpoint``, or trained here first for a few
epochs: pruning random weights would measure nothing). Each comes with a *base description*
(JSON) from which :func:`hwnas.export_model.build_base` rebuilds the unpruned network, so a pruned
model is saved as that description, Torch-Pruning's pruning history and a state dict: no pickled
module, and ``torch.load(weights_only=True)`` reads it back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hwnas.builder import count_flops, count_params
from hwnas.data import ImageSplits
from hwnas.errors import UserError
from hwnas.export_model import PRUNED_FILE, build_base, read_state_dict, resolve_model
from hwnas.fileio import atomic_write, atomic_write_json, read_json
from hwnas.formats import FORMATS
from hwnas.pruning.structure import analyse
from hwnas.recipe import Recipe
from hwnas.trainer import fit_model

TORCHVISION_RESOLUTION = 64  # the embedded images are 28x28: 224 would cost 12x the time for nothing


@dataclass
class BaseModel:
    module: nn.Module
    spec: dict[str, Any]  # what build_base rebuilds it from
    channels: int
    resolution: int
    name: str
    source: str

    @property
    def input_shape(self) -> list[int]:
        return [1, self.channels, self.resolution, self.resolution]


def load_base(
    model: str,
    checkpoint: Path | None,
    data: ImageSplits,
    *,
    resolution: int | None = None,
    train_epochs: int = 1,
    seed: int = 0,
    log: Callable[[str], None] = lambda _: None,
    progress: bool = False,
) -> BaseModel:
    if model.startswith("torchvision:"):
        return _torchvision(model.split(":", 1)[1], checkpoint, data, resolution, train_epochs, seed, log, progress)
    path = Path(model)
    if path.is_dir() and (path / PRUNED_FILE).exists():
        spec = read_json(path / PRUNED_FILE, "pruned model description")
        resolved = resolve_model(model)
        nested = {key: spec[key] for key in ("base", "history", "input_shape")}
        return BaseModel(
            resolved.module, {"pruned": nested}, resolved.channels, resolved.resolution, resolved.info["name"], model
        )
    if not path.is_dir() and checkpoint is None:
        raise UserError("an architecture string needs --checkpoint (trained weights): pruning random weights measures nothing")
    resolved = resolve_model(model, checkpoint)
    arch = resolved.info.get("arch")
    if not isinstance(arch, str):
        raise UserError(f"{model}: no architecture to rebuild the pruned model from")
    return BaseModel(resolved.module, {"arch": arch}, resolved.channels, resolved.resolution, resolved.info["name"], model)


def _torchvision(
    name: str,
    checkpoint: Path | None,
    data: ImageSplits,
    resolution: int | None,
    epochs: int,
    seed: int,
    log: Callable[[str], None],
    progress: bool,
) -> BaseModel:
    spec = {"torchvision": name, "num_classes": data.num_classes}
    module = build_base(spec)
    resolution = resolution or TORCHVISION_RESOLUTION
    analyse(
        module, torch.zeros(1, 3, resolution, resolution)
    )  # a layer Torch-Pruning cannot handle fails now, not after training
    if checkpoint is not None:
        _load_weights(module, checkpoint)
        source = str(checkpoint)
    else:
        log(f"torchvision:{name} has no weights here: training it for {epochs} epoch(s) at {resolution}px before pruning")
        torch.manual_seed(seed)
        fit_model(module, data, Recipe(epochs=epochs), resolution, 3, seed=seed, progress=progress)
        source = f"torchvision:{name}, trained here {epochs} epoch(s) on {data.name}"
    return BaseModel(module.eval(), spec, 3, resolution, name, source)


def _load_weights(module: nn.Module, checkpoint: Path) -> None:
    state = read_state_dict(checkpoint)
    try:
        module.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError) as error:
        raise UserError(f"checkpoint {checkpoint} does not fit this model ({str(error).splitlines()[0]})") from None


def save_pruned(folder: Path, module: nn.Module, base: BaseModel, history: list[list[Any]], info: dict[str, Any]) -> Path:
    """A pruned run folder: ``pruned.json`` (base description, pruning history, input shape, results) and ``model.pt``."""
    shape = base.input_shape
    spec = {
        "kind": "hwnas-pruned",
        FORMATS["pruned-model"].key: FORMATS["pruned-model"].version,
        "name": info.get("name", base.name),
        "base": base.spec,
        "input_shape": shape,
        "history": history,
        "flops": count_flops(module, tuple(shape)),
        "params": count_params(module),
    } | info
    state = module.state_dict()
    atomic_write(folder / "model.pt", lambda temp: torch.save(state, temp))
    atomic_write_json(folder / PRUNED_FILE, spec)
    return folder
