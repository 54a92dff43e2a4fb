"""The PyTorch backend: the same public names as ``minillm.reference``, written with
tensor ops; gradients come from autograd. Runs on CPU, CUDA and MPS."""
try:
    import torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "minillm.torch_backend needs PyTorch, which is not installed. Install it with "
        "`pip install 'minillm[torch]'` (or `pip install torch`); the NumPy reference, "
        "minillm.reference, works without it."
    ) from exc

from . import (
    activations, attention, dpo, dropout, embedding, feed_forward, layer_norm, layers,
    linear, lora, losses, models, optim, parameter, rms_norm, rope, seq2seq, softmax, span_qa,
)

_MODULES = (
    softmax, activations, losses, dpo, linear, lora, embedding, layer_norm, rms_norm, feed_forward, dropout,
    attention, rope, parameter, optim, layers, models, seq2seq, span_qa,
)
__all__ = [name for module in _MODULES for name in module.__all__]
for _module in _MODULES:
    for _name in _module.__all__:
        globals()[_name] = getattr(_module, _name)
del _module, _name
