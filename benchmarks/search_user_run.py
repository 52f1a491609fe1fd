"""The user's run: ``hwnas search`` with fbnetv3 on the embedded data, the shipped host TFLite table of
this CPU, and the budget at the median predicted latency of the space. Times the whole command
(search, retrain, export, measure) and checks that the best, re-measured, is within budget.

Writes ``benchmarks/results/search_user_run.json`` and ``search_user_run.png`` (the Pareto plot).

    flock /tmp/hwnas-cpu.lock .venv/bin/python benchmarks/search_user_run.py
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def space_median(device: str, space: str) -> float:
    from hwnas.presets import resolve_space
    from hwnas.search.device import load_device_latency
    from hwnas.search.result import space_median_ms

    search_space = resolve_space(space)
    return space_median_ms(search_space, load_device_latency(device, search_space))


def search_span(database: Path) -> float | None:
    """Seconds from the first trial's start to the last trial's end, from the study's own timestamps."""
    import sqlite3

    with sqlite3.connect(database) as connection:
        first, last = connection.execute("SELECT MIN(datetime_start), MAX(datetime_complete) FROM trials").fetchone()
    if not first or not last:
        return None
    from datetime import datetime

    return (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="host-tflite")
    parser.add_argument("--space", default="default")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--proxy-images", type=int, default=2000)
    parser.add_argument("--final-epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-search-user-run")
    parser.add_argument("--resume", action="store_true", help="continue the search stored in --out (after an interruption)")
    args = parser.parse_args()
    budget = space_median(args.device, args.space)
    if not args.resume:
        shutil.rmtree(args.out, ignore_errors=True)
    command = [
        sys.executable, "-m", "hwnas", "search", "--device", args.device, "--budget-ms", f"{budget:.4f}", "--space", args.space,
        "--strategy", "fbnetv3", "--trials", str(args.trials), "--proxy-images", str(args.proxy_images),
        "--final-epochs", str(args.final_epochs), "--out", str(args.out), "--json",
    ]  # fmt: skip
    started = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True, check=False, timeout=6 * 3600)  # hours at most
    wall = time.perf_counter() - started
    if finished.returncode != 0:
        raise SystemExit(f"search failed: {finished.stderr[-2000:]}")
    result = json.loads(finished.stdout)
    best = result["top"][0]
    report = {
        "what": "hwnas search, fbnetv3, embedded Fashion-MNIST, shipped host TFLite table; budget = median predicted latency of "
        "1000 sampled architectures of the space",
        "command": " ".join(command[1:]),
        "budget_ms": budget,
        "wall_time_s": wall,
        "within_30_min": wall <= 1800,
        "resumed": args.resume,
        "search_span_s": search_span(args.out / "search.db"),
        "trials": result["search"]["trained"],
        "best": {
            "arch": best["arch"],
            "recipe": best["recipe"],
            "proxy_accuracy": best["proxy_accuracy"],
            "retrained_val_accuracy": best["retrained"]["val_accuracy"],
            "retrained_test_accuracy": best["retrained"]["test_accuracy"],
            "retrained_epochs": len(best["retrained"]["curve"]),
            "predicted_ms": best["predicted_latency_ms"],
            "measured": best["measured"],
            "judged": best["judged"],
        },
        "offer": result["best"],
        "drift": {k: v for k, v in result["drift"].items() if k != "references"},
        "top": [
            {k: e[k] for k in ("rank", "arch", "proxy_accuracy", "predicted_latency_ms", "measured", "judged")}
            for e in result["top"]
        ],
        "strategy_report": result["search"]["strategy_report"],
        "device": result["device"],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "search_user_run.json").write_text(json.dumps(report, indent=2) + "\n")
    shutil.copy(result["pareto_plot"], RESULTS / "search_user_run.png")
    print(json.dumps({k: report[k] for k in ("budget_ms", "wall_time_s", "trials")} | {"verdict": best["judged"]["verdict"]}))


if __name__ == "__main__":
    main()
