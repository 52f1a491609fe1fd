"""Model families: one network grown to a ladder of latency budgets by compound scaling (``hwnas scale``).

Names are imported on first use (torch is heavy).
"""

from hwnas.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "ScaleRequest": "job",
        "scale_family": "job",
        "FamilyLatency": "sizing",
        "FamilyReport": "records",
        "read_report": "records",
        "rows": "plot",
    },
)
