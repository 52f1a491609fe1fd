"""The table-sum latency of an architecture on every device whose shipped table matches this machine.

What the main job reported before it had a predictor; kept for callers that want the plain LUT sum
of every shipped device at once (the run itself reports the calibrated predictor).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hwnas import latency_tables as shipped_tables
from hwnas.arch import Arch
from hwnas.devices import DeviceSpec, make_backend
from hwnas.errors import UserError
from hwnas.latency_tables.table import LatencyTable
from hwnas.space import SearchSpace

SHIPPED_TABLES = Path(shipped_tables.__file__).parent / "data"


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
