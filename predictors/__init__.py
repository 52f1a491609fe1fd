"""Latency and accuracy predictors (scikit-learn style estimators).

Latency: :class:`LutSum`, :class:`CalibratedLatency` (LUT sum x learned correction from measured
whole networks) and :class:`FlopsRegression`, all ``fit(archs, ms)`` / ``predict(archs) -> ms``,
saved with a checked JSON sidecar (:func:`save_predictor`, :func:`load_predictor`). Accuracy:
:class:`AccuracyPredictor` (FBNetV3: encoder pre-trained on FLOPs and params, accuracy head).
"""

from hwnas.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "AccuracyPredictor": "accuracy",
        "encode": "accuracy",
        "read_pairs": "accuracy",
        "sample_recipe": "accuracy",
        "MeasuredNetwork": "data",
        "networks_from_table": "data",
        "read_latency_csv": "data",
        "split": "data",
        "latency_metrics": "evaluate",
        "load_predictor": "io",
        "save_predictor": "io",
        "CalibratedLatency": "latency",
        "FlopsRegression": "latency",
        "LatencyPredictor": "latency",
        "LutSum": "latency",
        "make_predictor": "latency",
    },
)
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
