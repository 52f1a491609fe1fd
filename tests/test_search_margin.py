"""``--margin auto``: the search's budget check from the latency predictor's held-out error, on real shipped tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hwnas.errors import UserError
from hwnas.predictors.latency import LutSum
from hwnas.presets import get_space
from hwnas.search.api import DEFAULTS, SearchSettings, make_search_config, parse_margin
from hwnas.search.device import _held_out_predictions, load_device_latency

SPACE = get_space("default")
SHIPPED = Path("latency_tables/data/default-host-cpu-onnxruntime.json")


def _table_with(tmp_path: Path, networks: list[dict]) -> Path:
    table = json.loads(SHIPPED.read_text()) | {"networks": networks}
    path = tmp_path / "table.json"
    path.write_text(json.dumps(table))
    return path


def test_the_margin_keeps_the_stated_share_of_held_out_networks_within_budget() -> None:
    latency = load_device_latency("host-ort", SPACE, SHIPPED, allow_mismatch=True)
    found = latency.held_out_margin()
    assert 0 <= found.margin < 0.5 and found.networks == len(latency.table.networks) == 120
    archs = [SPACE.parse(n["arch"]) for n in latency.table.networks]
    measured = np.array([n["median_ms"] for n in latency.table.networks])
    held_out = _held_out_predictions(latency.table, SPACE, archs, measured)
    within = measured <= held_out / (1 - found.margin) * (1 + 1e-9)  # searched under budget x (1 - margin)
    assert within.mean() >= 0.9 and f"{found.margin:.1%}" in found.describe()


def test_a_table_of_few_networks_uses_the_lut_sum_ratios(tmp_path: Path) -> None:
    """Five networks, each measured 1.25x its LUT sum: the margin is exactly 1 - 1/1.25; none is refused in one line."""
    latency = load_device_latency("host-ort", SPACE, SHIPPED, allow_mismatch=True)
    archs = [SPACE.parse(n["arch"]) for n in latency.table.networks[:5]]
    sums = LutSum(latency.table, SPACE).predict(archs)
    networks = [{**latency.table.networks[i], "median_ms": float(1.25 * sums[i])} for i in range(5)]
    few = load_device_latency("host-ort", SPACE, _table_with(tmp_path, networks), allow_mismatch=True)
    assert few.held_out_margin().margin == pytest.approx(0.2, abs=1e-9)
    none = load_device_latency("host-ort", SPACE, _table_with(tmp_path, []), allow_mismatch=True)
    with pytest.raises(UserError, match="needs whole networks") as caught:
        none.held_out_margin()
    assert "\n" not in str(caught.value)


def test_auto_reaches_the_search_config_and_bad_margins_are_one_line(tmp_path: Path) -> None:
    assert parse_margin("auto") == parse_margin(" AUTO ") == "auto" and parse_margin("0.1") == 0.1
    for bad in ("1.5", "-0.1", "nan", "lots"):
        with pytest.raises(UserError, match="--margin"):
            parse_margin(bad)
    latency = load_device_latency("host-ort", SPACE, SHIPPED, allow_mismatch=True)
    config = make_search_config(SPACE, latency, 0.3, SearchSettings(margin="auto"), tmp_path)
    assert config.margin == pytest.approx(latency.held_out_margin().margin) and config.margin != DEFAULTS.margin
    assert config.search_budget_ms == pytest.approx(0.3 * (1 - config.margin))
