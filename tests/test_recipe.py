from __future__ import annotations

import json
from pathlib import Path

import pytest

from hwnas.errors import UserError
from hwnas.recipe import Recipe


def test_overrides_convert_types() -> None:
    recipe = Recipe().with_overrides(["lr=0.05", "epochs=3", "optimizer=adamw", "mixup=0.2", "randaugment=9"])
    assert (recipe.lr, recipe.epochs, recipe.optimizer, recipe.mixup, recipe.randaugment) == (0.05, 3, "adamw", 0.2, 9)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("learning_rate=0.1", "unknown recipe field 'learning_rate'"),
        ("lr=fast", "cannot read 'fast'"),
        ("lr=20", "out of range"),
        ("epochs=0", "out of range"),
        ("label_smoothing=0.9", "out of range"),
        ("optimizer=lion", "optimizer 'lion' unknown"),
        ("lr", "expected key=value"),
    ],
)
def test_bad_overrides_are_user_errors(override: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        Recipe().with_overrides([override])


def test_json_and_toml_files(tmp_path: Path) -> None:
    recipe = Recipe(optimizer="rmsprop", lr=0.01, epochs=2, ema=0.999)
    json_file = tmp_path / "r.json"
    json_file.write_text(json.dumps(recipe.to_json()))
    assert Recipe.from_file(json_file) == recipe
    toml_file = tmp_path / "r.toml"
    toml_file.write_text('optimizer = "rmsprop"\nlr = 0.01\nepochs = 2\nema = 0.999\n')
    assert Recipe.from_file(toml_file) == recipe


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot read"):
        Recipe.from_file(tmp_path / "missing.json")
    broken = tmp_path / "broken.toml"
    broken.write_text("lr = = 1")
    with pytest.raises(UserError, match="malformed"):
        Recipe.from_file(broken)
    unknown = tmp_path / "unknown.json"
    unknown.write_text('{"momentum": 0.9}')
    with pytest.raises(UserError, match="unknown recipe field 'momentum'"):
        Recipe.from_file(unknown)


def test_recipes_are_frozen_and_hashable() -> None:
    assert len({Recipe(), Recipe(), Recipe(lr=0.1)}) == 2
    with pytest.raises(AttributeError):
        Recipe().lr = 1.0  # type: ignore[misc]
