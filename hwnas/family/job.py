"""``hwnas scale``: grow one network into a family for a ladder of latency budgets by compound scaling, on the device.

EfficientNet's recipe, with the device's latency in place of FLOPs (as its EdgeTPU and Lite variants were made):

1. **Calibrate.** The base is exported and timed on the device; measured over predicted puts every later prediction
   in today's frame, and a budget the base already meets is refused (scaling only grows a network: prune instead).
2. **Ratios.** A small grid of depth and width steps, each with the resolution step that makes one compound step
   double the base's latency on this device (:meth:`~hwnas.family.sizing.FamilyLatency.grid`): predicted, then
   measured with the base and refitted where it is more than 10% off; each point is trained with the base's recipe,
   and the most accurate one's ratios are kept.
3. **Members.** For each budget, the ratios raised to the largest power predicted to fit it; with ``compare``, also the
   width-only, depth-only and resolution-only networks for the same budget, trained the same way. Predicted, then
   measured: each proposal is timed (random weights), and one measured over its budget is refitted with its own
   measured / predicted factor, up to :data:`SIZING_PASSES` times; the largest measured within the budget is kept.
4. **Measure.** Every network is exported to the device's format, verified against PyTorch and timed in the same
   interleaved rounds; ``family.png`` plots accuracy against measured latency for every way of scaling.

Every network trains in its own run folder (``OUT/networks/<scaling>/``, per-epoch checkpoints), and ``family.json``
is rewritten after each step, so a killed run resumes without training a finished network again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from hwnas.arch import Arch
from hwnas.data import ImageSplits
from hwnas.errors import UserError
from hwnas.family.records import Calibration, FamilyReport, Measured, Planned, Trained, resumed
from hwnas.family.sizing import DOUBLING, DOUBLING_TOLERANCE, SINGLE_DIMENSIONS, FamilyLatency, Sized
from hwnas.fileio import read_json
from hwnas.formats import FORMATS
from hwnas.latency_tables.table import LatencyTable
from hwnas.recipe import Recipe
from hwnas.scaling import Scaling, scaled_space
from hwnas.space import SearchSpace

Log = Callable[[str], None]
NETWORKS = "networks"
VERIFY_IMAGES, CALIBRATION_IMAGES = 200, 50
SIZING_PASSES = 3  # predict, measure, refit: a member the prediction put over its budget gets two more tries
SIZING_ROUNDS = 5


@dataclass(frozen=True)
class ScaleRequest:
    """Everything one family is made from (``settings()`` is what a rerun in the same folder must match)."""

    space: SearchSpace
    base: Arch
    recipe: Recipe
    data: ImageSplits
    backend: Any
    table: LatencyTable
    budgets_ms: tuple[float, ...]
    grid: int = 4
    compare: bool = True
    rounds: int = 10
    seed: int = 0
    progress: bool = True

    def settings(self) -> dict[str, Any]:
        """Not the budgets: a rerun with more (or fewer) budgets keeps every network it can and sizes the new ones."""
        return {
            "base": self.base.format(),
            "recipe": self.recipe.to_json(),
            "data": self.data.name,
            "train_images": len(self.data.train),  # type: ignore[arg-type]
            "device": self.backend.spec.name,
            "grid": self.grid,
            "compare": self.compare,
            "seed": self.seed,
        }


def scale_family(request: ScaleRequest, out: Path, log: Log) -> FamilyReport:
    """Make the family (see the module docstring); resumes what ``out`` holds."""
    report = resumed(out, request.settings())
    calibration = report.calibration or _calibrate(request, out, log)
    _check_budgets(request, calibration)
    report = _saved(replace(report, calibration=calibration), out)
    latency = FamilyLatency(request.space, request.base, request.table, calibration.factor)
    if not report.grid:
        report = _saved(replace(report, grid=plan_grid(request, latency, out, log)), out)
    report = _train_all(request, report, report.grid, out, log)
    if report.ratios is None:
        report = _saved(replace(report, ratios=_best_ratios(report)), out)
    report = _saved(replace(report, members=_members_for(request, report, latency, out, log)), out)
    report = _train_all(request, report, report.members, out, log)
    report = _saved(replace(report, measured=_measure_all(request, report, out, log)), out)
    from hwnas.family.plot import family_plot

    return _saved(replace(report, plot=str(family_plot(report, Path(out) / "family.png"))), out)


def _saved(report: FamilyReport, out: Path) -> FamilyReport:
    report.save(out)
    return report


def _planned(role: str, sized: Sized, budget_ms: float | None = None) -> Planned:
    return Planned(role, sized.scaling.tag, sized.arch.format(), sized.predicted_ms, sized.predicted_today_ms, budget_ms)


def _calibrate(request: ScaleRequest, out: Path, log: Log) -> Calibration:
    """The base timed now (any weights: latency does not depend on them) against its prediction in table time."""
    from hwnas.search.measure import time_interleaved

    latency = FamilyLatency(request.space, request.base, request.table)
    file = _export_random(request, request.space, request.base, Path(out) / "sizing")
    log(f"timing the base on {request.backend.spec.name} in {request.rounds} rounds")
    timed = time_interleaved(request.backend, {"base": file}, request.rounds)["base"].summary()
    return Calibration(timed["median_ms"], (timed["ci_low_ms"], timed["ci_high_ms"]), latency.base_predicted_ms)


class BudgetBelowBase(UserError):
    """A budget the base already meets: scaling only grows a network."""


def _check_budgets(request: ScaleRequest, calibration: Calibration) -> None:
    below = [budget for budget in request.budgets_ms if budget <= calibration.base_measured_ms]
    if below:
        raise BudgetBelowBase(
            f"budget {below[0]:g} ms is not above the base's {calibration.base_measured_ms:.3f} ms measured now on "
            f"{request.backend.spec.name}: scaling only grows a network (to go below, prune it: hwnas prune)"
        )


def plan_grid(request: ScaleRequest, latency: FamilyLatency, out: Path, log: Log) -> list[Planned]:
    """The base and the grid's compound steps, each predicted to double the base's latency, then measured with the base
    in the same rounds; a point measured more than 10% off 2x has its resolution step refitted with its own measured /
    predicted factor (up to :data:`SIZING_PASSES` timings); the point measured closest to 2x is kept."""
    base = latency.sized(Scaling())

    def doublings(points: list[Sized]) -> dict[Arch, float]:
        timed = _time_random(request, [base, *points], Path(out) / "sizing")
        return {point.arch: timed[point.arch] / timed[base.arch] for point in points}

    def refit(_: int, point: Sized, doubling: float) -> Sized:
        if abs(doubling / DOUBLING - 1) <= DOUBLING_TOLERANCE:
            return point
        return latency.resolution_step(point.scaling.depth, point.scaling.width, DOUBLING, doubling / point.predicted_ms)

    tried, doubling = _measure_and_refit(latency.grid(request.grid), doublings, refit, "grid: timing compound steps", log)
    chosen = {}
    for options in tried:
        best = min(options, key=lambda p: abs(doubling[p.arch] - DOUBLING))
        chosen.setdefault(best.scaling.tag, replace(_planned("grid", best), doubling=doubling[best.arch]))
    log(f"grid: {len(chosen)} compound steps measured to double the base's latency: "
        + ", ".join(f"{tag} x{point.doubling:.2f}" for tag, point in chosen.items()))  # fmt: skip
    return [_planned("base", base), *chosen.values()]


def _measure_and_refit(
    proposals: list[Sized],
    measure: Callable[[list[Sized]], dict[Arch, float]],
    refit: Callable[[int, Sized, float], Sized],
    what: str,
    log: Log,
) -> tuple[list[list[Sized]], dict[Arch, float]]:
    """Predicted, then measured: time the proposals (each network once), let ``refit`` replace each by what its own
    measurement says it should be, and again, up to :data:`SIZING_PASSES` timings. Returns, per proposal, every network
    tried and measured for it, and the measurements."""
    current = list(proposals)
    tried: list[list[Sized]] = [[] for _ in proposals]
    measured: dict[Arch, float] = {}
    for attempt in range(1, SIZING_PASSES + 1):
        new = {sized.arch: sized for sized in current if sized.arch not in measured}
        if new:
            log(f"{what}, pass {attempt}: {len(new)} networks (random weights) in {SIZING_ROUNDS} rounds")
            measured |= measure(list(new.values()))
        for index, sized in enumerate(current):
            if all(other.arch != sized.arch for other in tried[index]):
                tried[index].append(sized)  # a refit landing on a network measured for another proposal counts too
            current[index] = refit(index, sized, measured[sized.arch])
        if not new:
            break
    return tried, measured


def _members_for(request: ScaleRequest, report: FamilyReport, latency: FamilyLatency, out: Path, log: Log) -> list[Planned]:
    """The members of the budgets asked for: those already planned are kept, new budgets are sized now."""
    kept = [member for member in report.members if member.budget_ms in request.budgets_ms]
    new = [budget for budget in request.budgets_ms if budget not in {member.budget_ms for member in kept}]
    ratios = Scaling.parse_tag(report.ratios or "")
    planned = kept + (_plan_members(request, latency, ratios, new, out, log) if new else [])
    return sorted(planned, key=lambda member: request.budgets_ms.index(member.budget_ms or 0.0))


def _plan_members(
    request: ScaleRequest, latency: FamilyLatency, ratios: Scaling, budgets: list[float], out: Path, log: Log
) -> list[Planned]:
    """Each budget's network along each direction: predicted to fit, then measured and refitted (module docstring)."""
    directions = {"compound": ratios} | (SINGLE_DIMENSIONS if request.compare else {})
    targets = [(role, step, budget) for budget in budgets for role, step in directions.items()]

    def measure(networks: list[Sized]) -> dict[Arch, float]:
        return _time_random(request, networks, Path(out) / "sizing")

    def refit(index: int, sized: Sized, measured_ms: float) -> Sized:
        _, step, budget = targets[index]
        return latency.fit_budget(step, budget, measured_ms / sized.predicted_ms)

    proposals = [latency.fit_budget(step, budget) for _, step, budget in targets]
    tried, measured = _measure_and_refit(proposals, measure, refit, "sizing: timing proposed members", log)
    return [
        replace(_planned(role, chosen, budget), sized_ms=measured[chosen.arch])
        for (role, _, budget), options in zip(targets, tried, strict=True)
        for chosen in [_largest_within(options, measured, budget)]
    ]


def _largest_within(options: list[Sized], measured: dict[Arch, float], budget_ms: float) -> Sized:
    """The slowest network measured within the budget; the fastest tried when none was."""
    within = [sized for sized in options if measured[sized.arch] <= budget_ms]
    if within:
        return max(within, key=lambda sized: measured[sized.arch])
    return min(options, key=lambda sized: measured[sized.arch])


def _time_random(request: ScaleRequest, networks: list[Sized], folder: Path) -> dict[Arch, float]:
    from hwnas.search.measure import time_interleaved

    files = {sized.arch: _export_random(request, sized.space, sized.arch, folder) for sized in networks}
    timed = time_interleaved(request.backend, {arch.format(): path for arch, path in files.items()}, SIZING_ROUNDS)
    return {arch: timed[arch.format()].summary()["median_ms"] for arch in files}


def _best_ratios(report: FamilyReport) -> str:
    """The grid point whose network trained most accurate (validation split): its scaling is the compound step."""
    points = [planned for planned in report.grid if planned.role == "grid"]
    if not points:
        raise UserError(
            "no compound step of the grid doubles the base's latency within 10% on this device's table: "
            "the base may be too small for its layers to be predicted; try another base"
        )
    return max(points, key=lambda planned: report.trained[planned.scaling].val_accuracy).scaling


def _train_all(request: ScaleRequest, report: FamilyReport, planned: list[Planned], out: Path, log: Log) -> FamilyReport:
    todo = [p for p in dict((p.scaling, p) for p in planned).values() if p.scaling not in report.trained]
    for index, network in enumerate(todo, start=1):
        folder = Path(out) / NETWORKS / network.scaling
        if (folder / "result.json").exists():  # finished just before a kill, before family.json recorded it
            log(f"{index}/{len(todo)}: {network.role} {network.scaling} was trained before the run stopped; kept")
        else:
            log(f"training {index}/{len(todo)}: {network.role} {network.scaling} ({network.arch})")
        trained = _train_one(request, network, folder, log)
        report = _saved(replace(report, trained=report.trained | {network.scaling: trained}), out)
    return report


def _train_one(request: ScaleRequest, network: Planned, folder: Path, log: Log) -> Trained:
    """Train in ``folder`` (resuming its checkpoint), or read the result a killed run finished there."""
    from hwnas.trainer import remove_checkpoint, train

    result_file = folder / "result.json"
    if not result_file.exists():
        space = scaled_space(request.space, Scaling.parse_tag(network.scaling))
        arch = space.parse(network.arch)
        folder.mkdir(parents=True, exist_ok=True)
        result = train(
            space,
            arch,
            request.recipe,
            request.data,
            seed=request.seed,
            progress=request.progress,
            evaluate_test=True,
            checkpoint=folder,
            log=log,
        )
        result.save(folder)
        remove_checkpoint(folder)
    stored = FORMATS["run-result"].strip(read_json(result_file, "run result"), result_file)
    return Trained(stored["val_accuracy"], stored["test_accuracy"], stored["flops"], stored["params"], stored["wall_time_s"])


def _measure_all(request: ScaleRequest, report: FamilyReport, out: Path, log: Log) -> dict[str, Measured]:
    """Export and verify every trained network, then time them all in the same interleaved rounds."""
    from hwnas.search.measure import time_interleaved

    exported = {network.scaling: _export_trained(request, network, Path(out) / NETWORKS / network.scaling, log)
                for network in report.networks}  # fmt: skip
    files = {tag: path for tag, (path, passed) in exported.items() if passed}
    log(f"timing {len(files)} networks on {request.backend.spec.name} in {request.rounds} interleaved rounds")
    timed = time_interleaved(request.backend, files, request.rounds)
    measured = {}
    for tag, (path, passed) in exported.items():
        summary = timed[tag].summary() if tag in timed else None
        if summary is not None:
            measured[tag] = Measured(str(path), summary["median_ms"], (summary["ci_low_ms"], summary["ci_high_ms"]), passed)
    return measured


def _export_trained(request: ScaleRequest, network: Planned, folder: Path, log: Log) -> tuple[Path, bool]:
    """Export a trained network as ``hwnas export`` does: verified against PyTorch on validation images. Built from the
    family's own space (a space file's scaled spaces have no name a preset lookup would find)."""
    from hwnas.builder import build_model
    from hwnas.devices import export_format_for
    from hwnas.export_model import ResolvedModel, build_request, read_state_dict
    from hwnas.exporters import export_all

    space = scaled_space(request.space, Scaling.parse_tag(network.scaling))
    arch = space.parse(network.arch)
    module = build_model(space, arch)
    module.load_state_dict(read_state_dict(folder / "model.pt"))
    info = {"name": f"{request.space.name} {network.scaling}", "arch": network.arch, "source": str(folder)}
    resolved = ResolvedModel(module.eval(), space.in_channels, arch.resolution, info, trained=True)
    fmt = export_format_for(request.backend.spec)
    log(f"exporting {network.scaling} to {fmt}")
    card = export_all(build_request(resolved, request.data, VERIFY_IMAGES, CALIBRATION_IMAGES), [fmt], folder / "export", [])
    item = card["exports"][0]
    return folder / "export" / item["file"], bool(item["verification"]["passed"])


def _export_random(request: ScaleRequest, space: SearchSpace, arch: Arch, folder: Path) -> Path:
    """``arch`` with seeded random weights in the device's format (latency does not depend on the weights)."""
    from hwnas.builder import build_model
    from hwnas.devices import export_format_for
    from hwnas.exporters import get_exporter

    exporter = get_exporter(export_format_for(request.backend.spec))
    reason = exporter.unavailable_reason()
    if reason is not None:
        raise UserError(f"cannot export to {exporter.format} here: {reason}")
    with torch.random.fork_rng():
        torch.manual_seed(request.seed)
        module = build_model(space, arch).eval()
    folder.mkdir(parents=True, exist_ok=True)
    shape = (1, space.in_channels, arch.resolution, arch.resolution)
    return exporter.export(module, torch.zeros(shape), folder / f"{arch.id}{exporter.suffix}")
