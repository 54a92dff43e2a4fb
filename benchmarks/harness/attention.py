r"""Attention's forward + backward time as T grows, against the chapter's :math:`O(T^2)`
(the score matrix :math:`QK^\top` is :math:`T \times T`), and its plot.

Dimension legend: B batch (1 here), H heads, T sequence length, D head size.
"""
from __future__ import annotations

import numpy as np

from .machine import synchronizer, torch_or_none
from .timing import interleaved_times

__all__ = ["bench_attention", "plot_attention"]


def bench_attention(Ts=(64, 128, 256, 512, 1024), n_heads: int = 4, d_head: int = 32,
                    repeats: int = 3, device: str = "cpu") -> list[dict]:
    """Forward + backward seconds of causal attention of one sequence (B = 1) at each T:
    the reference's hand-written pair, the torch backend's explicit formula and its
    fused kernel (both through autograd)."""
    from minillm import reference as R
    rng = np.random.default_rng(0)
    rows = []
    torch = torch_or_none()
    for T_len in Ts:
        q, k, v, dout = (rng.standard_normal((1, n_heads, T_len, d_head), dtype=np.float32)
                         for _ in range(4))                  # each (1, H, T, D)
        mask = R.causal_mask(T_len)                          # (T, T)

        def ref_step():
            out, cache = R.scaled_dot_product_attention_forward(q, k, v, mask)
            R.scaled_dot_product_attention_backward(dout, cache)
        steps = {"reference": ref_step}
        if torch is not None:
            from minillm import torch_backend as TB
            qt, kt, vt = (torch.from_numpy(a).to(device).requires_grad_() for a in (q, k, v))
            dt, mt = torch.from_numpy(dout).to(device), TB.causal_mask(T_len).to(device)

            def torch_step(attend):
                def step():
                    out, _ = attend(qt, kt, vt, mt)
                    out.backward(dt)
                    for t in (qt, kt, vt):
                        t.grad = None
                return step
            steps["torch"] = torch_step(TB.scaled_dot_product_attention)
            steps["torch_fused"] = torch_step(TB.fused_attention)
        times = interleaved_times(steps, repeats, 1, synchronizer(device))
        rows += [{"T": T_len, "variant": name, **t} for name, t in times.items()]
    return rows


def plot_attention(rows, out_png):
    """The O(T^2) plot of :func:`bench_attention`'s rows (via :mod:`minillm.core.plots`)."""
    from minillm.core.plots import plot_attention_cost
    Ts = sorted({r["T"] for r in rows})
    series = {}
    for r in rows:
        series.setdefault(r["variant"], {})[r["T"]] = r["median_s"]
    return plot_attention_cost(Ts, {name: [s[T] for T in Ts] for name, s in series.items()}, out_png,
                               title="Causal attention, forward + backward, one sequence")
