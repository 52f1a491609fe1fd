"""A device's export format is decided once (``hwnas.devices.export_format_for``): a TFLite fp16 device gets
``tflite-fp16`` from ``hwnas search``, ``hwnas run`` and ``hwnas export`` alike (they once disagreed: the search
exported fp16, the run plain tflite). ``hwnas export`` on a trained model is checked in test_pipeline.py, on the quick
run's model (an fp16 file of random weights disagrees with PyTorch on near-tied classes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwnas.devices import DeviceSpec, export_format_for, formats_to_export
from hwnas.devices.formats import handoff_format_for
from hwnas.presets import get_space

FP16 = """name = "host-cpu-tflite-fp16"
backend = "tflite"
threads = 1
precision = "fp16"
warmup = 2
repeats = 10
[options]
xnnpack = true
"""


@pytest.fixture
def fp16_spec(tmp_path: Path) -> Path:
    path = tmp_path / "fp16.toml"
    path.write_text(FP16)
    return path


@pytest.mark.parametrize(
    ("backend", "precision", "expected"),
    [
        ("tflite", "fp32", "tflite"),
        ("tflite", "fp16", "tflite-fp16"),
        ("tflite", "int8", "tflite-int8"),
        ("android-adb", "fp16", "tflite-fp16"),
        ("tensorrt", "fp16", "tensorrt-fp16"),
        ("tensorrt", "fp32", "tensorrt"),
        ("onnxruntime", "fp32", "onnx"),
    ],
)
def test_each_runtime_and_precision_has_one_export_format(backend: str, precision: str, expected: str) -> None:
    spec = DeviceSpec(name="d", backend=backend, precision=precision)
    assert export_format_for(spec) == expected
    assert formats_to_export([spec])[0] == expected and {"onnx", "tflite"} <= set(formats_to_export([spec]))



@pytest.mark.parametrize(
    ("backend", "precision", "expected"),
    [
        ("tflite", "int8", "tflite-int8"),
        ("android-adb", "fp16", "tflite-fp16"),
        ("tensorrt", "fp16", "onnx"),  # an engine is built on its own GPU, from the ONNX file handed over
        ("onnxruntime", "fp32", "onnx"),
        ("a-users-own-backend", "fp32", "onnx"),  # no runtime to ask: a table device is never run here
    ],
)
def test_a_device_known_by_its_table_is_handed_a_file_this_machine_can_verify(
    backend: str, precision: str, expected: str
) -> None:
    assert handoff_format_for(DeviceSpec(name="d", backend=backend, precision=precision)) == expected

def test_the_search_and_the_run_give_a_tflite_fp16_device_tflite_fp16(fp16_spec: Path, tmp_path: Path) -> None:
    pytest.importorskip("ai_edge_litert", reason="the TFLite interpreter is not installed (pip install -e '.[tflite]')")
    from hwnas.devices import make_backend
    from hwnas.pipeline.config import resolve_config
    from hwnas.pipeline.context import RunContext
    from hwnas.pipeline.records import Records
    from hwnas.pipeline.stages import device
    from hwnas.pipeline.stages.export import export_formats
    from hwnas.pipeline.stages.references import primary_format
    from hwnas.search.result import device_format

    spec = DeviceSpec.from_toml(str(fp16_spec))
    assert device_format(make_backend(spec)) == "tflite-fp16"  # hwnas search: what its top K are exported to and timed in
    config = resolve_config(True, None, {"devices": [str(fp16_spec)], "budget_ms": 1.0})
    context = RunContext(config, tmp_path / "run", Records.open(tmp_path / "run", []), get_space("default"), print, False)
    context.values["device"] = device.run(context)
    formats, _ = export_formats(context)
    assert formats[0] == "tflite-fp16" and primary_format(context) == "tflite-fp16"  # hwnas run: exported, and timed
