"""Backends register themselves by name on import; importing this package registers them all."""

from devices.backends import android_adb, onnxruntime_backend, tensorrt_backend, tflite_backend  # noqa: F401
from devices.backends.base import Backend, list_backends, make_backend, register_backend

__all__ = ["Backend", "list_backends", "make_backend", "register_backend"]
