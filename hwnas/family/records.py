"""What ``hwnas scale`` keeps in ``OUT/family.json``: settings, each step's outcome, and the family it made.

Written after every step (atomically), so a killed run resumes where it stopped: the base's measurement that sizes
every network, the grid and the ratios it chose, the planned members, each trained network (its own run folder under
``OUT/networks/<scaling>/``) and the final measurements. A rerun with other settings in the same folder is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwnas import typedjson
from hwnas.fileio import atomic_write_json, read_json
from hwnas.formats import FORMATS
from hwnas.identity import check_identity
from hwnas.typedjson import checked

REPORT_FILE = "family.json"
ROLES = ("base", "grid", "compound", "depth", "width", "resolution")


@dataclass(frozen=True)
class Calibration:
    """The base network measured now against its prediction: the factor that puts predictions in today's frame."""

    base_measured_ms: float = field(metadata=checked("positive"))
    base_ci_ms: tuple[float, float]
    base_predicted_ms: float = field(metadata=checked("positive"))  # table time

    @property
    def factor(self) -> float:
        return self.base_measured_ms / self.base_predicted_ms


@dataclass(frozen=True)
class Planned:
    """One network of the family: why it is there (its role and budget) and how big it was made."""

    role: str
    scaling: str  # Scaling.tag
    arch: str
    predicted_ms: float  # table time
    predicted_today_ms: float
    budget_ms: float | None = None
    sized_ms: float | None = None  # a member measured while sizing it (seeded random weights, fewer rounds than at the end)
    doubling: float | None = None  # a grid point's latency over the base's while sizing it, timed in the same rounds


@dataclass(frozen=True)
class Trained:
    val_accuracy: float = field(metadata=checked("fraction"))
    test_accuracy: float | None
    flops: int
    params: int
    seconds: float


@dataclass(frozen=True)
class Measured:
    """The network's file timed on the device, in the same rounds as every other network of the family."""

    file: str
    median_ms: float = field(metadata=checked("positive"))
    ci_ms: tuple[float, float]
    verified: bool


@dataclass(frozen=True)
class FamilyReport:
    settings: dict[str, Any]
    calibration: Calibration | None = None
    grid: list[Planned] = field(default_factory=list)
    ratios: str | None = None  # the chosen compound step (a Scaling tag)
    members: list[Planned] = field(default_factory=list)
    trained: dict[str, Trained] = field(default_factory=dict)  # by scaling tag
    measured: dict[str, Measured] = field(default_factory=dict)
    plot: str | None = None

    def to_json(self) -> dict[str, Any]:
        return FORMATS["scale-family"].stamp(typedjson.to_json(self))

    @classmethod
    def from_json(cls, data: Any, where: str) -> FamilyReport:
        return typedjson.from_json(cls, FORMATS["scale-family"].strip(data, where), where)

    def save(self, out: Path) -> None:
        atomic_write_json(Path(out) / REPORT_FILE, self.to_json())

    @property
    def networks(self) -> list[Planned]:
        """Every network to train, once each (a grid point can also be a member), base first."""
        found: dict[str, Planned] = {}
        for planned in [*self.grid, *self.members]:
            found.setdefault(planned.scaling, planned)
        return list(found.values())


def read_report(path: Path) -> FamilyReport:
    return FamilyReport.from_json(read_json(Path(path), FORMATS["scale-family"].what), str(path))


def resumed(out: Path, settings: dict[str, Any]) -> FamilyReport:
    """The report in ``out`` when it was made with ``settings``; a new one when there is none; refused otherwise."""
    path = Path(out) / REPORT_FILE
    if not path.exists():
        return FamilyReport(settings)
    report = read_report(path)
    check_identity(report.settings, settings, f"{out} holds a family of other settings", "give another --out, or delete it")
    return report
