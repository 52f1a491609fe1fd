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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwnas.errors import UserError
from hwnas.fileio import atomic_write_json, read_json
from hwnas.formats import FORMATS
from hwnas.latency_tables.compat import differences, extended_apart, fingerprint_differences, without_extended
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
    # torchvision networks at sampled widths and resolutions ({"family", "width", "resolution", "median_ms", ...}):
    # what whole networks of each family add beyond their layers (hwnas.predictors.network_latency)
    zoo_networks: list[dict[str, Any]] = field(default_factory=list)

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
            **({"zoo_networks": self.zoo_networks} if self.zoo_networks else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LatencyTable:
        if not isinstance(data, dict):
            raise UserError(f"a latency table is a JSON object as hwnas profile writes, not {type(data).__name__}")
        TABLE_FORMAT.check(data, "")
        entries = [LatencyEntry.from_json(entry) for entry in data["entries"]]
        networks, zoo = data.get("networks", []), data.get("zoo_networks", [])
        _check_networks(networks, "networks", "arch")
        _check_networks(zoo, "zoo_networks", "family")
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
            zoo,
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


def _check_networks(networks: object, name: str, label: str) -> None:
    """Whole networks calibrate the predictor: a bad one would bend every prediction, so it is refused in one line."""
    if not isinstance(networks, list) or not all(isinstance(network, dict) for network in networks):
        raise UserError(f"a latency table's {name} must be a list of objects")
    for network in networks:
        if not positive_ms(network.get("median_ms")):
            shown = str(network.get(label, "?"))[:80]
            raise UserError(f"network {shown!r} must have a positive median_ms, got {network.get('median_ms')!r}")


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
    apart: tuple[str, ...] = ()  # extended CPU fields that differ or the table lacks: the nearest table, not this CPU's


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

    A table of this exact CPU (every extended field equal: family, model, stepping, caches, flags) is taken first. When
    there is none, the *nearest* table of the same device name, runtime and settings is returned, with ``apart`` naming
    the CPU fields that keep it from being exact and ``origin`` saying so (so the user reads that no table of this exact
    CPU exists, and the drift check measures how far off it runs): first one of the same CPU family and model (other
    flags or caches: another VM of the same generation), then one that does not record the generation (made before
    those fields existed), then one of another generation (two EPYCs of one name ran 2x apart).
    """
    if explicit is not None:
        table = LatencyTable.load(explicit)
        table.check(fingerprint, space_hash, override=allow_mismatch)
        return TableMatch(Path(explicit), table, GIVEN)
    nearest: list[tuple[tuple[int, int, int], TableMatch]] = []
    for path, origin, table in device_tables(device, space, stores, shipped):
        if space_hash is not None and table.space_hash != space_hash:
            continue
        if fingerprint is None:
            return TableMatch(path, table, origin)
        if not same_settings(table.fingerprint, fingerprint):
            continue
        apart = tuple(extended_apart(table.fingerprint, fingerprint))
        if not apart:
            return TableMatch(path, table, origin)
        rank = (_generations_apart(table.fingerprint, fingerprint), len(apart), len(nearest))
        nearest.append((rank, TableMatch(path, table, _nearest_origin(origin, table.fingerprint, fingerprint), apart)))
    return min(nearest, key=lambda ranked: ranked[0])[1] if nearest else None


def device_tables(
    device: str, space: str | None, stores: Sequence[tuple[Path, str]], shipped: Path | None
) -> Iterator[tuple[Path, str, LatencyTable]]:
    """Every readable table of device ``device`` with its origin, in search order: the profile stores
    (``<folder>/<device>-<space>/table.json``, any space when ``space`` is None), then the shipped tables. A table
    that cannot be read is passed over, never half-used."""
    pattern = f"{device}-{space}" if space else f"{device}-*"
    candidates = [(path, origin) for folder, origin in stores for path in sorted(Path(folder).glob(f"{pattern}/table.json"))]
    if shipped is not None:
        candidates += [(path, SHIPPED_ORIGIN) for path in sorted(Path(shipped).glob(f"{space}-*.json" if space else "*.json"))]
    for path, origin in candidates:
        try:
            table = LatencyTable.load(path)
        except UserError:
            continue
        if table.device.get("name") == device:
            yield path, origin, table


def same_settings(have: dict[str, Any], want: dict[str, Any]) -> bool:
    """Same device, runtime, version and settings; the extended CPU fields (family, model, caches, flags) aside."""
    return not fingerprint_differences("fingerprint", without_extended(have), without_extended(want))


def same_generation(have: dict[str, Any], want: dict[str, Any]) -> bool:
    """Same settings, and the same CPU family and model recorded on both sides (flags and caches may differ: another
    VM of one generation, whose speed the drift check judges)."""
    recorded = all(key in have and key in want for key in ("cpu_family", "cpu_model"))
    return same_settings(have, want) and recorded and _generations_apart(have, want) == 0


def _generations_apart(have: dict[str, Any], want: dict[str, Any]) -> int:
    """How many of CPU family and model both fingerprints record and disagree on (unrecorded: not counted)."""
    return sum(key in have and key in want and have[key] != want[key] for key in ("cpu_family", "cpu_model"))


def _nearest_origin(origin: str, have: dict[str, Any], here: dict[str, Any]) -> str:
    """``origin`` plus why the user should not trust the table blindly: it was made on another CPU of the same name."""
    cpu = ", ".join(f"{key.removeprefix('cpu_')} {here[key]}" for key in ("cpu_family", "cpu_model") if key in here)
    if "cpu_family" not in have:
        made_on = "a CPU of the same name whose generation the table does not record"
    else:
        apart = differences("fingerprint", _cpu_fields(have), _cpu_fields(here))
        made_on = "another CPU of the same name (" + "; ".join(line.removeprefix("fingerprint.") for line in apart) + ")"
    return (
        f"{origin}; no table of this exact CPU ({here.get('device', '?')}{', ' + cpu if cpu else ''}) exists: this is the "
        f"nearest, made on {made_on}; the drift check says how far off it runs, and hwnas profile makes one of this CPU"
    )


def _cpu_fields(fingerprint: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in fingerprint.items() if key.startswith("cpu_")}
