"""``random`` and ``evolution`` (regularized evolution, Real et al. 2019)."""

from __future__ import annotations

from collections import deque
from typing import Any

from hwnas.search.codec import Candidate
from hwnas.search.strategies.base import Outcome, Strategy, StrategyContext, register_strategy


@register_strategy
class RandomSearch(Strategy):
    """Architectures drawn uniformly, kept if predicted within the budget; the base recipe."""

    name = "random"

    def ask(self, trial: Any) -> Candidate:
        return self.candidate(self.feasible_arch())


@register_strategy
class RegularizedEvolution(Strategy):
    """Tournament selection and aging: the oldest member dies, not the worst (Real et al. 2019).

    A population of the last ``population`` finished candidates; each ask samples ``sample_size``
    of them, mutates the one with the highest reward. Aging keeps the search from camping on an
    early lucky proxy score. Until the population is full, asks are random feasible architectures.
    """

    name = "evolution"

    def __init__(self, context: StrategyContext) -> None:
        super().__init__(context)
        self.population_size = max(4, min(50, context.trials // 4))
        self.sample_size = max(2, self.population_size // 3)
        self.population: deque[tuple[Candidate, float]] = deque()

    def ask(self, trial: Any) -> Candidate:
        if len(self.population) < self.population_size:
            return self.candidate(self.feasible_arch())
        contenders = self.rng.sample(list(self.population), self.sample_size)
        parent = max(contenders, key=lambda pair: pair[1])[0]
        return self.candidate(self.space.mutate(parent.arch, self.rng, rate=1 / max(4, len(parent.arch.blocks))), parent.recipe)

    def tell(self, candidate: Candidate, outcome: Outcome) -> None:
        if not outcome.ok or outcome.reward is None:
            return
        self.population.append((candidate, outcome.reward))
        if len(self.population) > self.population_size:
            self.population.popleft()
