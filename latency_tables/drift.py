"""Drift check: is this device as fast today as on the day its table was measured?

The same "AMD EPYC" machine ran torchvision's mobilenet_v2 in 8.1 ms one day and 12.6 ms the next
(1 thread, pinned, same code): a fingerprint cannot see that, and a table from the first day would
mispredict everything by 60%. So a profile times a few fixed *reference networks* in the same
round-robin rounds as its layers (:data:`REFERENCES`, recorded in ``table.references``), and any
later measuring session on that device times them again first (:func:`check_drift`). The ratio
now / then is printed, recorded in the table (``table.drift``) and, above :data:`WARN_ABOVE`,
warned about; ``--rescale`` multiplies predictions by it.

The references are torchvision networks with seeded random weights at 96 px: fixed for good
(nothing of a search space changes them), small enough that re-timing both costs ~2 s, and made
of the same kinds of layers the tables hold.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hwnas.devices.backends import Backend
from hwnas.devices.measurement import Measurement
from hwnas.devices.spec import DeviceSpec
from hwnas.errors import UserError
from hwnas.latency_tables.convert import ConversionJob, convert_all, network_job, torchvision_job
from hwnas.latency_tables.table import PROFILES as PROFILES  # re-exported: where hwnas profile writes tables
from hwnas.latency_tables.table import SHIPPED, LatencyTable, matching_table

REFERENCES: dict[str, dict[str, Any]] = {
    "mobilenet_v2-w0.5-r96": {"name": "mobilenet_v2", "width": 0.5, "resolution": 96},
    "mobilenet_v3_small-r96": {"name": "mobilenet_v3_small", "width": None, "resolution": 96},
}
DEFAULT_REFERENCES = tuple(REFERENCES)
REFERENCE_PREFIX = "reference:"
DRIFT_PREFIX = "drift:"
WARN_ABOVE = 0.10
DRIFT_NETWORKS = 3  # whole networks of a table without reference networks re-timed by a drift check
LONG_RUN = 4.0  # a model this many times the drift networks' longest run: a busy machine may slow it alone


def reference_job(name: str, fmt: str, cache: Path) -> ConversionJob:
    spec = REFERENCES[name]
    return torchvision_job(spec["name"], spec["width"], spec["resolution"], fmt, cache)


@dataclass(frozen=True)
class DriftCheck:
    """Reference networks timed now against the table's figures; ``ratio`` is their geometric mean."""

    rows: tuple[dict[str, Any], ...]
    ratio: float
    context: str
    how: str = "reference networks"  # or "N of the table's whole networks" for a table made before references

    @property
    def warn(self) -> bool:
        return abs(self.ratio - 1.0) > WARN_ABOVE

    def to_json(self) -> dict[str, Any]:
        return {
            "ratio": self.ratio,
            "warn": self.warn,
            "context": self.context,
            "how": self.how,
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "references": list(self.rows),
        }

    def message(self, rescale_hint: bool = True) -> str:
        """One line: the ratio, each network now vs in the table, and a warning when it is off by more than 10%."""
        parts = ", ".join(f"{row['reference']} {row['now_ms']:.3f} vs {row['table_ms']:.3f} ms" for row in self.rows)
        verdict = (
            f"WARNING: the device runs {self.ratio:.2f}x its speed when the table was made (more than {WARN_ABOVE:.0%} off); "
            "predictions from this table are off by as much" + (" (--rescale applies the ratio)" if rescale_hint else "")
            if self.warn
            else "within tolerance"
        )
        return f"drift check: {self.how} now / in table = {self.ratio:.3f} ({parts}); {verdict}"


def drift_from_pairs(pairs: dict[str, tuple[float, float]], context: str, how: str = "reference networks") -> DriftCheck:
    """``pairs``: reference -> (table ms, now ms)."""
    rows = tuple(
        {"reference": name, "table_ms": then, "now_ms": now, "ratio": now / then} for name, (then, now) in sorted(pairs.items())
    )
    ratio = math.exp(sum(math.log(row["ratio"]) for row in rows) / len(rows))
    return DriftCheck(rows, ratio, context, how)


def check_drift(table: LatencyTable, backend: Backend, cache: Path, context: str, workers: int = 1) -> DriftCheck | None:
    """Time the table's reference networks on ``backend`` now; ``None`` when the table has none.

    Tables made before reference networks existed (the shipped ones) have none: say so and carry on.
    """
    subjects = _reference_subjects(table, backend, cache, workers)
    if subjects is None:
        return None
    check, _ = _time_subjects(subjects, {}, backend, context)
    return check


@dataclass(frozen=True)
class _Subjects:
    """What a drift check times: each network's file and its time in the table, and how they were chosen."""

    files: dict[str, tuple[float, Path]]
    how: str


def _reference_subjects(table: LatencyTable, backend: Backend, cache: Path, workers: int) -> _Subjects | None:
    names = [name for name in table.references if name in REFERENCES]
    if not names:
        return None
    jobs = {name: reference_job(name, backend.model_format, cache) for name in names}
    table_ms = {name: float(table.references[name]["median_ms"]) for name in names}
    return _converted(jobs, table_ms, "reference networks", backend, workers)


def _network_subjects(
    table: LatencyTable, backend: Backend, cache: Path, space: Any, count: int, workers: int
) -> _Subjects | None:
    rows = _spread(table.networks, count)
    if space is None or not rows:
        return None
    jobs = {row["arch"]: network_job(space, space.parse(row["arch"]), backend.model_format, cache) for row in rows}
    table_ms = {row["arch"]: float(row["median_ms"]) for row in rows}
    how = f"{len(rows)} of the table's whole networks (it has no reference networks)"
    return _converted(jobs, table_ms, how, backend, workers)


def _converted(jobs: dict[str, ConversionJob], table_ms: dict[str, float], how: str, backend: Backend, workers: int) -> _Subjects:
    """The drift networks converted for ``backend`` (which must run here), each with its time in the table."""
    backend.require_available()
    convert_all(list(jobs.values()), workers)
    return _Subjects({name: (table_ms[name], job.path) for name, job in jobs.items()}, how)


def measure_interleaved(backend: Backend, files: dict[str, Path]) -> dict[str, Measurement]:
    """Time ``files`` in the same rounds (one session's share of each per round, samples pooled per file).

    A drift ratio is only as good as the agreement between when it was timed and when the model it
    corrects was: timed one after the other on a shared machine, a busy half-minute landed on the
    model alone and a correct ratio read as a predictor 0.44x off. Timed in the same rounds, a slow
    stretch touches every file alike.
    """
    if not files:
        return {}
    backend.settle(next(iter(files.values())))
    rounds = backend.spec.sessions if backend.times_in_rounds else 1
    pooled: dict[str, list[Measurement]] = {name: [] for name in files}
    for _ in range(rounds):
        for name, path in files.items():
            pooled[name].append(backend.measure_session(path) if rounds > 1 else backend.measure(path))
    return {name: _pool(parts) for name, parts in pooled.items()}


def _pool(parts: list[Measurement]) -> Measurement:
    samples = tuple(sample for part in parts for sample in part.samples_ms)
    return replace(parts[0], samples_ms=samples)


def _time_subjects(
    subjects: _Subjects, also: dict[str, Path], backend: Backend, context: str
) -> tuple[DriftCheck, dict[str, Measurement]]:
    """The drift check from ``subjects`` and measurements of the ``also`` files, all timed in the same rounds."""
    clash = set(also) & set(subjects.files)
    if clash:
        raise ValueError(f"names timed twice: {sorted(clash)}")
    files = {name: path for name, (_, path) in subjects.files.items()} | also
    measured = measure_interleaved(backend, files)
    pairs = {name: (then, measured[name].median_ms) for name, (then, _) in subjects.files.items()}
    return drift_from_pairs(pairs, context, subjects.how), {name: measured[name] for name in also}


def contention_warning(check: DriftCheck, model_ms: float, others: int | None, cores: int) -> str | None:
    """Why the ratio may not carry to a model timed on a busy machine, or ``None`` when it should.

    With as many other runnable threads as cores, a run longer than the scheduler's time slice shares its core while
    the drift networks' short runs mostly finish inside one slice: here (2 cores, 2 training processes beside) the
    drift networks and a network of their size kept their idle-machine ratio (0.99 of the prediction), while
    torchvision's mobilenet_v2 at 224 px ran 10.9 ms against 6.9 predicted today. One process beside changed neither.
    """
    longest = max(row["now_ms"] for row in check.rows)
    if others is None or others < cores or model_ms < LONG_RUN * longest:
        return None
    return (
        f"{others} other runnable threads on {cores} cores: this model's {model_ms:.2f} ms runs, {model_ms / longest:.0f}x the "
        f"drift networks' longest ({longest:.3f} ms), share a core with them where the short runs mostly do not, so the "
        "drift ratio may not carry to it; measure it on an idle machine"
    )


def record_drift(table_path: Path, table: LatencyTable, check: DriftCheck) -> LatencyTable:
    """Append ``check`` to the table's drift record and save it (atomically)."""
    updated = replace(table, drift=[*table.drift, check.to_json()])
    updated.save(Path(table_path))
    return updated


def latest_ratio(table: LatencyTable) -> float | None:
    """The most recent recorded drift ratio (what ``--rescale`` applies without measuring)."""
    return float(table.drift[-1]["ratio"]) if table.drift else None


def find_device_table(spec: DeviceSpec, fingerprint: dict[str, Any] | None) -> Path | None:
    """The path of device ``spec``'s table in any space (:func:`~hwnas.latency_tables.table.matching_table`'s order)."""
    found = matching_table(spec.name, fingerprint)
    return found.path if found is not None else None


def device_table(spec: DeviceSpec) -> Path:
    """The device's table in any space: a profile of it here (``runs/profiles/<device>-*``) or a shipped table that fits
    this CPU; one line saying how to make one when there is none."""
    from hwnas.devices.backends import make_backend

    backend = make_backend(spec)
    path = find_device_table(spec, backend.fingerprint() if backend.unavailable_reason() is None else None)
    if path is None:
        raise UserError(
            f"no latency table of device {spec.name!r} for this machine (looked in {PROFILES}/{spec.name}-*/ and the shipped "
            f"tables); profile it (hwnas profile {spec.source or spec.name} --layers 300) or pass --table"
        )
    return path


def session_drift(
    table: LatencyTable,
    backend: Backend,
    cache: Path,
    context: str,
    *,
    space: Any = None,
    networks: int = 3,
    workers: int = 1,
) -> DriftCheck | None:
    """What a measuring session does first, kept cheap: re-time the table's reference networks (:func:`check_drift`).

    A table made before reference networks existed (the shipped ones) has up to ``networks`` of its own
    whole networks re-timed instead (``space``, the table's search space, builds them; the fastest,
    the median and the slowest first, so a few cover its range). ``None`` when neither is possible.
    """
    check, _ = drift_with(table, backend, cache, context, {}, space=space, networks=networks, workers=workers)
    return check


def drift_with(
    table: LatencyTable,
    backend: Backend,
    cache: Path,
    context: str,
    also: dict[str, Path],
    *,
    space: Any = None,
    networks: int = 3,
    workers: int = 1,
) -> tuple[DriftCheck | None, dict[str, Measurement]]:
    """:func:`session_drift` with the ``also`` model files timed in the same rounds as its networks, so the ratio and
    the measurements it is applied to saw the same machine (:func:`measure_interleaved`). Without a drift check
    (neither references nor a space), the ``also`` files are timed alone."""
    subjects = _reference_subjects(table, backend, cache, workers) or _network_subjects(
        table, backend, cache, space, networks, workers
    )
    if subjects is None:
        return None, measure_interleaved(backend, also)
    return _time_subjects(subjects, also, backend, context)


def drift_first(
    table_path: Path, backend: Backend, cache: Path, context: str, *, space: Any = None, networks: int = 0
) -> DriftCheck | None:
    """What a measuring session does first: :func:`session_drift`, the ratio recorded in the table (not in shipped tables).

    ``networks`` > 0 with ``space``: a table without reference networks has that many of its whole networks re-timed.
    """
    check, _ = drift_first_with(table_path, backend, cache, context, {}, space=space, networks=networks)
    return check


def drift_first_with(
    table_path: Path, backend: Backend, cache: Path, context: str, also: dict[str, Path], *, space: Any = None, networks: int = 0
) -> tuple[DriftCheck | None, dict[str, Measurement]]:
    """:func:`drift_first` with the ``also`` files timed in its rounds (:func:`drift_with`)."""
    table = LatencyTable.load(table_path)
    check, measured = drift_with(table, backend, cache, context, also, space=space, networks=networks)
    if check is not None and SHIPPED.resolve() not in Path(table_path).resolve().parents:
        record_drift(table_path, table, check)
    return check, measured


def _spread(networks: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """Up to ``count`` networks across the table's latency range: the median, then the fastest and the slowest, ..."""
    ordered = sorted(networks, key=lambda row: float(row["median_ms"]))
    if count <= 0 or not ordered:
        return []
    last = len(ordered) - 1
    order = [last // 2, 0, last] + [round(last * q) for q in (0.25, 0.75, 0.1, 0.9)]
    picked = list(dict.fromkeys(order))[:count]
    return [ordered[index] for index in picked]


def drift_before_measuring(spec: DeviceSpec, backend: Backend, cache: Path, context: str) -> DriftCheck | None:
    """:func:`drift_first` on the device's own table: its reference networks, or (a shipped table has none) a few of its
    whole networks when its space is a preset here."""
    found = matching_table(spec.name, backend.fingerprint())
    if found is None:
        return None
    return drift_first(found.path, backend, cache, context, space=table_space(found.table), networks=DRIFT_NETWORKS)


def table_space(table: LatencyTable) -> Any:
    """The preset search space ``table`` was profiled for, so its whole networks can be rebuilt; ``None`` for a table
    of a space file (only its reference networks can tell the drift)."""
    from hwnas.presets import get_space

    try:
        space = get_space(table.space)
    except UserError:
        return None
    return space if table.space_hash in (None, space.hash) else None
