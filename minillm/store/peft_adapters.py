r"""LoRA adapters in PEFT's layout: ``adapter_config.json`` + ``adapter_model.safetensors``.

:func:`save_adapters` writes a ``GPT``'s adapters (:mod:`minillm.store.lora_adapters`)
alone, with the key names of the ``GPT2LMHeadModel`` that
:func:`minillm.apps.interop.save_hf` writes for it, so ``peft.PeftModel.from_pretrained``
loads them onto that model; :func:`load_adapters` reads them back (or PEFT's own file
for those modules) onto a minillm ``GPT``.

PEFT's modules for a GPT: ``attn.c_attn`` (W_Q, W_K, W_V), ``attn.c_proj`` (W_O),
``mlp.c_fc`` (W1), ``mlp.c_proj`` (W2) of ``transformer.h.<i>``. GPT-2's ``c_attn``
holds :math:`[W_Q | W_K | W_V]` side by side, one PEFT adapter for the three. minillm's adapters on Q, K and V are written as that one adapter exactly:
:math:`A = [A_Q | A_K | A_V]` (C, r_Q + r_K + r_V) and B block-diagonal, zero where an
adapter does not reach, with ``rank_pattern`` / ``alpha_pattern`` giving c_attn its
rank and a scale equal to the adapters'. The safetensors header's metadata records the
blocks so that :func:`load_adapters` gives back the same adapters; a PEFT file without
it loads c_attn's adapter onto each of Q, K, V with the whole A and B's column block of
that projection: the same map.

Conv1D and ``fan_in_fan_out``: GPT-2's Conv1D stores its weight (in, out) like minillm's
W; PEFT's ``lora_A.weight`` is (r, in) and ``lora_B.weight`` (out, r), ``nn.Linear``'s
layout whatever the base, so they are :math:`A^\top` and :math:`B^\top`;
``fan_in_fan_out=True`` tells PEFT the base is (in, out), which only its merge reads.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from . import safetensors_io
from .lora_adapters import adapters, attach_adapters, weight_array

__all__ = ["adapter_files", "peft_layout", "save_adapters", "load_adapters"]

CONFIG_FILE, WEIGHTS_FILE = "adapter_config.json", "adapter_model.safetensors"
METADATA_KEY = "minillm_lora_blocks"
PEFT_PREFIX = "base_model.model."


# our projection (in a block) -> (GPT-2 module in that block, column block of its weight)
_GPT2_MODULES = {"attn.W_Q": ("attn.c_attn", 0), "attn.W_K": ("attn.c_attn", 1),
                 "attn.W_V": ("attn.c_attn", 2), "attn.W_O": ("attn.c_proj", None),
                 "ffn.W1": ("mlp.c_fc", None), "ffn.W2": ("mlp.c_proj", None)}
_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")


def _hf_module(name: str):
    """(GPT-2 module name, column block in c_attn or None) of a GPT projection."""
    match = _BLOCK.match(name)
    if match is None or match.group(2) not in _GPT2_MODULES:
        raise ValueError(f"PEFT's GPT-2 layout has no module for {name!r} (expected "
                         f"blocks.<i>.<one of {sorted(_GPT2_MODULES)}>)")
    i, leaf = match.groups()
    module, block = _GPT2_MODULES[leaf]
    return f"transformer.h.{i}.{module}", block


def peft_layout(model) -> bool:
    """Whether PEFT's GPT-2 layout holds ``model``'s adapters: a GPT-2-style ``GPT`` (or a
    class built on it; LayerNorm, the one that ``save_hf`` writes as ``GPT2LMHeadModel``)
    with adapters, each on a projection that layout has."""
    attached = adapters(model)
    if not attached or getattr(model.config, "norm", "layer") != "layer" \
            or not any(c.__name__ == "GPT" for c in type(model).__mro__):
        return False
    return all(_BLOCK.match(n) and _BLOCK.match(n).group(2) in _GPT2_MODULES for n in attached)


def _require_gpt(model):
    if not any(c.__name__ == "GPT" for c in type(model).__mro__):
        raise ValueError(f"PEFT adapters are written for the GPT-2 layout of a GPT "
                         f"(minillm.apps.interop.save_hf); got a {type(model).__name__}")


def adapter_files(model) -> dict:
    """The adapters alone in PEFT's layout, as ``{file name: bytes}``
    (``adapter_config.json``, ``adapter_model.safetensors``), for the ``GPT2LMHeadModel``
    that ``save_hf`` writes for this ``GPT``; a checkpoint of a LoRA run holds them
    (:func:`minillm.store.model_io.save_checkpoint`)."""
    _require_gpt(model)
    attached = adapters(model)
    if not attached:
        raise ValueError("the model has no LoRA adapters to save (add_lora attaches them)")
    if len({a.rank_stabilised for _, _, a in attached.values()}) > 1:
        raise ValueError("PEFT's use_rslora is one flag per file; these adapters mix both scalings")
    first = next(iter(attached.values()))[2]
    rs = first.rank_stabilised
    modules = {}                                   # hf name -> [(block, name, adapter)]
    for name, (_, _, adapter) in attached.items():
        hf, block = _hf_module(name)
        modules.setdefault(hf, []).append((block, name, adapter))
    tensors, rank_pattern, alpha_pattern, blocks = {}, {}, {}, {}
    for hf, parts in modules.items():
        scale = parts[0][2].scale                  # the module's scale; the others fold into B
        A = np.concatenate([weight_array(a.A) for _, _, a in parts], axis=1)       # (C, R)
        R = A.shape[1]
        d_out = weight_array(parts[0][2].B).shape[1]      # one projection's width (C in c_attn)
        width = 3 * d_out if parts[0][0] is not None else d_out
        B = np.zeros((R, width), dtype=A.dtype)                              # (R, width)
        row = 0
        for block, _, a in parts:
            cols = slice(0, d_out) if block is None else slice(block * d_out, (block + 1) * d_out)
            B[row:row + a.r, cols] = (a.scale / scale) * weight_array(a.B)
            row += a.r
        tensors[f"{PEFT_PREFIX}{hf}.lora_A.weight"] = np.ascontiguousarray(A.T)   # (R, C)
        tensors[f"{PEFT_PREFIX}{hf}.lora_B.weight"] = np.ascontiguousarray(B.T)   # (width, R)
        key = re.escape(hf)
        rank_pattern[key] = R
        alpha_pattern[key] = scale * (np.sqrt(R) if rs else R)
        blocks[hf] = [[_BLOCK.match(n).group(2), a.r, a.alpha] for _, n, a in parts]
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": first.r, "lora_alpha": first.alpha,
              "lora_dropout": first.p, "use_rslora": rs, "fan_in_fan_out": True, "bias": "none",
              "target_modules": sorted(modules), "rank_pattern": rank_pattern,
              "alpha_pattern": alpha_pattern, "init_lora_weights": True, "modules_to_save": None,
              "base_model_name_or_path": None, "inference_mode": True}
    return {WEIGHTS_FILE: safetensors_io.to_bytes(tensors, {"format": "pt", METADATA_KEY: json.dumps(blocks)}),
            CONFIG_FILE: (json.dumps(config, indent=2) + "\n").encode("utf-8")}


def save_adapters(model, folder) -> list:
    """Write the adapters alone, in PEFT's layout (:func:`adapter_files`), into ``folder``.
    Returns the PEFT module names written."""
    files = adapter_files(model)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # each file atomically (temporary file, then rename); the config last, so a folder
    # with a config has its weights
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        tmp = folder / f".{name}.tmp"
        tmp.write_bytes(files[name])
        tmp.replace(folder / name)
    return json.loads(files[CONFIG_FILE])["target_modules"]


def _pattern(patterns: dict, name: str, default):
    """PEFT's rule for rank_pattern / alpha_pattern: the first key k with
    ``re.match(rf"(.*\\.)?({k})$", name)``."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", name):
            return value
    return default


def load_adapters(model, folder, seed: int = 0) -> list:
    """Attach the adapters of a PEFT folder (``save_adapters``' layout, or PEFT's own for
    GPT-2's ``c_attn`` / ``attn.c_proj``) to a ``GPT`` without adapters, freezing the
    rest as :func:`add_lora` does. Returns the adapted projection names."""
    _require_gpt(model)
    folder = Path(folder)
    config = json.loads((folder / CONFIG_FILE).read_text())
    if config.get("peft_type") != "LORA":
        raise ValueError(f"{folder / CONFIG_FILE}: expected peft_type 'LORA', got {config.get('peft_type')!r}")
    tensors, metadata = safetensors_io.from_bytes((folder / WEIGHTS_FILE).read_bytes(),
                                                  str(folder / WEIGHTS_FILE))
    recorded = json.loads(metadata.get(METADATA_KEY, "{}"))
    rs = bool(config.get("use_rslora", False))
    norm = (lambda r: np.sqrt(r)) if rs else (lambda r: r)
    by_module = {}                                 # GPT-2 module in a block -> our leaves
    for leaf, (module, _) in _GPT2_MODULES.items():
        by_module.setdefault(module, []).append(leaf)
    plan = {}                                      # projection name -> (A, B, r, alpha)
    for key in sorted(tensors):
        if not key.endswith(".lora_A.weight"):
            continue
        hf = key[len(PEFT_PREFIX):-len(".lora_A.weight")]
        match = re.match(r"^transformer\.h\.(\d+)\.(.+)$", hf)
        if match is None or match.group(2) not in by_module:
            raise ValueError(f"{folder / WEIGHTS_FILE}: {key!r} is not an adapter of a GPT-2 "
                             f"module minillm adapts ({', '.join(sorted(by_module))})")
        i, module = match.groups()
        A = tensors[key].T                                                     # (C, R)
        B = tensors[key.replace("lora_A", "lora_B")].T                         # (R, width)
        R = A.shape[1]
        scale = _pattern(config.get("alpha_pattern", {}), hf, config["lora_alpha"]) / norm(R)
        # recorded: our adapters, each its rows of A and B; a foreign file: each projection
        # of the module gets the whole A and its columns of B (the same map)
        parts = recorded.get(hf) or [[leaf, R, scale * norm(R)] for leaf in by_module[module]]
        d_out = B.shape[1] // len(by_module[module])
        row = 0
        for leaf, r, alpha in parts:
            j = _GPT2_MODULES[leaf][1] or 0
            rows = slice(row, row + r) if recorded.get(hf) else slice(0, R)
            s_own = alpha / norm(r)
            plan[f"blocks.{i}.{leaf}"] = (A[:, rows], (scale / s_own) * B[rows, j * d_out:(j + 1) * d_out],
                                          r, alpha)
            row += r
    if not plan:
        raise ValueError(f"{folder / WEIGHTS_FILE}: no lora_A tensors")
    return attach_adapters(model, plan, rs, float(config.get("lora_dropout", 0.0)), seed)
