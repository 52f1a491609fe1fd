"""The deployable export format of each device, decided once (``hwnas search``, ``hwnas run`` and ``hwnas export``
all ask here). Names are those of :mod:`hwnas.exporters.formats`; devices does not import the exporters."""

from __future__ import annotations

from hwnas.devices.spec import DeviceSpec

# The deployable file each runtime runs, by the spec's precision (names as in hwnas.exporters.formats; devices does
# not import the exporters). A TensorRT int8 engine needs calibration data the builder does not get: fp32 engine.
_TFLITE_FORMATS = {"fp32": "tflite", "fp16": "tflite-fp16", "int8": "tflite-int8"}
EXPORT_FORMATS: dict[str, dict[str, str]] = {
    "tflite": _TFLITE_FORMATS,
    "android-adb": _TFLITE_FORMATS,
    "tensorrt": {"fp32": "tensorrt", "fp16": "tensorrt-fp16", "int8": "tensorrt"},
    "onnxruntime": {"fp32": "onnx", "fp16": "onnx", "int8": "onnx"},
}


def export_format_for(spec: DeviceSpec) -> str:
    """The export format a device is given (``hwnas search``, ``hwnas run`` and ``hwnas export`` all ask here).

    A TFLite fp16 device gets ``tflite-fp16``, a TensorRT fp16 one ``tensorrt-fp16``; a backend registered by a
    user gets the file type its backend measures.
    """
    formats = EXPORT_FORMATS.get(spec.backend)
    if formats is not None:
        return formats[spec.precision]
    from hwnas.devices.backends import make_backend

    return str(make_backend(spec).model_format)


def handoff_format_for(spec: DeviceSpec) -> str:
    """The file handed over for a device that is not here (known only by its latency table): its own format where
    it can be made and verified on this machine (TFLite, ONNX), else ONNX (a TensorRT engine is built on its own GPU
    from the ONNX file). Unlike :func:`export_format_for` it never builds a backend: a table device has no runtime."""
    chosen = EXPORT_FORMATS.get(spec.backend, {}).get(spec.precision, "onnx")
    return chosen if chosen.startswith(("tflite", "onnx")) else "onnx"


def formats_to_export(specs: list[DeviceSpec]) -> list[str]:
    """Each device's format (:func:`export_format_for`), then ONNX and TFLite: what ``hwnas run`` exports, and what
    ``hwnas export --device ...`` exports when no ``--format`` is given."""
    return list(dict.fromkeys([*(export_format_for(spec) for spec in specs), "onnx", "tflite"]))
