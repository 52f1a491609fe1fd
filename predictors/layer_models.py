"""Op-level latency models: the latency of a layer no table measured, from the layers a device did.

A table answers exactly for its own layers. A pruned block (40 -> 27 channels), a torchvision
network or any layer outside the profiled space needs a model. Following nn-Meter, there is one
regressor per layer type, fitted on a device's measured layers (the table's entries, best with
``hwnas profile --layers N`` sampled layers among them):

1. a *cost model*: latency as a non-negative weighted sum of the layer's costs (multiply-adds of
   the expansion, depthwise and projection convolutions, depthwise split by kernel size because
   runtimes implement 3x3, 5x5 and 7x7 differently; elements passing each activation type;
   elements read and written; squeeze-excite), fitted by relative least squares. It is the part
   that extrapolates sensibly: twice the channels, about twice the time;
2. a *correction*: gradient boosting on ``log(measured / cost model)`` from the layer's
   parameters (sizes, channels, kernel, stride, SE, activation) and the logs of its costs (FLOPs,
   memory traffic, parameter bytes) and whether each channel count is a multiple of 4 and of 8. It learns
   what the cost model cannot say: a kernel size that is slow at one width, cache effects at a
   given feature-map size, ONNX Runtime's depthwise layers running 2-9x slower when their mid
   channels are not a multiple of 4 (145 or 146 against 144 or 148, measured 2026-12-05). It is constrained to
   grow with every size feature, and fitted only where 5-fold held-out error says it beats the cost
   model alone (not by training fit);
3. an *interval*: the 10th and 90th percentiles of the chosen model's held-out errors (log of
   measured / predicted), so every modelled layer carries an 80% interval.

Latency can only grow with work: the cost model's weights and its fixed per-layer cost are
non-negative over costs that grow with width, resolution, kernel and expansion, and the correction
is monotone in the same directions (channel alignment aside: the hardware itself runs 64 channels
faster than 63, so the alignment features are left free); outside the ranges it was fitted on, it may only shrink toward
the cost model in the direction that keeps this true (:meth:`LayerTypeModel.outside_range`).

A layer type with few measured layers gets the cost model only; with fewer still, a model shared
by all types. scikit-learn conventions: hyperparameters in ``__init__``, ``fit`` returns ``self``,
what fitting learns ends in ``_``. Models are refitted from the table in well under a second, so
nothing is saved (and nothing unpickled).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import KFold
from threadpoolctl import threadpool_limits

from hwnas.builder import op_cost
from hwnas.errors import UserError
from hwnas.opkey import LAYER_ACTIVATIONS, OP_TYPES, OpKey

BYTES_PER_VALUE = 4  # fp32
MIN_FOR_CORRECTION = 25  # measured layers of one type before the gradient-boosted correction is fitted
MIN_FOR_COST_MODEL = 4  # ... before a type gets its own cost model
HELD_OUT_FOLDS = 5
INTERVAL_QUANTILES = (0.10, 0.90)  # an 80% interval from held-out errors


@dataclass(frozen=True)
class LayerCosts:
    """What a layer costs, by part: the cost model's inputs (see the module docstring)."""

    terms: dict[str, float]
    flops: float
    activation_bytes: float
    parameter_bytes: float


@lru_cache(maxsize=65536)
def layer_costs(key: OpKey) -> LayerCosts:
    """Costs of one layer; FLOPs and parameters counted by torch on the layer hwnas builds."""
    counted = op_cost(key)
    inputs = key.in_size**2 * key.in_channels
    outputs = key.out_size**2 * key.out_channels
    terms = dict.fromkeys(_term_names(), 0.0)
    terms["io"] = inputs + outputs
    act_elements = 0.0
    if key.op == "expanded_conv":
        mid, dw_out = key.mid_channels, key.out_size**2 * key.mid_channels
        expanded = key.in_size**2 * mid if key.expansion != 1 else 0
        terms["expand_macs"] = expanded * key.in_channels
        terms[f"dw{key.kernel}_macs"] = dw_out * key.kernel**2
        terms["project_macs"] = dw_out * key.out_channels
        terms["mid_elements"] = expanded + dw_out
        terms["se_macs"] = 2 * mid * key.se_channels + dw_out if key.se else 0.0
        terms["skip_elements"] = outputs if key.has_skip else 0.0
        act_elements = expanded + dw_out
    elif key.op in ("Conv", "Conv_1"):
        terms["conv_macs"] = outputs * key.in_channels * key.kernel**2
        act_elements = outputs
    else:  # Conv_2, Logits: a global pool when the input is larger than 1x1, then a matrix product
        terms["pool_elements"] = inputs if key.in_size > 1 else 0.0
        terms["conv_macs"] = key.in_channels * key.out_channels
        act_elements = key.out_channels if key.op == "Conv_2" else 0.0
    terms[f"act_{key.act}"] = act_elements
    activation_bytes = (terms["io"] + 2 * terms["mid_elements"]) * BYTES_PER_VALUE
    return LayerCosts(terms, float(counted.flops), float(activation_bytes), float(counted.params * BYTES_PER_VALUE))


@lru_cache(maxsize=1)
def _term_names() -> tuple[str, ...]:
    acts = tuple(f"act_{act}" for act in LAYER_ACTIVATIONS)
    parts = ("expand_macs", "dw3_macs", "dw5_macs", "dw7_macs", "project_macs", "mid_elements", "se_macs", "skip_elements")
    return ("io", "conv_macs", "pool_elements", *parts, *acts)


def cost_matrix(keys: Sequence[OpKey]) -> np.ndarray:
    names = _term_names()
    return np.array([[layer_costs(key).terms[name] for name in names] for key in keys], dtype=np.float64).reshape(len(keys), -1)


# channel counts in a multiple of these run on the runtimes' vector kernels: ONNX Runtime's depthwise layers with mid
# channels off a multiple of 4 ran 2-9x slower here (145 or 146 against 144 or 148; the more, the larger the kernel and
# the smaller the map), and its NCHWc blocks are 8 channels on AVX2
ALIGNMENTS = (4, 8)
ALIGNMENT_FEATURES = tuple(f"{part}_channels_multiple_of_{step}" for step in ALIGNMENTS for part in ("in", "mid", "out"))
FEATURE_NAMES = (
    "log_in_size",
    "log_out_size",
    "log_in_channels",
    "log_mid_channels",
    "log_out_channels",
    "kernel",
    "stride",
    "expansion_conv",
    "se",
    "skip",
    *(f"act_{act}" for act in LAYER_ACTIVATIONS),
    "log_flops",
    "log_activation_bytes",
    "log_parameter_bytes",
    *ALIGNMENT_FEATURES,
)
# free of the monotone constraint: stride and activation choose kernels, not amounts of work, and the hardware runs
# aligned channels faster than the unaligned count below them; every other feature measures size or work (+1: the
# correction may only grow with it)
FREE_FEATURES = frozenset(("stride", *(f"act_{act}" for act in LAYER_ACTIVATIONS), *ALIGNMENT_FEATURES))
MONOTONE = np.array([0 if name in FREE_FEATURES else 1 for name in FEATURE_NAMES])


def feature_matrix(keys: Sequence[OpKey]) -> np.ndarray:
    """The correction's features (:data:`FEATURE_NAMES`), one row per layer."""
    rows = []
    for key in keys:
        costs = layer_costs(key)
        rows.append(
            [
                math.log(key.in_size),
                math.log(key.out_size),
                math.log(key.in_channels),
                math.log(key.mid_channels),
                math.log(key.out_channels),
                key.kernel,
                key.stride,
                float(key.expansion != 1),
                float(key.se),
                float(key.has_skip),
                *(float(key.act == act) for act in LAYER_ACTIVATIONS),
                math.log1p(costs.flops),
                math.log1p(costs.activation_bytes),
                math.log1p(costs.parameter_bytes),
                *(
                    float(channels % step == 0)
                    for step in ALIGNMENTS
                    for channels in (key.in_channels, key.mid_channels, key.out_channels)
                ),
            ]
        )
    return np.asarray(rows, dtype=np.float64).reshape(len(keys), len(FEATURE_NAMES))


class CostModel(BaseEstimator, RegressorMixin):
    """Latency (ms) as a fixed per-layer cost plus a weighted sum of cost terms, all non-negative, fitted on relative
    error: more work can never predict less time."""

    def __init__(self, scale: float = 1e6) -> None:
        self.scale = scale

    def fit(self, keys: Sequence[OpKey], ms: Sequence[float]) -> CostModel:
        costs, target = cost_matrix(keys) / self.scale, np.asarray(ms, dtype=np.float64)
        self.used_ = np.flatnonzero(costs.any(axis=0))
        model = LinearRegression(positive=True, fit_intercept=False)  # the fixed cost is a column of ones, kept >= 0
        model.fit(_with_fixed(costs[:, self.used_]), target, sample_weight=1.0 / np.maximum(target, 1e-6) ** 2)
        self.model_ = model
        self.floor_ = float(np.min(target)) * 0.5  # never predict below half the fastest layer it saw
        return self

    def predict(self, keys: Sequence[OpKey]) -> np.ndarray:
        costs = cost_matrix(keys) / self.scale
        return np.maximum(self.model_.predict(_with_fixed(costs[:, self.used_])), self.floor_)


def _with_fixed(costs: np.ndarray) -> np.ndarray:
    return np.hstack([np.ones((len(costs), 1)), costs])


class LayerTypeModel(BaseEstimator, RegressorMixin):
    """One layer type: the cost model, times a monotone boosted correction where held-out error says it helps."""

    def __init__(self, n_estimators: int = 300, max_depth: int = 3, learning_rate: float = 0.05, correction: bool = True) -> None:
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.correction = correction

    def fit(self, keys: Sequence[OpKey], ms: Sequence[float]) -> LayerTypeModel:
        keys, target = list(keys), np.asarray(ms, dtype=np.float64)
        residuals = held_out_log_errors(lambda k, t: clone(self)._fit_with(k, t, correction=False), keys, target)
        self.held_out_error_ = {"cost model": float(np.mean(np.abs(residuals)))}
        use_correction = False
        if self.correction and len(keys) >= MIN_FOR_CORRECTION:
            corrected = held_out_log_errors(lambda k, t: clone(self)._fit_with(k, t, correction=True), keys, target)
            self.held_out_error_["cost model + correction"] = float(np.mean(np.abs(corrected)))
            use_correction = self.held_out_error_["cost model + correction"] < self.held_out_error_["cost model"]
            residuals = corrected if use_correction else residuals
        self._fit_with(keys, target, correction=use_correction)
        self.interval_ = tuple(float(q) for q in np.quantile(residuals, INTERVAL_QUANTILES))
        return self

    def _fit_with(self, keys: Sequence[OpKey], target: np.ndarray, *, correction: bool) -> LayerTypeModel:
        """The cost model, and the correction when asked and there are layers enough (each fold of
        :func:`held_out_log_errors` fits this way, and so does the final fit once the choice is made)."""
        self.cost_ = CostModel().fit(keys, target)
        self.correction_: HistGradientBoostingRegressor | None = None
        if correction and len(keys) >= MIN_FOR_CORRECTION:
            self._fit_correction(keys, target)
        return self

    def _fit_correction(self, keys: Sequence[OpKey], target: np.ndarray) -> None:
        residual = np.log(target) - np.log(self.cost_.predict(keys))
        features = feature_matrix(keys)
        self.correction_ = HistGradientBoostingRegressor(
            max_iter=self.n_estimators,
            max_depth=self.max_depth,
            learning_rate=self.learning_rate,
            min_samples_leaf=5,
            monotonic_cst=MONOTONE,
            random_state=0,
        ).fit(features, residual)
        self.low_, self.high_ = features.min(axis=0), features.max(axis=0)

    def predict(self, keys: Sequence[OpKey]) -> np.ndarray:
        base = self.cost_.predict(keys)
        if self.correction_ is None:
            return base
        features = feature_matrix(keys)
        return base * np.exp(self.outside_range(self.correction_.predict(features), features))

    def predict_with_interval(self, keys: Sequence[OpKey]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The prediction and its 80% interval per layer: the prediction times the 10th and 90th percentile of the
        held-out errors."""
        predicted = self.predict(keys)
        return predicted, predicted * math.exp(self.interval_[0]), predicted * math.exp(self.interval_[1])

    def how(self, keys: Sequence[OpKey]) -> list[str]:
        """Per layer, what answers: the cost model alone, or with its correction, inside or outside the ranges the
        correction was fitted on (outside them it fades toward the cost model: :meth:`outside_range`)."""
        if self.correction_ is None:
            return ["cost model"] * len(keys)
        features = feature_matrix(keys)
        outside = ((features < self.low_) | (features > self.high_)).any(axis=1)
        return ["cost model + correction, outside its range" if out else "cost model + correction" for out in outside]

    def outside_range(self, correction: np.ndarray, features: np.ndarray) -> np.ndarray:
        """The correction beyond the ranges it was fitted on (log ratio to the cost model).

        Trees cannot extrapolate: beyond what they saw they repeat the nearest leaf. There the correction fades toward
        the cost model, whose form follows the hardware, reaching it at one range's width outside, but only in the
        direction that keeps latency growing with work: below the ranges a correction that slows a layer fades, above
        them one that speeds it up (so a small layer is never held at the floor of the smallest it saw, and a large
        one is never predicted faster than its work). Along any size feature the result still grows."""
        width = np.maximum(self.high_ - self.low_, 1e-9)
        grows = MONOTONE == 1
        below = (np.maximum(self.low_ - features, 0.0) / width)[:, grows].max(axis=1)
        above = (np.maximum(features - self.high_, 0.0) / width)[:, grows].max(axis=1)
        other = (np.maximum(features - self.high_, 0.0) + np.maximum(self.low_ - features, 0.0))[:, ~grows] / width[~grows]
        unseen = np.clip(1.0 - other.max(axis=1, initial=0.0), 0.0, 1.0)  # a stride or activation it never saw: both
        slower, faster = np.maximum(correction, 0.0), np.minimum(correction, 0.0)
        return unseen * (slower * np.clip(1.0 - below, 0.0, 1.0) + faster * np.clip(1.0 - above, 0.0, 1.0))


def held_out_log_errors(
    fit: Callable[[Sequence[OpKey], np.ndarray], LayerTypeModel], keys: list[OpKey], target: np.ndarray
) -> np.ndarray:
    """``log(measured / predicted)`` of each layer by a model fitted without it (:data:`HELD_OUT_FOLDS`-fold; one
    fold per layer when there are fewer)."""
    folds = KFold(n_splits=min(HELD_OUT_FOLDS, len(keys)), shuffle=True, random_state=0)
    errors = np.empty(len(keys), dtype=np.float64)
    for train, test in folds.split(keys):
        model = fit([keys[i] for i in train], target[train])
        errors[test] = np.log(target[test]) - np.log(model.predict([keys[i] for i in test]))
    return errors


class LayerLatencyModel(BaseEstimator, RegressorMixin):
    """Per-layer-type latency models for one device: ``fit(keys, ms)``, ``predict(keys) -> ms``."""

    def __init__(self, n_estimators: int = 300, max_depth: int = 3, learning_rate: float = 0.05, correction: bool = True) -> None:
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.correction = correction  # False: cost models only (an ablation)

    def fit(self, keys: Sequence[OpKey], ms: Sequence[float]) -> LayerLatencyModel:
        with threadpool_limits(limits=1, user_api="openmp"):  # a few hundred layers: thread startup costs more than it saves
            return self._fit(keys, ms)

    def _fit(self, keys: Sequence[OpKey], ms: Sequence[float]) -> LayerLatencyModel:
        keys, target = list(keys), np.asarray(ms, dtype=np.float64)
        if len(keys) < MIN_FOR_COST_MODEL or np.any(target <= 0):
            raise UserError(
                f"layer models need at least {MIN_FOR_COST_MODEL} measured layers with positive latency, got {len(keys)} "
                "(profile with --layers N)"
            )
        self.__dict__.pop("_answers", None)  # answers of an earlier fit
        self.__dict__.pop("_hows", None)
        self.shared_ = LayerTypeModel(correction=False).fit(keys, target)
        self.types_: dict[str, LayerTypeModel] = {}
        self.counts_ = {op: sum(key.op == op for key in keys) for op in OP_TYPES}
        for op in OP_TYPES:
            chosen = [i for i, key in enumerate(keys) if key.op == op]
            if len(chosen) >= MIN_FOR_COST_MODEL:
                model = LayerTypeModel(self.n_estimators, self.max_depth, self.learning_rate, correction=self.correction)
                self.types_[op] = model.fit([keys[i] for i in chosen], target[chosen])
        return self

    def predict(self, keys: Sequence[OpKey]) -> np.ndarray:
        return self.predict_with_interval(keys)[0]

    def predict_interval(self, keys: Sequence[OpKey]) -> tuple[np.ndarray, np.ndarray]:
        """Each layer's 80% interval (:meth:`LayerTypeModel.predict_with_interval`), low and high."""
        _, low, high = self.predict_with_interval(keys)
        return low, high

    def predict_with_interval(self, keys: Sequence[OpKey]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Prediction, low and high for each layer. Answers are kept per layer: pruning asks about the same few
        channel choices thousands of times, and each call of the boosted trees costs milliseconds of thread startup."""
        keys = list(keys)
        answers = self.__dict__.setdefault("_answers", {})
        new = list(dict.fromkeys(key for key in keys if key not in answers))
        for op in {key.op for key in new}:
            chosen = [key for key in new if key.op == op]
            model = self.types_.get(op, self.shared_)
            with threadpool_limits(limits=1, user_api="openmp"):
                predicted, low, high = model.predict_with_interval(chosen)
            answers.update(zip(chosen, zip(predicted, low, high, strict=True), strict=True))
        table = np.array([answers[key] for key in keys], dtype=np.float64).reshape(len(keys), 3)
        return table[:, 0], table[:, 1], table[:, 2]

    def how(self, keys: Sequence[OpKey]) -> list[str]:
        """Per layer, which model answers it (:meth:`LayerTypeModel.how`); a type with too few measured layers of its
        own is answered by the cost model fitted on every type."""
        keys = list(keys)
        answers = self.__dict__.setdefault("_hows", {})  # kept per layer, as the predictions are (pruning asks often)
        new = list(dict.fromkeys(key for key in keys if key not in answers))
        for op in {key.op for key in new}:
            chosen = [key for key in new if key.op == op]
            model = self.types_.get(op)
            hows = model.how(chosen) if model is not None else ["cost model of all types"] * len(chosen)
            answers.update(zip(chosen, hows, strict=True))
        return [answers[key] for key in keys]

    def describe(self) -> dict[str, str]:
        """Which model answers for each type, and from how many measured layers."""
        return {
            op: (
                ("cost model + boosted correction" if self.types_[op].correction_ is not None else "cost model")
                if op in self.types_
                else "shared cost model"
            )
            + f" ({self.counts_[op]} layers)"
            for op in OP_TYPES
        }
