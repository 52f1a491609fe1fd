"""Exporters: ONNX, TFLite (fp32 / fp16 / dynamic / int8) and TensorRT files, verified against
PyTorch on real images and re-measured on a device, with a model card.

Knows nothing of search spaces: it takes ``nn.Module``s, example inputs and images.
"""

from exporters import onnx_export, tensorrt_export, tflite_export  # noqa: F401  (register the formats)
from exporters.base import Exporter, Tolerance, get_exporter, list_formats, register_exporter
from exporters.pipeline import ExportRequest, export_all
from exporters.verify import Verification, VerificationError, verify

__all__ = [
    "ExportRequest",
    "Exporter",
    "Tolerance",
    "Verification",
    "VerificationError",
    "export_all",
    "get_exporter",
    "list_formats",
    "register_exporter",
    "verify",
]
