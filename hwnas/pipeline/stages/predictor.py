"""Stage ``predictor``: each device's calibrated latency predictor, judged on held-out networks, refitted on all.

A quarter of the table's whole networks is held out and predicted by the calibrated predictor and by the
plain table sum (both figures kept for the report's fidelity plot); the file written
(``predictor/<device>.skops``) is refitted on every network. With fewer than
:data:`MIN_PREDICTOR_NETWORKS` networks the table sum is the predictor. Predictions are in table time.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwnas.errors import UserError
from hwnas.pipeline.context import RunContext
from hwnas.pipeline.stage import Stage, StageResult
from hwnas.pipeline.stages.table import TableInfo, TableResult, table_path

MIN_PREDICTOR_NETWORKS = 8
HOLDOUT = 0.25


@dataclass(frozen=True)
class PredictorInfo:
    """One device's predictor: ``held_out`` holds the metrics per kind (``calibrated``, ``lut``), ``points`` the plot's."""

    device: str
    kind: str
    networks: int
    path: str
    held_out: dict[str, Any] = field(default_factory=dict)
    points: dict[str, list[float]] | None = None
    train_networks: int | None = None
    held_out_networks: int | None = None
    note: str | None = None

    def metric(self, kind: str, name: str) -> Any:
        """A held-out metric (``within_10pct``, ``mape_pct``, ``n``) of ``kind`` (``calibrated`` or ``lut``), or None."""
        found = self.held_out.get(kind)
        return found.get(name) if isinstance(found, dict) else None


@dataclass(frozen=True)
class PredictorResult(StageResult):
    STAGE = "predictor"

    predictors: list[PredictorInfo]

    def for_device(self, device: str) -> PredictorInfo | None:
        return next((p for p in self.predictors if p.device == device), None)


def predictor_path(context: RunContext, device: str) -> Path:
    return context.folder / "predictor" / f"{device}.skops"


def load_run_predictor(context: RunContext, device: str) -> Any:
    from hwnas.predictors.io import load_predictor

    return load_predictor(predictor_path(context, device), space=context.space)


def run(context: RunContext) -> PredictorResult:
    return PredictorResult(predictors=[_fit(context, item) for item in context.result(TableResult).tables])


def _fit(context: RunContext, item: TableInfo) -> PredictorInfo:
    from hwnas.latency_tables.table import LatencyTable
    from hwnas.predictors.data import networks_from_table
    from hwnas.predictors.io import save_predictor
    from hwnas.predictors.latency import make_predictor

    path = table_path(context, item)
    table = LatencyTable.load(path)
    networks = networks_from_table(table.networks, context.space, source=str(path))
    if not networks:
        raise UserError(f"the table of {item.device} has no measured whole networks; profile it with --networks N")
    kind = "calibrated" if len(networks) >= MIN_PREDICTOR_NETWORKS else "lut"
    judged = _held_out(context, table, networks) if kind == "calibrated" else {}
    final = make_predictor(kind, table).fit([n.arch for n in networks], [n.ms for n in networks])
    path = predictor_path(context, item.device)
    save_predictor(
        final,
        path,
        metrics=judged.get("held_out"),
        extra={"evaluation": "metrics: fitted on 75% of the networks, scored on the other 25%; this file is refitted on all"},
    )
    info = PredictorInfo(device=item.device, kind=kind, networks=len(networks), path=context.stored(path), **judged)
    if kind != "calibrated":
        note = f"only {len(networks)} measured networks (< {MIN_PREDICTOR_NETWORKS}): the table sum is the predictor"
        return dataclasses.replace(info, note=note)
    within, lut = info.metric(kind, "within_10pct"), info.metric("lut", "within_10pct")
    if within is not None:
        context.log(
            f"latency predictor of {item.device}: {within:.0%} of {info.metric(kind, 'n')} held-out networks "
            f"within ±10% (MAPE {info.metric(kind, 'mape_pct'):.1f}%; table sum {lut:.0%})"
        )
    return info


def _held_out(context: RunContext, table: Any, networks: list[Any]) -> dict[str, Any]:
    """The calibrated predictor fitted on 75% of the networks and scored on the rest, beside the plain table sum."""
    from hwnas.predictors.data import split
    from hwnas.predictors.latency import LutSum
    from hwnas.predictors.workflow import fit_and_evaluate

    evaluated, report = fit_and_evaluate(table, networks, "calibrated", holdout=HOLDOUT, seed=context.config.seed)
    train, held = split(networks, HOLDOUT, context.config.seed)  # the split fit_and_evaluate made (same seed)
    return {
        "held_out": report.get("held_out", {}),
        "points": {
            "measured": [n.ms for n in held],
            "calibrated": [float(v) for v in evaluated.predict([n.arch for n in held])],
            "lut": [float(v) for v in LutSum(table).predict([n.arch for n in held])],
        },
        "train_networks": len(train),
        "held_out_networks": len(held),
    }


STAGE = Stage("predictor", ("table",), PredictorResult, run)
