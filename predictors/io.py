"""Save and load every predictor the same way: a model file plus a versioned JSON sidecar.

No predictor file is ever unpickled. Latency predictors are written with ``skops`` (plain data and
an explicit list of scikit-learn types; anything else in the file is refused, naming the type);
the accuracy predictor's network is a torch state dict, read with ``torch.load(weights_only=True)``.
A shared predictor therefore cannot run code when it is loaded, whoever wrote it and its sidecar.

The order of checks on load:

1. read the sidecar (plain JSON) and its version;
2. refuse a predictor of another device or search space (names the differing fields);
3. refuse a model file whose SHA-256 is not the one the sidecar recorded (corrupted, truncated or
   swapped files are never parsed);
4. refuse a model saved with another version of the library its format depends on;
5. only then read it, through the class the sidecar's ``kind`` names (:data:`PREDICTORS`).

The sidecar also records the hyperparameters (``get_params``), the feature list, the training
set's hash and size, the metrics on held-out data and the library versions.
"""

from __future__ import annotations

import platform
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from hwnas.errors import UserError
from hwnas.fileio import atomic_write, atomic_write_json, file_sha256, read_json
from hwnas.formats import FORMATS
from hwnas.latency_tables.compat import differences
from hwnas.predictors.registry import PREDICTORS, hyperparameters_of
from hwnas.space import SearchSpace

SIDECAR_FORMAT = FORMATS["predictor-sidecar"]
# a model written with another version of these is refused: their file formats do not promise to travel
PINNED_LIBRARIES = {"lut": (), "flops": ("scikit-learn",), "calibrated": ("scikit-learn",), "accuracy-fbnetv3": ()}


def sidecar_path(model_path: Path) -> Path:
    return Path(model_path).with_suffix(".json")


def library_versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in ("hwnas", "scikit-learn", "skops", "numpy", "scipy", "torch"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "?"
    return found


def save_predictor(
    predictor: Any, path: Path, metrics: dict[str, Any] | None = None, extra: dict[str, Any] | None = None
) -> tuple[Path, Path]:
    """Write ``path`` (the model file) and its sidecar ``path.with_suffix('.json')``; returns both paths."""
    path = Path(path)
    if path.suffix == ".json":
        suggestion = path.with_suffix(".skops")
        raise UserError(f"predictor path {path} ends in .json, which is the sidecar's name; use e.g. {suggestion}")
    missing = [name for name in predictor.fitted_attributes if not hasattr(predictor, name)]
    if missing:
        raise UserError("refusing to save a predictor that was never fitted")
    atomic_write(path, predictor.write_model)
    sidecar = {
        SIDECAR_FORMAT.key: SIDECAR_FORMAT.version,
        "kind": predictor.kind,
        "class": type(predictor).__name__,
        "model_file": path.name,
        "model_sha256": file_sha256(path),
        "hyperparameters": hyperparameters_of(predictor),
        **predictor.sidecar_fields(),
        "metrics": metrics or {},
        "libraries": library_versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **(extra or {}),
    }
    atomic_write_json(sidecar_path(path), sidecar)
    return path, sidecar_path(path)


def read_sidecar(path: Path) -> dict[str, Any]:
    side = sidecar_path(path)
    if not side.exists():
        raise UserError(f"predictor {path} has no sidecar {side}; refusing to load a model file without one")
    data = read_json(side, "predictor sidecar")
    SIDECAR_FORMAT.check(data, side)
    return data


def check_identity(sidecar: dict[str, Any], path: Path, fingerprint: dict[str, Any] | None, space_hash: str | None) -> None:
    """Raise a one-line UserError naming what differs when the predictor is for another device or space."""
    found = []
    if space_hash is not None and sidecar.get("space_hash") != space_hash:
        found.append(f"space hash: {sidecar.get('space_hash')} ({sidecar.get('space')}) vs {space_hash}")
    if fingerprint is not None:
        found += differences("fingerprint", sidecar.get("fingerprint"), fingerprint)
    if found:
        raise UserError(f"predictor {path} is for another device or space (predictor vs wanted: {'; '.join(found[:4])})")


def load_predictor(
    path: Path, fingerprint: dict[str, Any] | None = None, space_hash: str | None = None, space: SearchSpace | None = None
) -> Any:
    """Load a predictor saved by :func:`save_predictor`, after every check in the module docstring."""
    path = Path(path)
    sidecar = read_sidecar(path)
    check_identity(sidecar, path, fingerprint, space_hash)
    try:
        actual = file_sha256(path)
    except OSError as error:
        raise UserError(f"cannot read predictor {path}: {error.strerror}") from None
    if actual != sidecar.get("model_sha256"):
        raise UserError(
            f"predictor {path} does not match its sidecar (sha256 {actual[:12]} vs recorded "
            f"{str(sidecar.get('model_sha256'))[:12]}): corrupted or replaced, refusing to load it"
        )
    kind = str(sidecar.get("kind"))
    cls = PREDICTORS.get(kind)
    here = library_versions()
    for name in PINNED_LIBRARIES.get(kind, ()):
        saved = sidecar.get("libraries", {}).get(name)
        if saved != here[name]:
            raise UserError(f"predictor {path} was saved with {name} {saved}, this is {here[name]}; refit it")
    if not isinstance(sidecar.get("hyperparameters"), dict):
        raise UserError(f"predictor sidecar {sidecar_path(path)} has no hyperparameters mapping")
    return cls.read_model(path, sidecar, space)
