"""Small real inputs the slow tests and ``benchmarks/kill_harness.py`` drive the CLI with."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

SMALL_ARCH = "default:r32_c16[k3e3]_c32[k3e3]_c48[k3e3h]_c80[k3e3h]"


def write_idx_folder(folder: Path, train: int, test: int) -> Path:
    """An MNIST-format data folder (``--data``) with the first images of the embedded Fashion-MNIST subset."""
    with resources.files("hwnas.datasets").joinpath("fashion_mnist_subset.npz").open("rb") as handle:
        arrays = dict(np.load(handle))
    folder.mkdir(parents=True)
    for stem, images, labels in (
        ("train", arrays["train_images"][:train], arrays["train_labels"][:train]),
        ("t10k", arrays["test_images"][:test], arrays["test_labels"][:test]),
    ):
        header = np.array([2051, len(images), 28, 28], dtype=">i4").tobytes()
        (folder / f"{stem}-images-idx3-ubyte").write_bytes(header + images.astype(np.uint8).tobytes())
        header = np.array([2049, len(labels)], dtype=">i4").tobytes()
        (folder / f"{stem}-labels-idx1-ubyte").write_bytes(header + labels.astype(np.uint8).tobytes())
    return folder
