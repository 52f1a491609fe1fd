"""NVIDIA GPUs through TensorRT's Python API: ONNX -> engine -> timed with CUDA events.

Device memory and the stream come from PyTorch's CUDA runtime (already a dependency), so no
pycuda is needed. Where TensorRT or a GPU is missing, ``unavailable_reason`` says so in one line.
Engines are cached beside the ONNX file, keyed by GPU, TensorRT version and precision flags.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from hwnas.devices.backends.base import Backend, register_backend
from hwnas.devices.measurement import Measurement
from hwnas.errors import UserError
from hwnas.fileio import text_sha256


def _import_tensorrt():
    import tensorrt

    return tensorrt


@register_backend
class TensorRTBackend(Backend):
    name = "tensorrt"
    model_format = "onnx"
    options: ClassVar[dict[str, Any]] = {"workspace_mb": 1024, "gpu": 0, "engine_cache": True}

    def unavailable_reason(self) -> str | None:
        try:
            _import_tensorrt()
        except (ImportError, OSError) as error:
            return f"TensorRT is not usable here ({str(error).splitlines()[0]}); it needs an NVIDIA GPU and pip install tensorrt"
        import torch

        if not torch.cuda.is_available():
            return "no CUDA GPU visible to PyTorch"
        if self.settings["gpu"] >= torch.cuda.device_count():
            return f"GPU {self.settings['gpu']} requested, {torch.cuda.device_count()} visible"
        return None

    def fingerprint(self) -> dict[str, Any]:
        import torch

        trt = _import_tensorrt()
        properties = torch.cuda.get_device_properties(self.settings["gpu"])
        return {
            "device": properties.name,
            "compute_capability": f"{properties.major}.{properties.minor}",
            "runtime": "tensorrt",
            "runtime_version": trt.__version__,
            "cuda": torch.version.cuda,
            "precision": self.spec.precision,
            "workspace_mb": self.settings["workspace_mb"],
        }

    # --- convert: ONNX -> serialized engine -----------------------------------------------
    def build_engine(self, onnx_file: Path) -> bytes:
        trt = _import_tensorrt()
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(Path(onnx_file).read_bytes()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise UserError(f"TensorRT cannot parse {onnx_file}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self.settings["workspace_mb"] << 20)
        if self.spec.precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        if self.spec.precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise UserError(f"TensorRT failed to build an engine for {onnx_file}")
        return bytes(serialized)

    def engine_path(self, onnx_file: Path) -> Path:
        stamp = text_sha256(repr(sorted(self.fingerprint().items())), 12)
        return Path(onnx_file).with_suffix(f".{stamp}.plan")

    def load_engine(self, onnx_file: Path):
        cached = self.engine_path(onnx_file)
        if self.settings["engine_cache"] and cached.exists():
            serialized = cached.read_bytes()
        else:
            serialized = self.build_engine(onnx_file)
            if self.settings["engine_cache"]:
                cached.write_bytes(serialized)
        return self.deserialize(serialized)

    def deserialize(self, serialized: bytes):
        trt = _import_tensorrt()
        return trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(serialized)

    def bind(self, engine: Any) -> tuple[Any, dict[str, Any]]:
        """An execution context with one device buffer per I/O tensor (batch 1 where dynamic)."""
        import torch

        trt = _import_tensorrt()
        device = torch.device("cuda", self.settings["gpu"])
        context = engine.create_execution_context()
        buffers = {}
        for index in range(engine.num_io_tensors):
            name = engine.get_tensor_name(index)
            shape = tuple(max(dim, 1) for dim in engine.get_tensor_shape(name))
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                context.set_input_shape(name, shape)
            buffers[name] = torch.randn(shape, device=device).to(_torch_dtype(trt, engine.get_tensor_dtype(name)))
            context.set_tensor_address(name, buffers[name].data_ptr())
        return context, buffers

    # --- profile: CUDA-event timing ---------------------------------------------------------
    def measure(self, model_file: Path) -> Measurement:
        """Time an ONNX file (engine built and cached) or a serialized engine (``.plan``/``.engine``)."""
        self.require_available()
        import torch

        device = torch.device("cuda", self.settings["gpu"])
        with torch.cuda.device(device):
            is_engine = Path(model_file).suffix in (".plan", ".engine")
            engine = self.deserialize(Path(model_file).read_bytes()) if is_engine else self.load_engine(model_file)
            context, _buffers = self.bind(engine)
            stream = torch.cuda.Stream(device)
            samples = _time_with_events(
                lambda: context.execute_async_v3(stream.cuda_stream), stream, self.spec.warmup, self.spec.repeats
            )
        return Measurement(tuple(samples), self.fingerprint())

    def runner(self, engine_file: Path) -> Any:
        """Run a serialized engine on NCHW float batches, image by image; returns the first output."""
        import numpy as np
        import torch

        self.require_available()
        trt = _import_tensorrt()
        engine = self.deserialize(Path(engine_file).read_bytes())
        context, buffers = self.bind(engine)
        names = list(buffers)
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        stream = torch.cuda.Stream(buffers[names[0]].device)

        def run(batch: np.ndarray) -> np.ndarray:
            results = []
            for image in batch:
                buffers[inputs[0]].copy_(torch.from_numpy(image[None]).to(buffers[inputs[0]].dtype))
                context.execute_async_v3(stream.cuda_stream)
                stream.synchronize()
                results.append(buffers[outputs[0]].float().cpu().numpy().copy())
            return np.concatenate(results)

        return run


def _torch_dtype(trt: Any, dtype: Any) -> Any:
    import torch

    mapping = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int8: torch.int8, trt.int32: torch.int32}
    return mapping.get(dtype, torch.float32)


def _time_with_events(run_once: Any, stream: Any, warmup: int, repeats: int) -> list[float]:
    import torch

    for _ in range(warmup):
        run_once()
    stream.synchronize()
    samples = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record(stream)
        run_once()
        end.record(stream)
        end.synchronize()
        samples.append(start.elapsed_time(end))
    return samples
