"""Verify an exported file against the PyTorch model on real images.

The file runs in its own runtime (ONNX Runtime, the TFLite interpreter, TensorRT) on the same
validation images as the PyTorch module; we report the max absolute difference of the outputs,
top-1 agreement and, when labels are given, both accuracies. A failure names the first image
whose output is off, never a bare "mismatch".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from exporters.base import Exporter
from hwnas.errors import UserError


class VerificationError(UserError):
    """An exported file does not reproduce the PyTorch model within its tolerance."""


@dataclass(frozen=True)
class Verification:
    format: str
    images: int
    max_abs_diff: float
    top1_agreement: float
    torch_accuracy: float | None
    file_accuracy: float | None
    passed: bool
    failure: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@torch.no_grad()
def torch_outputs(module: nn.Module, images: np.ndarray, batch: int = 256) -> np.ndarray:
    module.eval()
    return np.concatenate([module(torch.from_numpy(images[i : i + batch])).numpy() for i in range(0, len(images), batch)])


def verify(
    exporter: Exporter,
    path: Path,
    module: nn.Module,
    images: np.ndarray,
    labels: np.ndarray | None = None,
    reference: np.ndarray | None = None,
) -> Verification:
    """Compare the file at ``path`` with ``module`` on ``images`` (NCHW float32) under the exporter's tolerance."""
    expected = torch_outputs(module, images) if reference is None else reference
    actual = exporter.runner(path)(images).reshape(expected.shape)
    differences = np.abs(actual - expected).reshape(len(images), -1).max(axis=1)
    agreement = float((actual.argmax(1) == expected.argmax(1)).mean())
    torch_accuracy = file_accuracy = None
    if labels is not None:
        torch_accuracy = float((expected.argmax(1) == labels).mean())
        file_accuracy = float((actual.argmax(1) == labels).mean())
    failure = _first_failure(exporter, differences, expected, actual, agreement, torch_accuracy, file_accuracy)
    return Verification(
        exporter.format, len(images), float(differences.max()), agreement, torch_accuracy, file_accuracy, failure is None, failure
    )


def _first_failure(
    exporter: Exporter,
    differences: np.ndarray,
    expected: np.ndarray,
    actual: np.ndarray,
    agreement: float,
    torch_accuracy: float | None,
    file_accuracy: float | None,
) -> str | None:
    tolerance = exporter.tolerance
    if tolerance.max_abs_diff is not None and differences.max() > tolerance.max_abs_diff:
        image = int(np.argmax(differences > tolerance.max_abs_diff))
        where = int(np.abs(actual[image] - expected[image]).argmax())
        return (
            f"image {image}: |diff| {differences[image]:.3g} > {tolerance.max_abs_diff:g} at output {where} "
            f"(torch {expected[image].flat[where]:.6g}, file {actual[image].flat[where]:.6g})"
        )
    if agreement < tolerance.min_top1_agreement:
        image = int(np.argmax(actual.argmax(1) != expected.argmax(1)))
        return (
            f"top-1 agreement {agreement:.3f} < {tolerance.min_top1_agreement}; first disagreement at image {image} "
            f"(torch class {expected[image].argmax()}, file class {actual[image].argmax()})"
        )
    if torch_accuracy is not None and file_accuracy is not None and torch_accuracy - file_accuracy > tolerance.max_accuracy_drop:
        return f"accuracy {file_accuracy:.4f} is more than {tolerance.max_accuracy_drop:.0%} below PyTorch's {torch_accuracy:.4f}"
    return None
