"""The android-adb backend against recorded benchmark_model outputs and a stand-in adb.

There is no phone here; ``tests/fakes/adb`` replays real recorded outputs (see
``tests/data/benchmark_model/README.md``). Everything the backend does around it is real:
the subprocess calls, their arguments, timeouts and the parsing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hwnas.devices import DeviceSpec, make_backend
from hwnas.devices.backends.android_adb import parse_benchmark_output
from hwnas.errors import UserError

RECORDED = Path(__file__).parent / "data" / "benchmark_model"
FAKES = Path(__file__).parent / "fakes"


def test_parse_old_style_output() -> None:
    parsed = parse_benchmark_output((RECORDED / "mi11_yolov5s_fp32_cpu.txt").read_text())
    assert parsed.avg_ms == pytest.approx(249.684) and parsed.init_ms == pytest.approx(16.242)
    assert parsed.count == 50 and parsed.std_ms == pytest.approx(1.442) and parsed.median_ms is None
    assert parsed.ops == []


def test_parse_logcat_style_with_median_uses_the_regular_run_line() -> None:
    parsed = parse_benchmark_output((RECORDED / "logcat_p5_median.txt").read_text())
    assert parsed.count == 25 and parsed.median_ms == pytest.approx(141.253) and parsed.avg_ms == pytest.approx(145.528)


def test_parse_op_profiling_table() -> None:
    parsed = parse_benchmark_output((RECORDED / "riscv_mobilenet_v1_op_profiling.txt").read_text())
    assert parsed.avg_ms == pytest.approx(2950.34) and len(parsed.ops) == 31
    assert parsed.ops[0] == {
        "type": "CONV_2D",
        "avg_ms": pytest.approx(60.957),
        "name": "[MobilenetV1/MobilenetV1/Conv2d_0/Relu6]:0",
    }
    assert sum(op["type"] == "DEPTHWISE_CONV_2D" for op in parsed.ops) == 13


def test_output_without_timings_is_a_user_error() -> None:
    with pytest.raises(UserError, match="no inference timings; last line: ERROR: Could not open"):
        parse_benchmark_output("STARTING!\nERROR: Could not open '/data/local/tmp/x.tflite'.\n")


@pytest.fixture()
def fake_adb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = tmp_path / "adb.log"
    monkeypatch.setenv("PATH", f"{FAKES}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ADB_LOG", str(log))
    monkeypatch.setenv("FAKE_ADB_OUTPUT", str(RECORDED / "mi11_yolov5s_fp32_cpu.txt"))
    return log


def calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_push_run_parse_through_adb(fake_adb: Path, tmp_path: Path) -> None:
    model = tmp_path / "layer.tflite"
    model.write_bytes(b"tflite")
    spec = DeviceSpec("phone", "android-adb", threads=2, warmup=7, repeats=100, options={"serial": "emulator-5554", "rounds": 4})
    backend = make_backend(spec)
    assert backend.unavailable_reason() is None
    measurement = backend.measure(model)
    assert measurement.samples_ms == (249.684,) * 4 and measurement.sample_kind == "round_mean"
    assert measurement.fingerprint["device"] == "Pixel 4" and measurement.fingerprint["android"] == "13"
    made = calls(fake_adb)
    assert ["-s", "emulator-5554", "push", str(model), "/data/local/tmp/hwnas/layer.tflite"] in made
    runs = [call for call in made if "/data/local/tmp/benchmark_model" in call]
    assert len(runs) == 4
    assert runs[0][2:] == [
        "shell",
        "/data/local/tmp/benchmark_model",
        "--graph=/data/local/tmp/hwnas/layer.tflite",
        "--num_threads=2",
        "--warmup_runs=7",
        "--num_runs=25",
        "--use_xnnpack=true",
    ]


def test_op_profiling_flag_is_passed(fake_adb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_ADB_OUTPUT", str(RECORDED / "riscv_mobilenet_v1_op_profiling.txt"))
    backend = make_backend(DeviceSpec("phone", "android-adb", options={"op_profiling": True, "rounds": 1}))
    outputs = backend.profile(backend.push(tmp_path / "m.tflite"))
    assert len(outputs[0].ops) == 31
    assert "--enable_op_profiling=true" in calls(fake_adb)[-1]


def test_unavailable_reasons(fake_adb: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "not attached" in make_backend(DeviceSpec("p", "android-adb", options={"serial": "R58M"})).unavailable_reason()
    monkeypatch.setenv("FAKE_ADB_DEVICES", "")
    assert "no Android device" in make_backend(DeviceSpec("p", "android-adb")).unavailable_reason()
    monkeypatch.setenv("FAKE_ADB_DEVICES", "a,b")
    assert "several devices" in make_backend(DeviceSpec("p", "android-adb")).unavailable_reason()
    monkeypatch.setenv("HWNAS_ADB", "/nonexistent/adb")
    assert "adb not found" in make_backend(DeviceSpec("p", "android-adb")).unavailable_reason()


def test_a_spec_cannot_choose_the_program_to_run(tmp_path: Path) -> None:
    """A shared spec naming its own 'adb' once ran that script on `hwnas devices check`."""
    marker = tmp_path / "ran"
    script = tmp_path / "evil-adb"
    script.write_text(f"#!/bin/sh\ntouch {marker}\n")
    script.chmod(0o755)
    for key in ("adb", "benchmark_binary"):
        with pytest.raises(UserError, match=f"cannot choose the program .*{key}.*HWNAS_"):
            make_backend(DeviceSpec("p", "android-adb", options={key: str(script)})).unavailable_reason()
    assert not marker.exists()
