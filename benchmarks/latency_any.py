"""Latency of networks no table holds: torchvision models and channel-pruned networks, predicted vs measured.

Per runtime (ONNX Runtime and TFLite on this CPU, 1 thread, pinned), in one session:

1. profile ``--layers`` sampled layers (``hwnas profile SPEC --no-space-layers --layers N``; the
   same store, so a killed run resumes) with the reference networks in the same rounds;
2. measure whole networks, all in round-robin rounds right after: torchvision mobilenet_v2,
   mobilenet_v3_small / large, mnasnet0_5 / 1_0 and efficientnet_b0 at 96 / 160 / 224 px and two
   width multipliers where the model has one (MobileNets), plus ``--pruned`` default-space
   networks whose channels Torch-Pruning cut by a random 10-60% per layer;
3. predict each network from the table of *sampled layers only* (none of these networks' layers
   was chosen for it) plus the layer models fitted on it: ``network_latency``. Ablations: the
   cost model alone (no boosted correction) and no per-call overhead correction;
4. drift check: re-time the reference networks as a later session would, first on a quiet core,
   then with a busy process pinned to the measuring core.

Writes ``benchmarks/results/latency_any_<runtime>.json`` and ``latency_any.png``.

    flock /tmp/hwnas-cpu.lock .venv/bin/python benchmarks/latency_any.py --layers 300 --runtimes onnx,tflite
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hwnas.decompose import decompose, torchvision_model  # noqa: E402
from hwnas.devices import DeviceSpec, make_backend  # noqa: E402
from hwnas.devices.backends.base import measuring_cores  # noqa: E402
from hwnas.latency_tables.convert import ConversionJob, convert_all, torchvision_job  # noqa: E402
from hwnas.latency_tables.drift import DEFAULT_REFERENCES, check_drift  # noqa: E402
from hwnas.latency_tables.profiler import EXTRA_PREFIX, Profiler, ProfileSettings  # noqa: E402
from hwnas.latency_tables.sampling import draw_zoo_networks, sample_layers, sample_zoo_layers  # noqa: E402
from hwnas.latency_tables.store import LatencyStore  # noqa: E402
from hwnas.paths import model_cache as default_cache  # noqa: E402
from hwnas.predictors.evaluate import latency_metrics  # noqa: E402
from hwnas.predictors.layer_models import LayerLatencyModel  # noqa: E402
from hwnas.predictors.network_latency import family_factors, keys_latency, layer_model  # noqa: E402
from hwnas.presets import get_space  # noqa: E402

SPECS = {"onnx": "host-ort", "tflite": "host-tflite"}
MODELS = {  # name -> width multipliers (None: the model's own; MnasNet's width is in its name, b0 has none)
    "mobilenet_v2": (1.0, 0.5),
    "mobilenet_v3_small": (1.0, 0.75),
    "mobilenet_v3_large": (1.0, 0.75),
    "mnasnet0_5": (None,),
    "mnasnet1_0": (None,),
    "efficientnet_b0": (None,),
}
RESOLUTIONS = (96, 160, 224)
RESULTS = ROOT / "benchmarks" / "results"


# ---- networks -----------------------------------------------------------------------------------
def torchvision_grid() -> list[dict[str, Any]]:
    return [
        {"kind": "torchvision", "name": name, "width": width, "resolution": resolution}
        for name, widths in MODELS.items()
        for width in widths
        for resolution in RESOLUTIONS
    ]


def pruned_network(seed: int):
    """A sampled default-space network, every prunable convolution's channels cut by a random 10-60%."""
    import torch
    import torch_pruning as tp

    from hwnas.builder import build_model

    space = get_space("default")
    arch = space.sample(random.Random(1000 + seed))
    torch.manual_seed(seed)
    module = build_model(space, arch).eval()
    rng = random.Random(seed)
    convs = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d) and m.groups == 1]
    ratios = {conv: rng.uniform(0.1, 0.6) for conv in convs}
    linear = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
    example = torch.zeros(1, 1, arch.resolution, arch.resolution)
    pruner = tp.pruner.MetaPruner(
        module, example, importance=tp.importance.RandomImportance(), pruning_ratio_dict=ratios, ignored_layers=linear
    )
    pruner.step()
    return module.eval(), (1, 1, arch.resolution, arch.resolution), arch.format()


def export_pruned(seed: int, fmt: str, path: str) -> str:
    """Worker: rebuild pruned network ``seed`` (deterministic) and export it."""
    import torch

    from hwnas.exporters import get_exporter

    torch.set_num_threads(1)
    if Path(path).exists():
        return path
    module, shape, _ = pruned_network(seed)
    get_exporter(fmt).export(module, torch.zeros(shape), Path(path))
    return path


def _quiet() -> None:
    from hwnas.latency_tables.convert import _quiet_worker

    _quiet_worker()


def prepare_networks(fmt: str, cache: Path, pruned: int, workers: int) -> list[dict[str, Any]]:
    """Every network with its model file (converted now if missing) and its OpKeys."""
    networks = []
    jobs = []
    for item in torchvision_grid():
        job = torchvision_job(item["name"], item["width"], item["resolution"], fmt, cache)
        jobs.append(job)
        module = torchvision_model(item["name"], item["width"])
        shape = (1, 3, item["resolution"], item["resolution"])
        width = "" if item["width"] is None else f"-w{item['width']}"
        label = f"{item['name']}{width}-r{item['resolution']}"
        networks.append({**item, "label": label, "path": job.path, "keys": decompose(module, shape)})
    started = time.perf_counter()
    convert_all(jobs, workers)
    pruned_items = []
    for seed in range(pruned):
        module, shape, arch = pruned_network(seed)
        path = cache / fmt / f"pruned-default-v1-{seed}.{fmt}"
        pruned_items.append((seed, str(path)))
        networks.append(
            {"kind": "pruned", "label": f"pruned-{seed}", "arch": arch, "path": path, "keys": decompose(module, shape)}
        )
    missing = [(seed, path) for seed, path in pruned_items if not Path(path).exists()]
    if missing:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"), initializer=_quiet) as pool:
            list(pool.map(export_pruned, [s for s, _ in missing], [fmt] * len(missing), [p for _, p in missing]))
    print(f"  networks converted in {time.perf_counter() - started:.0f} s", flush=True)
    return networks


# ---- predictions and metrics ------------------------------------------------------------------
def metrics(predicted: list[float], measured: list[float]) -> dict[str, float]:
    result = latency_metrics(predicted, measured)
    relative = np.abs(np.asarray(predicted) / np.asarray(measured) - 1)
    result["within_20pct"] = float(np.mean(relative <= 0.20))
    return result


def predict_all(table: Any, networks: list[dict[str, Any]]) -> None:
    cost_only = _cost_only(table)
    for network in networks:
        result = keys_latency(network["keys"], table, family=network.get("name"))
        network["predicted_ms"] = result.total_ms
        network["family_factor"] = result.family_factor
        network["predicted_without_family_ms"] = result.total_ms / result.family_factor
        network["interval_ms"] = None if result.low_ms is None else [result.low_ms, result.high_ms]
        network["looked_up"], network["modelled"] = result.looked_up, result.modelled
        network["predicted_no_overhead_ms"] = sum(layer.ms for layer in result.layers) * result.family_factor
        missing = [k for k in network["keys"] if k not in table.entries]
        cost = dict(zip(missing, cost_only.predict(missing), strict=True)) if missing else {}
        network["predicted_cost_model_only_ms"] = sum(
            table.entries[k].median_ms if k in table.entries else cost[k] for k in network["keys"]
        ) - result.call_overhead_ms * (len(network["keys"]) - 1)
        network["predicted_cost_model_only_ms"] *= result.family_factor  # each ablation takes one thing away
        network["layers"] = [{"key": layer.key.describe(), "ms": layer.ms, "source": layer.source} for layer in result.layers]


def _inside(network: dict[str, Any]) -> bool:
    """Whether the measurement falls in the network's 80% interval (a network with every layer looked up has none)."""
    interval = network["interval_ms"]
    return interval is not None and interval[0] <= network["measured_ms"] <= interval[1]


def _cost_only(table: Any) -> LayerLatencyModel:
    """The ablation: per-type cost models without the boosted correction."""
    from hwnas.latency_tables.sampling import OVERHEAD_KEY

    entries = [e for k, e in table.entries.items() if k != OVERHEAD_KEY]
    return LayerLatencyModel(correction=False).fit([e.op for e in entries], [e.median_ms for e in entries])


def layer_cross_validation(table: Any, folds: int = 5) -> dict[str, Any]:
    """How well the layer models predict sampled layers they were not fitted on, per layer type."""
    from hwnas.latency_tables.sampling import OVERHEAD_KEY

    entries = [e for k, e in table.entries.items() if k != OVERHEAD_KEY]
    order = np.random.default_rng(0).permutation(len(entries))
    predicted = np.zeros(len(entries))
    for fold in range(folds):
        test = order[fold::folds]
        train = np.setdiff1d(order, test)
        model = LayerLatencyModel().fit([entries[i].op for i in train], [entries[i].median_ms for i in train])
        predicted[test] = model.predict([entries[i].op for i in test])
    measured = np.array([e.median_ms for e in entries])
    result = {"all": metrics(list(predicted), list(measured))}
    for op in sorted({e.op.op for e in entries}):
        chosen = [i for i, e in enumerate(entries) if e.op.op == op]
        result[op] = metrics(list(predicted[chosen]), list(measured[chosen]))
    return result


# ---- drift under load -------------------------------------------------------------------------
@contextlib.contextmanager
def busy_core(core: int):
    """A process spinning on ``core`` (the measuring core) for the duration; ended by its pid."""
    process = subprocess.Popen(["taskset", "-c", str(core), sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1.0)
        yield process.pid
    finally:
        process.terminate()
        process.wait(timeout=10)


def drift_demo(table: Any, backend: Any, cache: Path) -> dict[str, Any]:
    quiet = check_drift(table, backend, cache, context="benchmark: quiet core")
    core = min(measuring_cores(backend.spec))
    with busy_core(core):
        loaded = check_drift(table, backend, cache, context=f"benchmark: busy process pinned to core {core}")
    return {"quiet": quiet.to_json() if quiet else None, "loaded_core": core, "loaded": loaded.to_json() if loaded else None}


# ---- one runtime ------------------------------------------------------------------------------
def run_runtime(fmt: str, args: argparse.Namespace) -> dict[str, Any]:
    """Convert everything first, then time sampled layers, reference networks and every benchmark network
    in the *same* round-robin rounds (one profile): on a shared machine whose speed moves by tens of
    percent within minutes, a network timed ten minutes after the layers is compared with another machine."""
    spec = DeviceSpec.from_toml(SPECS[fmt])
    backend = make_backend(spec)
    cache = default_cache()
    out = ROOT / "runs" / "latency-any" / f"{spec.name}-{args.tag}"
    print(f"[{fmt}] converting networks", flush=True)
    networks = prepare_networks(fmt, cache, args.pruned, args.workers)
    extra = [(n["label"], ConversionJob(fmt, Path(n["path"]))) for n in networks]
    tested = {key for network in networks for key in network["keys"]}
    zoo = sample_zoo_layers(args.zoo_layers, args.seed, exclude=tested)
    layers = list(dict.fromkeys(sample_layers(args.layers, args.seed) + zoo))
    tested_configs = [(n["name"], n["width"], n["resolution"]) for n in networks if n["kind"] == "torchvision"]
    zoo_whole = draw_zoo_networks(args.zoo_networks, args.seed, exclude=tested_configs)
    print(
        f"[{fmt}] profiling {args.layers} sampled + {len(zoo)} zoo layers (none of a benchmark network's) "
        f"+ {len(networks)} networks + {len(zoo_whole)} zoo networks in the same rounds -> {out}",
        flush=True,
    )
    started = time.perf_counter()
    report = Profiler(
        spec,
        get_space("default"),
        out,
        cache,
        ProfileSettings(networks=0, workers=args.workers),
        layers=layers,
        references=DEFAULT_REFERENCES,
        extra_networks=extra,
        zoo=zoo_whole,
    ).run(progress=False)
    profile_s = time.perf_counter() - started
    table = report.table
    store = LatencyStore.open_existing(out / "store.sqlite")
    try:
        timed = {row.key.removeprefix(EXTRA_PREFIX): row.summary for row in store.accepted("network")}
    finally:
        store.close()
    for network in networks:
        network["measured_ms"], network["cv"] = timed[network["label"]]["median_ms"], timed[network["label"]]["cv"]
    result: dict[str, Any] = {
        "runtime": fmt,
        "device": spec.name,
        "fingerprint": backend.fingerprint(),
        "host": platform.node(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "sampled_layers": args.layers,
        "zoo_layers": len(zoo),
        "zoo_networks": table.zoo_networks,
        "profile_folder": out.name,
        "table_layers": len(table.entries),
        "profile": {
            "wall_s": profile_s,
            "convert_s": report.convert_s,
            "measure_s": report.measure_s,
            "measured_now": report.measured_now,
        },
        "networks_timed_in_the_layers_rounds": True,
        "references": table.references,
    }

    score(result, table, networks)
    if zoo:
        result["without_zoo_layers"] = ablation_without(table, set(zoo) - set(sample_layers(args.layers, args.seed)), networks)
    if not args.skip_drift:
        print(f"[{fmt}] drift check, quiet then with a busy core", flush=True)
        result["drift"] = drift_demo(table, backend, cache)
    return result


def score(result: dict[str, Any], table: Any, networks: list[dict[str, Any]]) -> None:
    """Predict every network from the table (+ layer models) and put predictions and metrics into ``result``."""
    predict_all(table, networks)
    result["layer_models"] = layer_model(table).describe()
    result["family_factors"] = {family: {"factor": f, "networks": n} for family, (f, n) in family_factors(table).items()}
    result["layer_cross_validation"] = layer_cross_validation(table)
    for kind in ("torchvision", "pruned"):
        chosen = [n for n in networks if n["kind"] == kind]
        if not chosen:
            continue
        measured = [n["measured_ms"] for n in chosen]
        result[kind] = {
            "network_latency": metrics([n["predicted_ms"] for n in chosen], measured),
            "ablation_no_overhead_correction": metrics([n["predicted_no_overhead_ms"] for n in chosen], measured),
            "ablation_no_family_correction": metrics([n["predicted_without_family_ms"] for n in chosen], measured),
            "ablation_cost_model_only": metrics([n["predicted_cost_model_only_ms"] for n in chosen], measured),
            "inside_80pct_interval": float(np.mean([_inside(n) for n in chosen])),
            "looked_up_layers": int(sum(n["looked_up"] for n in chosen)),
            "modelled_layers": int(sum(n["modelled"] for n in chosen)),
        }
    result["networks"] = [{k: (str(v) if k == "path" else v) for k, v in n.items() if k != "keys"} for n in networks]


def ablation_without(table: Any, left_out: set[Any], networks: list[dict[str, Any]]) -> dict[str, Any]:
    """The same measurements scored from the table without ``left_out`` (the zoo layers): what they add, in one session."""
    from dataclasses import replace

    thinner = replace(table, entries={key: entry for key, entry in table.entries.items() if key not in left_out})
    copies = [{key: value for key, value in network.items()} for network in networks]
    ablated: dict[str, Any] = {}
    score(ablated, thinner, copies)
    return {kind: ablated[kind] for kind in ("torchvision", "pruned") if kind in ablated} | {
        "table_layers": len(thinner.entries),
        "layer_models": ablated["layer_models"],
    }


def repredict(fmt: str, suffix: str = "") -> dict[str, Any]:
    """Score stored measurements again with the current layer models (no converting, no timing)."""
    from hwnas.latency_tables.table import LatencyTable

    path = RESULTS / f"latency_any_{fmt}{suffix}.json"
    result = json.loads(path.read_text())
    table = LatencyTable.load(ROOT / "runs" / "latency-any" / result.get("profile_folder", result["device"]) / "table.json")
    networks = []
    for stored in result["networks"]:
        if stored["kind"] == "torchvision":
            shape = (1, 3, stored["resolution"], stored["resolution"])
            keys = decompose(torchvision_model(stored["name"], stored["width"]), shape)
        else:
            module, shape, _ = pruned_network(int(stored["label"].split("-")[1]))
            keys = decompose(module, shape)
        networks.append({**stored, "keys": keys})
    score(result, table, networks)
    result["repredicted"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return result


def _zoo_caption(result: dict[str, Any]) -> str:
    return f" + {result['zoo_layers']} zoo layers, {len(result.get('zoo_networks', []))} zoo networks"


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 5.2), dpi=120, squeeze=False)
    for axis, result in zip(axes[0], results, strict=True):
        for kind, marker in (("torchvision", "o"), ("pruned", "^")):
            chosen = [n for n in result["networks"] if n["kind"] == kind]
            if chosen:
                axis.scatter(
                    [n["measured_ms"] for n in chosen], [n["predicted_ms"] for n in chosen], s=18, marker=marker, label=kind
                )
        values = [n["measured_ms"] for n in result["networks"]] + [n["predicted_ms"] for n in result["networks"]]
        line = np.geomspace(min(values) * 0.8, max(values) * 1.25, 2)
        axis.plot(line, line, color="black", linewidth=1)
        axis.fill_between(line, line * 0.9, line * 1.1, color="grey", alpha=0.25, label="±10%")
        axis.set_xscale("log")
        axis.set_yscale("log")
        tv = result.get("torchvision", {}).get("network_latency", {})
        axis.set_title(
            f"{result['runtime']}: predicted from {result['sampled_layers']} sampled"
            + (_zoo_caption(result) if result.get("zoo_layers") else " layers")
            + "\n"
            f"torchvision within ±10%: {tv.get('within_10pct', float('nan')):.0%}, MAPE {tv.get('mape_pct', float('nan')):.1f}%",
            fontsize=9,
        )
        axis.set_xlabel("measured (ms)")
        axis.set_ylabel("predicted (ms)")
        axis.legend(fontsize=8)
        axis.grid(True, alpha=0.3, which="both")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=300)
    parser.add_argument(
        "--zoo-layers",
        type=int,
        default=0,
        help="also measure N layers of torchvision networks at "
        "random widths and resolutions, none of them a benchmark network's layer",
    )
    parser.add_argument(
        "--zoo-networks",
        type=int,
        default=0,
        help="also measure N torchvision networks whole at random "
        "widths and resolutions (none a benchmark network): the per-family correction",
    )
    parser.add_argument("--pruned", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runtimes", default="onnx,tflite")
    parser.add_argument("--workers", type=int, default=max(1, len(os.sched_getaffinity(0))))
    parser.add_argument("--skip-drift", action="store_true")
    parser.add_argument("--tag", default="same-rounds", help="profile folder suffix (runs/latency-any/<device>-<tag>)")
    parser.add_argument("--results-suffix", default="", help="write latency_any_<runtime><suffix>.json")
    parser.add_argument("--repredict", action="store_true", help="score the stored measurements again (no timing)")
    args = parser.parse_args()
    results = []
    for fmt in args.runtimes.split(","):
        result = repredict(fmt, args.results_suffix) if args.repredict else run_runtime(fmt, args)
        path = RESULTS / f"latency_any_{fmt}{args.results_suffix}.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"[{fmt}] wrote {path}", flush=True)
        for kind in ("torchvision", "pruned"):
            if kind in result:
                print(f"[{fmt}] {kind}: {json.dumps(result[kind]['network_latency'])}", flush=True)
        results.append(result)
    stored = [RESULTS / f"latency_any_{fmt}{args.results_suffix}.json" for fmt in SPECS]
    plot([json.loads(path.read_text()) for path in stored if path.exists()], RESULTS / f"latency_any{args.results_suffix}.png")


if __name__ == "__main__":
    main()
