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

import shlex
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwnas import formats, typedjson
from hwnas.errors import UserError
from hwnas.fileio import atomic_write_json, read_json
from hwnas.pipeline.stage import R, Skipped, Stage

STAGES_DIR = "stages"
SESSIONS_FILE = "sessions.json"
RECORD_FORMAT = formats.FORMATS["run-record"]


@dataclass(frozen=True)
class StageMeta:
    """The part of a stage record that says how the stage ended (its result is read by the stage's own type)."""

    stage: str
    status: str
    session: int
    seconds: float
    reason: str | None = None
    finished: str = ""
    result_schema: int = 1


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

    def stage(self, stage: Stage[R], work: Callable[[], R | Skipped], log: Callable[[str], None]) -> R | Skipped:
        """The stage's value: read back (typed) if it finished before, else ``work()`` run now and recorded.

        A :class:`Skipped` value is recorded as a skipped stage: it finished, and is not tried again on resume.
        """
        found = self.get(stage.name)
        if found is not None:
            value = self.read_value(stage)
            self.reused.append(stage.name)
            log(f"{stage.name}: done in session {found['session']} ({found['seconds']:.1f} s), reused")
            return value
        started = time.perf_counter()
        value = work()
        skipped = isinstance(value, Skipped)
        record = {
            "stage": stage.name,
            "status": "skipped" if skipped else "done",
            "reason": value.reason if isinstance(value, Skipped) else None,
            "session": self.session,
            "finished": _now(),
            "seconds": time.perf_counter() - started,
            "result_schema": stage.result_type.SCHEMA,
            "result": {} if isinstance(value, Skipped) else value.to_json(),
        }
        atomic_write_json(self.stage_path(stage.name), RECORD_FORMAT.stamp(record))
        self.ran.append(stage.name)
        return value

    def read_value(self, stage: Stage[R]) -> R | Skipped:
        """A finished stage's value from its record, typed and checked; an unreadable one names the command remaking it."""
        record = self.get(stage.name)
        if record is None and stage.missing is not None:
            return Skipped(stage.missing)
        if record is None:
            raise UserError(
                f"{self.folder}: stage {stage.name} has not finished; run the same hwnas run command again to finish it"
            )
        where = f"{self.stage_path(stage.name)}"
        try:
            meta = typedjson.from_json(StageMeta, record, where)
            if meta.result_schema > stage.result_type.SCHEMA:
                raise UserError(
                    f"{where} was written by a newer hwnas (result layout {meta.result_schema}, this one reads "
                    f"{stage.result_type.SCHEMA}): upgrade hwnas"
                )
            if meta.status == "skipped":
                return Skipped(meta.reason or "skipped")
            return typing.cast(R, stage.result_type.from_json(record["result"], f"{where}: result"))
        except typedjson.RecordError as error:
            raise UserError(f"{error}; remake the run folder with: {self.remake_command()}") from None

    def meta(self, name: str) -> StageMeta:
        """When and how a finished stage ran (status, session, seconds), checked."""
        record = self.get(name)
        if record is None:
            raise UserError(f"{self.folder}: stage {name} has not finished; run the same hwnas run command again to finish it")
        return typedjson.from_json(StageMeta, record, str(self.stage_path(name)))

    def remake_command(self) -> str:
        """The command that started this run folder, for this folder, with ``--fresh``: what remakes it from scratch."""
        path = self.folder / SESSIONS_FILE
        sessions = read_json(path, "run sessions") if path.exists() else []
        first = sessions[0] if isinstance(sessions, list) and sessions and isinstance(sessions[0], dict) else {}
        argv = first.get("argv")
        words = [str(word) for word in argv] if isinstance(argv, list) and argv else ["run"]
        if "--out" in words[:-1]:
            words[words.index("--out") + 1] = str(self.folder)  # the folder as it is now (it may have moved)
        else:
            words += ["--out", str(self.folder)]
        if "--fresh" not in words:
            words.append("--fresh")
        return "hwnas " + shlex.join(words)

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
