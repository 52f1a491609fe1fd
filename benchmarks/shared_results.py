"""What the resumable benchmarks share: one results file that several processes add rows to."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hwnas.fileio import atomic_write_json
from hwnas.runfolder import held

Document = dict[str, Any]


def update_locked(path: Path, update: Callable[[Document], Document]) -> Document:
    """Read-merge-write of one results file, under an OS lock beside it (``<name>.lock``).

    Two processes sharing a benchmark (``--shard``, or ``--strategies`` split between them) each re-read the file
    just before they write, so neither drops rows the other added since it started. ``update`` gets the document
    as it is now (``{}`` when there is none) and returns the one to write atomically.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with held(path.with_suffix(".lock")):
        current = json.loads(path.read_text()) if path.exists() else {}
        document = update(current)
        atomic_write_json(path, document)
    return document
