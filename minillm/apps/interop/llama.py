r"""Llama (``LlamaForCausalLM``) as minillm's ``GPT``, and the layout Qwen 2 and 3 share
(:mod:`.qwen`).

The modern decoder (issue 25): pre-norm with RMSNorm (``norm="rms"``), the SwiGLU
feed-forward (``activation="swiglu"``), grouped-query attention (``num_key_value_heads``),
RoPE of base ``rope_theta`` on split halves (Hugging Face's ``rotate_half``:
``rope_layout="half"``, so the weights are copied with no permutation), with Llama 3.1's
frequency scaling where ``rope_type`` is ``"llama3"`` (``rope_scaling``), no bias. A head
tied to the token embedding where ``tie_word_embeddings`` says so, else ``lm_head.W``.
``nn.Linear`` stores its weight as ``(out, in)``: transposed to minillm's ``(in, out)``.

Every config.json field that changes the result is read or refused naming it
(:func:`read_config`); ``pretraining_tp`` (a way to split the same products) and the
generation settings change none.
Dimension legend: C d_model, F d_ff, V vocab, H heads, H_kv key/value heads, D head size.
"""
from __future__ import annotations

from ...core.config import ROPE_SCALINGS, ModelConfig, check_rope_scaling
from .family import Family

ARCHITECTURES = ("LlamaForCausalLM",)


def table(c: ModelConfig, tied: bool) -> list:
    """The name table (:mod:`.files`) of a Llama-layout ``GPT``: q/k/v biases where
    ``qkv_bias`` (Qwen 2), ``q_norm``/``k_norm`` where ``qk_norm`` (Qwen 3)."""
    C, F, V, D = c.d_model, c.d_ff, c.vocab_size, c.d_head
    widths = {"q": c.n_heads * D, "k": c.kv_heads * D, "v": c.kv_heads * D}
    rows = [("model.embed_tokens.weight", "tok_emb.W", "copy", (V, C))]
    for i in range(c.n_layers):
        h, b = f"model.layers.{i}", f"blocks.{i}"
        rows.append((f"{h}.input_layernorm.weight", f"{b}.ln1.gamma", "copy", (C,)))
        for q, width in widths.items():
            rows.append((f"{h}.self_attn.{q}_proj.weight", f"{b}.attn.W_{q.upper()}", "T", (width, C)))
            if c.qkv_bias:
                rows.append((f"{h}.self_attn.{q}_proj.bias", f"{b}.attn.b_{q.upper()}", "copy", (width,)))
        rows.append((f"{h}.self_attn.o_proj.weight", f"{b}.attn.W_O", "T", (C, c.n_heads * D)))
        if c.qk_norm:
            rows += [(f"{h}.self_attn.q_norm.weight", f"{b}.attn.q_norm.gamma", "copy", (D,)),
                     (f"{h}.self_attn.k_norm.weight", f"{b}.attn.k_norm.gamma", "copy", (D,))]
        rows += [(f"{h}.post_attention_layernorm.weight", f"{b}.ln2.gamma", "copy", (C,)),
                 (f"{h}.mlp.gate_proj.weight", f"{b}.ffn.W_gate", "T", (F, C)),
                 (f"{h}.mlp.up_proj.weight", f"{b}.ffn.W_up", "T", (F, C)),
                 (f"{h}.mlp.down_proj.weight", f"{b}.ffn.W_down", "T", (C, F))]
    rows.append(("model.norm.weight", "ln_f.gamma", "copy", (C,)))
    if not tied:
        rows.append(("lm_head.weight", "lm_head.W", "T", (V, C)))
    return rows


def _rope(hf: dict) -> tuple[float, dict | None]:
    """RoPE's base and scaling (``ModelConfig.rope_theta``, ``rope_scaling``): from
    ``rope_parameters`` (transformers 5: ``rope_type``, ``rope_theta`` and the type's
    fields) or from ``rope_theta`` and ``rope_scaling`` (4.x; its ``type`` is an older name
    of ``rope_type``). Plain RoPE (``"default"``) and Llama 3.1's ``"llama3"`` are read;
    any other scaling (YaRN, linear, dynamic, ...) changes the angles and is refused, as
    is a field neither reads, each naming the field."""
    params = hf.get("rope_parameters")
    where = "rope_parameters"
    if params is not None and hf.get("rope_scaling") is not None:
        raise ValueError(f"config.json: expected rope_parameters (transformers 5) or rope_scaling (4.x), "
                         f"got both: {params!r} and {hf['rope_scaling']!r}")
    if params is None:
        params, where = dict(hf.get("rope_scaling") or {}), "rope_scaling"
        if "type" in params:
            params.setdefault("rope_type", params.pop("type"))
        params.setdefault("rope_type", "default")
        params.setdefault("rope_theta", hf.get("rope_theta", 10000.0))
    if not isinstance(params, dict):
        raise ValueError(f"config.json: expected {where} to be an object, got {params!r}")
    kind = params.get("rope_type", "default")
    if kind not in ("default", *ROPE_SCALINGS):
        raise ValueError(f"config.json: expected {where} with rope_type 'default' (plain RoPE) or one of "
                         f"{tuple(ROPE_SCALINGS)}, got rope_type={kind!r} in {params!r}")
    fields = ROPE_SCALINGS.get(kind, ())
    unread = sorted(set(params) - {"rope_type", "rope_theta", *fields})
    missing = [name for name in fields if name not in params]
    if unread or missing:
        raise ValueError(f"config.json: {where} of rope_type {kind!r}: expected the fields "
                         f"{['rope_type', 'rope_theta', *fields]}, got {sorted(params)}"
                         + (f" (not read: {unread})" if unread else "") + (f" (missing: {missing})" if missing else ""))
    theta = float(params.get("rope_theta", hf.get("rope_theta", 10000.0)))
    scaling = {"rope_type": kind, **{name: params[name] for name in fields}} if fields else None
    return theta, check_rope_scaling(scaling, f"config.json: {where}")


def _refuse(hf: dict, fields: dict) -> None:
    """Each field that changes the result and that minillm does not read must hold the value
    that makes it change nothing (its default where absent)."""
    for key, (wanted, default) in fields.items():
        value = hf.get(key, default)
        if value != wanted:
            raise ValueError(f"config.json: expected {key}={wanted!r} (not read by minillm, it "
                             f"would change the result), got {value!r}")


def read_config(hf: dict, dtype: str, *, qkv_bias: bool = False, qk_norm: bool = False,
                head_dim_default: int = 0, refuse: dict | None = None) -> ModelConfig:
    """The ``ModelConfig`` of a Llama-layout config.json. ``refuse``: the family's own fields
    that must keep their neutral value (``{key: (wanted, default)}``)."""
    _refuse(hf, {"hidden_act": ("silu", "silu"), "attention_dropout": (0.0, 0.0), **(refuse or {})})
    C, H = hf["hidden_size"], hf["num_attention_heads"]
    D = hf.get("head_dim") or head_dim_default or C // H
    theta, scaling = _rope(hf)
    return ModelConfig(
        vocab_size=hf["vocab_size"], block_size=hf.get("max_position_embeddings", 2048),
        d_model=C, n_heads=H, n_layers=hf["num_hidden_layers"], d_ff=hf["intermediate_size"],
        activation="swiglu", norm_first=True, norm="rms",
        layer_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)), positional="rope",
        rope_theta=theta, rope_scaling=scaling, rope_layout="half",
        n_kv_heads=hf.get("num_key_value_heads") or H, bias=False, qkv_bias=qkv_bias,
        qk_norm=qk_norm, head_dim=0 if D * H == C else D, dtype=dtype)


def write_config(config: ModelConfig, arch: str, model_type: str, *, qkv_bias: bool = False,
                 qk_norm: bool = False) -> dict:
    """The config.json of a Llama-layout ``GPT``; a config the architecture cannot express
    is refused naming the field (nothing is written)."""
    c = config
    wanted = dict(norm_first=True, norm="rms", activation="swiglu", positional="rope",
                  rope_layout="half", bias=False, qkv_bias=qkv_bias, qk_norm=qk_norm,
                  type_vocab_size=0, embedding_norm=False, lm_head_transform=False, lm_head_bias=False)
    for key, value in wanted.items():
        if getattr(c, key) != value:
            hint = (" (minillm.reference.rope_layout_permutation converts the weights)"
                    if key == "rope_layout" else "")
            raise ValueError(f"{arch} needs ModelConfig.{key}={value!r}, got {getattr(c, key)!r}{hint}")
    return {"architectures": [arch], "model_type": model_type, "vocab_size": c.vocab_size,
            "max_position_embeddings": c.block_size, "hidden_size": c.d_model,
            "intermediate_size": c.d_ff, "num_hidden_layers": c.n_layers,
            "num_attention_heads": c.n_heads, "num_key_value_heads": c.kv_heads,
            "head_dim": c.d_head, "hidden_act": "silu", "rms_norm_eps": c.layer_norm_eps,
            "rope_theta": c.rope_theta,
            "rope_parameters": {"rope_type": "default", **(c.rope_scaling or {}), "rope_theta": c.rope_theta},
            "attention_dropout": 0.0, "tie_word_embeddings": c.tie_embeddings}


def is_buffer(name: str) -> bool:
    """RoPE's ``inv_freq`` tables (older saves), and a head that repeats the tied embedding."""
    return name.endswith("rotary_emb.inv_freq") or name == "lm_head.weight"


def _read(arch: str, hf: dict, tensors: dict, dtype: str):
    config = read_config(hf, dtype, refuse={"attention_bias": (False, False), "mlp_bias": (False, False)})
    return config, table(config, config.tie_embeddings), tensors


def _write(config: ModelConfig):
    arch = ARCHITECTURES[0]
    hf = {**write_config(config, arch, "llama"), "attention_bias": False, "mlp_bias": False}
    return arch, hf, table(config, config.tie_embeddings)


def writes(config: ModelConfig) -> bool:
    """The minillm configs this family writes: RMSNorm, neither q/k/v biases nor QK-norm."""
    return config.norm == "rms" and not config.qkv_bias and not config.qk_norm


FAMILY = Family("llama", ARCHITECTURES, "GPT", lambda tensors: ARCHITECTURES[0], _read, _write,
                is_buffer, writes)
