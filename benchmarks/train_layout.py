"""Training speed, channels-last against contiguous: the same training run both ways, interleaved.

:func:`hwnas.accelerator.channels_last` lays the weights out NHWC for the training steps. This times one epoch of
``hwnas.trainer.train`` (default recipe, one thread) for networks spread over the default space, and supernet
sandwich steps, each way in alternating rounds so a busy machine slows both alike, and records the test accuracy
each way (the layout changes the order of sums, not the values learnt, so accuracies should agree to noise).

Writes ``benchmarks/results/train_layout.json``.

    .venv/bin/python benchmarks/train_layout.py --rounds 2 --images 4096
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "train_layout.json"
ARCHS = (
    "default:r32_c16[k3e3]_c40[k3e6]_c64[k5e3sh]_c80[k3e3sh]",  # the rank-fidelity set's fastest
    "default:r32_c24[k3e6]_c32[k7e3,k5e3]_c48[k5e3h,k5e3h]_c80[k7e6sh]",
    "default:r32_c24[k7e6,k7e6]_c40[k3e6,k5e6,k7e6]_c48[k5e3sh,k7e6sh,k3e3h]_c96[k3e6h]",  # its slowest
)


@contextlib.contextmanager
def layout(nhwc: bool) -> Iterator[None]:
    """Training as shipped (``nhwc``) or with the channels-last context made a no-op (the layout before it)."""
    import hwnas.supernet.train as supernet_train
    import hwnas.trainer as trainer

    shipped = trainer.channels_last
    if not nhwc:
        trainer.channels_last = supernet_train.channels_last = lambda *modules: contextlib.nullcontext()  # type: ignore[assignment]
    try:
        yield
    finally:
        trainer.channels_last = supernet_train.channels_last = shipped  # type: ignore[assignment]


def time_network(arch_text: str, nhwc: bool, data: Any) -> dict[str, Any]:
    from hwnas.presets import get_space
    from hwnas.recipe import Recipe
    from hwnas.trainer import train

    space = get_space("default")
    with layout(nhwc):
        arch = space.parse(arch_text)
        result = train(space, arch, Recipe(epochs=1), data, seed=0, threads=1, progress=False, evaluate_test=True)
    return {"arch": arch_text, "nhwc": nhwc, "train_s": result.curve[0]["seconds"], "test_accuracy": result.test_accuracy}


def time_supernet(nhwc: bool, data: Any) -> dict[str, Any]:
    from hwnas.presets import get_space
    from hwnas.recipe import Recipe
    from hwnas.supernet.train import train_supernet

    with layout(nhwc):
        done = train_supernet(get_space("default"), Recipe(epochs=1), data, seed=0, threads=1)
    return {"arch": "supernet (sandwich, 4 subnetworks a step)", "nhwc": nhwc, "train_s": done.wall_time_s,
            "test_accuracy": None}  # fmt: skip


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    table = []
    for arch in dict.fromkeys(row["arch"] for row in rows):
        mine = [row for row in rows if row["arch"] == arch]
        nhwc = statistics.median(row["train_s"] for row in mine if row["nhwc"])
        before = statistics.median(row["train_s"] for row in mine if not row["nhwc"])
        table.append({"arch": arch, "contiguous_s": before, "channels_last_s": nhwc, "speedup": before / nhwc})
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--images", type=int, default=4096, help="training images of the epoch timed")
    args = parser.parse_args()

    import torch

    from hwnas.data import load_data
    from hwnas.devices.backends.base import host_cpu_model
    from hwnas.fileio import atomic_write_json

    torch.set_num_threads(1)
    data = load_data().head(args.images, 500)
    rows = []
    for number in range(args.rounds):
        for nhwc in (number % 2 == 0, number % 2 == 1):  # alternate which layout goes first
            rows += [time_network(arch, nhwc, data) for arch in ARCHS]
            rows.append(time_supernet(nhwc, data.head(args.images // 4, 500)))
            print(json.dumps(rows[-1]), flush=True)
    settings = {"rounds": args.rounds, "images": args.images, "threads": 1, "cpu": host_cpu_model(),
                "load_average_at_end": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d")}  # fmt: skip
    atomic_write_json(RESULT, {"settings": settings, "table": summarize(rows), "rows": rows})
    print(json.dumps(summarize(rows), indent=1))


if __name__ == "__main__":
    main()
