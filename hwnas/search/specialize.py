"""One supernet, several devices and budgets: a network for each, without training again (Once-for-All's specialization).

For every device and every budget a search runs on inherited weights (:mod:`hwnas.search.api`, the same loop and
finish as ``hwnas search --supernet``) in ``out/<device>/<budget>ms/``: its best candidate starts from the weights it
inherits, is fine-tuned for ``finetune_epochs`` (0: as inherited), exported to the device's format, verified and
measured with the search's drift references (:func:`hwnas.search.result.finish_search`). One worker pool serves every
search, and each worker keeps the accuracy of every architecture it scored, so an architecture met again under
another device or budget costs nothing the second time on that worker.

``out/specialize.json`` (format ``specialize``) holds the settings and one :class:`Specialized` per device and
budget; ``out/<device>/pareto.png`` plots all of that device's candidates with each budget's choice. A rerun with the
same settings keeps every finished (device, budget) and resumes an unfinished one from its study; other settings in
the same folder are refused in one line.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hwnas import typedjson
from hwnas.errors import UserError
from hwnas.fileio import atomic_write_json, file_sha256, read_json
from hwnas.formats import FORMATS
from hwnas.identity import check_identity
from hwnas.search.api import SearchSettings, check_budget, finish, make_search_config, run_search

Log = Callable[[str], None]
REPORT_FILE = "specialize.json"


@dataclass(frozen=True)
class Specialized:
    """The network for one device and budget: what the search chose, how it was obtained, what the device measured."""

    device: str
    budget_ms: float
    folder: str
    arch: str | None = None
    inherited_accuracy: float | None = None  # the search's score: inherited weights, its validation subset
    val_accuracy: float | None = None  # after fine-tuning (all validation images)
    test_accuracy: float | None = None
    how: str | None = None
    predicted_ms: float | None = None  # table time
    measured_ms: float | None = None  # today, on the device
    verdict: str | None = None  # within / over / uncertain the budget
    trials: int = 0
    search_s: float = 0.0
    finish_s: float = 0.0
    error: str | None = None


@dataclass(frozen=True)
class SpecializeReport:
    """Everything one ``hwnas specialize`` made: its settings (what a rerun must match) and one network per target."""

    settings: dict[str, Any]
    networks: list[Specialized] = field(default_factory=list)
    plots: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return FORMATS["specialize"].stamp(typedjson.to_json(self))

    @classmethod
    def from_json(cls, data: Any, where: str) -> SpecializeReport:
        return typedjson.from_json(cls, FORMATS["specialize"].strip(data, where), where)

    def finished(self, device: str, budget_ms: float) -> Specialized | None:
        return next((n for n in self.networks if n.device == device and n.budget_ms == budget_ms and n.error is None), None)


def budget_folder(out: Path, device: str, budget_ms: float) -> Path:
    return Path(out) / device / f"{budget_ms:g}ms"


def specialize(
    supernet: Path,
    devices: list[str],
    budgets_ms: list[float],
    settings: SearchSettings,
    out: Path,
    *,
    space: Any,
    finetune_epochs: int = 0,
    seed: int = 0,
    tables: Mapping[str, Path] | None = None,
    log: Log = lambda message: None,
) -> SpecializeReport:
    """A network for every device and budget from ``supernet`` (see the module docstring); writes ``out/specialize.json``.

    ``tables``: a latency table per device argument, taken even if made on another machine, where the one matching
    this machine is not wanted (a benchmark whose rows, made on several machines, share one table's predictions)."""
    from hwnas.search.device import load_device_latency
    from hwnas.search.executors import make_executor

    settings = replace(settings, supernet=Path(supernet))
    chosen = {device: Path(path) for device, path in (tables or {}).items()}
    wanted = _settings(supernet, devices, budgets_ms, settings, finetune_epochs, seed) | _tables_setting(chosen)
    report = _resumed(Path(out), wanted)
    latencies = {  # a missing table: one line, now; a chosen one is taken as it is, made on another machine too
        device: load_device_latency(device, space, chosen.get(device), allow_mismatch=device in chosen) for device in devices
    }
    _check_distinct_names(latencies)
    configs = {
        (name, budget): make_search_config(space, latency, budget, settings, budget_folder(out, name, budget), seed=seed)
        for name, latency in ((latency.spec.name, latency) for latency in latencies.values())
        for budget in budgets_ms
    }
    for config in configs.values():
        check_budget(config)  # an unreachable budget is one line before any search
    executor = make_executor(supernet=settings.supernet)
    try:
        for index, ((device, budget), config) in enumerate(configs.items(), start=1):
            if report.finished(device, budget) is not None:
                log(f"[{index}/{len(configs)}] {device} at {budget:g} ms: finished before, kept")
                continue
            log(f"[{index}/{len(configs)}] {device} at {budget:g} ms: searching {settings.trials} candidates")
            network = _one(config, executor, settings, finetune_epochs, log)
            report = replace(
                report, networks=[*(n for n in report.networks if (n.device, n.budget_ms) != (device, budget)), network]
            )
            _save(out, report)
    finally:
        executor.close()
    report = replace(report, plots=_plots(out, configs, report))
    _save(out, report)
    return report


def _check_distinct_names(latencies: Mapping[str, Any]) -> None:
    """Two ``--device`` arguments naming one device would share its folders and results: one line instead."""
    by_name: dict[str, list[str]] = {}
    for argument, latency in latencies.items():
        by_name.setdefault(latency.spec.name, []).append(argument)
    for name, arguments in by_name.items():
        if len(arguments) > 1:
            raise UserError(f"--device {' and '.join(arguments)} are the same device ({name}): give each device once")


def _settings(
    supernet: Path, devices: list[str], budgets: list[float], settings: SearchSettings, finetune_epochs: int, seed: int
) -> dict[str, Any]:
    """What a rerun in the same folder must match. The supernet's weights by their hash, not only its folder: networks
    specialized from a supernet since trained again (a re-made shipped one) are not kept as finished."""
    weights = Path(supernet) / "supernet.pt"  # hwnas.supernet.store.WEIGHTS_FILE (torch not imported for it)
    return {
        "supernet": str(Path(supernet).resolve()),
        "supernet_sha256": file_sha256(weights)[:16] if weights.is_file() else None,
        "devices": list(devices),
        "budgets_ms": list(budgets),
        "strategy": settings.strategy,
        "trials": settings.trials,
        "reward": settings.reward,
        "margin": settings.margin,
        "supernet_val_images": settings.supernet_val_images,
        "supernet_bn_images": settings.supernet_bn_images,
        "finetune_epochs": finetune_epochs,
        "top_k": settings.top_k,
        "seed": seed,
    }


def _tables_setting(tables: dict[str, Path]) -> dict[str, Any]:
    """Chosen tables by their content, a setting only when there are any (folders made before the option still match)."""
    if not tables:
        return {}
    return {"tables": {device: file_sha256(path)[:16] if path.is_file() else str(path) for device, path in tables.items()}}


def _resumed(out: Path, wanted: dict[str, Any]) -> SpecializeReport:
    """The report a previous run of these settings left in ``out`` (its finished networks kept), or a new one."""
    path = out / REPORT_FILE
    if not path.exists():
        return SpecializeReport(settings=wanted)
    report = read_report(path)
    check_identity(report.settings, wanted, f"{out} holds a specialization of other settings", "give another --out, or delete it")
    return report


def read_report(path: Path) -> SpecializeReport:
    """``specialize.json`` back (a newer format, a bad value or a missing field: one line)."""
    return SpecializeReport.from_json(read_json(Path(path), FORMATS["specialize"].what), str(path))


def _one(config: Any, executor: Any, settings: SearchSettings, finetune_epochs: int, log: Log) -> Specialized:
    """Search, then fine-tune, export, verify and measure the best (the search's own finish)."""
    device, budget, folder = config.device.spec.name, config.reward.budget_ms, str(config.out)
    started = time.perf_counter()
    summary = run_search(config, executor)
    searched = time.perf_counter()
    result = finish(config, summary, top_k=settings.top_k, final_epochs=finetune_epochs, rounds=settings.rounds, log=log)
    finished = time.perf_counter()
    timing = {"trials": len(summary["trials"]), "search_s": searched - started, "finish_s": finished - searched}
    if "error" in result:
        return Specialized(device, budget, folder, error=result["error"], **timing)
    offer = result["best"]
    following = offer.get("next_feasible") or {}  # the best measured over the budget: the next one within, if any
    entry = next(e for e in result["top"] if e["rank"] == following.get("rank", offer["rank"]))
    best = result["top"][0]
    retrained = best.get("retrained") or {}
    judged = entry.get("judged") or {}
    network = Specialized(
        device,
        budget,
        folder,
        arch=entry["arch"],
        inherited_accuracy=entry["proxy_accuracy"],
        val_accuracy=retrained.get("val_accuracy") if entry is best else None,
        test_accuracy=retrained.get("test_accuracy") if entry is best else None,
        how=retrained.get("how") if entry is best else "inherited from the supernet, not fine-tuned (the best measured over)",
        predicted_ms=entry["predicted_latency_ms"],
        measured_ms=judged.get("judged_median_ms"),
        verdict=judged.get("verdict") or offer["verdict"],  # a device given as its table: "predicted only"
        **timing,
    )
    log(
        f"{device} at {budget:g} ms: {network.arch}, inherited {network.inherited_accuracy:.3f}"
        + (f", test {network.test_accuracy:.3f}" if network.test_accuracy is not None else "")
        + (f", measured {network.measured_ms:.4f} ms ({network.verdict})" if network.measured_ms is not None else "")
        + f"; search {network.search_s:.0f} s, finish {network.finish_s:.0f} s"
    )
    return network


def _plots(out: Path, configs: dict[tuple[str, float], Any], report: SpecializeReport) -> dict[str, str]:
    """One Pareto plot per device: every candidate of its searches, each budget's line and choice."""
    from hwnas.search.loop import SearchLoop
    from hwnas.search.plots import pareto_plot_budgets

    plots = {}
    for device in dict.fromkeys(name for name, _ in configs):
        trials = [trial for (name, _), config in configs.items() if name == device for trial in SearchLoop(config).read_back()]
        chosen = {
            n.budget_ms: (n.arch, n.measured_ms or n.predicted_ms, n.inherited_accuracy or 0.0, n.measured_ms is not None)
            for n in report.networks
            if n.device == device and n.arch is not None
        }
        plots[device] = str(pareto_plot_budgets(trials, chosen, device, Path(out) / device / "pareto.png"))
    return plots


def _save(out: Path, report: SpecializeReport) -> None:
    atomic_write_json(Path(out) / REPORT_FILE, report.to_json())


def parse_budgets(text: str) -> list[float]:
    """``--budget-ms 0.3,0.45``: positive, finite milliseconds, each once."""
    budgets = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            raise UserError(f"--budget-ms {text!r}: {part.strip()!r} is not a number of milliseconds") from None
        if not (value > 0 and value < float("inf")):
            raise UserError(f"--budget-ms {text!r}: every budget must be a positive number of milliseconds, not {part.strip()}")
        budgets.append(value)
    if len(set(budgets)) != len(budgets):
        raise UserError(f"--budget-ms {text!r}: a budget is given twice")
    return budgets
