"""Latency and accuracy predictors (scikit-learn style estimators).

Latency: :class:`LutSum`, :class:`CalibratedLatency` (LUT sum x learned correction from measured
whole networks) and :class:`FlopsRegression`, all ``fit(archs, ms)`` / ``predict(archs) -> ms``,
saved with a checked JSON sidecar (:func:`save_predictor`, :func:`load_predictor`). Accuracy:
:class:`AccuracyPredictor` (FBNetV3: encoder pre-trained on FLOPs and params, accuracy head).
Any network (torchvision, pruned): :func:`network_latency` / :func:`keys_latency`, table entries
where they exist and :class:`LayerLatencyModel` (per-layer-type models) for the rest.
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
        "LayerLatencyModel": "layer_models",
        "LayerLatency": "network_latency",
        "NetworkLatency": "network_latency",
        "keys_latency": "network_latency",
        "network_latency": "network_latency",
    },
)
__all__ = [
    "AccuracyPredictor",
    "CalibratedLatency",
    "FlopsRegression",
    "LatencyPredictor",
    "LayerLatency",
    "LayerLatencyModel",
    "LutSum",
    "MeasuredNetwork",
    "NetworkLatency",
    "encode",
    "keys_latency",
    "latency_metrics",
    "load_predictor",
    "make_predictor",
    "network_latency",
    "networks_from_table",
    "read_latency_csv",
    "read_pairs",
    "sample_recipe",
    "save_predictor",
    "split",
]
