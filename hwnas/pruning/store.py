"""Episodes of a pruning search in SQLite, each written (with the agent) the moment it finishes.

One transaction stores an episode's row and the agent after learning from it, so after a kill
(even ``kill -9``) the store holds whole episodes and the agent that matches the last of them:
rerunning the same command continues with the next episode, losing none and running none twice.
A store made for another model, budget or setting is refused in one line.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwnas.formats import FORMATS
from hwnas.identity import check_identity
from hwnas.runfolder import own_file

STORE_FORMAT = FORMATS["pruning-store"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS episodes (
    search TEXT NOT NULL,
    episode INTEGER NOT NULL,
    ratios TEXT NOT NULL,
    counts TEXT NOT NULL,
    reward REAL NOT NULL,
    accuracy REAL NOT NULL,
    resource REAL NOT NULL,
    flops INTEGER NOT NULL,
    params INTEGER NOT NULL,
    seconds REAL NOT NULL,
    PRIMARY KEY (search, episode)
);
CREATE TABLE IF NOT EXISTS agents (search TEXT PRIMARY KEY, episode INTEGER NOT NULL, state BLOB NOT NULL);
"""


@dataclass(frozen=True)
class Episode:
    episode: int
    ratios: list[float]
    counts: list[int]
    reward: float
    accuracy: float
    resource: float
    flops: int
    params: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class EpisodeStore:
    """Episodes of one or more searches (a latency search repeated with a tighter budget is another ``search``)."""

    def __init__(self, path: Path, config: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(own_file(Path(path), "pruning store"), timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_SCHEMA)
        self._check_config(config)

    def _check_config(self, config: dict[str, Any]) -> None:
        text = json.dumps(config, sort_keys=True)
        meta = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        if "config" not in meta:
            with self.db:
                self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (STORE_FORMAT.key, str(STORE_FORMAT.version)))
                self.db.execute("INSERT INTO meta VALUES ('config', ?)", (text,))
            return
        STORE_FORMAT.check(meta, self.path, stored_as_text=True)
        stored = json.loads(meta["config"])
        check_identity(
            stored,
            config,
            f"{self.path} holds a search made with other settings",
            "use another --out folder, or delete the store to start over",
        )

    def episodes(self, search: str) -> list[Episode]:
        rows = self.db.execute(
            "SELECT episode, ratios, counts, reward, accuracy, resource, flops, params, seconds FROM episodes "
            "WHERE search = ? ORDER BY episode",
            (search,),
        ).fetchall()
        return [Episode(r[0], json.loads(r[1]), json.loads(r[2]), *r[3:]) for r in rows]

    def agent(self, search: str) -> tuple[int, bytes] | None:
        row = self.db.execute("SELECT episode, state FROM agents WHERE search = ?", (search,)).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    def add(self, search: str, episode: Episode, agent_state: bytes) -> None:
        """The episode and the agent that learnt from it, in one transaction."""
        with self.db:
            self.db.execute(
                "INSERT INTO episodes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    search,
                    episode.episode,
                    json.dumps(episode.ratios),
                    json.dumps(episode.counts),
                    episode.reward,
                    episode.accuracy,
                    episode.resource,
                    episode.flops,
                    episode.params,
                    episode.seconds,
                ),
            )
            self.db.execute("INSERT OR REPLACE INTO agents VALUES (?, ?, ?)", (search, episode.episode, agent_state))

    def close(self) -> None:
        self.db.close()
