"""Figures for the pipeline: loss curves, confusion matrix, attention map, attention cost.

matplotlib is an optional dependency (``pip install 'minillm[pipeline]'``), imported
only when a plot is drawn. The figures are built with ``matplotlib.figure.Figure`` and
the Agg canvas directly, so plotting never touches pyplot's global state (no backend
switch, no open windows, safe in a server or a test). Every PNG is written atomically:
to a temporary file in the same folder, fsync'd, then renamed over the target.

Dimension legend:
    C     number of classes
    T_q   query positions, T_k key positions
"""
from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

__all__ = ["plot_loss_curves", "loss_figure", "plot_confusion_matrix", "plot_attention", "plot_attention_cost",
           "read_metrics"]

logger = logging.getLogger("minillm")

STEP_KEYS = ("step", "iter", "iteration")
TRAIN_KEYS = ("train_loss", "loss")
VAL_KEYS = ("val_loss", "valid_loss", "eval_loss")
ACCURACY_KEYS = ("val_accuracy",)
LR_KEYS = ("lr", "learning_rate")


def _new_figure(figsize):
    """A pyplot-free figure with an Agg canvas attached."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(
            "minillm.core.plots needs matplotlib, which is not installed: "
            "pip install 'minillm[pipeline]'"
        ) from e
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, out_png) -> Path:
    """Writes ``fig`` as PNG to ``out_png`` atomically (temp file, fsync, rename)."""
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    # a fresh name next to the target (not mkstemp, whose 0600 mode would stick to the PNG)
    tmp = out.parent / f".{out.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "xb") as fh:
            fig.savefig(fh, format="png", dpi=110)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    logger.info("wrote %s", out)
    return out


def _first(record: Mapping, keys: tuple[str, ...]):
    for key in keys:
        if record.get(key) is not None:
            return record[key]
    return None


# ---------------------------------------------------------------------------------------
# loss curves


def read_metrics(path) -> list[dict]:
    """The records of a JSON-lines metrics file (blank lines skipped)."""
    records = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: expected one JSON object per line, got {line[:60]!r} ({e})") from e
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{n}: expected a JSON object, got {type(record).__name__}")
            records.append(record)
    return records


LOSS_UNITS = ("token", "example")     # what a loss is averaged over: a language model's, a classifier's


def plot_loss_curves(metrics, out_png, *, title: str | None = None, log_y: bool = False,
                     loss_per: str = "token") -> Path:
    """``loss_figure`` (training and validation loss, validation accuracy where there is
    one, learning rate) written as PNG to ``out_png``; returns its path."""
    return _save(loss_figure(metrics, title=title, log_y=log_y, loss_per=loss_per), out_png)


def loss_figure(metrics, *, title: str | None = None, log_y: bool = False, loss_per: str = "token"):
    """Training loss per step and validation loss at its eval steps; below, the validation
    accuracy (a classifier's) and the learning rate, each panel only where some record has it.

    ``metrics`` is the path of a ``metrics.jsonl`` file or an iterable of dicts. Each
    record has a step (``step``, ``iter`` or ``iteration``) and any of: a training loss
    (``train_loss`` or ``loss``), a validation loss (``val_loss``, ``valid_loss`` or
    ``eval_loss``), a validation accuracy (``val_accuracy``), a learning rate (``lr`` or
    ``learning_rate``). ``loss_per``: what the losses are the mean over, ``"token"`` (a
    language model: the loss axis also shows the matching perplexity, exp(loss), on the
    right, unless ``log_y``) or ``"example"`` (a classifier: no perplexity, which means
    nothing there). Returns the matplotlib ``Figure`` (its axes carry the labels).
    """
    if loss_per not in LOSS_UNITS:
        raise ValueError(f"loss_per must be one of {LOSS_UNITS}, got {loss_per!r}")
    if isinstance(metrics, (str, os.PathLike)):
        records = read_metrics(metrics)
    elif isinstance(metrics, Iterable) and not isinstance(metrics, Mapping):
        records = list(metrics)
    else:
        raise ValueError(f"metrics must be a path or an iterable of dicts, got {type(metrics).__name__}")
    if not records:
        raise ValueError("metrics has no records: expected at least one with a step and a loss")
    series = {"train": ([], []), "val": ([], []), "accuracy": ([], []), "lr": ([], [])}
    for i, r in enumerate(records):
        if not isinstance(r, Mapping):
            raise ValueError(f"record {i} must be a dict, got {type(r).__name__}")
        step = _first(r, STEP_KEYS)
        if step is None:
            raise ValueError(f"record {i} has no step: expected one of {STEP_KEYS}, got keys {sorted(r)}")
        for name, keys in (("train", TRAIN_KEYS), ("val", VAL_KEYS), ("accuracy", ACCURACY_KEYS),
                           ("lr", LR_KEYS)):
            value = _first(r, keys)
            if value is not None:
                series[name][0].append(float(step))
                series[name][1].append(float(value))
    if not series["train"][0] and not series["val"][0]:
        raise ValueError(
            f"no loss in {len(records)} records: expected a key among {TRAIN_KEYS + VAL_KEYS}, "
            f"got keys {sorted(set().union(*map(set, records)))}"
        )

    below = [name for name in ("accuracy", "lr") if series[name][0]]      # the panels under the loss
    fig = _new_figure((7.5, 4.0 + 1.5 * len(below)))
    axes = fig.subplots(1 + len(below), 1, sharex=True, height_ratios=[3] + [1] * len(below), squeeze=False)[:, 0]
    ax, panels = axes[0], dict(zip(below, axes[1:]))
    if series["train"][0]:
        ax.plot(*series["train"], lw=1.0, alpha=0.85, label="train loss")
    if series["val"][0]:
        ax.plot(*series["val"], "o-", ms=4, lw=1.5, label="validation loss")
    ax.set_ylabel(f"loss (nats / {loss_per})")
    if log_y:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    ax.set_title(title or "Loss curves")
    if loss_per == "token" and not log_y:  # perplexity = exp(loss) on the right-hand axis
        ppl = ax.secondary_yaxis("right", functions=(lambda x: np.exp(np.minimum(x, 700.0)), lambda p: np.log(np.maximum(p, 1e-300))))
        ppl.set_ylabel("perplexity")
        from matplotlib.ticker import FuncFormatter, LogLocator  # matplotlib is there by now
        ppl.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))  # even in loss
        ppl.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ppl.yaxis.set_minor_locator(LogLocator(base=10, subs=()))
    if "accuracy" in panels:
        panels["accuracy"].plot(*series["accuracy"], "o-", ms=4, lw=1.5, color="tab:orange")
        panels["accuracy"].set_ylabel("validation accuracy")
        panels["accuracy"].grid(alpha=0.3)
    if "lr" in panels:
        panels["lr"].plot(*series["lr"], color="tab:green", lw=1.0)
        panels["lr"].set_ylabel("learning rate")
        panels["lr"].grid(alpha=0.3)
        panels["lr"].ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    axes[-1].set_xlabel("step")
    return fig


# ---------------------------------------------------------------------------------------
# confusion matrix


def plot_confusion_matrix(cm, labels, out_png, *, normalize: bool = False,
                          title: str | None = None) -> Path:
    """Heat map of a confusion matrix, rows true class, columns predicted (as
    ``minillm.core.metrics.confusion_matrix``). ``normalize=True`` shows each row as
    fractions of its true class (recall on the diagonal).

    Shapes: cm (C, C) non-negative counts; labels: C names, or None for the ids.
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] == 0:
        raise ValueError(f"cm must be a non-empty square (C, C) matrix, got shape {cm.shape}")
    if cm.dtype == bool or not np.issubdtype(cm.dtype, np.number):
        raise ValueError(f"cm must hold counts, got dtype {cm.dtype}")
    if not np.all(np.isfinite(cm)) or (cm < 0).any():
        raise ValueError(f"cm must hold finite counts >= 0, got min {cm.min()}, "
                         f"{int((~np.isfinite(cm)).sum())} non-finite")
    C = cm.shape[0]
    labels = [str(c) for c in range(C)] if labels is None else [str(s) for s in labels]
    if len(labels) != C:
        raise ValueError(f"labels has {len(labels)} names, expected {C} (one per row of cm)")
    shown = cm.astype(np.float64)  # (C, C)
    if normalize:
        rows = shown.sum(axis=1, keepdims=True)  # (C, 1)
        shown = np.divide(shown, rows, out=np.zeros_like(shown), where=rows > 0)

    size = min(2.5 + 0.45 * C, 14.0)
    fig = _new_figure((size + 1.2, size))
    ax = fig.subplots()
    im = ax.imshow(shown, cmap="Blues", vmin=0)
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_xticks(range(C), labels, rotation=45 if C > 4 else 0, ha="right" if C > 4 else "center")
    ax.set_yticks(range(C), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or ("Confusion matrix (row-normalised)" if normalize else "Confusion matrix"))
    if C <= 20:  # write the numbers in the cells while they still fit
        cut = shown.max() / 2 if shown.max() > 0 else 1.0
        for i in range(C):
            for j in range(C):
                text = f"{shown[i, j]:.2f}" if normalize else f"{cm[i, j]:g}"
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="white" if shown[i, j] > cut else "black")
    return _save(fig, out_png)


# ---------------------------------------------------------------------------------------
# attention


def plot_attention(weights, tokens, out_png, *, query_tokens=None, title: str | None = None) -> Path:
    r"""Heat map of attention weights :math:`\mathrm{softmax}(QK^\top/\sqrt{d_k})`
    (chapter section 4.1): row ``i`` is the distribution of query ``i`` over the keys.

    ``tokens`` label the keys; the queries default to the last ``T_q`` of them (queries
    are aligned at the end, as in ``causal_mask``). Shapes: weights (T_q, T_k).
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2 or 0 in w.shape:
        raise ValueError(f"weights must be a non-empty (T_q, T_k) matrix, got shape {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError(f"weights must be finite, got {int((~np.isfinite(w)).sum())} non-finite value(s)")
    T_q, T_k = w.shape
    tokens = [str(t) for t in tokens]
    if len(tokens) != T_k:
        raise ValueError(f"tokens has {len(tokens)} entries, expected T_k={T_k} (weights {w.shape})")
    queries = tokens[T_k - T_q:] if query_tokens is None else [str(t) for t in query_tokens]
    if len(queries) != T_q:
        raise ValueError(f"query_tokens has {len(queries)} entries, expected T_q={T_q} (weights {w.shape})")

    fig = _new_figure((min(2.5 + 0.4 * T_k, 16.0), min(2.0 + 0.4 * T_q, 16.0)))
    ax = fig.subplots()
    im = ax.imshow(w, cmap="viridis", vmin=0, vmax=max(1.0, float(w.max())), aspect="auto")
    fig.colorbar(im, ax=ax, shrink=0.8, label="attention weight")
    ax.set_xticks(range(T_k), tokens, rotation=90, fontsize=8)
    ax.set_yticks(range(T_q), queries, fontsize=8)
    ax.set_xlabel("key")
    ax.set_ylabel("query")
    ax.set_title(title or "Attention weights")
    return _save(fig, out_png)


def plot_attention_cost(Ts, seconds, out_png, *, title: str | None = None) -> Path:
    r"""Time of attention against sequence length on log-log axes, with the
    :math:`O(T^2)` line (the :math:`QK^\top` score matrix is :math:`T \times T`) through
    the last measurement for comparison.

    ``seconds`` is a sequence aligned with ``Ts``, or a mapping ``{label: sequence}``
    to compare several (for example the two backends). Shapes: Ts (n,), seconds (n,).
    """
    T = np.asarray(Ts, dtype=np.float64)
    if T.ndim != 1 or T.size == 0:
        raise ValueError(f"Ts must be a non-empty 1-D sequence, got shape {T.shape}")
    if not np.all(np.isfinite(T)) or (T <= 0).any():
        raise ValueError(f"Ts must be positive sequence lengths, got {T.tolist()}")
    runs = dict(seconds) if isinstance(seconds, Mapping) else {"measured": seconds}
    if not runs:
        raise ValueError("seconds is an empty mapping: expected at least one series")
    checked = {}
    for label, s in runs.items():
        s = np.asarray(s, dtype=np.float64)
        if s.shape != T.shape:
            raise ValueError(f"seconds[{label!r}] has shape {s.shape}, expected {T.shape} like Ts")
        if not np.all(np.isfinite(s)) or (s <= 0).any():
            raise ValueError(f"seconds[{label!r}] must be positive finite times, got {s.tolist()}")
        checked[label] = s

    fig = _new_figure((6.5, 4.5))
    ax = fig.subplots()
    for label, s in checked.items():
        ax.plot(T, s, "o-", label=str(label))
    i = int(np.argmax(T))
    anchor = max(checked.values(), key=lambda s: s[i])[i]
    grid = np.geomspace(T.min(), T.max(), 50) if T.min() < T.max() else T
    ax.plot(grid, anchor * (grid / T[i]) ** 2, "k--", lw=1, label=r"$\propto T^2$")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sequence length T")
    ax.set_ylabel("seconds")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    ax.set_title(title or "Attention cost grows as T²")
    return _save(fig, out_png)
