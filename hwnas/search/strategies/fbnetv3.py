"""``fbnetv3``: joint architecture + recipe search (Dai et al., FBNetV3, 2021), in two stages.

Stage 1, constrained iterative optimization. A pool of (architecture, recipe) pairs is drawn with
scipy's scrambled Sobol sequence (space-filling, unlike independent draws) and filtered by the
constraints: predicted latency within the budget, and optional FLOPs and parameter caps. Rounds
then train a batch each: round 1 the first pool points (Sobol order is already spread out), later
rounds the untrained pool points with the best predicted reward, the FBNetV3 accuracy predictor
(:class:`~hwnas.predictors.accuracy.AccuracyPredictor`, its encoder pre-trained once on FLOPs and
parameters) refitted on everything trained so far. Round 1 also fixes the early-stopping rule:
the fewest epochs whose accuracy ranks round 1's candidates like the full proxy does (Kendall
tau >= ``tau``); later candidates train that many epochs. With a one-epoch proxy there is nothing
shorter and the rule is one epoch.

Stage 2, predictor-based evolution. An adaptive genetic algorithm over the same genes starts from
the ``p`` best trained pairs plus ``q`` random pool points; each generation crosses and mutates,
drops what breaks a constraint, and keeps the best by predicted reward. The mutation rate doubles
when a generation brings nothing and halves when it does; the search stops when the best
predicted score gains less than ``epsilon`` twice in a row. Its top untrained pairs are what the
remaining trials train, so every number the result reports was measured, not predicted.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy.stats import kendalltau, qmc

from hwnas.builder import arch_cost
from hwnas.search.codec import RECIPE_DIMENSIONS, Candidate, arch_dimensions, decode_recipe, decode_unit
from hwnas.search.strategies.base import Outcome, Strategy, StrategyContext, register_strategy

# a smaller pre-training than the predictor's default (4000 x 40): it is refitted every round, and on
# this proxy pre-training did not improve ranking (README: Kendall tau 0.27 with, 0.32 without)
PREDICTOR = {"pretrain_samples": 512, "pretrain_epochs": 20, "head_epochs": 100, "finetune_epochs": 100}


@dataclass
class _Point:
    genes: np.ndarray
    candidate: Candidate
    predicted_ms: float


@register_strategy
class FBNetV3Search(Strategy):
    name = "fbnetv3"

    def __init__(
        self,
        context: StrategyContext,
        pool_size: int = 1024,
        stage1_share: float = 0.7,
        rounds: int = 3,
        tau: float = 0.8,
        p: int = 8,
        q: int = 8,
        epsilon: float = 1e-4,
        generations: int = 40,
        children: int = 64,
        max_mflops: float | None = None,
        max_mparams: float | None = None,
    ) -> None:
        super().__init__(context)
        self.arch_dims = arch_dimensions(self.space)
        self.tau, self.p, self.q, self.epsilon = tau, p, q, epsilon
        self.generations, self.children = generations, children
        self.max_mflops, self.max_mparams = max_mflops, max_mparams
        self.stage1_trials = max(2, min(context.trials, round(stage1_share * context.trials)))
        self.round_size = max(2, math.ceil(self.stage1_trials / rounds))
        self.pool = self._pool(pool_size)
        self.asked: set[str] = set()
        self.genes: dict[str, list[float]] = {}
        self.trained: list[tuple[_Point, Outcome]] = []
        self.curves: list[tuple[float, ...]] = []
        self.queue: deque[_Point] = deque()
        self.rounds_planned = 0
        self.stop_epochs: int | None = None
        self.tau_report: dict[str, Any] = {}
        self._pretrained: Any = None
        self.stage2_report: list[dict[str, Any]] = []

    # ---- stage 1: the constrained Sobol pool -----------------------------------------------
    def _pool(self, size: int) -> list[_Point]:
        sobol = qmc.Sobol(d=self.arch_dims + RECIPE_DIMENSIONS, scramble=True, seed=self.context.seed)
        genes = sobol.random(2 ** math.ceil(math.log2(max(size, 2))))
        points = self._decode(genes)
        self.pool_drawn = len(genes)
        return points

    def _decode(self, genes: np.ndarray) -> list[_Point]:
        """Genes -> feasible points (the constraints drop the rest)."""
        archs = [decode_unit(self.space, row[: self.arch_dims]) for row in genes]
        latency = self.context.predict_ms(archs)
        points = []
        for row, arch, ms in zip(genes, archs, latency, strict=True):
            if ms > self.context.budget_ms or not self._within_caps(arch):
                continue
            recipe = decode_recipe(row[self.arch_dims :], self.context.base_recipe)
            points.append(_Point(row, Candidate(arch, recipe), float(ms)))
        return points

    def _within_caps(self, arch: Any) -> bool:
        if self.max_mflops is None and self.max_mparams is None:
            return True
        cost = arch_cost(self.space, arch)
        return (self.max_mflops is None or cost.flops / 1e6 <= self.max_mflops) and (
            self.max_mparams is None or cost.params / 1e6 <= self.max_mparams
        )

    # ---- ask / tell --------------------------------------------------------------------------
    def ask(self, trial: Any) -> Candidate:
        while not self.queue:
            self._plan()
        point = self.queue.popleft()
        self.asked.add(point.candidate.key)
        candidate = point.candidate
        if self.stop_epochs is not None and self.stop_epochs < candidate.recipe.epochs:
            candidate = Candidate(candidate.arch, replace(candidate.recipe, epochs=self.stop_epochs))
        self.genes[candidate.key] = [float(g) for g in point.genes]
        return candidate

    def info(self, candidate: Candidate) -> dict[str, Any]:
        """Stored with the trial: the genes, so a resumed search can cross over the pairs trained before."""
        return {"genes": self.genes.get(candidate.key, [])}

    def tell(self, candidate: Candidate, outcome: Outcome) -> None:
        genes = np.asarray(outcome.info.get("genes") or self.genes.get(candidate.key) or [], dtype=np.float64)
        self.asked.add(self._key(candidate))
        if outcome.ok and len(genes) == self.arch_dims + RECIPE_DIMENSIONS:
            self.trained.append((_Point(genes, candidate, outcome.predicted_ms), outcome))
        if self.stop_epochs is None and len(self.trained) >= self.round_size:
            self._fix_stopping_rule()

    def _key(self, candidate: Candidate) -> str:
        """Pool identity: the pair at the pool's proxy epochs (the rule may have shortened the trained one)."""
        return Candidate(candidate.arch, replace(candidate.recipe, epochs=self.context.base_recipe.epochs)).key

    # ---- planning ----------------------------------------------------------------------------
    def _plan(self) -> None:
        if len(self.asked) < self.stage1_trials and self.rounds_planned == 0:
            batch = [point for point in self.pool if point.candidate.key not in self.asked][: self.round_size]
        elif len(self.asked) < self.stage1_trials:
            batch = self._best_untrained(self.pool, self.round_size)
        else:
            batch = self._stage2()
        self.rounds_planned += 1
        if not batch:  # the pool is exhausted: fall back to random feasible pairs
            batch = self._decode(
                np.array([[self.rng.random() for _ in range(self.arch_dims + RECIPE_DIMENSIONS)] for _ in range(64)])
            )
            batch = [point for point in batch if point.candidate.key not in self.asked][:1]
        if not batch:
            batch = [_Point(np.zeros(0), self.candidate(self.feasible_arch()), 0.0)]
        self.queue.extend(batch)

    def _predictor(self) -> Any:
        """The accuracy predictor refitted on every trained pair (encoder pre-trained once, then copied).

        Fitted on one thread: the workers training candidates have the cores, and these MLPs are tiny.
        """
        import torch

        from hwnas.predictors.accuracy import AccuracyPredictor

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            if self._pretrained is None:
                self._pretrained = AccuracyPredictor(self.space, seed=self.context.seed, **PREDICTOR).pretrain().net_
            done = [(point, outcome) for point, outcome in self.trained if outcome.accuracy is not None]
            if len(done) < 2 or len({outcome.accuracy for _, outcome in done}) < 2:
                return None
            predictor = AccuracyPredictor(self.space, seed=self.context.seed, **PREDICTOR)
            predictor.net_ = copy.deepcopy(self._pretrained)
            return predictor.fit(
                [p.candidate.arch for p, _ in done], [p.candidate.recipe for p, _ in done], [o.accuracy for _, o in done]
            )
        finally:
            torch.set_num_threads(threads)

    def _scores(self, predictor: Any, points: list[_Point]) -> np.ndarray:
        if not points:
            return np.zeros(0)
        recipes = [self._trained_recipe(point.candidate) for point in points]
        accuracy = predictor.predict([point.candidate.arch for point in points], recipes)
        return np.array([self.context.reward(acc, point.predicted_ms) for acc, point in zip(accuracy, points, strict=True)])

    def _trained_recipe(self, candidate: Candidate) -> Any:
        epochs = self.stop_epochs or candidate.recipe.epochs
        return replace(candidate.recipe, epochs=min(epochs, candidate.recipe.epochs))

    def _best_untrained(self, points: list[_Point], count: int) -> list[_Point]:
        untrained = [point for point in points if point.candidate.key not in self.asked]
        predictor = self._predictor()
        if predictor is None:
            return untrained[:count]
        order = np.argsort(-self._scores(predictor, untrained), kind="stable")
        return [untrained[i] for i in order[:count]]

    def _fix_stopping_rule(self) -> None:
        """Round 1: the fewest epochs whose validation accuracies rank the candidates as the full proxy does."""
        curves = [o.curve for _, o in self.trained if getattr(o, "curve", None)]
        full = self.context.base_recipe.epochs
        self.stop_epochs = full
        self.tau_report = {"epochs": full, "candidates": len(curves), "threshold": self.tau, "tau_by_epoch": {}}
        usable = [curve for curve in curves if len(curve) == full]
        if full < 2 or len(usable) < 3:
            return
        final = [curve[-1] for curve in usable]
        for epoch in range(1, full):
            tau = kendalltau([curve[epoch - 1] for curve in usable], final).statistic
            self.tau_report["tau_by_epoch"][epoch] = None if math.isnan(tau) else round(float(tau), 4)
            if not math.isnan(tau) and tau >= self.tau:
                self.stop_epochs = epoch
                break
        self.tau_report["epochs"] = self.stop_epochs

    # ---- stage 2: adaptive GA on the predictor ---------------------------------------------
    def _stage2(self) -> list[_Point]:
        predictor = self._predictor()
        if predictor is None:
            return self._best_untrained(self.pool, 1)
        best_trained = sorted(self.trained, key=lambda pair: -(pair[1].reward or 0.0))[: self.p]
        untried = [point for point in self.pool if point.candidate.key not in self.asked]
        randoms = [untried[i] for i in self.rng.sample(range(len(untried)), min(self.q, len(untried)))]
        population = [point for point, _ in best_trained] + randoms
        scores = self._scores(predictor, population)
        mutation, best, stalls, offspring = 0.1, float(scores.max()), 0, []
        history = [best]
        for _ in range(self.generations):
            children = self._children(population, scores, mutation)
            offspring += children
            merged = population + children
            merged_scores = np.concatenate([scores, self._scores(predictor, children)])
            order = np.argsort(-merged_scores, kind="stable")[: len(population)]
            population, scores = [merged[i] for i in order], merged_scores[order]
            gain, best = float(scores.max()) - best, float(scores.max())
            history.append(best)
            mutation = min(0.5, mutation * 2) if gain <= 0 else max(0.05, mutation / 2)
            stalls = stalls + 1 if gain < self.epsilon else 0
            if stalls >= 2:
                break
        self.stage2_report.append({"generations": len(history) - 1, "best_predicted_score": history, "final_mutation": mutation})
        everything = population + offspring
        every_score = np.concatenate([scores, self._scores(predictor, offspring)])
        seen: set[str] = set()
        chosen = []
        for index in np.argsort(-every_score, kind="stable"):
            point = everything[index]
            if point.candidate.key in self.asked or point.candidate.key in seen:
                continue
            seen.add(point.candidate.key)
            chosen.append(point)
            if len(chosen) >= max(1, self.context.trials - len(self.asked)):
                break
        return chosen[: max(1, min(len(chosen), self.round_size))]

    def _children(self, population: list[_Point], scores: np.ndarray, mutation: float) -> list[_Point]:
        genes = []
        for _ in range(self.children):
            first, second = (self._tournament(population, scores) for _ in range(2))
            mask = np.array([self.rng.random() < 0.5 for _ in range(len(first.genes))])
            child = np.where(mask, first.genes, second.genes)
            resample = np.array([self.rng.random() < mutation for _ in range(len(child))])
            child = np.where(resample, np.array([self.rng.random() for _ in range(len(child))]), child)
            genes.append(child)
        return self._decode(np.array(genes)) if genes else []

    def _tournament(self, population: list[_Point], scores: np.ndarray) -> _Point:
        picks = [self.rng.randrange(len(population)) for _ in range(2)]
        return population[max(picks, key=lambda i: scores[i])]

    def report(self) -> dict[str, Any]:
        return {
            "pool_drawn": self.pool_drawn,
            "pool_feasible": len(self.pool),
            "stage1_trials": self.stage1_trials,
            "round_size": self.round_size,
            "early_stopping": self.tau_report,
            "stage2": self.stage2_report,
        }
