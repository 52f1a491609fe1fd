"""A table for a space made for other data, from its original's table and only the layers that differ.

``SearchSpace.for_data`` gives a space its stem and classifier for a dataset's channels and classes (``default`` for
RGB images of 4 classes is ``default-3ch-4cls``). Every other layer is the original's, so profiling that space again
(8.5 minutes for the default space on TFLite, mostly conversion) would re-measure hundreds of layers the device's
table already holds. :func:`derive_table` measures only the layers the original's table lacks (the stem with the new
channels, the classifier with the new classes: a handful) and writes a table of the new space made of both. The new
layers are put in the original's time frame first: a drift check (the original's reference networks, or three of its
whole networks built in the new space) gives today's speed against the table's, and their times are divided by it. The
original's whole networks carry over with their times moved by the difference of their own stem and classifier (the
rest of a network is the same layers), so the calibrated predictor keeps what it learned; they are marked ``derived``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from hwnas.arch import Arch
from hwnas.devices.backends import Backend
from hwnas.devices.spec import DeviceSpec
from hwnas.latency_tables.drift import DRIFT_NETWORKS, check_drift, session_drift
from hwnas.latency_tables.profiler import Profiler, ProfileSettings
from hwnas.latency_tables.table import LatencyEntry, LatencyTable, TableMatch
from hwnas.space import SearchSpace

MISSING_LAYERS_FOLDER = "missing-layers"  # the profile store of the layers measured for the derived table


def missing_layers(space: SearchSpace, table: LatencyTable) -> list[Any]:
    """The layers ``space`` can produce that ``table`` holds no time for."""
    return [key for key in space.enumerate_op_keys() if key not in table.entries]


def derive_table(
    spec: DeviceSpec,
    backend: Backend,
    space: SearchSpace,
    base_space: SearchSpace,
    base: TableMatch,
    out: Path,
    cache: Path,
    *,
    progress: bool = True,
) -> Path:
    """Measure the layers of ``space`` that ``base`` (a table of ``base_space`` on this device) lacks, and write
    ``out/table.json``: ``space``'s table made of both. Returns its path."""
    missing = missing_layers(space, base.table)
    profiler = Profiler(
        spec, space, out / MISSING_LAYERS_FOLDER, cache, ProfileSettings(networks=0), backend=backend, layers=missing
    )
    measured = profiler.run(progress=progress).table
    wanted = set(space.enumerate_op_keys())
    kept = {key: entry for key, entry in base.table.entries.items() if key in wanted}
    ratio = _todays_ratio(base, base_space, space, backend, cache, kept, measured.entries)
    entries = kept | {key: _in_table_time(entry, ratio) for key, entry in measured.entries.items()}
    derived = replace(
        measured,
        entries=entries,
        networks=[_moved(row, base_space, space, base.table, entries) for row in base.table.networks],
        source=f"derived from {base.path} ({base.origin}); {len(missing)} layers measured now",
        stats=measured.stats
        | {"derived_from": str(base.path), "layers_measured_now": len(missing), "measured_now_divided_by": ratio},
        references=base.table.references,
        drift=[],
    )
    return derived.save(out / "table.json")


def derive_from(
    spec: DeviceSpec,
    backend: Backend,
    space: SearchSpace,
    made_from: SearchSpace,
    base: TableMatch | None,
    out: Path,
    cache: Path,
    *,
    log: Callable[[str], None],
    progress: bool = False,
) -> TableMatch | None:
    """What a search or a run does without a table of ``space`` (``made_from`` made for its data's images): ``base``,
    a table of ``made_from`` on this device, completed by :func:`derive_table` into ``out``, said in one line; ``None``
    without ``base``."""
    if base is None:
        return None
    log(
        f"no latency table of {space.name!r} on {spec.name}: {made_from.name!r}'s ({base.path.name}) with the "
        f"{len(missing_layers(space, base.table))} layers it lacks, measured now into {out}/table.json"
    )
    path = derive_table(spec, backend, space, made_from, base, out, cache, progress=progress)
    return TableMatch(path, LatencyTable.load(path), f"derived from a table {base.origin}")


def _todays_ratio(
    base: TableMatch, base_space: SearchSpace, space: SearchSpace, backend: Backend, cache: Path, kept: dict, now: dict
) -> float:
    """Today's speed over the original table's: its reference networks re-timed when it has them; else (the shipped
    tables) three of its whole networks built in ``space`` and timed now, the new layers' share (``now``, measured
    today) taken out of both sides, so the search's own drift check then finds those files converted."""
    if base.table.references:
        check = check_drift(base.table, backend, cache, "derived table")
        return check.ratio if check is not None else 1.0
    entries = kept | now  # the new layers at today's speed: the networks' table times below hold them unscaled
    moved = [_moved(row, base_space, space, base.table, entries) for row in base.table.networks]
    provisional = replace(base.table, space=space.name, space_hash=space.hash, entries=entries, networks=moved)
    check = session_drift(provisional, backend, cache, "derived table", space=space, networks=DRIFT_NETWORKS)
    if check is None:
        return 1.0
    ratios = []
    for row in check.rows:  # now = ratio x (table time without the new layers) + the new layers now
        new_now = sum(now[key].median_ms for key in space.op_keys(space.parse(row["reference"])) if key in now)
        if row["table_ms"] - new_now > 0 and row["now_ms"] - new_now > 0:
            ratios.append((row["now_ms"] - new_now) / (row["table_ms"] - new_now))
    return math.exp(sum(map(math.log, ratios)) / len(ratios)) if ratios else check.ratio


def _in_table_time(entry: LatencyEntry, ratio: float) -> LatencyEntry:
    """A layer measured today in the original table's time (today's speed / the table's = ``ratio``)."""
    scaled = {name: getattr(entry, name) / ratio for name in ("p10_ms", "p90_ms") if getattr(entry, name) is not None}
    return replace(entry, median_ms=entry.median_ms / ratio, **scaled)


def _moved(row: dict[str, Any], base_space: SearchSpace, space: SearchSpace, base: LatencyTable, entries: dict) -> dict:
    """A whole network of the original's table as the same architecture in ``space``: its time moved by what its own
    layers cost in ``space`` against the original (only the stem and classifier differ)."""
    old = base_space.parse(row["arch"])
    new = space.validate(Arch(space.name, old.resolution, old.stages))
    before = sum(base.entries[key].median_ms for key in base_space.op_keys(old))
    after = sum(entries[key].median_ms for key in space.op_keys(new))
    return row | {"arch": new.format(), "median_ms": max(row["median_ms"] + after - before, 1e-6), "derived": True}
