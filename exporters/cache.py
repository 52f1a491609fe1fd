"""Converted files kept by content, so a network exported twice is converted once.

A TFLite conversion costs 10-30 s of one core and a dynamo ONNX export 1-3 s, whatever the weights. The same
network is exported again and again: a rerun, the drift references every measuring session re-times (seeded random
weights, so the same file each time), ``hwnas export`` twice, one network specialized for two budgets. The file is
kept in ``exports/`` of hwnas's model cache under :func:`conversion_key` and copied out instead of converted anew.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from pathlib import Path

import torch
from torch import nn

from hwnas.fileio import atomic_write
from hwnas.paths import model_cache

_BYPASSED: ContextVar[bool] = ContextVar("hwnas_export_cache_bypassed", default=False)


@contextlib.contextmanager
def bypassed() -> Iterator[None]:
    """Convert for real inside this block, neither reading nor filling the cache: the profiler keeps its converted
    layers in its own ``--cache`` (keyed by layer), and a profile into an empty one must convert, as its measured
    conversion time and its Ctrl-C tests expect."""
    token = _BYPASSED.set(True)
    try:
        yield
    finally:
        _BYPASSED.reset(token)


def conversion_key(module: nn.Module, example_input: torch.Tensor, converter: str) -> str | None:
    """What a converted file depends on: the converter and its settings (``converter``), the input shape, the module's
    structure and weights, and its output on a fixed input (which tells apart forwards that structure and weights alone
    do not, e.g. a block with and without its residual). None when that forward fails: the converter then says why."""
    digest = hashlib.sha256(f"{converter}|{tuple(example_input.shape)}|{example_input.dtype}|{module!r}".encode())
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(str((tensor.dtype, tuple(tensor.shape))).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    generator = torch.Generator().manual_seed(0)
    probe = torch.randn(example_input.shape, generator=generator).to(example_input.dtype)
    try:
        with torch.no_grad():
            output = module(probe)
    except Exception:  # the converter meets the same failure and names it as the user's error
        return None
    for tensor in output if isinstance(output, tuple | list) else (output,):
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


def versions(*distributions: str) -> str:
    """``name version`` of each installed distribution (a converter's parts), ``name ?`` when one is missing."""
    from importlib import metadata

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "?"

    return "|".join(f"{name} {version(name)}" for name in distributions)


def cached_conversion(cache: Path | None, key: str | None, suffix: str, out_path: Path, convert: Callable[[], Path]) -> Path:
    """``out_path`` holding the file kept under ``key`` in ``cache`` (default: ``exports/`` of the model cache), or made
    by ``convert`` (which writes ``out_path``) and kept there. A cache that cannot be written only costs time."""
    if key is None or _BYPASSED.get():
        return convert()
    folder = cache if cache is not None else model_cache() / "exports"
    cached = folder / f"{key}{suffix}"
    if cached.is_file():
        return atomic_write(Path(out_path), lambda temp: shutil.copyfile(cached, temp))
    converted = convert()
    with contextlib.suppress(OSError):  # a read-only home or a full disk
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(cached, lambda temp: shutil.copyfile(converted, temp))
    return converted
