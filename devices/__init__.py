"""Device backends: run a model file on a target runtime and return latency samples.

Knows nothing of search spaces: it takes model files. ``DeviceSpec.from_toml`` reads a device
description, ``make_backend(spec)`` gives its runtime (onnxruntime, tflite, android-adb, tensorrt).
Names are imported on first use, so ``import hwnas.devices.spec`` loads no runtime.
"""

from hwnas.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Backend": "backends.base",
        "list_backends": "backends.base",
        "make_backend": "backends.base",
        "register_backend": "backends.base",
        "Measurement": "measurement",
        "DeviceSpec": "spec",
        "export_format_for": "formats",
        "formats_to_export": "formats",
        "shipped_specs": "spec",
    },
)
__all__ = [
    "Backend",
    "DeviceSpec",
    "Measurement",
    "export_format_for",
    "formats_to_export",
    "list_backends",
    "make_backend",
    "register_backend",
    "shipped_specs",
]
