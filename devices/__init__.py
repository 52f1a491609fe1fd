"""Device backends: run a model file on a target runtime and return latency samples.

Knows nothing of search spaces: it takes model files. ``DeviceSpec.from_toml`` reads a device
description, ``make_backend(spec)`` gives its runtime (onnxruntime, tflite, android-adb, tensorrt).
"""

from devices.backends import Backend, list_backends, make_backend, register_backend
from devices.measurement import Measurement
from devices.spec import DeviceSpec, shipped_specs

__all__ = ["Backend", "DeviceSpec", "Measurement", "list_backends", "make_backend", "register_backend", "shipped_specs"]
