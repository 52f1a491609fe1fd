"""The export formats and the file name each is written under (no imports: the CLI lists them in its help).

Every exporter registers under one of these names (:func:`hwnas.exporters.base.register_exporter`
refuses any other), so this is the one list of formats.
"""

FILE_NAMES = {
    "onnx": "model.onnx",
    "tflite": "model.tflite",
    "tflite-fp16": "model.fp16.tflite",
    "tflite-dynamic": "model.dynamic.tflite",
    "tflite-int8": "model.int8.tflite",
    "tensorrt": "model.plan",
    "tensorrt-fp16": "model.fp16.plan",
}
