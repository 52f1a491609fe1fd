"""The supernet that ships (``hwnas/supernets/default``): it loads offline, is of the default space, and its
subnetworks score as trained networks do, not at chance; ``--supernet default`` names it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hwnas.errors import UserError
from hwnas.presets import get_space
from hwnas.supernets import DEFAULT_SUPERNET, resolve_supernet, shipped_supernets


def test_the_default_supernet_ships_and_is_named_by_its_space() -> None:
    assert "default" in shipped_supernets()
    assert resolve_supernet("default") == DEFAULT_SUPERNET


def test_a_folder_of_that_name_wins_and_an_unknown_name_is_one_line(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "default").mkdir()
    assert resolve_supernet("default").resolve() == (tmp_path / "default").resolve()
    with pytest.raises(UserError, match=r"no shipped supernet of that name \(shipped: default\)"):
        resolve_supernet("imagenet")


def test_it_is_the_default_space_trained_on_the_embedded_images_and_its_subnetworks_score_as_trained() -> None:
    from hwnas.data import load_data
    from hwnas.supernet.store import inherited_accuracy, load_supernet

    supernet, info = load_supernet(DEFAULT_SUPERNET)
    assert supernet.space.hash == get_space("default").hash
    assert info["data"]["source"] == "embedded" and info["epochs"] == len(info["curve"]) >= 3
    data = load_data(None).head(2000, 500)
    largest = inherited_accuracy(supernet, supernet.largest_arch(), data)
    smallest = inherited_accuracy(supernet, supernet.smallest_arch(), data)
    assert largest >= 0.78 and smallest >= 0.7, (largest, smallest)  # ten classes: chance is 0.1


def test_supernet_eval_takes_the_shipped_name_and_gives_the_accuracy_its_training_recorded() -> None:
    """``default`` names the shipped folder; the smallest subnetwork's inherited accuracy is the one the last epoch logged
    (same validation images, same BatchNorm images), so what ships is what was trained."""
    done = subprocess.run(
        [sys.executable, "-m", "hwnas", "supernet", "eval", "default", "--arch", "smallest", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    recorded = json.loads((DEFAULT_SUPERNET / "supernet.json").read_text())["curve"][-1]["smallest_val_accuracy"]
    assert result["dataset"] == "fashion-mnist-embedded" and result["val_accuracy"] == pytest.approx(recorded, abs=1e-9)
    assert result["supernet"] == str(DEFAULT_SUPERNET)
