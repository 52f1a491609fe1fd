"""The main job, ``hwnas run``: every stage from a device spec to verified deployable files, resumable, with a report.

Names are imported on first use (the stages import torch and the runtimes).
"""

from hwnas.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "RunConfig": "config",
        "resolve_config": "config",
        "run_pipeline": "run",
        "default_out": "run",
        "write_summary": "summary",
        "render_report": "report",
    },
)
__all__ = ["RunConfig", "default_out", "render_report", "resolve_config", "run_pipeline", "write_summary"]
