"""Where hwnas keeps things on disk, defined once: the converted-model cache, the runs folder, the profiles folder.

Every verb and the pipeline take these from here, so ``hwnas profile``, ``hwnas search`` and ``hwnas run`` share
one cache (converted layer and network files, keyed by what they hold) and find each other's profiles.
"""

from __future__ import annotations

import os
from pathlib import Path


def model_cache() -> Path:
    """Converted single-layer and network files (``$XDG_CACHE_HOME`` or ``~/.cache``, then ``hwnas/models``)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hwnas" / "models"


def runs_dir() -> Path:
    """Where the verbs put their run folders by default (relative to the working directory)."""
    return Path("runs")


def profiles_dir() -> Path:
    """Where ``hwnas profile`` writes ``<device>-<space>/`` (a store and its table) by default."""
    return runs_dir() / "profiles"
