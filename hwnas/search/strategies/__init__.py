"""Search strategies, registered by name. They only decide: ``ask(trial) -> Candidate`` and
``tell(candidate, outcome)``; training, budgets, storage and executors belong to the loop."""

from hwnas.search.strategies.base import STRATEGIES, Outcome, Strategy, StrategyContext, make_strategy

__all__ = ["STRATEGIES", "Outcome", "Strategy", "StrategyContext", "make_strategy"]
