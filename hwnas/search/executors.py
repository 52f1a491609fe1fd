"""Where candidates train: local worker processes (default) or a Ray cluster (``--ray ADDRESS``).

Both take the same job dicts and return the same result dicts from
:func:`hwnas.search.worker.evaluate_candidate`, so a search gives the same keys either way.
Local workers split this process's cores: ``workers x threads <= len(os.sched_getaffinity(0))``
(small convolutions scale poorly across threads, so by default every core is its own worker with
one thread). Workers are started with ``spawn``: forking a process that already holds torch's
thread pools can hang the child. They die with their parent (each watches its parent pid, so a
``kill -9`` of the search leaves no worker holding memory), and a candidate that trains longer than
``HWNAS_CANDIDATE_TIMEOUT_S`` seconds (default 7200; 0: no limit) is a failed trial: the pool's
workers are stopped, a fresh pool is started and the other candidates in flight are trained again.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwnas.errors import UserError
from hwnas.latency_tables.convert import (
    exit_with_parent,
    leave_ctrl_c_to_parent,
    limit_from_env,
    quiet_resource_tracker,
    stop_workers,
)


def evaluate_candidate(job: Job) -> Result:
    """:func:`hwnas.search.worker.evaluate_candidate`, imported when a job runs: the verbs import this module to check
    their options, and a mistake is then one line at once, not after torch and torchvision load (about 3 s)."""
    from hwnas.search.worker import evaluate_candidate as train_candidate

    return train_candidate(job)


def set_threads(threads: int) -> None:
    from hwnas.search.worker import set_threads as set_worker_threads

    set_worker_threads(threads)

Job = dict[str, Any]
Result = dict[str, Any]
CANDIDATE_TIMEOUT_ENV, CANDIDATE_TIMEOUT_S = "HWNAS_CANDIDATE_TIMEOUT_S", 7200.0


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


def init_worker(threads: int, parent_pid: int) -> None:
    """A local worker: exit when ``parent_pid`` dies, leave Ctrl-C to it, and use ``threads`` torch threads."""
    leave_ctrl_c_to_parent()
    exit_with_parent(parent_pid)
    set_threads(threads)


@dataclass(eq=False)
class Task:
    """A handle of :class:`LocalExecutor`: the job, its current future and when it must be done by."""

    job: Job
    future: Future = field(default_factory=Future)
    deadline: float | None = None


class LocalExecutor(Executor):
    """A pool of ``workers`` spawned processes with ``threads`` torch threads each.

    ``timeout_s`` limits one candidate (default ``HWNAS_CANDIDATE_TIMEOUT_S`` or 7200 s; 0: none).
    The loop submits no more jobs than ``slots``, so a job starts when it is submitted and its clock
    starts then.
    """

    # what a worker does with a job (a subclass scores candidates another way, e.g. by inherited weights)
    work: Callable[[Job], Any] = staticmethod(evaluate_candidate)

    def __init__(self, workers: int | None = None, timeout_s: float | None = None) -> None:
        self.slots, self.threads = split_cores(workers)
        limit = limit_from_env(CANDIDATE_TIMEOUT_ENV, CANDIDATE_TIMEOUT_S) if timeout_s is None else timeout_s
        self.timeout_s = limit if limit is not None and limit > 0 else None
        self.outstanding: set[Task] = set()
        self.pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("spawn")
        quiet_resource_tracker()
        return ProcessPoolExecutor(self.slots, mp_context=context, initializer=init_worker, initargs=(self.threads, os.getpid()))

    def _run(self, task: Task) -> None:
        try:
            task.future = self.pool.submit(self.work, task.job)
        except BrokenProcessPool:  # a worker died (killed, out of memory) earlier: start a fresh pool
            stop_workers(self.pool)
            self.pool = self._start()
            task.future = self.pool.submit(self.work, task.job)
        task.deadline = time.monotonic() + self.timeout_s if self.timeout_s else None
        self.outstanding.add(task)

    def submit(self, job: Job) -> Task:
        task = Task(job | {"threads": self.threads})
        self._run(task)
        return task

    def wait_any(self, handles: list[Task], timeout: float | None = None) -> list[tuple[Task, Result]]:
        deadlines = [task.deadline for task in handles if task.deadline is not None]
        if deadlines:
            until_late = max(0.0, min(deadlines) - time.monotonic())
            timeout = until_late if timeout is None else min(timeout, until_late)
        by_future = {task.future: task for task in handles}
        done, _ = wait(list(by_future), timeout=timeout, return_when=FIRST_COMPLETED)
        results = [(by_future[future], _result(future.result)) for future in done]
        for task, _ in results:
            self.outstanding.discard(task)
        now = time.monotonic()
        late = [t for t in handles if not t.future.done() and t.deadline is not None and t.deadline <= now]
        if late:
            results += self._stop_late(late)
        return results

    def _stop_late(self, late: list[Task]) -> list[tuple[Task, Result]]:
        """Stop every worker (one of them is stuck), report ``late`` as failed, start the others again."""
        stop_workers(self.pool)
        self.pool = self._start()
        assert self.timeout_s is not None
        message = (
            f"the candidate trained longer than the {self.timeout_s:g} s limit ({CANDIDATE_TIMEOUT_ENV}); its worker was stopped"
        )
        results: list[tuple[Task, Result]] = [(task, {"state": "failed", "error": message}) for task in late]
        for task in late:
            self.outstanding.discard(task)
        for task in list(self.outstanding):
            finished = task.future.done() and not task.future.cancelled() and task.future.exception() is None
            if not finished:
                self.outstanding.discard(task)
                self._run(task)  # it was running beside the stuck one: train it again on the fresh pool
        return results

    def close(self) -> None:
        """Shut the pool down; candidates still training (an interrupted search) are stopped, not waited for."""
        if any(not task.future.done() for task in self.outstanding):
            stop_workers(self.pool)
        else:
            self.pool.shutdown(wait=True, cancel_futures=True)
        self.outstanding.clear()


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


def check_executor_options(workers: int | None, ray_address: str | None, supernet: Path | None) -> None:
    """Options that cannot go together, refused in one line before any work (the CLI checks them first too)."""
    if ray_address and workers:
        raise UserError("give --workers or --ray, not both")
    if supernet is not None and ray_address:
        raise UserError("--supernet scores candidates in local worker processes (about a second each): leave out --ray")


def make_executor(
    workers: int | None = None, ray_address: str | None = None, inline: bool = False, supernet: Path | None = None
) -> Executor:
    """Where candidates are evaluated; ``supernet``: scored by inherited weights, not trained (hwnas.search.inherited)."""
    check_executor_options(workers, ray_address, supernet)
    if supernet is not None:
        from hwnas.search.inherited import InheritedExecutor, InheritedPoolExecutor

        return InheritedExecutor(supernet, threads=1) if inline else InheritedPoolExecutor(supernet, workers)
    if ray_address:
        return RayExecutor(ray_address)
    if inline:
        return InlineExecutor()
    return LocalExecutor(workers)
