"""Layers this CPU has been timed on before, lent to a new profile instead of measured again.

Any table of the same device and CPU generation (shipped or profiled, of any space) may already hold layers a new
profile needs: the shared blocks of another space, or the sampled layers of an earlier ``--layers`` profile. Converting
and timing them again costs 1.2-1.6 s a layer with TFLite. A table lends its layers only when the drift check says the
machine still runs at that table's speed: the new profile times the reference networks anyway, and a table whose
reference networks ran within :data:`~hwnas.latency_tables.drift.WARN_ABOVE` of today's lends its layers as they are.
A table without reference networks, or one further off, lends none; its layers are measured now in the same store.
Whole networks are never lent: they calibrate the predictor for this profile's day.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hwnas.latency_tables.drift import DriftCheck, drift_from_pairs
from hwnas.latency_tables.table import SHIPPED, LatencyEntry, LatencyTable, device_tables, same_generation
from hwnas.opkey import OpKey


@dataclass(frozen=True)
class Lender:
    """An earlier table of this device and CPU generation, and the wanted layers it was chosen to lend."""

    path: Path
    table: LatencyTable
    keys: tuple[OpKey, ...]

    def drift_today(self, today: dict[str, dict[str, Any]]) -> DriftCheck | None:
        """The drift check of this table against today's reference networks (None: they share none)."""
        pairs = {
            name: (self.table.references[name]["median_ms"], today[name]["median_ms"])
            for name in set(today) & set(self.table.references)
        }
        return drift_from_pairs(pairs, "profile reuse") if pairs else None


def find_lenders(
    device: str, fingerprint: dict[str, Any], wanted: Sequence[OpKey], profiles: Path, exclude: Path
) -> list[Lender]:
    """Earlier tables of ``device`` on this CPU generation (``profiles/<device>-*/table.json``, then the shipped ones),
    newest first, each given the wanted layers it holds that no newer table holds; ``exclude`` (this profile's own
    table) is skipped."""
    candidates = [
        (path, table)
        for path, _, table in device_tables(device, None, ((profiles, ""),), SHIPPED)
        if path.resolve() != exclude.resolve() and same_generation(table.fingerprint, fingerprint)
    ]
    candidates.sort(key=lambda found: found[1].created or "", reverse=True)
    lenders, left = [], set(wanted)
    for path, table in candidates:
        keys = tuple(key for key in wanted if key in left and key in table.entries)
        if keys:
            lenders.append(Lender(path, table, keys))
            left -= set(keys)
    return lenders


@dataclass(frozen=True)
class Lent:
    """What the lenders gave a profile: the entries, and per lender its ratio and whether its layers held."""

    entries: dict[OpKey, LatencyEntry]
    records: list[dict[str, Any]]

    @property
    def refused(self) -> list[OpKey]:
        """Layers of lenders whose speed no longer holds: to be measured now."""
        return [OpKey.from_json(key) for record in self.records if not record["used"] for key in record["keys"]]


def lend(lenders: Sequence[Lender], today: dict[str, dict[str, Any]]) -> Lent:
    """The lenders' layers whose table still runs at today's speed: the drift check of its reference networks does not
    warn (within ``WARN_ABOVE``)."""
    entries: dict[OpKey, LatencyEntry] = {}
    records = []
    for lender in lenders:
        check = lender.drift_today(today)
        ratio = check.ratio if check is not None else None
        used = check is not None and not check.warn
        if used:
            entries |= {key: lender.table.entries[key] for key in lender.keys}
        records.append({
            "table": str(lender.path),
            "created": lender.table.created,
            "layers": len(lender.keys),
            "ratio_today": ratio,
            "used": used,
            "keys": [key.to_json() for key in lender.keys],
        })  # fmt: skip
    return Lent(entries, records)


def describe(record: dict[str, Any]) -> str:
    """One line per lender, for the profile's output."""
    ratio = "no reference networks" if record["ratio_today"] is None else f"now / then {record['ratio_today']:.2f}"
    verdict = "taken as they are" if record["used"] else "measured again"
    return f"{record['layers']} layers already in {record['table']} ({ratio}): {verdict}"


def profile_reusing(
    run_profile: Callable[[list[OpKey]], Any], keys: Sequence[OpKey], lenders: Sequence[Lender], table_path: Path
) -> tuple[Any, Lent]:
    """Profile ``keys`` less what ``lenders`` hold (``run_profile(keys)`` measures and writes ``table_path``), then
    measure the layers of lenders the drift check refused, and write the table with the lent layers in it."""
    lent_keys = {key for lender in lenders for key in lender.keys}
    own = [key for key in keys if key not in lent_keys]
    report = run_profile(own)
    table = LatencyTable.load(table_path)
    lent = lend(lenders, table.references)
    if lent.refused:
        report = run_profile(own + lent.refused)  # the same store: only the refused layers are measured now
        table = LatencyTable.load(table_path)
    merged = replace(
        table,
        entries=lent.entries | table.entries,
        stats=table.stats | {"ops": len(lent.entries | table.entries), "layers_lent": len(lent.entries),
                             "lenders": [{k: v for k, v in r.items() if k != "keys"} for r in lent.records]},
    )  # fmt: skip
    merged.save(table_path)
    return report, lent
