"""Does a seed's inherited-weight search repeat? The same search several times, telling results as they finish
(the default) and in the order asked (``--in-order``), with 2 workers and with 1.

Why: in the equal-cost benchmark two of three budgets chose a different network from the same seed, supernet and
pinned table on another machine. The suspect is the pool: with two workers the strategy is told each result when
it finishes, so which candidate it is asked for next can depend on which worker was faster. This runs the
supernet arm's own search (the shipped supernet, ``host-tflite`` on the pinned EPYC table, the median budget,
FBNetV3 over 200 candidates, seed 0; search only, nothing fine-tuned or measured) ``--repeats`` times each way,
each in a fresh study, and records every run's trained architectures in trial order, its best, and its wall time:
the runs of one way repeat exactly when their sequences are equal, and the wall times give the price of waiting for
the older candidate.

    .venv/bin/python benchmarks/search_repeatability.py [--repeats 2] [--trials 200]

Writes ``benchmarks/results/search_repeatability.json`` (the machine's CPU beside it). Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path
from typing import Any

from specialize_cost import budgets_of  # the tight, median and loose budgets of a device's table
from supernet_equal_cost import BUDGET_NAMES, DEVICE, TABLE, this_cpu

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "search_repeatability.json"
WORK = ROOT / "runs" / "benchmarks" / "search_repeatability"
WAYS = {"as-finished, 2 workers": (False, 2), "in-order, 2 workers": (True, 2), "1 worker": (False, 1)}


def one_search(name: str, in_order: bool, workers: int, trials: int, seed: int, budget: float) -> dict[str, Any]:
    """One inherited-weight search in a fresh study; its trained architectures in trial order, best and wall time."""
    from dataclasses import replace

    from hwnas.presets import get_space
    from hwnas.search.api import DEFAULTS, make_search_config, run_search
    from hwnas.search.device import load_device_latency
    from hwnas.search.executors import make_executor
    from hwnas.supernets import resolve_supernet

    space = get_space("default")
    folder = resolve_supernet(Path("default"))
    latency = load_device_latency(DEVICE, space, TABLE, allow_mismatch=True)
    out = WORK / name
    shutil.rmtree(out, ignore_errors=True)  # a fresh study: a resumed one would replay, not search
    settings = replace(DEFAULTS, trials=trials, supernet=folder, in_order=in_order)
    config = make_search_config(space, latency, budget, settings, out, seed=seed)
    executor = make_executor(workers=workers, supernet=folder)
    try:
        started = time.perf_counter()
        summary = run_search(config, executor)
        wall_s = time.perf_counter() - started
    finally:
        executor.close()
    trained = [trial["arch"] for trial in sorted(summary["trials"], key=lambda trial: trial["number"])]
    best = summary["best"] or {}
    return {"in_order": in_order, "workers": workers, "wall_s": wall_s, "trained": trained,
            "best_arch": best.get("arch"), "best_score": best.get("accuracy")}  # fmt: skip


def agreement(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """How far the runs of one way agree: identical sequences, identical best, and the first trial they part at."""
    first = runs[0]["trained"]
    parted = [next((i for i, (a, b) in enumerate(zip(first, run["trained"], strict=False)) if a != b), None) for run in runs[1:]]
    return {
        "identical_sequences": all(run["trained"] == first for run in runs[1:]),
        "identical_best": len({run["best_arch"] for run in runs}) == 1,
        "first_differing_trial": parted,
        "best_scores": [run["best_score"] for run in runs],
        "wall_s": [round(run["wall_s"], 1) for run in runs],
    }


def main() -> None:
    from hwnas.fileio import atomic_write_json

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()
    budget = dict(zip(BUDGET_NAMES, budgets_of(DEVICE, TABLE), strict=True))["median"]
    report: dict[str, Any] = {"device": DEVICE, "table": TABLE.name, "budget_ms": budget, "trials": args.trials,
                              "seed": args.seed, "cpu": this_cpu(), "ways": {}}  # fmt: skip
    for way, (in_order, workers) in WAYS.items():
        repeats = 1 if workers == 1 else args.repeats  # one worker has no order to vary
        runs = []
        for repeat in range(repeats):
            slug = f"{'in-order' if in_order else 'as-finished'}-w{workers}-r{repeat}"
            runs.append(one_search(slug, in_order, workers, args.trials, args.seed, budget))
            print(f"{way}, run {repeat + 1}: best {runs[-1]['best_score']} in {runs[-1]['wall_s']:.0f} s", flush=True)
        report["ways"][way] = {"runs": runs, **agreement(runs)}
        atomic_write_json(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
