"""Model files for profiling: one layer (an OpKey) or one whole network, in the backend's format.

Files are cached by what determines their content (the layer or architecture, the format, and
the versions of torch, the exporter and hwnas), written atomically, and made in worker processes
so conversion runs on every core while nothing is being timed.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from hwnas.arch import Arch
from hwnas.fileio import text_sha256
from hwnas.opkey import OpKey
from hwnas.space import SearchSpace

EXTENSIONS = {"onnx": "onnx", "tflite": "tflite"}


@dataclass(frozen=True)
class ConversionJob:
    """Make ``path`` (a ``fmt`` file) of one layer (``op``) or one network (``arch`` of ``space``)."""

    fmt: str
    path: Path
    op: dict[str, Any] | None = None
    space: dict[str, Any] | None = None
    arch: str | None = None
    torchvision: dict[str, Any] | None = None  # {"name", "width", "resolution"}: a torchvision network (seeded weights)


def _tool_versions(fmt: str) -> str:
    names = ["torch", "hwnas"] + (["onnx", "onnxscript", "onnxslim"] if fmt == "onnx" else ["litert-torch"])
    found = []
    for name in names:
        try:
            found.append(f"{name}={version(name)}")
        except PackageNotFoundError:
            found.append(f"{name}=?")
    return ",".join(found)


def cached_path(cache_dir: Path, fmt: str, identity: str) -> Path:
    digest = text_sha256(f"{identity}|{fmt}|{_tool_versions(fmt)}", 20)
    return Path(cache_dir) / fmt / f"{digest}.{EXTENSIONS[fmt]}"


def op_job(key: OpKey, fmt: str, cache_dir: Path) -> ConversionJob:
    return ConversionJob(fmt, cached_path(cache_dir, fmt, key.describe()), op=key.to_json())


def network_job(space: SearchSpace, arch: Arch, fmt: str, cache_dir: Path) -> ConversionJob:
    return ConversionJob(
        fmt, cached_path(cache_dir, fmt, f"{space.hash}|{arch.format()}"), space=space.to_json(), arch=arch.format()
    )


def torchvision_job(name: str, width: float | None, resolution: int, fmt: str, cache_dir: Path) -> ConversionJob:
    """A torchvision network at ``width`` (None: its own) and ``resolution`` (reference networks, benchmarks)."""
    identity = f"torchvision|{name}|{width}|{resolution}"
    model = {"name": name, "width": width, "resolution": resolution}
    return ConversionJob(fmt, cached_path(cache_dir, fmt, identity), torchvision=model)


def run_job(job: ConversionJob) -> Path:
    """Build the module and export it (in a worker process; one torch thread each)."""
    import torch

    from hwnas.builder import build_model, build_op, input_shape

    torch.set_num_threads(1)
    torch.manual_seed(0)
    if job.op is not None:
        key = OpKey.from_json(job.op)
        module, shape = build_op(key), (1, key.in_channels, key.in_size, key.in_size)
    elif job.torchvision is not None:
        from hwnas.decompose import torchvision_model

        spec = job.torchvision
        module, shape = torchvision_model(spec["name"], spec["width"]), (1, 3, spec["resolution"], spec["resolution"])
    else:
        space = SearchSpace.from_json(job.space or {})
        arch = space.parse(job.arch or "")
        module, shape = build_model(space, arch), input_shape(space, arch)
    from hwnas.exporters import get_exporter

    return get_exporter(job.fmt).export(module.eval(), torch.randn(shape), job.path)


def _quiet_worker() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # converters print progress and absl logs; errors still travel back as exceptions
    os.dup2(devnull, 2)


def convert_all(jobs: list[ConversionJob], workers: int, on_done: Any = None) -> None:
    """Make every missing file; ``on_done(job)`` is called as each finishes (for progress)."""
    missing = [job for job in jobs if not job.path.exists()]
    for job in jobs:
        if job.path.exists() and on_done is not None:
            on_done(job)
    if not missing:
        return
    with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=get_context("spawn"), initializer=_quiet_worker) as pool:
        futures = {pool.submit(run_job, job): job for job in missing}
        try:
            for future in as_completed(futures):
                future.result()
                if on_done is not None:
                    on_done(futures[future])
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
