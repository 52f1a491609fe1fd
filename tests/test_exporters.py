"""Exporters for real: files run in ONNX Runtime and the TFLite interpreter and are compared with PyTorch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from hwnas.builder import build_model, recalibrate_batchnorm
from hwnas.devices import DeviceSpec
from hwnas.errors import UserError
from hwnas.export_model import build_request, resolve_model
from hwnas.exporters import ExportRequest, export_all, get_exporter, list_formats, verify
from hwnas.exporters.base import Tolerance
from hwnas.exporters.model_card import render_markdown
from hwnas.presets import get_space

from inputs import write_idx_folder

ARCH = "default:r32_c16[k3e3]_c32[k5e6]_c48[k3e3sh]_c80[k3e6sh]"
HAS_TFLITE = all(__import__("importlib").util.find_spec(name) for name in ("litert_torch", "ai_edge_litert"))
needs_tflite = pytest.mark.skipif(not HAS_TFLITE, reason="the .[tflite] extra is not installed")


@pytest.fixture(scope="module")
def request_default() -> ExportRequest:
    return build_request(resolve_model(ARCH), None, images=64, calibration=64)


def test_formats_are_registered() -> None:
    assert {"onnx", "tflite", "tflite-fp16", "tflite-int8", "tflite-dynamic", "tensorrt", "tensorrt-fp16"} <= set(list_formats())
    with pytest.raises(UserError, match="unknown export format 'coreml'"):
        get_exporter("coreml")


def test_untrained_models_get_input_dependent_outputs(request_default: ExportRequest) -> None:
    outputs = request_default.module(torch.from_numpy(request_default.images[:8]))
    assert outputs.std(0).mean() > 1e-2  # BatchNorm statistics come from real images
    assert request_default.labels is None  # accuracy of random weights means nothing


def test_onnx_export_verifies_to_1e_4(tmp_path: Path, request_default: ExportRequest) -> None:
    exporter = get_exporter("onnx")
    path = exporter.export(request_default.module, request_default.example_input, tmp_path / "m.onnx")
    check = verify(exporter, path, request_default.module, request_default.images)
    assert check.passed and check.max_abs_diff <= 1e-4 and check.top1_agreement == 1.0
    assert oct(os.stat(path).st_mode & 0o777) != "0o600"


def test_an_onnx_export_with_the_registry_built_once_is_the_plain_exporters_file(
    tmp_path: Path, request_default: ExportRequest
) -> None:
    """``export_onnx`` reuses torch's registry of ONNX functions between exports (2x faster per layer): the graph it
    writes is the one ``torch.onnx.export`` writes with its own fresh registry, and torch's method is put back."""
    import onnx
    from torch.onnx._internal.exporter._registration import ONNXRegistry

    from hwnas.exporters.cache import bypassed
    from hwnas.exporters.onnx_export import export_onnx

    module, example = request_default.module.eval(), request_default.example_input
    plain = torch.onnx.export(module, (example,), dynamo=True, opset_version=18, input_names=["input"], output_names=["output"])
    plain.save(str(tmp_path / "plain.onnx"), external_data=False)
    untouched = ONNXRegistry.__dict__["from_torchlib"]
    with bypassed():
        for name in ("first.onnx", "second.onnx"):  # the second export takes the kept registry
            export_onnx(module, example, tmp_path / name)
    assert ONNXRegistry.__dict__["from_torchlib"] is untouched
    graphs = [onnx.load(str(tmp_path / name)).graph for name in ("plain.onnx", "first.onnx", "second.onnx")]
    assert graphs[0].SerializeToString() == graphs[1].SerializeToString() == graphs[2].SerializeToString()


@needs_tflite
def test_a_tflite_conversion_with_the_composite_op_list_kept_writes_the_plain_converters_file(tmp_path: Path) -> None:
    """``export_tflite`` keeps torch.export's list of composite ops per process (12% off a layer's conversion): the
    file is byte for byte the one litert-torch writes with its own walk, and torch's functions are put back after."""
    import torch._export.utils as export_utils

    from hwnas.builder import build_op
    from hwnas.exporters.cache import bypassed
    from hwnas.exporters.tflite_export import export_tflite, require_litert_torch, to_nhwc

    key = get_space("default").enumerate_op_keys()[5]
    module, example = build_op(key).eval(), torch.randn(1, key.in_channels, key.in_size, key.in_size)
    litert_torch = require_litert_torch()
    wrapped = litert_torch.to_channel_last_io(module, args=[0], outputs=[0]).eval()
    litert_torch.convert(wrapped, (to_nhwc(example),)).export(str(tmp_path / "plain.tflite"))
    untouched = export_utils._collect_all_valid_cia_ops
    with bypassed():
        for name in ("first.tflite", "second.tflite"):  # the second conversion takes the kept list
            export_tflite(module, example, tmp_path / name)
    assert export_utils._collect_all_valid_cia_ops is untouched
    files = [(tmp_path / name).read_bytes() for name in ("plain.tflite", "first.tflite", "second.tflite")]
    assert files[0] == files[1] == files[2]


@needs_tflite
@pytest.mark.parametrize("fmt", ["tflite", "tflite-fp16", "tflite-dynamic", "tflite-int8"])
def test_tflite_formats_verify(tmp_path: Path, request_default: ExportRequest, fmt: str) -> None:
    exporter = get_exporter(fmt)
    path = exporter.export(
        request_default.module, request_default.example_input, tmp_path / f"{fmt}.tflite", request_default.calibration
    )
    check = verify(exporter, path, request_default.module, request_default.images)
    assert check.passed, check.failure
    if fmt == "tflite":
        assert check.max_abs_diff <= 1e-4
    else:
        assert check.max_abs_diff > 0  # quantization really changed the numbers


@needs_tflite
def test_int8_calibration_ranges_cover_every_calibration_image(tmp_path: Path, request_default: ExportRequest) -> None:
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import recipe

    from hwnas.exporters.tflite_export import calibrate_min_max, export_tflite, to_nhwc

    float_file = export_tflite(request_default.module, request_default.example_input, tmp_path / "float.tflite")
    images = to_nhwc(request_default.calibration)
    per_image_max = images.reshape(len(images), -1).max(axis=1)
    assert per_image_max.min() < per_image_max.max()  # images differ, so an average of per-image ranges would clip
    ranges = calibrate_min_max(float_file, recipe.static_wi8_ai8(), images)
    input_name = Interpreter(model_path=str(float_file)).get_input_details()[0]["name"]
    assert float(np.min(ranges[input_name]["min"])) == float(images.min())
    assert float(np.max(ranges[input_name]["max"])) == float(images.max())


class _MaybeResidual(nn.Module):
    """The same weights and repr with and without a skip connection: only the forward tells them apart."""

    def __init__(self, residual: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + x if self.residual else self.conv(x)


def _tflite_conversion(module, sample, out, cache):
    from hwnas.exporters import tflite_export

    return tflite_export.export_tflite(module, sample, out, cache=cache)


def _onnx_conversion(module, sample, out, cache):
    from hwnas.exporters import onnx_export

    return onnx_export.export_onnx(module, sample, out, simplify=True, cache=cache)


@pytest.mark.parametrize(
    ("export", "module_name", "converter", "out_index"),
    [
        pytest.param(_tflite_conversion, "tflite_export", "_convert", 3, marks=needs_tflite, id="tflite"),
        pytest.param(_onnx_conversion, "onnx_export", "_export", 2, id="onnx"),
    ],
)
def test_a_conversion_is_kept_and_copied_only_for_the_same_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, export, module_name: str, converter: str, out_index: int
) -> None:
    import importlib

    module = importlib.import_module(f"hwnas.exporters.{module_name}")
    cache, sample = tmp_path / "cache", torch.randn(1, 4, 8, 8)
    first = export(_MaybeResidual(True), sample, tmp_path / "a", cache)
    [kept] = cache.iterdir()
    assert kept.read_bytes() == first.read_bytes()
    converted: list[Path] = []
    real_convert = getattr(module, converter)
    monkeypatch.setattr(module, converter, lambda *args: converted.append(args[out_index]) or real_convert(*args))
    again = export(_MaybeResidual(True), sample, tmp_path / "b", cache)
    assert converted == [] and again.read_bytes() == first.read_bytes()  # the same network: copied, not converted
    plain = _MaybeResidual(False)
    assert repr(plain) == repr(_MaybeResidual(True))
    other = export(plain, sample, tmp_path / "c", cache)
    assert converted == [other] and len(list(cache.iterdir())) == 2  # same repr and weights, another forward
    assert other.read_bytes() != first.read_bytes()  # a file of its own, not the residual network's
    with torch.no_grad():
        plain.conv.weight[0, 0, 0, 0] += 1.0
    export(plain, sample, tmp_path / "d", cache)
    assert len(converted) == 2  # one weight changed: converted again


def test_a_module_whose_forward_fails_is_the_exporters_one_line_error_not_a_cache_crash(tmp_path: Path) -> None:
    from hwnas.exporters.onnx_export import export_onnx

    broken = nn.Conv2d(3, 4, 3)  # the sample has 4 channels
    with pytest.raises(UserError, match="ONNX export failed"):
        export_onnx(broken, torch.randn(1, 4, 8, 8), tmp_path / "x.onnx", cache=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_verification_names_the_first_mismatch(tmp_path: Path, request_default: ExportRequest) -> None:
    exporter = get_exporter("onnx")
    path = exporter.export(request_default.module, request_default.example_input, tmp_path / "m.onnx")
    other = build_model(get_space("default"), get_space("default").parse(ARCH))
    recalibrate_batchnorm(other, torch.from_numpy(request_default.calibration))
    check = verify(exporter, path, other, request_default.images)
    assert not check.passed and check.failure.startswith("image 0: |diff|") and "torch" in check.failure
    assert verify(exporter, path, request_default.module, request_default.images).passed
    strict = type("Strict", (type(exporter),), {"tolerance": Tolerance(max_abs_diff=1e-12)})
    tight = verify(strict(), path, request_default.module, request_default.images)  # float rounding is ~1e-7
    assert not tight.passed and "> 1e-12" in tight.failure and "from the float64 model" in tight.failure


class _CancelsInFloat32(nn.Module):
    """Returns its input through (x + 1e4) - 1e4: exact in float64, off by up to 4.9e-4 in float32."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images.flatten(1) + 1e4) - 1e4


def test_a_file_closer_to_the_float64_answer_than_pytorchs_fp32_passes(tmp_path: Path) -> None:
    images = np.random.default_rng(0).standard_normal((4, 3, 8, 8)).astype(np.float32)
    exporter = get_exporter("onnx")
    exact_file = exporter.export(nn.Flatten(), torch.from_numpy(images[:1]), tmp_path / "exact.onnx")  # the true x
    check = verify(exporter, exact_file, _CancelsInFloat32(), images)
    assert check.max_abs_diff > 1e-4  # PyTorch's own fp32 rounding: the plain comparison misses
    assert check.max_abs_diff_float64 is not None and check.max_abs_diff_float64 < 1e-6
    assert check.passed, check.failure
    card = {"model": {}, "exports": [{"format": "onnx", "file": "exact.onnx", "verification": check.to_json()}], "versions": {}}
    assert f"(float64: {check.max_abs_diff_float64:.4g})" in render_markdown(card)  # the card says which check passed


class _Scaled(nn.Module):
    """Flattens and multiplies by a factor: a stand-in for a file off from PyTorch by a known relative error."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1) * self.factor


def test_the_tolerance_is_relative_to_the_output_scale_and_still_catches_real_errors(tmp_path: Path) -> None:
    images = (np.random.default_rng(0).standard_normal((4, 3, 8, 8)) * 30).astype(np.float32)  # logits of a deep net
    exporter = get_exporter("onnx")
    path = exporter.export(nn.Flatten(), torch.from_numpy(images[:1]), tmp_path / "flat.onnx")
    rounding = verify(exporter, path, _Scaled(1 + 2e-5), images)  # fp32 rounding of a deep network: ~1e-5 relative
    assert rounding.max_abs_diff > 1e-4 and rounding.output_scale > 30  # an absolute 1e-4 would reject it
    assert rounding.passed, rounding.failure
    wrong = verify(exporter, path, _Scaled(1 + 1e-3), images)  # 1e-3 relative is no rounding
    assert not wrong.passed and "x output scale" in wrong.failure


def test_a_file_that_fails_verification_never_keeps_its_deployable_name(
    tmp_path: Path, request_default: ExportRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    onnx_exporter = type(get_exporter("onnx"))
    monkeypatch.setattr(onnx_exporter, "tolerance", Tolerance(max_abs_diff=1e-12))  # float rounding is ~1e-7: fails
    card = export_all(request_default, ["onnx"], tmp_path, [DeviceSpec("cpu", "onnxruntime", warmup=1, repeats=5)])
    (item,) = card["exports"]
    assert not item["verification"]["passed"] and item["file"] == "rejected/model.onnx"
    assert not (tmp_path / "model.onnx").exists() and (tmp_path / "rejected" / "model.onnx").exists()
    assert item["latency"] == []  # a rejected file is not measured
    assert json.loads((tmp_path / "model_card.json").read_text())["exports"][0]["file"] == "rejected/model.onnx"


@needs_tflite
def test_a_format_that_cannot_be_exported_keeps_the_card_of_those_before_it(
    tmp_path: Path, request_default: ExportRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> Path:
        raise UserError("TFLite conversion failed: an op it cannot convert")

    monkeypatch.setattr(type(get_exporter("tflite")), "export", refuse)
    with pytest.raises(UserError, match="cannot convert"):
        export_all(request_default, ["onnx", "tflite"], tmp_path, [])
    card = json.loads((tmp_path / "model_card.json").read_text())
    assert [item["format"] for item in card["exports"]] == ["onnx"] and (tmp_path / "model.onnx").exists()
    assert not (tmp_path / "model.tflite").exists()


def test_export_all_writes_a_model_card_and_remeasures(tmp_path: Path, request_default: ExportRequest) -> None:
    spec = DeviceSpec("cpu", "onnxruntime", warmup=3, repeats=20)
    card = export_all(request_default, ["onnx"], tmp_path, [spec])
    [item] = card["exports"]
    assert item["verification"]["passed"] and item["latency"][0]["median_ms"] > 0
    assert item["latency"][0]["fingerprint"]["runtime"] == "onnxruntime"
    saved = json.loads((tmp_path / "model_card.json").read_text())
    assert saved["exports"][0]["sha256"] == item["sha256"] and saved["model"]["arch"] == ARCH
    assert "| onnx | model.onnx |" in (tmp_path / "model_card.md").read_text()


def test_missing_runtime_fails_before_writing(tmp_path: Path, request_default: ExportRequest) -> None:
    if get_exporter("tensorrt").unavailable_reason() is None:
        pytest.skip("TensorRT is available here")
    with pytest.raises(UserError, match="'tensorrt' cannot be exported here"):
        export_all(request_default, ["onnx", "tensorrt"], tmp_path / "out", [])
    assert not (tmp_path / "out").exists()


def test_unsupported_op_is_one_line_and_leaves_no_file(tmp_path: Path) -> None:
    class Unexportable(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.linalg.svd(x.flatten(1))[1]  # no ONNX operator for an SVD

    with pytest.raises(UserError, match=r"ONNX export failed: No ONNX function found for .*linalg_svd"):
        get_exporter("onnx").export(Unexportable(), torch.randn(1, 1, 8, 8), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_directory(tmp_path: Path, request_default: ExportRequest) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="cannot write to"):
        export_all(request_default, ["onnx"], blocker / "sub", [])


def test_resolve_model_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown torchvision model"):
        resolve_model("torchvision:resnet9000")
    with pytest.raises(UserError, match="not a run folder"):
        resolve_model(str(tmp_path))
    with pytest.raises(UserError, match="does not exist"):
        resolve_model(ARCH, tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    torch.save({"weight": torch.zeros(1)}, bad)
    with pytest.raises(UserError, match="does not fit"):
        resolve_model(ARCH, bad)


def hwnas(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hwnas", *map(str, args)], capture_output=True, text=True, timeout=900)


def test_cli_export_errors_are_one_line(tmp_path: Path, hwnas_in_process) -> None:
    for args, fragment in [
        (["export", ARCH, "--format", "onnx,coreml", "--out", tmp_path / "a"], "unknown export format"),
        (["export", "default:r32_c16[k3e3", "--out", tmp_path / "b"], "bad stage token"),
        (["export", ARCH, "--format", "tensorrt", "--out", tmp_path / "c"], "cannot be exported here"),
    ]:
        result = hwnas_in_process(*args)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and fragment in result.stderr, result.stderr


@pytest.mark.slow
@needs_tflite
# mnasnet1_0 was dropped: its operations (convolution, BatchNorm, ReLU, depthwise, residual add) are mobilenet_v2's;
# benchmarks/latency_any.py exports it with the other torchvision families
@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0"])
def test_torchvision_models_export_and_verify(tmp_path: Path, name: str) -> None:
    request = build_request(resolve_model(f"torchvision:{name}"), None, images=8, calibration=32)
    card = export_all(request, ["onnx", "tflite"], tmp_path, [])
    for item in card["exports"]:
        assert item["verification"]["passed"], item["verification"]["failure"]
        assert within_1e_4(item["verification"])


def within_1e_4(check: dict[str, float | None]) -> bool:
    """fp32 verification: within 1e-4 x the output scale of PyTorch's fp32 output, or of the float64 one when needed."""
    closest = min(value for value in (check["max_abs_diff"], check["max_abs_diff_float64"]) if value is not None)
    return closest <= 1e-4 * check["output_scale"]


@pytest.mark.slow
@needs_tflite
@pytest.mark.parametrize("preset", ["proxylessnas", "mnasnet", "ofa-mbv3"])
def test_a_sampled_architecture_of_every_imagenet_preset_exports_and_verifies(tmp_path: Path, preset: str) -> None:
    """The test's small sample; benchmarks/export_sampled.py runs 100 of each preset."""
    arch = get_space(preset).sample(0).format()
    request = build_request(resolve_model(arch), None, images=8, calibration=32)
    card = export_all(request, ["onnx", "tflite"], tmp_path, [])
    assert [item["format"] for item in card["exports"]] == ["onnx", "tflite"]
    for item in card["exports"]:
        assert item["verification"]["passed"], item["verification"]["failure"]
        assert within_1e_4(item["verification"])


@pytest.mark.slow
@needs_tflite
def test_cli_export_of_a_trained_run_folder(tmp_path: Path) -> None:
    run = tmp_path / "run"
    data = write_idx_folder(tmp_path / "data", train=3000, test=300)  # a third of the embedded images
    # two epochs: one epoch in, int8 rounding alone can cost the 1% the rule allows (3 of 300 images)
    trained = hwnas("train", "--arch", ARCH, "--epochs", "2", "--data", data, "--out", run, "--json")
    assert trained.returncode == 0, trained.stderr
    result = hwnas(
        "export",
        run,
        "--format",
        "onnx,tflite,tflite-int8",
        "--device",
        "host-ort",
        "--device",
        "host-tflite",
        "--out",
        tmp_path / "export",
        "--images",
        "300",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    leaks = ["Calibration", "Transformations", "XNNPACK delegate", "KernelPreference"]  # tqdm bars, runtime, litert-torch
    assert not [leak for leak in leaks if leak in result.stderr], result.stderr
    card = json.loads(result.stdout)
    by_format = {item["format"]: item for item in card["exports"]}
    fp32, int8 = by_format["tflite"]["verification"], by_format["tflite-int8"]["verification"]
    assert within_1e_4(fp32) and fp32["file_accuracy"] > 0.6
    assert int8["torch_accuracy"] - int8["file_accuracy"] <= 0.01
    assert by_format["tflite-int8"]["bytes"] < by_format["tflite"]["bytes"] / 2
    assert {m["device"] for m in by_format["tflite"]["latency"]} == {"host-cpu-tflite-xnnpack"}
    assert (tmp_path / "export" / "model_card.md").exists()
    drift = {check["device"]: check for check in card["drift"]}  # shipped tables: a few of their own networks re-timed
    assert set(drift) == _devices_with_a_table("host-ort", "host-tflite") and all(c["ratio"] > 0 for c in drift.values())


def _devices_with_a_table(*specs: str) -> set[str]:
    """The devices of ``specs`` that have a latency table for this machine (the shipped ones fit the CI machine's CPU)."""
    from hwnas.devices import DeviceSpec, make_backend
    from hwnas.latency_tables.drift import find_device_table

    devices = [DeviceSpec.from_toml(spec) for spec in specs]
    return {spec.name for spec in devices if find_device_table(spec, make_backend(spec).fingerprint()) is not None}


def test_model_card_has_no_python_reprs() -> None:
    card = {
        "model": {
            "name": "abc",
            "arch": "default:r32_c16[k3e3]_c40[k5e6,k5e3]_c48[k7e3h]_c80[k3e3sh]",
            "input_shape": [1, 1, 32, 32],
            "flops": 1234567,
            "recipe": {"optimizer": "sgd", "lr": 0.2, "epochs": 1},
            "predicted_latency_ms": {"host-cpu-onnxruntime": {"lut_sum_ms": 0.4973735000000001, "table": "t.json"}},
        },
        "exports": [],
        "versions": {"torch": "2.14.1"},
    }
    text = render_markdown(card)
    assert "{" not in text and "'" not in text and "0.4973735000000001" not in text
    assert "lut_sum_ms: 0.4974" in text and "lr: 0.2" in text and "1 x 1 x 32 x 32" in text
    assert "`default:r32_c16[k3e3]_c40[k5e6,k5e3]_c48[k7e3h]_c80[k3e3sh]`" in text


def test_importing_the_tflite_converter_prints_nothing_on_stderr() -> None:
    """TensorFlow's C++ import lines (absl, oneDNN) go to fd 2 whatever its log level; hwnas drops those two only."""
    pytest.importorskip("litert_torch")
    code = "from hwnas.exporters.tflite_export import require_litert_torch; require_litert_torch(); print('imported')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "imported", done.stderr
    assert done.stderr == "", done.stderr
