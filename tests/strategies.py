"""Hypothesis strategies: architectures sampled from every preset."""

from __future__ import annotations

from hypothesis import strategies as st

from hwnas.arch import Arch
from hwnas.presets import get_space

PRESETS = ("default", "proxylessnas", "mnasnet", "ofa-mbv3")


@st.composite
def preset_archs(draw: st.DrawFn, presets: tuple[str, ...] = PRESETS) -> Arch:
    space = get_space(draw(st.sampled_from(presets)))
    return space.sample(draw(st.integers(0, 2**32 - 1)))
