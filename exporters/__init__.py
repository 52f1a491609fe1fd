"""Exporters: ONNX, TFLite and TensorRT files, verified against PyTorch and re-measured on a device."""
