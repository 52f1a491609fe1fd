"""Stage ``references``: torchvision networks a user would otherwise pick, trained and timed beside the final model.

Each reference (:mod:`hwnas.pipeline.references`) is trained with the winner's final recipe and epochs on the
same images, exported to the first device's format (verified), then every reference and the run's final file
are timed in the same interleaved rounds on the device, so the comparison is like for like. Each reference
is one item of the stage record and the timing another: a killed run resumes without training a finished
reference again. No references asked for (``references.models = []``) skips the stage.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from typing import Any

from hwnas.pipeline.context import RunContext, free_cores
from hwnas.pipeline.references import REFERENCE_MODELS, SEARCHED, compare, export_reference, reference_module, train_reference
from hwnas.pipeline.stage import Skipped, Stage, StageResult
from hwnas.pipeline.stages.device import DeviceResult
from hwnas.pipeline.stages.export import ExportResult
from hwnas.pipeline.stages.prune import PruneResult
from hwnas.pipeline.stages.table import TableResult
from hwnas.pipeline.stages.train import TrainResult


@dataclass(frozen=True)
class ReferencesResult(StageResult):
    """``models``: one row per reference (accuracy, file, ``measured_ms``, ``beats``, ``why``); ``searched``: the run's
    final model measured in the same rounds; ``verdict``: one sentence saying whether any reference beats it."""

    STAGE = "references"

    models: list[dict[str, Any]]
    searched: dict[str, Any]
    verdict: str
    beaten_by: list[str] = field(default_factory=list)
    device: str | None = None
    format: str | None = None
    rounds: int | None = None
    recipe: dict[str, Any] | None = None
    epochs: int | None = None
    train_images: int | None = None
    budget_ms: float | None = None
    threads: int | None = None
    ran: bool = True


def primary_format(context: RunContext) -> str:
    """The export format the first device runs (what the references are exported to and timed in)."""
    from hwnas.devices import export_format_for

    return export_format_for(context.result(DeviceResult).primary.device_spec())


def final_model(context: RunContext) -> dict[str, Any]:
    """The run's final model: its test accuracy, and its exported file in the first device's format (None if not there)."""
    prune, train = context.outcome(PruneResult), context.result(TrainResult)
    kept = prune.kept_model if isinstance(prune, PruneResult) else None
    # an unpruned final model is the train stage's (the pruning job's "unpruned" is a fine-tuned copy of it)
    accuracy, flops, params = (
        (kept.test_accuracy, kept.flops, kept.params) if kept else (train.test_accuracy, train.flops, train.params)
    )
    fmt = primary_format(context)
    exports = context.result(ExportResult).exports
    item = next((e for e in exports if e["format"] == fmt and e["verification"]["passed"]), None)
    return {
        "name": SEARCHED,
        "arch": train.arch,
        "kept": prune.kept if isinstance(prune, PruneResult) else "unpruned",
        "test_accuracy": accuracy,
        "flops": flops,
        "params": params,
        "file": f"export/{item['file']}" if item else None,  # in the run folder
        "format": fmt,
    }


def run(context: RunContext) -> ReferencesResult | Skipped:

    names = list(context.config.references.models)
    if not names:
        why = "references skipped: none asked for (references.models = [])"
        context.log(why)
        return Skipped(why)
    trained = context.result(TrainResult)
    recipe = trained.recipe_from_scratch()  # the winner's final recipe (a supernet's own), with its epochs
    data = context.training_data()
    fmt = primary_format(context)
    load = free_cores()
    context.log(
        f"references: {', '.join(names)}: {recipe.epochs} epoch(s) each on {len(data.train)} images with the winner's recipe, "
        f"exported to {fmt} and timed beside the final model"
    )
    rows = [_reference(context, label, data, recipe, fmt, load["free"]) for label in names]
    final = final_model(context)
    _time_together(context, rows, final)
    budget = context.result(TableResult).budget_ms
    compared, winners, verdict = compare(rows, final, budget)
    context.log(verdict)
    return ReferencesResult(
        device=context.result(DeviceResult).primary.name,
        format=fmt,
        rounds=context.config.references.rounds,
        recipe=recipe.to_json(),
        epochs=recipe.epochs,
        train_images=len(data.train),
        budget_ms=budget,
        searched=final,
        models=compared,
        beaten_by=winners,
        verdict=verdict,
        threads=load["free"],
    )


def _reference(context: RunContext, label: str, data: Any, recipe: Any, fmt: str, threads: int) -> dict[str, Any]:
    """One reference trained, exported and verified: an item of the stage record, done once."""

    def work() -> dict[str, Any]:
        import torch

        torch.set_num_threads(threads)
        resolution = int(context.result(TrainResult).resolution)
        module = reference_module(label, data.channels, data.num_classes, seed=context.config.seed)
        result = train_reference(module, data, recipe, resolution, data.channels, context.config.seed)
        model = result.pop("model")
        target = context.folder / "references" / label
        if target.exists():
            shutil.rmtree(target)  # a half-written export of a killed session
        exported = export_reference(model, data, resolution, data.channels, fmt, target, {"name": label})
        exported["file"] = f"references/{label}/{exported['file']}" if exported["file"] else None  # in the run folder
        context.log(f"reference {label}: test accuracy {result['test_accuracy']:.4f} after {result['train_s']:.0f} s")
        name, kwargs = REFERENCE_MODELS[label]
        return {"name": label, "torchvision": name, "kwargs": kwargs, "threads": threads} | result | exported

    return dict(context.records.item("references", label, work)["result"])


def _time_together(context: RunContext, rows: list[dict[str, Any]], final: dict[str, Any]) -> None:
    """Every reference's file and the final model's, timed in the same interleaved rounds (one item): ``measured_ms``."""
    from hwnas.devices import make_backend
    from hwnas.search.measure import time_interleaved

    files = {
        row["name"]: context.inside(row["file"], f"stages/references/{row['name']}.json: file") for row in rows if row.get("file")
    }
    if final["file"]:
        files[SEARCHED] = context.inside(final["file"], "stages/export.json: exports")
    spec = context.result(DeviceResult).primary.device_spec()
    rounds = context.config.references.rounds

    def timing() -> dict[str, Any]:
        timed = time_interleaved(make_backend(spec), files, rounds)
        return {name: value.summary() for name, value in timed.items()} | {"device": spec.name, "rounds": rounds}

    timed = context.records.item("references-timing", "-".join(sorted(files)), timing)["result"]
    for row in [*rows, final]:
        row["measured"] = timed.get(row["name"])
        row["measured_ms"] = row["measured"]["median_ms"] if row["measured"] else None


STAGE = Stage("references", ("device", "table", "train", "prune", "export"), ReferencesResult, run)
