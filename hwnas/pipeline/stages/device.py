"""Stage ``device``: each device spec, its backend here, fingerprint and threads.

The default TFLite device falls back to ONNX Runtime on this CPU when the TFLite interpreter is not
installed (said in a note); any other device that cannot be measured here is a one-line error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hwnas.errors import UserError
from hwnas.pipeline.context import DEFAULT_DEVICE, FALLBACK_DEVICE, RunContext, cores
from hwnas.pipeline.stage import Stage, StageResult


@dataclass(frozen=True)
class DeviceInfo:
    """One device of the run: ``spec`` as given (a shipped name or a TOML path), its name, backend and settings."""

    spec: str
    name: str
    backend: str
    model_format: str
    threads: int
    precision: str
    fingerprint: dict[str, Any]
    definition: dict[str, Any]  # the spec's own JSON: the run reads its devices from here, not from the TOML again
    cores: list[int] | None = None

    def device_spec(self) -> Any:
        """The :class:`~hwnas.devices.DeviceSpec` this device was measured with."""
        from hwnas.devices import DeviceSpec

        return DeviceSpec.from_json(self.definition, source=self.spec)


@dataclass(frozen=True)
class DeviceResult(StageResult):
    """``devices``: the first is searched for; every one is exported to and measured on. ``cores``: this process's."""

    STAGE = "device"

    devices: list[DeviceInfo]
    cores: int
    notes: list[str] = field(default_factory=list)

    @property
    def primary(self) -> DeviceInfo:
        return self.devices[0]


def run(context: RunContext) -> DeviceResult:
    devices, notes = [], []
    for arg in context.config.devices:
        spec, backend, note = _backend(arg, context)
        if note:
            context.log(note)
            notes.append(note)
        devices.append(
            DeviceInfo(
                spec=FALLBACK_DEVICE if note else arg,
                name=spec.name,
                backend=spec.backend,
                model_format=backend.model_format,
                threads=spec.threads,
                precision=spec.precision,
                cores=list(spec.cores) if spec.cores else None,
                fingerprint=backend.fingerprint(),
                definition=spec.to_json(),
            )
        )
        context.log(f"device {spec.name}: {spec.backend}, {spec.threads} thread(s), {spec.precision}")
    return DeviceResult(devices=devices, notes=notes, cores=cores())


def _backend(arg: str, context: RunContext) -> tuple[Any, Any, str | None]:
    """The spec and backend of ``arg``; the default TFLite device becomes ONNX Runtime where TFLite is missing (a note)."""
    from hwnas.devices import DeviceSpec, make_backend

    spec = DeviceSpec.from_toml(arg)
    backend = make_backend(spec)
    reason = backend.unavailable_reason()
    note = None
    if reason is not None and arg == DEFAULT_DEVICE and len(context.config.devices) == 1:
        note = (
            f"the TFLite interpreter is not installed here ({reason}); measuring with ONNX Runtime on this CPU instead "
            "(pip install -e '.[tflite]' for TFLite, what phones run)"
        )
        spec = DeviceSpec.from_toml(FALLBACK_DEVICE)
        backend = make_backend(spec)
        reason = backend.unavailable_reason()
    if reason is not None:
        raise UserError(f"device {spec.name} ({arg}) cannot be measured here: {reason}")
    return spec, backend, note


STAGE = Stage("device", (), DeviceResult, run)
