"""The machine a result was measured on: CPU, cores, library versions, load, device."""
from __future__ import annotations

import os
import platform

import numpy as np

__all__ = ["torch_or_none", "cpu_name", "environment", "synchronizer"]


def torch_or_none():
    """The torch module, or None where it is not installed (the reference runs alone)."""
    try:
        import torch
        return torch
    except ImportError:
        return None


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: str = "cpu") -> dict:
    """The machine and library versions a result was measured on."""
    torch = torch_or_none()
    env = {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
           "numpy": np.__version__, "torch": torch.__version__ if torch else None,
           "platform": platform.platform(), "device": device}
    if hasattr(os, "getloadavg"):
        env["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    if device == "cuda" and torch is not None:
        env["gpu"] = torch.cuda.get_device_name()
    return env


def synchronizer(device: str):
    """A zero-argument call that waits for ``device``'s queued work (CUDA runs asynchronously)."""
    if device == "cuda":
        return torch_or_none().cuda.synchronize
    return lambda: None
