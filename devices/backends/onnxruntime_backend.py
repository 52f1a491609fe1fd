"""ONNX Runtime on this machine's CPU, intra-op threads fixed, process pinned."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from hwnas.devices.backends.base import LocalBackend, host_cpu_details, host_cpu_model, register_backend
from hwnas.errors import UserError

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # ONNX Runtime phones home on Linux otherwise

_OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")
_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8}


@register_backend
class OnnxRuntimeBackend(LocalBackend):
    name = "onnxruntime"
    model_format = "onnx"
    options: ClassVar[dict[str, Any]] = {"graph_optimization": "all"}

    def unavailable_reason(self) -> str | None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return "onnxruntime is not installed (pip install onnxruntime)"
        if self.settings["graph_optimization"] not in _OPTIMIZATION_LEVELS:
            return f"graph_optimization must be one of {_OPTIMIZATION_LEVELS}"
        return None

    def fingerprint(self) -> dict[str, Any]:
        import onnxruntime

        return {
            "device": host_cpu_model(),
            **host_cpu_details(),
            "runtime": "onnxruntime",
            "runtime_version": onnxruntime.__version__,
            "threads": self.spec.threads,
            "precision": self.spec.precision,
            "provider": "CPUExecutionProvider",
            "graph_optimization": self.settings["graph_optimization"],
        }

    def session(self, model_file: Path):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.spec.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        levels = dict(
            zip(
                _OPTIMIZATION_LEVELS,
                (
                    ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                    ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                    ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                    ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                ),
                strict=True,
            )
        )
        options.graph_optimization_level = levels[self.settings["graph_optimization"]]
        options.log_severity_level = 3
        try:
            return ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # ORT raises its own Fail/InvalidGraph types
            raise UserError(f"ONNX Runtime cannot load {model_file}: {str(error).splitlines()[0]}") from error

    def prepare(self, model_file: Path) -> Callable[[], object]:
        session = self.session(model_file)
        feeds = {item.name: _random_input(item.shape, _ORT_TYPES.get(item.type, np.float32)) for item in session.get_inputs()}
        return lambda: session.run(None, feeds)


def _random_input(shape: list[Any], dtype: type) -> np.ndarray:
    concrete = [dim if isinstance(dim, int) else 1 for dim in shape]
    return np.random.default_rng(0).standard_normal(concrete).astype(dtype)
