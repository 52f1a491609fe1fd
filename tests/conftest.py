"""Shared fixtures. ``SHARED_DATA`` is the project's ../shared/data, absent on a user's machine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
PRESETS = ("default", "proxylessnas", "mnasnet", "ofa-mbv3")


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
