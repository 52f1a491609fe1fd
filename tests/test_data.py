from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hwnas.data import load_data
from hwnas.errors import UserError


def labels_of(dataset) -> list[int]:
    return [dataset[i][1] for i in range(len(dataset))]


def test_embedded_subset_is_balanced_and_split_deterministically(embedded_data) -> None:
    data = embedded_data
    assert (len(data.train), len(data.val), len(data.test)) == (9000, 1000, 2000)
    assert data.channels == 1 and data.num_classes == 10
    image, label = data.train[0]
    assert image.dtype.is_floating_point is False and tuple(image.shape) == (1, 28, 28) and 0 <= label < 10
    assert set(Counter(labels_of(data.test)).values()) == {200}
    assert data.train.indices == load_data().train.indices
    assert not set(data.train.indices) & set(data.val.indices)


def test_embedded_images_are_real_pictures(embedded_data) -> None:
    images = np.stack([embedded_data.test[i][0].numpy() for i in range(200)])
    assert images.std() > 40 and (images == 0).mean() > 0.2  # Fashion-MNIST: objects on black


def write_idx(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    header = np.array([0x803, len(images), 28, 28], dtype=">i4").tobytes()
    with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as handle:
        handle.write(header + images.astype(np.uint8).tobytes())
    with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as handle:
        handle.write(np.array([0x801, len(labels)], dtype=">i4").tobytes() + labels.astype(np.uint8).tobytes())


def test_mnist_format_folder(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    write_idx(raw, "train", rng.integers(0, 255, (50, 28, 28)), np.arange(50) % 5)
    write_idx(raw, "t10k", rng.integers(0, 255, (10, 28, 28)), np.arange(10) % 5)
    data = load_data(tmp_path)
    assert (len(data.train) + len(data.val), len(data.test), data.num_classes) == (50, 10, 5)


def test_image_folder_with_train_and_val(tmp_path: Path) -> None:
    for split, count in (("train", 6), ("val", 2)):
        for name in ("cat", "dog"):
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                Image.new("RGB", (20, 16), (index * 30, 0, 0)).save(folder / f"{index}.png")
    data = load_data(tmp_path)
    assert data.num_classes == 2 and data.channels == 3 and len(data.test) == 4
    assert tuple(data.train[0][0].shape) == (3, 16, 20)


@pytest.mark.parametrize("bad", ["does/not/exist", "pyproject.toml"])
def test_bad_paths_are_user_errors(bad: str) -> None:
    with pytest.raises(UserError):
        load_data(bad)


def test_empty_folder_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not a dataset"):
        load_data(tmp_path)
