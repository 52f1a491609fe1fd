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
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TypeVar

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
        name, train, test, classes = _read_dataset(_from_path, Path(source))
    total = len(train) + len(test)  # type: ignore[arg-type]
    if total < MIN_IMAGES or len(train) < 2 or len(test) < 1:  # type: ignore[arg-type]
        raise UserError(
            f"data {source} holds {total} image(s): too few to split into training, validation and test images "
            f"(hwnas needs at least {MIN_IMAGES}, in class folders)"
        )
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
    subfolders = {child.name for child in path.iterdir() if child.is_dir()}
    held_out = next((name for name in ("test", "val") if name in subfolders), None)
    if "train" in subfolders and held_out:  # unreadable folders become one line in _read_dataset
        train = _checked_image_folder(path / "train")
        test = _checked_image_folder(path / held_out)
        if train.classes != test.classes:
            raise UserError(f"{path}: train/ and {held_out}/ have different class folders")
        return path.name, _PilAsTensor(train), _PilAsTensor(test), len(train.classes)
    if not subfolders:
        raise UserError(
            f"{path}: not a dataset hwnas can read (no class folders): expected MNIST idx files, cifar-10-batches-py, or "
            "an ImageFolder tree (one folder of images per class, optionally under train/ and val/ or test/)"
        )
    everything = _checked_image_folder(path)
    whole = _PilAsTensor(everything)
    train, test = _split(whole, 0.1, seed=1)
    return path.name, train, test, len(everything.classes)


def _checked_image_folder(path: Path) -> tv_datasets.ImageFolder:
    """An ImageFolder whose every image has been checked (header and chunk checksums, no decoding).

    A corrupt, empty or truncated file is one line naming it, now, rather than a PIL traceback
    in the middle of training.
    """
    from PIL import Image, UnidentifiedImageError

    folder = tv_datasets.ImageFolder(str(path))
    for file, _ in folder.samples:
        try:
            with Image.open(file) as image:
                image.verify()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as error:
            detail = str(error).splitlines()[0] if str(error) else type(error).__name__
            if isinstance(error, UnidentifiedImageError):
                detail = "not an image PIL can identify"
            raise UserError(f"image {file} cannot be read ({detail}); remove or replace it") from None
    return folder


def _split(dataset: Dataset, fraction: float, seed: int) -> tuple[Subset, Subset]:
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist()  # type: ignore[arg-type]
    cut = len(order) - max(1, round(len(order) * fraction))
    return Subset(dataset, order[:cut]), Subset(dataset, order[cut:])
