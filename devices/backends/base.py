"""The backend contract, the registry, and the timing loop every local backend shares.

A backend takes a model *file* (it knows nothing of search spaces) and measures it:

- ``unavailable_reason()``: ``None`` when the runtime (and hardware) is here, else one line why not;
- ``fingerprint()``: what a latency number is only valid for (CPU/GPU, runtime and version,
  threads, precision, options);
- ``measure(model_file)``: warm up, then time many runs on pinned cores -> :class:`Measurement`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import statistics
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from hwnas.devices.measurement import Measurement
from hwnas.devices.spec import DeviceSpec
from hwnas.errors import UserError
from hwnas.registry import Registry

_BACKEND_MODULES = ("onnxruntime_backend", "tflite_backend", "android_adb", "tensorrt_backend")
BACKENDS: Registry[type[Backend]] = Registry("backend", modules=[f"hwnas.devices.backends.{name}" for name in _BACKEND_MODULES])


def register_backend(cls: type[Backend]) -> type[Backend]:
    return BACKENDS.register(cls.name, cls)


def list_backends() -> list[str]:
    return BACKENDS.list()


def make_backend(spec: DeviceSpec) -> Backend:
    try:
        cls = BACKENDS.get(spec.backend)
    except UserError as error:
        raise UserError(f"device {spec.name!r}: {error}") from None
    return cls(spec)


class Backend(ABC):
    """One runtime on one device. Subclasses declare ``name``, ``model_format`` and ``options``."""

    name: ClassVar[str]
    model_format: ClassVar[str]  # "onnx" or "tflite": the file type measure() takes
    options: ClassVar[dict[str, Any]] = {}  # option -> default; the default's type is the option's type

    def __init__(self, spec: DeviceSpec) -> None:
        self.spec = spec
        self.settings = self._check_options(spec.options)

    def _check_options(self, given: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(given) - set(self.options))
        if unknown:
            raise UserError(
                f"device {self.spec.name!r}: backend {self.name!r} has no option {unknown[0]!r}; "
                f"options: {', '.join(sorted(self.options)) or 'none'}"
            )
        for key, value in given.items():
            default = self.options[key]
            if default is not None and not isinstance(value, type(default)):
                raise UserError(f"device {self.spec.name!r}: option {key!r} must be {type(default).__name__}, got {value!r}")
        return self.options | given

    @abstractmethod
    def unavailable_reason(self) -> str | None: ...

    def require_available(self) -> None:
        reason = self.unavailable_reason()
        if reason is not None:
            raise UserError(f"device {self.spec.name!r} ({self.name}) cannot run here: {reason}")

    @abstractmethod
    def fingerprint(self) -> dict[str, Any]: ...

    @abstractmethod
    def measure(self, model_file: Path) -> Measurement: ...

    # ---- what a profiler needs beyond measure() -------------------------------------------
    @property
    def times_in_rounds(self) -> bool:
        """True when ``measure_session`` times one of ``spec.sessions`` shares, so a profiler can interleave layers."""
        return False

    def measure_session(self, model_file: Path) -> Measurement:
        """One round's share of the runs; a backend that cannot split its runs times them all."""
        return self.measure(model_file)

    def settle(self, model_file: Path) -> float:
        """Bring the device to a steady state before timing (seconds spent); nothing to do by default."""
        return 0.0


class LocalBackend(Backend):
    """A runtime in this process: timed on pinned cores in ``spec.sessions`` fresh sessions.

    One session's buffers land where they land; that placement biases every run of the session
    alike (a few percent for sub-millisecond layers). Several fresh sessions, their samples pooled,
    turn that bias into noise the median sees through, which is what makes two profiles agree.
    """

    @abstractmethod
    def prepare(self, model_file: Path) -> Callable[[], object]:
        """Load ``model_file`` into a fresh session with inputs set; return a function running it once."""

    @property
    def times_in_rounds(self) -> bool:
        return self.spec.sessions > 1

    def settle(self, model_file: Path, window_s: float = 1.0, tolerance: float = 0.01, max_s: float = 30.0) -> float:
        """Run one model in 1 s windows until two consecutive window medians agree within 1%.

        Right after minutes of conversion on every core the CPU's clock and caches are still
        moving; measuring straight away shifted a whole table by a few percent against a second
        profile. Returns the seconds spent (at most ``max_s``).
        """
        started, previous = time.perf_counter(), None
        run_once = self.prepare(model_file)
        with pinned(measuring_cores(self.spec)):
            while time.perf_counter() - started < max_s:
                current = statistics.median(time_runs(run_once, 0, 1, window_s))
                if previous is not None and abs(current - previous) <= tolerance * previous:
                    break
                previous = current
        return time.perf_counter() - started

    def measure(self, model_file: Path) -> Measurement:
        """All ``spec.sessions`` sessions back to back, their samples pooled."""
        samples: list[float] = []
        for _ in range(self.spec.sessions):
            samples += self.measure_session(model_file).samples_ms
        return Measurement(tuple(samples), self.fingerprint())

    def measure_session(self, model_file: Path) -> Measurement:
        """One fresh session's share (1 / ``spec.sessions``) of the runs and the minimum time.

        The profiler calls this once per layer per round and pools the rounds, so a layer's runs
        are spread over the whole profile instead of one contiguous second: a slow stretch of a
        shared machine then touches every layer a little instead of a few layers a lot.
        """
        self.require_available()
        sessions = self.spec.sessions
        run_once = self.prepare(model_file)
        with pinned(measuring_cores(self.spec)):
            samples = time_runs(run_once, self.spec.warmup, -(-self.spec.repeats // sessions), self.spec.min_time_s / sessions)
        return Measurement(tuple(samples), self.fingerprint())


def host_cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def host_cpu_details() -> dict[str, Any]:
    """What tells two CPUs of one marketing name apart: family / model / stepping, caches, flags.

    "AMD EPYC" has named CPUs of different generations on this kind of machine. These fields are
    compared only when both fingerprints have them (tables made before them stay usable). They do
    not tell apart two days of one CPU that ran 1.6x apart: that is what the drift check is for.
    """
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            name = name.strip()
            if name in ("cpu family", "model", "stepping", "flags") and name not in fields:
                fields[name] = value.strip()
            if not line.strip() and fields:
                break  # the first processor's block is enough
    details: dict[str, Any] = {
        "cpu_family": fields.get("cpu family", "?"),
        "cpu_model": fields.get("model", "?"),
        "cpu_stepping": fields.get("stepping", "?"),
        "cpu_caches": _cache_sizes(),
    }
    flags = " ".join(sorted(fields.get("flags", "").split()))
    details["cpu_flags_hash"] = hashlib.sha256(flags.encode()).hexdigest()[:16] if flags else "?"
    return details


def _cache_sizes() -> str:
    """``L1d 32K, L1i 32K, L2 512K, L3 32768K`` from sysfs (cpu0), or ``?``."""
    found = []
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        with contextlib.suppress(OSError):
            level, kind, size = ((index / name).read_text().strip() for name in ("level", "type", "size"))
            suffix = {"Data": "d", "Instruction": "i"}.get(kind, "")
            found.append(f"L{level}{suffix} {size}")
    return ", ".join(found) or "?"


def measuring_cores(spec: DeviceSpec) -> set[int]:
    """The cores to pin to: the spec's, else the last ``threads`` cores this process may use."""
    allowed = sorted(os.sched_getaffinity(0))
    if spec.cores is not None:
        missing = set(spec.cores) - set(allowed)
        if missing:
            raise UserError(f"device {spec.name!r}: cores {sorted(missing)} are not available here (have {allowed})")
        return set(spec.cores)
    return set(allowed[-spec.threads :])


@contextlib.contextmanager
def pinned(cores: set[int]) -> Iterator[None]:
    """Pin this process to ``cores`` for the duration: the largest single cut in timing noise."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def time_runs(run_once: Callable[[], object], warmup: int, repeats: int, min_time_s: float = 0.0) -> list[float]:
    """Warm up, then time ``repeats`` runs (more until ``min_time_s`` is spent); milliseconds per run."""
    for _ in range(warmup):
        run_once()
    samples: list[float] = []
    spent = 0.0
    while len(samples) < repeats or spent < min_time_s:
        start = time.perf_counter_ns()
        run_once()
        elapsed = (time.perf_counter_ns() - start) / 1e6
        samples.append(elapsed)
        spent += elapsed / 1e3
        if len(samples) >= 100 * repeats:
            break
    return samples
