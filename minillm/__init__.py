"""minillm: every formula of LLM training written twice, in NumPy and in PyTorch.

``minillm.reference`` is pure NumPy with hand-written gradients; ``minillm.torch_backend``
has the same public names and takes its gradients from autograd. ``import minillm``
needs only NumPy; the torch backend is imported on demand.
"""
import logging

from .core.config import ModelConfig

__version__ = "0.1.0"
__all__ = ["ModelConfig", "__version__"]

logging.getLogger("minillm").addHandler(logging.NullHandler())

