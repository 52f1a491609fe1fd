"""``tpe`` and ``nsga2``: Optuna's own samplers over the same decisions, as the baselines a user would pick.

Both suggest every decision through the trial (block slots past the chosen depth included, and
ignored when decoded), so the parameter space is fixed, which NSGA-II's crossover needs.
``tpe`` maximizes the MnasNet reward (constant liar on, so parallel workers do not all ask the
same point). ``nsga2`` optimizes two objectives, accuracy up and predicted latency down, with
``predicted - budget <= 0`` as a constraint (``Trial.set_constraint``, Optuna 5), so it returns a
front and the loop picks the best feasible point of it.
"""

from __future__ import annotations

from typing import Any

from hwnas.search.codec import Candidate, decisions, decode
from hwnas.search.strategies.base import Outcome, Strategy, StrategyContext, register_strategy


class _OptunaStrategy(Strategy):
    def __init__(self, context: StrategyContext) -> None:
        super().__init__(context)
        self.decisions = decisions(context.space)

    def ask(self, trial: Any) -> Candidate:
        values = {d.name: trial.suggest_categorical(d.name, list(d.choices)) for d in self.decisions}
        return self.candidate(decode(self.space, values))


@register_strategy
class TpeSearch(_OptunaStrategy):
    name = "tpe"

    def sampler(self) -> Any:
        import optuna

        startup = max(4, min(10, self.context.trials // 4))
        return optuna.samplers.TPESampler(seed=self.context.seed, n_startup_trials=startup, constant_liar=True)


@register_strategy
class Nsga2Search(_OptunaStrategy):
    name = "nsga2"
    directions = ("maximize", "minimize")

    def __init__(self, context: StrategyContext) -> None:
        super().__init__(context)
        self.population_size = max(4, min(50, context.trials // 4))

    def sampler(self) -> Any:
        import optuna

        return optuna.samplers.NSGAIISampler(population_size=self.population_size, seed=self.context.seed)

    def values(self, candidate: Candidate, outcome: Outcome) -> list[float]:
        return [float(outcome.accuracy or 0.0), float(outcome.predicted_ms)]

    def constrain(self, trial: Any, outcome: Outcome) -> None:
        trial.set_constraint("latency", float(outcome.predicted_ms - self.context.budget_ms))
