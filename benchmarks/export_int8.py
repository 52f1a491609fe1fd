"""int8 TFLite of a trained default-preset model: accuracy vs fp32 on held-out images, size, latency.

Trains one architecture of the default preset on the embedded data, exports TFLite fp32 and
full-integer int8 (calibrated on training images), evaluates both files in the TFLite interpreter
on the held-out *test* split (2,000 images), and times both on this CPU (host-tflite spec).
Writes ``benchmarks/results/export_int8.json``.

    .venv/bin/python benchmarks/export_int8.py --epochs 3
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from devices import DeviceSpec, make_backend
from exporters import export_all, get_exporter
from hwnas.data import load_data
from hwnas.export_model import build_request, resolve_model
from hwnas.presets import get_space
from hwnas.recipe import Recipe
from hwnas.trainer import Prepared, train

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="default:r32_c24[k3e6,k5e3]_c40[k5e6,k3e3]_c64[k3e6sh,k5e3sh]_c96[k3e6sh]")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    space = get_space("default")
    arch = space.parse(args.arch)
    data = load_data()
    result = train(space, arch, Recipe(epochs=args.epochs), data, seed=0, progress=False)
    with tempfile.TemporaryDirectory() as scratch:
        run = Path(scratch) / "run"
        run.mkdir()
        import torch

        torch.save(result.model.state_dict(), run / "model.pt")
        (run / "result.json").write_text(json.dumps(result.to_json()))
        request = build_request(resolve_model(str(run)), None, images=1000, calibration=500)
        started = time.perf_counter()
        card = export_all(request, ["tflite", "tflite-int8"], Path(scratch) / "export", [DeviceSpec.from_toml("host-tflite")])
        export_s = time.perf_counter() - started
        test = Prepared(data.test, arch.resolution, space.in_channels)
        images = np.stack([test[i][0].numpy() for i in range(len(test))]).astype(np.float32)
        labels = np.array([test[i][1] for i in range(len(test))])
        held_out = {}
        for item in card["exports"]:
            runner = get_exporter(item["format"]).runner(Path(scratch) / "export" / item["file"])
            held_out[item["format"]] = float((runner(images).argmax(1) == labels).mean())
    fp32, int8 = ({x["format"]: x for x in card["exports"]}[f] for f in ("tflite", "tflite-int8"))
    results = {
        "command": " ".join(["benchmarks/export_int8.py", *sys.argv[1:]]),
        "arch": arch.format(),
        "recipe": result.recipe,
        "val_accuracy_torch": result.val_accuracy,
        "test_images": len(labels),
        "test_accuracy": held_out,
        "int8_drop_points": round(100 * (held_out["tflite"] - held_out["tflite-int8"]), 2),
        "target_drop_points": 1.0,
        "bytes": {"tflite": fp32["bytes"], "tflite-int8": int8["bytes"]},
        "latency_ms": {f: x["latency"][0] for f, x in (("tflite", fp32), ("tflite-int8", int8))},
        "verification": {"tflite": fp32["verification"], "tflite-int8": int8["verification"]},
        "export_and_verify_s": round(export_s, 1),
        "backend_fingerprint": make_backend(DeviceSpec.from_toml("host-tflite")).fingerprint(),
    }
    out = ROOT / "benchmarks" / "results" / "export_int8.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: results[k] for k in ("test_accuracy", "int8_drop_points", "bytes")}, indent=2))
    latency = {fmt: round(value["median_ms"], 4) for fmt, value in results["latency_ms"].items()}
    print(f"median latency (ms): {latency}")


if __name__ == "__main__":
    main()
