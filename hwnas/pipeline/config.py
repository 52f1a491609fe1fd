"""What one ``hwnas run`` does: its settings, from defaults, a ``run.toml`` and the command line.

Precedence, lowest first: the defaults (:data:`DEFAULT` or, with ``--quick``, :data:`QUICK`), the
``--config`` file, then the options typed on the command line. The result is written to the run
folder as ``config.toml`` before any work starts; running the same command again finds it there
and resumes, while a run folder started with other settings is refused in one line naming what
differs (``--fresh`` starts over).

``run.toml`` holds top-level keys and three tables::

    devices = ["host-tflite"]     # the first is searched for; every one is exported to and measured on
    space = "default"             # a preset name or a search-space JSON file
    budget_ms = 0.45              # left out: the median whole network of the first device's table
    family_ms = [0.9, 1.8]        # end with a family grown from the winner for these budgets (hwnas scale); []: none
    data = "embedded"
    seed = 0

    [search]
    strategy = "fbnetv3"
    trials = 24
    train_images = 2000           # the proxy: candidates train on the first N training images
    supernet = "default"          # or a folder: candidates scored by inherited weights (trials then default to 200)

    [train]
    epochs = 5                    # retraining the winner on all training images (fine-tuning it, with a supernet)

    [prune]
    episodes = 30                 # AMC episodes (0: no pruning)

    [references]
    models = ["mobilenet_v3_small", "mnasnet0_5"]   # torchvision references trained and timed beside the winner ([]: none)
    rounds = 10                   # interleaved timing rounds (references and the final model, one session)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from hwnas import formats
from hwnas.errors import UserError
from hwnas.fileio import atomic_write
from hwnas.pipeline.references import DEFAULT_REFERENCES, QUICK_REFERENCES, REFERENCE_MODELS
from hwnas.search.api import DEFAULTS as SEARCH
from hwnas.search.api import SearchSettings as LibrarySearchSettings

SECTIONS = ("search", "train", "prune", "references")
TOP_LEVEL = ("devices", "space", "budget_ms", "family_ms", "data", "seed", "ray")


@dataclass(frozen=True)
class SearchSettings:
    """``[search]``: the search's own defaults (:data:`hwnas.search.api.DEFAULTS`, shared with ``hwnas search``)."""

    strategy: str = SEARCH.strategy
    trials: int = SEARCH.trials
    train_images: int = SEARCH.train_images
    epochs: int = SEARCH.epochs  # proxy epochs per candidate
    reward: str = SEARCH.reward
    measure_front: int = 6  # Pareto-front candidates exported and measured on the device for the plot
    # a trained supernet (a folder, or a shipped name such as "default"): candidates scored by inherited weights and the
    # winner fine-tuned from them (hwnas.search.inherited); "" (TOML has no null): trained for the proxy, as without it
    supernet: str = ""

    def library_settings(self) -> LibrarySearchSettings:
        """The settings :func:`hwnas.search.api.make_search_config` takes (margin and the finish: the library's)."""
        return replace(SEARCH, strategy=self.strategy, trials=self.trials, train_images=self.train_images, epochs=self.epochs,
                       reward=self.reward, supernet=self.supernet_folder())  # fmt: skip

    def supernet_folder(self) -> Path | None:
        """The supernet's folder (a shipped name resolved), or ``None`` for a search that trains its candidates."""
        from hwnas.supernets import resolve_supernet

        return resolve_supernet(self.supernet, given_as="search.supernet") if self.supernet else None


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 5
    train_images: int = 0  # 0: every training image


@dataclass(frozen=True)
class PruneSettings:
    episodes: int = 30  # 0: no pruning (the stage is skipped and says so)
    finetune_epochs: int = 1
    baselines: bool = True


@dataclass(frozen=True)
class ReferenceSettings:
    models: tuple[str, ...] = DEFAULT_REFERENCES  # torchvision references (hwnas.pipeline.references.REFERENCE_MODELS)
    rounds: int = 10  # interleaved timing rounds of the references and the final model

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", tuple(self.models))  # a TOML list reads back as the same settings
        unknown = [name for name in self.models if name not in REFERENCE_MODELS]
        if unknown:
            raise UserError(f"run config: unknown reference {unknown[0]!r}; known: {', '.join(REFERENCE_MODELS)}")
        if self.rounds < 1:
            raise UserError(f"references.rounds must be at least 1, got {self.rounds}")


@dataclass(frozen=True)
class RunConfig:
    devices: tuple[str, ...] = ("host-tflite",)
    space: str = "default"
    budget_ms: float | None = None
    data: str = "embedded"
    seed: int = 0
    ray: str | None = None
    quick: bool = False
    drift_networks: int = 3  # whole networks of a table re-timed when the table has no reference networks
    family_ms: tuple[float, ...] = ()  # budgets of a family grown from the winner at the end (hwnas scale); (): none
    search: SearchSettings = field(default_factory=SearchSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    prune: PruneSettings = field(default_factory=PruneSettings)
    references: ReferenceSettings = field(default_factory=ReferenceSettings)

    def __post_init__(self) -> None:
        if not self.devices:
            raise UserError("a run needs at least one device (--device SPEC)")
        if self.budget_ms is not None and not (math.isfinite(self.budget_ms) and self.budget_ms > 0):
            raise UserError(f"--budget-ms must be a positive number of milliseconds, got {self.budget_ms}")
        for name, value in (
            ("search.trials", self.search.trials),
            ("search.epochs", self.search.epochs),
            ("search.train_images", self.search.train_images),
            ("train.epochs", self.train.epochs),
            ("prune.finetune_epochs", self.prune.finetune_epochs),
        ):
            if value < 1:
                raise UserError(f"{name} must be at least 1, got {value}")
        if self.prune.episodes < 0:
            raise UserError(f"prune.episodes must be at least 0 (0: no pruning), got {self.prune.episodes}")
        if self.train.train_images < 0 or self.search.measure_front < 0 or self.drift_networks < 0:
            raise UserError("train.train_images, search.measure_front and drift_networks must be >= 0")
        if any(not (math.isfinite(value) and value > 0) for value in self.family_ms):
            raise UserError(f"--family: every budget must be a positive number of milliseconds, got {list(self.family_ms)}")
        if len(set(self.family_ms)) != len(self.family_ms):
            raise UserError(f"--family: a budget is given twice in {list(self.family_ms)}")
        if self.search.supernet and self.ray:
            raise UserError("a supernet scores candidates in local worker processes (about a second each): leave out --ray")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["devices"] = list(self.devices)
        data["family_ms"] = list(self.family_ms)
        return data

    def identity(self) -> dict[str, Any]:
        """What must match for a run folder to be resumed (everything but the Ray address: where work runs, not what)."""
        data = self.to_json()
        data.pop("ray")
        return data


QUICK = RunConfig(
    quick=True,
    drift_networks=1,
    search=SearchSettings(trials=4, train_images=600, measure_front=1),
    train=TrainSettings(epochs=1, train_images=2000),
    prune=PruneSettings(episodes=6, finetune_epochs=1, baselines=False),
    references=ReferenceSettings(models=QUICK_REFERENCES, rounds=6),
)
DEFAULT = RunConfig()


def _typed(section: str, cls: type, values: Any) -> Any:
    if not isinstance(values, dict):
        raise UserError(f"run config: [{section}] must be a table")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise UserError(f"run config: unknown key {section}.{unknown[0]}; known: {', '.join(sorted(known))}")
    for name, value in values.items():
        expected = type(getattr(cls(), name))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            continue
        if expected is tuple:
            if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
                raise UserError(f"run config: {section}.{name} must be a list of names, got {value!r}")
            continue
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise UserError(f"run config: {section}.{name} must be a {expected.__name__}, got {value!r}")
    return values


def load_config_file(path: Path) -> dict[str, Any]:
    """The settings a ``run.toml`` gives (unknown keys and wrong types are one-line errors)."""
    data = formats.read_toml(path, "run-config")
    allowed = set(TOP_LEVEL) | set(SECTIONS) | {"drift_networks"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise UserError(f"run config {path}: unknown key {unknown[0]!r}; known: {', '.join(sorted(allowed))}")
    if "devices" in data and (not isinstance(data["devices"], list) or not all(isinstance(d, str) for d in data["devices"])):
        raise UserError(f"run config {path}: devices must be a list of spec names or paths")
    for key, kind in (("space", str), ("data", str), ("ray", str), ("seed", int), ("drift_networks", int)):
        if key in data and (not isinstance(data[key], kind) or isinstance(data[key], bool)):
            raise UserError(f"run config {path}: {key} must be a {kind.__name__}, got {data[key]!r}")
    if "budget_ms" in data and (isinstance(data["budget_ms"], bool) or not isinstance(data["budget_ms"], int | float)):
        raise UserError(f"run config {path}: budget_ms must be a number, got {data['budget_ms']!r}")
    classes = {"search": SearchSettings, "train": TrainSettings, "prune": PruneSettings, "references": ReferenceSettings}
    for section in SECTIONS:
        if section in data:
            _typed(section, classes[section], data[section])
    return data


def resolve_config(
    quick: bool, config_file: Path | None, overrides: dict[str, Any], *, relative_to: Path | None = None
) -> RunConfig:
    """Defaults <- ``config_file`` <- ``overrides`` (the options typed; ``None`` means not typed)."""
    base = QUICK if quick else DEFAULT
    given: dict[str, Any] = load_config_file(config_file) if config_file else {}
    for key, value in overrides.items():
        if value is None:
            continue
        given[key] = given.get(key, {}) | value if key in SECTIONS else value  # an option overrides one key of a table
    searched = given.get("search", {})
    if searched.get("supernet"):
        searched = _supernet_trials(base, searched) | {"supernet": _stored_supernet(searched["supernet"])}
    sections = {
        "search": replace(base.search, **given.get("search", {}) | searched),
        "train": replace(base.train, **given.get("train", {})),
        "prune": replace(base.prune, **given.get("prune", {})),
        "references": replace(base.references, **given.get("references", {})),
    }
    top = {key: given[key] for key in (*TOP_LEVEL, "drift_networks") if key in given}
    if "devices" in top:
        top["devices"] = tuple(top["devices"])
    if "budget_ms" in top:
        top["budget_ms"] = float(top["budget_ms"])
    if "family_ms" in top:
        top["family_ms"] = _budgets(top["family_ms"])
    return replace(base, **top, **sections)


def _budgets(values: Any) -> tuple[float, ...]:
    """``family_ms`` as the config keeps it: a tuple of floats (from a TOML list or the command line's)."""
    if not isinstance(values, list | tuple) or any(isinstance(v, bool) or not isinstance(v, int | float) for v in values):
        raise UserError(f"family_ms must be a list of milliseconds, got {values!r}")
    return tuple(float(value) for value in values)


def _stored_supernet(text: str) -> str:
    """How a run folder keeps its supernet: a shipped name as it is (found wherever hwnas is installed), a folder as an
    absolute path (so the run resumes from any working directory). A name that is neither is one line now."""
    from hwnas.supernets import resolve_supernet, shipped_supernets

    folder = resolve_supernet(text, given_as="--supernet")
    return text if text in shipped_supernets() and not Path(text).exists() else str(folder.resolve())


def _supernet_trials(base: RunConfig, search: dict[str, Any]) -> dict[str, Any]:
    """With a supernet a candidate costs about a second, not a proxy epoch: unless trials are given, evaluate
    :data:`~hwnas.search.api.DEFAULTS`' ``supernet_trials`` (a fifth of them for ``--quick``)."""
    if "trials" in search:
        return search
    return search | {"trials": SEARCH.supernet_trials // 5 if base.quick else SEARCH.supernet_trials}


# ---- writing TOML (tomllib only reads) -------------------------------------------------------------
def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(data: dict[str, Any], comments: dict[str, str] | None = None) -> str:
    """Top-level scalars and lists, then one table per nested dict; ``None`` is written as a comment."""
    comments = comments or {}
    lines: list[str] = []
    tables = {key: value for key, value in data.items() if isinstance(value, dict)}
    for key, value in data.items():
        if isinstance(value, dict):
            continue
        if value is None:
            lines.append(f"# {key}: {comments.get(key, 'not set')}")
        else:
            lines.append(f"{key} = {_toml_value(value)}" + (f"  # {comments[key]}" if key in comments else ""))
    for name, table in tables.items():
        lines += ["", f"[{name}]"]
        lines += [f"{key} = {_toml_value(value)}" for key, value in table.items() if value is not None]
    return "\n".join(lines) + "\n"


def write_config(path: Path, config: RunConfig, resolved: dict[str, Any] | None = None) -> None:
    """``config.toml``: every setting, plus a ``[resolved]`` table of what the run worked out (the budget)."""
    data = formats.FORMATS["run-folder"].stamp(config.to_json())
    if resolved:
        data["resolved"] = resolved
    comments = {"budget_ms": "not given: the median whole network of the first device's table ([resolved] budget_ms)"}
    header = "# hwnas run: the settings this run folder was made with (re-running the same command resumes it)\n"
    text = header + to_toml(data, comments)
    atomic_write(path, lambda temp: temp.write_text(text))


def read_config(path: Path) -> RunConfig:
    """A run folder's ``config.toml`` back as a RunConfig (its ``[resolved]`` table is ignored)."""
    data = formats.read_toml(path, "run-folder")
    data.pop("resolved", None)
    quick = bool(data.pop("quick", False))
    try:
        config = RunConfig(
            devices=tuple(data.pop("devices")),
            search=SearchSettings(**data.pop("search", {})),
            train=TrainSettings(**data.pop("train", {})),
            prune=PruneSettings(**data.pop("prune", {})),
            references=ReferenceSettings(**data.pop("references", {})),
            quick=quick,
            family_ms=_budgets(data.pop("family_ms", [])),
            **data,
        )
    except (KeyError, TypeError) as error:
        raise UserError(f"run config {path} is not one hwnas run wrote ({error})") from None
    return config
