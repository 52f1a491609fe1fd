"""One check for every store that resumes: refuse to continue work made with other settings, naming what differs.

A run folder, a search study, a pruning history and a profile store each remember the settings they were made
with; running again with other settings would mix two experiments in one place. Each compares what it stored
with what it is asked for through :func:`check_identity`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from hwnas.errors import UserError


def differences(stored: Mapping[str, Any], wanted: Mapping[str, Any], prefix: str = "") -> list[str]:
    """``key: stored vs wanted`` for every setting that differs (nested tables as ``section.key``)."""
    found = []
    for key in sorted(set(stored) | set(wanted)):
        old, new = stored.get(key), wanted.get(key)
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            found += differences(old, new, f"{prefix}{key}.")
        elif old != new:
            found.append(f"{prefix}{key}: {old!r} vs {new!r}")
    return found


def check_identity(
    stored: Mapping[str, Any],
    wanted: Mapping[str, Any],
    where: str,
    remedy: str,
    compare: Callable[[Mapping[str, Any], Mapping[str, Any]], list[str]] = differences,
) -> None:
    """Nothing when ``stored`` equals ``wanted``; else one line: ``where`` (up to three differences); ``remedy``.

    ``compare`` lists the differences (a profile store compares CPU fingerprints field by field, say).
    """
    found = compare(stored, wanted)
    if found:
        raise UserError(f"{where} ({'; '.join(found[:3])}); {remedy}")
