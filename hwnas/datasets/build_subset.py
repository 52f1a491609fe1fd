"""Rebuild fashion_mnist_subset.npz from Debian's dataset-fashion-mnist (run once; output is committed).

Class-balanced: 1,000 training and 200 test images per class, chosen with a fixed seed.
"""

import gzip
from pathlib import Path

import numpy as np

SOURCE = Path("/usr/share/datasets/fashion-mnist")
TARGET = Path(__file__).with_name("fashion_mnist_subset.npz")


def read(name: str, offset: int) -> np.ndarray:
    with gzip.open(SOURCE / name) as handle:
        return np.frombuffer(handle.read(), np.uint8, offset=offset)


def balanced(images: np.ndarray, labels: np.ndarray, per_class: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    chosen = np.concatenate([rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in range(10)])
    chosen = rng.permutation(chosen)
    return images[chosen], labels[chosen]


def main() -> None:
    rng = np.random.default_rng(20261122)
    train_images = read("train-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
    train_labels = read("train-labels-idx1-ubyte.gz", 8)
    test_images = read("t10k-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
    test_labels = read("t10k-labels-idx1-ubyte.gz", 8)
    train_x, train_y = balanced(train_images, train_labels, 1000, rng)
    test_x, test_y = balanced(test_images, test_labels, 200, rng)
    np.savez_compressed(TARGET, train_images=train_x, train_labels=train_y, test_images=test_x, test_labels=test_y)


if __name__ == "__main__":
    main()
