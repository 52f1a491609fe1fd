"""What every stage of ``hwnas run`` is given: the settings, the run folder and its records, the space, the log,
the cores, and the typed results of the stages before it.

This module imports no stage: stages import it. That is what keeps the pipeline free of import circles
(the stages once imported each other to reach a helper; now the helpers they share live here).
"""

from __future__ import annotations

import os
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from hwnas.devices.measurement import other_runnable
from hwnas.pipeline.config import RunConfig
from hwnas.pipeline.records import Records
from hwnas.pipeline.stage import Skipped, StageResult
from hwnas.runfolder import inside_folder, relative_to_folder
from hwnas.space import SearchSpace

if TYPE_CHECKING:
    from hwnas.data import ImageSplits

Log = Callable[[str], None]
R = TypeVar("R", bound=StageResult)

DEFAULT_DEVICE = "host-tflite"
FALLBACK_DEVICE = "host-ort"  # ONNX Runtime on this CPU: where TFLite is not installed, and where ONNX files are timed


@dataclass
class RunContext:
    """One run of the pipeline: its settings, folder, records, and each finished stage's value (by stage name)."""

    config: RunConfig
    folder: Path
    records: Records
    space: SearchSpace
    log: Log
    progress: bool
    values: dict[str, StageResult | Skipped] = field(default_factory=dict)
    made_from: SearchSpace | None = None  # the space asked for, when ``space`` is it made for the data's images

    def result(self, kind: type[R]) -> R:
        """The result of the stage that returns ``kind``; that stage must have run and not been skipped."""
        value = self.outcome(kind)
        if isinstance(value, Skipped):
            raise RuntimeError(f"stage {kind.__name__} was skipped ({value.reason}); its result is not there")
        return value

    def outcome(self, kind: type[R]) -> R | Skipped:
        """The result of the stage that returns ``kind`` (its ``STAGE``), or that stage's :class:`Skipped` value."""
        value = self.values.get(kind.STAGE)
        if value is None:
            raise RuntimeError(f"stage {kind.STAGE!r} has not run yet")
        if not isinstance(value, kind | Skipped):
            raise TypeError(f"stage {kind.STAGE!r} returned {type(value).__name__}, not {kind.__name__}")
        return typing.cast(R | Skipped, value)

    def stored(self, path: Path | str) -> str:
        """``path`` (inside the run folder) as a record keeps it: relative to the folder, so a moved folder still finds it."""
        return relative_to_folder(self.folder, path)

    def inside(self, stored: str, where: str) -> Path:
        """A path a record holds, resolved inside the run folder (one line naming ``where`` if it leads out of it)."""
        return inside_folder(self.folder, stored, where)

    @property
    def data_source(self) -> str | None:
        """The ``--data`` argument as the loaders take it (``None``: the embedded images)."""
        return None if self.config.data == "embedded" else self.config.data

    def training_data(self) -> ImageSplits:
        """The run's images, the training split cut to ``train.train_images`` when set (the winner's and references')."""
        from hwnas.data import load_data

        data = load_data(self.data_source)
        if self.config.train.train_images:
            data = data.head(self.config.train.train_images, len(data.val))
        return data


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0))


def free_cores(samples: int = 5, interval_s: float = 0.1) -> dict[str, int]:
    """The cores this process may use, less those other processes keep busy right now (``/proc/loadavg``'s runnable count).

    Torch's threads wait for each other at every operation: two threads on two cores of which another process holds
    one ran an epoch ~6x slower than one thread here. So training uses only the cores nobody else is running on.
    """
    total = cores()
    others = other_runnable(samples, interval_s)
    if others is None:
        return {"cores": total, "busy": 0, "free": total}
    busy = min(total - 1, others)
    return {"cores": total, "busy": busy, "free": total - busy}
