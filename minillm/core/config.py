"""ModelConfig: the one configuration object both backends take."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

# The target value cross_entropy does not count (torch's default ``ignore_index``): padded
# targets, unmasked positions of a masked LM. Defined here once, imported by the data
# batches, both backends' models and the applications.
IGNORE_INDEX = -100

# The elementwise activation names: ModelConfig checks them, the CLI offers them, and
# each backend's activations.py maps them to its functions (ACTIVATIONS there).
ACTIVATIONS = ("relu", "gelu", "gelu_tanh", "silu")
# The gated feed-forward networks a ModelConfig may name as its ``activation`` instead,
# each with the elementwise activation of its gate: (act(x W_gate) * x W_up) W_down.
# SwiGLU: Shazeer 2020, "GLU Variants Improve Transformer" (Llama, Qwen, Mistral).
GATED_ACTIVATIONS = {"swiglu": "silu"}
POSITIONALS = ("learned", "sinusoidal", "rope")
NORMS = ("layer", "rms")
ROPE_LAYOUTS = ("interleaved", "half")
# RoPE's frequency scalings (ModelConfig.rope_scaling), each with the fields it needs, named
# as Hugging Face's config.json names them. "llama3": Llama 3.1's (minillm.core.init.rope_frequencies).
ROPE_SCALINGS = {"llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")}
DTYPES = ("float32", "float64")

# The architecture presets (``minillm pretrain --arch``): each names the ModelConfig fields
# it sets, declared here once. ``kv_group`` is not a field: the query heads that share one
# key/value head (grouped-query attention), so n_kv_heads = n_heads / kv_group where it
# divides, else n_heads (0, :func:`architecture_fields`). ``rope_layout`` applies only where
# the positions are RoPE. QK-norm stays off in "llama": Llama 1 to 3 have none (Qwen 3 and
# OLMo 2 add it); ModelConfig.qk_norm turns it on.
ARCHITECTURES = {
    "gpt2": {"norm": "layer", "activation": "gelu", "positional": "learned", "bias": True, "qk_norm": False,
             "kv_group": 1},
    "llama": {"norm": "rms", "activation": "swiglu", "positional": "rope", "rope_layout": "half",
              "bias": False, "qk_norm": False, "kv_group": 2},
}


def architecture_fields(name: str, n_heads: int, **chosen) -> dict:
    """The ModelConfig fields of preset ``name`` for ``n_heads`` query heads; ``chosen``
    (``activation``, ``positional``) overrides the preset's where not None."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture: expected one of {tuple(ARCHITECTURES)}, got {name!r}")
    fields = {k: v for k, v in ARCHITECTURES[name].items() if k != "kv_group"}
    fields.update({k: v for k, v in chosen.items() if v is not None})
    group = ARCHITECTURES[name]["kv_group"]
    fields["n_kv_heads"] = n_heads // group if group > 1 and n_heads % group == 0 else 0   # 0: n_heads
    if fields["positional"] != "rope":
        fields.pop("rope_layout", None)
    return fields


def architecture_of(config: "ModelConfig") -> str | None:
    """The preset a config was built from (its norm, biases, QK-norm and key/value
    grouping; the activation and positions are options of their own), else None."""
    for name in ARCHITECTURES:
        fields = architecture_fields(name, config.n_heads, activation=config.activation,
                                     positional=config.positional)
        if (all(getattr(config, k) == v for k, v in fields.items() if k != "n_kv_heads")
                and config.kv_heads == (fields["n_kv_heads"] or config.n_heads)):
            return name
    return None


def check_rope_scaling(scaling, name: str = "ModelConfig.rope_scaling") -> dict | None:
    """None, or a scaling of ``ROPE_SCALINGS`` with each of its fields and no other:
    factors finite and > 0, ``high_freq_factor`` above ``low_freq_factor`` (the two
    wavelengths between which the scaling is blended), the original context a whole number
    >= 1. Returned with the values as floats (the context as an int), so that a config read
    from JSON equals the one written; a ValueError naming ``name`` and the field otherwise."""
    if scaling is None:
        return None
    if not isinstance(scaling, dict) or scaling.get("rope_type") not in ROPE_SCALINGS:
        raise ValueError(f"{name} must be None or a dict with rope_type one of {tuple(ROPE_SCALINGS)}, "
                         f"got {scaling!r}")
    fields = ROPE_SCALINGS[scaling["rope_type"]]
    if set(scaling) != {"rope_type", *fields}:
        raise ValueError(f"{name} of rope_type {scaling['rope_type']!r}: expected the fields "
                         f"{['rope_type', *fields]}, got {sorted(scaling)}")
    clean = {"rope_type": scaling["rope_type"]}
    for field in fields:
        value, whole = scaling[field], field == "original_max_position_embeddings"
        if (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf")
                or (whole and value != int(value))):
            raise ValueError(f"{name}[{field!r}] must be a finite number > 0" + (", whole" if whole else "")
                             + f", got {value!r}")
        clean[field] = int(value) if whole else float(value)
    if not clean["high_freq_factor"] > clean["low_freq_factor"]:
        raise ValueError(f"{name}: expected high_freq_factor > low_freq_factor, got "
                         f"{clean['high_freq_factor']!r} and {clean['low_freq_factor']!r}")
    return clean


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

    The modern decoder's choices (Llama, Mistral, Qwen; issue 25), each off by default so
    that a GPT-2 or BERT config means what it meant:
    ``norm`` is ``"layer"`` (LayerNorm, Ba et al. 2016) or ``"rms"`` (RMSNorm, Zhang and
    Sennrich 2019: no mean, no shift), for every norm of the blocks and the final one;
    ``layer_norm_eps`` is the epsilon of whichever it is.
    ``activation="swiglu"`` makes each block's feed-forward the gated
    :math:`(\mathrm{silu}(xW_{gate}) \odot xW_{up})W_{down}` (Shazeer 2020;
    ``GATED_ACTIVATIONS``), with parameters ``W_gate``, ``W_up``, ``W_down``.
    ``n_kv_heads`` (0, the default, means ``n_heads``; ``kv_heads`` gives the number) is
    the number of key and value heads: grouped-query attention (Ainslie et al. 2023) shares each among
    ``n_heads / n_kv_heads`` query heads, and the KV cache holds only those.
    ``qk_norm`` puts an RMSNorm (weights of size ``d_head``) on each head's queries and
    keys before RoPE (Qwen 3, OLMo 2). ``rope_theta`` is RoPE's base (10000 in the paper,
    500000 in Llama 3, 1000000 in Qwen) and ``rope_layout`` which dimensions it pairs:
    ``"interleaved"`` (:math:`(x_{2i}, x_{2i+1})`, the paper's) or ``"half"``
    (:math:`(x_i, x_{i+D/2})`, Hugging Face Llama and Qwen's ``rotate_half``); both only
    with ``positional="rope"``. ``rope_scaling`` (None: plain RoPE) rescales RoPE's
    frequencies for a longer context, a dict in Hugging Face's words: ``{"rope_type":
    "llama3", "factor", "low_freq_factor", "high_freq_factor",
    "original_max_position_embeddings"}`` (Llama 3.1; ``ROPE_SCALINGS``, the formula in
    :func:`minillm.core.init.rope_frequencies`). ``bias=False`` drops the bias of every linear map inside
    the blocks (attention's four and the feed-forward's); ``qkv_bias=True`` with
    ``bias=False`` keeps the biases of the query, key and value projections only (Qwen 2).
    ``head_dim`` (0, the default, means ``d_model // n_heads``; ``d_head`` gives the
    size) is each head's size D when it is set apart from d_model (Qwen 3): the queries
    are then H D wide, the keys and values H_kv D, and W_O maps H D back to d_model.

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
    norm: str = "layer"
    n_kv_heads: int = 0
    qk_norm: bool = False
    rope_theta: float = 10000.0
    rope_layout: str = "interleaved"
    bias: bool = True
    qkv_bias: bool = False
    head_dim: int = 0
    rope_scaling: dict | None = None

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "d_model", "n_heads", "n_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ModelConfig.{name} must be a positive int, got {value!r}")
        if self.d_ff == 0:
            object.__setattr__(self, "d_ff", 4 * self.d_model)
        if not isinstance(self.d_ff, int) or self.d_ff < 1:
            raise ValueError(f"ModelConfig.d_ff must be a positive int, got {self.d_ff!r}")
        if not self.head_dim and self.d_model % self.n_heads:
            raise ValueError(
                f"d_model must be divisible by n_heads: expected d_model % n_heads == 0, "
                f"got d_model={self.d_model}, n_heads={self.n_heads}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ModelConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if self.activation not in ACTIVATIONS + tuple(GATED_ACTIVATIONS):
            raise ValueError(f"ModelConfig.activation must be one of {ACTIVATIONS} or a gated "
                             f"feed-forward {tuple(GATED_ACTIVATIONS)}, got {self.activation!r}")
        if self.lm_head_transform and self.activation not in ACTIVATIONS:
            raise ValueError(f"lm_head_transform applies the activation elementwise: expected one of "
                             f"{ACTIVATIONS}, got activation={self.activation!r}")
        if self.positional not in POSITIONALS:
            raise ValueError(f"ModelConfig.positional must be one of {POSITIONALS}, got {self.positional!r}")
        if (not isinstance(self.head_dim, int) or isinstance(self.head_dim, bool)
                or self.head_dim < 0):
            raise ValueError(f"ModelConfig.head_dim must be an int >= 0 (0: d_model // n_heads), "
                             f"got {self.head_dim!r}")
        if self.positional == "rope" and self.d_head % 2:
            size = (f"head_dim={self.head_dim}" if self.head_dim else
                    f"{self.d_model} / {self.n_heads} = {self.d_head} (d_model / n_heads)")
            raise ValueError(f"positional='rope' rotates pairs of a head's dimensions: expected an even "
                             f"head size (head_dim, or d_model / n_heads), got {size}")
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
        self._check_modern()

    def _check_modern(self):
        """The fields of the modern decoder (see the class docstring)."""
        if self.norm not in NORMS:
            raise ValueError(f"ModelConfig.norm must be one of {NORMS}, got {self.norm!r}")
        if (not isinstance(self.n_kv_heads, int) or isinstance(self.n_kv_heads, bool)
                or self.n_kv_heads < 0):
            raise ValueError(f"ModelConfig.n_kv_heads must be an int >= 0 (0: n_heads), "
                             f"got {self.n_kv_heads!r}")
        if self.n_heads % self.kv_heads:
            raise ValueError(f"n_kv_heads must divide n_heads (each key/value head serves a group "
                             f"of query heads): got n_kv_heads={self.n_kv_heads}, "
                             f"n_heads={self.n_heads}")
        for name in ("qk_norm", "bias", "qkv_bias"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"ModelConfig.{name} must be a bool, got {getattr(self, name)!r}")
        if self.qkv_bias and self.bias:
            raise ValueError("ModelConfig.qkv_bias=True keeps the q/k/v biases where bias=False drops "
                             "the others: expected bias=False with it, got bias=True (which keeps "
                             "every bias already)")
        if (isinstance(self.rope_theta, bool) or not isinstance(self.rope_theta, (int, float))
                or not 0 < self.rope_theta < float("inf")):
            raise ValueError(f"ModelConfig.rope_theta must be a finite number > 0, got {self.rope_theta!r}")
        if self.rope_layout not in ROPE_LAYOUTS:
            raise ValueError(f"ModelConfig.rope_layout must be one of {ROPE_LAYOUTS}, "
                             f"got {self.rope_layout!r}")
        object.__setattr__(self, "rope_scaling", check_rope_scaling(self.rope_scaling))
        if self.positional != "rope":
            for name, default in (("rope_theta", 10000.0), ("rope_layout", "interleaved"), ("rope_scaling", None)):
                if getattr(self, name) != default:
                    raise ValueError(f"ModelConfig.{name}={getattr(self, name)!r} is read only with "
                                     f"positional='rope', got positional={self.positional!r}")

    def require_classic(self, what: str) -> None:
        """Refuse a config that uses a modern-decoder field where ``what`` (a model or a
        file format) has no place for it, naming each such field."""
        used = [f"{name}={getattr(self, name)!r}" for name, classic in
                (("norm", "layer"), ("qk_norm", False), ("bias", True), ("qkv_bias", False),
                 ("head_dim", 0)) if getattr(self, name) != classic]
        if self.kv_heads != self.n_heads:
            used.append(f"n_kv_heads={self.n_kv_heads} (n_heads={self.n_heads})")
        if self.activation in GATED_ACTIVATIONS:
            used.append(f"activation={self.activation!r}")
        for name, classic in (("rope_theta", 10000.0), ("rope_layout", "interleaved"), ("rope_scaling", None)):
            if getattr(self, name) != classic:
                used.append(f"{name}={getattr(self, name)!r}")
        if used:
            raise ValueError(f"{what} supports the GPT-2/BERT choices only: expected norm='layer', "
                             f"n_kv_heads=n_heads, qk_norm=False, bias=True, qkv_bias=False, "
                             f"head_dim=0, an elementwise "
                             f"activation, RoPE's defaults, got {', '.join(used)}")

    @property
    def d_head(self) -> int:
        """D, each head's size: ``head_dim``, or ``d_model // n_heads`` where it is 0."""
        return self.head_dim or self.d_model // self.n_heads

    @property
    def kv_heads(self) -> int:
        """The number of key/value heads: ``n_kv_heads``, or ``n_heads`` where it is 0. (0 is
        kept as given, not resolved, so that a config copied with another ``n_heads`` stays
        multi-head attention.)"""
        return self.n_kv_heads or self.n_heads

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig fields {unknown}; expected a subset of {sorted(known)}")
        return cls(**d)
