"""Read the public Once-for-All / ProxylessNAS latency tables (YAML) into a LatencyTable.

Their keys are ``<layer>-input:HxWxC-output:...`` (see :mod:`hwnas.opkey`); values are
``{count, mean, std | var}`` in milliseconds. They publish means, not medians: the entry's
``median_ms`` holds the mean and the table's ``stats.statistic`` says so. An imported table is
marked ``kind = "imported"`` with its source files.

Once-for-All publishes one file per resolution (Note10: 160, 164, ..., 224); several files (or a
folder of them) become one table of a multi-resolution space. A layer several files share (the
classifier, at every resolution) gets the count-weighted mean of their means.

OFA's MobileNetV3 tables time the global pool on its own (``AvgPool2D-input:7x7x1152-output:1x1x1152``)
and the feature-mix convolution on the pooled 1x1 map (``Conv_2-input:1x1x1152-...``). hwnas's
``Conv_2`` layer is pool and convolution together (as the network runs them), so an ``AvgPool2D``
entry is added to the 1x1 ``Conv_2`` (or ``Logits``) entry of the same file and channels to give
the space's layer. Every key that still matches no layer of the space is listed, all of them, and
the import refuses unless told to skip them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwnas.errors import UserError
from hwnas.fileio import read_yaml
from hwnas.latency_tables.table import LatencyEntry, LatencyTable
from hwnas.opkey import OpKey, PublicStyle
from hwnas.space import SearchSpace

_POOL_RE = re.compile(r"AvgPool2D-input:(?P<h>\d+)x(?P<w>\d+)x(?P<c>\d+)-output:1x1x(?P<oc>\d+)")


@dataclass(frozen=True)
class PublicValue:
    """One published entry: mean, standard deviation and run count (any may be missing but the mean)."""

    mean: float
    std: float | None
    count: int | None


@dataclass
class ImportReport:
    table: LatencyTable
    files: list[Path]
    unknown: list[str] = field(default_factory=list)  # "file: key" of every key no layer of the space matches
    pools_merged: int = 0


def detect_style(keys: list[str]) -> PublicStyle:
    """OFA keys carry ``-se:``/``-hs:`` and ``expand`` is the mid channel count; ProxylessNAS keys do not."""
    return "ofa" if any("-se:" in key for key in keys) else "proxyless"


def public_files(sources: Sequence[Path]) -> list[Path]:
    """The YAML files named, with a folder standing for every ``*.yaml`` / ``*.yml`` in it (sorted)."""
    files: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            found = sorted([*source.glob("*.yaml"), *source.glob("*.yml")])
            if not found:
                raise UserError(f"{source} holds no .yaml latency tables")
            files += found
        else:
            files.append(source)
    if not files:
        raise UserError("no latency-table files given")
    return files


def import_public_tables(
    sources: Sequence[Path], space: SearchSpace, device: str, style: PublicStyle | None = None, skip_unknown: bool = False
) -> ImportReport:
    """Import one or more public tables (files or folders) as one table of ``space``.

    Unknown keys (not a layer of ``space`` even after AvgPool2D merging) are all listed in the
    error; with ``skip_unknown`` they are left out and listed in the report instead.
    """
    files = public_files(sources)
    raws = [(path, _read_yaml(path)) for path in files]
    style = style or detect_style([key for _, raw in raws for key in raw])
    producible = set(space.enumerate_op_keys())
    found: dict[OpKey, list[PublicValue]] = {}
    unknown: list[str] = []
    merged = 0
    for path, raw in raws:
        keys, file_unknown, file_merged = _read_file(path, raw, style, space, producible)
        for key, value in keys.items():
            found.setdefault(key, []).append(value)
        unknown += [f"{path.name}: {text}" for text in file_unknown]
        merged += file_merged
    if unknown and not skip_unknown:
        raise UserError(
            f"{len(unknown)} key(s) not a layer of space {space.name!r} (all listed; --skip-unknown imports the rest): "
            + "; ".join(unknown)
        )
    if not found:
        raise UserError(f"no key of {', '.join(p.name for p in files)} is a layer of space {space.name!r}")
    entries = {key: _combine(key, values) for key, values in found.items()}
    names = [path.name for path in files]
    source = names[0] if len(names) == 1 else f"{names[0]} .. {names[-1]} ({len(names)} files)"
    table = LatencyTable(
        device={"name": device, "backend": "imported"},
        fingerprint={"device": device, "runtime": "imported", "source": source},
        space=space.name,
        space_hash=space.hash,
        entries=entries,
        kind="imported",
        source=", ".join(str(path) for path in files),
        stats={"statistic": "mean", "style": style, "ops": len(entries), "files": len(files), "skipped_unknown": len(unknown)},
    )
    return ImportReport(table, files, unknown, merged)


def import_public_table(path: Path, space: SearchSpace, device: str, style: PublicStyle | None = None) -> LatencyTable:
    """One file; every key must be a layer the space can produce."""
    return import_public_tables([Path(path)], space, device, style).table


def _read_file(
    path: Path, raw: dict[str, Any], style: PublicStyle, space: SearchSpace, producible: set[OpKey]
) -> tuple[dict[OpKey, PublicValue], list[str], int]:
    """(space layers found, keys matching none, AvgPool2D entries merged) of one file."""
    pools: dict[tuple[int, int], tuple[str, PublicValue]] = {}
    keys: dict[OpKey, PublicValue] = {}
    pooled_candidates: list[tuple[str, OpKey, PublicValue]] = []
    unknown: list[str] = []
    for text, value in raw.items():
        text = str(text)
        entry = _value(value, text, path)
        pool = _POOL_RE.fullmatch(text.strip())
        if pool is not None and pool["h"] == pool["w"] and pool["c"] == pool["oc"]:
            pools[(int(pool["h"]), int(pool["c"]))] = (text, entry)
            continue
        try:
            key = _key_for_space(text, style, space)
        except UserError:
            unknown.append(text)
            continue
        if key in producible:
            keys[key] = entry
        elif key.op in ("Conv_2", "Logits") and key.in_size == 1:
            pooled_candidates.append((text, key, entry))
        else:
            unknown.append(text)
    used_pools: set[tuple[int, int]] = set()
    for text, key, entry in pooled_candidates:
        match = next(
            (
                (size, channels)
                for size, channels in sorted(pools)
                if channels == key.in_channels and _with_size(key, size) in producible
            ),
            None,
        )
        if match is None:
            unknown.append(text)
            continue
        keys[_with_size(key, match[0])] = _add(entry, pools[match][1])
        used_pools.add(match)
    unknown += [text for where, (text, _) in pools.items() if where not in used_pools]
    return keys, unknown, len(used_pools)


def _with_size(key: OpKey, size: int) -> OpKey:
    return OpKey(key.op, size, key.in_channels, key.out_channels, act=key.act)


def _add(first: PublicValue, second: PublicValue) -> PublicValue:
    """Two layers run one after the other: means add, variances add (independent runs)."""
    std = math.hypot(first.std, second.std) if first.std is not None and second.std is not None else None
    count = min(c for c in (first.count, second.count) if c is not None) if first.count or second.count else None
    return PublicValue(first.mean + second.mean, std, count)


def _combine(key: OpKey, values: list[PublicValue]) -> LatencyEntry:
    """One entry from the files that hold ``key``: count-weighted mean, pooled standard deviation."""
    weights = [value.count or 1 for value in values]
    total = sum(weights)
    mean = sum(w * v.mean for w, v in zip(weights, values, strict=True)) / total
    std = None
    if all(value.std is not None for value in values):
        second_moment = sum(w * (v.std**2 + v.mean**2) for w, v in zip(weights, values, strict=True)) / total  # type: ignore[operator]
        std = math.sqrt(max(second_moment - mean**2, 0.0))
    count = sum(value.count for value in values if value.count is not None) or None
    return LatencyEntry(key, mean, cv=std / mean if std is not None and mean > 0 else None, n=count)


def _read_yaml(path: Path) -> dict[str, Any]:
    data = read_yaml(path, "latency table")
    if not isinstance(data, dict) or not data:
        raise UserError(f"{path}: expected a mapping of layer keys to {{count, mean, std|var}}")
    return data


def _key_for_space(text: str, style: PublicStyle, space: SearchSpace) -> OpKey:
    """Public keys omit what their table held fixed: take the stem's and head's from the space."""
    op = text.split("-", 1)[0]
    act = {"Conv": space.stem_act, "Conv_1": space.head_act, "Conv_2": space.head_act}.get(op, "relu")
    return OpKey.from_public(text, style, act=act, kernel=space.stem_kernel)


MAX_COUNT = 10**9  # runs behind one published mean; a larger count is a typo and would overflow the weighting


def _value(value: Any, text: str, path: Path) -> PublicValue:
    if not isinstance(value, dict) or "mean" not in value:
        raise UserError(f"{path}: entry {text!r} lacks a mean")
    try:
        mean = float(value["mean"])
        std = float(value["std"]) if "std" in value else math.sqrt(float(value["var"])) if "var" in value else None
        count = int(value["count"]) if "count" in value else None
    except (TypeError, ValueError, OverflowError) as error:
        raise UserError(f"{path}: entry {text!r} has a value that is not a number ({error})") from None
    if count is not None and not 0 < count <= MAX_COUNT:
        raise UserError(f"{path}: entry {text!r} has count {count}; a count of runs is in [1, {MAX_COUNT}]")
    if std is not None and not (math.isfinite(std) and std >= 0):
        raise UserError(f"{path}: entry {text!r} has std {std}; a spread is a finite number >= 0")
    return PublicValue(mean, std, count)
