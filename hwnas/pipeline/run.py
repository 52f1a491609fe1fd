"""``hwnas run``: the whole pipeline as resumable stages in one run folder, then the report.

The run folder::

    config.toml          the settings (defaults <- run.toml <- options) and what the run resolved (budget)
    sessions.json        each time the command ran on this folder
    stages/*.json        one record per finished stage (stages/export/, stages/search-front/: per item)
    tables/              the latency table of each device (a copy, or the profile this run made: store.sqlite)
    predictor/           the calibrated latency predictor of each device (skops + sidecar)
    search/              the search's trials (Optuna storage, search.db)
    model/               the retrained winner (result.json, model.pt)
    prune/               AMC and its baselines, each a run folder (pruned.json, model.pt)
    export/              the deployable files, model_card.md / .json
    references/          torchvision reference networks, trained like the winner and exported (timed beside it)
    report.md, report.html, report/*.png, summary.json
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hwnas.errors import UserError
from hwnas.fileio import atomic_write_json
from hwnas.formats import FORMATS
from hwnas.pipeline import stages
from hwnas.pipeline.config import RunConfig, differences, read_config, write_config
from hwnas.pipeline.records import Records
from hwnas.pipeline.references import references_stage

STAGES: tuple[tuple[str, Callable[[stages.Run], dict[str, Any]]], ...] = (
    ("device", stages.device_stage),
    ("table", stages.table_stage),
    ("predictor", stages.predictor_stage),
    ("search", stages.search_stage),
    ("train", stages.train_stage),
    ("prune", stages.prune_stage),
    ("export", stages.export_stage),
    ("references", references_stage),
)
STAGE_NAMES = tuple(name for name, _ in STAGES)
CONFIG_FILE = "config.toml"
MARKER_FILES = (CONFIG_FILE, "sessions.json")


def default_out(config: RunConfig) -> Path:
    """``runs/run-<space>-<first device>[-quick]``: the same command finds the same folder, so it resumes."""
    device = Path(config.devices[0]).stem
    space = Path(config.space).stem
    return Path("runs") / f"run-{space}-{device}{'-quick' if config.quick else ''}"


def prepare_folder(folder: Path, config: RunConfig, fresh: bool) -> None:
    """Refuse to mix two runs in one folder; ``fresh`` empties a run folder (and only a run folder) first."""
    path = folder / CONFIG_FILE
    if fresh and folder.exists():
        if not path.exists() and any(folder.iterdir()):
            raise UserError(f"--fresh would empty {folder}, which is not a run folder (no {CONFIG_FILE}); choose another --out")
        shutil.rmtree(folder)
    if folder.exists() and not path.exists() and any(folder.iterdir()):
        raise UserError(f"{folder} exists and is not a run folder (no {CONFIG_FILE}); choose another --out")
    if path.exists():
        stored = read_config(path)
        found = differences(stored.identity(), config.identity())
        if found:
            raise UserError(
                f"run folder {folder} was started with other settings ({'; '.join(found[:3])}); "
                "re-run with --fresh to start it over, or give another --out"
            )
    else:
        write_config(path, config)


def run_pipeline(
    config: RunConfig, folder: Path, *, fresh: bool = False, log: Callable[[str], None] = print, progress: bool = True
) -> dict[str, Any]:
    """Every stage not finished before, then the report; returns the summary (also ``summary.json``)."""
    from hwnas.presets import resolve_space

    space = resolve_space(config.space)
    prepare_folder(folder, config, fresh)
    records = Records.open(folder, sys.argv[1:])
    run = stages.Run(config, folder, records, space, log, progress)
    for name, work in STAGES:
        record = records.stage(name, lambda work=work: work(run), log)
        run.found[name] = record["result"]
        if name == "table":
            write_config(folder / CONFIG_FILE, config, {"budget_ms": record["result"]["budget_ms"]})
    from hwnas.pipeline.report import render_report

    started = time.perf_counter()
    summary = write_summary(folder, records)
    render_report(folder, summary, report_seconds=time.perf_counter() - started)
    return summary


def write_summary(folder: Path, records: Records | None = None) -> dict[str, Any]:
    """``summary.json`` from the stage records (what ``hwnas report`` re-reads too)."""
    records = records or Records(folder)
    found = {name: records.get(name) for name in STAGE_NAMES}
    missing = [name for name, record in found.items() if record is None]
    if missing:
        raise UserError(f"{folder}: stage {missing[0]} has not finished; run the same hwnas run command again to finish it")
    result = {name: record["result"] for name, record in found.items()}  # type: ignore[index]
    device, table, predictor = result["device"], result["table"], result["predictor"]
    search, train, prune, export = result["search"], result["train"], result["prune"], result["export"]
    references = result["references"]
    primary = device["devices"][0]["name"]
    calibrated = next((p for p in predictor["predictors"] if p["device"] == primary), {})
    summary = {
        "run_folder": str(folder),
        "device": {
            "name": primary,
            "backend": device["devices"][0]["backend"],
            "threads": device["devices"][0]["threads"],
            "fingerprint": device["devices"][0]["fingerprint"],
            "notes": device["notes"],
            "all": [d["name"] for d in device["devices"]],
        },
        "cores": _cores(device, search, train, table, prune, references),
        "budget_ms": table["budget_ms"],
        "budget_source": table["budget_source"],
        "drift_scale": table.get("scale", 1.0),
        "table_budget_ms": table.get("table_budget_ms", table["budget_ms"]),
        "drift": {t["device"]: t["drift"].get("ratio") for t in table["tables"]},
        "tables": {t["device"]: {"source": t["source"], "origin": t["origin"]} for t in table["tables"]},
        "predictor": {
            "kind": calibrated.get("kind"),
            "held_out_networks": calibrated.get("held_out_networks"),
            "within_10pct": calibrated.get("held_out", {}).get("calibrated", {}).get("within_10pct"),
            "lut_within_10pct": calibrated.get("held_out", {}).get("lut", {}).get("within_10pct"),
            "mape_pct": calibrated.get("held_out", {}).get("calibrated", {}).get("mape_pct"),
        },
        "search": {
            "status": found["search"]["status"],  # type: ignore[index]
            "reason": found["search"]["reason"],  # type: ignore[index]
            "strategy": search.get("strategy"),
            "trials": len(search.get("trials", [])),
            "best": search["best"],
            "measured_best": _measured_best(search),
        },
        "model": {
            "arch": train["arch"],
            "val_accuracy": train["val_accuracy"],
            "test_accuracy": train["test_accuracy"],
            "epochs": len(train["curve"]),
            "params": train["params"],
            "flops": train["flops"],
        },
        "prune": {
            "status": found["prune"]["status"],  # type: ignore[index]
            "reason": found["prune"]["reason"],  # type: ignore[index]
            "kept": prune.get("kept"),
            "why": prune.get("why"),
        },
        "final": {
            "model": export["model"],
            "pruned": _pruned_figures(prune),
            "predicted": export["predicted"],
            "measured_ms": export["measured_ms"],
            "within_budget": export["within_budget"],
            "verified": export["verified"],
        },
        "exports": [
            {
                "format": e["format"],
                "file": f"export/{e['file']}",
                "bytes": e["bytes"],
                "verified": e["verification"]["passed"],
                "max_abs_diff": e["verification"].get("max_abs_diff"),
                "output_scale": e["verification"].get("output_scale"),
                "latency_ms": {m["device"]: m["median_ms"] for m in e["latency"] if "median_ms" in m},
            }
            for e in export["exports"]
        ],
        "references": {
            "status": found["references"]["status"],  # type: ignore[index]
            "reason": found["references"]["reason"],  # type: ignore[index]
            "searched_ms": (references.get("searched") or {}).get("measured_ms"),
            "searched_test_accuracy": (references.get("searched") or {}).get("test_accuracy"),
            "models": [
                {
                    "name": m["name"],
                    "test_accuracy": m.get("test_accuracy"),
                    "measured_ms": m.get("measured_ms"),
                    "within_budget": m.get("within_budget"),
                    "beats": m.get("beats"),
                }
                for m in references.get("models", [])
            ],
            "beaten_by": references.get("beaten_by", []),
            "verdict": references.get("verdict"),
        },
        "stages": [
            {"stage": name, "status": record["status"], "seconds": record["seconds"], "session": record["session"]}  # type: ignore[index]
            for name, record in found.items()
        ],
        "sessions": _sessions(folder),
    }
    atomic_write_json(folder / "summary.json", FORMATS["run-summary"].stamp(summary))
    return summary


def _pruned_figures(prune: dict[str, Any]) -> dict[str, Any] | None:
    """The kept pruned model's accuracy and size (``None`` when the unpruned winner was kept or pruning did not run)."""
    kept = prune.get("kept")
    model = (prune.get("models") or {}).get(kept) if kept and kept != "unpruned" else None
    if not model:
        return None
    return {"method": kept} | {key: model.get(key) for key in ("test_accuracy", "params", "flops")}


def _measured_best(search: dict[str, Any]) -> dict[str, Any] | None:
    """The search's best, retrained and measured on the device (finish_search): its verdict and the next feasible one."""
    finished = search.get("finished")
    if not finished or not finished.get("best"):
        return None
    best = finished["best"]
    following = best.get("next_feasible")
    return {
        "arch": best["arch"],
        "verdict": best["verdict"],
        "next_feasible": following["arch"] if following else None,
        "switched_to_next_feasible": bool(search.get("switched")),
    }


def _sessions(folder: Path) -> int:
    from hwnas.fileio import read_json

    path = folder / "sessions.json"
    found = read_json(path, "run sessions") if path.exists() else []
    return len(found) if isinstance(found, list) else 0


def _cores(
    device: dict[str, Any],
    search: dict[str, Any],
    train: dict[str, Any],
    table: dict[str, Any],
    prune: dict[str, Any],
    references: dict[str, Any],
) -> dict[str, Any]:
    """How the cores this process may use were shared out, stage by stage."""
    total = device["cores"]
    used = []
    profiled = [t for t in table["tables"] if t.get("profile")]
    for item in profiled:
        used.append(
            {
                "stage": "table",
                "what": f"profiling {item['device']}: converting",
                "workers": item["profile"]["conversion_workers"],
                "threads": 1,
            }
        )
    executor = search.get("executor")
    if executor:
        used.append(
            {
                "stage": "search",
                "what": "training candidates" + (" (Ray)" if executor.get("ray") else ""),
                "workers": executor["slots"],
                "threads": executor["threads"],
            }
        )
    busy = (train.get("load") or {}).get("busy", 0)
    note = f" ({busy} core(s) busy with other processes)" if busy else ""
    used.append({"stage": "train", "what": f"retraining the winner{note}", "workers": 1, "threads": train["threads"]})
    if prune.get("threads"):
        used.append({"stage": "prune", "what": "fine-tuning pruned models", "workers": 1, "threads": prune["threads"]})
    if references.get("threads"):
        used.append(
            {"stage": "references", "what": "training the reference networks", "workers": 1, "threads": references["threads"]}
        )
    for item in device["devices"]:
        pinned = f"cores {item['cores']}" if item.get("cores") else "pinned"
        used.append(
            {
                "stage": "table, search, export, references",
                "what": f"timing on {item['name']} ({pinned}, nothing else running)",
                "workers": 1,
                "threads": item["threads"],
            }
        )
    return {"available": total, "use": used}
