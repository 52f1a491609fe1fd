"""``mnas``: an RL controller over the space's decisions, trained with REINFORCE (MnasNet, Tan et al. 2019).

The policy is factorized: one categorical distribution per decision (resolution, per stage width
and depth, one block per slot), as in the factorized hierarchical space of MnasNet, rather than
an RNN: with tens of samples, an RNN's extra parameters have nothing to learn from. Each finished
trial moves the logits of the decisions it used by ``lr x (reward - baseline) x grad log p``, the
baseline being an exponential moving average of rewards (decay 0.9), which cuts the gradient's
variance. Block slots past a stage's chosen depth were not used, so they get no gradient. The
reward is MnasNet's, on the device's predicted latency; candidates are not filtered by latency:
the reward alone steers the controller under the budget. A failed trial is rewarded 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hwnas.search.codec import Candidate, decisions, decode, encode
from hwnas.search.strategies.base import Outcome, Strategy, StrategyContext, register_strategy


@register_strategy
class MnasController(Strategy):
    name = "mnas"

    def __init__(self, context: StrategyContext, lr: float = 4.0, baseline_decay: float = 0.9) -> None:
        super().__init__(context)
        self.decisions = decisions(context.space)
        self.logits = {d.name: np.zeros(len(d.choices)) for d in self.decisions}
        self.lr = lr
        self.baseline_decay = baseline_decay
        self.baseline: float | None = None

    def probabilities(self, name: str) -> np.ndarray:
        logits = self.logits[name]
        weights = np.exp(logits - logits.max())
        return weights / weights.sum()

    def ask(self, trial: Any) -> Candidate:
        values = {}
        for decision in self.decisions:
            index = _draw(self.probabilities(decision.name), self.rng.random())
            values[decision.name] = decision.choices[index]
        return self.candidate(decode(self.space, values))

    def tell(self, candidate: Candidate, outcome: Outcome) -> None:
        reward = outcome.reward if outcome.ok and outcome.reward is not None else 0.0
        if self.baseline is None:
            self.baseline = reward
            return
        advantage = reward - self.baseline
        self.baseline = self.baseline_decay * self.baseline + (1 - self.baseline_decay) * reward
        used = encode(self.space, candidate.arch)
        for decision in self.decisions:
            if decision.name not in used:
                continue
            chosen = np.zeros(len(decision.choices))
            chosen[decision.choices.index(used[decision.name])] = 1.0
            self.logits[decision.name] += self.lr * advantage * (chosen - self.probabilities(decision.name))

    def report(self) -> dict[str, Any]:
        return {"baseline": self.baseline, "policy": self.policy()}

    def policy(self) -> dict[str, list[float]]:
        """The controller's current probabilities per decision (for reports)."""
        return {d.name: [round(p, 4) for p in self.probabilities(d.name)] for d in self.decisions}


def _draw(probabilities: np.ndarray, u: float) -> int:
    return int(min(np.searchsorted(np.cumsum(probabilities), u, side="right"), len(probabilities) - 1))
