"""Backends register themselves by name (:data:`hwnas.devices.backends.base.BACKENDS`) when first looked up."""

from hwnas.devices.backends.base import Backend, list_backends, make_backend, register_backend

__all__ = ["Backend", "list_backends", "make_backend", "register_backend"]
