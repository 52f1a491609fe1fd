"""How long the command line takes to answer: ``hwnas --help``, ``hwnas devices list`` and a bad-input error.

Each command runs ``--runs`` times as a fresh process; the median wall time is kept. ``--tree``
points at another checkout (an older commit) to time it the same way, with this environment's
Python: its folder is the working directory, so ``python -m hwnas`` imports that tree's code.

    python benchmarks/startup.py --label after
    git worktree add /tmp/old <commit> && python benchmarks/startup.py --tree /tmp/old --label before
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "help": ["--help"],
    "devices list": ["devices", "list"],
    "bad input (lut show of a missing file)": ["lut", "show", "/nonexistent/table.json"],
}


def time_command(args: list[str], cwd: Path, runs: int) -> dict[str, float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "hwnas", *args], cwd=cwd, capture_output=True, timeout=300)
        samples.append(time.perf_counter() - started)
    return {"median_s": statistics.median(samples), "min_s": min(samples), "max_s": max(samples), "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=ROOT)
    parser.add_argument("--label", default="after")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=args.tree, capture_output=True, text=True, timeout=60
    ).stdout.strip()
    figures = {name: time_command(command, args.tree, args.runs) for name, command in COMMANDS.items()}
    out = ROOT / "benchmarks" / "results" / "startup.json"
    results = json.loads(out.read_text()) if out.exists() else {}
    results[args.label] = {"commit": commit, "measured": time.strftime("%Y-%m-%d"), "commands": figures}
    out.write_text(json.dumps(results, indent=2) + "\n")
    for name, figure in figures.items():
        print(f"{args.label} {commit} {name}: median {figure['median_s']:.2f} s")


if __name__ == "__main__":
    main()
