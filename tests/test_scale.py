"""Compound scaling (``hwnas scale``): scaled spaces and networks, sizing on a real table, the family end to end."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwnas.arch import Arch
from hwnas.builder import arch_cost, build_model
from hwnas.errors import UserError
from hwnas.presets import get_space
from hwnas.scaling import Scaling, scale_arch, scaled_space, split_scaled_name

from inputs import SMALL_ARCH, write_idx_folder
from processes import kill_when

DEFAULT = get_space("default")
BASE = DEFAULT.parse(SMALL_ARCH)


# ---- scaled spaces and networks -----------------------------------------------------------------
def test_a_scaled_network_has_every_width_depth_and_the_resolution_multiplied_and_repeats_each_stages_last_block() -> None:
    space, arch = scale_arch(DEFAULT, DEFAULT.parse("default:r32_c16[k5e3]_c40[k5e6,k3e3]_c64[k3e6sh]_c80[k5e6h]"),
                             Scaling.of(depth=1.5, width=1.25, resolution=1.2))  # fmt: skip
    assert space.name == "default-d150w125r120" and arch.space == space.name
    assert arch.resolution == 38  # 32 x 1.2 = 38.4
    assert [stage.width for stage in arch.stages] == [24, 48, 80, 104]  # 20 -> 24 (a multiple of 8, not 10% under)
    assert [stage.depth for stage in arch.stages] == [2, 3, 2, 2]  # 1.5 -> 2, 3 -> 3, rounded half up
    assert arch.stages[1].blocks == (DEFAULT.parse(SMALL_ARCH).stages[1].blocks[0].__class__(5, 6), *arch.stages[1].blocks[1:])
    assert arch.stages[1].blocks[2] == arch.stages[1].blocks[1]  # the added block repeats the stage's last
    assert space.stem_channels == 24 and space.final_expand == 320  # stem and head grow with the width too
    build_model(space, arch)  # the builder makes it like any network


def test_a_scaled_space_is_found_by_its_name_so_every_verb_can_rebuild_a_scaled_network() -> None:
    scaling = Scaling.of(1.4, 1.1, 1.15)
    space = scaled_space(DEFAULT, scaling)
    assert get_space(space.name) == space and space.hash == get_space(space.name).hash
    assert split_scaled_name(space.name) == ("default", scaling)
    data_space = DEFAULT.for_data(3, 4)
    assert get_space(f"{data_space.name}-{scaling.tag}") == scaled_space(data_space, scaling)
    assert scaled_space(DEFAULT, Scaling()) is DEFAULT  # the identity is the space itself
    _, arch = scale_arch(DEFAULT, BASE, scaling)
    assert get_space(Arch.parse(arch.format()).space).validate(arch) == arch


@pytest.mark.parametrize("tag", ["d150w125", "d0w100r100", "D150w125r120", "d150w125r120x"])
def test_a_malformed_scaling_is_refused_in_one_line(tag: str) -> None:
    with pytest.raises(UserError, match=r"bad scaling|out of range"):
        Scaling.parse_tag(tag)


def test_a_multiplier_outside_a_quarter_to_sixteen_is_refused() -> None:
    with pytest.raises(UserError, match=r"width x20 out of range"):
        Scaling.of(width=20)


@settings(max_examples=25, deadline=None)
@given(
    depth=st.floats(1.0, 3.0),
    width=st.floats(1.0, 3.0),
    resolution=st.floats(1.0, 3.0),
    grow=st.sampled_from(["depth", "width", "resolution"]),
    more=st.floats(1.05, 2.0),
)
def test_growing_any_multiplier_never_makes_the_network_cheaper(
    depth: float, width: float, resolution: float, grow: str, more: float
) -> None:
    smaller = Scaling.of(depth, width, resolution)
    larger = Scaling.of(**{"depth": depth, "width": width, "resolution": resolution} | {grow: locals()[grow] * more})
    small_cost, large_cost = (arch_cost(*scale_arch(DEFAULT, BASE, scaling)) for scaling in (smaller, larger))
    assert large_cost.flops >= small_cost.flops and large_cost.params >= small_cost.params


# ---- sizing on a real table ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def family_latency():
    from hwnas.devices import DeviceSpec
    from hwnas.family.sizing import FamilyLatency
    from hwnas.latency_tables.drift import device_table
    from hwnas.latency_tables.table import LatencyTable

    try:
        table = LatencyTable.load(device_table(DeviceSpec.from_toml("host-tflite")))
    except UserError as error:
        pytest.skip(f"no table of this CPU: {error}")
    return FamilyLatency(DEFAULT, BASE, table, factor=1.1)


def test_a_budget_gets_the_slowest_network_predicted_within_it_along_each_direction(family_latency) -> None:
    from hwnas.family.sizing import SCAN, SINGLE_DIMENSIONS

    budget = 3 * family_latency.base_predicted_ms * family_latency.factor
    for step in [Scaling.of(1.2, 1.1, 1.15), *SINGLE_DIMENSIONS.values()]:
        chosen = family_latency.fit_budget(step, budget)
        assert chosen.predicted_today_ms <= budget
        assert chosen.predicted_today_ms > 0.6 * budget  # it grew: a tiny step would not be the slowest within
        along = [family_latency.sized(step.power(float(exponent))) for exponent in SCAN[:200]]
        fitting = [sized.predicted_today_ms for sized in along if sized.predicted_today_ms <= budget]
        assert chosen.predicted_today_ms == max(fitting)
    same = family_latency.sized(Scaling.of(depth=1.2, width=1.4)), family_latency.sized(Scaling.of(width=1.4))
    assert same[0] is same[1]  # x1.2 depth leaves BASE's one-block stages alone: one network, one name
    own = family_latency.fit_budget(Scaling.of(width=2.0), budget, factor=2 * family_latency.factor)
    assert own.predicted_ms * 2 * family_latency.factor <= budget  # a network's own measured factor sizes it instead


def test_every_grid_point_doubles_the_base_within_ten_percent_and_names_one_network(family_latency) -> None:
    points = family_latency.grid(4)
    assert 1 <= len(points) <= 4
    target = 2 * family_latency.base_predicted_ms * family_latency.factor
    assert all(abs(point.predicted_today_ms / target - 1) <= 0.1 for point in points)
    assert len({(point.arch.resolution, point.arch.stages) for point in points}) == len(points)  # one network, one point
    assert all(point.scaling.depth >= 1 and point.scaling.width >= 1 and point.scaling.resolution >= 1 for point in points)


# ---- the command -------------------------------------------------------------------------------
def test_a_budget_the_base_already_meets_is_refused_in_one_line_before_any_training(hwnas_in_process, tmp_path: Path) -> None:
    out = tmp_path / "family"
    result = hwnas_in_process("scale", SMALL_ARCH, "--device", "host-ort", "--budgets-ms", "5,0.001", "--out", out)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "budget 0.001 ms is not above the base's" in lines[0] and "hwnas prune" in lines[0]
    assert not (out / "networks").exists() and not (out / "family.json").exists()


@pytest.mark.parametrize(
    ("base", "message"),
    [
        ("default:r32_c16[k3e3]", "stages"),
        ("nowhere/", "not a run folder"),
        ("default:r32_c17[k3e3]_c32[k3e3]_c48[k3e3h]_c80[k3e3h]", "width"),
    ],
)
def test_a_base_that_is_not_a_network_of_a_space_is_refused_in_one_line(hwnas_in_process, tmp_path: Path, base: str,
                                                                         message: str) -> None:  # fmt: skip
    if base.endswith("/"):
        base = str(tmp_path)
    result = hwnas_in_process("scale", base, "--device", "host-ort", "--budgets-ms", "1", "--out", tmp_path / "family")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr


def scale_command(data: Path, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "hwnas", "scale", SMALL_ARCH, "--device", "host-ort", "--budgets-ms", "0.2,0.4", "--data",
        str(data), "--grid", "2", "--epochs", "1", "--rounds", "2", "--out", str(out),
    ]  # fmt: skip


def trained(out: Path) -> dict[str, int]:
    """Finished networks of the family and their result files' modification times (ns)."""
    return {path.parent.name: path.stat().st_mtime_ns for path in (out / "networks").glob("*/result.json")}


@pytest.mark.slow
def test_a_family_killed_mid_training_resumes_without_retraining_finished_networks_and_ends_measured(tmp_path: Path) -> None:
    from hwnas.family.records import read_report

    data = write_idx_folder(tmp_path / "data", train=400, test=200)
    out = tmp_path / "family"
    process = kill_when(scale_command(data, out), lambda: len(trained(out)) >= 2, 600)
    assert process.returncode == -signal.SIGKILL, process.stderr.read() if process.stderr else ""
    finished = trained(out)
    assert len(finished) >= 2

    resumed = subprocess.run(scale_command(data, out), capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr
    assert all(trained(out)[tag] == mtime for tag, mtime in finished.items())  # finished networks were not trained again
    assert not any(f" {tag} (" in line for line in resumed.stdout.splitlines() if "training" in line for tag in finished)

    report = read_report(out / "family.json")
    assert report.ratios is not None and report.ratios in {p.scaling for p in report.grid if p.role == "grid"}
    assert [(p.budget_ms, p.role) for p in report.members] == [
        (budget, role) for budget in (0.2, 0.4) for role in ("compound", "depth", "width", "resolution")
    ]
    for network in report.networks:
        assert network.scaling in report.trained and network.scaling in report.measured
        measured = report.measured[network.scaling]
        assert measured.verified and Path(measured.file).exists() and measured.median_ms > 0
        arch = Arch.parse(network.arch)
        assert get_space(arch.space).validate(arch) == arch
        result = report.trained[network.scaling]
        assert 0 <= result.val_accuracy <= 1 and result.test_accuracy is not None
    assert all(member.sized_ms is not None for member in report.members)
    assert all(point.doubling is not None and point.doubling > 1 for point in report.grid if point.role == "grid")
    assert Path(report.plot).exists()
    after = trained(out)
    # a member is an ordinary run folder: hwnas latency reads it
    member = out / "networks" / report.members[-1].scaling
    latency = subprocess.run([sys.executable, "-m", "hwnas", "latency", str(member), "--device", "host-ort", "--json"],
                             capture_output=True, text=True, timeout=300)  # fmt: skip
    assert latency.returncode == 0, latency.stderr
    assert json.loads(latency.stdout)["predicted"]["total_ms"] > 0

    fewer = subprocess.run([*scale_command(data, out)[:8], "0.2", *scale_command(data, out)[9:]], capture_output=True,
                           text=True, timeout=300)  # fmt: skip
    assert fewer.returncode == 0, fewer.stderr
    assert "training" not in fewer.stdout and trained(out) == after  # one budget fewer: nothing trained again
    assert {member.budget_ms for member in read_report(out / "family.json").members} == {0.2}

    other = subprocess.run([*scale_command(data, out)[:-2], "--grid", "3", "--out", str(out)], capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert other.returncode != 0 and "holds a family of other settings" in other.stderr and "grid: 2 vs 3" in other.stderr
