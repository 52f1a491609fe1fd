"""The table-sum latency of an architecture on every device whose shipped table matches this machine.

What the main job reported before it had a predictor; kept for callers that want the plain LUT sum
of every shipped device at once (the run itself reports the calibrated predictor).
"""

from __future__ import annotations

from typing import Any

from hwnas.arch import Arch
from hwnas.devices import DeviceSpec, make_backend
from hwnas.latency_tables.table import SHIPPED, LatencyTable, matching_table
from hwnas.space import SearchSpace


def predicted_latency(space: SearchSpace, arch: Arch) -> dict[str, Any]:
    """LUT-sum latency per device, from the shipped table of this space measured on this machine's CPU.

    A device may have shipped tables for several CPUs (``default-host-cpu-onnxruntime.json`` from an
    Intel Xeon, ``...-amd-epyc.json``): :func:`~hwnas.latency_tables.table.matching_table` (shipped
    tables only) picks the one whose fingerprint matches; when none does, the device's entry says why,
    and no number from another CPU is given.
    """
    predictions: dict[str, Any] = {}
    for path in sorted(SHIPPED.glob(f"{space.name}-*.json")):
        table = LatencyTable.load(path)
        device = table.device["name"]
        if device in predictions:
            continue
        backend = make_backend(DeviceSpec.from_json(table.device))
        if backend.unavailable_reason() is not None:
            continue
        found = matching_table(device, backend.fingerprint(), space.name, space.hash, stores=())
        if found is None:
            predictions[device] = {
                "skipped": f"no shipped table of {device} matches this machine ({backend.fingerprint().get('device', '?')})"
            }
            continue
        predictions[device] = {"lut_sum_ms": found.table.predict(space.op_keys(arch)), "table": found.path.name}
    return predictions
