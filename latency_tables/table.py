"""LatencyTable: a versioned, fingerprinted latency lookup table, saved as JSON.

JSON because a table is something people diff, review and share; written atomically (temp file
and rename) so a killed run never leaves half a table. A table is only valid for the device
fingerprint and search space it was measured for: ``check`` refuses anything else and says
what differs, unless the caller explicitly overrides. :func:`matching_table` is the one place that
decides which table a device uses (the user's, a profile made here, or a shipped one).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwnas.errors import UserError
from hwnas.fileio import atomic_write_json, read_json
from hwnas.formats import FORMATS
from hwnas.latency_tables.compat import fingerprint_differences, unchecked_fields
from hwnas.opkey import OpKey
from hwnas.paths import profiles_dir

TABLE_FORMAT = FORMATS["latency-table"]
PROFILES = profiles_dir()  # where ``hwnas profile`` writes ``<device>-<space>/table.json`` by default
SHIPPED = Path(__file__).with_name("data")  # tables measured and shipped with hwnas: ``<space>-<device>[-<cpu>].json``
GIVEN = "given (--table)"
PROFILED = "profiled earlier (hwnas profile)"
SHIPPED_ORIGIN = "shipped with hwnas"


@dataclass(frozen=True)
class LatencyEntry:
    op: OpKey
    median_ms: float
    p10_ms: float | None = None
    p90_ms: float | None = None
    cv: float | None = None
    n: int | None = None

    def __post_init__(self) -> None:
        if not positive_ms(self.median_ms):
            raise UserError(f"latency of {self.op.describe()} must be a positive number of ms, got {self.median_ms!r}")

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.op.describe(),
            "op": self.op.to_json(),
            "median_ms": self.median_ms,
            "p10_ms": self.p10_ms,
            "p90_ms": self.p90_ms,
            "cv": self.cv,
            "n": self.n,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LatencyEntry:
        median = data["median_ms"]
        return cls(
            OpKey.from_json(data["op"]),
            float(median) if positive_ms(median) else median,  # anything else: refused in one line by __post_init__
            data.get("p10_ms"),
            data.get("p90_ms"),
            data.get("cv"),
            data.get("n"),
        )


@dataclass(frozen=True)
class LatencyTable:
    """Per-layer latencies of one search space on one device (plus whole-network measurements)."""

    device: dict[str, Any]
    fingerprint: dict[str, Any]
    space: str
    space_hash: str | None
    entries: dict[OpKey, LatencyEntry]
    networks: list[dict[str, Any]] = field(default_factory=list)
    kind: str = "measured"  # or "imported"
    source: str = ""
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    stats: dict[str, Any] = field(default_factory=dict)
    references: dict[str, dict[str, Any]] = field(default_factory=dict)  # reference network -> its summary (drift check)
    drift: list[dict[str, Any]] = field(default_factory=list)  # later sessions' re-timings of the references

    def lookup(self, key: OpKey) -> float:
        try:
            return self.entries[key].median_ms
        except KeyError:
            raise UserError(
                f"latency table ({self.space} on {self.device.get('name', '?')}) has no entry for {key.describe()}"
            ) from None

    def predict(self, keys: list[OpKey] | tuple[OpKey, ...]) -> float:
        """The classic LUT estimate: the sum of the layers' medians."""
        return sum(self.lookup(key) for key in keys)

    def check(self, fingerprint: dict[str, Any] | None = None, space_hash: str | None = None, override: bool = False) -> None:
        """Raise UserError saying what differs when the table is not for this device or space."""
        found = []
        if fingerprint is not None:
            found += fingerprint_differences("fingerprint", self.fingerprint, fingerprint)
        if space_hash is not None and self.space_hash != space_hash:
            found.append(f"space hash: {self.space_hash} vs {space_hash}")
        if found and not override:
            raise UserError(
                f"latency table is for another device or space (table vs wanted: {'; '.join(found[:4])}); "
                "pass --allow-mismatch to use it anyway"
            )

    def to_json(self) -> dict[str, Any]:
        return {
            TABLE_FORMAT.key: TABLE_FORMAT.version,
            "kind": self.kind,
            "source": self.source,
            "created": self.created,
            "device": self.device,
            "fingerprint": self.fingerprint,
            "space": self.space,
            "space_hash": self.space_hash,
            "stats": self.stats,
            "entries": [entry.to_json() for entry in sorted(self.entries.values(), key=lambda e: e.op)],
            "networks": self.networks,
            **({"references": self.references} if self.references else {}),
            **({"drift": self.drift} if self.drift else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LatencyTable:
        if not isinstance(data, dict):
            raise UserError(f"a latency table is a JSON object as hwnas profile writes, not {type(data).__name__}")
        TABLE_FORMAT.check(data, "")
        entries = [LatencyEntry.from_json(entry) for entry in data["entries"]]
        networks = data.get("networks", [])
        if not isinstance(networks, list) or not all(isinstance(network, dict) for network in networks):
            raise UserError("a latency table's networks must be a list of objects")
        for network in networks:  # whole networks calibrate the predictor: a bad one would bend every prediction
            if not positive_ms(network.get("median_ms")):
                name = str(network.get("arch", "?"))[:80]
                raise UserError(f"network {name!r} must have a positive median_ms, got {network.get('median_ms')!r}")
        return cls(
            data["device"],
            data["fingerprint"],
            data["space"],
            data.get("space_hash"),
            {entry.op: entry for entry in entries},
            networks,
            data.get("kind", "measured"),
            data.get("source", ""),
            data.get("created", ""),
            data.get("stats", {}),
            data.get("references", {}),
            data.get("drift", []),
        )

    def save(self, path: Path) -> Path:
        return atomic_write_json(Path(path), self.to_json())

    @classmethod
    def load(cls, path: Path) -> LatencyTable:
        data = read_json(Path(path), "latency table")
        if isinstance(data, dict):
            TABLE_FORMAT.check(data, path)
        try:
            return cls.from_json(data)
        except UserError as error:
            raise UserError(f"latency table {path}: {error}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise UserError(f"latency table {path} is malformed ({error})") from None


def positive_ms(value: object) -> bool:
    """A latency a table may hold: a finite number above zero (never NaN, infinite, zero or negative)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        number = float(value)  # an integer of 400 digits is valid JSON, and no float
    except OverflowError:
        return False
    return math.isfinite(number) and number > 0


def diff_tables(first: LatencyTable, second: LatencyTable) -> dict[str, Any]:
    """Per-layer relative differences of two tables over their common layers."""
    common = sorted(set(first.entries) & set(second.entries))
    rows = [
        {
            "key": key.describe(),
            "first_ms": first.entries[key].median_ms,
            "second_ms": second.entries[key].median_ms,
            "relative": (second.entries[key].median_ms - first.entries[key].median_ms) / first.entries[key].median_ms,
        }
        for key in common
    ]
    relative = sorted(abs(row["relative"]) for row in rows)
    return {
        "common": len(common),
        "only_first": len(set(first.entries) - set(second.entries)),
        "only_second": len(set(second.entries) - set(first.entries)),
        "median_abs_relative": statistics.median(relative) if relative else None,
        "max_abs_relative": relative[-1] if relative else None,
        "fingerprint_differences": fingerprint_differences("fingerprint", first.fingerprint, second.fingerprint),
        "rows": rows,
    }


@dataclass(frozen=True)
class TableMatch:
    """The table a device uses: where it is, the table, and where it came from (``origin``, said to the user)."""

    path: Path
    table: LatencyTable
    origin: str
    unchecked: tuple[str, ...] = ()  # extended CPU fields the table lacks: matched by CPU name only


def matching_table(
    device: str,
    fingerprint: dict[str, Any] | None,
    space: str | None = None,
    space_hash: str | None = None,
    *,
    explicit: Path | None = None,
    stores: Sequence[tuple[Path, str]] = ((PROFILES, PROFILED),),
    shipped: Path | None = SHIPPED,
    allow_mismatch: bool = False,
) -> TableMatch | None:
    """The latency table of device ``device`` (a spec name) for this machine, or ``None``; one search order for all.

    1. ``explicit``, the user's own table (``--table``): always used when given. A table of another
       device or space is refused in one line naming what differs (``UserError``) unless ``allow_mismatch``.
    2. The device's profile stores, in the order given (``(folder, origin)`` pairs; by default
       ``runs/profiles``, where ``hwnas profile`` writes): ``<folder>/<device>-<space>/table.json``
       (``<device>-*/`` when no ``space`` is given, by name).
    3. The shipped tables in ``latency_tables/data/`` (``<space>-*.json``, or all when no ``space``), by name.

    From 2 and 3 the first table is taken whose device name is ``device``, whose fingerprint matches
    ``fingerprint`` (extended CPU fields compared only when both sides have them) and whose space hash is
    ``space_hash``; ``fingerprint=None`` (the device is not here) takes the first of that device name,
    ``space_hash=None`` any space. A table that cannot be read is passed over, never half-used.

    A table that records this CPU's generation (family, model, caches, flags) is preferred over one that matches by
    CPU name only (made before those fields existed): two EPYCs of different generations share a name and ran 2x
    apart. A name-only match is still returned when nothing better exists, with ``unchecked`` naming what it could not
    compare and ``origin`` saying so, so the user reads that no table of this exact CPU exists.
    """
    if explicit is not None:
        table = LatencyTable.load(explicit)
        table.check(fingerprint, space_hash, override=allow_mismatch)
        return TableMatch(Path(explicit), table, GIVEN)
    pattern = f"{device}-{space}" if space else f"{device}-*"
    name_only: TableMatch | None = None
    candidates = [(path, origin) for folder, origin in stores for path in sorted(Path(folder).glob(f"{pattern}/table.json"))]
    if shipped is not None:
        candidates += [(path, SHIPPED_ORIGIN) for path in sorted(Path(shipped).glob(f"{space}-*.json" if space else "*.json"))]
    for path, origin in candidates:
        try:
            table = LatencyTable.load(path)
        except UserError:
            continue
        if table.device.get("name") != device:
            continue
        if space_hash is not None and table.space_hash != space_hash:
            continue
        if fingerprint is not None and fingerprint_differences("fingerprint", table.fingerprint, fingerprint):
            continue
        unchecked = tuple(unchecked_fields(table.fingerprint, fingerprint)) if fingerprint is not None else ()
        if not unchecked:
            return TableMatch(path, table, origin)
        name_only = name_only or TableMatch(path, table, _name_only_origin(origin, fingerprint or {}), unchecked)
    return name_only


def _name_only_origin(origin: str, fingerprint: dict[str, Any]) -> str:
    """``origin`` plus why the user should not trust the table blindly: it may be another generation of this CPU."""
    cpu = ", ".join(f"{key.removeprefix('cpu_')} {fingerprint[key]}" for key in ("cpu_family", "cpu_model") if key in fingerprint)
    return (
        f"{origin}; it matches this CPU by name only ({fingerprint.get('device', '?')}): no table of this exact CPU "
        f"({cpu or 'generation unknown'}) exists, so the drift check says how far off it runs; hwnas profile makes one"
    )
