"""Image folders people hand over: links, loops, bombs and lopsided classes (issue 21). Real Pillow images, no mocks."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hwnas.data import MAX_IMAGE_PIXELS, DataWarning, load_data
from hwnas.errors import UserError


def image(path: Path, seed: int, size: int = 8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (size, size), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def folder_of(root: Path, classes: dict[str, int]) -> Path:
    seed = 0
    for name, count in classes.items():
        for index in range(count):
            image(root / name / f"{index}.png", seed := seed + 1)
    return root


def real_paths(dataset: object) -> list[Path]:
    """The real path of every image a split holds (through Subset and the tensor wrapper to the ImageFolder)."""
    indices: list[int] = list(range(len(dataset)))  # type: ignore[arg-type]
    while hasattr(dataset, "indices"):
        indices = [dataset.indices[i] for i in indices]  # type: ignore[attr-defined]
        dataset = dataset.dataset  # type: ignore[attr-defined]
    folder = dataset.dataset  # type: ignore[attr-defined]
    return [Path(folder.samples[i][0]).resolve() for i in indices]


def test_a_link_loop_a_link_out_and_a_repeated_link_each_count_every_image_once(tmp_path: Path) -> None:
    root = folder_of(tmp_path / "data", {"a": 12, "b": 12})
    (root / "a" / "loop").symlink_to(root)  # a folder linking back to the top: followed, 24 images became hundreds
    outside = image(tmp_path / "elsewhere" / "x.png", 99)
    (root / "b" / "outside.png").symlink_to(outside)
    (root / "b" / "again.png").symlink_to(root / "a" / "0.png")  # the same file under another name and class
    with pytest.warns(DataWarning, match=r"2 link\(s\) leading out of the data folder .* 1 image\(s\) named twice"):
        data = load_data(root)
    paths = [*real_paths(data.train), *real_paths(data.val), *real_paths(data.test)]
    assert len(paths) == 24 and len(set(paths)) == 24  # each image once, none in two splits
    assert outside.resolve() not in paths


def test_train_and_val_folders_never_share_an_image(tmp_path: Path) -> None:
    root = tmp_path / "data"
    folder_of(root / "train", {"a": 10, "b": 10})
    folder_of(root / "val", {"a": 2, "b": 2})
    (root / "val" / "a" / "copy.png").symlink_to(root / "train" / "a" / "0.png")
    with pytest.warns(DataWarning, match="named twice"):
        data = load_data(root)
    assert not set(real_paths(data.train)) & set(real_paths(data.test))


@pytest.mark.parametrize("side", [12_000, 20_000])  # Pillow warns at 89 Mpixel and refuses at 179
def test_an_image_too_large_to_decode_is_one_line_and_never_decoded(tmp_path: Path, side: int) -> None:
    root = folder_of(tmp_path / "data", {"a": 10, "b": 10})
    Image.new("1", (side, side)).save(root / "a" / "bomb.png", optimize=True)  # a few kB on disk, 144-400 Mpixel
    assert (root / "a" / "bomb.png").stat().st_size < 200_000 and side * side > MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning must not escape either
        with pytest.raises(UserError, match=rf"bomb\.png is {side} x {side} pixels, more than the 40 Mpixel|too large"):
            load_data(root)


def test_the_bomb_through_the_command_line_is_one_line_and_costs_no_memory(tmp_path: Path) -> None:
    root = folder_of(tmp_path / "data", {"a": 10, "b": 10})
    Image.new("1", (20_000, 20_000)).save(root / "a" / "bomb.png", optimize=True)
    code = (
        "import sys\nfrom hwnas.cli import main\nsys.argv = ['hwnas', 'search', '--device', 'host-ort', '--budget-ms', '5', "
        f"'--data', {str(root)!r}, '--space', 'default']\n"
        "try:\n    main()\nfinally:\n"
        "    hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
        "    print(f'peak {hwm}', file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and "Traceback" not in result.stderr and "DecompressionBomb" not in result.stderr
    assert lines[0].startswith("error: image ") and "pixels" in lines[0]
    assert int(lines[-1].split()[1]) < 1_500_000  # kB: decoding 400 Mpixel would take 400 MB at least beyond torch


ONE_BLOCK = "default:r32_c16[k3e3]_c32[k3e3]_c48[k3e3h]_c80[k3e3sh]"  # (a search would make the space for 1 class)


def test_one_class_and_tiny_classes_train_with_a_warning(tmp_path: Path) -> None:
    with pytest.warns(DataWarning, match="one class only"):
        load_data(folder_of(tmp_path / "one", {"only": 20}))
    with pytest.warns(DataWarning, match=r"2 of 3 classes have fewer than 10 images"):
        load_data(folder_of(tmp_path / "tiny", {"a": 20, "b": 3, "c": 2}))
    result = subprocess.run(  # through the command line: one "warning:" line, then the run goes on (here: to its error)
        [sys.executable, "-m", "hwnas", "train", "--arch", ONE_BLOCK, "--epochs", "1", "--data", str(tmp_path / "one")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("warning: ") and lines[0].endswith("one class only ('only'): every image has the same label")
    assert result.returncode == 2 and lines[-1].startswith("error: data ") and "Traceback" not in result.stderr
