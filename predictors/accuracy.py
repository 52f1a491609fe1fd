"""FBNetV3's accuracy predictor: an (architecture, recipe) encoder pre-trained on free labels.

Measuring accuracy means training a network, so labelled pairs are few. FBNetV3 (Dai et al.,
2021) gets more out of them by first teaching the encoder what architectures *are*, using
labels that cost nothing: the FLOPs and parameter count of thousands of sampled candidates.
Then an accuracy head on top of the encoder is fitted to the measured (arch, recipe, accuracy)
pairs, first with the encoder frozen, then all of it with a smaller learning rate. Without
pre-training the same network and schedule start from a random encoder, so comparing the two at
the same number of labelled pairs isolates what pre-training buys.

The encoding is fixed-length for a space: resolution, per-stage width and depth one-hots, one
slot per possible block (present, kernel, expansion, SE, activation), and the recipe (optimizer
one-hot, log learning rate and weight decay, the rest scaled to about [0, 1]).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator
from torch import nn

from hwnas.arch import Arch
from hwnas.builder import arch_cost
from hwnas.errors import UserError
from hwnas.fileio import check_archive, read_json
from hwnas.formats import FORMATS
from hwnas.predictors.registry import PREDICTORS
from hwnas.recipe import OPTIMIZERS, Recipe
from hwnas.space import SearchSpace

RECIPE_FEATURES = 14


def _one_hot(value: Any, choices: Sequence[Any]) -> list[float]:
    return [float(value == choice) for choice in choices]


def encode(space: SearchSpace, arch: Arch, recipe: Recipe) -> np.ndarray:
    """The fixed-length vector of ``(arch, recipe)`` for ``space`` (see the module docstring)."""
    space.validate(arch)
    values = _one_hot(arch.resolution, space.resolutions) if len(space.resolutions) > 1 else []
    for stage, spec in zip(arch.stages, space.stages, strict=True):
        values += _one_hot(stage.width, spec.widths) + _one_hot(stage.depth, spec.depths)
        for slot in range(max(spec.depths)):
            block = stage.blocks[slot] if slot < stage.depth else None
            values.append(float(block is not None))
            values += _one_hot(block.kernel if block else None, spec.kernels)
            values += _one_hot(block.expansion if block else None, spec.expansions)
            if len(spec.se) > 1:
                values.append(float(bool(block and block.se)))
            if len(spec.acts) > 1:
                values.append(float(bool(block and block.act == "hswish")))
    return np.asarray(values + encode_recipe(recipe), dtype=np.float32)


def encode_recipe(recipe: Recipe) -> list[float]:
    values = _one_hot(recipe.optimizer, OPTIMIZERS)
    values += [
        (math.log10(recipe.lr) + 3) / 3,
        (math.log10(recipe.weight_decay + 1e-7) + 7) / 6,
        math.log2(recipe.epochs) / 8,
        math.log2(recipe.batch_size) / 12,
        recipe.warmup_epochs,
        recipe.label_smoothing * 2,
        min(recipe.mixup, 1.0),
        recipe.dropout,
        recipe.drop_path,
        -math.log10(1 - recipe.ema) / 5 if recipe.ema > 0 else 0.0,
        recipe.randaugment / 30,
    ]
    assert len(values) == RECIPE_FEATURES
    return values


def sample_recipe(rng: random.Random, epochs: int = 1) -> Recipe:
    """A random recipe of FBNetV3's joint space, with ranges that train at all in ``epochs`` epochs."""
    optimizer = rng.choice(OPTIMIZERS)
    lr_range = {"sgd": (0.02, 0.8), "rmsprop": (1e-4, 1e-2), "adamw": (3e-4, 1e-2)}[optimizer]
    wd_range = (1e-4, 0.1) if optimizer == "adamw" else (1e-6, 1e-3)
    return Recipe(
        optimizer=optimizer,
        lr=round(_log_uniform(rng, *lr_range), 6),
        weight_decay=round(_log_uniform(rng, *wd_range), 8),
        epochs=epochs,
        batch_size=rng.choice((64, 128, 256)),
        warmup_epochs=round(rng.uniform(0.0, 0.3), 3),
        label_smoothing=rng.choice((0.0, 0.1)),
        mixup=rng.choice((0.0, 0.0, 0.2)),
        dropout=round(rng.uniform(0.0, 0.3), 3),
        drop_path=round(rng.uniform(0.0, 0.2), 3),
        ema=rng.choice((0.0, 0.0, 0.9)),
        randaugment=rng.choice((0, 0, 5, 9)),
    )


def _log_uniform(rng: random.Random, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


class _Net(nn.Module):
    """Encoder over the whole (arch, recipe) vector, a proxy head (FLOPs, params) and an accuracy head.

    The accuracy head also sees the recipe features directly: FLOPs and params do not depend on
    the recipe, so pre-training teaches the encoder to ignore it, and a head that saw only the
    embedding could not learn how the recipe moves accuracy (measured: it ranked worse than a
    random encoder). The embedding carries the architecture; the recipe bypasses it.
    """

    def __init__(self, inputs: int, hidden: int, embedding: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, embedding), nn.ReLU())
        self.proxy_head = nn.Linear(embedding, 2)  # standardised log FLOPs and log params
        self.accuracy_head = nn.Sequential(nn.Linear(embedding + RECIPE_FEATURES, 32), nn.ReLU(), nn.Linear(32, 1))

    def accuracy(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised accuracy of encoded pairs: head over [embedding, recipe features]."""
        return self.accuracy_head(torch.cat([self.encoder(x), x[:, -RECIPE_FEATURES:]], dim=1))


class AccuracyPredictor(BaseEstimator):
    """Encoder MLP + accuracy head (FBNetV3). ``pretrain_samples=0`` turns pre-training off.

    Saved like every predictor (:func:`hwnas.predictors.io.save_predictor`): the network as a torch
    state dict (read back with ``weights_only=True``), the rest in the versioned JSON sidecar.
    """

    kind: ClassVar[str] = "accuracy-fbnetv3"
    fitted_attributes: ClassVar[tuple[str, ...]] = ("net_", "acc_mean_", "acc_std_", "n_train_")

    def __init__(
        self,
        space: SearchSpace,
        hidden: int = 128,
        embedding: int = 64,
        pretrain_samples: int = 4000,
        pretrain_epochs: int = 40,
        head_epochs: int = 150,
        finetune_epochs: int = 150,
        lr: float = 3e-3,
        finetune_lr: float = 5e-4,
        weight_decay: float = 1e-3,
        seed: int = 0,
    ) -> None:
        self.space = space
        self.hidden = hidden
        self.embedding = embedding
        self.pretrain_samples = pretrain_samples
        self.pretrain_epochs = pretrain_epochs
        self.head_epochs = head_epochs
        self.finetune_epochs = finetune_epochs
        self.lr = lr
        self.finetune_lr = finetune_lr
        self.weight_decay = weight_decay
        self.seed = seed

    def _encode(self, archs: Sequence[Arch], recipes: Sequence[Recipe]) -> torch.Tensor:
        if len(archs) != len(recipes):
            raise UserError(f"got {len(archs)} architectures but {len(recipes)} recipes")
        return torch.from_numpy(np.stack([encode(self.space, a, r) for a, r in zip(archs, recipes, strict=True)]))

    def _new_net(self) -> _Net:
        torch.manual_seed(self.seed)
        inputs = len(encode(self.space, self.space.sample(0), Recipe()))
        return _Net(inputs, self.hidden, self.embedding)

    def pretrain(self) -> AccuracyPredictor:
        """Fit encoder + proxy head to log FLOPs and log params of sampled (arch, recipe) pairs: free labels."""
        self.net_ = self._new_net()
        self.pretrain_loss_: float | None = None
        if self.pretrain_samples <= 0:
            return self
        rng = random.Random(self.seed + 1)
        archs = [self.space.sample(rng) for _ in range(self.pretrain_samples)]
        recipes = [sample_recipe(rng) for _ in archs]
        costs = [arch_cost(self.space, arch) for arch in archs]
        labels = np.log([[c.flops, c.params] for c in costs])
        labels = (labels - labels.mean(0)) / (labels.std(0) + 1e-9)
        x, y = self._encode(archs, recipes), torch.tensor(labels, dtype=torch.float32)
        params = [*self.net_.encoder.parameters(), *self.net_.proxy_head.parameters()]
        self.pretrain_loss_ = _train(
            lambda xb: self.net_.proxy_head(self.net_.encoder(xb)),
            params,
            x,
            y,
            self.pretrain_epochs,
            self.lr,
            1e-5,
            batch=128,
            seed=self.seed,
        )
        return self

    def fit(self, archs: Sequence[Arch], recipes: Sequence[Recipe], accuracy: Sequence[float]) -> AccuracyPredictor:
        """Pre-train (unless done or off), then the accuracy head frozen-encoder first, then everything."""
        if not hasattr(self, "net_"):
            self.pretrain()
        x = self._encode(archs, recipes)
        acc = np.asarray(accuracy, dtype=np.float64)
        self.acc_mean_, self.acc_std_ = float(acc.mean()), float(acc.std() + 1e-9)
        y = torch.tensor((acc - self.acc_mean_) / self.acc_std_, dtype=torch.float32).unsqueeze(1)

        forward = self.net_.accuracy
        head = list(self.net_.accuracy_head.parameters())
        _train(
            forward, head, x, y, self.head_epochs, self.lr, self.weight_decay, batch=16, seed=self.seed, frozen=self.net_.encoder
        )
        self.fit_loss_ = _train(
            forward,
            [*self.net_.encoder.parameters(), *head],
            x,
            y,
            self.finetune_epochs,
            self.finetune_lr,
            self.weight_decay,
            batch=16,
            seed=self.seed,
        )
        self.n_train_ = len(acc)
        return self

    def predict(self, archs: Sequence[Arch], recipes: Sequence[Recipe]) -> np.ndarray:
        if not hasattr(self, "acc_mean_"):
            raise UserError("AccuracyPredictor is not fitted yet")
        with torch.no_grad():
            out = self.net_.accuracy(self._encode(archs, recipes)).squeeze(1).numpy()
        return out.astype(np.float64) * self.acc_std_ + self.acc_mean_

    # ---- persistence (hwnas.predictors.io writes the sidecar and checks it on load) -----------
    def save(self, path: Path, extra: dict[str, Any] | None = None) -> Path:
        from hwnas.predictors.io import save_predictor

        return save_predictor(self, path, extra=extra)[0]

    @classmethod
    def load(cls, path: Path, space: SearchSpace) -> AccuracyPredictor:
        from hwnas.predictors.io import load_predictor

        return load_predictor(path, space_hash=space.hash, space=space)

    def sidecar_fields(self) -> dict[str, Any]:
        return {
            "space": self.space.name,
            "space_hash": self.space.hash,
            "search_space": self.space.to_json(),
            "acc_mean": self.acc_mean_,
            "acc_std": self.acc_std_,
            "n_train": self.n_train_,
        }

    def write_model(self, path: Path) -> None:
        torch.save(self.net_.state_dict(), path)

    @classmethod
    def read_model(cls, path: Path, sidecar: dict[str, Any], space: SearchSpace | None = None) -> AccuracyPredictor:
        check_archive(path, "accuracy predictor")
        try:
            space = space or SearchSpace.from_json(sidecar["search_space"])
            predictor = cls(space, **sidecar["hyperparameters"])
            predictor.net_ = predictor._new_net()
            predictor.net_.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            predictor.acc_mean_, predictor.acc_std_ = float(sidecar["acc_mean"]), float(sidecar["acc_std"])
            predictor.n_train_ = int(sidecar["n_train"])
        except (KeyError, TypeError, ValueError, RuntimeError, EOFError) as error:
            raise UserError(f"accuracy predictor {path} does not load ({str(error).splitlines()[0]})") from None
        return predictor


PREDICTORS.register(AccuracyPredictor.kind, AccuracyPredictor)


def _train(
    forward: Any,
    params: list[nn.Parameter],
    x: torch.Tensor,
    y: torch.Tensor,
    epochs: int,
    lr: float,
    weight_decay: float,
    batch: int,
    seed: int,
    frozen: nn.Module | None = None,
) -> float:
    """Plain AdamW + MSE; ``frozen`` gets no gradient. Returns the last epoch's mean loss."""
    if frozen is not None:
        frozen.requires_grad_(False)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    loss_sum = 0.0
    for _ in range(epochs):
        order, loss_sum = torch.randperm(len(x), generator=generator), 0.0
        for start in range(0, len(x), batch):
            index = order[start : start + batch]
            loss = nn.functional.mse_loss(forward(x[index]), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach()) * len(index)
    if frozen is not None:
        frozen.requires_grad_(True)
    return loss_sum / max(len(x), 1)


def read_pairs(path: Path, space: SearchSpace) -> tuple[list[Arch], list[Recipe], list[float], dict[str, Any]]:
    """Measured (arch, recipe, accuracy) pairs written by ``benchmarks/predictor_collect_pairs.py``."""
    data = read_json(Path(path), "accuracy pairs")
    if not isinstance(data, dict):
        raise UserError(f"accuracy pairs {path} must hold a JSON object as benchmarks/predictor_collect_pairs.py writes")
    FORMATS["accuracy-pairs"].check(data, path)
    if data.get("space_hash") != space.hash:
        raise UserError(f"accuracy pairs {path} are of space hash {data.get('space_hash')}, not {space.name!r} hash {space.hash}")
    pairs = data.get("pairs", [])
    return (
        [space.parse(p["arch"]) for p in pairs],
        [Recipe.from_json(p["recipe"]) for p in pairs],
        [float(p["val_accuracy"]) for p in pairs],
        data.get("how", {}),
    )
