"""Stage ``export``: the final model (pruned or not) to every device's format, ONNX and TFLite, verified and measured.

Each format is one item of the stage record (a resumed run does not export a finished format again); every
file is verified against PyTorch and timed on each device (ONNX also on this CPU). Beside the measurements
the stage keeps each device's prediction of the model: the calibrated predictor's (table time) and the same
times the latest drift ratio (today's time, what the measurement is compared with).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwnas import typedjson
from hwnas.arch import Arch
from hwnas.errors import UserError
from hwnas.pipeline.context import FALLBACK_DEVICE, RunContext
from hwnas.pipeline.stage import Stage, StageResult
from hwnas.pipeline.stages.device import DeviceResult
from hwnas.pipeline.stages.predictor import PredictorResult, load_run_predictor
from hwnas.pipeline.stages.prune import PruneResult, final_folder
from hwnas.pipeline.stages.search import SearchResult
from hwnas.pipeline.stages.table import TableInfo, TableResult, table_path
from hwnas.pipeline.stages.train import TrainResult
from hwnas.typedjson import checked


@dataclass(frozen=True)
class Prediction:
    """One device's prediction of the final model. ``calibrated_ms`` is in the table's time; ``drift_adjusted_ms`` is the
    same times ``drift_ratio`` (today / table), in today's time: the figure to compare with a measurement."""

    predictor: str
    calibrated_ms: float | None = field(default=None, metadata=checked("positive"))
    lut_sum_ms: float | None = field(default=None, metadata=checked("positive"))
    network_latency_ms: float | None = field(default=None, metadata=checked("positive"))
    correction: float | None = field(default=None, metadata=checked("positive"))
    drift_ratio: float | None = field(default=None, metadata=checked("positive"))
    drift_from: str | None = None
    drift_adjusted_ms: float | None = field(default=None, metadata=checked("positive"))

    @property
    def today_ms(self) -> float | None:
        """The prediction in today's time (the table's when no drift check gave a ratio: see :attr:`in_table_time`)."""
        return self.drift_adjusted_ms if self.drift_adjusted_ms is not None else self.calibrated_ms

    @property
    def in_table_time(self) -> bool:
        return self.drift_adjusted_ms is None


@dataclass(frozen=True)
class ExportResult(StageResult):
    """``exports``: one model-card entry per format (file, verification, latency per device); ``measured_ms``: the first
    timing of each device (today's time); ``within_budget``: the first device's measurement against the budget."""

    STAGE = "export"

    model: str
    input_shape: list[int]
    formats: list[str]
    exports: list[dict[str, Any]]
    predicted: dict[str, Prediction]
    measured_ms: dict[str, float] = field(metadata=checked("positive"))
    verified: bool
    within_budget: bool
    budget_ms: float = field(metadata=checked("positive"))
    model_card: str
    arch: str | None = None
    notes: list[str] = field(default_factory=list)


def run(context: RunContext) -> ExportResult:
    from hwnas.export_model import build_request, resolve_model
    from hwnas.exporters.model_card import write_model_card

    final = final_folder(context)
    resolved = resolve_model(str(final))
    shape = (1, resolved.channels, resolved.resolution, resolved.resolution)
    arch_text = resolved.info.get("arch")
    if isinstance(arch_text, str):
        predicted = predict_arch(context, context.space.parse(arch_text))
    else:  # a pruned model
        predicted = predict_pruned(context, resolved.module, shape, context.space.parse(context.result(TrainResult).arch))
    request = build_request(resolved, context.data_source, images=200 if context.config.quick else 500, calibration=100)
    request.info["predicted_latency_ms"] = {device: typedjson.to_json(p) for device, p in predicted.items()}
    formats, notes = export_formats(context)
    for note in notes:
        context.log(note)
    out = context.folder / "export"
    exports = _export(context, request, formats, out)
    write_model_card(out, request.info, exports)
    return _result(context, final, arch_text, shape, formats, notes, exports, predicted, out)


def _export(context: RunContext, request: Any, formats: list[str], out: Path) -> list[dict[str, Any]]:
    """Each format exported, verified and timed on every device (and ONNX Runtime on this CPU): one item each."""
    from hwnas.devices import DeviceSpec
    from hwnas.exporters import export_all

    specs = [device.device_spec() for device in context.result(DeviceResult).devices]
    host_ort = DeviceSpec.from_toml(FALLBACK_DEVICE)
    if host_ort.name not in {spec.name for spec in specs}:
        specs.append(host_ort)  # the ONNX file is timed on this CPU too
    exports = []
    for fmt in formats:

        def work(fmt: str = fmt) -> dict[str, Any]:
            card = export_all(request, [fmt], out, specs, on_step=context.log)
            return dict(card["exports"][0])

        exports.append(context.records.item("export", fmt, work)["result"])
    return exports


def _result(
    context: RunContext,
    final: Path,
    arch_text: Any,
    shape: tuple[int, ...],
    formats: list[str],
    notes: list[str],
    exports: list[dict[str, Any]],
    predicted: dict[str, Prediction],
    out: Path,
) -> ExportResult:
    budget = context.result(TableResult).budget_ms
    primary = context.result(DeviceResult).primary.name
    measured: dict[str, float] = {}
    for item in exports:
        for timing in item["latency"]:
            if "median_ms" in timing:
                measured.setdefault(timing["device"], float(timing["median_ms"]))
    return ExportResult(
        model=context.stored(final),
        arch=arch_text if isinstance(arch_text, str) else None,
        input_shape=list(shape),
        formats=formats,
        notes=notes,
        exports=exports,
        predicted=predicted,
        measured_ms=measured,
        verified=all(e["verification"]["passed"] for e in exports),
        within_budget=measured.get(primary) is not None and measured[primary] <= budget,
        budget_ms=budget,
        model_card=context.stored(out / "model_card.md"),
    )


def export_formats(context: RunContext) -> tuple[list[str], list[str]]:
    """(formats to export, notes on those left out): each device's deployable format, ONNX and TFLite always."""
    from hwnas.devices import formats_to_export
    from hwnas.exporters import get_exporter

    specs = [device.device_spec() for device in context.result(DeviceResult).devices]
    formats, notes = [], []
    for fmt in formats_to_export(specs):
        reason = get_exporter(fmt).unavailable_reason()
        if reason is None:
            formats.append(fmt)
        else:
            notes.append(f"{fmt} not exported: {reason}")
    return formats, notes


def latest_drift(context: RunContext, item: TableInfo) -> tuple[float | None, str]:
    """Today's timing over the table's for ``item``'s device, from the latest check that timed it, and how it was found.

    The table stage re-times a few networks once, at the start; the search's finish times the same networks again in
    the interleaved rounds of its candidates, minutes later. The two can differ by more than the drift itself: in the
    2026-12-01 default run 1.04 at the start and 0.80 in the rounds, where the final model then measured 0.77x its
    table-time prediction. So the later, interleaved figure is the one a prediction is adjusted with.
    """
    finished = context.result(SearchResult).finished
    ratio = finished.drift_ratio if finished else None
    if item.device == context.result(DeviceResult).primary.name and ratio is not None:
        return ratio, "the search's interleaved rounds"
    return item.drift_ratio, "the table stage's check"


def _with_drift(context: RunContext, item: TableInfo, prediction: Prediction) -> Prediction:
    ratio, how = latest_drift(context, item)
    ms = prediction.calibrated_ms
    adjusted = ms * ratio if ratio and ms else None
    return dataclasses.replace(prediction, drift_ratio=ratio, drift_from=how, drift_adjusted_ms=adjusted)


def predict_arch(context: RunContext, arch: Arch) -> dict[str, Prediction]:
    """Each device's calibrated prediction (and table sum) of ``arch``, with the drift-adjusted figure beside it."""
    from hwnas.latency_tables.table import LatencyTable

    found = {}
    tables = context.result(TableResult)
    for entry in context.result(PredictorResult).predictors:
        item = tables.for_device(entry.device)
        ms = float(load_run_predictor(context, entry.device).predict([arch])[0])
        lut = LatencyTable.load(table_path(context, item)).predict(context.space.op_keys(arch))
        found[entry.device] = _with_drift(context, item, Prediction(entry.kind, calibrated_ms=ms, lut_sum_ms=lut))
    return found


def predict_pruned(context: RunContext, module: Any, shape: tuple[int, ...], parent: Arch) -> dict[str, Prediction]:
    """A pruned network is not an architecture of the space: its layers from the table and the layer models, times
    the correction the calibrated predictor learned for the network it was pruned from (``parent``), per device.

    On the first device, the pruning job's own latency model gives both figures (it predicted every policy it
    tried); on the others, :func:`~hwnas.predictors.network_latency.network_latency` of both modules does.
    """
    parents = predict_arch(context, parent)
    found = {}
    for item in context.result(TableResult).tables:
        try:
            pruned_ms, parent_ms, how = _pruned_and_parent_ms(context, item, module, shape, parent)
        except UserError as error:
            found[item.device] = _with_drift(context, item, Prediction(f"not predicted: {error}"))
            continue
        parent_prediction = parents[item.device].calibrated_ms
        correction = parent_prediction / parent_ms if parent_prediction else 1.0
        prediction = Prediction(
            f"calibrated: {how} of the pruned widths x the unpruned network's learned correction {correction:.3f}",
            calibrated_ms=pruned_ms * correction,
            network_latency_ms=pruned_ms,
            correction=correction,
        )
        found[item.device] = _with_drift(context, item, prediction)
    return found


def _pruned_and_parent_ms(
    context: RunContext, item: TableInfo, module: Any, shape: tuple[int, ...], parent: Arch
) -> tuple[float, float, str]:
    """The pruned and the unpruned network's latency in table time on ``item``'s device, and which model gave them."""
    from hwnas.export_model import resolve_model
    from hwnas.latency_tables.table import LatencyTable
    from hwnas.predictors.network_latency import network_latency

    prune = context.outcome(PruneResult)
    if isinstance(prune, PruneResult) and item.device == context.result(DeviceResult).primary.name:
        kept, unpruned = prune.kept_model, prune.models.get("unpruned")
        if kept and unpruned and kept.predicted_ms and unpruned.predicted_ms:
            scale = context.result(TableResult).scale  # the job predicted on the drift-scaled table: back to table time
            return kept.predicted_ms / scale, unpruned.predicted_ms / scale, "the pruning job's latency model"
    table = LatencyTable.load(table_path(context, item))
    pruned_ms = network_latency(module, shape, table).total_ms
    parent_ms = network_latency(resolve_model(parent.format()).module, shape, table).total_ms
    return pruned_ms, parent_ms, "table + layer models"


STAGE = Stage("export", ("device", "table", "predictor", "search", "train", "prune"), ExportResult, run)
