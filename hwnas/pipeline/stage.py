"""What every stage of ``hwnas run`` is: a name, the stages it reads, a typed result, and ``run(context)``.

A stage returns its :class:`StageResult` (a frozen dataclass written to ``stages/<name>.json`` as JSON and
read back with its field types checked) or :class:`Skipped` with the reason, never a dict whose keys the
next stage has to guess. The run keeps each finished stage's value in its context, so a later stage asks
for ``context.result(TableResult)`` and gets a typed value back, whether the stage ran now or in an
earlier session of the same run folder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from hwnas import typedjson


@dataclass(frozen=True)
class StageResult:
    """Base of every stage's result. ``SCHEMA`` is the layout version written beside it in the record."""

    SCHEMA: ClassVar[int] = 1
    STAGE: ClassVar[str] = ""  # the name of the stage that returns it

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = typedjson.to_json(self)
        return data

    @classmethod
    def from_json(cls, data: Any, where: str = "result") -> StageResult:
        return typedjson.from_json(cls, data, where)


@dataclass(frozen=True)
class Skipped:
    """A stage that finished without a result of its own, and why (recorded: a resumed run does not try it again)."""

    reason: str


R = TypeVar("R", bound=StageResult)


@dataclass(frozen=True)
class Stage(Generic[R]):
    """One step of the pipeline: ``run`` reads the results of ``requires`` from the context and returns ``result_type``."""

    name: str
    requires: tuple[str, ...]
    result_type: type[R]
    run: Callable[[Any], R | Skipped]  # takes the RunContext (hwnas.pipeline.context imports this module, not back)
    # a stage added after run folders existed: such a folder, finished without its record, reads as skipped for this reason
    missing: str | None = None
