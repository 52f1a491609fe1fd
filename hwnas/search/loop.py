"""The one trial loop every strategy shares: ask, train on an executor, store, tell.

Trials live in Optuna's RDB storage (SQLite by default, ``search.db`` in the search folder; any
SQLAlchemy URL, e.g. PostgreSQL, for a search several machines share). A trial is opened when a
candidate is asked (its architecture, recipe, predicted latency and seed stored at once) and told
the moment its training ends (accuracy, curve, reward, wall time, state), so a killed search
loses at most the trainings that were running. On start the loop replays every finished trial
through the strategy's ``tell``, in order, and marks trials left running by a dead process as
failed (``interrupted``); nothing finished is trained again, and a pair already trained in this
search is never trained twice (a strategy that asks for it again gets the stored result).

The search's configuration (space hash, device, budget, reward, proxy or supernet, strategy, seed) is stored
with the study; resuming with another one is refused in one line rather than mixing two searches.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwnas import typedjson
from hwnas.errors import UserError
from hwnas.fileio import file_sha256
from hwnas.formats import FORMATS
from hwnas.identity import check_identity
from hwnas.recipe import Recipe
from hwnas.runfolder import held, own_file
from hwnas.search.codec import Candidate
from hwnas.search.device import DeviceLatency
from hwnas.search.executors import Executor
from hwnas.search.reward import Reward
from hwnas.search.strategies import Outcome, Strategy, StrategyContext, make_strategy
from hwnas.space import SearchSpace
from hwnas.typedjson import checked

DEFAULT_MARGIN = 0.05
HEARTBEAT_S = 10.0  # a running trial is stamped this often by its process
GRACE_S = 60.0  # a running trial not stamped for this long belongs to a process that is gone
INTERRUPTED = "interrupted"  # a trial's state when a signal or its process's death stopped it: its candidate is retried
CREATE_LOCK = ".study.lock"
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
    # candidates scored by the accuracy they inherit from this supernet folder (hwnas.search.inherited), not trained:
    # its weights (their hash) are part of the search's identity, so scores of two supernets, or of a supernet and of
    # training, never mix in one study
    supernet: Path | None = None
    supernet_sha256: str | None = None
    # tell the strategy each result in the order its candidate was asked, not as it finishes: with several workers the
    # search then repeats exactly for a seed (what the strategy asks next never depends on which worker was faster),
    # at the cost of a worker waiting for an older, slower candidate; not part of the identity (trials mix safely)
    in_order: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.margin < 1:
            raise UserError(f"--margin must be in [0, 1), got {self.margin}")
        if self.trials < 1:
            raise UserError(f"--trials must be >= 1, got {self.trials}")
        if self.supernet is not None and self.supernet_sha256 is None:
            weights = Path(self.supernet) / "supernet.pt"  # hwnas.supernet.store.WEIGHTS_FILE (torch not imported for it)
            try:
                self.supernet_sha256 = file_sha256(weights)
            except OSError as error:
                raise UserError(f"cannot read supernet weights {weights}: {error.strerror or error}") from None

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
            "supernet": f"sha256:{self.supernet_sha256[:16]}" if self.supernet_sha256 else None,
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
        with held(Path(config.out) / CREATE_LOCK):  # two processes starting one study: one creates it, the other loads it
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
        self.seen: set[int] = set()  # trial numbers already taken in (finished, or failed as interrupted)
        self.retry: list[Candidate] = []  # candidates a signal or a dead process interrupted: trained again first
        self.retry_info: dict[str, dict[str, Any]] = {}  # what the strategy stored with each (FBNetV3's genes)
        self.running: dict[Any, _Running] = {}
        self.elsewhere: set[str] = set()  # candidates another live process is training now (never trained twice)

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
        """Take in every trial finished so far (this process's earlier sessions', or another worker's), in order."""
        self._sync()
        if self.replayed or self.interrupted:
            self.strategy.reseed(len(self.study.trials))

    def _study_lock(self) -> contextlib.AbstractContextManager[None]:
        """The lock every look at the study that may change it is taken under (not reentrant: never nest it).

        Another process's ask waits, so no pair is given out twice; and a sync waits while another process sets up the
        trial it has just asked for: that trial is RUNNING with no owner yet, which :meth:`_sync` would take for one a
        dead process left, and fail under it (seen with two searches on one study: ``Trial#4 has already finished``).
        """
        return held(Path(self.config.out) / CREATE_LOCK)

    def _sync(self) -> None:
        """:meth:`_sync_locked` under :meth:`_study_lock` (a sync may fail a trial, so it never runs without the lock)."""
        with self._study_lock():
            self._sync_locked()

    def _sync_locked(self) -> None:
        """Tell the strategy every trial finished since the last look; fail what a dead process left running.

        Call it under :meth:`_study_lock`: through :meth:`_sync`, or where the ask that follows needs the same hold.

        Several processes may share a study (the multi-worker path Optuna intends): a running trial whose heartbeat is
        fresh is another worker's and is left alone; one whose heartbeat stopped (``kill -9``) is failed as
        interrupted, and its candidate is trained again, as is one a signal interrupted.
        """
        State = self.optuna.trial.TrialState
        self.elsewhere = set()
        for trial in self.trials():
            if trial.number in self.seen or self._ours(trial):
                continue
            if trial.state == State.RUNNING:
                if self._alive(trial):
                    if "arch" in trial.user_attrs:
                        with contextlib.suppress(UserError, KeyError, TypeError, ValueError):
                            self.elsewhere.add(Candidate.from_json(self.config.space, trial.user_attrs).key)
                    continue
                self._fail_interrupted(trial)
                trial = self.study._storage.get_trial(trial._trial_id)  # as failed: the snapshot may hold a half-written result
            self.seen.add(trial.number)
            self._take_in(trial)

    def _take_in(self, trial: Any) -> None:
        attrs = trial.user_attrs
        if attrs.get("duplicate_of") is not None or attrs.get("state") == "duplicate":
            return
        where = f"{self.config.storage_url} (study {self.config.name!r}) trial {trial.number}"
        if attrs.get("state", INTERRUPTED) == INTERRUPTED:  # counted even if it died before its candidate was written
            self._queue_retry(attrs, where)
            return
        if "arch" not in attrs:
            return
        attrs = checked_attrs(dict(attrs), where) | {"number": trial.number}  # the study's own number, not a stored copy
        try:
            candidate = Candidate.from_json(self.config.space, attrs)
        except UserError as error:
            raise UserError(f"{where}: {error}") from None
        self.results[candidate.key] = dict(attrs)
        self.retry = [queued for queued in self.retry if queued.key != candidate.key]
        self.strategy.tell(candidate, _outcome(attrs))
        self.trained += 1
        self.replayed += 1

    def _queue_retry(self, attrs: dict[str, Any], where: str) -> None:
        self.interrupted += 1
        try:
            candidate = Candidate.from_json(self.config.space, attrs)
        except (UserError, KeyError, TypeError, ValueError):
            return  # an interrupted trial whose candidate cannot be read: nothing to retry
        if candidate.key not in self.results and all(queued.key != candidate.key for queued in self.retry):
            self.retry.append(candidate)
            self.retry_info[candidate.key] = attrs.get("info") if isinstance(attrs.get("info"), dict) else {}

    def _ours(self, trial: Any) -> bool:
        return any(entry.trial.number == trial.number for entry in self.running.values())

    def _alive(self, trial: Any) -> bool:
        """Is a running trial's process still alive? On this host its PID answers at once (a search rerun right after
        ``kill -9`` retries at once); another host's worker is alive while its ``heartbeat`` is younger than
        :data:`GRACE_S`."""
        attrs = trial.user_attrs
        owner = attrs.get("owner")
        if isinstance(owner, str) and owner.rpartition(":")[0] == socket.gethostname():
            return _pid_alive(owner.rpartition(":")[2])
        beat = attrs.get("heartbeat")
        return isinstance(beat, int | float) and time.time() - beat < GRACE_S

    def _fail_interrupted(self, trial: Any) -> None:
        """Mark a trial whose process stopped as interrupted (another worker may do the same at the same moment)."""
        try:
            self.study._storage.set_trial_user_attr(trial._trial_id, "state", INTERRUPTED)
            self.study.tell(trial.number, state=self.optuna.trial.TrialState.FAIL)
        except (self.optuna.exceptions.UpdateFinishedTrialError, ValueError, RuntimeError):
            pass  # finished or failed meanwhile

    def _taken(self) -> int:
        """Trials the study's budget has given out: finished ones (any worker's) and the ones running now, alive."""
        State = self.optuna.trial.TrialState
        count = 0
        for trial in self.trials():
            attrs = trial.user_attrs
            if "arch" not in attrs or attrs.get("state") in ("duplicate", INTERRUPTED) or attrs.get("duplicate_of") is not None:
                continue
            if trial.state == State.RUNNING:
                count += self._ours(trial) or self._alive(trial)
            elif "state" in attrs:
                count += 1
        return count

    # ---- the loop ----------------------------------------------------------------------------
    def run(self, executor: Executor, on_progress: Callable[[Progress], None] | None = None) -> dict[str, Any]:
        self.executor, self.slots = executor, executor.slots
        self._replay()
        started = time.perf_counter()
        if on_progress:
            on_progress(self._progress(started, None))
        with self._heartbeat():
            try:
                self._loop(executor, started, on_progress)
            except BaseException:
                self._interrupt_running()
                raise
        self._sync()  # what other workers finished meanwhile belongs in the summary too
        return self.summary()

    def _loop(self, executor: Executor, started: float, on_progress: Callable[[Progress], None] | None) -> None:
        running = self.running
        finished: dict[Any, Any] = {}  # handle -> result, in the order they finished, until they are told
        while True:
            while len(running) < executor.slots:
                with self._study_lock():  # one hold for the look and the ask: no pair given out twice
                    self._sync_locked()
                    job = self._ask(running) if self._taken() < self.config.trials else None
                if job is None:
                    break
                handle, entry = job
                running[handle] = entry
            if not running:
                break
            to_tell = self._to_tell(running, finished)
            if not to_tell:
                finished.update(executor.wait_any([handle for handle in running if handle not in finished]))
                to_tell = self._to_tell(running, finished)
            for handle in to_tell:
                entry, result = running.pop(handle), finished.pop(handle)
                attrs = self._record(entry, result)
                self.seen.add(entry.trial.number)
                if on_progress:
                    on_progress(self._progress(started, attrs))

    def _to_tell(self, running: dict[Any, _Running], finished: dict[Any, Any]) -> list[Any]:
        """The finished handles to tell now: all of them, as they finished; or (``in_order``) the oldest asked, once it
        is done and alone, so the next ask follows it: trial n + slots is always asked right after trial n is told,
        whichever worker was faster, and the strategy asks from the same knowledge on every run."""
        if not self.config.in_order:
            return list(finished)
        oldest = next(iter(running))  # a dict keeps the order its handles were asked in
        return [oldest] if oldest in finished else []

    def _interrupt_running(self) -> None:
        """Ctrl-C, SIGTERM or an error mid-search: this process's running trials are stored as interrupted (not failed),
        so the next session trains their candidates again rather than counting them done."""
        for entry in list(self.running.values()):
            self._fail_interrupted(entry.trial)
        self.running.clear()

    @contextlib.contextmanager
    def _heartbeat(self) -> Iterator[None]:
        """Every :data:`HEARTBEAT_S`, stamp this process's running trials (another worker then knows they are alive)."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(HEARTBEAT_S):
                for entry in list(self.running.values()):
                    try:
                        self.study._storage.set_trial_user_attr(entry.trial._trial_id, "heartbeat", time.time())
                    except Exception:
                        continue

        thread = threading.Thread(target=beat, name="hwnas-trial-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=HEARTBEAT_S)

    def _ask(self, running: dict[Any, _Running]) -> tuple[Any, _Running] | None:
        in_flight = {entry.candidate.key for entry in running.values()} | self.elsewhere
        for _ in range(MAX_DUPLICATES_PER_TRIAL):
            trial = self.study.ask()
            candidate = self.retry.pop(0) if self.retry else self.strategy.ask(trial)
            if candidate.key in self.results:
                self._reuse(trial, candidate)
                continue
            if candidate.key in in_flight:
                trial.set_user_attr("state", "duplicate")
                self.study.tell(trial, state=self.optuna.trial.TrialState.PRUNED)
                continue
            predicted = self.config.device.predict_one(candidate.arch)
            # the owner first, then the heartbeat: a process killed while it writes these leaves a trial whose owner
            # names a dead process, never one with a fresh heartbeat and no owner, which reads as another host's live
            # worker (a resumed search then waited for it and ended a trial short)
            attrs = {"owner": f"{socket.gethostname()}:{os.getpid()}", "heartbeat": time.time()}
            attrs |= candidate.to_json() | {
                "predicted_latency_ms": predicted,
                "seed": self.config.seed,
                "strategy": self.config.strategy,
                "info": self.retry_info.pop(candidate.key, None) or self.strategy.info(candidate),
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

    def read_back(self) -> list[dict[str, Any]]:
        """Every trial the study holds, read back without running (a finished search's trials for a plot)."""
        self._sync()
        return self.finished()

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


def _pid_alive(pid_text: str) -> bool:
    try:
        pid = int(pid_text)
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (ValueError, PermissionError, OverflowError):
        return True  # not ours to judge (another user's process, or an unreadable owner): trust the heartbeat rule
    return pid != os.getpid()  # this very process, yet not a trial it is running: left by an earlier loop, dead


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
