"""ModelConfig: the one configuration object both backends take."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

# The target value cross_entropy does not count (torch's default ``ignore_index``): padded
# targets, unmasked positions of a masked LM. Defined here once, imported by the data
# batches, both backends' models and the applications.
IGNORE_INDEX = -100

# The activation names a model accepts: ModelConfig checks them, the CLI offers them, and
# each backend's activations.py maps them to its functions (ACTIVATIONS there).
ACTIVATIONS = ("relu", "gelu", "gelu_tanh")
POSITIONALS = ("learned", "sinusoidal", "rope")
DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class ModelConfig:
    r"""Shapes and choices of a Transformer, shared by ``reference`` and ``torch_backend``.

    d_ff defaults to 4 * d_model when left at 0. ``norm_first`` selects pre-norm (GPT-2)
    over post-norm (the original Transformer and BERT). ``positional`` is how the model
    knows where a token is: ``"learned"`` (GPT-2, BERT) or ``"sinusoidal"`` (Vaswani et
    al. 2017) add a position vector to the embeddings (chapter section 2.3); ``"rope"``
    adds nothing and rotates each head's queries and keys by their positions instead
    (RoPE, Su et al. 2021; LLaMA), so attention scores depend on the offset between
    two tokens (``minillm.reference.rope``). RoPE needs an even head size.

    Options that pretrained checkpoints need (``minillm.apps.interop``), all off by default:
    ``type_vocab_size`` > 0 adds token-type (segment) embeddings to the input (BERT);
    ``embedding_norm`` puts a LayerNorm after the summed embeddings (BERT);
    ``lm_head_transform`` puts BERT's prediction transform
    :math:`\mathrm{LN}(\phi(hW_t + b_t))` before the output projection;
    ``lm_head_bias`` adds a bias ``b_out`` (V,) to the logits (BERT's decoder bias).

    ``init_std`` is the standard deviation of the initial weights (GPT-2's and BERT's
    0.02, their ``initializer_range``). It was tuned for d_model 768, where it is close to
    :math:`1/\sqrt{C}`; a small model may need the larger :math:`1/\sqrt{C}` itself
    (``minillm.apps.question_answering.QA_CONFIG`` does, see benchmarks/README.md).
    """

    vocab_size: int = 256
    block_size: int = 64
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    d_ff: int = 0
    dropout: float = 0.0
    activation: str = "gelu"
    norm_first: bool = True
    layer_norm_eps: float = 1e-5
    tie_embeddings: bool = False
    positional: str = "learned"
    dtype: str = "float32"
    type_vocab_size: int = 0
    embedding_norm: bool = False
    lm_head_transform: bool = False
    lm_head_bias: bool = False
    init_std: float = 0.02

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "d_model", "n_heads", "n_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ModelConfig.{name} must be a positive int, got {value!r}")
        if self.d_ff == 0:
            object.__setattr__(self, "d_ff", 4 * self.d_model)
        if not isinstance(self.d_ff, int) or self.d_ff < 1:
            raise ValueError(f"ModelConfig.d_ff must be a positive int, got {self.d_ff!r}")
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model must be divisible by n_heads: expected d_model % n_heads == 0, "
                f"got d_model={self.d_model}, n_heads={self.n_heads}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ModelConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"ModelConfig.activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.positional not in POSITIONALS:
            raise ValueError(f"ModelConfig.positional must be one of {POSITIONALS}, got {self.positional!r}")
        if self.positional == "rope" and (self.d_model // self.n_heads) % 2:
            raise ValueError(f"positional='rope' rotates pairs of a head's dimensions: expected an even "
                             f"head size d_model / n_heads, got {self.d_model} / {self.n_heads} = "
                             f"{self.d_model // self.n_heads}")
        if self.dtype not in DTYPES:
            raise ValueError(f"ModelConfig.dtype must be one of {DTYPES}, got {self.dtype!r}")
        if (not isinstance(self.type_vocab_size, int) or isinstance(self.type_vocab_size, bool)
                or self.type_vocab_size < 0):
            raise ValueError(f"ModelConfig.type_vocab_size must be an int >= 0, got {self.type_vocab_size!r}")
        for name in ("embedding_norm", "lm_head_transform", "lm_head_bias"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"ModelConfig.{name} must be a bool, got {getattr(self, name)!r}")
        if (isinstance(self.init_std, bool) or not isinstance(self.init_std, (int, float))
                or not 0 < self.init_std < float("inf")):
            raise ValueError(f"ModelConfig.init_std must be a finite number > 0, got {self.init_std!r}")
        if not self.layer_norm_eps > 0:
            raise ValueError(f"ModelConfig.layer_norm_eps must be > 0, got {self.layer_norm_eps!r}")

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig fields {unknown}; expected a subset of {sorted(known)}")
        return cls(**d)
