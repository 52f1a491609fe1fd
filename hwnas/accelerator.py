"""Where training runs: a CUDA GPU when there is one, all CPU cores otherwise; and data-parallel processes under torchrun.

``--accelerator auto|cpu|cuda`` becomes a :class:`torch.device` through :func:`resolve_device`: ``auto`` is the
first CUDA device when ``torch.cuda.is_available()``, else the CPU; ``cuda`` where there is none is one line saying
why. Everything else is written against PyTorch's device API, so the CPU path is the same code as the GPU's.

Mixed precision (:class:`Precision`), on CUDA only: forward and backward passes run under ``torch.autocast`` in
bfloat16 where the GPU has it, float16 otherwise (then with a ``torch.amp.GradScaler``, which bfloat16's range does
not need). What is unsafe in half precision stays in float32: the weights and optimizer state (autocast casts copies),
BatchNorm (its statistics are float32 buffers, and autocast runs batch norm in float32), the losses (computed on the
logits cast back to float32, outside autocast) and every evaluation (no autocast at all). On the CPU nothing is cast:
training is what it was before accelerators existed, operation for operation.

Checkpoints stay device-independent: :func:`to_cpu` copies what is saved to CPU tensors, and every reader loads with
``map_location="cpu"``, so a run started on a GPU resumes on a machine without one.

:class:`Distributed` is one process of a data-parallel run launched by ``torchrun`` (``WORLD_SIZE`` > 1, ``RANK``,
``LOCAL_RANK`` in the environment): it joins the process group (gloo on the CPU, NCCL on CUDA) and averages
gradients and buffers across the processes; :mod:`hwnas.supernet.train` says how supernet training uses it.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import datetime
import os
import signal
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from hwnas.errors import UserError

ACCELERATORS = ("auto", "cpu", "cuda")


def cuda_unavailable_reason() -> str | None:
    """Why there is no CUDA device here (``None`` when there is one): a CPU-only build of torch, or no device found."""
    if torch.cuda.is_available():
        return None
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU-only build"
    return (
        f"torch {torch.__version__} is built for CUDA {torch.version.cuda} but finds no device: no NVIDIA driver, "
        "or CUDA_VISIBLE_DEVICES hides them"
    )


def resolve_device(name: str = "auto", index: int | None = None) -> torch.device:
    """The device ``--accelerator name`` means here; ``index``: which CUDA device (a torchrun process's LOCAL_RANK)."""
    if name not in ACCELERATORS:
        raise UserError(f"accelerator {name!r} is not one of {', '.join(ACCELERATORS)}")
    if name == "cpu":
        return torch.device("cpu")
    reason = cuda_unavailable_reason()
    if reason is not None:
        if name == "cuda":
            raise UserError(f"no CUDA device here ({reason}); use --accelerator cpu or auto")
        return torch.device("cpu")
    if index is not None and index >= torch.cuda.device_count():
        raise UserError(f"CUDA device {index} asked for, but {torch.cuda.device_count()} device(s) here")
    return torch.device("cuda", index if index is not None else torch.cuda.current_device())


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The half precision forward passes run in on ``device``: bfloat16 where the GPU has it, else float16; None on the CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast_context(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast`` in :func:`autocast_dtype` on CUDA; on the CPU a context that does nothing."""
    dtype = autocast_dtype(device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device) -> torch.amp.GradScaler | None:
    """A loss scaler for float16 training on CUDA (small gradients would underflow); None for bfloat16 and the CPU."""
    if autocast_dtype(device) != torch.float16:
        return None
    return torch.amp.GradScaler(device.type)


@dataclass
class Precision:
    """How one training run does forward, backward and optimizer step on its device (see the module docstring)."""

    device: torch.device
    scaler: torch.amp.GradScaler | None = field(default=None)

    @classmethod
    def for_device(cls, device: torch.device) -> Precision:
        return cls(device, grad_scaler(device))

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Around the forward pass only; compute the loss after it, on ``logits.float()``."""
        return autocast_context(self.device)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """``optimizer.step()``; with a scaler the gradients are unscaled first and a step with inf/NaN in them skipped."""
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()


def to_device(value: Any, device: torch.device) -> Any:
    """A tensor (or a tuple or list of them: a batch) on ``device``; on the CPU the very same tensors."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=device.type == "cuda")
    if isinstance(value, tuple | list):
        return type(value)(to_device(item, device) for item in value)
    return value


def to_cpu(value: Any) -> Any:
    """``value`` (dicts, lists and tuples of tensors and plain values) with every tensor on the CPU: what a checkpoint saves.

    What holds no tensor off the CPU is returned as it is (no copy): a CPU run's checkpoint is what it was before.
    A copied dict keeps its type and attributes (a state dict's ``_metadata``).
    """
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        moved = {key: to_cpu(item) for key, item in value.items()}
        if all(moved[key] is item for key, item in value.items()):
            return value
        copied = copy.copy(value)
        copied.update(moved)
        return copied
    if isinstance(value, tuple | list):
        items = [to_cpu(item) for item in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else type(value)(items)
    return value


def module_device(module: nn.Module) -> torch.device:
    """The device of a module's first parameter (or buffer); the CPU for a module without either."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


@contextlib.contextmanager
def channels_last(*modules: nn.Module | None) -> Iterator[None]:
    """Train ``modules`` with their 4-d weights in channels-last (NHWC) order; contiguous again on leaving.

    oneDNN's CPU convolutions (depthwise ones above all) and cuDNN's tensor cores run faster on NHWC. Measured on
    this 2-core machine, one thread, batches of 128 (2026-12-05): a training step of default-space networks took
    0.19-0.73 s instead of 0.25-1.29 s (1.35-1.8x, the larger networks gaining most), a supernet sandwich step 1.8 s
    instead of 3.0 s. Only the layout changes, never a value; the sums inside a convolution run in another order,
    so a run is reproducible as before but not bit-identical to one trained contiguous. Evaluation, BatchNorm
    re-estimation, checkpoints and exports see the contiguous modules, as before. ``None`` entries are skipped.
    """
    present = [module for module in modules if module is not None]
    for module in present:
        module.to(memory_format=torch.channels_last)
    try:
        yield
    finally:
        for module in present:
            module.to(memory_format=torch.contiguous_format)


# ---- data-parallel processes (torchrun) ----------------------------------------------------------
@dataclass(frozen=True)
class Distributed:
    """This process's place in a data-parallel run that ``torchrun`` launched (see the module docstring)."""

    rank: int
    world_size: int
    local_rank: int

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> Distributed | None:
        """The run torchrun's variables describe, or None outside torchrun (or with one process: nothing to share)."""
        env = os.environ if environ is None else environ
        try:
            world_size = int(env.get("WORLD_SIZE", "1"))
            if world_size <= 1:
                return None
            rank, local_rank = int(env["RANK"]), int(env.get("LOCAL_RANK", env["RANK"]))
        except (KeyError, ValueError):
            raise UserError(
                "WORLD_SIZE, RANK and LOCAL_RANK must be whole numbers when WORLD_SIZE is set: launch with torchrun"
            ) from None
        if not 0 <= rank < world_size:
            raise UserError(f"RANK {rank} is not below WORLD_SIZE {world_size}")
        return cls(rank, world_size, local_rank)

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes checkpoints, final files and log lines."""
        return self.rank == 0

    def start(self, device: torch.device) -> None:
        """Join the process group (environment rendezvous: torchrun's MASTER_ADDR, MASTER_PORT); gloo or NCCL by device.

        Also asks Linux to kill this process when its parent (torchrun's agent) dies: torchrun starts each process in
        a session of its own, so a ``kill -9`` of torchrun would otherwise leave them training, and writing the
        checkpoint, beside the run started again to resume.
        """
        if dist.is_initialized():
            return
        _die_with_parent()
        if not dist.is_available():
            raise UserError(f"torch {torch.__version__} has no torch.distributed: data-parallel training needs it")
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend, rank=self.rank, world_size=self.world_size, timeout=datetime.timedelta(minutes=30))

    def stop(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()

    def barrier(self) -> None:
        dist.barrier()

    def broadcast_module(self, module: nn.Module) -> None:
        """Rank 0's parameters and buffers on every process (they agree from then on: each step averages gradients)."""
        with torch.no_grad():
            for tensor in [*module.parameters(), *module.buffers()]:
                dist.broadcast(tensor.data, src=0)

    def average_gradients(self, parameters: Iterable[nn.Parameter]) -> None:
        """Every gradient replaced by its mean over the processes, in one all-reduce of one flat buffer.

        Parameters without a gradient are left alone: every process ran the same subnetworks, so they are the same ones.
        """
        grads = [p.grad for p in parameters if p.grad is not None]
        self._average(grads)

    def average_buffers(self, module: nn.Module) -> None:
        """Floating-point buffers (BatchNorm running statistics) averaged over the processes, so every copy is the same."""
        self._average([b for b in module.buffers() if torch.is_floating_point(b)])

    def _average(self, tensors: list[torch.Tensor]) -> None:
        if not tensors:
            return
        flat = torch.cat([t.detach().reshape(-1) for t in tensors])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= self.world_size
        offset = 0
        with torch.no_grad():
            for tensor in tensors:
                tensor.copy_(flat[offset : offset + tensor.numel()].view_as(tensor))
                offset += tensor.numel()

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """Plain numbers summed over the processes (an epoch's loss sums and image counts)."""
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.tolist()


def _die_with_parent() -> None:
    """``prctl(PR_SET_PDEATHSIG, SIGKILL)`` on Linux; elsewhere nothing."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # no prctl: a killed torchrun leaves its processes to be stopped by hand
        return


PR_SET_PDEATHSIG = 1  # <sys/prctl.h>


@contextlib.contextmanager
def distributed_session(distributed: Distributed | None, device: torch.device) -> Iterator[Distributed | None]:
    """Within: this process is in the run's process group (when under torchrun); on leaving, out of it."""
    if distributed is None:
        yield None
        return
    distributed.start(device)
    try:
        yield distributed
    finally:
        distributed.stop()
