"""The device a search targets: its runtime here, its latency table, and a latency predictor fitted on it.

The table is the one whose fingerprint matches this machine (a device may ship tables for several
CPUs, as ``hwnas run`` picks them), or one the user profiled (``runs/profiles/<device>-<space>/``,
or ``--table``). The predictor is :class:`~hwnas.predictors.latency.CalibratedLatency` fitted on
the whole networks the table's profile measured (on TFLite within 1% MAPE of them here); with
fewer than :data:`MIN_NETWORKS` of them it falls back to the plain LUT sum.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwnas import latency_tables as shipped_tables
from hwnas.arch import Arch, Stage
from hwnas.devices import DeviceSpec, make_backend
from hwnas.errors import UserError
from hwnas.latency_tables.table import LatencyTable
from hwnas.predictors.data import networks_from_table
from hwnas.predictors.latency import CalibratedLatency, LatencyPredictor, LutSum
from hwnas.space import SearchSpace

SHIPPED_TABLES = Path(shipped_tables.__file__).parent / "data"
PROFILES = Path("runs") / "profiles"
MIN_NETWORKS = 8


@dataclass
class DeviceLatency:
    """A device spec, its backend here, the table chosen for it and the fitted latency predictor."""

    spec: DeviceSpec
    spec_arg: str
    backend: Any
    table: LatencyTable
    table_path: Path
    predictor: LatencyPredictor
    space: SearchSpace

    def predict(self, archs: Sequence[Arch]) -> np.ndarray:
        return np.asarray(self.predictor.predict(list(archs)), dtype=np.float64) if archs else np.zeros(0)

    def predict_one(self, arch: Arch) -> float:
        return float(self.predict([arch])[0])

    def describe(self) -> dict[str, Any]:
        return {
            "device": self.spec.name,
            "spec": self.spec_arg,
            "table": str(self.table_path),
            "table_created": self.table.created,
            "fingerprint": self.table.fingerprint,
            "predictor": self.predictor.kind,
            "predictor_networks": len(self.table.networks),
        }

    def fastest(self) -> tuple[Arch, float]:
        """The fastest architecture by the table and its predicted latency (see :func:`fastest_arch`)."""
        arch = fastest_arch(self.space, self.table)
        return arch, self.predict_one(arch)


def load_device_latency(spec_arg: str, space: SearchSpace, table: Path | None = None, space_arg: str = "") -> DeviceLatency:
    """The device's latency model for ``space``; no matching table is a one-line error saying how to profile."""
    spec = DeviceSpec.from_toml(spec_arg)
    backend = make_backend(spec)
    backend.require_available()
    fingerprint = backend.fingerprint()
    if table is not None:
        chosen = LatencyTable.load(table)
        chosen.check(fingerprint, space.hash)
        path = Path(table)
    else:
        path, chosen = _find_table(spec, space, fingerprint, space_arg or space.name, spec_arg)
    networks = networks_from_table(chosen.networks, space, source=str(path))
    archs, ms = [n.arch for n in networks], [n.ms for n in networks]
    predictor: LatencyPredictor
    predictor = CalibratedLatency(chosen, space).fit(archs, ms) if len(networks) >= MIN_NETWORKS else LutSum(chosen, space)
    return DeviceLatency(spec, spec_arg, backend, chosen, path, predictor, space)


def _find_table(
    spec: DeviceSpec, space: SearchSpace, fingerprint: dict[str, Any], space_arg: str, spec_arg: str
) -> tuple[Path, LatencyTable]:
    candidates = [*sorted(SHIPPED_TABLES.glob(f"{space.name}-*.json")), PROFILES / f"{spec.name}-{space.name}" / "table.json"]
    for path in candidates:
        if not path.is_file():
            continue
        table = LatencyTable.load(path)
        if table.device.get("name") != spec.name:
            continue
        try:
            table.check(fingerprint, space.hash)
        except UserError:
            continue
        return path, table
    raise UserError(
        f"no latency table of space {space.name!r} for device {spec.name!r} on this machine ({fingerprint.get('device', '?')}); "
        f"profile it first: hwnas profile {spec_arg} --space {space_arg} "
        f"(writes {PROFILES / f'{spec.name}-{space.name}'}/table.json, which search then finds)"
    )


def fastest_arch(space: SearchSpace, table: LatencyTable) -> Arch:
    """The architecture with the smallest LUT sum, by dynamic programming over stages.

    A stage's first block depends on the previous stage's width, so the state is that width; the
    other blocks of a stage are its fastest block repeated. Exact for the LUT sum; the calibrated
    predictor's correction is close to a constant factor, so this is the fastest it knows of too.
    """
    best: Arch | None = None
    best_ms = float("inf")
    for resolution in space.resolutions:
        arch, ms = _fastest_at(space, table, resolution)
        if ms < best_ms:
            best, best_ms = arch, ms
    assert best is not None
    return best


def _fastest_at(space: SearchSpace, table: LatencyTable, resolution: int) -> tuple[Arch, float]:
    probe = space.sample(0)
    stem = space.op_keys(Arch(space.name, resolution, probe.stages))[0]
    # state: previous width -> (ms so far, stages so far, spatial size)
    states: dict[int, tuple[float, tuple[Stage, ...], int]] = {space.stem_channels: (table.lookup(stem), (), stem.out_size)}
    for spec in space.stages:
        following: dict[int, tuple[float, tuple[Stage, ...], int]] = {}
        for (previous, (ms, stages, size)), width, depth in itertools.product(states.items(), spec.widths, spec.depths):
            first, first_ms = _fastest_block(space, table, spec, size, previous, width, spec.stride)
            out_size = (size - 1) // spec.stride + 1
            rest, rest_ms = _fastest_block(space, table, spec, out_size, width, width, 1) if depth > 1 else (first, 0.0)
            total = ms + first_ms + (depth - 1) * rest_ms
            if width not in following or total < following[width][0]:
                following[width] = (total, (*stages, Stage(width, (first,) + (rest,) * (depth - 1))), out_size)
        states = following
    options = [Arch(space.name, resolution, stages) for _, stages, _ in states.values()]
    return min(((arch, table.predict(space.op_keys(arch))) for arch in options), key=lambda pair: pair[1])


def _fastest_block(
    space: SearchSpace, table: LatencyTable, spec: Any, size: int, cin: int, cout: int, stride: int
) -> tuple[Any, float]:
    from hwnas.opkey import OpKey

    timed = [
        (block, table.lookup(OpKey("expanded_conv", size, cin, cout, block.kernel, stride, block.expansion, block.se, block.act)))
        for block in spec.block_choices()
    ]
    return min(timed, key=lambda pair: pair[1])
