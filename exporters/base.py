"""The exporter contract and registry (by format name).

An exporter turns an ``nn.Module`` into a deployable file and can run that file, so the same
object both writes and verifies it:

- ``export(module, example_input, out_path, calibration=None) -> Path``: written atomically, so a
  failure never leaves a half-written file under the final name;
- ``runner(path) -> (NCHW float batch -> logits)``: the file in its own runtime, for verification;
- ``measure_backends``: device backends that can time the file (for re-measuring on a device);
- ``tolerance``: how close to PyTorch the file must be (fp32: max |diff| <= 1e-4 x max(1, max |logit|)
  per image from PyTorch's fp32 output, or from its float64 output when PyTorch's own rounding is what
  is off; quantized: accuracy within 1 point).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from hwnas.exporters.formats import FILE_NAMES
from hwnas.registry import Registry

Runner = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Tolerance:
    """Pass criteria against PyTorch on the verification images."""

    max_abs_diff: float | None = 1e-4  # None: not checked (quantized files)
    max_accuracy_drop: float = 0.01  # top-1 accuracy may fall at most this much (1 point)
    min_top1_agreement: float = 0.0


class Exporter(ABC):
    format: ClassVar[str]
    suffix: ClassVar[str]
    precision: ClassVar[str] = "fp32"
    measure_backends: ClassVar[tuple[str, ...]] = ()
    tolerance: ClassVar[Tolerance] = Tolerance()
    needs_calibration: ClassVar[bool] = False

    @abstractmethod
    def export(
        self, module: nn.Module, example_input: torch.Tensor, out_path: Path, calibration: np.ndarray | None = None
    ) -> Path: ...

    @abstractmethod
    def runner(self, path: Path) -> Runner: ...

    def unavailable_reason(self) -> str | None:
        return None


EXPORTERS: Registry[Exporter] = Registry(
    "export format", modules=[f"hwnas.exporters.{name}" for name in ("onnx_export", "tflite_export", "tensorrt_export")]
)


def register_exporter(cls: type[Exporter]) -> type[Exporter]:
    if cls.format not in FILE_NAMES:
        raise ValueError(f"export format {cls.format!r} has no file name in hwnas.exporters.formats.FILE_NAMES")
    EXPORTERS.register(cls.format, cls())
    return cls


def get_exporter(fmt: str) -> Exporter:
    return EXPORTERS.get(fmt)


def list_formats() -> list[str]:
    return EXPORTERS.list()


def first_line(error: BaseException) -> str:
    """The root cause's first line, without terminal colour codes (exporters wrap causes in generic advice)."""
    while error.__cause__ is not None:
        error = error.__cause__
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()
    return text.splitlines()[0] if text else type(error).__name__
