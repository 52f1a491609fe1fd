"""Declarative search spaces: what can vary, not how to build it.

A :class:`SearchSpace` is a fixed stem, a list of :class:`StageSpace` (stride, width choices, depth
choices and per-block choices of kernel, expansion, squeeze-excite and activation), a fixed head
and the input resolutions. It samples, mutates, crosses over and counts architectures, decomposes
an :class:`~hwnas.arch.Arch` into the :class:`~hwnas.opkey.OpKey` chain it is built from, and
enumerates every OpKey any of its architectures can produce (what a device profile measures).
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from hwnas.arch import ACTIVATIONS, Arch, Block, Stage
from hwnas.errors import ArchError, UserError
from hwnas.fileio import text_sha256
from hwnas.opkey import OpKey

Rng = random.Random | int | None


def data_space_name(name: str, channels: int, classes: int) -> str:
    """The name of space ``name`` made for other images (:meth:`SearchSpace.for_data`): ``default-3ch-4cls``."""
    return f"{name}-{channels}ch-{classes}cls"


def _as_rng(rng: Rng) -> random.Random:
    return rng if isinstance(rng, random.Random) else random.Random(rng)


@dataclass(frozen=True)
class StageSpace:
    """Choices for one stage; every block of the stage chooses kernel/expansion/SE/activation."""

    stride: int
    widths: tuple[int, ...]
    depths: tuple[int, ...]
    kernels: tuple[int, ...] = (3, 5, 7)
    expansions: tuple[int, ...] = (3, 4, 6)
    se: tuple[bool, ...] = (False,)
    acts: tuple[str, ...] = ("relu",)

    def __post_init__(self) -> None:
        for name in ("widths", "depths", "kernels", "expansions", "se", "acts"):
            if not getattr(self, name):
                raise UserError(f"stage choice {name!r} is empty")
        if any(act not in ACTIVATIONS for act in self.acts):
            raise UserError(f"stage activations {self.acts} not all in {ACTIVATIONS}")
        if min(self.depths) < 1 or self.stride not in (1, 2):
            raise UserError("depths must be >= 1 and stride 1 or 2")

    def block_choices(self) -> list[Block]:
        return [
            Block(kernel, expansion, se, act)
            for kernel, expansion, se, act in itertools.product(self.kernels, self.expansions, self.se, self.acts)
        ]

    def contains_block(self, block: Block) -> bool:
        return (
            block.kernel in self.kernels and block.expansion in self.expansions and block.se in self.se and block.act in self.acts
        )

    def count(self) -> int:
        per_block = len(self.block_choices())
        return len(self.widths) * sum(per_block**depth for depth in self.depths)


@dataclass(frozen=True)
class SearchSpace:
    """A named, immutable search space. See the module docstring."""

    name: str
    description: str
    in_channels: int
    num_classes: int
    resolutions: tuple[int, ...]
    stem_channels: int
    stem_stride: int
    stages: tuple[StageSpace, ...]
    stem_kernel: int = 3
    stem_act: str = "relu"
    final_expand: int | None = None
    feature_mix: int | None = None
    head_act: str = "relu"
    proxy_resolution: int | None = None
    notes: str = field(default="", compare=False)

    # ---- identity -------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("notes")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SearchSpace:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise UserError(f"unknown search-space fields {sorted(unknown)}")
        stages = tuple(StageSpace(**{k: tuple(v) if isinstance(v, list) else v for k, v in s.items()}) for s in data["stages"])
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k != "stages"}
        return cls(**values, stages=stages)

    def for_data(self, channels: int, classes: int) -> SearchSpace:
        """This space for images of ``channels`` channels in ``classes`` classes: its stem and classifier made for them.

        ``self`` when it already fits; otherwise a copy with those ``in_channels`` and ``num_classes``, named
        :func:`data_space_name` (``default-3ch-4cls``) and described as derived. Renamed, not only rehashed: files
        kept by space name (``runs/profiles/<device>-<space>/``) must not take the original's place, and an
        architecture string names the space it runs in.
        """
        if channels < 1 or classes < 1:
            raise UserError(f"images need at least 1 channel and 1 class, not {channels} channel(s) and {classes} classes")
        if (channels, classes) == (self.in_channels, self.num_classes):
            return self
        return replace(
            self,
            name=data_space_name(self.name, channels, classes),
            description=f"{self.name} for {channels}-channel images of {classes} classes; {self.description}",
            in_channels=channels,
            num_classes=classes,
        )

    @property
    def hash(self) -> str:
        """Content hash: a latency table or predictor is valid only for the space it was made for."""
        canonical = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return text_sha256(canonical, 16)

    # ---- membership -----------------------------------------------------------------------
    def validate(self, arch: Arch) -> Arch:
        """Return ``arch`` if it belongs to this space, else raise ArchError naming what is wrong."""
        if arch.space != self.name:
            raise ArchError(f"architecture is of space {arch.space!r}, not {self.name!r}")
        if arch.resolution not in self.resolutions:
            raise ArchError(f"resolution token 'r{arch.resolution}' not in choices {self.resolutions}")
        if len(arch.stages) != len(self.stages):
            raise ArchError(f"space {self.name!r} has {len(self.stages)} stages, the architecture {len(arch.stages)}")
        for index, (stage, spec) in enumerate(zip(arch.stages, self.stages, strict=True), start=1):
            if stage.width not in spec.widths:
                raise ArchError(f"stage {index}: width token 'c{stage.width}' not in choices {spec.widths}")
            if stage.depth not in spec.depths:
                raise ArchError(f"stage {index} (c{stage.width}): depth {stage.depth} not in choices {spec.depths}")
            for block in stage.blocks:
                if not spec.contains_block(block):
                    raise ArchError(
                        f"stage {index}: block token {block.format()!r} not allowed (kernels {spec.kernels}, "
                        f"expansions {spec.expansions}, se {spec.se}, activations {spec.acts})"
                    )
        return arch

    def parse(self, text: str) -> Arch:
        return self.validate(Arch.parse(text))

    # ---- sampling and variation -----------------------------------------------------------
    def sample(self, rng: Rng = None) -> Arch:
        rng = _as_rng(rng)
        stages = tuple(self._sample_stage(spec, rng) for spec in self.stages)
        return Arch(self.name, rng.choice(self.resolutions), stages)

    @staticmethod
    def _sample_stage(spec: StageSpace, rng: random.Random) -> Stage:
        choices = spec.block_choices()
        depth = rng.choice(spec.depths)
        return Stage(rng.choice(spec.widths), tuple(rng.choice(choices) for _ in range(depth)))

    def mutate(self, arch: Arch, rng: Rng = None, rate: float = 0.2) -> Arch:
        """Resample each decision with probability ``rate``; always returns a different arch if one exists."""
        rng = _as_rng(rng)
        if self.count() <= 1:
            return arch
        while True:
            child = self._mutate_once(self.validate(arch), rng, rate)
            if child != arch:
                return child

    def _mutate_once(self, arch: Arch, rng: random.Random, rate: float) -> Arch:
        resolution = rng.choice(self.resolutions) if rng.random() < rate else arch.resolution
        stages = []
        for stage, spec in zip(arch.stages, self.stages, strict=True):
            width = rng.choice(spec.widths) if rng.random() < rate else stage.width
            depth = rng.choice(spec.depths) if rng.random() < rate else stage.depth
            choices = spec.block_choices()
            blocks = [rng.choice(choices) if rng.random() < rate else block for block in stage.blocks[:depth]]
            blocks += [rng.choice(choices) for _ in range(depth - len(blocks))]
            stages.append(Stage(width, tuple(blocks)))
        return Arch(self.name, resolution, tuple(stages))

    def crossover(self, first: Arch, second: Arch, rng: Rng = None) -> Arch:
        """Uniform crossover by stage (a stage's width, depth and blocks travel together)."""
        rng = _as_rng(rng)
        self.validate(first)
        self.validate(second)
        stages = tuple(rng.choice(pair) for pair in zip(first.stages, second.stages, strict=True))
        return Arch(self.name, rng.choice((first.resolution, second.resolution)), stages)

    def count(self) -> int:
        """Number of distinct architectures (resolution x product of per-stage counts)."""
        return len(self.resolutions) * math.prod(spec.count() for spec in self.stages)

    # ---- decomposition into layers --------------------------------------------------------
    def op_keys(self, arch: Arch) -> tuple[OpKey, ...]:
        """The chain of layers ``arch`` is built from, stem to classifier."""
        self.validate(arch)
        size = arch.resolution
        keys = [OpKey("Conv", size, self.in_channels, self.stem_channels, self.stem_kernel, self.stem_stride, act=self.stem_act)]
        size, channels = keys[0].out_size, self.stem_channels
        for stage, spec in zip(arch.stages, self.stages, strict=True):
            for position, block in enumerate(stage.blocks):
                stride = spec.stride if position == 0 else 1
                key = OpKey(
                    "expanded_conv", size, channels, stage.width, block.kernel, stride, block.expansion, block.se, block.act
                )
                keys.append(key)
                size, channels = key.out_size, stage.width
        keys.extend(self._head_keys(size, channels))
        return tuple(keys)

    def _head_keys(self, size: int, channels: int) -> list[OpKey]:
        keys = []
        if self.final_expand is not None:
            keys.append(OpKey("Conv_1", size, channels, self.final_expand, act=self.head_act))
            channels = self.final_expand
        if self.feature_mix is not None:
            keys.append(OpKey("Conv_2", size, channels, self.feature_mix, act=self.head_act))
            size, channels = 1, self.feature_mix
        keys.append(OpKey("Logits", size, channels, self.num_classes))
        return keys

    def enumerate_op_keys(self) -> list[OpKey]:
        """Every layer any architecture of this space can contain, sorted, without repeats."""
        return sorted(set(self._iter_op_keys()))

    def _iter_op_keys(self) -> Iterator[OpKey]:
        for resolution in self.resolutions:
            stem = OpKey(
                "Conv", resolution, self.in_channels, self.stem_channels, self.stem_kernel, self.stem_stride, act=self.stem_act
            )
            yield stem
            size, in_widths = stem.out_size, (self.stem_channels,)
            for spec in self.stages:
                choices = spec.block_choices()
                for in_c, out_c, block in itertools.product(in_widths, spec.widths, choices):
                    yield OpKey(
                        "expanded_conv", size, in_c, out_c, block.kernel, spec.stride, block.expansion, block.se, block.act
                    )
                size = (size - 1) // spec.stride + 1
                if max(spec.depths) > 1:
                    for width, block in itertools.product(spec.widths, choices):
                        yield OpKey("expanded_conv", size, width, width, block.kernel, 1, block.expansion, block.se, block.act)
                in_widths = spec.widths
            for channels in in_widths:
                yield from self._head_keys(size, channels)
