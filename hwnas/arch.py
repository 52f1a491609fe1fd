"""Architectures as immutable values with a compact, exactly round-tripping string form.

Grammar of an architecture string (in the spirit of timm's EfficientNet block strings, but an
architecture is written whole, so it can also be *formatted* back to the identical text)::

    ARCH   := SPACE ":" "r" RES ("_" STAGE)+
    STAGE  := "c" WIDTH "[" BLOCK ("," BLOCK)* "]"
    BLOCK  := "k" KERNEL "e" EXPANSION ["s"] ["h"]

    SPACE      name of the search space the architecture belongs to, e.g. ``default``
    RES        square input resolution in pixels
    WIDTH      output channels of every block of the stage (the stage's depth is its block count)
    KERNEL     depthwise kernel size
    EXPANSION  inverted-residual expansion ratio (1: no expansion convolution)
    s          squeeze-and-excitation on
    h          hard-swish activation (absent: ReLU)

Example: ``default:r32_c16[k3e1]_c24[k3e3,k5e6s]_c40[k7e6sh]``.

Numbers are written without leading zeros and flags in the order ``s`` then ``h``; anything
else is rejected, which is what makes ``parse(format(a)) == a`` *and* ``format(parse(s)) == s``.
Strides, stem and head are properties of the search space, not of the architecture.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from hwnas.errors import ArchError
from hwnas.fileio import text_sha256

ACTIVATIONS = ("relu", "hswish")

_NUMBER = r"[1-9][0-9]{0,5}"  # at most 999999: a 5,000-digit "width" is a typo, not a network
_SPACE_RE = re.compile(r"[a-z][a-z0-9_\-]*")
_RES_RE = re.compile(rf"r({_NUMBER})")
_STAGE_RE = re.compile(rf"c({_NUMBER})\[([^\[\]]*)\]")
_BLOCK_RE = re.compile(rf"k({_NUMBER})e({_NUMBER})(s?)(h?)")


@dataclass(frozen=True)
class Block:
    """One inverted-residual block's searchable choices."""

    kernel: int
    expansion: int
    se: bool = False
    act: str = "relu"

    def __post_init__(self) -> None:
        if self.act not in ACTIVATIONS:
            raise ArchError(f"unknown activation {self.act!r}; expected one of {ACTIVATIONS}")
        if self.kernel < 1 or self.expansion < 1:
            raise ArchError(f"kernel and expansion must be positive, got k{self.kernel}e{self.expansion}")

    def format(self) -> str:
        return f"k{self.kernel}e{self.expansion}{'s' if self.se else ''}{'h' if self.act == 'hswish' else ''}"

    @classmethod
    def parse(cls, token: str) -> Block:
        match = _BLOCK_RE.fullmatch(token)
        if match is None:
            raise ArchError(f"bad block token {token!r}: expected k<kernel>e<expansion>[s][h], e.g. k5e6sh")
        kernel, expansion, se, hswish = match.groups()
        return cls(int(kernel), int(expansion), se == "s", "hswish" if hswish else "relu")


@dataclass(frozen=True)
class Stage:
    """A run of blocks with one output width; its depth is ``len(blocks)``."""

    width: int
    blocks: tuple[Block, ...]

    def __post_init__(self) -> None:
        if self.width < 1:
            raise ArchError(f"stage width must be positive, got {self.width}")
        if not self.blocks:
            raise ArchError("a stage needs at least one block")

    @property
    def depth(self) -> int:
        return len(self.blocks)

    def format(self) -> str:
        return f"c{self.width}[{','.join(block.format() for block in self.blocks)}]"

    @classmethod
    def parse(cls, token: str) -> Stage:
        match = _STAGE_RE.fullmatch(token)
        if match is None:
            raise ArchError(f"bad stage token {token!r}: expected c<width>[<block>,<block>...]")
        width, blocks = match.groups()
        return cls(int(width), tuple(Block.parse(block) for block in blocks.split(",")))


@dataclass(frozen=True)
class Arch:
    """One point of a search space: frozen, hashable, and written as a one-line string."""

    space: str
    resolution: int
    stages: tuple[Stage, ...]

    def __post_init__(self) -> None:
        if _SPACE_RE.fullmatch(self.space) is None:
            raise ArchError(f"bad space name {self.space!r}: lower-case letters, digits, '_' and '-'")
        if self.resolution < 1:
            raise ArchError(f"resolution must be positive, got {self.resolution}")
        if not self.stages:
            raise ArchError("an architecture needs at least one stage")

    def format(self) -> str:
        return f"{self.space}:r{self.resolution}_" + "_".join(stage.format() for stage in self.stages)

    def __str__(self) -> str:
        return self.format()

    @classmethod
    def parse(cls, text: str) -> Arch:
        """Parse an architecture string; a malformed one raises ArchError naming the bad token."""
        space, sep, body = text.strip().partition(":")
        if not sep:
            raise ArchError(f"bad architecture {text!r}: expected SPACE:r<res>_c<width>[...]...")
        if _SPACE_RE.fullmatch(space) is None:
            raise ArchError(f"bad space token {space!r}: lower-case letters, digits, '_' and '-'")
        tokens = _split_top_level(body)
        resolution = _RES_RE.fullmatch(tokens[0])
        if resolution is None:
            raise ArchError(f"bad resolution token {tokens[0]!r}: expected r<pixels>, e.g. r32")
        if len(tokens) < 2:
            raise ArchError(f"bad architecture {text!r}: no stages after {tokens[0]!r}")
        return cls(space, int(resolution.group(1)), tuple(Stage.parse(token) for token in tokens[1:]))

    def to_json(self) -> dict[str, Any]:
        return {
            "space": self.space,
            "resolution": self.resolution,
            "stages": [
                {"width": stage.width, "blocks": [block.__dict__.copy() for block in stage.blocks]} for stage in self.stages
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Arch:
        try:
            stages = tuple(
                Stage(int(stage["width"]), tuple(_block_from_json(block) for block in stage["blocks"]))
                for stage in data["stages"]
            )
            return cls(str(data["space"]), int(data["resolution"]), stages)
        except (KeyError, TypeError) as error:
            raise ArchError(f"bad architecture JSON: missing or mistyped field {error}") from None

    @property
    def id(self) -> str:
        """A stable short id: the first 12 hex digits of the SHA-256 of the string form."""
        return text_sha256(self.format(), 12)

    @property
    def blocks(self) -> tuple[Block, ...]:
        return tuple(block for stage in self.stages for block in stage.blocks)

    def replace_stage(self, index: int, stage: Stage) -> Arch:
        stages = list(self.stages)
        stages[index] = stage
        return Arch(self.space, self.resolution, tuple(stages))


def _block_from_json(data: dict[str, Any]) -> Block:
    unknown = set(data) - {"kernel", "expansion", "se", "act"}
    if unknown:
        raise ArchError(f"bad block JSON: unknown fields {sorted(unknown)}")
    return Block(int(data["kernel"]), int(data["expansion"]), bool(data.get("se", False)), str(data.get("act", "relu")))


def _split_top_level(body: str) -> list[str]:
    """Split on '_' outside brackets, so a bad stage shows up whole in the error."""
    tokens, depth, current = [], 0, []
    for char in body:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "_" and depth == 0:
            tokens.append("".join(current))
            current = []
        else:
            current.append(char)
    tokens.append("".join(current))
    return tokens
