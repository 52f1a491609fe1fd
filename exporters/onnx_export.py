"""PyTorch -> ONNX.

We use torch 2.14's default, the dynamo-based exporter (``dynamo=True``): it is the maintained
path (the TorchScript exporter is deprecated), folds BatchNorm into the convolutions and writes
one self-contained file with ``external_data=False``. It costs ~0.9 s for a single layer against
~0.02 s for the legacy exporter; profiling pays that in a parallel conversion phase, so the files
measured are made exactly the way deployed files are. ``onnx.checker`` validates every file;
``simplify`` runs onnxslim (constant folding and fusion; numerics unchanged).
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from hwnas.errors import UserError
from hwnas.exporters.base import Exporter, Runner, first_line, register_exporter
from hwnas.exporters.cache import cached_conversion, conversion_key, versions
from hwnas.fileio import atomic_write

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
DEFAULT_OPSET = 18


def export_onnx(
    module: nn.Module,
    example_input: torch.Tensor,
    out_path: Path,
    *,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = False,
    simplify: bool = False,
    cache: Path | None = None,
) -> Path:
    """Export ``module`` (in eval mode) to ``out_path``, check it with ``onnx.checker``, write atomically; a network
    exported before with the same settings is copied from ``cache`` (:mod:`hwnas.exporters.cache`)."""
    module = module.eval()
    settings = f"opset={opset}|dynamic_batch={dynamic_batch}|simplify={simplify}"
    key = conversion_key(module, example_input, f"{versions('torch', 'onnx', 'onnxscript', 'onnxslim')}|{settings}")
    shapes = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic_batch else None
    out = Path(out_path)
    return cached_conversion(cache, key, ".onnx", out, lambda: _export(module, example_input, out, opset, shapes, simplify))


def _export(module: nn.Module, example: torch.Tensor, out_path: Path, opset: int, dynamic_shapes: Any, simplify: bool) -> Path:

    def write(temp: Path) -> None:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            try:
                with _torchlib_registry_built_once():
                    program = torch.onnx.export(
                        module,
                        (example,),
                        dynamo=True,
                        opset_version=opset,
                        dynamic_shapes=dynamic_shapes,
                        input_names=["input"],
                        output_names=["output"],
                        verbose=False,
                    )
            except Exception as error:  # the exporter raises many types; name the first line
                raise UserError(f"ONNX export failed: {first_line(error)}") from error
        program.save(str(temp), external_data=False)
        if simplify:
            import onnxslim

            onnx.save(onnxslim.slim(onnx.load(str(temp))), str(temp))
        onnx.checker.check_model(str(temp))

    return atomic_write(Path(out_path), write)


_REGISTRIES: dict[int, Any] = {}


@contextlib.contextmanager
def _torchlib_registry_built_once() -> Iterator[None]:
    """Inside: torch's ONNX exporter reuses one registry of ONNX functions per opset instead of building it anew.

    ``torch.onnx.export`` (torch 2.14) builds its registry from onnxscript's torchlib (about 500 functions) on every
    call: 0.5 s of a 1.8 s export of a small network, paid again for every layer a profile converts. The registry
    depends only on the installed torch and onnxscript, and an export only reads it (we register no custom ops), so
    each call gets a copy of its table built once per process. Where torch's internals differ, nothing is changed.
    """
    try:
        from torch.onnx._internal.exporter._registration import ONNXRegistry
    except ImportError:
        yield
        return
    build = ONNXRegistry.__dict__.get("from_torchlib")
    if not isinstance(build, classmethod) or not hasattr(ONNXRegistry(), "functions"):
        yield
        return

    def built_once(cls: type, opset_version: int = ONNXRegistry().opset_version) -> Any:
        if opset_version not in _REGISTRIES:
            _REGISTRIES[opset_version] = build.__func__(cls, opset_version=opset_version)
        built, registry = _REGISTRIES[opset_version], cls()
        registry._opset_version = built._opset_version
        registry.functions = {target: list(overloads) for target, overloads in built.functions.items()}
        return registry

    ONNXRegistry.from_torchlib = classmethod(built_once)  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        ONNXRegistry.from_torchlib = build  # type: ignore[method-assign]


@register_exporter
class OnnxExporter(Exporter):
    format = "onnx"
    suffix = ".onnx"
    measure_backends = ("onnxruntime", "tensorrt")

    def export(
        self, module: nn.Module, example_input: torch.Tensor, out_path: Path, calibration: np.ndarray | None = None
    ) -> Path:
        return export_onnx(module, example_input, out_path, simplify=True)

    def runner(self, path: Path) -> Runner:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name

        def run(batch: np.ndarray) -> np.ndarray:
            return np.concatenate([session.run(None, {name: image[None]})[0] for image in batch])

        return run
