"""A search space as categorical decisions, a recipe as unit-interval coordinates.

Strategies that are not written for architectures (an RL policy, Sobol sequences, TPE, NSGA-II)
see the space as a fixed list of decisions: the resolution, then per stage its width, its depth
and one block choice for every slot up to the largest depth (slots past the chosen depth are
ignored). A fixed list keeps NSGA-II's crossover and the policy's logits aligned across
architectures of different depths. The recipe half of FBNetV3's joint space is 11 coordinates in
[0, 1), decoded into a :class:`~hwnas.recipe.Recipe` with the ranges that train at all in a short proxy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from hwnas.arch import Arch, Block, Stage
from hwnas.recipe import OPTIMIZERS, Recipe
from hwnas.space import SearchSpace


@dataclass(frozen=True)
class Decision:
    name: str
    choices: tuple[Any, ...]  # primitives (int or block string), so Optuna can store them


def decisions(space: SearchSpace) -> list[Decision]:
    """Every decision of ``space`` in a fixed order (see the module docstring)."""
    found = [Decision("resolution", tuple(space.resolutions))]
    for index, spec in enumerate(space.stages, start=1):
        found.append(Decision(f"s{index}.width", tuple(spec.widths)))
        found.append(Decision(f"s{index}.depth", tuple(spec.depths)))
        blocks = tuple(block.format() for block in spec.block_choices())
        found += [Decision(f"s{index}.b{slot}", blocks) for slot in range(1, max(spec.depths) + 1)]
    return found


def decode(space: SearchSpace, values: Mapping[str, Any]) -> Arch:
    """The architecture a full set of decision values describes."""
    stages = []
    for index in range(1, len(space.stages) + 1):
        depth = int(values[f"s{index}.depth"])
        blocks = tuple(Block.parse(str(values[f"s{index}.b{slot}"])) for slot in range(1, depth + 1))
        stages.append(Stage(int(values[f"s{index}.width"]), blocks))
    return space.validate(Arch(space.name, int(values["resolution"]), tuple(stages)))


def encode(space: SearchSpace, arch: Arch) -> dict[str, Any]:
    """Decision values of ``arch``; slots past a stage's depth are absent."""
    values: dict[str, Any] = {"resolution": arch.resolution}
    for index, stage in enumerate(space.validate(arch).stages, start=1):
        values[f"s{index}.width"] = stage.width
        values[f"s{index}.depth"] = stage.depth
        for slot, block in enumerate(stage.blocks, start=1):
            values[f"s{index}.b{slot}"] = block.format()
    return values


def decode_unit(space: SearchSpace, unit: Sequence[float]) -> Arch:
    """An architecture from one coordinate in [0, 1) per decision (Sobol points, GA genes)."""
    chosen = {d.name: _pick(d.choices, u) for d, u in zip(decisions(space), unit, strict=False)}
    return decode(space, chosen)


def arch_dimensions(space: SearchSpace) -> int:
    return len(decisions(space))


# ---- recipes ---------------------------------------------------------------------------------
RECIPE_DIMENSIONS = 11
_LR = {"sgd": (0.02, 0.5), "rmsprop": (1e-4, 1e-2), "adamw": (3e-4, 1e-2)}
_WD = {"sgd": (1e-6, 1e-3), "rmsprop": (1e-6, 1e-3), "adamw": (1e-4, 0.1)}


def decode_recipe(unit: Sequence[float], base: Recipe) -> Recipe:
    """A recipe from 11 coordinates in [0, 1); epochs come from ``base`` (the proxy decides them).

    Batch sizes are 32-128: with a few thousand proxy images, 256 leaves a dozen steps an epoch,
    which trains nothing (measured: half of such recipes stayed near chance after one epoch).
    """
    u = list(unit)
    optimizer = _pick(OPTIMIZERS, u[0])
    return replace(
        base,
        optimizer=optimizer,
        lr=round(_log_between(*_LR[optimizer], u[1]), 6),
        weight_decay=round(_log_between(*_WD[optimizer], u[2]), 8),
        batch_size=_pick((32, 64, 128), u[3]),
        warmup_epochs=round(0.3 * u[4], 3),
        label_smoothing=_pick((0.0, 0.1), u[5]),
        mixup=_pick((0.0, 0.0, 0.2), u[6]),
        dropout=round(0.3 * u[7], 3),
        drop_path=round(0.2 * u[8], 3),
        ema=_pick((0.0, 0.0, 0.9), u[9]),
        randaugment=_pick((0, 0, 5, 9), u[10]),
    )


def _pick(choices: Sequence[Any], u: float) -> Any:
    return choices[min(int(u * len(choices)), len(choices) - 1)]


def _log_between(low: float, high: float, u: float) -> float:
    return math.exp(math.log(low) + u * (math.log(high) - math.log(low)))


@dataclass(frozen=True)
class Candidate:
    """What a strategy proposes and the loop trains: an architecture and its training recipe."""

    arch: Arch
    recipe: Recipe

    @property
    def key(self) -> str:
        """Identity for de-duplication: the same pair is never trained twice in one search."""
        recipe = ",".join(f"{k}={v}" for k, v in sorted(self.recipe.to_json().items()))
        return f"{self.arch.format()}|{recipe}"

    def to_json(self) -> dict[str, Any]:
        return {"arch": self.arch.format(), "recipe": self.recipe.to_json()}

    @classmethod
    def from_json(cls, space: SearchSpace, data: Mapping[str, Any]) -> Candidate:
        return cls(space.parse(str(data["arch"])), Recipe.from_json(dict(data["recipe"])))
