"""PyTorch -> TFLite through litert-torch (no TensorFlow needed).

Inputs and outputs are made channel-last (NHWC) with ``litert_torch.to_channel_last_io`` so a
phone feeds camera frames with no transpose. litert-torch is an optional extra (``.[tflite]``);
importing it is deferred so the rest of hwnas works without it.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from hwnas.errors import UserError
from hwnas.fileio import atomic_write


def quiet_tensorflow_logs() -> None:
    """litert-torch brings absl/TF logging that floods stderr; keep errors only."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")


def require_litert_torch():  # noqa: ANN201  (returns the module)
    quiet_tensorflow_logs()
    try:
        import litert_torch
    except ImportError:
        raise UserError("TFLite export needs litert-torch: pip install -e '.[tflite]'") from None
    return litert_torch


def to_nhwc(example_input: torch.Tensor) -> torch.Tensor:
    return example_input.permute(0, 2, 3, 1).contiguous() if example_input.ndim == 4 else example_input


def export_tflite(module: nn.Module, example_input: torch.Tensor, out_path: Path, *, channel_last: bool = True) -> Path:
    """Convert ``module`` to a float32 .tflite at ``out_path`` (NHWC input when ``channel_last``)."""
    litert_torch = require_litert_torch()
    module = module.eval()
    sample = example_input
    if channel_last and example_input.ndim == 4:
        outputs = [0] if _output_is_spatial(module, example_input) else None
        module = litert_torch.to_channel_last_io(module, args=[0], outputs=outputs)
        sample = to_nhwc(example_input)

    def write(temp: Path) -> None:
        try:
            converted = litert_torch.convert(module, (sample,))
        except Exception as error:  # the converter raises many types; name the first line
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise UserError(f"TFLite conversion failed: {first_line}") from error
        converted.export(str(temp))

    return atomic_write(Path(out_path), write)


def _output_is_spatial(module: nn.Module, example_input: torch.Tensor) -> bool:
    with torch.no_grad():
        return module(example_input).ndim == 4
