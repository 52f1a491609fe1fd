"""``summary.json``: what a run found, one level deep, built from the stages' typed results.

Every latency in it is the device as it runs today, except where a key says ``table`` (``table_budget_ms``,
``search.best.predicted_ms``, ``final.predicted.*.calibrated_ms``): the drift ratio that converts one to the
other is ``drift_scale`` (the table stage's check) or, for the final model's prediction, its own
``drift_ratio`` (the latest interleaved check).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hwnas import typedjson
from hwnas.errors import UserError
from hwnas.fileio import atomic_write_json, read_json
from hwnas.formats import FORMATS
from hwnas.pipeline.records import Records
from hwnas.pipeline.stage import Skipped, Stage, StageResult
from hwnas.pipeline.stages import STAGES
from hwnas.pipeline.stages.device import DeviceResult
from hwnas.pipeline.stages.export import ExportResult
from hwnas.pipeline.stages.predictor import PredictorResult
from hwnas.pipeline.stages.prune import PruneResult
from hwnas.pipeline.stages.references import ReferencesResult
from hwnas.pipeline.stages.search import SearchResult
from hwnas.pipeline.stages.table import TableResult
from hwnas.pipeline.stages.train import TrainResult

Values = dict[str, StageResult | Skipped]


def read_values(records: Records) -> Values:
    """Every stage's typed value from the run folder's records (one line naming the stage that has not finished)."""
    return {stage.name: records.read_value(stage) for stage in STAGES}


def _get(values: Values, kind: type[Any]) -> Any:
    value = values[kind.STAGE]
    return value if isinstance(value, kind) else None


@contextlib.contextmanager
def records_as_written(folder: Path) -> Iterator[None]:
    """What a record holds beyond its typed fields (a drift check's details, a model card's entries), read as hwnas
    wrote it; a record edited there is one line naming the folder and how to remake it, not a traceback."""
    import jinja2

    try:
        yield
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, ZeroDivisionError, jinja2.UndefinedError) as error:
        if isinstance(error, UserError):
            raise
        raise UserError(
            f"{folder}: its stage records are not as hwnas wrote them ({type(error).__name__}: {error}); "
            f"remake the run folder with: {Records(folder).remake_command()}"
        ) from None


def write_summary(folder: Path, records: Records | None = None, values: Values | None = None) -> dict[str, Any]:
    """``summary.json`` from the stages' results (what ``hwnas report`` re-reads too)."""
    with records_as_written(folder):
        return _write_summary(folder, records or Records(folder), values)


def _write_summary(folder: Path, records: Records, values: Values | None) -> dict[str, Any]:
    values = values or read_values(records)
    device, table = _get(values, DeviceResult), _get(values, TableResult)
    export = _get(values, ExportResult)
    summary = {
        "run_folder": str(folder),
        "device": _device(device),
        "cores": _cores(values),
        "budget_ms": table.budget_ms,
        "budget_source": table.budget_source,
        "drift_scale": table.scale,
        "table_budget_ms": table.search_budget_ms,
        "drift": {t.device: t.drift_ratio for t in table.tables},
        "tables": {t.device: {"source": t.source, "origin": t.origin} for t in table.tables},
        "predictor": _predictor(_get(values, PredictorResult), device.primary.name),
        "search": _search(records, _get(values, SearchResult)),
        "model": _model(_get(values, TrainResult)),
        "prune": _prune(records, values),
        "final": _final(export, _get(values, PruneResult)),
        "exports": [_export_item(e) for e in export.exports],
        "references": _references(records, values),
        "stages": [_stage_row(records, stage) for stage in STAGES],
        "sessions": _sessions(folder),
    }
    atomic_write_json(folder / "summary.json", FORMATS["run-summary"].stamp(summary))
    return summary


def _device(device: DeviceResult) -> dict[str, Any]:
    primary = device.primary
    return {
        "name": primary.name,
        "backend": primary.backend,
        "threads": primary.threads,
        "fingerprint": primary.fingerprint,
        "notes": device.notes,
        "all": [d.name for d in device.devices],
    }


def _predictor(predictor: PredictorResult, primary: str) -> dict[str, Any]:
    found = predictor.for_device(primary)
    if found is None:
        return {"kind": None, "held_out_networks": None, "within_10pct": None, "lut_within_10pct": None, "mape_pct": None}
    return {
        "kind": found.kind,
        "held_out_networks": found.held_out_networks,
        "within_10pct": found.metric("calibrated", "within_10pct"),
        "lut_within_10pct": found.metric("lut", "within_10pct"),
        "mape_pct": found.metric("calibrated", "mape_pct"),
    }


def _status(records: Records, stage: str) -> dict[str, Any]:
    meta = records.meta(stage)
    return {"status": meta.status, "reason": meta.reason}


def _search(records: Records, search: SearchResult) -> dict[str, Any]:
    return _status(records, "search") | {
        "strategy": search.strategy,
        "trials": len(search.trials),
        **_evaluation(search),
        "best": typedjson.to_json(search.best),  # predicted_ms in table time
        "measured_best": _measured_best(search),
    }


def _evaluation(search: SearchResult) -> dict[str, Any]:
    """How candidates were scored: ``inherited`` (weights from ``supernet``, hwnas.search.inherited) or ``trained``
    (a proxy epoch each); the two accuracies are not comparable, so a reader must be told which one the winner's is."""
    executor = search.executor or {}
    inherited = executor.get("evaluation") == "inherited"
    return {"evaluation": "inherited" if inherited else "trained", "supernet": executor.get("supernet") if inherited else None}


def _measured_best(search: SearchResult) -> dict[str, Any] | None:
    """The search's best, retrained and measured on the device (finish_search): its verdict and the next feasible one."""
    best = search.finished.best if search.finished else None
    if not best:
        return None
    following = best.get("next_feasible")
    return {
        "arch": best["arch"],
        "verdict": best["verdict"],
        "next_feasible": following["arch"] if following else None,
        "switched_to_next_feasible": search.switched,
    }


def _model(train: TrainResult) -> dict[str, Any]:
    return {
        "arch": train.arch,
        "val_accuracy": train.val_accuracy,
        "test_accuracy": train.test_accuracy,
        "epochs": len(train.curve),
        "params": train.params,
        "flops": train.flops,
    }


def _prune(records: Records, values: Values) -> dict[str, Any]:
    prune = _get(values, PruneResult)
    return _status(records, "prune") | {"kept": prune.kept if prune else None, "why": prune.why if prune else None}


def _final(export: ExportResult, prune: PruneResult | None) -> dict[str, Any]:
    kept = prune.kept_model if prune else None
    pruned = None
    if prune and kept:
        pruned = {"method": prune.kept, "test_accuracy": kept.test_accuracy, "params": kept.params, "flops": kept.flops}
    predicted = {
        device: typedjson.to_json(p) | {"today_ms": p.today_ms, "time_frame": "table" if p.in_table_time else "today"}
        for device, p in export.predicted.items()
    }
    return {
        "model": export.model,
        "pruned": pruned,
        "predicted": predicted,
        "measured_ms": export.measured_ms,
        "within_budget": export.within_budget,
        "verified": export.verified,
    }


def _export_item(item: dict[str, Any]) -> dict[str, Any]:
    verification = item["verification"]
    return {
        "format": item["format"],
        "file": f"export/{item['file']}",
        "bytes": item["bytes"],
        "verified": verification["passed"],
        "max_abs_diff": verification.get("max_abs_diff"),
        "output_scale": verification.get("output_scale"),
        "latency_ms": {m["device"]: m["median_ms"] for m in item["latency"] if "median_ms" in m},
    }


def _references(records: Records, values: Values) -> dict[str, Any]:
    found = _get(values, ReferencesResult)
    models = found.models if found else []
    rows = [{key: m.get(key) for key in ("name", "test_accuracy", "measured_ms", "within_budget", "beats")} for m in models]
    return _status(records, "references") | {
        "searched_ms": found.searched.get("measured_ms") if found else None,
        "searched_test_accuracy": found.searched.get("test_accuracy") if found else None,
        "models": rows,
        "beaten_by": found.beaten_by if found else [],
        "verdict": found.verdict if found else records.meta("references").reason,
    }


def _stage_row(records: Records, stage: Stage[Any]) -> dict[str, Any]:
    if records.get(stage.name) is None and stage.missing is not None:  # a run folder from before the stage existed
        return {"stage": stage.name, "status": "skipped", "seconds": 0.0, "session": 0}
    meta = records.meta(stage.name)
    return {"stage": stage.name, "status": meta.status, "seconds": meta.seconds, "session": meta.session}


def _sessions(folder: Path) -> int:
    path = folder / "sessions.json"
    found = read_json(path, "run sessions") if path.exists() else []
    return len(found) if isinstance(found, list) else 0


def _cores(values: Values) -> dict[str, Any]:
    """How the cores this process may use were shared out, stage by stage."""
    device, table = _get(values, DeviceResult), _get(values, TableResult)
    search, train = _get(values, SearchResult), _get(values, TrainResult)
    prune, references = _get(values, PruneResult), _get(values, ReferencesResult)
    used = [
        {"stage": "table", "what": f"profiling {t.device}: converting", "workers": t.profile["conversion_workers"], "threads": 1}
        for t in table.tables
        if t.profile
    ]
    if search.executor:
        what = "training candidates" + (" (Ray)" if search.executor.get("ray") else "")
        used.append({"stage": "search", "what": what, "workers": search.executor["slots"], "threads": search.executor["threads"]})
    busy = (train.load or {}).get("busy", 0)
    note = f" ({busy} core(s) busy with other processes)" if busy else ""
    used.append({"stage": "train", "what": f"retraining the winner{note}", "workers": 1, "threads": train.threads})
    if prune and prune.threads:
        used.append({"stage": "prune", "what": "fine-tuning pruned models", "workers": 1, "threads": prune.threads})
    if references and references.threads:
        used.append(
            {"stage": "references", "what": "training the reference networks", "workers": 1, "threads": references.threads}
        )
    for item in device.devices:
        pinned = f"cores {item.cores}" if item.cores else "pinned"
        used.append(
            {
                "stage": "table, search, export, references",
                "what": f"timing on {item.name} ({pinned}, nothing else running)",
                "workers": 1,
                "threads": item.threads,
            }
        )
    return {"available": device.cores, "use": used}


__all__ = ["read_values", "write_summary"]
