r"""LoRA adapters on a model's projections, chosen by name: attach, train, merge.

:func:`add_lora` attaches a LoRA adapter (:mod:`minillm.reference.lora`, or its torch
twin) to each projection whose parameter name a target matches, and freezes
everything else. :func:`lora_parameters` is what goes to the optimizer: the adapters'
A and B, nothing else. Their files, in PEFT's layout: :mod:`minillm.store.peft_adapters`.

Targets. The projections that take an adapter are each layer's ``LORA_TARGETS``: the
attention's ``W_Q``, ``W_K``, ``W_V``, ``W_O``, the feed-forward's ``W1``, ``W2`` (gated:
``W_gate``, ``W_up``, ``W_down``), by parameter name (``blocks.0.attn.W_Q``,
``blocks.0.ffn.W1``). A target is a leaf name (``"W_Q"``: every layer's), a full name,
or an ``fnmatch`` pattern (``"blocks.[01].attn.W_*"``). A target that matches no
projection is an error listing the names that can be adapted. An adapted layer stores
its adapter in ``lora_<name>`` (``attn.lora_W_Q.A``); a feed-forward layer with one runs
its op's steps one by one so that each projection can carry it.

Freezing. Torch: every parameter of the model gets ``requires_grad=False``, the
adapters' ``True``, and so do a model's new head (its class's ``LORA_TRAINED``: a
classifier's ``head``, which starts random and must learn, PEFT's ``modules_to_save``); autograd computes no gradient for the frozen ones. Reference: an
adapted projection skips its dW and db (the adapter's backward returns dx only); the
other parameters (embeddings, norms, unadapted projections) still receive gradients from the
hand-written backward (there is no per-parameter switch), but they are not in
:func:`trainable_parameters`, so no optimizer changes them.

Training (``TrainConfig.lora``) attaches adapters after the model is built and
initialised; a checkpoint records them (:func:`lora_record`, in the model's kind,
:mod:`minillm.store.model_io`), so a resumed run and ``load_run`` attach the same ones
before loading the weights.
"""
from __future__ import annotations

import fnmatch

import numpy as np

from ..core import _validate as v
from ..core.lora import check_rank
from ..reference.module import Module as ReferenceModule

__all__ = ["lora_targets", "add_lora", "adapters", "attach_adapters", "lora_parameters",
           "trainable_parameters", "lora_record", "merge_lora", "unmerge_lora", "weight_array"]


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


def weight_array(p):
    """A parameter's values as a NumPy array (the reference's own, a torch one's copy)."""
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
    _freeze(model)
    for name, (m, p) in chosen.items():
        W = getattr(m, p)
        adapter = LoRA(*W.shape, r, alpha, rank_stabilised, dropout, rng, str(weight_array(W).dtype))
        if not _is_reference(model):
            adapter.to(W.device)
        setattr(m, f"lora_{p}", adapter)
    return list(chosen)


def _trained_beside(model) -> list:
    """``(name, parameter)`` of the model's parts that train beside the adapters (its
    class's ``LORA_TRAINED`` prefixes: a new head)."""
    prefixes = tuple(getattr(type(model), "LORA_TRAINED", ()))
    return [(n, q) for n, q in model.named_parameters() if n.split(".")[0] in prefixes]


def _freeze(model) -> None:
    """Torch: no gradient for any parameter but a new head's (the adapters get theirs)."""
    if not _is_reference(model):
        for q in model.parameters():
            q.requires_grad_(False)
        for _, q in _trained_beside(model):
            q.requires_grad_(True)


def adapters(model) -> dict:
    """The attached adapters: ``{"blocks.0.attn.W_Q": (layer, "W_Q", adapter), ...}``."""
    return {n: (m, p, getattr(m, f"lora_{p}")) for n, (m, p) in lora_targets(model).items()
            if getattr(m, f"lora_{p}") is not None}


def lora_parameters(model) -> list:
    """``(name, parameter)`` of every LoRA adapter's A and B, in the model's order (a
    ``LoRALinear``'s included): what the optimizer gets."""
    LoRA = _backend_lora(model)
    found = []
    for name, m in _named_modules(model):
        if isinstance(m, LoRA):
            found += [(f"{name}.A", m.A), (f"{name}.B", m.B)]
    return found


def trainable_parameters(model) -> list:
    """What the optimizer gets and the gradient norm is clipped over: with adapters, their
    A and B and the parts that train beside them (a classifier's new head); without, every
    parameter."""
    if not adapters(model):
        return list(model.parameters())
    return [q for _, q in _trained_beside(model)] + [q for _, q in lora_parameters(model)]


def lora_record(model) -> dict | None:
    """The adapters attached, as JSON (``None``: none): ``{"targets": [projection names],
    "r", "alpha", "rank_stabilised", "dropout"}``, what :func:`add_lora` attaches again.
    Adapters of mixed ranks or scalings (attached by hand) are refused: a record is of one
    ``add_lora`` call."""
    attached = adapters(model)
    if not attached:
        return None
    kinds = {(a.r, a.alpha, a.rank_stabilised, a.p) for _, _, a in attached.values()}
    if len(kinds) > 1:
        raise ValueError(f"the adapters differ in (r, alpha, rank_stabilised, dropout): {sorted(kinds)}; "
                         f"a checkpoint records the adapters of one add_lora call")
    r, alpha, rank_stabilised, p = kinds.pop()
    return {"targets": list(attached), "r": int(r), "alpha": float(alpha),
            "rank_stabilised": bool(rank_stabilised), "dropout": float(p)}


def merge_lora(model) -> None:
    """Fold every adapter into its weight (W <- W + s A B) for inference."""
    for _, (m, p, adapter) in adapters(model).items():
        adapter.merge(getattr(m, p))


def unmerge_lora(model) -> None:
    """Take every adapter out of its weight again (W <- W - s A B)."""
    for _, (m, p, adapter) in adapters(model).items():
        adapter.unmerge(getattr(m, p))


def attach_adapters(model, plan: dict, rank_stabilised: bool = False, dropout: float = 0.0,
                    seed: int = 0) -> list:
    """Attach adapters with given values, ``plan = {name: (A, B, r, alpha)}`` (A (d_in, r),
    B (r, d_out) as arrays), freezing the rest as :func:`add_lora` does; ``seed`` seeds
    their dropout masks. Every name, shape and rank is checked before anything is
    attached. Returns the adapted names."""
    targets = lora_targets(model)
    for name, (A, B, r, alpha) in plan.items():
        if name not in targets:
            raise ValueError(f"an adapter for {name}, which this {type(model).__name__} does not "
                             f"have (its projections: {', '.join(targets)})")
        m, p = targets[name]
        W = getattr(m, p)
        if A.shape[0] != W.shape[0] or B.shape[1] != W.shape[1]:
            raise ValueError(f"the adapter for {name} is ({A.shape[0]}, r) x (r, {B.shape[1]}) "
                             f"but {name} is {tuple(W.shape)}")
        if getattr(m, f"lora_{p}") is not None:
            raise ValueError(f"{name} has a LoRA adapter already")
        check_rank(r, *W.shape, where=f"LoRA on {name}")
    _freeze(model)
    LoRA = _backend_lora(model)
    rng = np.random.default_rng(seed)
    for name, (A, B, r, alpha) in plan.items():
        m, p = targets[name]
        W = getattr(m, p)
        adapter = LoRA(*W.shape, r, alpha, rank_stabilised, dropout, rng, str(weight_array(W).dtype))
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
