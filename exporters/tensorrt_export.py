"""TensorRT engines: ONNX (our exporter) -> engine with TensorRT's Python API (devices' backend).

The engine build and execution live in :mod:`hwnas.devices.backends.tensorrt_backend` (one place that
talks to TensorRT); this exporter adds the ONNX step, the precision flags and an atomic write.
Where there is no TensorRT or no GPU it fails with one line (``unavailable_reason``). INT8
engines need a TensorRT calibrator and are not offered.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hwnas.devices.backends.tensorrt_backend import TensorRTBackend
from hwnas.devices.spec import DeviceSpec
from hwnas.errors import UserError
from hwnas.exporters.base import Exporter, Runner, Tolerance, register_exporter
from hwnas.exporters.onnx_export import export_onnx
from hwnas.fileio import atomic_write


class _TensorRTBase(Exporter):
    suffix = ".plan"
    measure_backends = ("tensorrt",)

    def backend(self) -> TensorRTBackend:
        return TensorRTBackend(
            DeviceSpec(f"tensorrt-export-{self.precision}", "tensorrt", precision=self.precision, options={"engine_cache": False})
        )

    def unavailable_reason(self) -> str | None:
        return self.backend().unavailable_reason()

    def export(
        self, module: nn.Module, example_input: torch.Tensor, out_path: Path, calibration: np.ndarray | None = None
    ) -> Path:
        backend = self.backend()
        reason = backend.unavailable_reason()
        if reason is not None:
            raise UserError(f"cannot build a TensorRT engine here: {reason}")
        with tempfile.TemporaryDirectory() as scratch:
            onnx_file = export_onnx(module, example_input, Path(scratch) / "model.onnx")
            serialized = backend.build_engine(onnx_file)
        return atomic_write(Path(out_path), lambda temp: temp.write_bytes(serialized))

    def runner(self, path: Path) -> Runner:
        return self.backend().runner(path)


@register_exporter
class TensorRTExporter(_TensorRTBase):
    format = "tensorrt"
    tolerance = Tolerance(max_abs_diff=1e-3)  # TF32 convolutions on Ampere+ round more than fp32


@register_exporter
class TensorRTFp16Exporter(_TensorRTBase):
    format = "tensorrt-fp16"
    precision = "fp16"
    tolerance = Tolerance(max_abs_diff=None, min_top1_agreement=0.98)
