"""Stage ``family``: with ``--family T1,T2,...``, the retrained winner grown into one network per budget (``hwnas scale``).

The winner is the family's base; its ratios come from a small grid of compound steps that each double its latency on
the first device, trained with the winner's recipe and epochs on the run's training images (:mod:`hwnas.family`).
Members are exported to the first device's format, verified and timed in the same interleaved rounds. The family
lives in ``family/`` of the run folder (``family.json``, one run folder per network, ``family.png``) and resumes
there. No budgets asked for, or a budget the winner already meets, skips the stage, saying why: the run's own network
is not affected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hwnas.pipeline.context import RunContext
from hwnas.pipeline.stage import Skipped, Stage, StageResult
from hwnas.pipeline.stages.device import DeviceResult
from hwnas.pipeline.stages.table import TableResult, table_path
from hwnas.pipeline.stages.train import TrainResult
from hwnas.typedjson import checked

if TYPE_CHECKING:  # the family job imports torch: loaded when the stage runs
    from hwnas.family.job import ScaleRequest
    from hwnas.family.records import FamilyReport

GRID, QUICK_GRID = 3, 1  # compound steps trained to choose the ratios


@dataclass(frozen=True)
class FamilyMember:
    budget_ms: float = field(metadata=checked("positive"))
    scaling: str
    arch: str
    measured_ms: float | None
    test_accuracy: float | None
    within: bool


@dataclass(frozen=True)
class FamilyResult(StageResult):
    """The family on the first device: its ratios, the base (the winner) and one member per budget."""

    STAGE = "family"

    folder: str
    device: str
    ratios: str
    base_ms: float = field(metadata=checked("positive"))
    base_accuracy: float | None
    members: list[FamilyMember]
    plot: str | None = None


def run(context: RunContext) -> FamilyResult | Skipped:
    budgets = context.config.family_ms
    if not budgets:
        return Skipped("no family asked for (--family T1,T2,...)")
    from hwnas.family.job import BudgetBelowBase, scale_family

    try:
        report = scale_family(_request(context, budgets), context.folder / "family", context.log)
    except BudgetBelowBase as error:
        context.log(f"family skipped: {error}")
        return Skipped(str(error))
    return _result(context, report)


def _request(context: RunContext, budgets: tuple[float, ...]) -> ScaleRequest:
    from hwnas.devices import make_backend
    from hwnas.family.job import ScaleRequest
    from hwnas.latency_tables.table import LatencyTable

    train = context.result(TrainResult)
    primary = context.result(DeviceResult).primary
    table = LatencyTable.load(table_path(context, context.result(TableResult).tables[0]))
    return ScaleRequest(
        space=context.space,
        base=context.space.parse(train.arch),
        recipe=train.recipe_from_scratch(),  # members train from scratch
        data=context.training_data(),
        backend=make_backend(primary.device_spec()),
        table=table,
        budgets_ms=tuple(budgets),
        grid=QUICK_GRID if context.config.quick else GRID,
        compare=False,
        rounds=context.config.references.rounds,
        seed=context.config.seed,
        progress=context.progress,
    )


def _result(context: RunContext, report: FamilyReport) -> FamilyResult:
    from hwnas.family.plot import rows

    base = next(row for row in rows(report, report.grid) if row.role == "base")
    members = [
        FamilyMember(row.budget_ms, row.scaling, row.arch, row.measured_ms, row.accuracy, row.within_budget)
        for row in rows(report, report.members)
    ]
    return FamilyResult(
        folder=context.stored(context.folder / "family"),
        device=report.settings["device"],
        ratios=report.ratios or "",
        base_ms=base.measured_ms or report.calibration.base_measured_ms,
        base_accuracy=base.accuracy,
        members=members,
        plot=context.stored(report.plot) if report.plot else None,
    )


STAGE = Stage("family", ("device", "table", "train"), FamilyResult, run, missing="no family record in this run folder")
