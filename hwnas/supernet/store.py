"""A trained supernet on disk, and the accuracy a subnetwork inherits from it.

A supernet folder holds ``supernet.pt`` (the plain state dict, ``torch.save``) and ``supernet.json``
(what the weights are: the search space itself, its hash, the data, the recipe, the training
method and curve, the hwnas version). The space is written out whole, not by name: a preset may
change between hwnas versions and a custom space lives in no registry, yet the folder must rebuild
its :class:`Supernet` wherever it is shared. Reading checks the JSON's schema version first
(:data:`hwnas.formats.FORMATS` ``"supernet"``: a newer file says "upgrade hwnas"), opens the weights
as every hwnas ``.pt`` reader does (zip-bomb check, then ``torch.load(weights_only=True)``) and loads
them with ``strict=True``; weights of another space are one line naming what does not fit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hwnas import __version__
from hwnas.arch import Arch
from hwnas.builder import recalibrate_batchnorm
from hwnas.data import ImageSplits
from hwnas.errors import UserError
from hwnas.export_model import read_state_dict
from hwnas.fileio import atomic_write, atomic_write_json, read_json
from hwnas.formats import FORMATS
from hwnas.recipe import Recipe
from hwnas.space import SearchSpace
from hwnas.supernet.network import Supernet
from hwnas.trainer import Prepared, batchnorm_images, evaluate

WEIGHTS_FILE = "supernet.pt"
INFO_FILE = "supernet.json"
INFO_KIND = "hwnas-supernet"
SUPERNET_FORMAT = FORMATS["supernet"]


def data_description(source: str | None, data: ImageSplits) -> dict[str, Any]:
    """The ``data`` entry of ``supernet.json``: a source ``load_data`` reads again (a folder as an absolute path)."""
    source = source or "embedded"
    if source not in ("embedded", "fashion-mnist"):
        source = str(Path(source).resolve())
    return {"source": source, "name": data.name, "train_images": len(data.train), "val_images": len(data.val)}  # type: ignore[arg-type]


def save_supernet(
    folder: Path,
    supernet: Supernet,
    *,
    data: dict[str, Any],
    recipe: Recipe,
    seed: int,
    method: dict[str, Any],
    curve: list[dict[str, float]],
    wall_time_s: float,
) -> dict[str, Any]:
    """Write ``supernet.pt``, then ``supernet.json`` (so a description never names weights not yet written); return the JSON."""
    space = supernet.space
    described = SUPERNET_FORMAT.stamp(
        {
            "kind": INFO_KIND,
            "space": space.to_json(),
            "space_hash": space.hash,
            "in_channels": space.in_channels,
            "num_classes": space.num_classes,
            "data": data,
            "epochs": len(curve),
            "seed": seed,
            "recipe": recipe.to_json(),
            "method": method,
            "curve": curve,
            "wall_time_s": wall_time_s,
            "hwnas_version": __version__,
        }
    )
    info = json.loads(json.dumps(described))  # as it reads back: lists, not the space's tuples
    state = supernet.state_dict()
    atomic_write(Path(folder) / WEIGHTS_FILE, lambda temp: torch.save(state, temp))
    atomic_write_json(Path(folder) / INFO_FILE, info)
    return info


def load_supernet(folder: Path) -> tuple[Supernet, dict[str, Any]]:
    """The supernet a folder of :func:`save_supernet` holds (in eval mode, its largest subnetwork active) and its JSON."""
    folder = Path(folder)
    info = read_description(folder)
    info_path, weights = folder / INFO_FILE, folder / WEIGHTS_FILE
    space = _space(info, info_path)
    method = info.get("method")
    kernel_transform = isinstance(method, dict) and "kernel_transform" in method
    with torch.random.fork_rng(devices=[]):  # the initial weights are replaced: the caller's random stream is left alone
        supernet = Supernet(space, kernel_transform=kernel_transform)
    state = read_state_dict(weights)
    misfit = _misfit(supernet, state)
    if misfit:
        raise UserError(f"{weights} does not fit the supernet of space {space.name!r} that {info_path} describes ({misfit})")
    try:
        supernet.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError, TypeError, ValueError) as error:
        raise UserError(
            f"{weights} does not fit the supernet of space {space.name!r} ({str(error).splitlines()[0][:200]})"
        ) from None
    return supernet.eval(), info


def read_description(folder: Path) -> dict[str, Any]:
    """The checked ``supernet.json`` of a supernet folder, without its weights (its recipe, data, method: cheap to read)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"supernet folder {folder} {'is a file' if folder.exists() else 'does not exist'}")
    info_path = folder / INFO_FILE
    if not info_path.exists():
        raise UserError(f"{folder} holds no {INFO_FILE}: not a supernet folder (hwnas supernet train --out DIR writes one)")
    info = read_json(info_path, "supernet description")
    if not isinstance(info, dict):
        raise UserError(f"supernet description {info_path} holds {type(info).__name__}, not a JSON object")
    SUPERNET_FORMAT.check(info, info_path)
    if info.get("kind") != INFO_KIND:
        raise UserError(f"{info_path} is not an hwnas supernet description (kind {info.get('kind')!r})")
    return info


def _space(info: dict[str, Any], source: Path) -> SearchSpace:
    """The space ``supernet.json`` describes, refused in one line when malformed or not the one its hash names."""
    try:
        space = SearchSpace.from_json(info["space"])
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
        raise UserError(f"supernet description {source} has a malformed space ({str(error).splitlines()[0][:200]})") from None
    if info.get("space_hash") != space.hash:
        raise UserError(
            f"supernet description {source}: its space hashes to {space.hash}, not the {info.get('space_hash')!r} it names"
        )
    return space


def _misfit(model: nn.Module, state: dict[str, Any]) -> str:
    """What keeps ``state`` from loading into ``model``: missing, unexpected and reshaped tensors, with an example each."""
    own = model.state_dict()
    missing = [name for name in own if name not in state]
    unexpected = [name for name in state if name not in own]
    reshaped = [
        f"{name} {tuple(value.shape)}, expected {tuple(own[name].shape)}"
        for name, value in state.items()
        if name in own and (not isinstance(value, torch.Tensor) or value.shape != own[name].shape)
    ]
    found = ((missing, "missing"), (unexpected, "unexpected"), (reshaped, "of another shape"))
    parts = [f"{len(names)} tensor(s) {what}, e.g. {names[0]}" for names, what in found if names]
    return "; ".join(parts)


def inherited_accuracy(supernet: Supernet, arch: Arch, data: ImageSplits, *, bn_images: torch.Tensor | None = None) -> float:
    """Validation accuracy of ``arch`` with the weights it inherits from ``supernet``, as an ordinary network.

    The subnetwork is extracted (exactly ``build_model(space, arch)``) and its BatchNorm statistics
    re-estimated on un-augmented training images before it is evaluated: the running averages of a
    supernet mix every subnetwork it trained, and a subnetwork scored with them can fall to chance.
    ``bn_images`` (``hwnas.trainer.batchnorm_images`` at ``arch.resolution``) saves reading them again.
    The supernet itself is not changed.
    """
    space = supernet.space
    space.validate(arch)
    if data.num_classes != space.num_classes:
        raise UserError(f"data {data.name!r} has {data.num_classes} classes, the supernet of {space.name!r} {space.num_classes}")
    model = inherited_network(supernet, arch, data, bn_images=bn_images)
    return evaluate(model, Prepared(data.val, arch.resolution, space.in_channels))


def inherited_network(supernet: Supernet, arch: Arch, data: ImageSplits, *, bn_images: torch.Tensor | None = None) -> nn.Module:
    """``arch`` as an ordinary network (``build_model``'s) with the weights it inherits from ``supernet``, BatchNorm
    statistics re-estimated on ``data``'s first training images (or ``bn_images``): what is scored, exported, fine-tuned."""
    model = supernet.extract(arch)
    if bn_images is None:
        bn_images = batchnorm_images(data, arch.resolution, supernet.space.in_channels, model)
    if bn_images is not None:
        recalibrate_batchnorm(model, bn_images)
    return model
