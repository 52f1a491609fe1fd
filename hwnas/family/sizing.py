"""How big a scaled network may grow on a device: its latency predicted in today's frame, fitted to a budget.

A scaled network's layers are mostly outside the device's table (other widths and resolutions), so its latency is the
table's entries where it has them and the layer models elsewhere (:func:`hwnas.predictors.network_latency.keys_latency`).
One factor puts that prediction in today's frame: the base network measured now over the base network predicted,
which takes up both the device's drift since the table and the predictor's error on this family of networks.

Scaling is a direction (a :class:`~hwnas.scaling.Scaling` step) and a distance along it (EfficientNet's phi): the
network for a budget is the farthest point along the direction whose predicted latency is within the budget. Widths,
depths and pixels are whole numbers, so latency grows in steps along the way; the scan keeps the slowest point that
still fits rather than assuming it rises smoothly.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from hwnas.arch import Arch, Stage
from hwnas.latency_tables.table import LatencyTable
from hwnas.predictors.network_latency import keys_latency
from hwnas.scaling import Scaling, scale_arch
from hwnas.space import SearchSpace

DOUBLING = 2.0  # one compound step doubles latency on the device, as EfficientNet's alpha*beta^2*gamma^2 ~ 2 doubles FLOPs
DOUBLING_TOLERANCE = 0.1  # a grid point is kept when its predicted step is within 10% of 2x
DEPTH_STEPS = (1.0, 1.2, 1.4, 1.6, 1.8, 2.0)  # the grid EfficientNet searched around alpha 1.2, beta 1.1, gamma 1.15
WIDTH_STEPS = (1.0, 1.1, 1.2, 1.3, 1.4, 1.5)
SINGLE_DIMENSIONS = {"depth": Scaling.of(depth=2.0), "width": Scaling.of(width=2.0), "resolution": Scaling.of(resolution=2.0)}
OVERSHOOT = 1.5  # a scan stops once a network is predicted this far over the budget
SCAN = np.linspace(0.0, 4.0, 401)  # exponents along a direction: up to 16x its step, in 1% steps of the exponent


@dataclass(frozen=True)
class Sized:
    """A scaled network with its predicted latency today."""

    scaling: Scaling
    space: SearchSpace
    arch: Arch
    predicted_ms: float  # in table time
    predicted_today_ms: float


@dataclass
class FamilyLatency:
    """Predicted latency of ``base`` scaled any way, in today's frame (``factor`` = measured / predicted base)."""

    space: SearchSpace
    base: Arch
    table: LatencyTable
    factor: float = 1.0

    def __post_init__(self) -> None:
        self._cache: dict[Scaling, Sized] = {}
        # scalings that round to one network give it one name: x1.2 depth leaves stages of 1-2 blocks as they are, so
        # d120w140r100 and d100w140r100 are one network in two spaces (keyed without the space's name)
        self._by_arch: dict[tuple[int, tuple[Stage, ...]], Sized] = {}

    @cached_property
    def base_predicted_ms(self) -> float:
        return keys_latency(self.space.op_keys(self.base), self.table).total_ms

    def sized(self, scaling: Scaling) -> Sized:
        if scaling not in self._cache:
            space, arch = scale_arch(self.space, self.base, scaling)
            network = (arch.resolution, arch.stages)
            if network not in self._by_arch:
                predicted = keys_latency(space.op_keys(arch), self.table).total_ms
                self._by_arch[network] = Sized(scaling, space, arch, predicted, predicted * self.factor)
            self._cache[scaling] = self._by_arch[network]
        return self._cache[scaling]

    def fit_budget(self, step: Scaling, budget_ms: float, factor: float | None = None) -> Sized:
        """The slowest network along ``step``'s direction predicted within ``budget_ms`` today (the base if none).

        ``factor`` (default: the base's) turns table time into today's: a network measured on the way gives its own.
        """
        factor = self.factor if factor is None else factor
        best = self.sized(Scaling())
        for exponent in SCAN:
            candidate = self.sized(step.power(float(exponent)))
            if best.predicted_ms < candidate.predicted_ms and candidate.predicted_ms * factor <= budget_ms:
                best = candidate
            if candidate.predicted_ms * factor > OVERSHOOT * budget_ms:  # past the budget for good: rounding steps are smaller
                break
        return best

    def grid(self, count: int) -> list[Sized]:
        """Up to ``count`` compound steps that each double the base's predicted latency, spread over the grid.

        For every depth and width step of the grid, the resolution step that brings the predicted latency closest to
        2x; points whose closest is not within 10% of 2x are dropped, and so are points that scale to a network
        already found. The ones kept are spread from the most depth-heavy to the most width/resolution-heavy.
        """
        target = DOUBLING * self.base_predicted_ms * self.factor
        found: dict[Arch, Sized] = {}
        for depth in DEPTH_STEPS:
            for width in WIDTH_STEPS:
                point = self.resolution_step(depth, width, target)
                if point is not None and abs(point.predicted_today_ms / target - 1) <= DOUBLING_TOLERANCE:
                    found.setdefault(point.arch, point)
        points = sorted(found.values(), key=lambda point: point.scaling)
        if len(points) <= count:
            return points
        picked = np.linspace(0, len(points) - 1, count).round().astype(int)
        return [points[index] for index in dict.fromkeys(picked.tolist())]

    def resolution_step(self, depth: float, width: float, target_ms: float, factor: float | None = None) -> Sized:
        """With these depth and width steps, the resolution step (1-2x) whose predicted latency is closest to
        ``target_ms`` today; ``factor`` (default: the base's) as in :meth:`fit_budget`."""
        factor = self.factor if factor is None else factor
        best = self.sized(Scaling.of(depth, width))
        for resolution in np.arange(1.0, 2.005, 0.01):
            point = self.sized(Scaling.of(depth, width, float(resolution)))
            if abs(point.predicted_ms * factor - target_ms) < abs(best.predicted_ms * factor - target_ms):
                best = point
            if point.predicted_ms * factor > target_ms:
                break
        return best
