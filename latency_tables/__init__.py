"""Latency lookup tables: profile every layer of a search space on a device into a versioned table."""

from hwnas.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "LatencyEntry": "table",
        "LatencyTable": "table",
        "diff_tables": "table",
        "LatencyStore": "store",
        "Profiler": "profiler",
        "ProfileSettings": "profiler",
        "import_public_table": "importer",
        "import_public_tables": "importer",
        "sample_layers": "sampling",
        "sample_zoo_layers": "sampling",
        "draw_zoo_networks": "sampling",
        "ZooNetwork": "sampling",
        "check_drift": "drift",
        "DriftCheck": "drift",
    },
)
__all__ = [
    "DriftCheck",
    "LatencyEntry",
    "LatencyStore",
    "LatencyTable",
    "ProfileSettings",
    "Profiler",
    "ZooNetwork",
    "check_drift",
    "diff_tables",
    "draw_zoo_networks",
    "import_public_table",
    "import_public_tables",
    "sample_layers",
    "sample_zoo_layers",
]
