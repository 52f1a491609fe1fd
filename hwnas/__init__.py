"""hwnas: hardware-aware neural architecture search for mobile and edge devices.

One import package. The pipeline's stages are its subpackages, each kept in its own top-level
folder of the repository: ``hwnas.devices`` (measure a model file on a runtime),
``hwnas.latency_tables`` (profile a device), ``hwnas.predictors`` (latency and accuracy
predictors), ``hwnas.exporters`` (deployable, verified files). The core values (``Arch``,
``SearchSpace``, ``OpKey``, ``Recipe``, the presets) import no torch; model-building names
(``build_model``, ``arch_cost``, ...) are imported on first use. See ``README.md``.
"""

import os as _os

# ONNX Runtime's official builds send usage telemetry (1DS, over HTTPS) unless this is set before it
# initializes. Set here, before any hwnas module can import it, so every entry point (the CLI, library use,
# spawned workers) has it; a user who wants telemetry sets ORT_DISABLE_TELEMETRY=0 themselves.
_os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from hwnas.arch import Arch, Block, Stage
from hwnas.errors import ArchError, UserError
from hwnas.lazy import lazy_exports
from hwnas.opkey import OpKey
from hwnas.presets import get_space, list_spaces, register_space
from hwnas.recipe import Recipe
from hwnas.space import SearchSpace, StageSpace

__version__ = "0.1.0"

_BUILDER_NAMES = ("arch_cost", "build_model", "build_op", "count_flops", "count_params", "op_cost")
__getattr__, _dir_lazy = lazy_exports(__name__, dict.fromkeys(_BUILDER_NAMES, "builder"))

__all__ = [
    "Arch",
    "ArchError",
    "Block",
    "OpKey",
    "Recipe",
    "SearchSpace",
    "Stage",
    "StageSpace",
    "UserError",
    "get_space",
    "list_spaces",
    "register_space",
    *_BUILDER_NAMES,
]
