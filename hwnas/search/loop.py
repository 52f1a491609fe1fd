"""The one trial loop every strategy shares: ask, train on an executor, store, tell.

Trials live in Optuna's RDB storage (SQLite by default, ``search.db`` in the search folder; any
SQLAlchemy URL, e.g. PostgreSQL, for a search several machines share). A trial is opened when a
candidate is asked (its architecture, recipe, predicted latency and seed stored at once) and told
the moment its training ends (accuracy, curve, reward, wall time, state), so a killed search
loses at most the trainings that were running. On start the loop replays every finished trial
through the strategy's ``tell``, in order, and marks trials left running by a dead process as
failed (``interrupted``); nothing finished is trained again, and a pair already trained in this
search is never trained twice (a strategy that asks for it again gets the stored result).

The search's configuration (space hash, device, budget, reward, proxy, strategy, seed) is stored
with the study; resuming with another one is refused in one line rather than mixing two searches.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwnas import typedjson
from hwnas.errors import UserError
from hwnas.formats import FORMATS
from hwnas.identity import check_identity
from hwnas.recipe import Recipe
from hwnas.runfolder import own_file
from hwnas.search.codec import Candidate
from hwnas.search.device import DeviceLatency
from hwnas.search.executors import Executor
from hwnas.search.reward import Reward
from hwnas.search.strategies import Outcome, Strategy, StrategyContext, make_strategy
from hwnas.space import SearchSpace
from hwnas.typedjson import checked

DEFAULT_MARGIN = 0.05
MAX_DUPLICATES_PER_TRIAL = 20

STORE_FORMAT = FORMATS["search-store"]


@dataclass
class SearchConfig:
    space: SearchSpace
    device: DeviceLatency
    reward: Reward  # with the user's budget
    out: Path
    strategy: str = "fbnetv3"
    trials: int = 24
    base_recipe: Recipe = field(default_factory=lambda: Recipe(batch_size=32))
    data: str | None = None
    train_images: int | None = 2000
    val_images: int | None = None
    seed: int = 0
    margin: float = DEFAULT_MARGIN
    storage: str | None = None
    study_name: str | None = None
    drift: dict[str, Any] | None = None  # this session's drift check of the table (DeviceLatency.check_drift); not identity

    def __post_init__(self) -> None:
        if not 0 <= self.margin < 1:
            raise UserError(f"--margin must be in [0, 1), got {self.margin}")
        if self.trials < 1:
            raise UserError(f"--trials must be >= 1, got {self.trials}")

    @property
    def search_budget_ms(self) -> float:
        """The budget the search aims under: the user's, less the margin kept for predictor error and timing noise."""
        return self.reward.budget_ms * (1 - self.margin)

    @property
    def search_reward(self) -> Reward:
        return Reward(self.search_budget_ms, self.reward.alpha, self.reward.beta, self.reward.name)

    @property
    def storage_url(self) -> str:
        if self.storage:
            return self.storage
        database = own_file(Path(self.out) / "search.db", "search study")
        return f"sqlite:///{database.parent.resolve() / database.name}"

    @property
    def name(self) -> str:
        return self.study_name or f"{self.strategy}-seed{self.seed}"

    def identity(self) -> dict[str, Any]:
        """What must match for a stored search to be resumed."""
        return {
            "space": self.space.name,
            "space_hash": self.space.hash,
            "device": self.device.spec.name,
            "table": Path(self.device.table_path).name,
            "reward": self.reward.to_json(),
            "margin": self.margin,
            "strategy": self.strategy,
            "seed": self.seed,
            "base_recipe": self.base_recipe.to_json(),
            "data": self.data or "embedded",
            "train_images": self.train_images,
            "val_images": self.val_images,
        }


@dataclass(frozen=True)
class StoredTrial:
    """The attributes of a trained trial as the study holds them, checked when a search resumes (types and ranges).

    A study may have been edited, or written by another tool: a value of the wrong type or out of range is one line
    naming the study, the trial and the field, never a traceback three steps later or a bogus best.
    """

    arch: str
    recipe: dict[str, Any]
    state: str
    predicted_latency_ms: float = field(metadata=checked("positive"))
    accuracy: float | None = field(default=None, metadata=checked("fraction"))
    reward: float | None = None
    curve: list[dict[str, float | None]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    number: int | None = None
    wall_time_s: float | None = None
    params: int | None = None
    error: str | None = None


def checked_attrs(attrs: dict[str, Any], where: str) -> dict[str, Any]:
    """A stored trial's attributes, checked (:class:`StoredTrial`); a NaN accuracy makes it a failed trial, with a warning."""
    accuracy = attrs.get("accuracy")
    if isinstance(accuracy, float) and math.isnan(accuracy):
        warnings.warn(f"{where}: accuracy is NaN; counted as a failed trial", stacklevel=2)
        attrs = attrs | {"accuracy": None, "reward": None, "state": "failed", "error": "accuracy was NaN"}
    reward = attrs.get("reward")
    if isinstance(reward, float) and not math.isfinite(reward):
        attrs = attrs | {"reward": None}
    typedjson.from_json(StoredTrial, attrs, where)
    return attrs


@dataclass
class Progress:
    done: int
    total: int
    best_accuracy: float | None
    best_arch: str | None
    eta_s: float | None
    last: dict[str, Any] | None = None


@dataclass
class _Running:
    trial: Any
    candidate: Candidate
    predicted_ms: float


class SearchLoop:
    def __init__(self, config: SearchConfig) -> None:
        import optuna

        self.optuna = optuna
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        self.config = config
        context = StrategyContext(
            space=config.space,
            base_recipe=config.base_recipe,
            reward=config.search_reward,
            predict_ms=config.device.predict,
            trials=config.trials,
            seed=config.seed,
            budget_ms=config.search_budget_ms,
        )
        self.strategy: Strategy = make_strategy(config.strategy, context)
        Path(config.out).mkdir(parents=True, exist_ok=True)
        self.study = optuna.create_study(
            storage=config.storage_url,
            study_name=config.name,
            directions=list(self.strategy.directions),
            sampler=self.strategy.sampler(),
            load_if_exists=True,
        )
        self._check_identity()
        self.results: dict[str, dict[str, Any]] = {}  # candidate key -> stored result attrs
        self.trained = 0
        self.replayed = 0
        self.interrupted = 0
        self.duplicates = 0
        self.session_seconds: list[float] = []
        self.executor: Executor | None = None
        self.slots = 1

    # ---- storage ---------------------------------------------------------------------------
    def _check_identity(self) -> None:
        attrs = self.study.user_attrs
        stored = attrs.get("config")
        wanted = self.config.identity()
        if stored is None:
            self.study.set_user_attr(STORE_FORMAT.key, STORE_FORMAT.version)
            self.study.set_user_attr("config", wanted)
            return
        STORE_FORMAT.check(attrs, f"{self.config.storage_url} (study {self.config.name!r})")
        check_identity(
            stored,
            wanted,
            f"{self.config.storage_url} holds search {self.config.name!r} made with another configuration",
            "use another --out (or --study) for a new search",
        )

    def trials(self) -> list[Any]:
        return sorted(self.study.get_trials(deepcopy=False), key=lambda trial: trial.number)

    def _replay(self) -> None:
        """Tell the strategy every finished trial, in order; fail what a dead process left running."""
        State = self.optuna.trial.TrialState
        for trial in self.trials():
            attrs = trial.user_attrs
            if trial.state == State.RUNNING:
                self.study.tell(trial.number, state=State.FAIL)
                self.interrupted += 1
                continue
            if "state" not in attrs or attrs.get("duplicate_of") is not None or attrs["state"] == "duplicate":
                continue
            where = f"{self.config.storage_url} (study {self.config.name!r}) trial {trial.number}"
            attrs = checked_attrs(dict(attrs), where)
            try:
                candidate = Candidate.from_json(self.config.space, attrs)
            except UserError as error:
                raise UserError(f"{where}: {error}") from None
            self.results[candidate.key] = dict(attrs)
            self.strategy.tell(candidate, _outcome(attrs))
            self.trained += 1
            self.replayed += 1
        if self.replayed or self.interrupted:
            self.strategy.reseed(len(self.study.trials))

    # ---- the loop ----------------------------------------------------------------------------
    def run(self, executor: Executor, on_progress: Callable[[Progress], None] | None = None) -> dict[str, Any]:
        self.executor, self.slots = executor, executor.slots
        self._replay()
        running: dict[Any, _Running] = {}
        started = time.perf_counter()
        if on_progress:
            on_progress(self._progress(started, None))
        while self.trained + len(running) < self.config.trials or running:
            while len(running) < executor.slots and self.trained + len(running) < self.config.trials:
                job = self._ask(running)
                if job is None:
                    break
                handle, entry = job
                running[handle] = entry
            if not running:
                break
            for handle, result in executor.wait_any(list(running)):
                entry = running.pop(handle)
                attrs = self._record(entry, result)
                if on_progress:
                    on_progress(self._progress(started, attrs))
        return self.summary()

    def _ask(self, running: dict[Any, _Running]) -> tuple[Any, _Running] | None:
        in_flight = {entry.candidate.key for entry in running.values()}
        for _ in range(MAX_DUPLICATES_PER_TRIAL):
            trial = self.study.ask()
            candidate = self.strategy.ask(trial)
            if candidate.key in self.results:
                self._reuse(trial, candidate)
                continue
            if candidate.key in in_flight:
                trial.set_user_attr("state", "duplicate")
                self.study.tell(trial, state=self.optuna.trial.TrialState.PRUNED)
                continue
            predicted = self.config.device.predict_one(candidate.arch)
            attrs = candidate.to_json() | {
                "predicted_latency_ms": predicted,
                "seed": self.config.seed,
                "strategy": self.config.strategy,
                "info": self.strategy.info(candidate),
            }
            for key, value in attrs.items():
                trial.set_user_attr(key, value)
            job = candidate.to_json() | {
                "space": self.config.space.to_json(),
                "data": self.config.data,
                "train_images": self.config.train_images,
                "val_images": self.config.val_images,
                "seed": self.config.seed,
            }
            assert self.executor is not None
            return self.executor.submit(job), _Running(trial, candidate, predicted)
        return None

    def _reuse(self, trial: Any, candidate: Candidate) -> None:
        """A pair trained before: the strategy gets its stored result; nothing is trained."""
        stored = self.results[candidate.key]
        self.duplicates += 1
        trial.set_user_attr("duplicate_of", stored.get("number"))
        trial.set_user_attr("state", "duplicate")
        self.study.tell(trial, state=self.optuna.trial.TrialState.PRUNED)
        self.strategy.tell(candidate, _outcome(stored))

    def _record(self, entry: _Running, result: dict[str, Any]) -> dict[str, Any]:
        """Store the finished trial (one write per field, then the state) and tell the strategy."""
        reward = self.config.search_reward
        state = result.get("state", "failed")
        accuracy = result.get("accuracy") if state == "complete" else None
        attrs: dict[str, Any] = {
            "state": state,
            "accuracy": accuracy,
            "accuracy_raw": result.get("accuracy_raw"),
            "curve": result.get("curve", []),
            "reward": reward(accuracy, entry.predicted_ms) if accuracy is not None else None,
            "wall_time_s": result.get("wall_time_s"),
            "params": result.get("params"),
            "error": result.get("error"),
            "number": entry.trial.number,
        }
        for key, value in attrs.items():
            entry.trial.set_user_attr(key, value)
        stored = entry.trial.user_attrs | attrs
        outcome = _outcome(stored)
        if outcome.ok:
            self.strategy.constrain(entry.trial, outcome)
            self.study.tell(entry.trial, self.strategy.values(entry.candidate, outcome))
        else:
            self.study.tell(entry.trial, state=self.optuna.trial.TrialState.FAIL)
        self.results[entry.candidate.key] = stored
        self.strategy.tell(entry.candidate, outcome)
        self.trained += 1
        if result.get("wall_time_s"):
            self.session_seconds.append(float(result["wall_time_s"]))
        return stored

    # ---- reporting ---------------------------------------------------------------------------
    def _progress(self, started: float, last: dict[str, Any] | None) -> Progress:
        best = self.best()
        remaining = self.config.trials - self.trained
        eta = None
        if self.session_seconds:
            per_trial = sum(self.session_seconds) / len(self.session_seconds) / self.slots
            eta = per_trial * remaining
        return Progress(self.trained, self.config.trials, best and best["accuracy"], best and best["arch"], eta, last)

    def finished(self) -> list[dict[str, Any]]:
        """Every trained trial's stored record, in trial order."""
        return sorted(self.results.values(), key=lambda attrs: attrs.get("number", 0))

    def best(self) -> dict[str, Any] | None:
        """The most accurate completed trial predicted within the search budget (a failed trial never is)."""
        feasible = [
            attrs
            for attrs in self.results.values()
            if attrs.get("state") == "complete"
            and attrs.get("accuracy") is not None
            and attrs["predicted_latency_ms"] <= self.config.search_budget_ms
        ]
        return max(feasible, key=lambda attrs: (attrs["accuracy"], -attrs["number"]), default=None)

    def summary(self) -> dict[str, Any]:
        trials = self.finished()
        return {
            "study": self.config.name,
            "storage": self.config.storage_url,
            "config": self.config.identity(),
            "search_budget_ms": self.config.search_budget_ms,
            "trained": self.trained,
            "completed": sum(t["state"] == "complete" for t in trials),
            "failed": sum(t["state"] != "complete" for t in trials),
            "replayed_from_storage": self.replayed,
            "interrupted_then_failed": self.interrupted,
            "duplicates_not_retrained": self.duplicates,
            "best": self.best(),
            "table_drift": self.config.drift,
            "strategy_report": self.strategy.report(),
            "trials": trials,
        }


def _outcome(attrs: dict[str, Any]) -> Outcome:
    curve = tuple(point.get("val_accuracy") or 0.0 for point in attrs.get("curve") or [])
    return Outcome(
        state=str(attrs.get("state", "failed")),
        predicted_ms=float(attrs.get("predicted_latency_ms", 0.0)),
        accuracy=attrs.get("accuracy"),
        reward=attrs.get("reward"),
        curve=curve,
        info=dict(attrs.get("info") or {}),
    )
