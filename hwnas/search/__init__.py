"""Search under a latency budget: ``hwnas search --device SPEC --budget-ms T``.

The pieces, each small and replaceable:

- :mod:`~hwnas.search.reward`: MnasNet's ``ACC x (LAT/T)^w`` (presets ``hard`` and ``soft``);
- :mod:`~hwnas.search.device`: the device's latency model (the calibrated predictor of its shipped
  or profiled table), and the fastest latency the space can reach on it;
- :mod:`~hwnas.search.codec`: a search space as a list of categorical decisions, and the
  training recipe as unit-interval coordinates (what RL, Sobol, TPE and NSGA-II work on);
- :mod:`~hwnas.search.strategies`: ``random``, ``evolution``, ``mnas``, ``fbnetv3``, ``tpe``,
  ``nsga2``, registered by name; they only decide (ask / tell);
- :mod:`~hwnas.search.loop`: the one trial loop, with trials in Optuna's RDB storage;
- :mod:`~hwnas.search.executors`: local worker processes or a Ray cluster;
- :mod:`~hwnas.search.result`: top K, retrain, export, measure on the device, Pareto plot.
"""

from hwnas.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Reward": "reward",
        "parse_reward": "reward",
        "Candidate": "codec",
        "DeviceLatency": "device",
        "load_device_latency": "device",
        "SearchConfig": "loop",
        "SearchLoop": "loop",
        "finish_search": "result",
        "STRATEGIES": "strategies",
        "make_strategy": "strategies",
    },
)
__all__ = [
    "STRATEGIES",
    "Candidate",
    "DeviceLatency",
    "Reward",
    "SearchConfig",
    "SearchLoop",
    "finish_search",
    "load_device_latency",
    "make_strategy",
    "parse_reward",
]
