"""A family made by ``hwnas scale`` against torchvision mobilenet_v2's width multipliers at equal measured latency.

MobileNet's width multiplier is the family a phone team already has. This benchmark reads the family that
``benchmarks/scale_family.py`` made on one device (``runs/bench-scale/<device>/family``) and, for the base and each
compound member, finds the widest ``mobilenet_v2`` width multiplier measured no slower on the device at the base's
resolution (bisection over widths 0.10-3.00 in steps of 0.05, seeded random weights: latency does not depend on them),
both as torchvision builds it and with the usual small-image strides (stem and first strided stage at stride 1). Each
chosen network is trained with the family's recipe on the same images, exported and verified, and then the family's
networks and these are timed in the same interleaved rounds and tested on the same 10,000 test images.

Writes ``benchmarks/results/scale_vs_mobilenet_<device>.json`` (per rung: each network's measured latency and test
accuracy with Wilson's 95% interval). Trained networks are kept in ``runs/bench-scale/<device>/mobilenet/``: a rerun
resumes.

    .venv/bin/python benchmarks/scale_vs_mobilenet.py --device host-tflite
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from scale_family import interval  # noqa: E402

WIDTHS = [round(0.10 + 0.05 * step, 2) for step in range(59)]  # 0.10 .. 3.00
SIZING_ROUNDS, FINAL_ROUNDS = 5, 10
VARIANTS = {"mobilenet_v2": False, "mobilenet_v2-small-image": True}


@dataclass(frozen=True)
class Rung:
    """One step of the family: its name, the file measured today and the latency mobilenet_v2 must match."""

    name: str  # "base" or the budget, e.g. "0.383 ms"
    scaling: str
    file: Path
    test_accuracy: float | None


def family_rungs(report: Any) -> list[Rung]:
    """The base and the compound member of each budget, with their exported files."""
    base = next(p for p in report.grid if p.role == "base")
    rungs = [Rung("base", base.scaling, Path(report.measured[base.scaling].file), report.trained[base.scaling].test_accuracy)]
    for member in sorted((m for m in report.members if m.role == "compound"), key=lambda m: m.budget_ms or 0):
        measured = report.measured[member.scaling]
        rungs.append(
            Rung(f"{member.budget_ms:g} ms", member.scaling, Path(measured.file), report.trained[member.scaling].test_accuracy)
        )
    return rungs


class WidthTimer:
    """mobilenet_v2 at a width (random weights) over a rung's file, the two timed in the same interleaved rounds, so a
    slower moment of the machine moves both; each width is exported once."""

    def __init__(self, backend: Any, fmt: str, resolution: int, classes: int, folder: Path) -> None:
        self.backend, self.fmt, self.resolution, self.classes, self.folder = backend, fmt, resolution, classes, folder
        self.files: dict[tuple[float, bool], Path] = {}
        self.timed: dict[tuple[float, bool, str], tuple[float, float]] = {}  # (width, small, rung) -> (ms, rung ms)

    def ratio(self, width: float, small: bool, rung: Rung) -> float:
        """mobilenet_v2 at ``width`` over the rung's file, timed together."""
        key = (width, small, rung.name)
        if key not in self.timed:
            from hwnas.search.measure import time_interleaved

            files = {"rung": rung.file, "candidate": self._export(width, small)}
            timed = time_interleaved(self.backend, files, SIZING_ROUNDS)
            self.timed[key] = (timed["candidate"].summary()["median_ms"], timed["rung"].summary()["median_ms"])
            print(f"  width {width:.2f}{' small-image' if small else ''}: {self.timed[key][0]:.3f} ms "
                  f"(rung {rung.name}: {self.timed[key][1]:.3f} ms)", flush=True)  # fmt: skip
        ms, rung_ms = self.timed[key]
        return ms / rung_ms

    def _export(self, width: float, small: bool) -> Path:
        from hwnas.exporters import get_exporter
        from hwnas.pipeline.references import torchvision_module

        if (width, small) not in self.files:
            exporter = get_exporter(self.fmt)
            module = torchvision_module("mobilenet_v2", {"width_mult": width}, 1, self.classes, small).eval()
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / f"w{width:.2f}{'-small' if small else ''}{exporter.suffix}"
            shape = (1, 1, self.resolution, self.resolution)
            self.files[(width, small)] = exporter.export(module, torch.zeros(shape), path)
        return self.files[(width, small)]


def widest_within(timer: WidthTimer, small: bool, rung: Rung) -> float | None:
    """The widest width measured no slower than the rung (bisection: latency grows with width), or None if even the
    narrowest is slower."""
    low, high = 0, len(WIDTHS) - 1
    if timer.ratio(WIDTHS[low], small, rung) > 1.0:
        return None
    if timer.ratio(WIDTHS[high], small, rung) <= 1.0:
        return WIDTHS[high]
    while high - low > 1:
        middle = (low + high) // 2
        if timer.ratio(WIDTHS[middle], small, rung) <= 1.0:
            low = middle
        else:
            high = middle
    return WIDTHS[low]


def trained_mobilenet(
    width: float, small: bool, data: Any, recipe: Any, resolution: int, fmt: str, folder: Path
) -> dict[str, Any]:
    """Train (or read the kept result of) mobilenet_v2 at ``width`` with the family's recipe, then export and verify."""
    from hwnas.pipeline.references import export_reference, torchvision_module, train_reference

    result_file = folder / "result.json"
    if result_file.exists():
        return json.loads(result_file.read_text())
    print(f"training {folder.name}", flush=True)
    started = time.perf_counter()
    module = torchvision_module("mobilenet_v2", {"width_mult": width}, 1, data.num_classes, small)
    trained = train_reference(module, data, recipe, resolution, 1, seed=0)
    info = {"name": f"mobilenet_v2 width {width}{' small-image' if small else ''}"}
    exported = export_reference(trained.pop("model"), data, resolution, 1, fmt, folder, info)
    result = trained | {"width": width, "small_image": small, "export": exported, "seconds": time.perf_counter() - started}
    folder.mkdir(parents=True, exist_ok=True)
    result_file.write_text(json.dumps(result, indent=2))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="host-tflite")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-scale")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from hwnas.data import load_data
    from hwnas.devices import DeviceSpec, export_format_for, make_backend
    from hwnas.family.records import read_report
    from hwnas.recipe import Recipe

    report = read_report(args.out / args.device / "family" / "family.json")
    settings = report.settings
    full = load_data(settings["data"].split("[")[0])  # "fashion-mnist[:9000]": the family's first 9,000 images
    data = full.head(settings["train_images"], len(full.val))
    spec = DeviceSpec.from_toml(args.device)
    backend, fmt = make_backend(spec), export_format_for(spec)
    rungs = family_rungs(report)
    resolution = int(settings["base"].split(":")[1].split("_")[0][1:])  # "<space>:r32_..." -> 32
    folder = args.out / args.device / "mobilenet"
    timer = WidthTimer(backend, fmt, resolution, data.num_classes, folder / "sizing")
    chosen = {rung.name: size_rung(timer, rung) for rung in rungs}
    recipe = Recipe.from_json(settings["recipe"])
    trained = {
        name: trained_mobilenet(width, VARIANTS[variant], data, recipe, resolution, fmt, folder / name)
        for variant, width, name in chosen_networks(chosen)
    }
    files = {f"family {rung.name}": rung.file for rung in rungs}
    files |= {name: folder / name / entry["export"]["file"] for name, entry in trained.items() if entry["export"]["file"]}
    timed = time_all(backend, files)
    result = {
        "device": args.device,
        "family": str(args.out / args.device / "family"),
        "ratios": report.ratios,
        "resolution": resolution,
        "recipe": settings["recipe"],
        "train_images": settings["train_images"],
        "test_images": len(full.test),
        "sizing": [
            {"width": w, "small_image": s, "rung": rung, "ms": ms, "rung_ms": r} for (w, s, rung), (ms, r) in timer.timed.items()
        ],
        "rungs": rung_table(rungs, chosen, trained, timed, len(full.test)),
    }
    path = ROOT / "benchmarks" / "results" / f"scale_vs_mobilenet_{args.device}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["rungs"], indent=2))
    print(f"wrote {path}")


def size_rung(timer: WidthTimer, rung: Rung) -> dict[str, float | None]:
    print(f"rung {rung.name} ({rung.scaling}): the widest mobilenet_v2 no slower", flush=True)
    return {variant: widest_within(timer, small, rung) for variant, small in VARIANTS.items()}


def chosen_networks(chosen: dict[str, dict[str, float | None]]) -> list[tuple[str, float, str]]:
    """(variant, width, name) of every network to train, once each (two rungs can choose the same width)."""
    found = {f"{variant}-w{width:.2f}": (variant, width) for rung in chosen.values() for variant, width in rung.items() if width}
    return [(variant, width, name) for name, (variant, width) in found.items()]


def time_all(backend: Any, files: dict[str, Path]) -> dict[str, dict[str, Any]]:
    from hwnas.search.measure import time_interleaved

    print(f"timing {len(files)} networks in {FINAL_ROUNDS} interleaved rounds", flush=True)
    return {name: timed.summary() for name, timed in time_interleaved(backend, files, FINAL_ROUNDS).items()}


def rung_table(
    rungs: list[Rung], chosen: dict[str, dict[str, float | None]], trained: dict[str, Any], timed: dict[str, Any], images: int
) -> list[dict[str, Any]]:
    """Per rung: the family's network and each mobilenet_v2 variant, measured in the same rounds."""

    def row(name: str, accuracy: float | None, extra: dict[str, Any]) -> dict[str, Any]:
        summary = timed.get(name)
        return {
            "network": name,
            "measured_ms": summary and round(summary["median_ms"], 4),
            "measured_ci_ms": summary and [round(summary["ci_low_ms"], 4), round(summary["ci_high_ms"], 4)],
            "test_accuracy": accuracy,
            "test_interval_95": interval(accuracy, images),
        } | extra

    table = []
    for rung in rungs:
        rows = [row(f"family {rung.name}", rung.test_accuracy, {"scaling": rung.scaling})]
        for variant, width in chosen[rung.name].items():
            if width is None:
                rows.append({"network": variant, "note": f"slower than the rung even at width {WIDTHS[0]}"})
                continue
            name = f"{variant}-w{width:.2f}"
            rows.append(
                row(name, trained[name]["test_accuracy"], {"width": width, "verified": trained[name]["export"]["verified"]})
            )
        table.append({"rung": rung.name, "rows": rows})
    return table


if __name__ == "__main__":
    main()
