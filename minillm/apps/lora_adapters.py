r"""LoRA adapters on a model's projections, chosen by name; merge, unmerge; PEFT's files.

:func:`add_lora` attaches a LoRA adapter (:mod:`minillm.reference.lora`, or its torch
twin) to each attention projection whose parameter name a target matches, and freezes
everything else. :func:`lora_parameters` is what goes to the optimizer: the adapters'
A and B, nothing else. :func:`save_adapters` writes the adapters alone in PEFT's layout
(``adapter_config.json`` + ``adapter_model.safetensors``) with the key names of the
``GPT2LMHeadModel`` that :func:`minillm.apps.interop.save_hf` writes for a ``GPT``, so
``peft.PeftModel.from_pretrained`` loads them onto it; :func:`load_adapters` reads them
back onto a minillm model.

Targets. The projections that take an adapter are each layer's ``LORA_TARGETS``: the
attention's ``W_Q``, ``W_K``, ``W_V``, ``W_O``, the feed-forward's ``W1``, ``W2`` (gated:
``W_gate``, ``W_up``, ``W_down``), by parameter name (``blocks.0.attn.W_Q``,
``blocks.0.ffn.W1``). A target is a leaf name (``"W_Q"``: every layer's), a full name,
or an ``fnmatch`` pattern (``"blocks.[01].attn.W_*"``). A target that matches no
projection is an error listing the names that can be adapted. An adapted layer stores
its adapter in ``lora_<name>`` (``attn.lora_W_Q.A``); a feed-forward layer with one runs
its op's steps one by one so that each projection can carry it.

Freezing. Torch: every parameter of the model gets ``requires_grad=False``, the
adapters' ``True``; autograd computes no gradient for the frozen ones. Reference: an
adapted projection skips its dW and db (the adapter's backward returns dx only); the
other parameters (embeddings, norms, unadapted projections) still receive gradients from the
hand-written backward (there is no per-parameter switch), but they are not in
:func:`lora_parameters`, so no optimizer changes them.

PEFT's modules for a GPT: ``attn.c_attn`` (W_Q, W_K, W_V), ``attn.c_proj`` (W_O),
``mlp.c_fc`` (W1), ``mlp.c_proj`` (W2) of ``transformer.h.<i>``. GPT-2's ``c_attn`` holds :math:`[W_Q | W_K | W_V]` side by side, one PEFT adapter for
the three. minillm's adapters on Q, K and V are written as that one adapter exactly:
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

import fnmatch
import json
import re
from pathlib import Path

import numpy as np

from ..core import _validate as v
from ..core.lora import check_rank
from ..reference.module import Module as ReferenceModule
from ..store import safetensors_io

__all__ = ["lora_targets", "add_lora", "lora_parameters", "merge_lora",
           "unmerge_lora", "save_adapters", "load_adapters"]

CONFIG_FILE, WEIGHTS_FILE = "adapter_config.json", "adapter_model.safetensors"
METADATA_KEY = "minillm_lora_blocks"
PEFT_PREFIX = "base_model.model."


def _is_reference(model) -> bool:
    return isinstance(model, ReferenceModule)


def _named_modules(module, prefix=""):
    """``(name, module)`` for every module, parents first, in both backends."""
    yield prefix.rstrip("."), module
    for name, child in module._modules.items():
        if child is not None:
            yield from _named_modules(child, f"{prefix}{name}.")


def lora_targets(model) -> dict:
    """Every projection that can take an adapter (each layer's ``LORA_TARGETS``):
    ``{"blocks.0.attn.W_Q": (layer, "W_Q"), ...}``, in the model's order."""
    found = {}
    for name, m in _named_modules(model):
        for p in getattr(type(m), "LORA_TARGETS", ()):
            found[f"{name}.{p}" if name else p] = (m, p)
    return found


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target) or fnmatch.fnmatchcase(name, target)


def _select(model, targets) -> dict:
    if isinstance(targets, str):
        targets = (targets,)
    if not targets:
        raise ValueError("expected at least one LoRA target (e.g. ('W_Q', 'W_V')), got none")
    candidates = lora_targets(model)
    chosen = {}
    for target in targets:
        hits = {n: mp for n, mp in candidates.items() if _matches(n, target)}
        if not hits:
            raise ValueError(f"LoRA target {target!r} matches no projection of {type(model).__name__}; "
                             f"the projections that take an adapter are: {', '.join(candidates)} "
                             f"(a leaf like 'W_Q', a full name, or an fnmatch pattern)")
        chosen.update(hits)
    return {n: candidates[n] for n in candidates if n in chosen}     # the model's order


def _backend_lora(model):
    if _is_reference(model):
        from ..reference.lora import LoRA
    else:
        from ..torch_backend.lora import LoRA
    return LoRA


def _numpy(p):
    return p.data if hasattr(p, "accumulate") else p.detach().cpu().numpy()


def add_lora(model, targets=("W_Q", "W_V"), r: int = 8, alpha: float = 16.0, dropout: float = 0.0,
             rank_stabilised: bool = False, seed: int = 0) -> list:
    r"""Attach a LoRA adapter to each projection a target matches (module doc) and
    freeze the rest. Each adapter's A is drawn from ONE ``numpy.random.default_rng(seed)``
    in the model's order (and its dropout masks too), so the two backends get the same
    adapters. ``r`` must lie in 1..min(d_in, d_out) of every chosen projection; B starts
    at zero, so the model computes what it did. Returns the adapted names. Nothing is
    attached when a target or the rank is wrong."""
    chosen = _select(model, targets)
    for name, (m, p) in chosen.items():
        if getattr(m, f"lora_{p}") is not None:
            raise ValueError(f"{name} has a LoRA adapter already")
        check_rank(r, *getattr(m, p).shape, where=f"LoRA on {name}")
    v.require_probability("dropout", dropout)
    LoRA = _backend_lora(model)
    rng = np.random.default_rng(seed)
    if not _is_reference(model):
        for q in model.parameters():
            q.requires_grad_(False)
    for name, (m, p) in chosen.items():
        W = getattr(m, p)
        adapter = LoRA(*W.shape, r, alpha, rank_stabilised, dropout, rng, str(_numpy(W).dtype))
        if not _is_reference(model):
            adapter.to(W.device)
        setattr(m, f"lora_{p}", adapter)
    return list(chosen)


def _adapters(model) -> dict:
    return {n: (m, p, getattr(m, f"lora_{p}")) for n, (m, p) in lora_targets(model).items()
            if getattr(m, f"lora_{p}") is not None}


def lora_parameters(model) -> list:
    """``(name, parameter)`` of every adapter's A and B: what the optimizer gets."""
    return [(n, q) for n, q in model.named_parameters() if ".lora_" in f".{n}" and n.endswith((".A", ".B"))]


def merge_lora(model) -> None:
    """Fold every adapter into its weight (W <- W + s A B) for inference."""
    for _, (m, p, adapter) in _adapters(model).items():
        adapter.merge(getattr(m, p))


def unmerge_lora(model) -> None:
    """Take every adapter out of its weight again (W <- W - s A B)."""
    for _, (m, p, adapter) in _adapters(model).items():
        adapter.unmerge(getattr(m, p))


# -- PEFT's files ----------------------------------------------------------------------

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


def _require_gpt(model):
    if type(model).__name__ != "GPT":
        raise ValueError(f"PEFT adapters are written for the GPT-2 layout of a GPT "
                         f"(minillm.apps.interop.save_hf); got a {type(model).__name__}")


def save_adapters(model, folder) -> list:
    """Write the adapters alone, in PEFT's layout, for the ``GPT2LMHeadModel`` that
    ``save_hf`` writes for this ``GPT``. Returns the PEFT module names written."""
    _require_gpt(model)
    adapters = _adapters(model)
    if not adapters:
        raise ValueError("the model has no LoRA adapters to save (add_lora attaches them)")
    if len({a.rank_stabilised for _, _, a in adapters.values()}) > 1:
        raise ValueError("PEFT's use_rslora is one flag per file; these adapters mix both scalings")
    first = next(iter(adapters.values()))[2]
    rs = first.rank_stabilised
    modules = {}                                   # hf name -> [(block, name, adapter)]
    for name, (_, _, adapter) in adapters.items():
        hf, block = _hf_module(name)
        modules.setdefault(hf, []).append((block, name, adapter))
    tensors, rank_pattern, alpha_pattern, blocks = {}, {}, {}, {}
    for hf, parts in modules.items():
        scale = parts[0][2].scale                  # the module's scale; the others fold into B
        A = np.concatenate([_numpy(a.A) for _, _, a in parts], axis=1)       # (C, R)
        R = A.shape[1]
        d_out = _numpy(parts[0][2].B).shape[1]      # one projection's width (C in c_attn)
        width = 3 * d_out if parts[0][0] is not None else d_out
        B = np.zeros((R, width), dtype=A.dtype)                              # (R, width)
        row = 0
        for block, _, a in parts:
            cols = slice(0, d_out) if block is None else slice(block * d_out, (block + 1) * d_out)
            B[row:row + a.r, cols] = (a.scale / scale) * _numpy(a.B)
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
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # each file atomically (temporary file, then rename); the config last, so a folder
    # with a config has its weights
    safetensors_io.save_file(tensors, folder / WEIGHTS_FILE,
                             {"format": "pt", METADATA_KEY: json.dumps(blocks)})
    tmp = folder / f".{CONFIG_FILE}.tmp"
    tmp.write_text(json.dumps(config, indent=2) + "\n")
    tmp.replace(folder / CONFIG_FILE)
    return sorted(modules)


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
    targets = lora_targets(model)
    LoRA = _backend_lora(model)
    rng = np.random.default_rng(seed)
    for name, (A, B, r, alpha) in plan.items():   # every check before anything is attached
        if name not in targets:
            raise ValueError(f"{folder / WEIGHTS_FILE}: an adapter for {name}, which this "
                             f"{model.config.n_layers}-layer GPT does not have")
        m, p = targets[name]
        W = getattr(m, p)
        if A.shape[0] != W.shape[0] or B.shape[1] != W.shape[1]:
            raise ValueError(f"{folder / WEIGHTS_FILE}: the adapter for {name} is "
                             f"({A.shape[0]}, r) x (r, {B.shape[1]}) but {name} is {tuple(W.shape)}")
        if getattr(m, f"lora_{p}") is not None:
            raise ValueError(f"{name} has a LoRA adapter already")
        check_rank(r, *getattr(m, p).shape, where=f"LoRA on {name}")
    if not _is_reference(model):
        for q in model.parameters():
            q.requires_grad_(False)
    for name, (A, B, r, alpha) in plan.items():
        m, p = targets[name]
        W = getattr(m, p)
        dtype = str(_numpy(W).dtype)
        adapter = LoRA(*W.shape, r, alpha, rs, float(config.get("lora_dropout", 0.0)), rng, dtype)
        if _is_reference(model):
            adapter.A.data[...] = A
            adapter.B.data[...] = B
        else:
            import torch
            with torch.no_grad():
                adapter.A.copy_(torch.from_numpy(np.ascontiguousarray(A)))
                adapter.B.copy_(torch.from_numpy(np.ascontiguousarray(B)))
            adapter.to(W.device)
        setattr(m, f"lora_{p}", adapter)
    return list(plan)
