"""The strategy contract (ask / tell, as Optuna's) and what every strategy is given.

A strategy sees the search space, the base (proxy) recipe, the reward, the device's latency
predictor and the number of trials it will get. ``ask`` receives the Optuna trial the loop has
opened, so Optuna's own samplers (TPE, NSGA-II) suggest through it; the others ignore it and the
study samples nothing for them. ``tell`` gets every finished trial, including failed ones, in the
order they finished; on resume the loop replays the stored trials through ``tell`` in the same
order, so a strategy's state is rebuilt from storage rather than saved separately.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from hwnas.arch import Arch
from hwnas.errors import UserError
from hwnas.recipe import Recipe
from hwnas.registry import Registry
from hwnas.search.codec import Candidate
from hwnas.search.reward import Reward
from hwnas.space import SearchSpace

_MODULES = ("simple", "mnas", "fbnetv3", "optuna_samplers")
STRATEGIES: Registry[type[Strategy]] = Registry("search strategy", modules=[f"hwnas.search.strategies.{m}" for m in _MODULES])

FEASIBLE_TRIES = 64


@dataclass
class StrategyContext:
    space: SearchSpace
    base_recipe: Recipe
    reward: Reward
    predict_ms: Callable[[Sequence[Arch]], np.ndarray]
    trials: int
    seed: int = 0
    budget_ms: float = 0.0  # the budget strategies aim under (the user's, less the kept margin)

    def predicted(self, arch: Arch) -> float:
        return float(self.predict_ms([arch])[0])


@dataclass(frozen=True)
class Outcome:
    """A finished trial as a strategy sees it (``accuracy`` and ``reward`` are None when it failed)."""

    state: str
    predicted_ms: float
    accuracy: float | None = None
    reward: float | None = None
    curve: tuple[float, ...] = ()  # validation accuracy after each epoch (BatchNorm as trained)
    info: dict[str, Any] = field(default_factory=dict)  # what the strategy stored with the trial

    @property
    def ok(self) -> bool:
        return self.state == "complete" and self.accuracy is not None


class Strategy:
    name: ClassVar[str]
    directions: ClassVar[tuple[str, ...]] = ("maximize",)  # the Optuna study's: the reward

    def __init__(self, context: StrategyContext) -> None:
        self.context = context
        self.space = context.space
        self.rng = random.Random(context.seed)

    # ---- what the loop calls -------------------------------------------------------------
    def sampler(self) -> Any:
        """The Optuna sampler of the study; ours ask for nothing through it."""
        import optuna

        return optuna.samplers.RandomSampler(seed=self.context.seed)

    def ask(self, trial: Any) -> Candidate:
        raise NotImplementedError

    def tell(self, candidate: Candidate, outcome: Outcome) -> None:
        return None

    def info(self, candidate: Candidate) -> dict[str, Any]:
        """JSON the loop stores with the trial and hands back in ``Outcome.info`` (also on resume)."""
        return {}

    def report(self) -> dict[str, Any]:
        """What the strategy wants kept in the search's summary."""
        return {}

    def values(self, candidate: Candidate, outcome: Outcome) -> list[float]:
        """What the study records for a completed trial (its objective values)."""
        return [float(outcome.reward if outcome.reward is not None else 0.0)]

    def constrain(self, trial: Any, outcome: Outcome) -> None:
        """Record constraints on the trial before it is told (NSGA-II reads them)."""
        return None

    def reseed(self, salt: int) -> None:
        """After a resume: a fresh stream of random asks, so asks already made are not repeated."""
        self.rng = random.Random(f"{self.context.seed}-{salt}")

    # ---- helpers -------------------------------------------------------------------------
    def feasible_arch(self, rng: random.Random | None = None) -> Arch:
        """A random architecture predicted within the budget (the fastest of the tries if none is)."""
        rng = rng or self.rng
        archs = [self.space.sample(rng) for _ in range(FEASIBLE_TRIES)]
        latency = self.context.predict_ms(archs)
        feasible = [arch for arch, ms in zip(archs, latency, strict=True) if ms <= self.context.budget_ms]
        return feasible[0] if feasible else archs[int(np.argmin(latency))]

    def candidate(self, arch: Arch, recipe: Recipe | None = None) -> Candidate:
        return Candidate(arch, recipe or self.context.base_recipe)


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    STRATEGIES.register(cls.name, cls)
    return cls


def make_strategy(name: str, context: StrategyContext) -> Strategy:
    if context.trials < 1:
        raise UserError(f"--trials must be >= 1, got {context.trials}")
    return STRATEGIES.get(name)(context)
