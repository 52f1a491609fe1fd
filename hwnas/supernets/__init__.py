"""Supernets that ship with hwnas: trained once by :mod:`hwnas.supernets.build_default`, committed, loaded offline.

``default/`` holds the supernet of the ``default`` space trained on the embedded Fashion-MNIST
subset, so ``hwnas specialize`` and ``hwnas search --supernet default`` work in seconds on a fresh
machine. Users with their own data train their own with ``hwnas supernet train``.
"""

from __future__ import annotations

from pathlib import Path

from hwnas.errors import UserError

SHIPPED = Path(__file__).parent
DEFAULT_SUPERNET = SHIPPED / "default"


def shipped_supernets() -> list[str]:
    """Names of the supernets that ship (each a folder holding ``supernet.json`` and ``supernet.pt``)."""
    return sorted(p.name for p in SHIPPED.iterdir() if (p / "supernet.json").is_file() and (p / "supernet.pt").is_file())


def resolve_supernet(text: str | Path, given_as: str = "--supernet") -> Path:
    """``--supernet``: a folder ``hwnas supernet train`` wrote, or the name of a shipped supernet (``default``).

    A folder that exists wins over a shipped name, so a user's ``./default`` is never shadowed. ``given_as``: how the
    user gave it, for the error line.
    """
    path = Path(text)
    if path.exists():
        return path
    if str(text) in shipped_supernets():
        return SHIPPED / str(text)
    shipped = ", ".join(shipped_supernets()) or "none"
    raise UserError(f"{given_as} {text}: no such folder, and no shipped supernet of that name (shipped: {shipped})")
