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
