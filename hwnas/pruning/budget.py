"""Budgets (``flops=0.5``, ``params=0.5``, ``latency-ms=T``) and the resource models they are checked with.

A resource model maps a policy (kept channels per prunable layer) to a number without building
the network: FLOPs and parameters exactly (:class:`~hwnas.pruning.structure.PruningGraph`),
latency as the device's prediction for the pruned layers. The agent clips every action against
it, and the baselines are sized with the same model, so all of them meet the same budget.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hwnas.errors import BudgetUnreachable, UserError

KINDS = ("flops", "params", "latency-ms")


@dataclass(frozen=True)
class Budget:
    kind: str
    value: float

    @classmethod
    def parse(cls, text: str) -> Budget:
        kind, sep, number = text.partition("=")
        kind = kind.strip().lower()
        if not sep or kind not in KINDS:
            raise UserError(f"budget {text!r}: expected flops=RATIO, params=RATIO or latency-ms=MS (e.g. flops=0.5)")
        try:
            value = float(number)
        except ValueError:
            raise UserError(f"budget {text!r}: {number.strip()!r} is not a number") from None
        if not value > 0 or value != value or value == float("inf"):
            raise UserError(f"budget {text!r}: the value must be a positive number")
        if kind != "latency-ms" and value > 1:
            raise UserError(f"budget {text!r}: a {kind} budget is a ratio of the unpruned model's, in (0, 1]")
        return cls(kind, value)

    @property
    def is_ratio(self) -> bool:
        return self.kind != "latency-ms"

    def target(self, full: float) -> float:
        """The budget in the resource model's units (a ratio of the unpruned model's, or milliseconds)."""
        return self.value * full if self.is_ratio else self.value

    def describe(self) -> str:
        return f"{self.kind}={self.value:g}"

    def scaled(self, factor: float) -> Budget:
        return Budget(self.kind, self.value * factor)


@dataclass
class Resource:
    """A named cost over kept-channel counts (``cost(counts) -> float``), in ``unit``."""

    name: str
    unit: str
    cost: Callable[[Sequence[int]], float]
    note: str = ""


def check_reachable(budget: Budget, resource: Resource, full: Sequence[int], smallest: Sequence[int]) -> tuple[float, float]:
    """``(target, smallest reachable)`` in resource units; a budget below what pruning reaches is one line."""
    full_cost, least = resource.cost(full), resource.cost(smallest)
    target = budget.target(full_cost)
    if target < least:
        reachable = f"{budget.kind}={least / full_cost:.3f}" if budget.is_ratio else f"latency-ms={least:.4f}"
        raise BudgetUnreachable(
            f"budget {budget.describe()} is below what pruning can reach: the smallest is {reachable} "
            f"(every layer at its fewest channels{', ' + resource.note if resource.note else ''})"
        )
    return target, least
