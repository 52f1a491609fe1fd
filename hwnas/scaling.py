"""Compound scaling of an architecture: depth, width and resolution multipliers, as EfficientNet scales B0 to B7.

A :class:`Scaling` multiplies every stage's depth, every width (stem, stages, head) and the input resolution. It is
kept in whole percent, so it has a short exact name (``d150w125r120``) and a scaled network is reproducible from it.

Scaled networks lie outside their space's choices (a 1.25x wider stage is not one of the space's widths), so scaling
makes a space too: :func:`scaled_space` is the base space with every choice multiplied, named
``<base>-d150w125r120``. :func:`hwnas.presets.get_space` rebuilds it from that name alone, so an architecture string,
a run folder or a latency table of a scaled network finds its space as a preset's does, and every verb (``train``,
``latency``, ``export``) takes a scaled network unchanged.

Rounding, as EfficientNet and MobileNet do it: widths to a multiple of 8 without losing more than 10%
(:func:`hwnas.opkey.make_divisible`); a stage's depth rounded half up (EfficientNet's ceil made a 1.1x depth step add a
block to every one-block stage, a 2x jump); the resolution to whole pixels. A deeper stage repeats its last block.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

from hwnas.arch import Arch, Stage
from hwnas.errors import UserError
from hwnas.opkey import make_divisible
from hwnas.space import SearchSpace, StageSpace

SCALED_NAME = re.compile(r"(?P<base>.+)-d(?P<depth>[1-9][0-9]*)w(?P<width>[1-9][0-9]*)r(?P<resolution>[1-9][0-9]*)")
LOWEST, HIGHEST = 0.25, 16.0  # multipliers outside this are a typo, not a network


def _percent(value: float) -> int:
    return round(value * 100)


@dataclass(frozen=True, order=True)
class Scaling:
    """Depth, width and resolution multipliers, held in whole percent (``Scaling.of`` rounds)."""

    depth_pct: int = 100
    width_pct: int = 100
    resolution_pct: int = 100

    def __post_init__(self) -> None:
        for name in ("depth_pct", "width_pct", "resolution_pct"):
            value = getattr(self, name)
            if not LOWEST * 100 <= value <= HIGHEST * 100:
                raise UserError(f"scaling {name[:-4]} x{value / 100:g} out of range [x{LOWEST:g}, x{HIGHEST:g}]")

    @classmethod
    def of(cls, depth: float = 1.0, width: float = 1.0, resolution: float = 1.0) -> Scaling:
        return cls(_percent(depth), _percent(width), _percent(resolution))

    @property
    def depth(self) -> float:
        return self.depth_pct / 100

    @property
    def width(self) -> float:
        return self.width_pct / 100

    @property
    def resolution(self) -> float:
        return self.resolution_pct / 100

    @property
    def tag(self) -> str:
        """``d150w125r120``: the suffix of the scaled space's name."""
        return f"d{self.depth_pct}w{self.width_pct}r{self.resolution_pct}"

    @property
    def is_identity(self) -> bool:
        return self == Scaling()

    def power(self, exponent: float) -> Scaling:
        """This scaling applied ``exponent`` times (EfficientNet's phi): ``alpha**phi``, ``beta**phi``, ``gamma**phi``."""
        return Scaling.of(self.depth**exponent, self.width**exponent, self.resolution**exponent)

    def describe(self) -> str:
        return f"depth x{self.depth:g}, width x{self.width:g}, resolution x{self.resolution:g}"

    @classmethod
    def parse_tag(cls, tag: str) -> Scaling:
        match = re.fullmatch(r"d([1-9][0-9]*)w([1-9][0-9]*)r([1-9][0-9]*)", tag)
        if match is None:
            raise UserError(f"bad scaling {tag!r}: expected d<depth %>w<width %>r<resolution %>, e.g. d120w110r115")
        return cls(*(int(group) for group in match.groups()))


def scale_width(channels: int, scaling: Scaling) -> int:
    return channels if scaling.width_pct == 100 else make_divisible(channels * scaling.width)


def scale_depth(depth: int, scaling: Scaling) -> int:
    return max(1, math.floor(depth * scaling.depth + 0.5))


def scale_resolution(pixels: int, scaling: Scaling) -> int:
    return max(1, math.floor(pixels * scaling.resolution + 0.5))


def scaled_space(space: SearchSpace, scaling: Scaling) -> SearchSpace:
    """``space`` with every width, depth and resolution choice multiplied (``space`` itself for the identity)."""
    if scaling.is_identity:
        return space

    def widths(values: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(dict.fromkeys(scale_width(value, scaling) for value in values))

    def stage(spec: StageSpace) -> StageSpace:
        depths = tuple(dict.fromkeys(scale_depth(depth, scaling) for depth in spec.depths))
        return replace(spec, widths=widths(spec.widths), depths=depths)

    optional = {
        name: None if getattr(space, name) is None else scale_width(getattr(space, name), scaling)
        for name in ("final_expand", "feature_mix")
    }
    return replace(
        space,
        name=f"{space.name}-{scaling.tag}",
        description=f"{space.name} scaled by {scaling.describe()}; {space.description}",
        resolutions=tuple(dict.fromkeys(scale_resolution(value, scaling) for value in space.resolutions)),
        stem_channels=scale_width(space.stem_channels, scaling),
        stages=tuple(stage(spec) for spec in space.stages),
        proxy_resolution=None if space.proxy_resolution is None else scale_resolution(space.proxy_resolution, scaling),
        **optional,
    )


def scale_arch(space: SearchSpace, arch: Arch, scaling: Scaling) -> tuple[SearchSpace, Arch]:
    """``arch`` of ``space`` scaled, with the space it belongs to (checked: the scaled network is in it)."""
    space.validate(arch)
    target = scaled_space(space, scaling)
    stages = tuple(
        Stage(
            scale_width(stage.width, scaling),
            stage.blocks[: scale_depth(stage.depth, scaling)]
            + (stage.blocks[-1],) * max(0, scale_depth(stage.depth, scaling) - stage.depth),
        )
        for stage in arch.stages
    )
    return target, target.validate(Arch(target.name, scale_resolution(arch.resolution, scaling), stages))


def split_scaled_name(name: str) -> tuple[str, Scaling] | None:
    """``("default", Scaling(150, 125, 120))`` for ``default-d150w125r120``; ``None`` for any other name."""
    match = SCALED_NAME.fullmatch(name)
    if match is None:
        return None
    return match["base"], Scaling(int(match["depth"]), int(match["width"]), int(match["resolution"]))
