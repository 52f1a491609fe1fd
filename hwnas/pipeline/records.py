"""The run folder's memory: one record per finished stage (and per finished item of a stage).

A stage's record (``stages/<name>.json``) is written atomically when, and only when, the stage has
finished, so a run killed at any point leaves every finished stage's record whole and no record of
the stage it was in. Running the same command again reads the records and starts at the first
stage without one; stages whose work is made of items (the formats an export writes, the front
candidates it measures) keep one record per item under ``stages/<name>/``, and the search and
profile stages resume inside their own SQLite stores. Each record names the *session* (the n-th
time the command was run on this folder) that made it, which is how a test proves that nothing
finished was done again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwnas import formats
from hwnas.fileio import atomic_write_json, read_json

STAGES_DIR = "stages"
SESSIONS_FILE = "sessions.json"
RECORD_FORMAT = formats.FORMATS["run-record"]


@dataclass
class Records:
    """Stage and item records of one run folder, and which session of it this process is."""

    folder: Path
    session: int = 0
    reused: list[str] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, folder: Path, argv: list[str]) -> Records:
        """Start a new session of ``folder`` (the count is kept in ``sessions.json``)."""
        folder = Path(folder)
        path = folder / SESSIONS_FILE
        sessions = read_json(path, "run sessions") if path.exists() else []
        if not isinstance(sessions, list):
            sessions = []
        number = len(sessions) + 1
        sessions.append({"session": number, "started": _now(), "argv": argv})
        atomic_write_json(path, sessions)
        return cls(folder, number)

    @property
    def stages_dir(self) -> Path:
        return self.folder / STAGES_DIR

    def stage_path(self, name: str) -> Path:
        return self.stages_dir / f"{name}.json"

    def get(self, name: str) -> dict[str, Any] | None:
        path = self.stage_path(name)
        return _read_record(path) if path.exists() else None

    def stage(self, name: str, work: Callable[[], dict[str, Any]], log: Callable[[str], None]) -> dict[str, Any]:
        """The stage's record: read back if it finished before, else ``work()`` run now and recorded.

        ``work`` returns the stage's result; a result with ``"skipped": "<why>"`` is recorded as a
        skipped stage (it finished: it is not tried again on resume).
        """
        found = self.get(name)
        if found is not None:
            self.reused.append(name)
            log(f"{name}: done in session {found['session']} ({found['seconds']:.1f} s), reused")
            return found
        started = time.perf_counter()
        result = work()
        skipped = result.pop("skipped", None) if isinstance(result, dict) else None
        record = {
            "stage": name,
            "status": "skipped" if skipped else "done",
            "reason": skipped,
            "session": self.session,
            "finished": _now(),
            "seconds": time.perf_counter() - started,
            "result": result,
        }
        atomic_write_json(self.stage_path(name), RECORD_FORMAT.stamp(record))
        self.ran.append(name)
        return record

    def item(self, stage: str, key: str, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """One item of a stage (``stages/<stage>/<key>.json``), done once."""
        path = self.stages_dir / stage / f"{_safe(key)}.json"
        if path.exists():
            return _read_record(path)
        started = time.perf_counter()
        result = work()
        record = {"item": key, "session": self.session, "seconds": time.perf_counter() - started, "result": result}
        atomic_write_json(path, RECORD_FORMAT.stamp(record))
        return record

    def items(self, stage: str) -> list[dict[str, Any]]:
        folder = self.stages_dir / stage
        return [_read_record(path) for path in sorted(folder.glob("*.json"))] if folder.is_dir() else []

    def all_stages(self) -> list[dict[str, Any]]:
        return [_read_record(path) for path in sorted(self.stages_dir.glob("*.json"))]


def _read_record(path: Path) -> dict[str, Any]:
    """A stage or item record, its schema version checked (and dropped: callers see the fields they wrote)."""
    return formats.read_json(path, RECORD_FORMAT.name)


def _safe(key: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in key)[:120]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
