"""The stages of ``hwnas run``, each a function of the run that returns what it found (JSON-able).

device -> table (reuse a matching one after its drift check, or profile) -> predictor (calibrated,
judged on held-out networks) -> search (with Pareto-front candidates measured) -> train (the winner,
on all images) -> prune (AMC) -> export (ONNX / TFLite / TensorRT, verified and re-measured). The
orchestration, resume and report live in :mod:`hwnas.pipeline.run`.

A stage whose package is not installed (search, pruning) is recorded as *skipped* with the reason;
nothing is made up in its place.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwnas.arch import Arch
from hwnas.errors import UserError
from hwnas.fileio import text_sha256
from hwnas.pipeline.config import RunConfig
from hwnas.pipeline.records import Records
from hwnas.space import SearchSpace

PROFILES = Path("runs") / "profiles"
DEFAULT_DEVICE = "host-tflite"
FALLBACK_DEVICE = "host-ort"
MIN_PREDICTOR_NETWORKS = 8
HOLDOUT = 0.25
PRUNE_KEEP_ACCURACY_LOSS = 0.005  # a pruned model that is faster is kept if it loses at most this much test accuracy
TARGET_SPEEDUP = 0.8  # a winner already under the budget is pruned to this share of its latency

Log = Callable[[str], None]


def cores() -> int:
    return len(os.sched_getaffinity(0))


def free_cores(samples: int = 5, interval_s: float = 0.1) -> dict[str, int]:
    """The cores this process may use, less those other processes keep busy right now (``/proc/loadavg``'s runnable count).

    Torch's threads wait for each other at every operation: two threads on two cores of which another process holds
    one ran an epoch ~6x slower than one thread here. So training uses only the cores nobody else is running on.
    """
    total = cores()
    counts = []
    for _ in range(samples):
        try:
            running = int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
        except (OSError, IndexError, ValueError):
            return {"cores": total, "busy": 0, "free": total}
        counts.append(running - 1)  # less this process, which is running while it reads
        time.sleep(interval_s)
    busy = max(0, min(total - 1, round(statistics.median(counts))))
    return {"cores": total, "busy": busy, "free": total - busy}


def model_cache() -> Path:
    """Converted single-layer / network files, shared with ``hwnas profile`` (same folder, same keys)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hwnas" / "models"


@dataclass
class Run:
    """One run of the pipeline: its settings, folder, records and what earlier stages found."""

    config: RunConfig
    folder: Path
    records: Records
    space: SearchSpace
    log: Log
    progress: bool
    found: dict[str, Any] = field(default_factory=dict)  # stage name -> its record's result

    def result(self, stage: str) -> dict[str, Any]:
        return self.found[stage]


# ---- device -----------------------------------------------------------------------------------------
def device_stage(run: Run) -> dict[str, Any]:
    """Each device spec, its backend here, fingerprint and threads; the default TFLite falls back to ONNX Runtime."""
    from hwnas.devices import DeviceSpec, make_backend

    devices, notes = [], []
    for arg in run.config.devices:
        spec = DeviceSpec.from_toml(arg)
        backend = make_backend(spec)
        reason = backend.unavailable_reason()
        if reason is not None and arg == DEFAULT_DEVICE and len(run.config.devices) == 1:
            note = (
                f"the TFLite interpreter is not installed here ({reason}); measuring with ONNX Runtime on this CPU instead "
                "(pip install -e '.[tflite]' for TFLite, what phones run)"
            )
            run.log(note)
            notes.append(note)
            arg = FALLBACK_DEVICE
            spec = DeviceSpec.from_toml(arg)
            backend = make_backend(spec)
            reason = backend.unavailable_reason()
        if reason is not None:
            raise UserError(f"device {spec.name} ({arg}) cannot be measured here: {reason}")
        devices.append(
            {
                "spec": arg,
                "name": spec.name,
                "backend": spec.backend,
                "model_format": backend.model_format,
                "threads": spec.threads,
                "precision": spec.precision,
                "cores": list(spec.cores) if spec.cores else None,
                "fingerprint": backend.fingerprint(),
                "definition": spec.to_json(),
            }
        )
        run.log(f"device {spec.name}: {spec.backend}, {spec.threads} thread(s), {spec.precision}")
    return {"devices": devices, "notes": notes, "cores": cores()}


def device_specs(run: Run) -> list[Any]:
    from hwnas.devices import DeviceSpec

    return [DeviceSpec.from_json(item["definition"], source=item["spec"]) for item in run.result("device")["devices"]]


# ---- table ------------------------------------------------------------------------------------------
RUN_PROFILED = "profiled by this run"


def find_table(spec: Any, fingerprint: dict[str, Any], space: SearchSpace, run_tables: Path) -> tuple[Path, str] | None:
    """A table of this device and space measured on this machine, by :func:`~hwnas.latency_tables.table.matching_table`.

    The run's own tables folder is the first profile store (``tables/<device>-<space>/``: a profile this run made),
    then ``runs/profiles`` (``hwnas profile``), then the shipped tables.
    """
    from hwnas.latency_tables.table import PROFILED, matching_table

    stores = ((run_tables, RUN_PROFILED), (PROFILES, PROFILED))
    found = matching_table(spec.name, fingerprint, space.name, space.hash, stores=stores)
    return None if found is None else (found.path, found.origin)


def run_profile_folder(run_tables: Path, spec: Any, space: SearchSpace) -> Path:
    return run_tables / f"{spec.name}-{space.name}"


def table_stage(run: Run) -> dict[str, Any]:
    from hwnas.devices import make_backend
    from hwnas.latency_tables.table import LatencyTable

    run_tables = run.folder / "tables"
    tables = []
    for spec in device_specs(run):
        backend = make_backend(spec)
        fingerprint = backend.fingerprint()
        found = find_table(spec, fingerprint, run.space, run_tables)
        profile_report = None
        if found is None:
            run.log(f"no latency table of {run.space.name!r} for {spec.name} on this machine: profiling it now")
            folder = run_profile_folder(run_tables, spec, run.space)
            profile_report = _profile(run, spec, folder)
            found = (folder / "table.json", RUN_PROFILED)
        path, origin = found
        table = LatencyTable.load(path)
        copy = run_tables / f"{spec.name}-{run.space.name}.json"
        if path.resolve() != copy.resolve():
            table.save(copy)
        run.log(f"latency table of {spec.name}: {path} ({origin}; {len(table.entries)} layers, {len(table.networks)} networks)")
        drift = _drift(run, table, backend)
        run.log(drift["message"])
        medians = [float(n["median_ms"]) for n in table.networks]
        tables.append(
            {
                "device": spec.name,
                "path": str(copy),
                "source": str(path),
                "origin": origin,
                "created": table.created,
                "layers": len(table.entries),
                "networks": len(table.networks),
                "median_network_ms": statistics.median(medians) if medians else None,
                "drift": drift,
                "profile": profile_report,
            }
        )
    primary = tables[0]
    drift = primary["drift"]
    scale = float(drift["ratio"]) if drift.get("warn") else 1.0
    if run.config.budget_ms is not None:
        budget, source = run.config.budget_ms, "given (--budget-ms)"
    elif primary["median_network_ms"] is not None:
        budget = primary["median_network_ms"] * scale
        source = f"the median of the {primary['networks']} whole networks in {primary['device']}'s table"
        source += f", x{scale:.3f} drift" if scale != 1.0 else ""
    else:
        raise UserError(f"the table of {primary['device']} has no measured whole networks; give --budget-ms")
    run.log(f"latency budget: {budget:.4f} ms on {primary['device']} ({source})")
    if scale != 1.0:
        run.log(
            f"the device runs {scale:.2f}x its table's speed today: the search, which predicts from the table, "
            f"aims under {budget / scale:.4f} ms of table time, and pruning uses the table times {scale:.3f}"
        )
    return {"tables": tables, "budget_ms": budget, "budget_source": source, "scale": scale, "table_budget_ms": budget / scale}


def _profile(run: Run, spec: Any, out: Path) -> dict[str, Any]:
    from hwnas.latency_tables.drift import DEFAULT_REFERENCES
    from hwnas.latency_tables.profiler import Profiler, ProfileSettings

    settings = ProfileSettings(networks=20 if run.config.quick else 40, seed=run.config.seed, workers=cores())
    profiler = Profiler(spec, run.space, out, model_cache(), settings, references=DEFAULT_REFERENCES)
    report = profiler.run(progress=run.progress)
    return {
        "layers": report.ops,
        "networks": report.networks,
        "wall_s": report.wall_s,
        "convert_s": report.convert_s,
        "measure_s": report.measure_s,
        "conversion_workers": settings.workers,
    }


def _drift(run: Run, table: Any, backend: Any) -> dict[str, Any]:
    """Re-time the table's reference networks now; a table made before they existed has some of its networks re-timed."""
    from hwnas.latency_tables.drift import session_drift

    check = session_drift(
        table, backend, model_cache(), "hwnas run", space=run.space, networks=run.config.drift_networks, workers=cores()
    )
    if check is None:
        return {"ratio": None, "message": "drift check: not possible (the table has no reference or whole networks)"}
    return check.to_json() | {"message": check.message(rescale_hint=False)}


# ---- predictor --------------------------------------------------------------------------------------
def predictor_path(run: Run, device: str) -> Path:
    return run.folder / "predictor" / f"{device}.skops"


def predictor_stage(run: Run) -> dict[str, Any]:
    """Each device's calibrated latency predictor: judged on a held-out quarter of the table's networks, refitted on all."""
    from hwnas.latency_tables.table import LatencyTable
    from hwnas.predictors.data import networks_from_table, split
    from hwnas.predictors.io import save_predictor
    from hwnas.predictors.latency import LutSum, make_predictor
    from hwnas.predictors.workflow import fit_and_evaluate

    results = []
    for item in run.result("table")["tables"]:
        table = LatencyTable.load(Path(item["path"]))
        networks = networks_from_table(table.networks, run.space, source=item["path"])
        kind = "calibrated" if len(networks) >= MIN_PREDICTOR_NETWORKS else "lut"
        entry: dict[str, Any] = {"device": item["device"], "kind": kind, "networks": len(networks)}
        if kind == "calibrated":
            evaluated, report = fit_and_evaluate(table, networks, kind, holdout=HOLDOUT, seed=run.config.seed)
            train, held = split(networks, HOLDOUT, run.config.seed)  # the split fit_and_evaluate made (same seed)
            entry["held_out"] = report.get("held_out", {})
            entry["points"] = {
                "measured": [n.ms for n in held],
                "calibrated": [float(v) for v in evaluated.predict([n.arch for n in held])],
                "lut": [float(v) for v in LutSum(table).predict([n.arch for n in held])],
            }
            entry["train_networks"], entry["held_out_networks"] = len(train), len(held)
        else:
            entry["note"] = f"only {len(networks)} measured networks (< {MIN_PREDICTOR_NETWORKS}): the table sum is the predictor"
        if not networks:
            raise UserError(f"the table of {item['device']} has no measured whole networks; profile it with --networks N")
        final = make_predictor(kind, table).fit([n.arch for n in networks], [n.ms for n in networks])
        path = predictor_path(run, item["device"])
        save_predictor(
            final,
            path,
            metrics=entry.get("held_out"),
            extra={"evaluation": "metrics: fitted on 75% of the networks, scored on the other 25%; this file is refitted on all"},
        )
        entry["path"] = str(path)
        calibrated = entry.get("held_out", {}).get(kind, {})
        if calibrated:
            run.log(
                f"latency predictor of {item['device']}: {calibrated['within_10pct']:.0%} of {calibrated['n']} held-out networks "
                f"within ±10% (MAPE {calibrated['mape_pct']:.1f}%; table sum {entry['held_out']['lut']['within_10pct']:.0%})"
            )
        results.append(entry)
    return {"predictors": results}


def load_run_predictor(run: Run, device: str) -> Any:
    from hwnas.predictors.io import load_predictor

    return load_predictor(predictor_path(run, device), space=run.space)


# ---- search -----------------------------------------------------------------------------------------
def search_available() -> str | None:
    """Why the search stage cannot run here (None when it can)."""
    for module in ("hwnas.search", "hwnas.search.loop", "hwnas.search.executors", "hwnas.search.device"):
        try:
            if importlib.util.find_spec(module) is None:
                return f"{module} is not part of this hwnas (search lands with issue 11)"
        except ModuleNotFoundError:
            return f"{module} is not part of this hwnas (search lands with issue 11)"
    return None


def search_stage(run: Run) -> dict[str, Any]:
    budget = run.result("table")["table_budget_ms"]  # the search predicts from the table: its budget is in table time
    reason = search_available()
    if reason is not None:
        return _pick_without_search(run, budget, reason)
    from hwnas.search.device import load_device_latency
    from hwnas.search.executors import make_executor
    from hwnas.search.loop import SearchConfig, SearchLoop
    from hwnas.search.reward import parse_reward

    settings = run.config.search
    primary = run.result("table")["tables"][0]
    device = load_device_latency(run.result("device")["devices"][0]["spec"], run.space, table=Path(primary["path"]))
    from hwnas.recipe import Recipe

    config = SearchConfig(
        space=run.space,
        device=device,
        reward=parse_reward(settings.reward, budget),
        out=run.folder / "search",
        strategy=settings.strategy,
        trials=settings.trials,
        base_recipe=Recipe(batch_size=32, epochs=settings.epochs),
        data=None if run.config.data == "embedded" else run.config.data,
        train_images=settings.train_images,
        seed=run.config.seed,
        drift=primary["drift"],  # the table stage's drift check of this device: recorded with the search, not re-timed
    )
    if primary["drift"].get("warn"):
        run.log(f"search: {primary['drift']['message']}")
    loop = SearchLoop(config)
    load = free_cores()
    # one single-threaded worker per core even when another process is busy: single-threaded workers only share the
    # busy core, while one worker of two threads would wait on it at every operation (LocalExecutor gives 1 worker 2)
    executor = make_executor(ray_address=run.config.ray)
    run.log(
        f"search: {settings.strategy}, {settings.trials} trials on {executor.slots} worker(s) x {executor.threads} thread(s)"
        + (f" (Ray at {run.config.ray})" if run.config.ray else "")
    )

    def progress(state: Any) -> None:
        if state.last is not None:
            last = state.last
            accuracy = f"{last['accuracy']:.3f}" if last.get("accuracy") is not None else last.get("state", "?")
            run.log(f"trial {state.done}/{state.total}: accuracy {accuracy}, predicted {last['predicted_latency_ms']:.4f} ms")

    try:
        summary = loop.run(executor, on_progress=progress)
    finally:
        executor.close()
    best = summary.get("best")
    if best is None:
        raise UserError(
            f"the search found no trained candidate predicted under {config.search_budget_ms:.4f} ms; raise --budget-ms"
        )
    trials = [
        {
            "number": t.get("number"),
            "arch": t["arch"],
            "recipe": t.get("recipe"),
            "accuracy": t.get("accuracy"),
            "predicted_ms": t.get("predicted_latency_ms"),
            "state": t.get("state"),
        }
        for t in summary["trials"]
    ]
    finished = _finish_search(run, config, summary)
    winner, switched = _winner(run, best, finished)
    front = _measure_front(run, trials, winner["arch"], settings.measure_front, finished)
    return {
        "ran": True,
        "strategy": settings.strategy,
        "trials": trials,
        "best": winner,
        "switched": switched,
        "search_budget_ms": summary["search_budget_ms"],
        "replayed_from_storage": summary.get("replayed_from_storage"),
        "executor": executor.describe() | ({"ray": run.config.ray} if run.config.ray else {}),
        "load": load,
        "front": front,
        "finished": finished,
        "table_drift": {k: primary["drift"].get(k) for k in ("ratio", "warn", "how")},
        "storage": summary.get("storage"),
    }


def _finish_search(run: Run, config: Any, summary: dict[str, Any]) -> dict[str, Any]:
    """What ``hwnas search`` does at the end: the top K retrained / exported / measured in interleaved rounds with drift
    references, judged against the budget, and the next feasible candidate when the best is over (``search/result.json``).

    The best is retrained with the train stage's epochs and images, so the train stage takes that model rather than
    training it again. One item of the stage record: a resumed run does not measure again.
    """
    from hwnas.search.result import finish_search

    quick = run.config.quick

    def work() -> dict[str, Any]:
        report = finish_search(
            config,
            summary,
            top_k=1 if quick else 3,
            final_epochs=run.config.train.epochs,
            rounds=6 if quick else 10,
            references=1 if quick else 3,
            threads=free_cores()["free"],
            retrain_images=run.config.train.train_images or None,
            log=run.log,
        )
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
        best = report["top"][0]
        return {
            "top": top,
            "best": report["best"],
            "drift": {k: report["drift"][k] for k in ("ratio", "applied", "per_network", "tolerance")},
            "retrained": best.get("retrained"),
            "result": str(Path(config.out) / "result.json"),
            "pareto_plot": report.get("pareto_plot"),
        }

    finished = run.records.item("search-finish", "result", work)["result"]
    best = finished.get("best")
    if best:
        judged = next((e["judged"] for e in finished["top"] if e["rank"] == 1 and e.get("judged")), None)
        measured = f"measured {judged['judged_median_ms']:.4f} ms" if judged else "not measured"
        run.log(f"search: the best, retrained and {measured}, is {best['verdict']} the {config.reward.budget_ms:.4f} ms budget")
    return finished


def _winner(run: Run, best: dict[str, Any], finished: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The search's best; when it measures over the budget and a measured candidate is within, that one instead."""
    winner = {
        "arch": best["arch"],
        "recipe": best.get("recipe"),
        "accuracy": best.get("accuracy"),
        "predicted_ms": best.get("predicted_latency_ms"),
    }
    offer = finished.get("best") or {}
    following = offer.get("next_feasible")
    if offer.get("verdict") != "over" or not following:
        return winner, False
    entry = next(e for e in finished["top"] if e["rank"] == following["rank"])
    run.log(f"search: the best measures over the budget; taking the next feasible candidate, top{entry['rank']}: {entry['arch']}")
    return {
        "arch": entry["arch"],
        "recipe": entry["recipe"],
        "accuracy": entry["proxy_accuracy"],
        "predicted_ms": entry["predicted_ms"],
    }, True


def pareto_front(points: list[dict[str, Any]], latency: str, accuracy: str) -> list[dict[str, Any]]:
    """Points no other point beats on both lower latency and higher accuracy, fastest first."""
    ordered = sorted(
        (p for p in points if p.get(accuracy) is not None and p.get(latency) is not None),
        key=lambda p: (p[latency], -p[accuracy]),
    )
    front, best = [], -1.0
    for point in ordered:
        if point[accuracy] > best:
            front.append(point)
            best = point[accuracy]
    return front


def _measure_front(
    run: Run, trials: list[dict[str, Any]], winner: str, count: int, finished: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Export the Pareto-front candidates (and the winner) to the device's format and time them: one item each.

    A candidate ``finished`` (the search's top K) already measured keeps that measurement.
    """
    from hwnas.devices import make_backend
    from hwnas.latency_tables.convert import convert_all, network_job

    front = pareto_front(trials, "predicted_ms", "accuracy")
    chosen = [t for t in trials if t["arch"] == winner][:1]
    chosen += [t for t in front if t["arch"] != winner][: max(count - 1, 0)]
    known = {e["arch"]: e["measured"]["median_ms"] for e in (finished or {}).get("top", []) if e.get("measured")}
    spec = device_specs(run)[0]
    backend = make_backend(spec)
    jobs = {
        t["arch"]: network_job(run.space, run.space.parse(t["arch"]), backend.model_format, model_cache())
        for t in chosen
        if t["arch"] not in known
    }
    convert_all(list(jobs.values()), cores())  # cached files are not converted again
    measured = []
    for trial in chosen:

        def work(trial: dict[str, Any] = trial) -> dict[str, Any]:
            if trial["arch"] in known:
                return {"arch": trial["arch"], "measured_ms": known[trial["arch"]], "how": "the search's interleaved rounds"}
            job = jobs[trial["arch"]]
            convert_all([job], 1)
            backend.settle(job.path)
            return {"arch": trial["arch"], "measured_ms": backend.measure(job.path).median_ms}

        record = run.records.item("search-front", run.space.parse(trial["arch"]).id, work)
        measured.append(trial | record["result"] | {"winner": trial["arch"] == winner})
    if measured:
        run.log(f"measured {len(measured)} front candidate(s) on {spec.name}")
    return measured


def _pick_without_search(run: Run, budget: float, reason: str) -> dict[str, Any]:
    """No search here: the sampled architecture predicted closest under the budget (no accuracy used). Recorded as skipped."""
    predictor = load_run_predictor(run, run.result("table")["tables"][0]["device"])
    rng = random.Random(run.config.seed)
    samples = list(dict.fromkeys(run.space.sample(rng) for _ in range(200)))
    predicted = [float(v) for v in predictor.predict(samples)]
    under = [(ms, arch) for ms, arch in zip(predicted, samples, strict=True) if ms <= budget * 0.95]
    if not under:
        raise UserError(f"no sampled architecture is predicted under {budget:.4f} ms; raise --budget-ms")
    ms, arch = max(under, key=lambda pair: pair[0])
    why = f"search skipped: {reason}"
    run.log(
        f"{why}; training the sampled architecture predicted closest under the budget ({ms:.4f} ms, of {len(samples)} sampled)"
    )
    return {
        "skipped": why,
        "ran": False,
        "best": {"arch": arch.format(), "recipe": None, "accuracy": None, "predicted_ms": ms},
        "picked": f"of {len(samples)} random architectures, the one predicted closest under 95% of the budget (no accuracy used)",
        "trials": [],
        "front": [],
    }


# ---- train ------------------------------------------------------------------------------------------
def train_stage(run: Run) -> dict[str, Any]:
    from hwnas.data import load_data
    from hwnas.recipe import Recipe
    from hwnas.trainer import train

    best = run.result("search")["best"]
    arch = run.space.parse(best["arch"])
    recipe = Recipe.from_json(best["recipe"]) if best.get("recipe") else Recipe()
    recipe = recipe.with_overrides([f"epochs={run.config.train.epochs}"])
    data = load_data(None if run.config.data == "embedded" else run.config.data)
    if run.config.train.train_images:
        data = data.head(run.config.train.train_images, len(data.val))  # type: ignore[arg-type]
    load = free_cores()
    folder = run.folder / "model"
    retrained = (run.result("search").get("finished") or {}).get("retrained")
    if retrained and retrained["arch"] == arch.format() and retrained["recipe"] == recipe.to_json():
        # the search's finish retrained this very network with this recipe, epochs and images: take it, do not train twice
        shutil.copytree(Path(retrained["folder"]), folder, dirs_exist_ok=True)
        run.log(
            f"the winner was retrained by the search ({len(retrained['curve'])} epoch(s), same recipe and images): "
            f"validation accuracy {retrained['val_accuracy']:.4f}, test accuracy {retrained['test_accuracy']:.4f}"
        )
        return retrained | {"folder": str(folder), "load": load, "from": "search (retrained by its finish)"}
    threads = load["free"]
    if load["busy"]:
        run.log(f"{load['busy']} of {load['cores']} cores are busy with other processes: training on {threads} thread(s)")
    run.log(
        f"training the winner for {recipe.epochs} epoch(s) on {len(data.train)} images ({threads} thread(s)): {arch.format()}"
    )
    # one checkpoint folder per (network, recipe): a rerun with another budget picks another winner and must not meet
    # the old winner's checkpoint
    checkpoints = run.folder / "checkpoints" / text_sha256(arch.format() + json.dumps(recipe.to_json(), sort_keys=True), 16)
    checkpoints.mkdir(parents=True, exist_ok=True)
    result = train(  # every finished epoch is kept in the folder: a killed run resumes mid-training
        run.space,
        arch,
        recipe,
        data,
        seed=run.config.seed,
        threads=threads,
        progress=run.progress,
        evaluate_test=True,
        checkpoint=checkpoints,
        log=run.log,
    )
    result.save(folder)
    run.log(f"validation accuracy {result.val_accuracy:.4f}, test accuracy {result.test_accuracy:.4f}")
    return result.to_json() | {"folder": str(folder), "load": load}


# ---- prune ------------------------------------------------------------------------------------------
def prune_available() -> str | None:
    for module in ("hwnas.pruning", "hwnas.pruning.job", "hwnas.pruning.base", "hwnas.pruning.budget"):
        try:
            if importlib.util.find_spec(module) is None:
                return f"{module} is not part of this hwnas (AMC pruning lands with issue 12)"
        except ModuleNotFoundError:
            return f"{module} is not part of this hwnas (AMC pruning lands with issue 12)"
    return None


def scaled_table(table: Any, scale: float) -> Any:
    """``table`` with every layer's figures times ``scale`` (the drift ratio), so it predicts today's milliseconds."""
    import dataclasses

    if scale == 1.0:
        return table

    def times(value: float | None) -> float | None:
        return None if value is None else value * scale

    entries = {
        key: dataclasses.replace(entry, median_ms=entry.median_ms * scale, p10_ms=times(entry.p10_ms), p90_ms=times(entry.p90_ms))
        for key, entry in table.entries.items()
    }
    return dataclasses.replace(table, entries=entries)


def prune_stage(run: Run) -> dict[str, Any]:
    reason = prune_available()
    if reason is not None:
        run.log(f"prune skipped: {reason}")
        return {"skipped": f"prune skipped: {reason}", "ran": False, "final": run.result("train")["folder"], "kept": "unpruned"}
    import torch

    from hwnas.data import load_data
    from hwnas.latency_tables.table import LatencyTable
    from hwnas.predictors.network_latency import network_latency
    from hwnas.pruning.base import load_base
    from hwnas.pruning.budget import Budget
    from hwnas.pruning.job import PruneConfig, run_prune
    from hwnas.recipe import Recipe

    budget_ms = run.result("table")["budget_ms"]
    trained = run.result("train")
    devices = run.result("device")["devices"]
    primary = devices[0]["name"]
    # the table as the device runs today (drift beyond 10%): the job's latency model and its measured check then agree
    table = scaled_table(LatencyTable.load(Path(run.result("table")["tables"][0]["path"])), run.result("table")["scale"])
    data_arg = None if run.config.data == "embedded" else run.config.data
    data = load_data(data_arg)
    if run.config.train.train_images:
        data = data.head(run.config.train.train_images, len(data.val))  # type: ignore[arg-type]
    load = free_cores()
    torch.set_num_threads(load["free"])  # fine-tuning the pruned models
    torch.manual_seed(run.config.seed)
    base = load_base(trained["folder"], None, data, seed=run.config.seed)
    # the pruning job's latency model (table + layer models) of the unpruned network: the target is in its units
    unpruned_ms = network_latency(base.module, tuple(base.input_shape), table).total_ms
    target = min(budget_ms, unpruned_ms * TARGET_SPEEDUP)
    budget = Budget("latency-ms", round(target, 5))
    aim = "the budget" if target == budget_ms else f"{TARGET_SPEEDUP:.0%} of the unpruned network's predicted latency"
    config = PruneConfig(
        budget=budget,
        episodes=run.config.prune.episodes,
        finetune=Recipe(epochs=run.config.prune.finetune_epochs, lr=0.02, warmup_epochs=0.0),
        seed=run.config.seed,
        baselines=run.config.prune.baselines,
        # a quick run times the pruned models in the first device's format only (the export stage does every format)
        formats=(devices[0]["model_format"],) if run.config.quick else tuple(dict.fromkeys([devices[0]["model_format"], "onnx"])),
        devices=tuple(dict.fromkeys([item["spec"] for item in devices] + ([] if run.config.quick else [FALLBACK_DEVICE]))),
        heldout=500 if run.config.quick else 1000,
    )
    run.log(
        f"prune: AMC, {config.episodes} episodes, {budget.describe()} ({aim}; unpruned predicted {unpruned_ms:.4f} ms, "
        f"budget {budget_ms:.4f} ms)"
    )
    try:
        report = run_prune(base, data, config, run.folder / "prune", data_source=data_arg, table=table, log=run.log)
    except UserError as error:
        if "below what pruning can reach" not in str(error):
            raise
        why = f"prune skipped: {error}"
        run.log(why)
        return {"skipped": why, "ran": False, "final": trained["folder"], "kept": "unpruned"}
    models = report["models"]
    retimed = retime_pruned(run, models, devices[0]["model_format"])
    kept, why = choose_pruned(models, primary, budget_ms)
    run.log(f"prune: keeping the {kept} model ({why})")
    return {
        "ran": True,
        "budget": budget.describe(),
        "models": {
            name: {
                "test_accuracy": m["test_accuracy"],
                "flops": m["flops"],
                "params": m["params"],
                "latency_ms": m["measured"]["latency_ms"],
                "predicted_ms": m.get("resource"),  # the pruning job's latency model, on the first device's table
                "folder": m["folder"],
            }
            for name, m in models.items()
        },
        "kept": kept,
        "why": why,
        "timing": retimed,
        "final": models[kept]["folder"] if kept != "unpruned" else trained["folder"],
        "wall_time_s": report.get("wall_time_s"),
        "latency_retries": report.get("latency_retries", []),
        "threads": load["free"],
        "resource_note": report.get("resource_note"),
    }


PRUNE_TIMING_ROUNDS = 8


def retime_pruned(run: Run, models: dict[str, Any], fmt: str) -> dict[str, Any]:
    """Time every model of the pruning job again on the first device, all in the same interleaved rounds.

    The job times each model once, when it is made, minutes apart; on this VM that alone moved one file 0.26 ->
    0.36 ms. The keep decision compares these medians (they replace the job's figures on the first device).
    """
    from hwnas.devices import make_backend
    from hwnas.fileio import read_json
    from hwnas.search.measure import time_interleaved

    files = {}
    for name, model in models.items():
        card_path = Path(model["folder"]) / "export" / "model_card.json"
        card = read_json(card_path, "model card") if card_path.exists() else {}
        item = next((e for e in card.get("exports", []) if e.get("format") == fmt and e.get("file")), None)
        if item is not None and item.get("verification", {}).get("passed", True):
            files[name] = card_path.parent / item["file"]
    if len(files) < 2:
        return {"retimed": False, "why": "fewer than two pruning results have a file to time"}
    spec = device_specs(run)[0]
    rounds = 3 if run.config.quick else PRUNE_TIMING_ROUNDS
    timed = time_interleaved(make_backend(spec), files, rounds)
    summaries = {name: value.summary() for name, value in timed.items()}
    for name, summary in summaries.items():
        latency = models[name]["measured"]["latency_ms"]
        summary["when_made_ms"] = latency.get(spec.name)
        latency[spec.name] = summary["median_ms"]
    return {"retimed": True, "device": spec.name, "rounds": rounds, "summaries": summaries}


def choose_pruned(models: dict[str, Any], primary: str, budget_ms: float) -> tuple[str, str]:
    """Which model the run goes on with: the unpruned winner, or one of the pruned ones (AMC's or a baseline's).

    A pruned model qualifies when it measures faster on ``primary`` and loses at most
    :data:`PRUNE_KEEP_ACCURACY_LOSS` test accuracy, or when it alone measures within the budget. Of those, the
    most accurate is kept, and at equal accuracy the fastest: uniform pruning at the same budget sometimes
    matches AMC's accuracy at a lower latency (the 2026-12-01 default run: both 88.2%, 0.215 vs 0.272 ms), and
    the user wants the better network whichever method made it.
    """

    def ms(name: str) -> float | None:
        return models[name]["measured"]["latency_ms"].get(primary)

    before_ms, before_accuracy = ms("unpruned"), models["unpruned"]["test_accuracy"]
    if before_ms is None:
        return "unpruned", "the unpruned model was not measured on the device"
    quicker = {name: after for name in models if name != "unpruned" and (after := ms(name)) is not None and after < before_ms}
    faster = [name for name in quicker if models[name]["test_accuracy"] >= before_accuracy - PRUNE_KEEP_ACCURACY_LOSS]
    within_alone = [name for name, after in quicker.items() if name not in faster and before_ms > budget_ms >= after]
    if faster:
        best = min(faster, key=lambda n: (-round(models[n]["test_accuracy"], 4), quicker[n]))
        return best, f"faster on the device at most {PRUNE_KEEP_ACCURACY_LOSS:.1%} less accurate, the best of {', '.join(faster)}"
    if within_alone:
        best = max(within_alone, key=lambda n: models[n]["test_accuracy"])
        return best, "only the pruned models measure within the budget; the most accurate of them"
    if quicker:
        return "unpruned", "the pruned models lose more accuracy than the speed is worth"
    return "unpruned", "no pruned model is faster on the device"


# ---- export -----------------------------------------------------------------------------------------
def latest_drift(run: Run, item: dict[str, Any]) -> tuple[float | None, str]:
    """Today's timing over the table's for ``item``'s device, from the latest check that timed it, and how it was found.

    The table stage re-times a few networks once, at the start; the search's finish times the same networks again in
    the interleaved rounds of its candidates, minutes later. The two can differ by more than the drift itself: in the
    2026-12-01 default run 1.04 at the start and 0.80 in the rounds, where the final model then measured 0.77x its
    table-time prediction. So the later, interleaved figure is the one a prediction is adjusted with.
    """
    found = run.found.get("search") or {}
    drift = (found.get("finished") or {}).get("drift") or {}
    primary = run.result("device")["devices"][0]["name"]
    if item["device"] == primary and isinstance(drift.get("ratio"), int | float):
        return float(drift["ratio"]), "the search's interleaved rounds"
    return item["drift"].get("ratio"), "the table stage's check"


def _with_drift(run: Run, item: dict[str, Any], ms: float | None) -> dict[str, Any]:
    ratio, how = latest_drift(run, item)
    return {"drift_ratio": ratio, "drift_from": how, "drift_adjusted_ms": ms * ratio if ratio and ms else None}


def predict_arch(run: Run, arch: Arch) -> dict[str, dict[str, Any]]:
    """Each device's calibrated prediction (and table sum) of ``arch``, with the drift-adjusted figure beside it."""
    from hwnas.latency_tables.table import LatencyTable

    found = {}
    drifts = {item["device"]: item for item in run.result("table")["tables"]}
    for entry in run.result("predictor")["predictors"]:
        device = entry["device"]
        predictor = load_run_predictor(run, device)
        table = LatencyTable.load(Path(drifts[device]["path"]))
        ms = float(predictor.predict([arch])[0])
        found[device] = {
            "calibrated_ms": ms,
            "lut_sum_ms": table.predict(run.space.op_keys(arch)),
            "predictor": entry["kind"],
        } | _with_drift(run, drifts[device], ms)
    return found


def predict_pruned(run: Run, module: Any, shape: tuple[int, ...], parent: Arch) -> dict[str, dict[str, Any]]:
    """A pruned network is not an architecture of the space: its layers from the table and the layer models, times
    the correction the calibrated predictor learned for the network it was pruned from (``parent``), per device.

    On the first device, the pruning job's own latency model gives both figures (it predicted every policy it
    tried); on the others, :func:`~hwnas.predictors.network_latency.network_latency` of both modules does.
    """
    from hwnas.export_model import resolve_model
    from hwnas.latency_tables.table import LatencyTable
    from hwnas.predictors.network_latency import network_latency

    parents = predict_arch(run, parent)
    prune = run.result("prune")
    models = prune.get("models", {})
    primary = run.result("device")["devices"][0]["name"]
    found: dict[str, dict[str, Any]] = {}
    for item in run.result("table")["tables"]:
        device = item["device"]
        kept, unpruned = models.get(prune.get("kept"), {}), models.get("unpruned", {})
        if device == primary and kept.get("predicted_ms") and unpruned.get("predicted_ms"):
            scale = run.result("table")["scale"]  # the job predicted on the drift-scaled table: back to table time
            pruned_ms, parent_ms = kept["predicted_ms"] / scale, unpruned["predicted_ms"] / scale
            how = "the pruning job's latency model"
        else:
            table = LatencyTable.load(Path(item["path"]))
            try:
                pruned_ms = network_latency(module, shape, table).total_ms
                parent_ms = network_latency(resolve_model(parent.format()).module, shape, table).total_ms
            except UserError as error:
                found[device] = {"calibrated_ms": None, "predictor": f"not predicted: {error}"} | _with_drift(run, item, None)
                continue
            how = "table + layer models"
        correction = parents[device]["calibrated_ms"] / parent_ms
        ms = pruned_ms * correction
        found[device] = {
            "calibrated_ms": ms,
            "network_latency_ms": pruned_ms,
            "correction": correction,
            "predictor": f"calibrated: {how} of the pruned widths x the unpruned network's learned correction {correction:.3f}",
        } | _with_drift(run, item, ms)
    return found


def export_formats(run: Run) -> tuple[list[str], list[str]]:
    """(formats to export, notes on those left out): each device's format, ONNX always, TensorRT for a GPU spec."""
    from hwnas.exporters import get_exporter

    wanted = []
    for device in run.result("device")["devices"]:
        if device["backend"] == "tensorrt":
            wanted.append("tensorrt-fp16" if device["precision"] == "fp16" else "tensorrt")
        else:
            wanted.append(device["model_format"])
    wanted = list(dict.fromkeys([*wanted, "onnx", "tflite"]))
    formats, notes = [], []
    for fmt in wanted:
        reason = get_exporter(fmt).unavailable_reason()
        if reason is None:
            formats.append(fmt)
        else:
            notes.append(f"{fmt} not exported: {reason}")
    return formats, notes


def export_stage(run: Run) -> dict[str, Any]:
    from hwnas.devices import DeviceSpec
    from hwnas.export_model import build_request, resolve_model
    from hwnas.exporters import export_all
    from hwnas.exporters.model_card import write_model_card

    final = Path(run.result("prune")["final"])
    resolved = resolve_model(str(final))
    shape = (1, resolved.channels, resolved.resolution, resolved.resolution)
    arch_text = resolved.info.get("arch")
    if isinstance(arch_text, str):
        predicted = predict_arch(run, run.space.parse(arch_text))
    else:  # a pruned model
        predicted = predict_pruned(run, resolved.module, shape, run.space.parse(run.result("train")["arch"]))
    data_arg = None if run.config.data == "embedded" else run.config.data
    request = build_request(resolved, data_arg, images=200 if run.config.quick else 500, calibration=100)
    request.info["predicted_latency_ms"] = predicted
    specs = device_specs(run)
    names = {spec.name for spec in specs}
    host_ort = DeviceSpec.from_toml(FALLBACK_DEVICE)
    if host_ort.name not in names:
        specs.append(host_ort)  # the ONNX file is timed on this CPU too
    formats, notes = export_formats(run)
    for note in notes:
        run.log(note)
    out = run.folder / "export"
    exports = []
    for fmt in formats:

        def work(fmt: str = fmt) -> dict[str, Any]:
            card = export_all(request, [fmt], out, specs, on_step=run.log)
            return card["exports"][0]

        exports.append(run.records.item("export", fmt, work)["result"])
    write_model_card(out, request.info, exports)
    budget = run.result("table")["budget_ms"]
    primary = run.result("device")["devices"][0]["name"]
    measured: dict[str, float] = {}
    for item in exports:
        for timing in item["latency"]:
            if "median_ms" in timing:
                measured.setdefault(timing["device"], timing["median_ms"])
    verified = all(e["verification"]["passed"] for e in exports)
    within = measured.get(primary) is not None and measured[primary] <= budget
    return {
        "model": str(final),
        "arch": arch_text,
        "input_shape": list(shape),
        "formats": formats,
        "notes": notes,
        "exports": exports,
        "predicted": predicted,
        "measured_ms": measured,
        "verified": verified,
        "within_budget": within,
        "budget_ms": budget,
        "model_card": str(out / "model_card.md"),
    }
