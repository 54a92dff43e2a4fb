"""Seeded initialisation shared by both backends: the same seed gives the same weights.

Both ``minillm.reference`` and ``minillm.torch_backend`` build their models and then
call :func:`init_parameters` with the list of ``(name, shape)`` pairs of
``model.named_parameters()``. Every random value comes from ONE
``numpy.random.default_rng(seed)``, drawn in float64 in that order and only then cast
to the model's dtype, so the two backends receive bit-identical arrays.

The rule for each parameter is chosen by its name (the last component after the dot):

========================  ============================================  ===================================
leaf name                 what it is                                    initial value
========================  ============================================  ===================================
``gamma``                 LayerNorm (and RMSNorm) scale                 1
``beta``                  LayerNorm shift                               0
``b``, ``b1``, ``b_Q``    biases (any leaf starting with ``b``)         0
anything else             weights: ``W``, ``W1``, ``W_Q``, embeddings   :math:`\\mathcal{N}(0, \\sigma^2)`
========================  ============================================  ===================================

:math:`\\sigma` is ``ModelConfig.init_std``, 0.02 by default (GPT-2's and BERT's).

Scaled residual projections (GPT-2, Radford et al. 2019, section 2.3): with
``scale_residual=True`` the two matrices that write into the residual stream,
``attn.W_O`` and ``ffn.W2`` (``ffn.W_down`` in a gated FFN), get standard deviation
:math:`\\sigma/\\sqrt{2 L}` (``L`` layers), so the variance of the residual stream does
not grow with depth. ``GPT`` uses it; ``TransformerEncoder`` and ``SequenceClassifier``
follow BERT and do not.

Sinusoidal positions (Vaswani et al. 2017, section 3.5) are a fixed table, not a
parameter: :func:`sinusoidal_positions` computes it and the models keep it as a buffer
that is neither trained nor saved.

Dropout draws its masks from a second generator, :func:`dropout_rng`, seeded from the
same seed but independent of the initialisation stream.

Dimension legend: T positions, C = d_model.
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np

__all__ = ["INIT_STD", "init_parameters", "init_rule", "sinusoidal_positions", "rotary_tables", "rope_frequencies",
           "dropout_rng"]

INIT_STD = 0.02
RESIDUAL_PROJECTIONS = ("attn.W_O", "ffn.W2", "ffn.W_down")


def init_rule(name: str, n_layers: int = 1, scale_residual: bool = False, std: float = INIT_STD):
    """Return ``("ones" | "zeros" | "normal", std)`` for the parameter called ``name``;
    ``std`` is that of an ordinary weight (``ModelConfig.init_std``)."""
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "gamma":
        return "ones", 0.0
    if leaf == "beta" or leaf.startswith("b"):
        return "zeros", 0.0
    if scale_residual and name.endswith(RESIDUAL_PROJECTIONS):
        std = std / math.sqrt(2 * n_layers)
    return "normal", std


def init_parameters(named_shapes: Iterable[tuple[str, tuple[int, ...]]], seed: int,
                    dtype="float32", n_layers: int = 1,
                    scale_residual: bool = False, std: float = INIT_STD) -> dict[str, np.ndarray]:
    """Initial values for every parameter, drawn from ``default_rng(seed)`` in order.

    ``named_shapes``: ``(name, shape)`` in ``named_parameters()`` order. A weight is
    :math:`W = \\sigma z` (:math:`\\sigma` = ``std``, 0.02 by default),
    :math:`z \\sim \\mathcal{N}(0, 1)` drawn in float64 and cast to
    ``dtype`` afterwards, which is what makes the backends agree bit for bit.
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    rng = np.random.default_rng(int(seed))
    dtype = np.dtype(dtype)
    values = {}
    for name, shape in named_shapes:
        shape = tuple(int(s) for s in shape)
        kind, sigma = init_rule(name, n_layers, scale_residual, std)
        if kind == "ones":
            values[name] = np.ones(shape, dtype=dtype)
        elif kind == "zeros":
            values[name] = np.zeros(shape, dtype=dtype)
        else:
            values[name] = (sigma * rng.standard_normal(shape)).astype(dtype)
    return values


def sinusoidal_positions(T: int, d_model: int, dtype="float32") -> np.ndarray:
    """The fixed position table of Vaswani et al. (2017), section 3.5.

    .. math::
        P_{t, 2i} = \\sin(t / 10000^{2i/C}), \\qquad P_{t, 2i+1} = \\cos(t / 10000^{2i/C})

    Shapes: -> (T, C). Computed in float64, then cast.
    """
    t = np.arange(T, dtype=np.float64)[:, None]                          # (T, 1)
    two_i = np.arange(0, d_model, 2, dtype=np.float64)                   # (ceil(C/2),)
    angle = t / np.power(10000.0, two_i / d_model)                        # (T, ceil(C/2))
    P = np.zeros((T, d_model), dtype=np.float64)                          # (T, C)
    P[:, 0::2] = np.sin(angle)
    P[:, 1::2] = np.cos(angle[:, : d_model // 2])
    return P.astype(dtype)


def rotary_tables(T: int, head_size: int, dtype="float32", base: float = 10000.0, scaling: dict | None = None):
    """The rotation angles of RoPE (Su et al. 2021, RoFormer, section 3.2.2) for
    positions ``0..T-1``: :math:`\\cos m\\theta_i` and :math:`\\sin m\\theta_i`, with the
    frequencies :math:`\\theta_i` of :func:`rope_frequencies` (``scaling``: a
    ``ModelConfig.rope_scaling``), one per pair of a head's dimensions.
    Shapes: -> cos (T, D/2), sin (T, D/2). Computed in float64, then cast, so that both
    backends rotate by the same numbers.
    """
    if head_size % 2:
        raise ValueError(f"expected an even head size for RoPE (it rotates pairs of dimensions), "
                         f"got {head_size}")
    m = np.arange(T, dtype=np.float64)[:, None]                          # (T, 1)
    theta = rope_frequencies(head_size, base, scaling)                   # (D/2,)
    return np.cos(m * theta).astype(dtype), np.sin(m * theta).astype(dtype)


def rope_frequencies(head_size: int, base: float = 10000.0, scaling: dict | None = None) -> np.ndarray:
    r"""RoPE's frequencies, float64, one per pair of a head's D dimensions:

    .. math:: \theta_i = \mathrm{base}^{-2i/D}, \qquad i = 0, \dots, D/2 - 1

    the frequencies of :func:`sinusoidal_positions`. With ``scaling`` of rope_type
    ``"llama3"`` (Llama 3.1, the ``apply_scaling`` of Meta's reference code; the same as
    Hugging Face's ``_compute_llama3_parameters``), for a model trained on a context of
    :math:`L` = ``original_max_position_embeddings`` and stretched by :math:`s` =
    ``factor``: with each frequency's wavelength :math:`\lambda_i = 2\pi / \theta_i`
    and the wavelengths :math:`\lambda_{lo} = L / \mathrm{low\_freq\_factor}` >
    :math:`\lambda_{hi} = L / \mathrm{high\_freq\_factor}`,

    .. math::
        \theta'_i = \begin{cases}
            \theta_i & \lambda_i < \lambda_{hi} \text{ (fast rotations: kept)} \\
            \theta_i / s & \lambda_i > \lambda_{lo} \text{ (slow ones: stretched)} \\
            (1 - \gamma_i)\,\theta_i / s + \gamma_i\,\theta_i & \text{between}, \quad
            \gamma_i = \frac{L / \lambda_i - \mathrm{low\_freq\_factor}}
                            {\mathrm{high\_freq\_factor} - \mathrm{low\_freq\_factor}}
        \end{cases}

    (:math:`\gamma_i` runs from 0 at :math:`\lambda_{lo}` to 1 at :math:`\lambda_{hi}`, so the
    three pieces join). Shapes: -> (D/2,).
    """
    theta = np.power(float(base), -np.arange(0, head_size, 2, dtype=np.float64) / head_size)  # (D/2,)
    if scaling is None:
        return theta
    if scaling.get("rope_type") != "llama3":
        raise ValueError(f"expected rope_scaling None or of rope_type 'llama3', got {scaling!r}")
    s, L = float(scaling["factor"]), float(scaling["original_max_position_embeddings"])
    low, high = float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
    wavelength = 2 * np.pi / theta                                       # (D/2,)
    gamma = (L / wavelength - low) / (high - low)                        # (D/2,)
    blended = (1 - gamma) * theta / s + gamma * theta                    # (D/2,)
    return np.where(wavelength < L / high, theta,
                    np.where(wavelength > L / low, theta / s, blended))  # (D/2,)


def dropout_rng(seed: int) -> np.random.Generator:
    """The generator a model's dropout masks come from, in BOTH backends.

    Seeded from ``[seed, 1]`` (a different stream from the initialisation's
    ``default_rng(seed)``). Both backends draw the keep mask as
    ``rng.random(x.shape) >= p`` in the same order of calls, so runs with dropout > 0
    stay comparable between backends; its ``bit_generator.state`` goes into checkpoints.
    """
    return np.random.default_rng([int(seed), 1])
