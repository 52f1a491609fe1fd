"""Where one compound step lands on each host runtime: the grid of ``hwnas scale`` predicted and measured, per device.

For the base network of ``benchmarks/scale_family.py``, each device's grid of compound steps (depth 1-2x, width
1-1.5x, each with the resolution step predicted to double the base's latency on that device) is built from the
device's table, and every point is exported (seeded random weights: latency does not depend on them) and timed with
the base in the same interleaved rounds. Reported per point: predicted and measured latency doubling; per device: how
far the two runtimes' grids disagree (the same point's measured doubling on the other runtime). No training.

Writes ``benchmarks/results/scale_ratios.json``.

    .venv/bin/python benchmarks/scale_ratios.py [--rounds 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch
from scale_family import BASE

ROOT = Path(__file__).resolve().parents[1]
DEVICES = ("host-tflite", "host-ort")
EVERY_POINT = 36  # the whole 6 x 6 grid, not a spread of a few


def exported(backend: Any, space: Any, arch: Any, folder: Path) -> Path:
    from hwnas.builder import build_model
    from hwnas.devices import export_format_for
    from hwnas.exporters import get_exporter

    exporter = get_exporter(export_format_for(backend.spec))
    with torch.random.fork_rng():
        torch.manual_seed(0)
        module = build_model(space, arch).eval()
    shape = (1, space.in_channels, arch.resolution, arch.resolution)
    return exporter.export(module, torch.zeros(shape), folder / f"{arch.id}{exporter.suffix}")


def grid_of(device: str, rounds: int, folder: Path) -> dict[str, Any]:
    from hwnas.devices import DeviceSpec, make_backend
    from hwnas.family.sizing import FamilyLatency
    from hwnas.latency_tables.drift import device_table
    from hwnas.latency_tables.table import LatencyTable
    from hwnas.presets import get_space
    from hwnas.scaling import Scaling
    from hwnas.search.measure import time_interleaved

    spec = DeviceSpec.from_toml(device)
    backend = make_backend(spec)
    backend.require_available()
    space = get_space("default")
    base = space.parse(BASE)
    latency = FamilyLatency(space, base, LatencyTable.load(device_table(spec)))
    points = latency.grid(EVERY_POINT)
    networks = {"base": latency.sized(Scaling()), **{point.scaling.tag: point for point in points}}
    files = {tag: exported(backend, sized.space, sized.arch, folder) for tag, sized in networks.items()}
    timed = {tag: t.summary()["median_ms"] for tag, t in time_interleaved(backend, files, rounds).items()}
    refitted = refitted_grid(space, base, backend, latency, folder)
    return {
        "refitted_grid": refitted,
        "device": spec.name,
        "base_predicted_ms": latency.base_predicted_ms,
        "base_measured_ms": timed["base"],
        "points": [
            {
                "scaling": tag,
                "depth": sized.scaling.depth,
                "width": sized.scaling.width,
                "resolution": sized.scaling.resolution,
                "predicted_doubling": round(sized.predicted_ms / latency.base_predicted_ms, 3),
                "measured_doubling": round(timed[tag] / timed["base"], 3),
            }
            for tag, sized in networks.items()
            if tag != "base"
        ],
    }


def refitted_grid(space: Any, base: Any, backend: Any, latency: Any, folder: Path) -> list[dict[str, Any]]:
    """The grid ``hwnas scale`` trains (4 points, ``--grid 4``): predicted, then measured with the base and refitted."""
    from hwnas.data import load_data
    from hwnas.family.job import ScaleRequest, plan_grid
    from hwnas.recipe import Recipe

    request = ScaleRequest(space, base, Recipe(), load_data(), backend, latency.table, (1.0,), grid=4)
    planned = plan_grid(request, latency, folder, lambda message: print(message, flush=True))
    return [{"scaling": p.scaling, "measured_doubling": round(p.doubling, 3)} for p in planned if p.role == "grid"]


def cross_check(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each device's grid points timed on the other device too would need both exports; instead compare the points
    both grids share (same depth and width step): how far their resolution steps and measured doublings differ."""
    first, second = (results[device]["points"] for device in DEVICES)
    by_step = {(p["depth"], p["width"]): p for p in second}
    shared = [(p, by_step[(p["depth"], p["width"])]) for p in first if (p["depth"], p["width"]) in by_step]
    return {
        "shared_steps": len(shared),
        "resolution_step_difference_median": statistics.median(abs(a["resolution"] - b["resolution"]) for a, b in shared)
        if shared
        else None,
        "pairs": [_pair(a, b) for a, b in shared],
    }


def _pair(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {
        "depth": a["depth"],
        "width": a["width"],
        f"resolution_{DEVICES[0]}": a["resolution"],
        f"resolution_{DEVICES[1]}": b["resolution"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hwnas-ratios-") as folder:
        results = {device: grid_of(device, args.rounds, Path(folder)) for device in DEVICES}
    for result in results.values():
        errors = [abs(p["measured_doubling"] / p["predicted_doubling"] - 1) for p in result["points"]]
        result["median_abs_error_of_predicted_doubling"] = round(statistics.median(errors), 3) if errors else None
        result["measured_doubling_range"] = [min(p["measured_doubling"] for p in result["points"]),
                                             max(p["measured_doubling"] for p in result["points"])]  # fmt: skip
    out = {"base": BASE, "rounds": args.rounds, "devices": results, "between_devices": cross_check(results)}
    path = ROOT / "benchmarks" / "results" / "scale_ratios.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    for device, result in results.items():
        print(device, result["median_abs_error_of_predicted_doubling"], result["measured_doubling_range"], len(result["points"]))
    print(json.dumps(out["between_devices"], indent=2)[:2000])


if __name__ == "__main__":
    main()
