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
from hwnas.devices.spec import DeviceSpec
from hwnas.errors import UserError
from hwnas.latency_tables.compat import fingerprint_differences
from hwnas.latency_tables.convert import ConversionJob, convert_all, torchvision_job
from hwnas.latency_tables.table import LatencyTable

REFERENCES: dict[str, dict[str, Any]] = {
    "mobilenet_v2-w0.5-r96": {"name": "mobilenet_v2", "width": 0.5, "resolution": 96},
    "mobilenet_v3_small-r96": {"name": "mobilenet_v3_small", "width": None, "resolution": 96},
}
DEFAULT_REFERENCES = tuple(REFERENCES)
PROFILES = Path("runs") / "profiles"  # where ``hwnas profile`` writes a device's tables by default
SHIPPED = Path(__file__).with_name("data")
REFERENCE_PREFIX = "reference:"
DRIFT_PREFIX = "drift:"
WARN_ABOVE = 0.10


def reference_job(name: str, fmt: str, cache: Path) -> ConversionJob:
    spec = REFERENCES[name]
    return torchvision_job(spec["name"], spec["width"], spec["resolution"], fmt, cache)


@dataclass(frozen=True)
class DriftCheck:
    """Reference networks timed now against the table's figures; ``ratio`` is their geometric mean."""

    rows: tuple[dict[str, Any], ...]
    ratio: float
    context: str

    @property
    def warn(self) -> bool:
        return abs(self.ratio - 1.0) > WARN_ABOVE

    def to_json(self) -> dict[str, Any]:
        return {
            "ratio": self.ratio,
            "warn": self.warn,
            "context": self.context,
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "references": list(self.rows),
        }

    def message(self) -> str:
        parts = ", ".join(f"{row['reference']} {row['now_ms']:.3f} vs {row['table_ms']:.3f} ms" for row in self.rows)
        verdict = (
            f"WARNING: the device runs {self.ratio:.2f}x its speed when the table was made (more than {WARN_ABOVE:.0%} off); "
            "predictions from this table are off by as much (--rescale applies the ratio)"
            if self.warn
            else "within tolerance"
        )
        return f"drift check: reference networks now / in table = {self.ratio:.3f} ({parts}); {verdict}"


def drift_from_pairs(pairs: dict[str, tuple[float, float]], context: str) -> DriftCheck:
    """``pairs``: reference -> (table ms, now ms)."""
    rows = tuple(
        {"reference": name, "table_ms": then, "now_ms": now, "ratio": now / then} for name, (then, now) in sorted(pairs.items())
    )
    ratio = math.exp(sum(math.log(row["ratio"]) for row in rows) / len(rows))
    return DriftCheck(rows, ratio, context)


def check_drift(table: LatencyTable, backend: Backend, cache: Path, context: str, workers: int = 1) -> DriftCheck | None:
    """Time the table's reference networks on ``backend`` now; ``None`` when the table has none.

    Tables made before reference networks existed (the shipped ones) have none: say so and carry on.
    """
    names = [name for name in table.references if name in REFERENCES]
    if not names:
        return None
    backend.require_available()
    jobs = {name: reference_job(name, backend.model_format, cache) for name in names}
    convert_all(list(jobs.values()), workers)
    backend.settle(jobs[names[0]].path)
    pairs = {
        name: (float(table.references[name]["median_ms"]), backend.measure(job.path).median_ms) for name, job in jobs.items()
    }
    return drift_from_pairs(pairs, context)


def record_drift(table_path: Path, table: LatencyTable, check: DriftCheck) -> LatencyTable:
    """Append ``check`` to the table's drift record and save it (atomically)."""
    updated = replace(table, drift=[*table.drift, check.to_json()])
    updated.save(Path(table_path))
    return updated


def latest_ratio(table: LatencyTable) -> float | None:
    """The most recent recorded drift ratio (what ``--rescale`` applies without measuring)."""
    return float(table.drift[-1]["ratio"]) if table.drift else None


def find_device_table(spec: DeviceSpec, fingerprint: dict[str, Any] | None) -> Path | None:
    """A table of device ``spec``: a profile of it here (``runs/profiles/<device>-*``), else a shipped one.

    With ``fingerprint`` (the device is here), only a table whose fingerprint matches; without it,
    the first table of that device name.
    """
    candidates = sorted(PROFILES.glob(f"{spec.name}-*/table.json")) + sorted(SHIPPED.glob("*.json"))
    for path in candidates:
        try:
            table = LatencyTable.load(path)
        except UserError:
            continue
        if table.device.get("name") != spec.name:
            continue
        if fingerprint is None or not fingerprint_differences("fingerprint", table.fingerprint, fingerprint):
            return path
    return None


def drift_first(table_path: Path, backend: Backend, cache: Path, context: str) -> DriftCheck | None:
    """What a measuring session does first: re-time the table's references, record the ratio (not in shipped tables)."""
    table = LatencyTable.load(table_path)
    check = check_drift(table, backend, cache, context)
    if check is not None and SHIPPED.resolve() not in Path(table_path).resolve().parents:
        record_drift(table_path, table, check)
    return check


def drift_before_measuring(spec: DeviceSpec, backend: Backend, cache: Path, context: str) -> DriftCheck | None:
    """:func:`drift_first` on the device's own table, when it has one with reference networks."""
    path = find_device_table(spec, backend.fingerprint())
    return drift_first(path, backend, cache, context) if path is not None else None
