"""Real images with no network: the embedded Fashion-MNIST subset, the full set, or the user's folder.

Every source becomes :class:`ImageSplits`: train / validation / test datasets yielding
``(uint8 C x H x W tensor, label)``. The validation split is carved from the training images by a
fixed-seed permutation, so the same source always gives the same three splits; the test split is
the source's own and is only touched for final reports.

Sources (``load_data(source)``):

``embedded`` (default)   10k train / 2k test class-balanced Fashion-MNIST shipped in the package
``fashion-mnist``        the full 60k / 10k set from Debian's ``dataset-fashion-mnist`` package
a folder                 MNIST-format idx files (``train-images-idx3-ubyte[.gz]``, e.g. torchvision's
                         ``FashionMNIST/raw``), torchvision's ``cifar-10-batches-py``, or an
                         ``ImageFolder`` tree (``train/`` and ``val/`` or ``test/`` of class folders,
                         or class folders directly)
"""

from __future__ import annotations

import gzip
import math
import os
import pickle
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset, Subset
from torchvision import datasets as tv_datasets
from torchvision.transforms import v2

from hwnas.errors import UserError

T = TypeVar("T")

MIN_IMAGES = 10  # fewer cannot be split into training, validation and test images

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


class TensorImages(Dataset):
    """Images held in memory as one uint8 N x C x H x W tensor."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or len(images) != len(labels):
            raise ValueError("TensorImages needs uint8 N x C x H x W images and N labels")
        self.images, self.labels = images, labels.long()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])


class _PilAsTensor(Dataset):
    """Wrap a PIL-yielding dataset (ImageFolder) so it yields uint8 tensors like the others."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset, self.to_tensor = dataset, v2.PILToTensor()

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        try:
            image, label = self.dataset[index]
        except (OSError, SyntaxError, ValueError) as error:  # PIL's errors for a file it cannot decode
            path = self.dataset.samples[index][0] if hasattr(self.dataset, "samples") else f"image {index}"  # type: ignore[attr-defined]
            raise UserError(f"image {path} cannot be read ({type(error).__name__}: {error}); remove or replace it") from None
        return self.to_tensor(image), int(label)


@dataclass(frozen=True)
class ImageSplits:
    name: str
    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    channels: int

    def head(self, train: int, val: int) -> ImageSplits:
        """A smaller copy (first ``train`` / ``val`` images): for quick checks, never for results."""
        return ImageSplits(
            f"{self.name}[:{train}]",
            Subset(self.train, range(min(train, len(self.train)))),  # type: ignore[arg-type]
            Subset(self.val, range(min(val, len(self.val)))),  # type: ignore[arg-type]
            self.test,
            self.num_classes,
            self.channels,
        )


def load_data(source: str | Path | None = None, val_fraction: float = 0.1, split_seed: int = 0) -> ImageSplits:
    """Load a data source into deterministic train / val / test splits (see the module docstring)."""
    if not 0 < val_fraction < 1:
        raise UserError(f"val_fraction must be in (0, 1), got {val_fraction}")
    source = "embedded" if source is None else str(source)
    if source == "embedded":
        name, train, test, classes = "fashion-mnist-embedded", *_embedded(), 10
    elif source == "fashion-mnist":
        if not DEBIAN_FASHION_MNIST.is_dir():
            raise UserError(f"full Fashion-MNIST not found at {DEBIAN_FASHION_MNIST}: apt-get install dataset-fashion-mnist")
        name, (train, test), classes = "fashion-mnist", _read_dataset(_idx_folder, DEBIAN_FASHION_MNIST), 10
    else:
        with warnings.catch_warnings(record=True) as noticed:  # said only once the data is known to load
            warnings.simplefilter("always", DataWarning)
            name, train, test, classes = _read_dataset(_from_path, Path(source))
    total = len(train) + len(test)  # type: ignore[arg-type]
    if total < MIN_IMAGES or len(train) < 2 or len(test) < 1:  # type: ignore[arg-type]
        raise UserError(
            f"data {source} holds {total} image(s): too few to split into training, validation and test images "
            f"(hwnas needs at least {MIN_IMAGES}, in class folders)"
        )
    for notice in noticed if source not in ("embedded", "fashion-mnist") else []:
        warnings.warn(notice.message, notice.category, stacklevel=2)
    train, val = _split(train, val_fraction, split_seed)
    channels = int(train[0][0].shape[0])
    return ImageSplits(name, train, val, test, classes, channels)


def _read_dataset(reader: Callable[[Path], T], path: Path) -> T:
    """Run a dataset reader; a truncated, empty or foreign file is the user's data, not our bug: one line."""
    try:
        return reader(path)
    except UserError:
        raise
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError, KeyError, IndexError) as error:
        detail = str(error).splitlines()[0] if str(error) else "no detail"
        raise UserError(f"{path}: not a dataset hwnas can read ({type(error).__name__}: {detail})") from None


def _embedded() -> tuple[TensorImages, TensorImages]:
    with resources.files("hwnas.datasets").joinpath("fashion_mnist_subset.npz").open("rb") as handle:
        arrays = np.load(handle, allow_pickle=False)
        return (
            _tensor_images(arrays["train_images"], arrays["train_labels"]),
            _tensor_images(arrays["test_images"], arrays["test_labels"]),
        )


def _tensor_images(images: np.ndarray, labels: np.ndarray) -> TensorImages:
    """Grayscale N x H x W or colour N x H x W x C arrays to a channels-first TensorImages."""
    tensor = torch.from_numpy(np.array(images, copy=True))
    tensor = tensor.unsqueeze(1) if tensor.ndim == 3 else tensor.permute(0, 3, 1, 2).contiguous()
    return TensorImages(tensor, torch.from_numpy(np.asarray(labels, dtype=np.int64)))


def _from_path(path: Path) -> tuple[str, Dataset, Dataset, int]:
    if not path.exists():
        raise UserError(f"data path {path} does not exist")
    if not path.is_dir():
        raise UserError(f"data path {path} is not a folder")
    if next(path.rglob("train-images-idx3-ubyte*"), None) is not None:
        train, test = _idx_folder(path)
        return path.name, train, test, int(train.labels.max()) + 1
    cifar = path if path.name == "cifar-10-batches-py" else path / "cifar-10-batches-py"
    if cifar.is_dir():
        return "cifar10", _cifar(cifar.parent, True), _cifar(cifar.parent, False), 10
    return _image_folder(path)


def _idx_folder(path: Path) -> tuple[TensorImages, TensorImages]:
    def read(stem: str, offset: int) -> np.ndarray:
        file = next(iter(sorted(path.rglob(f"{stem}*"))), None)
        if file is None:
            raise UserError(f"{path}: MNIST-format folder lacks {stem}[.gz]")
        opener = gzip.open if file.suffix == ".gz" else open
        with opener(file, "rb") as handle:
            return np.frombuffer(handle.read(), np.uint8, offset=offset)

    def images(stem: str) -> np.ndarray:
        return read(stem, 16).reshape(-1, 28, 28)

    return (
        _tensor_images(images("train-images-idx3-ubyte"), read("train-labels-idx1-ubyte", 8)),
        _tensor_images(images("t10k-images-idx3-ubyte"), read("t10k-labels-idx1-ubyte", 8)),
    )


def _cifar(root: Path, train: bool) -> TensorImages:
    dataset = tv_datasets.CIFAR10(str(root), train=train, download=False)
    return _tensor_images(dataset.data, np.asarray(dataset.targets))


def _image_folder(path: Path) -> tuple[str, Dataset, Dataset, int]:
    subfolders = {child.name for child in path.iterdir() if child.is_dir() and not child.is_symlink()}
    held_out = next((name for name in ("test", "val") if name in subfolders), None)
    seen: set[Path] = set()  # real paths: each image once, whichever folder or link names it
    if "train" in subfolders and held_out:  # unreadable folders become one line in _read_dataset
        train = _checked_image_folder(path / "train", path, seen)
        test = _checked_image_folder(path / held_out, path, seen)
        if train.classes != test.classes:
            raise UserError(f"{path}: train/ and {held_out}/ have different class folders")
        _warn_about_classes(path, train)
        return path.name, _PilAsTensor(train), _PilAsTensor(test), len(train.classes)
    if not subfolders:
        raise UserError(
            f"{path}: not a dataset hwnas can read (no class folders): expected MNIST idx files, cifar-10-batches-py, or "
            "an ImageFolder tree (one folder of images per class, optionally under train/ and val/ or test/)"
        )
    everything = _checked_image_folder(path, path, seen)
    _warn_about_classes(path, everything)
    whole = _PilAsTensor(everything)
    train, test = _split(whole, 0.1, seed=1)
    return path.name, train, test, len(everything.classes)


MAX_IMAGE_PIXELS = 40_000_000  # an image larger than this (40 Mpixel, ~6300 x 6300) is refused before it is decoded


class _TreeImageFolder(tv_datasets.ImageFolder):
    """torchvision's ``ImageFolder``, walked without following links out of the data tree or back into it.

    torchvision walks with ``followlinks=True``: a link from a class folder to its parent made 6 images 486, and
    the same image landed in both the training and the validation split. Here folders are never entered through a
    link, a linked file counts only when it leads inside the tree, and every image counts once by its real path
    (``seen`` is shared by the folders of one data source, so train/ and val/ cannot hold the same file).
    """

    def __init__(self, folder: Path, tree: Path, seen: set[Path]) -> None:
        self.tree, self.seen, self.links_skipped, self.repeats_skipped = tree.resolve(), seen, 0, 0
        super().__init__(str(folder))

    def find_classes(self, directory: str | Path) -> tuple[list[str], dict[str, int]]:
        entries = list(os.scandir(directory))
        self.links_skipped += sum(entry.is_symlink() and entry.is_dir() for entry in entries)
        classes = sorted(entry.name for entry in entries if entry.is_dir(follow_symlinks=False))
        if not classes:
            raise FileNotFoundError(f"Couldn't find any class folder in {directory}.")
        return classes, {name: index for index, name in enumerate(classes)}

    def make_dataset(  # type: ignore[override]
        self, directory: str | Path, class_to_idx: dict[str, int], extensions: Any = None, is_valid_file: Any = None,
        allow_empty: bool = False,
    ) -> list[tuple[str, int]]:  # fmt: skip
        samples = []
        for name, index in sorted(class_to_idx.items()):
            samples += [(str(file), index) for file in self._images(Path(directory) / name)]
        if not samples and not allow_empty:
            raise FileNotFoundError(f"Found no valid file in {directory}.")
        return samples

    def _images(self, folder: Path) -> list[Path]:
        found = []
        for parent, folders, files in os.walk(folder, followlinks=False):
            folders.sort()
            self.links_skipped += sum((Path(parent) / name).is_symlink() for name in folders)
            for name in sorted(files):
                path = Path(parent) / name
                if not name.lower().endswith(tv_datasets.folder.IMG_EXTENSIONS):
                    continue
                real = path.resolve()
                if path.is_symlink() and self.tree not in real.parents:
                    self.links_skipped += 1
                elif real in self.seen or not real.is_file():
                    self.repeats_skipped += real in self.seen
                else:
                    self.seen.add(real)
                    found.append(path)
        return found


def _checked_image_folder(path: Path, tree: Path, seen: set[Path]) -> tv_datasets.ImageFolder:
    """An ImageFolder whose every image has been checked (header, size and chunk checksums, no decoding).

    A corrupt, empty or truncated file, or one too large to decode (a decompression bomb), is one line naming it,
    now, rather than a PIL traceback (or a machine out of memory) in the middle of training.
    """
    folder = _TreeImageFolder(path, tree, seen)
    if folder.links_skipped or folder.repeats_skipped:
        warnings.warn(
            f"{path}: {folder.links_skipped} link(s) leading out of the data folder (or to a folder) not followed, "
            f"{folder.repeats_skipped} image(s) named twice counted once",
            DataWarning,
            stacklevel=2,
        )
    for file, _ in folder.samples:
        _check_image(file)
    return folder


def _check_image(file: str) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size is judged below, in one line
            with Image.open(file) as image:
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise UserError(
                        f"image {file} is {width} x {height} pixels, more than the {MAX_IMAGE_PIXELS / 1e6:.0f} Mpixel hwnas "
                        "decodes (a decompression bomb, or a photo to shrink first); remove or resize it"
                    )
                image.verify()
    except Image.DecompressionBombError as error:
        raise UserError(f"image {file} is too large to decode ({error}); remove or resize it") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as error:
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        if isinstance(error, UnidentifiedImageError):
            detail = "not an image PIL can identify"
        raise UserError(f"image {file} cannot be read ({detail}); remove or replace it") from None


class DataWarning(UserWarning):
    """Data that trains, but probably not as the user means (shown as one ``warning:`` line by the CLI)."""


def _warn_about_classes(path: Path, folder: tv_datasets.ImageFolder, val_fraction: float = 0.1) -> None:
    """One class, or classes too small to have an image in the validation split: said, not refused."""
    counts = Counter(label for _, label in folder.samples)
    if len(folder.classes) == 1:
        warnings.warn(
            f"{path}: one class only ({folder.classes[0]!r}): every image has the same label", DataWarning, stacklevel=2
        )
    needed = math.ceil(1 / val_fraction)
    small = [name for index, name in enumerate(folder.classes) if counts[index] < needed]
    if small and len(folder.classes) > 1:
        warnings.warn(
            f"{path}: {len(small)} of {len(folder.classes)} classes have fewer than {needed} images (e.g. {small[0]!r}), "
            "too few for the validation split to hold one of each: accuracy on them is not measured",
            DataWarning,
            stacklevel=2,
        )


def _split(dataset: Dataset, fraction: float, seed: int) -> tuple[Subset, Subset]:
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist()  # type: ignore[arg-type]
    cut = len(order) - max(1, round(len(order) * fraction))
    return Subset(dataset, order[:cut]), Subset(dataset, order[cut:])
