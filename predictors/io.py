"""Save and load predictors as a model file plus a JSON sidecar, refusing anything that does not match.

A pickled model runs code when it is loaded, so the order of checks on load is the point:

1. read the sidecar (plain JSON, safe to read);
2. refuse a predictor of another device or search space (names the differing fields);
3. refuse a model file whose SHA-256 is not the one the sidecar recorded (corrupted, truncated or
   swapped files are never unpickled);
4. refuse a model pickled by another scikit-learn / torch version (pickles do not travel);
5. only then ``joblib.load``, and check the object is what the sidecar says.

The sidecar also records the feature list, the training set's hash and size, the metrics on
held-out networks and the library versions, so a predictor file says what it is.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from hwnas.errors import UserError
from hwnas.fileio import atomic_write, atomic_write_json
from hwnas.latency_tables.compat import differences
from hwnas.predictors.latency import PREDICTORS, LatencyPredictor

SIDECAR_VERSION = 1
PINNED_LIBRARIES = ("scikit-learn", "numpy")  # a pickle made by another version of these is refused


def sidecar_path(model_path: Path) -> Path:
    return Path(model_path).with_suffix(".json")


def library_versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in ("hwnas", "scikit-learn", "numpy", "scipy", "torch"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "?"
    return found


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_predictor(
    predictor: LatencyPredictor, path: Path, metrics: dict[str, Any] | None = None, extra: dict[str, Any] | None = None
) -> tuple[Path, Path]:
    """Write ``path`` (joblib) and its sidecar ``path.with_suffix('.json')``; returns both paths."""
    import joblib

    path = Path(path)
    if path.suffix == ".json":
        raise UserError(
            f"predictor path {path} ends in .json, which is the sidecar's name; use e.g. {path.with_suffix('.joblib')}"
        )
    if not hasattr(predictor, "training_hash_"):
        raise UserError("refusing to save a predictor that was never fitted")
    atomic_write(path, lambda temp: joblib.dump(predictor, temp))
    sidecar = {
        "sidecar_version": SIDECAR_VERSION,
        "kind": predictor.kind,
        "class": type(predictor).__name__,
        "model_file": path.name,
        "model_sha256": file_sha256(path),
        "device": predictor.table.device.get("name", "?"),
        "fingerprint": predictor.fingerprint,
        "space": predictor.table.space,
        "space_hash": predictor.space_hash,
        "features": predictor.feature_list(),
        "hyperparameters": predictor.hyperparameters(),
        "training_set": {"hash": predictor.training_hash_, "networks": predictor.n_train_, "ids": predictor.training_ids_},
        "metrics": metrics or {},
        "libraries": library_versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **(extra or {}),
    }
    atomic_write_json(sidecar_path(path), sidecar)
    return path, sidecar_path(path)


def read_sidecar(path: Path) -> dict[str, Any]:
    side = sidecar_path(path)
    try:
        data = json.loads(side.read_text())
    except FileNotFoundError:
        raise UserError(f"predictor {path} has no sidecar {side}; refusing to load a model file without one") from None
    except OSError as error:
        raise UserError(f"cannot read predictor sidecar {side}: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise UserError(f"predictor sidecar {side} is not valid JSON ({error})") from None
    if not isinstance(data, dict) or data.get("sidecar_version") != SIDECAR_VERSION:
        raise UserError(
            f"predictor sidecar {side}: version {data.get('sidecar_version') if isinstance(data, dict) else None!r}, "
            f"this hwnas reads {SIDECAR_VERSION}"
        )
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


def load_predictor(path: Path, fingerprint: dict[str, Any] | None = None, space_hash: str | None = None) -> LatencyPredictor:
    """Load a predictor saved by :func:`save_predictor`, after every check in the module docstring."""
    import joblib

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
    here = library_versions()
    for name in PINNED_LIBRARIES:
        if sidecar.get("libraries", {}).get(name) != here[name]:
            raise UserError(
                f"predictor {path} was saved with {name} {sidecar.get('libraries', {}).get(name)}, this is {here[name]}; refit it"
            )
    predictor = joblib.load(path)
    expected = PREDICTORS.get(str(sidecar.get("kind")))
    if expected is None or type(predictor) is not expected:
        raise UserError(f"predictor {path} holds a {type(predictor).__name__}, its sidecar says {sidecar.get('class')}")
    return predictor
