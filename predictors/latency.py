"""Latency predictors for one device and one search space, all behind ``predict(archs) -> ms``.

- :class:`LutSum`: the sum of the table's per-layer medians, the baseline every paper uses. It
  over-counts the per-call overhead each layer paid when measured alone and ignores what happens
  between layers.
- :class:`CalibratedLatency`: the LUT sum times a learned correction ``exp(f(features))``, fitted
  on measured whole networks of the same device. Multiplicative (a model of the log ratio
  measured / LUT sum) because the error that matters is relative, and because a correction that
  is 0 for unknown inputs then falls back to the LUT sum rather than to nonsense.
- :class:`FlopsRegression`: latency as a linear function of FLOPs, the weak baseline that shows
  why tables are needed at all.

scikit-learn conventions: hyperparameters in ``__init__``, ``fit`` returns ``self``, what fitting
learns ends in ``_``. A predictor carries the device fingerprint and space hash of the table it
was made from, so it can refuse to be used for another device or space (see :mod:`hwnas.predictors.io`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from hwnas.arch import Arch
from hwnas.builder import arch_cost
from hwnas.errors import UserError
from hwnas.fileio import check_archive
from hwnas.latency_tables.table import LatencyTable
from hwnas.predictors.data import MeasuredNetwork, training_hash
from hwnas.predictors.features import feature_matrix, feature_names
from hwnas.predictors.registry import PREDICTORS
from hwnas.presets import get_space
from hwnas.space import SearchSpace

ArchLike = Arch | str
CORRECTIONS = ("ridge", "gbr", "ridge+gbr")


def space_of(table: LatencyTable, space: SearchSpace | None = None) -> SearchSpace:
    """The search space a table was made for, checked against the hash the table records."""
    space = space or get_space(table.space)
    if table.space_hash is not None and table.space_hash != space.hash:
        raise UserError(
            f"latency table is for space {table.space!r} hash {table.space_hash}, not {space.name!r} hash {space.hash}"
        )
    return space


class LatencyPredictor(BaseEstimator):
    """Common surface: device identity, architecture parsing, the training record.

    A scikit-learn estimator (``get_params``, ``clone``) whose constructor takes the device's
    table (and the space, when it is not a registered preset). It saves without pickle: the
    table and space as JSON, fitted scikit-learn models through ``skops`` (:mod:`hwnas.predictors.io`).
    """

    kind: ClassVar[str] = "base"
    fitted_attributes: ClassVar[tuple[str, ...]] = ("n_train_", "training_hash_", "training_ids_")

    def __init__(self, table: LatencyTable, space: SearchSpace | None = None) -> None:
        self.table = table
        self.space = space

    # ---- identity (what a saved predictor is valid for) -----------------------------------
    @property
    def fingerprint(self) -> dict[str, Any]:
        return self.table.fingerprint

    @property
    def space_hash(self) -> str:
        return self._space().hash

    def _space(self) -> SearchSpace:
        return space_of(self.table, self.space)

    def _archs(self, archs: Sequence[ArchLike]) -> list[Arch]:
        space = self._space()
        return [space.parse(arch) if isinstance(arch, str) else space.validate(arch) for arch in archs]

    def _lut_sums(self, archs: Sequence[Arch]) -> np.ndarray:
        space = self._space()
        return np.array([self.table.predict(space.op_keys(arch)) for arch in archs], dtype=np.float64)

    def _record_training(self, archs: Sequence[Arch], latency_ms: np.ndarray) -> None:
        networks = [MeasuredNetwork(arch, float(ms)) for arch, ms in zip(archs, latency_ms, strict=True)]
        self.n_train_ = len(networks)
        self.training_hash_ = training_hash(networks)
        self.training_ids_ = sorted(arch.id for arch in archs)

    @staticmethod
    def _targets(archs: Sequence[Arch], latency_ms: Sequence[float]) -> np.ndarray:
        y = np.asarray(latency_ms, dtype=np.float64)
        if y.shape != (len(archs),):
            raise UserError(f"got {len(archs)} architectures but {y.size} latencies")
        if len(archs) == 0:
            raise UserError("no measured networks to fit on")
        if not np.all(np.isfinite(y)) or np.any(y <= 0):
            raise UserError("measured latencies must be positive numbers")
        return y

    def fit(self, archs: Sequence[ArchLike], latency_ms: Sequence[float]) -> LatencyPredictor:
        raise NotImplementedError

    def predict(self, archs: Sequence[ArchLike]) -> np.ndarray:
        raise NotImplementedError

    def feature_list(self) -> list[str]:
        return []

    # ---- persistence (called by hwnas.predictors.io, which writes the sidecar) --------------
    def sidecar_fields(self) -> dict[str, Any]:
        """What the sidecar records beyond the common fields: the device and the training set."""
        return {
            "device": self.table.device.get("name", "?"),
            "fingerprint": self.fingerprint,
            "space": self.table.space,
            "space_hash": self.space_hash,
            "features": self.feature_list(),
            "training_set": {"hash": self.training_hash_, "networks": self.n_train_, "ids": self.training_ids_},
        }

    def write_model(self, path: Path) -> None:
        """Table, space and fitted state in one skops file (plain data and scikit-learn models only)."""
        import skops.io

        state = {
            "table": json.dumps(self.table.to_json()),
            "space": json.dumps(self._space().to_json()),
            "fitted": {name: getattr(self, name) for name in self.fitted_attributes},
        }
        skops.io.dump(state, path)

    @classmethod
    def read_model(cls, path: Path, sidecar: dict[str, Any], space: SearchSpace | None = None) -> LatencyPredictor:
        """The predictor in ``path``; only plain data and the scikit-learn types in TRUSTED_TYPES are loaded."""
        state = load_skops(path)
        try:
            table = LatencyTable.from_json(json.loads(state["table"]))
            saved_space = SearchSpace.from_json(json.loads(state["space"]))
            predictor = cls(table, space or saved_space, **sidecar["hyperparameters"])
            for name in cls.fitted_attributes:
                setattr(predictor, name, state["fitted"][name])
        except (KeyError, TypeError, ValueError) as error:
            raise UserError(f"predictor {path} is malformed ({error})") from None
        return predictor


# Every type a latency predictor's skops file may hold beyond plain data. skops refuses anything
# else unless listed, so a shared file can hold no object that runs code when it is loaded.
TRUSTED_TYPES = (
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.linear_model._ridge.Ridge",
    "sklearn.linear_model._base.LinearRegression",
    "sklearn.ensemble._gb.GradientBoostingRegressor",
    "sklearn.tree._classes.DecisionTreeRegressor",
    "sklearn.tree._tree.Tree",
    "sklearn.dummy.DummyRegressor",
    "sklearn._loss.loss.HalfSquaredError",
    "sklearn._loss.link.IdentityLink",
    "sklearn._loss.link.Interval",
    "numpy.random.mtrand.RandomState",
    "numpy.random._mt19937.MT19937",
)


def load_skops(path: Path) -> Any:
    """skops.io.load with an explicit trust list; a file asking for any other type is refused, naming it."""
    import skops.io

    check_archive(path, "predictor")
    try:
        untrusted = [name for name in skops.io.get_untrusted_types(file=path) if name not in TRUSTED_TYPES]
        if untrusted:
            raise UserError(f"predictor {path} holds types hwnas does not load ({', '.join(untrusted[:3])}); refusing it")
        return skops.io.load(path, trusted=list(TRUSTED_TYPES))
    except UserError:
        raise
    except Exception as error:  # a zip that is not a skops file, a truncated file, a bad schema
        raise UserError(f"predictor {path} is not a readable predictor file ({str(error).splitlines()[0]})") from None


class LutSum(LatencyPredictor):
    """Sum of per-layer table medians. ``fit`` learns nothing; it only records what it was shown."""

    kind = "lut"

    def fit(self, archs: Sequence[ArchLike], latency_ms: Sequence[float]) -> LutSum:
        parsed = self._archs(archs)
        self._record_training(parsed, self._targets(parsed, latency_ms))
        return self

    def predict(self, archs: Sequence[ArchLike]) -> np.ndarray:
        return self._lut_sums(self._archs(archs))

    def feature_list(self) -> list[str]:
        return ["lut_sum"]


class FlopsRegression(LatencyPredictor):
    """``ms = a * MFLOPs + b`` by least squares: the weak, table-free baseline."""

    kind = "flops"
    fitted_attributes = (*LatencyPredictor.fitted_attributes, "model_")

    def fit(self, archs: Sequence[ArchLike], latency_ms: Sequence[float]) -> FlopsRegression:
        parsed = self._archs(archs)
        y = self._targets(parsed, latency_ms)
        self.model_ = LinearRegression().fit(self._flops(parsed), y)
        self._record_training(parsed, y)
        return self

    def _flops(self, archs: Sequence[Arch]) -> np.ndarray:
        space = self._space()
        return np.array([[arch_cost(space, arch).flops / 1e6] for arch in archs], dtype=np.float64)

    def predict(self, archs: Sequence[ArchLike]) -> np.ndarray:
        if not hasattr(self, "model_"):
            raise UserError("FlopsRegression is not fitted yet")
        parsed = self._archs(archs)
        return np.maximum(self.model_.predict(self._flops(parsed)), 1e-6)

    def feature_list(self) -> list[str]:
        return ["mflops"]


class CalibratedLatency(LatencyPredictor):
    """LUT sum times a learned correction: ``ms = lut_sum * exp(f(features))``.

    ``correction``: ``ridge`` (standardised features, L2; robust with tens of networks),
    ``gbr`` (gradient-boosted trees; catches interactions but needs more networks), or
    ``ridge+gbr`` (trees fitted to what the ridge model leaves).
    """

    kind = "calibrated"
    fitted_attributes = (*LatencyPredictor.fitted_attributes, "models_", "features_")

    def __init__(
        self,
        table: LatencyTable,
        space: SearchSpace | None = None,
        correction: str = "ridge",
        alpha: float = 1.0,
        n_estimators: int = 200,
        max_depth: int = 2,
        learning_rate: float = 0.05,
        subsample: float = 0.8,
        random_state: int = 0,
    ) -> None:
        super().__init__(table, space)
        self.correction = correction
        self.alpha = alpha
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.random_state = random_state

    def feature_list(self) -> list[str]:
        return list(getattr(self, "features_", feature_names(self._space())))

    def _ridge(self) -> Pipeline:
        return make_pipeline(StandardScaler(), Ridge(alpha=self.alpha))

    def _gbr(self) -> GradientBoostingRegressor:
        return GradientBoostingRegressor(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            learning_rate=self.learning_rate,
            subsample=self.subsample,
            random_state=self.random_state,
        )

    def _features(self, archs: Sequence[Arch]) -> tuple[np.ndarray, np.ndarray]:
        space = self._space()
        entries = {key: entry.median_ms for key, entry in self.table.entries.items()}
        names = self.feature_list()
        matrix = feature_matrix(space, entries, archs, names)
        return matrix, matrix[:, names.index("lut_sum")]

    def fit(self, archs: Sequence[ArchLike], latency_ms: Sequence[float]) -> CalibratedLatency:
        if self.correction not in CORRECTIONS:
            raise UserError(f"unknown correction {self.correction!r}; expected one of {CORRECTIONS}")
        parsed = self._archs(archs)
        y = self._targets(parsed, latency_ms)
        self.features_ = feature_names(self._space())
        x, lut = self._features(parsed)
        target = np.log(y) - np.log(lut)
        self.models_: list[Any] = []
        if self.correction in ("ridge", "ridge+gbr"):
            self.models_.append(self._ridge().fit(x, target))
            target = target - self.models_[-1].predict(x)
        if self.correction in ("gbr", "ridge+gbr"):
            self.models_.append(self._gbr().fit(x, target))
        self._record_training(parsed, y)
        return self

    def predict(self, archs: Sequence[ArchLike]) -> np.ndarray:
        if not hasattr(self, "models_"):
            raise UserError("CalibratedLatency is not fitted yet")
        x, lut = self._features(self._archs(archs))
        log_ratio = sum((model.predict(x) for model in self.models_), np.zeros(len(lut)))
        return lut * np.exp(log_ratio)


for _cls in (LutSum, CalibratedLatency, FlopsRegression):
    PREDICTORS.register(_cls.kind, _cls)

LATENCY_KINDS = ("calibrated", "lut", "flops")


def make_predictor(kind: str, table: LatencyTable, **hyperparameters: Any) -> LatencyPredictor:
    """A latency predictor by kind name (``lut``, ``calibrated``, ``flops``)."""
    if kind not in LATENCY_KINDS:
        raise UserError(f"unknown predictor kind {kind!r}; expected one of {list(LATENCY_KINDS)}")
    return PREDICTORS.get(kind)(table, **hyperparameters)
