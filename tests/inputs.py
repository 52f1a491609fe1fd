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


def deflated_copy(source: Path, target: Path, grow: dict[str, int] | None = None) -> Path:
    """``source`` (a zip: a torch ``.pt`` or a skops file) re-packed with deflate into ``target``.

    ``grow`` pads named entries with that many bytes of spaces first (a JSON entry stays valid JSON):
    spaces and zeros deflate about 1000x, which is what makes a small file a zip bomb.
    """
    import zipfile

    grow = grow or {}
    with zipfile.ZipFile(source) as plain, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as packed:
        for info in plain.infolist():
            with plain.open(info) as entry, packed.open(info.filename, "w", force_zip64=True) as out:
                out.write(entry.read())
                padding, chunk = grow.get(info.filename.rsplit("/", 1)[-1], 0), b" " * (1 << 20)
                while padding > 0:
                    out.write(chunk[: min(padding, len(chunk))])
                    padding -= len(chunk)
    return target


def torch_zip_bomb(path: Path, megabytes: int = 256) -> Path:
    """A real ``torch.save`` archive of a ``megabytes`` MB tensor of zeros, deflated to a few hundred KB.

    ``torch.load`` inflates it whole: that, a thousand times over the file's size, is the attack.
    """
    import torch

    plain = path.with_name(path.name + ".stored")
    torch.save({"weight": torch.zeros(megabytes * (1 << 20) // 4)}, plain)
    try:
        return deflated_copy(plain, path)
    finally:
        plain.unlink()
