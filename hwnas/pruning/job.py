"""``hwnas prune``: search a policy with AMC, apply it, fine-tune, and compare with the baselines, measured.

The job, in one run folder ``OUT``:

1. the base network and real images (held-out validation images for the reward; the test split
   only for the final report);
2. the agent's search under the budget (``OUT/search.db``: every episode stored as it finishes);
3. the best policy, uniform pruning and global magnitude pruning, at the same budget, each
   fine-tuned with the same short recipe, and the unpruned model;
4. each saved as a run folder (``OUT/amc``, ``OUT/uniform``, ``OUT/global-magnitude``,
   ``OUT/unpruned``) that ``hwnas export`` accepts, exported to ONNX / TFLite, verified and timed
   on this machine's devices;
5. for a latency budget: if the pruned model measures over it, the budget is tightened by the miss
   and the search repeated, at most twice, and the report says so;
6. ``OUT/report.json``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hwnas.data import ImageSplits
from hwnas.devices import DeviceSpec
from hwnas.errors import UserError
from hwnas.export_model import build_request, resolve_model
from hwnas.exporters import export_all, get_exporter
from hwnas.fileio import atomic_write_json
from hwnas.formats import FORMATS
from hwnas.latency_tables.table import LatencyTable
from hwnas.pruning.amc import REWARDS, Environment, Evaluator, SearchProgress, accuracy, best_episode, run_search
from hwnas.pruning.base import BaseModel, save_pruned
from hwnas.pruning.baselines import counts_of, global_magnitude, uniform_counts
from hwnas.pruning.budget import Budget, Resource, check_reachable
from hwnas.pruning.ddpg import DDPG, AgentConfig
from hwnas.pruning.latency import PredictedLatency
from hwnas.pruning.reconstruct import collect_features
from hwnas.pruning.store import EpisodeStore
from hwnas.pruning.structure import MIN_RATIO, ROUND_TO, Pruned, PruningGraph, analyse
from hwnas.recipe import Recipe
from hwnas.trainer import Prepared, fit_model

MAX_RETRIES = 2  # a latency budget missed on the device is tightened and searched again at most this often


@dataclass(frozen=True)
class PruneConfig:
    budget: Budget
    episodes: int = 100
    warmup: int | None = None  # random episodes before the agent learns (default: a quarter, at most AMC's 100)
    finetune: Recipe = field(default_factory=lambda: Recipe(epochs=1, lr=0.02, warmup_epochs=0.0))
    reward: str = "error"
    norm: str = "l1"
    round_to: int = ROUND_TO
    min_ratio: float = MIN_RATIO
    reconstruct: bool = True  # AMC's least-squares refit of the layer after each pruned one (measured to help)
    recalibrate: int = 256  # training images BatchNorm statistics are re-estimated on after pruning (0: off)
    heldout: int = 1000  # validation images the reward is measured on
    seed: int = 0
    baselines: bool = True
    formats: tuple[str, ...] = ("onnx", "tflite")
    devices: tuple[str, ...] = ("host-ort", "host-tflite")

    def __post_init__(self) -> None:
        if self.reward not in REWARDS:
            raise UserError(f"reward must be one of {', '.join(REWARDS)}, got {self.reward!r}")
        if self.episodes < 1:
            raise UserError("--episodes must be at least 1")
        if not 0 < self.min_ratio <= 1:
            raise UserError(f"min ratio must be in (0, 1], got {self.min_ratio}")

    @property
    def warmup_episodes(self) -> int:
        return self.warmup if self.warmup is not None else min(100, max(1, self.episodes // 4))

    def search_key(self, base: BaseModel, budget: Budget) -> dict[str, Any]:
        """What the stored episodes depend on: a store made with anything else is refused."""
        return {
            "base": base.spec,
            "source": base.source,
            "resolution": base.resolution,
            "budget": self.budget.describe(),
            "reward": self.reward,
            "norm": self.norm,
            "round_to": self.round_to,
            "min_ratio": self.min_ratio,
            "reconstruct": self.reconstruct,
            "recalibrate": self.recalibrate,
            "heldout": self.heldout,
            "seed": self.seed,
            "warmup": self.warmup_episodes,
        }


Log = Callable[[str], None]


def stack(dataset: Any, count: int, resolution: int, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    prepared = Prepared(dataset, resolution, channels)
    count = min(count, len(prepared))
    pairs = [prepared[i] for i in range(count)]
    return torch.stack([image for image, _ in pairs]), torch.tensor([label for _, label in pairs])


def make_resource(budget: Budget, graph: PruningGraph, predicted: PredictedLatency | None) -> Resource:
    if budget.kind == "flops":
        return Resource("flops", "FLOPs", graph.flops)
    if budget.kind == "params":
        return Resource("params", "parameters", graph.params)
    if predicted is None:
        raise UserError("a latency budget needs --device SPEC (a device with a latency table)")
    return predicted.resource()


@dataclass
class SearchOutcome:
    budget: Budget
    target: float
    episodes: list[dict[str, Any]]
    best: dict[str, Any]


def search_policy(
    graph: PruningGraph,
    resource: Resource,
    budget: Budget,
    config: PruneConfig,
    evaluator: Evaluator,
    store: EpisodeStore,
    search: str,
    on_episode: Callable[[SearchProgress], None] | None,
) -> SearchOutcome:
    target, _ = check_reachable(budget, resource, graph.full_counts, graph.min_counts)
    env = Environment(graph, resource, target)
    agent = DDPG(env.static.shape[1] + 3, AgentConfig(low=config.min_ratio, warmup=config.warmup_episodes), config.seed)
    episodes = run_search(env, evaluator, agent, store, search, config.episodes, config.seed, on_episode)
    best = best_episode(episodes)
    return SearchOutcome(budget, target, [e.to_json() for e in episodes], best.to_json())


def finetune(module: nn.Module, data: ImageSplits, recipe: Recipe, base: BaseModel, seed: int, progress: bool) -> nn.Module:
    """The same short recipe for every pruned model (seeded alike), so accuracy differences are the policies'; with
    ``recipe.distill`` > 0 each is taught by the unpruned network (the same teacher for every method)."""
    torch.manual_seed(seed)
    return fit_model(
        module, data, recipe, base.resolution, base.channels, seed=seed, progress=progress, teacher=base.module
    ).model.eval()


VERIFICATION_KEYS = ("passed", "max_abs_diff", "max_abs_diff_float64", "output_scale")  # what a run keeps of a check


def measure_folder(
    folder: Path, formats: tuple[str, ...], devices: list[DeviceSpec], data: str | None, log: Log
) -> dict[str, Any]:
    """Export a run folder as ``hwnas export`` does (verified against PyTorch), time it on ``devices``."""
    available = [f for f in formats if get_exporter(f).unavailable_reason() is None]
    skipped = sorted(set(formats) - set(available))
    if skipped:
        log(f"not exporting {', '.join(skipped)}: runtime not installed")
    request = build_request(resolve_model(str(folder)), data, images=200, calibration=50)
    card = export_all(request, available, folder / "export", devices)
    latency: dict[str, float] = {}
    verified: dict[str, Any] = {}
    for item in card["exports"]:
        check = item["verification"]
        verified[item["format"]] = {key: check.get(key) for key in VERIFICATION_KEYS}
        for measured in item["latency"]:
            if "median_ms" in measured:
                latency[measured["device"]] = measured["median_ms"]
    return {"latency_ms": latency, "verification": verified}


@dataclass
class _Context:
    """What every model of one prune job is evaluated with."""

    base: BaseModel
    data: ImageSplits
    config: PruneConfig
    graph: PruningGraph
    resource: Resource
    predicted: PredictedLatency | None
    evaluator: Evaluator
    test: tuple[torch.Tensor, torch.Tensor]
    out: Path
    specs: list[DeviceSpec]
    data_source: str | None
    log: Log
    progress: bool


def run_prune(
    base: BaseModel,
    data: ImageSplits,
    config: PruneConfig,
    out: Path,
    *,
    data_source: str | None = None,
    table: LatencyTable | None = None,
    log: Log = lambda _: None,
    on_episode: Callable[[SearchProgress], None] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    started = time.perf_counter()
    graph = analyse(base.module, torch.zeros(tuple(base.input_shape)), config.round_to, config.min_ratio, config.norm)
    if config.budget.kind == "latency-ms" and table is None:
        raise UserError("a latency budget needs --device SPEC (a device with a latency table)")
    predicted = PredictedLatency(base.module, graph, table) if table is not None else None
    resource = make_resource(config.budget, graph, predicted)
    check_reachable(config.budget, resource, graph.full_counts, graph.min_counts)  # before any slow work
    specs = [DeviceSpec.from_toml(d) for d in config.devices]
    images, labels = stack(data.val, config.heldout, base.resolution, base.channels)
    calibration, _ = stack(data.train, max(400, config.recalibrate), base.resolution, base.channels)
    features = None
    if config.reconstruct:
        features = collect_features(base.module, calibration, {name for name, _ in base.module.named_modules()}, seed=config.seed)
    recalibrate = calibration[: config.recalibrate] if config.recalibrate > 0 else None
    evaluator = Evaluator(base.module, graph, images, labels, features, recalibrate, config.reward)
    test = stack(data.test, len(data.test), base.resolution, base.channels)  # type: ignore[arg-type]
    ctx = _Context(base, data, config, graph, resource, predicted, evaluator, test, out, specs, data_source, log, progress)
    store = EpisodeStore(out / "search.db", config.search_key(base, config.budget))
    note = f", {resource.note}" if resource.note else ""
    log(f"{len(graph.layers)} prunable layers; budget {config.budget.describe()} ({resource.name}{note})")
    try:
        searches, retries, amc = _search_until_measured(ctx, store, on_episode)
    finally:
        store.close()
    entries = {"unpruned": _unpruned_entry(ctx), "amc": amc}
    if config.baselines:
        target, budget = searches[-1].target, searches[-1].budget
        ucounts = uniform_counts(graph, resource, target)
        entries["uniform"] = _pruned_entry(ctx, "uniform", evaluator.prune(ucounts), ucounts, target, budget)
        # MetaPruner decides how many channels each layer keeps; within a layer it ranks channels exactly as
        # apply_counts does (group magnitude; the normaliser scales a group, never reorders it: a test checks
        # the networks are equal), so one pruning path gives all three the same refit and BatchNorm treatment
        allocation = global_magnitude(base.module, graph, resource, target, config.round_to, 1 - config.min_ratio, config.norm)
        gcounts = counts_of(allocation.module, graph)
        entries["global-magnitude"] = _pruned_entry(ctx, "global-magnitude", evaluator.prune(gcounts), gcounts, target, budget)
    report = {
        "base": {"name": base.name, "source": base.source, "spec": base.spec, "input_shape": base.input_shape},
        "budget": config.budget.describe(),
        "resource": resource.name,
        "resource_note": resource.note,
        "layers": [layer.__dict__ | {"choices": list(layer.choices)} for layer in graph.layers],
        "config": {k: v for k, v in config.search_key(base, config.budget).items() if k != "base"}
        | {"episodes": config.episodes, "finetune": config.finetune.to_json()},
        "searches": [
            {"budget": s.budget.describe(), "target": s.target, "best": s.best, "episodes": s.episodes} for s in searches
        ],
        "latency_retries": retries,
        "models": entries,
        "wall_time_s": time.perf_counter() - started,
    }
    atomic_write_json(out / "report.json", FORMATS["pruning-report"].stamp(report))
    return report


def _search_until_measured(
    ctx: _Context, store: EpisodeStore, on_episode: Callable[[SearchProgress], None] | None
) -> tuple[list[SearchOutcome], list[dict[str, float]], dict[str, Any]]:
    """Search, apply the best policy, measure; a latency budget missed on the device is tightened by the miss (twice at most)."""
    budget, searches, retries = ctx.config.budget, [], []
    while True:
        outcome = search_policy(
            ctx.graph, ctx.resource, budget, ctx.config, ctx.evaluator, store, _search_id(len(searches)), on_episode
        )
        searches.append(outcome)
        counts = outcome.best["counts"]
        amc = _pruned_entry(ctx, "amc", ctx.evaluator.prune(counts), counts, outcome.target, budget)
        missed = _latency_miss(ctx.config.budget, amc, ctx.specs)
        if missed is None:
            return searches, retries, amc
        if len(searches) > MAX_RETRIES:
            ctx.log(
                f"amc: measured {missed:.4f} ms, still over the {ctx.config.budget.value:g} ms budget after {MAX_RETRIES} retries"
            )
            return searches, retries, amc
        tightened = budget.value * ctx.config.budget.value / missed
        retries.append({"measured_ms": missed, "searched_with_ms": budget.value, "tightened_to_ms": tightened})
        ctx.log(f"amc: measured {missed:.4f} ms > budget {ctx.config.budget.value:g} ms: searching again with {tightened:.4f} ms")
        budget = Budget(budget.kind, tightened)


def _predicted(ctx: _Context, counts: list[int]) -> dict[str, Any] | None:
    """The device's predicted latency of a policy, and how many of its layers the table held (the rest modelled)."""
    if ctx.predicted is None:
        return None
    found, total = ctx.predicted.looked_up(counts)
    return {
        "device": ctx.predicted.table.device.get("name"),
        "ms": ctx.predicted.cost(counts),
        "looked_up": found,
        "layers": total,
    }


def _search_id(attempt: int) -> str:
    return "search" if attempt == 0 else f"search-tightened-{attempt}"


def _latency_miss(budget: Budget, entry: dict[str, Any], specs: list[DeviceSpec]) -> float | None:
    """The measured latency if a latency budget was missed on its device, else None."""
    if budget.kind != "latency-ms" or not specs:
        return None
    measured = entry["measured"]["latency_ms"].get(specs[0].name)
    return measured if measured is not None and measured > budget.value else None


def _unpruned_entry(ctx: _Context) -> dict[str, Any]:
    folder = ctx.out / "unpruned"
    acc = accuracy(ctx.base.module, *ctx.test)
    save_pruned(
        folder, ctx.base.module, ctx.base, [], {"name": f"{ctx.base.name}-unpruned", "method": "unpruned", "test_accuracy": acc}
    )
    ctx.log(f"unpruned: test accuracy {acc:.4f}; exporting and measuring")
    full = ctx.graph.full_counts
    return {
        "folder": str(folder),
        "test_accuracy": acc,
        "flops": ctx.graph.flops(full),
        "params": ctx.graph.params(full),
        "resource": ctx.resource.cost(full),
        "predicted_ms": _predicted(ctx, full),
        "measured": measure_folder(folder, ctx.config.formats, ctx.specs, ctx.data_source, ctx.log),
    }


def _pruned_entry(ctx: _Context, method: str, pruned: Pruned, counts: list[int], target: float, budget: Budget) -> dict[str, Any]:
    """Fine-tune a pruned model, save it as a run folder, export and time it."""
    before = accuracy(pruned.module, ctx.evaluator.images, ctx.evaluator.labels)
    ctx.log(f"{method}: held-out accuracy {before:.4f} before fine-tuning; fine-tuning {ctx.config.finetune.epochs} epoch(s)")
    tuned = finetune(copy.deepcopy(pruned.module), ctx.data, ctx.config.finetune, ctx.base, ctx.config.seed, ctx.progress)
    acc = accuracy(tuned, *ctx.test)
    folder = ctx.out / method
    info = {
        "name": f"{ctx.base.name}-{method}",
        "method": method,
        "budget": budget.describe(),
        "counts": counts,
        "test_accuracy": acc,
        "recipe": ctx.config.finetune.to_json(),
    }
    save_pruned(folder, tuned, ctx.base, pruned.history, info)
    ctx.log(f"{method}: test accuracy {acc:.4f} after fine-tuning; exporting and measuring")
    cost = ctx.resource.cost(counts)
    return {
        "folder": str(folder),
        "counts": counts,
        "ratios": [c / layer.channels for c, layer in zip(counts, ctx.graph.layers, strict=True)],
        "heldout_accuracy_before_finetune": before,
        "test_accuracy": acc,
        "flops": ctx.graph.flops(counts),
        "params": ctx.graph.params(counts),
        "resource": cost,
        "meets_budget": cost <= target * (1 + 1e-9),
        "predicted_ms": _predicted(ctx, counts),
        "measured": measure_folder(folder, ctx.config.formats, ctx.specs, ctx.data_source, ctx.log),
    }
