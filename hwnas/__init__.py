"""hwnas: hardware-aware neural architecture search for mobile and edge devices.

The core (search space, architecture strings, layer keys, model builder) is importable without
the training, search or CLI layers; see ``../README.md`` for the pipeline.
"""

from hwnas.arch import Arch, Block, Stage
from hwnas.builder import arch_cost, build_model, build_op, count_flops, count_params, op_cost
from hwnas.errors import ArchError, UserError
from hwnas.opkey import OpKey
from hwnas.presets import get_space, list_spaces, register_space
from hwnas.recipe import Recipe
from hwnas.space import SearchSpace, StageSpace

__version__ = "0.1.0"

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
    "arch_cost",
    "build_model",
    "build_op",
    "count_flops",
    "count_params",
    "get_space",
    "list_spaces",
    "op_cost",
    "register_space",
]
