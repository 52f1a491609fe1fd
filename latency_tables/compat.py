"""Say exactly how two device fingerprints or spaces differ, so a mismatch error is actionable.

Fingerprints grew finer fields (CPU family / model / stepping, cache sizes, a hash of the CPU
flags: :data:`EXTENDED_FINGERPRINT_KEYS`) after tables had shipped. Those fields are compared only
when both sides have them: a table made before them is still usable, and the comparison says
which fields it could not check (:func:`unchecked_fields`) instead of calling it another device.
"""

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


EXTENDED_FINGERPRINT_KEYS = ("cpu_family", "cpu_model", "cpu_stepping", "cpu_caches", "cpu_flags_hash")


def fingerprint_differences(name: str, have: dict[str, Any], want: dict[str, Any]) -> list[str]:
    """:func:`differences` of two fingerprints, skipping extended fields that one side lacks."""
    have, want = dict(have or {}), dict(want or {})
    for key in unchecked_fields(have, want):
        have.pop(key, None)
        want.pop(key, None)
    return differences(name, have, want)


def unchecked_fields(have: dict[str, Any], want: dict[str, Any]) -> list[str]:
    """Extended fields present on one side only (an older table or store): they cannot be compared."""
    return [key for key in EXTENDED_FINGERPRINT_KEYS if (key in (have or {})) != (key in (want or {}))]


def extended_apart(have: dict[str, Any], want: dict[str, Any]) -> list[str]:
    """Extended fields that differ between two fingerprints or that one side lacks: what keeps them from being the
    exact same CPU when every other field agrees."""
    have, want = have or {}, want or {}
    return [key for key in EXTENDED_FINGERPRINT_KEYS if key in have or key in want if have.get(key) != want.get(key)]


def without_extended(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """The fingerprint without its extended CPU fields: device name, runtime, version, threads, precision."""
    return {key: value for key, value in (fingerprint or {}).items() if key not in EXTENDED_FINGERPRINT_KEYS}
