"""MnasNet's reward: ``ACC x (LAT / T) ^ w`` with ``w = alpha`` when LAT <= T and ``beta`` otherwise.

Tan et al. (2019): ``hard`` (alpha 0, beta -1) leaves accuracy alone under the budget and divides
by the overshoot above it; ``soft`` (alpha = beta = -0.07) trades about 5% of accuracy for half the
latency everywhere, so it also rewards going well under the budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hwnas.errors import UserError

PRESETS: dict[str, tuple[float, float]] = {"hard": (0.0, -1.0), "soft": (-0.07, -0.07)}


@dataclass(frozen=True)
class Reward:
    """The reward for one budget; ``name`` is the preset or ``alpha,beta`` as typed."""

    budget_ms: float
    alpha: float = 0.0
    beta: float = -1.0
    name: str = "hard"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.budget_ms) and self.budget_ms > 0):
            raise UserError(f"--budget-ms must be a positive number of milliseconds, got {self.budget_ms}")
        if not (math.isfinite(self.alpha) and math.isfinite(self.beta)):
            raise UserError(f"--reward exponents must be finite numbers <= 0, got {self.alpha},{self.beta}")
        if self.alpha > 0 or self.beta > 0:
            raise UserError(
                f"reward exponents must be <= 0 (a slower network must not score higher), got {self.alpha},{self.beta}"
            )

    def __call__(self, accuracy: float, latency_ms: float) -> float:
        ratio = latency_ms / self.budget_ms
        return accuracy * ratio ** (self.alpha if latency_ms <= self.budget_ms else self.beta)

    def to_json(self) -> dict[str, float | str]:
        return {"name": self.name, "alpha": self.alpha, "beta": self.beta, "budget_ms": self.budget_ms}


def parse_reward(text: str, budget_ms: float) -> Reward:
    """``hard``, ``soft`` or ``alpha,beta`` (e.g. ``-0.07,-0.5``)."""
    text = text.strip()
    if text in PRESETS:
        return Reward(budget_ms, *PRESETS[text], name=text)
    parts = text.split(",")
    try:
        alpha, beta = (float(part) for part in parts)
    except ValueError:
        raise UserError(f"--reward {text!r}: expected hard, soft or alpha,beta (two numbers, e.g. -0.07,-0.07)") from None
    return Reward(budget_ms, alpha, beta, name=f"{alpha:g},{beta:g}")
