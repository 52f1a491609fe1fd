"""Profile the default space on a device several times and record time and reproducibility.

1. a cold profile (empty conversion cache) through the CLI, as a user runs it: wall time, and the
   share of it spent converting versus measuring;
2. ``--profiles - 1`` more profiles of the same device, one after another, each into its own
   folder (reusing the converted files), then the per-layer agreement of every pair of tables
   (median |relative difference|; target <= 3%). Several pairs, because on a shared VM one pair
   can catch a whole-run shift of a few percent: the spread over pairs is part of the answer.

Writes ``benchmarks/results/profile_<spec>.json`` (or ``--out``); with ``--ship`` the first table
becomes the one shipped in ``latency_tables/data/`` (``--ship-suffix`` names a second CPU's table).

    .venv/bin/python benchmarks/profile_default.py host-ort --networks 120 --profiles 4
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def profile(spec: str, out: Path, cache: Path, networks: int) -> dict:
    started = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "hwnas",
            "profile",
            spec,
            "--space",
            "default",
            "--out",
            str(out),
            "--cache",
            str(cache),
            "--networks",
            str(networks),
            "--json",
            "--no-reuse",  # a cold profile: nothing taken from the shipped tables
        ],
        timeout=4 * 3600,  # the whole default space: about an hour on 2 cores
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        sys.exit(f"profile failed: {result.stderr.strip()}")
    return json.loads(result.stdout) | {"process_wall_s": round(time.perf_counter() - started, 2)}


def network_agreement(first: Path, second: Path) -> float:
    """Median |relative difference| of the whole networks measured by both profiles (the noise floor)."""
    a = {n["arch"]: n["median_ms"] for n in json.loads(first.read_text())["networks"]}
    b = {n["arch"]: n["median_ms"] for n in json.loads(second.read_text())["networks"]}
    relative = sorted(abs(b[k] - a[k]) / a[k] for k in a.keys() & b.keys())
    return relative[len(relative) // 2]


def table_agreement(first: Path, second: Path) -> dict:
    """``hwnas lut diff`` of two tables, plus the signed median (a whole-run shift) and the networks' agreement."""
    diff = subprocess.run(
        [sys.executable, "-m", "hwnas", "lut", "diff", str(first), str(second), "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    report = json.loads(diff.stdout)
    signed = sorted(row["relative"] for row in report["rows"])
    return {k: v for k, v in report.items() if k != "rows"} | {
        "median_signed_relative": signed[len(signed) // 2],
        "share_within_3pct": sum(abs(r) <= 0.03 for r in signed) / len(signed),
        "networks_median_abs_relative": network_agreement(first, second),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec")
    parser.add_argument("--networks", type=int, default=40)
    parser.add_argument("--profiles", type=int, default=2, help="profiles in all (the first cold); at least 2")
    parser.add_argument("--out", type=Path, help="result file (default benchmarks/results/profile_<spec>.json)")
    parser.add_argument("--ship", action="store_true", help="copy the first table to latency_tables/data/")
    parser.add_argument(
        "--ship-suffix", default="", help="appended to the shipped file's name, for a second CPU's table (e.g. -amd-epyc)"
    )
    args = parser.parse_args()
    if args.profiles < 2:
        parser.error("--profiles must be at least 2 (agreement needs two tables)")
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        runs = [profile(args.spec, work / f"profile-{i}", work / "cache", args.networks) for i in range(args.profiles)]
        tables = [work / f"profile-{i}" / "table.json" for i in range(args.profiles)]
        pairs = [
            {"first": i, "second": j, **table_agreement(tables[i], tables[j])}
            for i in range(args.profiles)
            for j in range(i + 1, args.profiles)
        ]
        table = json.loads(tables[0].read_text())
        if args.ship:
            target = ROOT / "latency_tables" / "data" / f"default-{table['device']['name']}{args.ship_suffix}.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(tables[0], target)
    per_pair = sorted(pair["median_abs_relative"] for pair in pairs)
    first = runs[0]
    results = {
        "command": " ".join(["benchmarks/profile_default.py", *sys.argv[1:]]),
        "machine": {"cpu": table["fingerprint"]["device"], "python": platform.python_version()},
        "fingerprint": table["fingerprint"],
        "cold_profile": first,
        "convert_share": round(first["convert_s"] / first["wall_s"], 3),
        "measure_share": round(first["measure_s"] / first["wall_s"], 3),
        "warm_profiles": runs[1:],
        "agreement": pairs[0],  # the cold profile against the next one
        "pairs": pairs,
        "pairs_summary": {
            "pairs": len(pairs),
            "median_abs_relative_per_pair_median": per_pair[len(per_pair) // 2],
            "median_abs_relative_per_pair_max": per_pair[-1],
            "pairs_within_target": sum(value <= 0.03 for value in per_pair),
        },
        "target_median_abs_relative": 0.03,
        "target_wall_s": 600,
    }
    out = args.out or ROOT / "benchmarks" / "results" / f"profile_{Path(args.spec).stem}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: results[k] for k in ("convert_share", "measure_share", "pairs_summary")}, indent=2))
    print(f"cold profile {first['wall_s']} s; written {out}")


if __name__ == "__main__":
    main()
