"""Exporters: ONNX, TFLite (fp32 / fp16 / dynamic / int8) and TensorRT files, verified against
PyTorch on real images and re-measured on a device, with a model card.

Knows nothing of search spaces: it takes ``nn.Module``s, example inputs and images. Names are
imported on first use (torch and the converters are heavy).
"""

from hwnas.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "ExportRequest": "pipeline",
        "export_all": "pipeline",
        "Exporter": "base",
        "Tolerance": "base",
        "get_exporter": "base",
        "list_formats": "base",
        "register_exporter": "base",
        "Verification": "verification",
        "VerificationError": "verification",
        "verify": "verification",
    },
)
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
    "verification",
]
