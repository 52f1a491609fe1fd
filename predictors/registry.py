"""Every predictor kind by name (``lut``, ``calibrated``, ``flops``, ``accuracy-fbnetv3``).

A saved predictor's sidecar names its kind; loading looks the class up here, so a file can only
ever become one of these classes, through that class's own pickle-free reader.
"""

from hwnas.registry import Registry

PREDICTORS: Registry[type] = Registry(
    "predictor kind", modules=["hwnas.predictors.latency", "hwnas.predictors.accuracy"]
)


def hyperparameters_of(estimator: object) -> dict[str, object]:
    """An estimator's ``__init__`` settings (scikit-learn's ``get_params``) without the data it was given."""
    params = estimator.get_params(deep=False)  # type: ignore[attr-defined]
    return {name: value for name, value in params.items() if name not in ("table", "space")}
