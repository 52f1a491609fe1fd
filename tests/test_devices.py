"""Device specs and backends, on the real runtimes that exist here (ONNX Runtime, TFLite)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from hwnas.builder import build_op
from hwnas.devices import DeviceSpec, Measurement, list_backends, make_backend, shipped_specs
from hwnas.devices.backends.base import time_runs
from hwnas.errors import UserError
from hwnas.exporters.onnx_export import export_onnx
from hwnas.opkey import OpKey

LAYER = OpKey("expanded_conv", 16, 16, 24, kernel=5, stride=2, expansion=6, se=True, act="hswish")


def write_spec(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "device.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def layer_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "layer.onnx"
    return export_onnx(build_op(LAYER), torch.randn(1, 16, 16, 16), path)


def test_shipped_specs_load_and_name_registered_backends() -> None:
    assert {"host-ort", "host-tflite", "pixel-adb", "nvidia-trt"} <= set(shipped_specs())
    for name in shipped_specs():
        spec = DeviceSpec.from_toml(name)
        assert spec.backend in list_backends()
        assert DeviceSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('name = "x"\nbackend = "onnxruntime"\nthreads = ', "malformed TOML"),
        ('name = "x"\nbackend = "onnxruntime"\nturbo = true\n', "unknown field 'turbo'"),
        ('backend = "onnxruntime"\n', "'name' is required"),
        ('name = "x"\nbackend = "onnxruntime"\nthreads = 0\n', "threads must be"),
        ('name = "x"\nbackend = "onnxruntime"\nprecision = "fp8"\n', "precision 'fp8'"),
    ],
)
def test_bad_specs_are_one_line_user_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        DeviceSpec.from_toml(write_spec(tmp_path, text))


def test_unknown_backend_and_bad_options(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown backend 'coreml'"):
        make_backend(DeviceSpec("x", "coreml"))
    with pytest.raises(UserError, match="has no option 'xnnpack'"):
        make_backend(DeviceSpec("x", "onnxruntime", options={"xnnpack": True}))
    with pytest.raises(UserError, match="must be bool"):
        make_backend(DeviceSpec("x", "tflite", options={"xnnpack": "yes"}))
    with pytest.raises(UserError, match="not found"):
        DeviceSpec.from_toml(tmp_path / "nope.toml")


def test_measurement_statistics_drop_outliers_but_keep_raw_samples() -> None:
    samples = tuple([1.0, 1.1, 0.9, 1.05, 0.95] * 20 + [50.0])
    measurement = Measurement(samples)
    assert measurement.samples_ms == samples and measurement.outliers == 1
    assert measurement.median_ms == pytest.approx(1.0)
    assert measurement.p10_ms < measurement.median_ms < measurement.p90_ms
    assert 0 < measurement.cv < 0.1


def test_time_runs_repeats_until_min_time() -> None:
    calls = []
    samples = time_runs(lambda: calls.append(1), warmup=3, repeats=5, min_time_s=0.0)
    assert len(samples) == 5 and len(calls) == 8
    assert len(time_runs(lambda: sum(range(1000)), warmup=0, repeats=5, min_time_s=0.02)) > 5


def test_onnxruntime_measures_a_real_layer(layer_onnx: Path) -> None:
    spec = DeviceSpec("cpu", "onnxruntime", warmup=5, repeats=30)
    backend = make_backend(spec)
    assert backend.unavailable_reason() is None
    measurement = backend.measure(layer_onnx)
    assert len(measurement.samples_ms) >= 30 and 0 < measurement.median_ms < 50
    fingerprint = backend.fingerprint()
    assert fingerprint["runtime"] == "onnxruntime" and fingerprint["threads"] == 1 and fingerprint["device"]


def test_onnxruntime_rejects_a_corrupt_model(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(UserError, match="cannot load"):
        make_backend(DeviceSpec("cpu", "onnxruntime", warmup=1, repeats=1)).measure(bad)


def test_pinning_to_a_missing_core_is_a_user_error(layer_onnx: Path) -> None:
    spec = DeviceSpec("cpu", "onnxruntime", warmup=1, repeats=1, cores=(4096,))
    with pytest.raises(UserError, match="cores"):
        make_backend(spec).measure(layer_onnx)


@pytest.mark.parametrize("xnnpack", [True, False])
def test_tflite_interpreter_measures_a_real_layer(tmp_path: Path, xnnpack: bool) -> None:
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("litert_torch")
    from hwnas.exporters.tflite_export import export_tflite

    model = export_tflite(build_op(LAYER), torch.randn(1, 16, 16, 16), tmp_path / "layer.tflite")
    backend = make_backend(DeviceSpec("cpu", "tflite", warmup=5, repeats=30, options={"xnnpack": xnnpack}))
    measurement = backend.measure(model)
    assert len(measurement.samples_ms) >= 30 and measurement.median_ms > 0
    assert backend.fingerprint()["xnnpack"] is xnnpack


def test_only_the_delegate_banner_is_dropped_from_native_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    from hwnas.devices.backends.tflite_backend import DELEGATE_BANNER, without_delegate_banner

    with without_delegate_banner():
        os.write(2, f"{DELEGATE_BANNER}\nERROR: a real runtime error\n".encode())  # as the C++ runtime writes
    assert capfd.readouterr().err == "ERROR: a real runtime error\n"


def test_tensorrt_says_in_one_line_why_it_cannot_run_here() -> None:
    backend = make_backend(DeviceSpec.from_toml("nvidia-trt"))
    reason = backend.unavailable_reason()
    if reason is None:
        pytest.skip("TensorRT and a GPU are present: covered by test_tensorrt_measures_on_a_gpu")
    assert "\n" not in reason and ("TensorRT" in reason or "GPU" in reason)
    with pytest.raises(UserError, match="cannot run here"):
        backend.measure(Path("model.onnx"))


def test_tensorrt_measures_on_a_gpu(layer_onnx: Path) -> None:
    backend = make_backend(DeviceSpec("gpu", "tensorrt", precision="fp16", warmup=10, repeats=50))
    if backend.unavailable_reason() is not None:
        pytest.skip(f"no TensorRT GPU here: {backend.unavailable_reason()}")
    measurement = backend.measure(layer_onnx)
    assert len(measurement.samples_ms) == 50 and measurement.median_ms > 0
    assert backend.fingerprint()["runtime"] == "tensorrt"


def test_runs_are_spread_over_fresh_sessions(layer_onnx: Path) -> None:
    from hwnas.devices.backends.onnxruntime_backend import OnnxRuntimeBackend

    class CountingBackend(OnnxRuntimeBackend):
        loads = 0

        def prepare(self, model_file: Path):
            CountingBackend.loads += 1
            return super().prepare(model_file)

    measurement = CountingBackend(DeviceSpec("cpu", "onnxruntime", warmup=2, repeats=30, sessions=3)).measure(layer_onnx)
    assert CountingBackend.loads == 3 and len(measurement.samples_ms) == 30


@pytest.mark.parametrize("name", ["../../../../tmp/x", "a/b", "..", ".hidden", "", "x" * 65, "-rf"])
def test_a_spec_name_cannot_leave_the_profiles_folder(name: str) -> None:
    with pytest.raises(UserError, match=r"device name .* is not allowed"):
        DeviceSpec(name, "onnxruntime")


@pytest.mark.parametrize(
    ("field", "value"),
    [("min_time_s", "inf"), ("min_time_s", "nan"), ("min_time_s", "-1.0"), ("warmup", "true"), ("repeats", "10000000")],
)
def test_spec_numbers_that_would_run_forever_or_are_not_numbers(tmp_path: Path, field: str, value: str) -> None:
    spec = tmp_path / "d.toml"
    spec.write_text(f'name = "d"\nbackend = "onnxruntime"\n{field} = {value}\n')
    with pytest.raises(UserError, match=field):
        DeviceSpec.from_toml(spec)
