"""Stage ``search``: the most accurate network predicted within the budget, then its best candidates measured.

The search itself is :mod:`hwnas.search.api`'s, the same that ``hwnas search`` runs: trials in an Optuna
study under ``search/`` (a killed run resumes without retraining), then the top candidates retrained,
exported and measured in interleaved rounds with drift references (``finish``, one item of the stage
record, so a resumed run does not measure again). When the best measures over the budget and a measured
candidate is within, that candidate is the winner. The Pareto-front candidates are exported to the first
device's format and timed for the report's plot (one item each).

The search predicts from the table, so it aims under the budget in *table* time (``TableResult.table_budget_ms``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hwnas import typedjson
from hwnas.errors import UserError
from hwnas.pipeline.context import RunContext, cores, free_cores
from hwnas.pipeline.stage import Stage, StageResult
from hwnas.pipeline.stages.device import DeviceResult
from hwnas.pipeline.stages.table import TableResult, table_path
from hwnas.typedjson import checked


@dataclass(frozen=True)
class TrialInfo:
    """One trained candidate: proxy accuracy and predicted latency (table time)."""

    arch: str
    number: int | None = None
    recipe: dict[str, Any] | None = None
    accuracy: float | None = field(default=None, metadata=checked("fraction"))
    predicted_ms: float | None = field(default=None, metadata=checked("positive"))
    state: str | None = None


@dataclass(frozen=True)
class FrontPoint(TrialInfo):
    """A Pareto-front candidate measured on the first device (``measured_ms``: today's time)."""

    measured_ms: float | None = field(default=None, metadata=checked("positive"))
    how: str | None = None
    winner: bool = False


@dataclass(frozen=True)
class Winner:
    arch: str
    recipe: dict[str, Any] | None = None
    accuracy: float | None = field(default=None, metadata=checked("fraction"))
    predicted_ms: float | None = field(default=None, metadata=checked("positive"))  # table time


@dataclass(frozen=True)
class FinishedSearch:
    """The top candidates retrained, exported and measured (``top``: one dict per candidate, as ``search/result.json``)."""

    top: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None  # verdict against the budget, and the next feasible candidate
    drift: dict[str, Any] | None = None  # today / table over the interleaved rounds' reference networks
    retrained: dict[str, Any] | None = None  # the best, retrained with the train stage's epochs and images
    result: str | None = None
    pareto_plot: str | None = None
    error: str | None = None

    @property
    def drift_ratio(self) -> float | None:
        ratio = (self.drift or {}).get("ratio")
        return float(ratio) if isinstance(ratio, int | float) else None


@dataclass(frozen=True)
class SearchResult(StageResult):
    STAGE = "search"

    best: Winner
    trials: list[TrialInfo] = field(default_factory=list)
    front: list[FrontPoint] = field(default_factory=list)
    finished: FinishedSearch | None = None
    strategy: str | None = None
    switched: bool = False  # the best measured over the budget: the next feasible candidate is the winner
    search_budget_ms: float | None = None  # table time
    replayed_from_storage: int | None = None
    executor: dict[str, Any] | None = None
    load: dict[str, Any] | None = None
    table_drift: dict[str, Any] | None = None
    storage: str | None = None
    ran: bool = True


def run(context: RunContext) -> SearchResult:
    from hwnas.search.api import run_search
    from hwnas.search.executors import make_executor

    config = _search_config(context)
    load = free_cores()
    # one single-threaded worker per core even when another process is busy: single-threaded workers only share the
    # busy core, while one worker of two threads would wait on it at every operation (LocalExecutor gives 1 worker 2)
    executor = make_executor(ray_address=context.config.ray, supernet=config.supernet)
    settings = context.config.search
    context.log(
        f"search: {settings.strategy}, {settings.trials} trials on {executor.slots} worker(s) x {executor.threads} thread(s)"
        + (f" (Ray at {context.config.ray})" if context.config.ray else "")
        + (f"; candidates scored by the weights they inherit from {config.supernet}" if config.supernet else "")
    )
    try:
        summary = run_search(config, executor, on_progress=lambda state: _log_trial(context, state))
    finally:
        executor.close()
    best = summary.get("best")
    if best is None:
        raise UserError(
            f"the search found no trained candidate predicted under {config.search_budget_ms:.4f} ms; raise --budget-ms"
        )
    trials = [_trial(t) for t in summary["trials"]]
    finished = _finish(context, config, summary)
    winner, switched = _winner(context, best, finished)
    primary = context.result(TableResult).primary
    return SearchResult(
        strategy=settings.strategy,
        trials=trials,
        best=winner,
        switched=switched,
        search_budget_ms=summary["search_budget_ms"],
        replayed_from_storage=summary.get("replayed_from_storage"),
        executor=executor.describe() | ({"ray": context.config.ray} if context.config.ray else {}),
        load=load,
        front=measure_front(context, trials, winner.arch, settings.measure_front, finished),
        finished=finished,
        table_drift={k: primary.drift.get(k) for k in ("ratio", "warn", "how")},
        storage=summary.get("storage"),
    )


def _search_config(context: RunContext) -> Any:
    """The search's settings from the run's, through the library (the same as ``hwnas search`` builds)."""
    from hwnas.search.api import make_search_config
    from hwnas.search.device import load_device_latency

    tables = context.result(TableResult)
    primary = tables.primary
    device = load_device_latency(context.result(DeviceResult).primary.spec, context.space, table=table_path(context, primary))
    if primary.drift_warn:
        context.log(f"search: {primary.drift['message']}")
    return make_search_config(
        context.space,
        device,
        tables.search_budget_ms,
        context.config.search.library_settings(),
        context.folder / "search",
        data=context.data_source,
        drift=primary.drift,  # the table stage's drift check of this device: recorded with the search, not re-timed
        seed=context.config.seed,
    )


def _log_trial(context: RunContext, state: Any) -> None:
    last = state.last
    if last is not None:
        accuracy = f"{last['accuracy']:.3f}" if last.get("accuracy") is not None else last.get("state", "?")
        arch = f" {last['arch']}" if last.get("arch") else ""  # which network: a user reading the log can train or time it
        context.log(
            f"trial {state.done}/{state.total}: accuracy {accuracy}, predicted {last['predicted_latency_ms']:.4f} ms{arch}"
        )


def _trial(trial: dict[str, Any]) -> TrialInfo:
    return TrialInfo(
        number=trial.get("number"),
        arch=trial["arch"],
        recipe=trial.get("recipe"),
        accuracy=trial.get("accuracy"),
        predicted_ms=trial.get("predicted_latency_ms"),
        state=trial.get("state"),
    )


def _finish(context: RunContext, config: Any, summary: dict[str, Any]) -> FinishedSearch:
    """What ``hwnas search`` does at the end, with the train stage's epochs and images (so the train stage can take the
    retrained best instead of training it again). One item of the stage record: a resumed run does not measure again."""
    from hwnas.search.api import finish

    quick = context.config.quick

    def work() -> dict[str, Any]:
        report = finish(
            config,
            summary,
            top_k=1 if quick else 3,
            final_epochs=context.config.train.epochs,
            rounds=6 if quick else 10,
            references=1 if quick else 3,
            threads=free_cores()["free"],
            retrain_images=context.config.train.train_images or None,
            log=context.log,
        )
        return _finished_record(context, report)

    record = context.records.item("search-finish", "result", work)
    finished = typedjson.from_json(FinishedSearch, record["result"], "stages/search-finish/result.json: result")
    if finished.best:
        judged = next((e["judged"] for e in finished.top if e["rank"] == 1 and e.get("judged")), None)
        measured = f"measured {judged['judged_median_ms']:.4f} ms" if judged else "not measured"
        verdict = finished.best["verdict"]
        context.log(f"search: the best, retrained and {measured}, is {verdict} the {config.reward.budget_ms:.4f} ms budget")
    return finished


def _finished_record(context: RunContext, report: dict[str, Any]) -> dict[str, Any]:
    if "error" in report:
        return {"error": report["error"], "top": [], "best": None}
    top = [
        {
            "rank": entry["rank"],
            "arch": entry["arch"],
            "recipe": entry["recipe"],
            "proxy_accuracy": entry["proxy_accuracy"],
            "predicted_ms": entry["predicted_latency_ms"],
            "measured": entry["measured"],
            "judged": entry["judged"],
            "verified": bool(entry.get("export") and entry["export"]["verification"]["passed"]),
        }
        for entry in report["top"]
    ]
    retrained = report["top"][0].get("retrained")
    plot = report.get("pareto_plot")
    return {
        "top": top,
        "best": report["best"],
        "drift": {k: report["drift"][k] for k in ("ratio", "applied", "per_network", "tolerance")},
        "retrained": retrained | {"folder": context.stored(retrained["folder"])} if retrained else None,
        "result": context.stored(context.folder / "search" / "result.json"),
        "pareto_plot": context.stored(plot) if plot else None,
    }


def _winner(context: RunContext, best: dict[str, Any], finished: FinishedSearch) -> tuple[Winner, bool]:
    """The search's best; when it measures over the budget and a measured candidate is within, that one instead."""
    winner = Winner(best["arch"], best.get("recipe"), best.get("accuracy"), best.get("predicted_latency_ms"))
    offer = finished.best or {}
    following = offer.get("next_feasible")
    if offer.get("verdict") != "over" or not following:
        return winner, False
    entry = next(e for e in finished.top if e["rank"] == following["rank"])
    context.log(
        f"search: the best measures over the budget; taking the next feasible candidate, top{entry['rank']}: {entry['arch']}"
    )
    return Winner(entry["arch"], entry["recipe"], entry["proxy_accuracy"], entry["predicted_ms"]), True


def measure_front(
    context: RunContext, trials: list[TrialInfo], winner: str, count: int, finished: FinishedSearch | None
) -> list[FrontPoint]:
    """Export the Pareto-front candidates (and the winner) to the device's format and time them: one item each.

    A candidate the search's finish already measured keeps that measurement.
    """
    from hwnas.devices import make_backend
    from hwnas.latency_tables.convert import convert_all, network_job
    from hwnas.paths import model_cache
    from hwnas.search.plots import pareto_front

    front = pareto_front(trials, latency=lambda trial: trial.predicted_ms, accuracy=lambda trial: trial.accuracy)
    chosen = [t for t in trials if t.arch == winner][:1]
    chosen += [t for t in front if t.arch != winner][: max(count - 1, 0)]
    known = {e["arch"]: e["measured"]["median_ms"] for e in (finished.top if finished else []) if e.get("measured")}
    spec = context.result(DeviceResult).primary.device_spec()
    backend = make_backend(spec)
    jobs = {
        t.arch: network_job(context.space, context.space.parse(t.arch), backend.model_format, model_cache())
        for t in chosen
        if t.arch not in known
    }
    convert_all(list(jobs.values()), cores())  # cached files are not converted again
    measured = []
    for trial in chosen:

        def work(arch: str = trial.arch) -> dict[str, Any]:
            if arch in known:
                return {"arch": arch, "measured_ms": known[arch], "how": "the search's interleaved rounds"}
            job = jobs[arch]
            convert_all([job], 1)
            backend.settle(job.path)
            return {"arch": arch, "measured_ms": backend.measure(job.path).median_ms}

        found = context.records.item("search-front", context.space.parse(trial.arch).id, work)["result"]
        measured.append(
            FrontPoint(**vars(trial), measured_ms=found["measured_ms"], how=found.get("how"), winner=trial.arch == winner)
        )
    if measured:
        context.log(f"measured {len(measured)} front candidate(s) on {spec.name}")
    return measured


STAGE = Stage("search", ("device", "table"), SearchResult, run)
