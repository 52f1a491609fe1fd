"""Read the public Once-for-All / ProxylessNAS latency tables (YAML) into a LatencyTable.

Their keys are ``<layer>-input:HxWxC-output:...`` (see :mod:`hwnas.opkey`); values are
``{count, mean, std | var}`` in milliseconds. They publish means, not medians: the entry's
``median_ms`` holds the mean and the table's ``stats.statistic`` says so. An imported table is
marked ``kind = "imported"`` with its source file.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from hwnas.errors import UserError
from hwnas.fileio import read_yaml
from hwnas.latency_tables.table import LatencyEntry, LatencyTable
from hwnas.opkey import OpKey, PublicStyle
from hwnas.space import SearchSpace


def detect_style(keys: list[str]) -> PublicStyle:
    """OFA keys carry ``-se:``/``-hs:`` and ``expand`` is the mid channel count; ProxylessNAS keys do not."""
    return "ofa" if any("-se:" in key for key in keys) else "proxyless"


def import_public_table(path: Path, space: SearchSpace, device: str, style: PublicStyle | None = None) -> LatencyTable:
    """Import ``path`` as a table for ``space``; every key must be a layer the space can produce."""
    raw = _read_yaml(Path(path))
    style = style or detect_style(list(raw))
    producible = set(space.enumerate_op_keys())
    entries: dict[OpKey, LatencyEntry] = {}
    for text, value in raw.items():
        key = _key_for_space(text, style, space)
        if key not in producible:
            raise UserError(f"{path}: key {text!r} is not a layer of space {space.name!r}")
        entries[key] = _entry(key, value, text, path)
    return LatencyTable(
        device={"name": device, "backend": "imported"},
        fingerprint={"device": device, "runtime": "imported", "source": Path(path).name},
        space=space.name,
        space_hash=space.hash,
        entries=entries,
        kind="imported",
        source=str(path),
        stats={"statistic": "mean", "style": style, "ops": len(entries)},
    )


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


def _entry(key: OpKey, value: Any, text: str, path: Path) -> LatencyEntry:
    if not isinstance(value, dict) or "mean" not in value:
        raise UserError(f"{path}: entry {text!r} lacks a mean")
    try:
        mean = float(value["mean"])
        std = float(value["std"]) if "std" in value else math.sqrt(float(value["var"])) if "var" in value else None
        count = int(value["count"]) if "count" in value else None
    except (TypeError, ValueError) as error:
        raise UserError(f"{path}: entry {text!r} has a value that is not a number ({error})") from None
    return LatencyEntry(key, mean, cv=std / mean if std is not None and mean > 0 else None, n=count)
