"""Measured whole networks: the ground truth latency predictors are fitted on and judged against.

They come from a latency table (``table.networks``: what ``hwnas profile --networks N`` measured)
or from a CSV of ``arch,latency_ms`` rows, so measurements made elsewhere can be used too. Every
architecture string is parsed and checked against the search space on reading: an unknown one is
a one-line error naming it (and its line), never a silently dropped row.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hwnas.arch import Arch
from hwnas.errors import ArchError, UserError
from hwnas.fileio import read_text, text_sha256
from hwnas.latency_tables.table import positive_ms
from hwnas.space import SearchSpace

CSV_ARCH_COLUMNS = ("arch", "architecture")
CSV_LATENCY_COLUMNS = ("latency_ms", "median_ms", "ms")


@dataclass(frozen=True)
class MeasuredNetwork:
    """One whole network's measured latency (median ms) and, when known, its spread."""

    arch: Arch
    ms: float
    p10_ms: float | None = None
    p90_ms: float | None = None
    cv: float | None = None
    source: str = ""


def networks_from_table(table_networks: Sequence[dict], space: SearchSpace, source: str = "table") -> list[MeasuredNetwork]:
    """The whole networks a profile measured (``LatencyTable.networks``)."""
    found = []
    for row in table_networks:
        if not isinstance(row, dict) or not isinstance(row.get("arch"), str):
            raise UserError(f"{source}: a measured network is not an object with an 'arch' string: {str(row)[:80]}")
        try:
            arch = space.parse(row["arch"])
        except ArchError as error:
            raise UserError(f"{source}: network {row['arch']!r} is not of space {space.name!r} ({error})") from None
        if not positive_ms(row.get("median_ms")):
            raise UserError(
                f"{source}: network {row['arch']} has median_ms {row.get('median_ms')!r}; a latency is a positive number of ms"
            )
        found.append(MeasuredNetwork(arch, float(row["median_ms"]), row.get("p10_ms"), row.get("p90_ms"), row.get("cv"), source))
    return found


def read_latency_csv(path: Path, space: SearchSpace) -> list[MeasuredNetwork]:
    """Rows of ``arch`` (architecture string) and ``latency_ms`` (measured median, ms), with a header line."""
    path = Path(path)
    text = read_text(path, "latency CSV")
    rows = list(csv.reader(text.splitlines()))
    header = [name.strip() for name in rows[0]] if rows else []
    arch_col = next((header.index(name) for name in CSV_ARCH_COLUMNS if name in header), None)
    ms_col = next((header.index(name) for name in CSV_LATENCY_COLUMNS if name in header), None)
    if arch_col is None or ms_col is None:
        raise UserError(f"latency CSV {path}: header must name an 'arch' and a 'latency_ms' column, found {header}")
    found = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(field.strip() for field in row):
            continue
        row = _rejoin_arch(row, len(header), arch_col)
        text_arch, text_ms = row[arch_col].strip(), row[ms_col].strip() if ms_col < len(row) else ""
        try:
            arch = space.parse(text_arch)
        except ArchError as error:
            raise UserError(
                f"latency CSV {path} line {line}: unknown architecture {text_arch!r} for space {space.name!r} ({error})"
            ) from None
        try:
            ms = float(text_ms)
        except ValueError:
            raise UserError(f"latency CSV {path} line {line}: latency {text_ms!r} is not a number") from None
        if not ms > 0:
            raise UserError(f"latency CSV {path} line {line}: latency must be positive, got {ms}")
        found.append(MeasuredNetwork(arch, ms, source=str(path)))
    if not found:
        raise UserError(f"latency CSV {path} has no rows")
    return found


def _rejoin_arch(row: list[str], columns: int, arch_col: int) -> list[str]:
    """Architecture strings contain commas: an unquoted one spans extra fields, which belong to it."""
    surplus = len(row) - columns
    if surplus <= 0:
        return row + [""] * -surplus
    return [*row[:arch_col], ",".join(row[arch_col : arch_col + surplus + 1]), *row[arch_col + surplus + 1 :]]


def write_latency_csv(path: Path, networks: Sequence[MeasuredNetwork]) -> None:
    with Path(path).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["arch", "latency_ms"])
        for network in networks:
            writer.writerow([network.arch.format(), f"{network.ms:.6f}"])


def merge(*groups: Sequence[MeasuredNetwork]) -> list[MeasuredNetwork]:
    """All networks, one per architecture (the first measurement wins: no arch counted twice)."""
    seen: set[Arch] = set()
    merged = []
    for group in groups:
        for network in group:
            if network.arch not in seen:
                seen.add(network.arch)
                merged.append(network)
    return merged


def split(
    networks: Sequence[MeasuredNetwork], holdout: float, seed: int = 0
) -> tuple[list[MeasuredNetwork], list[MeasuredNetwork]]:
    """A seeded (train, held-out) split by architecture; ``holdout`` is the held-out share."""
    if not 0 <= holdout < 1:
        raise UserError(f"--holdout must be in [0, 1), got {holdout}")
    order = list(networks)
    random.Random(seed).shuffle(order)
    cut = len(order) - round(len(order) * holdout)
    return order[:cut], order[cut:]


def training_hash(networks: Sequence[MeasuredNetwork]) -> str:
    """Content hash of a training set (order-independent), recorded in a predictor's sidecar."""
    lines = sorted(f"{network.arch.format()}\t{network.ms:.9g}" for network in networks)
    return text_sha256("\n".join(lines), 16)
