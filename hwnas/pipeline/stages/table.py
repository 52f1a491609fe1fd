"""Stage ``table``: each device's latency table (reused after its drift check, or profiled now), and the budget.

A table of this device and space measured on this machine is found by
:func:`~hwnas.latency_tables.table.matching_table`: the run's own ``tables/`` first (a profile this run
made), then ``runs/profiles`` (``hwnas profile``), then the shipped tables. None found: the device is
profiled into ``tables/<device>-<space>/``. Each table's reference networks are re-timed now (the drift
check); the budget, unless given, is the first table's median whole network in today's time.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hwnas.errors import UserError
from hwnas.pipeline.context import RunContext, cores
from hwnas.pipeline.stage import Stage, StageResult
from hwnas.pipeline.stages.device import DeviceResult
from hwnas.space import SearchSpace
from hwnas.typedjson import checked

if TYPE_CHECKING:
    from hwnas.latency_tables.table import TableMatch

RUN_PROFILED = "profiled by this run"


@dataclass(frozen=True)
class TableInfo:
    """One device's table: ``path`` is the run's copy, ``source`` where it came from; ``drift`` today's check of it."""

    device: str
    path: str
    source: str
    origin: str
    created: str | None
    layers: int
    networks: int
    median_network_ms: float | None = field(metadata=checked("positive"))
    drift: dict[str, Any]  # DriftCheck.to_json() and its message; {"ratio": None, ...} when no check was possible
    profile: dict[str, Any] | None = None  # what profiling cost, when this run profiled the device

    @property
    def drift_ratio(self) -> float | None:
        """Today's time over the table's for the re-timed networks (``None``: not checked)."""
        ratio = self.drift.get("ratio")
        return float(ratio) if isinstance(ratio, int | float) else None

    @property
    def drift_warn(self) -> bool:
        return bool(self.drift.get("warn"))


@dataclass(frozen=True)
class TableResult(StageResult):
    """The tables, and the budget in today's time: ``table_budget_ms`` is the same budget in the first table's time.

    ``scale`` is the first device's drift ratio when it is off by more than 10% (else 1): what converts table
    time to today's.
    """

    STAGE = "table"

    tables: list[TableInfo]
    budget_ms: float = field(metadata=checked("positive"))
    budget_source: str
    scale: float = field(default=1.0, metadata=checked("positive"))
    table_budget_ms: float | None = field(default=None, metadata=checked("positive"))

    def __post_init__(self) -> None:
        if self.table_budget_ms is None:  # records written before the field existed: the budget was in table time
            object.__setattr__(self, "table_budget_ms", self.budget_ms / self.scale)

    @property
    def primary(self) -> TableInfo:
        return self.tables[0]

    @property
    def search_budget_ms(self) -> float:
        """The budget in table time: what a search predicting from the table aims under."""
        return self.budget_ms / self.scale if self.table_budget_ms is None else self.table_budget_ms

    def for_device(self, device: str) -> TableInfo:
        return next(item for item in self.tables if item.device == device)


def table_path(context: RunContext, item: TableInfo) -> Path:
    """The run's copy of ``item``'s table, inside the run folder."""
    return context.inside(item.path, f"stages/table.json: the table of {item.device}")


def run(context: RunContext) -> TableResult:
    tables = [_device_table(context, device.device_spec()) for device in context.result(DeviceResult).devices]
    primary = tables[0]
    scale = primary.drift_ratio if primary.drift_warn and primary.drift_ratio else 1.0
    budget, source = _budget(context, primary, scale)
    context.log(f"latency budget: {budget:.4f} ms on {primary.device} ({source})")
    if scale != 1.0:
        context.log(
            f"the device runs {scale:.2f}x its table's speed today: the search, which predicts from the table, "
            f"aims under {budget / scale:.4f} ms of table time, and pruning uses the table times {scale:.3f}"
        )
    return TableResult(tables=tables, budget_ms=budget, budget_source=source, scale=scale, table_budget_ms=budget / scale)


def _budget(context: RunContext, primary: TableInfo, scale: float) -> tuple[float, str]:
    """The budget in today's time: given, or the first table's median whole network times the drift scale."""
    if context.config.budget_ms is not None:
        return context.config.budget_ms, "given (--budget-ms)"
    if primary.median_network_ms is None:
        raise UserError(f"the table of {primary.device} has no measured whole networks; give --budget-ms")
    source = f"the median of the {primary.networks} whole networks in {primary.device}'s table"
    source += f", x{scale:.3f} drift" if scale != 1.0 else ""
    return primary.median_network_ms * scale, source


def _device_table(context: RunContext, spec: Any) -> TableInfo:
    from hwnas.devices import make_backend
    from hwnas.latency_tables.table import LatencyTable, TableMatch

    run_tables = context.folder / "tables"
    backend = make_backend(spec)
    found = find_table(spec, backend.fingerprint(), context.space, run_tables)
    if found is None and context.made_from is not None:
        found = _derived(context, spec, backend, run_tables, context.made_from)
    profile_report = None
    if found is None:
        context.log(f"no latency table of {context.space.name!r} for {spec.name} on this machine: profiling it now")
        folder = run_tables / f"{spec.name}-{context.space.name}"
        profile_report = _profile(context, spec, folder)
        found = TableMatch(folder / "table.json", LatencyTable.load(folder / "table.json"), RUN_PROFILED)
    path, origin, table = found.path, found.origin, found.table
    copy = run_tables / f"{spec.name}-{context.space.name}.json"
    if path.resolve() != copy.resolve():
        table.save(copy)
    context.log(f"latency table of {spec.name}: {path} ({origin}; {len(table.entries)} layers, {len(table.networks)} networks)")
    drift = _drift(context, table, backend)
    context.log(drift["message"])
    medians = [float(n["median_ms"]) for n in table.networks]
    return TableInfo(
        device=spec.name,
        path=context.stored(copy),
        source=str(path),
        origin=origin,
        created=table.created,
        layers=len(table.entries),
        networks=len(table.networks),
        median_network_ms=statistics.median(medians) if medians else None,
        drift=drift,
        profile=profile_report,
    )


def find_table(spec: Any, fingerprint: dict[str, Any], space: SearchSpace, run_tables: Path) -> TableMatch | None:
    """A table of this device and space measured on this machine: the run's own, then ``hwnas profile``'s, then shipped."""
    from hwnas.latency_tables.table import PROFILED, matching_table
    from hwnas.paths import profiles_dir

    stores = ((run_tables, RUN_PROFILED), (profiles_dir(), PROFILED))
    return matching_table(spec.name, fingerprint, space.name, space.hash, stores=stores)


def _derived(context: RunContext, spec: Any, backend: Any, run_tables: Path, made_from: SearchSpace) -> TableMatch | None:
    """The run's space is ``made_from`` made for the data's images: a table of ``made_from`` on this device, completed
    with the layers it lacks measured now (:func:`~hwnas.latency_tables.derive.derive_from`), instead of a profile."""
    from hwnas.latency_tables.derive import derive_from
    from hwnas.paths import model_cache

    base = find_table(spec, backend.fingerprint(), made_from, run_tables)
    out = run_tables / f"{spec.name}-{context.space.name}"
    return derive_from(
        spec, backend, context.space, made_from, base, out, model_cache(), log=context.log, progress=context.progress
    )


def _profile(context: RunContext, spec: Any, out: Path) -> dict[str, Any]:
    from hwnas.latency_tables.drift import DEFAULT_REFERENCES
    from hwnas.latency_tables.profiler import Profiler, ProfileSettings
    from hwnas.paths import model_cache

    settings = ProfileSettings(networks=20 if context.config.quick else 40, seed=context.config.seed, workers=cores())
    profiler = Profiler(spec, context.space, out, model_cache(), settings, references=DEFAULT_REFERENCES)
    report = profiler.run(progress=context.progress)
    return {
        "layers": report.ops,
        "networks": report.networks,
        "wall_s": report.wall_s,
        "convert_s": report.convert_s,
        "measure_s": report.measure_s,
        "conversion_workers": settings.workers,
    }


def _drift(context: RunContext, table: Any, backend: Any) -> dict[str, Any]:
    """Re-time the table's reference networks now; a table made before they existed has some of its networks re-timed."""
    from hwnas.latency_tables.drift import session_drift
    from hwnas.paths import model_cache

    check = session_drift(
        table, backend, model_cache(), "hwnas run", space=context.space, networks=context.config.drift_networks, workers=cores()
    )
    if check is None:
        return {"ratio": None, "message": "drift check: not possible (the table has no reference or whole networks)"}
    return check.to_json() | {"message": check.message(rescale_hint=False)}


STAGE = Stage("table", ("device",), TableResult, run)
