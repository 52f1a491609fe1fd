"""Shared fixtures. ``SHARED_DATA`` is the project's ../shared/data, absent on a user's machine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
# Two test workers (and the commands they start) share two cores. OpenMP's default wait policy spins a finished thread
# for a while before it sleeps, so two torch processes of 2 threads each spend half of the machine spinning: one epoch of
# `hwnas train` took 19.5 s alone, 37.7 s each with two at once, 17.3 s and 18.1 s with PASSIVE (sleep at once).
# Thread counts, hence numerics, are unchanged. Read when torch first loads; inherited by every subprocess.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
PRESETS = ("default", "proxylessnas", "mnasnet", "ofa-mbv3")


@pytest.fixture()
def hwnas_in_process(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """``hwnas ARGS`` run in this test process, as a ``CompletedProcess`` (exit code, stdout, stderr).

    For commands that end in a user's mistake: a new interpreter costs 3-5 s (torch and torchvision load again), this
    about a tenth of a second. What the command changes in the process is put back after each call (argv, the warning
    printer, the SIGTERM handler, environment variables, torch's thread count). Tests whose point is the process
    itself (signals, kills, resource limits, what a fresh interpreter imports) start one.
    """
    import signal
    import subprocess
    import sys
    import warnings

    from hwnas.cli import main

    def run(*args: object) -> subprocess.CompletedProcess[str]:
        torch = sys.modules.get("torch")
        threads = torch.get_num_threads() if torch is not None else None
        environment, showwarning, on_sigterm = dict(os.environ), warnings.showwarning, signal.getsignal(signal.SIGTERM)
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["hwnas", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as exited:
            code = exited.code if isinstance(exited.code, int) else (0 if exited.code is None else 1)
        finally:
            warnings.showwarning = showwarning
            signal.signal(signal.SIGTERM, on_sigterm)
            os.environ.clear()
            os.environ.update(environment)
            if threads is not None and sys.modules["torch"].get_num_threads() != threads:
                sys.modules["torch"].set_num_threads(threads)
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(["hwnas", *map(str, args)], code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def embedded_data():
    from hwnas.data import load_data

    return load_data()


@pytest.fixture(scope="session")
def device():
    """The host TFLite device with its shipped table and the default space (search tests; skipped without a table)."""
    from hwnas.devices import DeviceSpec, make_backend
    from hwnas.errors import UserError
    from hwnas.presets import get_space

    reason = make_backend(DeviceSpec.from_toml("host-tflite")).unavailable_reason()
    if reason:
        pytest.skip(reason)
    from hwnas.search.device import load_device_latency

    try:
        return load_device_latency("host-tflite", get_space("default"))
    except UserError as error:
        pytest.skip(f"no shipped table for this CPU: {error}")


# ---- work units for two workers (the README's command: pytest -n 2 --dist loadgroup --no-loadscope-reorder) ------
# module fixtures that cost minutes (or a pool whose start costs a share of every test using it): made once, and every
# test reading one runs where it was made
SHARED_RUNS = (
    "resumed_quick_run", "finished_study", "supernet_dir", "ddp_uninterrupted_run", "strategy_pool", "uninterrupted_profile",
)  # fmt: skip


def _unit(item: pytest.Item) -> tuple[int, str]:
    """(rank, group) of a test: see :func:`pytest_collection_modifyitems`."""
    shared = next((name for name in SHARED_RUNS if name in getattr(item, "fixturenames", ())), None)
    if shared is not None:
        return 0, f"{item.path.name}:{shared}"
    if item.get_closest_marker("slow") is not None:
        return 1, item.nodeid
    return 2, f"{item.path.name}:fast"


def pytest_itemcollected(item: pytest.Item) -> None:
    """Each test's work unit as an ``xdist_group`` mark, set as it is collected (xdist reads the marks into the test ids
    in its own ``pytest_collection_modifyitems``, which may run before this file's)."""
    if item.get_closest_marker("xdist_group") is None:
        item.add_marker(pytest.mark.xdist_group(_unit(item)[1]))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Work units for ``--dist loadgroup``, the costliest first (with ``--no-loadscope-reorder`` they go in this order).

    A test reading a shared run joins that run's unit (the run is made once); every other slow test is a unit of its own,
    so the two workers share the long ones instead of one worker getting a whole file of them; the fast tests of a file
    stay together (their cost is mostly importing the file's modules). Order: shared runs, slow tests, the rest.
    """
    ranked = sorted(enumerate(items), key=lambda entry: (_unit(entry[1])[0], entry[0]))
    items[:] = [item for _, item in ranked]


def slower_day_factor(table_path: Path, device: str, slowdown: float = 4.0) -> float:
    """What a table's times are multiplied by so that it reads as made on a day ``slowdown`` times slower than today:
    ``slowdown`` x the ratio of today's times to the table's, re-timed now on three of its whole networks. Doubling the
    shipped figures alone assumed the table's day ran at today's speed (this machine ran 1.8x slower than the shipped
    Intel table on 2026-12-06, and two tests built on that assumption failed on an idle machine). A factor of 4, not 2:
    under CI the other worker's load moved a re-timing 1.56x between this call and the test's own measurement (a
    "half-speed" table then read 0.78), so the slower day must stand clear of the noise for the test to check the
    mechanism, not the machine's mood."""
    from hwnas.devices import DeviceSpec, make_backend
    from hwnas.paths import model_cache
    from hwnas.presets import get_space
    from latency_tables.drift import drift_with
    from latency_tables.table import LatencyTable

    backend = make_backend(DeviceSpec.from_toml(device))
    table = LatencyTable.load(table_path)
    check, _ = drift_with(table, backend, model_cache(), "test", {}, space=get_space("default"), networks=3)
    assert check is not None, f"{table_path} has no whole networks to re-time"
    return slowdown * check.ratio
