"""Recipe: the training half of FBNetV3's joint architecture + recipe space.

Frozen and validated on construction, so a recipe that exists is one the trainer can apply.
Round-trips through JSON; overrides come as ``key=value`` strings from the command line.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from hwnas.errors import UserError
from hwnas.fileio import read_json, read_toml
from hwnas.formats import FORMATS

OPTIMIZERS = ("sgd", "rmsprop", "adamw")

# field -> (lowest, highest) allowed value; a range check is what turns a typo into an error
_RANGES: dict[str, tuple[float, float]] = {
    "lr": (1e-6, 10.0),
    "weight_decay": (0.0, 1.0),
    "epochs": (1, 1000),
    "batch_size": (1, 4096),
    "warmup_epochs": (0.0, 100.0),
    "label_smoothing": (0.0, 0.5),
    "mixup": (0.0, 10.0),
    "dropout": (0.0, 0.9),
    "drop_path": (0.0, 0.9),
    "ema": (0.0, 0.99999),
    "randaugment": (0, 30),
    "distill": (0.0, 1.0),
    "distill_temperature": (1.0, 20.0),
}


@dataclass(frozen=True)
class Recipe:
    """How to train a candidate.

    ``mixup`` is the Beta(alpha, alpha) parameter (0: off); ``ema`` the decay of an exponential
    moving average of the weights that is evaluated instead of the raw weights (0: off);
    ``randaugment`` the RandAugment magnitude out of 30 (0: off); ``drop_path`` the stochastic-depth
    rate of the last block. ``distill`` is the weight of a teacher's softened logits in the loss (Hinton et al.'s
    knowledge distillation, at ``distill_temperature``; 0: off): only training that has a teacher uses it (fine-tuning
    a pruned network, taught by the unpruned one).
    """

    optimizer: str = "sgd"
    lr: float = 0.2
    weight_decay: float = 4e-5
    epochs: int = 1
    batch_size: int = 128
    warmup_epochs: float = 0.2
    label_smoothing: float = 0.0
    mixup: float = 0.0
    dropout: float = 0.0
    drop_path: float = 0.0
    ema: float = 0.0
    randaugment: int = 0
    distill: float = 0.0
    distill_temperature: float = 4.0

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"recipe optimizer {self.optimizer!r} unknown; expected one of {OPTIMIZERS}")
        for name, (low, high) in _RANGES.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise UserError(f"recipe field {name!r} must be a number, got {value!r}")
            if not low <= value <= high:
                raise UserError(f"recipe field {name!r}={value} out of range [{low}, {high}]")
        for name in ("epochs", "batch_size", "randaugment"):
            if not isinstance(getattr(self, name), int):
                raise UserError(f"recipe field {name!r} must be a whole number, got {getattr(self, name)!r}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Recipe:
        if not isinstance(data, dict):
            raise UserError(f"a recipe is a mapping of field names to values, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"unknown recipe field {unknown[0]!r}; known: {', '.join(sorted(known))}")
        return cls(**data)

    @classmethod
    def from_file(cls, path: Path) -> Recipe:
        """Read a recipe from JSON or TOML (by extension)."""
        reader = read_toml if str(path).endswith(".toml") else read_json
        data = reader(Path(path), "recipe file")
        if isinstance(data, dict):
            data = FORMATS["recipe"].strip(data, path)
        return cls.from_json(data)

    def without_teacher(self) -> Recipe:
        """This recipe for training where there is no teacher: a network fine-tuned from a supernet was taught by its
        largest subnetwork (``distill`` > 0), and the networks trained after it with its recipe (a run's family and
        references, ``hwnas scale`` from its folder) train from scratch, alone."""
        return replace(self, distill=0.0)

    def with_overrides(self, assignments: list[str]) -> Recipe:
        """Apply ``key=value`` strings, converting each value to the field's type."""
        types = {f.name: f.type for f in fields(self)}
        changes: dict[str, Any] = {}
        for assignment in assignments:
            name, sep, raw = assignment.partition("=")
            name = name.strip()
            if not sep:
                raise UserError(f"bad override {assignment!r}: expected key=value")
            if name not in types:
                raise UserError(f"unknown recipe field {name!r}; known: {', '.join(sorted(types))}")
            changes[name] = _convert(name, raw.strip(), types[name])
        return replace(self, **changes)


def _convert(name: str, raw: str, type_name: Any) -> Any:
    converters = {"str": str, "float": float, "int": int}
    try:
        return converters[str(type_name)](raw)
    except ValueError:
        raise UserError(f"recipe field {name!r}: cannot read {raw!r} as {type_name}") from None
