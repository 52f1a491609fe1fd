"""Elastic weight-sharing supernet (Once-for-All style): one set of weights for every architecture of a space.

:class:`Supernet` runs any architecture of its space on the shared weights and extracts it as the
ordinary network :func:`hwnas.builder.build_model` builds; :mod:`hwnas.supernet.elastic` holds the
elastic layers it is made of.
"""

from hwnas.supernet.elastic import (
    DynamicBatchNorm2d,
    DynamicConv2d,
    DynamicConvBN,
    DynamicLinear,
    DynamicMBConv,
    DynamicSE,
    sliced,
)
from hwnas.supernet.network import Supernet

__all__ = [
    "DynamicBatchNorm2d",
    "DynamicConv2d",
    "DynamicConvBN",
    "DynamicLinear",
    "DynamicMBConv",
    "DynamicSE",
    "Supernet",
    "sliced",
]
