"""Re-time the exported models of ``prune_amc.py`` in interleaved rounds: every method of every budget, one device at a time.

``prune_amc.py`` times each model when it is made, minutes apart; on a shared 2-core VM the load changes in
between, and one such figure (uniform at 50% FLOPs, 0.91x) said a pruned model was slower than the unpruned
one. Here every file is timed once per round, ``--rounds`` rounds, so all of them meet the same load, and
the speedups are ratios of medians taken in the same minutes (with each median's 95% interval).

    flock /tmp/hwnas-cpu.lock .venv/bin/python benchmarks/prune_remeasure.py --model default

Reads runs/bench-prune/prune-<model>-flops<ratio>[-<tag>]/<method>/export/; writes
benchmarks/results/prune_amc_<model>[_<tag>]_interleaved.json.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

from prune_common import CACHE, RESULTS

from hwnas.devices import DeviceSpec, make_backend
from hwnas.fileio import atomic_write_json
from hwnas.search.measure import time_interleaved

DEVICES = {"host-ort": "model.onnx", "host-tflite": "model.tflite"}


def exported_files(model: str, suffix: str, tag: str = "") -> dict[str, Path]:
    """``{"0.5/amc": path, ...}`` for every budget folder (of ``prune_amc.py --tag TAG`` when given) and method that has
    an export."""
    files = {}
    pattern = f"prune-{model}-flops*-{tag}" if tag else f"prune-{model}-flops*"
    for folder in sorted(CACHE.glob(pattern)):
        ratio = folder.name.rsplit("flops", 1)[1].removesuffix(f"-{tag}" if tag else "")
        for method in sorted(p for p in folder.iterdir() if (p / "export" / suffix).exists()):
            files[f"{ratio}/{method.name}"] = method / "export" / suffix
    return files


def speedups(summaries: dict[str, dict]) -> dict[str, float]:
    """Each model's speedup over the unpruned model of its own budget folder."""
    out = {}
    for name, summary in summaries.items():
        ratio = name.split("/")[0]
        base = summaries.get(f"{ratio}/unpruned")
        if base is not None:
            out[name] = base["median_ms"] / summary["median_ms"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--tag", default="", help="only the budgets of prune_amc.py --tag TAG")
    args = parser.parse_args()
    devices = {}
    for spec_name, suffix in DEVICES.items():
        files = exported_files(args.model, suffix, args.tag)
        if not files:
            raise SystemExit(f"no exported models under {CACHE}: run benchmarks/prune_amc.py --model {args.model} first")
        spec = DeviceSpec.from_toml(spec_name)
        print(f"{spec.name}: {len(files)} files, {args.rounds} interleaved rounds", flush=True)
        timed = time_interleaved(make_backend(spec), files, args.rounds, on_round=lambda i: print(f"  round {i}", flush=True))
        summaries = {name: t.summary() for name, t in timed.items()}
        devices[spec.name] = {"summaries": summaries, "speedup": speedups(summaries)}
        for name in summaries:
            s = summaries[name]
            print(
                f"  {name:22s} {s['median_ms']:.4f} ms [{s['ci_low_ms']:.4f}, {s['ci_high_ms']:.4f}]"
                f"  speedup {devices[spec.name]['speedup'].get(name, float('nan')):.2f}x",
                flush=True,
            )
    result = {
        "model": args.model,
        "tag": args.tag,
        "rounds": args.rounds,
        "machine": {"cpu": platform.machine()},
        "devices": devices,
    }
    atomic_write_json(RESULTS / f"prune_amc_{args.model}{'_' + args.tag if args.tag else ''}_interleaved.json", result)


if __name__ == "__main__":
    main()
