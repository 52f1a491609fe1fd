"""An Android phone over adb, timed by TFLite's official ``benchmark_model`` binary.

Three separate steps, as in nn-Meter's backend interface but without globals or a shell:
push the .tflite (``adb push``), profile (``adb shell benchmark_model ...`` through
``subprocess.run([...])`` with a timeout) and parse its text output. ``benchmark_model`` reports
summary statistics only, so ``repeats`` are split into ``rounds`` invocations and each round's
mean is one sample (``sample_kind = "round_mean"``).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from hwnas.devices.backends.base import Backend, register_backend
from hwnas.devices.measurement import Measurement
from hwnas.devices.spec import DeviceSpec
from hwnas.errors import UserError

_NUMBER = r"([0-9.]+(?:e[+-]?[0-9]+)?)"
_SUMMARY_RE = re.compile(
    rf"Inference timings in us: Init: {_NUMBER}, First inference: {_NUMBER}, "
    rf"Warmup \(avg\): {_NUMBER}, Inference \(avg\): {_NUMBER}"
)
_STATS_RE = re.compile(
    rf"count=(\d+) first={_NUMBER} curr={_NUMBER} min={_NUMBER} max={_NUMBER} avg={_NUMBER} std={_NUMBER}"
    rf"(?: p5={_NUMBER} median={_NUMBER} p95={_NUMBER})?"
)
_OP_ROW_RE = re.compile(
    rf"^\s*([A-Z_0-9]+)\s+{_NUMBER}\s+{_NUMBER}\s+{_NUMBER}\s+{_NUMBER}%\s+{_NUMBER}%\s+{_NUMBER}\s+(\d+)\s+(.+)$"
)


@dataclass(frozen=True)
class BenchmarkOutput:
    """What one ``benchmark_model`` run printed, in milliseconds."""

    init_ms: float
    first_ms: float
    warmup_avg_ms: float
    avg_ms: float
    count: int | None = None
    std_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    median_ms: float | None = None
    ops: list[dict[str, Any]] = field(default_factory=list)


def parse_benchmark_output(text: str) -> BenchmarkOutput:
    """Parse benchmark_model's stdout; raise UserError quoting its last line when it has no timings."""
    summary = _SUMMARY_RE.search(text)
    if summary is None:
        last = next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "(no output)")
        raise UserError(f"benchmark_model printed no inference timings; last line: {last}")
    init, first, warmup, average = (float(value) / 1000 for value in summary.groups())
    stats = [match for match in _STATS_RE.finditer(text[: summary.start()])]
    detail: dict[str, Any] = {}
    if stats:
        groups = stats[-1].groups()
        detail = {
            "count": int(groups[0]),
            "min_ms": float(groups[3]) / 1000,
            "max_ms": float(groups[4]) / 1000,
            "std_ms": float(groups[6]) / 1000,
            "median_ms": float(groups[8]) / 1000 if groups[8] else None,
        }
    return BenchmarkOutput(init, first, warmup, average, ops=_parse_op_profile(text), **detail)


def _parse_op_profile(text: str) -> list[dict[str, Any]]:
    """Rows of the "Run Order" table of the regular runs (``--enable_op_profiling=true``)."""
    marker = text.find("Operator-wise Profiling Info for Regular Benchmark Runs")
    if marker < 0:
        return []
    section = text[marker:].split("Run Order", 1)[-1].split("==============================", 2)[1]
    rows = []
    for line in section.splitlines():
        match = _OP_ROW_RE.match(line)
        if match:
            rows.append({"type": match.group(1), "avg_ms": float(match.group(4)), "name": match.group(9).strip()})
    return rows


DEFAULT_BENCHMARK_BINARY = "/data/local/tmp/benchmark_model"
# The programs hwnas runs come from the user's environment, never from a device spec: specs are
# shared files, and a spec that could name its own executable would run it on `hwnas devices check`.
PROGRAM_VARIABLES = {"adb": "HWNAS_ADB", "benchmark_binary": "HWNAS_BENCHMARK_MODEL"}


@register_backend
class AndroidAdbBackend(Backend):
    name = "android-adb"
    model_format = "tflite"
    options: ClassVar[dict[str, Any]] = {
        "serial": "",
        "remote_dir": "/data/local/tmp/hwnas",
        "use_xnnpack": True,
        "use_gpu": False,
        "op_profiling": False,
        "rounds": 5,
        "timeout_s": 300,
    }

    def __init__(self, spec: DeviceSpec) -> None:
        for key, variable in PROGRAM_VARIABLES.items():
            if key in spec.options:
                raise UserError(
                    f"device {spec.name!r}: a device spec cannot choose the program hwnas runs ([options] {key}); "
                    f"set the environment variable {variable} instead"
                )
        super().__init__(spec)
        self.adb_program = os.environ.get("HWNAS_ADB", "adb")
        self.benchmark_binary = os.environ.get("HWNAS_BENCHMARK_MODEL", DEFAULT_BENCHMARK_BINARY)

    def _adb(self, *args: str, timeout: float | None = None, with_serial: bool = True) -> str:
        serial = ["-s", self.settings["serial"]] if self.settings["serial"] and with_serial else []
        command = [self.adb_program, *serial, *args]
        try:
            result = subprocess.run(
                command, capture_output=True, text=True, timeout=timeout or self.settings["timeout_s"], check=False
            )
        except subprocess.TimeoutExpired:
            raise UserError(
                f"adb timed out after {timeout or self.settings['timeout_s']} s: {' '.join(command[:6])} ..."
            ) from None
        except FileNotFoundError:
            raise UserError(f"adb not found: {self.adb_program!r}") from None
        if result.returncode != 0:
            message = (result.stderr or result.stdout).strip().splitlines()
            raise UserError(f"adb {' '.join(args[:2])} failed: {message[-1] if message else f'exit {result.returncode}'}")
        return result.stdout

    def unavailable_reason(self) -> str | None:
        if shutil.which(self.adb_program) is None:
            return f"adb not found on PATH ({self.adb_program!r}); install Android platform-tools"
        try:
            listing = self._adb("devices", timeout=30, with_serial=False)
        except UserError as error:
            return str(error)
        attached = [line.split()[0] for line in listing.splitlines()[1:] if line.strip().endswith("device")]
        if not attached:
            return "no Android device attached (adb devices lists none)"
        if self.settings["serial"] and self.settings["serial"] not in attached:
            return f"device {self.settings['serial']!r} not attached (attached: {', '.join(attached)})"
        if len(attached) > 1 and not self.settings["serial"]:
            return f"several devices attached ({', '.join(attached)}): set options.serial"
        return None

    def fingerprint(self) -> dict[str, Any]:
        props = {
            key: self._adb("shell", "getprop", key, timeout=30).strip()
            for key in ("ro.product.model", "ro.soc.model", "ro.build.version.release")
        }
        return {
            "device": props["ro.product.model"],
            "soc": props["ro.soc.model"],
            "android": props["ro.build.version.release"],
            "runtime": "tflite benchmark_model",
            "runtime_version": self.benchmark_binary,
            "threads": self.spec.threads,
            "precision": self.spec.precision,
            "xnnpack": self.settings["use_xnnpack"],
            "gpu": self.settings["use_gpu"],
        }

    # --- the three steps -------------------------------------------------------------------
    def push(self, model_file: Path) -> str:
        remote = f"{self.settings['remote_dir']}/{Path(model_file).name}"
        self._adb("shell", "mkdir", "-p", shlex.quote(self.settings["remote_dir"]))
        self._adb("push", str(model_file), remote)
        return remote

    def benchmark_command(self, remote_model: str, runs: int) -> list[str]:
        command = [
            "shell",
            shlex.quote(self.benchmark_binary),
            f"--graph={shlex.quote(remote_model)}",
            f"--num_threads={self.spec.threads}",
            f"--warmup_runs={self.spec.warmup}",
            f"--num_runs={runs}",
            f"--use_xnnpack={str(self.settings['use_xnnpack']).lower()}",
        ]
        if self.settings["use_gpu"]:
            command.append("--use_gpu=true")
        if self.settings["op_profiling"]:
            command.append("--enable_op_profiling=true")
        if self.spec.min_time_s:
            command.append(f"--min_secs={self.spec.min_time_s}")
        return command

    def profile(self, remote_model: str) -> list[BenchmarkOutput]:
        rounds = max(1, self.settings["rounds"])
        runs = max(1, self.spec.repeats // rounds)
        return [parse_benchmark_output(self._adb(*self.benchmark_command(remote_model, runs))) for _ in range(rounds)]

    def measure(self, model_file: Path) -> Measurement:
        self.require_available()
        outputs = self.profile(self.push(model_file))
        return Measurement(tuple(output.avg_ms for output in outputs), self.fingerprint(), sample_kind="round_mean")
