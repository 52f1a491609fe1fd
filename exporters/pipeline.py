"""Export one model to several formats: write, verify against PyTorch, re-measure, model card."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hwnas.devices import DeviceSpec, make_backend
from hwnas.errors import UserError
from hwnas.exporters.base import Exporter, get_exporter
from hwnas.exporters.formats import FILE_NAMES
from hwnas.exporters.model_card import write_model_card
from hwnas.exporters.verification import verify
from hwnas.fileio import file_sha256

REJECTED_DIR = "rejected"  # files that failed verification


@dataclass
class ExportRequest:
    module: nn.Module
    example_input: torch.Tensor
    images: np.ndarray  # NCHW float32 verification images (real ones)
    labels: np.ndarray | None = None
    calibration: np.ndarray | None = None  # NCHW float32 training images for int8
    info: dict[str, Any] = field(default_factory=dict)


def check_out_dir(out_dir: Path) -> None:
    """Fail before any work when the output folder cannot be written."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".write-test-"):
            pass
    except OSError as error:
        raise UserError(f"cannot write to {out_dir}: {error.strerror or error}") from None


def resolve_formats(formats: list[str]) -> list[Exporter]:
    """Exporters for the requested formats; a missing runtime fails now, before anything is written."""
    exporters = [get_exporter(fmt.strip()) for fmt in formats if fmt.strip()]
    if not exporters:
        raise UserError("no export format given")
    for exporter in exporters:
        reason = exporter.unavailable_reason()
        if reason is not None:
            raise UserError(f"format {exporter.format!r} cannot be exported here: {reason}")
    return exporters


def export_all(
    request: ExportRequest, formats: list[str], out_dir: Path, devices: list[DeviceSpec], on_step: Any = None
) -> dict[str, Any]:
    """Export, verify and re-measure every format; write the model card; return it.

    A file that fails verification is moved to ``rejected/`` (kept for debugging, never under the
    name a deployment script would pick up) and is not measured. If a format cannot be exported at
    all, the model card still records the formats done before it, then the error propagates.
    """
    exporters = resolve_formats(formats)
    check_out_dir(out_dir)
    backends = [make_backend(spec) for spec in devices]
    exports: list[dict[str, Any]] = []
    try:
        for exporter in exporters:
            exports.append(_export_one(exporter, request, out_dir, backends, on_step))
    finally:
        if exports:
            write_model_card(out_dir, request.info, exports)
    return {"model": request.info, "exports": exports}


def _export_one(exporter: Exporter, request: ExportRequest, out_dir: Path, backends: list[Any], on_step: Any) -> dict[str, Any]:
    if on_step:
        on_step(f"{exporter.format}: export")
    path = exporter.export(request.module, request.example_input, out_dir / FILE_NAMES[exporter.format], request.calibration)
    if on_step:
        on_step(f"{exporter.format}: verify on {len(request.images)} images")
    check = verify(exporter, path, request.module, request.images, request.labels)
    if not check.passed:
        path = _reject(path, out_dir)
    latency = [_measure(backend, path) for backend in backends if check.passed and backend.name in exporter.measure_backends]
    return {
        "format": exporter.format,
        "precision": exporter.precision,
        "file": path.relative_to(out_dir).as_posix(),
        "bytes": os.path.getsize(path),
        "sha256": file_sha256(path),
        "verification": check.to_json(),
        "latency": latency,
    }


def _reject(path: Path, out_dir: Path) -> Path:
    rejected = out_dir / REJECTED_DIR / path.name
    rejected.parent.mkdir(exist_ok=True)
    return path.replace(rejected)


def _measure(backend: Any, path: Path) -> dict[str, Any]:
    reason = backend.unavailable_reason()
    if reason is not None:
        return {"device": backend.spec.name, "error": reason}
    measurement = backend.measure(path)
    return {"device": backend.spec.name, **measurement.summary(), "fingerprint": measurement.fingerprint}
