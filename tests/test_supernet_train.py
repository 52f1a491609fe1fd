"""Supernet training (sandwich rule, in-place distillation), its folder on disk, and ``hwnas supernet train|eval``.

Small slices of the embedded data and one thread keep every training here to seconds; what is
checked is the machinery (files, versions, resume, refusals), not how well a supernet learns.
"""

from __future__ import annotations

import dataclasses
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hwnas.errors import UserError
from hwnas.formats import FORMATS
from hwnas.presets import get_space
from hwnas.recipe import Recipe
from hwnas.space import SearchSpace, StageSpace
from hwnas.supernet import Supernet
from hwnas.supernet.store import INFO_FILE, WEIGHTS_FILE, load_supernet, save_supernet
from hwnas.supernet.train import SupernetTraining, train_supernet

TRAIN_IMAGES, VAL_IMAGES = 256, 128
RECIPE = Recipe(epochs=1, batch_size=128, lr=0.1)


# two resolutions (the subnetworks drawn per step, and their resolutions, must be drawn again alike on resume),
# squeeze-excite and activation choices: every kind of choice a resumed epoch must draw as the interrupted one did
TINY = SearchSpace(
    name="tiny",
    description="a narrow two-stage space for quick supernet training",
    in_channels=1,
    num_classes=10,
    resolutions=(24, 32),
    stem_channels=8,
    stem_stride=2,
    stages=(
        StageSpace(2, (8, 16), (1, 2), (3, 5), (2, 3)),
        StageSpace(2, (16, 24), (1, 2), (3, 5), (3,), (False, True), ("relu", "hswish")),
    ),
    final_expand=64,
    head_act="hswish",
)


class _Stop(Exception):
    """Raised from ``log`` to end training where a kill would: after an epoch's checkpoint is written."""


def _train(
    data, space: SearchSpace, recipe: Recipe, folder: Path, stop_after: int | None = None
) -> tuple[SupernetTraining, list[str]]:
    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(line)
        if stop_after is not None and line.startswith(f"epoch {stop_after}/"):
            raise _Stop

    trained = train_supernet(space, recipe, data, seed=3, random_subnets=1, threads=1, checkpoint=folder, log=log)
    return trained, lines


def _save(folder: Path, trained: SupernetTraining, recipe: Recipe) -> dict:
    data = {"source": "embedded", "name": "slice"}
    return save_supernet(
        folder, trained.supernet, data=data, recipe=recipe, seed=3, method=trained.method, curve=trained.curve, wall_time_s=1.0
    )


@pytest.fixture(scope="module")
def small_data(embedded_data):
    return embedded_data.head(TRAIN_IMAGES, VAL_IMAGES)


# ---- (a) one epoch, its files, and a load that gives back the same network ----------------------
def test_one_epoch_writes_a_checkpoint_and_a_versioned_folder_that_loads_back(small_data, tmp_path: Path) -> None:
    space = get_space("default")
    trained, lines = _train(small_data, space, RECIPE, tmp_path)
    assert (tmp_path / "checkpoint.pt").stat().st_size > 0
    assert len(lines) == 1 and lines[0].startswith("epoch 1/1: loss") and "largest" in lines[0] and "smallest" in lines[0]
    point = trained.curve[0]
    assert point["epoch"] == 1 and 0 <= point["smallest_val_accuracy"] <= 1 and 0 <= point["largest_val_accuracy"] <= 1
    assert trained.supernet.active_arch == trained.supernet.largest_arch() and not trained.supernet.training

    written = _save(tmp_path, trained, RECIPE)
    info = json.loads((tmp_path / INFO_FILE).read_text())
    assert info == written and info[FORMATS["supernet"].key] == FORMATS["supernet"].version
    assert SearchSpace.from_json(info["space"]) == space and info["space_hash"] == space.hash
    assert (info["in_channels"], info["num_classes"], info["epochs"], info["seed"]) == (1, 10, 1, 3)
    assert info["recipe"] == RECIPE.to_json() and info["method"]["random_subnets"] == 1 and info["curve"] == trained.curve
    assert info["hwnas_version"] and info["method"]["name"] == "sandwich-inplace-distillation"
    state = torch.load(tmp_path / WEIGHTS_FILE, weights_only=True)
    assert state.keys() == trained.supernet.state_dict().keys()

    loaded, loaded_info = load_supernet(tmp_path)
    assert loaded_info == info and not loaded.training
    images = torch.randn(4, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    for arch in (loaded.largest_arch(), loaded.smallest_arch(), loaded.sample_arch(random.Random(1))):
        trained.supernet.set_active(arch)
        loaded.set_active(arch)
        with torch.no_grad():
            assert torch.equal(loaded(images), trained.supernet(images))


# ---- (b) a killed run, rerun, ends where an uninterrupted one does -------------------------------
def test_resumed_training_ends_with_the_weights_of_an_uninterrupted_run(small_data, tmp_path: Path) -> None:
    space = TINY  # the machinery is the same for any space; this one trains in a fraction of the default's time
    recipe = dataclasses.replace(RECIPE, epochs=2, randaugment=5, label_smoothing=0.1)
    whole, lines = _train(small_data, space, recipe, tmp_path / "whole")
    assert len(lines) == 2

    with pytest.raises(_Stop):
        _train(small_data, space, recipe, tmp_path / "killed", stop_after=1)
    torch.manual_seed(12345)  # another process starts from other random states: the checkpoint must bring back its own
    random.seed(12345)
    resumed, lines = _train(small_data, space, recipe, tmp_path / "killed")
    assert "1 epoch(s) done, from epoch 2 of 2" in lines[0] and len(lines) == 2
    drop = lambda points: [{k: v for k, v in p.items() if k != "seconds"} for p in points]  # noqa: E731
    assert drop(resumed.curve) == drop(whole.curve)
    expected, got = whole.supernet.state_dict(), resumed.supernet.state_dict()
    assert expected.keys() == got.keys() and all(torch.equal(expected[name], got[name]) for name in expected)

    again, lines = _train(small_data, space, recipe, tmp_path / "killed")  # a finished checkpoint: nothing left to do
    assert "nothing left to train" in lines[0] and again.curve == resumed.curve
    assert all(torch.equal(expected[name], tensor) for name, tensor in again.supernet.state_dict().items())

    with pytest.raises(UserError, match="is from other training") as caught:  # other settings: refused, not resumed
        _train(small_data, space, dataclasses.replace(recipe, lr=0.05), tmp_path / "killed")
    assert "recipe.lr 0.1 (now 0.05)" in str(caught.value) and "--fresh" in str(caught.value) and "\n" not in str(caught.value)


# ---- (b2) progressive shrinking: which subnetworks each quarter of the steps trains, and its resume ------------
def test_progressive_phases_are_equal_quarters_of_the_steps() -> None:
    from hwnas.supernet.train import PHASES, progressive_phase

    assert [progressive_phase(step, 8) for step in range(8)] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert [progressive_phase(step, 6) for step in range(6)] == [0, 0, 1, 2, 2, 3]
    assert progressive_phase(0, 1) == 0 and progressive_phase(99, 100) == len(PHASES) - 1


def test_a_progressive_sample_varies_only_what_its_phase_made_elastic() -> None:
    from hwnas.supernet.train import progressive_sample

    largest = Supernet(TINY).largest_arch()
    rng = random.Random(0)
    drawn = {phase: [progressive_sample(TINY, largest, phase, rng) for _ in range(200)] for phase in (1, 2, 3)}
    for archs in drawn.values():
        assert all(TINY.validate(arch) == arch for arch in archs)
    shape = lambda arch, keep: {tuple(keep(stage, block) for block in stage.blocks) for stage in arch.stages}  # noqa: E731
    rest = lambda stage, block: (stage.width, block.expansion, block.se, block.act)  # noqa: E731
    for arch in drawn[1]:  # kernel and resolution only: the largest's widths, depths, expansions, SE, activations
        assert [len(s.blocks) for s in arch.stages] == [len(s.blocks) for s in largest.stages]
        assert shape(arch, rest) == shape(largest, rest)
    for arch in drawn[2]:  # depth too
        assert shape(arch, rest) <= {tuple(rest(s, b) for b in s.blocks[:n]) for s in largest.stages for n in (1, 2)}
    kernels = lambda archs: {b.kernel for a in archs for s in a.stages for b in s.blocks}  # noqa: E731
    assert kernels(drawn[1]) == {3, 5} and {a.resolution for a in drawn[1]} == {24, 32}
    assert {len(a.stages[0].blocks) for a in drawn[1]} == {2} and {len(a.stages[0].blocks) for a in drawn[2]} == {1, 2}
    assert {a.stages[0].width for a in drawn[2]} == {16} and {a.stages[0].width for a in drawn[3]} == {8, 16}
    assert {a.stages[1].blocks[0].act for a in drawn[3]} == {"relu", "hswish"}


# a stage whose blocks may skip the expansion (expansion 1: the depthwise runs on the input channels as they come),
# beside TINY's, whose blocks always expand and carry squeeze-excite in the second stage
WITH_EXPANSION_ONE = dataclasses.replace(
    TINY, name="tiny-e1", stages=(StageSpace(2, (8, 16), (1, 2), (3, 5), (1, 3)), TINY.stages[1])
)


def _randomised(space: SearchSpace, seed: int) -> Supernet:
    """A supernet with random weights and BatchNorm statistics (so every permuted tensor matters), in eval mode."""
    torch.manual_seed(seed)
    net = Supernet(space)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.2)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.2)
    return net.eval()


def _outputs(net: Supernet, arch, images: torch.Tensor) -> torch.Tensor:
    net.set_active(arch)
    with torch.no_grad():
        return net(images)


def test_sorting_expansion_channels_keeps_the_largest_network_and_puts_the_important_channels_first() -> None:
    net = _randomised(WITH_EXPANSION_ONE, 0)
    images = torch.randn(4, 1, 32, 32)
    largest, narrow = net.largest_arch(), net.smallest_arch()  # the smallest's blocks use fewer expansion channels
    before_largest, before_narrow = _outputs(net, largest, images), _outputs(net, narrow, images)
    first_stage = {name: tensor.clone() for name, tensor in net.stages[0].state_dict().items()}
    assert net.sort_channels() == 2  # the second stage's two blocks; the first stage's may run with expansion 1
    assert torch.allclose(_outputs(net, largest, images), before_largest, atol=1e-5)  # the same function
    assert not torch.allclose(_outputs(net, narrow, images), before_narrow, atol=1e-3)  # fewer channels: other ones
    assert all(torch.equal(first_stage[name], tensor) for name, tensor in net.stages[0].state_dict().items())
    for block in net.stages[1]:
        importance = block.project.conv.weight.abs().sum(dim=(0, 2, 3))
        assert torch.all(importance[:-1] >= importance[1:])  # most important first


def test_the_optimizers_momentum_follows_the_sorted_channels() -> None:
    """Sorting between two SGD steps changes nothing the largest network computes, if the momentum moves with the
    weights; left behind, it pushes the wrong channels."""
    images, labels = torch.randn(8, 1, 32, 32), torch.randint(0, 10, (8,))

    def stepped(sort: str) -> torch.Tensor:
        net = _randomised(TINY, 1)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        for step in range(2):
            if step == 1 and sort != "no":
                net.sort_channels(optimizer if sort == "with optimizer" else None)
            net.train()
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(net(images), labels).backward()
            optimizer.step()
        return _outputs(net.eval(), net.largest_arch(), images)

    unsorted = stepped("no")
    assert torch.allclose(stepped("with optimizer"), unsorted, atol=1e-4)
    assert not torch.allclose(stepped("weights only"), unsorted, atol=1e-4)


def test_progressive_shrinking_trains_the_largest_first_then_shrinks_and_resumes_exactly(
    small_data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hwnas.supernet.train as training

    steps: list[list] = []
    real_step = training._sandwich_step
    monkeypatch.setattr(
        training,
        "_sandwich_step",
        lambda run, images, labels, archs: steps.append(archs) or real_step(run, images, labels, archs),
    )
    sorted_at: list[int] = []
    real_sort = Supernet.sort_channels
    monkeypatch.setattr(
        Supernet, "sort_channels", lambda net, optimizer=None: sorted_at.append(len(steps)) or real_sort(net, optimizer)
    )
    recipe = dataclasses.replace(RECIPE, epochs=2, batch_size=32)  # 8 steps an epoch, 16 in all: 4 per phase

    def train(folder: Path, stop_after: int | None = None, method: str = "progressive") -> SupernetTraining:
        def log(line: str) -> None:
            if stop_after is not None and line.startswith(f"epoch {stop_after}/"):
                raise _Stop

        return train_supernet(
            TINY, recipe, small_data, seed=3, random_subnets=1, threads=1, checkpoint=folder, log=log, method=method
        )

    whole = train(tmp_path / "whole")
    whole_steps, largest = list(steps), whole.supernet.largest_arch()
    assert len(whole_steps) == 16 and all(archs == [largest] for archs in whole_steps[:4])  # first quarter: the largest
    assert all(archs[0] == largest and len(archs) == 3 for archs in whole_steps[4:])  # the teacher, random_subnets + 1 drawn
    widths = lambda arch: [stage.width for stage in arch.stages]  # noqa: E731
    assert all(widths(arch) == widths(largest) for archs in whole_steps[4:12] for arch in archs)  # kernel, then depth
    assert any(widths(arch) != widths(largest) for archs in whole_steps[12:] for arch in archs)  # then every choice
    assert whole.method["name"] == "progressive-shrinking"
    assert sorted_at == [12]  # once, before the 13th step: the first of the phase that makes expansion elastic

    steps.clear()
    with pytest.raises(_Stop):
        train(tmp_path / "killed", stop_after=1)
    torch.manual_seed(12345)  # another process starts from other random states: the checkpoint must bring back its own
    resumed = train(tmp_path / "killed")
    assert steps == whole_steps  # the resumed epoch, in its phase, drew what the uninterrupted one drew
    expected, got = whole.supernet.state_dict(), resumed.supernet.state_dict()
    assert all(torch.equal(expected[name], got[name]) for name in expected)
    with pytest.raises(UserError, match="is from other training"):  # a checkpoint of the other method: refused
        train(tmp_path / "killed", method="sandwich")


# ---- (c) files of a newer hwnas, and weights of another space ----------------------------------
def _untrained_folder(folder: Path, space: SearchSpace) -> Path:
    torch.manual_seed(0)
    trained = SupernetTraining(Supernet(space), [], {"name": "none"}, 1)
    _save(folder, trained, RECIPE)
    return folder


def _one_line_error(folder: Path, *fragments: str) -> None:
    with pytest.raises(UserError) as caught:
        load_supernet(folder)
    message = str(caught.value)
    assert "\n" not in message and all(fragment in message for fragment in fragments), message


def test_a_description_from_a_newer_hwnas_says_upgrade(tmp_path: Path) -> None:
    folder = _untrained_folder(tmp_path, get_space("default"))
    info = json.loads((folder / INFO_FILE).read_text())
    info[FORMATS["supernet"].key] = FORMATS["supernet"].version + 1
    (folder / INFO_FILE).write_text(json.dumps(info))
    _one_line_error(folder, "newer", "upgrade hwnas")


def test_weights_of_another_space_are_refused_in_one_line(tmp_path: Path) -> None:
    folder = _untrained_folder(tmp_path, get_space("default"))
    other = SearchSpace("other", "", 1, 10, (32,), 16, 1, (StageSpace(2, (16, 24), (1, 2), (3,), (3,)),), final_expand=64)
    torch.save(Supernet(other).state_dict(), folder / WEIGHTS_FILE)
    _one_line_error(folder, "does not fit the supernet of space 'default'", "missing")


def test_an_edited_space_and_a_folder_without_a_description_are_refused(tmp_path: Path) -> None:
    folder = _untrained_folder(tmp_path / "edited", get_space("default"))
    info = json.loads((folder / INFO_FILE).read_text())
    info["space"]["stem_channels"] = 24  # the weights are of the space the hash names
    (folder / INFO_FILE).write_text(json.dumps(info))
    _one_line_error(folder, "hashes to")
    (tmp_path / "empty").mkdir()
    _one_line_error(tmp_path / "empty", "not a supernet folder")


# ---- (d) the command line ---------------------------------------------------------------------
def hwnas(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hwnas", *map(str, args)], capture_output=True, text=True, timeout=600)


def _image_folder(embedded_data, root: Path, classes: int = 4, per_class: int = 16) -> Path:
    """A small ImageFolder of embedded images, as a user would give one (read as RGB, as torchvision reads any folder)."""
    from PIL import Image

    counts = [0] * classes
    for image, label in embedded_data.train:
        if label < classes and counts[label] < per_class:
            (root / f"class{label}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(image[0].numpy()).save(root / f"class{label}" / f"{counts[label]}.png")
            counts[label] += 1
        if min(counts) == per_class:
            return root
    raise AssertionError("too few images")


def _space_file(path: Path, channels: int, classes: int) -> Path:
    """The default space for other images, written as the error for mismatched data tells a user to."""
    data = get_space("default").to_json() | {"in_channels": channels, "num_classes": classes}
    path.write_text(json.dumps(FORMATS["search-space"].stamp(data)))
    return path


def test_the_cli_trains_resumes_and_evaluates_a_subnetwork(embedded_data, tmp_path: Path) -> None:
    images, out = _image_folder(embedded_data, tmp_path / "images"), tmp_path / "runs" / "sn"
    space = _space_file(tmp_path / "space.json", channels=3, classes=4)
    train = ["supernet", "train", "--space", space, "--data", images, "--out", out, "--epochs", "1", "--subnets", "1"]
    result = hwnas(*train, "--threads", "1", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert (info["in_channels"], info["num_classes"], info["epochs"]) == (3, 4, 1) and (out / WEIGHTS_FILE).exists()
    assert info["data"]["source"] == str(images.resolve())

    again = hwnas(*train, "--threads", "1")  # as a user reruns it: nothing left to train, the folder written again
    assert again.returncode == 0 and "nothing left to train" in again.stdout and "smallest" in again.stdout, again.stderr

    arch = get_space("default").sample(random.Random(5)).format()
    evaluated = hwnas("supernet", "eval", out, "--arch", arch, "--threads", "1", "--json")  # on the images it was trained on
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert report["arch"] == arch and 0 <= report["val_accuracy"] <= 1 and report["val_images"] > 0


def test_kernel_transform_is_trained_saved_and_loaded_and_a_rerun_without_it_is_refused(embedded_data, tmp_path: Path) -> None:
    images, out = _image_folder(embedded_data, tmp_path / "images"), tmp_path / "sn"
    space = _space_file(tmp_path / "space.json", channels=3, classes=4)
    train = ["supernet", "train", "--space", space, "--data", images, "--out", out, "--epochs", "1", "--subnets", "1"]
    result = hwnas(*train, "--kernel-transform", "--threads", "1", "--json")
    assert result.returncode == 0, result.stderr
    assert "kernel transformation" in json.loads(result.stdout)["method"]["kernel_transform"]
    loaded, _ = load_supernet(out)
    learned = {name: tensor for name, tensor in loaded.state_dict().items() if ".transform_" in name}
    assert loaded.kernel_transform and learned  # trained: moved away from the identity they start as
    assert any(not torch.equal(matrix, torch.eye(len(matrix))) for matrix in learned.values())
    refused = hwnas(*train, "--threads", "1")  # the checkpoint holds a supernet of another kind
    assert refused.returncode != 0 and "from other training" in refused.stderr and "Traceback" not in refused.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["train", "--epochs", "0"], "'epochs'"),
        (["train", "--space", "imagenet"], "unknown search space"),
        (["train", "--set", "mixup=0.2"], "'mixup'"),
        (["train", "--method", "shrinking"], "known: sandwich, progressive"),
    ],
)
def test_cli_mistakes_are_one_error_line_with_exit_code_2(
    tmp_path: Path, args: list[str], fragment: str, hwnas_in_process
) -> None:
    result = hwnas_in_process("supernet", *args, "--out", tmp_path / "sn")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr
    assert not (tmp_path / "sn").exists()


# ---- (e) data of any shape: an RGB image folder makes its own stem and classifier ---------------------------
TINTS = ((1.0, 0.35, 0.2), (0.25, 0.9, 0.35), (0.3, 0.45, 1.0))  # one colour per class: the channels differ


def _rgb_folder(embedded_data, root: Path, per_class: int = 20) -> Path:
    """Embedded grayscale images coloured (each class its tint) and saved as 3-channel PNGs, one folder per class."""
    import numpy as np
    from PIL import Image

    counts = [0] * len(TINTS)
    for image, label in embedded_data.train:
        if label < len(TINTS) and counts[label] < per_class:
            gray = image[0].numpy().astype(np.float32)[..., None]
            rgb = np.clip(gray * np.array(TINTS[label], np.float32), 0, 255).astype(np.uint8)
            (root / f"class{label}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgb, "RGB").save(root / f"class{label}" / f"{counts[label]}.png")
            counts[label] += 1
        if min(counts) == per_class:
            return root
    raise AssertionError("too few images")


def test_an_rgb_image_folder_trains_a_supernet_made_for_it_end_to_end(embedded_data, tmp_path: Path) -> None:
    images, out = _rgb_folder(embedded_data, tmp_path / "rgb"), tmp_path / "sn"
    result = hwnas(
        "supernet", "train", "--data", images, "--out", out, "--epochs", "1", "--subnets", "1", "--threads", "1", "--json"
    )
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    derived = get_space("default").for_data(3, len(TINTS))
    assert info["space"]["name"] == derived.name == "default-3ch-3cls" and info["space_hash"] == derived.hash
    assert (info["in_channels"], info["num_classes"]) == (3, len(TINTS))
    assert "the supernet is of default-3ch-3cls" in result.stderr  # said, not silently changed

    supernet, _ = load_supernet(out)
    stem = next(module for module in supernet.stem.modules() if isinstance(module, torch.nn.Conv2d))
    assert stem.in_channels == 3 and supernet.classifier.weight.shape[0] == len(TINTS)
    network = supernet.extract(supernet.largest_arch()).eval()
    with torch.no_grad():
        assert network(torch.randn(2, 3, 32, 32)).shape == (2, len(TINTS))

    preset_arch = get_space("default").sample(random.Random(2)).format()  # a string of the preset names the same network
    for arch in ("largest", preset_arch):
        evaluated = hwnas("supernet", "eval", out, "--arch", arch, "--threads", "1", "--json")
        assert evaluated.returncode == 0, evaluated.stderr
        report = json.loads(evaluated.stdout)
        assert report["arch"].startswith("default-3ch-3cls:r") and 0 <= report["val_accuracy"] <= 1 and report["val_images"] > 0
    assert report["arch"] == preset_arch.replace("default:", "default-3ch-3cls:", 1)


def test_a_space_file_that_does_not_fit_the_data_is_refused_in_one_line(embedded_data, tmp_path: Path, hwnas_in_process) -> None:
    images = _rgb_folder(embedded_data, tmp_path / "rgb", per_class=10)
    space = _space_file(tmp_path / "space.json", channels=1, classes=10)  # explicit: not made for the data
    result = hwnas_in_process("supernet", "train", "--space", space, "--data", images, "--out", tmp_path / "sn", "--epochs", "1")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "3 channel(s) and 3 classes" in lines[0] and "in_channels 1 and num_classes 10" in lines[0] and "preset" in lines[0]
    assert not (tmp_path / "sn").exists()
