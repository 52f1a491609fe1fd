"""The measurement store: SQLite in WAL mode, one row committed as soon as a number is known.

Contract (every writer and reader relies on it):

- ``meta`` holds ``schema_version``, the device spec, its fingerprint and the search space (JSON).
  Opening a store with another fingerprint or space is an error naming the differing fields,
  unless ``allow_mismatch``: numbers from one device are never silently mixed with another's.
- ``measurements`` is append-only: a row (one attempt at timing one layer or one whole network,
  with every raw sample) is never updated or deleted. ``subject`` is ``op`` or ``network``, ``key``
  the layer's ``OpKey.describe()`` or the architecture string.
- A *round row* (``detail.round`` = r) is one fresh session's share of a layer's runs, never
  accepted; when a subject has all its rounds, a *pooled row* (``detail.pooled_rounds``) holds
  their samples together and counts as its first attempt. A pooled row too noisy to accept is
  followed by ``sessions`` more rounds and a pooled row of all rounds so far (the next attempt).
  Subjects timed without rounds (``sessions = 1``) time each attempt in one stretch.
- A subject is *done* when it has a row with ``accepted = 1``. A run killed at any point loses at
  most the attempt in flight; rerunning continues with the next attempt number and never
  re-measures a done subject.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwnas.devices.measurement import Measurement
from hwnas.errors import UserError
from hwnas.formats import FORMATS
from hwnas.identity import check_identity
from hwnas.latency_tables.compat import differences, fingerprint_differences
from hwnas.runfolder import own_file

STORE_FORMAT = FORMATS["profile-store"]
CHECKED_META = ("fingerprint", "space_hash")  # what must match; the spec's repeat counts may change

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS measurements (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subject TEXT NOT NULL CHECK (subject IN ('op', 'network')),
    key TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    detail TEXT NOT NULL,
    samples TEXT NOT NULL,
    sample_kind TEXT NOT NULL,
    median_ms REAL NOT NULL, p10_ms REAL NOT NULL, p90_ms REAL NOT NULL, cv REAL NOT NULL,
    n INTEGER NOT NULL, outliers INTEGER NOT NULL,
    accepted INTEGER NOT NULL,
    measured_at REAL NOT NULL,
    UNIQUE (subject, key, attempt)
);
"""


@dataclass(frozen=True)
class StoredMeasurement:
    subject: str
    key: str
    attempt: int
    detail: dict[str, Any]
    summary: dict[str, Any]
    accepted: bool


class LatencyStore:
    """A profile's measurements on disk (see the module docstring for the contract)."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path, self._db = path, connection

    @classmethod
    def open(cls, path: Path, meta: dict[str, Any], allow_mismatch: bool = False) -> LatencyStore:
        """Open or create the store at ``path``; ``meta`` must match what it was created with."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(own_file(Path(path), "profile store"), isolation_level=None, timeout=30)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.executescript(_SCHEMA)
            stored = dict(connection.execute("SELECT key, value FROM meta").fetchall())
        except (sqlite3.DatabaseError, OSError) as error:
            raise UserError(f"{path} is not a readable hwnas measurement store ({error})") from None
        store = cls(path, connection)
        store._check_or_write_meta(stored, meta, allow_mismatch)
        return store

    @classmethod
    def open_existing(cls, path: Path) -> LatencyStore:
        """Open a store for reading only what it holds (no meta check)."""
        if not Path(path).is_file():
            raise UserError(f"measurement store {path} does not exist")
        return cls.open(path, meta={}, allow_mismatch=True)

    def _check_or_write_meta(self, stored: dict[str, str], meta: dict[str, Any], allow_mismatch: bool) -> None:
        if stored:
            STORE_FORMAT.check(stored, self.path, stored_as_text=True)
            held = {name: json.loads(stored[name]) for name in meta if name in stored and name in CHECKED_META}
            if not allow_mismatch:
                where = f"{self.path} holds measurements of something else, store vs now"
                check_identity(held, meta, where, "use another store or --allow-mismatch", compare=_meta_differences)
            return
        with self._db:
            self._db.execute("INSERT INTO meta VALUES (?, ?)", (STORE_FORMAT.key, str(STORE_FORMAT.version)))
            self._db.executemany("INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v, sort_keys=True)) for k, v in meta.items()])

    def meta(self) -> dict[str, Any]:
        rows = self._db.execute("SELECT key, value FROM meta WHERE key != 'schema_version'").fetchall()
        return {key: json.loads(value) for key, value in rows}

    def record(self, subject: str, key: str, detail: dict[str, Any], measurement: Measurement, accepted: bool) -> int:
        """Append one row (committed before returning); returns its row number for ``key`` (the ``attempt`` column)."""
        attempt = self._rows(subject, key) + 1
        summary = measurement.summary()
        self._db.execute(
            "INSERT INTO measurements (subject, key, attempt, detail, samples, sample_kind, median_ms, p10_ms, p90_ms, cv, n, "
            "outliers, accepted, measured_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                subject,
                key,
                attempt,
                json.dumps(detail, sort_keys=True),
                json.dumps(list(measurement.samples_ms)),
                measurement.sample_kind,
                summary["median_ms"],
                summary["p10_ms"],
                summary["p90_ms"],
                summary["cv"],
                summary["n"],
                summary["outliers"],
                int(accepted),
                time.time(),
            ),
        )
        return attempt

    def attempts(self, subject: str, key: str) -> int:
        """Attempts at ``key`` so far; round rows are parts of an attempt, not attempts."""
        row = self._db.execute(
            "SELECT COUNT(*) FROM measurements WHERE subject = ? AND key = ? AND json_extract(detail, '$.round') IS NULL",
            (subject, key),
        ).fetchone()
        return int(row[0])

    def round_samples(self, subject: str, key: str) -> list[list[float]]:
        """Samples of each stored round row of ``key``, in round order."""
        rows = self._db.execute(
            "SELECT samples FROM measurements WHERE subject = ? AND key = ? AND json_extract(detail, '$.round') IS NOT NULL "
            "ORDER BY json_extract(detail, '$.round')",
            (subject, key),
        )
        return [json.loads(row[0]) for row in rows]

    def _rows(self, subject: str, key: str) -> int:
        row = self._db.execute("SELECT COUNT(*) FROM measurements WHERE subject = ? AND key = ?", (subject, key)).fetchone()
        return int(row[0])

    def done(self, subject: str) -> set[str]:
        rows = self._db.execute("SELECT key FROM measurements WHERE subject = ? AND accepted = 1", (subject,))
        return {row[0] for row in rows}

    def accepted(self, subject: str) -> list[StoredMeasurement]:
        return self._select("WHERE subject = ? AND accepted = 1", (subject,))

    def all(self) -> list[StoredMeasurement]:
        return self._select("", ())

    def samples(self, subject: str, key: str) -> list[list[float]]:
        rows = self._db.execute("SELECT samples FROM measurements WHERE subject = ? AND key = ? ORDER BY attempt", (subject, key))
        return [json.loads(row[0]) for row in rows]

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM measurements").fetchone()[0])

    def _select(self, where: str, args: tuple[Any, ...]) -> list[StoredMeasurement]:
        rows = self._db.execute(
            f"SELECT subject, key, attempt, detail, median_ms, p10_ms, p90_ms, cv, n, outliers, sample_kind, accepted "
            f"FROM measurements {where} ORDER BY id",
            args,
        )
        return [
            StoredMeasurement(
                subject,
                key,
                attempt,
                json.loads(detail),
                {"median_ms": median, "p10_ms": p10, "p90_ms": p90, "cv": cv, "n": n, "outliers": outliers, "sample_kind": kind},
                bool(accepted),
            )
            for subject, key, attempt, detail, median, p10, p90, cv, n, outliers, kind, accepted in rows
        ]

    def close(self) -> None:
        self._db.close()


def _meta_differences(stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """What differs between a store's meta and this session's: CPU fingerprints field by field, the rest as values."""
    return [
        difference
        for name in stored
        for difference in (fingerprint_differences if name == "fingerprint" else differences)(
            name, stored[name], wanted.get(name)
        )
    ]
