"""Stage ``prune``: AMC (and, unless quick, uniform and global-magnitude baselines) on the retrained winner.

The target is the budget, or 80% of the winner's predicted latency when it is already within; latencies are
predicted from the first device's table scaled to today's time (the drift ratio beyond 10%), so the job's
predictions and its measured check agree. Every result is then re-timed on the first device in the same
interleaved rounds, and :func:`choose_pruned` keeps the better model whichever method made it. A budget below
what pruning can reach (:class:`~hwnas.errors.BudgetUnreachable`) skips the stage, saying so.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwnas.pipeline.context import FALLBACK_DEVICE, RunContext, free_cores
from hwnas.pipeline.stage import Skipped, Stage, StageResult
from hwnas.pipeline.stages.device import DeviceResult
from hwnas.pipeline.stages.table import TableResult, table_path
from hwnas.pipeline.stages.train import TrainResult
from hwnas.typedjson import checked

PRUNE_KEEP_ACCURACY_LOSS = 0.005  # a pruned model that is faster is kept if it loses at most this much test accuracy
TARGET_SPEEDUP = 0.8  # a winner already under the budget is pruned to this share of its latency
PRUNE_TIMING_ROUNDS = 8


@dataclass(frozen=True)
class PrunedModel:
    """One result of the pruning job (``unpruned`` is the winner fine-tuned like the others): measured ms per device."""

    test_accuracy: float = field(metadata=checked("fraction"))
    flops: int = field(metadata=checked("positive"))
    params: int = field(metadata=checked("positive"))
    # today's time, per device (the first device's from the interleaved re-timing)
    latency_ms: dict[str, float] = field(metadata=checked("positive"))
    folder: str
    # the job's latency model, on the first device's drift-scaled table (today's time)
    predicted_ms: float | None = field(default=None, metadata=checked("positive"))


@dataclass(frozen=True)
class PruneResult(StageResult):
    """``kept``: the model the run goes on with (``unpruned`` or a method's name); ``final``: its folder."""

    STAGE = "prune"

    models: dict[str, PrunedModel]
    kept: str
    why: str
    final: str
    budget: str | None = None
    timing: dict[str, Any] = field(default_factory=dict)
    wall_time_s: float | None = None
    latency_retries: list[dict[str, Any]] = field(default_factory=list)
    threads: int | None = None
    resource_note: str | None = None
    ran: bool = True

    @property
    def kept_model(self) -> PrunedModel | None:
        """The kept pruned model (``None`` when the unpruned winner was kept)."""
        return None if self.kept == "unpruned" else self.models.get(self.kept)


def final_folder(context: RunContext) -> Path:
    """The model the run exports: the kept pruned one, or the retrained winner when pruning kept it or was skipped."""
    prune = context.outcome(PruneResult)
    if isinstance(prune, PruneResult):
        return context.inside(prune.final, "stages/prune.json: final")
    return context.inside(context.result(TrainResult).folder, "stages/train.json: folder")


def run(context: RunContext) -> PruneResult | Skipped:
    if context.config.prune.episodes == 0:
        why = "prune skipped: none asked for (prune.episodes = 0)"
        context.log(why)
        return Skipped(why)
    import torch

    from hwnas.errors import BudgetUnreachable
    from hwnas.pruning.api import prune
    from hwnas.pruning.base import load_base

    trained = context.result(TrainResult)
    data = context.training_data()
    load = free_cores()
    torch.set_num_threads(load["free"])  # fine-tuning the pruned models
    torch.manual_seed(context.config.seed)
    base = load_base(str(context.inside(trained.folder, "stages/train.json: folder")), None, data, seed=context.config.seed)
    table = _today_table(context)
    config = _prune_config(context, base, table)
    try:
        report = prune(
            base, data, config, context.folder / "prune", table=table, data_source=context.data_source, log=context.log
        )
    except BudgetUnreachable as error:
        why = f"prune skipped: {error}"
        context.log(why)
        return Skipped(why)
    models = report["models"]
    devices = context.result(DeviceResult)
    timing = retime_pruned(context, models, devices.primary.model_format)
    typed = {name: _pruned(m, context.stored(m["folder"])) for name, m in models.items()}
    kept, why = choose_pruned(typed, devices.primary.name, context.result(TableResult).budget_ms)
    context.log(f"prune: keeping the {kept} model ({why})")
    return PruneResult(
        models=typed,
        kept=kept,
        why=why,
        final=typed[kept].folder if kept != "unpruned" else trained.folder,
        budget=config.budget.describe(),
        timing=timing,
        wall_time_s=report.get("wall_time_s"),
        latency_retries=report.get("latency_retries", []),
        threads=load["free"],
        resource_note=report.get("resource_note"),
    )


def _today_table(context: RunContext) -> Any:
    """The first device's table as the device runs today (drift beyond 10%): the job's latency model and its check agree."""
    from hwnas.latency_tables.table import LatencyTable

    tables = context.result(TableResult)
    return scaled_table(LatencyTable.load(table_path(context, tables.primary)), tables.scale)


def _prune_config(context: RunContext, base: Any, table: Any) -> Any:
    """AMC's settings: the target (the budget, or 80% of the unpruned network), devices and formats timed."""
    from hwnas.predictors.network_latency import network_latency
    from hwnas.pruning.api import make_prune_config
    from hwnas.pruning.budget import Budget

    budget_ms = context.result(TableResult).budget_ms
    devices = context.result(DeviceResult).devices
    quick = context.config.quick
    unpruned_ms = network_latency(base.module, tuple(base.input_shape), table).total_ms  # the job's units
    target = min(budget_ms, unpruned_ms * TARGET_SPEEDUP)
    budget = Budget("latency-ms", round(target, 5))
    aim = "the budget" if target == budget_ms else f"{TARGET_SPEEDUP:.0%} of the unpruned network's predicted latency"
    settings = context.config.prune
    config = make_prune_config(
        budget,
        episodes=settings.episodes,
        finetune_epochs=settings.finetune_epochs,
        baselines=settings.baselines,
        seed=context.config.seed,
        # a quick run times the pruned models in the first device's format only (the export stage does every format)
        formats=(devices[0].model_format,) if quick else tuple(dict.fromkeys([devices[0].model_format, "onnx"])),
        devices=tuple(dict.fromkeys([d.spec for d in devices] + ([] if quick else [FALLBACK_DEVICE]))),
        heldout=500 if quick else 1000,
    )
    context.log(
        f"prune: AMC, {config.episodes} episodes, {budget.describe()} ({aim}; unpruned predicted {unpruned_ms:.4f} ms, "
        f"budget {budget_ms:.4f} ms, today's time)"
    )
    return config


def _pruned(model: dict[str, Any], folder: str) -> PrunedModel:
    return PrunedModel(
        test_accuracy=model["test_accuracy"],
        flops=model["flops"],
        params=model["params"],
        latency_ms=model["measured"]["latency_ms"],
        predicted_ms=model.get("resource"),
        folder=folder,
    )


def scaled_table(table: Any, scale: float) -> Any:
    """``table`` with every layer's figures times ``scale`` (the drift ratio), so it predicts today's milliseconds."""
    if scale == 1.0:
        return table

    def times(value: float | None) -> float | None:
        return None if value is None else value * scale

    entries = {
        key: dataclasses.replace(entry, median_ms=entry.median_ms * scale, p10_ms=times(entry.p10_ms), p90_ms=times(entry.p90_ms))
        for key, entry in table.entries.items()
    }
    return dataclasses.replace(table, entries=entries)


def retime_pruned(context: RunContext, models: dict[str, Any], fmt: str) -> dict[str, Any]:
    """Time every model of the pruning job again on the first device, all in the same interleaved rounds.

    The job times each model once, when it is made, minutes apart; on this VM that alone moved one file 0.26 ->
    0.36 ms. The keep decision compares these medians (they replace the job's figures on the first device).
    """
    from hwnas.devices import make_backend
    from hwnas.search.measure import time_interleaved

    files = _exported_files(models, fmt)
    if len(files) < 2:
        return {"retimed": False, "why": "fewer than two pruning results have a file to time"}
    spec = context.result(DeviceResult).primary.device_spec()
    rounds = 3 if context.config.quick else PRUNE_TIMING_ROUNDS
    timed = time_interleaved(make_backend(spec), files, rounds)
    summaries = {name: value.summary() for name, value in timed.items()}
    for name, summary in summaries.items():
        latency = models[name]["measured"]["latency_ms"]
        summary["when_made_ms"] = latency.get(spec.name)
        latency[spec.name] = summary["median_ms"]
    return {"retimed": True, "device": spec.name, "rounds": rounds, "summaries": summaries}


def _exported_files(models: dict[str, Any], fmt: str) -> dict[str, Path]:
    """Each pruning result's verified file in ``fmt`` (from its model card)."""
    from hwnas.fileio import read_json

    files = {}
    for name, model in models.items():
        card_path = Path(model["folder"]) / "export" / "model_card.json"
        card = read_json(card_path, "model card") if card_path.exists() else {}
        item = next((e for e in card.get("exports", []) if e.get("format") == fmt and e.get("file")), None)
        if item is not None and item.get("verification", {}).get("passed", True):
            files[name] = card_path.parent / item["file"]
    return files


def choose_pruned(models: dict[str, PrunedModel], primary: str, budget_ms: float) -> tuple[str, str]:
    """Which model the run goes on with: the unpruned winner, or one of the pruned ones (AMC's or a baseline's).

    A pruned model qualifies when it measures faster on ``primary`` and loses at most
    :data:`PRUNE_KEEP_ACCURACY_LOSS` test accuracy, or when it alone measures within the budget. Of those, the
    most accurate is kept, and at equal accuracy the fastest: uniform pruning at the same budget sometimes
    matches AMC's accuracy at a lower latency (the 2026-12-01 default run: both 88.2%, 0.215 vs 0.272 ms), and
    the user wants the better network whichever method made it.
    """
    before_ms, before_accuracy = models["unpruned"].latency_ms.get(primary), models["unpruned"].test_accuracy
    if before_ms is None:
        return "unpruned", "the unpruned model was not measured on the device"
    quicker = {
        name: after
        for name, model in models.items()
        if name != "unpruned" and (after := model.latency_ms.get(primary)) is not None and after < before_ms
    }
    faster = [name for name in quicker if models[name].test_accuracy >= before_accuracy - PRUNE_KEEP_ACCURACY_LOSS]
    within_alone = [name for name, after in quicker.items() if name not in faster and before_ms > budget_ms >= after]
    if faster:
        best = min(faster, key=lambda n: (-round(models[n].test_accuracy, 4), quicker[n]))
        return best, f"faster on the device at most {PRUNE_KEEP_ACCURACY_LOSS:.1%} less accurate, the best of {', '.join(faster)}"
    if within_alone:
        best = max(within_alone, key=lambda n: models[n].test_accuracy)
        return best, "only the pruned models measure within the budget; the most accurate of them"
    if quicker:
        return "unpruned", "the pruned models lose more accuracy than the speed is worth"
    return "unpruned", "no pruned model is faster on the device"


STAGE = Stage("prune", ("device", "table", "train"), PruneResult, run)
