"""Strategies side by side on inherited weights: every strategy, ``--evals`` supernet evaluations, ``--seeds`` seeds.

Each strategy (random, evolution, mnas, fbnetv3, tpe, nsga2) searches the default space with the shipped supernet
scoring its candidates (``hwnas search --supernet default``: inherited weights, BatchNorm re-estimated on
``--bn-images`` training images, ``--val-images`` validation images) under the hard MnasNet reward, the budget at the
median predicted latency of the space on host TFLite (as ``benchmarks/search_strategies.py``, which trains each
candidate for a proxy epoch and so affords 10). Per strategy: the best validation accuracy within the search budget
after 50, 100, 200, 500 and all evaluations (mean and spread over seeds), and the best's inherited accuracy on the
full 10,000-image Fashion-MNIST test set, which the search never saw (its validation score is a maximum over
hundreds of noisy scores; the test score is not).

An inherited score is a deterministic function of the architecture (fixed supernet, fixed images), so scores are kept
in one cache shared by every run (``--out``/scores.json): a strategy that proposes an architecture another run
scored gets the stored score at once. This changes wall time only, never a result. Runs finished before are kept:
rerunning the command resumes where it stopped (a killed run starts its strategy and seed again).

Writes ``benchmarks/results/search_strategies_supernet.json``.

    nice -n 19 .venv/bin/python benchmarks/search_strategies_supernet.py --evals 1000 --seeds 5

On two cores, two processes (one thread each) split the strategies, each with its own score cache:

    ... --strategies random evolution mnas --out runs/bench-strategies-supernet
    ... --strategies fbnetv3 tpe nsga2 --out runs/bench-strategies-supernet-b
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from supernet_fidelity import splits  # the embedded images with the full test set, as the fidelity benchmark scores

from hwnas.search.inherited import InheritedExecutor

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "search_strategies_supernet.json"
STRATEGIES = ("random", "evolution", "mnas", "fbnetv3", "tpe", "nsga2")
CHECKPOINTS = (50, 100, 200, 500)


class CachedScores(InheritedExecutor):
    """:class:`InheritedExecutor` (one slot, this process) that scores an architecture once per benchmark (see above)."""

    def __init__(self, supernet: Path, path: Path) -> None:
        super().__init__(supernet, threads=1)
        self.path = path
        self.scores: dict[str, dict[str, Any]] = json.loads(path.read_text()) if path.exists() else {}
        self.fresh = 0

    def submit(self, job: dict[str, Any]) -> Future:
        key = f"{job['arch']}|{job.get('train_images')}|{job.get('val_images')}"
        if key not in self.scores:
            scored = super().submit(job)
            if scored.result().get("state") != "complete":
                return scored
            self.scores[key] = scored.result()
            self.fresh += 1
            if self.fresh % 50 == 0:
                self.save()
        future: Future = Future()
        future.set_result(dict(self.scores[key]))
        return future

    def close(self) -> None:
        self.save()

    def save(self) -> None:
        from hwnas.fileio import atomic_write_json

        atomic_write_json(self.path, self.scores)


def best_so_far(trials: list[dict[str, Any]], budget: float) -> list[tuple[float, str] | None]:
    """(best validation accuracy, its architecture) among candidates within ``budget`` after each evaluation."""
    best: tuple[float, str] | None = None
    curve = []
    for trial in trials:
        feasible = trial.get("accuracy") is not None and trial["predicted_latency_ms"] <= budget
        if feasible and (best is None or trial["accuracy"] > best[0]):
            best = (trial["accuracy"], trial["arch"])
        curve.append(best)
    return curve


def check_scored_with(out: Path, supernet: Path) -> None:
    """Refuse an ``--out`` whose score cache and studies came from another supernet's weights (a re-made shipped one)."""
    from hwnas.fileio import file_sha256
    from hwnas.supernet.store import WEIGHTS_FILE

    stamp, weights = out / "supernet.sha256", file_sha256(supernet / WEIGHTS_FILE)
    if not stamp.exists():  # a new folder (or one from before the stamp: its scores are taken as this supernet's)
        stamp.write_text(weights)
    elif stamp.read_text().strip() != weights:
        raise SystemExit(f"{out} was scored with another supernet's weights: give another --out")


def test_accuracy(arch_text: str, data: Any, supernet: Any) -> float:
    """Inherited accuracy of ``arch_text`` on the test split (BatchNorm re-estimated on training images)."""
    import torch

    from hwnas.builder import recalibrate_batchnorm
    from hwnas.trainer import Prepared, batchnorm_images, evaluate

    space = supernet.space
    arch = space.parse(arch_text)
    model = supernet.extract(arch)
    recalibrate_batchnorm(model, batchnorm_images(data, arch.resolution, space.in_channels, model))
    with torch.inference_mode():
        return evaluate(model, Prepared(data.test, arch.resolution, space.in_channels))


def run_one(config: Any, executor: CachedScores, data: Any, supernet: Any) -> dict[str, Any]:
    from hwnas.search.loop import SearchLoop

    shutil.rmtree(config.out, ignore_errors=True)
    started = time.perf_counter()
    fresh_before = executor.fresh
    summary = SearchLoop(config).run(executor)
    wall = time.perf_counter() - started
    curve = best_so_far(summary["trials"], config.search_budget_ms)
    final = curve[-1] if curve else None
    return {
        "strategy": config.strategy,
        "seed": config.seed,
        "evaluations": len(summary["trials"]),
        "distinct_architectures": len({t["arch"] for t in summary["trials"]}),
        "scored_afresh": executor.fresh - fresh_before,
        "wall_time_s": wall,
        "feasible": sum(t["predicted_latency_ms"] <= config.search_budget_ms for t in summary["trials"]),
        "best_val_at": {str(n): curve[n - 1][0] for n in (*CHECKPOINTS, len(curve)) if n <= len(curve) and curve[n - 1]},
        "best_arch": final[1] if final else None,
        "best_val_accuracy": final[0] if final else None,
        "best_test_accuracy": test_accuracy(final[1], data, supernet) if final else None,
    }


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def stats(values: list[float]) -> dict[str, float | None]:
        return {
            "mean": statistics.mean(values) if values else None,
            "min": min(values) if values else None,
            "max": max(values) if values else None,
            "stdev": statistics.stdev(values) if len(values) > 1 else None,
        }

    table: dict[str, Any] = {}
    for strategy in STRATEGIES:
        mine = [run for run in runs if run["strategy"] == strategy]
        if not mine:
            continue
        points = sorted({int(n) for run in mine for n in run["best_val_at"]})
        table[strategy] = {
            "seeds": len(mine),
            "best_val": stats([r["best_val_accuracy"] for r in mine if r["best_val_accuracy"] is not None]),
            "best_test": stats([r["best_test_accuracy"] for r in mine if r["best_test_accuracy"] is not None]),
            "best_val_at": {
                str(n): stats([r["best_val_at"][str(n)] for r in mine if str(n) in r["best_val_at"]]) for n in points
            },
            "distinct_architectures_mean": statistics.mean(r["distinct_architectures"] for r in mine),
            "wall_time_s_mean": statistics.mean(r["wall_time_s"] for r in mine),
        }
    random = table.get("random")
    if random and random["best_test"]["mean"] is not None:
        for row in table.values():
            row["test_minus_random_points"] = (row["best_test"]["mean"] - random["best_test"]["mean"]) * 100
            row["val_minus_random_points"] = (row["best_val"]["mean"] - random["best_val"]["mean"]) * 100
    return table


# the table every recorded run was judged by (the EPYC table of 2026-11-23, the only one of this CPU name then): a
# table made later predicts other latencies, and the runs of one results file must share one
TABLE = ROOT / "latency_tables" / "data" / "default-host-cpu-tflite-xnnpack-amd-epyc.json"


def save_run(settings: dict[str, Any], row: dict[str, Any]) -> list[dict[str, Any]]:
    """Add one finished run to the results file, merged with what is there now (under a lock), and return all runs.

    Two processes may share the work (``--strategies`` split between them, each its own ``--out``): each re-reads
    the file before it writes, so neither drops the other's runs.
    """
    from shared_results import update_locked

    def merged(current: dict[str, Any]) -> dict[str, Any]:
        stored = current.get("runs", []) if current.get("settings") == settings else []
        keyed = {(r["strategy"], r["seed"]): r for r in [*stored, row]}
        runs = sorted(keyed.values(), key=lambda r: (r["seed"], STRATEGIES.index(r["strategy"])))
        return {"settings": settings, "table": aggregate(runs), "runs": runs}

    return update_locked(RESULT, merged)["runs"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evals", type=int, default=1000, help="supernet evaluations per search")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--val-images", type=int, default=1000)
    parser.add_argument("--bn-images", type=int, default=256)
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--table", type=Path, default=TABLE, help="host TFLite latency table the candidates are judged by")
    parser.add_argument("--budget-ms", type=float, help="latency budget (default: the recorded runs', else the median)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-strategies-supernet")
    args = parser.parse_args()

    import torch

    from hwnas.presets import get_space
    from hwnas.recipe import Recipe
    from hwnas.search.device import load_device_latency
    from hwnas.search.inherited import loaded_supernet
    from hwnas.search.loop import SearchConfig
    from hwnas.search.result import space_median_ms
    from hwnas.search.reward import parse_reward
    from hwnas.supernets import resolve_supernet

    torch.set_num_threads(1)
    space = get_space("default")
    device = load_device_latency("host-tflite", space, args.table, allow_mismatch=True)
    previous = json.loads(RESULT.read_text()) if RESULT.exists() else {}
    # the budget of the runs already recorded, so a re-made latency table (which moves the space's median) does not
    # discard them; a new results file takes the median predicted by today's table
    budget = args.budget_ms or previous.get("settings", {}).get("budget_ms") or space_median_ms(space, device)
    folder = resolve_supernet("default", given_as="--supernet")
    supernet, info = loaded_supernet(folder)
    data = splits()
    settings = {
        "evals": args.evals,
        "val_images": args.val_images,
        "bn_images": args.bn_images,
        "budget_ms": budget,
        "reward": "hard",
        "supernet": "default",
        "supernet_epochs": info.get("epochs"),
        "test_images": len(data.test),
    }
    runs = previous.get("runs", []) if previous.get("settings") == settings else []
    args.out.mkdir(parents=True, exist_ok=True)
    check_scored_with(args.out, folder)
    executor = CachedScores(folder, args.out / "scores.json")
    try:
        for seed in range(args.seeds):
            for strategy in args.strategies:
                if any(r["strategy"] == strategy and r["seed"] == seed for r in runs):
                    continue
                config = SearchConfig(
                    space, device, parse_reward("hard", budget), args.out / f"{strategy}-{seed}", strategy=strategy,
                    trials=args.evals, base_recipe=Recipe(batch_size=32, epochs=1), train_images=args.bn_images,
                    val_images=args.val_images, seed=seed, supernet=folder,
                )  # fmt: skip
                row = run_one(config, executor, data, supernet)
                shown = ("strategy", "seed", "best_val_accuracy", "best_test_accuracy", "distinct_architectures", "wall_time_s")
                print(json.dumps({key: row[key] for key in shown}), flush=True)
                runs = save_run(settings, row)
    finally:
        executor.close()
    table = aggregate(runs)
    print(json.dumps({s: (row["best_val"]["mean"], row["best_test"]["mean"]) for s, row in table.items()}))


if __name__ == "__main__":
    main()
