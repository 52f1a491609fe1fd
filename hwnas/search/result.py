"""What a search returns: the top K, the best retrained longer, exported, measured on the device.

Latency the user is promised is *measured*: every top-K candidate is exported to the device's
format, verified against PyTorch, and timed in interleaved rounds together with reference
networks of the table (the drift check, :mod:`hwnas.search.measure`). A candidate measured over
the budget is reported as over, never dropped; when the best one is not within, the next
candidate that is is offered. Latency does not depend on weights, so the top-K files other than
the best carry seeded random weights (BatchNorm re-estimated on real images so verification means
something); the best is the retrained network itself.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hwnas.arch import Arch
from hwnas.builder import arch_cost, build_model, recalibrate_batchnorm
from hwnas.data import load_data
from hwnas.exporters import ExportRequest, export_all
from hwnas.fileio import atomic_write_json
from hwnas.formats import FORMATS
from hwnas.recipe import Recipe
from hwnas.search.loop import SearchConfig
from hwnas.search.measure import PREDICTED_ONLY, drift, time_interleaved, verdict
from hwnas.search.plots import pareto_plot
from hwnas.trainer import Prepared, TrainResult, evaluate, train

Log = Callable[[str], None]
# fine-tuning inherited weights, the supernet's recipe's learning rate times this (no warm-up). Measured on the shipped
# supernet (3 epochs) for one network, one epoch on the 9,000 embedded training images, test accuracy (2,000 images)
# from 0.7605 inherited: x1 0.8105, x0.3 0.7805 (at batch 32 instead of its 128: x1 0.8365, x0.1 0.7925, x0.03 0.775);
# on 2,000 images x1 0.772. Weights trained for three epochs are far from converged: the full rate helps.
FINETUNE_LR_SCALE = 1.0
# ... and taught as well by the supernet's largest subnetwork, at this weight of the loss (its soft outputs at
# temperature 4). Measured on the shipped 12-epoch supernet (benchmarks/finetune_rate.py, 2026-12-05): the 9 networks
# of specialize_cost.json, one epoch, test accuracy on 10,000 images, paired: +0.25 points on average (95% interval
# +0.04 to +0.46, 7 of 9 ahead) against labels alone; a third of the rate +0.13 (-0.04 to +0.30), a tenth +0.01. The
# teacher's forward passes make the epoch 1.3-2x longer.
FINETUNE_DISTILL = 0.5


def device_format(backend: Any) -> str:
    """The format the search's candidates are exported to and timed in: the device's (:func:`export_format_for`)."""
    from hwnas.devices import export_format_for

    return export_format_for(backend.spec)


def top_candidates(trials: list[dict[str, Any]], budget_ms: float, k: int) -> list[dict[str, Any]]:
    """The K most accurate completed trials predicted within ``budget_ms`` (then the rest by reward, if too few)."""
    done = [t for t in trials if t.get("accuracy") is not None]
    feasible = sorted((t for t in done if t["predicted_latency_ms"] <= budget_ms), key=lambda t: (-t["accuracy"], t["number"]))
    others = sorted((t for t in done if t["predicted_latency_ms"] > budget_ms), key=lambda t: (-(t["reward"] or 0), t["number"]))
    return (feasible + others)[:k]


def finish_search(
    config: SearchConfig,
    summary: dict[str, Any],
    *,
    top_k: int = 3,
    final_epochs: int = 3,
    rounds: int = 10,
    references: int = 3,
    threads: int | None = None,
    retrain_images: int | None = None,
    log: Log = lambda message: None,
) -> dict[str, Any]:
    """Retrain, export, measure and judge; writes ``result.json`` and ``pareto.png`` in the search folder."""
    out = Path(config.out)
    chosen = top_candidates(summary["trials"], config.search_budget_ms, top_k)
    report: dict[str, Any] = {
        "budget_ms": config.reward.budget_ms,
        "margin": config.margin,
        "search_budget_ms": config.search_budget_ms,
        "reward": config.reward.to_json(),
        "device": config.device.describe(),
        "table_drift": config.drift,  # the device today vs its table, re-timed when the search started
        "search": {k: v for k, v in summary.items() if k != "trials"},
        "top": [],
    }
    if not chosen:
        report["error"] = "no trial completed: nothing to retrain or measure"
        write_result(out, report)
        return report
    torch.set_num_threads(threads or len(os.sched_getaffinity(0)))
    best = chosen[0]
    log(_retrain_line(config, final_epochs, retrain_images, best["arch"]))
    retrained = _retrain(config, best, final_epochs, retrain_images)
    if config.device.measurable:
        _judge_measured(config, report, chosen, retrained, rounds, references, log)
    else:
        _judge_predicted(config, report, chosen, retrained, log)
    report["pareto_plot"] = str(pareto_plot(summary["trials"], report, out / "pareto.png"))
    write_result(out, report)
    return report


def _judge_measured(
    config: SearchConfig,
    report: dict[str, Any],
    chosen: list[dict[str, Any]],
    retrained: dict[str, Any],
    rounds: int,
    references: int,
    log: Log,
) -> None:
    """Export the top K, time them on the device in interleaved rounds beside drift references, and judge each
    against the budget: fills the report's ``top``, ``drift`` and ``best``."""
    out = Path(config.out)
    fmt = device_format(config.device.backend)
    files, exports = _export_all(config, chosen, retrained, fmt, out / "export", log)
    refs = _reference_networks(config, references)
    ref_files, _ = _export_refs(config, refs, fmt, out / "export" / "drift", log)
    log(f"timing {len(files)} candidates and {len(ref_files)} drift references in {rounds} interleaved rounds")
    timed = time_interleaved(config.device.backend, files | ref_files, rounds)
    checked = drift({name: (timed[name], refs[name]["median_ms"]) for name in ref_files})
    for rank, trial in enumerate(chosen):
        name = f"top{rank + 1}"
        measured = timed[name].summary() if name in timed else None
        judged = verdict(measured, config.reward.budget_ms, checked["ratio"], checked["applied"]) if measured else None
        report["top"].append(_entry(rank, trial, exports.get(name), measured, judged, retrained))
    report["drift"] = checked | {"references": {name: timed[name].summary() | refs[name] for name in ref_files}}
    report["best"] = _offer(report["top"])


def _entry(
    rank: int,
    trial: dict[str, Any],
    export: dict[str, Any] | None,
    measured: dict[str, Any] | None,
    judged: dict[str, Any] | None,
    retrained: dict[str, Any],
) -> dict[str, Any]:
    """One of the top K in ``result.json``: what the search scored, its export, what the device measured and the
    verdict (``None`` for both when it was not timed); the best also carries its retraining."""
    entry = {
        "rank": rank + 1,
        "number": trial["number"],
        "arch": trial["arch"],
        "recipe": trial["recipe"],
        "proxy_accuracy": trial["accuracy"],
        "predicted_latency_ms": trial["predicted_latency_ms"],
        "export": export,
        "measured": measured,
        "judged": judged,
    }
    return entry | ({"retrained": retrained["result"]} if rank == 0 else {})


def _judge_predicted(
    config: SearchConfig,
    report: dict[str, Any],
    chosen: list[dict[str, Any]],
    retrained: dict[str, Any],
    log: Log,
) -> None:
    """The judgement for a device known only by its table (``--device TABLE.json``): the top K are exported in the
    file the device runs (ONNX for TensorRT, whose engines are built on their GPU) and verified here, but not timed:
    the verdict is the prediction's, and the best is offered as it is (no measurement can move it aside)."""
    from hwnas.devices.formats import handoff_format_for

    fmt = handoff_format_for(config.device.spec)
    _, exports = _export_all(config, chosen, retrained, fmt, Path(config.out) / "export", log)
    log(f"{config.device.spec.name} is not here to measure on: the top {len(chosen)} are predicted only")
    for rank, trial in enumerate(chosen):
        report["top"].append(_entry(rank, trial, exports.get(f"top{rank + 1}"), None, None, retrained))
    report["drift"] = None
    report["best"] = {"rank": 1, "arch": chosen[0]["arch"], "verdict": PREDICTED_ONLY}


def _largest_subnetwork(supernet: Any, resolution: int, data: Any) -> torch.nn.Module:
    """The teacher of fine-tuning: the supernet's largest subnetwork at the student's resolution, as it inherits."""
    from hwnas.supernet.store import inherited_network

    largest = replace(supernet.largest_arch(), resolution=resolution)
    return inherited_network(supernet, largest, data).eval()


def _retrain_line(config: SearchConfig, epochs: int, images: int | None, arch: str) -> str:
    where = f"on {images or 'all'} training images"
    if config.supernet is None:
        return f"retraining the best for {epochs} epochs {where}: {arch}"
    if epochs == 0:
        return f"taking the best with the weights it inherits (no fine-tuning): {arch}"
    return f"fine-tuning the best from the weights it inherits for {epochs} epoch(s) {where}: {arch}"


def write_result(out: Path, report: dict[str, Any]) -> Path:
    """``out/result.json``, stamped with the search result's schema version."""
    return atomic_write_json(Path(out) / "result.json", FORMATS["search-result"].stamp(report))


def _offer(top: list[dict[str, Any]]) -> dict[str, Any]:
    """The best and, when it is not measured within the budget, the next candidate that is."""
    best = top[0]
    state = best["judged"]["verdict"] if best.get("judged") else "not measured"
    offer: dict[str, Any] = {"rank": 1, "arch": best["arch"], "verdict": state}
    if state != "within":
        following = next((entry for entry in top[1:] if entry.get("judged") and entry["judged"]["verdict"] == "within"), None)
        offer["next_feasible"] = (
            {"rank": following["rank"], "arch": following["arch"], "recipe": following["recipe"], "judged": following["judged"]}
            if following
            else None
        )
    return offer


def _retrain(config: SearchConfig, trial: dict[str, Any], epochs: int, images: int | None = None) -> dict[str, Any]:
    """The best candidate with its recipe for ``epochs`` epochs on all training images (or the first ``images``); test too.

    With a supernet the best starts from the weights it inherits instead (:func:`from_supernet`): the network
    the search scored, fine-tuned for ``epochs`` (0: as inherited)."""
    space = config.space
    arch = space.parse(trial["arch"])
    recipe = replace(Recipe.from_json(trial["recipe"]), epochs=max(epochs, 1))
    data = load_data(config.data)
    if images:
        data = data.head(images, len(data.val))  # type: ignore[arg-type]
    if config.supernet is not None:
        result, how = from_supernet(config.supernet, arch, recipe, data, epochs, config.seed)
    else:
        result, how = train(space, arch, recipe, data, seed=config.seed, progress=False, evaluate_test=True), "retrained"
    folder = Path(config.out) / "best"
    result.save(folder)
    return {"result": result.to_json() | {"folder": str(folder), "how": how}, "model": result.model}


def from_supernet(
    supernet_folder: Path,
    arch: Arch,
    recipe: Recipe,
    data: Any,
    epochs: int,
    seed: int,
    lr_scale: float = FINETUNE_LR_SCALE,
    distill: float = FINETUNE_DISTILL,
) -> tuple[TrainResult, str]:
    """``arch`` with the weights it inherits from the supernet (BatchNorm re-estimated on ``data``), fine-tuned for
    ``epochs`` epochs with the recipe the supernet was trained with (``recipe``, the candidate's, only for a supernet
    that records none: a search on inherited weights never tried the candidate's recipe, and FBNetV3's sampled ones
    reach learning rates a hundred times lower) at ``lr_scale`` of its learning rate, no warm-up; test
    accuracy too. ``distill`` > 0 (:data:`FINETUNE_DISTILL`): taught as well by the supernet's largest subnetwork at the
    same resolution, the teacher the supernet's own training used (in-place distillation), at that weight. Returns
    the result and how it was obtained, for the report."""
    from hwnas.search.inherited import loaded_supernet
    from hwnas.supernet.store import inherited_network

    supernet, info = loaded_supernet(supernet_folder)
    recipe = Recipe.from_json(info["recipe"]) if isinstance(info.get("recipe"), dict) else recipe
    space = supernet.space
    started = time.perf_counter()
    model = inherited_network(supernet, arch, data).eval()
    if epochs > 0:
        tune = replace(recipe, epochs=epochs, lr=recipe.lr * lr_scale, warmup_epochs=0.0, distill=distill)
        teacher = _largest_subnetwork(supernet, arch.resolution, data) if distill else None
        result = train(space, arch, tune, data, seed=seed, progress=False, evaluate_test=True, initial=model, teacher=teacher)
        taught = f", taught by the largest subnetwork (weight {distill:g})" if distill else ""
        return result, f"inherited from the supernet, fine-tuned {epochs} epoch(s) at lr {tune.lr:g}{taught}"
    val = evaluate(model, Prepared(data.val, arch.resolution, space.in_channels))
    test = evaluate(model, Prepared(data.test, arch.resolution, space.in_channels))
    cost = arch_cost(space, arch)
    result = TrainResult(
        arch=arch.format(), recipe=recipe.to_json() | {"epochs": 0}, dataset=data.name, resolution=arch.resolution,
        val_accuracy=val, curve=[{"epoch": 0, "val_accuracy": val}], wall_time_s=time.perf_counter() - started,
        params=cost.params, flops=cost.flops, seed=seed, threads=torch.get_num_threads(), test_accuracy=test, model=model,
    )  # fmt: skip
    return result, "inherited from the supernet, not fine-tuned"


def _request(config: SearchConfig, module: torch.nn.Module, arch: Arch, trained: bool, info: dict[str, Any]) -> ExportRequest:
    data = load_data(config.data)
    channels, resolution = config.space.in_channels, arch.resolution
    val = Prepared(data.val, resolution, channels)
    calibration = Prepared(data.train, resolution, channels)
    checked = range(min(200, len(val)))  # a small image folder may have fewer validation images
    images = np.stack([val[i][0].numpy() for i in checked]).astype(np.float32)
    labels = np.array([val[i][1] for i in checked])
    calib = np.stack([calibration[i][0].numpy() for i in range(min(100, len(calibration)))]).astype(np.float32)
    if not trained:
        recalibrate_batchnorm(module, torch.from_numpy(calib))
    cost = arch_cost(config.space, arch)
    info = info | {"arch": arch.format(), "flops": cost.flops, "params": cost.params, "dataset": data.name}
    return ExportRequest(module.eval(), torch.from_numpy(images[:1]).clone(), images, labels if trained else None, calib, info)


def _other_weights(config: SearchConfig, arch: Arch) -> tuple[torch.nn.Module, str]:
    """A top-K candidate after the best: its inherited weights when there is a supernet (free, and a real network if it
    is offered instead of the best), else seeded random ones (latency does not depend on weights)."""
    if config.supernet is None:
        return _random_weights(config, arch), "seeded random weights (latency only)"
    from hwnas.search.inherited import loaded_supernet
    from hwnas.supernet.store import inherited_network

    network = inherited_network(loaded_supernet(config.supernet)[0], arch, load_data(config.data)).eval()
    return network, "inherited from the supernet, not fine-tuned"


def _random_weights(config: SearchConfig, arch: Arch) -> torch.nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return build_model(config.space, arch)


def _export_all(
    config: SearchConfig, chosen: list[dict[str, Any]], retrained: dict[str, Any], fmt: str, folder: Path, log: Log
) -> tuple[dict[str, Path], dict[str, Any]]:
    files: dict[str, Path] = {}
    exports: dict[str, Any] = {}
    for rank, trial in enumerate(chosen):
        name = f"top{rank + 1}"
        arch = config.space.parse(trial["arch"])
        module, source = (retrained["model"], retrained["result"]["how"]) if rank == 0 else _other_weights(config, arch)
        info = {"name": name, "source": source}
        log(f"exporting {name} to {fmt}")
        card = export_all(
            _request(config, module, arch, rank == 0 or config.supernet is not None, info), [fmt], folder / name, []
        )
        item = card["exports"][0]
        exports[name] = {"format": fmt, "file": str(folder / name / item["file"]), "verification": item["verification"]}
        if item["verification"]["passed"]:
            files[name] = folder / name / item["file"]
    return files, exports


def _reference_networks(config: SearchConfig, count: int) -> dict[str, dict[str, Any]]:
    """``count`` of the table's measured networks spread over its latency range (10th to 90th percentile)."""
    networks = sorted(config.device.table.networks, key=lambda row: row["median_ms"])
    if not networks or count <= 0:
        return {}
    positions = np.linspace(0.1, 0.9, count) if count > 1 else [0.5]
    picked = {min(int(p * len(networks)), len(networks) - 1) for p in positions}
    return {
        f"ref{i + 1}": {"arch": networks[index]["arch"], "median_ms": networks[index]["median_ms"]}
        for i, index in enumerate(sorted(picked))
    }


def _export_refs(
    config: SearchConfig, refs: dict[str, dict[str, Any]], fmt: str, folder: Path, log: Log
) -> tuple[dict[str, Path], dict[str, Any]]:
    files: dict[str, Path] = {}
    for name, ref in refs.items():
        arch = config.space.parse(ref["arch"])
        log(f"exporting drift reference {name} ({ref['median_ms']:.3f} ms in the table)")
        card = export_all(_request(config, _random_weights(config, arch), arch, False, {"name": name}), [fmt], folder / name, [])
        item = card["exports"][0]
        if item["verification"]["passed"]:
            files[name] = folder / name / item["file"]
    return files, {}


def space_median_ms(config_space: Any, device: Any, samples: int = 1000, seed: int = 0) -> float:
    """The median predicted latency of ``samples`` random architectures: the 'median' budget of the benchmarks."""
    import random

    rng = random.Random(seed)
    archs = [config_space.sample(rng) for _ in range(samples)]
    return float(statistics.median(device.predict(archs)))
