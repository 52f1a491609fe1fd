"""TFLite conversion time per layer and per network, with and without the composite-op list kept per process.

Issue 23's "faster conversion": litert-torch takes 1.3-1.6 s a layer here, 80-93% of a cold profile. This converts
the same layers and whole networks of the default space in one process (one torch thread, as a profile's worker does),
alternating the two ways for every model so a slow stretch of the machine touches both, and checks that both ways
write byte-identical files. Writes ``benchmarks/results/convert_speed.json``.

    .venv/bin/python benchmarks/convert_speed.py --layers 40 --networks 8
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def models(layers: int, networks: int) -> list[tuple[str, torch.nn.Module, torch.Tensor]]:
    """Every ``len/layers``-th layer of the default space and its first sampled networks (the profile's seed 0)."""
    from hwnas.builder import build_model, build_op, input_shape
    from hwnas.latency_tables.profiler import sample_networks
    from hwnas.presets import get_space

    space = get_space("default")
    keys = space.enumerate_op_keys()
    chosen = keys[:: max(1, len(keys) // layers)][:layers]
    out = [("layer", build_op(key).eval(), torch.randn(1, key.in_channels, key.in_size, key.in_size)) for key in chosen]
    for arch in sample_networks(space, networks, 0):
        out.append(("network", build_model(space, arch).eval(), torch.randn(input_shape(space, arch))))
    return out


def convert(module: torch.nn.Module, sample: torch.Tensor, path: Path, reuse: bool) -> float:
    """Seconds to convert ``module`` as :func:`hwnas.exporters.tflite_export._convert` does."""
    from hwnas.exporters.tflite_export import composite_ops_listed_once, require_litert_torch, to_nhwc

    litert_torch = require_litert_torch()
    started = time.perf_counter()
    with torch.no_grad():
        spatial = module(sample).ndim == 4
    wrapped = litert_torch.to_channel_last_io(module, args=[0], outputs=[0] if spatial else None).eval()
    with composite_ops_listed_once() if reuse else contextlib.nullcontext():
        litert_torch.convert(wrapped, (to_nhwc(sample),)).export(str(path))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=40)
    parser.add_argument("--networks", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    items = models(args.layers, args.networks)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        convert(items[0][1], items[0][2], work / "warm.tflite", False)  # imports and first-call costs out of the way
        rows: list[dict[str, Any]] = []
        for index, (kind, module, sample) in enumerate(items):
            seconds: dict[str, float] = {}
            for reuse in (index % 2 == 0, index % 2 == 1):  # alternate which way goes first
                name = "reused" if reuse else "plain"
                seconds[name] = convert(module, sample, work / f"{index}-{name}.tflite", reuse)
            same = (work / f"{index}-reused.tflite").read_bytes() == (work / f"{index}-plain.tflite").read_bytes()
            rows.append({"kind": kind, **seconds, "identical": same})
            print(f"{kind:8s} plain {seconds['plain']:.2f} s  reused {seconds['reused']:.2f} s  identical {same}", flush=True)
    summary = {kind: summarize([row for row in rows if row["kind"] == kind]) for kind in ("layer", "network")}
    result = {
        "command": f"benchmarks/convert_speed.py --layers {args.layers} --networks {args.networks}",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "summary": summary,
        "all_identical": all(row["identical"] for row in rows),
        "rows": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "convert_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


def summarize(rows: list[dict[str, Any]]) -> dict[str, float]:
    plain = statistics.median(row["plain"] for row in rows)
    reused = statistics.median(row["reused"] for row in rows)
    return {"n": len(rows), "plain_median_s": round(plain, 3), "reused_median_s": round(reused, 3),
            "saved_share": round(1 - sum(r["reused"] for r in rows) / sum(r["plain"] for r in rows), 3)}  # fmt: skip


if __name__ == "__main__":
    main()
