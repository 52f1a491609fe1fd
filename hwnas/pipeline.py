"""The main job, ``hwnas run``: everything that exists, chained on embedded defaults.

Today: sample an architecture (search lands with a later issue), predict its latency from the
shipped latency tables of this machine, train it on real images, export it to ONNX and TFLite,
verify the files against PyTorch and re-measure them, and keep it all in one run folder.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwnas import latency_tables as shipped_tables
from hwnas.arch import Arch
from hwnas.data import load_data
from hwnas.devices import DeviceSpec, make_backend
from hwnas.errors import UserError
from hwnas.export_model import build_request, resolve_model
from hwnas.exporters import export_all, get_exporter
from hwnas.fileio import atomic_write_json
from hwnas.latency_tables.table import LatencyTable
from hwnas.presets import get_space
from hwnas.recipe import Recipe
from hwnas.space import SearchSpace
from hwnas.trainer import TrainResult, train

SHIPPED_TABLES = Path(shipped_tables.__file__).parent / "data"  # hwnas.latency_tables's data, wherever it is installed
HOST_SPECS = {"onnx": "host-ort", "tflite": "host-tflite"}


@dataclass
class RunOutcome:
    arch: Arch
    result: TrainResult
    predicted_ms: dict[str, Any]
    card: dict[str, Any]


def predicted_latency(space: SearchSpace, arch: Arch) -> dict[str, Any]:
    """LUT-sum latency per device, from the shipped table of this space measured on this machine's CPU.

    A device may have shipped tables for several CPUs (``default-host-cpu-onnxruntime.json`` from an
    Intel Xeon, ``...-amd-epyc.json``): the one whose fingerprint matches is used; when none does,
    the device's entry says why, and no number from another CPU is given.
    """
    predictions: dict[str, Any] = {}
    for path in sorted(SHIPPED_TABLES.glob(f"{space.name}-*.json")):
        table = LatencyTable.load(path)
        device = table.device["name"]
        if "lut_sum_ms" in predictions.get(device, {}):
            continue
        backend = make_backend(DeviceSpec.from_json(table.device))
        if backend.unavailable_reason() is not None:
            continue
        try:
            table.check(backend.fingerprint(), space.hash)
        except UserError as mismatch:
            predictions.setdefault(device, {"skipped": str(mismatch)})
            continue
        predictions[device] = {"lut_sum_ms": table.predict(space.op_keys(arch)), "table": path.name}
    return predictions


def describe_prediction(predicted: dict[str, Any]) -> str:
    """``host-cpu-tflite-xnnpack: 0.497 ms (LUT sum, default-....json)``, one device after another."""
    if not predicted:
        return "n/a (no shipped table matches this machine)"
    parts = []
    for device, value in predicted.items():
        if "lut_sum_ms" in value:
            parts.append(f"{device}: {value['lut_sum_ms']:.3f} ms (LUT sum, {value['table']})")
        else:
            parts.append(f"{device}: not predicted ({value['skipped']})")
    return "; ".join(parts)


def run_pipeline(
    preset: str,
    seed: int,
    recipe: Recipe,
    data: str | None,
    threads: int | None,
    out: Path,
    progress: bool,
    log: Callable[[str], None],
) -> RunOutcome:
    space = get_space(preset)
    arch = space.sample(random.Random(seed))
    atomic_write_json(
        out / "config.json",
        {"preset": preset, "seed": seed, "arch": arch.format(), "recipe": recipe.to_json(), "data": data or "embedded"},
    )
    predicted = predicted_latency(space, arch)
    log(f"architecture {arch.format()}")
    log(f"predicted latency: {describe_prediction(predicted)}")
    result = train(space, arch, recipe, load_data(data), seed=seed, threads=threads, progress=progress, evaluate_test=True)
    result.save(out)
    formats = []
    for fmt in ("onnx", "tflite"):
        reason = get_exporter(fmt).unavailable_reason()
        if reason is None:
            formats.append(fmt)
        else:
            log(f"skipping {fmt} export: {reason}")
    devices = [DeviceSpec.from_toml(HOST_SPECS[fmt]) for fmt in formats]
    request = build_request(resolve_model(str(out)), data, images=500, calibration=100)
    request.info["predicted_latency_ms"] = predicted
    card = export_all(request, formats, out / "export", devices, on_step=log)
    atomic_write_json(
        out / "summary.json",
        {
            "arch": arch.format(),
            "val_accuracy": result.val_accuracy,
            "test_accuracy": result.test_accuracy,
            "predicted_latency": predicted,
            "exports": card["exports"],
        },
    )
    return RunOutcome(arch, result, predicted, card)
