"""PyTorch -> TFLite through litert-torch (no TensorFlow needed), and its quantized variants.

Inputs and outputs are channel-last (NHWC, ``litert_torch.to_channel_last_io``) so a phone feeds
camera frames with no transpose. Quantization goes through ai-edge-quantizer on the float file:

``tflite``          float32
``tflite-fp16``     float16 weights (float casting), float compute where the runtime has no fp16
``tflite-dynamic``  dynamic-range: int8 weights, activations quantized on the fly
``tflite-int8``     full integer: int8 weights and activations, ranges calibrated on real images

litert-torch and the interpreter are the optional extra ``.[tflite]``; imports are deferred so
the rest of hwnas works without them. The interpreter is ``ai-edge-litert`` (``tflite_runtime``
is accepted when it is all a user has).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hwnas.errors import UserError
from hwnas.exporters.base import Exporter, Runner, Tolerance, first_line, register_exporter
from hwnas.exporters.cache import cached_conversion, conversion_key
from hwnas.fileio import atomic_write


def quiet_tensorflow_logs() -> None:
    """litert-torch brings absl/TF logging and progress lines that flood the terminal; keep errors only."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    os.environ.setdefault("TQDM_DISABLE", "1")  # bars that leave disable= unset; the quantizer's need quiet_quantizer()
    # litert-torch registers an Enum as a pytree constant at import; torch 2.14 logs a deprecation
    # warning about it on every run. It concerns litert-torch's code, not the user's model.
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)


@contextlib.contextmanager
def quiet_quantizer() -> Iterator[None]:
    """Keep ai-edge-quantizer's tqdm bars and its interpreter-flag warning off the user's terminal.

    Its bars pass ``disable=`` themselves (on for models of 100+ tensors), so ``TQDM_DISABLE``
    cannot turn them off, and ``modify_model`` ignores ``enable_progress_bar``: capture stderr.
    Exceptions still propagate.
    """
    from hwnas.devices.backends.tflite_backend import without_delegate_banner

    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()), without_delegate_banner():
        warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors.*")  # the calibrator's choice
        yield


# what TensorFlow's C++ side prints to file descriptor 2 when litert-torch imports it, whatever
# TF_CPP_MIN_LOG_LEVEL says (absl logging starts before it is configured): information, not problems
TENSORFLOW_IMPORT_LINES = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "oneDNN custom operations are on.",
)


def require_litert_torch():
    from hwnas.devices.backends.tflite_backend import without_native_lines

    quiet_tensorflow_logs()
    try:
        with without_native_lines(*TENSORFLOW_IMPORT_LINES):
            import litert_torch
    except ImportError:
        raise UserError("TFLite export needs litert-torch: pip install -e '.[tflite]'") from None
    return litert_torch


def to_nhwc(batch: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    if batch.ndim != 4:
        return batch
    return (
        batch.permute(0, 2, 3, 1).contiguous()
        if isinstance(batch, torch.Tensor)
        else np.ascontiguousarray(batch.transpose(0, 2, 3, 1))
    )


def export_tflite(
    module: nn.Module, example_input: torch.Tensor, out_path: Path, *, channel_last: bool = True, cache: Path | None = None
) -> Path:
    """Convert ``module`` to a float32 .tflite at ``out_path`` (NHWC input when ``channel_last``).

    A conversion costs 10-30 s of one core (tracing and lowering, whatever the weights), so the result is kept in
    ``cache`` (default: ``exports/`` of hwnas's model cache) under :func:`conversion_key`: exporting the same network
    again (a rerun, the same drift references, ``hwnas export`` twice) copies the file instead of converting it anew.
    """
    litert_torch = require_litert_torch()
    module = module.eval()
    key = conversion_key(module, example_input, f"litert-torch {litert_torch.__version__}|channel_last={channel_last}")
    return cached_conversion(
        cache, key, ".tflite", Path(out_path), lambda: _convert(litert_torch, module, example_input, Path(out_path), channel_last)
    )


def _convert(litert_torch: Any, module: nn.Module, example_input: torch.Tensor, out_path: Path, channel_last: bool) -> Path:
    sample = example_input
    if channel_last and example_input.ndim == 4:
        with torch.no_grad():
            spatial_output = module(example_input).ndim == 4
        module = litert_torch.to_channel_last_io(module, args=[0], outputs=[0] if spatial_output else None).eval()
        sample = to_nhwc(example_input)

    def write(temp: Path) -> None:
        try:
            with composite_ops_listed_once():
                converted = litert_torch.convert(module, (sample,))
        except Exception as error:  # the converter raises many types; name the first line
            raise UserError(f"TFLite conversion failed: {first_line(error)}") from error
        converted.export(str(temp))

    return atomic_write(Path(out_path), write)


_COMPOSITE_OPS: dict[tuple[Any, ...], frozenset[Any]] = {}
# the modules that call torch.export's list of preservable composite (CIA) ops, each holding its own reference
_COMPOSITE_OP_CALLERS = ("torch._export.utils", "torch.export.exported_program", "torch.export.decomp_utils")


@contextlib.contextmanager
def composite_ops_listed_once() -> Iterator[None]:
    """Inside: torch.export walks the dispatcher's composite-implicit ops once per process, not five times a conversion.

    ``torch._export.utils._collect_all_valid_cia_ops`` (torch 2.14) re-walks every non-aten op namespace on each call,
    because a custom-op library may register more ops at any time; litert-torch's lowering calls it five times per
    conversion (40 ms each here), 0.2 s of a 1.3-1.6 s single-layer conversion. The list is kept per set of registered
    namespaces and count of composite registrations in the C++ dispatcher, so an op library loaded later still gets
    walked; each caller gets its own copy, since torch's callers may treat it as theirs.
    """
    import importlib

    callers = [importlib.import_module(name) for name in _COMPOSITE_OP_CALLERS]
    original = callers[0]._collect_all_valid_cia_ops

    def listed_once() -> set[Any]:
        registered = torch._C._dispatch_get_registrations_for_dispatch_key("CompositeImplicitAutograd")
        key = (tuple(torch.ops._dir), len(registered))
        if key not in _COMPOSITE_OPS:
            _COMPOSITE_OPS[key] = frozenset(original())
        return set(_COMPOSITE_OPS[key])

    saved = [caller.__dict__.get("_collect_all_valid_cia_ops") for caller in callers]
    for caller in callers:
        caller._collect_all_valid_cia_ops = listed_once
    try:
        yield
    finally:
        for caller, function in zip(callers, saved, strict=True):
            caller._collect_all_valid_cia_ops = function


def quantize_tflite(float_file: Path, out_path: Path, mode: str, calibration: np.ndarray | None = None) -> Path:
    """Quantize a float .tflite with ai-edge-quantizer (``mode``: fp16, dynamic or int8)."""
    quiet_tensorflow_logs()
    from ai_edge_quantizer import algorithm_manager, qtyping, quantizer, recipe

    quant = quantizer.Quantizer(str(float_file))
    if mode == "int8":
        quant.load_quantization_recipe(recipe.static_wi8_ai8())
    elif mode == "dynamic":
        quant.load_quantization_recipe(recipe.dynamic_wi8_afp32())
    elif mode == "fp16":
        quant.add_weight_only_config(
            regex=".*",
            operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
            num_bits=16,
            algorithm_key=algorithm_manager.AlgorithmName.FLOAT_CASTING,
        )
    else:
        raise ValueError(f"unknown quantization mode {mode!r}")
    calibration_result = None
    if quant.need_calibration:
        if calibration is None or len(calibration) == 0:
            raise UserError("int8 quantization needs calibration images (from the training data)")
        calibration_result = calibrate_min_max(float_file, quant.get_quantization_recipe(), calibration)

    def write(temp: Path) -> None:
        try:
            with quiet_quantizer():
                result = quant.quantize(calibration_result, enable_progress_bar=False, enable_progress_report=False)
        except Exception as error:  # the quantizer raises many types; name the first line
            raise UserError(f"TFLite {mode} quantization failed: {first_line(error)}") from error
        temp.write_bytes(bytes(result.quantized_model))

    return atomic_write(Path(out_path), write)


def calibrate_min_max(float_file: Path, quantization_recipe: Any, calibration: np.ndarray) -> dict[str, Any]:
    """Activation ranges: the min and max of every tensor over all calibration images (NHWC).

    ``Quantizer.calibrate`` keeps an exponential moving average (0.95) of each image's own min and
    max. Fed one image at a time (our files take batch 1), that is the range of a typical image,
    and every image with a larger activation is clipped: a 1-epoch default-preset model lost 8
    points of top-1 that way (0.747 vs 0.828 fp32; 16-bit activations did no better, so it was
    clipping, not resolution). The true range over the calibration set, as TFLiteConverter's
    representative dataset computes it, kept it within 0.6 points (0.834).
    """
    from ai_edge_quantizer import calibrator, recipe_manager
    from ai_edge_quantizer.utils import qsv_utils

    manager = recipe_manager.RecipeManager()
    manager.load_quantization_recipe(quantization_recipe)
    signature, input_name = signature_input(float_file)
    samples = [{input_name: image[None].astype(np.float32)} for image in calibration]
    with quiet_quantizer():
        ranges = calibrator.Calibrator(str(float_file), num_threads=1, qsv_update_func=qsv_utils.min_max_update)
        ranges.calibrate({signature: samples}, manager)
    return ranges.get_model_qsvs()


def signature_input(model_file: Path) -> tuple[str, str]:
    from hwnas.devices.backends.tflite_backend import open_interpreter

    signatures = open_interpreter(model_file, allocate=False).get_signature_list()
    name, signature = next(iter(signatures.items()))
    return name, signature["inputs"][0]


def tflite_runner(path: Path) -> Runner:
    """Run a .tflite image by image; takes NCHW float batches, feeds NHWC (quantizing if needed)."""
    from hwnas.devices.backends.tflite_backend import open_interpreter

    interpreter = open_interpreter(path)
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]

    def run(batch: np.ndarray) -> np.ndarray:
        outputs = []
        for image in to_nhwc(batch):
            interpreter.set_tensor(source["index"], _to_input(image[None], source))
            interpreter.invoke()
            outputs.append(_from_output(interpreter.get_tensor(target["index"]), target))
        return np.concatenate(outputs)

    return run


def _to_input(array: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail.get("quantization", (0.0, 0))
    if np.issubdtype(detail["dtype"], np.integer) and scale:
        info = np.iinfo(detail["dtype"])
        return np.clip(np.round(array / scale + zero), info.min, info.max).astype(detail["dtype"])
    return array.astype(detail["dtype"])


def _from_output(array: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail.get("quantization", (0.0, 0))
    if np.issubdtype(detail["dtype"], np.integer) and scale:
        return (array.astype(np.float32) - zero) * scale
    return array.astype(np.float32)


class _TfliteBase(Exporter):
    suffix = ".tflite"
    measure_backends = ("tflite", "android-adb")
    mode: str | None = None

    def unavailable_reason(self) -> str | None:
        try:
            require_litert_torch()
        except UserError as error:
            return str(error)
        return None

    def export(
        self, module: nn.Module, example_input: torch.Tensor, out_path: Path, calibration: np.ndarray | None = None
    ) -> Path:
        if self.mode is None:
            return export_tflite(module, example_input, out_path)
        with tempfile.TemporaryDirectory() as scratch:
            float_file = export_tflite(module, example_input, Path(scratch) / "float.tflite")
            nhwc = to_nhwc(calibration) if calibration is not None else None  # the file takes channel-last input
            return quantize_tflite(float_file, out_path, self.mode, nhwc)

    def runner(self, path: Path) -> Runner:
        return tflite_runner(path)


@register_exporter
class TfliteExporter(_TfliteBase):
    format = "tflite"


@register_exporter
class TfliteFp16Exporter(_TfliteBase):
    format = "tflite-fp16"
    precision = "fp16"
    mode = "fp16"
    tolerance = Tolerance(max_abs_diff=None, min_top1_agreement=0.98)


@register_exporter
class TfliteDynamicExporter(_TfliteBase):
    format = "tflite-dynamic"
    precision = "int8-dynamic"
    mode = "dynamic"
    tolerance = Tolerance(max_abs_diff=None)


@register_exporter
class TfliteInt8Exporter(_TfliteBase):
    format = "tflite-int8"
    precision = "int8"
    mode = "int8"
    needs_calibration = True
    tolerance = Tolerance(max_abs_diff=None)
