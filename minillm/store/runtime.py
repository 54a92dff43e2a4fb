"""Runtime: which backend, which device, and how NumPy batches reach it.

The trainer, the generator, the evaluator and the server are written once; a
``Runtime`` is the only thing that knows whether arrays are NumPy arrays (the
reference) or torch tensors on a device (the torch backend). Importing this module
does not import torch: ``Runtime("numpy")`` works where torch is not installed.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
from dataclasses import dataclass, field

import numpy as np

from ..core._optional import missing_extra

__all__ = ["BACKENDS", "DEVICES", "Runtime", "load_backend", "default_backend", "DEFAULT_BACKEND_RULE"]

BACKENDS = ("numpy", "torch")
DEVICES = ("cpu", "cuda", "mps")


DEFAULT_BACKEND_RULE = "the torch fast path where torch is installed, else numpy"


def default_backend() -> str:
    """Every command's and every constructor's default backend: ``"torch"`` where torch is
    installed (its fast path, ``fused=True``), else ``"numpy"`` (:data:`DEFAULT_BACKEND_RULE`).
    Finding torch does not import it."""
    return "torch" if importlib.util.find_spec("torch") is not None else "numpy"


def load_backend(name: str):
    """``"numpy"`` -> ``minillm.reference``; ``"torch"`` -> ``minillm.torch_backend``."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    if name == "numpy":
        return importlib.import_module("minillm.reference")
    try:
        return importlib.import_module("minillm.torch_backend")
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "torch":
            raise
        raise missing_extra(exc, "the torch backend", "torch") from exc


@dataclass
class Runtime:
    """A backend, a device, the torch path and the distributed rank this process runs as:
    the one value every command, ``train``, ``load_run``, evaluation and the server take
    for where a model runs. ``Runtime()`` is :func:`default_backend` on the CPU, fast path.

    ``amp`` turns on bf16 autocast, which only the torch backend on CUDA supports.
    ``fused`` (torch only; ignored by numpy): the models and optimizers this runtime
    prepares use the torch backend's fast path, torch's own kernels (``F.linear``,
    ``F.layer_norm``, fused attention, ``F.cross_entropy``, a ``torch._foreach_*`` Adam
    step); ``False`` runs the explicit path, the reference's formulas written with
    tensor ops (the CLI's ``--explicit``). Both give the same results within rounding.
    Under ``torchrun`` (``WORLD_SIZE`` > 1) the torch backend joins the process group
    (gloo on CPU, nccl on CUDA); ``rank`` 0 is the one that writes files and prints.
    """

    backend: str = field(default_factory=default_backend)
    device: str = "cpu"
    amp: bool = False
    rank: int = 0
    world_size: int = 1
    fused: bool = True
    module: object = field(init=False, repr=False)

    def __post_init__(self):
        if not isinstance(self.fused, bool):
            raise ValueError(f"expected fused to be a bool, got {self.fused!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")
        self.module = load_backend(self.backend)
        if self.backend == "numpy":
            if self.device != "cpu":
                raise ValueError(f"the numpy backend runs on the CPU only; got device={self.device!r}")
            if self.amp:
                raise ValueError("bf16 autocast needs the torch backend on CUDA; got backend='numpy'")
            return
        import torch
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device='cuda' was asked for, but torch sees no CUDA device")
        if self.device == "mps" and not torch.backends.mps.is_available():
            raise ValueError("device='mps' was asked for, but torch sees no MPS device")
        if self.amp and self.device != "cuda":
            raise ValueError(f"bf16 autocast is offered on CUDA only; got device={self.device!r}")

    # -- distributed ------------------------------------------------------------------
    @classmethod
    def from_env(cls, backend: str, device: str = "cpu", amp: bool = False,
                 fused: bool = True) -> "Runtime":
        """A Runtime that joins ``torchrun``'s process group when ``WORLD_SIZE`` > 1."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls(backend, device, amp, fused=fused)
        if backend != "torch":
            raise ValueError(f"distributed training runs on the torch backend; got backend={backend!r}")
        import torch
        import torch.distributed as dist
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        if device == "cuda":
            torch.cuda.set_device(local_rank)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device == "cuda" else "gloo")
        return cls(backend, device, amp, rank=rank, world_size=world_size, fused=fused)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def runs_fused(self) -> bool | None:
        """What a run records as its ``"fused"``: on torch, whether the fast path runs
        (``True``) or the explicit formulas (``False``); on numpy ``None``, as the
        reference has one path only and ``fused`` is ignored there."""
        return self.fused if self.backend == "torch" else None

    # -- arrays -----------------------------------------------------------------------
    def tensor(self, array):
        """A NumPy array as this backend's array, on this runtime's device."""
        if self.backend == "numpy":
            return np.asarray(array)
        import torch
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device)

    @staticmethod
    def to_numpy(x) -> np.ndarray:
        if hasattr(x, "detach"):
            return x.detach().float().cpu().numpy() if str(x.dtype) == "torch.bfloat16" else x.detach().cpu().numpy()
        return np.asarray(x)

    def prepare(self, model):
        """Move a model to this runtime's device and, on torch, put it on the path this
        runtime runs (``model.set_fused(self.fused)``). Calling it again is harmless."""
        if self.backend == "numpy":
            return model
        model = model.to(self.device)
        if hasattr(model, "set_fused"):
            model.set_fused(self.fused)
        return model

    def prepare_optimizer(self, optimizer):
        """On torch, the optimizer's step follows this runtime's path: the multi-tensor
        ``torch._foreach_*`` step when ``fused``, the explicit one otherwise."""
        if self.backend == "torch" and hasattr(optimizer, "foreach"):
            optimizer.foreach = self.fused
        return optimizer

    def threads(self):
        """This backend's turn at the cores (:mod:`minillm.core.threads`): on torch, NumPy's
        BLAS is set to one thread and left there, so that its pool never competes with
        torch's threads in a process that runs both backends; on numpy, nothing changes."""
        if self.backend == "numpy":
            return contextlib.nullcontext()
        from ..core.threads import torch_turn
        return torch_turn()

    def no_grad(self):
        if self.backend == "numpy":
            return contextlib.nullcontext()
        import torch
        return torch.no_grad()

    def autocast(self):
        """bf16 autocast on CUDA when ``amp`` is on; otherwise nothing."""
        if not self.amp:
            return contextlib.nullcontext()
        import torch
        return torch.autocast("cuda", dtype=torch.bfloat16)

    def synchronize(self) -> None:
        if self.backend == "torch" and self.device == "cuda":
            import torch
            torch.cuda.synchronize()
