"""Parameter groups: which tensors weight decay shrinks, shared by both backends' optimizers.

An optimizer takes its parameters as a list, or, as ``torch.optim`` does, as groups:
``[{"params": [...], "weight_decay": 0.1}, {"params": [...], "weight_decay": 0.0}]``; a
group without ``"weight_decay"`` takes the optimizer's. :func:`flatten_groups` turns
either into the flat parameter list and one weight decay per parameter.

:func:`decay_groups` is the rule every training command uses (nanoGPT's
``configure_optimizers``, the recipe the README's whole-run benchmark follows): decay
every tensor of two or more dimensions (the matrices of the linear layers and the
embeddings), never one of fewer (biases, LayerNorm gains and shifts). A bias or a gain
shrunk towards 0 changes what the layer computes (a LayerNorm gain of 0 zeroes its
output) without making the model simpler, so decaying them only hurts.
"""
from __future__ import annotations

from .optim_checks import check_number, materialise

__all__ = ["flatten_groups", "decay_groups", "DECAY_RULES"]

# TrainConfig.decay: "matrices" (tensors of 2+ dimensions: nanoGPT's rule), "all" (every tensor)
DECAY_RULES = ("matrices", "all")


def flatten_groups(owner: str, params, weight_decay: float, is_param, what: str) -> tuple[list, list[float]]:
    """``(parameters, weight decay of each)`` from a list of parameters or of groups.

    Each group is a dict with ``"params"`` and optionally ``"weight_decay"`` (>= 0);
    any other key is refused by name (only the weight decay differs between groups here).
    """
    items = list(params)
    if not items or not all(isinstance(g, dict) for g in items):
        if any(isinstance(g, dict) for g in items):
            raise ValueError(f"{owner}: expected either parameters or parameter groups (dicts), got a mix")
        flat = materialise(owner, items, is_param, what)
        return flat, [weight_decay] * len(flat)
    flat, decays = [], []
    for i, group in enumerate(items):
        extra = sorted(set(group) - {"params", "weight_decay"})
        if "params" not in group or extra:
            raise ValueError(f"{owner}: expected parameter group {i} to hold 'params' and optionally "
                             f"'weight_decay', got keys {sorted(group)}")
        wd = check_number(owner, f"group {i}'s weight_decay", group.get("weight_decay", weight_decay), 0.0)
        members = list(group["params"])
        flat += members
        decays += [wd] * len(members)
    return materialise(owner, flat, is_param, what), decays


def decay_groups(params, weight_decay: float, rule: str = "matrices") -> list[dict]:
    """Two groups of ``params`` (each with ``.shape``, both backends' parameters):
    ``[{"params": decayed, "weight_decay": weight_decay}, {"params": the rest, "weight_decay": 0.0}]``.

    ``rule="matrices"``: decayed are the tensors of two or more dimensions (nanoGPT);
    ``rule="all"``: every tensor (one decay for all, as before groups). Empty groups are
    left out; the parameters keep their order within each group.
    """
    if rule not in DECAY_RULES:
        raise ValueError(f"expected a weight-decay rule in {DECAY_RULES}, got {rule!r}")
    params = list(params)
    decayed = [p for p in params if rule == "all" or len(p.shape) >= 2]
    ids = {id(p) for p in decayed}
    rest = [p for p in params if id(p) not in ids]
    groups = [{"params": decayed, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]
