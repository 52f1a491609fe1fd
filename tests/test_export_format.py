"""A device's export format is decided once (``hwnas.devices.export_format_for``): a TFLite fp16 device gets
``tflite-fp16`` from ``hwnas search``, ``hwnas run`` and ``hwnas export`` alike (they once disagreed: the search
exported fp16, the run plain tflite)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hwnas.devices import DeviceSpec, export_format_for, formats_to_export
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


@pytest.mark.slow
def test_hwnas_export_with_a_tflite_fp16_device_exports_tflite_fp16(fp16_spec: Path, tmp_path: Path) -> None:
    pytest.importorskip("ai_edge_litert", reason="the TFLite interpreter is not installed (pip install -e '.[tflite]')")
    arch = get_space("default").sample(0).format()
    model, out = tmp_path / "model", tmp_path / "export"
    trained = subprocess.run(  # fp16 files of random weights disagree with PyTorch on near-tied classes: a trained model
        [sys.executable, "-m", "hwnas", "train", "--arch", arch, "--epochs", "1", "--out", str(model), "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert trained.returncode == 0, trained.stderr[-2000:]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "hwnas",
            "export",
            str(model),
            "--device",
            str(fp16_spec),
            "--out",
            str(out),
            "--images",
            "50",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    card = json.loads(result.stdout)
    assert [item["format"] for item in card["exports"]] == ["tflite-fp16", "onnx", "tflite"]
    fp16 = card["exports"][0]
    assert (out / fp16["file"]).stat().st_size > 0 and fp16["verification"]["passed"]
    assert [m["device"] for m in fp16["latency"]] == ["host-cpu-tflite-fp16"] and fp16["latency"][0]["median_ms"] > 0
