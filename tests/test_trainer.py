from __future__ import annotations

import pytest

from hwnas.errors import UserError
from hwnas.presets import get_space
from hwnas.recipe import Recipe
from hwnas.trainer import train, warmup_cosine

SMALL_ARCH = "default:r32_c16[k3e3]_c32[k3e3]_c48[k3e3h]_c80[k3e3h]"


def test_warmup_then_cosine() -> None:
    factor = warmup_cosine(total_steps=100, warmup_steps=10)
    assert factor(0) == pytest.approx(0.1) and factor(9) == pytest.approx(1.0)
    assert factor(10) == pytest.approx(1.0) and factor(55) == pytest.approx(0.5) and factor(100) == pytest.approx(0.0)
    assert all(factor(s) >= factor(s + 1) for s in range(10, 100))


def quick(embedded_data, recipe: Recipe, seed: int = 0):
    space = get_space("default")
    return train(space, space.parse(SMALL_ARCH), recipe, embedded_data.head(1024, 500), seed=seed, threads=1, progress=False)


def test_training_learns_and_is_deterministic(embedded_data) -> None:
    recipe = Recipe(epochs=2, batch_size=64, lr=0.1)
    first, second = quick(embedded_data, recipe), quick(embedded_data, recipe)
    assert first.val_accuracy > 0.45  # chance is 0.10
    assert first.val_accuracy == second.val_accuracy and first.curve[-1]["train_loss"] == second.curve[-1]["train_loss"]
    assert len(first.curve) == 2 and first.curve[1]["train_loss"] < first.curve[0]["train_loss"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"optimizer": "adamw", "lr": 0.003, "mixup": 0.2, "label_smoothing": 0.1},
        {"optimizer": "rmsprop", "lr": 0.01, "randaugment": 9, "dropout": 0.2, "drop_path": 0.2},
        {"ema": 0.99},
    ],
)
def test_every_recipe_field_is_applied_and_changes_the_result(embedded_data, overrides) -> None:
    base = Recipe(epochs=1, batch_size=64, lr=0.1)
    changed = Recipe(**(base.to_json() | overrides))
    result, baseline = quick(embedded_data, changed), quick(embedded_data, base)
    assert 0.0 <= result.val_accuracy <= 1.0
    assert result.curve != baseline.curve
    assert result.recipe == changed.to_json()


def test_class_count_mismatch_is_a_user_error(embedded_data) -> None:
    space = get_space("proxylessnas")
    with pytest.raises(UserError, match="classes"):
        train(space, space.sample(0), Recipe(), embedded_data, progress=False)


# ---- per-epoch checkpoints and resume ------------------------------------------------------------
class _Stop(Exception):
    """Raised from ``on_epoch`` to end training where a kill would: after an epoch's checkpoint is written."""


def _fit(data, recipe: Recipe, folder, *, init_seed: int = 0, stop_after: int | None = None, seen: list | None = None):
    import torch

    from hwnas.builder import build_model
    from hwnas.trainer import fit_model

    space = get_space("default")
    arch = space.parse(SMALL_ARCH)
    torch.set_num_threads(1)
    torch.manual_seed(init_seed)
    model = build_model(space, arch, dropout=recipe.dropout, drop_path=recipe.drop_path)
    lines: list[str] = []

    def on_epoch(point) -> None:
        if seen is not None:
            seen.append(dict(point))
        if stop_after is not None and point["epoch"] >= stop_after:
            raise _Stop

    curve = fit_model(
        model, data, recipe, 32, 1, seed=3, checkpoint=folder, identity={"arch": SMALL_ARCH}, log=lines.append, on_epoch=on_epoch
    )
    return curve, lines


def _without_seconds(points):
    return [{k: v for k, v in point.items() if k != "seconds"} for point in points]


def test_resumed_training_ends_with_the_same_weights_as_uninterrupted(embedded_data, tmp_path) -> None:
    import torch

    # every source of randomness a recipe has: batch order, RandAugment, MixUp, dropout, stochastic depth, EMA
    recipe = Recipe(epochs=2, batch_size=64, lr=0.05, randaugment=5, mixup=0.2, dropout=0.1, drop_path=0.1, ema=0.9)
    data = embedded_data.head(384, 128)
    whole, lines = _fit(data, recipe, tmp_path / "whole")
    assert lines == [] and (tmp_path / "whole" / "checkpoint.pt").exists()

    before: list = []
    with pytest.raises(_Stop):
        _fit(data, recipe, tmp_path / "killed", stop_after=1, seen=before)
    # another process would start from other random states: the checkpoint must bring back its own
    after: list = []
    resumed, lines = _fit(data, recipe, tmp_path / "killed", init_seed=12345, seen=after)
    assert len(lines) == 1 and "1 epoch(s) done, from epoch 2 of 2" in lines[0]
    assert [p["epoch"] for p in after] == [2]  # epoch 1 was not redone: its point, timing included, is the stored one
    assert resumed.points[0] == before[0] and len(resumed.points) == 2
    assert _without_seconds(resumed.points) == _without_seconds(whole.points)
    expected, got = whole.model.state_dict(), resumed.model.state_dict()
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)

    # a finished checkpoint resumes to nothing left to do, with the same weights
    again, lines = _fit(data, recipe, tmp_path / "killed", init_seed=777)
    assert "nothing left to train" in lines[0] and again.points == resumed.points
    assert all(torch.equal(expected[k], v) for k, v in again.model.state_dict().items())


def test_a_checkpoint_of_other_training_is_refused_in_one_line(embedded_data, tmp_path) -> None:
    recipe = Recipe(epochs=2, batch_size=64, lr=0.1)
    data = embedded_data.head(128, 64)
    with pytest.raises(_Stop):
        _fit(data, recipe, tmp_path, stop_after=1)
    for other, data_used, named in [
        (Recipe(epochs=2, batch_size=64, lr=0.05), data, "recipe.lr 0.1 (now 0.05)"),
        (Recipe(epochs=3, batch_size=64, lr=0.1), data, "recipe.epochs 2 (now 3)"),
        (recipe, embedded_data.head(256, 64), "data.train 128 (now 256)"),
    ]:
        with pytest.raises(UserError, match="is from other training") as caught:
            _fit(data_used, other, tmp_path)
        message = str(caught.value)
        assert named in message and "--fresh" in message and "\n" not in message


def test_a_broken_or_hostile_checkpoint_is_refused_and_runs_no_code(embedded_data, tmp_path) -> None:
    import pickle

    recipe = Recipe(epochs=1, batch_size=64)
    data = embedded_data.head(128, 64)
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"")
    with pytest.raises(UserError, match=r"checkpoint .* is not readable"):
        _fit(data, recipe, tmp_path)

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    import torch

    torch.save({"format": "hwnas-train-checkpoint", "state": Payload()}, path, pickle_module=pickle)
    with pytest.raises(UserError, match="is not readable"):
        _fit(data, recipe, tmp_path)
    assert not marker.exists()

    torch.save({"something": torch.zeros(3)}, path)
    with pytest.raises(UserError, match="not an hwnas training checkpoint"):
        _fit(data, recipe, tmp_path)


def test_colour_images_for_a_grayscale_network_are_refused_unless_asked_and_gray_ones_fill_colour_channels() -> None:
    """No code path turns colour images gray unless its caller asks (``to_gray``): silently, an RGB folder would
    train grayscale networks. Gray images for a colour network are repeated over its channels, losing nothing."""
    import torch

    from hwnas.trainer import Prepared

    colour = [(torch.randint(0, 256, (3, 40, 40), dtype=torch.uint8), 0) for _ in range(2)]
    with pytest.raises(UserError, match="3 channels and the network takes 1") as caught:
        Prepared(colour, 32, 1)
    assert "\n" not in str(caught.value)
    image, label = Prepared(colour, 32, 1, to_gray=True)[0]
    assert image.shape == (1, 32, 32) and label == 0
    gray = [(torch.randint(0, 256, (1, 40, 40), dtype=torch.uint8), 1)]
    image, _ = Prepared(gray, 32, 3)[0]
    assert image.shape == (3, 32, 32) and torch.equal(image[0], image[2])
    assert Prepared(gray, 32, 1)[0][0].shape == (1, 32, 32)


# ---- knowledge distillation (pruning's fine-tuning) -----------------------------------------------
class _AlwaysSays(__import__("torch").nn.Module):
    """A teacher whose logits name one class, whatever the image: what a student taught only by it must learn."""

    def __init__(self, label: int, classes: int = 10) -> None:
        import torch

        super().__init__()
        self.register_buffer("logits", torch.full((classes,), -5.0).index_fill(0, torch.tensor([label]), 5.0))

    def forward(self, images):
        return self.logits.expand(images.shape[0], -1)


def _student():
    from hwnas.builder import build_model

    space = get_space("default")
    return build_model(space, space.parse(SMALL_ARCH))


def test_a_student_taught_by_its_teacher_alone_learns_the_teachers_answers_not_the_labels(embedded_data) -> None:
    import torch

    from hwnas.trainer import Prepared, fit_model

    data = embedded_data.head(512, 300)
    torch.manual_seed(0)
    recipe = Recipe(epochs=1, batch_size=64, lr=0.1, distill=1.0, distill_temperature=2.0)
    taught = fit_model(_student(), data, recipe, 32, 1, teacher=_AlwaysSays(3)).model.eval()
    images = torch.stack([image for image, _ in Prepared(data.val, 32, 1)])
    with torch.no_grad():
        said = taught(images).argmax(1)
    assert (said == 3).float().mean() > 0.95  # the labels say class 3 for a tenth of the images


def test_distillation_weights_the_teachers_soft_labels_against_the_hard_loss() -> None:
    import torch

    from hwnas.trainer import Distiller

    student, teacher, hard = torch.randn(8, 10), torch.randn(8, 10), torch.tensor(1.7)
    assert Distiller(_AlwaysSays(0), 0.0, 4.0).loss(hard, student, teacher) == pytest.approx(1.7)
    assert float(Distiller(_AlwaysSays(0), 1.0, 4.0).loss(hard, student, student)) == pytest.approx(0.0, abs=1e-6)
    soft = float(Distiller(_AlwaysSays(0), 1.0, 4.0).loss(hard, student, teacher))
    half = float(Distiller(_AlwaysSays(0), 0.5, 4.0).loss(hard, student, teacher))
    assert soft > 0 and half == pytest.approx(0.5 * 1.7 + 0.5 * soft, rel=1e-5)


def test_a_recipe_that_distils_without_a_teacher_is_refused_in_one_line(embedded_data) -> None:
    with pytest.raises(UserError, match=r"distill=0.5 needs a teacher network.*set distill=0"):
        quick(embedded_data, Recipe(epochs=1, distill=0.5))
    with pytest.raises(UserError, match=r"'distill'=1.5 out of range"):
        Recipe(distill=1.5)


def test_training_steps_run_channels_last_and_the_network_comes_back_contiguous(embedded_data) -> None:
    """The layout only (:func:`hwnas.accelerator.channels_last`): convolutions of the training steps produce NHWC
    activations (faster on CPU), while validation, and whatever takes the returned network (export, saving), see the
    contiguous layout as before."""
    import torch

    from hwnas.builder import build_model
    from hwnas.trainer import fit_model

    space = get_space("default")
    arch = space.parse(SMALL_ARCH)
    model = build_model(space, arch)
    layouts: list[tuple[bool, bool]] = []

    def record(module: torch.nn.Module, inputs: object, output: torch.Tensor) -> None:
        nhwc = output.is_contiguous(memory_format=torch.channels_last) and not output.is_contiguous()
        layouts.append((torch.is_grad_enabled(), nhwc))  # a training step, not BatchNorm re-estimation

    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.out_channels > 1)
    conv.register_forward_hook(record)
    curve = fit_model(model, embedded_data.head(256, 64), Recipe(epochs=1, batch_size=64), arch.resolution, 1)
    assert {nhwc for step, nhwc in layouts if step} == {True}
    assert {nhwc for step, nhwc in layouts if not step} == {False}
    assert all(p.is_contiguous() for p in curve.model.parameters()) and curve.points[0]["val_accuracy"] > 0.1
