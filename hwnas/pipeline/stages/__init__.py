"""The stages of ``hwnas run``, in order; each module holds one stage, its typed result and its helpers.

::

    device -> table -> predictor -> search -> train -> prune -> export -> references -> family

Each stage is a :class:`~hwnas.pipeline.stage.Stage`: a name, the stages whose results it reads, its result
type (a frozen dataclass, see each module), and ``run(context)``.
"""

from hwnas.pipeline.stage import Stage
from hwnas.pipeline.stages import device, export, family, predictor, prune, references, search, table, train

STAGES: tuple[Stage, ...] = (
    device.STAGE,
    table.STAGE,
    predictor.STAGE,
    search.STAGE,
    train.STAGE,
    prune.STAGE,
    export.STAGE,
    references.STAGE,
    family.STAGE,
)
STAGE_NAMES = tuple(stage.name for stage in STAGES)

__all__ = ["STAGES", "STAGE_NAMES"]
