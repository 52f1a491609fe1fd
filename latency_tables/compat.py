"""Say exactly how two device fingerprints or spaces differ, so a mismatch error is actionable."""

from __future__ import annotations

from typing import Any


def differences(name: str, have: Any, want: Any) -> list[str]:
    """``["fingerprint.threads: 1 vs 2", ...]`` for every leaf where ``have`` and ``want`` differ."""
    if isinstance(have, dict) and isinstance(want, dict):
        found: list[str] = []
        for key in sorted(set(have) | set(want)):
            found += differences(f"{name}.{key}", have.get(key), want.get(key))
        return found
    return [] if have == want else [f"{name}: {_short(have)} vs {_short(want)}"]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
