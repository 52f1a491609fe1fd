"""AMC's search: the agent walks the prunable layers, the budget clips its actions, the pruned network is scored.

An episode: for each layer in forward order the agent sees AMC's state (index, type, input and
output channels, stride, kernel, input size, the layer's cost, the cost already cut, the cost of
the layers still to come, the previous action; costs in the budget's resource) and proposes a
preserve ratio. In resource-constrained mode the ratio is lowered, if needed, to the largest
count for which the budget is still reachable with every later layer at its fewest channels.
The whole policy is then applied through Torch-Pruning, the layer after each pruned one is
refitted by least squares (AMC), its BatchNorm statistics re-estimated on a few training images
(as EagleEye, ECCV 2020, does before judging a pruned network), and the pruned network is scored
on held-out images with no fine-tuning: reward ``-error`` (or AMC's accuracy-guaranteed
``-error * log(FLOPs)``). Without the last two steps every policy of a compact network scored
chance here (``benchmarks/results/prune_reconstruction.json``), and a flat reward teaches nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from hwnas.builder import recalibrate_batchnorm
from hwnas.pruning.budget import Resource
from hwnas.pruning.ddpg import DDPG
from hwnas.pruning.reconstruct import LayerFeatures, reconstruct
from hwnas.pruning.store import Episode, EpisodeStore
from hwnas.pruning.structure import Pruned, PruningGraph, apply_counts

REWARDS = ("error", "error-log-flops")
STATE_DIM = 11


@dataclass
class Evaluator:
    """Prune the base network to a policy and measure it on held-out images (cached: policies repeat)."""

    base: nn.Module
    graph: PruningGraph
    images: torch.Tensor
    labels: torch.Tensor
    features: dict[str, LayerFeatures] | None = None  # set: least-squares reconstruction is on
    calibration: torch.Tensor | None = None  # set: BatchNorm statistics are re-estimated on these training images
    reward_kind: str = "error"
    cache: dict[tuple[int, ...], tuple[float, int, int]] = field(default_factory=dict)

    def prune(self, counts: Sequence[int]) -> Pruned:
        pruned = apply_counts(self.base, self.graph, counts)
        if self.features is not None:
            reconstruct(pruned.module, self.features, pruned.kept_in, pruned.kept_out)
        if self.calibration is not None:
            recalibrate_batchnorm(pruned.module, self.calibration, batch=128)
        return pruned

    def score(self, counts: Sequence[int]) -> tuple[float, int, int]:
        """Held-out accuracy, FLOPs and parameters of the pruned network (no fine-tuning)."""
        key = tuple(counts)
        if key not in self.cache:
            module = self.prune(counts).module
            self.cache[key] = (accuracy(module, self.images, self.labels), self.graph.flops(counts), self.graph.params(counts))
        return self.cache[key]

    def reward(self, accuracy_: float, flops: int) -> float:
        error = 1.0 - accuracy_
        return -error * math.log(flops) if self.reward_kind == "error-log-flops" else -error


@torch.no_grad()
def accuracy(module: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 256) -> float:
    module.eval()
    correct = sum(
        int((module(images[i : i + batch]).argmax(1) == labels[i : i + batch]).sum()) for i in range(0, len(images), batch)
    )
    return correct / max(len(images), 1)


class Environment:
    """AMC's layer-by-layer walk with resource-constrained clipping."""

    def __init__(self, graph: PruningGraph, resource: Resource, target: float) -> None:
        self.graph, self.resource, self.target = graph, resource, target
        self.full = graph.full_counts
        self.least = graph.min_counts
        self.full_cost = resource.cost(self.full)
        self.layer_cost = [self.full_cost - resource.cost(self._with(self.full, i, self.least[i])) for i in range(len(self.full))]
        self.static = self._static_features()

    @staticmethod
    def _with(counts: Sequence[int], index: int, value: int) -> list[int]:
        changed = list(counts)
        changed[index] = value
        return changed

    def _static_features(self) -> torch.Tensor:
        kinds = {"conv": 1.0, "depthwise": 0.5, "linear": 0.0}
        rows = [
            [layer.index, kinds[layer.kind], layer.in_channels, layer.channels, layer.stride, layer.kernel, layer.in_size, cost]
            for layer, cost in zip(self.graph.layers, self.layer_cost, strict=True)
        ]
        table = torch.tensor(rows, dtype=torch.float32)
        return table / table.abs().amax(0).clamp_min(1e-12)

    def state(self, index: int, counts: Sequence[int], previous: float) -> torch.Tensor:
        decided = list(counts[:index]) + self.full[index:]
        reduced = (self.full_cost - self.resource.cost(decided)) / self.full_cost
        rest = sum(self.layer_cost[index + 1 :]) / self.full_cost
        return torch.cat([self.static[index], torch.tensor([reduced, rest, previous], dtype=torch.float32)])

    def clip(self, index: int, counts: Sequence[int], proposed: int) -> int:
        """The largest allowed count <= ``proposed`` that keeps the budget reachable (later layers at their fewest)."""
        prefix, rest = list(counts[:index]), self.least[index + 1 :]
        allowed = [c for c in self.graph.layers[index].choices if c <= proposed]
        if self.resource.cost([*prefix, allowed[-1], *rest]) <= self.target:
            return allowed[-1]
        low, high = 0, len(allowed) - 1  # allowed[low] fits (or is the fewest), allowed[high] does not
        while high - low > 1:  # cost rises with the count: bisect (a latency model pays per new width)
            middle = (low + high) // 2
            if self.resource.cost([*prefix, allowed[middle], *rest]) <= self.target:
                low = middle
            else:
                high = middle
        return allowed[low]

    def rollout(self, policy: Callable[[torch.Tensor], float]) -> tuple[list[float], list[int], torch.Tensor]:
        """One episode: ``policy(state) -> ratio`` for each layer; returns taken ratios, counts and states."""
        counts: list[int] = []
        ratios: list[float] = []
        states = []
        previous = 1.0
        for index, layer in enumerate(self.graph.layers):
            state = self.state(index, counts, previous)
            proposed = layer.count(policy(state))
            count = self.clip(index, counts, proposed)
            counts.append(count)
            previous = count / layer.channels
            ratios.append(previous)
            states.append(state)
        return ratios, counts, torch.stack(states)


@dataclass(frozen=True)
class SearchProgress:
    episode: int
    episodes: int
    last: Episode
    best: Episode
    budget_use: float  # the last policy's resource / target


def run_search(
    env: Environment,
    evaluator: Evaluator,
    agent: DDPG,
    store: EpisodeStore,
    search: str,
    episodes: int,
    seed: int,
    on_episode: Callable[[SearchProgress], None] | None = None,
) -> list[Episode]:
    """Run (or resume) ``episodes`` episodes; every finished one is stored with the agent before the next starts."""
    done = store.episodes(search)
    saved = store.agent(search)
    if saved is not None:
        agent.load_bytes(saved[1])
    for number in range(len(done), episodes):
        started = time.perf_counter()
        generator = torch.Generator().manual_seed(seed * 1_000_003 + number)
        ratios, counts, states = env.rollout(lambda s, n=number, g=generator: agent.act(s, n, g))
        acc, flops, params = evaluator.score(counts)
        reward = evaluator.reward(acc, flops)
        agent.observe(states, torch.tensor(ratios), reward, number)
        episode = Episode(
            number, ratios, counts, reward, acc, env.resource.cost(counts), flops, params, time.perf_counter() - started
        )
        store.add(search, episode, agent.to_bytes())
        done.append(episode)
        if on_episode is not None:
            best = max(done, key=lambda e: e.reward)
            on_episode(SearchProgress(number + 1, episodes, episode, best, episode.resource / env.target))
    return done


def best_episode(episodes: Sequence[Episode]) -> Episode:
    """The highest reward; ties go to the earliest episode."""
    return max(episodes, key=lambda e: (e.reward, -e.episode))
