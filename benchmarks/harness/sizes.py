"""The model sizes the benchmarks sweep, and the random batch each is timed on.

Dimension legend: B batch, T sequence length (block_size), C d_model, V vocabulary.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minillm.core.config import ModelConfig, architecture_fields

__all__ = ["BenchSize", "gpt_config", "SIZES", "TARGET_SIZES", "random_batch"]


@dataclass(frozen=True)
class BenchSize:
    """One model size of the sweep: a config and a batch size."""

    name: str
    config: ModelConfig
    batch_size: int


def gpt_config(n_layers, n_heads, d_model, block_size, vocab_size=256, **kw) -> ModelConfig:
    """A GPT config without dropout (dropout would time a random mask, not the model)."""
    return ModelConfig(vocab_size=vocab_size, block_size=block_size, d_model=d_model,
                       n_heads=n_heads, n_layers=n_layers, dropout=0.0, **kw)


SIZES = {
    "tiny": BenchSize("tiny", gpt_config(2, 2, 64, 32), 8),
    "small": BenchSize("small", gpt_config(4, 4, 128, 64), 12),       # the targets' model
    "medium": BenchSize("medium", gpt_config(4, 4, 256, 128), 8),
    # the small shapes with ModelConfig's "llama" preset: RMSNorm, SwiGLU (d_ff 4C), 4 query
    # heads sharing 2 key/value heads, split-halves RoPE, no biases (issue 25's targets)
    "small-llama": BenchSize("small-llama", gpt_config(4, 4, 128, 64, **architecture_fields("llama", 4)), 12),
    "gpt2-small": BenchSize("gpt2-small", gpt_config(12, 12, 768, 1024, vocab_size=50257,
                                                     activation="gelu_tanh", tie_embeddings=True), 8),
}
TARGET_SIZES = ("small", "small-llama")      # the sizes the train-step targets are judged on


def random_batch(size: BenchSize, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and targets, token ids drawn uniformly: both (B, T) int64."""
    rng = np.random.default_rng(seed)
    shape = (size.batch_size, size.config.block_size)
    return rng.integers(0, size.config.vocab_size, shape), rng.integers(0, size.config.vocab_size, shape)
