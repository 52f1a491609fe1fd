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
    },
)
__all__ = ["LatencyEntry", "LatencyStore", "LatencyTable", "ProfileSettings", "Profiler", "diff_tables", "import_public_table"]
