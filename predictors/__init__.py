"""Latency and accuracy predictors (scikit-learn style estimators).

Latency: :class:`LutSum`, :class:`CalibratedLatency` (LUT sum x learned correction from measured
whole networks) and :class:`FlopsRegression`, all ``fit(archs, ms)`` / ``predict(archs) -> ms``,
saved with a checked JSON sidecar (:func:`save_predictor`, :func:`load_predictor`). Accuracy:
:class:`AccuracyPredictor` (FBNetV3: encoder pre-trained on FLOPs and params, accuracy head).
"""

from predictors.accuracy import AccuracyPredictor, encode, read_pairs, sample_recipe
from predictors.data import MeasuredNetwork, networks_from_table, read_latency_csv, split
from predictors.evaluate import latency_metrics
from predictors.io import load_predictor, save_predictor
from predictors.latency import CalibratedLatency, FlopsRegression, LatencyPredictor, LutSum, make_predictor

__all__ = [
    "AccuracyPredictor",
    "CalibratedLatency",
    "FlopsRegression",
    "LatencyPredictor",
    "LutSum",
    "MeasuredNetwork",
    "encode",
    "latency_metrics",
    "load_predictor",
    "make_predictor",
    "networks_from_table",
    "read_latency_csv",
    "read_pairs",
    "sample_recipe",
    "save_predictor",
    "split",
]
