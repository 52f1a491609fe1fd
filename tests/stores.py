"""What a killed and resumed command must keep, read straight from disk (no hwnas import, no caching).

hwnas keeps its work in three kinds of SQLite store and in JSON records:

- a profile's ``store.sqlite`` (``measurements``): one row per timed attempt or round of a layer or network;
- a search's Optuna ``search.db`` (``trials``): one trial per candidate asked, told when its training ends;
- a pruning search's ``search.db`` (``episodes``): one row per AMC episode;
- a run folder's ``stages/*.json`` and ``stages/*/*.json``: one record per finished stage or item.

:func:`audit` reads all of them under a folder into *items* (what is stored: an id and its content)
and *work* (what was computed, counted: each must be computed once), and checks every store with
SQLite's ``PRAGMA integrity_check`` and every JSON file for being whole. :func:`compare` tells what
a resumed command lost, changed or did twice. ``tests/test_search.py``, ``test_profiler.py``,
``test_pruning.py``, ``test_pipeline.py`` and ``benchmarks/kill_harness.py`` all count with these.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STORE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def _connect(path: Path) -> sqlite3.Connection:
    """Read-only: auditing a store never creates, migrates or checkpoints it."""
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)


def _tables(db: sqlite3.Connection) -> set[str]:
    return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


# ---- a profile's measurements ------------------------------------------------------------------------------
def measurement_rows(store: Path) -> list[tuple[str, str, int, str]]:
    """(subject, key, attempt, samples) of every stored measurement, in the order written."""
    with _connect(store) as db:
        return db.execute("SELECT subject, key, attempt, samples FROM measurements ORDER BY id").fetchall()


def described_measurements(store: Path) -> list[tuple[str, str, int | None, int]]:
    """(subject, key, round or None, accepted) of every stored measurement, in the order written."""
    with _connect(store) as db:
        return db.execute(
            "SELECT subject, key, json_extract(detail, '$.round'), accepted FROM measurements ORDER BY id"
        ).fetchall()


def count_measurements(store: Path) -> int:
    """Rows stored so far; 0 while the store or its table does not exist yet."""
    try:
        return len(measurement_rows(store))
    except sqlite3.Error:
        return 0


def _profile(db: sqlite3.Connection) -> tuple[dict[str, Any], Counter]:
    items: dict[str, Any] = {}
    work: Counter = Counter()
    rows = db.execute(
        "SELECT id, subject, key, attempt, samples, accepted, json_extract(detail, '$.round') FROM measurements ORDER BY id"
    )
    for row_id, subject, key, attempt, samples, accepted, round_ in rows:
        items[f"measurement {row_id}"] = [subject, key, attempt, samples, accepted]
        if accepted:
            work[f"accepted {subject} {key}"] += 1  # a layer or network is accepted once
        if round_ is not None:
            work[f"round {round_} of {subject} {key}"] += 1  # and each of its rounds timed once
    return items, work


# ---- a search's Optuna trials ------------------------------------------------------------------------------
def completed_trials(database: Path) -> dict[int, tuple]:
    """Trial number -> (value, accuracy) of every COMPLETE trial."""
    with _connect(database) as connection:
        rows = connection.execute(
            "SELECT t.number, v.value, a.value_json FROM trials t JOIN trial_values v ON v.trial_id = t.trial_id "
            "JOIN trial_user_attributes a ON a.trial_id = t.trial_id WHERE t.state = 'COMPLETE' AND a.key = 'accuracy'"
        ).fetchall()
    return {number: (value, accuracy) for number, value, accuracy in rows}


def _optuna(db: sqlite3.Connection) -> tuple[dict[str, Any], Counter]:
    """A trained trial (told 'complete' or 'failed', e.g. a NaN loss) is an item; its (arch, recipe) is trained once.

    A trial left RUNNING by a killed process, or marked failed as interrupted, was not finished: it is
    neither (training it again is not doing it twice). A duplicate asked again is PRUNED, not trained.
    """
    attrs: dict[int, dict[str, Any]] = {}
    for trial_id, key, value in db.execute("SELECT trial_id, key, value_json FROM trial_user_attributes"):
        attrs.setdefault(trial_id, {})[key] = json.loads(value)
    values: dict[int, list[float]] = {}
    for trial_id, value in db.execute("SELECT trial_id, value FROM trial_values ORDER BY trial_id, objective"):
        values.setdefault(trial_id, []).append(value)
    items: dict[str, Any] = {}
    work: Counter = Counter()
    trials = db.execute(
        "SELECT t.trial_id, s.study_name, t.number, t.state FROM trials t JOIN studies s ON s.study_id = t.study_id"
    )
    for trial_id, study, number, state in trials:
        found = attrs.get(trial_id, {})
        if found.get("state") not in ("complete", "failed"):
            continue
        items[f"trial {study}/{number}"] = [
            state,
            values.get(trial_id),
            found.get("accuracy"),
            found.get("arch"),
            found.get("recipe"),
        ]
        work[f"trained {study} {found.get('arch')} {json.dumps(found.get('recipe'), sort_keys=True)}"] += 1
    return items, work


# ---- a pruning search's episodes ---------------------------------------------------------------------------
def episode_rows(db_path: Path, search: str = "search") -> list[tuple]:
    """(episode, ratios, reward) of the stored episodes; none while the store has no table yet."""
    with _connect(db_path) as connection:
        if "episodes" not in _tables(connection):
            return []
        return connection.execute(
            "SELECT episode, ratios, reward FROM episodes WHERE search = ? ORDER BY episode", (search,)
        ).fetchall()


def _episodes(db: sqlite3.Connection) -> tuple[dict[str, Any], Counter]:
    """The content includes the episode's wall time: an episode run again would not keep it."""
    items: dict[str, Any] = {}
    work: Counter = Counter()
    rows = db.execute("SELECT search, episode, ratios, counts, reward, accuracy, resource, seconds FROM episodes")
    for search, episode, *content in rows:
        items[f"episode {search}/{episode}"] = content
        work[f"episode {search}/{episode}"] += 1
    return items, work


KINDS = {"measurements": ("profile", _profile), "trials": ("optuna", _optuna), "episodes": ("episodes", _episodes)}


def store_kind(path: Path) -> str | None:
    with _connect(path) as db:
        tables = _tables(db)
    return next((kind for table, (kind, _) in KINDS.items() if table in tables), None)


def integrity(path: Path) -> str:
    """'ok', or what SQLite's integrity check (or opening the file) says is wrong."""
    try:
        with _connect(path) as db:
            found = [row[0] for row in db.execute("PRAGMA integrity_check")]
    except sqlite3.Error as error:
        return f"{type(error).__name__}: {error}"
    return "ok" if found == ["ok"] else "; ".join(found[:5])


# ---- a run folder's stage records --------------------------------------------------------------------------
def stage_records(folder: Path) -> dict[str, str]:
    """Relative path -> text of every stage and item record of a run folder."""
    records = list((folder / "stages").glob("*.json")) + list((folder / "stages").glob("*/*.json"))
    return {path.relative_to(folder).as_posix(): path.read_text() for path in records}


def _is_temporary(path: Path) -> bool:
    """A name hwnas.fileio.atomic_write writes to before renaming (a kill may leave one behind)."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


# ---- everything under a folder -----------------------------------------------------------------------------
@dataclass
class Audit:
    items: dict[str, Any] = field(default_factory=dict)  # "<store or record> <item>" -> content
    work: Counter = field(default_factory=Counter)  # what was computed -> how many times
    stores: dict[str, str] = field(default_factory=dict)  # store path -> its kind
    integrity: dict[str, str] = field(default_factory=dict)  # store path -> 'ok' or the problem
    broken_json: list[str] = field(default_factory=list)  # JSON files under a final name that do not parse

    @property
    def redone(self) -> dict[str, int]:
        return {item: count for item, count in self.work.items() if count > 1}

    @property
    def integrity_failures(self) -> list[str]:
        return [f"{path}: {found}" for path, found in self.integrity.items() if found != "ok"] + [
            f"{path}: not whole JSON" for path in self.broken_json
        ]


def audit(folder: Path) -> Audit:
    """Every store and record under ``folder``, with SQLite's integrity check of each store."""
    found = Audit()
    if not folder.exists():
        return found
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if path.suffix in STORE_SUFFIXES and path.is_file():
            found.integrity[name] = integrity(path)
            if found.integrity[name] != "ok":
                continue
            try:
                with _connect(path) as db:
                    tables = _tables(db)
                    kind, read = next(((k, r) for t, (k, r) in KINDS.items() if t in tables), (None, None))
                    if read is None:
                        continue
                    items, work = read(db)
            except sqlite3.Error as error:  # e.g. a table created but not yet its columns' first row: unreadable is a failure
                found.integrity[name] = f"unreadable: {error}"
                continue
            found.stores[name] = kind
            found.items.update({f"{name} {item}": content for item, content in items.items()})
            found.work.update({f"{name} {item}": count for item, count in work.items()})
        elif path.suffix == ".json" and path.is_file() and not _is_temporary(path):
            try:
                content = json.loads(path.read_text())
            except (ValueError, UnicodeDecodeError):
                found.broken_json.append(name)
                continue
            parts = path.relative_to(folder).parts
            if "stages" in parts[:-1]:  # a stage or item record: finished work, made once
                found.items[f"record {name}"] = content
                found.work[f"record {name}"] += 1
    return found


@dataclass
class Comparison:
    lost: list[str]  # stored before, gone after
    changed: list[str]  # stored before, different after (done again, or overwritten)
    redone: dict[str, int]  # computed more than once, after

    @property
    def ok(self) -> bool:
        return not (self.lost or self.changed or self.redone)


def compare(before: Audit, after: Audit) -> Comparison:
    lost = [item for item in before.items if item not in after.items]
    changed = [item for item, content in before.items.items() if item in after.items and after.items[item] != content]
    return Comparison(lost, changed, after.redone)
