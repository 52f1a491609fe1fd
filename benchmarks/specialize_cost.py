"""What specializing the shipped supernet costs: three devices x three budgets, nine networks, each measured on its device.

Devices: host ONNX Runtime (one thread), host TFLite (XNNPACK, one thread), and a third profiled here by this script
when it has no table yet: ONNX Runtime with two intra-op threads (``benchmarks/devices/host-ort-2threads.toml``; its
profile's wall time is recorded). Budgets per device: the 20th, 50th and 80th percentile of its table's whole networks
(tight, median, loose). Each device is one ``specialize`` (the library call behind ``hwnas specialize``) with the
default settings: 200 candidates scored by inherited weights per budget, the best fine-tuned for one epoch, exported
to the device's format, verified and measured in interleaved rounds with drift references.

Per network: search seconds (the aim: under 60 s on 2 cores) and, separately, the finish (fine-tuning, export,
verification, measurement). Writes ``benchmarks/results/specialize_cost.json``; a rerun keeps finished networks.

``--imported TABLE``: instead, a device that is not here, given as its latency table (``--device TABLE.json``; by
default the AMD EPYC family 25 TFLite table shipped from an earlier session's machine): its three networks are
searched and predicted from that table, exported and verified here, not measured. Writes
``benchmarks/results/specialize_cost_imported.json``.

    .venv/bin/python benchmarks/specialize_cost.py [--trials 200] [--finetune-epochs 1] [--imported [TABLE]]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "specialize_cost.json"
THIRD = ROOT / "benchmarks" / "devices" / "host-ort-2threads.toml"
DEVICES = ("host-ort", "host-tflite", str(THIRD))
QUANTILES = (0.2, 0.5, 0.8)
WORK = ROOT / "runs" / "benchmarks" / "specialize_cost"
IMPORTED = ROOT / "latency_tables" / "data" / "default-host-cpu-tflite-xnnpack-amd-epyc-f25m17.json"
RESULT_IMPORTED = ROOT / "benchmarks" / "results" / "specialize_cost_imported.json"


def ensure_profiled(spec: str) -> dict[str, Any] | None:
    """Profile ``spec`` for the default space unless a table of it is found; the profile's wall time, or None."""
    from hwnas.errors import UserError
    from hwnas.presets import get_space
    from hwnas.search.device import load_device_latency

    try:
        load_device_latency(spec, get_space("default"))
        return None
    except UserError:
        pass
    started = time.perf_counter()
    command = [sys.executable, "-m", "hwnas", "profile", spec, "--space", "default", "--networks", "60", "--json"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"profiling {spec} failed: {done.stderr[-2000:]}")
    return {"command": " ".join(command[1:]), "wall_s": round(time.perf_counter() - started, 1)}


def budgets_of(spec: str, table: Path | None = None) -> list[float]:
    """Tight, median and loose: quantiles of the device's table networks (ms, 3 decimals); ``table``: that table
    rather than the one matching this machine."""
    from hwnas.presets import get_space
    from hwnas.search.device import load_device_latency

    latency = load_device_latency(spec, get_space("default"), table, allow_mismatch=table is not None)
    times = [row["median_ms"] for row in latency.table.networks]
    return [round(float(np.quantile(times, q)), 3) for q in QUANTILES]


def specialize_device(spec: str, budgets: list[float], trials: int, finetune_epochs: int) -> list[dict[str, Any]]:
    from hwnas.presets import get_space
    from hwnas.search.api import SearchSettings
    from hwnas.search.specialize import specialize
    from hwnas.supernets import resolve_supernet

    supernet = resolve_supernet(Path("default"))
    settings = SearchSettings(trials=trials, supernet=supernet)
    out = WORK / Path(spec).stem
    report = specialize(
        supernet, [spec], budgets, settings, out, space=get_space("default"), finetune_epochs=finetune_epochs, log=print
    )
    return [network.__dict__ | {"spec": spec} for network in report.networks]


def summarize(networks: list[dict[str, Any]]) -> dict[str, Any]:
    search = [n["search_s"] for n in networks if n.get("error") is None]
    return {
        "networks": len(networks),
        "within_budget_measured": sum(n.get("verdict") == "within" for n in networks),
        "within_budget_predicted": sum(
            n.get("predicted_ms") is not None and n["predicted_ms"] <= n["budget_ms"] for n in networks
        ),
        "verdicts": [n.get("verdict") for n in networks],
        "search_s_median": float(np.median(search)) if search else None,
        "search_s_max": max(search) if search else None,
        "search_under_60s": sum(s < 60 for s in search),
        "finish_s_median": float(np.median([n["finish_s"] for n in networks])) if networks else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--imported", type=Path, nargs="?", const=IMPORTED, default=None, help="a table device instead")
    args = parser.parse_args()
    os.chdir(ROOT)  # profiles are found under runs/profiles
    profiled = None if args.imported else ensure_profiled(str(THIRD))
    networks: list[dict[str, Any]] = []
    for spec in [str(args.imported)] if args.imported else DEVICES:
        budgets = budgets_of(spec)
        print(f"{spec}: budgets {budgets} ms")
        networks += specialize_device(spec, budgets, args.trials, args.finetune_epochs)
    from hwnas.fileio import atomic_write_json

    imported = f" --imported {Path(args.imported).resolve().relative_to(ROOT)}" if args.imported else ""
    result = {
        "command": f"benchmarks/specialize_cost.py --trials {args.trials} --finetune-epochs {args.finetune_epochs}{imported}",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": len(os.sched_getaffinity(0)), "load_before": os.getloadavg(), "cpu": _cpu()},
        "third_device_profile": profiled,
        "networks": networks,
        "summary": summarize(networks),
    }
    atomic_write_json(RESULT_IMPORTED if args.imported else RESULT, result)
    print(json.dumps(result["summary"], indent=1))


def _cpu() -> str:
    from hwnas.devices import DeviceSpec, make_backend

    return str(make_backend(DeviceSpec.from_toml("host-ort")).fingerprint().get("device", "?"))


if __name__ == "__main__":
    main()
