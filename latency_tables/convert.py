"""Model files for profiling: one layer (an OpKey) or one whole network, in the backend's format.

Files are cached by what determines their content (the layer or architecture, the format, and
the versions of torch, the exporter and hwnas), written atomically, and made in worker processes
so conversion runs on every core while nothing is being timed.

Workers die with their parent: each watches its parent pid from a daemon thread and exits when it
changes (the parent was killed, even with SIGKILL), so no worker lives on holding its ~800 MB.
A conversion that takes longer than ``HWNAS_CONVERT_TIMEOUT_S`` seconds (default 1800; 0: no
limit) fails with :class:`WorkerTimeout` naming it, and the pool's workers are stopped.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from hwnas.arch import Arch
from hwnas.errors import UserError
from hwnas.fileio import text_sha256
from hwnas.opkey import OpKey
from hwnas.space import SearchSpace

EXTENSIONS = {"onnx": "onnx", "tflite": "tflite"}
PARENT_POLL_S = 0.5
CONVERT_TIMEOUT_ENV, CONVERT_TIMEOUT_S = "HWNAS_CONVERT_TIMEOUT_S", 1800.0


class WorkerTimeout(RuntimeError):
    """A job in a worker process took longer than its limit; the worker was stopped."""


# ---- worker processes: they die with their parent, and a hung one is stopped -----------------------
def exit_with_parent(parent_pid: int, poll_s: float = PARENT_POLL_S) -> threading.Thread:
    """In a worker process: end this process as soon as ``parent_pid`` is no longer its parent.

    A daemon thread polls ``os.getppid()`` (portable, unlike Linux's PR_SET_PDEATHSIG, and it also
    catches a parent that died before the worker got here); ``os._exit`` ends every thread at
    once, even one inside a converter or a training step.
    """

    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(1)
            time.sleep(poll_s)

    thread = threading.Thread(target=watch, name="hwnas-exit-with-parent", daemon=True)
    thread.start()
    return thread


def limit_from_env(name: str, default: float) -> float | None:
    """Seconds from environment variable ``name`` (``default`` when unset); 0 or less means no limit."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if math.isnan(value):
        raise UserError(f"{name}={text!r} is not a number of seconds")
    return value if value > 0 else None


def stop_workers(pool: ProcessPoolExecutor) -> None:
    """Kill the pool's worker processes (a hung one would never return) and shut it down."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        if process.is_alive():
            process.kill()
    pool.shutdown(wait=True, cancel_futures=True)


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
    from hwnas.exporters import cache, get_exporter

    with cache.bypassed():  # this job's file is the profile's cache entry already
        return get_exporter(job.fmt).export(module.eval(), torch.randn(shape), job.path)


def quiet_resource_tracker() -> None:
    """Start multiprocessing's resource tracker (once per process) with its leak warning turned off.

    A worker stopped mid-job (Ctrl-C, a timeout) leaves the semaphores it had made; the tracker unlinks them at
    exit, as it should, but also prints a ``UserWarning`` about "leaked semaphore objects" after hwnas's own last
    line, the one that says how to resume. The tracker inherits ``-W`` options from ``sys.warnoptions`` when it is
    started, and that process does nothing but this bookkeeping, so its user warnings are the only ones silenced.
    """
    from multiprocessing import resource_tracker

    option = "ignore::UserWarning"
    added = option not in sys.warnoptions
    if added:
        sys.warnoptions.append(option)
    try:
        resource_tracker.ensure_running()
    finally:
        if added:
            sys.warnoptions.remove(option)


def leave_ctrl_c_to_parent() -> None:
    """In a worker process: ignore SIGINT and SIGTERM. A terminal's Ctrl-C (or a ``kill`` of the process group)
    reaches every process; a worker that died of it mid-job would surface as a BrokenProcessPool traceback. The
    parent alone handles it: it stops its workers (``stop_workers``) and says how to resume; a worker whose parent
    is gone exits by itself (``exit_with_parent``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _quiet_worker(parent_pid: int | None = None) -> None:
    leave_ctrl_c_to_parent()
    if parent_pid is not None:
        exit_with_parent(parent_pid)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # converters print progress and absl logs; errors still travel back as exceptions
    os.dup2(devnull, 2)


def describe_job(job: ConversionJob) -> str:
    if job.op is not None:
        return f"layer {OpKey.from_json(job.op).describe()}"
    if job.torchvision is not None:
        return f"torchvision {job.torchvision['name']} at {job.torchvision['resolution']} px"
    return f"network {job.arch}"


def convert_all(jobs: list[ConversionJob], workers: int, on_done: Any = None, timeout_s: float | None = None) -> None:
    """Make every missing file; ``on_done(job)`` is called as each finishes (for progress).

    ``timeout_s``: the limit for one conversion (default ``HWNAS_CONVERT_TIMEOUT_S`` or 1800 s;
    0: none). At most ``workers`` jobs are handed to the pool at a time, so each starts when it is
    submitted and its clock starts then. A conversion over the limit raises :class:`WorkerTimeout`;
    any failure stops the workers (files finished so far are kept: they were written atomically).
    """
    missing = [job for job in jobs if not job.path.exists()]
    for job in jobs:
        if job.path.exists() and on_done is not None:
            on_done(job)
    if not missing:
        return
    limit = limit_from_env(CONVERT_TIMEOUT_ENV, CONVERT_TIMEOUT_S) if timeout_s is None else timeout_s
    limit = limit if limit is not None and limit > 0 else None
    slots = max(1, workers)
    quiet_resource_tracker()
    pool = ProcessPoolExecutor(
        max_workers=slots, mp_context=get_context("spawn"), initializer=_quiet_worker, initargs=(os.getpid(),)
    )
    queue = list(reversed(missing))
    running: dict[Future, tuple[ConversionJob, float]] = {}
    try:
        while queue or running:
            while queue and len(running) < slots:
                job = queue.pop()
                running[pool.submit(run_job, job)] = (job, time.monotonic() + (limit or 0.0))
            next_deadline = min(deadline for _, deadline in running.values()) if limit else None
            wait_s = None if next_deadline is None else max(0.0, next_deadline - time.monotonic())
            done, _ = wait(list(running), timeout=wait_s, return_when=FIRST_COMPLETED)
            for future in done:
                job, _ = running.pop(future)
                future.result()
                if on_done is not None:
                    on_done(job)
            now = time.monotonic()
            late = [job for future, (job, deadline) in running.items() if limit and deadline <= now and not future.done()]
            if late:
                raise WorkerTimeout(
                    f"converting {describe_job(late[0])} to {late[0].fmt} took longer than {limit:g} s "
                    f"(limit: {CONVERT_TIMEOUT_ENV}); its worker was stopped"
                )
    except BaseException:
        stop_workers(pool)
        raise
    pool.shutdown(wait=True)
