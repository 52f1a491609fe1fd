"""The DDPG agent of AMC (He et al., ECCV 2018): one continuous action per layer, its preserve ratio.

As in AMC's code: actor and critic are two-hidden-layer MLPs (300 units); the actor's sigmoid
output is squeezed into ``[low, high]``; the first ``warmup`` episodes act uniformly at random;
then actions carry truncated-normal noise whose width ``sigma`` decays by ``decay`` every episode;
every transition of an episode is given the episode's final reward, minus a moving average of
rewards (the baseline cuts the variance of the critic's targets); discount 1; soft target updates.

Everything random draws from a generator seeded by (seed, episode), and :meth:`DDPG.state_dict`
holds all of the agent (weights, optimisers, replay buffer, baseline), so a search that stores it
with each finished episode resumes exactly where it stopped.
"""

from __future__ import annotations

import copy
import io
from dataclasses import dataclass

import torch
from torch import nn

from hwnas.fileio import check_archive

HIDDEN = 300


@dataclass(frozen=True)
class AgentConfig:
    low: float = 0.2
    high: float = 1.0
    warmup: int = 20
    sigma: float = 0.5
    decay: float = 0.95
    lr_actor: float = 1e-4
    lr_critic: float = 1e-3
    tau: float = 0.01
    batch: int = 64
    buffer: int = 2000
    baseline_alpha: float = 0.5
    discount: float = 1.0


def _mlp(inputs: int, output: nn.Module | None) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(inputs, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 1)]
    return nn.Sequential(*layers, *([output] if output is not None else []))


class DDPG:
    def __init__(self, state_dim: int, config: AgentConfig, seed: int) -> None:
        self.config, self.seed = config, seed
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.actor = _mlp(state_dim, nn.Sigmoid())
            self.critic = _mlp(state_dim + 1, None)
        self.actor_target, self.critic_target = copy.deepcopy(self.actor), copy.deepcopy(self.critic)
        self.actor_optim = torch.optim.Adam(self.actor.parameters(), lr=config.lr_actor)
        self.critic_optim = torch.optim.Adam(self.critic.parameters(), lr=config.lr_critic)
        self.states = torch.zeros(0, state_dim)
        self.actions = torch.zeros(0, 1)
        self.rewards = torch.zeros(0, 1)
        self.next_states = torch.zeros(0, state_dim)
        self.done = torch.zeros(0, 1)
        self.baseline: float | None = None

    # ---- acting ---------------------------------------------------------------------------------
    def sigma(self, episode: int) -> float:
        return self.config.sigma * self.config.decay ** max(0, episode - self.config.warmup)

    def act(self, state: torch.Tensor, episode: int, generator: torch.Generator, explore: bool = True) -> float:
        """A preserve ratio in ``[low, high]`` for ``state`` (random during warm-up, noisy while exploring)."""
        low, high = self.config.low, self.config.high
        if explore and episode < self.config.warmup:
            return float(low + (high - low) * torch.rand((), generator=generator))
        with torch.no_grad():
            mean = low + (high - low) * float(self.actor(state.unsqueeze(0)))
        if not explore:
            return mean
        return truncated_normal(mean, self.sigma(episode), low, high, generator)

    # ---- learning -------------------------------------------------------------------------------
    def observe(self, states: torch.Tensor, actions: torch.Tensor, reward: float, episode: int) -> None:
        """Store an episode's transitions (all rewarded with the final reward); train after the warm-up."""
        count = len(states)
        low, high = self.config.low, self.config.high
        scaled = ((actions.view(-1, 1) - low) / (high - low)).clamp(0, 1)  # the actor's own [0, 1] scale
        next_states = torch.cat([states[1:], states[-1:]])
        done = torch.zeros(count, 1)
        done[-1] = 1.0
        self._push(states, scaled, torch.full((count, 1), reward), next_states, done)
        self.baseline = reward if self.baseline is None else self.baseline + self.config.baseline_alpha * (reward - self.baseline)
        if episode >= self.config.warmup:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + episode + 7)
            for _ in range(count):
                self._update(generator)

    def _push(self, *tensors: torch.Tensor) -> None:
        names = ("states", "actions", "rewards", "next_states", "done")
        for name, tensor in zip(names, tensors, strict=True):
            setattr(self, name, torch.cat([getattr(self, name), tensor])[-self.config.buffer :])

    def _update(self, generator: torch.Generator) -> None:
        size = len(self.states)
        pick = torch.randint(0, size, (min(self.config.batch, size),), generator=generator)
        s, a, r, s2, d = (t[pick] for t in (self.states, self.actions, self.rewards, self.next_states, self.done))
        r = r - (self.baseline or 0.0)
        with torch.no_grad():
            target = r + self.config.discount * (1 - d) * self.critic_target(torch.cat([s2, self.actor_target(s2)], 1))
        critic_loss = nn.functional.mse_loss(self.critic(torch.cat([s, a], 1)), target)
        self.critic_optim.zero_grad()
        critic_loss.backward()
        self.critic_optim.step()
        actor_loss = -self.critic(torch.cat([s, self.actor(s)], 1)).mean()
        self.actor_optim.zero_grad()
        actor_loss.backward()
        self.actor_optim.step()
        for net, target_net in ((self.actor, self.actor_target), (self.critic, self.critic_target)):
            with torch.no_grad():
                for p, tp in zip(net.parameters(), target_net.parameters(), strict=True):
                    tp.mul_(1 - self.config.tau).add_(self.config.tau * p)

    # ---- persistence ----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "actor_target": self.actor_target.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "actor_optim": self.actor_optim.state_dict(),
            "critic_optim": self.critic_optim.state_dict(),
            "buffer": [self.states, self.actions, self.rewards, self.next_states, self.done],
            "baseline": torch.tensor(float("nan") if self.baseline is None else self.baseline, dtype=torch.float64),
        }

    def load_state_dict(self, state: dict) -> None:
        for name in ("actor", "critic", "actor_target", "critic_target", "actor_optim", "critic_optim"):
            getattr(self, name).load_state_dict(state[name])
        self.states, self.actions, self.rewards, self.next_states, self.done = state["buffer"]
        baseline = float(state["baseline"])
        self.baseline = None if baseline != baseline else baseline

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        torch.save(self.state_dict(), buffer)
        return buffer.getvalue()

    def load_bytes(self, data: bytes) -> None:
        check_archive(data, "stored agent")
        self.load_state_dict(torch.load(io.BytesIO(data), weights_only=True))


def truncated_normal(mean: float, sigma: float, low: float, high: float, generator: torch.Generator) -> float:
    """A normal draw around ``mean`` truncated to ``[low, high]`` (redrawn, not clipped, so no mass piles on a bound)."""
    if sigma <= 0:
        return min(max(mean, low), high)
    tensor = torch.empty(())
    nn.init.trunc_normal_(tensor, mean=min(max(mean, low), high), std=sigma, a=low, b=high, generator=generator)
    return float(tensor)
