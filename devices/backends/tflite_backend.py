"""The TFLite interpreter on this machine's CPU (LiteRT's ``ai-edge-litert``), XNNPACK on or off."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from hwnas.devices.backends.base import LocalBackend, host_cpu_details, host_cpu_model, register_backend
from hwnas.errors import UserError


def load_interpreter_class() -> tuple[type, Any, str]:
    """(Interpreter, OpResolverType, package@version) from ai-edge-litert, else tflite-runtime."""
    from importlib.metadata import version

    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        return Interpreter, OpResolverType, f"ai-edge-litert {version('ai-edge-litert')}"
    except ImportError:
        from tflite_runtime.interpreter import Interpreter, OpResolverType  # type: ignore[import-not-found]

        return Interpreter, OpResolverType, f"tflite-runtime {version('tflite-runtime')}"


def open_interpreter(model_file: Path, threads: int = 1, xnnpack: bool = True, allocate: bool = True) -> Any:
    """An interpreter for ``model_file`` with its tensors allocated; a file it cannot load is a UserError."""
    interpreter_class, resolver, _ = load_interpreter_class()
    resolver_type = resolver.AUTO if xnnpack else resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        with without_delegate_banner():
            interpreter = interpreter_class(
                model_path=str(model_file), num_threads=threads, experimental_op_resolver_type=resolver_type
            )
            if allocate:
                interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as error:
        raise UserError(f"TFLite interpreter cannot load {model_file}: {str(error).splitlines()[0]}") from error
    return interpreter


@register_backend
class TfliteBackend(LocalBackend):
    name = "tflite"
    model_format = "tflite"
    options: ClassVar[dict[str, Any]] = {"xnnpack": True}

    def unavailable_reason(self) -> str | None:
        try:
            load_interpreter_class()
        except ImportError:
            return "no TFLite interpreter: pip install -e '.[tflite]' (ai-edge-litert)"
        return None

    def fingerprint(self) -> dict[str, Any]:
        _, _, runtime = load_interpreter_class()
        return {
            "device": host_cpu_model(),
            **host_cpu_details(),
            "runtime": "tflite",
            "runtime_version": runtime,
            "threads": self.spec.threads,
            "precision": self.spec.precision,
            "xnnpack": self.settings["xnnpack"],
        }

    def interpreter(self, model_file: Path) -> Any:
        return open_interpreter(model_file, self.spec.threads, xnnpack=self.settings["xnnpack"])

    def prepare(self, model_file: Path) -> Callable[[], object]:
        interpreter = self.interpreter(model_file)
        rng = np.random.default_rng(0)
        for detail in interpreter.get_input_details():
            interpreter.set_tensor(detail["index"], _random_input(detail, rng))
        return interpreter.invoke


DELEGATE_BANNER = "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."


@contextmanager
def without_delegate_banner() -> Iterator[None]:
    """Drop the runtime's "Created ... XNNPACK delegate" line; pass every other line on.

    The C++ runtime writes it straight to file descriptor 2, once per process, so neither Python's
    ``sys.stderr`` nor a log level reaches it: capture the descriptor while the interpreter is built.
    Warnings and errors the runtime prints meanwhile are written back to stderr unchanged.
    """
    with without_native_lines(DELEGATE_BANNER):
        yield


@contextmanager
def without_native_lines(*fragments: str) -> Iterator[None]:
    """Capture file descriptor 2 meanwhile, then write back every line that contains none of ``fragments``."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not any(fragment in line for fragment in fragments)))


def _random_input(detail: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    dtype = detail["dtype"]
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=detail["shape"], endpoint=True).astype(dtype)
    return rng.standard_normal(detail["shape"]).astype(dtype)
