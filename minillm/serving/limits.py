"""What one request may ask for: :class:`Limits`, and the bounds of the request schemas."""
from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["Limits", "MAX_SEED", "MAX_TOP_K", "MAX_TEMPERATURE", "MAX_BEAM", "MAX_LENGTH_PENALTY"]

MAX_SEED = 2**63 - 1          # numpy's default_rng takes any int >= 0; keep seeds in int64
MAX_TOP_K = 2**31 - 1
MAX_TEMPERATURE = 1e4         # a bound for the schema, far above any useful temperature
MAX_BEAM = 8                  # beam search runs one decoder call per step for the whole beam
MAX_LENGTH_PENALTY = 10.0


@dataclass(frozen=True)
class Limits:
    """What one request may ask for.

    ``max_body_bytes`` bounds the request body (413 beyond it); ``max_text_chars`` the
    prompt or text before tokenizing; ``max_new_tokens`` one generation. The prompt's
    length in tokens is bounded by the model itself: at most ``block_size`` tokens for
    generation and classification, ``block_size + 1`` for scoring (T inputs predict T
    targets). An endpoint's field names a limit as ``"limits.max_new_tokens"``.
    """

    max_body_bytes: int = 64 * 1024
    max_text_chars: int = 16 * 1024
    max_new_tokens: int = 256

    def __post_init__(self):
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Limits.{name} must be an int >= 1, got {value!r}")
