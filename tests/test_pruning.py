"""AMC pruning: real Torch-Pruning surgery, real images, a real killed process.

Fast tests use the tiny default-preset network (32x32) and torchvision networks at 32x32 with few
images; the end-to-end test that trains, fine-tunes, exports and times is marked slow.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import torchvision

from hwnas.arch import Arch
from hwnas.builder import build_model, count_flops, count_params
from hwnas.errors import UserError
from hwnas.export_model import resolve_model
from hwnas.presets import get_space
from hwnas.pruning.amc import Environment
from hwnas.pruning.base import BaseModel, save_pruned
from hwnas.pruning.baselines import counts_of, global_magnitude, uniform_counts
from hwnas.pruning.budget import Budget, Resource, check_reachable
from hwnas.pruning.ddpg import DDPG, AgentConfig
from hwnas.pruning.store import Episode, EpisodeStore
from hwnas.pruning.structure import analyse, apply_counts, channel_choices

from stores import episode_rows

ARCH = "default:r32_c24[k3e3,k5e3]_c40[k5e6,k5e3,k5e6]_c48[k7e3h,k3e6h]_c80[k3e3sh,k7e3sh]"
TORCHVISION = ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "mnasnet1_0")
REPO = Path(__file__).resolve().parents[1]


def default_model() -> torch.nn.Module:
    arch = Arch.parse(ARCH)
    torch.manual_seed(0)
    return build_model(get_space("default"), arch).eval()


def torchvision_model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.get_model(name, weights=None, num_classes=10).eval()


def random_counts(graph, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.choice(layer.choices) for layer in graph.layers]


@pytest.mark.parametrize("name", ("default", *TORCHVISION))
def test_pruning_removes_channels_and_the_cost_model_is_exact(name: str) -> None:
    """FLOPs and parameters predicted for a policy equal torch's count of the physically pruned network."""
    module, shape = (default_model(), (1, 1, 32, 32)) if name == "default" else (torchvision_model(name), (1, 3, 32, 32))
    graph = analyse(module, torch.zeros(shape))
    assert graph.flops(graph.full_counts) == count_flops(module, shape)
    assert graph.params(graph.full_counts) == count_params(module)
    for seed in range(2):
        counts = random_counts(graph, seed)
        pruned = apply_counts(module, graph, counts)
        assert graph.flops(counts) == count_flops(pruned.module, shape)
        assert graph.params(counts) == count_params(pruned.module)
        assert count_params(pruned.module) < count_params(module)
        assert pruned.module(torch.randn(shape)).shape == (1, 10)
        assert counts_of(pruned.module, graph) == counts


def test_widths_are_multiples_of_eight_by_default() -> None:
    graph = analyse(default_model(), torch.zeros(1, 1, 32, 32))
    for layer in graph.layers:
        assert all(c % 8 == 0 or c == layer.channels for c in layer.choices)
        assert layer.choices[0] >= 0.2 * layer.channels - 8
    assert channel_choices(96, 8, 0.2) == (24, 32, 40, 48, 56, 64, 72, 80, 88, 96)
    assert channel_choices(20, 1, 0.5) == tuple(range(10, 21))


def test_pruned_run_folder_round_trips_without_pickling_a_module(tmp_path: Path) -> None:
    module = torchvision_model("mobilenet_v3_small")
    base = BaseModel(module, {"torchvision": "mobilenet_v3_small", "num_classes": 10}, 3, 32, "mbv3s", "test")
    graph = analyse(module, torch.zeros(1, 3, 32, 32))
    pruned = apply_counts(module, graph, random_counts(graph, 3))
    save_pruned(tmp_path / "run", pruned.module, base, pruned.history, {"method": "test"})
    state = torch.load(tmp_path / "run" / "model.pt", weights_only=True)  # a plain state dict
    assert all(isinstance(value, torch.Tensor) for value in state.values())
    resolved = resolve_model(str(tmp_path / "run"))
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(resolved.module(x), pruned.module.eval()(x))
    assert resolved.resolution == 32 and resolved.channels == 3


def test_global_magnitude_prunes_the_channels_apply_counts_prunes() -> None:
    """The baseline's networks go through apply_counts: MetaPruner's within-layer choice must be the same."""
    module = default_model()
    graph = analyse(module, torch.zeros(1, 1, 32, 32))
    resource = Resource("flops", "FLOPs", graph.flops)
    target = 0.5 * graph.flops(graph.full_counts)
    allocation = global_magnitude(module, graph, resource, target, 8, 0.8, "l1")
    counts = counts_of(allocation.module, graph)
    assert graph.flops(counts) <= target
    again = apply_counts(module, graph, counts).module
    x = torch.randn(8, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(again(x), allocation.module(x))


def test_every_clipped_episode_meets_the_budget_and_uniform_does_too() -> None:
    graph = analyse(torchvision_model("mobilenet_v2"), torch.zeros(1, 3, 32, 32))
    for kind, cost in (("flops", graph.flops), ("params", graph.params)):
        resource = Resource(kind, kind, cost)
        for ratio in (0.3, 0.5, 0.7):
            target = ratio * cost(graph.full_counts)
            env = Environment(graph, resource, target)
            draws = random.Random(0)
            for _ in range(5):
                _, counts, states = env.rollout(lambda _state, rng=draws: rng.uniform(0.2, 1.0))
                assert cost(counts) <= target
                assert states.shape == (len(graph.layers), 11)
            _, greedy, _ = env.rollout(lambda _state: 1.0)  # keep all it can: the clip alone decides
            assert target * 0.9 < cost(greedy) <= target
            assert cost(uniform_counts(graph, resource, target)) <= target


def test_unreachable_budget_names_the_smallest_reachable_figure() -> None:
    graph = analyse(default_model(), torch.zeros(1, 1, 32, 32))
    resource = Resource("flops", "FLOPs", graph.flops)
    smallest = graph.flops(graph.min_counts) / graph.flops(graph.full_counts)
    with pytest.raises(UserError, match=rf"smallest is flops={smallest:.3f}"):
        check_reachable(Budget.parse("flops=0.01"), resource, graph.full_counts, graph.min_counts)
    check_reachable(Budget.parse(f"flops={smallest + 0.01}"), resource, graph.full_counts, graph.min_counts)


@pytest.mark.parametrize(
    "text", ["flops", "flops=", "flops=abc", "flops=0", "flops=1.5", "speed=0.5", "latency-ms=-1", "params=nan"]
)
def test_bad_budgets_are_one_line_errors(text: str) -> None:
    with pytest.raises(UserError):
        Budget.parse(text)


def test_agent_is_seeded_and_its_state_round_trips() -> None:
    config = AgentConfig(warmup=1, batch=4)
    state = torch.rand(11)
    first, second = DDPG(11, config, seed=3), DDPG(11, config, seed=3)
    for agent in (first, second):
        agent.observe(torch.rand(5, 11, generator=torch.Generator().manual_seed(0)), torch.full((5,), 0.5), -0.3, episode=1)
    actions = [agent.act(state, 5, torch.Generator().manual_seed(9)) for agent in (first, second)]
    assert actions[0] == actions[1] and 0.2 <= actions[0] <= 1.0
    restored = DDPG(11, config, seed=99)
    restored.load_bytes(first.to_bytes())
    assert restored.act(state, 5, torch.Generator().manual_seed(9)) == actions[0]
    assert restored.baseline == first.baseline
    assert first.sigma(1) > first.sigma(30)  # exploration noise decays


def test_a_store_of_another_search_is_refused(tmp_path: Path) -> None:
    store = EpisodeStore(tmp_path / "s.db", {"budget": "flops=0.5"})
    store.add("search", Episode(0, [1.0], [8], -0.1, 0.9, 1.0, 10, 10, 0.1), b"agent")
    store.close()
    with pytest.raises(UserError, match=r"budget: 'flops=0\.5' vs 'flops=0\.3'"):
        EpisodeStore(tmp_path / "s.db", {"budget": "flops=0.3"})
    assert len(EpisodeStore(tmp_path / "s.db", {"budget": "flops=0.5"}).episodes("search")) == 1


WORKER = textwrap.dedent(
    """
    import sys, time, torch
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from test_pruning import default_model
    from hwnas.data import load_data
    from hwnas.pruning.amc import Environment, Evaluator, run_search
    from hwnas.pruning.budget import Resource
    from hwnas.pruning.ddpg import DDPG, AgentConfig
    from hwnas.pruning.job import stack
    from hwnas.pruning.store import EpisodeStore
    from hwnas.pruning.structure import analyse
    torch.set_num_threads(1)
    module = default_model()
    data = load_data()
    images, labels = stack(data.val, 64, 32, 1)
    calibration, _ = stack(data.train, 32, 32, 1)
    graph = analyse(module, torch.zeros(1, 1, 32, 32))
    resource = Resource("flops", "FLOPs", graph.flops)
    env = Environment(graph, resource, 0.5 * graph.flops(graph.full_counts))
    evaluator = Evaluator(module, graph, images, labels, None, calibration)
    agent = DDPG(11, AgentConfig(warmup=2, batch=8), seed=5)
    store = EpisodeStore(Path(sys.argv[1]), {{"test": 1}})
    print("start", len(store.episodes("search")), flush=True)
    def slow(progress):
        time.sleep(float(sys.argv[3]))
    run_search(env, evaluator, agent, store, "search", int(sys.argv[2]), seed=5, on_episode=slow)
    """
)


def _run_worker(db: Path, episodes: int, pause: float) -> subprocess.Popen:
    script = WORKER.format(tests=str(REPO / "tests"))
    return subprocess.Popen([sys.executable, "-c", script, str(db), str(episodes), str(pause)], stdout=subprocess.PIPE, text=True)


def test_kill_minus_nine_mid_search_loses_and_reruns_no_episode(tmp_path: Path) -> None:
    """A search killed with SIGKILL resumes at the next episode and ends exactly as an uninterrupted search."""
    episodes = 8
    killed_db, whole_db = tmp_path / "killed.db", tmp_path / "whole.db"
    worker = _run_worker(killed_db, episodes, pause=0.5)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and (not killed_db.exists() or len(episode_rows(killed_db)) < 3):
        time.sleep(0.2)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    before = episode_rows(killed_db)
    assert 3 <= len(before) < episodes, "the kill must land mid-search"
    resumed = _run_worker(killed_db, episodes, pause=0.0)
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0
    assert f"start {len(before)}" in output  # it continued after the stored episodes, none run again
    after = episode_rows(killed_db)
    assert [row[0] for row in after] == list(range(episodes))  # none lost, none twice (primary key)
    assert after[: len(before)] == before
    whole = _run_worker(whole_db, episodes, pause=0.0)
    whole.communicate(timeout=300)
    assert episode_rows(whole_db) == after  # the agent resumed exactly: same policies, same rewards


def test_cli_bad_input_is_one_line_and_exit_two(tmp_path: Path, hwnas_in_process) -> None:
    """Unreachable budget (with the smallest figure), a latency budget for a device with no table, a layer
    the dependency graph cannot handle: one line each, exit code 2."""
    folder = tmp_path / "base"
    module = default_model()
    base = BaseModel(module, {"arch": ARCH}, 1, 32, "tiny", "test")
    save_pruned(folder, module, base, [], {"method": "unpruned"})
    cases = [
        ([str(folder), "--budget", "flops=0.01"], "below what pruning can reach: the smallest is flops="),
        ([str(folder), "--budget", "latency-ms=0.1", "--device", "pixel-adb"], "no latency table"),
        ([str(folder), "--budget", "flops=0.5", "--reward", "speed"], "--reward must be"),
        (["torchvision:regnet_x_400mf", "--budget", "flops=0.5"], "is a grouped convolution (2 groups)"),
        (["torchvision:shufflenet_v2_x0_5", "--budget", "flops=0.5"], "Torch-Pruning cannot trace this model"),
    ]
    for args, message in cases:
        done = hwnas_in_process("prune", *args, "--out", tmp_path / "out")
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], done.stderr


@pytest.mark.slow
def test_prune_job_end_to_end_with_a_latency_budget(tmp_path: Path) -> None:
    """Train a base briefly, prune it under a latency budget on host TFLite's table, fine-tune, save, export, verify and
    measure every model (on host ONNX Runtime: an ONNX export costs a few seconds, a TFLite conversion 8-12), then export
    the AMC model to TFLite with ``hwnas export``."""
    from hwnas.data import load_data
    from hwnas.devices import DeviceSpec
    from hwnas.latency_tables.drift import device_table
    from hwnas.latency_tables.table import LatencyTable
    from hwnas.predictors.network_latency import network_latency
    from hwnas.pruning.job import PruneConfig, run_prune
    from hwnas.recipe import Recipe
    from hwnas.trainer import fit_model

    torch.set_num_threads(2)
    data = load_data().head(600, 200)  # small: this test checks the job's steps, benchmarks/prune_*.py its accuracy
    module = default_model()
    fit_model(module, data, Recipe(epochs=1), 32, 1)
    base = BaseModel(module.eval(), {"arch": ARCH}, 1, 32, "tiny", "test")
    table = LatencyTable.load(device_table(DeviceSpec.from_toml("host-tflite")))
    unpruned_ms = network_latency(module, (1, 1, 32, 32), table).total_ms
    config = PruneConfig(
        Budget("latency-ms", 0.7 * unpruned_ms),
        episodes=4,
        finetune=Recipe(epochs=1, lr=0.02, warmup_epochs=0.0),
        heldout=200,
        baselines=True,
        devices=("host-ort",),
        formats=("onnx",),  # the measuring device's format; TFLite is exported by the `hwnas export` below
    )
    report = run_prune(base, data, config, tmp_path / "out", table=table)
    amc = report["models"]["amc"]
    assert amc["predicted_ms"]["ms"] <= 0.7 * unpruned_ms
    graph = analyse(module, torch.zeros(1, 1, 32, 32))
    pruned = apply_counts(module, graph, amc["counts"]).module
    try:  # decompose refuses a block whose pruned input and output widths match though it has no residual
        assert amc["predicted_ms"]["ms"] == pytest.approx(network_latency(pruned, (1, 1, 32, 32), table).total_ms)
    except UserError as error:
        assert "residual" in str(error)
    for name in ("unpruned", "amc", "uniform", "global-magnitude"):
        entry = report["models"][name]
        assert all(check["passed"] and check["max_abs_diff"] <= 1e-4 for check in entry["measured"]["verification"].values())
        assert entry["measured"]["latency_ms"]["host-cpu-onnxruntime"] > 0
    assert len(report["latency_retries"]) <= 2
    written = json.loads((tmp_path / "out" / "report.json").read_text())
    assert written["schema_version"] == 1 and set(written) - {"schema_version"} == set(report)
    done = subprocess.run(
        [sys.executable, "-m", "hwnas", "export", amc["folder"], "--format", "tflite", "--out", str(tmp_path / "tfl"), "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    card = json.loads(done.stdout)
    assert [item["format"] for item in card["exports"]] == ["tflite"] and card["exports"][0]["verification"]["passed"]


def test_every_pruned_model_is_fine_tuned_taught_by_the_unpruned_one_when_the_recipe_distils(embedded_data) -> None:
    """The teacher of pruning's fine-tuning is the base network: here a base that names class 3 for every image, so a
    pruned model taught by it alone answers 3 where the labels would have taught it the garment."""
    from hwnas.pruning.job import finetune
    from hwnas.recipe import Recipe
    from hwnas.trainer import Prepared

    class AlwaysThree(torch.nn.Module):
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.one_hot(torch.full((images.shape[0],), 3), 10).float() * 10

    space = get_space("default")
    arch = space.parse("default:r32_c16[k3e3]_c32[k3e3]_c48[k3e3h]_c80[k3e3h]")
    base = BaseModel(AlwaysThree(), {"arch": arch.format()}, 1, 32, "always-three", "test")
    data = embedded_data.head(512, 200)
    recipe = Recipe(epochs=1, batch_size=64, lr=0.1, distill=1.0)
    images = torch.stack([image for image, _ in Prepared(data.val, 32, 1)])
    taught = finetune(build_model(space, arch), data, recipe, base, seed=0, progress=False)
    plain = finetune(build_model(space, arch), data, Recipe(epochs=1, batch_size=64, lr=0.1), base, seed=0, progress=False)
    with torch.no_grad():
        assert (taught(images).argmax(1) == 3).float().mean() > 0.95
        assert (plain(images).argmax(1) == 3).float().mean() < 0.5
