"""The device a search targets: its runtime here, its latency table, and a latency predictor fitted on it.

The table is chosen by :func:`~hwnas.latency_tables.table.matching_table`, as everywhere: the user's
``--table``, else a profile of the device here (``runs/profiles/<device>-<space>/``), else a shipped
table whose fingerprint matches this machine (a device may ship tables for several CPUs). A device that is
not here (a phone a colleague profiled, an imported table) is given as its table file instead of a spec
(``--device TABLE.json``): it is searched and predicted from the table, never measured (:func:`table_device`). The
predictor is :class:`~hwnas.predictors.latency.CalibratedLatency` fitted on the whole networks the
table's profile measured (on TFLite within 1% MAPE of them here); with fewer than
:data:`MIN_NETWORKS` of them it falls back to the plain LUT sum.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.arch import Arch, Stage
from hwnas.devices import DeviceSpec, make_backend
from hwnas.devices.spec import is_table_device
from hwnas.errors import UserError
from hwnas.latency_tables.drift import DRIFT_NETWORKS
from hwnas.latency_tables.table import PROFILES, LatencyTable, matching_table
from hwnas.predictors.data import networks_from_table
from hwnas.predictors.latency import CalibratedLatency, LatencyPredictor, LutSum
from hwnas.space import SearchSpace

MIN_NETWORKS = 8
MARGIN_COVERAGE = 0.9  # --margin auto: the budget held by this share of held-out networks
MARGIN_FOLDS = 5
MAX_AUTO_MARGIN = 0.5  # a predictor that errs more than 2x low is better profiled again than searched under


@dataclass(frozen=True)
class HeldOutMargin:
    """``--margin auto``'s answer: the margin, and what it was read from (said in the search's log)."""

    margin: float
    ratio_quantile: float  # measured / held-out prediction, at ``coverage``
    coverage: float
    networks: int

    def describe(self) -> str:
        return (
            f"margin {self.margin:.1%} from held-out error: {self.coverage:.0%} of the table's {self.networks} networks "
            f"measured at most x{self.ratio_quantile:.3f} their prediction"
        )


def _held_out_predictions(table: LatencyTable, space: SearchSpace, archs: list[Arch], measured: np.ndarray) -> np.ndarray:
    """Each network's prediction by a predictor that did not see it (``search``'s own predictor, refitted per fold)."""
    if len(archs) < MIN_NETWORKS:
        return np.asarray(LutSum(table, space).predict(archs), dtype=np.float64)
    from sklearn.model_selection import KFold

    predicted = np.zeros(len(archs))
    for fit_rows, held_rows in KFold(MARGIN_FOLDS, shuffle=True, random_state=0).split(archs):
        model = CalibratedLatency(table, space).fit([archs[i] for i in fit_rows], measured[fit_rows])
        predicted[held_rows] = model.predict([archs[i] for i in held_rows])
    return predicted


@dataclass
class DeviceLatency:
    """A device spec, its backend here, the table chosen for it and the fitted latency predictor."""

    spec: DeviceSpec
    spec_arg: str
    backend: Any  # None: a device known only by its table (--device TABLE.json), predicted, never measured here
    table: LatencyTable
    table_path: Path
    predictor: LatencyPredictor
    space: SearchSpace
    _margins: dict[float, HeldOutMargin] = field(default_factory=dict, repr=False)  # held_out_margin's, by coverage

    @property
    def measurable(self) -> bool:
        """Whether the device's runtime is here to time exports on (not for a device given as its table)."""
        return self.backend is not None

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
            "measured_here": self.measurable,
        }

    def check_drift(self, cache: Path, context: str = "search") -> dict[str, Any] | None:
        """Re-time the table's reference networks (or a few of its whole networks) now: is the device at the table's speed?

        The search predicts from the table, so a device running 1.5x slower today makes every prediction 1.5x low.
        Returns the check as JSON with its one-line ``message`` (a warning beyond 10%), or ``None`` when it cannot be done.
        """
        from hwnas.latency_tables.drift import drift_first

        if not self.measurable:
            return None
        check = drift_first(self.table_path, self.backend, cache, context, space=self.space, networks=DRIFT_NETWORKS)
        return None if check is None else check.to_json() | {"message": check.message(rescale_hint=False)}

    def held_out_margin(self, coverage: float = MARGIN_COVERAGE) -> HeldOutMargin:
        """``--margin auto``: the margin under which ``coverage`` of the table's whole networks, each predicted by a
        predictor fitted without it (5-fold), measured within their prediction's budget.

        A network predicted at ``p`` measures ``r * p``; searching under ``budget / q`` (``q`` the ``coverage``
        quantile of ``r``) keeps that share of networks within the budget, so the margin is ``1 - 1/q`` (0 when the
        predictor errs high). Fewer networks than a calibrated predictor needs: the LUT sum's own ratios, unfitted.
        Kept per coverage: the search's config and its log line, and every budget of a specialization, ask again.
        """
        if coverage not in self._margins:
            self._margins[coverage] = self._held_out_margin(coverage)
        return self._margins[coverage]

    def _held_out_margin(self, coverage: float) -> HeldOutMargin:
        networks = networks_from_table(self.table.networks, self.space, source=str(self.table_path))
        if len(networks) < 2:
            raise UserError(
                f"--margin auto needs whole networks measured in the latency table ({self.table_path} has "
                f"{len(networks)}): give a number, or profile with --networks"
            )
        archs, measured = [n.arch for n in networks], np.array([n.ms for n in networks])
        predicted = _held_out_predictions(self.table, self.space, archs, measured)
        quantile = float(np.quantile(measured / predicted, coverage))
        return HeldOutMargin(min(max(0.0, 1 - 1 / quantile), MAX_AUTO_MARGIN), quantile, coverage, len(networks))

    def fastest(self) -> tuple[Arch, float]:
        """The fastest architecture by the table and its predicted latency (see :func:`fastest_arch`)."""
        arch = fastest_arch(self.space, self.table)
        return arch, self.predict_one(arch)


def load_device_latency(
    spec_arg: str,
    space: SearchSpace,
    table: Path | None = None,
    space_arg: str = "",
    *,
    made_from: SearchSpace | None = None,
    allow_mismatch: bool = False,
    log: Callable[[str], None] = lambda message: None,
) -> DeviceLatency:
    """The device's latency model for ``space``; no matching table is a one-line error saying how to profile.

    ``made_from``: the space ``space`` was made from for other data (``SearchSpace.for_data``). Without a table of
    ``space``, one of ``made_from`` on this device is completed with the few layers that differ, measured now
    (:func:`~hwnas.latency_tables.derive.derive_table`), instead of profiling the whole space again.
    ``allow_mismatch``: ``table`` is taken although made on another machine (``--allow-mismatch``).
    ``spec_arg`` a latency table file (``.json``): the device it was made on, predicted only (:func:`table_device`).
    """
    if is_table_device(spec_arg):
        if table is not None:
            raise UserError(f"--device {spec_arg} is a latency table already: give no other table for it")
        return table_device(Path(spec_arg), space)
    spec = DeviceSpec.from_toml(spec_arg)
    backend = make_backend(spec)
    backend.require_available()
    fingerprint = backend.fingerprint()
    found = matching_table(spec.name, fingerprint, space.name, space.hash, explicit=table, allow_mismatch=allow_mismatch)
    if found is None and made_from is not None:
        found = _derived(spec, backend, space, made_from, log)
    if found is None:
        raise UserError(
            f"no latency table of space {space.name!r} for device {spec.name!r} on this machine "
            f"({fingerprint.get('device', '?')}); profile it first: hwnas profile {spec_arg} --space {space_arg or space.name} "
            f"(writes {PROFILES / f'{spec.name}-{space.name}'}/table.json, which search then finds)"
        )
    if found.apart:  # the nearest table, not this exact CPU's: say so before predicting from it
        log(f"latency table of {spec.name}: {found.path} ({found.origin})")
    predictor = fitted_predictor(found.table, space, found.path)
    return DeviceLatency(spec, spec_arg, backend, found.table, found.path, predictor, space)


def fitted_predictor(table: LatencyTable, space: SearchSpace, path: Path) -> LatencyPredictor:
    """The table's layers calibrated on its whole networks, or the plain LUT sum below :data:`MIN_NETWORKS` of them."""
    networks = networks_from_table(table.networks, space, source=str(path))
    if len(networks) < MIN_NETWORKS:
        return LutSum(table, space)
    return CalibratedLatency(table, space).fit([n.arch for n in networks], [n.ms for n in networks])


def _derived(spec: DeviceSpec, backend: Any, space: SearchSpace, made_from: SearchSpace, log: Callable[[str], None]) -> Any:
    """``space``'s table derived from a table of ``made_from`` on this device, into ``hwnas profile``'s folder."""
    from hwnas.latency_tables.derive import derive_from
    from hwnas.paths import model_cache

    base = matching_table(spec.name, backend.fingerprint(), made_from.name, made_from.hash)
    out = PROFILES / f"{spec.name}-{space.name}"
    return derive_from(spec, backend, space, made_from, base, out, model_cache(), log=log)


def table_device(path: Path, space: SearchSpace) -> DeviceLatency:
    """A device known only by its latency table: profiled on a phone that is not connected here, on another machine,
    or imported (``hwnas lut import``). It is searched and predicted like any device, with the table's own whole
    networks calibrating the predictor, but nothing can be timed here: no drift check, no measurement. It is named
    after the table's device plus ``-predicted``, so its results never mix with those of a device measured here.
    """
    if not path.is_file():
        raise UserError(f"--device {path}: no such latency table file")
    table = LatencyTable.load(path)
    if table.space != space.name or (table.space_hash is not None and table.space_hash != space.hash):
        raise UserError(
            f"--device {path}: its latency table is of space {table.space!r} ({table.space_hash}), not of the "
            f"searched space {space.name!r} ({space.hash}): profile or import it for this space"
        )
    spec = DeviceSpec(name=_predicted_name(table, path), **_spec_fields(table.device))
    return DeviceLatency(spec, str(path), None, table, path, fitted_predictor(table, space, path), space)


def _predicted_name(table: LatencyTable, path: Path) -> str:
    name = str(table.device.get("name") or path.stem)
    name = name if name.endswith("-predicted") else f"{name}-predicted"
    return name if len(name) <= 64 else name[:54] + "-predicted"


def _spec_fields(device: dict[str, Any]) -> dict[str, Any]:
    """The measuring settings the table's device spec recorded (its backend names the export format), nothing else."""
    fields: dict[str, Any] = {"backend": str(device.get("backend") or "imported")}
    for name in ("threads", "precision"):
        if name in device:
            fields[name] = device[name]
    return fields


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
