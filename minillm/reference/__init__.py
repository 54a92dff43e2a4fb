"""The NumPy reference: every formula as it reads, every gradient written by hand.

This package never imports torch (a test checks it in a process where torch cannot be
imported). Each op ``f`` has ``f_backward(dout, cache)`` beside it; the layers and
models chain those backwards so that ``loss.backward()`` is plain NumPy.
"""
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
