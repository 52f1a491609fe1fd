"""A thin table against FLOPs scaling: torchvision and pruned networks predicted from a space's own layers only.

Issue 23's thin-table case. A table that holds only one space's layers (no ``--layers`` sampled beyond it: a public
phone table, or a shipped table) must still predict other networks no worse than the simplest physics, FLOPs times the
same table's milliseconds per multiply-add. This benchmark takes a table (``--table``, e.g. a shipped one), keeps
``--entries`` of its space's layers at random (80 by default; no sampled layer, no whole network), and predicts the
networks ``benchmarks/latency_any.py`` measured on the same device (``benchmarks/results/latency_any_<runtime>.json``:
torchvision models at 96-224 px and two widths, and channel-pruned default-space networks) two ways:

- ``hwnas``: :func:`~hwnas.predictors.network_latency.keys_latency`, the table's entries where they exist and the layer
  models fitted on those entries elsewhere;
- ``flops``: each network's multiply-adds times the same thin table's milliseconds per multiply-add (its layers' total
  time over their total multiply-adds; with ``--keep-sampled``, the median over the table's whole networks).

Both are put in the measurement's frame by the ratio of the two sessions' reference networks (both record them), so a
machine running at another speed that day does not decide the comparison. Writes
``benchmarks/results/latency_thin_<runtime>_<entries>.json``.

    .venv/bin/python benchmarks/latency_thin.py --runtime tflite --table latency_tables/data/<table>.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from latency_any import RESULTS, metrics, pruned_network  # noqa: E402

from hwnas.decompose import decompose, torchvision_model  # noqa: E402
from hwnas.latency_tables.compat import extended_apart, without_extended  # noqa: E402
from hwnas.latency_tables.table import LatencyTable  # noqa: E402
from hwnas.opkey import OpKey  # noqa: E402
from hwnas.predictors.layer_models import layer_costs  # noqa: E402
from hwnas.predictors.network_latency import keys_latency  # noqa: E402
from hwnas.presets import get_space  # noqa: E402


def space_only(table: LatencyTable, entries: int, seed: int = 0) -> LatencyTable:
    """The table with only its space's layers, ``entries`` of them drawn at random (0: all), and no whole networks:
    what a public phone table holds (a few dozen layers of one space at one resolution)."""
    import random
    from dataclasses import replace

    own = [key for key in get_space(table.space).enumerate_op_keys() if key in table.entries]
    kept = random.Random(seed).sample(own, entries) if 0 < entries < len(own) else own
    return replace(table, entries={key: table.entries[key] for key in kept}, networks=[])


def network_keys(stored: dict[str, Any]) -> list[OpKey]:
    """The layers of a network latency_any measured, rebuilt as it built them."""
    if stored["kind"] == "torchvision":
        shape = (1, 3, stored["resolution"], stored["resolution"])
        return decompose(torchvision_model(stored["name"], stored["width"]), shape)
    module, shape, _ = pruned_network(int(stored["label"].split("-")[1]))
    return decompose(module, shape)


def flops(keys: list[OpKey]) -> float:
    return float(sum(layer_costs(key).flops for key in keys))


def ms_per_flop(table: LatencyTable) -> float:
    """Milliseconds per multiply-add: the median over the table's whole networks, or (a table without networks) its
    layers' total time over their total multiply-adds."""
    from hwnas.arch import Arch

    if not table.networks:
        keys = list(table.entries)
        return sum(table.entries[key].median_ms for key in keys) / flops(keys)
    space = get_space(table.space)
    return statistics.median(
        float(n["median_ms"]) / flops(space.op_keys(space.validate(Arch.parse(n["arch"])))) for n in table.networks
    )


def session_ratio(measured_references: dict[str, Any], table: LatencyTable) -> tuple[float, dict[str, float]]:
    """The measurement session's speed over the table's: the median ratio of the reference networks both timed."""
    shared = sorted(set(measured_references) & set(table.references))
    if not shared:
        raise SystemExit("the table and the measurements share no reference network: their sessions cannot be compared")
    ratios = {name: measured_references[name]["median_ms"] / table.references[name]["median_ms"] for name in shared}
    return statistics.median(ratios.values()), ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runtime", choices=("onnx", "tflite"), required=True)
    parser.add_argument("--table", type=Path, required=True)
    parser.add_argument("--keep-sampled", action="store_true", help="keep the table's sampled layers (not thin)")
    parser.add_argument("--entries", type=int, default=80, help="space layers kept in the thin table (0: all)")
    args = parser.parse_args()
    measured = json.loads((RESULTS / f"latency_any_{args.runtime}.json").read_text())
    full = LatencyTable.load(args.table)
    if without_extended(full.fingerprint) != without_extended(measured["fingerprint"]):
        raise SystemExit(f"{args.table} was made on another device or runtime than latency_any_{args.runtime}.json")
    apart = extended_apart(full.fingerprint, measured["fingerprint"])  # the same CPU on another day's VM: the ratio covers it
    table = full if args.keep_sampled else space_only(full, args.entries)
    ratio, per_reference = session_ratio(measured["references"], full)
    per_flop = ms_per_flop(table)
    networks = []
    for stored in measured["networks"]:
        keys = network_keys(stored)
        predicted = keys_latency(keys, table)
        networks.append({
            "label": stored["label"],
            "kind": stored["kind"],
            "measured_ms": stored["measured_ms"],
            "hwnas_ms": predicted.total_ms * ratio,
            "flops_ms": flops(keys) * per_flop * ratio,
            "looked_up": predicted.looked_up,
            "modelled": predicted.modelled,
        })  # fmt: skip
        print(f"  {stored['label']:32s} measured {stored['measured_ms']:.3f}  hwnas {networks[-1]['hwnas_ms']:.3f}  "
              f"flops {networks[-1]['flops_ms']:.3f}", flush=True)  # fmt: skip
    result = {
        "runtime": args.runtime,
        "table": str(args.table),
        "table_created": full.created,
        "fingerprint_fields_apart": {key: [full.fingerprint.get(key), measured["fingerprint"].get(key)] for key in apart},
        "thin": not args.keep_sampled,
        "table_layers": len(table.entries),
        "table_networks": len(table.networks),
        "measurements": f"latency_any_{args.runtime}.json ({measured['when']})",
        "session_ratio": ratio,
        "session_ratio_per_reference": per_reference,
        "ms_per_mflop": per_flop * 1e6,
        "scores": {
            kind: scores([n for n in networks if kind in ("all", n["kind"])]) for kind in ("all", "torchvision", "pruned")
        },
        "networks": networks,
    }
    suffix = "_full" if args.keep_sampled else f"_{len(table.entries)}"
    path = RESULTS / f"latency_thin_{args.runtime}{suffix}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["scores"], indent=2))
    print(f"wrote {path}")


def scores(networks: list[dict[str, Any]]) -> dict[str, Any]:
    measured = [n["measured_ms"] for n in networks]
    hwnas = metrics([n["hwnas_ms"] for n in networks], measured)
    flops_only = metrics([n["flops_ms"] for n in networks], measured)
    errors = np.abs(np.log([n["hwnas_ms"] / n["measured_ms"] for n in networks]))
    flops_errors = np.abs(np.log([n["flops_ms"] / n["measured_ms"] for n in networks]))
    return {
        "n": len(networks),
        "hwnas": hwnas,
        "flops_scaling": flops_only,
        "hwnas_closer_share": float(np.mean(errors < flops_errors)),
    }


if __name__ == "__main__":
    main()
