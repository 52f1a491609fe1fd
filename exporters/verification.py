"""Verify an exported file against the PyTorch model on real images.

The file runs in its own runtime (ONNX Runtime, the TFLite interpreter, TensorRT) on the same
validation images as the PyTorch module; we report the max absolute difference of the outputs,
top-1 agreement and, when labels are given, both accuracies. A failure names the first image
whose output is off, never a bare "mismatch".

PyTorch's fp32 output is itself rounded: on a deep, untrained network its error against the
exact (float64) answer measured 1-2e-5 here, the same size as the file's difference from it, and a
CPU with other kernels can push the two apart past 1e-4 although both are right. So an fp32 file
that misses PyTorch's fp32 output by more than the tolerance is compared with the float64 output
too, and passes if it is within the tolerance of that. A wrong conversion is far from both.

The tolerance is relative to each image's output scale: |diff| <= 1e-4 x max(1, max |logit|). fp32
rounding grows with the size of the numbers it rounds, so a deep network whose logits reach 20-50
(torchvision's mobilenet_v2 trained briefly here) differs from its own float64 output by 5-8e-4 in
every runtime, PyTorch included, while logits of order 1 keep the plain 1e-4. A conversion error
(a wrong layout, a dropped bias, a mis-fused activation) is of the order of the logits, 1e3-1e4 times
past the limit either way.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hwnas.errors import UserError
from hwnas.exporters.base import Exporter


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
    max_abs_diff_float64: float | None = None  # vs the float64 model; only computed when the fp32 check misses
    output_scale: float = 1.0  # max(1, largest |logit|) over the images: the tolerance is relative to it

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@torch.no_grad()
def torch_outputs(module: nn.Module, images: np.ndarray, batch: int = 256) -> np.ndarray:
    module.eval()
    return np.concatenate([module(torch.from_numpy(images[i : i + batch])).numpy() for i in range(0, len(images), batch)])


@torch.no_grad()
def float64_outputs(module: nn.Module, images: np.ndarray) -> np.ndarray | None:
    """The module's output computed in float64 (the exact answer to fp32 rounding), or None if it cannot run so."""
    try:
        exact = copy.deepcopy(module).double().eval()
        return torch_outputs(exact, images.astype(np.float64)).astype(np.float64)
    except (RuntimeError, TypeError):  # an op without a float64 kernel
        return None


def _per_image_max(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    return np.abs(actual.astype(np.float64) - expected).reshape(len(actual), -1).max(axis=1)


def output_scales(expected: np.ndarray) -> np.ndarray:
    """Per image, max(1, largest |output|): what the absolute tolerance is multiplied by (fp32 rounds relatively)."""
    return np.maximum(1.0, np.abs(expected.astype(np.float64)).reshape(len(expected), -1).max(axis=1))


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
    differences = _per_image_max(actual, expected)
    scales = output_scales(expected)
    limit, float64_differences = exporter.tolerance.max_abs_diff, None
    if limit is not None and (differences / scales).max() > limit and (exact := float64_outputs(module, images)) is not None:
        float64_differences = _per_image_max(actual, exact)
    agreement = float((actual.argmax(1) == expected.argmax(1)).mean())
    torch_accuracy = file_accuracy = None
    if labels is not None:
        torch_accuracy = float((expected.argmax(1) == labels).mean())
        file_accuracy = float((actual.argmax(1) == labels).mean())
    failure = _first_failure(
        exporter, differences, scales, float64_differences, expected, actual, agreement, torch_accuracy, file_accuracy
    )
    return Verification(
        exporter.format,
        len(images),
        float(differences.max()),
        agreement,
        torch_accuracy,
        file_accuracy,
        failure is None,
        failure,
        None if float64_differences is None else float(float64_differences.max()),
        float(scales.max()),
    )


def _first_failure(
    exporter: Exporter,
    differences: np.ndarray,
    scales: np.ndarray,
    float64_differences: np.ndarray | None,
    expected: np.ndarray,
    actual: np.ndarray,
    agreement: float,
    torch_accuracy: float | None,
    file_accuracy: float | None,
) -> str | None:
    tolerance = exporter.tolerance
    limit = tolerance.max_abs_diff
    near_float64 = float64_differences is not None and limit is not None and (float64_differences / scales).max() <= limit
    relative = differences / scales
    if limit is not None and relative.max() > limit and not near_float64:
        image = int(np.argmax(relative > limit))
        where = int(np.abs(actual[image] - expected[image]).argmax())
        exact = "" if float64_differences is None else f"; {float64_differences[image]:.3g} from the float64 model"
        return (
            f"image {image}: |diff| {differences[image]:.3g} > {limit:g} x output scale {scales[image]:.3g} at output {where} "
            f"(torch {expected[image].flat[where]:.6g}, file {actual[image].flat[where]:.6g}){exact}"
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
