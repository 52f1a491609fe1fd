"""Profile the default space on a device twice and record time and reproducibility.

1. a cold profile (empty conversion cache) through the CLI, as a user runs it: wall time, and the
   share of it spent converting versus measuring;
2. a second profile of the same device into another folder (reusing the converted files), then
   the per-layer agreement of the two tables (median |relative difference|; target <= 3%).

Writes ``benchmarks/results/profile_<spec>.json``; with ``--ship`` the first table becomes the one
shipped in ``latency_tables/data/``.

    .venv/bin/python benchmarks/profile_default.py host-ort --networks 120 --ship
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
        ],
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec")
    parser.add_argument("--networks", type=int, default=40)
    parser.add_argument("--ship", action="store_true", help="copy the first table to latency_tables/data/")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        first = profile(args.spec, work / "first", work / "cache", args.networks)
        second = profile(args.spec, work / "second", work / "cache", args.networks)
        diff = subprocess.run(
            [
                sys.executable,
                "-m",
                "hwnas",
                "lut",
                "diff",
                str(work / "first" / "table.json"),
                str(work / "second" / "table.json"),
                "--json",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        diff_report = json.loads(diff.stdout)
        signed = sorted(row["relative"] for row in diff_report["rows"])
        agreement = {k: v for k, v in diff_report.items() if k != "rows"} | {
            "median_signed_relative": signed[len(signed) // 2],  # a whole-run shift shows here, not in the spread
            "share_within_3pct": sum(abs(r) <= 0.03 for r in signed) / len(signed),
            "networks_median_abs_relative": network_agreement(work / "first" / "table.json", work / "second" / "table.json"),
        }
        table = json.loads((work / "first" / "table.json").read_text())
        if args.ship:
            target = ROOT / "latency_tables" / "data" / f"default-{table['device']['name']}.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(work / "first" / "table.json", target)
    results = {
        "command": " ".join(["benchmarks/profile_default.py", *sys.argv[1:]]),
        "machine": {"cpu": table["fingerprint"]["device"], "python": platform.python_version()},
        "fingerprint": table["fingerprint"],
        "cold_profile": first,
        "convert_share": round(first["convert_s"] / first["wall_s"], 3),
        "measure_share": round(first["measure_s"] / first["wall_s"], 3),
        "second_profile": second,
        "agreement": agreement,
        "target_median_abs_relative": 0.03,
        "target_wall_s": 600,
    }
    out = ROOT / "benchmarks" / "results" / f"profile_{Path(args.spec).stem}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: results[k] for k in ("convert_share", "measure_share", "agreement")}, indent=2))
    print(f"cold profile {first['wall_s']} s; written {out}")


if __name__ == "__main__":
    main()
