"""Where candidates train: local worker processes (default) or a Ray cluster (``--ray ADDRESS``).

Both take the same job dicts and return the same result dicts from
:func:`hwnas.search.worker.evaluate_candidate`, so a search gives the same keys either way.
Local workers split this process's cores: ``workers x threads <= len(os.sched_getaffinity(0))``
(small convolutions scale poorly across threads, so by default every core is its own worker with
one thread). Workers are started with ``spawn``: forking a process that already holds torch's
thread pools can hang the child.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

from hwnas.errors import UserError
from hwnas.search.worker import evaluate_candidate, set_threads

Job = dict[str, Any]
Result = dict[str, Any]


def split_cores(workers: int | None) -> tuple[int, int]:
    """(workers, threads per worker) for this process's cores; too many workers is a one-line error."""
    cores = len(os.sched_getaffinity(0))
    workers = workers or cores
    if workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}")
    if workers > cores:
        raise UserError(f"--workers {workers} exceeds the {cores} cores this process may use")
    return workers, max(1, cores // workers)


class Executor:
    """``submit(job) -> handle``; ``wait_any(handles) -> [(handle, result)]`` for those finished."""

    slots: int = 1
    threads: int = 1

    def submit(self, job: Job) -> Any:
        raise NotImplementedError

    def wait_any(self, handles: list[Any], timeout: float | None = None) -> list[tuple[Any, Result]]:
        raise NotImplementedError

    def close(self) -> None:
        return None

    def describe(self) -> dict[str, Any]:
        return {"kind": type(self).__name__, "slots": self.slots, "threads": self.threads}


class InlineExecutor(Executor):
    """Runs each job in this process when submitted (tests, debugging)."""

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads

    def submit(self, job: Job) -> Any:
        future: Future = Future()
        future.set_result(evaluate_candidate(job | {"threads": self.threads}))
        return future

    def wait_any(self, handles: list[Any], timeout: float | None = None) -> list[tuple[Any, Result]]:
        return [(handle, handle.result()) for handle in handles if handle.done()]


class LocalExecutor(Executor):
    """A pool of ``workers`` spawned processes with ``threads`` torch threads each."""

    def __init__(self, workers: int | None = None) -> None:
        self.slots, self.threads = split_cores(workers)
        context = multiprocessing.get_context("spawn")
        self.pool = ProcessPoolExecutor(self.slots, mp_context=context, initializer=set_threads, initargs=(self.threads,))

    def submit(self, job: Job) -> Future:
        return self.pool.submit(evaluate_candidate, job | {"threads": self.threads})

    def wait_any(self, handles: list[Future], timeout: float | None = None) -> list[tuple[Future, Result]]:
        done, _ = wait(handles, timeout=timeout, return_when=FIRST_COMPLETED)
        return [(handle, _result(handle.result)) for handle in handles if handle in done]

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class RayExecutor(Executor):
    """Jobs as Ray tasks on the cluster at ``address`` (``ray.init(address=...)``); one CPU per task by default."""

    def __init__(self, address: str, threads: int = 1, slots: int | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise UserError("--ray needs Ray: pip install -e '.[ray]'") from None
        self.ray = ray
        if not ray.is_initialized():
            try:
                ray.init(address=None if address == "local" else address, include_dashboard=False, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as error:
                raise UserError(f"cannot connect to the Ray cluster at {address!r}: {str(error).splitlines()[0]}") from None
        self.threads = threads
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.slots = slots or max(1, cpus // threads)
        self.remote = ray.remote(num_cpus=threads, max_retries=0)(evaluate_candidate)

    def submit(self, job: Job) -> Any:
        return self.remote.remote(job | {"threads": self.threads})

    def wait_any(self, handles: list[Any], timeout: float | None = None) -> list[tuple[Any, Result]]:
        done, _ = self.ray.wait(handles, num_returns=1, timeout=timeout)
        results = []
        for handle in done:
            results.append((handle, _result(lambda h=handle: self.ray.get(h))))
        return results


def _result(get: Callable[[], Result]) -> Result:
    """A worker that died (killed, out of memory) is a failed trial too."""
    try:
        return get()
    except Exception as error:
        return {
            "state": "failed",
            "error": f"worker lost: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}",
        }


def make_executor(workers: int | None = None, ray_address: str | None = None, inline: bool = False) -> Executor:
    if ray_address and workers:
        raise UserError("give --workers or --ray, not both")
    if ray_address:
        return RayExecutor(ray_address)
    if inline:
        return InlineExecutor()
    return LocalExecutor(workers)
