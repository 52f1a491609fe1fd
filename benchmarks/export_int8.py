"""int8 TFLite of trained default-preset models: accuracy vs fp32 on held-out images, size, latency.

For each model: train it on the embedded data, export TFLite fp32 and full-integer int8
(activation ranges calibrated on training images, true min/max), evaluate both files in the
TFLite interpreter on the held-out *test* split (2,000 images), and time both on this CPU
(host-tflite spec). The headline model trains ``--epochs`` epochs; ``--sampled`` more
architectures train ``--sampled-epochs`` (1 by default: barely trained networks have the widest,
least regular activations, the hard case for calibration). For each model the int8 file is also
made with ai-edge-quantizer's default calibration (a moving average of per-image ranges) to show
what the min/max calibration buys. Writes ``benchmarks/results/export_int8.json``.

    .venv/bin/python benchmarks/export_int8.py --epochs 3 --sampled 4
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hwnas.arch import Arch
from hwnas.data import ImageSplits, load_data
from hwnas.devices import DeviceSpec, make_backend
from hwnas.export_model import build_request, resolve_model
from hwnas.exporters import export_all
from hwnas.exporters.tflite_export import quiet_quantizer, signature_input, tflite_runner, to_nhwc
from hwnas.presets import get_space
from hwnas.recipe import Recipe
from hwnas.space import SearchSpace
from hwnas.trainer import Prepared, train

ROOT = Path(__file__).resolve().parents[1]
HEADLINE = "default:r32_c24[k3e6,k5e3]_c40[k5e6,k3e3]_c64[k3e6sh,k5e3sh]_c96[k3e6sh]"


def test_set(space: SearchSpace, arch: Arch, data: ImageSplits) -> tuple[np.ndarray, np.ndarray]:
    test = Prepared(data.test, arch.resolution, space.in_channels)
    images = np.stack([test[i][0].numpy() for i in range(len(test))]).astype(np.float32)
    return images, np.array([test[i][1] for i in range(len(test))])


def library_default_int8(float_file: Path, calibration: np.ndarray, out: Path) -> Path:
    """The int8 file ai-edge-quantizer makes with its own ``Quantizer.calibrate`` (for comparison only)."""
    from ai_edge_quantizer import quantizer, recipe

    quant = quantizer.Quantizer(str(float_file))
    quant.load_quantization_recipe(recipe.static_wi8_ai8())
    signature, input_name = signature_input(float_file)
    samples = [{input_name: image[None]} for image in to_nhwc(calibration)]
    with quiet_quantizer():
        ranges = quant.calibrate({signature: samples}, num_threads=1)
        quantized = quant.quantize(ranges, enable_progress_bar=False, enable_progress_report=False)
    out.write_bytes(bytes(quantized.quantized_model))
    return out


def int8_trial(space: SearchSpace, arch: Arch, epochs: int, data: ImageSplits, device: DeviceSpec) -> dict[str, Any]:
    result = train(space, arch, Recipe(epochs=epochs), data, seed=0, progress=False)
    images, labels = test_set(space, arch, data)
    with tempfile.TemporaryDirectory() as scratch:
        run = Path(scratch) / "run"
        run.mkdir()
        torch.save(result.model.state_dict(), run / "model.pt")
        (run / "result.json").write_text(json.dumps(result.to_json()))
        request = build_request(resolve_model(str(run)), None, images=1000, calibration=500)
        started = time.perf_counter()
        card = export_all(request, ["tflite", "tflite-int8"], Path(scratch) / "export", [device])
        export_s = time.perf_counter() - started
        files = {item["format"]: Path(scratch) / "export" / item["file"] for item in card["exports"]}
        files["tflite-int8-library-default"] = library_default_int8(
            files["tflite"], request.calibration, Path(scratch) / "library-default.int8.tflite"
        )
        held_out = {fmt: float((tflite_runner(path)(images).argmax(1) == labels).mean()) for fmt, path in files.items()}
    fp32, int8 = ({x["format"]: x for x in card["exports"]}[f] for f in ("tflite", "tflite-int8"))
    return {
        "arch": arch.format(),
        "epochs": epochs,
        "recipe": result.recipe,
        "val_accuracy_torch": result.val_accuracy,
        "test_images": len(labels),
        "test_accuracy": held_out,
        "int8_drop_points": round(100 * (held_out["tflite"] - held_out["tflite-int8"]), 2),
        "library_default_int8_drop_points": round(100 * (held_out["tflite"] - held_out["tflite-int8-library-default"]), 2),
        "bytes": {"tflite": fp32["bytes"], "tflite-int8": int8["bytes"]},
        "latency_ms": {f: x["latency"][0] for f, x in (("tflite", fp32), ("tflite-int8", int8))},
        "verification": {"tflite": fp32["verification"], "tflite-int8": int8["verification"]},
        "export_and_verify_s": round(export_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default=HEADLINE)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--sampled", type=int, default=4, help="more sampled architectures, trained --sampled-epochs")
    parser.add_argument("--sampled-epochs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "export_int8.json")
    args = parser.parse_args()
    space, data, device = get_space("default"), load_data(), DeviceSpec.from_toml("host-tflite")
    started = time.perf_counter()
    headline = int8_trial(space, space.parse(args.arch), args.epochs, data, device)
    rng = random.Random(0)
    sampled = [int8_trial(space, space.sample(rng), args.sampled_epochs, data, device) for _ in range(args.sampled)]
    drops = [t["int8_drop_points"] for t in [headline, *sampled]]
    results = {
        "command": " ".join(["benchmarks/export_int8.py", *sys.argv[1:]]),
        **headline,
        "target_drop_points": 1.0,
        "sampled": sampled,
        "all_models": {
            "count": len(drops),
            "int8_drop_points_max": max(drops),
            "within_target": sum(d <= 1.0 for d in drops),
            "library_default_drop_points_max": max(t["library_default_int8_drop_points"] for t in [headline, *sampled]),
        },
        "backend_fingerprint": make_backend(device).fingerprint(),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    for trial in [headline, *sampled]:
        print(
            f"{trial['arch']} ({trial['epochs']} ep): fp32 {trial['test_accuracy']['tflite']:.4f} "
            f"int8 {trial['test_accuracy']['tflite-int8']:.4f} (drop {trial['int8_drop_points']:+.2f} pt; "
            f"library default {trial['library_default_int8_drop_points']:+.2f} pt)"
        )
    latency = {fmt: round(value["median_ms"], 4) for fmt, value in headline["latency_ms"].items()}
    print(f"headline median latency (ms): {latency}; bytes {headline['bytes']}")


if __name__ == "__main__":
    main()
