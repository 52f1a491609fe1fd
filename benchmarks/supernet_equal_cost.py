"""Quality at equal cost: supernet search + fine-tuning against today's per-candidate FBNetV3 search, same wall clock.

At three budgets on host TFLite (tight, median, loose: the 20th, 50th and 80th percentile of its table's whole
networks) and ``--seeds`` seeds, two ways to a network:

- *supernet*: ``specialize`` with the shipped supernet (200 candidates scored by inherited weights, the best
  fine-tuned ``--finetune-epochs`` from the weights it inherits, exported and measured), its wall time measured here;
- *fbnetv3*: the per-candidate search ``hwnas search`` runs by default (a proxy epoch on 2,000 images per
  candidate), given the same wall clock: the supernet's training counted once per budget (``--cost once``: its
  recorded ``wall_time_s`` plus this budget's specialization) or shared by the three budgets (``--cost amortised``,
  the default: a third of it plus the specialization), or not counted (``--cost marginal``: a new device or budget
  once a supernet exists, only the specialization's time). The search grows in steps of :data:`STEP` trials (a study
  resumes where it stopped) until its own measured wall time reaches that.

Both winners are then trained the same way: from scratch with the supernet's recipe for ``--final-epochs`` on the
embedded training images (seed as the row's), tested on the full 10,000-image Fashion-MNIST test set, and exported to
TFLite and timed in the same interleaved rounds. The supernet's own delivered network (fine-tuned from inherited
weights) is tested on the 10,000 images too. Per budget: the paired difference supernet minus fbnetv3 in points, its
mean and a 95% t-interval over seeds. FBNetV3 searches recipes with architectures; the final training gives both the
same recipe, so this compares the architectures each found.

The supernet's training time is the one ``supernet.json`` records (another day than this run: say so beside the
figures). Each finished row is written at once and a rerun resumes (a search's elapsed time is kept beside its study).

    nice -n 5 .venv/bin/python benchmarks/supernet_equal_cost.py --seeds 3 [--cost amortised|once]

Writes ``benchmarks/results/supernet_equal_cost.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from specialize_cost import budgets_of  # the tight, median and loose budgets of a device's table
from supernet_fidelity import splits  # the embedded images with the full test set, as the fidelity benchmark scores

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "supernet_equal_cost.json"
WORK = ROOT / "runs" / "benchmarks" / "supernet_equal_cost"
DEVICE = "host-tflite"
# the table every row is searched and budgeted by (the first rows' machine's, EPYC family 25 model 17): the table
# matching another machine predicts other latencies and moves the budgets, and the rows of one file must share them
TABLE = ROOT / "latency_tables" / "data" / "default-host-cpu-tflite-xnnpack-amd-epyc-f25m17.json"
BUDGET_NAMES = ("tight", "median", "loose")
SUPERNET_SHARE = {"amortised": 1 / len(BUDGET_NAMES), "once": 1.0, "marginal": 0.0}  # of its training, per budget
STEP = 4  # trials added to the per-candidate search between wall-clock checks
TIMING_ROUNDS = 10
SPREAD_SOURCE = ROOT / "benchmarks" / "results" / "supernet_fidelity_3epoch.json"
SPREAD_RESULT = ROOT / "benchmarks" / "results" / "supernet_equal_cost_spread.json"


def supernet_arm(budget: float, seed: int, trials: int, finetune_epochs: int) -> dict[str, Any]:
    """``specialize`` for one budget and seed; its network and wall time."""
    from hwnas.presets import get_space
    from hwnas.search.api import SearchSettings
    from hwnas.search.specialize import specialize
    from hwnas.supernets import resolve_supernet

    folder = resolve_supernet(Path("default"))
    out = WORK / f"supernet-{budget:g}ms-seed{seed}-{trials}c-ft{finetune_epochs}"  # kept for every --cost
    report = specialize(
        folder, [DEVICE], [budget], SearchSettings(trials=trials), out, space=get_space("default"),
        finetune_epochs=finetune_epochs, seed=seed, tables={DEVICE: TABLE}, log=print,
    )  # fmt: skip
    network = report.networks[0]
    if network.error is not None or network.arch is None:
        raise SystemExit(f"specialization at {budget:g} ms failed: {network.error}")
    return {"arch": network.arch, "wall_s": network.search_s + network.finish_s, "search_s": network.search_s,
            "finish_s": network.finish_s, "trials": network.trials, "predicted_ms": network.predicted_ms,
            "score": network.inherited_accuracy}  # fmt: skip


def fbnetv3_arm(budget: float, seed: int, seconds: float) -> dict[str, Any]:
    """Per-candidate FBNetV3 search at the default settings until its measured wall time reaches ``seconds``."""
    from hwnas.fileio import atomic_write_json
    from hwnas.presets import get_space
    from hwnas.search.api import DEFAULTS, make_search_config, run_search
    from hwnas.search.device import load_device_latency
    from hwnas.search.executors import make_executor

    space = get_space("default")
    latency = load_device_latency(DEVICE, space, TABLE, allow_mismatch=True)
    out = WORK / f"fbnetv3-{budget:g}ms-seed{seed}-{seconds:.0f}s"
    progress_file = out / "elapsed.json"
    progress = json.loads(progress_file.read_text()) if progress_file.exists() else {"elapsed_s": 0.0, "trials": 0}
    executor = make_executor()
    summary: dict[str, Any] = {}
    try:
        while progress["elapsed_s"] < seconds or not summary:
            trials = progress["trials"] + (STEP if progress["elapsed_s"] < seconds else 0)
            config = make_search_config(space, latency, budget, replace(DEFAULTS, trials=trials), out, seed=seed)
            started = time.perf_counter()
            summary = run_search(config, executor)
            progress = {"elapsed_s": progress["elapsed_s"] + time.perf_counter() - started, "trials": trials}
            atomic_write_json(progress_file, progress)
            print(f"fbnetv3 at {budget:g} ms, seed {seed}: {trials} trials, {progress['elapsed_s']:.0f} of {seconds:.0f} s")
    finally:
        executor.close()
    best = summary["best"]
    if best is None:
        raise SystemExit(f"the per-candidate search at {budget:g} ms found nothing within the budget")
    return {"arch": best["arch"], "wall_s": progress["elapsed_s"], "trials": progress["trials"],
            "predicted_ms": best["predicted_latency_ms"], "score": best["accuracy"]
            } | training_share(summary["trials"], executor.slots, progress["elapsed_s"])  # fmt: skip


def training_share(trials: list[dict[str, Any]], workers: int, elapsed_s: float) -> dict[str, Any]:
    """How much of the per-candidate search's wall clock its workers spent training (the rest: resuming the study and
    planning every :data:`STEP` trials, which an uninterrupted search of the same length would mostly not pay): the
    sum of the trials' own training times (the search summary's) over the workers that ran them in parallel."""
    trained = sum(float(trial.get("wall_time_s") or 0.0) for trial in trials)
    return {"trials_training_s": trained, "workers": workers, "training_share": trained / workers / elapsed_s}


def scratch_accuracy(arch_text: str, seed: int, epochs: int, data: Any, recipe: Any) -> float:
    from hwnas.presets import get_space
    from hwnas.trainer import train

    space = get_space("default")
    result = train(space, space.parse(arch_text), replace(recipe, epochs=epochs), data, seed=seed, progress=False,
                   evaluate_test=True)  # fmt: skip
    return float(result.test_accuracy)


def delivered_accuracy(arch_text: str, seed: int, finetune_epochs: int, data: Any, recipe: Any) -> float:
    """The supernet's network as ``hwnas specialize`` delivers it (fine-tuned from inherited weights), on the test set."""
    from hwnas.presets import get_space
    from hwnas.search.result import from_supernet
    from hwnas.supernets import resolve_supernet

    arch = get_space("default").parse(arch_text)
    result, _ = from_supernet(resolve_supernet(Path("default")), arch, recipe, data, finetune_epochs, seed)
    return float(result.test_accuracy)


def measured_ms(archs: dict[str, str]) -> dict[str, float]:
    """Each architecture exported to TFLite and timed on the host in the same interleaved rounds (median ms)."""
    import tempfile

    import torch

    from hwnas.builder import build_model
    from hwnas.devices import DeviceSpec, make_backend
    from hwnas.exporters import get_exporter
    from hwnas.presets import get_space
    from hwnas.search.measure import time_interleaved

    space, backend = get_space("default"), make_backend(DeviceSpec.from_toml(DEVICE))
    exporter = get_exporter(backend.model_format)
    with tempfile.TemporaryDirectory(prefix="hwnas-equal-cost-") as folder:
        files = {}
        for name, text in archs.items():
            arch = space.parse(text)
            shape = (1, space.in_channels, arch.resolution, arch.resolution)
            files[name] = exporter.export(
                build_model(space, arch).eval(), torch.zeros(shape), Path(folder) / f"{name}{exporter.suffix}"
            )
        timed = time_interleaved(backend, files, TIMING_ROUNDS)
        return {name: float(value.summary()["median_ms"]) for name, value in timed.items()}


def standalone_spread(budgets: dict[str, float]) -> dict[str, Any]:
    """What the space allows within each budget: the stand-alone test accuracy (mean of two seeds, trained from scratch
    for 3 epochs with the same recipe as the final trainings here) of the rank-fidelity benchmark's spread networks
    that the pinned table predicts within it (``supernet_fidelity_3epoch.json``), so a gain is read against it."""
    import statistics

    from hwnas.presets import get_space
    from hwnas.search.device import load_device_latency

    space = get_space("default")
    latency = load_device_latency(DEVICE, space, TABLE, allow_mismatch=True)
    seeds: dict[str, dict[int, float]] = {}
    for row in json.loads(SPREAD_SOURCE.read_text())["rows"]:
        if row["kind"] == "standalone":
            seeds.setdefault(row["arch"], {})[row["seed"]] = row["test_accuracy"]
    archs = [arch for arch, by_seed in seeds.items() if len(by_seed) >= 2]
    predicted = dict(zip(archs, latency.predict([space.parse(a) for a in archs]), strict=True))
    networks = [{"arch": a, "predicted_ms": float(predicted[a]), "standalone_test": statistics.mean(seeds[a].values()),
                 "seed_gap_points": 100 * (max(seeds[a].values()) - min(seeds[a].values()))} for a in archs]  # fmt: skip
    spread: dict[str, Any] = {"source": SPREAD_SOURCE.name, "networks": sorted(networks, key=lambda n: n["predicted_ms"])}
    for name, budget in budgets.items():
        within = [n["standalone_test"] for n in networks if n["predicted_ms"] <= budget]
        spread[name] = {"budget_ms": budget, "networks": len(within), "standalone_test_range": [min(within), max(within)]}
    return spread


def this_cpu() -> str:
    """The CPU the row ran on (rows of one file may come from several machines): name, family and model."""
    from hwnas.devices import DeviceSpec, make_backend

    found = make_backend(DeviceSpec.from_toml(DEVICE)).fingerprint()
    return f"{found.get('device')} family {found.get('cpu_family', '?')} model {found.get('cpu_model', '?')}"


def interval(values: list[float]) -> dict[str, Any]:
    """Mean and 95% t-interval (None with fewer than two values)."""
    from scipy import stats

    mean = statistics.mean(values)
    if len(values) < 2:
        return {"mean": mean, "ci95": None, "n": len(values)}
    half = float(stats.t.ppf(0.975, len(values) - 1)) * statistics.stdev(values) / len(values) ** 0.5
    return {"mean": mean, "ci95": [mean - half, mean + half], "n": len(values)}


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for name in BUDGET_NAMES:
        mine = [row for row in rows if row["budget_name"] == name]
        if not mine:
            continue
        gaps = [(row["supernet"]["scratch_test"] - row["fbnetv3"]["scratch_test"]) * 100 for row in mine]
        table[name] = {
            "budget_ms": mine[0]["budget_ms"],
            "supernet_minus_fbnetv3_points": interval(gaps),
            "supernet_scratch_test": interval([row["supernet"]["scratch_test"] for row in mine]),
            "fbnetv3_scratch_test": interval([row["fbnetv3"]["scratch_test"] for row in mine]),
            "supernet_delivered_test": interval([row["supernet"]["delivered_test"] for row in mine]),
            "fbnetv3_trials": [row["fbnetv3"]["trials"] for row in mine],
            "aim_2_points_met": statistics.mean(gaps) >= 2.0,
        }
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--cost", choices=tuple(SUPERNET_SHARE), default="amortised")
    parser.add_argument("--trials", type=int, default=200, help="candidates the supernet search scores")
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--final-epochs", type=int, default=3, help="scratch training of both winners")
    parser.add_argument("--budgets", nargs="+", choices=BUDGET_NAMES, default=list(BUDGET_NAMES))
    parser.add_argument("--out", type=Path, default=RESULT, help="results file")
    parser.add_argument("--spread-only", action="store_true", help=f"write what each budget allows ({SPREAD_RESULT.name})")
    args = parser.parse_args()

    from hwnas.fileio import atomic_write_json
    from hwnas.recipe import Recipe
    from hwnas.search.inherited import loaded_supernet
    from hwnas.supernets import resolve_supernet

    _, info = loaded_supernet(resolve_supernet(Path("default")))
    recipe, supernet_s = Recipe.from_json(info["recipe"]), float(info["wall_time_s"])
    data = splits()
    budgets = dict(zip(BUDGET_NAMES, budgets_of(DEVICE, TABLE), strict=True))
    if args.spread_only:
        atomic_write_json(SPREAD_RESULT, standalone_spread(budgets))
        print(SPREAD_RESULT.read_text())
        return
    settings = {"device": DEVICE, "cost": args.cost, "trials": args.trials, "finetune_epochs": args.finetune_epochs,
                "final_epochs": args.final_epochs, "supernet_epochs": info["epochs"], "supernet_train_s": supernet_s,
                "budgets_ms": budgets, "test_images": len(data.test)}  # fmt: skip
    previous = json.loads(args.out.read_text()) if args.out.exists() else {"settings": settings}
    if previous["settings"] != settings:  # never drop finished rows for a changed setting
        raise SystemExit(f"{args.out} holds rows of other settings ({previous['settings']}): give another --out")
    rows: list[dict[str, Any]] = previous.get("rows", [])
    for seed in range(args.seeds):
        for name in args.budgets:
            if any(row["budget_name"] == name and row["seed"] == seed for row in rows):
                continue
            budget = budgets[name]
            supernet = supernet_arm(budget, seed, args.trials, args.finetune_epochs)
            share = supernet_s * SUPERNET_SHARE[args.cost]
            fbnetv3 = fbnetv3_arm(budget, seed, share + supernet["wall_s"])
            for arm in (supernet, fbnetv3):
                arm["scratch_test"] = scratch_accuracy(arm["arch"], seed, args.final_epochs, data, recipe)
            supernet["delivered_test"] = delivered_accuracy(supernet["arch"], seed, args.finetune_epochs, data, recipe)
            timed = measured_ms({"supernet": supernet["arch"], "fbnetv3": fbnetv3["arch"]})
            supernet["measured_ms"], fbnetv3["measured_ms"] = timed["supernet"], timed["fbnetv3"]
            rows.append({"budget_name": name, "budget_ms": budget, "seed": seed, "supernet": supernet, "fbnetv3": fbnetv3,
                         "equal_wall_s": share + supernet["wall_s"], "cpu": this_cpu(),
                         "date": time.strftime("%Y-%m-%d")})  # fmt: skip
            atomic_write_json(args.out, {"settings": settings, "rows": rows, "summary": summarize(rows)})
            print(json.dumps(rows[-1]), flush=True)
    print(json.dumps(summarize(rows), indent=1))


if __name__ == "__main__":
    main()
