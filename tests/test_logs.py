"""Log lines are whole: an architecture, path or number is never broken across lines, in a terminal or a file, and no
line ends in the ``file.py:NN`` that rich's ``console.log`` adds (issue 20)."""

from __future__ import annotations

import re
import subprocess
import sys

from hwnas.arch import Arch
from hwnas.presets import get_space

ARCH = re.compile(r"\b[a-z][a-z0-9-]*:r\d+[A-Za-z0-9_\[\],]*")  # from a space name to the last character arches use
SUFFIX = re.compile(r"\b[\w-]+\.py:\d+\s*$")


def architectures(text: str) -> list[str]:
    """Every architecture string in ``text`` (``space:r32_c16[k3e3]_...``), as written (a trailing comma is prose)."""
    return [match.group(0).rstrip(",") for match in ARCH.finditer(text)]


def unparsable(text: str) -> list[str]:
    """The architecture strings of ``text`` that do not parse back into their space (a line cut one in two)."""
    bad = []
    for found in architectures(text):
        try:
            get_space(found.split(":")[0]).validate(Arch.parse(found))
        except Exception:
            bad.append(found)
    return bad


def test_a_long_line_logged_to_a_pipe_arrives_whole_with_no_file_suffix() -> None:
    arch = get_space("default").sample(3).format()
    message = f"search: the best measures over the budget; taking the next feasible candidate, top2: {arch} " + "x" * 200
    code = f"from hwnas.cli.common import log; log({message!r})"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].endswith(message) and re.match(r"\[\d\d:\d\d:\d\d\] ", lines[0]), result.stdout
    assert architectures(lines[0]) == [arch] and not SUFFIX.search(lines[0])
    assert "[k" in lines[0]  # markup-like brackets of the architecture printed literally, not eaten by rich


def test_the_architecture_finder_sees_a_broken_architecture_as_one_that_does_not_parse() -> None:
    arch = get_space("default").sample(3).format()
    cut = arch.index("[") + 4
    broken = f"trial 1: {arch[:cut]}\n{arch[cut:]}"
    assert unparsable(broken) and not unparsable(f"trial 1: {arch}, then {arch}")
