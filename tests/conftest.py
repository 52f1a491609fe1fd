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
